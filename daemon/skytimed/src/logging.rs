//! Structured logs to stderr, in a form that reads well under journald.

use crate::config::LogLevel;
use std::io::IsTerminal;
use std::sync::OnceLock;
use tracing_subscriber::EnvFilter;

type SetFilter = Box<dyn Fn(EnvFilter) -> Result<(), String> + Send + Sync>;

/// Replaces the level filter at run time (`[log] level` applied over
/// D-Bus); unset when `SKYTIME_LOG` chose the filter or init did not run.
static SET_FILTER: OnceLock<SetFilter> = OnceLock::new();

/// Installs the global subscriber. `SKYTIME_LOG` (tracing's filter syntax,
/// for example `skytimed=debug`) overrides `level` for targeted debugging.
pub fn init(level: LogLevel) {
    let from_env = EnvFilter::try_from_env("SKYTIME_LOG").ok();
    let env_chosen = from_env.is_some();
    let filter = from_env.unwrap_or_else(|| EnvFilter::new(level.to_string()));
    // journald stamps every line itself and shows no colours.
    let under_journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let ansi = !under_journald && std::io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(ansi);
    // The two builders have different types, hence two handles; filter
    // reloading must be the last step of each.
    let result = if under_journald {
        let b = builder
            .without_time()
            .with_env_filter(filter)
            .with_filter_reloading();
        let handle = b.reload_handle();
        b.try_init().map(|()| -> SetFilter {
            Box::new(move |f| handle.reload(f).map_err(|e| e.to_string()))
        })
    } else {
        let b = builder.with_env_filter(filter).with_filter_reloading();
        let handle = b.reload_handle();
        b.try_init().map(|()| -> SetFilter {
            Box::new(move |f| handle.reload(f).map_err(|e| e.to_string()))
        })
    };
    // A second init (tests) keeps the first subscriber.
    if let Ok(set) = result {
        if !env_chosen {
            let _ = SET_FILTER.set(set);
        }
    }
}

/// Changes the log level of the running daemon. Returns false when it
/// cannot (the filter came from `SKYTIME_LOG`, which then stays in force).
pub fn set_level(level: LogLevel) -> bool {
    match SET_FILTER.get() {
        Some(set) => match set(EnvFilter::new(level.to_string())) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!("cannot change the log level: {e}");
                false
            }
        },
        None => false,
    }
}
