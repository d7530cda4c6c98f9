//! Host safety for files (issue 17, point 6): outside PID 1, in a network namespace whose
//! `/etc/resolv.conf` is not its own (no `/etc/netns/NS/resolv.conf` mounted over it), the binary
//! refuses to write `/etc/resolv.conf` and `/run/zos-netboot`, exit 2, unless --allow-host.
//!
//! Safe even with the guard broken: each run is in a named network namespace made with
//! `ip netns add` (no `/etc/netns/NS/`) and, inside it, a mount namespace (`unshare -m`) with
//! tmpfs over `/run` (the namespace list `/run/netns` moved back on top, for the network
//! guard) and over `/etc`, so a binary that does write finds only those throw-away copies.
//! Needs root; skips with a `SKIP` line otherwise.
mod common;

use common::*;

/// A network namespace without `/etc/netns/NS/`, deleted when dropped.
struct BareNetns(String, std::path::PathBuf);

impl BareNetns {
    fn new() -> BareNetns {
        let name = format!("zhs-{}", std::process::id());
        let dir = std::env::temp_dir().join(format!("zos-hostsafety-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        run_ok(&["timeout", "10", "ip", "netns", "add", &name]);
        BareNetns(name, dir)
    }

    /// `BIN ARGS` in this namespace, with private `/run` and `/etc`.
    fn run(&self, args: &str) -> std::process::Output {
        let keep = self.1.join("netns");
        std::fs::create_dir_all(&keep).unwrap();
        let script = format!(
            "set -e; mount --make-rprivate /; mount --rbind /run/netns {keep}; \
             mount -t tmpfs zos-run /run; mkdir -p /run/netns; mount --move {keep} /run/netns; \
             mount -t tmpfs zos-etc /etc; exec {BIN} {args}",
            keep = keep.display()
        );
        std::process::Command::new("timeout")
            .args(["-k", "5", "30", "ip", "netns", "exec", &self.0])
            .args(["unshare", "--mount", "sh", "-c", &script])
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run ip netns exec")
    }
}

impl Drop for BareNetns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("timeout")
            .args(["10", "ip", "netns", "del", &self.0])
            .status();
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

#[test]
fn the_hosts_resolv_conf_and_run_are_refused_outside_pid_1() {
    let t = "hostsafety_files";
    if !require_root(t) || !require_tool(t, "unshare", "--version") {
        return;
    }
    let ns = BareNetns::new();
    for (args, names) in [
        (
            "net --timeout 1 --wait-ipv6 0 --cmdline zos.probe=none",
            vec!["/etc/resolv.conf", "/run/zos-netboot"],
        ),
        (
            "net --timeout 1 --wait-ipv6 0 --cmdline zos.probe=none --resolv /tmp/zos-hs-resolv",
            vec!["/run/zos-netboot"],
        ),
        ("keep", vec!["/etc/resolv.conf", "/run/zos-netboot"]),
    ] {
        let out = ns.run(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args}: {err}");
        assert!(
            err.contains("refusing to write this machine's files"),
            "{args}: {err}"
        );
        for n in names {
            assert!(err.contains(n), "{args}: names {n}: {err}");
        }
    }
    // Its own state file and resolv.conf: not refused by this guard (the run itself then fails
    // for want of a network, with exit 1, not 2).
    let out = ns.run(
        "net --timeout 1 --wait-ipv6 0 --cmdline zos.probe=none --state /run/lab/state.json \
         --resolv /run/lab/resolv.conf",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("refusing to write this machine's files"),
        "{err}"
    );
}
