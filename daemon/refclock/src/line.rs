//! Reassembles NMEA lines from the arbitrary byte chunks a serial port
//! delivers, and timestamps each line at the arrival of its first byte.
//!
//! A read returns when its last byte has arrived, so a byte `k` places
//! before the end of a chunk arrived about `k` character times earlier;
//! the assembler subtracts that (10 bits per character at the configured
//! baud rate). Garbage never wedges it: bytes outside a `$...` sentence are
//! dropped and counted, a line longer than [`MAX_LINE`] is discarded, and a
//! `$` in the middle of a line starts a new sentence (the old one was cut).
//!
//! A receiver sends its sentences for one second as a burst and is silent
//! in between. Each line also carries the first `$` of its burst, so a
//! second can be timed from the start of the burst even when its first
//! sentence was damaged.

use skytime_proto::{NtpDuration, NtpTimestamp};

/// Longest line accepted. NMEA 0183 allows 82 characters; some receivers
/// send up to about 100, so leave room.
pub const MAX_LINE: usize = 120;

/// One complete line (without `\r\n`), stamped at its first byte.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub text: Vec<u8>,
    pub first_byte: NtpTimestamp,
    /// The first `$` after the last silence on the line.
    pub burst_start: NtpTimestamp,
}

/// Counters of what the assembler threw away.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LineStats {
    pub lines: u64,
    /// Bytes outside any sentence (noise, binary protocols, line breaks noise).
    pub garbage_bytes: u64,
    pub overlong: u64,
    /// Sentences cut short by a new `$`.
    pub truncated: u64,
}

/// The byte-to-line state machine.
#[derive(Debug)]
pub struct LineAssembler {
    buf: Vec<u8>,
    first_byte: NtpTimestamp,
    in_line: bool,
    overlong: bool,
    char_time: NtpDuration,
    /// Quiet time that separates two bursts.
    gap: NtpDuration,
    last_byte: Option<NtpTimestamp>,
    burst_start: Option<NtpTimestamp>,
    stats: LineStats,
}

impl LineAssembler {
    /// `baud` sets the per-character time used to back-date bytes inside a
    /// chunk (0 disables the correction).
    pub fn new(baud: u32) -> Self {
        let char_time = if baud == 0 {
            NtpDuration::ZERO
        } else {
            NtpDuration::from_nanos(10_000_000_000 / baud as i64)
        };
        // 20 characters or 30 ms, whichever is longer.
        let gap = NtpDuration::from_bits(
            (char_time.to_bits() * 20).max(NtpDuration::from_nanos(30_000_000).to_bits()),
        );
        Self {
            buf: Vec::with_capacity(MAX_LINE),
            first_byte: NtpTimestamp::ZERO,
            in_line: false,
            overlong: false,
            char_time,
            gap,
            last_byte: None,
            burst_start: None,
            stats: LineStats::default(),
        }
    }

    pub fn stats(&self) -> LineStats {
        self.stats
    }

    /// Forgets a partial line (after the port was reopened, for example).
    pub fn reset(&mut self) {
        self.buf.clear();
        self.in_line = false;
        self.overlong = false;
        self.last_byte = None;
        self.burst_start = None;
    }

    /// Feeds one chunk read at `read_time`; calls `out` for each completed line.
    pub fn feed(&mut self, chunk: &[u8], read_time: NtpTimestamp, mut out: impl FnMut(Line)) {
        let n = chunk.len();
        for (i, &b) in chunk.iter().enumerate() {
            let behind = (n - 1 - i) as i64;
            let at = read_time
                + NtpDuration::from_bits(-self.char_time.to_bits().saturating_mul(behind));
            if self.last_byte.is_none_or(|last| at - last > self.gap) {
                self.burst_start = None;
            }
            self.last_byte = Some(at);
            match b {
                b'$' | b'!' => {
                    if self.in_line && !self.overlong {
                        self.stats.truncated += 1;
                    }
                    self.buf.clear();
                    self.buf.push(b);
                    self.in_line = true;
                    self.overlong = false;
                    self.first_byte = at;
                    if self.burst_start.is_none() {
                        self.burst_start = Some(at);
                    }
                }
                b'\r' | b'\n' => {
                    if self.in_line {
                        if !self.overlong {
                            self.stats.lines += 1;
                            let burst_start = self.burst_start.unwrap_or(self.first_byte);
                            out(Line {
                                text: std::mem::take(&mut self.buf),
                                first_byte: self.first_byte,
                                burst_start,
                            });
                        }
                        self.buf.clear();
                        self.in_line = false;
                        self.overlong = false;
                    }
                    // Line breaks outside a sentence (the "\n" after "\r") are normal.
                }
                _ if !self.in_line => self.stats.garbage_bytes += 1,
                _ if self.overlong => {}
                _ => {
                    if self.buf.len() >= MAX_LINE {
                        self.overlong = true;
                        self.stats.overlong += 1;
                        self.buf.clear();
                    } else {
                        self.buf.push(b);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: f64) -> NtpTimestamp {
        NtpTimestamp::from_unix(1_800_000_000, 0) + NtpDuration::from_seconds_f64(secs)
    }

    fn collect(asm: &mut LineAssembler, chunks: &[(&[u8], NtpTimestamp)]) -> Vec<Line> {
        let mut v = Vec::new();
        for (c, at) in chunks {
            asm.feed(c, *at, |l| v.push(l));
        }
        v
    }

    const TEXT: &[u8] = b"\xff\x00junk$GPRMC,123519,A,4807.038,N*00\r\n$GPGGA,1*11\r\n";

    #[test]
    fn every_split_point_gives_the_same_lines() {
        let mut whole = LineAssembler::new(0);
        let expected = collect(&mut whole, &[(TEXT, t(0.0))]);
        assert_eq!(expected.len(), 2);
        assert_eq!(expected[0].text, b"$GPRMC,123519,A,4807.038,N*00");
        assert_eq!(expected[1].text, b"$GPGGA,1*11");
        for cut in 0..=TEXT.len() {
            for cut2 in cut..=TEXT.len() {
                let mut asm = LineAssembler::new(0);
                let got = collect(
                    &mut asm,
                    &[
                        (&TEXT[..cut], t(0.0)),
                        (&TEXT[cut..cut2], t(0.0)),
                        (&TEXT[cut2..], t(0.0)),
                    ],
                );
                let texts: Vec<_> = got.iter().map(|l| l.text.clone()).collect();
                let want: Vec<_> = expected.iter().map(|l| l.text.clone()).collect();
                assert_eq!(texts, want, "split at {cut},{cut2}");
                assert_eq!(asm.stats().garbage_bytes, 6);
            }
        }
    }

    #[test]
    fn first_byte_time_is_back_dated_by_the_bytes_behind_it() {
        // 9600 baud: 1.0417 ms per character.
        let mut asm = LineAssembler::new(9600);
        let lines = collect(
            &mut asm,
            &[(b"$AB", t(1.0)), (b"C*00\r\n$X*00\r\n", t(2.0))],
        );
        // '$' was the 3rd-last byte of the first chunk: two characters earlier.
        let d = (lines[0].first_byte - t(1.0)).to_seconds_f64();
        assert!((d + 2.0 * 10.0 / 9600.0).abs() < 1e-6, "{d}");
        // second '$' had 6 bytes after it in a chunk read at 2.0
        let d = (lines[1].first_byte - t(2.0)).to_seconds_f64();
        assert!((d + 6.0 * 10.0 / 9600.0).abs() < 1e-6, "{d}");
    }

    #[test]
    fn lines_carry_the_start_of_their_burst() {
        let mut asm = LineAssembler::new(9600);
        let lines = collect(
            &mut asm,
            &[
                (b"xx$A*00\r\n", t(0.0)),
                (b"$B*00\r\n", t(0.010)),
                (b"$C*00\r\n", t(1.0)),
                (b"$D*00\r\n", t(1.010)),
            ],
        );
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[1].burst_start, lines[0].first_byte);
        assert!(lines[1].first_byte > lines[0].first_byte);
        assert_eq!(
            lines[2].burst_start, lines[2].first_byte,
            "a second of silence starts a new burst"
        );
        assert_eq!(lines[3].burst_start, lines[2].first_byte);
    }

    #[test]
    fn overlong_lines_are_dropped_and_the_next_line_survives() {
        let mut asm = LineAssembler::new(0);
        let mut long = b"$GP".to_vec();
        long.extend(std::iter::repeat_n(b'A', 500));
        long.extend_from_slice(b"\r\n$GPZDA,1*00\r\n");
        let lines = collect(&mut asm, &[(&long, t(0.0))]);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].text, b"$GPZDA,1*00");
        assert_eq!(asm.stats().overlong, 1);
    }

    #[test]
    fn a_dollar_inside_a_line_restarts_it() {
        let mut asm = LineAssembler::new(0);
        let lines = collect(&mut asm, &[(b"$GPRMC,12$GPGGA,2*00\n", t(0.0))]);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].text, b"$GPGGA,2*00");
        assert_eq!(asm.stats().truncated, 1);
    }

    #[test]
    fn binary_garbage_never_produces_lines_or_grows_memory() {
        let mut asm = LineAssembler::new(0);
        let mut x: u32 = 12345;
        let mut lines = 0;
        for _ in 0..2000 {
            let mut chunk = [0u8; 64];
            for b in chunk.iter_mut() {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                // no '$', '!', CR or LF
                *b = match (x >> 16) as u8 {
                    b'$' | b'!' | b'\r' | b'\n' => 0,
                    v => v,
                };
            }
            asm.feed(&chunk, t(0.0), |_| lines += 1);
            assert!(asm.buf.capacity() <= 4 * MAX_LINE);
        }
        assert_eq!(lines, 0);
        assert_eq!(asm.stats().garbage_bytes, 2000 * 64);
    }
}
