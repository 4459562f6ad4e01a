//! NTP packet parse and classify: the header round-trips byte for byte,
//! and a classified request is a client-mode packet of a version served.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skytime_proto::access::{AccessList, IpNet};
use skytime_proto::packet::{Mode, NtpHeader, HEADER_LEN};
use skytime_proto::server::classify;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

fuzz_target!(|data: &[u8]| {
    if let Ok((header, rest)) = NtpHeader::parse(data) {
        assert_eq!(rest.len(), data.len() - HEADER_LEN);
        let bytes = header.serialize();
        assert_eq!(
            &bytes[..],
            &data[..HEADER_LEN],
            "serialize gives back the header"
        );
        assert_eq!(NtpHeader::parse(&bytes).map(|(h, _)| h), Ok(header));
    } else {
        assert!(data.len() < HEADER_LEN);
    }
    let denied: IpNet = IpNet::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 0)), 8).unwrap();
    let all = IpNet::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0).unwrap();
    let acl = AccessList::new(&[all], &[denied]);
    let port = u16::from_be_bytes([data.first().copied().unwrap_or(0), 123]);
    for ip in [Ipv4Addr::new(127, 0, 0, 1), Ipv4Addr::new(10, 1, 2, 3)] {
        let remote = SocketAddr::new(IpAddr::V4(ip), port);
        match classify(data, remote, &acl) {
            Ok(request) => {
                assert_eq!(request.header.mode, Mode::Client);
                assert_eq!(request.extensions.len(), data.len() - HEADER_LEN);
                assert!(acl.is_allowed(remote.ip()) && port != 0);
            }
            Err(reason) => assert!(!reason.as_str().is_empty()),
        }
    }
});
