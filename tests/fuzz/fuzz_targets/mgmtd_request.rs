//! The management gateway's request parsers: the query string (first
//! line: percent decoding, typed parameters, the route lookup by path)
//! and a JSON body (the rest) as `read_json` takes it, each argument
//! converted to the D-Bus type of every signature the routes use. A
//! string, boolean or integer that converts converts back to the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value as Json;
use skytime_mgmtd::appliance::{from_json, to_json};
use skytime_mgmtd::routes::{find, percent_decode, query_args};

const SIGNATURES: [&str; 9] = ["s", "b", "u", "i", "x", "t", "d", "a{sv}", "as"];

fuzz_target!(|data: &[u8]| {
    let (first, body) = match data.iter().position(|&b| b == b'\n') {
        Some(n) => (&data[..n], &data[n + 1..]),
        None => (data, &data[..0]),
    };
    let first = String::from_utf8_lossy(first);
    let (path, query) = first.split_once('?').unwrap_or((&first, ""));
    let _ = find(&hyper::Method::GET, path);
    let _ = find(&hyper::Method::POST, &percent_decode(path));
    let mut args = query_args(Some(query));
    if let Ok(Json::Object(m)) = serde_json::from_slice::<Json>(body) {
        args.extend(m);
    }
    for (name, value) in &args {
        for signature in SIGNATURES {
            let Ok(converted) = from_json(name, signature, value) else {
                continue;
            };
            if matches!(signature, "s" | "b" | "x") {
                assert_eq!(&to_json(&converted), value, "{signature} round-trips");
            }
        }
    }
});
