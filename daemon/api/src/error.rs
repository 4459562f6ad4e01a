//! The management API's errors. Each failure has its own D-Bus error name,
//! so that clients act on the name without parsing text; the message says
//! what was wrong and what is still in effect.

use zbus::message::{Header, Message};
use zbus::names::ErrorName;

/// Prefix of the project's own error names.
pub const ERROR_PREFIX: &str = "org.skytime.Error";

/// An error returned by a management method.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// `org.freedesktop.DBus.Error.InvalidArgs`: an argument is malformed
    /// (not PEM, too large, empty).
    #[error("{0}")]
    InvalidArgs(String),
    /// `org.freedesktop.DBus.Error.AccessDenied`: the caller may not change
    /// the appliance.
    #[error("{0}")]
    AccessDenied(String),
    /// `org.skytime.Error.InvalidConfig`: the configuration does not
    /// validate (the message has the line and the reason).
    #[error("{0}")]
    InvalidConfig(String),
    /// `org.skytime.Error.InvalidCertificate`: unparsable certificate or
    /// key, or the two do not belong together.
    #[error("{0}")]
    InvalidCertificate(String),
    /// `org.skytime.Error.CertificateExpired`: not valid any more.
    #[error("{0}")]
    CertificateExpired(String),
    /// `org.skytime.Error.NotAvailable`: the feature is disabled or does
    /// not apply to this configuration.
    #[error("{0}")]
    NotAvailable(String),
    /// `org.skytime.Error.Refused`: the daemon refused the change.
    #[error("{0}")]
    Refused(String),
    /// `org.skytime.Error.PersistFailed`: writing the data directory
    /// failed; the previous state is in effect.
    #[error("{0}")]
    PersistFailed(String),
    /// `org.skytime.Error.ApplyFailed`: the change failed part-way.
    #[error("{0}")]
    ApplyFailed(String),
    /// `org.skytime.Error.PowerFailed`: logind refused or is unreachable.
    #[error("{0}")]
    PowerFailed(String),
    // --- Updates (org.skytime.Appliance1.Update) ---
    /// `org.skytime.Error.BundleRejected`: RAUC or the install check
    /// refused the bundle (signature, compatible, format, a damaged or
    /// foreign file); the message carries RAUC's reason. Nothing was
    /// written.
    #[error("{0}")]
    BundleRejected(String),
    /// `org.skytime.Error.UpdateInProgress`: an install is running (or
    /// RAUC is busy); try again when it has completed.
    #[error("{0}")]
    UpdateInProgress(String),
    /// `org.skytime.Error.Downgrade`: the bundle is older than (or the
    /// same as) the running system; install it with the force option to
    /// go ahead anyway.
    #[error("{0}")]
    Downgrade(String),
    /// `org.skytime.Error.UpdateUnavailable`: RAUC is not on the bus (a
    /// development host, the demo) or cannot be reached.
    #[error("{0}")]
    UpdateUnavailable(String),
}

/// Makes the variant a name stands for.
type Make = fn(String) -> ApiError;

/// Every variant with its D-Bus name, in one place: the server names its
/// replies from it and clients recognise replies by it.
const NAMES: [(&str, Make); 14] = [
    (
        "org.freedesktop.DBus.Error.InvalidArgs",
        ApiError::InvalidArgs,
    ),
    (
        "org.freedesktop.DBus.Error.AccessDenied",
        ApiError::AccessDenied,
    ),
    ("org.skytime.Error.InvalidConfig", ApiError::InvalidConfig),
    (
        "org.skytime.Error.InvalidCertificate",
        ApiError::InvalidCertificate,
    ),
    (
        "org.skytime.Error.CertificateExpired",
        ApiError::CertificateExpired,
    ),
    ("org.skytime.Error.NotAvailable", ApiError::NotAvailable),
    ("org.skytime.Error.Refused", ApiError::Refused),
    ("org.skytime.Error.PersistFailed", ApiError::PersistFailed),
    ("org.skytime.Error.ApplyFailed", ApiError::ApplyFailed),
    ("org.skytime.Error.PowerFailed", ApiError::PowerFailed),
    ("org.skytime.Error.BundleRejected", ApiError::BundleRejected),
    (
        "org.skytime.Error.UpdateInProgress",
        ApiError::UpdateInProgress,
    ),
    ("org.skytime.Error.Downgrade", ApiError::Downgrade),
    (
        "org.skytime.Error.UpdateUnavailable",
        ApiError::UpdateUnavailable,
    ),
];

impl ApiError {
    /// The D-Bus error name.
    pub fn name(&self) -> &'static str {
        NAMES[self.index()].0
    }

    /// The message shown to the operator.
    pub fn message(&self) -> &str {
        match self {
            Self::InvalidArgs(m)
            | Self::AccessDenied(m)
            | Self::InvalidConfig(m)
            | Self::InvalidCertificate(m)
            | Self::CertificateExpired(m)
            | Self::NotAvailable(m)
            | Self::Refused(m)
            | Self::PersistFailed(m)
            | Self::ApplyFailed(m)
            | Self::PowerFailed(m)
            | Self::BundleRejected(m)
            | Self::UpdateInProgress(m)
            | Self::Downgrade(m)
            | Self::UpdateUnavailable(m) => m,
        }
    }

    fn index(&self) -> usize {
        match self {
            Self::InvalidArgs(_) => 0,
            Self::AccessDenied(_) => 1,
            Self::InvalidConfig(_) => 2,
            Self::InvalidCertificate(_) => 3,
            Self::CertificateExpired(_) => 4,
            Self::NotAvailable(_) => 5,
            Self::Refused(_) => 6,
            Self::PersistFailed(_) => 7,
            Self::ApplyFailed(_) => 8,
            Self::PowerFailed(_) => 9,
            Self::BundleRejected(_) => 10,
            Self::UpdateInProgress(_) => 11,
            Self::Downgrade(_) => 12,
            Self::UpdateUnavailable(_) => 13,
        }
    }

    /// The error a reply named `name` stands for, if it is one of the
    /// API's (a client's side of [`name`](Self::name)).
    pub fn from_reply(name: &str, message: impl Into<String>) -> Option<Self> {
        NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, make)| make(message.into()))
    }

    /// The API error in a failed call, if it is one (not a transport
    /// failure or a name the API does not use).
    pub fn from_call(e: &zbus::Error) -> Option<Self> {
        use zbus::DBusError;
        match e {
            zbus::Error::MethodError(name, message, _) => {
                Self::from_reply(name.as_str(), message.clone().unwrap_or_default())
            }
            zbus::Error::FDO(f) => {
                Self::from_reply(f.name().as_str(), f.description().unwrap_or_default())
            }
            _ => None,
        }
    }
}

impl zbus::DBusError for ApiError {
    fn create_reply(&self, call: &Header<'_>) -> zbus::Result<Message> {
        Message::error(call, self.name())?.build(&(self.message(),))
    }

    fn name(&self) -> ErrorName<'_> {
        ErrorName::from_static_str_unchecked(ApiError::name(self))
    }

    fn description(&self) -> Option<&str> {
        Some(self.message())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_its_own_valid_name_and_is_recognised_by_it() {
        let mut seen = std::collections::HashSet::new();
        for (name, make) in NAMES {
            let e = make("why".to_owned());
            assert_eq!(e.name(), name, "{e:?} is listed under another name");
            assert!(ErrorName::try_from(name).is_ok(), "{name}");
            assert_ne!(name, "org.freedesktop.DBus.Error.Failed");
            assert!(seen.insert(name), "{name} is used twice");
            assert_eq!(ApiError::from_reply(name, "why"), Some(e.clone()));
            assert_eq!(e.message(), "why");
        }
        assert_eq!(
            ApiError::from_reply("org.freedesktop.DBus.Error.ServiceUnknown", ""),
            None
        );
    }
}
