//! The whole reference-clock pipeline under arbitrary input in arbitrary
//! order: receiver bursts, pulses, noise, SOCK datagrams, polls, reach
//! ticks and device losses, at arbitrary times. It never panics, every
//! sample it gives is a finite measurement of a configured source, and
//! its counters account for what it was given.

use proptest::prelude::*;
use skytime_proto::NtpTimestamp;
use skytime_refclock::gpstime::civil_from_days;
use skytime_refclock::sentence::checksum;
use skytime_refclock::sock::{encode, SockLeap};
use skytime_refclock::{Output, Pipeline, PipelineConfig, SourceId, SourceStatus};

const T0: i64 = 1_800_000_000;

#[derive(Clone, Debug)]
enum Event {
    /// RMC + GGA naming second `T0 + s`, read at `T0 + s + delay_ms`.
    Burst {
        s: u16,
        delay_ms: u16,
    },
    /// Any bytes from the serial port.
    Noise {
        bytes: Vec<u8>,
        at_ms: u32,
    },
    Pulse {
        at_ms: u32,
        missed: u8,
    },
    /// A well-formed SOCK sample (pulse or whole).
    Sock {
        at_ms: u32,
        pulse: bool,
    },
    /// Any SOCK datagram.
    SockNoise(Vec<u8>),
    Poll {
        at_ms: u32,
    },
    Reach {
        at_ms: u32,
    },
    SerialDown,
    PpsDown,
    SerialUp,
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        (0u16..120, 0u16..1000).prop_map(|(s, delay_ms)| Event::Burst { s, delay_ms }),
        (proptest::collection::vec(any::<u8>(), 0..80), 0u32..120_000)
            .prop_map(|(bytes, at_ms)| Event::Noise { bytes, at_ms }),
        (0u32..120_000, 0u8..3).prop_map(|(at_ms, missed)| Event::Pulse { at_ms, missed }),
        (0u32..120_000, any::<bool>()).prop_map(|(at_ms, pulse)| Event::Sock { at_ms, pulse }),
        proptest::collection::vec(any::<u8>(), 0..48).prop_map(Event::SockNoise),
        (0u32..120_000).prop_map(|at_ms| Event::Poll { at_ms }),
        (0u32..120_000).prop_map(|at_ms| Event::Reach { at_ms }),
        Just(Event::SerialDown),
        Just(Event::PpsDown),
        Just(Event::SerialUp),
    ]
}

fn at(ms: u64) -> NtpTimestamp {
    NtpTimestamp::from_unix(T0 + (ms / 1000) as i64, (ms % 1000) as u32 * 1_000_000)
}

fn burst(unix: i64) -> Vec<u8> {
    let (y, mo, d) = civil_from_days(unix.div_euclid(86_400));
    let sod = unix.rem_euclid(86_400);
    let time = format!("{:02}{:02}{:02}.00", sod / 3600, sod / 60 % 60, sod % 60);
    let yy = y.rem_euclid(100);
    [
        format!("GPRMC,{time},A,4807.038,N,01131.000,E,0.02,31.66,{d:02}{mo:02}{yy:02},,,A"),
        format!("GPGGA,{time},4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"),
    ]
    .iter()
    .map(|b| format!("${b}*{:02X}\r\n", checksum(b.as_bytes())))
    .collect::<String>()
    .into_bytes()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn any_input_in_any_order_keeps_the_pipeline_sound(
        events in proptest::collection::vec(event(), 0..150),
        synchronized in any::<bool>(),
    ) {
        let sources = SourceId::ALL
            .iter()
            .map(|&id| SourceStatus::new(id, id.name().into()))
            .collect();
        let config = PipelineConfig { date_floor: T0 - 86_400, ..PipelineConfig::default() };
        let mut p = Pipeline::new(config, sources);
        let mut out = Output::default();
        let mut pulses = 0u64;
        let mut datagrams = 0u64;
        for e in events {
            match e {
                Event::Burst { s, delay_ms } => {
                    let ms = u64::from(s) * 1000 + u64::from(delay_ms);
                    p.serial_bytes(&burst(T0 + i64::from(s)), at(ms), &mut out);
                }
                Event::Noise { bytes, at_ms } => p.serial_bytes(&bytes, at(at_ms.into()), &mut out),
                Event::Pulse { at_ms, missed } => {
                    pulses += 1;
                    p.pulse(at(at_ms.into()), missed.into(), synchronized, &mut out);
                }
                Event::Sock { at_ms, pulse } => {
                    datagrams += 1;
                    pulses += u64::from(pulse);
                    let ms = u64::from(at_ms);
                    let d = encode(T0 + (ms / 1000) as i64, (ms % 1000 * 1000) as i64, 0.001, pulse, SockLeap::Normal);
                    p.sock_datagram(&d, synchronized, &mut out);
                }
                Event::SockNoise(bytes) => {
                    datagrams += 1;
                    p.sock_datagram(&bytes, synchronized, &mut out);
                }
                Event::Poll { at_ms } => p.poll(at(at_ms.into()), synchronized, &mut out),
                Event::Reach { at_ms } => p.reach_tick(at(at_ms.into())),
                Event::SerialDown => p.serial_down("gone".into()),
                Event::PpsDown => p.pps_down("gone".into()),
                Event::SerialUp => p.serial_up(),
            }
        }
        for s in &out.samples {
            prop_assert!(s.offset.to_seconds_f64().is_finite(), "{s:?}");
            prop_assert!(s.dispersion.to_seconds_f64() >= 0.0, "{s:?}");
        }
        let st = p.status();
        prop_assert!(st.pairing.pulses <= pulses, "{:?}", st.pairing);
        prop_assert!(st.bad_sock_datagrams <= datagrams);
        let accepted: u64 = st.sources.iter().map(|s| s.stats.samples).sum();
        prop_assert_eq!(accepted, out.samples.len() as u64, "every sample counted once");
    }
}
