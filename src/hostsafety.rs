//! Host safety for files: outside PID 1 the binary must not write this machine's own
//! `/etc/resolv.conf` or `/run/zos-netboot` (issue 17, point 6). The network guard
//! (`main.rs`) already refuses the host's network namespace; inside a namespace made by
//! `ip netns add NS`, `/etc/resolv.conf` is the namespace's own only when `/etc/netns/NS/
//! resolv.conf` exists (then `ip netns exec` bind-mounts it over the host's), and `/run` is
//! always the host's. A pure decision ([`host_files_guard`]) and the one fact it needs from
//! the system ([`is_mount_point`]).
use std::path::Path;

/// Where the node's state goes by default (the host's, outside PID 1).
const HOST_STATE_DIR: &str = "/run/zos-netboot";
const HOST_RESOLV: &str = "/etc/resolv.conf";

/// Which of this machine's files a run would write, given where it writes `resolv.conf` and
/// its state, and whether `/etc/resolv.conf` is a mount (a namespace's own file bind-mounted
/// over the host's). Err names them and what to do; Ok for PID 1 (the machine is ours).
pub fn host_files_guard(
    pid1: bool,
    resolv: &Path,
    state: &Path,
    resolv_is_private: bool,
) -> Result<(), String> {
    if pid1 {
        return Ok(());
    }
    let mut host = Vec::new();
    if resolv == Path::new(HOST_RESOLV) && !resolv_is_private {
        host.push(format!(
            "{HOST_RESOLV} (no /etc/netns/<ns>/resolv.conf is mounted over it; or pass --resolv FILE)"
        ));
    }
    if state.starts_with(HOST_STATE_DIR) {
        host.push(format!(
            "{} (pass --state FILE or --sysroot DIR)",
            state.display()
        ));
    }
    if host.is_empty() {
        return Ok(());
    }
    Err(format!(
        "not PID 1, and this run would write this machine's own {}",
        host.join(" and ")
    ))
}

/// Whether `path` is a mount point, from `/proc/self/mountinfo` (its fifth field). Unknown
/// (no /proc) counts as not: the guard then refuses, which is the safe side.
pub fn is_mount_point(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = path.to_string_lossy();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|m| m == want)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hosts_files_are_refused_outside_pid_1() {
        let resolv = Path::new("/etc/resolv.conf");
        let state = Path::new("/run/zos-netboot/state.json");
        let e = host_files_guard(false, resolv, state, false).unwrap_err();
        assert!(
            e.contains("/etc/resolv.conf") && e.contains("/run/zos-netboot"),
            "{e}"
        );
        // A namespace with /etc/netns/NS/resolv.conf: only the state is the host's.
        let e = host_files_guard(false, resolv, state, true).unwrap_err();
        assert!(!e.contains("resolv.conf") && e.contains("--state"), "{e}");
        // Own files: fine.
        let lab = Path::new("/tmp/lab/state.json");
        assert!(host_files_guard(false, resolv, lab, true).is_ok());
        assert!(host_files_guard(false, Path::new("/tmp/lab/resolv.conf"), lab, false).is_ok());
        // PID 1 owns the machine.
        assert!(host_files_guard(true, resolv, state, false).is_ok());
    }

    #[test]
    fn mountinfo_knows_the_root() {
        if Path::new("/proc/self/mountinfo").exists() {
            assert!(is_mount_point(Path::new("/")));
            assert!(!is_mount_point(Path::new("/nonexistent/zos")));
        }
    }
}
