//! The operator roles a client certificate is enrolled with.

use serde::{Deserialize, Serialize};

/// What an operator may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Every read: status, metrics, the JSON API's GET routes.
    Read,
    /// Everything, writes included.
    Admin,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Admin => "admin",
        }
    }
}
