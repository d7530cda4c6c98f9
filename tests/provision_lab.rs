//! The fetch and registration stage end to end, in network namespaces: `zos-netboot boot
//! --no-handoff --sysroot DIR` in a node namespace, dnsmasq for the lease, and the test grid
//! (tests/grid/grid.py: hub + registrar, HTTPS with a CA made for each lab, fault switches) on
//! the router. Every file the node writes is inside DIR (checked with sentinels where an
//! archive tries to get out). What the node claims (console, state JSON) is checked against
//! what the grid saw (`/_grid/state`: requests per path, faults applied, registrations
//! created/updated/rejected, TLS failures). Needs root; skips (with a `SKIP` line) otherwise;
//! `ZOS_LAB_REQUIRED=1` turns skips into failures.
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
/// RFC 8032 §7.1 test 1: this seed's ed25519 public key is `NODE_ID`.
const SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
const NODE_ID: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

fn sha256_hex(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
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

/// `make_tar` into the lab directory, returning the bytes.
fn tar_bytes(lab: &Lab, name: &str, compression: &str, entries: &Value) -> Vec<u8> {
    let path = lab.path(name);
    make_tar(lab, &path, compression, entries);
    fs::read(&path).unwrap()
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

/// One artifact in the grid's root (`zos/<file>`) and its manifest entry (URL relative to
/// the manifest at `/zos/manifest.json`).
fn artifact(grid: &Grid, file: &str, bytes: &[u8], entry: Value) -> Value {
    let mut e = artifact_at(grid, &format!("/zos/{file}"), bytes, entry);
    e["url"] = json!(file);
    e
}

/// One artifact served at the URL path `url_path` (absolute path: resolved against whatever
/// manifest lists it) and its manifest entry.
fn artifact_at(grid: &Grid, url_path: &str, bytes: &[u8], entry: Value) -> Value {
    let file = grid.root.join(url_path.trim_start_matches('/'));
    fs::create_dir_all(file.parent().unwrap()).unwrap();
    fs::write(&file, bytes).unwrap();
    let mut e = entry;
    e["url"] = json!(url_path);
    if e.get("size").is_none() {
        e["size"] = json!(bytes.len());
    }
    e["sha256"] = json!(sha256_hex(bytes));
    e
}

fn motd_artifact(grid: &Grid) -> Value {
    artifact(
        grid,
        "motd",
        MOTD,
        json!({"name": "motd", "kind": "file", "dest": "/etc/motd"}),
    )
}

fn write_manifest(grid: &Grid, artifacts: Vec<Value>) {
    write_manifest_at(grid, "/zos/manifest.json", artifacts);
}

fn write_manifest_at(grid: &Grid, url_path: &str, artifacts: Vec<Value>) {
    let file = grid.root.join(url_path.trim_start_matches('/'));
    fs::create_dir_all(file.parent().unwrap()).unwrap();
    let m = json!({"version": 1, "artifacts": artifacts});
    fs::write(file, m.to_string()).unwrap();
}

/// The standard set: a rootfs tar.gz, a file, and modules for the running kernel.
fn standard_artifacts(lab: &Lab, grid: &Grid) -> Vec<Value> {
    let rel = release();
    let mods = tar_bytes(
        lab,
        "modules.tar",
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
            &tar_bytes(lab, "rootfs.tar.gz", "gz", &rootfs_entries()),
            json!({"name": "rootfs", "kind": "rootfs"}),
        ),
        motd_artifact(grid),
        artifact(
            grid,
            "modules.tar",
            &mods,
            json!({"name": "modules", "kind": "modules", "kernel": rel}),
        ),
    ]
}

/// A lab with one NIC, dnsmasq handing out the router and the grid's DNS, and the grid.
fn grid_lab(t: &str, faults: &[&str]) -> Option<(Lab, Dnsmasq, Grid)> {
    grid_lab_with(t, faults, &[])
}

/// [`grid_lab`] with more dnsmasq options (`--dhcp-option=42,...`).
fn grid_lab_with(t: &str, faults: &[&str], dhcp: &[&str]) -> Option<(Lab, Dnsmasq, Grid)> {
    if !require_root(t) || !require_tool(t, "dnsmasq", "--version") || !require_grid(t) {
        return None;
    }
    let lab = Lab::new(t);
    lab.wire("eth0", "r0", "10.61.0.1/24");
    let dns_option = format!("--dhcp-option=6,{DNS_V4}");
    let mut args = vec![
        "--dhcp-range=10.61.0.100,10.61.0.200,255.255.255.0,1h",
        "--dhcp-option=3,10.61.0.1",
        &dns_option,
    ];
    args.extend_from_slice(dhcp);
    let dns = lab.dnsmasq("r0", &args);
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

/// The lab's usual kernel command line, then `extra` (later keys win for single-valued ones).
fn cmdline(extra: &str) -> String {
    format!(
        "zos.iface=eth0 zos.probe=none zos.manifest={MANIFEST} zos.ca=/etc/zos/ca.pem \
         farmer_id=7 runmode=test version=v3 {extra}"
    )
}

/// `boot --no-handoff --sysroot ROOT` with the lab's defaults and `extra` on the command line.
fn boot_with(lab: &Lab, root: &Path, extra: &str) -> Run {
    let root = root.to_string_lossy().into_owned();
    boot_args(lab, &["--sysroot", &root], &cmdline(extra))
}

/// `boot --no-handoff ARGS --cmdline CMDLINE`, resolv.conf into the lab directory.
fn boot_args(lab: &Lab, args: &[&str], cmdline: &str) -> Run {
    let resolv = lab.path("resolv.conf").to_string_lossy().into_owned();
    let mut argv = vec![
        "boot",
        "--no-handoff",
        "--wait-ipv6",
        "0",
        "--resolv",
        &resolv,
    ];
    argv.extend_from_slice(args);
    argv.extend(["--cmdline", cmdline]);
    lab.run_node(&argv, Duration::from_secs(90))
}

fn state_of(lab: &Lab, root: &Path) -> Value {
    lab.read_state(&root.join("run/zos-netboot/state.json"))
}

/// `state.fetch.error`, which must be there.
fn fetch_error(state: &Value, run: &Run) -> String {
    state["fetch"]["error"]
        .as_str()
        .unwrap_or_else(|| {
            panic!(
                "no fetch error in the state\n{}\n{}",
                pretty(state),
                run.describe()
            )
        })
        .to_string()
}

/// Nothing half-done is left where the next stage looks: no part files, no staging dirs, no
/// temporary files.
fn assert_no_leftovers(root: &Path) {
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            assert!(
                !name.ends_with(".part")
                    && !name.ends_with(".tmp")
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

/// Every file (not directory) under `dir`, relative; symlinks are not followed.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.push(
                    e.path()
                        .strip_prefix(dir)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    out.sort();
    out
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

fn assert_says(run: &Run, needle: &str) {
    assert!(
        run.all_output().contains(needle),
        "console lacks {needle:?}\n{}",
        run.describe()
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
    assert_eq!(fs::read(next.join("etc/hostname")).unwrap(), b"zos\n");
    assert_eq!(
        fs::read_link(next.join("bin")).unwrap(),
        PathBuf::from("sbin")
    );
    assert_eq!(fs::read(next.join("etc/motd")).unwrap(), MOTD);
    let mode = fs::metadata(next.join("etc/motd"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o644, "a file artifact is 0644");
    let rel = release();
    let mods = root.join("lib/modules").join(&rel);
    assert_eq!(
        fs::read(mods.join("modules.dep")).unwrap(),
        b"kernel/zos-dummy.ko:\n"
    );
    assert_eq!(
        fs::read(mods.join("kernel/zos-dummy.ko")).unwrap(),
        b"not a real module"
    );
}

/// `n` as u64 from a JSON value, with the value in the message.
fn num(v: &Value) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("not a number: {}", pretty(v)))
}

#[test]
fn fetches_verifies_installs_and_registers_once_over_https() {
    let t = "fetch_happy";
    let Some((lab, _dns, grid)) = grid_lab(t, &[]) else {
        return;
    };
    let arts = standard_artifacts(&lab, &grid);
    write_manifest(&grid, arts.clone());
    let root = sysroot(&lab, &grid, "node");
    // A persistent identity, as zos.identity= gives it: the second boot is the same node.
    fs::write(root.join("etc/zos/seed"), format!("{SEED}\n")).unwrap();

    let run = boot(&lab, &root, "zos.identity=/etc/zos/seed");
    assert_exit(&run, 0, &grid);
    for needle in [
        "clock: ",
        "manifest https://hub.lab.test/zos/manifest.json: 3 artifacts",
        "fetched rootfs",
        "fetched motd",
        "fetched modules",
        "installed rootfs",
        "installed motd",
        "installed modules",
        &format!("registered as {NODE_ID}"),
    ] {
        assert_says(&run, needle);
    }
    assert_standard_install(&root);
    assert_no_leftovers(&root);
    // The archives are deleted once installed (the cache is RAM); only stamps stay.
    let cache = files_under(&root.join("run/zos-netboot/cache"));
    assert!(
        cache.iter().all(|f| f.ends_with(".installed")),
        "archives left in the cache: {cache:?}"
    );

    let state = state_of(&lab, &root);
    let fetch = &state["fetch"];
    assert_eq!(fetch["error"], Value::Null, "{}", pretty(&state));
    assert_eq!(fetch["skipped"], Value::Null, "{}", pretty(fetch));
    assert_eq!(fetch["manifest"], MANIFEST);
    assert!(fetch["clock"]["source"].is_string(), "{}", pretty(fetch));
    assert!(fetch["clock"]["step_ms"].is_i64(), "{}", pretty(fetch));
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
    let rel = release();
    for a in fetch["artifacts"].as_array().unwrap() {
        let name = a["name"].as_str().unwrap();
        let m = arts.iter().find(|m| m["name"] == name).unwrap();
        let want_path = match name {
            "modules" => root.join("lib/modules").join(&rel),
            "rootfs" => root.join("next-root"),
            _ => root.join("next-root/etc/motd"),
        };
        let ctx = pretty(a);
        assert_eq!(a["kind"], m["kind"], "{ctx}");
        assert_eq!(a["size"], m["size"], "{ctx}");
        assert_eq!(a["sha256"], m["sha256"], "{ctx}");
        assert_eq!(
            a["url"],
            format!("https://hub.lab.test/zos/{}", m["url"].as_str().unwrap()),
            "relative URL resolved against the manifest's: {ctx}"
        );
        assert_eq!(a["path"], want_path.display().to_string(), "{ctx}");
        assert_eq!(a["bytes_received"], a["size"], "{ctx}");
        assert_eq!(a["attempts"], 1, "{ctx}");
        assert_eq!(a["resumed_from"], Value::Null, "{ctx}");
        assert!(a["ms"].is_u64(), "{ctx}");
    }
    let reg = &state["registration"];
    assert_eq!(reg["registrar"], REGISTRAR, "{}", pretty(&state));
    assert_eq!(reg["node_id"], NODE_ID, "{}", pretty(&state));
    assert_eq!(reg["created"], true);
    assert_eq!(reg["registrations"], 1);
    assert_eq!(reg["attempts"], 1);
    assert_eq!(reg["error"], Value::Null);
    let handed = root.join("run/zos-netboot/identity.seed");
    assert_eq!(
        fs::read_to_string(&handed).unwrap(),
        format!("{SEED}\n"),
        "identity handed to the full OS"
    );
    assert_eq!(
        fs::metadata(&handed).unwrap().permissions().mode() & 0o777,
        0o600,
        "the seed is a secret"
    );

    // The registrar checked the signature (it rejects a bad one with 401 and stores nothing)
    // and has exactly one record; the grid saw each file asked for once.
    let seen = grid.state();
    let c = &seen["counters"];
    assert_eq!(c["registration_posts"], 1, "{}", pretty(&seen));
    assert_eq!(c["registrations_created"], 1, "{}", pretty(&seen));
    assert_eq!(c["registrations_rejected"], json!({}), "{}", pretty(&seen));
    assert_eq!(c["tls_failures"], 0, "{}", pretty(&seen));
    for p in [
        "/zos/manifest.json",
        "/zos/rootfs.tar.gz",
        "/zos/motd",
        "/zos/modules.tar",
    ] {
        assert_eq!(seen["paths"][p], 1, "{p}: {}", pretty(&seen["paths"]));
    }
    let records = grid.records();
    assert_eq!(seen["records"], records, "records file = the grid's memory");
    let obj = records.as_object().unwrap();
    assert_eq!(obj.len(), 1, "one node, one record: {}", pretty(&records));
    let rec = &records[NODE_ID];
    assert_eq!(rec["registrations"], 1);
    let body = &rec["body"];
    assert_eq!(body["node_id"], NODE_ID);
    assert_eq!(body["farmer_id"], 7);
    assert_eq!(body["runmode"], "test");
    assert_eq!(body["version"], "v3");
    assert_eq!(body["kernel"], rel);
    assert_eq!(body["network"]["online"], true);
    let mac = lab.node_mac("eth0");
    assert!(
        body["macs"].as_array().unwrap().contains(&json!(mac)),
        "MAC {mac} in {}",
        pretty(body)
    );
    let leased = state_iface(&state, "eth0")["ipv4"][0]["address"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(rec["remote"], leased, "registered from its leased address");
    assert!(
        body["network"].to_string().contains(&leased),
        "{leased} in {}",
        pretty(&body["network"])
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
    assert_eq!(records[NODE_ID]["registrations"], 2);
    let state = state_of(&lab, &root);
    assert_eq!(state["registration"]["created"], false);
    assert_eq!(state["registration"]["registrations"], 2);
    assert_eq!(state["registration"]["attempts"], 1);
    let c = &grid.state()["counters"];
    assert_eq!(c["registrations_created"], 1, "{c}");
    assert_eq!(c["registrations_updated"], 1, "{c}");
    assert_standard_install(&root);
    assert_no_leftovers(&root);
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
        num(&art["bytes_received"]) < 2 * big.len() as u64,
        "resumed, not restarted: {}",
        pretty(art)
    );
    assert_says(&run, &format!("resumed at byte {from}"));
    // 600 kB at 2 MB/s: the slow body really was slow, and waited for, not timed out.
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
    let seen = grid.state();
    let faults = &seen["counters"]["faults"];
    assert_eq!(faults["drop"], 1, "{}", pretty(&seen));
    assert_eq!(
        faults["slow"],
        2,
        "both requests trickled: {}",
        pretty(&seen)
    );
    assert_eq!(seen["paths"]["/zos/big.bin"], 2, "{}", pretty(&seen));
    // The second request was a Range request answered with 206.
    let log = grid.daemon.log();
    assert!(
        log.lines()
            .any(|l| l.contains("GET /zos/big.bin 206 ") && l.contains("slow-body")),
        "no 206 for the resumed request:\n{log}"
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
    write_manifest(&grid, vec![motd_artifact(&grid)]);
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
    let seen = grid.state();
    let faults = &seen["counters"]["faults"];
    assert_eq!(faults["stall"], 1, "{}", pretty(&seen));
    assert_eq!(
        faults["fail_5xx"],
        4,
        "2 for the manifest, 2 for the file: {}",
        pretty(&seen)
    );
    assert_eq!(seen["paths"]["/zos/manifest.json"], 3, "{}", pretty(&seen));
    assert_eq!(seen["paths"]["/zos/motd"], 3, "{}", pretty(&seen));
    // The bound: the 3 s stall (under the 10 s handshake timeout: waited out on the same
    // connection), two short backoffs per path, and the lease.
    assert!(
        run.elapsed < Duration::from_secs(15),
        "took {:?}\n{}",
        run.elapsed,
        run.describe()
    );
    assert_no_leftovers(&root);
}

/// A hub that accepts the connection and then says nothing for longer than the TLS handshake
/// timeout (10 s): that connection is given up and a new one made; the boot completes within
/// 25 s and says what happened. Nothing is installed twice, nothing is left over.
#[test]
fn a_handshake_stalled_past_the_timeout_is_retried_on_a_new_connection() {
    let t = "fetch_stall_long";
    let Some((lab, _dns, grid)) = grid_lab(t, &["--stall-accept=14", "--stall-count=1"]) else {
        return;
    };
    write_manifest(&grid, vec![motd_artifact(&grid)]);
    let root = sysroot(&lab, &grid, "node");
    let run = boot_with(&lab, &root, "");
    assert_exit(&run, 0, &grid);
    assert_eq!(fs::read(root.join("next-root/etc/motd")).unwrap(), MOTD);
    // The stall hit the manifest's connection (not some later one): the run waited for it.
    assert!(
        run.elapsed >= Duration::from_secs(2),
        "the stalled handshake was not waited for: {:?}\n{}",
        run.elapsed,
        run.describe()
    );
    assert!(
        run.elapsed < Duration::from_secs(25),
        "took {:?}\n{}",
        run.elapsed,
        run.describe()
    );
    let seen = grid.state();
    assert_eq!(seen["counters"]["faults"]["stall"], 1, "{}", pretty(&seen));
    assert!(
        num(&seen["counters"]["connections"]) >= 2,
        "{}",
        pretty(&seen)
    );
    assert_eq!(seen["paths"]["/zos/manifest.json"], 1, "{}", pretty(&seen));
    assert_no_leftovers(&root);
}

/// Each way a hub can serve a bad file: the file never appears in the next root, the run
/// fails with a reason naming what was wrong, the grid really applied the fault, and nothing
/// partial is left.
#[test]
fn corrupt_truncated_and_oversized_artifacts_are_never_installed() {
    let t = "fetch_bad_files";
    // (case, faults, manifest size - real size, fault counter the grid must show)
    let cases: &[(&str, &[&str], i64, &str)] = &[
        ("corrupt", &["--corrupt-byte=1000"], 0, "corrupt"),
        // Content-Length 5000 bytes more than the body that follows.
        ("short", &["--wrong-length=+5000"], 0, "wrong_length"),
        // Content-Length 5000 bytes less than the body that follows.
        ("long", &["--wrong-length=-5000"], 0, "wrong_length"),
        // The manifest says 10 000 bytes fewer than the hub sends.
        ("oversized", &[], -10_000, ""),
    ];
    if !require_root(t) {
        return;
    }
    for (name, faults, size_delta, counter) in cases {
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
        let size = payload.len() as i64 + size_delta;
        if *size_delta != 0 {
            a["size"] = json!(size);
            a["sha256"] = json!(sha256_hex(&payload[..size as usize]));
        }
        let want_sha = a["sha256"].as_str().unwrap().to_string();
        write_manifest(&grid, vec![a]);
        let root = sysroot(&lab, &grid, "node");
        let run = boot_with(&lab, &root, "");
        assert_exit(&run, 1, &grid);
        assert!(
            !root.join("next-root/payload.bin").exists(),
            "{name}: a bad file was installed\n{}",
            run.describe()
        );
        let cache = files_under(&root.join("run/zos-netboot/cache"));
        assert!(
            cache.is_empty(),
            "{name}: a bad file sits in the cache: {cache:?}"
        );
        assert_no_leftovers(&root);
        let state = state_of(&lab, &root);
        let err = fetch_error(&state, &run);
        let needle = if *name == "corrupt" {
            // Both digests, so a farmer can tell a corrupt mirror from a stale manifest.
            assert!(err.contains(&want_sha), "{name}: {err:?} lacks {want_sha}");
            "SHA-256 mismatch".to_string()
        } else {
            format!("expected {size} bytes")
        };
        assert!(
            err.contains(&needle) && err.contains("payload"),
            "{name}: error {err:?} lacks {needle:?} or the artifact's name"
        );
        assert_says(&run, "fetch failed:");
        assert_eq!(
            state["registration"],
            Value::Null,
            "{name}: no registration after a failed fetch"
        );
        if !counter.is_empty() {
            let seen = grid.state();
            assert!(
                num(&seen["counters"]["faults"][counter]) >= 1,
                "{name}: the grid never applied the fault: {}",
                pretty(&seen)
            );
        }
    }
}

/// Failures that do not go away: a missing manifest or artifact (404) is asked for once; a hub
/// that keeps answering 503 is asked a bounded number of times, and the node's count of tries
/// is the grid's; an invalid manifest fetches nothing. Each ends with exit 1 and a reason.
#[test]
fn persistent_failures_end_in_bounded_tries_with_a_reason() {
    let t = "fetch_persistent";
    let Some((lab, _dns, grid)) = grid_lab(t, &["--fault-path=/zos/broken/*", "--fail-5xx=1000"])
    else {
        return;
    };
    let ok_motd = motd_artifact(&grid);
    let broken = artifact_at(
        &grid,
        "/zos/broken/payload.bin",
        b"never served",
        json!({"name": "payload", "kind": "file", "dest": "/payload.bin"}),
    );
    write_manifest_at(&grid, "/zos/broken/manifest.json", vec![ok_motd.clone()]);
    write_manifest_at(&grid, "/zos/m503.json", vec![broken]);
    let mut missing = ok_motd.clone();
    missing["url"] = json!("/zos/no-such-file.bin");
    write_manifest_at(&grid, "/zos/m404.json", vec![missing]);
    let mut blake = ok_motd.clone();
    blake["blake2b"] = blake["sha256"].take();
    blake.as_object_mut().unwrap().remove("sha256");
    write_manifest_at(&grid, "/zos/mblake.json", vec![blake]);

    // A manifest that is not there: one request, 404 in the error.
    let root = sysroot(&lab, &grid, "node-404");
    let run = boot_with(
        &lab,
        &root,
        "zos.manifest=https://hub.lab.test/zos/no-such-manifest.json",
    );
    assert_exit(&run, 1, &grid);
    let err = fetch_error(&state_of(&lab, &root), &run);
    assert!(err.contains("404"), "{err}");
    assert_eq!(
        grid.requests("/zos/no-such-manifest.json"),
        1,
        "not retried"
    );

    // A manifest that always gets 503: retried, then given up.
    let root = sysroot(&lab, &grid, "node-m503");
    let started = Instant::now();
    let run = boot_with(
        &lab,
        &root,
        "zos.manifest=https://hub.lab.test/zos/broken/manifest.json",
    );
    assert_exit(&run, 1, &grid);
    let err = fetch_error(&state_of(&lab, &root), &run);
    assert!(err.contains("503"), "{err}");
    let tries = grid.requests("/zos/broken/manifest.json");
    assert!(
        (2..=10).contains(&tries),
        "{tries} manifest requests\n{}",
        run.describe()
    );
    assert!(started.elapsed() < Duration::from_secs(25));

    // An artifact that always gets 503: the node's count of tries is the grid's.
    let root = sysroot(&lab, &grid, "node-a503");
    let run = boot_with(
        &lab,
        &root,
        "zos.manifest=https://hub.lab.test/zos/m503.json",
    );
    assert_exit(&run, 1, &grid);
    let err = fetch_error(&state_of(&lab, &root), &run);
    assert!(err.contains("503") && err.contains("payload"), "{err}");
    let tries = grid.requests("/zos/broken/payload.bin");
    assert!(
        (2..=10).contains(&tries) && err.contains(&format!("gave up after {tries} tries")),
        "the grid saw {tries} requests; the node says {err:?}"
    );
    assert!(!root.join("next-root/payload.bin").exists());
    assert_no_leftovers(&root);

    // An artifact that is not there: one request.
    let root = sysroot(&lab, &grid, "node-a404");
    let run = boot_with(
        &lab,
        &root,
        "zos.manifest=https://hub.lab.test/zos/m404.json",
    );
    assert_exit(&run, 1, &grid);
    let err = fetch_error(&state_of(&lab, &root), &run);
    assert!(err.contains("404") && err.contains("motd"), "{err}");
    assert_eq!(grid.requests("/zos/no-such-file.bin"), 1, "not retried");

    // A manifest whose digest is not SHA-256: refused before anything is fetched.
    let root = sysroot(&lab, &grid, "node-blake");
    let run = boot_with(
        &lab,
        &root,
        "zos.manifest=https://hub.lab.test/zos/mblake.json",
    );
    assert_exit(&run, 1, &grid);
    let err = fetch_error(&state_of(&lab, &root), &run);
    assert!(err.contains("blake2b"), "{err}");
    assert_eq!(grid.requests("/zos/motd"), 0, "{}", pretty(&grid.state()));
    assert!(!root.join("next-root").exists());
    assert_eq!(grid.records(), json!({}));
}

/// Redirects: an artifact moved within the hub (a relative `Location`) is followed and still
/// verified; an https manifest redirected to plain http is refused (its integrity is TLS);
/// a redirect loop ends with a reason; a registrar that moved (307) gets the signed POST, body
/// and all, at its new place.
#[test]
fn redirects_are_followed_within_https_but_never_down_to_http() {
    let t = "fetch_redirects";
    let Some((lab, _dns, grid)) = grid_lab(
        t,
        &[
            "--redirect=/zos/moved.bin=/zos/motd",
            "--redirect=/zos/down.json=http://hub.lab.test/zos/manifest.json",
            "--redirect=/zos/loop1=/zos/loop2",
            "--redirect=/zos/loop2=/zos/loop1",
            "--redirect=307:/api/v1/old=/api/v1/nodes",
        ],
    ) else {
        return;
    };
    let mut moved = motd_artifact(&grid);
    moved["url"] = json!("/zos/moved.bin");
    write_manifest(&grid, vec![moved]);
    let root = sysroot(&lab, &grid, "node-moved");
    let run = boot_with(&lab, &root, "zos.registrar=https://hub.lab.test/api/v1/old");
    assert_exit(&run, 0, &grid);
    assert_eq!(fs::read(root.join("next-root/etc/motd")).unwrap(), MOTD);
    let state = state_of(&lab, &root);
    assert_eq!(state["registration"]["created"], true, "{}", pretty(&state));
    let seen = grid.state();
    for (path, n) in [("/zos/moved.bin", 1), ("/zos/motd", 1), ("/api/v1/old", 1)] {
        assert_eq!(seen["paths"][path], n, "{path}: {}", pretty(&seen));
    }
    assert_eq!(
        seen["counters"]["registration_posts"],
        1,
        "{}",
        pretty(&seen)
    );
    assert_eq!(seen["counters"]["registrations_created"], 1);

    // https → http: refused, and the http manifest is never asked for.
    let root = sysroot(&lab, &grid, "node-down");
    let run = boot_with(
        &lab,
        &root,
        "zos.manifest=https://hub.lab.test/zos/down.json",
    );
    assert_exit(&run, 1, &grid);
    let err = fetch_error(&state_of(&lab, &root), &run);
    assert!(err.contains("refusing to follow https"), "{err}");
    let seen = grid.state();
    assert_eq!(seen["paths"]["/zos/down.json"], 1, "{}", pretty(&seen));
    assert_eq!(
        seen["paths"]["/zos/manifest.json"],
        1,
        "only the first boot's: {}",
        pretty(&seen)
    );

    // A loop: bounded, and not retried as if it were transient.
    let mut looping = motd_artifact(&grid);
    looping["url"] = json!("/zos/loop1");
    write_manifest(&grid, vec![looping]);
    let root = sysroot(&lab, &grid, "node-loop");
    let run = boot_with(&lab, &root, "");
    assert_exit(&run, 1, &grid);
    let err = fetch_error(&state_of(&lab, &root), &run);
    assert!(err.contains("redirects") && err.contains("motd"), "{err}");
    let seen = grid.state();
    let hops = num(&seen["paths"]["/zos/loop1"]) + num(&seen["paths"]["/zos/loop2"]);
    assert!((2..=12).contains(&hops), "{hops} requests in the loop");
    assert!(!root.join("next-root/etc/motd").exists());
    assert_no_leftovers(&root);
}

/// Tarballs that try to write outside the next root, each refused as a whole (not even the
/// good entry lands), with the entry named. Sentinels: a directory outside the sysroot that
/// absolute names and links point at stays as it was.
#[test]
fn tarballs_that_escape_the_next_root_are_refused() {
    let t = "fetch_traversal";
    let Some((lab, _dns, grid)) = grid_lab(t, &[]) else {
        return;
    };
    let outside = lab.path("outside");
    fs::create_dir_all(&outside).unwrap();
    fs::write(outside.join("secret"), "host file").unwrap();
    let out = outside.to_string_lossy().into_owned();
    let ok = json!({"name": "ok.txt", "data": "fine"});
    let cases: Vec<(&str, String, Value)> = vec![
        (
            "dotdot",
            "../escape.txt".into(),
            json!([ok, {"name": "../escape.txt", "data": "out"}]),
        ),
        (
            "deep-dotdot",
            "a/../../outside/escape.txt".into(),
            json!([ok, {"name": "a", "type": "dir"},
                   {"name": "a/../../outside/escape.txt", "data": "out"}]),
        ),
        (
            "absolute",
            format!("{out}/escape.txt"),
            json!([ok, {"name": format!("{out}/escape.txt"), "data": "out"}]),
        ),
        (
            "symlink-up",
            "up".into(),
            json!([ok, {"name": "up", "type": "symlink", "target": "../.."},
                   {"name": "up/escape.txt", "data": "out"}]),
        ),
        // An absolute symlink is fine in a rootfs (it resolves inside the next root after the
        // hand-off), but nothing may be written through it now.
        (
            "symlink-absolute",
            "out/escape.txt".into(),
            json!([ok, {"name": "out", "type": "symlink", "target": out},
                   {"name": "out/escape.txt", "data": "out"}]),
        ),
        (
            "hardlink",
            "h".into(),
            json!([ok, {"name": "h", "type": "link", "target": format!("{out}/secret")}]),
        ),
        // Not an escape, but as bad: a privileged binary from the network.
        (
            "setuid",
            "h".into(),
            json!([ok, {"name": "h", "data": "#!/bin/sh\n", "mode": 0o4755}]),
        ),
    ];
    for (name, entry, entries) in &cases {
        let a = artifact(
            &grid,
            &format!("{name}.tar"),
            &tar_bytes(&lab, &format!("{name}.tar"), "", entries),
            json!({"name": "rootfs", "kind": "rootfs"}),
        );
        write_manifest(&grid, vec![a]);
        let root = sysroot(&lab, &grid, &format!("node-{name}"));
        let run = boot_with(&lab, &root, "");
        assert_exit(&run, 1, &grid);
        let err = fetch_error(&state_of(&lab, &root), &run);
        assert!(
            err.contains("refused entry") && err.contains(&format!("{entry:?}")),
            "{name}: error names the entry {entry:?}: {err:?}\n{}",
            run.describe()
        );
        assert_says(&run, "fetch failed:");
        // All or nothing: not even the good entry is in place, and nothing escaped.
        assert!(!root.join("next-root/ok.txt").exists(), "{name}");
        assert!(!root.join("next-root/h").exists(), "{name}");
        for p in [lab.path("escape.txt"), root.join("escape.txt")] {
            assert!(!p.exists(), "{name}: {} was written", p.display());
        }
        assert_eq!(
            files_under(&outside),
            vec!["secret"],
            "{name}: written outside"
        );
        assert_eq!(fs::read(outside.join("secret")).unwrap(), b"host file");
        assert_no_leftovers(&root);
    }
}

/// One artifact plants a symlink that is legitimate inside the next root (`/etc ->
/// <absolute path>`); the artifacts after it must not write through it: not a `file` with
/// `dest` under it, not a second rootfs with entries under it, not a rootfs whose `dest` is
/// the link. The absolute target is a sentinel directory outside the sysroot.
#[test]
fn later_artifacts_never_write_through_a_symlink_an_earlier_one_planted() {
    let t = "fetch_planted_link";
    let Some((lab, _dns, grid)) = grid_lab(t, &[]) else {
        return;
    };
    let outside = lab.path("outside");
    fs::create_dir_all(&outside).unwrap();
    let out = outside.to_string_lossy().into_owned();
    let planter = artifact(
        &grid,
        "planter.tar",
        &tar_bytes(
            &lab,
            "planter.tar",
            "",
            &json!([{"name": "etc", "type": "symlink", "target": out},
                    {"name": "opt", "type": "symlink", "target": out}]),
        ),
        json!({"name": "base", "kind": "rootfs"}),
    );
    let second = artifact(
        &grid,
        "second.tar",
        &tar_bytes(
            &lab,
            "second.tar",
            "",
            &json!([{"name": "etc", "type": "dir"},
                    {"name": "etc/passwd", "data": "root:x:0:0::/:/bin/sh\n"}]),
        ),
        json!({"name": "overlay", "kind": "rootfs"}),
    );
    let mut at_opt = second.clone();
    at_opt["name"] = json!("opt");
    at_opt["dest"] = json!("/opt");
    let cases: Vec<(&str, Vec<Value>, &str)> = vec![
        ("file", vec![planter.clone(), motd_artifact(&grid)], "motd"),
        ("rootfs", vec![planter.clone(), second], "overlay"),
        ("dest", vec![planter, at_opt], "opt"),
    ];
    for (name, artifacts, failing) in cases {
        write_manifest(&grid, artifacts);
        let root = sysroot(&lab, &grid, &format!("node-{name}"));
        let run = boot_with(&lab, &root, "");
        assert_exit(&run, 1, &grid);
        let err = fetch_error(&state_of(&lab, &root), &run);
        assert!(
            err.starts_with(&format!("{failing}:")) && err.contains("symlink"),
            "{name}: {err:?}\n{}",
            run.describe()
        );
        assert!(
            files_under(&outside).is_empty(),
            "{name}: written through the link: {:?}\n{}",
            files_under(&outside),
            run.describe()
        );
        // The planted link itself is in place (it is legitimate), pointing where it did.
        assert_eq!(
            fs::read_link(root.join("next-root/etc")).unwrap(),
            outside,
            "{name}"
        );
        assert_no_leftovers(&root);
    }
}

/// Modules for another kernel are skipped (never even downloaded); a modules tarball that
/// says it is for this kernel but holds another release is refused, and nothing lands under
/// /lib/modules.
#[test]
fn modules_for_another_kernel_are_skipped_or_refused() {
    let t = "fetch_modules_kernel";
    let Some((lab, _dns, grid)) = grid_lab(t, &[]) else {
        return;
    };
    let rel = release();
    let other = "0.0.1-not-this-kernel";
    let other_tar = tar_bytes(
        &lab,
        "other-modules.tar",
        "",
        &json!([{"name": other, "type": "dir"},
                {"name": format!("{other}/modules.dep"), "data": ""}]),
    );
    let for_other = artifact(
        &grid,
        "other-modules.tar",
        &other_tar,
        json!({"name": "modules-other", "kind": "modules", "kernel": other}),
    );
    write_manifest(&grid, vec![for_other, motd_artifact(&grid)]);
    let root = sysroot(&lab, &grid, "node-skip");
    let run = boot_with(&lab, &root, "");
    assert_exit(&run, 0, &grid);
    assert_says(&run, "skipping modules-other");
    assert_eq!(fs::read(root.join("next-root/etc/motd")).unwrap(), MOTD);
    assert!(!root.join("lib/modules").exists());
    assert_eq!(grid.requests("/zos/other-modules.tar"), 0, "not downloaded");
    let names: Vec<Value> = state_of(&lab, &root)["fetch"]["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("motd")]);

    // Labelled for this kernel, laid out for another.
    let mut lying = artifact(
        &grid,
        "lying-modules.tar",
        &other_tar,
        json!({"name": "modules", "kind": "modules"}),
    );
    lying["kernel"] = json!(rel);
    write_manifest(&grid, vec![lying, motd_artifact(&grid)]);
    let root = sysroot(&lab, &grid, "node-lying");
    let run = boot_with(&lab, &root, "");
    assert_exit(&run, 1, &grid);
    let err = fetch_error(&state_of(&lab, &root), &run);
    assert!(err.contains(other) && err.contains(&rel), "{err}");
    assert!(
        files_under(&root.join("lib")).is_empty(),
        "{:?}",
        files_under(&root.join("lib"))
    );
    assert!(
        !root.join("next-root/etc/motd").exists(),
        "the stage stops at the first failure"
    );
    assert_no_leftovers(&root);
}

#[test]
fn a_failing_registrar_is_retried_until_it_takes_the_node_once() {
    let t = "register_retry";
    let Some((lab, _dns, grid)) = grid_lab(t, &["--registrar-fail=3"]) else {
        return;
    };
    write_manifest(&grid, vec![motd_artifact(&grid)]);
    let root = sysroot(&lab, &grid, "node");
    let run = boot(&lab, &root, "");
    assert_exit(&run, 0, &grid);
    let state = state_of(&lab, &root);
    let reg = &state["registration"];
    assert_eq!(reg["attempts"], 4, "3 × 503, then 201: {}", pretty(reg));
    assert_eq!(reg["created"], true);
    assert_eq!(reg["registrations"], 1);
    assert_eq!(reg["error"], Value::Null);
    let records = grid.records();
    assert_eq!(
        records.as_object().unwrap().len(),
        1,
        "{}",
        pretty(&records)
    );
    let id = reg["node_id"].as_str().unwrap();
    assert_eq!(id.len(), 64, "{id}");
    assert_eq!(records[id]["registrations"], 1, "registered exactly once");
    assert_eq!(
        run.all_output().matches("registration attempt").count(),
        3,
        "{}",
        run.describe()
    );
    assert_says(&run, &format!("registered as {id}"));
    let c = &grid.state()["counters"];
    assert_eq!(c["registration_posts"], 4, "{c}");
    assert_eq!(c["faults"]["registrar_fail"], 3, "{c}");
    assert_eq!(c["registrations_created"], 1, "{c}");
    assert_eq!(c["registrations_updated"], 0, "{c}");
    assert_eq!(c["registrations_rejected"], json!({}), "{c}");
    // Without zos.identity= the seed is new, and handed over for the full OS to keep.
    let handed = fs::read_to_string(root.join("run/zos-netboot/identity.seed")).unwrap();
    assert_eq!(handed.trim().len(), 64, "{handed:?}");
    assert!(handed.ends_with('\n'));
}

#[test]
fn a_refusal_from_the_registrar_is_not_retried_blindly() {
    let t = "register_404";
    let Some((lab, _dns, grid)) = grid_lab(t, &[]) else {
        return;
    };
    write_manifest(&grid, vec![motd_artifact(&grid)]);
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
    // Retrying would cost at least the first backoff (500 ms ± 50 %).
    assert!(num(&reg["ms"]) < 2000, "{}", pretty(reg));
    let err = reg["error"].as_str().unwrap();
    assert!(
        err.contains("404") && err.contains("zos.registrar"),
        "{err}"
    );
    assert_says(&run, "registration failed:");
    assert_eq!(
        grid.requests("/api/v1/no-such-endpoint"),
        1,
        "one POST, not retried"
    );
    assert_eq!(grid.records(), json!({}));
    // The artifacts were still installed: the registration comes after.
    assert_eq!(fs::read(root.join("next-root/etc/motd")).unwrap(), MOTD);
}

/// The registrar's replay guard: its clock is an hour ahead, so the node's `sent_unix` looks
/// stale. A 401 is final (one POST), and the node says to check the clock.
#[test]
fn a_registrar_that_finds_the_clock_off_is_not_retried_and_says_so() {
    let t = "register_clock";
    let Some((lab, _dns, grid)) = grid_lab(t, &["--clock-offset=3600"]) else {
        return;
    };
    let root = sysroot(&lab, &grid, "node");
    let run = boot(&lab, &root, "zos.fetch=none");
    assert_exit(&run, 1, &grid);
    let reg = &state_of(&lab, &root)["registration"];
    assert_eq!(reg["attempts"], 1, "{}", pretty(reg));
    let err = reg["error"].as_str().unwrap_or_default();
    assert!(err.contains("401") && err.contains("clock"), "{err:?}");
    let c = &grid.state()["counters"];
    assert_eq!(c["registration_posts"], 1, "{c}");
    assert_eq!(c["registrations_rejected"], json!({"401": 1}), "{c}");
    assert_eq!(grid.records(), json!({}));
}

/// A registrar that accepts the connection and says nothing for longer than the TLS
/// handshake timeout (10 s): that attempt is given up, the next one (a new connection)
/// registers the node, once; the whole run stays under 25 s.
#[test]
fn a_registrar_that_never_answers_is_given_up_on_and_tried_again() {
    let t = "register_stall";
    let Some((lab, _dns, grid)) = grid_lab(t, &["--stall-accept=14", "--stall-count=1"]) else {
        return;
    };
    let root = sysroot(&lab, &grid, "node");
    // zos.fetch=none: the registration's connection is the first, the stalled one.
    let run = boot(&lab, &root, "zos.fetch=none");
    assert_exit(&run, 0, &grid);
    let reg = &state_of(&lab, &root)["registration"];
    assert_eq!(reg["attempts"], 2, "{}\n{}", pretty(reg), run.describe());
    assert_eq!(reg["created"], true, "{}", pretty(reg));
    assert!(
        num(&reg["ms"]) >= 2000,
        "the silent attempt was not waited for: {}",
        pretty(reg)
    );
    assert_says(&run, "registration attempt 1 failed");
    assert!(
        run.elapsed < Duration::from_secs(25),
        "took {:?}\n{}",
        run.elapsed,
        run.describe()
    );
    let seen = grid.state();
    assert_eq!(seen["counters"]["faults"]["stall"], 1, "{}", pretty(&seen));
    assert_eq!(
        seen["counters"]["registration_posts"],
        1,
        "the stalled connection never delivered a POST: {}",
        pretty(&seen)
    );
    let id = reg["node_id"].as_str().unwrap();
    assert_eq!(grid.records()[id]["registrations"], 1);
}

/// The clock: an SNTP server from DHCP option 42 (the grid's, its clock an hour ahead) is
/// asked, and the step it implies is reported but, outside PID 1, not applied. A server that
/// answers with a kiss-o'-death is not believed: the hub's HTTP `Date` decides instead.
#[test]
fn the_clock_comes_from_the_leases_ntp_server_else_from_the_hubs_date() {
    let t = "fetch_clock";
    let option42 = format!("--dhcp-option=42,{HUB_V4}");
    let cases: &[(&str, &[&str])] = &[
        ("sntp", &["--ntp-offset=3600"]),
        ("kiss", &["--ntp-offset=3600", "--ntp-stratum=0"]),
    ];
    for (name, faults) in cases {
        let Some((lab, _dns, grid)) = grid_lab_with(&format!("{t}_{name}"), faults, &[&option42])
        else {
            return;
        };
        write_manifest(&grid, vec![motd_artifact(&grid)]);
        let root = sysroot(&lab, &grid, "node");
        let before = unix_now();
        let run = boot_with(&lab, &root, "");
        // The hub's certificate is checked against this machine's clock (not stepped): fine.
        assert_exit(&run, 0, &grid);
        assert!(
            unix_now() - before < 30,
            "{name}: the host's clock was stepped?"
        );
        let state = state_of(&lab, &root);
        assert_eq!(
            state["ntp"],
            json!([HUB_V4]),
            "{name}: option 42 in the state"
        );
        let clock = &state["fetch"]["clock"];
        assert_eq!(clock["applied"], false, "{name}: {}", pretty(clock));
        let step = clock["step_ms"].as_i64().unwrap();
        let seen = grid.state();
        assert!(
            num(&seen["counters"]["ntp_requests"]) >= 1,
            "{name}: the NTP server was not asked: {}",
            pretty(&seen)
        );
        if *name == "sntp" {
            assert_eq!(
                clock["source"],
                format!("sntp {HUB_V4}"),
                "{}",
                pretty(clock)
            );
            assert!(
                (3_598_000..=3_602_000).contains(&step),
                "an hour ahead, not {step} ms"
            );
            assert_says(&run, &format!("clock: sntp {HUB_V4} says"));
            assert_says(&run, "not PID 1: the clock is left alone");
        } else {
            assert_eq!(
                clock["source"],
                format!("http-date {MANIFEST}"),
                "{}",
                pretty(clock)
            );
            assert!(
                step.abs() < 2000,
                "the hub's Date is now, not {step} ms off"
            );
            assert_says(&run, "RATE");
        }
    }
}

/// `zos.identity=` files: 32 raw bytes give the same node as the 64-hex form; a file that is
/// not a seed (all zeros, too short, not hex) or is missing stops the registration with the
/// file named, is left exactly as it was, and no other identity is handed over or registered.
#[test]
fn identity_files_are_used_as_they_are_or_refused_untouched() {
    let t = "register_identity";
    let Some((lab, _dns, grid)) = grid_lab(t, &[]) else {
        return;
    };
    let root = sysroot(&lab, &grid, "node-raw");
    fs::write(root.join("etc/zos/seed"), unhex(SEED)).unwrap();
    let run = boot(&lab, &root, "zos.fetch=none zos.identity=/etc/zos/seed");
    assert_exit(&run, 0, &grid);
    assert_says(&run, &format!("registered as {NODE_ID}"));
    assert_eq!(
        fs::read_to_string(root.join("run/zos-netboot/identity.seed")).unwrap(),
        format!("{SEED}\n")
    );
    assert_eq!(fs::read(root.join("etc/zos/seed")).unwrap(), unhex(SEED));
    let state = state_of(&lab, &root);
    assert_eq!(state["fetch"]["skipped"], "zos.fetch=none");
    assert_eq!(state["fetch"]["artifacts"], json!([]));

    let bad: Vec<(&str, Option<Vec<u8>>)> = vec![
        ("zeros", Some(vec![0u8; 32])),
        ("short", Some(unhex(SEED)[..31].to_vec())),
        ("nothex", Some(format!("{}zz\n", &SEED[..62]).into_bytes())),
        ("missing", None),
    ];
    for (name, content) in bad {
        let root = sysroot(&lab, &grid, &format!("node-{name}"));
        // Missing: in a directory that is not there (the disk not mounted). A missing file in
        // a directory that is there is created (a_replayed_registration_is_refused).
        let rel = match content {
            Some(_) => "etc/zos/seed",
            None => "var/lib/zos/seed",
        };
        let seed = root.join(rel);
        if let Some(c) = &content {
            fs::write(&seed, c).unwrap();
        }
        let run = boot(&lab, &root, &format!("zos.fetch=none zos.identity=/{rel}"));
        assert_exit(&run, 1, &grid);
        let reg = &state_of(&lab, &root)["registration"];
        let err = reg["error"].as_str().unwrap_or_default();
        assert!(
            err.contains(&format!("zos.identity={}", seed.display())),
            "{name}: the error names the file: {err:?}\n{}",
            run.describe()
        );
        if content.is_some() {
            assert!(err.contains("not replacing it"), "{name}: {err:?}");
        }
        assert_eq!(reg["node_id"], Value::Null, "{name}: {}", pretty(reg));
        assert_says(&run, "registration failed:");
        assert_eq!(
            fs::read(&seed).ok(),
            content,
            "{name}: the file was changed"
        );
        assert!(
            !root.join("run/zos-netboot/identity.seed").exists(),
            "{name}: another identity handed over"
        );
    }
    let seen = grid.state();
    assert_eq!(
        seen["counters"]["registration_posts"],
        1,
        "only the good seed registered: {}",
        pretty(&seen)
    );
    assert_eq!(
        seen["records"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        vec![NODE_ID]
    );
}

/// The command line decides what runs: `zos.fetch=none` fetches nothing and still registers;
/// without `zos.manifest=` the manifest is `<zos.hub>/zos/<runmode>/<version>/manifest.json`;
/// without `zos.registrar=` there is no registration (said so, `null` in the state, the
/// identity still handed over); without
/// `--sysroot` (not PID 1) neither stage runs and the grid sees no request at all.
#[test]
fn the_command_line_decides_what_is_fetched_and_whether_to_register() {
    let t = "fetch_cmdline";
    let Some((lab, _dns, grid)) = grid_lab(t, &[]) else {
        return;
    };
    let motd = artifact_at(
        &grid,
        "/zos/motd",
        MOTD,
        json!({"name": "motd", "kind": "file", "dest": "/etc/motd"}),
    );
    write_manifest_at(&grid, "/zos/test/v3.1/manifest.json", vec![motd]);

    // zos.fetch=none: nothing asked of the hub, still registered.
    let root = sysroot(&lab, &grid, "node-nofetch");
    let run = boot(&lab, &root, "zos.fetch=none");
    assert_exit(&run, 0, &grid);
    assert_says(&run, "fetch: skipped (zos.fetch=none)");
    let state = state_of(&lab, &root);
    assert_eq!(state["fetch"]["skipped"], "zos.fetch=none");
    assert_eq!(state["fetch"]["error"], Value::Null);
    assert_eq!(state["registration"]["created"], true);
    assert!(!root.join("next-root").exists());
    let seen = grid.state();
    assert_eq!(seen["paths"], json!({}), "{}", pretty(&seen));
    assert_eq!(seen["counters"]["registration_posts"], 1);

    // The default manifest URL, and no registrar.
    let root = sysroot(&lab, &grid, "node-default");
    let cl = format!(
        "zos.iface=eth0 zos.probe=none zos.hub=https://{HUB_NAME}/ zos.ca=/etc/zos/ca.pem \
         runmode=test version=v3.1"
    );
    let run = boot_args(&lab, &["--sysroot", &root.to_string_lossy()], &cl);
    assert_exit(&run, 0, &grid);
    let url = format!("https://{HUB_NAME}/zos/test/v3.1/manifest.json");
    assert_says(&run, &format!("manifest {url}: 1 artifacts"));
    assert_says(&run, "registration: skipped");
    let state = state_of(&lab, &root);
    assert_eq!(state["fetch"]["manifest"], url);
    assert_eq!(state["registration"], Value::Null, "{}", pretty(&state));
    assert_eq!(fs::read(root.join("next-root/etc/motd")).unwrap(), MOTD);
    // The full OS gets the node's identity even when nothing registered it.
    let seed = root.join("run/zos-netboot/identity.seed");
    assert_eq!(
        fs::metadata(&seed)
            .map(|m| m.permissions().mode() & 0o777)
            .ok(),
        Some(0o600),
        "identity handed over without a registrar"
    );
    assert_eq!(grid.state()["counters"]["registration_posts"], 1);

    // No --sysroot, not PID 1: this machine's files are not the node's. The manifest URL is
    // one the grid does not have, so even a broken skip could install nothing.
    let before = grid.state();
    let nosys = lab.path("nosys");
    fs::create_dir_all(&nosys).unwrap();
    let state_file = nosys.join("state.json");
    let run = boot_args(
        &lab,
        &["--state", &state_file.to_string_lossy()],
        &cmdline(&format!(
            "zos.manifest=https://{HUB_NAME}/zos/absent.json zos.registrar={REGISTRAR}"
        )),
    );
    assert_eq!(run.code(), Some(0), "{}", run.describe());
    assert_says(&run, "fetch: skipped (not PID 1 and no --sysroot");
    assert_says(&run, "registration: skipped (not PID 1 and no --sysroot");
    let state = lab.read_state(&state_file);
    assert!(
        state["fetch"]["skipped"]
            .as_str()
            .is_some_and(|s| s.contains("--sysroot")),
        "{}",
        pretty(&state["fetch"])
    );
    assert_eq!(state["registration"], Value::Null);
    let after = grid.state();
    assert_eq!(after["paths"], before["paths"], "the grid was asked");
    assert_eq!(
        num(&after["counters"]["connections"]),
        num(&before["counters"]["connections"]) + 1,
        "the node connected to the grid (only the harness's state query may have)"
    );
    let mut written = files_under(&nosys);
    written.retain(|f| !f.starts_with("leases/"));
    assert_eq!(written, vec!["state.json"], "only the state and leases");
}

#[test]
fn a_hub_certificate_from_another_ca_is_refused_and_plain_http_works() {
    let t = "fetch_wrong_ca";
    let Some((lab, _dns, grid)) = grid_lab(t, &[]) else {
        return;
    };
    write_manifest(&grid, vec![motd_artifact(&grid)]);
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
    let err = fetch_error(&state_of(&lab, &root), &run);
    assert!(
        err.contains("not signed by a trusted CA"),
        "{err:?}\n{}",
        run.describe()
    );
    assert!(!root.join("next-root").exists());
    let seen = grid.state();
    assert!(
        num(&seen["counters"]["tls_failures"]) >= 1,
        "the grid saw the handshake fail: {}",
        pretty(&seen)
    );
    assert_eq!(seen["paths"], json!({}), "no request got through");
    assert_eq!(
        grid.records(),
        json!({}),
        "no registration after a failed fetch"
    );

    // No CA at all (no zos.ca=, no bundle in the sysroot): an https manifest is refused
    // before any connection.
    let root = lab.path("node-noca");
    fs::create_dir_all(&root).unwrap();
    let before = num(&grid.state()["counters"]["connections"]);
    let run = boot_args(
        &lab,
        &["--sysroot", &root.to_string_lossy()],
        &format!("zos.iface=eth0 zos.probe=none zos.manifest={MANIFEST}"),
    );
    assert_exit(&run, 1, &grid);
    let err = fetch_error(&state_of(&lab, &root), &run);
    assert!(err.contains("no CA certificates"), "{err:?}");
    assert_eq!(
        num(&grid.state()["counters"]["connections"]),
        before + 1,
        "only the harness's state query connected"
    );

    // Plain HTTP: nothing vouches for an unsigned manifest (issue 17 point 1), refused.
    let mut by_ip = motd_artifact(&grid);
    by_ip["name"] = json!("motd2");
    by_ip["dest"] = json!("/etc/motd2");
    by_ip["url"] = json!(format!("http://{HUB_V4}/zos/motd"));
    write_manifest(&grid, vec![motd_artifact(&grid), by_ip]);
    let http_manifest = "zos.manifest=http://hub.lab.test/zos/manifest.json";
    let root = sysroot(&lab, &grid, "node-http-unsigned");
    let run = boot_with(&lab, &root, http_manifest);
    assert_exit(&run, 1, &grid);
    let err = fetch_error(&state_of(&lab, &root), &run);
    assert!(err.contains("plain http and is not signed"), "{err:?}");
    assert!(!root.join("next-root/etc/motd").exists());

    // Signed (with the binary's own operator tools) by a key the node trusts: taken, and an
    // artifact URL that is an IP literal on another scheme than the manifest's is fine (the
    // integrity is the signed manifest's sha256).
    let (key, public, id) = signing_key(&lab, "hub-key");
    let manifest = grid.root.join("zos/manifest.json");
    run_ok(&[
        BIN,
        "sign-manifest",
        "--key",
        &key,
        &manifest.to_string_lossy(),
    ]);
    let trusted = format!("{http_manifest} zos.manifest_key={public}");
    let root = sysroot(&lab, &grid, "node-http");
    let run = boot_with(&lab, &root, &trusted);
    assert_exit(&run, 0, &grid);
    assert_eq!(fs::read(root.join("next-root/etc/motd")).unwrap(), MOTD);
    assert_eq!(fs::read(root.join("next-root/etc/motd2")).unwrap(), MOTD);
    assert_eq!(state_of(&lab, &root)["fetch"]["manifest_key"], json!(id));
    assert!(
        run.all_output()
            .contains(&format!("manifest signed by key {id}")),
        "{}",
        run.describe()
    );

    // Signed by a key the node does not trust, or altered after signing: refused.
    let (other, _, other_id) = signing_key(&lab, "stranger-key");
    run_ok(&[
        BIN,
        "sign-manifest",
        "--key",
        &other,
        &manifest.to_string_lossy(),
    ]);
    let root = sysroot(&lab, &grid, "node-http-stranger");
    let run = boot_with(&lab, &root, &trusted);
    assert_exit(&run, 1, &grid);
    let err = fetch_error(&state_of(&lab, &root), &run);
    assert!(
        err.contains(&format!(
            "signed by key {other_id}, which this image does not trust"
        )),
        "{err:?}"
    );
    run_ok(&[
        BIN,
        "sign-manifest",
        "--key",
        &key,
        &manifest.to_string_lossy(),
    ]);
    let mut text = fs::read_to_string(&manifest).unwrap();
    text.push(' ');
    fs::write(&manifest, text).unwrap();
    let root = sysroot(&lab, &grid, "node-http-altered");
    let run = boot_with(&lab, &root, &trusted);
    assert_exit(&run, 1, &grid);
    let err = fetch_error(&state_of(&lab, &root), &run);
    assert!(err.contains("does not match the manifest"), "{err:?}");
    assert!(!root.join("next-root/etc/motd").exists());
}

/// A manifest signing key made with `zos-netboot manifest-keygen`: (seed file, public key hex,
/// key id).
fn signing_key(lab: &Lab, name: &str) -> (String, String, String) {
    let file = lab.path(name).to_string_lossy().into_owned();
    let out = run_ok(&[BIN, "manifest-keygen", &file]);
    let id = out
        .split_whitespace()
        .nth(1)
        .expect("key id in manifest-keygen's output")
        .to_string();
    let public = out
        .lines()
        .last()
        .and_then(|l| l.split_whitespace().next())
        .expect("public key line")
        .to_string();
    (file, public, id)
}

/// The hub reachable over IPv6 only (IPv4 to 443 rejected at the router): the probes prefer
/// IPv6, and the manifest, the artifacts and the registration all go over IPv6.
#[test]
fn over_ipv6_when_ipv4_cannot_reach_the_hub() {
    let t = "fetch_ipv6";
    if !require_root(t)
        || !require_tool_says(t, "radvd", "--version", "Version")
        || !require_tool(t, "nft", "--version")
    {
        return;
    }
    let Some((lab, _dns, grid)) = grid_lab(t, &[]) else {
        return;
    };
    lab.router_addr("r0", "2001:db8:61::1/64");
    let _radvd = lab.radvd(
        "r0",
        &format!(
            "\tprefix 2001:db8:61::/64 {{ AdvOnLink on; AdvAutonomous on; }};\n\
             \tRDNSS {DNS_V6} {{ }};\n"
        ),
    );
    lab.reject_tcp(Family::V4, 443);
    write_manifest(&grid, standard_artifacts(&lab, &grid));
    let root = sysroot(&lab, &grid, "node");
    let resolv = lab.path("resolv.conf").to_string_lossy().into_owned();
    let run = lab.run_node(
        &[
            "boot",
            "--no-handoff",
            "--wait-ipv6",
            "5",
            "--resolv",
            &resolv,
            "--sysroot",
            &root.to_string_lossy(),
            "--cmdline",
            &format!(
                "zos.iface=eth0 zos.probe=https://{HUB_NAME}/ zos.manifest={MANIFEST} \
                 zos.ca=/etc/zos/ca.pem zos.registrar={REGISTRAR} runmode=test"
            ),
        ],
        Duration::from_secs(90),
    );
    assert_exit(&run, 0, &grid);
    assert_standard_install(&root);
    let state = state_of(&lab, &root);
    assert_eq!(state["preferred_family"], "ipv6", "{}", pretty(&state));
    for a in state["fetch"]["artifacts"].as_array().unwrap() {
        assert_eq!(a["address"], HUB_V6, "{}", pretty(a));
    }
    assert!(lab.reject_count(Family::V4) > 0, "IPv4 was never tried");
    let id = state["registration"]["node_id"].as_str().unwrap();
    let remote = grid.records()[id]["remote"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        remote.starts_with("2001:db8:61:"),
        "registered from {remote:?}, not the node's SLAAC address"
    );
}

/// POSTs `raw` with `signature` (as node `node_id`) to the grid's registrar over plain http,
/// Host `host`; returns the HTTP status.
fn replay(lab: &Lab, node_id: &str, raw: &str, signature: &str, host: &str) -> u16 {
    const POST: &str = "import sys, urllib.request as u, urllib.error as e\n\
        op = u.build_opener(u.ProxyHandler({}))\n\
        r = u.Request(sys.argv[1], data=sys.argv[2].encode(), method='POST', headers={\n\
          'Content-Type': 'application/json', 'Host': sys.argv[5],\n\
          'X-Zos-Node-Id': sys.argv[3], 'X-Zos-Signature': sys.argv[4]})\n\
        try:\n  print(op.open(r, timeout=10).status)\n\
        except e.HTTPError as x:\n  print(x.code)\n";
    let url = format!("http://{HUB_V4}/api/v1/nodes");
    let out = run_ok(&[
        "timeout",
        "-k",
        "2",
        "20",
        "ip",
        "netns",
        "exec",
        &lab.router,
        PYTHON,
        "-c",
        POST,
        &url,
        raw,
        node_id,
        signature,
        host,
    ]);
    out.trim()
        .parse()
        .unwrap_or_else(|_| panic!("status: {out:?}"))
}

/// Issue 17 point 5: the signature covers the registrar's URL and a nonce. A registration
/// replayed after a newer one is refused (409) and changes nothing; the node's latest body sent
/// again (a retry after a lost answer) changes nothing either; a body signed for another
/// registrar is refused (401). The node keeps its key on its disk (`zos.identity=`, made on the
/// first boot), so both boots are one node.
#[test]
fn a_replayed_registration_is_refused() {
    let t = "register_replay";
    let Some((lab, _dns, grid)) = grid_lab(t, &[]) else {
        return;
    };
    write_manifest(&grid, vec![motd_artifact(&grid)]);
    let root = sysroot(&lab, &grid, "node");
    fs::create_dir_all(root.join("var/lib/zos")).unwrap();
    let disk = "zos.identity=/var/lib/zos/identity.seed";
    let run = boot(&lab, &root, disk);
    assert_exit(&run, 0, &grid);
    assert!(
        root.join("var/lib/zos/identity.seed").exists(),
        "{}",
        run.describe()
    );
    let records = grid.records();
    let (node_id, first) = records
        .as_object()
        .and_then(|m| m.iter().next())
        .map(|(k, v)| (k.clone(), v.clone()))
        .expect("one record");
    let (raw1, sig1) = (str_of(&first["raw"]), str_of(&first["signature"]));
    assert!(
        raw1.contains("\"registrar\":\"https://hub.lab.test/api/v1/nodes\""),
        "{raw1}"
    );
    let run = boot(&lab, &root, disk);
    assert_exit(&run, 0, &grid);
    let second = grid.records()[&node_id].clone();
    assert_eq!(
        second["registrations"],
        2,
        "the same node: {}",
        pretty(&grid.records())
    );
    let (raw2, sig2) = (str_of(&second["raw"]), str_of(&second["signature"]));

    assert_eq!(
        replay(&lab, &node_id, &raw1, &sig1, HUB_NAME),
        409,
        "old body replayed"
    );
    assert_eq!(
        replay(&lab, &node_id, &raw2, &sig2, HUB_NAME),
        200,
        "latest body again"
    );
    assert_eq!(
        replay(&lab, &node_id, &raw2, &sig2, "registrar.elsewhere.test"),
        401,
        "signed for another registrar"
    );
    let now = grid.records()[&node_id].clone();
    assert_eq!(now["registrations"], 2, "nothing changed: {}", pretty(&now));
    assert_eq!(now["raw"], second["raw"]);
}

fn str_of(v: &Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("not a string: {v}"))
        .to_string()
}

/// Issue 17 point 2: a hub answering with a certificate chain this node does not trust, dated
/// 2200, is refused as untrusted ("not signed by a trusted CA"), not as "not valid yet": the
/// latter is what lets PID 1 step its clock forward to the certificate's start (a clock in 2200
/// and every real certificate expired until reboot). Only a chain that verifies at its
/// notBefore may say "not valid yet".
#[test]
fn an_untrusted_certificate_dated_2200_is_not_taken_as_the_time() {
    let t = "fetch_cert_2200";
    let Some((lab, _dns, grid)) = grid_lab(t, &[]) else {
        return;
    };
    // The second grid's CA and certificate, made for 2200 before grid_at would make its own.
    let ca_dir = lab.path(&format!("grid-ca-{HUB2_V4}"));
    run_ok(&[
        PYTHON,
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/grid/grid.py")
            .to_string_lossy(),
        "--make-ca",
        &ca_dir.to_string_lossy(),
        "--names",
        HUB2_V4,
        "--valid-from",
        "2200",
    ]);
    let future = lab.grid_at(HUB2_V4, &[]);
    let root = sysroot(&lab, &grid, "node");
    let run = boot_with(
        &lab,
        &root,
        &format!("zos.manifest=https://{HUB2_V4}/zos/manifest.json"),
    );
    assert_exit(&run, 1, &grid);
    let state = state_of(&lab, &root);
    let err = fetch_error(&state, &run);
    assert!(
        err.contains("not signed by a trusted CA"),
        "{err:?}\n{}",
        run.describe()
    );
    assert!(!err.contains("2200"), "{err:?}");
    assert!(
        !run.all_output().contains("certificate-start"),
        "no clock claim from the certificate\n{}",
        run.describe()
    );
    let clock = &state["fetch"]["clock"];
    assert!(
        clock["step_ms"].as_i64().unwrap_or(0).abs() < 3_600_000,
        "the clock report moved nowhere near 2200: {}",
        pretty(clock)
    );
    drop(future);
}
