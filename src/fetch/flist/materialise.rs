//! Writing a flist into a root directory, without FUSE.
//!
//! Everything is first built in a private directory beneath the root (`ROOT/.zos-flist-…`,
//! mode 0700), then moved into place: a flist that fails (a block no store has intact, a size
//! that does not match, a full disk) leaves nothing behind. Before moving, every entry is
//! checked against what is already in the root: a directory merges into an existing directory
//! (several flists make one root), a file or link replaces an existing file or link, anything
//! else (a directory over a file, anything below an existing symlink) is refused before
//! anything moves. Every directory is opened from a directory descriptor by
//! [`crate::fetch::beneath::open_beneath`] (`openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`,
//! or one component at a time with `O_NOFOLLOW`: the same walk as the tarball installer's), and
//! entries are made and moved with `*at` calls relative to those descriptors, so nothing is
//! ever written through a symlink, ours or the root's. The private directory is made by
//! [`Dir::create_temp_dir`] (a random name, `mkdirat`) and removed through the root's
//! descriptor.
//!
//! Files are fetched and written by [`WORKERS`] threads, each block verified before a byte of
//! it is written. A worker takes a run of consecutive files and keeps up to [`PIPELINE_DEPTH`]
//! `GET`s in flight on its 0-db connection (small files are one block each: one round trip per
//! block was most of the time); it reads and decodes one answer at a time into two buffers it
//! reuses. Memory in flight: per worker one stored and one plain block (at most
//! [`super::store::MAX_STORED`] + [`super::MAX_BLOCK_PLAIN`], 1 MiB each with rfs's blocks),
//! whatever the flist's size; the answers owed wait in the kernel's socket buffer. Owners are
//! set when running as root (otherwise skipped, and the summary says so); modes after owners (chown clears setuid bits); mtimes last, children
//! before their directory.
use std::collections::HashSet;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use nix::errno::Errno;
use nix::fcntl::{openat, renameat, OFlag};
use nix::sys::stat::{
    fchmod, fchmodat, fstatat, mkdirat, mknodat, utimensat, FchmodatFlags, Mode, SFlag,
    UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchownat, symlinkat, Gid, Uid};

use super::store::{Cache, Conns, Stores};
use super::{BlockRef, Entry, Error, Flist, Kind};
use crate::fetch::beneath::{open_beneath, Dir, Root};

/// Worker threads (files written at once).
pub const WORKERS: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most bytes of file content the flist may hold (the node's MemAvailable in the boot: the
    /// next root is in RAM).
    pub max_bytes: u64,
}

/// What [`materialise`] tells its caller while it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Bytes of file content written so far, of the total; files done of the total.
    Bytes {
        done: u64,
        total: u64,
        files: u64,
        files_total: u64,
    },
    /// A console line: a bad store, skipped owners or devices.
    Warn(String),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub files: u64,
    pub dirs: u64,
    pub links: u64,
    pub specials: u64,
    pub bytes: u64,
    pub blocks_fetched: u64,
    pub blocks_cached: u64,
    /// Not root: owners were left as they came (the user running this).
    pub chown_skipped: bool,
    /// Not root: char and block devices were not made.
    pub devices_skipped: u64,
}

fn errno(what: impl std::fmt::Display, e: Errno) -> Error {
    Error::new(format!("{what}: {}", e.desc()))
}

/// Opens the directory at `rel` (components below `base`; none: `base` itself), never
/// following a symlink: [`open_beneath`].
fn open_dir(base: &OwnedFd, rel: &[&str]) -> Result<OwnedFd, Errno> {
    let rel: PathBuf = rel.iter().collect();
    open_beneath(base, &rel, OFlag::O_RDONLY | OFlag::O_DIRECTORY, 0, false)
}

/// Path components of an absolute flist path ("/" has none).
fn parts(path: &str) -> Vec<&str> {
    path.split('/').filter(|c| !c.is_empty()).collect()
}

/// Materialises `flist` into `root` (an existing directory). Blocks come from `cache`, else from
/// `stores`. All or nothing: see the module documentation.
pub fn materialise(
    root: &Path,
    flist: &Flist,
    stores: &Stores,
    cache: &Cache,
    limits: &Limits,
    progress: &(dyn Fn(&Progress) + Sync),
) -> Result<Summary, Error> {
    let total = flist.file_bytes();
    if total > limits.max_bytes {
        return Err(Error::new(format!(
            "the flist holds {total} bytes of files, more than the {} bytes this node can hold \
             (MemAvailable); a node with more memory is needed",
            limits.max_bytes
        )));
    }
    let io = |e: std::io::Error| Error::new(e.to_string());
    let root_dir: Dir = Root::open(root).and_then(|r| r.as_dir()).map_err(io)?;
    let (tmp_dir, tmp_name) = root_dir
        .create_temp_dir(&format!(".zos-flist-{}-", std::process::id()), 0o700)
        .map_err(io)?;
    let result = (|| {
        let rootfd = root_dir.fd().try_clone_to_owned().map_err(io)?;
        let tmpfd = tmp_dir.fd().try_clone_to_owned().map_err(io)?;
        let mut summary = build(&tmpfd, flist, stores, cache, total, progress)?;
        check_conflicts(&rootfd, flist).map_err(|e| e.context(root.display()))?;
        move_into_place(&rootfd, &tmpfd, flist, &mut summary)?;
        Ok(summary)
    })();
    // Whatever is left (all of it on failure, the emptied directory on success) goes, through
    // the root's descriptor and never through a link.
    drop(tmp_dir);
    if let Err(e) = root_dir.remove_all(&tmp_name) {
        log::warn!("{e}");
    }
    result
}

/// Builds the whole tree below `tmp`.
fn build(
    tmp: &OwnedFd,
    flist: &Flist,
    stores: &Stores,
    cache: &Cache,
    total: u64,
    progress: &(dyn Fn(&Progress) + Sync),
) -> Result<Summary, Error> {
    let is_root = nix::unistd::geteuid().is_root();
    let mut s = Summary {
        chown_skipped: !is_root,
        ..Summary::default()
    };
    // Directories first (parents before children: the list is sorted), private until the end.
    for e in flist
        .entries
        .iter()
        .filter(|e| e.kind == Kind::Dir && e.path != "/")
    {
        let p = parts(&e.path);
        let (name, parent) = p.split_last().ok_or_else(|| Error::new("empty path"))?;
        let dir = open_dir(tmp, parent).map_err(|err| errno(&e.path, err))?;
        mkdirat(&dir, *name, Mode::from_bits_truncate(0o700)).map_err(|err| errno(&e.path, err))?;
        s.dirs += 1;
    }
    // Links and special files.
    for e in &flist.entries {
        let p = parts(&e.path);
        let Some((name, parent)) = p.split_last() else {
            continue;
        };
        let made = match e.kind {
            Kind::Dir | Kind::File => continue,
            Kind::Link => {
                let dir = open_dir(tmp, parent).map_err(|err| errno(&e.path, err))?;
                let target = e.target.as_deref().unwrap_or_default();
                s.links += 1;
                symlinkat(target, &dir, *name)
            }
            Kind::Char | Kind::Block if !is_root => {
                s.devices_skipped += 1;
                continue;
            }
            Kind::Char | Kind::Block | Kind::Fifo | Kind::Socket => {
                let dir = open_dir(tmp, parent).map_err(|err| errno(&e.path, err))?;
                let kind = match e.kind {
                    Kind::Char => SFlag::S_IFCHR,
                    Kind::Block => SFlag::S_IFBLK,
                    Kind::Fifo => SFlag::S_IFIFO,
                    _ => SFlag::S_IFSOCK,
                };
                s.specials += 1;
                mknodat(
                    &dir,
                    *name,
                    kind,
                    Mode::from_bits_truncate(0o600),
                    e.rdev as _,
                )
            }
        };
        made.map_err(|err| errno(&e.path, err))?;
    }
    if s.devices_skipped > 0 {
        progress(&Progress::Warn(format!(
            "not root: {} char/block devices not made",
            s.devices_skipped
        )));
    }
    write_files(tmp, flist, stores, cache, total, progress, &mut s)?;
    // Owners, then modes, then mtimes; children before parents (reverse of the sorted list).
    for e in flist.entries.iter().rev() {
        if matches!(e.kind, Kind::Char | Kind::Block) && !is_root {
            continue;
        }
        set_attrs(tmp, e, is_root)?;
    }
    Ok(s)
}

/// Owner, mode and mtime of one entry below `base` (the root entry is `base` itself).
fn set_attrs(base: &OwnedFd, e: &Entry, owners: bool) -> Result<(), Error> {
    let p = parts(&e.path);
    let (dir, name) = match p.split_last() {
        Some((name, parent)) => (
            open_dir(base, parent).map_err(|err| errno(&e.path, err))?,
            *name,
        ),
        None => (open_dir(base, &[]).map_err(|err| errno(&e.path, err))?, "."),
    };
    let nofollow = nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW;
    if owners {
        fchownat(
            &dir,
            name,
            Some(Uid::from_raw(e.uid)),
            Some(Gid::from_raw(e.gid)),
            nofollow,
        )
        .map_err(|err| errno(format!("{}: chown", e.path), err))?;
    }
    if e.kind == Kind::Dir {
        // A directory may be one of the root's (merged into): chmod the one opened without
        // following a link, never what a link swapped in points at.
        let fd = open_beneath(
            &dir,
            Path::new(name),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY,
            0,
            false,
        )
        .map_err(|err| errno(format!("{}: chmod", e.path), err))?;
        fchmod(fd.as_fd(), Mode::from_bits_truncate(e.mode & 0o7777))
            .map_err(|err| errno(format!("{}: chmod", e.path), err))?;
    } else if e.kind != Kind::Link {
        // Not a link (we made it, in our private directory): chmod may follow nothing.
        fchmodat(
            &dir,
            name,
            Mode::from_bits_truncate(e.mode & 0o7777),
            FchmodatFlags::FollowSymlink,
        )
        .map_err(|err| errno(format!("{}: chmod", e.path), err))?;
    }
    let t = TimeSpec::new(e.mtime, 0);
    utimensat(&dir, name, &t, &t, UtimensatFlags::NoFollowSymlink)
        .map_err(|err| errno(format!("{}: mtime", e.path), err))?;
    Ok(())
}

/// A worker takes consecutive files until they hold at least this many blocks (or the files
/// run out): the window below slides over their blocks.
const CHUNK_BLOCKS: usize = 128;

fn write_files(
    tmp: &OwnedFd,
    flist: &Flist,
    stores: &Stores,
    cache: &Cache,
    total: u64,
    progress: &(dyn Fn(&Progress) + Sync),
    s: &mut Summary,
) -> Result<(), Error> {
    let files: Vec<&Entry> = flist
        .entries
        .iter()
        .filter(|e| e.kind == Kind::File)
        .collect();
    let next = Mutex::new(0usize);
    let failed = AtomicBool::new(false);
    let written = AtomicU64::new(0);
    let done_files = AtomicU64::new(0);
    let fetched = AtomicU64::new(0);
    let cached = AtomicU64::new(0);
    let first_error: Mutex<Option<Error>> = Mutex::new(None);
    let files_total = files.len() as u64;
    let warn = |m: String| progress(&Progress::Warn(m));
    // The next run of files for one worker: from the shared cursor, at least CHUNK_BLOCKS
    // blocks' worth (or what is left).
    let claim = || -> std::ops::Range<usize> {
        let Ok(mut at) = next.lock() else {
            return 0..0;
        };
        let start = *at;
        let mut blocks = 0;
        while *at < files.len() && blocks < CHUNK_BLOCKS {
            blocks += files[*at].blocks.len().max(1);
            *at += 1;
        }
        start..*at
    };
    std::thread::scope(|scope| {
        for _ in 0..WORKERS.min(files.len().max(1)) {
            scope.spawn(|| {
                let mut conns = Conns::default();
                loop {
                    if failed.load(Ordering::Relaxed) {
                        return;
                    }
                    let run = claim();
                    if run.is_empty() {
                        return;
                    }
                    let run = &files[run];
                    let mut window = Window::new(run);
                    for e in run {
                        let r = write_file(tmp, e, |b, sink| {
                            let got = window.next(stores, cache, &mut conns, b, &warn)?;
                            sink(&got.0)?;
                            let n = got.0.len() as u64;
                            let d = written.fetch_add(n, Ordering::Relaxed) + n;
                            if got.1 {
                                cached.fetch_add(1, Ordering::Relaxed);
                            } else {
                                fetched.fetch_add(1, Ordering::Relaxed);
                            }
                            progress(&Progress::Bytes {
                                done: d,
                                total,
                                files: done_files.load(Ordering::Relaxed),
                                files_total,
                            });
                            conns.recycle(got.0);
                            Ok(())
                        });
                        if let Err(err) = r {
                            failed.store(true, Ordering::Relaxed);
                            if let Ok(mut g) = first_error.lock() {
                                g.get_or_insert(err);
                            }
                            return;
                        }
                        done_files.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    if let Some(e) = first_error.into_inner().ok().flatten() {
        return Err(e);
    }
    s.files = files_total;
    s.bytes = written.load(Ordering::Relaxed);
    s.blocks_fetched = fetched.load(Ordering::Relaxed);
    s.blocks_cached = cached.load(Ordering::Relaxed);
    progress(&Progress::Bytes {
        done: s.bytes,
        total,
        files: files_total,
        files_total,
    });
    Ok(())
}

/// Most GETs one worker has sent to a 0-db store and not read the answer of (pipelining: the
/// store answers in order). Only one answer is read and decoded at a time: what a worker holds
/// is one stored block and its plain bytes; the answers still owed wait in the kernel's socket
/// buffer and the store's output buffer.
pub const PIPELINE_DEPTH: usize = 32;

/// The blocks of one worker's run of files, in the order they are written, with up to
/// [`PIPELINE_DEPTH`] of them asked ahead from their 0-db store.
struct Window<'a> {
    blocks: Vec<&'a BlockRef>,
    /// Next block to send a GET for.
    sent: usize,
    /// Next block to hand out.
    taken: usize,
    /// Per sent block: the store it was asked of ahead (None: asked the plain way when due).
    asked: std::collections::VecDeque<Option<usize>>,
}

impl<'a> Window<'a> {
    fn new(files: &[&'a Entry]) -> Self {
        Window {
            blocks: files.iter().flat_map(|e| e.blocks.iter()).collect(),
            sent: 0,
            taken: 0,
            asked: std::collections::VecDeque::new(),
        }
    }

    /// The verified plain bytes of the next block, `b` (bool: from the cache).
    fn next(
        &mut self,
        stores: &Stores,
        cache: &Cache,
        conns: &mut Conns,
        b: &BlockRef,
        warn: &(dyn Fn(String) + Sync),
    ) -> Result<(std::sync::Arc<Vec<u8>>, bool), Error> {
        while self.sent < self.blocks.len() && self.sent < self.taken + PIPELINE_DEPTH {
            let ahead = self.blocks[self.sent];
            let id = ahead.id();
            let store = match cache.get(id) {
                Some(_) => None,
                None => stores
                    .first_for(conns, id)
                    .filter(|&i| conns.send(stores, i, id)),
            };
            self.asked.push_back(store);
            self.sent += 1;
        }
        let due = self.blocks.get(self.taken).copied();
        self.taken += 1;
        let asked = self.asked.pop_front().flatten();
        if due != Some(b) {
            // Not the block planned (cannot happen: files are written in order); ask plainly.
            return stores.get(conns, cache, b, warn);
        }
        let answered = asked.and_then(|i| conns.reply(i).map(|got| (i, got)));
        stores.get_with(conns, cache, b, warn, answered)
    }
}

/// A block's plain bytes, handed to a file.
type Sink<'a> = dyn FnMut(&[u8]) -> Result<(), Error> + 'a;

/// Writes file `e` below `tmp`: `block(b, sink)` gets each block in turn and gives its plain
/// bytes to `sink`.
fn write_file(
    tmp: &OwnedFd,
    e: &Entry,
    mut block: impl FnMut(&BlockRef, &mut Sink) -> Result<(), Error>,
) -> Result<(), Error> {
    let p = parts(&e.path);
    let (name, parent) = p.split_last().ok_or_else(|| Error::new("empty path"))?;
    let dir = open_dir(tmp, parent).map_err(|err| errno(&e.path, err))?;
    let fd = openat(
        &dir,
        *name,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )
    .map_err(|err| errno(&e.path, err))?;
    let mut file = std::fs::File::from(fd);
    let mut size = 0u64;
    for (i, b) in e.blocks.iter().enumerate() {
        let mut sink = |plain: &[u8]| {
            size += plain.len() as u64;
            if size > e.size {
                return Err(Error::new(format!(
                    "{}: blocks hold more than its size {} (hub error)",
                    e.path, e.size
                )));
            }
            file.write_all(plain)
                .map_err(|err| Error::new(format!("{}: write: {err}", e.path)))
        };
        block(b, &mut sink).map_err(|err| {
            if err.0.starts_with(&e.path) {
                err
            } else {
                err.context(format!("{} block {i}", e.path))
            }
        })?;
    }
    if size != e.size {
        return Err(Error::new(format!(
            "{}: blocks hold {size} bytes, the flist says {} (hub error)",
            e.path, e.size
        )));
    }
    Ok(())
}

/// What is at `rel` below `base`, without following a final symlink; None if nothing.
fn kind_at(base: &OwnedFd, rel: &[&str]) -> Result<Option<SFlag>, Errno> {
    let Some((name, parent)) = rel.split_last() else {
        return Ok(Some(SFlag::S_IFDIR));
    };
    let dir = match open_dir(base, parent) {
        Ok(d) => d,
        Err(Errno::ENOENT) => return Ok(None),
        Err(e) => return Err(e),
    };
    match fstatat(&dir, *name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(SFlag::from_bits_truncate(
            st.st_mode & SFlag::S_IFMT.bits(),
        ))),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Refuses, before anything moves, what would not merge: a directory over a non-directory,
/// a non-directory over a directory, anything below an existing symlink.
fn check_conflicts(rootfd: &OwnedFd, flist: &Flist) -> Result<(), Error> {
    let mut fresh: HashSet<&str> = HashSet::new();
    for e in flist.entries.iter().filter(|e| e.path != "/") {
        // Below a directory that does not exist yet: it moves as a whole, nothing to check.
        if e.parent().is_some_and(|p| fresh.contains(p)) {
            if e.kind == Kind::Dir {
                fresh.insert(&e.path);
            }
            continue;
        }
        let have = kind_at(rootfd, &parts(&e.path))
            .map_err(|err| errno(format!("{}: cannot look at what is there", e.path), err))?;
        match (have, e.kind) {
            (None, Kind::Dir) => {
                fresh.insert(&e.path);
            }
            (None, _) => {}
            (Some(SFlag::S_IFDIR), Kind::Dir) => {}
            (Some(SFlag::S_IFDIR), _) => {
                return Err(Error::new(format!(
                    "{}: a directory is there, the flist has a {}",
                    e.path,
                    e.kind.as_str()
                )))
            }
            (Some(_), Kind::Dir) => {
                return Err(Error::new(format!(
                    "{}: a non-directory (maybe a symlink) is there, the flist has a directory",
                    e.path
                )))
            }
            (Some(_), _) => {}
        }
    }
    Ok(())
}

/// Moves each entry that is new (with its subtree) or replaces a non-directory; existing
/// directories are merged into and then get the flist's owner, mode and mtime.
fn move_into_place(
    rootfd: &OwnedFd,
    tmpfd: &OwnedFd,
    flist: &Flist,
    s: &mut Summary,
) -> Result<(), Error> {
    let mut moved: HashSet<&str> = HashSet::new();
    let mut merged: Vec<&Entry> = Vec::new();
    for e in &flist.entries {
        if e.path == "/" {
            merged.push(e);
            continue;
        }
        if e.parent().is_some_and(|p| moved.contains(p)) {
            moved.insert(&e.path);
            continue;
        }
        let p = parts(&e.path);
        let Some((name, parent)) = p.split_last() else {
            continue;
        };
        if e.kind == Kind::Dir
            && kind_at(rootfd, &p).map_err(|err| errno(&e.path, err))? == Some(SFlag::S_IFDIR)
        {
            merged.push(e);
            continue;
        }
        let from = open_dir(tmpfd, parent).map_err(|err| errno(&e.path, err))?;
        let to = open_dir(rootfd, parent).map_err(|err| errno(&e.path, err))?;
        renameat(from.as_fd(), *name, to.as_fd(), *name)
            .map_err(|err| errno(format!("{}: move into place", e.path), err))?;
        moved.insert(&e.path);
    }
    let _ = s;
    // Merged directories: the flist's attributes, deepest first so mtimes stick.
    let owners = nix::unistd::geteuid().is_root();
    for e in merged.iter().rev() {
        if e.path == "/" {
            continue; // the root directory itself is the caller's
        }
        set_attrs(rootfd, e, owners)?;
    }
    Ok(())
}
