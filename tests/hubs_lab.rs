//! No single hub (issue 8 §4), end to end in network namespaces: `zos-netboot boot --no-handoff
//! --sysroot DIR` with two `zos.hub=` URLs, each a test grid (tests/grid/grid.py) on its own
//! address on the router (`Lab::grid_at`, reached by IP over HTTPS with a CA per hub). The
//! first hub is down, stalled, corrupting or dropping; the node must complete from the second,
//! never install a wrong file, say on the console which hub served what, and record it in the
//! state JSON. What the node claims is checked against what each grid saw. Needs root; skips
//! (with a `SKIP` line) otherwise; `ZOS_LAB_REQUIRED=1` turns skips into failures.
mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const MOTD: &[u8] = b"welcome to a zos node\n";
const LATE: &[u8] = b"fetched after the big one\n";
/// Where the manifest and artifacts are on every hub (runmode=test version=v3).
const DIR: &str = "/zos/test/v3";

fn sha256_hex(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// 200 kB that hash differently at every offset.
fn big() -> Vec<u8> {
    (0..200_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

/// The same release on a hub: motd, big.bin (200 kB), late, in that order, as `file`
/// artifacts with URLs relative to the manifest.
fn publish(root: &Path) {
    let dir = root.join(DIR.trim_start_matches('/'));
    fs::create_dir_all(&dir).unwrap();
    let files: [(&str, &str, Vec<u8>); 3] = [
        ("motd", "/etc/motd", MOTD.to_vec()),
        ("big", "/var/lib/zos/big.bin", big()),
        ("late", "/etc/late", LATE.to_vec()),
    ];
    let mut artifacts = Vec::new();
    for (name, dest, bytes) in files {
        let file = format!("{name}.bin");
        fs::write(dir.join(&file), &bytes).unwrap();
        artifacts.push(
            json!({"name": name, "kind": "file", "dest": dest, "url": file,
                              "size": bytes.len(), "sha256": sha256_hex(&bytes)}),
        );
    }
    let m = json!({"version": 1, "artifacts": artifacts});
    fs::write(dir.join("manifest.json"), m.to_string()).unwrap();
}

/// A lab with one NIC and dnsmasq for the lease; the hubs are started by each test.
fn hub_lab(t: &str) -> Option<(Lab, Dnsmasq)> {
    if !require_root(t) || !require_tool(t, "dnsmasq", "--version") || !require_grid(t) {
        return None;
    }
    let lab = Lab::new(t);
    lab.wire("eth0", "r0", "10.62.0.1/24");
    let dns = lab.dnsmasq(
        "r0",
        &[
            "--dhcp-range=10.62.0.100,10.62.0.200,255.255.255.0,1h",
            "--dhcp-option=3,10.62.0.1",
        ],
    );
    Some((lab, dns))
}

/// A node's filesystem with each hub's CA at /etc/zos/ca-N.pem.
fn sysroot(lab: &Lab, cas: &[&Path]) -> PathBuf {
    let root = lab.path("node");
    fs::create_dir_all(root.join("etc/zos")).unwrap();
    for (n, ca) in cas.iter().enumerate() {
        fs::copy(ca, root.join(format!("etc/zos/ca-{n}.pem"))).unwrap();
    }
    root
}

/// `boot --no-handoff --sysroot ROOT` with `zos.hub=` for each of `hubs`, in that order.
fn boot(lab: &Lab, root: &Path, hubs: &[String], cas: usize) -> Run {
    boot_probing(lab, root, hubs, cas, false)
}

/// [`boot`], probing the hubs (the default) when `probe`; else `zos.probe=none`.
fn boot_probing(lab: &Lab, root: &Path, hubs: &[String], cas: usize, probe: bool) -> Run {
    let mut cmdline = "zos.iface=eth0 runmode=test version=v3 farmer_id=7".to_string();
    if !probe {
        cmdline.push_str(" zos.probe=none");
    }
    for h in hubs {
        cmdline.push_str(&format!(" zos.hub={h}"));
    }
    for n in 0..cas {
        cmdline.push_str(&format!(" zos.ca=/etc/zos/ca-{n}.pem"));
    }
    let resolv = lab.path("resolv.conf").to_string_lossy().into_owned();
    let root = root.to_string_lossy().into_owned();
    lab.run_node(
        &[
            "boot",
            "--no-handoff",
            "--wait-ipv6",
            "0",
            "--resolv",
            &resolv,
            "--sysroot",
            &root,
            "--cmdline",
            &cmdline,
        ],
        Duration::from_secs(90),
    )
}

fn state_of(lab: &Lab, root: &Path) -> Value {
    lab.read_state(&root.join("run/zos-netboot/state.json"))
}

fn assert_says(run: &Run, needle: &str) {
    assert!(
        run.all_output().contains(needle),
        "console lacks {needle:?}\n{}",
        run.describe()
    );
}

/// Exit 0 and the three files in the next root, byte for byte; no part file anywhere.
fn assert_completed(run: &Run, root: &Path, hubs: &[&HubGrid]) {
    let describe = || {
        let mut s = run.describe();
        for h in hubs {
            s.push('\n');
            s.push_str(&h.describe());
        }
        s
    };
    assert_eq!(run.code(), Some(0), "expected exit 0\n{}", describe());
    let next = root.join("next-root");
    assert_eq!(fs::read(next.join("etc/motd")).unwrap(), MOTD);
    assert!(
        fs::read(next.join("var/lib/zos/big.bin")).unwrap() == big(),
        "big.bin differs from the published file"
    );
    assert_eq!(fs::read(next.join("etc/late")).unwrap(), LATE);
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            assert!(
                !name.ends_with(".part") && !name.contains(".zos-tmp"),
                "leftover {}",
                e.path().display()
            );
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            }
        }
    }
}

/// `fetch.artifacts[]` by name.
fn artifact<'a>(state: &'a Value, name: &str) -> &'a Value {
    state["fetch"]["artifacts"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["name"] == name))
        .unwrap_or_else(|| panic!("no artifact {name}: {}", pretty(&state["fetch"])))
}

/// `fetch.hubs[]` by URL.
fn hub<'a>(state: &'a Value, url: &str) -> &'a Value {
    state["fetch"]["hubs"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["url"] == url))
        .unwrap_or_else(|| panic!("no hub {url}: {}", pretty(&state["fetch"])))
}

/// The first hub's address answers connections with a reset (nothing listens there): the
/// probes (every hub, by default) find the second one, so the node is online; it moves on to
/// the second hub at once, fetches the manifest and every artifact there, and says and
/// records so.
#[test]
fn a_first_hub_that_refuses_connections_leaves_it_all_to_the_second() {
    let t = "hubs_down";
    let Some((lab, _dns)) = hub_lab(t) else {
        return;
    };
    lab.router_addr("lo", &format!("{HUB2_V4}/32"));
    let down = format!("https://{HUB2_V4}/");
    let b = lab.grid_at(HUB3_V4, &[]);
    publish(&b.root);
    let root = sysroot(&lab, &[&b.ca]);
    let run = boot_probing(&lab, &root, &[down.clone(), b.url()], 1, true);
    assert_completed(&run, &root, &[&b]);
    assert_says(&run, &format!("fetch: hubs {down}, {}", b.url()));
    assert_says(
        &run,
        &format!(
            "manifest {}zos/test/v3/manifest.json: 3 artifacts (from hub {})",
            b.url(),
            b.url()
        ),
    );
    assert_says(&run, "fetched big (200000 bytes, sha256 verified)");
    assert_says(&run, &format!("from hub {} ({HUB3_V4})", b.url()));
    let state = state_of(&lab, &root);
    let probes: Vec<(String, bool)> = state["probes"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|p| p["family"] == "ipv4")
                .map(|p| (p["url"].as_str().unwrap_or("").to_string(), p["ok"] == true))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        probes,
        vec![(down.clone(), false), (b.url(), true)],
        "both hubs probed over IPv4: {}",
        pretty(&state["probes"])
    );
    assert_eq!(state["ipv4"]["reachable"], true, "one hub is enough");
    assert_eq!(
        state["fetch"]["manifest_hub"],
        b.url(),
        "{}",
        pretty(&state)
    );
    for name in ["motd", "big", "late"] {
        let a = artifact(&state, name);
        assert_eq!(a["served_by"], b.url(), "{}", pretty(a));
        assert_eq!(a["sources"], json!([b.url()]), "{}", pretty(a));
    }
    let h = hub(&state, &down);
    assert_eq!(h["status"], "failing", "{}", pretty(h));
    assert_eq!(
        h["failures"],
        1,
        "tried once, then left alone: {}",
        pretty(h)
    );
    let hb = hub(&state, &b.url());
    assert_eq!(
        (hb["status"].clone(), hb["served"].clone()),
        (json!("ok"), json!(4))
    );
    assert_eq!(b.requests(&format!("{DIR}/manifest.json")), 1);
    assert_eq!(b.requests(&format!("{DIR}/big.bin")), 1);
    assert!(
        run.elapsed < Duration::from_secs(20),
        "a refused connection costs no timeout: took {:?}\n{}",
        run.elapsed,
        run.describe()
    );
}

/// The first hub accepts connections and then says nothing for 40 s: one TLS handshake
/// timeout (10 s) for the manifest, then the second hub serves everything; the stalled hub is
/// not tried first again, so the boot pays the timeout once, not once per artifact.
#[test]
fn a_stalled_first_hub_costs_one_timeout_then_the_second_serves_everything() {
    let t = "hubs_stall";
    let Some((lab, _dns)) = hub_lab(t) else {
        return;
    };
    let a = lab.grid_at(HUB2_V4, &["--stall-accept=40"]);
    let b = lab.grid_at(HUB3_V4, &[]);
    publish(&a.root);
    publish(&b.root);
    let root = sysroot(&lab, &[&a.ca, &b.ca]);
    let run = boot(&lab, &root, &[a.url(), b.url()], 2);
    assert_completed(&run, &root, &[&a, &b]);
    assert_says(
        &run,
        &format!("trying {}zos/test/v3/manifest.json", b.url()),
    );
    assert_says(&run, &format!("(from hub {})", b.url()));
    let state = state_of(&lab, &root);
    for name in ["motd", "big", "late"] {
        assert_eq!(artifact(&state, name)["served_by"], b.url());
    }
    let ha = hub(&state, &a.url());
    assert_eq!(
        (
            ha["status"].clone(),
            ha["failures"].clone(),
            ha["served"].clone()
        ),
        (json!("failing"), json!(1), json!(0)),
        "{}",
        pretty(ha)
    );
    assert_eq!(b.requests(&format!("{DIR}/manifest.json")), 1);
    let grid_a = a.daemon.log();
    assert_eq!(
        grid_a.matches("stalling").count(),
        1,
        "the stalled hub was asked once:\n{grid_a}"
    );
    assert!(
        run.elapsed >= Duration::from_secs(9) && run.elapsed < Duration::from_secs(25),
        "one handshake timeout: took {:?}\n{}",
        run.elapsed,
        run.describe()
    );
}

/// The first hub serves big.bin with a byte flipped: the file is discarded (never installed),
/// that hub is marked bad for the rest of the boot (the console says so), big.bin comes from
/// the second hub, and so does `late`, although the first hub would serve it correctly.
#[test]
fn a_hub_serving_a_corrupted_artifact_is_dropped_and_the_file_comes_from_the_second() {
    let t = "hubs_corrupt";
    let Some((lab, _dns)) = hub_lab(t) else {
        return;
    };
    let big_path = format!("{DIR}/big.bin");
    let fault = format!("--fault-path={big_path}");
    let a = lab.grid_at(HUB2_V4, &["--corrupt-byte=123456", &fault]);
    let b = lab.grid_at(HUB3_V4, &[]);
    publish(&a.root);
    publish(&b.root);
    let root = sysroot(&lab, &[&a.ca, &b.ca]);
    let run = boot(&lab, &root, &[a.url(), b.url()], 2);
    assert_completed(&run, &root, &[&a, &b]);
    assert_says(
        &run,
        &format!(
            "hub {} served a wrong SHA-256 for big; not using it again this boot",
            a.url()
        ),
    );
    let state = state_of(&lab, &root);
    assert_eq!(artifact(&state, "motd")["served_by"], a.url());
    assert_eq!(artifact(&state, "big")["served_by"], b.url());
    assert_eq!(artifact(&state, "big")["sources"], json!([b.url()]));
    assert_eq!(artifact(&state, "late")["served_by"], b.url());
    let ha = hub(&state, &a.url());
    assert_eq!(ha["status"], "bad", "{}", pretty(ha));
    assert!(
        ha["bad_reason"].as_str().unwrap_or("").contains("big"),
        "{}",
        pretty(ha)
    );
    let seen_a = a.state();
    assert_eq!(
        seen_a["counters"]["faults"]["corrupt"],
        1,
        "{}",
        pretty(&seen_a)
    );
    assert_eq!(seen_a["paths"][&big_path], 1, "{}", pretty(&seen_a));
    assert!(
        seen_a["paths"][format!("{DIR}/late.bin")].is_null(),
        "a bad hub is not asked again: {}",
        pretty(&seen_a)
    );
    assert_eq!(b.requests(&big_path), 1);
    assert_eq!(b.requests(&format!("{DIR}/motd.bin")), 0);
}

/// The first hub closes the connection 50 000 bytes into big.bin: the download goes on from
/// the second hub with `Range: bytes=50000-` (the SHA-256 is of the whole file, whoever served
/// which bytes), verifies, and both hubs are recorded as sources.
#[test]
fn a_drop_on_the_first_hub_resumes_the_same_bytes_from_the_second() {
    let t = "hubs_resume";
    let Some((lab, _dns)) = hub_lab(t) else {
        return;
    };
    let big_path = format!("{DIR}/big.bin");
    let fault = format!("--fault-path={big_path}");
    let a = lab.grid_at(HUB2_V4, &["--drop-after=50000", &fault]);
    let b = lab.grid_at(HUB3_V4, &[]);
    publish(&a.root);
    publish(&b.root);
    let root = sysroot(&lab, &[&a.ca, &b.ca]);
    let run = boot(&lab, &root, &[a.url(), b.url()], 2);
    assert_completed(&run, &root, &[&a, &b]);
    assert_says(&run, &format!("(bytes from {}, then {})", a.url(), b.url()));
    let state = state_of(&lab, &root);
    let big = artifact(&state, "big");
    let from = big["resumed_from"].as_u64().unwrap_or(0);
    assert!(
        (1..=50_000).contains(&from),
        "resumed where the first hub stopped: {}",
        pretty(big)
    );
    assert_eq!(big["served_by"], b.url(), "{}", pretty(big));
    assert_eq!(big["sources"], json!([a.url(), b.url()]), "{}", pretty(big));
    let ha = hub(&state, &a.url());
    assert_eq!(
        ha["status"],
        "failing",
        "a drop is a failure, not a wrong file: {}",
        pretty(ha)
    );
    assert_eq!(
        artifact(&state, "late")["served_by"],
        b.url(),
        "the hub that served last goes first"
    );
    let log_b = b.daemon.log();
    assert!(
        log_b
            .lines()
            .any(|l| l.contains(&format!("GET {big_path} 206 {}B", 200_000 - from))),
        "the second hub sent the rest as a range:\n{log_b}"
    );
    assert_eq!(a.requests(&big_path), 1);
}

/// The first hub trickles big.bin at 5 kB/s (it would take 40 s): after 10 s below 64 KiB/s
/// the node leaves it and takes the rest from the second hub with a Range request; the file
/// verifies and is installed.
#[test]
fn a_trickling_first_hub_is_left_after_10_s_for_the_rest_from_the_second() {
    let t = "hubs_slow";
    let Some((lab, _dns)) = hub_lab(t) else {
        return;
    };
    let big_path = format!("{DIR}/big.bin");
    let fault = format!("--fault-path={big_path}");
    let a = lab.grid_at(HUB2_V4, &["--slow-body=5000", &fault]);
    let b = lab.grid_at(HUB3_V4, &[]);
    publish(&a.root);
    publish(&b.root);
    let root = sysroot(&lab, &[&a.ca, &b.ca]);
    let run = boot(&lab, &root, &[a.url(), b.url()], 2);
    assert_completed(&run, &root, &[&a, &b]);
    assert_says(&run, &format!("(bytes from {}, then {})", a.url(), b.url()));
    let state = state_of(&lab, &root);
    let big = artifact(&state, "big");
    let from = big["resumed_from"].as_u64().unwrap_or(0);
    assert!(
        (20_000..=100_000).contains(&from),
        "about 10 s at 5 kB/s from the first hub: {}",
        pretty(big)
    );
    assert_eq!(big["sources"], json!([a.url(), b.url()]), "{}", pretty(big));
    let log_b = b.daemon.log();
    assert!(
        log_b
            .lines()
            .any(|l| l.contains(&format!("GET {big_path} 206 {}B", 200_000 - from))),
        "the second hub sent the rest as a range:\n{log_b}"
    );
    assert!(
        run.elapsed >= Duration::from_secs(10) && run.elapsed < Duration::from_secs(30),
        "the slow hub was given 10 s, not 40: took {:?}\n{}",
        run.elapsed,
        run.describe()
    );
}

/// Both hubs serve big.bin with a byte flipped: it is never installed (no part file either),
/// the first hub is marked bad, the second, the last one left, is not (the stage fails and
/// would be retried as PID 1), and the state says why.
#[test]
fn a_wrong_file_on_every_hub_is_never_installed_and_the_last_hub_is_kept() {
    let t = "hubs_all_bad";
    let Some((lab, _dns)) = hub_lab(t) else {
        return;
    };
    let big_path = format!("{DIR}/big.bin");
    let fault = format!("--fault-path={big_path}");
    let a = lab.grid_at(HUB2_V4, &["--corrupt-byte=1000", &fault]);
    let b = lab.grid_at(HUB3_V4, &["--corrupt-byte=199999", &fault]);
    publish(&a.root);
    publish(&b.root);
    let root = sysroot(&lab, &[&a.ca, &b.ca]);
    let run = boot(&lab, &root, &[a.url(), b.url()], 2);
    assert_eq!(run.code(), Some(1), "{}", run.describe());
    let next = root.join("next-root");
    assert_eq!(fs::read(next.join("etc/motd")).unwrap(), MOTD);
    assert!(
        !next.join("var/lib/zos/big.bin").exists(),
        "a wrong file was installed"
    );
    assert!(!next.join("etc/late").exists(), "the stage stopped at big");
    assert_says(
        &run,
        &format!(
            "hub {} served a wrong SHA-256 for big; not using it again this boot",
            a.url()
        ),
    );
    assert!(
        !run.all_output()
            .contains(&format!("hub {} served a wrong", b.url())),
        "the last hub is kept\n{}",
        run.describe()
    );
    let state = state_of(&lab, &root);
    let error = state["fetch"]["error"].as_str().unwrap_or("");
    assert!(
        error.starts_with("big: ") && error.contains("SHA-256 mismatch"),
        "{}",
        pretty(&state["fetch"])
    );
    assert_eq!(hub(&state, &a.url())["status"], "bad");
    assert_eq!(hub(&state, &b.url())["status"], "failing");
    for dir in [root.join("run/zos-netboot/cache"), next] {
        for e in fs::read_dir(&dir).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            assert!(!name.ends_with(".part"), "leftover {}", e.path().display());
        }
    }
    assert_eq!(a.requests(&big_path), 1);
    assert_eq!(b.requests(&big_path), 1);
}
