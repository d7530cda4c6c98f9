//! IPv6 SLAAC, reachability probes and the node classification, end to end in network
//! namespaces: zos-netboot in a node namespace; dnsmasq (DHCPv4), radvd or dnsmasq (router
//! advertisements), and "the Internet" ([`Lab::hub`]: httpd + DNS on the router's `lo`) in a
//! router namespace. See tests/common/mod.rs. Needs root; skips (with a `SKIP` line on stderr)
//! otherwise. `ZOS_LAB_REQUIRED=1` turns skips into failures.
//!
//! Every run passes `--cmdline` with `zos.probe=http://hub.lab.test/` (the lab's hub) or
//! `zos.probe=none`: the binary never aims at a public host.
//!
//! Address plan: each test its own 10.4x.n.0/24 (private) or 203.0.113.0/24 (public, a
//! documentation range the classifier counts as public), and its own 2001:db8:N::/64.
mod common;

use std::net::Ipv6Addr;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// Bound on one run of the binary (it has its own `--timeout`).
const RUN_LIMIT: Duration = Duration::from_secs(40);

// -------------------------------------------------------------------------------------------
// Helpers

/// Root, namespaces, and each tool (`RADVD` is checked by its output: its `--version` exits 1).
fn lab_ok(t: &str, tools: &[(&str, &str)]) -> bool {
    require_root(t)
        && tools.iter().all(|&(tool, arg)| match (tool, arg) {
            RADVD => require_tool_says(t, tool, arg, "Version"),
            _ => require_tool(t, tool, arg),
        })
}

const RADVD: (&str, &str) = ("radvd", "--version");
const BUSYBOX: (&str, &str) = ("busybox", "true");
const NFT: (&str, &str) = ("nft", "--version");
const SS: (&str, &str) = ("ss", "-V");

/// `zos-netboot net --cmdline CMDLINE --state <lab>/state.json --resolv <lab>/resolv.conf
/// --timeout 10 EXTRA...`, in the node namespace.
fn net(lab: &Lab, cmdline: &str, extra: &[&str]) -> Run {
    let mut extra = extra.to_vec();
    if !extra.contains(&"--timeout") {
        extra.extend(["--timeout", "10"]);
    }
    // Kept with the lab's files when the test fails or ZOS_LAB_KEEP=1.
    lab.run_net(cmdline, &extra, RUN_LIMIT)
}

/// The state file the run wrote; panics with the run's output if there is none.
fn state_of(lab: &Lab, run: &Run, servers: &str) -> Value {
    let p = lab.state_path();
    assert!(
        p.exists(),
        "no state file at {}\n{}\n{servers}",
        p.display(),
        run.describe()
    );
    lab.read_state(&p)
}

fn context(run: &Run, state: &Value, servers: &[String]) -> String {
    format!(
        "{}\n--- state ---\n{}\n{}",
        run.describe(),
        pretty(state),
        servers.join("\n")
    )
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect()
}

/// Whether `warnings[]` has a "token: ..." entry that mentions `text` ("" for any).
fn warned(state: &Value, token: &str, text: &str) -> bool {
    let prefix = format!("{token}: ");
    strings(&state["warnings"])
        .iter()
        .any(|w| w.starts_with(&prefix) && w.contains(text))
}

/// Whether the headline or an advice line says `phrase`.
fn says(state: &Value, phrase: &str) -> bool {
    state["headline"]
        .as_str()
        .is_some_and(|h| h.contains(phrase))
        || strings(&state["advice"]).iter().any(|a| a.contains(phrase))
}

/// class, case, topology.
fn verdict(state: &Value) -> (String, String, String) {
    let s = |k: &str| state[k].as_str().unwrap_or("<missing>").to_string();
    (s("class"), s("case"), s("topology"))
}

fn assert_verdict(run: &Run, state: &Value, class: &str, case: &str, topology: &str, ctx: &str) {
    assert_eq!(
        verdict(state),
        (class.to_string(), case.to_string(), topology.to_string()),
        "(class, case, topology)\n{ctx}"
    );
    let headline = state["headline"].as_str().unwrap_or("");
    let label = match class {
        "public" => "PUBLIC node:",
        "ipv6" => "IPv6 node:",
        "hidden" => "HIDDEN node:",
        _ => "OFFLINE:",
    };
    assert!(
        headline.starts_with(label),
        "headline {headline:?} should start with {label:?}\n{ctx}"
    );
    // The report printed on the console carries the same headline.
    assert!(
        run.stdout().contains(headline),
        "the console does not print the headline {headline:?}\n{ctx}"
    );
}

fn assert_says(state: &Value, phrase: &str, ctx: &str) {
    assert!(
        says(state, phrase),
        "headline/advice do not say {phrase:?}\n{ctx}"
    );
}

/// Timestamped console lines (`[   1.234] text`): (seconds, text).
fn console_events(run: &Run) -> Vec<(f64, String)> {
    run.stdout()
        .lines()
        .filter_map(|l| {
            let rest = l.trim_start().strip_prefix('[')?;
            let (ts, text) = rest.split_once(']')?;
            Some((ts.trim().parse().ok()?, text.trim().to_string()))
        })
        .collect()
}

/// The first console event whose text satisfies `f`.
fn event(events: &[(f64, String)], f: impl Fn(&str) -> bool) -> Option<&(f64, String)> {
    events.iter().find(|(_, l)| f(l))
}

/// The interface's `ipv6[]` entries as (address, prefix, source).
fn state_ipv6(state: &Value, ifname: &str) -> Vec<(Ipv6Addr, u64, String)> {
    state_iface(state, ifname)["ipv6"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            Some((
                e["address"].as_str()?.parse().ok()?,
                e["prefix"].as_u64().unwrap_or(0),
                e["source"].as_str().unwrap_or("").to_string(),
            ))
        })
        .collect()
}

fn is_global(a: &Ipv6Addr) -> bool {
    // 2000::/3, the only global unicast block (2001:db8::/32 included: the lab's "Internet").
    a.segments()[0] & 0xe000 == 0x2000
}

fn in_prefix64(a: &Ipv6Addr, prefix: &str) -> bool {
    let p: Ipv6Addr = prefix.parse().unwrap();
    a.to_bits() >> 64 == p.to_bits() >> 64
}

/// The probe results of one family.
fn probes(state: &Value, family: &str) -> Vec<Value> {
    state["probes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["family"] == family)
        .cloned()
        .collect()
}

fn resolv_nameservers(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .map(|s| s.trim().to_string())
        .collect()
}

fn mac_of(lab: &Lab, ifname: &str) -> String {
    lab.node_mac(ifname).to_lowercase()
}

/// radvd body: one SLAAC /64 (`prefix` like "2001:db8:2::"), RDNSS the lab DNS.
fn slaac_body(prefix: &str) -> String {
    format!(
        "\tprefix {prefix}/64 {{ AdvOnLink on; AdvAutonomous on; }};\n\
         \tRDNSS {DNS_V6} {{ }};\n"
    )
}

/// Checks common to every run in which `ifname` got SLAAC from `prefix` via `router_if`:
/// the EUI-64 address in the state and on the link (DAD done), the default route via the
/// router's link-local on `ifname`, the state's slaac object. Returns the address.
fn assert_slaac_ready(
    lab: &Lab,
    state: &Value,
    ifname: &str,
    prefix: &str,
    router_if: &str,
    ctx: &str,
) -> Ipv6Addr {
    let mac = mac_of(lab, ifname);
    let want = eui64_address(prefix.parse().unwrap(), &mac);
    let iid = eui64_interface_id(&mac);

    // State: ipv6[] holds the EUI-64 address, as SLAAC.
    let entries = state_ipv6(state, ifname);
    let entry = entries
        .iter()
        .find(|e| in_prefix64(&e.0, prefix))
        .unwrap_or_else(|| panic!("{ifname}: no ipv6[] entry in {prefix}/64\n{ctx}"));
    assert_eq!(
        entry.0.to_bits() as u64,
        iid,
        "{ifname}: interface identifier of {} is not the EUI-64 of {mac} ({want} expected; \
         addr_gen_mode=0, no temporary addresses)\n{ctx}",
        entry.0
    );
    assert_eq!(entry.0, want, "{ctx}");
    assert_eq!((entry.1, entry.2.as_str()), (64, "slaac"), "{ctx}");

    // Kernel: the address is there and DAD finished.
    let on_link = lab.node_ipv6(ifname);
    let a = on_link
        .iter()
        .find(|a| a.address == want)
        .unwrap_or_else(|| panic!("{want} not on {ifname}: {on_link:#?}\n{ctx}"));
    assert!(
        !a.tentative && !a.dadfailed,
        "{want} still tentative / DAD failed: {a:?}\n{ctx}"
    );
    assert_eq!(a.scope, "global", "{a:?}");
    assert!(
        !on_link
            .iter()
            .any(|x| is_global(&x.address) && x.address != want && in_prefix64(&x.address, prefix)),
        "a second (temporary?) address in {prefix}/64 on {ifname}: {on_link:#?}\n{ctx}"
    );

    // Default route via the router's link-local, on this NIC.
    let router_ll = lab.router_link_local(router_if);
    let routes = lab.node_routes6();
    assert!(
        routes
            .iter()
            .any(|r| r.dst == "default" && r.gateway == Some(router_ll) && r.dev == ifname),
        "no IPv6 default via {router_ll} dev {ifname}: {routes:#?}\n{ctx}"
    );

    // The slaac object.
    let slaac = &state_iface(state, ifname)["slaac"];
    let ready = slaac["ready_after_ms"]
        .as_f64()
        .unwrap_or_else(|| panic!("{ifname}: slaac.ready_after_ms is not a number\n{ctx}"));
    assert!(
        (0.0..5000.0).contains(&ready),
        "{ifname}: slaac.ready_after_ms = {ready}\n{ctx}"
    );
    assert_eq!(
        slaac["router"],
        router_ll.to_string(),
        "slaac.router\n{ctx}"
    );
    assert!(
        slaac["diagnosis"].is_null(),
        "a ready NIC has no diagnosis\n{ctx}"
    );
    let ra = &slaac["ra"];
    assert!(ra.is_object(), "{ifname}: slaac.ra missing\n{ctx}");
    let prefixes = ra["prefixes"].as_array().cloned().unwrap_or_default();
    assert!(
        prefixes
            .iter()
            .any(|p| p["prefix"] == prefix && p["len"] == 64 && p["autonomous"] == true),
        "slaac.ra.prefixes lacks {{prefix: {prefix}, len: 64, autonomous: true}}\n{ctx}"
    );
    want
}

// -------------------------------------------------------------------------------------------
// Lab self-test: radvd + the kernel's own SLAAC, without the binary, so that a failure below
// can be told apart from a broken lab.

#[test]
fn lab_selftest_radvd_gives_kernel_slaac_and_hub_answers_both_families() {
    let t = "lab_selftest_radvd_gives_kernel_slaac_and_hub_answers_both_families";
    if !lab_ok(t, &[RADVD, BUSYBOX, SS]) {
        return;
    }
    let lab = Lab::new("selftest6");
    lab.wire("eth0", "r0", "10.40.0.1/24");
    lab.router_addr("r0", "2001:db8:40::1/64");
    let hub = lab.hub();
    let radvd = lab.radvd("r0", &slaac_body("2001:db8:40::"));
    let n = &lab.node;
    for s in [
        "net.ipv6.conf.eth0.accept_ra=2",
        "net.ipv6.conf.eth0.addr_gen_mode=0",
        "net.ipv6.conf.eth0.router_solicitation_delay=0",
        "net.ipv6.conf.eth0.router_solicitation_interval=1",
        "net.ipv6.neigh.eth0.retrans_time_ms=100",
    ] {
        run_ok(&["ip", "netns", "exec", n, "sysctl", "-qw", s]);
    }
    run_ok(&["ip", "-n", n, "addr", "add", "10.40.0.50/24", "dev", "eth0"]);
    run_ok(&["ip", "-n", n, "link", "set", "eth0", "up"]);
    run_ok(&["ip", "-n", n, "route", "add", "default", "via", "10.40.0.1"]);
    let want = eui64_address("2001:db8:40::".parse().unwrap(), &mac_of(&lab, "eth0"));
    let ok = wait_until(Duration::from_secs(8), || {
        lab.node_ipv6("eth0")
            .iter()
            .any(|a| a.address == want && !a.tentative)
            && lab.node_routes6().iter().any(|r| r.dst == "default")
    });
    let ctx = format!(
        "addrs: {:#?}\nroutes: {:#?}\n{}\n{}",
        lab.node_ipv6("eth0"),
        lab.node_routes6(),
        radvd.describe(),
        hub.describe()
    );
    assert!(
        ok,
        "kernel SLAAC did not give {want} + a default route\n{ctx}"
    );
    assert_eq!(
        lab.node_routes6()
            .iter()
            .find(|r| r.dst == "default")
            .and_then(|r| r.gateway),
        Some(lab.router_link_local("r0")),
        "{ctx}"
    );
    // DNS and HTTP of the hub, over each family, with busybox's own clients.
    for (server, kind, answer) in [(DNS_V4, "A", HUB_V4), (DNS_V6, "AAAA", HUB_V6)] {
        let out = lab.node_exec(&[
            "busybox",
            "nslookup",
            &format!("-type={kind}"),
            HUB_NAME,
            server,
        ]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(answer),
            "nslookup {kind} via {server}:\n{text}\n{ctx}"
        );
    }
    for url in [format!("http://{HUB_V4}/"), format!("http://[{HUB_V6}]/")] {
        // No `-T`: this busybox's wget segfaults with it; node_exec bounds the command.
        let out = lab.node_exec(&["busybox", "wget", "-q", "-O", "-", &url]);
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("zos lab hub"),
            "GET {url}: {out:?}\n{ctx}"
        );
    }
}

// -------------------------------------------------------------------------------------------
// SLAAC

/// eth0: DHCPv4 only (private); eth1: radvd with a /64, RDNSS and DNSSL. eth1 gets its EUI-64
/// address, the default route and the RDNSS; the node is a two-NIC datacentre node whose
/// public segment has IPv6 only.
#[test]
fn slaac_on_second_nic_with_rdnss() {
    let t = "slaac_on_second_nic_with_rdnss";
    if !lab_ok(t, &[RADVD, BUSYBOX, SS]) {
        return;
    }
    let lab = Lab::new("slaac2nd");
    lab.wire("eth0", "r0", "10.41.0.1/24");
    lab.wire("eth1", "r1", "10.41.1.1/24");
    lab.router_addr("r1", "2001:db8:2::1/64");
    let hub = lab.hub();
    let dhcp = lab.dnsmasq("r0", &[&hub.dhcp_dns_option()]);
    let body = format!("{}\tDNSSL lab.test {{ }};\n", slaac_body("2001:db8:2::"));
    let radvd = lab.radvd("r1", &body);
    // No --wait-ipv6: the default (3 s) applies to eth0, which never sees an RA.
    let run = net(&lab, &hub.cmdline(), &[]);
    let servers = [dhcp.describe(), radvd.describe(), hub.describe()];
    let state = state_of(&lab, &run, &servers.join("\n"));
    let resolv = std::fs::read_to_string(lab.path("resolv.conf")).unwrap_or_default();
    let ctx = format!(
        "{}\n--- resolv.conf ---\n{resolv}",
        context(&run, &state, &servers)
    );
    assert_eq!(run.code(), Some(0), "{ctx}");

    let addr = assert_slaac_ready(&lab, &state, "eth1", "2001:db8:2::", "r1", &ctx);
    let router_ll = lab.router_link_local("r1");

    // eth0 saw no RA: no IPv6 there, and the state says why.
    let eth0 = state_iface(&state, "eth0");
    assert!(
        eth0["slaac"]["ready_after_ms"].is_null(),
        "eth0 has no router: ready_after_ms must be null\n{ctx}"
    );
    assert!(
        state_ipv6(&state, "eth0").iter().all(|e| !is_global(&e.0)),
        "eth0 has a global IPv6 address without any RA\n{ctx}"
    );

    // The RA as parsed: RDNSS, DNSSL, no M/O flags.
    let ra = &state_iface(&state, "eth1")["slaac"]["ra"];
    assert_eq!(
        (&ra["managed"], &ra["other"]),
        (&json!(false), &json!(false)),
        "{ctx}"
    );
    assert!(
        ra["router_lifetime_secs"].as_u64().is_some_and(|l| l > 0),
        "router lifetime\n{ctx}"
    );
    assert!(
        strings(&ra["rdnss"]).contains(&DNS_V6.to_string()),
        "ra.rdnss\n{ctx}"
    );
    assert!(
        strings(&ra["dnssl"]).contains(&"lab.test".to_string()),
        "ra.dnssl\n{ctx}"
    );
    assert!(
        strings(&state_iface(&state, "eth1")["slaac"]["dns"]).contains(&DNS_V6.to_string()),
        "eth1 slaac.dns\n{ctx}"
    );

    // Top level: DNS of both families, the router, the timing.
    let dns = strings(&state["dns"]);
    assert!(
        dns.contains(&DNS_V4.to_string()) && dns.contains(&DNS_V6.to_string()),
        "state dns {dns:?} must hold the DHCPv4 DNS and the RDNSS\n{ctx}"
    );
    assert_eq!(
        state["ipv6"]["router"],
        router_ll.to_string(),
        "ipv6.router\n{ctx}"
    );
    let slaac_ms = state["timings_ms"]["slaac"].as_f64().unwrap_or(-1.0);
    assert!(
        slaac_ms > 0.0 && slaac_ms < 5000.0,
        "timings_ms.slaac = {} (expected ms from carrier-up to ready)\n{ctx}",
        state["timings_ms"]["slaac"]
    );

    // resolv.conf: the IPv4 DNS and the RDNSS, at most 3 nameservers.
    let ns = resolv_nameservers(&resolv);
    assert!(
        ns.contains(&DNS_V4.to_string()) && ns.contains(&DNS_V6.to_string()),
        "resolv.conf nameservers {ns:?}\n{ctx}"
    );
    assert!(ns.len() <= 3, "more than 3 nameservers: {ns:?}\n{ctx}");

    // Console: the RA and the ready address.
    let events = console_events(&run);
    assert!(
        event(&events, |l| l.contains(&format!(
            "eth1: router advertisement from {router_ll}"
        )))
        .is_some(),
        "no `eth1: router advertisement from {router_ll}` line\n{ctx}"
    );
    assert!(
        event(&events, |l| l
            .contains(&format!("eth1: SLAAC {addr}/64 ready in")))
        .is_some(),
        "no `eth1: SLAAC {addr}/64 ready in …` line\n{ctx}"
    );

    // Both families reached the hub (over IPv6 through eth1's default route).
    assert_eq!(state["ipv6"]["reachable"], true, "{ctx}");
    assert_eq!(state["ipv4"]["reachable"], true, "{ctx}");
    // Private IPv4 on the OOB NIC, global IPv6 on the other: two NICs, IPv6 node.
    assert_verdict(&run, &state, "ipv6", "dc-two-nics", "dual-nic", &ctx);
    assert_eq!(state_iface(&state, "eth0")["role"], "oob", "{ctx}");
    assert_eq!(state_iface(&state, "eth1")["role"], "public", "{ctx}");
    assert_says(&state, "eth1 has no public IPv4", &ctx);

    // Last (so that a failure here does not hide the checks above): once eth1 was ready, eth0
    // (no router at all on its segment) was waited for only the 1 s grace, not the whole
    // default 3 s, and the state says why it has no IPv6, as the console did.
    assert!(
        event(&events, |l| l.contains(
            "eth0: no IPv6 router advertisement seen within 1."
        ))
        .is_some(),
        "no `eth0: no IPv6 router advertisement seen within 1.x s` (the silent-segment grace)\n{ctx}"
    );
    assert!(
        run.elapsed < Duration::from_millis(2500),
        "the OOB segment without IPv6 held the boot: {ctx}"
    );
    assert!(
        eth0["slaac"]["diagnosis"]
            .as_str()
            .is_some_and(|d| d.contains("no IPv6 router advertisement")),
        "eth0 slaac.diagnosis should say that no RA was seen, like the console\n{ctx}"
    );
}

/// An RA with the M flag and a prefix without the A flag: no address, and the farmer is told
/// that ZOS does no DHCPv6. IPv4 still reaches the hub, so the boot goes on (exit 0).
#[test]
fn ra_with_managed_flag_is_diagnosed() {
    let t = "ra_with_managed_flag_is_diagnosed";
    if !lab_ok(t, &[RADVD, BUSYBOX, SS]) {
        return;
    }
    let lab = Lab::new("managed");
    lab.wire("eth0", "r0", "10.42.0.1/24");
    lab.router_addr("r0", "2001:db8:3::1/64");
    let hub = lab.hub();
    let dhcp = lab.dnsmasq("r0", &[&hub.dhcp_dns_option()]);
    let radvd = lab.radvd(
        "r0",
        "\tAdvManagedFlag on;\n\tAdvOtherConfigFlag on;\n\
         \tprefix 2001:db8:3::/64 { AdvOnLink on; AdvAutonomous off; };\n",
    );
    let run = net(&lab, &hub.cmdline(), &["--wait-ipv6", "3"]);
    let servers = [dhcp.describe(), radvd.describe(), hub.describe()];
    let state = state_of(&lab, &run, &servers.join("\n"));
    let ctx = context(&run, &state, &servers);

    assert_eq!(run.code(), Some(0), "IPv4 reaches the hub: exit 0\n{ctx}");
    assert_eq!(state["ipv4"]["reachable"], true, "{ctx}");

    // No global address, in the kernel or the state.
    let on_link = lab.node_ipv6("eth0");
    assert!(
        on_link.iter().all(|a| !is_global(&a.address)),
        "a global address without the A flag: {on_link:#?}\n{ctx}"
    );
    assert!(
        state_ipv6(&state, "eth0").iter().all(|e| !is_global(&e.0)),
        "state lists a global address\n{ctx}"
    );
    let slaac = &state_iface(&state, "eth0")["slaac"];
    assert!(slaac["ready_after_ms"].is_null(), "{ctx}");

    // The RA was seen and parsed.
    let ra = &slaac["ra"];
    assert_eq!(ra["managed"], true, "ra.managed\n{ctx}");
    assert_eq!(ra["other"], true, "ra.other\n{ctx}");
    assert!(
        ra["prefixes"].as_array().is_some_and(|p| p
            .iter()
            .any(|p| p["prefix"] == "2001:db8:3::" && p["len"] == 64 && p["autonomous"] == false)),
        "ra.prefixes lacks 2001:db8:3::/64 without the A flag\n{ctx}"
    );

    // The console event line (not only the report) says it.
    let events = console_events(&run);
    assert!(
        event(&events, |l| l.starts_with("eth0:")
            && l.contains("ZOS does no DHCPv6"))
        .is_some(),
        "no timestamped `eth0: … ZOS does no DHCPv6 …` line\n{ctx}"
    );

    // Classification: the DHCPv6 case, hidden (private IPv4 works).
    assert_verdict(
        &run,
        &state,
        "hidden",
        "ra-wants-dhcpv6",
        "single-nic",
        &ctx,
    );
    assert_says(&state, "ZOS does no DHCPv6: enable SLAAC", &ctx);
    let router_mac = lab.router_mac("r0");
    assert_says(&state, &format!("The router ({router_mac}) on eth0"), &ctx);

    // Last: the state says why, like the console.
    assert!(
        slaac["diagnosis"]
            .as_str()
            .is_some_and(|d| d.contains("DHCPv6")),
        "eth0 slaac.diagnosis should name DHCPv6, like the console\n{ctx}"
    );
}

/// No router advertiser at all: with `--wait-ipv6 2` the node says so after 2 s and moves on.
#[test]
fn no_ra_at_all_is_reported_within_the_wait() {
    let t = "no_ra_at_all_is_reported_within_the_wait";
    if !lab_ok(t, &[BUSYBOX, SS]) {
        return;
    }
    let lab = Lab::new("nora");
    lab.wire("eth0", "r0", "10.43.0.1/24");
    let hub = lab.hub();
    let dhcp = lab.dnsmasq("r0", &[&hub.dhcp_dns_option()]);
    let run = net(&lab, &hub.cmdline(), &["--wait-ipv6", "2"]);
    let servers = [dhcp.describe(), hub.describe()];
    let state = state_of(&lab, &run, &servers.join("\n"));
    let ctx = context(&run, &state, &servers);

    assert_eq!(run.code(), Some(0), "{ctx}");
    let events = console_events(&run);
    let (ts, _) = event(&events, |l| {
        l.contains("eth0: no IPv6 router advertisement seen within 2.0s")
    })
    .unwrap_or_else(|| panic!("no `eth0: no IPv6 router advertisement seen within 2.0s`\n{ctx}"));
    // It waited the whole 2 s from carrier-up, and not much longer.
    assert!(
        *ts >= 1.9,
        "reported at {ts} s, before the 2 s wait was over\n{ctx}"
    );
    // The carrier-up line must be there: without it the timing below was never checked.
    let (up, _) = event(&events, |l| l.starts_with("eth0: carrier up"))
        .unwrap_or_else(|| panic!("no `eth0: carrier up` line\n{ctx}"));
    let waited = ts - up;
    assert!(
        (1.9..2.8).contains(&waited),
        "carrier-up → no-RA line: {waited:.3} s, expected ≈ 2 s\n{ctx}"
    );
    assert!(
        run.elapsed < Duration::from_secs(6),
        "took {:?}: DHCP + a 2 s IPv6 wait + a probe in the lab should be < 6 s\n{ctx}",
        run.elapsed
    );
    let slaac = &state_iface(&state, "eth0")["slaac"];
    assert!(slaac["ready_after_ms"].is_null(), "{ctx}");
    assert!(
        slaac["ra"].is_null(),
        "no RA was sent, slaac.ra must be null\n{ctx}"
    );
    assert!(
        state["timings_ms"]["slaac"].is_null(),
        "timings_ms.slaac must be null/absent without SLAAC\n{ctx}"
    );
}

/// A site-local prefix (fec0::/10, deprecated): the kernel forms an address, but it is not
/// global: no ready SLAAC, and a `not-global` warning.
#[test]
fn site_local_prefix_is_not_global() {
    let t = "site_local_prefix_is_not_global";
    if !lab_ok(t, &[RADVD, BUSYBOX, SS]) {
        return;
    }
    let lab = Lab::new("sitelocal");
    lab.wire("eth0", "r0", "10.44.0.1/24");
    let hub = lab.hub();
    let dhcp = lab.dnsmasq("r0", &[&hub.dhcp_dns_option()]);
    let radvd = lab.radvd(
        "r0",
        "\tprefix fec0:0:0:1::/64 { AdvOnLink on; AdvAutonomous on; };\n",
    );
    let run = net(&lab, &hub.cmdline(), &["--wait-ipv6", "3"]);
    let servers = [dhcp.describe(), radvd.describe(), hub.describe()];
    let state = state_of(&lab, &run, &servers.join("\n"));
    let ctx = context(&run, &state, &servers);

    assert_eq!(run.code(), Some(0), "IPv4 reaches the hub\n{ctx}");
    // Lab check: the RA arrived and the kernel made the site-local address.
    let site = eui64_address("fec0:0:0:1::".parse().unwrap(), &mac_of(&lab, "eth0"));
    let on_link = lab.node_ipv6("eth0");
    assert!(
        on_link.iter().any(|a| a.address == site),
        "lab: the kernel did not form {site} from the RA: {on_link:#?}\n{ctx}"
    );

    let slaac = &state_iface(&state, "eth0")["slaac"];
    assert!(
        slaac["ready_after_ms"].is_null(),
        "a site-local address must not count as SLAAC ready\n{ctx}"
    );
    assert!(
        state["timings_ms"]["slaac"].is_null(),
        "timings_ms.slaac must be null/absent\n{ctx}"
    );
    assert!(
        state_ipv6(&state, "eth0").iter().all(|e| !is_global(&e.0)),
        "state lists a global address\n{ctx}"
    );
    assert!(
        warned(&state, "not-global", &format!("eth0 {site} is site-local")),
        "no `not-global: eth0 {site} is site-local…` warning\n{ctx}"
    );
    assert_verdict(
        &run,
        &state,
        "hidden",
        "home-nat-v4-only",
        "single-nic",
        &ctx,
    );
    // Last: the state says why, like the console.
    assert!(
        slaac["diagnosis"]
            .as_str()
            .is_some_and(|d| d.contains("not global")),
        "eth0 slaac.diagnosis should say the prefix is not global, like the console\n{ctx}"
    );
}

// -------------------------------------------------------------------------------------------
// Reachability

/// OOB on eth0 (private), a public segment on eth1 with public IPv4 (DHCP, 203.0.113.0/24)
/// and IPv6 (radvd): the datacentre two-NIC layout, a public node.
#[test]
fn public_ipv4_on_the_public_segment() {
    let t = "public_ipv4_on_the_public_segment";
    if !lab_ok(t, &[RADVD, BUSYBOX, SS]) {
        return;
    }
    let lab = Lab::new("pubseg");
    lab.wire("eth0", "r0", "10.45.0.1/24");
    let w1 = lab.wire("eth1", "r1", "203.0.113.1/24");
    lab.router_addr("r1", "2001:db8:5::1/64");
    let hub = lab.hub();
    let dhcp0 = lab.dnsmasq("r0", &[&hub.dhcp_dns_option()]);
    // zos.oob= makes eth0 the OOB NIC whichever server answers first.
    let dhcp1 = lab.dnsmasq("r1", &[&hub.dhcp_dns_option()]);
    let radvd = lab.radvd("r1", &slaac_body("2001:db8:5::"));
    let run = net(
        &lab,
        &format!("{} zos.oob=eth0", hub.cmdline()),
        &["--wait-ipv6", "5"],
    );
    let servers = [
        dhcp0.describe(),
        dhcp1.describe(),
        radvd.describe(),
        hub.describe(),
    ];
    let state = state_of(&lab, &run, &servers.join("\n"));
    let ctx = context(&run, &state, &servers);

    assert_eq!(run.code(), Some(0), "{ctx}");
    let eth1 = state_iface(&state, "eth1");
    let v4 = eth1["ipv4"]
        .as_array()
        .and_then(|a| a.iter().find_map(|e| ip_of(&e["address"])))
        .unwrap_or_else(|| panic!("eth1 has no IPv4 in the state\n{ctx}"));
    assert!(w1.contains(v4), "eth1 {v4} not in 203.0.113.0/24\n{ctx}");
    assert!(
        lab.node_ipv4("eth1").iter().any(|a| a.address == v4),
        "{v4} not on eth1\n{ctx}"
    );
    assert_slaac_ready(&lab, &state, "eth1", "2001:db8:5::", "r1", &ctx);

    assert_eq!(state_iface(&state, "eth0")["role"], "oob", "{ctx}");
    assert_eq!(eth1["role"], "public", "{ctx}");
    assert_verdict(&run, &state, "public", "dc-two-nics", "dual-nic", &ctx);
    assert_says(&state, "management on eth0, public traffic on eth1", &ctx);
    assert!(
        warned(&state, "documentation-prefix", "203.0.113.0/24"),
        "203.0.113.x must be flagged as a documentation prefix\n{ctx}"
    );
}

/// The hub answers over IPv6 only (IPv4 TCP/80 rejected at the router): IPv6 node, exit 0, and
/// the failed IPv4 probe is in the state with its error.
#[test]
fn ipv6_only_reachability() {
    let t = "ipv6_only_reachability";
    if !lab_ok(t, &[RADVD, BUSYBOX, SS, NFT]) {
        return;
    }
    let lab = Lab::new("v6only");
    lab.wire("eth0", "r0", "10.46.0.1/24");
    // A datacentre: the IPv6 router is another box (another MAC) than the IPv4 gateway.
    lab.macvlan("r0", "r0v6");
    lab.router_addr("r0v6", "2001:db8:6::1/64");
    let hub = lab.hub();
    let dhcp = lab.dnsmasq("r0", &[&hub.dhcp_dns_option()]);
    let radvd = lab.radvd("r0v6", &slaac_body("2001:db8:6::"));
    lab.reject_tcp(Family::V4, 80);
    let run = net(&lab, &hub.cmdline(), &["--wait-ipv6", "5"]);
    let rejected = lab.reject_count(Family::V4);
    let servers = [dhcp.describe(), radvd.describe(), hub.describe()];
    let state = state_of(&lab, &run, &servers.join("\n"));
    let ctx = format!(
        "{}\nnft rejected {rejected} IPv4 TCP/80 packets",
        context(&run, &state, &servers)
    );

    assert_eq!(run.code(), Some(0), "IPv6 reaches the hub: exit 0\n{ctx}");
    assert!(rejected > 0, "the IPv4 probe never tried TCP/80\n{ctx}");
    assert_eq!(state["ipv6"]["reachable"], true, "{ctx}");
    assert_eq!(state["ipv4"]["reachable"], false, "{ctx}");

    let v4 = probes(&state, "ipv4");
    let failed = v4
        .iter()
        .find(|p| p["ok"] == false)
        .unwrap_or_else(|| panic!("no failed ipv4 probe in probes[]\n{ctx}"));
    assert!(
        failed["error"]
            .as_str()
            .is_some_and(|e| !e.trim().is_empty()),
        "the failed ipv4 probe has no error text\n{ctx}"
    );
    assert_eq!(failed["url"], hub.url, "{ctx}");
    assert!(
        v4.iter().all(|p| p["ok"] != true),
        "an ipv4 probe succeeded?\n{ctx}"
    );
    let v6 = probes(&state, "ipv6");
    let ok = v6
        .iter()
        .find(|p| p["ok"] == true)
        .unwrap_or_else(|| panic!("no successful ipv6 probe\n{ctx}"));
    assert_eq!(ok["address"], HUB_V6, "{ctx}");
    assert_eq!(ok["status"], 200, "{ctx}");
    assert_eq!(ok["url"], hub.url, "{ctx}");

    assert_slaac_ready(&lab, &state, "eth0", "2001:db8:6::", "r0v6", &ctx);
    assert_verdict(
        &run,
        &state,
        "ipv6",
        "dc-private-v4-with-ipv6",
        "single-nic",
        &ctx,
    );
    assert!(warned(&state, "ipv4-unreachable", ""), "{ctx}");
}

// -------------------------------------------------------------------------------------------
// One test per classification case

/// Private IPv4 behind NAT, no IPv6 at all: hidden.
#[test]
fn case_home_nat_v4_only() {
    let t = "case_home_nat_v4_only";
    if !lab_ok(t, &[BUSYBOX, SS]) {
        return;
    }
    let lab = Lab::new("homenat");
    lab.wire("eth0", "r0", "10.47.0.1/24");
    let hub = lab.hub();
    let dhcp = lab.dnsmasq("r0", &[&hub.dhcp_dns_option()]);
    let run = net(&lab, &hub.cmdline(), &["--wait-ipv6", "1"]);
    let servers = [dhcp.describe(), hub.describe()];
    let state = state_of(&lab, &run, &servers.join("\n"));
    let ctx = context(&run, &state, &servers);

    assert_eq!(run.code(), Some(0), "{ctx}");
    assert_verdict(
        &run,
        &state,
        "hidden",
        "home-nat-v4-only",
        "single-nic",
        &ctx,
    );
    assert_eq!(
        state["headline"], "HIDDEN node: private IPv4 behind NAT, no IPv6",
        "{ctx}"
    );
    assert_says(&state, "ask your ISP for IPv6", &ctx);
    assert_eq!(state["ipv4"]["reachable"], true, "{ctx}");
    assert!(
        state["ipv6"]["reachable"].is_null(),
        "no IPv6 address: ipv6.reachable must be null (not probed)\n{ctx}"
    );
    assert!(
        probes(&state, "ipv4")
            .iter()
            .any(|p| p["ok"] == true && p["address"] == HUB_V4 && p["status"] == 200),
        "no successful ipv4 probe to {HUB_V4}\n{ctx}"
    );
    assert_eq!(state_iface(&state, "eth0")["role"], "oob", "{ctx}");
    assert_eq!(
        state_iface(&state, "eth0")["roles"],
        json!(["oob"]),
        "{ctx}"
    );
}

/// One home router hands out NAT IPv4 (dnsmasq) and IPv6 (radvd) from the same interface, so
/// the same MAC: dual-stack home, hidden (home routers firewall inbound IPv6).
#[test]
fn case_dual_stack_home() {
    let t = "case_dual_stack_home";
    if !lab_ok(t, &[RADVD, BUSYBOX, SS]) {
        return;
    }
    let lab = Lab::new("dualhome");
    lab.wire("eth0", "r0", "10.48.0.1/24");
    lab.router_addr("r0", "2001:db8:7::1/64");
    let hub = lab.hub();
    let dhcp = lab.dnsmasq("r0", &[&hub.dhcp_dns_option()]);
    let radvd = lab.radvd("r0", &slaac_body("2001:db8:7::"));
    let run = net(&lab, &hub.cmdline(), &["--wait-ipv6", "5"]);
    let servers = [dhcp.describe(), radvd.describe(), hub.describe()];
    let state = state_of(&lab, &run, &servers.join("\n"));
    let ctx = context(&run, &state, &servers);

    assert_eq!(run.code(), Some(0), "{ctx}");
    assert_slaac_ready(&lab, &state, "eth0", "2001:db8:7::", "r0", &ctx);
    assert_eq!(state["ipv4"]["reachable"], true, "{ctx}");
    assert_eq!(state["ipv6"]["reachable"], true, "{ctx}");
    // Lab check: the IPv4 gateway and the IPv6 router are the same MAC.
    let r0_mac = lab.router_mac("r0");
    assert_eq!(
        lab.node_neighbour_mac("10.48.0.1").as_deref(),
        Some(r0_mac.as_str()),
        "lab: the node's ARP entry for the gateway\n{ctx}"
    );
    assert_verdict(
        &run,
        &state,
        "hidden",
        "dual-stack-home",
        "single-nic",
        &ctx,
    );
    assert_eq!(
        state["headline"], "HIDDEN node: home router with NAT IPv4 and firewalled IPv6",
        "{ctx}"
    );
    let mac = mac_of(&lab, "eth0");
    assert_says(
        &state,
        &format!("allow incoming IPv6 on the router to this node's MAC {mac}"),
        &ctx,
    );
    assert_says(&state, &format!("from the same router ({r0_mac})"), &ctx);
}

/// Datacentre, one NIC: private IPv4 from the gateway, IPv6 from another router (radvd on a
/// macvlan: another MAC): an IPv6 node.
#[test]
fn case_dc_private_v4_with_ipv6() {
    let t = "case_dc_private_v4_with_ipv6";
    if !lab_ok(t, &[RADVD, BUSYBOX, SS]) {
        return;
    }
    let lab = Lab::new("dcpriv");
    lab.wire("eth0", "r0", "10.49.0.1/24");
    let v6_mac = lab.macvlan("r0", "r0v6");
    lab.router_addr("r0v6", "2001:db8:8::1/64");
    let hub = lab.hub();
    let dhcp = lab.dnsmasq("r0", &[&hub.dhcp_dns_option()]);
    let radvd = lab.radvd("r0v6", &slaac_body("2001:db8:8::"));
    let run = net(&lab, &hub.cmdline(), &["--wait-ipv6", "5"]);
    let servers = [dhcp.describe(), radvd.describe(), hub.describe()];
    let state = state_of(&lab, &run, &servers.join("\n"));
    let ctx = context(&run, &state, &servers);

    assert_eq!(run.code(), Some(0), "{ctx}");
    assert_slaac_ready(&lab, &state, "eth0", "2001:db8:8::", "r0v6", &ctx);
    // Lab check: the IPv4 gateway is r0's MAC, not the IPv6 router's.
    let r0_mac = lab.router_mac("r0");
    assert_ne!(r0_mac, v6_mac);
    assert_eq!(
        lab.node_neighbour_mac("10.49.0.1").as_deref(),
        Some(r0_mac.as_str()),
        "lab: the node's ARP entry for the gateway\n{ctx}"
    );
    assert_eq!(state["ipv4"]["reachable"], true, "{ctx}");
    assert_eq!(state["ipv6"]["reachable"], true, "{ctx}");
    assert_verdict(
        &run,
        &state,
        "ipv6",
        "dc-private-v4-with-ipv6",
        "single-nic",
        &ctx,
    );
    assert_eq!(
        state["headline"], "IPv6 node: private IPv4 behind NAT, global IPv6 reaches the grid",
        "{ctx}"
    );
    assert_says(&state, "Do not firewall the IPv6 prefix", &ctx);
    assert_says(&state, "add a small public IPv4 subnet", &ctx);
    let eth0 = state_iface(&state, "eth0");
    assert_eq!(eth0["role"], "oob", "{ctx}");
    assert_eq!(eth0["roles"], json!(["oob", "public"]), "{ctx}");
}

/// Datacentre, one NIC with public IPv4 and IPv6: public, the best single-NIC setup.
#[test]
fn case_dc_public_v4_with_ipv6() {
    let t = "case_dc_public_v4_with_ipv6";
    if !lab_ok(t, &[RADVD, BUSYBOX, SS]) {
        return;
    }
    let lab = Lab::new("dcpub");
    lab.wire("eth0", "r0", "203.0.113.1/24");
    lab.router_addr("r0", "2001:db8:9::1/64");
    let hub = lab.hub();
    let dhcp = lab.dnsmasq("r0", &[&hub.dhcp_dns_option()]);
    let radvd = lab.radvd("r0", &slaac_body("2001:db8:9::"));
    let run = net(&lab, &hub.cmdline(), &["--wait-ipv6", "5"]);
    let servers = [dhcp.describe(), radvd.describe(), hub.describe()];
    let state = state_of(&lab, &run, &servers.join("\n"));
    let ctx = context(&run, &state, &servers);

    assert_eq!(run.code(), Some(0), "{ctx}");
    assert_slaac_ready(&lab, &state, "eth0", "2001:db8:9::", "r0", &ctx);
    assert_eq!(state["ipv4"]["reachable"], true, "{ctx}");
    assert_eq!(state["ipv6"]["reachable"], true, "{ctx}");
    assert_verdict(
        &run,
        &state,
        "public",
        "dc-public-v4-with-ipv6",
        "single-nic",
        &ctx,
    );
    assert_eq!(
        state["headline"], "PUBLIC node: public IPv4 and global IPv6 (best single-NIC setup)",
        "{ctx}"
    );
    assert_says(&state, "the best single-NIC setup", &ctx);
    assert!(
        warned(&state, "documentation-prefix", "203.0.113.0/24"),
        "{ctx}"
    );
    assert!(
        warned(&state, "documentation-prefix", "2001:db8::/32"),
        "{ctx}"
    );
    let eth0 = state_iface(&state, "eth0");
    assert_eq!(eth0["roles"], json!(["oob", "public"]), "{ctx}");
}

/// Public IPv4 and no router advertisement: public, and the advice asks for IPv6.
#[test]
fn case_isp_without_ipv6() {
    let t = "case_isp_without_ipv6";
    if !lab_ok(t, &[BUSYBOX, SS]) {
        return;
    }
    let lab = Lab::new("ispnov6");
    lab.wire("eth0", "r0", "203.0.113.1/24");
    let hub = lab.hub();
    let dhcp = lab.dnsmasq("r0", &[&hub.dhcp_dns_option()]);
    let run = net(&lab, &hub.cmdline(), &["--wait-ipv6", "1"]);
    let servers = [dhcp.describe(), hub.describe()];
    let state = state_of(&lab, &run, &servers.join("\n"));
    let ctx = context(&run, &state, &servers);

    assert_eq!(run.code(), Some(0), "{ctx}");
    assert_verdict(
        &run,
        &state,
        "public",
        "isp-without-ipv6",
        "single-nic",
        &ctx,
    );
    assert_eq!(
        state["headline"], "PUBLIC node: public IPv4, no IPv6",
        "{ctx}"
    );
    assert_says(&state, "Ask your ISP for an IPv6 prefix", &ctx);
    assert_eq!(state["ipv4"]["reachable"], true, "{ctx}");
    assert!(
        warned(&state, "documentation-prefix", "203.0.113.0/24"),
        "{ctx}"
    );
    assert!(
        event(&console_events(&run), |l| l.contains(
            "eth0: no IPv6 router advertisement seen within 1.0s"
        ))
        .is_some(),
        "no `eth0: no IPv6 router advertisement seen within 1.0s` line\n{ctx}"
    );
}

/// A cable but no DHCP server anywhere (and no IPv6): offline, exit 1, within the timeout.
#[test]
fn case_no_dhcp() {
    let t = "case_no_dhcp";
    if !lab_ok(t, &[NFT]) {
        return;
    }
    let lab = Lab::new("nodhcp");
    lab.wire("eth0", "r0", "10.50.0.1/24");
    // No DHCP server; the nft rules only count (and drop) what the node sends to port 67.
    lab.loss("r0", 100);
    // No hub either: nothing to probe; the URL only keeps the binary away from public hosts.
    let run = net(
        &lab,
        "zos.probe=http://hub.lab.test/",
        &["--timeout", "4", "--wait-ipv6", "1"],
    );
    let (discovers, _) = lab.loss_counters();
    let state = state_of(&lab, &run, "");
    let ctx = format!(
        "{}\nDHCP packets from the node seen at the router: {discovers}",
        context(&run, &state, &[])
    );

    assert_eq!(run.code(), Some(1), "no lease: exit 1\n{ctx}");
    assert!(
        discovers >= 2,
        "the node sent {discovers} DHCP packets in 4 s: it should keep retrying\n{ctx}"
    );
    assert!(
        run.elapsed < Duration::from_secs(10),
        "took {:?} with --timeout 4\n{ctx}",
        run.elapsed
    );
    assert_verdict(&run, &state, "offline", "no-dhcp", "single-nic", &ctx);
    assert_eq!(
        state["headline"], "OFFLINE: link up, but no DHCPv4 lease and no IPv6",
        "{ctx}"
    );
    let mac = mac_of(&lab, "eth0");
    assert_says(
        &state,
        &format!("eth0 ({mac}) has a link but no DHCPv4 server answered"),
        &ctx,
    );
    assert!(
        lab.node_ipv4("eth0").is_empty(),
        "eth0 has IPv4 without a DHCP server\n{ctx}"
    );
    assert_eq!(state["online"], false, "{ctx}");
    assert!(
        state["error"].as_str().is_some_and(|e| !e.is_empty()),
        "a failed run says why in state.error\n{ctx}"
    );
}

/// No link on any NIC: offline, exit 1, "check the cable".
#[test]
fn case_no_carrier() {
    let t = "case_no_carrier";
    if !require_root(t) {
        return;
    }
    let lab = Lab::new("nocarrier");
    lab.wire_no_carrier("eth0", "r0", "10.51.0.1/24");
    let run = net(
        &lab,
        "zos.probe=http://hub.lab.test/",
        &["--timeout", "4", "--wait-ipv6", "1"],
    );
    let state = state_of(&lab, &run, "");
    let ctx = context(&run, &state, &[]);

    assert_eq!(run.code(), Some(1), "no link: exit 1\n{ctx}");
    assert!(
        run.elapsed < Duration::from_secs(10),
        "took {:?} with --timeout 4\n{ctx}",
        run.elapsed
    );
    assert_verdict(&run, &state, "offline", "no-carrier", "single-nic", &ctx);
    assert_eq!(state["headline"], "OFFLINE: no NIC has a link", "{ctx}");
    let mac = mac_of(&lab, "eth0");
    assert_says(
        &state,
        &format!("No link on eth0 ({mac}): check the cable"),
        &ctx,
    );
    assert_eq!(state_iface(&state, "eth0")["carrier"], false, "{ctx}");
    assert_eq!(state["online"], false, "{ctx}");
    assert!(
        state["error"].as_str().is_some_and(|e| !e.is_empty()),
        "a failed run says why in state.error\n{ctx}"
    );
}

/// A lease, but the hub is unreachable over IPv4 (rejected) and there is no IPv6: offline
/// (`unreachable`), exit 1.
#[test]
fn case_unreachable() {
    let t = "case_unreachable";
    if !lab_ok(t, &[BUSYBOX, SS, NFT]) {
        return;
    }
    let lab = Lab::new("unreach");
    lab.wire("eth0", "r0", "10.52.0.1/24");
    let hub = lab.hub();
    let dhcp = lab.dnsmasq("r0", &[&hub.dhcp_dns_option()]);
    lab.reject_tcp(Family::V4, 80);
    let run = net(&lab, &hub.cmdline(), &["--wait-ipv6", "1"]);
    let rejected = lab.reject_count(Family::V4);
    let servers = [dhcp.describe(), hub.describe()];
    let state = state_of(&lab, &run, &servers.join("\n"));
    let ctx = format!(
        "{}\nnft rejected {rejected}",
        context(&run, &state, &servers)
    );

    assert_eq!(run.code(), Some(1), "nothing reachable: exit 1\n{ctx}");
    assert!(rejected > 0, "the IPv4 probe never tried TCP/80\n{ctx}");
    assert_eq!(state["ipv4"]["reachable"], false, "{ctx}");
    assert_verdict(&run, &state, "offline", "unreachable", "single-nic", &ctx);
    assert_says(&state, "Check the default gateway", &ctx);
    assert_eq!(state["online"], false, "{ctx}");
    assert!(
        state["error"].as_str().is_some_and(|e| !e.is_empty()),
        "a failed run says why in state.error\n{ctx}"
    );
    assert!(warned(&state, "ipv4-unreachable", ""), "{ctx}");
    assert!(
        probes(&state, "ipv4")
            .iter()
            .any(|p| p["ok"] == false && p["error"].as_str().is_some_and(|e| !e.is_empty())),
        "no failed ipv4 probe with an error\n{ctx}"
    );
}

// -------------------------------------------------------------------------------------------
// Another router advertiser

/// dnsmasq sends the RAs (`--enable-ra`, `ra-only`) instead of radvd: SLAAC works the same.
/// DHCPv4 and RA from one dnsmasq on one interface: the same MAC, a dual-stack home.
#[test]
fn dnsmasq_ra_mode_also_works() {
    let t = "dnsmasq_ra_mode_also_works";
    if !lab_ok(t, &[BUSYBOX, SS]) {
        return;
    }
    let lab = Lab::new("dnsmasqra");
    lab.wire("eth0", "r0", "10.53.0.1/24");
    lab.ipv6_router_if("r0");
    lab.router_addr("r0", "2001:db8:a::1/64");
    let hub = lab.hub();
    let dhcp = lab.dnsmasq(
        "r0",
        &[
            "--dhcp-range=10.53.0.100,10.53.0.200,255.255.255.0,1h",
            "--enable-ra",
            "--dhcp-range=::,constructor:r0,ra-only,64,1d",
            &hub.dhcp_dns_option(),
        ],
    );
    let run = net(&lab, &hub.cmdline(), &["--wait-ipv6", "5"]);
    let servers = [dhcp.describe(), hub.describe()];
    let state = state_of(&lab, &run, &servers.join("\n"));
    let ctx = context(&run, &state, &servers);

    assert_eq!(run.code(), Some(0), "{ctx}");
    let addr = assert_slaac_ready(&lab, &state, "eth0", "2001:db8:a::", "r0", &ctx);
    assert!(
        event(&console_events(&run), |l| l
            .contains(&format!("eth0: SLAAC {addr}/64 ready in")))
        .is_some(),
        "no `eth0: SLAAC {addr}/64 ready in …` line\n{ctx}"
    );
    assert!(
        state["timings_ms"]["slaac"]
            .as_f64()
            .is_some_and(|ms| ms > 0.0),
        "timings_ms.slaac\n{ctx}"
    );
    assert_eq!(state["ipv6"]["reachable"], true, "{ctx}");
    assert_verdict(
        &run,
        &state,
        "hidden",
        "dual-stack-home",
        "single-nic",
        &ctx,
    );
}
