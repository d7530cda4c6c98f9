//! The fetch and registration stage end to end, in network namespaces: `zos-netboot boot
//! --no-handoff --sysroot DIR` in a node namespace, dnsmasq for the lease, and the test grid
//! (tests/grid/grid.py: hub + registrar, HTTPS with a CA made for each lab, fault switches) on
//! the router. Every file the node writes is inside DIR. Needs root; skips (with a `SKIP` line)
//! otherwise; `ZOS_LAB_REQUIRED=1` turns skips into failures.
mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const REGISTRAR: &str = "https://hub.lab.test/api/v1/nodes";
const MANIFEST: &str = "https://hub.lab.test/zos/manifest.json";
const INIT: &[u8] = b"#!/bin/sh\necho fetched next root\nexec /bin/sh\n";
const MOTD: &[u8] = b"welcome to a zos node\n";

fn sha256_hex(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn release() -> String {
    run_ok(&["uname", "-r"]).trim().to_string()
}

/// A tarball built by Python's tarfile from a JSON list of entries (`name`, `type`: file, dir,
/// symlink, link; `data`, `mode`, `target`), so tests can make archives `tar` refuses to make
/// (absolute names, `..`). `compression`: "" or "gz".
fn make_tar(lab: &Lab, out: &Path, compression: &str, entries: &Value) {
    const SCRIPT: &str = r#"
import io, json, sys, tarfile
out, mode, spec = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
with tarfile.open(out, "w:" + mode, format=tarfile.PAX_FORMAT) as t:
    for e in spec:
        i = tarfile.TarInfo(e["name"])
        i.mtime, i.uid, i.gid, i.mode = 1700000000, 0, 0, e.get("mode", 0o644)
        kind = e.get("type", "file")
        if kind == "dir":
            i.type, i.mode = tarfile.DIRTYPE, e.get("mode", 0o755)
            t.addfile(i)
        elif kind == "symlink":
            i.type, i.linkname = tarfile.SYMTYPE, e["target"]
            t.addfile(i)
        elif kind == "link":
            i.type, i.linkname = tarfile.LNKTYPE, e["target"]
            t.addfile(i)
        else:
            data = e.get("data", "").encode()
            i.size = len(data)
            t.addfile(i, io.BytesIO(data))
"#;
    let script = lab.path("make_tar.py");
    fs::write(&script, SCRIPT).unwrap();
    run_ok(&[
        PYTHON,
        &script.to_string_lossy(),
        &out.to_string_lossy(),
        compression,
        &entries.to_string(),
    ]);
}

/// The usual next root: an executable init, a symlink, a hostname file.
fn rootfs_entries() -> Value {
    json!([
        {"name": "sbin", "type": "dir"},
        {"name": "sbin/init", "data": String::from_utf8_lossy(INIT), "mode": 0o755},
        {"name": "etc", "type": "dir"},
        {"name": "etc/hostname", "data": "zos\n"},
        {"name": "bin", "type": "symlink", "target": "sbin"},
    ])
}

/// One artifact in the grid's root (`zos/<file>`) and its manifest entry.
fn artifact(grid: &Grid, file: &str, bytes: &[u8], entry: Value) -> Value {
    let dir = grid.root.join("zos");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(file), bytes).unwrap();
    let mut e = entry;
    e["url"] = json!(file);
    if e.get("size").is_none() {
        e["size"] = json!(bytes.len());
    }
    e["sha256"] = json!(sha256_hex(bytes));
    e
}

fn write_manifest(grid: &Grid, artifacts: Vec<Value>) {
    let dir = grid.root.join("zos");
    fs::create_dir_all(&dir).unwrap();
    let m = json!({"version": 1, "artifacts": artifacts});
    fs::write(dir.join("manifest.json"), m.to_string()).unwrap();
}

/// The standard set: a rootfs tar.gz, a file, and modules for the running kernel.
fn standard_artifacts(lab: &Lab, grid: &Grid) -> Vec<Value> {
    let tgz = lab.path("rootfs.tar.gz");
    make_tar(lab, &tgz, "gz", &rootfs_entries());
    let rel = release();
    let mods = lab.path("modules.tar");
    make_tar(
        lab,
        &mods,
        "",
        &json!([
            {"name": rel, "type": "dir"},
            {"name": format!("{rel}/modules.dep"), "data": "kernel/zos-dummy.ko:\n"},
            {"name": format!("{rel}/kernel"), "type": "dir"},
            {"name": format!("{rel}/kernel/zos-dummy.ko"), "data": "not a real module"},
        ]),
    );
    vec![
        artifact(
            grid,
            "rootfs.tar.gz",
            &fs::read(&tgz).unwrap(),
            json!({"name": "rootfs", "kind": "rootfs"}),
        ),
        artifact(
            grid,
            "motd",
            MOTD,
            json!({"name": "motd", "kind": "file", "dest": "/etc/motd"}),
        ),
        artifact(
            grid,
            "modules.tar",
            &fs::read(&mods).unwrap(),
            json!({"name": "modules", "kind": "modules", "kernel": rel}),
        ),
    ]
}

/// A lab with one NIC, dnsmasq handing out the router and the grid's DNS, and the grid.
fn grid_lab(t: &str, faults: &[&str]) -> Option<(Lab, Dnsmasq, Grid)> {
    if !require_root(t) || !require_tool(t, "dnsmasq", "--version") || !require_grid(t) {
        return None;
    }
    let lab = Lab::new(t);
    lab.wire("eth0", "r0", "10.61.0.1/24");
    let dns = lab.dnsmasq(
        "r0",
        &[
            "--dhcp-range=10.61.0.100,10.61.0.200,255.255.255.0,1h",
            "--dhcp-option=3,10.61.0.1",
            &format!("--dhcp-option=6,{DNS_V4}"),
        ],
    );
    let grid = lab.grid(faults);
    Some((lab, dns, grid))
}

/// A node's filesystem for `--sysroot`, with the grid's CA at /etc/zos/ca.pem.
fn sysroot(lab: &Lab, grid: &Grid, name: &str) -> PathBuf {
    let root = lab.path(name);
    fs::create_dir_all(root.join("etc/zos")).unwrap();
    fs::copy(&grid.ca, root.join("etc/zos/ca.pem")).unwrap();
    root
}

fn boot(lab: &Lab, root: &Path, extra: &str) -> Run {
    boot_with(lab, root, &format!("zos.registrar={REGISTRAR} {extra}"))
}

/// `boot --no-handoff --sysroot ROOT` with the lab's defaults and `extra` on the command line
/// (later keys win for single-valued ones).
fn boot_with(lab: &Lab, root: &Path, extra: &str) -> Run {
    let cmdline = format!(
        "zos.iface=eth0 zos.probe=none zos.manifest={MANIFEST} zos.ca=/etc/zos/ca.pem \
         farmer_id=7 runmode=test version=v3 {extra}"
    );
    let root = root.to_string_lossy().into_owned();
    lab.run_node(
        &[
            "boot",
            "--no-handoff",
            "--sysroot",
            &root,
            "--wait-ipv6",
            "0",
            "--cmdline",
            &cmdline,
        ],
        Duration::from_secs(90),
    )
}

fn state_of(lab: &Lab, root: &Path) -> Value {
    lab.read_state(&root.join("run/zos-netboot/state.json"))
}

/// Nothing half-done is left where the next stage looks: no part files, no staging dirs.
fn assert_no_leftovers(root: &Path) {
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            assert!(
                !name.ends_with(".part")
                    && !name.starts_with(".zos-unpack")
                    && !name.contains(".zos-tmp"),
                "leftover {} under {}",
                e.path().display(),
                root.display()
            );
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            }
        }
    }
}

fn assert_exit(run: &Run, code: i32, grid: &Grid) {
    assert_eq!(
        run.code(),
        Some(code),
        "expected exit {code}\n{}\n{}",
        run.describe(),
        grid.describe()
    );
}

/// The next root that the standard artifacts make.
fn assert_standard_install(root: &Path) {
    let next = root.join("next-root");
    assert_eq!(fs::read(next.join("sbin/init")).unwrap(), INIT);
    let mode = fs::metadata(next.join("sbin/init"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755, "init keeps its mode");
    assert_eq!(
        fs::read_link(next.join("bin")).unwrap(),
        PathBuf::from("sbin")
    );
    assert_eq!(fs::read(next.join("etc/motd")).unwrap(), MOTD);
    let rel = release();
    assert!(
        root.join(format!("lib/modules/{rel}/kernel/zos-dummy.ko"))
            .is_file(),
        "modules installed for {rel}"
    );
}

#[test]
fn fetches_verifies_installs_and_registers_once_over_https() {
    let t = "fetch_happy";
    let Some((lab, _dns, grid)) = grid_lab(t, &[]) else {
        return;
    };
    let arts = standard_artifacts(&lab, &grid);
    write_manifest(&grid, arts);
    let root = sysroot(&lab, &grid, "node");
    // A persistent identity, as zos.identity= gives it: the second boot is the same node.
    let seed = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
    fs::write(root.join("etc/zos/seed"), format!("{seed}\n")).unwrap();
    let node_id = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

    let run = boot(&lab, &root, "zos.identity=/etc/zos/seed");
    assert_exit(&run, 0, &grid);
    let out = run.all_output();
    for needle in [
        "manifest https://hub.lab.test/zos/manifest.json: 3 artifacts",
        "fetched rootfs",
        "installed rootfs",
        "installed motd",
        "installed modules",
        &format!("registered as {node_id}"),
    ] {
        assert!(
            out.contains(needle),
            "console lacks {needle:?}\n{}",
            run.describe()
        );
    }
    assert_standard_install(&root);
    assert_no_leftovers(&root);

    let state = state_of(&lab, &root);
    let fetch = &state["fetch"];
    assert_eq!(fetch["error"], Value::Null, "{}", pretty(&state));
    assert_eq!(fetch["manifest"], MANIFEST);
    assert!(fetch["clock"]["source"].is_string(), "{}", pretty(fetch));
    assert_eq!(
        fetch["clock"]["applied"], false,
        "only PID 1 steps the clock"
    );
    let names: Vec<&str> = fetch["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["modules", "rootfs", "motd"], "modules first");
    for a in fetch["artifacts"].as_array().unwrap() {
        assert_eq!(a["bytes_received"], a["size"], "{}", pretty(a));
        assert_eq!(a["attempts"], 1, "{}", pretty(a));
    }
    let reg = &state["registration"];
    assert_eq!(reg["node_id"], node_id, "{}", pretty(&state));
    assert_eq!(reg["created"], true);
    assert_eq!(reg["error"], Value::Null);
    let handed = fs::read_to_string(root.join("run/zos-netboot/identity.seed")).unwrap();
    assert_eq!(
        handed,
        format!("{seed}\n"),
        "identity handed to the full OS"
    );

    // The registrar checked the signature (it stores nothing else) and has exactly one record.
    let records = grid.records();
    let obj = records.as_object().unwrap();
    assert_eq!(obj.len(), 1, "one node, one record: {}", pretty(&records));
    let rec = &records[node_id];
    assert_eq!(rec["registrations"], 1);
    assert_eq!(rec["body"]["farmer_id"], 7);
    assert_eq!(rec["body"]["runmode"], "test");
    let mac = lab.node_mac("eth0");
    assert!(
        rec["body"]["macs"]
            .as_array()
            .unwrap()
            .contains(&json!(mac)),
        "MAC {mac} in {}",
        pretty(&rec["body"])
    );

    // The same node boots again: still one record, now updated.
    let run = boot(&lab, &root, "zos.identity=/etc/zos/seed");
    assert_exit(&run, 0, &grid);
    let records = grid.records();
    assert_eq!(
        records.as_object().unwrap().len(),
        1,
        "{}",
        pretty(&records)
    );
    assert_eq!(records[node_id]["registrations"], 2);
    let state = state_of(&lab, &root);
    assert_eq!(state["registration"]["created"], false);
    assert_eq!(state["registration"]["registrations"], 2);
}

#[test]
fn a_dropped_connection_is_resumed_and_a_slow_body_still_arrives() {
    let t = "fetch_drop_slow";
    let Some((lab, _dns, grid)) = grid_lab(
        t,
        &[
            "--fault-path=/zos/big.bin",
            "--drop-after=100000",
            "--slow-body=2000000",
        ],
    ) else {
        return;
    };
    let big: Vec<u8> = (0..600_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let a = artifact(
        &grid,
        "big.bin",
        &big,
        json!({"name": "big", "kind": "file", "dest": "/big.bin"}),
    );
    write_manifest(&grid, vec![a]);
    let root = sysroot(&lab, &grid, "node");
    let started = Instant::now();
    let run = boot_with(&lab, &root, "");
    assert_exit(&run, 0, &grid);
    assert_eq!(fs::read(root.join("next-root/big.bin")).unwrap(), big);
    let state = state_of(&lab, &root);
    let art = &state["fetch"]["artifacts"][0];
    assert_eq!(art["attempts"], 2, "dropped once, resumed: {}", pretty(art));
    let from = art["resumed_from"].as_u64().expect("resumed_from");
    assert!(
        (1..=100_000).contains(&from),
        "resumed at {from}, after the drop at 100000: {}",
        pretty(art)
    );
    assert!(
        art["bytes_received"].as_u64().unwrap() < 2 * big.len() as u64,
        "resumed, not restarted: {}",
        pretty(art)
    );
    // 600 kB at 2 MB/s: the slow body really was slow, and waited for, not timed out.
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
    assert!(
        grid.daemon.log().contains("fault=drop-after"),
        "{}",
        grid.describe()
    );
    assert_no_leftovers(&root);
}

#[test]
fn server_errors_are_retried_and_a_stalled_accept_is_outwaited() {
    let t = "fetch_5xx_stall";
    let Some((lab, _dns, grid)) =
        grid_lab(t, &["--fail-5xx=2", "--stall-accept=3", "--stall-count=1"])
    else {
        return;
    };
    write_manifest(
        &grid,
        vec![artifact(
            &grid,
            "motd",
            MOTD,
            json!({"name": "motd", "kind": "file", "dest": "/etc/motd"}),
        )],
    );
    let root = sysroot(&lab, &grid, "node");
    let run = boot_with(&lab, &root, "");
    assert_exit(&run, 0, &grid);
    assert_eq!(fs::read(root.join("next-root/etc/motd")).unwrap(), MOTD);
    let state = state_of(&lab, &root);
    let art = &state["fetch"]["artifacts"][0];
    assert_eq!(
        art["attempts"],
        3,
        "two 503s, then the file: {}",
        pretty(art)
    );
    let log = grid.daemon.log();
    assert!(log.contains(" 503 "), "the grid did fail:\n{log}");
}

/// Each way a hub can serve a bad file: the file never appears in the next root, the run
/// fails with a reason, and nothing partial is left.
#[test]
fn corrupt_truncated_and_oversized_artifacts_are_never_installed() {
    let t = "fetch_bad_files";
    let cases: &[(&str, &[&str], i64, &str)] = &[
        ("corrupt", &["--corrupt-byte=1000"], 0, "SHA-256 mismatch"),
        ("short", &["--wrong-length=+5000"], 0, "bytes"),
        ("long", &["--wrong-length=-5000"], 0, "bytes"),
        // The manifest says 10 000 bytes fewer than the hub sends.
        ("oversized", &[], -10_000, "bytes"),
    ];
    if !require_root(t) {
        return;
    }
    for (name, faults, size_delta, needle) in cases {
        let mut all = vec!["--fault-path=/zos/payload.bin"];
        all.extend_from_slice(faults);
        let Some((lab, _dns, grid)) = grid_lab(&format!("{t}_{name}"), &all) else {
            return;
        };
        let payload: Vec<u8> = (0..50_000u32).map(|i| (i % 253) as u8).collect();
        let mut a = artifact(
            &grid,
            "payload.bin",
            &payload,
            json!({"name": "payload", "kind": "file", "dest": "/payload.bin"}),
        );
        if *size_delta != 0 {
            let size = payload.len() as i64 + size_delta;
            a["size"] = json!(size);
            a["sha256"] = json!(sha256_hex(&payload[..size as usize]));
        }
        write_manifest(&grid, vec![a]);
        let root = sysroot(&lab, &grid, "node");
        let run = boot_with(&lab, &root, "");
        assert_exit(&run, 1, &grid);
        assert!(
            !root.join("next-root/payload.bin").exists(),
            "{name}: a bad file was installed\n{}",
            run.describe()
        );
        assert!(
            !root.join("run/zos-netboot/cache/payload").exists(),
            "{name}: a bad file sits in the cache"
        );
        assert_no_leftovers(&root);
        let state = state_of(&lab, &root);
        let err = state["fetch"]["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: no fetch error in the state\n{}", pretty(&state)));
        assert!(
            err.contains(needle),
            "{name}: error {err:?} lacks {needle:?}"
        );
        assert!(
            run.all_output().contains("fetch failed:"),
            "{name}: console\n{}",
            run.describe()
        );
    }
}

#[test]
fn tarballs_that_escape_the_next_root_are_refused() {
    let t = "fetch_traversal";
    let cases: &[(&str, &str, Value)] = &[
        (
            "dotdot",
            "../escape.txt",
            json!([{"name": "ok.txt", "data": "fine"}, {"name": "../escape.txt", "data": "out"}]),
        ),
        (
            "absolute",
            "/escape.txt",
            json!([{"name": "ok.txt", "data": "fine"}, {"name": "/escape.txt", "data": "out"}]),
        ),
        (
            "symlink",
            "up",
            json!([
                {"name": "ok.txt", "data": "fine"},
                {"name": "up", "type": "symlink", "target": "../.."},
                {"name": "up/escape.txt", "data": "out"}
            ]),
        ),
    ];
    let Some((lab, _dns, grid)) = grid_lab(t, &[]) else {
        return;
    };
    for (name, entry, entries) in cases {
        let tar = lab.path(&format!("{name}.tar"));
        make_tar(&lab, &tar, "", entries);
        let a = artifact(
            &grid,
            &format!("{name}.tar"),
            &fs::read(&tar).unwrap(),
            json!({"name": "rootfs", "kind": "rootfs"}),
        );
        write_manifest(&grid, vec![a]);
        let root = sysroot(&lab, &grid, &format!("node-{name}"));
        let run = boot_with(&lab, &root, "");
        assert_exit(&run, 1, &grid);
        let err = state_of(&lab, &root)["fetch"]["error"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            err.contains("refused entry") && err.contains(&format!("{entry:?}")),
            "{name}: error names the entry {entry:?}: {err:?}\n{}",
            run.describe()
        );
        // All or nothing: not even the good entry is in place, and nothing escaped.
        assert!(!root.join("next-root/ok.txt").exists(), "{name}");
        for p in [
            lab.path("escape.txt"),
            root.join("escape.txt"),
            lab.dir.join("../escape.txt"),
        ] {
            assert!(!p.exists(), "{name}: {} was written", p.display());
        }
        assert_no_leftovers(&root);
    }
}

#[test]
fn a_failing_registrar_is_retried_until_it_takes_the_node_once() {
    let t = "register_retry";
    let Some((lab, _dns, grid)) = grid_lab(t, &["--registrar-fail=3"]) else {
        return;
    };
    write_manifest(
        &grid,
        vec![artifact(
            &grid,
            "motd",
            MOTD,
            json!({"name": "motd", "kind": "file", "dest": "/etc/motd"}),
        )],
    );
    let root = sysroot(&lab, &grid, "node");
    let run = boot(&lab, &root, "");
    assert_exit(&run, 0, &grid);
    let state = state_of(&lab, &root);
    let reg = &state["registration"];
    assert_eq!(reg["attempts"], 4, "3 × 503, then 201: {}", pretty(reg));
    assert_eq!(reg["created"], true);
    let records = grid.records();
    assert_eq!(
        records.as_object().unwrap().len(),
        1,
        "{}",
        pretty(&records)
    );
    let id = reg["node_id"].as_str().unwrap();
    assert_eq!(records[id]["registrations"], 1, "registered exactly once");
    assert_eq!(
        run.all_output().matches("registration attempt").count(),
        3,
        "{}",
        run.describe()
    );
}

#[test]
fn a_refusal_from_the_registrar_is_not_retried_blindly() {
    let t = "register_404";
    let Some((lab, _dns, grid)) = grid_lab(t, &[]) else {
        return;
    };
    write_manifest(
        &grid,
        vec![artifact(
            &grid,
            "motd",
            MOTD,
            json!({"name": "motd", "kind": "file", "dest": "/etc/motd"}),
        )],
    );
    let root = sysroot(&lab, &grid, "node");
    let run = boot_with(
        &lab,
        &root,
        "zos.registrar=https://hub.lab.test/api/v1/no-such-endpoint",
    );
    assert_exit(&run, 1, &grid);
    let state = state_of(&lab, &root);
    let reg = &state["registration"];
    assert_eq!(reg["attempts"], 1, "{}\n{}", pretty(reg), run.describe());
    let err = reg["error"].as_str().unwrap();
    assert!(
        err.contains("404") && err.contains("zos.registrar"),
        "{err}"
    );
    assert_eq!(grid.records(), json!({}));
    // The artifacts were still installed: the registration comes after.
    assert_eq!(fs::read(root.join("next-root/etc/motd")).unwrap(), MOTD);
}

#[test]
fn a_hub_certificate_from_another_ca_is_refused_and_plain_http_works() {
    let t = "fetch_wrong_ca";
    let Some((lab, _dns, grid)) = grid_lab(t, &[]) else {
        return;
    };
    write_manifest(
        &grid,
        vec![artifact(
            &grid,
            "motd",
            MOTD,
            json!({"name": "motd", "kind": "file", "dest": "/etc/motd"}),
        )],
    );
    // Another CA, with the right names: only the issuer is wrong.
    let other = lab.path("other-ca");
    run_ok(&[
        PYTHON,
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/grid/grid.py")
            .to_string_lossy(),
        "--make-ca",
        &other.to_string_lossy(),
        "--names",
        &format!("{HUB_NAME},{HUB_V4}"),
    ]);
    let root = sysroot(&lab, &grid, "node");
    fs::copy(other.join("ca.pem"), root.join("etc/zos/ca.pem")).unwrap();
    let run = boot(&lab, &root, "");
    assert_exit(&run, 1, &grid);
    let err = state_of(&lab, &root)["fetch"]["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        err.contains("not signed by a trusted CA"),
        "{err:?}\n{}",
        run.describe()
    );
    assert!(!root.join("next-root/etc/motd").exists());
    assert_eq!(
        grid.records(),
        json!({}),
        "no registration after a failed fetch"
    );

    // Plain HTTP (the integrity is the manifest's sha256 either way).
    let root = sysroot(&lab, &grid, "node-http");
    let run = boot_with(
        &lab,
        &root,
        "zos.manifest=http://hub.lab.test/zos/manifest.json",
    );
    assert_exit(&run, 0, &grid);
    assert_eq!(fs::read(root.join("next-root/etc/motd")).unwrap(), MOTD);
}
