//! The `[network_control]` section of skytime.toml: where the rendered
//! `.network` file goes and the commands that make the system follow it.
//! The defaults are the appliance's; tests point them into a temporary
//! directory and at a script that records its calls.

use serde::Deserialize;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// `[network_control]`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkControl {
    /// systemd-networkd's runtime directory (files here take precedence
    /// over the image's `/usr/lib/systemd/network`).
    pub directory: PathBuf,
    /// Run after the file changed (program and arguments).
    pub reload_command: Vec<String>,
    /// Run with the new host name appended when it changes.
    pub hostname_command: Vec<String>,
}

impl Default for NetworkControl {
    fn default() -> Self {
        Self {
            directory: PathBuf::from("/run/systemd/network"),
            reload_command: vec!["networkctl".into(), "reload".into()],
            // hostnamed's transient name: /etc is read-only; the boot sets
            // the name from the data partition (skytime-identity).
            hostname_command: vec![
                "hostnamectl".into(),
                "--transient".into(),
                "hostname".into(),
            ],
        }
    }
}

/// Runs `argv` with `extra` appended; waits for it; its stderr is in the
/// error when it fails.
pub fn run(argv: &[String], extra: &[&str]) -> Result<(), String> {
    let Some((program, args)) = argv.split_first() else {
        return Ok(());
    };
    let out = Command::new(program)
        .args(args)
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{} {} failed ({}): {}",
            program,
            args.iter()
                .map(String::as_str)
                .chain(extra.iter().copied())
                .collect::<Vec<_>>()
                .join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
