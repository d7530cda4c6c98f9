//! DHCPv4 end to end, in network namespaces: zos-netboot in a node namespace against dnsmasq
//! in a router namespace (see tests/common/mod.rs). Needs root; skips (with a `SKIP` line on
//! stderr) otherwise. `ZOS_LAB_REQUIRED=1` turns skips into failures.
mod common;

use std::fs;
use std::net::Ipv4Addr;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// Common checks on a successful `net`/`dhcp4` run: exit 0 and a parseable state file.
fn expect_online(lab: &Lab, run: &Run, dns: Option<&Dnsmasq>) -> Value {
    let server = dns.map(|d| d.describe()).unwrap_or_default();
    assert_eq!(
        run.code(),
        Some(0),
        "expected exit 0 (online)\n{}\n{server}",
        run.describe()
    );
    let state_path = lab.state_path();
    assert!(
        state_path.exists(),
        "no state file at {}\n{}",
        state_path.display(),
        run.describe()
    );
    lab.read_state(&state_path)
}

/// The interface's DHCP address from the state: `ipv4[]` entry with source "dhcp".
fn state_dhcp_addr(state: &Value, ifname: &str) -> Value {
    let iface = state_iface(state, ifname);
    iface["ipv4"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["source"] == "dhcp"))
        .cloned()
        .unwrap_or_else(|| panic!("no dhcp ipv4 entry on {ifname}:\n{}", pretty(state)))
}

// -------------------------------------------------------------------------------------------
// Lab self-tests: the lab against busybox udhcpc, so a failure below can be told apart from a
// broken lab.

const UDHCPC_SCRIPT: &str = "#!/bin/sh\n\
case \"$1\" in bound|renew) env > \"$ZLAB_ENV_OUT\"; ip addr add \"$ip/$mask\" dev \"$interface\" ;; esac\n\
exit 0\n";

fn write_udhcpc_script(lab: &Lab) -> String {
    let script = lab.path("udhcpc.sh");
    fs::write(&script, UDHCPC_SCRIPT).unwrap();
    let out = run_cmd(&["chmod", "755", &script.to_string_lossy()], 10);
    assert!(out.status.success());
    script.to_string_lossy().into_owned()
}

#[test]
fn lab_selftest_reference_client_gets_all_options() {
    let t = "lab_selftest_reference_client_gets_all_options";
    if !require_root(t) || !require_tool(t, "busybox", "true") {
        return;
    }
    let lab = Lab::new("selftest");
    let w = lab.wire("eth0", "r0", "10.21.0.1/24");
    let dns = lab.dnsmasq(
        "r0",
        &[
            "--dhcp-range=10.21.0.100,10.21.0.200,255.255.255.0,1800",
            "--dhcp-option=3,10.21.0.99",
            "--dhcp-option=6,10.21.0.53",
            "--domain=lab.test",
            "--dhcp-option=26,1400",
            "--dhcp-option=121,192.0.2.0/24,10.21.0.254,0.0.0.0/0,10.21.0.1",
        ],
    );
    let script = write_udhcpc_script(&lab);
    let env_out = lab.path("udhcpc.env");
    run_ok(&["ip", "-n", &lab.node, "link", "set", "eth0", "up"]);
    let out = Command::new("timeout")
        .args([
            "-k", "2", "20", "ip", "netns", "exec", &lab.node, "busybox", "udhcpc", "-f", "-q",
            "-n",
        ])
        .args([
            "-t",
            "5",
            "-T",
            "1",
            "-O",
            "staticroutes",
            "-O",
            "mtu",
            "-i",
            "eth0",
            "-s",
            &script,
        ])
        .env("ZLAB_ENV_OUT", &env_out)
        .output()
        .unwrap();
    let ctx = format!(
        "udhcpc: {}\n{}{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        dns.describe()
    );
    assert!(out.status.success(), "{ctx}");
    let env = fs::read_to_string(&env_out).unwrap_or_default();
    let get = |k: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or("")
            .trim_matches('\'')
            .to_string()
    };
    let ip: Ipv4Addr = get("ip")
        .parse()
        .unwrap_or_else(|_| panic!("no ip in {env}\n{ctx}"));
    assert!(w.contains(ip), "{env}\n{ctx}");
    assert_eq!(get("mask"), "24", "{env}");
    assert_eq!(get("lease"), "1800", "{env}");
    assert_eq!(get("serverid"), "10.21.0.1", "{env}");
    assert_eq!(get("router"), "10.21.0.99", "{env}");
    assert_eq!(get("dns"), "10.21.0.53", "{env}");
    assert_eq!(get("domain"), "lab.test", "{env}");
    assert_eq!(get("mtu"), "1400", "{env}");
    assert_eq!(
        get("staticroutes"),
        "192.0.2.0/24 10.21.0.254 0.0.0.0/0 10.21.0.1",
        "{env}"
    );
    assert!(dns.log().contains("DHCPACK(r0)"), "{ctx}");
    assert_eq!(lab.node_ipv4("eth0").first().map(|a| a.address), Some(ip));
    // The namespace's resolv.conf is the lab's file, untouched by udhcpc's minimal script.
    assert_eq!(lab.node_resolv_conf(), "");
}

#[test]
fn lab_selftest_loss_drops_dhcp() {
    let t = "lab_selftest_loss_drops_dhcp";
    if !require_root(t)
        || !require_tool(t, "busybox", "true")
        || !require_tool(t, "nft", "--version")
    {
        return;
    }
    let lab = Lab::new("selftest-loss");
    lab.wire("eth0", "r0", "10.22.0.1/24");
    let dns = lab.dnsmasq("r0", &[]);
    lab.loss("r0", 100);
    let script = write_udhcpc_script(&lab);
    run_ok(&["ip", "-n", &lab.node, "link", "set", "eth0", "up"]);
    let out = Command::new("timeout")
        .args([
            "-k", "2", "20", "ip", "netns", "exec", &lab.node, "busybox", "udhcpc", "-f", "-q",
            "-n",
        ])
        .args(["-t", "3", "-T", "1", "-i", "eth0", "-s", &script])
        .env("ZLAB_ENV_OUT", lab.path("udhcpc.env"))
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "udhcpc got a lease through 100% loss\n{}",
        dns.describe()
    );
    let (inbound, _) = lab.loss_counters();
    assert!(
        inbound >= 3,
        "nft dropped {inbound} DISCOVERs, expected ≥ 3"
    );
    assert!(
        !dns.log().contains("DHCPDISCOVER"),
        "dnsmasq saw a DISCOVER through 100% loss\n{}",
        dns.describe()
    );
}

// -------------------------------------------------------------------------------------------
// zos-netboot

#[test]
fn net_applies_lease_route_and_resolv_conf() {
    let t = "net_applies_lease_route_and_resolv_conf";
    if !require_root(t) {
        return;
    }
    let lab = Lab::new("apply");
    let w = lab.wire("eth0", "r0", "10.1.0.1/24");
    let lease_secs = 1800; // not dnsmasq's default (1 h), so the test sees where it came from
    let dns = lab.dnsmasq(
        "r0",
        &[
            "--dhcp-range=10.1.0.100,10.1.0.200,255.255.255.0,1800",
            "--dhcp-option=3,10.1.0.1",
            "--dhcp-option=6,10.1.0.53",
            "--domain=lab.test",
            "--dhcp-option=26,1400",
        ],
    );
    let state_path = lab.state_path();
    let run = lab.run_node(
        &[
            "net",
            // DHCPv4 behaviour only: no probes, no IPv6 wait (tests/slaac_lab.rs covers those).
            "--cmdline",
            "zos.probe=none",
            "--wait-ipv6",
            "0",
            "--state",
            &state_path.to_string_lossy(),
            "--timeout",
            "20",
        ],
        Duration::from_secs(40),
    );
    let state = expect_online(&lab, &run, Some(&dns));
    let ctx = format!(
        "{}\nstate:\n{}\n{}",
        run.describe(),
        pretty(&state),
        dns.describe()
    );

    // State JSON.
    assert_eq!(state["online"], true, "{ctx}");
    let iface = state_iface(&state, "eth0");
    assert_eq!(iface["role"], "oob", "{ctx}");
    assert_eq!(
        iface["mac"].as_str().map(str::to_lowercase),
        Some(lab.node_mac("eth0")),
        "{ctx}"
    );
    let entry = state_dhcp_addr(&state, "eth0");
    let addr = ip_of(&entry["address"]).unwrap_or_else(|| panic!("no address in {entry}\n{ctx}"));
    assert!(
        w.contains(addr) && (w.host(100)..=w.host(200)).contains(&addr),
        "address {addr} outside the dnsmasq range\n{ctx}"
    );
    assert_eq!(entry["prefix"], 24, "{ctx}");
    assert_eq!(entry["lease_secs"], lease_secs, "{ctx}");
    assert_eq!(entry["server"], "10.1.0.1", "{ctx}");
    let lease = &iface["lease"];
    assert_eq!(lease["address"], addr.to_string(), "{ctx}");
    assert_eq!(lease["lease_secs"], lease_secs, "{ctx}");
    assert_eq!(lease["server"], "10.1.0.1", "{ctx}");
    assert_eq!(lease["routers"], json!(["10.1.0.1"]), "{ctx}");
    assert_eq!(lease["dns"], json!(["10.1.0.53"]), "{ctx}");
    assert_eq!(lease["domain"], "lab.test", "{ctx}");
    assert_eq!(lease["mtu"], 1400, "{ctx}");
    assert_eq!(state["ipv4"]["gateway"], "10.1.0.1", "{ctx}");
    assert!(
        state["dns"]
            .as_array()
            .is_some_and(|d| d.contains(&json!("10.1.0.53"))),
        "top-level dns lacks 10.1.0.53\n{ctx}"
    );
    let t_dhcp = state["timings_ms"]["dhcp4"].as_f64().unwrap_or(0.0);
    assert!(
        t_dhcp > 0.0,
        "timings_ms.dhcp4 = {} (expected > 0)\n{ctx}",
        state["timings_ms"]["dhcp4"]
    );

    // The kernel: the address, with the lease as its lifetime.
    let addrs = lab.node_ipv4("eth0");
    let a = addrs
        .iter()
        .find(|a| a.address == addr)
        .unwrap_or_else(|| panic!("{addr} not on eth0: {addrs:?}\n{ctx}"));
    assert_eq!(a.prefix, 24, "{addrs:?}");
    assert!(
        a.valid_lft != FOREVER && a.valid_lft > 0 && a.valid_lft <= lease_secs,
        "valid_lft {} should be finite and ≤ {lease_secs}: {addrs:?}\n{ctx}",
        a.valid_lft
    );
    assert_eq!(
        addrs.len(),
        1,
        "exactly one IPv4 address expected on eth0: {addrs:?}"
    );

    // Default route via the router on eth0.
    let routes = lab.node_routes();
    assert!(
        routes
            .iter()
            .any(|r| r.dst == "default" && r.gateway == Some(w.router_ip) && r.dev == "eth0"),
        "no default via 10.1.0.1 dev eth0: {routes:#?}\n{ctx}"
    );

    // MTU from option 26.
    assert_eq!(lab.node_mtu("eth0"), 1400, "{ctx}");
    assert_eq!(iface["mtu"], 1400, "state mtu\n{ctx}");

    // resolv.conf (the namespace's, bind-mounted by `ip netns exec`).
    let resolv = lab.node_resolv_conf();
    let lines: Vec<&str> = resolv.lines().map(str::trim).collect();
    assert!(
        lines.contains(&"nameserver 10.1.0.53"),
        "resolv.conf:\n{resolv}\n{ctx}"
    );
    assert!(
        lines.iter().any(|l| {
            let mut words = l.split_whitespace();
            matches!(words.next(), Some("search") | Some("domain"))
                && words.any(|w| w == "lab.test")
        }),
        "resolv.conf has no `search lab.test` / `domain lab.test`:\n{resolv}\n{ctx}"
    );
}

#[test]
fn classless_routes_override_router_option() {
    let t = "classless_routes_override_router_option";
    if !require_root(t) {
        return;
    }
    let lab = Lab::new("classless");
    lab.wire("eth0", "r0", "10.2.0.1/24");
    let dns = lab.dnsmasq(
        "r0",
        &[
            "--dhcp-option=3,10.2.0.99",
            "--dhcp-option=121,192.0.2.0/24,10.2.0.254,0.0.0.0/0,10.2.0.1",
        ],
    );
    let state_path = lab.state_path();
    let run = lab.run_node(
        &[
            "net",
            // DHCPv4 behaviour only: no probes, no IPv6 wait (tests/slaac_lab.rs covers those).
            "--cmdline",
            "zos.probe=none",
            "--wait-ipv6",
            "0",
            "--iface",
            "eth0",
            "--state",
            &state_path.to_string_lossy(),
            "--timeout",
            "20",
        ],
        Duration::from_secs(40),
    );
    let state = expect_online(&lab, &run, Some(&dns));
    let routes = lab.node_routes();
    let ctx = format!(
        "routes: {routes:#?}\n{}\nstate:\n{}\n{}",
        run.describe(),
        pretty(&state),
        dns.describe()
    );

    // The client asked for option 121 and dnsmasq sent it.
    assert!(
        dns.log()
            .lines()
            .any(|l| l.contains("sent") && l.contains("classless-static-route")),
        "dnsmasq did not send option 121 (did the client request it?)\n{ctx}"
    );

    let gw = |s: &str| Some(s.parse::<Ipv4Addr>().unwrap());
    assert!(
        routes
            .iter()
            .any(|r| r.dst == "192.0.2.0/24" && r.gateway == gw("10.2.0.254") && r.dev == "eth0"),
        "no 192.0.2.0/24 via 10.2.0.254 dev eth0\n{ctx}"
    );
    let defaults: Vec<&Route4> = routes.iter().filter(|r| r.dst == "default").collect();
    assert_eq!(
        defaults.len(),
        1,
        "exactly one default route expected\n{ctx}"
    );
    assert_eq!(
        defaults[0].gateway,
        gw("10.2.0.1"),
        "default must be via option 121's 10.2.0.1\n{ctx}"
    );
    assert_eq!(defaults[0].dev, "eth0", "{ctx}");
    assert!(
        !routes.iter().any(|r| r.gateway == gw("10.2.0.99")),
        "option 3 router 10.2.0.99 must be ignored when option 121 is present (RFC 3442)\n{ctx}"
    );

    // The state agrees.
    let lease = &state_iface(&state, "eth0")["lease"];
    let st_routes = lease["routes"].as_array().cloned().unwrap_or_default();
    assert!(
        st_routes.contains(&json!({"destination": "192.0.2.0/24", "gateway": "10.2.0.254"})),
        "state lease.routes lacks 192.0.2.0/24 via 10.2.0.254\n{ctx}"
    );
    assert!(
        st_routes.contains(&json!({"destination": "0.0.0.0/0", "gateway": "10.2.0.1"})),
        "state lease.routes lacks 0.0.0.0/0 via 10.2.0.1\n{ctx}"
    );
    assert!(
        !st_routes.iter().any(|r| r["gateway"] == "10.2.0.99"),
        "state lease.routes uses option 3's router\n{ctx}"
    );
    assert_eq!(state["ipv4"]["gateway"], "10.2.0.1", "{ctx}");
}

#[test]
fn nak_restarts_discovery() {
    let t = "nak_restarts_discovery";
    if !require_root(t) {
        return;
    }
    let lab = Lab::new("nak");
    let w = lab.wire("eth0", "r0", "10.3.0.1/24");
    let mac = lab.node_mac("eth0");
    // A previous boot's lease for this MAC, in a subnet this server does not serve.
    let old = "10.99.0.50";
    let previous = json!({
        "version": "0.1.0",
        "online": true,
        "interfaces": [{
            "name": "eth0", "mac": mac, "role": "oob", "carrier": true, "mtu": 1500,
            "ipv4": [{"address": old, "prefix": 24, "source": "dhcp", "lease_secs": 3600, "server": "10.99.0.1"}],
            "ipv6": [],
            "lease": {
                "client_id": format!("01:{mac}"), "server": "10.99.0.1", "address": old, "prefix": 24,
                "lease_secs": 3600, "routers": ["10.99.0.1"],
                "routes": [{"destination": "0.0.0.0/0", "gateway": "10.99.0.1"}],
                "dns": ["10.99.0.1"], "domain": null, "search": [], "ntp": [], "mtu": null,
                "obtained_unix": unix_now() - 60
            }
        }],
        "ipv4": {"gateway": "10.99.0.1"},
        "dns": ["10.99.0.1"],
        "timings_ms": {"dhcp4": 12}
    });
    let state_path = lab.state_path();
    fs::write(
        &state_path,
        serde_json::to_string_pretty(&previous).unwrap(),
    )
    .unwrap();

    let dns = lab.dnsmasq("r0", &["--dhcp-authoritative"]);
    let run = lab.run_node(
        &[
            "net",
            // DHCPv4 behaviour only: no probes, no IPv6 wait (tests/slaac_lab.rs covers those).
            "--cmdline",
            "zos.probe=none",
            "--wait-ipv6",
            "0",
            "--iface",
            "eth0",
            "--state",
            &state_path.to_string_lossy(),
            "--timeout",
            "20",
        ],
        Duration::from_secs(40),
    );
    let state = expect_online(&lab, &run, Some(&dns));
    let log = dns.log();
    let ctx = format!(
        "{}\nstate:\n{}\n{}",
        run.describe(),
        pretty(&state),
        dns.describe()
    );

    // INIT-REBOOT asked for the old address first, and the server refused it.
    assert!(
        log.lines()
            .any(|l| l.contains("DHCPREQUEST(r0)") && l.contains(old)),
        "dnsmasq never saw a REQUEST for the previous address {old} (no INIT-REBOOT?)\n{ctx}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("DHCPNAK(r0)") && l.contains(old)),
        "no DHCPNAK in dnsmasq's log\n{ctx}"
    );
    assert!(
        run.all_output().contains("NAK"),
        "our output does not mention the NAK\n{ctx}"
    );

    // Then it started over and bound in the right subnet.
    assert!(
        log.contains("DHCPDISCOVER(r0)"),
        "no DISCOVER after the NAK\n{ctx}"
    );
    let entry = state_dhcp_addr(&state, "eth0");
    let addr = ip_of(&entry["address"]).unwrap_or_else(|| panic!("no address\n{ctx}"));
    assert!(
        w.contains(addr),
        "bound {addr}, not in {}/24\n{ctx}",
        w.network()
    );
    let on_link: Vec<Ipv4Addr> = lab.node_ipv4("eth0").iter().map(|a| a.address).collect();
    assert!(
        on_link.contains(&addr),
        "{addr} not on eth0: {on_link:?}\n{ctx}"
    );
    assert!(
        !on_link.contains(&old.parse().unwrap()),
        "the NAKed {old} is on eth0: {on_link:?}\n{ctx}"
    );
    assert_eq!(
        state_iface(&state, "eth0")["lease"]["address"],
        addr.to_string(),
        "{ctx}"
    );
}

/// The same scenario as `nak_restarts_discovery`, but the previous state file is the one the
/// binary itself wrote on a first "boot" in 10.99.0.0/24; the node then "reboots" into
/// 10.3.0.0/24 where an authoritative server NAKs the old address.
#[test]
fn nak_restarts_discovery_from_own_state() {
    let t = "nak_restarts_discovery_from_own_state";
    if !require_root(t) {
        return;
    }
    let lab = Lab::new("nak-own");
    let first = lab.wire("eth0", "r0", "10.99.0.1/24");
    let state_path = lab.state_path();
    let args = [
        "net",
        // DHCPv4 behaviour only: no probes, no IPv6 wait (tests/slaac_lab.rs covers those).
        "--cmdline",
        "zos.probe=none",
        "--wait-ipv6",
        "0",
        "--iface",
        "eth0",
        "--state",
        &state_path.to_string_lossy(),
        "--timeout",
        "20",
    ]
    .map(String::from);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();

    // First boot.
    let old = {
        let dns = lab.dnsmasq("r0", &[]);
        let run = lab.run_node(&args, Duration::from_secs(40));
        let state = expect_online(&lab, &run, Some(&dns));
        let old = ip_of(&state_iface(&state, "eth0")["lease"]["address"]).unwrap_or_else(|| {
            panic!(
                "first boot: no lease address in the state\n{}",
                pretty(&state)
            )
        });
        assert!(first.contains(old), "first boot bound {old}");
        old
    }; // dnsmasq stopped here

    // Reboot into another network.
    lab.reset_node_if("eth0");
    let w = lab.renumber("r0", "10.3.0.1/24");
    let dns = lab.dnsmasq("r0", &["--dhcp-authoritative"]);
    let run = lab.run_node(&args, Duration::from_secs(40));
    let state = expect_online(&lab, &run, Some(&dns));
    let log = dns.log();
    let ctx = format!(
        "{}\nstate:\n{}\n{}",
        run.describe(),
        pretty(&state),
        dns.describe()
    );
    let old_s = old.to_string();
    assert!(
        log.lines().any(|l| l.contains("DHCPREQUEST(r0)") && l.contains(&old_s)),
        "dnsmasq never saw a REQUEST for the previous address {old} (no INIT-REBOOT from its own state file?)\n{ctx}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("DHCPNAK(r0)") && l.contains(&old_s)),
        "no DHCPNAK in dnsmasq's log\n{ctx}"
    );
    assert!(
        run.all_output().contains("NAK"),
        "our output does not mention the NAK\n{ctx}"
    );
    assert!(
        log.contains("DHCPDISCOVER(r0)"),
        "no DISCOVER after the NAK\n{ctx}"
    );
    let addr = ip_of(&state_iface(&state, "eth0")["lease"]["address"])
        .unwrap_or_else(|| panic!("no address\n{ctx}"));
    assert!(
        w.contains(addr),
        "bound {addr}, not in {}/24\n{ctx}",
        w.network()
    );
    let on_link: Vec<Ipv4Addr> = lab.node_ipv4("eth0").iter().map(|a| a.address).collect();
    assert!(
        on_link.contains(&addr) && !on_link.contains(&old),
        "eth0 has {on_link:?}\n{ctx}"
    );
}

#[test]
fn late_server_bound_within_two_seconds() {
    let t = "late_server_bound_within_two_seconds";
    if !require_root(t) {
        return;
    }
    let lab = Lab::new("late");
    lab.wire("eth0", "r0", "10.4.0.1/24");
    let state_path = lab.state_path();
    let mut proc = lab.spawn_node(
        &[
            "net",
            // DHCPv4 behaviour only: no probes, no IPv6 wait (tests/slaac_lab.rs covers those).
            "--cmdline",
            "zos.probe=none",
            "--wait-ipv6",
            "0",
            "--timeout",
            "60",
            "--state",
            &state_path.to_string_lossy(),
        ],
        Duration::from_secs(75),
    );

    // The scenario: no DHCP server for the first 20 s.
    std::thread::sleep(Duration::from_secs(20));
    if proc.has_exited() {
        let run = proc.wait_timeout(Duration::ZERO).unwrap();
        panic!(
            "exited before any DHCP server existed (--timeout 60)\n{}",
            run.describe()
        );
    }
    let dns = lab.dnsmasq("r0", &[]);
    let run = proc
        .wait_timeout(Duration::from_secs(45))
        .unwrap_or_else(|| {
            panic!(
                "still running 45 s after dnsmasq started\n{:?}\n{}",
                proc.output_so_far(),
                dns.describe()
            )
        });
    let exited = proc.exited.expect("exit time recorded");
    let since_spawn = exited - dns.started;
    let since_ready = exited - dns.ready;
    eprintln!("{t}: dnsmasq spawn → exit {since_spawn:?} (ready → exit {since_ready:?})");
    let ctx = format!(
        "{}\ndnsmasq spawn → exit {since_spawn:?}, dnsmasq ready → exit {since_ready:?}\n{}",
        run.describe(),
        dns.describe()
    );
    assert_eq!(run.code(), Some(0), "{ctx}");
    let state = lab.read_state(&state_path);
    assert_eq!(state["online"], true, "{}\n{ctx}", pretty(&state));
    assert!(
        since_spawn < Duration::from_secs(3),
        "bound {since_spawn:?} after dnsmasq started; retransmissions are capped below 2 s\n{ctx}"
    );
}

#[test]
fn lease_survives_30_percent_loss() {
    let t = "lease_survives_30_percent_loss";
    if !require_root(t) || !require_tool(t, "nft", "--version") {
        return;
    }
    let lab = Lab::new("loss");
    let w = lab.wire("eth0", "r0", "10.5.0.1/24");
    let dns = lab.dnsmasq("r0", &[]);
    lab.loss("r0", 30);
    let state_path = lab.state_path();
    let run = lab.run_node(
        &[
            "net",
            // DHCPv4 behaviour only: no probes, no IPv6 wait (tests/slaac_lab.rs covers those).
            "--cmdline",
            "zos.probe=none",
            "--wait-ipv6",
            "0",
            "--iface",
            "eth0",
            "--state",
            &state_path.to_string_lossy(),
            "--timeout",
            "60",
        ],
        Duration::from_secs(75),
    );
    let (dropped_in, dropped_out) = lab.loss_counters();
    eprintln!("{t}: bound after {:?}; nft dropped {dropped_in} client→server, {dropped_out} server→client", run.elapsed);
    let state = expect_online(&lab, &run, Some(&dns));
    let ctx = format!(
        "{}\nnft dropped {dropped_in} in / {dropped_out} out\nstate:\n{}\n{}",
        run.describe(),
        pretty(&state),
        dns.describe()
    );
    let addr =
        ip_of(&state_dhcp_addr(&state, "eth0")["address"]).unwrap_or_else(|| panic!("{ctx}"));
    assert!(w.contains(addr), "{ctx}");
    assert!(
        lab.node_ipv4("eth0").iter().any(|a| a.address == addr),
        "{addr} not on eth0\n{ctx}"
    );
}

#[test]
fn only_nic_with_dhcp_is_used() {
    let t = "only_nic_with_dhcp_is_used";
    if !require_root(t) {
        return;
    }
    let lab = Lab::new("multi");
    // eth0: cable, no DHCP server; eth1: DHCP; eth2: unplugged (no carrier).
    lab.wire("eth0", "r0", "10.6.0.1/24");
    let w1 = lab.wire("eth1", "r1", "10.6.1.1/24");
    lab.wire_no_carrier("eth2", "r2", "10.6.2.1/24");
    let dns = lab.dnsmasq("r1", &[]);
    let state_path = lab.state_path();
    let run = lab.run_node(
        &[
            "net",
            // DHCPv4 behaviour only: no probes, no IPv6 wait (tests/slaac_lab.rs covers those).
            "--cmdline",
            "zos.probe=none",
            "--wait-ipv6",
            "0",
            "--state",
            &state_path.to_string_lossy(),
            "--timeout",
            "30",
        ],
        Duration::from_secs(45),
    );
    let state = expect_online(&lab, &run, Some(&dns));
    let ctx = format!(
        "{}\nstate:\n{}\n{}",
        run.describe(),
        pretty(&state),
        dns.describe()
    );

    let oob = state_iface(&state, "eth1");
    assert_eq!(oob["role"], "oob", "{ctx}");
    let addr =
        ip_of(&state_dhcp_addr(&state, "eth1")["address"]).unwrap_or_else(|| panic!("{ctx}"));
    assert!(w1.contains(addr), "{ctx}");
    assert!(
        lab.node_ipv4("eth1").iter().any(|a| a.address == addr),
        "{addr} not on eth1\n{ctx}"
    );
    assert_eq!(oob["carrier"], true, "{ctx}");

    for other in ["eth0", "eth2"] {
        let i = state_iface(&state, other);
        assert_eq!(i["role"], "unused", "{other}\n{ctx}");
        assert!(
            i["ipv4"].as_array().is_some_and(|a| a.is_empty()),
            "{other} has ipv4 in the state\n{ctx}"
        );
        let on_link = lab.node_ipv4(other);
        assert!(
            on_link.is_empty(),
            "{other} has IPv4 addresses: {on_link:?}\n{ctx}"
        );
    }
    assert_eq!(
        state_iface(&state, "eth2")["carrier"],
        false,
        "eth2 has no carrier\n{ctx}"
    );
    assert_eq!(
        state_iface(&state, "eth0")["carrier"],
        true,
        "eth0 has carrier\n{ctx}"
    );
    let defaults: Vec<Route4> = lab
        .node_routes()
        .into_iter()
        .filter(|r| r.dst == "default")
        .collect();
    assert!(
        defaults.iter().all(|r| r.dev == "eth1"),
        "default route not on eth1: {defaults:?}\n{ctx}"
    );

    assert!(
        run.elapsed < Duration::from_secs(5),
        "took {:?}: a NIC without DHCP or without carrier must not delay the boot\n{ctx}",
        run.elapsed
    );
}

#[test]
fn refuses_host_network_without_allow_host() {
    // Runs in the HOST network namespace on purpose, with a bogus interface name so that even a
    // broken guard has nothing to configure; in a private mount namespace whose /etc/resolv.conf
    // is a scratch file, so even then the host's cannot be written.
    let dir = std::env::temp_dir().join(format!("zos-host-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let state = dir.join("state.json");
    let scratch = dir.join("resolv.conf");
    fs::write(&scratch, "").unwrap();
    let host_resolv_before = fs::read("/etc/resolv.conf").ok();

    let args = [
        "net",
        // DHCPv4 behaviour only: no probes, no IPv6 wait (tests/slaac_lab.rs covers those).
        "--cmdline",
        "zos.probe=none",
        "--wait-ipv6",
        "0",
        "--iface",
        "zz-no-such-if0",
        "--state",
        &state.to_string_lossy(),
    ]
    .map(String::from);
    let can_unshare = lab_support().is_ok()
        && Command::new("timeout")
            .args([
                "5",
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "true",
            ])
            .status()
            .is_ok_and(|s| s.success());
    let started = Instant::now();
    let output = if can_unshare && std::path::Path::new("/etc/resolv.conf").exists() {
        let script = "mount --bind \"$1\" /etc/resolv.conf || exit 99; shift; exec \"$@\"";
        Command::new("timeout")
            .args([
                "-k",
                "5",
                "30",
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                script,
                "sh",
            ])
            .arg(&scratch)
            .arg(BIN)
            .args(&args)
            .output()
            .unwrap()
    } else {
        Command::new("timeout")
            .args(["-k", "5", "30", BIN])
            .args(&args)
            .output()
            .unwrap()
    };
    let run = Run {
        cmdline: format!("{BIN} {}", args.join(" ")),
        output,
        elapsed: started.elapsed(),
    };
    let host_resolv_after = fs::read("/etc/resolv.conf").ok();
    let state_written = state.exists();
    let _ = fs::remove_dir_all(&dir);

    assert_ne!(
        run.code(),
        Some(99),
        "lab error: could not bind-mount the scratch resolv.conf\n{}",
        run.describe()
    );
    assert_eq!(
        host_resolv_before, host_resolv_after,
        "the host's /etc/resolv.conf changed!"
    );
    assert_eq!(
        run.code(),
        Some(2),
        "must refuse the host network with exit 2\n{}",
        run.describe()
    );
    assert!(
        run.all_output().contains("--allow-host"),
        "the refusal must mention --allow-host\n{}",
        run.describe()
    );
    assert!(
        !state_written,
        "a refused run wrote a state file\n{}",
        run.describe()
    );
}

#[test]
fn dhcp4_subcommand_binds_one_interface() {
    let t = "dhcp4_subcommand_binds_one_interface";
    if !require_root(t) {
        return;
    }
    let lab = Lab::new("dhcp4");
    let w = lab.wire("eth0", "r0", "10.8.0.1/24");
    // A second NIC with a server too: `dhcp4 eth0` must leave it alone.
    lab.wire("eth1", "r1", "10.8.1.1/24");
    let dns = lab.dnsmasq(
        "r0",
        &["--dhcp-range=10.8.0.100,10.8.0.200,255.255.255.0,600"],
    );
    let _dns1 = lab.dnsmasq("r1", &[]);
    let state_path = lab.state_path();
    let run = lab.run_node(
        &[
            "dhcp4",
            "eth0",
            "--state",
            &state_path.to_string_lossy(),
            "--timeout",
            "20",
        ],
        Duration::from_secs(40),
    );
    let state = expect_online(&lab, &run, Some(&dns));
    let ctx = format!(
        "{}\nstate:\n{}\n{}",
        run.describe(),
        pretty(&state),
        dns.describe()
    );

    let lease = &state_iface(&state, "eth0")["lease"];
    let addr = ip_of(&lease["address"])
        .unwrap_or_else(|| panic!("state has no lease address for eth0\n{ctx}"));
    assert!(w.contains(addr), "{ctx}");
    assert_eq!(lease["prefix"], 24, "{ctx}");
    assert_eq!(lease["lease_secs"], 600, "{ctx}");
    assert_eq!(lease["server"], "10.8.0.1", "{ctx}");
    let on_link = lab.node_ipv4("eth0");
    let a = on_link
        .iter()
        .find(|a| a.address == addr)
        .unwrap_or_else(|| panic!("{addr} not on eth0: {on_link:?}\n{ctx}"));
    assert!(
        a.valid_lft != FOREVER && a.valid_lft <= 600,
        "{on_link:?}\n{ctx}"
    );
    assert!(
        lab.node_ipv4("eth1").is_empty(),
        "dhcp4 eth0 touched eth1\n{ctx}"
    );
}

/// `ip=<client>::<gw>:<netmask>:<host>:<dev>:none` on the kernel command line: the NIC gets
/// that address and route without any DHCP server, and is the OOB NIC.
#[test]
fn static_ip_from_the_kernel_command_line_needs_no_dhcp() {
    let t = "static_ip_from_the_kernel_command_line_needs_no_dhcp";
    if !require_root(t) {
        return;
    }
    let lab = Lab::new("staticip");
    lab.wire("eth0", "r0", "10.61.0.1/24");
    let state_path = lab.state_path();
    let cmdline = "zos.probe=none ip=10.61.0.7::10.61.0.1:255.255.255.0:node7:eth0:none:10.61.0.53";
    let started = Instant::now();
    let run = lab.run_node(
        &[
            "net",
            "--cmdline",
            cmdline,
            "--wait-ipv6",
            "0",
            "--state",
            &state_path.to_string_lossy(),
            "--resolv",
            &lab.path("resolv.conf").to_string_lossy(),
            "--timeout",
            "10",
        ],
        Duration::from_secs(30),
    );
    let state = expect_online(&lab, &run, None);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "a static address waits for nothing\n{}",
        run.describe()
    );
    let eth0 = state_iface(&state, "eth0");
    assert_eq!(eth0["role"], "oob", "{}", pretty(&state));
    assert_eq!(eth0["dhcp4"], "STATIC", "{}", pretty(&state));
    assert_eq!(
        eth0["ipv4"][0]["address"],
        "10.61.0.7",
        "{}",
        pretty(&state)
    );
    assert_eq!(eth0["ipv4"][0]["source"], "static", "{}", pretty(&state));
    let addrs = lab.node_ipv4("eth0");
    assert!(
        addrs
            .iter()
            .any(|a| a.address == Ipv4Addr::new(10, 61, 0, 7) && a.prefix == 24),
        "kernel addresses: {addrs:?}"
    );
    let routes = lab.node_routes();
    assert!(
        routes
            .iter()
            .any(|r| r.dst == "default" && r.gateway == Some(Ipv4Addr::new(10, 61, 0, 1))),
        "routes: {routes:?}"
    );
    let resolv = fs::read_to_string(lab.path("resolv.conf")).unwrap_or_default();
    assert!(
        resolv.contains("nameserver 10.61.0.53"),
        "resolv.conf:\n{resolv}"
    );
    assert!(
        run.stdout()
            .contains("static IPv4 10.61.0.7/24 via 10.61.0.1"),
        "{}",
        run.describe()
    );
}

/// A rogue DHCP server on a secondary (public) segment offers routes that would take all the
/// node's traffic (0.0.0.0/1 + 128.0.0.0/1, which beat any default route), a default router,
/// DNS and NTP. The node takes its address there, nothing else: the management NIC's lease
/// alone sets routes beyond a subnet, DNS and NTP.
#[test]
fn a_rogue_server_on_a_secondary_segment_gets_no_routes_or_dns() {
    let t = "a_rogue_server_on_a_secondary_segment_gets_no_routes_or_dns";
    if !require_root(t) {
        return;
    }
    let lab = Lab::new("rogue2");
    lab.wire("eth0", "r0", "10.7.0.1/24");
    let public = lab.wire("eth1", "r1", "10.7.1.1/24");
    let dns = lab.dnsmasq("r0", &["--dhcp-option=6,10.7.0.53"]);
    let rogue = lab.dnsmasq(
        "r1",
        &[
            "--dhcp-option=3,10.7.1.66",
            "--dhcp-option=121,0.0.0.0/1,10.7.1.66,128.0.0.0/1,10.7.1.66,10.7.1.128/25,10.7.1.66",
            "--dhcp-option=6,10.7.1.53",
            "--dhcp-option=42,10.7.1.123",
        ],
    );
    let state_path = lab.state_path();
    let resolv = lab.path("resolv.conf");
    let run = lab.run_node(
        &[
            "net",
            "--cmdline",
            "zos.probe=none zos.oob=eth0",
            // No router advertisements here: the stage waits this long for them, time for the
            // public segment's lease to come in before it reports.
            "--wait-ipv6",
            "1.5",
            "--state",
            &state_path.to_string_lossy(),
            "--resolv",
            &resolv.to_string_lossy(),
            "--timeout",
            "20",
        ],
        Duration::from_secs(40),
    );
    let state = expect_online(&lab, &run, Some(&dns));
    let routes = lab.node_routes();
    let resolv_text = fs::read_to_string(&resolv).unwrap_or_default();
    let ctx = format!(
        "routes: {routes:#?}\nresolv.conf:\n{resolv_text}\n{}\nstate:\n{}\n{}",
        run.describe(),
        pretty(&state),
        rogue.describe()
    );

    // The rogue's lease was taken: its address is on eth1 (so its options did reach the node).
    let addr =
        ip_of(&state_dhcp_addr(&state, "eth1")["address"]).unwrap_or_else(|| panic!("{ctx}"));
    assert!(public.contains(addr), "{ctx}");
    assert!(
        rogue
            .log()
            .lines()
            .any(|l| l.contains("sent") && l.contains("classless-static-route")),
        "the rogue did not send option 121\n{ctx}"
    );
    // None of its routes beyond its subnet, no default route through it.
    for r in &routes {
        assert!(
            !(r.dev == "eth1" && (r.dst == "default" || r.dst.ends_with("/1"))),
            "route from the secondary segment's lease: {r:?}\n{ctx}"
        );
    }
    assert!(
        routes.iter().any(|r| r.dst == "default" && r.dev == "eth0"),
        "no default route via the management NIC\n{ctx}"
    );
    // A route inside its own subnet is its own business.
    assert!(
        routes
            .iter()
            .any(|r| r.dst == "10.7.1.128/25" && r.dev == "eth1"),
        "the on-subnet route of the secondary lease is missing\n{ctx}"
    );
    // DNS and NTP are the management lease's.
    assert!(resolv_text.contains("10.7.0.53"), "{ctx}");
    assert!(!resolv_text.contains("10.7.1.53"), "{ctx}");
    assert!(!state["ntp"].to_string().contains("10.7.1.123"), "{ctx}");
    assert!(
        run.stdout().contains("eth1: DHCPv4") && run.stdout().contains("not the management NIC"),
        "{ctx}"
    );
}
