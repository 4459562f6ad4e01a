//! Configuration files read the one way every skytime program reads
//! them: TOML into a serde type whose parsers check every value, with
//! errors that name the file and, through the TOML error, the line.

use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};

/// A configuration that could not be loaded: the file, and what is wrong
/// (the TOML error text names line and column).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid configuration in {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// Reads and validates `path`.
pub fn load<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text, path)
}

/// Validates `text` as if it had been read from `path` (used in error
/// messages only).
pub fn parse<T: DeserializeOwned>(text: &str, path: &Path) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Invalid {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Small {
        n: u8,
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = parse::<Small>("\nn = 300\n", Path::new("x.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("x.toml") && e.contains("line 2"), "{e}");
        let e = load::<Small>(Path::new("/nonexistent.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("cannot read configuration file /nonexistent.toml"),
            "{e}"
        );
    }
}
