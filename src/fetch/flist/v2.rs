//! v2 `.fl` (rfs 2): a bare SQLite database.
//!
//! `inode(ino, parent, name, size, uid, gid, mode, rdev, ctime, mtime)` (the root has parent 0),
//! `extra(ino, data)` (symlink targets), `block(ino, id, key)` (a file's blocks in rowid order),
//! `route(start, end, url)` (stores by the first byte of a block id), `tag(key, value)`.
//! Upstream traps avoided: gid comes from the `gid` column (rfs read it from `uid`), link
//! targets are kept as written, directory modes, mtimes and special files are kept.
use std::collections::HashMap;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};

use super::{check_name, finish, join, BlockRef, Entry, Error, Flist, Format, Kind, Route};

/// Opens a database held in memory, read-only, with SQLite's own limits tightened.
pub fn open_bytes(bytes: &[u8]) -> Result<Connection, Error> {
    let mut conn = Connection::open_in_memory_with_flags(
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.deserialize_read_exact(rusqlite::MAIN_DB, bytes, bytes.len(), true)
        .map_err(|e| Error::new(format!("cannot open the database: {e}")))?;
    // Only fixed queries run on it; rows are bounded by the database's size (MAX_FLIST_BYTES).
    Ok(conn)
}

struct Row {
    parent: i64,
    name: String,
    size: i64,
    uid: i64,
    gid: i64,
    mode: i64,
    rdev: i64,
    mtime: i64,
}

/// Text or blob as UTF-8 (rfs stores names and targets as either).
fn text(v: ValueRef<'_>, what: &str) -> Result<String, Error> {
    let bytes = match v {
        ValueRef::Text(t) | ValueRef::Blob(t) => t,
        ValueRef::Null => return Err(Error::new(format!("{what} is NULL"))),
        _ => return Err(Error::new(format!("{what} is not text"))),
    };
    String::from_utf8(bytes.to_vec()).map_err(|_| Error::new(format!("{what} is not UTF-8")))
}

fn int(v: ValueRef<'_>, what: &str) -> Result<i64, Error> {
    match v {
        ValueRef::Integer(i) => Ok(i),
        ValueRef::Null => Ok(0),
        _ => Err(Error::new(format!("{what} is not an integer"))),
    }
}

fn hash<const N: usize>(v: ValueRef<'_>, what: &str) -> Result<[u8; N], Error> {
    let bytes = match v {
        ValueRef::Blob(b) | ValueRef::Text(b) => b,
        _ => return Err(Error::new(format!("{what} is not a blob"))),
    };
    bytes
        .try_into()
        .map_err(|_| Error::new(format!("{what} is {} bytes, not {N}", bytes.len())))
}

fn id_u32(v: i64, what: &str, ino: i64) -> Result<u32, Error> {
    u32::try_from(v).map_err(|_| Error::new(format!("inode {ino}: {what} {v} out of range")))
}

/// Parses a v2 flist from the database file's bytes.
pub fn parse(bytes: &[u8]) -> Result<Flist, Error> {
    let conn = open_bytes(bytes)?;
    read(&conn)
}

/// Reads the tables of an open v2 database.
pub fn read(conn: &Connection) -> Result<Flist, Error> {
    let mut rows: HashMap<i64, Row> = HashMap::new();
    let mut children: HashMap<i64, Vec<i64>> = HashMap::new();
    let mut roots = Vec::new();
    {
        let mut st = conn
            .prepare("SELECT ino, parent, name, size, uid, gid, mode, rdev, mtime FROM inode")
            .map_err(|e| Error::from(e).context("table inode"))?;
        let mut q = st.query([])?;
        while let Some(r) = q.next()? {
            let ino = int(r.get_ref(0)?, "inode.ino")?;
            let ctx = |e: Error| e.context(format!("inode {ino}"));
            let row = Row {
                parent: int(r.get_ref(1)?, "parent").map_err(ctx)?,
                name: text(r.get_ref(2)?, "name").map_err(ctx)?,
                size: int(r.get_ref(3)?, "size").map_err(ctx)?,
                uid: int(r.get_ref(4)?, "uid").map_err(ctx)?,
                gid: int(r.get_ref(5)?, "gid").map_err(ctx)?,
                mode: int(r.get_ref(6)?, "mode").map_err(ctx)?,
                rdev: int(r.get_ref(7)?, "rdev").map_err(ctx)?,
                mtime: int(r.get_ref(8)?, "mtime").map_err(ctx)?,
            };
            if row.parent == 0 {
                roots.push(ino);
            } else {
                children.entry(row.parent).or_default().push(ino);
            }
            if rows.insert(ino, row).is_some() {
                return Err(Error::new(format!("inode {ino} twice")));
            }
            if rows.len() > super::MAX_ENTRIES {
                return Err(Error::new("too many inodes"));
            }
        }
    }
    let root = match roots[..] {
        [r] => r,
        [] => return Err(Error::new("no root inode (parent 0)")),
        _ => {
            return Err(Error::new(format!(
                "{} root inodes (parent 0)",
                roots.len()
            )))
        }
    };

    let mut targets: HashMap<i64, String> = HashMap::new();
    {
        let mut st = conn
            .prepare("SELECT ino, data FROM extra")
            .map_err(|e| Error::from(e).context("table extra"))?;
        let mut q = st.query([])?;
        while let Some(r) = q.next()? {
            let ino = int(r.get_ref(0)?, "extra.ino")?;
            let data =
                text(r.get_ref(1)?, "extra.data").map_err(|e| e.context(format!("inode {ino}")))?;
            targets.insert(ino, data);
        }
    }
    let mut blocks: HashMap<i64, Vec<BlockRef>> = HashMap::new();
    {
        let mut st = conn
            .prepare("SELECT ino, id, key FROM block ORDER BY rowid")
            .map_err(|e| Error::from(e).context("table block"))?;
        let mut q = st.query([])?;
        while let Some(r) = q.next()? {
            let ino = int(r.get_ref(0)?, "block.ino")?;
            let ctx = |e: Error| e.context(format!("block of inode {ino}"));
            let id = hash::<32>(r.get_ref(1)?, "id").map_err(ctx)?;
            let key = hash::<32>(r.get_ref(2)?, "key").map_err(ctx)?;
            if !rows.contains_key(&ino) {
                return Err(Error::new(format!(
                    "a block for inode {ino}, which does not exist"
                )));
            }
            blocks
                .entry(ino)
                .or_default()
                .push(BlockRef::V2 { id, key });
        }
    }
    let routes = read_routes(conn)?;

    // Walk from the root: every inode reached once, by its parent; the rest are orphans or
    // parts of a parent loop.
    let mut entries = Vec::with_capacity(rows.len());
    let mut stack = vec![(root, "/".to_string(), 0usize)];
    while let Some((ino, path, depth)) = stack.pop() {
        let Some(row) = rows.get(&ino) else {
            continue;
        };
        if depth > super::MAX_DEPTH {
            return Err(Error::new(format!(
                "{path}: nested deeper than {}",
                super::MAX_DEPTH
            )));
        }
        let mode = u32::try_from(row.mode)
            .map_err(|_| Error::new(format!("{path}: mode {} out of range", row.mode)))?;
        let kind = Kind::from_mode(mode)
            .ok_or_else(|| Error::new(format!("{path}: unknown file type in mode {mode:o}")))?;
        let entry = Entry {
            kind,
            mode: mode & 0o7777,
            uid: id_u32(row.uid, "uid", ino)?,
            gid: id_u32(row.gid, "gid", ino)?,
            size: u64::try_from(row.size)
                .map_err(|_| Error::new(format!("{path}: negative size {}", row.size)))?,
            mtime: row.mtime,
            rdev: u64::try_from(row.rdev)
                .map_err(|_| Error::new(format!("{path}: negative rdev {}", row.rdev)))?,
            target: if kind == Kind::Link {
                Some(targets.remove(&ino).ok_or_else(|| {
                    Error::new(format!("{path}: link without a target in table extra"))
                })?)
            } else {
                None
            },
            blocks: blocks.remove(&ino).unwrap_or_default(),
            path: path.clone(),
        };
        if let Some(kids) = children.remove(&ino) {
            if kind != Kind::Dir {
                return Err(Error::new(format!(
                    "{path}: a {} with children",
                    kind.as_str()
                )));
            }
            for kid in kids {
                let name = &rows.get(&kid).map(|r| r.name.as_str()).unwrap_or("");
                check_name(name).map_err(|e| e.context(format!("in {path} (inode {kid})")))?;
                stack.push((kid, join(&path, name), depth + 1));
            }
        }
        entries.push(entry);
    }
    if entries.len() != rows.len() {
        return Err(Error::new(format!(
            "{} inodes are not reachable from the root (orphans or a parent loop)",
            rows.len() - entries.len()
        )));
    }
    Ok(Flist {
        format: Format::V2,
        entries: finish(entries)?,
        routes,
    })
}

fn read_routes(conn: &Connection) -> Result<Vec<Route>, Error> {
    let mut st = match conn.prepare("SELECT start, end, url FROM route") {
        Ok(st) => st,
        Err(_) => return Ok(Vec::new()),
    };
    let mut q = st.query([])?;
    let mut routes = Vec::new();
    while let Some(r) = q.next()? {
        let byte = |v: i64, what: &str| {
            u8::try_from(v).map_err(|_| Error::new(format!("route {what} {v} is not a byte")))
        };
        routes.push(Route {
            start: byte(int(r.get_ref(0)?, "route.start")?, "start")?,
            end: byte(int(r.get_ref(1)?, "route.end")?, "end")?,
            url: text(r.get_ref(2)?, "route.url")?,
        });
    }
    Ok(routes)
}
