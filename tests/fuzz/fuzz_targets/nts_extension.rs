//! NTS extension fields on their own: field framing, the Authenticator
//! body (parsed, written again, parsed to the same), cookie opening under
//! the fixture's master keys, and a client's check of a reply (the
//! upstream NTS client faces hostile servers) with the test client's
//! check and the daemon's upstream session's.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skytime_fuzz::{fixture_keys, selector};
use skytime_nts::aead::{Aead, Key, SessionKeys};
use skytime_nts::cookie;
use skytime_nts::extension::{fields, parse_fields, Authenticator, FIELD_HEADER_LEN};
use skytime_nts::ntp_client::NtsSession;
use skytime_nts::server::client::check_reply;

fuzz_target!(|data: &[u8]| {
    let (choice, data) = selector(data);
    let min_len = [4, 16, 28][usize::from(choice % 3)];
    let all: Vec<_> = fields(data, min_len).collect();
    if let Ok(parsed) = parse_fields(data, min_len) {
        let total: usize = parsed.iter().map(|f| FIELD_HEADER_LEN + f.body.len()).sum();
        assert_eq!(total, data.len(), "fields cover the buffer");
        assert_eq!(parsed.len(), all.len());
        for f in &parsed {
            assert!(FIELD_HEADER_LEN + f.body.len() >= min_len);
        }
    }
    if let Some(auth) = Authenticator::parse(data) {
        let mut field = Vec::new();
        auth.write(&mut field);
        let again = Authenticator::parse(&field[FIELD_HEADER_LEN..]).expect("written parses");
        assert_eq!(again, auth);
    }
    let keys = fixture_keys();
    if let Ok(session) = cookie::open(data, &keys) {
        assert!(matches!(
            session.aead,
            Aead::AesSivCmac256 | Aead::AesGcmSiv128
        ));
    }
    let aead = if choice & 0x80 != 0 {
        Aead::AesGcmSiv128
    } else {
        Aead::AesSivCmac256
    };
    let n = aead.key_len();
    let session = SessionKeys {
        aead,
        c2s: Key::new(&vec![0x11; n]).unwrap(),
        s2c: Key::new(&vec![0x22; n]).unwrap(),
    };
    let _ = check_reply(data, &[0xab; 32], &session);
    let mut upstream = NtsSession::new(session, vec![vec![0x33; 104]]);
    let _ = upstream.check_reply(data, &[0xab; 32]);
});
