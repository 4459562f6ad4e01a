//! The RAUC hook's command and environment. Input: the command on the
//! first line, then `NAME=VALUE` lines (any bytes, as the environment
//! may hold). A parse either fails naming what, or gives values that were
//! in the environment.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skytime_ota::hook_env::{parse, HookEnv};
use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

fuzz_target!(|data: &[u8]| {
    let mut lines = data.split(|&b| b == b'\n');
    let args: Vec<OsString> = lines
        .next()
        .map(|a| vec![OsString::from_vec(a.to_vec())])
        .unwrap_or_default();
    let env: HashMap<String, OsString> = lines
        .filter_map(|l| {
            let eq = l.iter().position(|&b| b == b'=')?;
            let name = String::from_utf8(l[..eq].to_vec()).ok()?;
            Some((name, OsString::from_vec(l[eq + 1..].to_vec())))
        })
        .collect();
    match parse(&args, |name| env.get(name).cloned()) {
        Ok(HookEnv::InstallCheck(b)) => {
            assert_eq!(
                Some(&OsString::from(&b.system_compatible)),
                env.get("RAUC_SYSTEM_COMPATIBLE")
            );
        }
        Ok(HookEnv::Slot { env: s, .. }) => {
            assert!(s.slot.name.starts_with(&format!("{}.", s.slot.class)));
            assert_eq!(s.image.digest.len(), 64);
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
