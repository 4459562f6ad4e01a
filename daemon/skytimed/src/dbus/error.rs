//! D-Bus errors of the management API. Each failure has its own error
//! name so that clients can act on it without parsing text; the message
//! says what was wrong and that nothing changed.

use super::backend::BackendError;
use zbus::message::{Header, Message};
use zbus::names::ErrorName;

/// Prefix of the project's own error names.
pub const ERROR_PREFIX: &str = "org.skytime.Error";

/// An error returned by a management method.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// `org.freedesktop.DBus.Error.InvalidArgs`: an argument is malformed
    /// (not PEM, not UTF-8 TOML, empty).
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
}

impl ApiError {
    pub fn error_name(&self) -> &'static str {
        match self {
            Self::InvalidArgs(_) => "org.freedesktop.DBus.Error.InvalidArgs",
            Self::AccessDenied(_) => "org.freedesktop.DBus.Error.AccessDenied",
            Self::InvalidConfig(_) => "org.skytime.Error.InvalidConfig",
            Self::InvalidCertificate(_) => "org.skytime.Error.InvalidCertificate",
            Self::CertificateExpired(_) => "org.skytime.Error.CertificateExpired",
            Self::NotAvailable(_) => "org.skytime.Error.NotAvailable",
            Self::Refused(_) => "org.skytime.Error.Refused",
            Self::PersistFailed(_) => "org.skytime.Error.PersistFailed",
            Self::ApplyFailed(_) => "org.skytime.Error.ApplyFailed",
            Self::PowerFailed(_) => "org.skytime.Error.PowerFailed",
        }
    }

    fn message(&self) -> &str {
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
            | Self::PowerFailed(m) => m,
        }
    }
}

impl From<BackendError> for ApiError {
    fn from(e: BackendError) -> Self {
        match e {
            BackendError::NotAvailable(m) => Self::NotAvailable(m),
            BackendError::Refused(m) => Self::Refused(m),
            BackendError::Failed(m) => Self::ApplyFailed(m),
        }
    }
}

impl zbus::DBusError for ApiError {
    fn create_reply(&self, call: &Header<'_>) -> zbus::Result<Message> {
        Message::error(call, self.error_name())?.build(&(self.message(),))
    }

    fn name(&self) -> ErrorName<'_> {
        ErrorName::from_static_str_unchecked(self.error_name())
    }

    fn description(&self) -> Option<&str> {
        Some(self.message())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_a_valid_specific_name() {
        let all = [
            ApiError::InvalidArgs(String::new()),
            ApiError::AccessDenied(String::new()),
            ApiError::InvalidConfig(String::new()),
            ApiError::InvalidCertificate(String::new()),
            ApiError::CertificateExpired(String::new()),
            ApiError::NotAvailable(String::new()),
            ApiError::Refused(String::new()),
            ApiError::PersistFailed(String::new()),
            ApiError::ApplyFailed(String::new()),
            ApiError::PowerFailed(String::new()),
        ];
        for e in &all {
            let name = e.error_name();
            assert!(ErrorName::try_from(name).is_ok(), "{name}");
            assert_ne!(name, "org.freedesktop.DBus.Error.Failed");
        }
    }
}
