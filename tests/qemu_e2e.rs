//! End to end in QEMU (TCG): the Debian cloud kernel boots the real initramfs
//! (scripts/build-initramfs.sh: zos-netboot as /init, NIC modules, CA certificates, and the
//! tiny next root of qemu/build-next-root.sh). zos-netboot runs as PID 1, loads the virtio NIC
//! drivers, brings the network up, writes its state file and hands off to the next root, which
//! prints `NEXT-ROOT:` lines and the state file and powers off.
//!
//! * `qemu_tap_lab_boot_to_next_root`: two NICs on taps in a router namespace: `oob` (dnsmasq:
//!   DHCPv4 10.77.0.0/24 and DNS answering hub.lab.test) and `pub` (radvd: SLAAC
//!   2001:db8:77::/64, RDNSS), busybox httpd as the probe target http://hub.lab.test/.
//! * `qemu_user_net_boot_to_next_root`: one NIC on QEMU user-mode networking (DHCPv4 10.0.2.15,
//!   RA 2001:db8:7::/64, restrict=on), probes off.
//!
//! Needs root, /dev/net/tun, qemu-system-x86_64 and linux-image-cloud-amd64 (bash
//! scripts/setup.sh); skips with a `SKIP` line otherwise (`ZOS_QEMU_REQUIRED=1`: fail instead).
//! `ZOS_INITRAMFS=FILE` boots FILE instead of building the image. See tests/qemu/mod.rs.
mod qemu;

use std::net::Ipv4Addr;

use qemu::*;

const NEXT_PID1: &str = "NEXT-ROOT: init running as PID 1";
const NEXT_STATE: &str = "NEXT-ROOT: state readable";

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
    let dir = TestDir::new(t);
    let r = Netns::new();

    // The router: oob 10.77.0.1/24 (DHCPv4, DNS), pub 2001:db8:77::1/64 (RA, RDNSS), and the
    // probe target hub.lab.test = both addresses, port 80.
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

    let mut vm = Vm::start(
        &r,
        &dir,
        &image,
        &["--tap", "oob", "--tap", "pub"],
        "loglevel=4 zos.probe=http://hub.lab.test/ zos.init=/sbin/init farmer_id=7 runmode=test",
    );
    let status = vm.wait(&[
        "virtio_net",
        "DHCPv4 10.77.0.",
        "SLAAC 2001:db8:77:",
        " node:",
        "handing off",
        NEXT_PID1,
        NEXT_STATE,
        "reboot: Power down",
    ]);
    timings(t, &vm);
    let console = vm.console_text();
    let why = |msg: &str| format!("{msg}\n{}", report(&vm, &[&dns, &ra, &http]));
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
        "loglevel=4 zos.probe=none zos.init=/sbin/init runmode=test",
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
