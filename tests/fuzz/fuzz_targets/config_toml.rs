//! Configuration files: skytimed's (base, and managed in the data
//! directory) and the management gateway's. A managed file that parses
//! lives in its data directory, whatever it said; parsing is repeatable.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skytime_mgmtd::config::GatewayConfig;
use skytimed::config::Config;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("/etc/skytime/skytime.toml");
    let base = Config::parse(text, path);
    if let Err(e) = &base {
        assert!(
            e.to_string().contains("skytime.toml"),
            "the error names the file: {e}"
        );
    }
    let data_dir = Path::new("/var/lib/skytime");
    let managed = Config::parse_managed(text, &data_dir.join("skytime.toml"), data_dir);
    if let Ok(m) = &managed {
        assert_eq!(m.data_dir, data_dir);
        assert!(
            base.is_ok(),
            "a managed file that parses parses as a base file"
        );
    }
    assert_eq!(
        Config::parse(text, path).ok(),
        base.ok(),
        "parsing is repeatable"
    );
    let _ = GatewayConfig::parse(text, Path::new("/etc/skytime/mgmtd.toml"));
});
