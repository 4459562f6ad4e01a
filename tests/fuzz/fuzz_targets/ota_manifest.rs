//! RAUC bundle manifests and versions: what parses, written and parsed
//! again, is the same manifest (and version).
#![no_main]

use libfuzzer_sys::fuzz_target;
use skytime_ota::manifest::Manifest;
use skytime_ota::version::Version;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(manifest) = text.parse::<Manifest>() {
        let written = manifest.to_string();
        let again: Manifest = written
            .parse()
            .unwrap_or_else(|e| panic!("a written manifest parses: {e}\n{written}"));
        assert_eq!(again, manifest);
    }
    for line in text.lines() {
        if let Ok(version) = line.parse::<Version>() {
            let again: Version = version
                .to_string()
                .parse()
                .expect("a written version parses");
            assert_eq!(again, version);
            assert_eq!(again.cmp(&version), std::cmp::Ordering::Equal);
        }
    }
});
