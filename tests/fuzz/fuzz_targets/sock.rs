//! chrony's SOCK sample (the GPS daemon's datagram): decoded; a sample
//! that decodes, encoded again from its normalised time and raw fields,
//! decodes to the same sample (for times within the 68 years around now
//! that an NTP timestamp tells apart); the pipeline takes any datagram.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skytime_fuzz::pipeline;
use skytime_refclock::sock::{decode, encode, SOCK_SAMPLE_LEN};
use skytime_refclock::Output;

fuzz_target!(|data: &[u8]| {
    if let Ok(sample) = decode(data) {
        assert!(sample.offset.to_seconds_f64().is_finite());
        if data.len() == SOCK_SAMPLE_LEN {
            let raw = |at: usize| data[at..at + 8].try_into().unwrap();
            let usec = i128::from(i64::from_ne_bytes(raw(0))) * 1_000_000
                + i128::from(i64::from_ne_bytes(raw(8)));
            let (sec, _) = sample.local.to_unix(1_800_000_000);
            if i128::from(sec) == usec.div_euclid(1_000_000) {
                let offset = f64::from_ne_bytes(raw(16));
                let again = encode(
                    sec,
                    usec.rem_euclid(1_000_000) as i64,
                    offset,
                    sample.pulse,
                    sample.leap,
                );
                assert_eq!(decode(&again), Ok(sample), "normalised sample round-trips");
            }
        }
    }
    let mut pipeline = pipeline();
    let mut out = Output::default();
    pipeline.sock_datagram(data, true, &mut out);
    pipeline.sock_datagram(data, false, &mut out);
});
