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
    /// Run when the host name changes, after `<data_dir>/hostname` was
    /// written, with the name in the environment as `SKYTIME_HOSTNAME`.
    pub hostname_command: Vec<String>,
}

impl Default for NetworkControl {
    fn default() -> Self {
        Self {
            directory: PathBuf::from("/run/systemd/network"),
            reload_command: vec!["networkctl".into(), "reload".into()],
            // skytime-identity.service (root) sets the kernel's host name
            // from <data_dir>/hostname, as on every boot. Not hostnamed's
            // transient name: with a static /etc/hostname (the image's,
            // read-only) hostnamed keeps the static one.
            hostname_command: vec![
                "systemctl".into(),
                "restart".into(),
                "skytime-identity.service".into(),
            ],
        }
    }
}

/// Runs `argv` with the environment `env` added; waits for it; its stderr
/// is in the error when it fails.
pub fn run(argv: &[String], env: &[(&str, &str)]) -> Result<(), String> {
    let Some((program, args)) = argv.split_first() else {
        return Ok(());
    };
    let out = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{} {} failed ({}): {}",
            program,
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
