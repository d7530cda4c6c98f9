//! The fault matrix (issue 6), in network namespaces: each test breaks one thing a farm's
//! network can break and checks that the node ends in the right state, says so in words, and
//! leaves nothing half-applied. Faults already covered elsewhere: a DHCP server that comes up
//! late and 30 % loss (tests/dhcp4_lab.rs), no carrier, no DHCP, unreachable hub, a hub reachable
//! over one family only (tests/slaac_lab.rs), a hub serving bad files and a failing registrar
//! (tests/provision_lab.rs). docs/faults.md maps the whole matrix to its tests. Needs root;
//! skips with a `SKIP` line otherwise.
mod common;

use std::net::Ipv6Addr;
use std::time::Duration;

use common::*;
use serde_json::Value;

const RUN_LIMIT: Duration = Duration::from_secs(150);

fn ok(t: &str, radvd: bool) -> bool {
    require_root(t)
        && require_tool(t, "dnsmasq", "--version")
        && require_tool(t, "nft", "--version")
        && (!radvd || require_tool_says(t, "radvd", "--version", "Version"))
}

/// `zos-netboot net` with a state and resolv.conf in the lab directory.
fn net(lab: &Lab, cmdline: &str, extra: &[&str]) -> Run {
    lab.run_net(cmdline, extra, RUN_LIMIT)
}

fn state_of(lab: &Lab, run: &Run) -> Value {
    let p = lab.state_path();
    assert!(p.exists(), "no state file\n{}", run.describe());
    lab.read_state(&p)
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect()
}

/// DHCP through `percent` % loss in both directions: bound in the end, one lease, and the
/// loss really happened (nft counted drops).
fn bound_through_loss(t: &str, net24: &str, percent: u32) {
    if !ok(t, false) {
        return;
    }
    let lab = Lab::new(t);
    lab.wire("eth0", "r0", &format!("{net24}.1/24"));
    let dhcp = lab.dnsmasq(
        "r0",
        &[&format!(
            "--dhcp-range={net24}.100,{net24}.200,255.255.255.0,1h"
        )],
    );
    lab.loss("r0", percent);
    let run = net(
        &lab,
        "zos.probe=none zos.timeout=140",
        &["--wait-ipv6", "0", "--timeout", "140"],
    );
    let (up, down) = lab.loss_counters();
    let ctx = format!(
        "{}\n{}\nnft dropped {up} client→server, {down} server→client",
        run.describe(),
        dhcp.describe()
    );
    assert_eq!(run.code(), Some(0), "bound through {percent} % loss\n{ctx}");
    let state = state_of(&lab, &run);
    let addrs = lab.node_ipv4("eth0");
    assert_eq!(addrs.len(), 1, "exactly one address: {addrs:?}\n{ctx}");
    assert_eq!(
        Some(addrs[0].address),
        ip_of(&state_iface(&state, "eth0")["ipv4"][0]["address"]),
        "the kernel has the address the state names\n{ctx}"
    );
    // A quick bind may lose nothing at 10 %, so the binding alone proves no loss happened.
    // 400 more datagrams to the server's port 67 must be dropped at about `percent` %
    // (binomial: at 10 %, 40 ± 6; the bounds are beyond 5 standard deviations), so a loss rule
    // that does not work fails the test at every rate (issue 17, point 9).
    let burst = 400u64;
    let send = format!(
        "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
         for i in range({burst}): s.sendto(b'zos-loss-check', ('{net24}.1', 67))\n"
    );
    run_ok(&[
        "timeout", "-k", "2", "20", "ip", "netns", "exec", &lab.node, PYTHON, "-c", &send,
    ]);
    let (up_after, _) = lab.loss_counters();
    let dropped = up_after - up;
    let expected = burst * u64::from(percent) / 100;
    let sd = ((burst * u64::from(percent) * u64::from(100 - percent)) as f64 / 10_000.0).sqrt();
    let slack = (5.0 * sd).ceil() as u64 + 2;
    assert!(
        dropped + slack >= expected && dropped <= expected + slack,
        "{dropped} of {burst} check datagrams dropped, expected {expected} ± {slack}\n{ctx}"
    );
    // Whether the bind itself lost a packet is chance (at 50 % all four of DISCOVER, OFFER,
    // REQUEST and ACK get through one time in 16, which failed a CI run): the burst above is
    // what proves the rule drops at the rate while the node binds.
    println!("the bind lost {up} client→server and {down} server→client datagram(s)");
}

#[test]
fn dhcp_binds_through_10_percent_loss() {
    bound_through_loss("loss10", "10.71.0", 10);
}

#[test]
fn dhcp_binds_through_50_percent_loss() {
    bound_through_loss("loss50", "10.72.0", 50);
}

/// A DNS server that takes the queries and never answers: the probes fail on DNS (said so, in
/// bounded time), the node is not online, and the lease is applied whole (address, route,
/// resolv.conf), not half.
#[test]
fn a_dns_server_that_never_answers_is_named_and_bounded() {
    let t = "dns_silent";
    if !ok(t, false) {
        return;
    }
    let lab = Lab::new(t);
    lab.wire("eth0", "r0", "10.73.0.1/24");
    let hub = lab.hub();
    let dhcp = lab.dnsmasq("r0", &[&hub.dhcp_dns_option()]);
    // Every DNS query to the lab's server is dropped on arrival.
    let rules = lab.path("dns-drop.nft");
    std::fs::write(
        &rules,
        "table inet zlab_dnsdrop {\n\tchain input { type filter hook input priority 0; \
         policy accept;\n\t\tudp dport 53 counter drop\n\t\ttcp dport 53 counter drop\n\t}\n}\n",
    )
    .unwrap();
    run_ok(&[
        "ip",
        "netns",
        "exec",
        &lab.router,
        "nft",
        "-f",
        &rules.to_string_lossy(),
    ]);
    let run = net(
        &lab,
        &hub.cmdline(),
        &["--wait-ipv6", "0", "--timeout", "20"],
    );
    let ctx = format!(
        "{}\n{}\n{}",
        run.describe(),
        dhcp.describe(),
        hub.describe()
    );
    assert_eq!(run.code(), Some(1), "not online without DNS\n{ctx}");
    assert!(
        run.elapsed < Duration::from_secs(30),
        "a silent DNS server must not hang the boot: {:?}\n{ctx}",
        run.elapsed
    );
    let state = state_of(&lab, &run);
    assert_eq!(state["online"], false, "{ctx}");
    let probe_errors: Vec<String> = state["probes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["error"].as_str().map(str::to_string))
        .collect();
    assert!(
        !probe_errors.is_empty() && probe_errors.iter().all(|e| e.contains("DNS")),
        "every probe failed on DNS, and says so: {probe_errors:?}\n{ctx}"
    );
    // The lease is applied whole: address, default route, resolv.conf naming the server.
    assert_eq!(lab.node_ipv4("eth0").len(), 1, "{ctx}");
    assert!(
        lab.node_routes().iter().any(|r| r.dst == "default"),
        "default route\n{ctx}"
    );
    let resolv = std::fs::read_to_string(lab.path("resolv.conf")).unwrap_or_default();
    assert!(resolv.contains(DNS_V4), "resolv.conf: {resolv}\n{ctx}");
}

/// A router that advertises a prefix with router lifetime 0: SLAAC addresses, no default route,
/// and the console and state say why there is no IPv6 route out.
#[test]
fn an_ra_with_router_lifetime_zero_is_diagnosed() {
    let t = "ra_lifetime0";
    if !ok(t, true) {
        return;
    }
    let lab = Lab::new(t);
    lab.wire("eth0", "r0", "10.74.0.1/24");
    let dhcp = lab.dnsmasq("r0", &[]);
    lab.router_addr("r0", "2001:db8:74::1/64");
    let ra = lab.radvd(
        "r0",
        "\tAdvDefaultLifetime 0;\n\tprefix 2001:db8:74::/64 { AdvOnLink on; AdvAutonomous on; };\n",
    );
    let run = net(&lab, "zos.probe=none", &["--wait-ipv6", "2"]);
    let ctx = format!("{}\n{}\n{}", run.describe(), dhcp.describe(), ra.describe());
    let state = state_of(&lab, &run);
    let routes = lab.node_routes6();
    assert!(
        !routes.iter().any(|r| r.dst == "default"),
        "no IPv6 default route from a router lifetime of 0: {routes:?}\n{ctx}"
    );
    let diag = state_iface(&state, "eth0")["slaac"]["diagnosis"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        diag.contains("router lifetime of 0"),
        "diagnosis: {diag:?}\n{ctx}"
    );
    assert!(
        strings(&state["warnings"])
            .iter()
            .any(|w| w.starts_with("ra-not-default-router:")),
        "{ctx}"
    );
    assert!(run.stdout().contains("router lifetime of 0"), "{ctx}");
}

/// Another host already uses the node's SLAAC address: DAD fails, the node says which address
/// and that another host has it, and does not claim IPv6 works.
#[test]
fn a_dad_conflict_on_the_slaac_address_is_reported() {
    let t = "dad_conflict";
    if !ok(t, true) {
        return;
    }
    let lab = Lab::new(t);
    lab.wire("eth0", "r0", "10.75.0.1/24");
    let dhcp = lab.dnsmasq("r0", &[]);
    lab.router_addr("r0", "2001:db8:75::1/64");
    let prefix: Ipv6Addr = "2001:db8:75::".parse().unwrap();
    let taken = eui64_address(prefix, &lab.node_mac("eth0"));
    // The router already holds the node's EUI-64 address (no DAD on its side).
    run_ok(&[
        "ip",
        "-n",
        &lab.router,
        "addr",
        "add",
        &format!("{taken}/128"),
        "dev",
        "r0",
        "nodad",
    ]);
    let ra = lab.radvd(
        "r0",
        "\tprefix 2001:db8:75::/64 { AdvOnLink on; AdvAutonomous on; };\n",
    );
    let run = net(&lab, "zos.probe=none", &["--wait-ipv6", "3"]);
    let ctx = format!("{}\n{}\n{}", run.describe(), dhcp.describe(), ra.describe());
    let state = state_of(&lab, &run);
    let eth0 = state_iface(&state, "eth0");
    assert!(
        !eth0["ipv6"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|a| a["address"] == taken.to_string()),
        "the duplicate address is not reported as the node's: {}\n{ctx}",
        pretty(&eth0["ipv6"])
    );
    let diag = eth0["slaac"]["diagnosis"].as_str().unwrap_or_default();
    assert!(
        diag.contains("DAD failed") && diag.contains(&taken.to_string()),
        "diagnosis names the address and DAD: {diag:?}\n{ctx}"
    );
    assert!(
        strings(&state["warnings"])
            .iter()
            .any(|w| w.starts_with("dad-failed:") && w.contains(&taken.to_string())),
        "{ctx}"
    );
}

/// The link flaps while the node is looking for a DHCP server: carrier up, down (the switch
/// port bounces), up again with the server now there. The node binds soon after the last
/// carrier-up (it re-sends at once on carrier, it does not wait out its backoff) and ends with
/// one address.
#[test]
fn a_link_flap_during_dhcp_is_ridden_out() {
    let t = "flap_dhcp";
    if !ok(t, false) {
        return;
    }
    let lab = Lab::new(t);
    lab.wire("eth0", "r0", "10.76.0.1/24");
    let state = lab.state_path().to_string_lossy().into_owned();
    let resolv = lab.path("resolv.conf").to_string_lossy().into_owned();
    let mut node = lab.spawn_node(
        &[
            "net",
            "--cmdline",
            "zos.probe=none",
            "--state",
            &state,
            "--resolv",
            &resolv,
            "--wait-ipv6",
            "0",
            "--timeout",
            "60",
        ],
        RUN_LIMIT,
    );
    let seen = |node: &NodeProc, what: &str| node.output_so_far().0.contains(what);
    // No server yet: wait for the node to have carrier and be asking.
    assert!(
        wait_until(Duration::from_secs(10), || seen(&node, "eth0: carrier up")),
        "{:?}",
        node.output_so_far()
    );
    run_ok(&["ip", "-n", &lab.router, "link", "set", "r0", "down"]);
    assert!(
        wait_until(Duration::from_secs(10), || {
            lab.node_link("eth0")["flags"]
                .as_array()
                .is_some_and(|f| !f.iter().any(|x| x == "LOWER_UP"))
        }),
        "the node's side lost carrier"
    );
    let dhcp = lab.dnsmasq("r0", &[]);
    let up = std::time::Instant::now();
    run_ok(&["ip", "-n", &lab.router, "link", "set", "r0", "up"]);
    let run = node
        .wait_timeout(Duration::from_secs(60))
        .expect("the node finished");
    let ctx = format!("{}\n{}", run.describe(), dhcp.describe());
    assert_eq!(run.code(), Some(0), "bound after the flap\n{ctx}");
    let after = up.elapsed();
    assert!(
        after < Duration::from_secs(3),
        "bound {after:?} after the carrier came back: the node must ask at once\n{ctx}"
    );
    assert_eq!(lab.node_ipv4("eth0").len(), 1, "one address\n{ctx}");
}

// ------------------------------------------------------------------------------------------
// A second (rogue) DHCP server on the segment, and a server that NAKs everything.

/// The rogue's segment: its own subnet, as a home router or a switch with DHCP on would have.
const ROGUE_NET: &str = "192.168.77";

fn rogue_config() -> RogueConfig {
    RogueConfig {
        offer: format!("{ROGUE_NET}.50").parse().unwrap(),
        netmask: "255.255.255.0".parse().unwrap(),
        routers: vec![format!("{ROGUE_NET}.1").parse().unwrap()],
        dns: vec![format!("{ROGUE_NET}.1").parse().unwrap()],
        lease_secs: 600,
        nak: false,
    }
}

fn servers_of(state: &Value, nic: &str) -> Vec<Value> {
    state_iface(state, nic)["dhcp4_servers"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// A rogue on the node's segment answers first (the farm's server replies 1 s late) with an
/// OFFER that cannot be right. The node must take the farm server's lease whole (address,
/// default route, DNS), nothing of the rogue's, and name both servers and the rogue's flaw.
fn rogue_offer_is_refused(t: &str, net24: &str, edit: impl FnOnce(&mut RogueConfig)) {
    if !ok(t, false) {
        return;
    }
    let lab = Lab::new(t);
    let wire = lab.wire("eth0", "r0", &format!("{net24}.1/24"));
    let dhcp = lab.dnsmasq(
        "r0",
        &[
            "--dhcp-reply-delay=1",
            &format!("--dhcp-option=6,{}", wire.router_ip),
        ],
    );
    let seg = lab.rogue_segment("r0", &format!("{ROGUE_NET}.1/24"));
    let mut cfg = rogue_config();
    edit(&mut cfg);
    let rogue = seg.rogue_dhcp(&cfg);
    let run = net(
        &lab,
        "zos.probe=none",
        &["--wait-ipv6", "0", "--timeout", "30"],
    );
    let ctx = format!(
        "{}\n{}\n{}",
        run.describe(),
        dhcp.describe(),
        rogue.describe()
    );
    eprintln!("{t}: bound in {:?}", run.elapsed);
    assert_eq!(run.code(), Some(0), "bound from the farm's server\n{ctx}");
    assert!(rogue.sent("OFFER") >= 1, "the rogue did answer\n{ctx}");
    let state = state_of(&lab, &run);
    let eth0 = state_iface(&state, "eth0");
    assert_eq!(
        ip_of(&eth0["lease"]["server"]),
        Some(wire.router_ip),
        "the lease is the farm server's\n{ctx}"
    );
    // Applied whole, and nothing of the rogue's.
    let addrs = lab.node_ipv4("eth0");
    assert_eq!(addrs.len(), 1, "one address: {addrs:?}\n{ctx}");
    assert!(wire.contains(addrs[0].address), "{addrs:?}\n{ctx}");
    let routes = lab.node_routes();
    assert!(
        routes
            .iter()
            .any(|r| r.dst == "default" && r.gateway == Some(wire.router_ip)),
        "default route via the farm's router: {routes:?}\n{ctx}"
    );
    assert!(
        !routes
            .iter()
            .any(|r| r.dst.starts_with(ROGUE_NET) || r.gateway.is_some_and(|g| !wire.contains(g))),
        "no route of the rogue's: {routes:?}\n{ctx}"
    );
    let resolv = std::fs::read_to_string(lab.path("resolv.conf")).unwrap_or_default();
    let nameservers: Vec<&str> = resolv
        .lines()
        .filter_map(|l| l.strip_prefix("nameserver "))
        .collect();
    assert_eq!(
        nameservers,
        vec![wire.router_ip.to_string()],
        "resolv.conf: {resolv}\n{ctx}"
    );
    // Both servers named, the rogue with what was wrong with it.
    let servers = servers_of(&state, "eth0");
    let rogue_entry = servers
        .iter()
        .find(|s| s["server"] == format!("{ROGUE_NET}.1"))
        .unwrap_or_else(|| panic!("rogue not in dhcp4_servers: {servers:?}\n{ctx}"));
    assert!(
        !strings(&rogue_entry["problems"]).is_empty(),
        "the rogue's flaw is named: {rogue_entry}\n{ctx}"
    );
    assert!(
        servers
            .iter()
            .any(|s| s["server"] == wire.router_ip.to_string()),
        "{servers:?}\n{ctx}"
    );
    let out = run.stdout();
    assert!(
        out.contains("2 DHCP servers answer on this segment") && out.contains(ROGUE_NET),
        "the console names the second server\n{ctx}"
    );
}

#[test]
fn a_rogue_dhcp_server_with_a_bad_router_is_refused() {
    rogue_offer_is_refused("rogue_router", "10.81.0", |c| {
        c.routers = vec!["0.0.0.0".parse().unwrap(), "10.9.9.9".parse().unwrap()];
    });
}

#[test]
fn a_rogue_dhcp_server_with_bad_dns_is_refused() {
    rogue_offer_is_refused("rogue_dns", "10.82.0", |c| {
        c.dns = ["0.0.0.0", "127.0.0.53", "255.255.255.255", "192.168.77.255"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
    });
}

#[test]
fn a_rogue_dhcp_server_with_a_bad_netmask_is_refused() {
    // /32: its router cannot be on the node's subnet.
    rogue_offer_is_refused("rogue_mask", "10.83.0", |c| {
        c.netmask = "255.255.255.255".parse().unwrap();
    });
}

#[test]
fn a_rogue_dhcp_server_with_a_zero_lease_is_refused() {
    rogue_offer_is_refused("rogue_lease0", "10.84.0", |c| {
        c.lease_secs = 0;
    });
}

/// A server (alone) hands out a lease of 0xfffffffe s (136 years): accepted as given (RFC 2131
/// leaves the lease time to the server; u32::MAX would mean infinite), applied with that
/// lifetime, and no timer overflows (the unit tests drive the client to T1 of such a lease).
#[test]
fn a_huge_lease_is_accepted_as_given() {
    let t = "rogue_huge";
    if !ok(t, false) {
        return;
    }
    let lab = Lab::new(t);
    lab.wire("eth0", "r0", "10.85.0.1/24");
    let seg = lab.rogue_segment("r0", &format!("{ROGUE_NET}.1/24"));
    let huge = 0xffff_fffe_u32;
    let rogue = seg.rogue_dhcp(&RogueConfig {
        lease_secs: huge,
        ..rogue_config()
    });
    let run = net(
        &lab,
        "zos.probe=none",
        &["--wait-ipv6", "0", "--timeout", "30"],
    );
    let ctx = format!("{}\n{}", run.describe(), rogue.describe());
    assert_eq!(run.code(), Some(0), "{ctx}");
    let state = state_of(&lab, &run);
    assert_eq!(
        state_iface(&state, "eth0")["lease"]["lease_secs"].as_u64(),
        Some(u64::from(huge)),
        "{ctx}"
    );
    let addrs = lab.node_ipv4("eth0");
    assert_eq!(addrs.len(), 1, "{addrs:?}\n{ctx}");
    assert_eq!(addrs[0].address.to_string(), format!("{ROGUE_NET}.50"));
    assert_eq!(addrs[0].valid_lft, u64::from(huge), "{addrs:?}\n{ctx}");
    assert!(
        lab.node_routes()
            .iter()
            .any(|r| r.dst == "default" && r.gateway == Some(seg.address)),
        "{ctx}"
    );
}

/// A rogue that NAKs every REQUEST (its own OFFERs' and the farm server's), answering first.
/// RFC 2131: only a NAK from the server we asked counts. The node binds from the farm's server
/// and sends only a handful of packets (no DISCOVER/NAK ping-pong).
#[test]
fn a_nak_storm_from_a_rogue_does_not_stop_the_lease() {
    let t = "nak_rogue";
    if !ok(t, false) {
        return;
    }
    let lab = Lab::new(t);
    let wire = lab.wire("eth0", "r0", "10.86.0.1/24");
    let dhcp = lab.dnsmasq("r0", &["--dhcp-reply-delay=1"]);
    let seg = lab.rogue_segment("r0", &format!("{ROGUE_NET}.1/24"));
    let rogue = seg.rogue_dhcp(&RogueConfig {
        nak: true,
        ..rogue_config()
    });
    let run = net(
        &lab,
        "zos.probe=none",
        &["--wait-ipv6", "0", "--timeout", "30"],
    );
    let ctx = format!(
        "{}\n{}\n{}",
        run.describe(),
        dhcp.describe(),
        rogue.describe()
    );
    let (discovers, requests) = (rogue.received("DISCOVER"), rogue.received("REQUEST"));
    eprintln!(
        "{t}: bound in {:?}; the node sent {discovers} DISCOVER, {requests} REQUEST; the rogue \
         sent {} NAK",
        run.elapsed,
        rogue.sent("NAK")
    );
    assert_eq!(run.code(), Some(0), "bound despite the NAKs\n{ctx}");
    assert!(rogue.sent("NAK") >= 1, "the rogue did NAK\n{ctx}");
    let state = state_of(&lab, &run);
    assert_eq!(
        ip_of(&state_iface(&state, "eth0")["lease"]["server"]),
        Some(wire.router_ip),
        "{ctx}"
    );
    assert_eq!(lab.node_ipv4("eth0").len(), 1, "{ctx}");
    assert!(
        discovers + requests <= 10,
        "the node must not storm: {discovers} DISCOVER + {requests} REQUEST\n{ctx}"
    );
    assert!(
        run.elapsed < Duration::from_secs(8),
        "{:?}\n{ctx}",
        run.elapsed
    );
    let servers = servers_of(&state, "eth0");
    assert!(
        servers
            .iter()
            .any(|s| s["server"] == format!("{ROGUE_NET}.1") && s["naks"].as_u64() >= Some(1)),
        "{servers:?}\n{ctx}"
    );
    assert!(run.stdout().contains("refused a request (NAK"), "{ctx}");
}

/// The only server NAKs every REQUEST: the node keeps asking at a bounded rate, says who
/// refuses it and what it said, exits 1 at its timeout, and configures nothing.
#[test]
fn a_server_that_naks_everything_is_named_and_not_stormed() {
    let t = "nak_only";
    if !ok(t, false) {
        return;
    }
    let lab = Lab::new(t);
    lab.wire("eth0", "r0", "10.87.0.1/24");
    let seg = lab.rogue_segment("r0", &format!("{ROGUE_NET}.1/24"));
    let rogue = seg.rogue_dhcp(&RogueConfig {
        nak: true,
        ..rogue_config()
    });
    let run = net(
        &lab,
        "zos.probe=none",
        &["--wait-ipv6", "0", "--timeout", "20"],
    );
    let ctx = format!("{}\n{}", run.describe(), rogue.describe());
    let (discovers, requests) = (rogue.received("DISCOVER"), rogue.received("REQUEST"));
    eprintln!(
        "{t}: exited {:?} after {:?}; the node sent {discovers} DISCOVER, {requests} REQUEST",
        run.code(),
        run.elapsed
    );
    assert_eq!(run.code(), Some(1), "not online\n{ctx}");
    assert!(
        run.elapsed < Duration::from_secs(30),
        "{:?}\n{ctx}",
        run.elapsed
    );
    assert!(requests >= 2, "it kept asking\n{ctx}");
    assert!(
        discovers + requests <= 20,
        "bounded rate: {discovers} DISCOVER + {requests} REQUEST in 20 s\n{ctx}"
    );
    let out = run.stdout();
    assert!(
        out.contains("refused (NAK) by the server")
            && out.contains(&format!("{ROGUE_NET}.1"))
            && out.contains("rogue says no"),
        "the console names the refusing server and its words\n{ctx}"
    );
    assert!(lab.node_ipv4("eth0").is_empty(), "nothing applied\n{ctx}");
    assert!(
        !lab.node_routes().iter().any(|r| r.dst == "default"),
        "{ctx}"
    );
    let state = state_of(&lab, &run);
    assert_eq!(state["online"], false, "{ctx}");
    assert_ne!(state_iface(&state, "eth0")["dhcp4"], "BOUND", "{ctx}");
}

// ------------------------------------------------------------------------------------------
// 500 ms each way.

/// Every frame between the node and the router is held 500 ms each way (a relay namespace in
/// the middle; this kernel has no netem). The node still binds, and its probes (DNS, TCP,
/// HTTP, each step bounded by 2 s) still reach the hub over IPv4.
#[test]
fn dhcp_and_probes_work_through_500ms_delay_each_way() {
    let t = "delay500";
    if !ok(t, false) {
        return;
    }
    let lab = Lab::new(t);
    let (_wire, relay) = lab.delayed_wire("eth0", "r0", "10.88.0.1/24", Duration::from_millis(500));
    let hub = lab.hub();
    let dhcp = lab.dnsmasq("r0", &[&hub.dhcp_dns_option()]);
    let run = net(
        &lab,
        &hub.cmdline(),
        &["--wait-ipv6", "0", "--timeout", "60"],
    );
    let ctx = format!(
        "{}\n{}\n{}\n{}",
        run.describe(),
        dhcp.describe(),
        hub.describe(),
        relay.describe()
    );
    let state = state_of(&lab, &run);
    let timings = &state["timings_ms"];
    eprintln!(
        "{t}: exit {:?} after {:?}; timings_ms {}",
        run.code(),
        run.elapsed,
        timings
    );
    assert_eq!(run.code(), Some(0), "online through the delay\n{ctx}");
    let dhcp_ms = timings["dhcp4"].as_u64().unwrap_or(0);
    assert!(
        dhcp_ms >= 1000,
        "DISCOVER→ACK takes two round trips of 1 s: {dhcp_ms} ms (was the delay there?)\n{ctx}"
    );
    assert_eq!(lab.node_ipv4("eth0").len(), 1, "{ctx}");
    assert_eq!(state["ipv4"]["reachable"], true, "{ctx}");
}
