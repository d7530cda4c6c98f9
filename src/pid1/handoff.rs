//! Hand-off to the full OS: state and lease under /run (which moves along), then switch_root
//! into the next root and exec its init. The network configuration stays: addresses and routes
//! live in the kernel, and the lease file lets the full OS resume the lease (RENEWING at T1,
//! `zos-netboot keep`).
use std::ffi::OsStr;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};

/// Mounts that move into the new root, in this order.
const MOVED: &[&str] = &["/dev", "/proc", "/sys", "/run"];

#[derive(Debug)]
pub struct HandoffError(pub String);

impl std::fmt::Display for HandoffError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn err(what: impl std::fmt::Display, e: impl std::fmt::Display) -> HandoffError {
    HandoffError(format!("{what}: {e}"))
}

/// The init to run, as a path inside `new_root`; checked to exist and be executable so a typo
/// on the command line is reported instead of ending in a kernel panic.
pub fn check_next_root(new_root: &Path, init: &Path) -> Result<PathBuf, HandoffError> {
    if !new_root.is_dir() {
        return Err(HandoffError(format!(
            "next root {} does not exist (zos.root=)",
            new_root.display()
        )));
    }
    let inside = new_root.join(init.strip_prefix("/").unwrap_or(init));
    let meta = std::fs::metadata(&inside).map_err(|e| {
        err(
            format!("init {} in {}", init.display(), new_root.display()),
            e,
        )
    })?;
    if !meta.is_file() || meta.mode() & 0o111 == 0 {
        return Err(HandoffError(format!(
            "{} is not an executable file (zos.init=)",
            inside.display()
        )));
    }
    Ok(inside)
}

/// switch_root as busybox and systemd do it: bind the new root onto itself (so it is a mount
/// point), move /dev /proc /sys /run into it, empty the initramfs (it is RAM nobody will free
/// otherwise), make the new root `/`, and exec its init. Only as PID 1: anywhere else the
/// deletion step would be a disaster.
pub fn switch_root(new_root: &Path, init: &Path) -> Result<std::convert::Infallible, HandoffError> {
    if std::process::id() != 1 {
        return Err(HandoffError("switch_root is only done as PID 1".into()));
    }
    check_next_root(new_root, init)?;
    let root_dev = std::fs::metadata("/").map_err(|e| err("stat /", e))?.dev();
    let nr = new_root;
    mount(
        Some(nr),
        nr,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| err(format!("bind {}", nr.display()), e))?;
    for m in MOVED {
        let target = nr.join(m.trim_start_matches('/'));
        std::fs::create_dir_all(&target)
            .map_err(|e| err(format!("mkdir {}", target.display()), e))?;
        mount(
            Some(*m),
            &target,
            None::<&str>,
            MsFlags::MS_MOVE,
            None::<&str>,
        )
        .map_err(|e| err(format!("move {m} to {}", target.display()), e))?;
    }
    std::env::set_current_dir(nr).map_err(|e| err("chdir", e))?;
    delete_contents(Path::new("/"), root_dev, nr);
    mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
        .map_err(|e| err("move the new root to /", e))?;
    nix::unistd::chroot(".").map_err(|e| err("chroot", e))?;
    std::env::set_current_dir("/").map_err(|e| err("chdir /", e))?;
    let args = init_args(init);
    if is_zinit(init) {
        prepare_for_zinit();
    }
    use std::os::unix::process::CommandExt;
    // std's exec also resets the signal mask (we block SIGCHLD for the reaper thread).
    let e = std::process::Command::new(init)
        .arg0(init.file_name().unwrap_or(OsStr::new("init")))
        .args(args)
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .exec();
    Err(err(format!("exec {}", init.display()), e))
}

/// ZOS's init is zinit, run as `zinit init` (0-initramfs's `switch_root /mnt/root /sbin/zinit
/// init`).
fn is_zinit(init: &Path) -> bool {
    init.file_name() == Some(OsStr::new("zinit"))
}

/// The arguments the next init is run with: `init` for zinit, none otherwise.
pub fn init_args(init: &Path) -> &'static [&'static str] {
    if is_zinit(init) {
        &["init"]
    } else {
        &[]
    }
}

/// What 0-initramfs's init sets up before zinit, beyond /proc, /sys, /dev and /run (moved
/// here already): devpts on /dev/pts, and the directories zinit's services write to. Best
/// effort: zinit reports what its services miss.
fn prepare_for_zinit() {
    for d in [
        "/dev/pts",
        "/tmp",
        "/mnt",
        "/var/run",
        "/var/log",
        "/etc/zinit",
    ] {
        if let Err(e) = std::fs::create_dir_all(d) {
            log::warn!("mkdir {d}: {e}");
        }
    }
    let _ = std::fs::set_permissions("/tmp", std::os::unix::fs::PermissionsExt::from_mode(0o1777));
    if let Err(e) = mount(
        Some("devpts"),
        "/dev/pts",
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("mode=620,ptmxmode=666"),
    ) {
        log::warn!("mount devpts on /dev/pts: {e}");
    }
}

/// Removes everything on the initramfs (same device as `/`), not crossing into other mounts and
/// not touching `keep` (the new root).
fn delete_contents(dir: &Path, dev: u64, keep: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path == keep {
            continue;
        }
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.dev() != dev {
            continue;
        }
        if meta.is_dir() {
            delete_contents(&path, dev, keep);
            let _ = std::fs::remove_dir(&path);
        } else {
            let _ = std::fs::remove_file(&path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn next_root_problems_are_named() {
        let dir = std::env::temp_dir().join(format!("zos-handoff-{}", std::process::id()));
        let root = dir.join("root");
        std::fs::create_dir_all(root.join("sbin")).unwrap();
        let e = check_next_root(&dir.join("nope"), Path::new("/sbin/init")).unwrap_err();
        assert!(e.0.contains("does not exist"), "{e}");
        let e = check_next_root(&root, Path::new("/sbin/init")).unwrap_err();
        assert!(e.0.contains("/sbin/init"), "{e}");
        let init = root.join("sbin/init");
        std::fs::write(&init, "#!/bin/sh\n").unwrap();
        let e = check_next_root(&root, Path::new("/sbin/init")).unwrap_err();
        assert!(e.0.contains("not an executable"), "{e}");
        std::fs::set_permissions(&init, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(
            check_next_root(&root, Path::new("/sbin/init")).unwrap(),
            init
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn zinit_is_run_as_zinit_init() {
        assert_eq!(init_args(Path::new("/sbin/zinit")), ["init"]);
        assert!(init_args(Path::new("/sbin/init")).is_empty());
        assert!(init_args(Path::new("/sbin/zinit-not")).is_empty());
    }

    #[test]
    fn switch_root_refuses_outside_pid_1() {
        let e = switch_root(Path::new("/nonexistent"), Path::new("/sbin/init")).unwrap_err();
        assert!(e.0.contains("PID 1"));
    }

    #[test]
    fn delete_contents_keeps_the_new_root_and_other_devices() {
        use std::os::unix::fs::MetadataExt;
        let dir = std::env::temp_dir().join(format!("zos-delete-{}", std::process::id()));
        let keep = dir.join("next-root");
        std::fs::create_dir_all(keep.join("sbin")).unwrap();
        std::fs::create_dir_all(dir.join("lib/modules")).unwrap();
        std::fs::write(dir.join("lib/modules/x.ko"), "x").unwrap();
        std::fs::write(dir.join("init"), "x").unwrap();
        let dev = std::fs::metadata(&dir).unwrap().dev();
        delete_contents(&dir, dev, &keep);
        let left: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from("next-root")]);
        assert!(keep.join("sbin").is_dir());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
