//! End to end in QEMU (TCG): the Debian cloud kernel boots the real initramfs
//! (scripts/build-initramfs.sh: zos-netboot as /init, NIC modules, CA certificates, and the
//! tiny next root of qemu/build-next-root.sh). zos-netboot runs as PID 1, loads the virtio NIC
//! drivers, brings the network up, writes its state file and hands off to the next root, which
//! prints `NEXT-ROOT:` lines and the state file and powers off.
//!
//! * `qemu_tap_lab_boot_to_next_root`: two NICs on taps in a router namespace: `oob` (dnsmasq:
//!   DHCPv4 10.77.0.0/24 and DNS answering hub.lab.test) and `pub` (radvd: SLAAC
//!   2001:db8:77::/64, RDNSS), busybox httpd as the probe target http://hub.lab.test/, and the
//!   test grid (tests/grid/grid.py, HTTPS with the CA the image trusts as /etc/zos/ca.pem):
//!   the VM fetches a next root that is not in the image (`zos.root=/fetched-root`, a rootfs
//!   tarball whose init says where it came from) and a `file` artifact (/etc/motd), verifies
//!   and installs them, registers once (farm 7, its NICs' MACs), and hands off into that root.
//! * `qemu_user_net_boot_to_next_root`: one NIC on QEMU user-mode networking (DHCPv4 10.0.2.15,
//!   RA 2001:db8:7::/64, restrict=on), probes and fetch off, the next root baked in the image.
//!
//! Needs root, /dev/net/tun, qemu-system-x86_64 and linux-image-cloud-amd64 (bash
//! scripts/setup.sh); skips with a `SKIP` line otherwise (`ZOS_QEMU_REQUIRED=1`: fail instead).
//! `ZOS_INITRAMFS=FILE` boots FILE instead of building the image (`ZOS_GRID_CA=DIR`: the test
//! CA it was built with). See tests/qemu/mod.rs.
mod qemu;

use std::fs;
use std::net::Ipv4Addr;
use std::time::Duration;

use qemu::*;
use serde_json::{json, Value};

const NEXT_PID1: &str = "NEXT-ROOT: init running as PID 1";
const NEXT_STATE: &str = "NEXT-ROOT: state readable";
/// The `file` artifact the test grid serves (installed as /etc/motd in the next root).
const MOTD: &str = "installed from the test grid as a file artifact";
/// The MACs qemu/run.sh gives the NICs, in --tap order.
const VM_MACS: [&str; 2] = ["52:54:00:7a:00:01", "52:54:00:7a:00:02"];

/// Everything a failure message needs: what ran, what it printed, what the daemons saw.
fn report(vm: &Vm, daemons: &[&Daemon]) -> String {
    let mut s = format!(
        "qemu: {}\nexit: {:?}, {:.1}s after start\n",
        vm.cmdline,
        vm.status,
        vm.started.elapsed().as_secs_f64()
    );
    for (m, t) in &vm.seen {
        s += &format!("  {:6.2}s  {m}\n", t.as_secs_f64());
    }
    s += "--- console\n";
    s += &vm.console_text();
    let err = vm.stderr_text();
    if !err.trim().is_empty() {
        s += "--- qemu/run.sh stderr\n";
        s += &err;
    }
    for d in daemons {
        s += &d.describe();
    }
    s
}

fn timings(test: &str, vm: &Vm) {
    let mut s = format!("{test}: QEMU start →");
    for (m, t) in &vm.seen {
        s += &format!("\n  {:6.2}s  {m}", t.as_secs_f64());
    }
    say(&s);
}

/// The tap lab's router side: taps `oob` (10.77.0.1/24: DHCPv4, DNS) and `pub`
/// (2001:db8:77::1/64: RA, RDNSS), forwarding on, no DAD or RA on the router's own side.
fn tap_router(r: &Netns) {
    r.tap("oob");
    r.tap("pub");
    r.ip(&["addr", "add", "10.77.0.1/24", "dev", "oob"]);
    r.sysctl(&[
        "net.ipv6.conf.all.forwarding=1",
        "net.ipv6.conf.pub.forwarding=1",
        "net.ipv6.conf.pub.accept_dad=0",
        "net.ipv6.conf.pub.accept_ra=0",
    ]);
    r.ip(&["addr", "add", "2001:db8:77::1/64", "dev", "pub", "nodad"]);
}

/// The grid's certificate must chain to the CA the image trusts (zos.ca=/etc/zos/ca.pem);
/// skips `t` with the reason when it does not.
fn image_trusts_test_ca(t: &str, image: &std::path::Path) -> bool {
    let ca = test_ca_dir().join("ca.pem");
    let in_image = image_member(image, "etc/zos/ca.pem");
    if in_image.is_some() && in_image == fs::read(&ca).ok() {
        return true;
    }
    skip(
        t,
        &format!(
            "{} has no /etc/zos/ca.pem equal to {} (an image from ZOS_INITRAMFS needs \
             ZOS_GRID_CA=DIR, the grid.py --make-ca directory whose ca.pem it was built \
             with: scripts/build-initramfs.sh --ca DIR/ca.pem)",
            image.display(),
            ca.display()
        ),
    )
}

#[test]
fn qemu_tap_lab_boot_to_next_root() {
    let t = "qemu_tap_lab_boot_to_next_root";
    let needs = Needs {
        tun: true,
        tools: &["dnsmasq", "radvd"],
    };
    if !require(t, &needs) {
        return;
    }
    let image = initramfs();
    if !image_trusts_test_ca(t, &image) {
        return;
    }
    let dir = TestDir::new(t);
    let r = Netns::new();

    // The router: oob 10.77.0.1/24 (DHCPv4, DNS), pub 2001:db8:77::1/64 (RA, RDNSS), and the
    // probe target hub.lab.test = both addresses, port 80.
    tap_router(&r);
    let dns = dnsmasq(
        &r,
        &dir,
        &["oob", "pub"],
        "10.77.0.100,10.77.0.200,255.255.255.0,1h",
        "10.77.0.1",
        &["hub.lab.test,10.77.0.1,2001:db8:77::1"],
    );
    let ra = radvd(&r, &dir, "pub", "2001:db8:77::/64", "2001:db8:77::1");
    let http = httpd(&r, &dir);

    // The test grid on the same addresses, HTTPS with the CA baked into the image: it serves
    // the manifest, a next root that is not in the image (a rootfs tarball, URL relative to
    // the manifest) and a `file` artifact (absolute URL naming the hub by its IPv4 literal,
    // which the certificate also names), and takes the registration.
    let www = dir.join("grid-root");
    fs::create_dir_all(www.join("zos")).unwrap();
    let tgz = www.join("zos/next-root.tar.gz");
    fetched_root_tarball(&dir, &tgz, "the test grid");
    let motd = www.join("zos/motd.txt");
    fs::write(&motd, format!("{MOTD}\n")).unwrap();
    let manifest = json!({"version": 1, "artifacts": [
        {"name": "next-root", "url": "next-root.tar.gz", "kind": "rootfs",
         "size": fs::metadata(&tgz).unwrap().len(), "sha256": sha256_file(&tgz)},
        {"name": "motd", "url": "https://10.77.0.1/zos/motd.txt", "kind": "file",
         "dest": "/etc/motd",
         "size": fs::metadata(&motd).unwrap().len(), "sha256": sha256_file(&motd)},
    ]});
    fs::write(www.join("zos/manifest.json"), manifest.to_string()).unwrap();
    let records = dir.join("grid-records.json");
    let grid = grid(&r, &dir, &www, &records, &["10.77.0.1", "2001:db8:77::1"]);

    let mut vm = Vm::start(
        &r,
        &dir,
        &image,
        &["--tap", "oob", "--tap", "pub"],
        "loglevel=4 zos.probe=http://hub.lab.test/ zos.init=/sbin/init farmer_id=7 runmode=test \
         zos.manifest=https://hub.lab.test/zos/manifest.json zos.ca=/etc/zos/ca.pem \
         zos.registrar=https://hub.lab.test/api/v1/nodes zos.root=/fetched-root",
    );
    let status = vm.wait(&[
        "virtio_net",
        "DHCPv4 10.77.0.",
        "SLAAC 2001:db8:77:",
        " node:",
        "manifest https://",
        "fetched next-root",
        "installed motd",
        "registered as",
        "handing off",
        NEXT_PID1,
        NEXT_STATE,
        "reboot: Power down",
    ]);
    timings(t, &vm);
    let console = vm.console_text();
    let why = |msg: &str| format!("{msg}\n{}", report(&vm, &[&dns, &ra, &http, &grid]));
    assert!(
        status.is_some(),
        "{}",
        why(&format!("QEMU still running after {BOOT_SECS}+25 s"))
    );

    let steps: &[&[Expect]] = &[
        &[Expect {
            what: "NIC drivers loaded",
            any: &["virtio_net"],
        }],
        &[
            Expect {
                what: "DHCPv4 lease on oob",
                any: &["DHCPv4 10.77.0."],
            },
            Expect {
                what: "SLAAC address on pub",
                any: &["SLAAC 2001:db8:77:"],
            },
        ],
        &[Expect {
            what: "classification",
            any: &["PUBLIC node:", "IPv6 node:", "HIDDEN node:"],
        }],
        &[Expect {
            what: "manifest from the test grid",
            any: &["manifest https://hub.lab.test/zos/manifest.json: 2 artifacts"],
        }],
        &[Expect {
            what: "next root fetched and verified",
            any: &["fetched next-root"],
        }],
        &[Expect {
            what: "next root unpacked",
            any: &["installed next-root (rootfs) into /fetched-root:"],
        }],
        &[Expect {
            what: "file artifact fetched and verified",
            any: &["fetched motd ("],
        }],
        &[Expect {
            what: "file artifact installed",
            any: &["installed motd (file) into /fetched-root/etc/motd:"],
        }],
        &[Expect {
            what: "registered",
            any: &["registered as"],
        }],
        &[Expect {
            what: "handoff",
            any: &["switch_root", "handing off"],
        }],
        &[Expect {
            what: "next root running as PID 1",
            any: &[NEXT_PID1],
        }],
        &[Expect {
            what: "the next root is the fetched one",
            any: &["NEXT-ROOT: origin the test grid"],
        }],
        &[Expect {
            what: "the file artifact is in it",
            any: &[&format!("NEXT-ROOT: motd {MOTD}")],
        }],
        &[Expect {
            what: "state file readable in the next root",
            any: &[NEXT_STATE],
        }],
    ];
    match expect_in_order(&console, steps) {
        Ok(lines) => say(&format!("{t}: console\n  {}", lines.join("\n  "))),
        Err(e) => panic!("{}", why(&e)),
    }

    let state = printed_state(&console).unwrap_or_else(|e| panic!("{}", why(&e)));
    assert_eq!(
        state["online"],
        true,
        "{}",
        why("state: online is not true")
    );
    let net = Ipv4Addr::new(10, 77, 0, 0);
    let addr = oob_ipv4_in(&state, net, 24).unwrap_or_else(|| {
        panic!(
            "{}",
            why("state: no oob interface with an IPv4 address in 10.77.0.0/24")
        )
    });
    say(&format!(
        "{t}: state online, oob {addr}, classification {}",
        state["headline"]
    ));

    // Registered exactly once, as this VM: farm 7, the MACs QEMU gave its NICs (qemu/run.sh:
    // 52:54:00:7a:00:NN in --tap order), from one of its addresses, the id its state names.
    let recs: Value = serde_json::from_str(&fs::read_to_string(&records).unwrap_or_default())
        .unwrap_or_else(|e| panic!("{}", why(&format!("grid records unreadable: {e}"))));
    let recs = recs.as_object().cloned().unwrap_or_default();
    assert_eq!(
        recs.len(),
        1,
        "{}",
        why(&format!("want one registration record: {recs:?}"))
    );
    let (id, rec) = recs.iter().next().unwrap();
    assert_eq!(
        rec["registrations"],
        1,
        "{}",
        why("registered more than once")
    );
    assert_eq!(rec["body"]["farmer_id"], 7, "{}", why("farmer id"));
    assert_eq!(rec["body"]["runmode"], "test", "{}", why("runmode"));
    for mac in VM_MACS {
        assert!(
            rec["body"]["macs"]
                .as_array()
                .is_some_and(|m| m.iter().any(|x| x == mac)),
            "{}",
            why(&format!(
                "the VM's NIC MAC {mac} is not in the registration"
            ))
        );
    }
    let oob_mac = state["interfaces"]
        .as_array()
        .and_then(|a| a.iter().find(|i| i["role"] == "oob"))
        .map(|i| i["mac"].clone())
        .unwrap_or_default();
    assert_eq!(oob_mac, VM_MACS[0], "{}", why("state: the OOB NIC's MAC"));
    let vm_addrs: Vec<&str> = state["interfaces"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|i| {
            ["ipv4", "ipv6"]
                .iter()
                .flat_map(move |f| i[*f].as_array().into_iter().flatten())
        })
        .filter_map(|a| a["address"].as_str())
        .collect();
    assert!(
        rec["remote"]
            .as_str()
            .is_some_and(|r| vm_addrs.contains(&r)),
        "{}",
        why(&format!(
            "registration came from {}, not from the VM ({vm_addrs:?})",
            rec["remote"]
        ))
    );
    assert_eq!(
        state["registration"]["node_id"],
        json!(id),
        "{}",
        why("state: registration.node_id is not the registered node id")
    );

    // The handed-over state names what was fetched, by hash.
    let fetched: Vec<(&str, &str)> = state["fetch"]["artifacts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| Some((a["name"].as_str()?, a["sha256"].as_str()?)))
        .collect();
    assert_eq!(
        fetched,
        [
            ("next-root", sha256_file(&tgz).as_str()),
            ("motd", sha256_file(&motd).as_str())
        ],
        "{}",
        why("state: fetch.artifacts")
    );

    // What the grid saw: every registration POST was accepted (one), and the artifacts came
    // from it.
    let seen =
        grid_state(&r, "https://10.77.0.1/_grid/state").unwrap_or_else(|e| panic!("{}", why(&e)));
    let c = &seen["counters"];
    assert_eq!(
        (
            c["registration_posts"].as_u64(),
            c["registrations_created"].as_u64()
        ),
        (Some(1), Some(1)),
        "{}",
        why(&format!("grid counters: {c}"))
    );
    for path in [
        "/zos/manifest.json",
        "/zos/next-root.tar.gz",
        "/zos/motd.txt",
    ] {
        assert!(
            seen["paths"][path].as_u64().is_some_and(|n| n >= 1),
            "{}",
            why(&format!("the grid never served {path}: {}", seen["paths"]))
        );
    }
    let online = console_stamp(&console, "online in");
    let handoff = console_stamp(&console, "handing off");
    if let (Some(on), Some(off)) = (online, handoff) {
        say(&format!(
            "{t}: guest clock: online {on:.3}s, hand-off {off:.3}s: clock + manifest + 2 \
             downloads + install + registration {:.3}s; grid paths {}",
            off - on,
            seen["paths"]
        ));
    }
}

#[test]
fn qemu_user_net_boot_to_next_root() {
    let t = "qemu_user_net_boot_to_next_root";
    if !require(
        t,
        &Needs {
            tun: false,
            tools: &[],
        },
    ) {
        return;
    }
    let image = initramfs();
    let dir = TestDir::new(t);
    // QEMU in an empty namespace of its own: with restrict=on nothing leaves the VM anyway.
    let r = Netns::new();
    let mut vm = Vm::start(
        &r,
        &dir,
        &image,
        &["--user"],
        "loglevel=4 zos.probe=none zos.fetch=none zos.init=/sbin/init runmode=test",
    );
    let status = vm.wait(&[
        "virtio_net",
        "DHCPv4 10.0.2.",
        "SLAAC 2001:db8:7:",
        "handing off",
        NEXT_PID1,
        NEXT_STATE,
        "reboot: Power down",
    ]);
    timings(t, &vm);
    let console = vm.console_text();
    let why = |msg: &str| format!("{msg}\n{}", report(&vm, &[]));
    assert!(
        status.is_some(),
        "{}",
        why(&format!("QEMU still running after {BOOT_SECS}+25 s"))
    );

    let steps: &[&[Expect]] = &[
        &[Expect {
            what: "NIC drivers loaded",
            any: &["virtio_net"],
        }],
        &[Expect {
            what: "DHCPv4 lease from QEMU",
            any: &["DHCPv4 10.0.2."],
        }],
        &[Expect {
            what: "fetch skipped as asked",
            any: &["fetch: skipped (zos.fetch=none)"],
        }],
        &[Expect {
            what: "handoff",
            any: &["switch_root", "handing off"],
        }],
        &[Expect {
            what: "next root running as PID 1",
            any: &[NEXT_PID1],
        }],
        &[Expect {
            what: "state file readable in the next root",
            any: &[NEXT_STATE],
        }],
    ];
    match expect_in_order(&console, steps) {
        Ok(lines) => say(&format!("{t}: console\n  {}", lines.join("\n  "))),
        Err(e) => panic!("{}", why(&e)),
    }
    let state = printed_state(&console).unwrap_or_else(|e| panic!("{}", why(&e)));
    let addr = oob_ipv4_in(&state, Ipv4Addr::new(10, 0, 2, 0), 24).unwrap_or_else(|| {
        panic!(
            "{}",
            why("state: no oob interface with an IPv4 address in 10.0.2.0/24")
        )
    });
    say(&format!("{t}: oob {addr}, online {}", state["online"]));
}

/// PID 1 rides out every stage failing in turn (issue 6): no DHCP server, then no hub, then a
/// hub serving a broken manifest, then a registrar failing twice. Each fault is lifted only
/// once the console has reported it and announced a retry; the VM must keep going without a
/// kernel panic and end in the fetched next root.
#[test]
fn qemu_pid1_rides_out_every_stage_failing_in_turn() {
    let t = "qemu_pid1_rides_out_every_stage_failing_in_turn";
    let needs = Needs {
        tun: true,
        tools: &["dnsmasq", "radvd"],
    };
    if !require(t, &needs) {
        return;
    }
    let image = initramfs();
    if !image_trusts_test_ca(t, &image) {
        return;
    }
    let dir = TestDir::new(t);
    let r = Netns::new();
    tap_router(&r);
    let ra = radvd(&r, &dir, "pub", "2001:db8:77::/64", "2001:db8:77::1");
    let http = httpd(&r, &dir);
    let www = dir.join("grid-root");
    fs::create_dir_all(www.join("zos")).unwrap();
    let tgz = www.join("zos/next-root.tar.gz");
    fetched_root_tarball(&dir, &tgz, "the test grid");
    // Broken first: the hub answers, but not with a manifest.
    fs::write(
        www.join("zos/manifest.json"),
        "{\"version\": 1, \"artifacts\": [",
    )
    .unwrap();
    let records = dir.join("grid-records.json");

    // URLs by address: until DHCP works there is no DNS server either.
    let mut vm = Vm::start(
        &r,
        &dir,
        &image,
        &["--tap", "oob", "--tap", "pub"],
        "loglevel=4 zos.timeout=4 zos.probe=http://10.77.0.1/ zos.init=/sbin/init farmer_id=7 \
         runmode=test zos.manifest=https://10.77.0.1/zos/manifest.json zos.ca=/etc/zos/ca.pem \
         zos.registrar=https://10.77.0.1/api/v1/nodes zos.root=/fetched-root",
    );
    let phase = Duration::from_secs(40);
    let fail = |vm: &Vm, daemons: &[&Daemon], what: &str| -> String {
        format!("{what}\n{}", report(vm, daemons))
    };

    // 1. No DHCP server: the network stage fails, says so, and is retried.
    assert!(
        vm.wait_for("retrying the network in", 1, phase),
        "{}",
        fail(&vm, &[&ra, &http], "no retry of the network stage")
    );
    let dns = dnsmasq(
        &r,
        &dir,
        &["oob"],
        "10.77.0.100,10.77.0.200,255.255.255.0,1h",
        "10.77.0.1",
        &[],
    );
    assert!(
        vm.wait_for("online in", 1, phase),
        "{}",
        fail(&vm, &[&ra, &http, &dns], "not online once DHCP came")
    );
    // 2. No hub: the fetch fails (connection refused) and is retried.
    assert!(
        vm.wait_for("retrying the fetch in", 1, phase),
        "{}",
        fail(&vm, &[&ra, &http, &dns], "no retry of the fetch")
    );
    // 3. A hub with a broken manifest and a registrar that fails twice.
    let grid = grid_with(
        &r,
        &dir,
        &www,
        &records,
        &["10.77.0.1"],
        &["--registrar-fail=2"],
    );
    assert!(
        vm.wait_for(
            "fetch failed: manifest https://10.77.0.1/zos/manifest.json:",
            1,
            phase
        ),
        "{}",
        fail(
            &vm,
            &[&ra, &http, &dns, &grid],
            "the bad manifest was not reported"
        )
    );
    let size = fs::metadata(&tgz).unwrap().len();
    let manifest = json!({"version": 1, "artifacts": [
        {"name": "next-root", "url": "next-root.tar.gz", "kind": "rootfs",
         "size": size, "sha256": sha256_file(&tgz)}]});
    fs::write(www.join("zos/manifest.json"), manifest.to_string()).unwrap();
    // 4. The fetch completes; the registration is refused twice (503) and then taken.
    let status_ok = vm.wait_for("registered as", 1, Duration::from_secs(60));
    let done = vm.wait(&[NEXT_PID1, "NEXT-ROOT: origin the test grid"]);
    let console = vm.console_text();
    let why = |msg: &str| format!("{msg}\n{}", report(&vm, &[&ra, &http, &dns, &grid]));
    assert!(status_ok, "{}", why("never registered"));
    assert!(done.is_some(), "{}", why("the VM did not finish"));
    for bad in ["Kernel panic", "panicked at", "rescue shell"] {
        assert!(
            !console.contains(bad),
            "{}",
            why(&format!("console shows {bad:?}"))
        );
    }
    assert!(
        console.matches("registration attempt").count() >= 2,
        "{}",
        why("the registrar's two 503s were not retried")
    );
    assert!(
        console.contains("NEXT-ROOT: origin the test grid"),
        "{}",
        why("not in the fetched root")
    );
    let recs: Value =
        serde_json::from_str(&fs::read_to_string(&records).unwrap_or_default()).unwrap_or_default();
    assert_eq!(
        recs.as_object().map(|o| o.len()),
        Some(1),
        "{}",
        why("one registration record")
    );
    timings(t, &vm);
}
