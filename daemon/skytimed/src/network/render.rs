//! The settings as systemd-networkd reads them: one `.network` file that
//! matches the Ethernet port(s) and sorts before the image's DHCP default
//! (`80-skytime-ether.network`), so networkd uses it instead.

use super::settings::{Mode, NetworkSettings};
use std::fmt::Write;

/// The rendered file's name in networkd's runtime directory.
pub const NETWORK_FILE: &str = "10-skytime.network";

/// The `.network` text for `s`.
pub fn network_file(s: &NetworkSettings) -> String {
    let mut t = String::from(
        "# Written by skytimed from the [network] settings (Network.Apply);\n\
         # changes here are replaced on the next apply or start.\n\
         [Match]\nType=ether\n\n[Network]\n",
    );
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    match s.mode {
        Mode::Dhcp => t.push_str("DHCP=yes\nIPv6AcceptRA=yes\n"),
        Mode::Static => {
            t.push_str("DHCP=no\n");
            if let Some(v4) = &s.ipv4 {
                let _ = writeln!(t, "Address={}", v4.address);
                if let Some(g) = v4.gateway {
                    let _ = writeln!(t, "Gateway={g}");
                }
            }
            if let Some(v6) = &s.ipv6 {
                let _ = writeln!(t, "Address={}", v6.address);
                if let Some(g) = v6.gateway {
                    let _ = writeln!(t, "Gateway={g}");
                }
            }
            // A static IPv6 address replaces the routers' offers; without
            // one, SLAAC still gives the appliance an IPv6 address.
            let _ = writeln!(t, "IPv6AcceptRA={}", yes_no(s.ipv6.is_none()));
            for d in &s.dns {
                let _ = writeln!(t, "DNS={d}");
            }
        }
    }
    // Per link; systemd-resolved's own MulticastDNS= (the image's
    // resolved.conf.d drop-in) must allow it as well.
    let _ = writeln!(t, "MulticastDNS={}", yes_no(s.mdns));
    t.push_str("LLMNR=no\n");
    if s.mode == Mode::Dhcp {
        // The appliance keeps its own name; the DHCP server learns it.
        t.push_str("\n[DHCPv4]\nUseHostname=no\nSendHostname=yes\n");
        if let Some(h) = &s.hostname {
            let _ = writeln!(t, "Hostname={h}");
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::path::Path;

    /// `Key=value` lines of `section`.
    fn section<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
        let header = format!("[{name}]");
        text.lines()
            .skip_while(|l| *l != header)
            .skip(1)
            .take_while(|l| !l.starts_with('['))
            .filter(|l| !l.is_empty())
            .collect()
    }

    #[test]
    fn dhcp_with_mdns() {
        let s = NetworkSettings::parse("hostname = \"time1\"\n", Path::new("t")).unwrap();
        let t = network_file(&s);
        assert_eq!(
            section(&t, "Network"),
            [
                "DHCP=yes",
                "IPv6AcceptRA=yes",
                "MulticastDNS=yes",
                "LLMNR=no"
            ]
        );
        assert_eq!(section(&t, "Match"), ["Type=ether"]);
        assert!(section(&t, "DHCPv4").contains(&"Hostname=time1"));
    }

    #[test]
    fn static_dual_stack() {
        let s = NetworkSettings::parse(
            "mode = \"static\"\nmdns = false\ndns = [\"192.0.2.53\"]\n[ipv4]\naddress = \"192.0.2.10/24\"\n\
             gateway = \"192.0.2.1\"\n[ipv6]\naddress = \"2001:db8::10/64\"\n",
            Path::new("t"),
        )
        .unwrap();
        assert_eq!(
            section(&network_file(&s), "Network"),
            [
                "DHCP=no",
                "Address=192.0.2.10/24",
                "Gateway=192.0.2.1",
                "Address=2001:db8::10/64",
                "IPv6AcceptRA=no",
                "DNS=192.0.2.53",
                "MulticastDNS=no",
                "LLMNR=no"
            ]
        );
    }

    fn settings() -> impl Strategy<Value = NetworkSettings> {
        (
            1u8..=30,
            any::<u32>(),
            any::<bool>(),
            proptest::option::of(1u8..=128),
            any::<u128>(),
            any::<bool>(),
        )
            .prop_filter_map(
                "a valid static configuration",
                |(p4, a4, mdns, p6, a6, gw)| {
                    let net = 0xC000_0200u32 & (u32::MAX << (32 - u32::from(p4)));
                    let host = (a4 & (u32::MAX >> p4)).clamp(1, (u32::MAX >> p4) - 1);
                    let address = Ipv4Addr::from(net | host);
                    let text = format!(
                        "mode = \"static\"\nmdns = {mdns}\n[ipv4]\naddress = \"{address}/{p4}\"\n{}{}",
                        if gw { format!("gateway = \"{}\"\n", Ipv4Addr::from(net | (host ^ 1).max(1))) } else { String::new() },
                        p6.map(|p| format!(
                            "[ipv6]\naddress = \"{}/{p}\"\n",
                            Ipv6Addr::from(0x2001_0db8u128 << 96 | (a6 & (u128::MAX >> 32)) | 1)
                        ))
                        .unwrap_or_default()
                    );
                    NetworkSettings::parse(&text, Path::new("p")).ok()
                },
            )
    }

    proptest! {
        /// Every valid configuration renders each of its addresses,
        /// gateways and DNS servers exactly once, and survives a TOML
        /// round trip unchanged.
        #[test]
        fn rendering_names_every_setting_once(s in settings()) {
            let t = network_file(&s);
            let net = section(&t, "Network");
            for a in [s.ipv4.as_ref().map(|v| v.address.to_string()), s.ipv6.as_ref().map(|v| v.address.to_string())].into_iter().flatten() {
                prop_assert_eq!(net.iter().filter(|l| **l == format!("Address={a}")).count(), 1);
            }
            if let Some(g) = s.ipv4.as_ref().and_then(|v| v.gateway) {
                let want = format!("Gateway={g}");
                prop_assert!(net.contains(&want.as_str()), "{} missing", want);
            }
            let mdns = if s.mdns { "MulticastDNS=yes" } else { "MulticastDNS=no" };
            prop_assert!(net.contains(&mdns));
            prop_assert_eq!(NetworkSettings::parse(&s.to_toml(), Path::new("r")).unwrap(), s);
        }
    }
}
