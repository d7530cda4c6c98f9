//! Datacentre networks (issue 8) in QEMU: this machine's kernel has no `8021q` or `bonding`,
//! the Debian cloud kernel in the VM has both as modules (in the image, loaded by zos-netboot
//! by name). The router namespace side of a VLAN trunk is `tests/common/vlan_relay.py`: frames
//! the VM tags with id N leave untagged on a veth where that segment's dnsmasq listens, and
//! come back tagged. Needs root, /dev/net/tun, QEMU; skips with a reason otherwise (fails in CI).
mod qemu;

use std::fs;
use std::net::Ipv4Addr;
use std::time::Duration;

use qemu::*;
use serde_json::Value;

const NEXT_PID1: &str = "NEXT-ROOT: init running as PID 1";
const VM_MAC: &str = "52:54:00:7a:00:01";

fn report(vm: &Vm, daemons: &[&Daemon]) -> String {
    let mut s = format!(
        "qemu: {}\nexit: {:?}, {:.1}s after start\n--- console\n{}",
        vm.cmdline,
        vm.status,
        vm.started.elapsed().as_secs_f64(),
        vm.console_text()
    );
    for d in daemons {
        s += &d.describe();
    }
    s
}

/// A dnsmasq (DHCP only) on one interface with its own log, so two can run side by side.
fn dhcp_server(r: &Netns, dir: &TestDir, iface: &str, range: &str, gateway: &str) -> Daemon {
    let log = dir.join(&format!("dnsmasq-{iface}.log"));
    let leases = dir.join(&format!("dnsmasq-{iface}.leases"));
    fs::write(&leases, "").unwrap();
    let args: Vec<String> = vec![
        "--no-daemon".into(),
        "--conf-file=/dev/null".into(),
        "--no-hosts".into(),
        "--no-resolv".into(),
        "--port=0".into(),
        "--bind-interfaces".into(),
        format!("--interface={iface}"),
        "--except-interface=lo".into(),
        "--no-ping".into(),
        format!("--dhcp-range={range}"),
        format!("--dhcp-option=3,{gateway}"),
        format!("--dhcp-leasefile={}", leases.display()),
        "--pid-file=".into(),
        "--log-dhcp".into(),
        format!("--log-facility={}", log.display()),
    ];
    let mut d = r.spawn(
        &format!("dnsmasq on {iface}"),
        "dnsmasq",
        &args,
        dir.join(&format!("dnsmasq-{iface}.stderr")),
    );
    d.log = Some(log.clone());
    let ok = wait_until(Duration::from_secs(10), || {
        fs::read_to_string(&log).is_ok_and(|l| l.contains("DHCP, IP range"))
            || !matches!(d.child.try_wait(), Ok(None))
    });
    assert!(
        ok && d.alive(),
        "dnsmasq on {iface} did not start:\n{}",
        d.describe()
    );
    d
}

/// What every test here needs: root, /dev/net/tun, QEMU, dnsmasq (or a printed SKIP); then
/// the boot image, a directory for the logs and the router namespace.
fn vm_lab(t: &str) -> Option<(std::path::PathBuf, TestDir, Netns)> {
    let needs = Needs {
        tun: true,
        tools: &["dnsmasq"],
    };
    if !require(t, &needs) {
        return None;
    }
    Some((initramfs(), TestDir::new(t), Netns::new()))
}

/// The router side of a VLAN trunk on the tap `trunk`: `tests/common/vlan_relay.py`, each
/// VLAN id to its access veth; returns once the relay says it is ready.
fn vlan_relay(r: &Netns, dir: &TestDir, access: &[(u16, &str)]) -> Daemon {
    let ready = dir.join("relay.ready");
    let mut args = vec![
        format!("{REPO}/tests/common/vlan_relay.py"),
        "--trunk".into(),
        "trunk".into(),
        "--ready-file".into(),
        ready.to_string_lossy().into_owned(),
    ];
    for (id, veth) in access {
        args.push("--access".into());
        args.push(format!("{id}={veth}"));
    }
    let mut relay = r.spawn("vlan relay", PYTHON, &args, dir.join("relay.stderr"));
    assert!(
        wait_until(Duration::from_secs(10), || ready.exists() || !relay.alive()),
        "relay did not start:\n{}",
        relay.describe()
    );
    relay
}

/// One segment of several cables: a bridge `br0` (addressed `cidr`) with a tap per name as
/// its ports, for QEMU NICs that must see each other's DHCP server.
fn bridged_taps(r: &Netns, taps: &[&str], cidr: &str) {
    r.ip(&["link", "add", "br0", "type", "bridge"]);
    for tap in taps {
        r.tap(tap);
        r.ip(&["link", "set", tap, "master", "br0"]);
    }
    r.ip(&["link", "set", "br0", "up"]);
    r.ip(&["addr", "add", cidr, "dev", "br0"]);
}

fn log_of(d: &Daemon) -> String {
    d.log
        .as_ref()
        .and_then(|p| fs::read_to_string(p).ok())
        .unwrap_or_default()
}

/// `vlan:priv=100`: the VM's lease comes from the segment behind VLAN 100 on its one NIC, and
/// the untagged segment, whose DHCP server would give a lease to anyone asking, is never asked.
#[test]
fn qemu_vlan_priv_takes_the_lease_on_the_tagged_segment_only() {
    let t = "qemu_vlan_priv_takes_the_lease_on_the_tagged_segment_only";
    let Some((image, dir, r)) = vm_lab(t) else {
        return;
    };
    // The trunk: a tap whose untagged segment is 10.50.0.0/24 with its own DHCP server.
    r.tap("trunk");
    r.ip(&["addr", "add", "10.50.0.1/24", "dev", "trunk"]);
    let untagged = dhcp_server(
        &r,
        &dir,
        "trunk",
        "10.50.0.100,10.50.0.200,255.255.255.0,1h",
        "10.50.0.1",
    );
    // VLAN 100: a veth pair; the relay owns v100a, the segment's server listens on v100b.
    r.ip(&[
        "link", "add", "v100a", "type", "veth", "peer", "name", "v100b",
    ]);
    r.ip(&["link", "set", "v100a", "up"]);
    r.ip(&["link", "set", "v100b", "up"]);
    r.ip(&["addr", "add", "10.100.0.1/24", "dev", "v100b"]);
    let tagged = dhcp_server(
        &r,
        &dir,
        "v100b",
        "10.100.0.100,10.100.0.200,255.255.255.0,1h",
        "10.100.0.1",
    );
    let relay = vlan_relay(&r, &dir, &[(100, "v100a")]);

    let mut vm = Vm::start(
        &r,
        &dir,
        &image,
        &["--tap", "trunk"],
        "loglevel=4 zos.probe=none zos.fetch=none zos.init=/sbin/init runmode=test farmer_id=7 \
         vlan:priv=100",
    );
    let status = vm.wait(&["8021q", "eth0.100: VLAN 100", "DHCPv4 10.100.0.", NEXT_PID1]);
    let why = |m: &str| format!("{m}\n{}", report(&vm, &[&untagged, &tagged, &relay]));
    assert!(status.is_some(), "{}", why("QEMU still running"));
    let console = vm.console_text();
    let steps: &[&[Expect]] = &[
        &[Expect {
            what: "8021q loaded by name",
            any: &["loaded 8021q"],
        }],
        &[Expect {
            what: "the VLAN link, its parent and purpose on the console",
            any: &["eth0.100: VLAN 100 on eth0 (vlan:priv, the management segment): DHCPv4 only"],
        }],
        &[Expect {
            what: "the lease on the tagged link",
            any: &["eth0.100: DHCPv4 10.100.0."],
        }],
        &[Expect {
            what: "handoff",
            any: &[NEXT_PID1],
        }],
    ];
    if let Err(e) = expect_in_order(&console, steps) {
        panic!("{}", why(&e));
    }
    assert!(
        console.contains("eth0: found NIC") && console.contains("untagged: SLAAC only"),
        "{}",
        why("the parent is said to take no lease")
    );
    // Server side: the tagged segment's server leased to the VM's MAC; the untagged one was
    // never asked (it would have answered anyone).
    let tagged_log = log_of(&tagged);
    assert!(
        tagged_log.contains("DHCPACK(v100b) 10.100.0.") && tagged_log.contains(VM_MAC),
        "{}",
        why("no lease on VLAN 100")
    );
    let untagged_log = log_of(&untagged);
    assert!(
        !untagged_log.contains("DHCPDISCOVER") && !untagged_log.contains("DHCPREQUEST"),
        "{}",
        why("untagged traffic asked for a lease")
    );
    // The state the next root sees: the VLAN link with parent, id and purpose, and the lease.
    let state = printed_state(&console).unwrap_or_else(|e| panic!("{}", why(&e)));
    let ifaces = state["interfaces"].as_array().cloned().unwrap_or_default();
    let vlan = ifaces
        .iter()
        .find(|i| i["name"] == "eth0.100")
        .unwrap_or_else(|| panic!("{}", why("no eth0.100 in the state")));
    assert_eq!(vlan["vlan"]["parent"], "eth0", "{vlan}");
    assert_eq!(vlan["vlan"]["id"], 100, "{vlan}");
    assert_eq!(vlan["vlan"]["purpose"], "management", "{vlan}");
    let addr: Ipv4Addr = vlan["ipv4"][0]["address"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("{}", why("no IPv4 on eth0.100")));
    assert_eq!(addr.octets()[..3], [10, 100, 0], "{vlan}");
    let parent: &Value = ifaces
        .iter()
        .find(|i| i["name"] == "eth0")
        .unwrap_or_else(|| panic!("{}", why("no eth0 in the state")));
    assert_eq!(parent["ipv4"], Value::Array(vec![]), "{parent}");
    let relay_counters = fs::read_to_string(dir.join("relay.stderr")).unwrap_or_default();
    say(&format!("{t}: eth0.100 {addr}; {relay_counters}"));
}

/// Sends one command to QEMU's human monitor (qemu/run.sh --monitor).
fn monitor(socket: &std::path::Path, command: &str) {
    use std::io::Write;
    let mut s = std::os::unix::net::UnixStream::connect(socket)
        .unwrap_or_else(|e| panic!("monitor {}: {e}", socket.display()));
    s.write_all(format!("{command}\n").as_bytes()).unwrap();
    s.flush().unwrap();
    // The monitor prints a banner and a prompt, and a prompt again once the command ran:
    // read until the second one, so the command is done when this returns.
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        let mut buf = [0u8; 512];
        match std::io::Read::read(&mut s, &mut buf) {
            Ok(0) => break,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
        if String::from_utf8_lossy(&seen).matches("(qemu)").count() >= 2 {
            return;
        }
    }
    panic!(
        "monitor: no prompt after {command:?}: {}",
        String::from_utf8_lossy(&seen)
    );
}

/// `zos.bond=active-backup:eth0,eth1`, two NICs on one segment: eth0's cable is out from the
/// start (a slave failing during DHCP), the bond takes its lease over eth1; then eth0 comes back
/// and eth1's cable is pulled (a slave failing after DHCP): the console names each change,
/// the lease is kept (one DISCOVER, no lease dropped) and the node hands off with it.
#[test]
fn qemu_bond_keeps_its_lease_when_a_slave_fails() {
    let t = "qemu_bond_keeps_its_lease_when_a_slave_fails";
    let Some((image, dir, r)) = vm_lab(t) else {
        return;
    };
    bridged_taps(&r, &["t0", "t1"], "10.60.0.1/24");
    let dhcp = dhcp_server(
        &r,
        &dir,
        "br0",
        "10.60.0.100,10.60.0.200,255.255.255.0,1h",
        "10.60.0.1",
    );
    let mon = dir.join("monitor.sock");
    let mut vm = Vm::start(
        &r,
        &dir,
        &image,
        &[
            "--monitor",
            &mon.to_string_lossy(),
            "--tap",
            "t0",
            "--tap",
            "t1",
        ],
        "loglevel=4 zos.probe=none zos.fetch=none zos.init=/sbin/init runmode=test \
         zos.bond=active-backup:eth0,eth1",
    );
    assert!(
        wait_until(Duration::from_secs(10), || mon.exists()),
        "no monitor socket"
    );
    monitor(&mon, "set_link n1 off");
    // The lease over eth1 while eth0 is out; then swap the cables while the node waits for
    // IPv6 (3 s: this segment has no router advertisements).
    let bound = vm.wait_for("bond0: DHCPv4 10.60.0.", 1, Duration::from_secs(BOOT_SECS));
    let why = |vm: &Vm, m: &str| format!("{m}\n{}", report(vm, &[&dhcp]));
    assert!(bound, "{}", why(&vm, "no lease on bond0"));
    monitor(&mon, "set_link n1 on");
    monitor(&mon, "set_link n2 off");
    let status = vm.wait(&["eth1: carrier lost (slave of bond0)", NEXT_PID1]);
    assert!(status.is_some(), "{}", why(&vm, "QEMU still running"));
    let console = vm.console_text();
    let steps: &[&[Expect]] = &[
        &[Expect {
            what: "bonding loaded by name",
            any: &["loaded bonding"],
        }],
        &[Expect {
            what: "the bond and its slaves",
            any: &["bond0: bond (active-backup) of eth0 + eth1"],
        }],
        &[Expect {
            what: "the lease on the bond",
            any: &["bond0: DHCPv4 10.60.0."],
        }],
        &[Expect {
            what: "the slave failing after DHCP, in words",
            any: &["eth1: carrier lost (slave of bond0): bond0 carries on"],
        }],
        &[Expect {
            what: "handoff",
            any: &[NEXT_PID1],
        }],
    ];
    if let Err(e) = expect_in_order(&console, steps) {
        panic!("{}", why(&vm, &e));
    }
    assert!(
        !console.contains("lease dropped"),
        "{}",
        why(&vm, "the lease was dropped")
    );
    let log = log_of(&dhcp);
    assert_eq!(
        log.matches("DHCPDISCOVER(br0)").count(),
        1,
        "{}",
        why(&vm, "one DISCOVER: the lease was kept")
    );
    let state = printed_state(&console).unwrap_or_else(|e| panic!("{}", why(&vm, &e)));
    let ifaces = state["interfaces"].as_array().cloned().unwrap_or_default();
    let bond = ifaces
        .iter()
        .find(|i| i["name"] == "bond0")
        .unwrap_or_else(|| panic!("{}", why(&vm, "no bond0 in the state")));
    assert_eq!(bond["role"], "oob", "{bond}");
    assert_eq!(
        bond["mac"], VM_MAC,
        "the bond has its first slave's MAC: {bond}"
    );
    assert!(
        bond["ipv4"][0]["address"]
            .as_str()
            .is_some_and(|a| a.starts_with("10.60.0.")),
        "{bond}"
    );
    assert!(
        !ifaces
            .iter()
            .any(|i| i["name"] == "eth0" || i["name"] == "eth1"),
        "slaves are not links of their own: {ifaces:?}"
    );
}

/// Recovery as PID 1 (issue 8 §5): the node is online and retrying a stage that needs the
/// network (here the fetch: the hub refuses connections) when its cable is pulled. Before the
/// next retry PID 1 notices, says what it lost and when, brings the network up again once the
/// cable is back (the same address, asked for by INIT-REBOOT) and says after how long.
#[test]
fn qemu_pid1_brings_the_network_back_after_the_cable_was_pulled() {
    let t = "qemu_pid1_brings_the_network_back_after_the_cable_was_pulled";
    let Some((image, dir, r)) = vm_lab(t) else {
        return;
    };
    r.tap("oob");
    r.ip(&["addr", "add", "10.77.0.1/24", "dev", "oob"]);
    let dhcp = dhcp_server(
        &r,
        &dir,
        "oob",
        "10.77.0.100,10.77.0.200,255.255.255.0,1h",
        "10.77.0.1",
    );
    let mon = dir.join("monitor.sock");
    let mut vm = Vm::start(
        &r,
        &dir,
        &image,
        &["--monitor", &mon.to_string_lossy(), "--tap", "oob"],
        "loglevel=4 zos.probe=none zos.timeout=5 zos.init=/sbin/init runmode=test \
         zos.manifest=http://10.77.0.1:9/manifest.json",
    );
    let why = |vm: &Vm, m: &str| format!("{m}\n{}", report(vm, &[&dhcp]));
    let phase = Duration::from_secs(60);
    assert!(
        vm.wait_for("retrying the fetch in", 1, phase),
        "{}",
        why(&vm, "the fetch never failed")
    );
    assert!(
        wait_until(Duration::from_secs(5), || mon.exists()),
        "no monitor socket"
    );
    monitor(&mon, "set_link n1 off");
    assert!(
        vm.wait_for("network lost at", 1, phase),
        "{}",
        why(&vm, "the lost network was not noticed")
    );
    monitor(&mon, "set_link n1 on");
    assert!(
        vm.wait_for("network back after", 1, phase),
        "{}",
        why(&vm, "the network did not come back")
    );
    // One more fetch attempt on the restored network, then stop the VM.
    assert!(
        vm.wait_for("retrying the fetch in", 2, phase),
        "{}",
        why(&vm, "no fetch retry after the network came back")
    );
    let console = vm.console_text();
    let steps: &[&[Expect]] = &[
        &[Expect {
            what: "first lease",
            any: &["eth0: DHCPv4 10.77.0."],
        }],
        &[Expect {
            what: "the loss, in words",
            any: &["eth0: no carrier (cable, switch port or the other end); bringing it up again"],
        }],
        &[Expect {
            what: "the lease again",
            any: &["eth0: DHCPv4 10.77.0."],
        }],
        &[Expect {
            what: "back",
            any: &["network back after"],
        }],
    ];
    if let Err(e) = expect_in_order(&console, steps) {
        panic!("{}", why(&vm, &e));
    }
    let leases: Vec<&str> = console
        .lines()
        .filter_map(|l| l.split("eth0: DHCPv4 ").nth(1))
        .filter_map(|rest| rest.split('/').next())
        .collect();
    assert!(
        leases.len() >= 2 && leases.iter().all(|a| *a == leases[0]),
        "the same address before and after: {leases:?}\n{}",
        why(&vm, "")
    );
    assert!(!console.contains("Kernel panic"), "{}", why(&vm, "panic"));
}

/// `zos.bond=auto`: three NICs, two of them cabled to one segment (the same DHCP server) and
/// one to another: the two are bonded, the third stays a NIC of its own, and the console says
/// which NIC saw which server and why the two were bonded.
#[test]
fn qemu_bond_auto_bonds_the_nics_on_one_segment() {
    let t = "qemu_bond_auto_bonds_the_nics_on_one_segment";
    let Some((image, dir, r)) = vm_lab(t) else {
        return;
    };
    bridged_taps(&r, &["t0", "t1"], "10.60.0.1/24");
    r.tap("t2");
    r.ip(&["addr", "add", "10.61.0.1/24", "dev", "t2"]);
    let one = dhcp_server(
        &r,
        &dir,
        "br0",
        "10.60.0.100,10.60.0.200,255.255.255.0,1h",
        "10.60.0.1",
    );
    let other = dhcp_server(
        &r,
        &dir,
        "t2",
        "10.61.0.100,10.61.0.200,255.255.255.0,1h",
        "10.61.0.1",
    );
    let mut vm = Vm::start(
        &r,
        &dir,
        &image,
        &["--tap", "t0", "--tap", "t1", "--tap", "t2"],
        "loglevel=4 zos.probe=none zos.fetch=none zos.init=/sbin/init runmode=test \
         zos.bond=auto",
    );
    let status = vm.wait(&["zos.bond=auto: eth0 and eth1", NEXT_PID1]);
    let why = |m: &str| format!("{m}\n{}", report(&vm, &[&one, &other]));
    assert!(status.is_some(), "{}", why("QEMU still running"));
    let console = vm.console_text();
    let steps: &[&[Expect]] = &[
        &[Expect {
            what: "the survey",
            any: &["zos.bond=auto: eth2 sees DHCP server(s) 10.61.0.1"],
        }],
        &[Expect {
            what: "the decision, in words",
            any: &["zos.bond=auto: eth0 and eth1 are on one segment (the same DHCP server): bonding them"],
        }],
        &[Expect {
            what: "the bond",
            any: &["bond0: bond (active-backup) of eth0 + eth1"],
        }],
        &[Expect {
            what: "the bond's lease",
            any: &["bond0: DHCPv4 10.60.0."],
        }],
        &[Expect {
            what: "handoff",
            any: &[NEXT_PID1],
        }],
    ];
    if let Err(e) = expect_in_order(&console, steps) {
        panic!("{}", why(&e));
    }
    assert!(
        console.contains("eth0: sees DHCP server(s) 10.60.0.1")
            || console.contains("zos.bond=auto: eth0 sees DHCP server(s) 10.60.0.1"),
        "{}",
        why("eth0's survey")
    );
    assert!(
        console.contains("eth2: DHCPv4 10.61.0."),
        "{}",
        why("the third NIC keeps its own lease")
    );
    // The survey requested nothing: the segment's server acknowledged only the bond's lease.
    let acks = log_of(&one).matches("DHCPACK(br0)").count();
    assert_eq!(acks, 1, "{}", why("one lease on the bonded segment"));
}

/// `vlan:priv=100 vlan:pub=200` on one NIC: the lease comes from VLAN 100, SLAAC from VLAN 200,
/// and the untagged parent, whose segment has its own DHCP server and router advertisements,
/// takes neither (its RAs are not accepted).
#[test]
fn qemu_vlan_pub_and_priv_split_the_segments() {
    let t = "qemu_vlan_pub_and_priv_split_the_segments";
    let Some((image, dir, r)) = vm_lab(t) else {
        return;
    };
    // Untagged: 10.50.0.0/24 and 2001:db8:50::/64, both with servers that answer anyone.
    r.tap("trunk");
    r.ip(&["addr", "add", "10.50.0.1/24", "dev", "trunk"]);
    r.sysctl(&[
        "net.ipv6.conf.all.forwarding=1",
        "net.ipv6.conf.trunk.accept_ra=0",
        "net.ipv6.conf.trunk.accept_dad=0",
    ]);
    r.ip(&["addr", "add", "2001:db8:50::1/64", "dev", "trunk", "nodad"]);
    let untagged = dhcp_server(
        &r,
        &dir,
        "trunk",
        "10.50.0.100,10.50.0.200,255.255.255.0,1h",
        "10.50.0.1",
    );
    let untagged_dir = TestDir::new(&format!("{t}-untagged"));
    let _untagged_ra = radvd(
        &r,
        &untagged_dir,
        "trunk",
        "2001:db8:50::/64",
        "2001:db8:50::1",
    );
    // VLAN 100 (management): DHCPv4. VLAN 200 (public): router advertisements.
    for (a, b) in [("v100a", "v100b"), ("v200a", "v200b")] {
        r.ip(&["link", "add", a, "type", "veth", "peer", "name", b]);
        r.ip(&["link", "set", a, "up"]);
        r.ip(&["link", "set", b, "up"]);
    }
    r.ip(&["addr", "add", "10.100.0.1/24", "dev", "v100b"]);
    r.sysctl(&[
        "net.ipv6.conf.v200b.forwarding=1",
        "net.ipv6.conf.v200b.accept_ra=0",
        "net.ipv6.conf.v200b.accept_dad=0",
    ]);
    r.ip(&["addr", "add", "2001:db8:200::1/64", "dev", "v200b", "nodad"]);
    let tagged = dhcp_server(
        &r,
        &dir,
        "v100b",
        "10.100.0.100,10.100.0.200,255.255.255.0,1h",
        "10.100.0.1",
    );
    let public_ra = radvd(&r, &dir, "v200b", "2001:db8:200::/64", "2001:db8:200::1");
    let relay = vlan_relay(&r, &dir, &[(100, "v100a"), (200, "v200a")]);
    let mut vm = Vm::start(
        &r,
        &dir,
        &image,
        &["--tap", "trunk"],
        "loglevel=4 zos.probe=none zos.fetch=none zos.init=/sbin/init runmode=test \
         vlan:priv=100 vlan:pub=200",
    );
    let status = vm.wait(&["DHCPv4 10.100.0.", "SLAAC 2001:db8:200:", NEXT_PID1]);
    let why = |m: &str| {
        format!(
            "{m}\n{}",
            report(&vm, &[&untagged, &tagged, &public_ra, &relay])
        )
    };
    assert!(status.is_some(), "{}", why("QEMU still running"));
    let console = vm.console_text();
    for (what, line) in [
        (
            "the parent only carries",
            "untagged: no addresses (it carries the VLANs)",
        ),
        (
            "the management VLAN",
            "eth0.100: VLAN 100 on eth0 (vlan:priv, the management segment): DHCPv4 only",
        ),
        (
            "the public VLAN",
            "eth0.200: VLAN 200 on eth0 (vlan:pub, the public segment): SLAAC only",
        ),
        ("the lease on VLAN 100", "eth0.100: DHCPv4 10.100.0."),
        ("SLAAC on VLAN 200", "eth0.200: SLAAC 2001:db8:200:"),
        ("hand-off", NEXT_PID1),
    ] {
        assert!(
            console.contains(line),
            "{}",
            why(&format!("{what}: {line:?}"))
        );
    }
    assert!(
        !console.contains("2001:db8:50:"),
        "{}",
        why("the untagged segment's prefix was configured")
    );
    let untagged_log = log_of(&untagged);
    assert!(
        !untagged_log.contains("DHCPDISCOVER"),
        "{}",
        why("untagged traffic asked for a lease")
    );
    let state = printed_state(&console).unwrap_or_else(|e| panic!("{}", why(&e)));
    let ifaces = state["interfaces"].as_array().cloned().unwrap_or_default();
    let public = ifaces
        .iter()
        .find(|i| i["name"] == "eth0.200")
        .unwrap_or_else(|| panic!("{}", why("no eth0.200 in the state")));
    assert_eq!(public["vlan"]["purpose"], "public", "{public}");
    assert!(
        public["ipv6"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x["address"]
                .as_str()
                .is_some_and(|s| s.starts_with("2001:db8:200:")))),
        "{public}"
    );
    assert_eq!(public["ipv4"], Value::Array(vec![]), "{public}");
}
