//! # skytime-fuzz: what the libFuzzer targets share
//!
//! The targets in `fuzz_targets/` feed arbitrary bytes to every parser of
//! outside input (README: Fuzzing). This library holds the fixed inputs
//! they need besides the bytes: the master keys chrony 4.3's recorded
//! request was answered under (so the seed corpus's real NTS request gets
//! past the cookie and authenticator, where the interesting code is), and
//! a server's fixed view of its clock, and a reference-clock pipeline
//! with every source.

use skytime_nts::keyset::KeySet;
use skytime_proto::sync_state::SyncState;
use skytime_proto::time::NtpTimestamp;
use skytime_refclock::{Pipeline, PipelineConfig, SourceId, SourceStatus};

/// The throw-away master keys of `daemon/nts/tests/fixtures/chrony-4.3`.
pub const FIXTURE_KEYS: &str =
    include_str!("../../../daemon/nts/tests/fixtures/chrony-4.3/master-keys.txt");

/// The fixture's master keys, parsed.
pub fn fixture_keys() -> KeySet {
    KeySet::parse(FIXTURE_KEYS).expect("the fixture's master keys parse")
}

/// A moment near the fixtures' (2027).
pub fn now() -> NtpTimestamp {
    NtpTimestamp::from_unix(1_800_000_000, 250_000_000)
}

/// A synchronized stratum-1 server (the GPS), as replies describe it.
pub fn synchronized() -> SyncState {
    SyncState::local(1, -20, now())
}

/// The reference-clock pipeline with its default configuration and every
/// source (PPS, NMEA, SOCK), as the daemon runs it.
pub fn pipeline() -> Pipeline {
    let sources = SourceId::ALL
        .iter()
        .map(|&id| SourceStatus::new(id, id.name().into()))
        .collect();
    Pipeline::new(PipelineConfig::default(), sources)
}

/// Splits off the first byte as a selector for the target's own choices
/// (which variant to run); the rest is the input proper.
pub fn selector(data: &[u8]) -> (u8, &[u8]) {
    match data.split_first() {
        Some((&s, rest)) => (s, rest),
        None => (0, data),
    }
}

/// Runs the whole server decision for one datagram and, for a reply,
/// finishes it as the daemon does. Asserts what holds for every input: a
/// reply is never larger than its request (no amplification), and it is
/// a server-mode packet. Returns the reply's bytes.
pub fn serve<N: skytime_proto::server::NtsProcessor>(
    server: &mut skytime_proto::server::Server<N>,
    ctx: &skytime_proto::server::Context<'_>,
    request: &[u8],
    remote: std::net::SocketAddr,
    received: NtpTimestamp,
) -> Option<(skytime_proto::server::ReplyKind, Vec<u8>)> {
    use skytime_proto::packet::{Mode, NtpHeader, HEADER_LEN};
    use skytime_proto::server::{Handled, Incoming};
    let incoming = Incoming {
        data: request,
        remote,
        received,
    };
    let mut out = vec![0u8; request.len().max(HEADER_LEN)];
    let reply = match server.handle(ctx, &incoming, &mut out) {
        Handled::Dropped(reason) => {
            assert!(!reason.as_str().is_empty());
            return None;
        }
        Handled::Reply(reply) => reply,
    };
    let transmit = NtpTimestamp::from_bits(received.to_bits().wrapping_add(1 << 20));
    let (len, _ticket) = server.finish(&reply, transmit, &mut out).ok()?;
    assert!(
        len <= request.len(),
        "a reply of {len} bytes to a request of {}",
        request.len()
    );
    out.truncate(len);
    let (header, _) = NtpHeader::parse(&out).expect("a reply has a whole header");
    assert_eq!(header.mode, Mode::Server);
    Some((reply.kind(), out))
}
