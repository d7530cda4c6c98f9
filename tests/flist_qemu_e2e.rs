//! Booting a ZOS-shaped root from flists in QEMU (TCG), issue 14: the Debian cloud kernel
//! boots our initramfs; zos-netboot (PID 1) gets a lease on a tap in a router namespace, reads
//! the zos-config file on the test hub (tests/grid/grid.py answering 0-hub's API over HTTP),
//! follows ZOS's chain (stage 1 `tf-autobuilder/bootstrap:latest.flist`, the `tf-zos/testing`
//! taglink → `tf-autobuilder/tags/v1` → a v1 and a v2 flist), checks each `.flist` against the
//! hub's MD5, materialises the three into `/zos-root` (v1 blocks from a real Redis on the hub's
//! port 9900, v2 blocks from the hub's http store), and hands off to `/sbin/zinit init`.
//! That zinit is a stand-in (a busybox script in the bootstrap flist): it prints what it finds
//! (PID 1, its argument, the mounts zinit needs, devpts, /tmp's mode, the service files and
//! binaries the other flists brought, the state file) and powers off. The test asserts on the
//! console, and that the binary the zos flist carried has the source's MD5.
//!
//! Needs root, /dev/net/tun, qemu-system-x86_64, linux-image-cloud-amd64, dnsmasq,
//! redis-server and python3-snappy; skips with a `SKIP` line otherwise (`ZOS_QEMU_REQUIRED=1`:
//! fail instead).
mod qemu;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use qemu::*;

const HUB: &str = "10.77.0.1";

/// The stand-in zinit: what a ZOS root's init finds after the hand-off.
const ZINIT: &str = r#"#!/bin/sh
echo "ZINIT-STANDIN: running as PID $$ with args: $*"
echo "ZINIT-STANDIN: PATH=$PATH"
PATH=/bin:/sbin:/usr/bin
export PATH
mounted=
for m in /proc /sys /dev /run /dev/pts; do
  grep -q "^[^ ]* $m " /proc/mounts && mounted="$mounted $m"
done
echo "ZINIT-STANDIN: mounted:$mounted"
grep -q "^devpts /dev/pts devpts" /proc/mounts && echo "ZINIT-STANDIN: devpts ok"
echo "ZINIT-STANDIN: /tmp mode $(stat -c %a /tmp)"
echo "ZINIT-STANDIN: services $(cd /etc/zinit && echo *.yaml)"
echo "ZINIT-STANDIN: zos-big md5 $(md5sum /usr/bin/zos-big | cut -d' ' -f1)"
echo "ZINIT-STANDIN: bins $(cat /usr/share/bins/readme)"
[ -s /run/zos-netboot/state.json ] && echo "ZINIT-STANDIN: state readable"
echo "ZINIT-STANDIN: powering off"
sync
poweroff -f
sleep 2
echo o >/proc/sysrq-trigger
"#;

fn md5_hex(path: &Path) -> String {
    let out = Command::new("md5sum").arg(path).output().expect("md5sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_string()
}

/// flistgen.py in `ns` (it loads v1 blocks into the Redis there).
fn flistgen(ns: &Netns, args: &[&str]) {
    let script = format!("{REPO}/tests/grid/flistgen.py");
    let mut argv = vec![PYTHON, script.as_str()];
    argv.extend_from_slice(args);
    let out = ns.exec(&argv);
    assert!(
        out.status.success(),
        "flistgen {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn qemu_flist_chain_boot_to_zinit() {
    let t = "qemu_flist_chain_boot_to_zinit";
    let needs = Needs {
        tun: true,
        tools: &["dnsmasq", "redis-server", "md5sum"],
    };
    if !require(t, &needs) {
        return;
    }
    let snappy = Command::new("timeout")
        .args(["10", PYTHON, "-c", "import snappy"])
        .status();
    if !matches!(snappy, Ok(s) if s.success()) {
        skip(t, "needs python3-snappy (apt-get install python3-snappy)");
        return;
    }
    let busybox = fs::canonicalize(
        String::from_utf8_lossy(
            &Command::new("sh")
                .args(["-c", "command -v busybox"])
                .output()
                .expect("sh")
                .stdout,
        )
        .trim(),
    )
    .expect("busybox on PATH");
    let image = initramfs();
    let dir = TestDir::new(t);
    let r = Netns::new();
    r.tap("oob");
    r.ip(&["addr", "add", &format!("{HUB}/24"), "dev", "oob"]);
    let dns = dnsmasq(
        &r,
        &dir,
        &["oob"],
        "10.77.0.100,10.77.0.200,255.255.255.0,1h",
        HUB,
        &[],
    );

    // The three trees: bootstrap (busybox + the stand-in zinit), zos (services, a binary of
    // several blocks), bins (v2).
    let boot = dir.join("tree-bootstrap");
    write_with_mode(&boot.join("sbin/zinit"), ZINIT.as_bytes(), 0o755);
    write_with_mode(
        &boot.join("bin/busybox"),
        &fs::read(&busybox).unwrap(),
        0o755,
    );
    for a in [
        "sh", "grep", "cat", "echo", "stat", "md5sum", "cut", "poweroff", "sync", "sleep",
    ] {
        symlink("busybox", boot.join("bin").join(a)).unwrap();
    }
    write_with_mode(
        &boot.join("etc/zinit/bootstrap.yaml"),
        b"exec: /bin/true\n",
        0o644,
    );
    let zos = dir.join("tree-zos");
    write_with_mode(
        &zos.join("etc/zinit/node-ready.yaml"),
        b"exec: /bin/true\n",
        0o644,
    );
    write_with_mode(&zos.join("usr/bin/zos-big"), &noise(1_500_000, 3), 0o755);
    let bins = dir.join("tree-bins");
    write_with_mode(
        &bins.join("usr/share/bins/readme"),
        b"from the bins flist\n",
        0o644,
    );
    let want_md5 = md5_hex(&zos.join("usr/bin/zos-big"));

    // Blocks: a real Redis on the hub's 0-db port.
    let mut redis = r.spawn(
        "redis-server",
        "redis-server",
        &[
            "--port",
            "9900",
            "--bind",
            HUB,
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "no",
            "--dir",
            &dir.path.to_string_lossy(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>(),
        dir.join("redis.stderr"),
    );
    let up = wait_until(Duration::from_secs(10), || {
        r.listening("t").iter().any(|a| a == &format!("{HUB}:9900"))
    });
    assert!(up && redis.alive(), "redis not up:\n{}", redis.describe());

    // The hub's tree (0-hub's layout), the chain, the zos-config file.
    let www = dir.join("hub");
    let ab = www.join("tf-autobuilder");
    fs::create_dir_all(ab.join(".tag-v1")).unwrap();
    fs::create_dir_all(www.join("tf-zos-v3-bins")).unwrap();
    fs::create_dir_all(www.join("tf-zos")).unwrap();
    fs::create_dir_all(www.join("zos-config")).unwrap();
    let s = |p: &Path| p.to_string_lossy().into_owned();
    let redis_at = format!("{HUB}:9900");
    flistgen(
        &r,
        &[
            "v1",
            &s(&boot),
            &s(&ab.join("bootstrap-v1.flist")),
            "--redis",
            &redis_at,
        ],
    );
    flistgen(
        &r,
        &[
            "v1",
            &s(&zos),
            &s(&ab.join("zos-v1.flist")),
            "--redis",
            &redis_at,
        ],
    );
    let route = format!("http://{HUB}/blocks");
    flistgen(
        &r,
        &[
            "v2",
            &s(&bins),
            &s(&www.join("tf-zos-v3-bins/bins-v1.flist")),
            "--blocks",
            &s(&www.join("blocks")),
            "--route",
            &route,
        ],
    );
    symlink("bootstrap-v1.flist", ab.join("bootstrap:latest.flist")).unwrap();
    symlink(
        "../../tf-autobuilder/zos-v1.flist",
        ab.join(".tag-v1/zos.flist"),
    )
    .unwrap();
    symlink(
        "../../tf-zos-v3-bins/bins-v1.flist",
        ab.join(".tag-v1/zos-bins.flist"),
    )
    .unwrap();
    symlink("../tf-autobuilder/.tag-v1", www.join("tf-zos/testing")).unwrap();
    fs::write(
        www.join("zos-config/testing.json"),
        format!("{{\"hub_urls\": [\"http://{HUB}\"]}}"),
    )
    .unwrap();
    let records = dir.join("grid-records.json");
    let grid = grid_with(
        &r,
        &dir,
        &www,
        &records,
        &[HUB],
        &["--http", &format!("{HUB}:80")],
    );

    let mut vm = Vm::start(
        &r,
        &dir,
        &image,
        &["--tap", "oob"],
        &format!(
            "loglevel=4 zos.probe=none runmode=test zos.config=http://{HUB}/zos-config/testing.json \
             zos.root=/zos-root zos.init=/sbin/zinit"
        ),
    );
    let status = vm.wait(&[
        "DHCPv4 10.77.0.",
        "flist: hub http://",
        "flist tf-autobuilder/zos-v1.flist: installed",
        "handing off to /sbin/zinit init",
        "ZINIT-STANDIN: running as PID 1",
        "ZINIT-STANDIN: powering off",
        "reboot: Power down",
    ]);
    let console = vm.console_text();
    let why = |msg: &str| {
        format!(
            "{msg}\nqemu: {}\n--- console\n{console}\n{}{}{}",
            vm.cmdline,
            dns.describe(),
            redis.describe(),
            grid.describe()
        )
    };
    assert!(status.is_some(), "{}", why("QEMU still running"));
    let steps: &[&[Expect]] = &[
        &[Expect {
            what: "lease",
            any: &["DHCPv4 10.77.0."],
        }],
        &[Expect {
            what: "hubs from the zos-config file",
            any: &[&format!(
                "flist: hubs http://{HUB} (from http://{HUB}/zos-config/testing.json)"
            )],
        }],
        &[Expect {
            what: "the taglink chain resolved",
            any: &[&format!(
                "flist: hub http://{HUB}: tf-zos/testing → tf-autobuilder/bootstrap:latest.flist, \
                 tf-zos-v3-bins/bins-v1.flist, tf-autobuilder/zos-v1.flist"
            )],
        }],
        &[Expect {
            what: "stage 1 installed",
            any: &["flist tf-autobuilder/bootstrap:latest.flist: installed"],
        }],
        &[Expect {
            what: "bins (v2) installed",
            any: &["flist tf-zos-v3-bins/bins-v1.flist: installed"],
        }],
        &[Expect {
            what: "zos (v1) installed",
            any: &["flist tf-autobuilder/zos-v1.flist: installed"],
        }],
        &[Expect {
            what: "hand-off to zinit init",
            any: &["handing off to /sbin/zinit init in /zos-root"],
        }],
        &[Expect {
            what: "zinit runs as PID 1 with init",
            any: &["ZINIT-STANDIN: running as PID 1 with args: init"],
        }],
        &[Expect {
            what: "PATH set",
            any: &[
                "ZINIT-STANDIN: PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            ],
        }],
        &[Expect {
            what: "the mounts zinit needs",
            any: &["ZINIT-STANDIN: mounted: /proc /sys /dev /run /dev/pts"],
        }],
        &[Expect {
            what: "devpts",
            any: &["ZINIT-STANDIN: devpts ok"],
        }],
        &[Expect {
            what: "/tmp 1777",
            any: &["ZINIT-STANDIN: /tmp mode 1777"],
        }],
        &[Expect {
            what: "service files from two flists",
            any: &["ZINIT-STANDIN: services bootstrap.yaml node-ready.yaml"],
        }],
        &[Expect {
            what: "the zos flist's binary, byte for byte",
            any: &[&format!("ZINIT-STANDIN: zos-big md5 {want_md5}")],
        }],
        &[Expect {
            what: "the bins flist's file",
            any: &["ZINIT-STANDIN: bins from the bins flist"],
        }],
        &[Expect {
            what: "the state handed over",
            any: &["ZINIT-STANDIN: state readable"],
        }],
    ];
    match expect_in_order(&console, steps) {
        Ok(lines) => say(&format!("{t}: console\n  {}", lines.join("\n  "))),
        Err(e) => panic!("{}", why(&e)),
    }
}
