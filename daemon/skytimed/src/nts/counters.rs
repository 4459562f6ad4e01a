//! What NTS has done, counted: handshakes, NTS-protected requests, keys.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

macro_rules! counters {
    ($($name:ident: $doc:literal,)*) => {
        /// Live counters (atomics), shared by the KE server, the NTP hook
        /// and the key store.
        #[derive(Debug, Default)]
        pub struct NtsCounters {
            $(#[doc = $doc] pub $name: AtomicU64,)*
        }

        /// A copy of the counters at one moment.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
        pub struct NtsStats {
            $(#[doc = $doc] pub $name: u64,)*
        }

        impl NtsCounters {
            pub fn snapshot(&self) -> NtsStats {
                NtsStats { $($name: self.$name.load(Relaxed),)* }
            }
        }

        impl NtsStats {
            /// (name, value) pairs, for logs and the management API.
            pub fn pairs(&self) -> Vec<(&'static str, u64)> {
                vec![$((stringify!($name), self.$name),)*]
            }
        }
    };
}

counters! {
    ke_connections: "TCP connections accepted for NTS-KE.",
    ke_sessions: "NTS-KE sessions that ended with cookies sent.",
    ke_tls_failed: "TLS handshakes that failed (TLS 1.2 or older, bad hello, alerts).",
    ke_no_alpn: "Clients that did not offer ALPN ntske/1 (refused before the handshake).",
    ke_bad_request: "Requests answered with error 1 (bad request), oversized or truncated ones included.",
    ke_unrecognized_critical: "Requests answered with error 0 (unrecognized critical record).",
    ke_internal_error: "Requests answered with error 2 (internal server error).",
    ke_no_protocol: "Requests offering no protocol we speak (empty Next Protocol sent).",
    ke_no_aead: "Requests offering no AEAD algorithm we support (empty AEAD record sent).",
    ke_too_large: "Requests longer than ke_max_request (part of ke_bad_request).",
    ke_aead_15: "Key exchanges that chose AES-SIV-CMAC-256 (AEAD 15).",
    ke_aead_30: "Key exchanges that chose AES-128-GCM-SIV (AEAD 30).",
    ke_truncated: "Connections closed before a whole request arrived.",
    ke_timeouts: "Connections that overran ke_timeout.",
    ke_evicted: "Connections closed to make room at ke_max_connections.",
    ntp_authentic: "NTS requests that verified and were answered.",
    ntp_cookies_issued: "Fresh cookies sent in NTS replies.",
    ntp_nak_unknown_key: "NAKs for cookies of a master key no longer (or never) held.",
    ntp_nak_bad_cookie: "NAKs for cookies that did not decrypt or had a wrong length.",
    ntp_auth_failed: "NTS requests whose authenticator did not verify (dropped).",
    ntp_malformed: "NTS requests with missing, duplicated or malformed fields (dropped).",
    ntp_not_nts: "Requests with extension fields but no NTS fields.",
    key_rotations: "Master key rotations done by this server.",
    key_reloads: "Master key file reloads (follower role).",
    key_errors: "Master key file writes or reloads that failed.",
    cert_reloads: "Certificate reloads that took effect.",
    cert_reload_failures: "Certificate reloads refused (the old certificate stayed).",
}

impl NtsCounters {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }
}

impl NtsStats {
    /// Adds what one NTP server thread counted (the NTP side of NTS is
    /// counted per thread, see skytime-nts's `NtpCounts`).
    pub fn add_ntp(&mut self, c: &skytime_nts::server::NtpCounts) {
        self.ntp_authentic += c.authentic.load(Relaxed);
        self.ntp_cookies_issued += c.cookies_issued.load(Relaxed);
        self.ntp_nak_unknown_key += c.nak_unknown_key.load(Relaxed);
        self.ntp_nak_bad_cookie += c.nak_bad_cookie.load(Relaxed);
        self.ntp_auth_failed += c.auth_failed.load(Relaxed);
        self.ntp_malformed += c.malformed.load(Relaxed);
        self.ntp_not_nts += c.not_nts.load(Relaxed);
    }
}

impl fmt::Display for NtsStats {
    /// Non-zero counters as `name=value`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (k, v) in self.pairs().into_iter().filter(|(_, v)| *v != 0) {
            write!(f, "{}{k}={v}", if first { "" } else { " " })?;
            first = false;
        }
        Ok(())
    }
}
