//! The one set of helpers under both test harnesses, the namespace lab (tests/common) and QEMU
//! (tests/qemu): every external command runs under `timeout`, every process is stopped by its
//! PID, namespaces are made with their own `/etc/netns/<ns>/resolv.conf` first and removed with
//! whatever still runs in them, waits poll an event with a bound, and a test that cannot run
//! here says SKIP with its reason (or fails, when its harness's `*_REQUIRED=1` is set).
#![allow(dead_code)]
use std::fs;
use std::io::Write as _;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// Bound on one short command (ip, sysctl, kill, ss …).
pub const CMD_SECS: u64 = 20;

/// Runs `argv` under `timeout -k 2 <secs>`, capturing its output. Never panics on a non-zero
/// exit; panics only if `timeout` itself cannot be started.
pub fn run_cmd(argv: &[&str], secs: u64) -> Output {
    Command::new("timeout")
        .args(["-k", "2", &secs.to_string()])
        .args(argv)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run `timeout ... {}`: {e}", argv.join(" ")))
}

/// Like [`run_cmd`], and panics with the command's stderr unless it exits 0. Returns stdout.
pub fn run_ok(argv: &[&str]) -> String {
    let out = run_cmd(argv, CMD_SECS);
    if !out.status.success() {
        panic!(
            "`{}` failed ({}):\n{}{}",
            argv.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn kill_pid(pid: u32, signal: &str) {
    let _ = run_cmd(&["kill", &format!("-{signal}"), &pid.to_string()], CMD_SECS);
}

/// True while `pid` runs; a zombie still has a /proc entry, with state 'Z'.
pub fn pid_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
            .unwrap_or(true),
        Err(_) => false,
    }
}

/// Stops a child that runs `timeout ... <cmd>`: SIGTERM to `timeout` (it forwards the signal
/// to its process group, and SIGKILLs after its `-k` grace), wait, then SIGKILL; always reaps.
pub fn stop_child(child: &mut Child, grace: Duration) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    kill_pid(child.id(), "TERM");
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Writes straight to fd 2, past libtest's capture, in one write (parallel tests do not
/// interleave).
pub fn say(text: &str) {
    let mut s = text.to_string();
    if !s.ends_with('\n') {
        s.push('\n');
    }
    let _ = std::io::stderr().write_all(s.as_bytes());
}

/// Prints `SKIP <test>: <why>` and returns false, or panics when `required_env` (the harness's
/// `ZOS_LAB_REQUIRED` / `ZOS_QEMU_REQUIRED`) is `1`: CI turns every skip into a failure.
pub fn skip_unless_required(required_env: &str, test: &str, why: &str) -> bool {
    if std::env::var_os(required_env).is_some_and(|v| v == "1") {
        panic!("{test}: cannot run, and {required_env}=1: {why}");
    }
    say(&format!("SKIP {test}: {why}"));
    false
}

/// Polls `f` every 10 ms until it is true (true) or `limit` has passed (false).
pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        sleep(Duration::from_millis(10));
    }
}

/// Creates namespace `ns`: its `/etc/netns/<ns>/resolv.conf` first (so `ip netns exec`
/// bind-mounts it over `/etc/resolv.conf` and nothing in it can write the host's), then the
/// namespace, `lo` up. Panics on failure.
pub fn create_namespace(ns: &str) {
    let etc = Path::new("/etc/netns").join(ns);
    fs::create_dir_all(&etc).unwrap_or_else(|e| panic!("mkdir {}: {e}", etc.display()));
    fs::write(etc.join("resolv.conf"), "")
        .unwrap_or_else(|e| panic!("write {}/resolv.conf: {e}", etc.display()));
    run_ok(&["ip", "netns", "add", ns]);
    run_ok(&["ip", "-n", ns, "link", "set", "lo", "up"]);
}

/// Kills what still runs in `ns` (by PID), deletes it and its `/etc/netns` directory.
pub fn delete_namespace(ns: &str) {
    let out = run_cmd(&["ip", "netns", "pids", ns], CMD_SECS);
    let pids: Vec<u32> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    for &pid in &pids {
        kill_pid(pid, "KILL");
    }
    wait_until(Duration::from_secs(3), || {
        !pids.iter().any(|&p| pid_alive(p))
    });
    let _ = run_cmd(&["ip", "netns", "del", ns], CMD_SECS);
    let _ = fs::remove_dir_all(Path::new("/etc/netns").join(ns));
}

/// Removes namespaces left behind by earlier test processes that died: names
/// `<prefix><pid>-...` (for one of `prefixes`) whose pid no longer exists.
pub fn sweep_stale_namespaces(prefixes: &[&str]) {
    let out = run_cmd(&["ip", "netns", "list"], CMD_SECS);
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(pid) = prefixes
            .iter()
            .find_map(|p| name.strip_prefix(p))
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            say(&format!("lab: removing stale namespace {name}"));
            delete_namespace(name);
        }
    }
}

/// Writes `bytes` to `path` (its parents made) with permission bits `mode`: the trees the
/// flist tests publish.
pub fn write_with_mode(path: &Path, bytes: &[u8], mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, bytes).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// Bytes that differ at every offset, `n` of them, seeded (file contents that cannot be
/// confused with one another or deduplicated by accident).
pub fn noise(n: usize, seed: u32) -> Vec<u8> {
    (0..n as u32)
        .map(|i| (i.wrapping_add(seed).wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}
