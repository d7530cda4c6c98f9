//! PID 1's first duties: the pseudo filesystems, a console, a child reaper, and a way back
//! from a panic that does not take the kernel down with it.
use std::io;
use std::path::Path;

use nix::mount::{mount, MsFlags};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// Mounts that must exist before anything else: (source, target, fstype, flags, data).
const MOUNTS: &[(&str, &str, &str, MsFlags, &str)] = &[
    (
        "proc",
        "/proc",
        "proc",
        MsFlags::MS_NOSUID
            .union(MsFlags::MS_NODEV)
            .union(MsFlags::MS_NOEXEC),
        "",
    ),
    (
        "sysfs",
        "/sys",
        "sysfs",
        MsFlags::MS_NOSUID
            .union(MsFlags::MS_NODEV)
            .union(MsFlags::MS_NOEXEC),
        "",
    ),
    // The kernel does not mount devtmpfs into an initramfs by itself (CONFIG_DEVTMPFS_MOUNT
    // applies to the real root only).
    (
        "devtmpfs",
        "/dev",
        "devtmpfs",
        MsFlags::MS_NOSUID,
        "mode=0755",
    ),
    (
        "tmpfs",
        "/run",
        "tmpfs",
        MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV),
        "mode=0755",
    ),
];

/// Mounts /proc, /sys, /dev and /run (each once: a restart after a panic finds them mounted).
pub fn mount_pseudo_filesystems() -> Vec<String> {
    let mut problems = Vec::new();
    for (source, target, fstype, flags, data) in MOUNTS {
        if is_mounted(target) {
            continue;
        }
        if let Err(e) = std::fs::create_dir_all(target) {
            problems.push(format!("mkdir {target}: {e}"));
            continue;
        }
        let data = if data.is_empty() { None } else { Some(*data) };
        if let Err(e) = mount(Some(*source), *target, Some(*fstype), *flags, data) {
            problems.push(format!("mount {fstype} on {target}: {e}"));
        }
    }
    problems
}

/// True when `path` is a mount point: its device differs from its parent's.
pub fn is_mounted(path: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(me) = std::fs::metadata(path) else {
        return false;
    };
    let parent = Path::new(path).parent().unwrap_or(Path::new("/"));
    std::fs::metadata(parent).is_ok_and(|p| p.dev() != me.dev() || p.ino() == me.ino())
}

/// Makes /dev/console stdin, stdout and stderr. Without a /dev/console node in the archive the
/// kernel starts init with no open descriptors; devtmpfs has one.
pub fn attach_console() -> io::Result<()> {
    let console = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/console")?;
    nix::unistd::dup2_stdin(&console)?;
    nix::unistd::dup2_stdout(&console)?;
    nix::unistd::dup2_stderr(&console)?;
    Ok(())
}

/// Blocks SIGCHLD in this thread (and so in every thread started after it) and starts one
/// thread that waits for it and reaps every exited child: as PID 1 we inherit every orphan.
pub fn start_reaper() -> io::Result<()> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGCHLD);
    set.thread_block().map_err(io::Error::from)?;
    std::thread::Builder::new()
        .name("reaper".into())
        .spawn(move || loop {
            if set.wait().is_err() {
                continue;
            }
            loop {
                match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::StillAlive) | Err(_) => break,
                    Ok(status) => log::debug!("reaped {status:?}"),
                }
            }
        })?;
    Ok(())
}

/// As PID 1 a panic must not end the process (the kernel would panic). With panic=abort the
/// only way on is to start over: print the panic, wait a little, and exec ourselves again.
/// `ZOS_NETBOOT_RESTARTS` counts the restarts so a loop slows down instead of spinning.
pub fn install_panic_restart() {
    std::panic::set_hook(Box::new(|info| {
        eprintln!("zos-netboot: BUG: {info}");
        if std::process::id() != 1 {
            return;
        }
        let restarts: u64 = std::env::var("ZOS_NETBOOT_RESTARTS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let wait = (2u64.saturating_pow(restarts as u32)).min(60);
        eprintln!(
            "zos-netboot: restarting in {wait}s (restart {})",
            restarts + 1
        );
        std::thread::sleep(std::time::Duration::from_secs(wait));
        use std::os::unix::process::CommandExt;
        let err = std::process::Command::new("/proc/self/exe")
            .env("ZOS_NETBOOT_RESTARTS", (restarts + 1).to_string())
            .exec();
        eprintln!("zos-netboot: cannot restart: {err}");
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }));
}

/// Runs a shell on the console for a farmer or an engineer (`zos.debug`), if the image has one,
/// and waits for it. Returns false when there is no shell.
pub fn rescue_shell(reason: &str) -> bool {
    for sh in ["/bin/sh", "/bin/busybox"] {
        if Path::new(sh).exists() {
            eprintln!("zos-netboot: {reason}; starting a rescue shell ({sh}); exit it to retry");
            let mut cmd = std::process::Command::new(sh);
            if sh.ends_with("busybox") {
                cmd.arg("sh");
            }
            match cmd.spawn() {
                // The reaper thread may collect it first; either way it has ended.
                Ok(mut child) => {
                    let _ = child.wait();
                    return true;
                }
                Err(e) => eprintln!("zos-netboot: {sh}: {e}"),
            }
        }
    }
    false
}
