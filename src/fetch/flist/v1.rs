//! v1 `.flist` (0-flist): a tar.gz holding `flistdb.sqlite3`.
//!
//! Table `entries(key, value)`: a directory is keyed by the hex blake2b-128 of its path relative
//! to the root ("" for the root) and its value is a Cap'n Proto `Dir` (schema in 0-flist's
//! `flist.capnp`, code in `flist_capnp.rs`): its own metadata and a list of `Inode`s (dir with
//! the key of the subdirectory, file with its blocks, link with its target, special). Owners
//! and modes are `ACI` messages stored under the `aclkey` the directory or inode names.
//! Cap'n Proto pointers are followed by the `capnp` crate, whose traversal and nesting limits
//! stop pointer loops and amplification; out-of-range pointers are its errors. Directory keys
//! are followed once each: a key reached twice is an error (a loop or a shared directory).
use std::collections::{HashMap, HashSet};
use std::io::Read;

use capnp::message::ReaderOptions;
use rusqlite::types::ValueRef;

use super::flist_capnp::{a_c_i as aci, dir, inode, special};
use super::{check_name, finish, hex, join, BlockRef, Entry, Error, Flist, Format, Kind, Route};

/// Name of the database inside the archive.
pub const DB_NAME: &str = "flistdb.sqlite3";
/// Limits handed to the Cap'n Proto reader for one message (a directory of 100k entries is
/// far below them; a message of pointers aimed at one place is stopped by the traversal limit).
pub const TRAVERSAL_LIMIT_WORDS: usize = 64 << 20;
pub const NESTING_LIMIT: i32 = 16;

/// blake2b-128 of `data`, as upstream uses for directory keys and v1 blocks.
pub fn blake2b_128(data: &[u8]) -> [u8; 16] {
    use blake2::digest::consts::U16;
    use blake2::Digest;
    blake2::Blake2b::<U16>::digest(data).into()
}

/// The key of the directory at `rel` ("" for the root, "usr/bin" below it).
pub fn dir_key(rel: &str) -> String {
    hex(&blake2b_128(rel.as_bytes()))
}

/// Unpacks the tar.gz and returns the SQLite database's bytes.
pub fn database(bytes: &[u8]) -> Result<Vec<u8>, Error> {
    let tar = miniz_oxide::inflate::decompress_to_vec_with_limit(
        gzip_payload(bytes)?,
        super::MAX_FLIST_BYTES,
    )
    .map_err(|e| Error::new(format!("gzip: {e} (truncated or corrupt download?)")))?;
    let mut archive = tar::Archive::new(&tar[..]);
    let entries = archive
        .entries()
        .map_err(|e| Error::new(format!("tar: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| Error::new(format!("tar: {e}")))?;
        let path = entry.path().map_err(|e| Error::new(format!("tar: {e}")))?;
        if path.file_name().is_some_and(|n| n == DB_NAME) {
            let mut db = Vec::new();
            entry
                .by_ref()
                .take(super::MAX_FLIST_BYTES as u64)
                .read_to_end(&mut db)
                .map_err(|e| Error::new(format!("tar: {DB_NAME}: {e}")))?;
            return Ok(db);
        }
    }
    Err(Error::new(format!("no {DB_NAME} in the archive")))
}

/// The deflate stream of a gzip member (RFC 1952), header fields skipped.
fn gzip_payload(b: &[u8]) -> Result<&[u8], Error> {
    let short = || Error::new("gzip: header cut short (truncated download?)");
    if b.len() < 18 || b[0] != 0x1f || b[1] != 0x8b || b[2] != 8 {
        return Err(Error::new("gzip: bad header"));
    }
    let flags = b[3];
    let mut at = 10usize;
    if flags & 4 != 0 {
        let n = usize::from(u16::from_le_bytes([b[at], b[at + 1]]));
        at = at.checked_add(2 + n).ok_or_else(short)?;
    }
    for bit in [8u8, 16] {
        if flags & bit != 0 {
            let nul = b
                .get(at..)
                .and_then(|r| r.iter().position(|&c| c == 0))
                .ok_or_else(short)?;
            at += nul + 1;
        }
    }
    if flags & 2 != 0 {
        at += 2;
    }
    b.get(at..).ok_or_else(short)
}

/// Parses a v1 flist from the tar.gz bytes.
pub fn parse(bytes: &[u8]) -> Result<Flist, Error> {
    let db = database(bytes)?;
    let conn = super::v2::open_bytes(&db)?;
    let mut kv: HashMap<String, Vec<u8>> = HashMap::new();
    {
        let mut st = conn
            .prepare("SELECT key, value FROM entries")
            .map_err(|e| Error::from(e).context("table entries"))?;
        let mut q = st.query([])?;
        while let Some(r) = q.next()? {
            let key = match r.get_ref(0)? {
                ValueRef::Text(t) | ValueRef::Blob(t) => String::from_utf8_lossy(t).into_owned(),
                _ => return Err(Error::new("entries: a key that is not text")),
            };
            let value = match r.get_ref(1)? {
                ValueRef::Blob(b) | ValueRef::Text(b) => b.to_vec(),
                _ => {
                    return Err(Error::new(format!(
                        "entries: key {key}: value is not a blob"
                    )))
                }
            };
            kv.insert(key, value);
            if kv.len() > super::MAX_ENTRIES {
                return Err(Error::new("entries: too many rows"));
            }
        }
    }
    let routes = backend(&conn);
    Ok(Flist {
        format: Format::V1,
        entries: finish(walk(&kv)?)?,
        routes,
    })
}

/// The metadata's `backend` ({"host", "port", "namespace", "password"}) as a store URL.
fn backend(conn: &rusqlite::Connection) -> Vec<Route> {
    let value: Option<String> = conn
        .query_row(
            "SELECT value FROM metadata WHERE key = 'backend'",
            [],
            |r| r.get(0),
        )
        .ok();
    let Some(v) = value.and_then(|v| serde_json::from_str::<serde_json::Value>(&v).ok()) else {
        return Vec::new();
    };
    let Some(host) = v.get("host").and_then(|h| h.as_str()) else {
        return Vec::new();
    };
    let port = v.get("port").and_then(|p| p.as_u64()).unwrap_or(9900);
    let ns = v
        .get("namespace")
        .and_then(|n| n.as_str())
        .unwrap_or("default");
    let auth = match v.get("password").and_then(|p| p.as_str()) {
        Some(p) if !p.is_empty() => format!(":{p}@"),
        _ => String::new(),
    };
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    vec![Route {
        start: 0,
        end: 255,
        url: format!("zdb://{auth}{host}:{port}/{ns}"),
    }]
}

/// A message from the database: copied into aligned words and read with our limits.
fn message(
    kv: &HashMap<String, Vec<u8>>,
    key: &str,
) -> Result<capnp::message::Reader<capnp::serialize::OwnedSegments>, Error> {
    let bytes = kv
        .get(key)
        .ok_or_else(|| Error::new(format!("key {key} is not in table entries")))?;
    read_message(bytes).map_err(|e| e.context(format!("key {key}")))
}

/// Reads one Cap'n Proto message with our limits.
pub fn read_message(
    bytes: &[u8],
) -> Result<capnp::message::Reader<capnp::serialize::OwnedSegments>, Error> {
    let mut opts = ReaderOptions::new();
    opts.traversal_limit_in_words(Some(TRAVERSAL_LIMIT_WORDS))
        .nesting_limit(NESTING_LIMIT);
    let mut slice = bytes;
    let msg = capnp::serialize::read_message(&mut slice, opts)
        .map_err(|e| Error::new(format!("Cap'n Proto: {e}")))?;
    Ok(msg)
}

fn cap(e: capnp::Error) -> Error {
    Error::new(format!("Cap'n Proto: {e}"))
}

fn text(t: capnp::Result<capnp::text::Reader<'_>>, what: &str) -> Result<String, Error> {
    let t = t.map_err(|e| cap(e).context(what))?;
    t.to_str()
        .map(str::to_string)
        .map_err(|_| Error::new(format!("{what} is not UTF-8")))
}

/// Owner and permission bits from the ACI under `key`.
fn acl(
    kv: &HashMap<String, Vec<u8>>,
    cache: &mut HashMap<String, (u32, u32, u32)>,
    key: &str,
) -> Result<(u32, u32, u32), Error> {
    if let Some(v) = cache.get(key) {
        return Ok(*v);
    }
    let msg = message(kv, key).map_err(|e| e.context("ACI"))?;
    let a: aci::Reader<'_> = msg.get_root().map_err(|e| cap(e).context("ACI"))?;
    let id = |v: i64, name: capnp::Result<capnp::text::Reader<'_>>, what: &str| {
        if v >= 0 {
            return u32::try_from(v)
                .map_err(|_| Error::new(format!("ACI {key}: {what} {v} out of range")));
        }
        // Old flists without numeric ids: a numeric name is the id, root is 0.
        let n = text(name, what)?;
        match n.as_str() {
            "root" => Ok(0),
            _ => n.parse::<u32>().map_err(|_| {
                Error::new(format!(
                    "ACI {key}: no {what} and name {n:?} is not a number"
                ))
            }),
        }
    };
    let v = (
        u32::from(a.get_mode()) & 0o7777,
        id(a.get_uid(), a.get_uname(), "uid")?,
        id(a.get_gid(), a.get_gname(), "gid")?,
    );
    cache.insert(key.to_string(), v);
    Ok(v)
}

/// Walks the directories from the root key.
pub fn walk(kv: &HashMap<String, Vec<u8>>) -> Result<Vec<Entry>, Error> {
    let mut entries = Vec::new();
    let mut acls = HashMap::new();
    let mut seen: HashSet<String> = HashSet::new();
    let mut stack = vec![(dir_key(""), String::new(), 0usize)];
    while let Some((key, rel, depth)) = stack.pop() {
        let path = if rel.is_empty() {
            "/".to_string()
        } else {
            format!("/{rel}")
        };
        let ctx = |e: Error| e.context(format!("directory {path}"));
        if depth > super::MAX_DEPTH {
            return Err(ctx(Error::new(format!(
                "nested deeper than {}",
                super::MAX_DEPTH
            ))));
        }
        if !seen.insert(key.clone()) {
            return Err(ctx(Error::new(format!("key {key} reached twice (a loop)"))));
        }
        let msg = message(kv, &key).map_err(ctx)?;
        let d: dir::Reader<'_> = msg.get_root().map_err(|e| ctx(cap(e)))?;
        let aclkey = text(d.get_aclkey(), "aclkey").map_err(ctx)?;
        let (mode, uid, gid) = acl(kv, &mut acls, &aclkey).map_err(ctx)?;
        entries.push(Entry {
            path: path.clone(),
            kind: Kind::Dir,
            mode,
            uid,
            gid,
            size: d.get_size(),
            mtime: i64::from(d.get_modification_time()),
            rdev: 0,
            target: None,
            blocks: Vec::new(),
        });
        let contents = d.get_contents().map_err(|e| ctx(cap(e)))?;
        for ino in contents.iter() {
            let e = inode_entry(kv, &mut acls, &path, ino).map_err(ctx)?;
            match e {
                Child::Dir(name, key) => {
                    let child = if rel.is_empty() {
                        name
                    } else {
                        format!("{rel}/{name}")
                    };
                    stack.push((key, child, depth + 1));
                }
                Child::Other(e) => entries.push(e),
            }
            if entries.len() + stack.len() > super::MAX_ENTRIES {
                return Err(Error::new("too many entries"));
            }
        }
    }
    Ok(entries)
}

enum Child {
    Dir(String, String),
    Other(Entry),
}

fn inode_entry(
    kv: &HashMap<String, Vec<u8>>,
    acls: &mut HashMap<String, (u32, u32, u32)>,
    parent: &str,
    ino: inode::Reader<'_>,
) -> Result<Child, Error> {
    let name = text(ino.get_name(), "inode name")?;
    check_name(&name)?;
    let path = join(parent, &name);
    let ctx = |e: Error| e.context(&path);
    let attrs = ino
        .get_attributes()
        .which()
        .map_err(|e| ctx(Error::new(format!("unknown inode type ({e})"))))?;
    let mut entry = Entry {
        path: path.clone(),
        kind: Kind::File,
        mode: 0,
        uid: 0,
        gid: 0,
        size: ino.get_size(),
        mtime: i64::from(ino.get_modification_time()),
        rdev: 0,
        target: None,
        blocks: Vec::new(),
    };
    use inode::attributes::Which;
    match attrs {
        Which::Dir(sub) => {
            let sub = sub.map_err(|e| ctx(cap(e)))?;
            let key = text(sub.get_key(), "subdirectory key").map_err(ctx)?;
            return Ok(Child::Dir(name, key));
        }
        Which::File(f) => {
            let f = f.map_err(|e| ctx(cap(e)))?;
            let blocks = f.get_blocks().map_err(|e| ctx(cap(e)))?;
            for (i, b) in blocks.iter().enumerate() {
                let h = |d: capnp::Result<&[u8]>, what: &str| -> Result<[u8; 16], Error> {
                    let d = d.map_err(|e| ctx(cap(e)))?;
                    d.try_into().map_err(|_| {
                        ctx(Error::new(format!(
                            "block {i}: {what} is {} bytes, not 16",
                            d.len()
                        )))
                    })
                };
                entry.blocks.push(BlockRef::V1 {
                    id: h(b.get_hash(), "hash")?,
                    key: h(b.get_key(), "key")?,
                });
            }
        }
        Which::Link(l) => {
            let l = l.map_err(|e| ctx(cap(e)))?;
            entry.kind = Kind::Link;
            entry.target = Some(text(l.get_target(), "link target").map_err(ctx)?);
        }
        Which::Special(s) => {
            let s = s.map_err(|e| ctx(cap(e)))?;
            let t = s
                .get_type()
                .map_err(|e| ctx(Error::new(format!("special type: {e}"))))?;
            entry.kind = match t {
                special::Type::Socket => Kind::Socket,
                special::Type::Block => Kind::Block,
                special::Type::Chardev => Kind::Char,
                special::Type::Fifopipe => Kind::Fifo,
                special::Type::Unknown => return Err(ctx(Error::new("special of unknown type"))),
            };
            if matches!(entry.kind, Kind::Block | Kind::Char) {
                let data = s.get_data().map_err(|e| ctx(cap(e)))?;
                entry.rdev = device(data).map_err(ctx)?;
            }
        }
    }
    let aclkey = text(ino.get_aclkey(), "aclkey").map_err(ctx)?;
    let (mode, uid, gid) = acl(kv, acls, &aclkey).map_err(ctx)?;
    (entry.mode, entry.uid, entry.gid) = (mode, uid, gid);
    Ok(Child::Other(entry))
}

/// A device number as 0-flist writes it in `Special.data`: "major,minor" text, or the rdev as
/// decimal text.
fn device(data: &[u8]) -> Result<u64, Error> {
    let s = std::str::from_utf8(data)
        .map_err(|_| Error::new("device data is not text"))?
        .trim_end_matches('\0')
        .trim();
    let bad = || {
        Error::new(format!(
            "device data {s:?} is neither major,minor nor a number"
        ))
    };
    if let Some((ma, mi)) = s.split_once(',') {
        let ma: u64 = ma.trim().parse().map_err(|_| bad())?;
        let mi: u64 = mi.trim().parse().map_err(|_| bad())?;
        if ma > 0xfff || mi > 0xfffff {
            return Err(bad());
        }
        return Ok(makedev(ma, mi));
    }
    s.parse().map_err(|_| bad())
}

/// Linux's dev_t from major and minor.
pub fn makedev(major: u64, minor: u64) -> u64 {
    ((major & 0xfff) << 8) | (minor & 0xff) | ((minor & !0xff) << 12) | ((major & !0xfff) << 32)
}
