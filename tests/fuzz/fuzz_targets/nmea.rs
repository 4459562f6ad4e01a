//! NMEA from the serial port: line framing (LineAssembler), sentence
//! parsing (each line as read, and the input as a sentence body with its
//! checksum made right, so the field parsers see arbitrary fields), and
//! the whole reference-clock pipeline on the same bytes with pulses
//! between chunks. Lines stay within the framing limit; whatever comes,
//! the pipeline's samples are finite.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skytime_fuzz::{now, pipeline};
use skytime_proto::time::NtpTimestamp;
use skytime_refclock::line::{LineAssembler, MAX_LINE};
use skytime_refclock::sentence::{checksum, parse};
use skytime_refclock::Output;

fuzz_target!(|data: &[u8]| {
    let mut body = Vec::with_capacity(data.len() + 4);
    body.push(b'$');
    body.extend_from_slice(data);
    body.extend_from_slice(format!("*{:02X}", checksum(data)).as_bytes());
    let _ = parse(&body);
    let _ = parse(data);

    let mut lines = LineAssembler::new(9600);
    let mut got = 0u64;
    lines.feed(data, now(), |line| {
        assert!(line.text.len() <= MAX_LINE);
        assert!(line.burst_start <= line.first_byte);
        got += 1;
        let _ = parse(&line.text);
    });
    assert_eq!(lines.stats().lines, got);

    let mut pipeline = pipeline();
    let mut out = Output::default();
    // Chunks as reads deliver them: up to each newline, a read every
    // 100 ms, a pulse each second.
    for (i, chunk) in data.split_inclusive(|&b| b == b'\n').enumerate() {
        let at =
            NtpTimestamp::from_unix(1_800_000_000 + i as i64 / 10, (i as u32 % 10) * 100_000_000);
        pipeline.serial_bytes(chunk, at, &mut out);
        if i % 10 == 0 {
            pipeline.pulse(at, 0, i % 20 == 0, &mut out);
        }
        pipeline.poll(at, true, &mut out);
    }
    for s in &out.samples {
        assert!(s.offset.to_seconds_f64().is_finite());
    }
});
