//! Temporary files with unguessable names, created with `O_EXCL` (never an existing file or a
//! symlink planted at the name): the half of "write a temp file, rename it into place" that
//! must not follow anything. Used by every atomic write (state files, lease files, resolv.conf,
//! the identity seed); [`crate::fetch::beneath`] does the same inside the next root.
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Names tried before giving up (each collision is a 2^-64 event, or someone planting names).
const TRIES: usize = 16;

/// `.<name>.zos-tmp-<16 hex>`: hidden, and unique per call (not per process: threads, and
/// several nodes of a fleet sharing one state directory in one PID namespace, write at once).
pub fn temp_name(name: &std::ffi::OsStr) -> std::ffi::OsString {
    let mut tmp = std::ffi::OsString::from(".");
    tmp.push(name);
    tmp.push(format!(".zos-tmp-{:016x}", fastrand::u64(..)));
    tmp
}

/// Creates a new, empty file next to `path` (same directory, so a rename onto `path` is
/// atomic), with `O_CREAT | O_EXCL | O_NOFOLLOW` and `mode`. Returns it and its path.
pub fn create_next_to(path: &Path, mode: u32) -> io::Result<(File, PathBuf)> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} names no file", path.display()),
        )
    })?;
    let mut last = None;
    for _ in 0..TRIES {
        let tmp = dir.join(temp_name(name));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
            .open(&tmp)
        {
            Ok(f) => return Ok((f, tmp)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::from(io::ErrorKind::AlreadyExists)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_differ_per_call_and_the_file_is_new() {
        let dir = std::env::temp_dir().join(format!("zos-tempfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let target = dir.join("x.json");
        let (_, a) = create_next_to(&target, 0o600).unwrap();
        let (_, b) = create_next_to(&target, 0o600).unwrap();
        assert_ne!(a, b);
        assert_eq!(a.parent(), Some(dir.as_path()));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
