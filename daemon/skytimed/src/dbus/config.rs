//! The `[dbus]` section of skytime.toml.

use serde::Deserialize;

/// The `[dbus]` section.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DbusConfig {
    /// Offer the management API.
    pub enabled: bool,
    /// `"system"` (the system bus; `DBUS_SYSTEM_BUS_ADDRESS` overrides its
    /// address, as everywhere) or a D-Bus address such as
    /// `"unix:path=/run/skytime/bus"`.
    pub bus: String,
    /// Group whose members may change the appliance (root always may).
    pub admin_group: String,
}

impl Default for DbusConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            bus: "system".to_owned(),
            admin_group: "skytime-admin".to_owned(),
        }
    }
}
