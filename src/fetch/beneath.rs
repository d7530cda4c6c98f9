//! Writing beneath a root directory, never outside it: every path is resolved relative to an
//! open directory with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`, so no symlink (one a
//! rootfs tarball planted, or a chain like `a -> .`, `b -> a/../..`), no `..` and no absolute
//! path can take a write out of the root. On kernels without `openat2` (before 5.6: `ENOSYS`)
//! the same is done by walking one component at a time with `O_NOFOLLOW`.
//!
//! Temporary files get a random name and `O_EXCL` ([`crate::tempfile::temp_name`]): nothing
//! planted at a predictable name (`<dest>.zos-tmp-1`) is ever opened.
//!
//! ```no_run
//! # use zos_netboot::fetch::beneath::Root;
//! let root = Root::open("/sysroot".as_ref())?;
//! let mut src = std::fs::File::open("/var/cache/zos/motd")?;
//! root.write_file("/etc/motd".as_ref(), &mut src, 0o644)?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! Paths given to [`Root`] are relative to it; a leading `/` means the root itself (so a
//! manifest's `dest` can be passed as it is). `..` is refused outright.
//!
//! A [`Dir`] is an open directory beneath the root; everything made in it is made by name with
//! a `*at` call relative to its descriptor (`mkdirat`, `symlinkat`, `linkat`, `renameat`,
//! `unlinkat`, `fchownat` with `AT_SYMLINK_NOFOLLOW`), every directory below it is
//! opened with [`open_beneath`], and owners, modes and mtimes are set on open descriptors
//! ([`set_attrs`]). The tarball installer ([`crate::fetch::install`]) and the flist writer work
//! only through these: no write of the fetch stage into the next root goes by path.
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, openat2, renameat, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fchmod, fstatat, futimens, mkdirat, FileStat, Mode};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};

/// Names tried for a temporary file before giving up.
const TEMP_TRIES: usize = 16;

/// An open directory that writes are kept beneath.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
    /// Tests force the `O_NOFOLLOW` walk to check it does what `openat2` does.
    walk_only: bool,
}

/// A directory opened beneath a [`Root`]; files are created in it by name.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    /// For error messages: the root's path joined with the relative one.
    path: PathBuf,
    /// Inherited from the [`Root`] (tests force the `O_NOFOLLOW` walk).
    walk_only: bool,
}

/// What [`Dir::stat`] found at a name (the name itself, never what a link there points to).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    Symlink,
    /// Device, FIFO, socket.
    Other,
}

/// [`Dir::stat`]'s answer: the kind and the filesystem (to tell a mount point).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub kind: Kind,
    pub dev: u64,
}

impl Stat {
    fn of(st: &FileStat) -> Stat {
        let kind = match st.st_mode & nix::libc::S_IFMT {
            nix::libc::S_IFDIR => Kind::Dir,
            nix::libc::S_IFREG => Kind::File,
            nix::libc::S_IFLNK => Kind::Symlink,
            _ => Kind::Other,
        };
        Stat {
            kind,
            dev: st.st_dev,
        }
    }
}

impl Root {
    /// Opens `path` (which must be a directory; symlinks in `path` itself are followed: it
    /// is ours, not the archive's).
    pub fn open(path: &Path) -> io::Result<Root> {
        let fd = openat(
            nix::fcntl::AT_FDCWD,
            path,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| context(e, "cannot open", path))?;
        Ok(Root {
            fd,
            path: path.to_path_buf(),
            walk_only: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The root itself as a [`Dir`].
    pub fn as_dir(&self) -> io::Result<Dir> {
        Ok(Dir {
            fd: self.fd.try_clone()?,
            path: self.path.clone(),
            walk_only: self.walk_only,
        })
    }

    /// Opens the existing directory `rel`; any symlink or non-directory on the way is an error.
    pub fn dir(&self, rel: &Path) -> io::Result<Dir> {
        self.walk_dirs(rel, false)
    }

    /// Opens the directory `rel`, creating what is missing (0755); any symlink or
    /// non-directory on the way is an error.
    pub fn create_dirs(&self, rel: &Path) -> io::Result<Dir> {
        self.walk_dirs(rel, true)
    }

    /// Writes `rel` from `src`: missing directories created, the data written to a fresh
    /// temporary file in the same directory (random name, `O_EXCL`), `mode` set, synced, then
    /// renamed onto `rel` (a symlink at `rel` is replaced, not followed; a directory there is an
    /// error). Returns the bytes written.
    pub fn write_file(&self, rel: &Path, src: &mut dyn Read, mode: u32) -> io::Result<u64> {
        let parts = parts(rel)?;
        let (name, parents) = parts.split_last().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "an empty path names no file")
        })?;
        let dir = self.walk(parents, true)?;
        dir.write_file(name, src, mode)
    }

    fn walk_dirs(&self, rel: &Path, create: bool) -> io::Result<Dir> {
        self.walk(&parts(rel)?, create)
    }

    fn walk(&self, parts: &[&OsStr], create: bool) -> io::Result<Dir> {
        let mut dir = self.as_dir()?;
        for part in parts {
            let path = dir.path.join(part);
            if create {
                match mkdirat(&dir.fd, *part, Mode::from_bits_truncate(0o755)) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(context(e, "cannot create", &path)),
                }
            }
            let fd = open_beneath(
                &dir.fd,
                Path::new(part),
                OFlag::O_RDONLY | OFlag::O_DIRECTORY,
                0,
                self.walk_only,
            )
            .map_err(|e| {
                context(
                    why_not_dir(&dir.fd, part, e),
                    "cannot open the directory",
                    &path,
                )
            })?;
            dir = Dir {
                fd,
                path,
                walk_only: self.walk_only,
            };
        }
        Ok(dir)
    }
}

impl Dir {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The descriptor, for `*at` calls of callers (and [`set_attrs`]).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    pub fn try_clone(&self) -> io::Result<Dir> {
        Ok(Dir {
            fd: self.fd.try_clone()?,
            path: self.path.clone(),
            walk_only: self.walk_only,
        })
    }

    /// Opens the existing directory `rel` below this one (one or more components); a symlink
    /// or a non-directory anywhere on the way is an error (`ELOOP`, `ENOTDIR`), `..` too.
    pub fn open_dir(&self, rel: &Path) -> io::Result<Dir> {
        let path = self.path.join(rel);
        let fd = open_beneath(
            &self.fd,
            rel,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY,
            0,
            self.walk_only,
        )
        .map_err(|e| {
            let e = match rel.file_name() {
                Some(last) if rel.components().count() == 1 => why_not_dir(&self.fd, last, e),
                _ => e,
            };
            context(e, "cannot open the directory", &path)
        })?;
        Ok(Dir {
            fd,
            path,
            walk_only: self.walk_only,
        })
    }

    /// What `name` is (`lstat`: a symlink is reported as one, not followed); None if nothing.
    pub fn stat(&self, name: &OsStr) -> io::Result<Option<Stat>> {
        one_component(name)?;
        match fstatat(&self.fd, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(Stat::of(&st))),
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(context(e, "cannot look at", &self.path.join(name))),
        }
    }

    /// This directory's own [`Stat`].
    pub fn stat_self(&self) -> io::Result<Stat> {
        nix::sys::stat::fstat(&self.fd)
            .map(|st| Stat::of(&st))
            .map_err(|e| context(e, "cannot look at", &self.path))
    }

    /// Makes the directory `name` (`mkdirat`: fails with `EEXIST` on anything there, a
    /// dangling symlink included).
    pub fn mkdir(&self, name: &OsStr, mode: u32) -> io::Result<()> {
        one_component(name)?;
        mkdirat(&self.fd, name, Mode::from_bits_truncate(mode))
            .map_err(|e| context(e, "cannot create", &self.path.join(name)))
    }

    /// Makes a new directory named `<prefix><16 random hex>` (`mkdirat`, so never one that
    /// exists or a planted link) and opens it. Returns it and its name.
    pub fn create_temp_dir(&self, prefix: &str, mode: u32) -> io::Result<(Dir, OsString)> {
        let name = self.with_temp_name(
            || format!("{prefix}{:016x}", fastrand::u64(..)).into(),
            |n| mkdirat(&self.fd, n, Mode::from_bits_truncate(mode)),
        )?;
        let dir = self.open_dir(Path::new(&name))?;
        Ok((dir, name))
    }

    /// Creates a new, empty file named like `name` (`.<name>.zos-tmp-<random>`) in this
    /// directory with `O_CREAT | O_EXCL | O_NOFOLLOW`. Returns it and its name.
    pub fn create_temp(&self, name: &OsStr, mode: u32) -> io::Result<(File, OsString)> {
        let mut file = None;
        let tmp = self.with_temp_name(
            || temp_for(name),
            |tmp| {
                let fd = open_beneath(
                    &self.fd,
                    Path::new(tmp),
                    OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL,
                    mode,
                    false,
                )?;
                file = Some(File::from(fd));
                Ok(())
            },
        )?;
        let file = file.ok_or_else(|| io::Error::other("no file was created"))?;
        Ok((file, tmp))
    }

    /// Makes a symlink to `target` under a fresh temporary name like `name` (`symlinkat`, which
    /// never replaces anything). Returns the temporary name, for [`Dir::rename`].
    pub fn symlink_temp(&self, target: &OsStr, name: &OsStr) -> io::Result<OsString> {
        self.with_temp_name(|| temp_for(name), |tmp| symlinkat(target, &self.fd, tmp))
    }

    /// Makes a hard link to the file `src_name` of `src` under a fresh temporary name like
    /// `name` here (`linkat` without `AT_SYMLINK_FOLLOW`: a symlink at `src_name` would be
    /// linked itself, never its target). Returns the temporary name.
    pub fn hard_link_temp(
        &self,
        src: &Dir,
        src_name: &OsStr,
        name: &OsStr,
    ) -> io::Result<OsString> {
        one_component(src_name)?;
        self.with_temp_name(
            || temp_for(name),
            |tmp| linkat(&src.fd, src_name, &self.fd, tmp, AtFlags::empty()),
        )
    }

    /// Owner of `name` itself (a symlink's own owner: `AT_SYMLINK_NOFOLLOW`).
    pub fn lchown(&self, name: &OsStr, uid: u32, gid: u32) -> io::Result<()> {
        one_component(name)?;
        fchownat(
            &self.fd,
            name,
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| context(e, "cannot chown", &self.path.join(name)))
    }

    /// The names in this directory (not `.` and `..`), in directory order.
    pub fn names(&self) -> io::Result<Vec<OsString>> {
        let fail = |e| context(e, "cannot list", &self.path);
        let fd = openat(&self.fd, ".", dir_flags(), Mode::empty()).map_err(fail)?;
        let mut stream = nix::dir::Dir::from_fd(fd).map_err(fail)?;
        let mut out = Vec::new();
        for entry in stream.iter() {
            let entry = entry.map_err(fail)?;
            let name = OsStr::from_bytes(entry.file_name().to_bytes());
            if name != "." && name != ".." {
                out.push(name.to_os_string());
            }
        }
        Ok(out)
    }

    /// Renames `from` here onto `to` in `dst` (`renameat`: a file or link at `to` is replaced
    /// atomically and never followed; directories need not be empty to move).
    pub fn rename_to(&self, from: &OsStr, dst: &Dir, to: &OsStr) -> io::Result<()> {
        one_component(from)?;
        one_component(to)?;
        renameat(&self.fd, from, &dst.fd, to)
            .map_err(|e| context(e, "cannot move into place", &dst.path.join(to)))
    }

    /// Removes `name` and, if it is a directory, everything below it; never follows a link
    /// (a symlink is removed itself). Nothing there is not an error.
    pub fn remove_all(&self, name: &OsStr) -> io::Result<()> {
        let Some(st) = self.stat(name)? else {
            return Ok(());
        };
        if st.kind == Kind::Dir {
            let sub = self.open_dir(Path::new(name))?;
            // The archive may have made it read-only; it is ours to empty.
            let _ = fchmod(sub.fd.as_fd(), Mode::from_bits_truncate(0o700));
            for n in sub.names()? {
                sub.remove_all(&n)?;
            }
            drop(sub);
            unlinkat(&self.fd, name, UnlinkatFlags::RemoveDir)
        } else {
            unlinkat(&self.fd, name, UnlinkatFlags::NoRemoveDir)
        }
        .map_err(|e| context(e, "cannot remove", &self.path.join(name)))
    }

    /// Tries fresh names from `make_name(..)` with `create` until one does not exist yet.
    fn with_temp_name(
        &self,
        make_name: impl Fn() -> OsString,
        mut create: impl FnMut(&OsStr) -> Result<(), Errno>,
    ) -> io::Result<OsString> {
        for _ in 0..TEMP_TRIES {
            let tmp = make_name();
            match create(&tmp) {
                Ok(()) => return Ok(tmp),
                Err(Errno::EEXIST) => {}
                Err(e) => return Err(context(e, "cannot create", &self.path.join(&tmp))),
            }
        }
        Err(context(
            Errno::EEXIST,
            "cannot create a temporary name in",
            &self.path,
        ))
    }

    /// Renames `from` onto `to`, both names in this directory.
    pub fn rename(&self, from: &OsStr, to: &OsStr) -> io::Result<()> {
        renameat(&self.fd, from, &self.fd, to)
            .map_err(|e| context(e, "cannot rename onto", &self.path.join(to)))
    }

    /// Removes the file `name` from this directory (not following a symlink: unlink never does).
    pub fn remove(&self, name: &OsStr) -> io::Result<()> {
        unlinkat(&self.fd, name, UnlinkatFlags::NoRemoveDir)
            .map_err(|e| context(e, "cannot remove", &self.path.join(name)))
    }

    /// See [`Root::write_file`]; `name` is one component.
    pub fn write_file(&self, name: &OsStr, src: &mut dyn Read, mode: u32) -> io::Result<u64> {
        one_component(name)?;
        let (mut file, tmp) = self.create_temp(name, 0o600)?;
        let written = (|| {
            let n = io::copy(src, &mut file)?;
            fchmod(file.as_fd(), Mode::from_bits_truncate(mode))?;
            file.sync_all()?;
            drop(file);
            self.rename(&tmp, name)?;
            Ok(n)
        })();
        if written.is_err() {
            let _ = self.remove(&tmp);
        }
        written
    }
}

/// Opens `rel` beneath `dir` with `flags` (+ `O_CLOEXEC | O_NOFOLLOW`): `openat2` with
/// `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`, or where the kernel lacks it (or `walk_only`) a walk
/// opening each component with `O_NOFOLLOW`. A symlink anywhere gives `ELOOP`, a non-directory
/// as a parent `ENOTDIR`, a `..` or an absolute path `EXDEV`.
pub fn open_beneath(
    dir: &impl AsFd,
    rel: &Path,
    flags: OFlag,
    mode: u32,
    walk_only: bool,
) -> Result<OwnedFd, Errno> {
    let flags = flags | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW;
    // An empty path is the directory itself (openat2 would say ENOENT).
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    if !walk_only {
        let how = OpenHow::new()
            .flags(flags)
            .mode(Mode::from_bits_truncate(mode))
            .resolve(
                ResolveFlag::RESOLVE_BENEATH
                    | ResolveFlag::RESOLVE_NO_SYMLINKS
                    | ResolveFlag::RESOLVE_NO_MAGICLINKS,
            );
        match openat2(dir.as_fd(), rel, how) {
            // Before Linux 5.6, or a seccomp filter that does not know the call.
            Err(Errno::ENOSYS) => {}
            result => return result,
        }
    }
    let parts = parts(rel).map_err(|_| Errno::EXDEV)?;
    let Some((last, parents)) = parts.split_last() else {
        return openat(dir.as_fd(), ".", flags, Mode::from_bits_truncate(mode));
    };
    let mut cur: Option<OwnedFd> = None;
    for part in parents {
        let next = match &cur {
            Some(fd) => openat(fd, *part, dir_flags(), Mode::empty())
                .map_err(|e| why_not_dir(fd, part, e))?,
            None => openat(dir.as_fd(), *part, dir_flags(), Mode::empty())
                .map_err(|e| why_not_dir(&dir.as_fd(), part, e))?,
        };
        cur = Some(next);
    }
    let mode = Mode::from_bits_truncate(mode);
    match &cur {
        Some(fd) => openat(fd, *last, flags, mode),
        None => openat(dir.as_fd(), *last, flags, mode),
    }
}

/// A temporary name for `name` ([`crate::tempfile::temp_name`]), without `name` when that would
/// pass NAME_MAX (255 bytes): an archive's 255-byte file name must still get one.
fn temp_for(name: &OsStr) -> OsString {
    if name.len() > 200 {
        crate::tempfile::temp_name(OsStr::new(""))
    } else {
        crate::tempfile::temp_name(name)
    }
}

/// Sets what is given of owner, mode and mtime (seconds) on an open file or directory, in that
/// order (chown clears setuid bits; the mtime last). Access time = mtime.
pub fn set_attrs(
    fd: BorrowedFd<'_>,
    owner: Option<(u32, u32)>,
    mode: Option<u32>,
    mtime: Option<i64>,
) -> io::Result<()> {
    if let Some((u, g)) = owner {
        fchown(fd, Some(Uid::from_raw(u)), Some(Gid::from_raw(g)))?;
    }
    if let Some(mode) = mode {
        fchmod(fd, Mode::from_bits_truncate(mode))?;
    }
    if let Some(t) = mtime {
        let t = TimeSpec::new(t, 0);
        futimens(fd, &t, &t)?;
    }
    Ok(())
}

/// `O_DIRECTORY | O_NOFOLLOW` on a symlink fails with `ENOTDIR`; say `ELOOP` (a symlink is in
/// the way) when that is what `name` is.
fn why_not_dir(dir: &impl AsFd, name: &OsStr, e: Errno) -> Errno {
    if e != Errno::ENOTDIR {
        return e;
    }
    match nix::sys::stat::fstatat(dir, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) if st.st_mode & nix::libc::S_IFMT == nix::libc::S_IFLNK => Errno::ELOOP,
        _ => e,
    }
}

fn dir_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
}

/// The normal components of `rel`; a leading `/` and `.` are skipped, `..` is an error.
fn parts(rel: &Path) -> io::Result<Vec<&OsStr>> {
    let mut out = Vec::new();
    for c in rel.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => out.push(n),
            Component::ParentDir | Component::Prefix(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{}: `..` is not allowed here", rel.display()),
                ))
            }
        }
    }
    Ok(out)
}

fn one_component(name: &OsStr) -> io::Result<()> {
    match parts(Path::new(name))?.as_slice() {
        [one] if *one == name => Ok(()),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{:?} is not a plain file name", name),
        )),
    }
}

/// An errno with what was done to which path, and what a symlink error means here.
fn context(e: Errno, what: &str, path: &Path) -> io::Error {
    let why = match e {
        Errno::ELOOP => "a symlink is in the way (not writing through links)".to_string(),
        Errno::EXDEV => "the path leaves the root".to_string(),
        e => e.desc().to_string(),
    };
    io::Error::new(
        io::Error::from(e).kind(),
        format!("{what} {}: {why}", path.display()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{symlink, PermissionsExt};

    /// `<tmp>/zos-beneath-<name>-<pid>/{root,outside}`, removed when dropped.
    struct Scratch(PathBuf);
    impl Scratch {
        fn new(name: &str) -> Scratch {
            let p = std::env::temp_dir().join(format!("zos-beneath-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&p);
            fs::create_dir_all(p.join("root")).unwrap();
            fs::create_dir_all(p.join("outside")).unwrap();
            Scratch(p)
        }
        fn root(&self) -> PathBuf {
            self.0.join("root")
        }
        fn outside(&self) -> PathBuf {
            self.0.join("outside")
        }
    }
    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn roots(path: &Path) -> [Root; 2] {
        let a = Root::open(path).unwrap();
        let mut b = Root::open(path).unwrap();
        b.walk_only = true;
        [a, b]
    }

    #[test]
    fn writes_a_file_with_its_mode_creating_directories() {
        let s = Scratch::new("write");
        for root in roots(&s.root()) {
            let n = root
                .write_file(Path::new("/etc/zos/motd"), &mut &b"hello\n"[..], 0o640)
                .unwrap();
            assert_eq!(n, 6);
            let p = s.root().join("etc/zos/motd");
            assert_eq!(fs::read_to_string(&p).unwrap(), "hello\n");
            assert_eq!(
                fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                0o640
            );
            let names: Vec<_> = fs::read_dir(s.root().join("etc/zos"))
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(names, vec![OsString::from("motd")], "no temp file left");
        }
    }

    #[test]
    fn a_symlinked_directory_is_never_written_through() {
        let s = Scratch::new("dirlink");
        symlink(s.outside(), s.root().join("etc")).unwrap();
        symlink("..", s.root().join("up")).unwrap();
        for root in roots(&s.root()) {
            for dest in ["/etc/motd", "/up/outside/motd", "/etc/sub/motd"] {
                let e = root
                    .write_file(Path::new(dest), &mut &b"x"[..], 0o644)
                    .unwrap_err();
                assert!(e.to_string().contains("symlink"), "{dest}: {e}");
            }
            assert_eq!(fs::read_dir(s.outside()).unwrap().count(), 0);
        }
    }

    /// The chain from issue 17: each link alone looks harmless, together they climb out.
    #[test]
    fn a_chain_of_symlinks_cannot_lead_out() {
        let s = Scratch::new("chain");
        fs::create_dir(s.root().join("d")).unwrap();
        symlink(".", s.root().join("d/a")).unwrap();
        symlink("a/../..", s.root().join("d/b")).unwrap();
        symlink(".", s.root().join("a")).unwrap();
        symlink("a/../..", s.root().join("b")).unwrap();
        for root in roots(&s.root()) {
            for dest in ["/d/b/outside/x", "/b/outside/x", "/d/a/x", "/a/x"] {
                let e = root
                    .write_file(Path::new(dest), &mut &b"x"[..], 0o644)
                    .unwrap_err();
                assert!(e.to_string().contains("symlink"), "{dest}: {e}");
            }
            assert_eq!(fs::read_dir(s.outside()).unwrap().count(), 0);
        }
    }

    #[test]
    fn dot_dot_and_files_as_parents_are_refused() {
        let s = Scratch::new("dotdot");
        fs::write(s.root().join("file"), "x").unwrap();
        for root in roots(&s.root()) {
            assert!(root
                .write_file(Path::new("../outside/x"), &mut &b"x"[..], 0o644)
                .is_err());
            assert!(root
                .write_file(Path::new("/file/x"), &mut &b"x"[..], 0o644)
                .is_err());
            assert!(root.dir(Path::new("/missing")).is_err());
        }
        assert_eq!(fs::read_dir(s.outside()).unwrap().count(), 0);
    }

    /// A symlink at the destination is replaced (rename does not follow), its target untouched.
    #[test]
    fn a_symlink_at_the_destination_is_replaced_not_followed() {
        let s = Scratch::new("destlink");
        let victim = s.outside().join("victim");
        fs::write(&victim, "precious").unwrap();
        symlink(&victim, s.root().join("motd")).unwrap();
        let root = Root::open(&s.root()).unwrap();
        root.write_file(Path::new("/motd"), &mut &b"new"[..], 0o644)
            .unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
        assert!(!fs::symlink_metadata(s.root().join("motd"))
            .unwrap()
            .is_symlink());
    }

    #[test]
    fn the_walk_refuses_what_openat2_refuses() {
        let s = Scratch::new("walk");
        symlink(s.outside(), s.root().join("l")).unwrap();
        let root = Root::open(&s.root()).unwrap();
        for walk_only in [false, true] {
            let e = open_beneath(
                &root.fd,
                Path::new("l/x"),
                OFlag::O_WRONLY | OFlag::O_CREAT,
                0o644,
                walk_only,
            )
            .unwrap_err();
            assert!(matches!(e, Errno::ELOOP | Errno::ENOTDIR), "{e}");
            let e =
                open_beneath(&root.fd, Path::new("l"), OFlag::O_RDONLY, 0, walk_only).unwrap_err();
            assert_eq!(e, Errno::ELOOP);
        }
    }

    /// The `Dir` operations the tarball installer is built on: each works by name in its
    /// directory and none follows a link, whatever the link points at.
    #[test]
    fn dir_operations_never_follow_links() {
        let s = Scratch::new("dirops");
        let sentinel = s.outside().join("sentinel");
        fs::write(&sentinel, "precious").unwrap();
        for root in roots(&s.root()) {
            let top = root.as_dir().unwrap();
            // The empty path is the directory itself (openat2 alone says ENOENT).
            assert_eq!(
                top.open_dir(Path::new(""))
                    .unwrap()
                    .stat_self()
                    .unwrap()
                    .kind,
                Kind::Dir
            );
            symlink(s.outside(), s.root().join("out")).unwrap();
            // A link where a directory is expected: refused, with the reason.
            let e = top.open_dir(Path::new("out")).unwrap_err();
            assert!(e.to_string().contains("symlink"), "{e}");
            assert_eq!(
                top.stat(OsStr::new("out")).unwrap().unwrap().kind,
                Kind::Symlink
            );
            assert!(
                top.mkdir(OsStr::new("out"), 0o755).is_err(),
                "mkdir never reuses"
            );
            // A fresh directory under a random name, a second one differs.
            let (d1, n1) = top.create_temp_dir(".zos-unpack-t-", 0o700).unwrap();
            let (_, n2) = top.create_temp_dir(".zos-unpack-t-", 0o700).unwrap();
            assert_ne!(n1, n2);
            // A hard link to a symlink links the symlink, not its target.
            let l = d1
                .symlink_temp(s.outside().as_os_str(), OsStr::new("x"))
                .unwrap();
            let h = d1.hard_link_temp(&d1, &l, OsStr::new("y")).unwrap();
            assert_eq!(d1.stat(&h).unwrap().unwrap().kind, Kind::Symlink);
            // Moving between two directories by descriptor.
            d1.rename(&l, OsStr::new("link")).unwrap();
            d1.rename_to(OsStr::new("link"), &top, OsStr::new("moved"))
                .unwrap();
            assert_eq!(fs::read_link(s.root().join("moved")).unwrap(), s.outside());
            let mut names = d1.names().unwrap();
            names.sort();
            assert_eq!(names, vec![h.clone()]);
            // Removing a tree with links to outside in it removes the links only.
            top.remove_all(&n1).unwrap();
            top.remove_all(&n2).unwrap();
            top.remove_all(OsStr::new("out")).unwrap();
            top.remove_all(OsStr::new("moved")).unwrap();
            top.remove_all(OsStr::new("missing")).unwrap();
            assert_eq!(fs::read_dir(s.root()).unwrap().count(), 0);
            assert_eq!(fs::read_to_string(&sentinel).unwrap(), "precious");
        }
    }

    /// A 255-byte name (NAME_MAX) still gets a temporary name: it cannot hold the name itself.
    #[test]
    fn a_name_at_name_max_still_gets_a_temporary_name() {
        let s = Scratch::new("namemax");
        let root = Root::open(&s.root()).unwrap();
        let long = "n".repeat(255);
        root.write_file(Path::new(&long), &mut &b"x"[..], 0o644)
            .unwrap();
        let dir = root.as_dir().unwrap();
        dir.symlink_temp(OsStr::new("t"), OsStr::new(&long))
            .unwrap();
        assert_eq!(fs::read(s.root().join(&long)).unwrap(), b"x");
    }
}
