//! The NTS-KE client's side (RFC 8915 section 4): the request, and the
//! checks of the server's response, sans IO.
//!
//! The I/O layer opens TLS 1.3 with ALPN `ntske/1`, writes [`request`],
//! reads until [`crate::record::scan_message`] says the message is whole,
//! hands it to [`parse_response`], and exports the session keys for the
//! algorithm it names ([`crate::ke::exporter_context`]).

use crate::aead::Aead;
use crate::ke::NEXT_PROTOCOL_NTPV4;
use crate::record::{kind, records, write_record, write_u16_record, ErrorCode};

/// Longest response accepted: eight cookies of any sensible size and the
/// negotiation records fit many times over.
pub const MAX_RESPONSE: usize = 64 * 1024;
/// Longest cookie accepted (RFC 8915 gives no limit; ours are 104 bytes,
/// chrony's about 100).
pub const MAX_COOKIE: usize = 1024;

/// What a successful key exchange gives, besides the keys TLS exports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeResponse {
    pub aead: Aead,
    pub cookies: Vec<Vec<u8>>,
    /// Where to send NTP, if the server names another host.
    pub server: Option<String>,
    /// The NTP port, if the server names one.
    pub port: Option<u16>,
}

/// Why a response gives no session.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeClientError {
    #[error("the server sent an NTS-KE error: {}", .0.as_str())]
    ServerError(ErrorCode),
    #[error("the server does not offer NTPv4 over NTS")]
    NoProtocol,
    #[error("the server accepts none of our AEAD algorithms")]
    NoAead,
    #[error("the server sent no cookie")]
    NoCookies,
    #[error("malformed NTS-KE response: {0}")]
    Malformed(String),
    #[error("the response has an unknown critical record (type {0})")]
    UnknownCriticalRecord(u16),
}

/// The request: NTPv4, and the algorithms we speak, most preferred first.
/// AES-SIV-CMAC-256 leads: every server has it (RFC 8915 makes it
/// mandatory), and AES-128-GCM-SIV's keys are derived differently by
/// chrony 4.4 to 4.6.0 than by the RFC, which a client cannot detect.
pub fn request() -> Vec<u8> {
    let mut out = Vec::with_capacity(20);
    write_u16_record(&mut out, true, kind::NEXT_PROTOCOL, &[NEXT_PROTOCOL_NTPV4]);
    let ids: Vec<u16> = [Aead::AesSivCmac256, Aead::AesGcmSiv128]
        .iter()
        .map(|a| a.id())
        .collect();
    write_u16_record(&mut out, true, kind::AEAD_ALGORITHM, &ids);
    write_record(&mut out, true, kind::END_OF_MESSAGE, &[]);
    out
}

/// Checks a whole response message and collects what it grants.
pub fn parse_response(message: &[u8]) -> Result<KeResponse, KeClientError> {
    let malformed = |s: &str| KeClientError::Malformed(s.to_owned());
    let (mut protocol, mut aead, mut server, mut port) = (None, None, None, None);
    let mut cookies = Vec::new();
    let mut ended = false;
    for record in records(message) {
        let r = record.map_err(|e| KeClientError::Malformed(e.to_string()))?;
        if ended {
            return Err(malformed("records after End of Message"));
        }
        match r.kind {
            kind::END_OF_MESSAGE => ended = true,
            kind::ERROR => {
                let code = r
                    .u16_values()
                    .and_then(|mut v| v.next())
                    .ok_or_else(|| malformed("an Error record without a code"))?;
                return Err(KeClientError::ServerError(ErrorCode::from_code(code)));
            }
            kind::NEXT_PROTOCOL => {
                let values: Vec<u16> = r
                    .u16_values()
                    .ok_or_else(|| malformed("a Next Protocol record of odd length"))?
                    .collect();
                if protocol.replace(values).is_some() {
                    return Err(malformed("two Next Protocol records"));
                }
            }
            kind::AEAD_ALGORITHM => {
                let values: Vec<u16> = r
                    .u16_values()
                    .ok_or_else(|| malformed("an AEAD record of odd length"))?
                    .collect();
                if aead.replace(values).is_some() {
                    return Err(malformed("two AEAD records"));
                }
            }
            kind::NEW_COOKIE => {
                if r.body.is_empty() || r.body.len() > MAX_COOKIE {
                    return Err(malformed("a cookie of an unusable length"));
                }
                cookies.push(r.body.to_vec());
            }
            kind::SERVER_NEGOTIATION => {
                let name = std::str::from_utf8(r.body)
                    .ok()
                    .filter(|s| !s.is_empty() && s.is_ascii())
                    .ok_or_else(|| malformed("a Server record that is no name"))?;
                server = Some(name.to_owned());
            }
            kind::PORT_NEGOTIATION => {
                let p = r
                    .u16_values()
                    .and_then(|mut v| v.next())
                    .filter(|_| r.body.len() == 2)
                    .ok_or_else(|| malformed("a Port record that is no port"))?;
                port = Some(p);
            }
            // Warnings are advice; unknown non-critical records may be
            // skipped (RFC 8915 4.1.4, 4.1.6).
            kind::WARNING => {}
            other if r.critical => return Err(KeClientError::UnknownCriticalRecord(other)),
            _ => {}
        }
    }
    if !ended {
        return Err(malformed("no End of Message record"));
    }
    // RFC 8915 4.1.2: exactly one protocol, the one we asked for.
    match protocol.as_deref() {
        Some([NEXT_PROTOCOL_NTPV4]) => {}
        Some([]) | None => return Err(KeClientError::NoProtocol),
        Some(_) => return Err(malformed("the server chose a protocol we did not offer")),
    }
    let aead = match aead.as_deref() {
        Some([id]) => Aead::from_id(*id)
            .ok_or_else(|| malformed("the server chose an AEAD algorithm we did not offer"))?,
        Some([]) | None => return Err(KeClientError::NoAead),
        Some(_) => return Err(malformed("the server chose more than one AEAD algorithm")),
    };
    if cookies.is_empty() {
        return Err(KeClientError::NoCookies);
    }
    Ok(KeResponse {
        aead,
        cookies,
        server,
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aead::{Key, SessionKeys};
    use crate::ke::{accept_response, decide, rejection_response, KePolicy, Rejection};
    use crate::keyset::KeySet;
    use crate::record::{scan_message, Scan};
    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn our_request_is_what_our_server_accepts() {
        let r = request();
        assert_eq!(scan_message(&r, 1024), Ok(Scan::Complete(r.len())));
        assert_eq!(decide(&r).map(|a| a.aead), Ok(Aead::AesSivCmac256));
    }

    #[test]
    fn our_servers_response_parses_with_its_negotiation() {
        let mut rng = StdRng::seed_from_u64(1);
        let keys = KeySet::generate(0, &mut rng);
        let session = SessionKeys {
            aead: Aead::AesSivCmac256,
            c2s: Key::from([1; 32]),
            s2c: Key::from([2; 32]),
        };
        let policy = KePolicy {
            ntp_server: Some("ntp.example".into()),
            ntp_port: Some(11123),
        };
        let agreement = crate::ke::Agreement {
            aead: Aead::AesSivCmac256,
            compliant_export: false,
        };
        let out = accept_response(&session, &agreement, &keys, &policy, &mut rng).unwrap();
        let r = parse_response(&out).unwrap();
        assert_eq!(r.aead, Aead::AesSivCmac256);
        assert_eq!(r.cookies.len(), 8);
        assert_eq!(r.server.as_deref(), Some("ntp.example"));
        assert_eq!(r.port, Some(11123));
    }

    #[test]
    fn rejections_and_bad_responses_are_named() {
        let e = parse_response(&rejection_response(Rejection::Error(ErrorCode::BadRequest)));
        assert_eq!(e, Err(KeClientError::ServerError(ErrorCode::BadRequest)));
        assert_eq!(
            parse_response(&rejection_response(Rejection::NoProtocol)),
            Err(KeClientError::NoProtocol)
        );
        assert_eq!(
            parse_response(&rejection_response(Rejection::NoAead)),
            Err(KeClientError::NoAead)
        );
        let msg = |recs: &[(bool, u16, &[u8])]| {
            let mut out = Vec::new();
            for (c, k, b) in recs {
                write_record(&mut out, *c, *k, b);
            }
            write_record(&mut out, true, kind::END_OF_MESSAGE, &[]);
            out
        };
        let np: (bool, u16, &[u8]) = (true, kind::NEXT_PROTOCOL, &[0, 0]);
        let aead: (bool, u16, &[u8]) = (true, kind::AEAD_ALGORITHM, &[0, 15]);
        let cookie: (bool, u16, &[u8]) = (false, kind::NEW_COOKIE, &[9; 100]);
        assert_eq!(
            parse_response(&msg(&[np, aead])),
            Err(KeClientError::NoCookies)
        );
        assert!(parse_response(&msg(&[np, aead, cookie])).is_ok());
        assert_eq!(
            parse_response(&msg(&[np, aead, cookie, (true, 0x4321, &[])])),
            Err(KeClientError::UnknownCriticalRecord(0x4321))
        );
        assert!(parse_response(&msg(&[np, aead, cookie, (false, 0x4321, &[])])).is_ok());
        for bad in [
            msg(&[np, np, aead, cookie]),
            msg(&[np, (true, kind::AEAD_ALGORITHM, &[0, 17]), cookie]),
            msg(&[np, (true, kind::AEAD_ALGORITHM, &[0, 15, 0, 15]), cookie]),
            msg(&[(true, kind::NEXT_PROTOCOL, &[0, 1]), aead, cookie]),
            msg(&[np, aead, (false, kind::NEW_COOKIE, &[])]),
            msg(&[np, aead, cookie, (true, kind::PORT_NEGOTIATION, &[1])]),
        ] {
            assert!(
                matches!(parse_response(&bad), Err(KeClientError::Malformed(_))),
                "{:?}",
                parse_response(&bad)
            );
        }
        // Cut short: no End of Message.
        let whole = msg(&[np, aead, cookie]);
        assert!(parse_response(&whole[..whole.len() - 4]).is_err());
    }

    proptest! {
        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_response(&data);
        }
    }
}
