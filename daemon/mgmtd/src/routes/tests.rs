use super::*;
use std::collections::{BTreeMap, BTreeSet};

/// The skytime interfaces of the checked-in introspection XML: for each,
/// its methods with their input argument names, and whether it has
/// properties.
fn contract() -> BTreeMap<String, (BTreeMap<String, Vec<String>>, bool)> {
    let xml = include_str!("../../../skytimed/dist/org.skytime.Appliance1.xml");
    let attr = |line: &str, name: &str| -> Option<String> {
        let key = format!("{name}=\"");
        let rest = &line[line.find(&key)? + key.len()..];
        Some(rest[..rest.find('"')?].to_owned())
    };
    let mut out = BTreeMap::new();
    let (mut iface, mut method): (Option<String>, Option<String>) = (None, None);
    for line in xml.lines().map(str::trim) {
        if line.starts_with("<interface ") {
            let name = attr(line, "name").unwrap();
            iface = name.starts_with("org.skytime.").then_some(name);
            if let Some(i) = &iface {
                out.insert(i.clone(), (BTreeMap::new(), false));
            }
        } else if let Some(i) = &iface {
            let entry = out.get_mut(i).unwrap();
            if line.starts_with("<method ") {
                let m = attr(line, "name").unwrap();
                entry.0.insert(m.clone(), Vec::new());
                method = Some(m);
            } else if line.starts_with("<arg ") && line.contains("direction=\"in\"") {
                let m = method.as_ref().unwrap();
                entry
                    .0
                    .get_mut(m)
                    .unwrap()
                    .push(attr(line, "name").unwrap());
            } else if line.starts_with("<property ") {
                entry.1 = true;
            } else if line.starts_with("</interface>") {
                iface = None;
            }
        }
    }
    out
}

/// (interface, member) pairs the bus policy lets every local user call.
fn open_to_all() -> BTreeSet<(String, String)> {
    let conf = include_str!("../../../skytimed/dist/org.skytime.Appliance1.conf");
    let default = conf
        .split("<policy context=\"default\">")
        .nth(1)
        .and_then(|s| s.split("</policy>").next())
        .expect("a default policy");
    let mut out = BTreeSet::new();
    for allow in default.split("<allow").skip(1) {
        let get = |k: &str| {
            let key = format!("{k}=\"");
            allow
                .find(&key)
                .map(|i| allow[i + key.len()..].split('"').next().unwrap().to_owned())
        };
        if let (Some(i), Some(m)) = (get("send_interface"), get("send_member")) {
            out.insert((i, m));
        }
    }
    out
}

#[test]
fn every_member_of_the_contract_has_its_route_and_no_route_is_extra() {
    let contract = contract();
    assert!(contract.len() >= 7, "{contract:?}");
    let open = open_to_all();
    let mut seen = BTreeSet::new();
    for (iface, (methods, has_properties)) in &contract {
        for (member, args) in methods {
            let r = ROUTES
                .iter()
                .find(|r| r.interface == iface && r.member == Some(member.as_str()))
                .unwrap_or_else(|| panic!("no route for {iface}.{member}"));
            assert_eq!(r.args, args.as_slice(), "arguments of {iface}.{member}");
            let readable = open.contains(&(iface.clone(), member.clone()));
            assert_eq!(
                r.access == Access::Read,
                readable,
                "{iface}.{member}: a route is a read exactly when the bus policy opens the member to all"
            );
            assert_eq!(r.method == Method::GET, r.access == Access::Read);
            seen.insert(r.path());
        }
        if *has_properties {
            let r = ROUTES
                .iter()
                .find(|r| r.interface == iface && r.member.is_none())
                .unwrap_or_else(|| panic!("no properties route for {iface}"));
            assert_eq!(r.access, Access::Read);
            assert!(open.contains(&(
                "org.freedesktop.DBus.Properties".to_owned(),
                "GetAll".to_owned()
            )));
            seen.insert(r.path());
        }
    }
    assert!(contract.contains_key(UPDATE), "the contract has Update");
    for r in ROUTES {
        assert!(
            seen.contains(&r.path()),
            "route {} has no member in the contract",
            r.path()
        );
    }
    let paths: BTreeSet<String> = ROUTES.iter().map(Route::path).collect();
    assert_eq!(paths.len(), ROUTES.len(), "two routes share a path");
}

#[test]
fn routes_are_found_by_path_and_method() {
    let (r, ok) = find(&Method::GET, "/api/v1/Sources/GetSources").unwrap();
    assert!(ok && r.op == Op::GetSources);
    let (_, ok) = find(&Method::POST, "/api/v1/Sources/GetSources").unwrap();
    assert!(!ok);
    assert!(find(&Method::GET, "/api/v1/Sources/Nope").is_none());
    let (r, _) = find(&Method::POST, "/api/v1/Update/Install").unwrap();
    assert_eq!(r.op, Op::UploadInstall);
}

#[test]
fn query_strings_become_arguments() {
    let a = query_args(Some("seconds=3600&name=a%20b+c&flag=true&neg=-2"));
    assert_eq!(a["seconds"], 3600);
    assert_eq!(a["name"], "a b c");
    assert_eq!(a["flag"], true);
    assert_eq!(a["neg"], -2);
    assert!(query_args(None).is_empty());
    assert_eq!(percent_decode("100%"), "100%");
}
