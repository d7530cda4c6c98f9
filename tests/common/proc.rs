//! Process helpers shared by the lab (tests/common) and QEMU (tests/qemu) harnesses: every
//! external command runs under `timeout`, and every process is stopped by its PID.
use std::fs;
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
