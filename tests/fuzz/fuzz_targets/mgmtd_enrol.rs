//! Enrolment files from the boot partition (operator CAs and pinned
//! client certificates, PEM): checked for each kind of file. What is
//! enrolled came from the file: a pinned client file gives one.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skytime_mgmtd::enrol::{validate, Kind, FILES};
use skytime_mgmtd::trust::certificates;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let found = certificates(text).map(|c| c.len());
    for (_, kind, role) in FILES {
        match validate(text, kind, role, 1_800_000_000) {
            Ok(enrolled) => {
                assert!(!enrolled.is_empty());
                if kind == Kind::Client {
                    assert_eq!(enrolled.len(), 1);
                }
                assert!(found.is_ok());
            }
            Err(e) => assert!(!e.is_empty()),
        }
    }
});
