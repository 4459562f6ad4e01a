//! The D-Bus `Config.Apply` document: the daemon's own apply path
//! (validation, data directory rule, which settings need a restart) as a
//! dry run, which writes nothing. Apply accepts exactly what
//! `parse_managed` accepts, and a dry run names no file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skytimed::config::managed::{apply, Running};
use skytimed::config::Config;
use skytimed::nts::NtsError;
use std::path::PathBuf;

/// A daemon running the defaults with its data in a directory that does
/// not exist: a write there (which a dry run must not do) would fail.
struct Defaults(Config);

impl Running for Defaults {
    fn running(&self) -> Config {
        self.0.clone()
    }
    fn apply_live(&self, _: &Config) -> Vec<String> {
        panic!("a dry run applied a configuration")
    }
    fn reload_certificate(&self) -> Result<(), NtsError> {
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let running = Defaults(Config {
        data_dir: PathBuf::from("/nonexistent/skytime-fuzz"),
        ..Config::default()
    });
    let outcome = apply(&running, text, true);
    let parsed = Config::parse_managed(text, &running.0.managed_path(), &running.0.data_dir);
    assert_eq!(outcome.is_ok(), parsed.is_ok());
    if let Ok(o) = outcome {
        assert_eq!(o.path, None);
    }
});
