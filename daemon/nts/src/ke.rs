//! The NTS-KE server's decision: request records in, response records out
//! (RFC 8915 section 4).
//!
//! The I/O layer reads a whole request ([`crate::record::scan_message`]),
//! calls [`decide`], and either writes [`rejection_response`] or exports
//! the session keys from TLS for the chosen algorithm
//! ([`exporter_context`]) and writes [`accept_response`].

use crate::aead::{Aead, AeadError, SessionKeys};
use crate::cookie::{self, CookieCiphers};
use crate::keyset::KeySet;
use crate::record::{kind, records, write_record, write_u16_record, ErrorCode};
use rand::{CryptoRng, RngCore};

/// ALPN protocol id of NTS-KE.
pub const ALPN: &[u8] = b"ntske/1";
/// TLS exporter label (RFC 8915 section 5.1).
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-network-time-security";
/// Next Protocol id of NTPv4.
pub const NEXT_PROTOCOL_NTPV4: u16 = 0;
/// Cookies handed out per NTS-KE session (RFC 8915 recommends 8).
pub const COOKIES_PER_SESSION: usize = 8;

/// What the server adds to every successful response besides the cookies
/// (chrony's `ntsntpserver` and a non-default NTP port).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KePolicy {
    /// NTPv4 Server Negotiation: where clients should send NTP (host name
    /// or address). `None`: the address they reached NTS-KE on.
    pub ntp_server: Option<String>,
    /// NTPv4 Port Negotiation. `None`: 123.
    pub ntp_port: Option<u16>,
}

/// Why a request gets no cookies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rejection {
    /// An Error record is sent.
    Error(ErrorCode),
    /// The client offered no protocol we speak: empty Next Protocol record.
    NoProtocol,
    /// NTPv4 offered but no AEAD algorithm we support: empty AEAD record.
    NoAead,
}

/// chrony's private record (4.6.1 and later; "compliant 128GCM export"):
/// a client sends it, empty and not critical, to say that it derives
/// AES-128-GCM-SIV keys with RFC 8915's exporter context; the server
/// answers with it when it chose that algorithm.
pub const COMPLIANT_128GCM_EXPORT: u16 = 1024;

/// What a successful key exchange agreed on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Agreement {
    pub aead: Aead,
    /// Answer with [`COMPLIANT_128GCM_EXPORT`] (the client sent it and
    /// AES-128-GCM-SIV was chosen).
    pub compliant_export: bool,
}

/// Checks a complete request message and chooses the AEAD algorithm.
///
/// AES-SIV-CMAC-256 (15) whenever the client offers it, unless it prefers
/// AES-128-GCM-SIV (30) and can be trusted to derive 30's keys as RFC 8915
/// says. chrony 4.4 to 4.6.0 derive them with 15's exporter context, while
/// RFC-following clients use 30's, and the request alone cannot tell the
/// two apart; so 30 is chosen only when the client sends chrony's record
/// 1024 (chrony 4.6.1 and later, which then use RFC 8915's context), or
/// offers nothing but 30 (a client that knows only 30 follows the RFC).
/// Among acceptable algorithms the client's order is its preference
/// (RFC 8915 section 4.1.5).
pub fn decide(request: &[u8]) -> Result<Agreement, Rejection> {
    let bad = Rejection::Error(ErrorCode::BadRequest);
    let mut next_protocol_records = 0;
    let mut ntpv4 = false;
    let mut aead_record: Option<&[u8]> = None;
    let mut compliant = false;
    for record in records(request) {
        let record = record.map_err(|_| bad)?;
        match record.kind {
            kind::END_OF_MESSAGE => break,
            kind::NEXT_PROTOCOL => {
                // RFC 8915 4.1.2: the client MUST set the critical bit.
                let values = record
                    .u16_values()
                    .filter(|_| record.critical && !record.body.is_empty())
                    .ok_or(bad)?;
                next_protocol_records += 1;
                ntpv4 |= values.into_iter().any(|p| p == NEXT_PROTOCOL_NTPV4);
            }
            kind::AEAD_ALGORITHM => {
                if record.body.is_empty() || record.body.len() % 2 != 0 || aead_record.is_some() {
                    return Err(bad);
                }
                aead_record = Some(record.body);
            }
            // chrony refuses a body too.
            COMPLIANT_128GCM_EXPORT if !record.body.is_empty() => return Err(bad),
            COMPLIANT_128GCM_EXPORT => compliant = true,
            // Only servers send these.
            kind::ERROR | kind::WARNING | kind::NEW_COOKIE => return Err(bad),
            // A client's wishes for the NTP server and port: the server
            // may ignore them (RFC 8915 4.1.7, 4.1.8) and does.
            kind::SERVER_NEGOTIATION | kind::PORT_NEGOTIATION => {}
            _ if record.critical => {
                return Err(Rejection::Error(ErrorCode::UnrecognizedCriticalRecord))
            }
            _ => {}
        }
    }
    if next_protocol_records != 1 {
        return Err(bad);
    }
    if !ntpv4 {
        return Err(Rejection::NoProtocol);
    }
    let offered = aead_record.ok_or(bad)?;
    let ids = || {
        offered
            .chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
    };
    let only_30 = ids().all(|id| id == 30);
    let aead = ids()
        .filter_map(Aead::from_id)
        .find(|a| *a == Aead::AesSivCmac256 || compliant || only_30)
        .ok_or(Rejection::NoAead)?;
    Ok(Agreement {
        aead,
        compliant_export: compliant && aead == Aead::AesGcmSiv128,
    })
}

/// The response to a rejected request.
pub fn rejection_response(rejection: Rejection) -> Vec<u8> {
    let mut out = Vec::with_capacity(32);
    match rejection {
        Rejection::Error(code) => write_u16_record(&mut out, true, kind::ERROR, &[code.code()]),
        Rejection::NoProtocol => write_record(&mut out, true, kind::NEXT_PROTOCOL, &[]),
        Rejection::NoAead => {
            write_u16_record(&mut out, true, kind::NEXT_PROTOCOL, &[NEXT_PROTOCOL_NTPV4]);
            write_record(&mut out, true, kind::AEAD_ALGORITHM, &[]);
        }
    }
    write_record(&mut out, true, kind::END_OF_MESSAGE, &[]);
    out
}

/// The TLS exporter context for one direction: protocol id, AEAD id, and
/// 0 for client-to-server or 1 for server-to-client (RFC 8915 section
/// 5.1; for AES-128-GCM-SIV too, see [`decide`]).
pub fn exporter_context(aead: Aead, server_to_client: bool) -> [u8; 5] {
    let p = NEXT_PROTOCOL_NTPV4.to_be_bytes();
    let a = aead.id().to_be_bytes();
    [p[0], p[1], a[0], a[1], u8::from(server_to_client)]
}

/// The successful response: protocol, algorithm (and chrony's record 1024
/// if agreed), optional server and port, and [`COOKIES_PER_SESSION`]
/// cookies sealed under the current master key.
pub fn accept_response<R: RngCore + CryptoRng>(
    session: &SessionKeys,
    agreement: &Agreement,
    keys: &KeySet,
    policy: &KePolicy,
    rng: &mut R,
) -> Result<Vec<u8>, AeadError> {
    let mut out = Vec::with_capacity(64 + COOKIES_PER_SESSION * (4 + cookie::COOKIE_LEN));
    write_u16_record(&mut out, true, kind::NEXT_PROTOCOL, &[NEXT_PROTOCOL_NTPV4]);
    write_u16_record(&mut out, true, kind::AEAD_ALGORITHM, &[session.aead.id()]);
    if agreement.compliant_export {
        write_record(&mut out, false, COMPLIANT_128GCM_EXPORT, &[]);
    }
    if let Some(port) = policy.ntp_port {
        write_u16_record(&mut out, true, kind::PORT_NEGOTIATION, &[port]);
    }
    if let Some(server) = &policy.ntp_server {
        write_record(&mut out, true, kind::SERVER_NEGOTIATION, server.as_bytes());
    }
    let mut ciphers = CookieCiphers::new(keys);
    let mut cookie = [0u8; cookie::COOKIE_LEN];
    let cookie = &mut cookie[..cookie::cookie_len(session.aead)];
    for _ in 0..COOKIES_PER_SESSION {
        cookie::seal_into(session, &mut ciphers, rng, cookie)?;
        write_record(&mut out, false, kind::NEW_COOKIE, cookie);
    }
    write_record(&mut out, true, kind::END_OF_MESSAGE, &[]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aead::Key;
    use crate::record::{scan_message, Scan};
    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn msg(records: &[(bool, u16, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (c, k, b) in records {
            write_record(&mut out, *c, *k, b);
        }
        write_record(&mut out, true, kind::END_OF_MESSAGE, &[]);
        out
    }

    const NP: (bool, u16, &[u8]) = (true, kind::NEXT_PROTOCOL, &[0, 0]);
    const AEAD15: (bool, u16, &[u8]) = (true, kind::AEAD_ALGORITHM, &[0, 15]);
    const AEAD30_15: (bool, u16, &[u8]) = (true, kind::AEAD_ALGORITHM, &[0, 30, 0, 15]);
    const COMPLIANT: (bool, u16, &[u8]) = (false, COMPLIANT_128GCM_EXPORT, &[]);

    fn chose(aead: Aead) -> Result<Agreement, Rejection> {
        Ok(Agreement {
            aead,
            compliant_export: false,
        })
    }

    #[test]
    fn chrony_style_request_is_accepted() {
        assert_eq!(decide(&msg(&[NP, AEAD15])), chose(Aead::AesSivCmac256));
        // Non-critical unknown records and negotiation hints are ignored.
        assert_eq!(
            decide(&msg(&[
                NP,
                AEAD15,
                (false, 2000, &[1, 2, 3]),
                (true, kind::PORT_NEGOTIATION, &[0, 1]),
                (false, kind::SERVER_NEGOTIATION, b"x")
            ])),
            chose(Aead::AesSivCmac256)
        );
        // Next Protocol may list other protocols too.
        assert_eq!(
            decide(&msg(&[
                (true, kind::NEXT_PROTOCOL, &[0x80, 0, 0, 0]),
                AEAD15
            ])),
            chose(Aead::AesSivCmac256)
        );
    }

    #[test]
    fn aes_128_gcm_siv_only_for_clients_that_derive_its_keys_as_the_rfc_says() {
        // chrony 4.6.1+: 30 then 15, and record 1024: 30, answered with 1024.
        assert_eq!(
            decide(&msg(&[NP, AEAD30_15, COMPLIANT])),
            Ok(Agreement {
                aead: Aead::AesGcmSiv128,
                compliant_export: true
            })
        );
        // chrony 4.4 to 4.6.0: 30 then 15 without it (they would derive
        // 30's keys with 15's context): 15.
        assert_eq!(decide(&msg(&[NP, AEAD30_15])), chose(Aead::AesSivCmac256));
        // ntpd-rs 1.9: 17 (which we lack) then 15: 15.
        assert_eq!(
            decide(&msg(&[NP, (true, kind::AEAD_ALGORITHM, &[0, 17, 0, 15])])),
            chose(Aead::AesSivCmac256)
        );
        // A client that knows only 30 follows the RFC: 30, no record.
        assert_eq!(
            decide(&msg(&[NP, (true, kind::AEAD_ALGORITHM, &[0, 30])])),
            chose(Aead::AesGcmSiv128)
        );
        // The client's preference wins among acceptable ones.
        assert_eq!(
            decide(&msg(&[
                NP,
                (true, kind::AEAD_ALGORITHM, &[0, 15, 0, 30]),
                COMPLIANT
            ])),
            chose(Aead::AesSivCmac256)
        );
        // 30 and something unknown, without record 1024: nothing we trust.
        assert_eq!(
            decide(&msg(&[NP, (true, kind::AEAD_ALGORITHM, &[0, 30, 0, 17])])),
            Err(Rejection::NoAead)
        );
    }

    #[test]
    fn every_rejection() {
        let bad = Err(Rejection::Error(ErrorCode::BadRequest));
        let cases: Vec<(Vec<u8>, Result<Agreement, Rejection>)> = vec![
            (
                msg(&[(true, 0x1234, &[]), NP, AEAD15]),
                Err(Rejection::Error(ErrorCode::UnrecognizedCriticalRecord)),
            ),
            (msg(&[AEAD15]), bad),
            (msg(&[NP, NP, AEAD15]), bad),
            (msg(&[NP]), bad),
            (msg(&[NP, AEAD15, AEAD15]), bad),
            (msg(&[(false, kind::NEXT_PROTOCOL, &[0, 0]), AEAD15]), bad),
            (msg(&[(true, kind::NEXT_PROTOCOL, &[]), AEAD15]), bad),
            (msg(&[(true, kind::NEXT_PROTOCOL, &[0]), AEAD15]), bad),
            (msg(&[NP, (true, kind::AEAD_ALGORITHM, &[])]), bad),
            (msg(&[NP, (true, kind::AEAD_ALGORITHM, &[0, 15, 0])]), bad),
            (msg(&[NP, AEAD15, (true, kind::ERROR, &[0, 1])]), bad),
            (msg(&[NP, AEAD15, (false, kind::WARNING, &[0, 1])]), bad),
            (
                msg(&[NP, AEAD15, (false, kind::NEW_COOKIE, &[1, 2, 3, 4])]),
                bad,
            ),
            (
                msg(&[NP, AEAD30_15, (false, COMPLIANT_128GCM_EXPORT, &[1])]),
                bad,
            ),
            (
                msg(&[(true, kind::NEXT_PROTOCOL, &[0x80, 0]), AEAD15]),
                Err(Rejection::NoProtocol),
            ),
            (
                msg(&[(true, kind::NEXT_PROTOCOL, &[0x80, 0])]),
                Err(Rejection::NoProtocol),
            ),
            (
                msg(&[NP, (true, kind::AEAD_ALGORITHM, &[0, 31, 0, 17])]),
                Err(Rejection::NoAead),
            ),
            (vec![0x80, 1, 0, 9, 0], bad),
        ];
        for (i, (m, want)) in cases.into_iter().enumerate() {
            assert_eq!(decide(&m), want, "case {i}");
        }
    }

    #[test]
    fn rejection_responses_are_well_formed() {
        for (r, first) in [
            (
                Rejection::Error(ErrorCode::BadRequest),
                (true, kind::ERROR, &[0u8, 1][..]),
            ),
            (
                Rejection::Error(ErrorCode::UnrecognizedCriticalRecord),
                (true, kind::ERROR, &[0, 0][..]),
            ),
            (
                Rejection::Error(ErrorCode::InternalServerError),
                (true, kind::ERROR, &[0, 2][..]),
            ),
            (Rejection::NoProtocol, (true, kind::NEXT_PROTOCOL, &[][..])),
            (Rejection::NoAead, (true, kind::NEXT_PROTOCOL, &[0, 0][..])),
        ] {
            let out = rejection_response(r);
            assert_eq!(scan_message(&out, 1024), Ok(Scan::Complete(out.len())));
            let recs: Vec<_> = records(&out).map(Result::unwrap).collect();
            assert_eq!((recs[0].critical, recs[0].kind, recs[0].body), first);
            assert!(recs.iter().all(|r| r.kind != kind::NEW_COOKIE));
        }
    }

    #[test]
    fn accept_response_carries_eight_cookies_that_open() {
        let mut rng = StdRng::seed_from_u64(9);
        let keys = KeySet::generate(0, &mut rng);
        let policy = KePolicy {
            ntp_server: Some("time.example".into()),
            ntp_port: Some(11123),
        };
        for (aead, compliant_export) in [(Aead::AesSivCmac256, false), (Aead::AesGcmSiv128, true)] {
            let n = aead.key_len();
            let session = SessionKeys {
                aead,
                c2s: Key::new(&vec![5; n]).unwrap(),
                s2c: Key::new(&vec![6; n]).unwrap(),
            };
            let agreement = Agreement {
                aead,
                compliant_export,
            };
            let out = accept_response(&session, &agreement, &keys, &policy, &mut rng).unwrap();
            assert_eq!(scan_message(&out, 4096), Ok(Scan::Complete(out.len())));
            let recs: Vec<_> = records(&out).map(Result::unwrap).collect();
            let cookies: Vec<_> = recs.iter().filter(|r| r.kind == kind::NEW_COOKIE).collect();
            assert_eq!(cookies.len(), COOKIES_PER_SESSION);
            for c in cookies {
                assert!(!c.critical);
                assert_eq!(c.body.len(), cookie::cookie_len(aead));
                assert_eq!(cookie::open(c.body, &keys), Ok(session.clone()));
            }
            let find = |k| recs.iter().find(|r| r.kind == k);
            assert_eq!(
                find(kind::AEAD_ALGORITHM).unwrap().body,
                &aead.id().to_be_bytes()
            );
            assert_eq!(
                find(COMPLIANT_128GCM_EXPORT).map(|r| (r.critical, r.body.len())),
                compliant_export.then_some((false, 0))
            );
            assert_eq!(
                find(kind::PORT_NEGOTIATION).unwrap().body,
                &11123u16.to_be_bytes()
            );
            assert_eq!(
                find(kind::SERVER_NEGOTIATION).unwrap().body,
                b"time.example"
            );
            assert!(find(kind::NEXT_PROTOCOL).unwrap().critical);
            assert_eq!(recs.last().unwrap().kind, kind::END_OF_MESSAGE);
        }
        // Without a policy, no negotiation records.
        let session = SessionKeys {
            aead: Aead::AesSivCmac256,
            c2s: Key::from([5; 32]),
            s2c: Key::from([6; 32]),
        };
        let agreement = Agreement {
            aead: Aead::AesSivCmac256,
            compliant_export: false,
        };
        let plain =
            accept_response(&session, &agreement, &keys, &KePolicy::default(), &mut rng).unwrap();
        assert!(records(&plain)
            .map(Result::unwrap)
            .all(|r| r.kind != kind::PORT_NEGOTIATION && r.kind != kind::SERVER_NEGOTIATION));
    }

    #[test]
    fn exporter_contexts() {
        assert_eq!(
            exporter_context(Aead::AesSivCmac256, false),
            [0, 0, 0, 15, 0]
        );
        assert_eq!(
            exporter_context(Aead::AesSivCmac256, true),
            [0, 0, 0, 15, 1]
        );
        assert_eq!(exporter_context(Aead::AesGcmSiv128, true), [0, 0, 0, 30, 1]);
    }

    proptest! {
        #[test]
        fn decide_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decide(&data);
        }

        #[test]
        fn unknown_critical_records_are_refused_anywhere(kind_ in 8u16..0x7fff, pos in 0usize..3) {
            prop_assume!(kind_ != COMPLIANT_128GCM_EXPORT);
            let mut recs = vec![NP, AEAD15];
            let body: &[u8] = &[];
            recs.insert(pos.min(2), (true, kind_, body));
            prop_assert_eq!(decide(&msg(&recs)), Err(Rejection::Error(ErrorCode::UnrecognizedCriticalRecord)));
            recs[pos.min(2)].0 = false;
            prop_assert_eq!(decide(&msg(&recs)), chose(Aead::AesSivCmac256));
        }
    }
}
