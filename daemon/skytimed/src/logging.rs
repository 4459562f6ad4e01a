//! Structured logs to stderr, in a form that reads well under journald.

use crate::config::LogLevel;
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `SKYTIME_LOG` (tracing's filter syntax,
/// for example `skytimed=debug`) overrides `level` for targeted debugging.
pub fn init(level: LogLevel) {
    let filter = EnvFilter::try_from_env("SKYTIME_LOG")
        .unwrap_or_else(|_| EnvFilter::new(level.to_string()));
    // journald stamps every line itself and shows no colours.
    let under_journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(!under_journald && std::io::stderr().is_terminal());
    let result = if under_journald {
        builder.without_time().try_init()
    } else {
        builder.try_init()
    };
    // A second init (tests) keeps the first subscriber.
    let _ = result;
}
