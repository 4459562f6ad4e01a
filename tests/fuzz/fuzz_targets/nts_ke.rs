//! NTS-KE records: the server's framing (`scan_message`), its decision on
//! a request, and the upstream client's reading of a server's response.
//! Each record parsed and written again gives the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skytime_nts::record::{records, scan_message, Record, Scan};
use skytime_nts::{ke, ke_client};

/// The daemon's limit on a request message.
const LIMIT: usize = 1024;

fuzz_target!(|data: &[u8]| {
    match scan_message(data, LIMIT) {
        Ok(Scan::Complete(n)) => assert!(n == data.len() && n <= LIMIT),
        Ok(Scan::Incomplete) => assert!(data.len() <= LIMIT),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    let mut written = Vec::new();
    let mut consumed = 0;
    for record in records(data) {
        let Ok(record) = record else { break };
        record.write(&mut written);
        consumed = written.len();
        let (again, rest) = Record::parse(&written[consumed - 4 - record.body.len()..])
            .expect("a written record parses");
        assert_eq!(again, record);
        assert!(rest.is_empty());
    }
    assert_eq!(&written[..], &data[..consumed], "records round-trip");
    match ke::decide(data) {
        Ok(agreement) => assert!(agreement.aead.key_len() > 0),
        Err(rejection) => {
            let response = ke::rejection_response(rejection);
            assert_eq!(
                scan_message(&response, LIMIT),
                Ok(Scan::Complete(response.len()))
            );
        }
    }
    if let Ok(response) = ke_client::parse_response(data) {
        assert!(!response.cookies.is_empty());
    }
});
