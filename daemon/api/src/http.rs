//! The management API over HTTPS, as the gateway (`skytime-mgmtd`)
//! serves it and clients (`skytimectl --host`) call it. It mirrors the
//! D-Bus contract one to one, so both sides build paths and read errors
//! from here:
//!
//! - a method is `/api/v1/<Interface>/<Member>`, the interface without
//!   its `org.skytime.Appliance1.` prefix (`/api/v1/Sources/GetSources`):
//!   GET for reads, POST for writes with a JSON object of the method's
//!   arguments under their introspection names
//!   (`{"toml": "...", "dry_run": true}`) as the body. The reply is the
//!   record (or list of records) as JSON, keys as on D-Bus.
//! - an interface's properties, together: GET
//!   `/api/v1/<Interface>/properties` (`/api/v1/Tracking/properties` is
//!   the tracking record).
//! - a failure: an HTTP status from [`status_of`] and an [`ErrorBody`]
//!   naming the D-Bus error (`org.skytime.Error.InvalidConfig`), or one
//!   of the gateway's own ([`names`]).

use serde::{Deserialize, Serialize};

/// Where the API's routes start.
pub const PREFIX: &str = "/api/v1";

/// The last part of an interface name ("Sources" for
/// `org.skytime.Appliance1.Sources`).
pub fn short(interface: &str) -> &str {
    interface.rsplit('.').next().unwrap_or(interface)
}

/// The route of a D-Bus method.
pub fn method_path(interface: &str, member: &str) -> String {
    format!("{PREFIX}/{}/{member}", short(interface))
}

/// The route of an interface's properties.
pub fn properties_path(interface: &str) -> String {
    format!("{PREFIX}/{}/properties", short(interface))
}

/// The body of every failed request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorBody {
    /// The D-Bus error name (or one of [`names`]).
    pub error: String,
    pub message: String,
}

/// The gateway's own error names, for failures that happen before or
/// beside the D-Bus call.
pub mod names {
    /// A body, upload or argument larger than the gateway accepts (413).
    pub const TOO_LARGE: &str = "org.skytime.Error.TooLarge";
    /// Too many writes from this client certificate (429).
    pub const RATE_LIMITED: &str = "org.skytime.Error.RateLimited";
    /// No such route (404).
    pub const NOT_FOUND: &str = "org.skytime.Error.NotFound";
    /// The route exists with another HTTP method (405).
    pub const METHOD_NOT_ALLOWED: &str = "org.skytime.Error.MethodNotAllowed";
    /// skytimed is not on the bus, or the bus cannot be reached (503).
    pub const UNAVAILABLE: &str = "org.skytime.Error.Unavailable";
    /// An uploaded bundle does not have the SHA-256 the client gave (422).
    pub const HASH_MISMATCH: &str = "org.skytime.Error.HashMismatch";
    /// An upload ended before its announced length (400).
    pub const TRUNCATED: &str = "org.skytime.Error.Truncated";
    /// Not enough space for the upload on the data partition (507).
    pub const NO_SPACE: &str = "org.skytime.Error.NoSpace";
    /// The request needs a client certificate the connection lacks, or a
    /// role the certificate lacks (403, named like D-Bus's refusals).
    pub const ACCESS_DENIED: &str = "org.freedesktop.DBus.Error.AccessDenied";
    /// Malformed request: not JSON, unknown or missing arguments (400).
    pub const INVALID_ARGS: &str = "org.freedesktop.DBus.Error.InvalidArgs";
}

/// The HTTP status for an error name: D-Bus errors of the API and of the
/// bus, and the gateway's own.
pub fn status_of(error: &str) -> u16 {
    match error {
        names::INVALID_ARGS | names::TRUNCATED => 400,
        names::ACCESS_DENIED => 403,
        names::NOT_FOUND => 404,
        names::METHOD_NOT_ALLOWED => 405,
        "org.skytime.Error.NotAvailable"
        | "org.skytime.Error.Refused"
        | "org.skytime.Error.UpdateInProgress"
        | "org.skytime.Error.Downgrade" => 409,
        names::TOO_LARGE => 413,
        "org.skytime.Error.InvalidConfig"
        | "org.skytime.Error.InvalidCertificate"
        | "org.skytime.Error.CertificateExpired"
        | "org.skytime.Error.BundleRejected"
        | names::HASH_MISMATCH => 422,
        names::RATE_LIMITED => 429,
        // A member the running skytimed does not have (an older version,
        // or an interface still to come).
        "org.freedesktop.DBus.Error.UnknownMethod"
        | "org.freedesktop.DBus.Error.UnknownInterface"
        | "org.freedesktop.DBus.Error.UnknownObject"
        | "org.freedesktop.DBus.Error.UnknownProperty" => 501,
        names::UNAVAILABLE
        | "org.skytime.Error.UpdateUnavailable"
        | "org.freedesktop.DBus.Error.ServiceUnknown"
        | "org.freedesktop.DBus.Error.NameHasNoOwner"
        | "org.freedesktop.DBus.Error.NoReply"
        | "org.freedesktop.DBus.Error.Disconnected" => 503,
        names::NO_SPACE => 507,
        _ => 500,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interface;

    #[test]
    fn paths_name_interface_and_member() {
        assert_eq!(
            method_path(interface::SOURCES, "GetSources"),
            "/api/v1/Sources/GetSources"
        );
        assert_eq!(
            properties_path(interface::TRACKING),
            "/api/v1/Tracking/properties"
        );
    }

    #[test]
    fn every_api_error_has_a_fitting_status() {
        use crate::ApiError;
        let cases = [
            (ApiError::InvalidArgs(String::new()), 400),
            (ApiError::AccessDenied(String::new()), 403),
            (ApiError::InvalidConfig(String::new()), 422),
            (ApiError::InvalidCertificate(String::new()), 422),
            (ApiError::CertificateExpired(String::new()), 422),
            (ApiError::NotAvailable(String::new()), 409),
            (ApiError::Refused(String::new()), 409),
            (ApiError::PersistFailed(String::new()), 500),
            (ApiError::ApplyFailed(String::new()), 500),
            (ApiError::PowerFailed(String::new()), 500),
            (ApiError::BundleRejected(String::new()), 422),
            (ApiError::UpdateInProgress(String::new()), 409),
            (ApiError::Downgrade(String::new()), 409),
            (ApiError::UpdateUnavailable(String::new()), 503),
        ];
        for (e, status) in cases {
            assert_eq!(status_of(e.name()), status, "{}", e.name());
        }
        assert_eq!(status_of(names::RATE_LIMITED), 429);
        assert_eq!(status_of(names::TOO_LARGE), 413);
        assert_eq!(status_of("org.freedesktop.DBus.Error.ServiceUnknown"), 503);
        assert_eq!(status_of("something.Else"), 500);
    }
}
