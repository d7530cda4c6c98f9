//! flists: the hub's descriptions of a file tree whose file contents are content-addressed
//! blocks in a block store.
//!
//! Two formats, both read here without FUSE and without trusting the hub:
//! - v1 `.flist` (0-flist, what ZOS boots today, [`v1`]): a tar.gz holding `flistdb.sqlite3`,
//!   whose `entries` table maps blake2b-128(path) to a Cap'n Proto `Dir` message.
//! - v2 `.fl` (rfs 2, [`v2`]): a bare SQLite database with `inode`, `extra`, `block`, `route`.
//!
//! [`parse`] turns the bytes into a [`Flist`]: a list of [`Entry`]s sorted by path, every name
//! checked (no `/`, `..`, NUL or empty names), no duplicate paths, every parent a directory,
//! file sizes consistent with their block lists. [`block`] decodes and verifies blocks,
//! [`store`] fetches them (0-db, http(s), directory; failover per block; a RAM cache), and
//! [`materialise`] writes a flist into a root directory, all or nothing. The boot's side:
//! [`hub`] (ZOS's hub chain, sans-IO), [`chain`] (its driver: fetch, MD5 check, install) and
//! [`install`] (materialise into the next root; the fetch stage's flist mode).
pub mod block;
pub mod chain;
pub mod cli;
#[allow(clippy::all, clippy::pedantic, unused, missing_docs, unreachable_pub)]
#[rustfmt::skip]
#[doc(hidden)]
pub mod flist_capnp;
pub mod hub;
pub mod install;
pub mod materialise;
pub mod store;
pub mod v1;
pub mod v2;

use std::collections::HashSet;
use std::fmt;
use std::path::Path;

pub use materialise::{materialise, Limits, Progress, Summary};
pub use store::{Cache, Store, Stores};

/// Largest flist file accepted (a v1 tar.gz or a v2 database), and the largest v1 database
/// after decompression.
pub const MAX_FLIST_BYTES: usize = 256 << 20;
/// Most entries one flist may have (funk, a whole distribution, has 38k).
pub const MAX_ENTRIES: usize = 2_000_000;
/// Deepest directory nesting accepted.
pub const MAX_DEPTH: usize = 256;
/// Largest plain block accepted (upstream tools cut files into 512 KiB blocks).
pub const MAX_BLOCK_PLAIN: usize = 4 << 20;
/// Longest name (Linux's NAME_MAX) and link target (PATH_MAX).
pub const NAME_MAX: usize = 255;
pub const PATH_MAX: usize = 4096;

/// What went wrong, with enough context to find it (the path, the table, the key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(pub String);

impl Error {
    pub fn new(msg: impl Into<String>) -> Self {
        Error(msg.into())
    }
    /// The same error with `what` in front: "what: error".
    pub fn context(self, what: impl fmt::Display) -> Self {
        Error(format!("{what}: {}", self.0))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error(format!("SQLite: {e}"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// 0-flist `.flist`: tar.gz of a SQLite key-value store of Cap'n Proto directories.
    V1,
    /// rfs 2 `.fl`: a bare SQLite database.
    V2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    File,
    Dir,
    Link,
    Char,
    Block,
    Fifo,
    Socket,
}

impl Kind {
    /// The name `flist list --json` prints.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::File => "file",
            Kind::Dir => "dir",
            Kind::Link => "link",
            Kind::Char => "char",
            Kind::Block => "block",
            Kind::Fifo => "fifo",
            Kind::Socket => "socket",
        }
    }

    /// From the S_IFMT bits of a mode.
    pub fn from_mode(mode: u32) -> Option<Kind> {
        Some(match mode & 0o170_000 {
            0o040_000 => Kind::Dir,
            0o100_000 => Kind::File,
            0o120_000 => Kind::Link,
            0o020_000 => Kind::Char,
            0o060_000 => Kind::Block,
            0o010_000 => Kind::Fifo,
            0o140_000 => Kind::Socket,
            _ => return None,
        })
    }
}

/// One block of a file: where to fetch it (`id`, the hash of what the store holds) and how to
/// open and check it (`key`, the hash of the plain bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlockRef {
    /// XXTEA(snappy(plain)), key = blake2b-128(plain), id = blake2b-128(stored bytes).
    V1 { id: [u8; 16], key: [u8; 16] },
    /// AES-256-GCM(snappy(plain)), key = blake2b-256(plain), nonce = key[..12],
    /// id = blake2b-256(ciphertext ‖ tag).
    V2 { id: [u8; 32], key: [u8; 32] },
}

impl BlockRef {
    pub fn id(&self) -> &[u8] {
        match self {
            BlockRef::V1 { id, .. } => id,
            BlockRef::V2 { id, .. } => id,
        }
    }
    pub fn id_hex(&self) -> String {
        hex(self.id())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Absolute: "/" for the root, "/etc/hosts".
    pub path: String,
    pub kind: Kind,
    /// Permission bits with setuid/setgid/sticky (mode & 0o7777).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    /// Seconds since the epoch.
    pub mtime: i64,
    /// Device number of char and block devices (Linux encoding).
    pub rdev: u64,
    /// Link target exactly as the flist has it (absolute targets are not rewritten).
    pub target: Option<String>,
    /// File contents in order; empty for an empty file and for everything but files.
    pub blocks: Vec<BlockRef>,
}

impl Entry {
    /// The entry's name (the last path component; "" for the root).
    pub fn name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or("")
    }
    /// Parent path ("/" for top-level entries), None for the root.
    pub fn parent(&self) -> Option<&str> {
        if self.path == "/" {
            return None;
        }
        let cut = self.path.rfind('/').unwrap_or(0);
        Some(if cut == 0 { "/" } else { &self.path[..cut] })
    }
}

/// A v2 route: blocks whose id's first byte is within start..=end live at `url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub start: u8,
    pub end: u8,
    pub url: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flist {
    pub format: Format,
    /// Sorted by path; "/" first; each parent before its children.
    pub entries: Vec<Entry>,
    /// Stores named by the flist itself (v2 `route`, v1 metadata `backend`), as URLs.
    pub routes: Vec<Route>,
}

impl Flist {
    /// Sum of the sizes of the regular files.
    pub fn file_bytes(&self) -> u64 {
        self.entries
            .iter()
            .filter(|e| e.kind == Kind::File)
            .fold(0u64, |a, e| a.saturating_add(e.size))
    }
}

const SQLITE_MAGIC: &[u8] = b"SQLite format 3\0";

/// Parses a flist of either format (told apart by the first bytes).
pub fn parse(bytes: &[u8]) -> Result<Flist, Error> {
    if bytes.len() > MAX_FLIST_BYTES {
        return Err(Error::new(format!(
            "flist is {} bytes, more than the {MAX_FLIST_BYTES} accepted",
            bytes.len()
        )));
    }
    if bytes.starts_with(&[0x1f, 0x8b]) {
        v1::parse(bytes).map_err(|e| e.context("v1 flist (.flist)"))
    } else if bytes.starts_with(SQLITE_MAGIC) {
        v2::parse(bytes).map_err(|e| e.context("v2 flist (.fl)"))
    } else if bytes.is_empty() {
        Err(Error::new("flist is empty"))
    } else {
        Err(Error::new(
            "not a flist: neither gzip (v1 .flist) nor SQLite (v2 .fl) — a truncated or wrong \
             download, or an HTML error page?",
        ))
    }
}

/// Reads and parses a flist file.
pub fn read_file(path: &Path) -> Result<Flist, Error> {
    let meta = std::fs::metadata(path)
        .map_err(|e| Error::new(format!("cannot read {}: {e}", path.display())))?;
    if meta.len() > MAX_FLIST_BYTES as u64 {
        return Err(Error::new(format!(
            "{}: {} bytes, more than the {MAX_FLIST_BYTES} accepted",
            path.display(),
            meta.len()
        )));
    }
    let bytes = std::fs::read(path)
        .map_err(|e| Error::new(format!("cannot read {}: {e}", path.display())))?;
    parse(&bytes).map_err(|e| e.context(path.display()))
}

/// Checks one name from the flist: not empty, not "." or "..", no '/', no NUL, not too long.
pub fn check_name(name: &str) -> Result<(), Error> {
    let why = if name.is_empty() {
        "empty name"
    } else if name == "." || name == ".." {
        "name is . or .."
    } else if name.contains('/') {
        "name contains '/'"
    } else if name.contains('\0') {
        "name contains NUL"
    } else if name.len() > NAME_MAX {
        "name longer than 255 bytes"
    } else {
        return Ok(());
    };
    Err(Error::new(format!("{why}: {name:?}")))
}

/// `parent` + "/" + `name`, for absolute parents ("/" for the root).
pub fn join(parent: &str, name: &str) -> String {
    if parent == "/" {
        format!("/{name}")
    } else {
        format!("{parent}/{name}")
    }
}

/// The checks common to both formats, on the complete list; sorts it by path.
pub fn finish(mut entries: Vec<Entry>) -> Result<Vec<Entry>, Error> {
    if entries.len() > MAX_ENTRIES {
        return Err(Error::new(format!(
            "{} entries, more than the {MAX_ENTRIES} accepted",
            entries.len()
        )));
    }
    entries.sort_by(|a, b| path_order(&a.path, &b.path));
    let mut dirs: HashSet<&str> = HashSet::new();
    let mut seen: HashSet<&str> = HashSet::new();
    for e in &entries {
        if !seen.insert(&e.path) {
            return Err(Error::new(format!("duplicate path {}", e.path)));
        }
        match e.parent() {
            None if e.kind != Kind::Dir => {
                return Err(Error::new("the root is not a directory"));
            }
            None => {}
            Some(p) if !dirs.contains(p) => {
                return Err(Error::new(format!(
                    "{}: parent {p} is missing or not a directory",
                    e.path
                )));
            }
            Some(_) => {}
        }
        if e.kind == Kind::Dir {
            dirs.insert(&e.path);
        }
        check_entry(e)?;
    }
    if entries.first().is_none_or(|e| e.path != "/") {
        return Err(Error::new("no root directory"));
    }
    Ok(entries)
}

/// Sorts so that a directory comes right before its contents: compare by components.
fn path_order(a: &str, b: &str) -> std::cmp::Ordering {
    a.split('/').cmp(b.split('/'))
}

fn check_entry(e: &Entry) -> Result<(), Error> {
    if e.kind != Kind::File && !e.blocks.is_empty() {
        return Err(Error::new(format!(
            "{}: a {} with {} blocks",
            e.path,
            e.kind.as_str(),
            e.blocks.len()
        )));
    }
    if e.kind == Kind::File {
        let n = e.blocks.len() as u64;
        if (e.size == 0) != (n == 0) {
            return Err(Error::new(format!(
                "{}: size {} does not match its {n} blocks",
                e.path, e.size
            )));
        }
        if e.size > n.saturating_mul(MAX_BLOCK_PLAIN as u64) {
            return Err(Error::new(format!(
                "{}: size {} is more than its {n} blocks can hold",
                e.path, e.size
            )));
        }
    }
    match (&e.target, e.kind) {
        (None, Kind::Link) => return Err(Error::new(format!("{}: link without a target", e.path))),
        (Some(t), Kind::Link) => {
            if t.is_empty() || t.contains('\0') || t.len() > PATH_MAX {
                return Err(Error::new(format!("{}: bad link target {t:?}", e.path)));
            }
        }
        (Some(_), _) => {
            return Err(Error::new(format!("{}: a target on a non-link", e.path)));
        }
        (None, _) => {}
    }
    Ok(())
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// One line of `flist list --json`.
pub fn entry_json(e: &Entry) -> String {
    serde_json::json!({
        "path": e.path,
        "type": e.kind.as_str(),
        "mode": format!("{:04o}", e.mode & 0o7777),
        "uid": e.uid,
        "gid": e.gid,
        "size": e.size,
        "target": e.target,
    })
    .to_string()
}

/// One line of `flist list`: like `ls -l`.
pub fn entry_line(e: &Entry) -> String {
    let t = match e.kind {
        Kind::File => '-',
        Kind::Dir => 'd',
        Kind::Link => 'l',
        Kind::Char => 'c',
        Kind::Block => 'b',
        Kind::Fifo => 'p',
        Kind::Socket => 's',
    };
    let mut line = format!(
        "{t}{:04o} {:>5} {:>5} {:>10} {}",
        e.mode & 0o7777,
        e.uid,
        e.gid,
        e.size,
        e.path
    );
    if let Some(target) = &e.target {
        line.push_str(" -> ");
        line.push_str(target);
    }
    line
}

#[cfg(test)]
mod tests;
