//! The alarms there are, their names and severities.

/// How bad an alarm is. The appliance's verdict is FAIL while a critical
/// alarm is active, DEGRADED while only warnings are, OK otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Time is still served within its stated error bound.
    Warning,
    /// Clients do not get good time (or cannot authenticate it).
    Critical,
}

impl Severity {
    /// "warning" or "critical", as the API spells it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Warning => "warning",
            Self::Critical => "critical",
        }
    }
}

/// Every alarm the appliance raises.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AlarmKind {
    NotSynchronized,
    HoldoverLimitReached,
    CertificateExpired,
    Holdover,
    NmeaMissing,
    NoGpsFix,
    PpsMissing,
    PpsRejected,
    ClockStepped,
    CertificateExpiring,
    LeapTableExpired,
    UpdateFailed,
    UpdateRolledBack,
    GpsDisagrees,
    GpsJumped,
    UpstreamUnreachable,
    UpstreamFalseticker,
}

impl AlarmKind {
    /// Every kind, in the order reports list them.
    pub const ALL: [Self; 17] = [
        Self::NotSynchronized,
        Self::HoldoverLimitReached,
        Self::CertificateExpired,
        Self::Holdover,
        Self::NmeaMissing,
        Self::NoGpsFix,
        Self::PpsMissing,
        Self::PpsRejected,
        Self::ClockStepped,
        Self::CertificateExpiring,
        Self::LeapTableExpired,
        Self::UpdateFailed,
        Self::UpdateRolledBack,
        Self::GpsDisagrees,
        Self::GpsJumped,
        Self::UpstreamUnreachable,
        Self::UpstreamFalseticker,
    ];

    /// The stable name clients and metrics labels use.
    pub fn name(self) -> &'static str {
        match self {
            Self::NotSynchronized => "not_synchronized",
            Self::HoldoverLimitReached => "holdover_limit_reached",
            Self::CertificateExpired => "certificate_expired",
            Self::Holdover => "holdover",
            Self::NmeaMissing => "nmea_missing",
            Self::NoGpsFix => "no_gps_fix",
            Self::PpsMissing => "pps_missing",
            Self::PpsRejected => "pps_rejected",
            Self::ClockStepped => "clock_stepped",
            Self::CertificateExpiring => "certificate_expiring",
            Self::LeapTableExpired => "leap_table_expired",
            Self::UpdateFailed => "update_failed",
            Self::UpdateRolledBack => "update_rolled_back",
            Self::GpsDisagrees => "gps_disagrees",
            Self::GpsJumped => "gps_jumped",
            Self::UpstreamUnreachable => "upstream_unreachable",
            Self::UpstreamFalseticker => "upstream_falseticker",
        }
    }

    /// The kind named `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    pub fn severity(self) -> Severity {
        match self {
            // A GPS that lies is critical even while the network sources
            // carry on: the appliance's own reference is under attack or
            // broken, and an operator must look.
            Self::NotSynchronized
            | Self::HoldoverLimitReached
            | Self::CertificateExpired
            | Self::GpsDisagrees
            | Self::GpsJumped => Severity::Critical,
            _ => Severity::Warning,
        }
    }
}
