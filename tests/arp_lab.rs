//! ARP conflict detection against another host *probing* for our address (issue 17, point 10):
//! in a fleet, dnsmasq offered one address to two nodes; the one that got the ACK saw the
//! other's RFC 5227 probe (sender IP 0.0.0.0) and declined its good lease, then waited 10 s.
//! Here a prober in the router namespace sends such a probe for the only address dnsmasq has
//! every 20 ms while the node asks for it: the node must bind, keep the address, and announce
//! it (an ARP request with sender = target = the address) — not DECLINE it.
//! Needs root; skips with a `SKIP` line otherwise (`ZOS_LAB_REQUIRED=1`: fail instead).
mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// Sends an ARP probe for ARGV[2] on ARGV[1] every 20 ms for ARGV[3] seconds; prints
/// `probes=N announcements=M` (ARP requests from another MAC with sender = target = ARGV[2]).
const PROBER: &str = r#"
import select, socket, struct, sys, time
ifname, ip, secs = sys.argv[1], sys.argv[2], float(sys.argv[3])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
s.bind((ifname, 0))
mac = s.getsockname()[4]
target = socket.inet_aton(ip)
probe = (b"\xff" * 6 + mac + b"\x08\x06" + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1)
         + mac + b"\0" * 4 + b"\0" * 6 + target).ljust(60, b"\0")
end = time.time() + secs
nxt = 0.0
probes = announcements = 0
print("ready", flush=True)
while time.time() < end:
    if time.time() >= nxt:
        s.send(probe)
        probes += 1
        nxt = time.time() + 0.02
    r, _, _ = select.select([s], [], [], max(0.0, min(nxt, end) - time.time()))
    if not r:
        continue
    f = s.recv(2048)
    if len(f) < 42 or f[12:14] != b"\x08\x06" or f[22:28] == mac:
        continue
    op = struct.unpack("!H", f[20:22])[0]
    if op == 1 and f[28:32] == target and f[38:42] == target:
        announcements += 1
print("probes=%d announcements=%d" % (probes, announcements), flush=True)
"#;

#[test]
fn another_hosts_probe_for_the_leased_address_is_defended_not_declined() {
    let t = "arp_probe_defended";
    if !require_root(t) || !require_tool(t, "dnsmasq", "--version") {
        return;
    }
    let lab = Lab::new(t);
    lab.wire("eth0", "r0", "10.74.0.1/24");
    // One address to give: the prober asks for exactly the one the node will be offered.
    let dhcp = lab.dnsmasq(
        "r0",
        &["--dhcp-range=10.74.0.50,10.74.0.50,255.255.255.0,1h"],
    );
    let mut prober = Command::new("timeout")
        .args([
            "-k",
            "2",
            "30",
            "ip",
            "netns",
            "exec",
            &lab.router,
            PYTHON,
            "-c",
            PROBER,
        ])
        .args(["r0", "10.74.0.50", "6"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the ARP prober");
    // Wait for "ready": the probes are on the wire before the node's first DISCOVER.
    {
        use std::io::BufRead;
        let out = prober.stdout.as_mut().expect("piped");
        let mut line = String::new();
        let _ = std::io::BufReader::new(out).read_line(&mut line);
        assert_eq!(line.trim(), "ready", "prober did not start");
    }
    let run = lab.run_net(
        "zos.probe=none",
        &["--wait-ipv6", "0", "--timeout", "5"],
        Duration::from_secs(20),
    );
    let out = prober.wait_with_output().expect("prober output");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let ctx = format!("{}\n{}\nprober: {said}", run.describe(), dhcp.describe());
    assert_eq!(run.code(), Some(0), "bound despite the probes\n{ctx}");
    let addrs = lab.node_ipv4("eth0");
    assert_eq!(addrs.len(), 1, "{addrs:?}\n{ctx}");
    assert_eq!(addrs[0].address.to_string(), "10.74.0.50", "{ctx}");
    assert!(
        !dhcp.log().contains("DHCPDECLINE"),
        "the node declined its lease\n{ctx}"
    );
    let announcements: u32 = said
        .split_whitespace()
        .find_map(|w| w.strip_prefix("announcements="))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no prober summary\n{ctx}"));
    assert!(
        announcements >= 1,
        "the node never announced its address\n{ctx}"
    );
}
