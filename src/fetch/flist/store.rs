//! Block stores and the RAM cache.
//!
//! URLs (as on the command line and in a v2 `route` table):
//! - `zdb://host[:port][/namespace]` — 0-db (or Redis) over RESP; port 9900 by default;
//!   `SELECT namespace [password]` unless the namespace is `default` or absent, then
//!   `GET <raw id>`. A password goes in the user-info: `zdb://:password@host:port/ns`
//!   (`%XX` escapes for `/`, `@`, `:` and `%` in it).
//! - `http://base`, `https://base` — `GET base/hh/<hex id>` (hh = the first byte in hex), and
//!   `base/<hex id>` when that is 404.
//! - `dir:///path` — the file `/path/<hex id>` (rfs's layout), else `/path/hh/<hex id>`.
//!
//! Each store serves the blocks whose id's first byte is within its ranges (rfs 2 `route(start,
//! end, url)`; stores given by the operator and the hub's 0-db serve all). [`Conns::send`] /
//! [`Conns::reply`] pipeline `GET`s on a second 0-db connection (the caller bounds how many are
//! in flight). [`Stores::get`] tries the stores serving a block in order: a store that does not have it, or
//! fails, or serves bytes that do not verify is skipped for that block and the next is asked;
//! a store that served a bad block is reported through the caller's warning function. Verified
//! plain blocks go into the [`Cache`] so that a second flist or a retry fetches nothing twice.
use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{block, hex, BlockRef, Error, MAX_BLOCK_PLAIN};
use crate::fetch::http;

/// Largest stored (compressed, encrypted) block accepted from a store.
pub const MAX_STORED: usize = MAX_BLOCK_PLAIN + MAX_BLOCK_PLAIN / 4 + 4096;
/// Default port of 0-db (and of the hub's block store).
pub const ZDB_PORT: u16 = 9900;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Store {
    Zdb {
        host: String,
        port: u16,
        namespace: Option<String>,
        password: Option<String>,
    },
    Http {
        base: String,
    },
    Dir {
        path: PathBuf,
    },
}

impl Store {
    /// Parses a store URL (see the module documentation).
    pub fn parse(url: &str) -> Result<Store, Error> {
        let bad = |why: &str| Error::new(format!("store URL {url:?}: {why}"));
        if let Some(rest) = url.strip_prefix("dir://") {
            if !rest.starts_with('/') {
                return Err(bad("dir:// needs an absolute path (dir:///path)"));
            }
            return Ok(Store::Dir {
                path: PathBuf::from(rest),
            });
        }
        if url.starts_with("http://") || url.starts_with("https://") {
            return Ok(Store::Http {
                base: url.trim_end_matches('/').to_string(),
            });
        }
        let Some(rest) = url
            .strip_prefix("zdb://")
            .or_else(|| url.strip_prefix("redis://"))
        else {
            return Err(bad("unknown scheme (zdb://, http(s)://, dir:// are known)"));
        };
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let password = match userinfo.and_then(|u| u.split_once(':').map(|(_, p)| p).or(Some(u))) {
            Some(p) if !p.is_empty() => {
                Some(percent_decode(p).ok_or_else(|| bad("bad %-escape in the password"))?)
            }
            _ => None,
        };
        let (host, port) = if let Some(h) = hostport.strip_prefix('[') {
            let (h, after) = h
                .split_once(']')
                .ok_or_else(|| bad("unclosed [ in the host"))?;
            (h.to_string(), after.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (hostport.to_string(), None),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = match port {
            Some(p) => p.parse().map_err(|_| bad("bad port"))?,
            None => ZDB_PORT,
        };
        let namespace = path.trim_matches('/');
        if namespace.contains('/') || namespace.contains(char::is_whitespace) {
            return Err(bad("bad namespace"));
        }
        Ok(Store::Zdb {
            host,
            port,
            namespace: (!namespace.is_empty()).then(|| namespace.to_string()),
            password,
        })
    }

    /// The URL without its password, for the console.
    pub fn name(&self) -> String {
        match self {
            Store::Zdb {
                host,
                port,
                namespace,
                ..
            } => {
                let host = if host.contains(':') {
                    format!("[{host}]")
                } else {
                    host.clone()
                };
                match namespace {
                    Some(ns) => format!("zdb://{host}:{port}/{ns}"),
                    None => format!("zdb://{host}:{port}"),
                }
            }
            Store::Http { base } => base.clone(),
            Store::Dir { path } => format!("dir://{}", path.display()),
        }
    }
}

/// `%XX` escapes decoded (a password with `/`, `@` or `:` is written `%2F`, `%40`, `%3A`).
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(h, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Why a store did not give a block.
#[derive(Debug)]
pub enum Miss {
    NotFound,
    Failed(String),
}

/// The cache's blocks by id, and their total size.
type Held = (HashMap<Vec<u8>, Arc<Vec<u8>>>, usize);

/// Verified plain blocks by id, up to a byte budget (beyond it, blocks are not kept).
#[derive(Debug, Default)]
pub struct Cache {
    inner: Mutex<Held>,
    max_bytes: usize,
}

impl Cache {
    pub fn new(max_bytes: usize) -> Self {
        Cache {
            inner: Mutex::new((HashMap::new(), 0)),
            max_bytes,
        }
    }
    pub fn get(&self, id: &[u8]) -> Option<Arc<Vec<u8>>> {
        self.inner.lock().ok()?.0.get(id).cloned()
    }
    pub fn put(&self, id: &[u8], plain: Arc<Vec<u8>>) {
        if let Ok(mut g) = self.inner.lock() {
            if g.1 + plain.len() <= self.max_bytes && !g.0.contains_key(id) {
                g.1 += plain.len();
                g.0.insert(id.to_vec(), plain);
            }
        }
    }
    /// Blocks and bytes held.
    pub fn usage(&self) -> (usize, usize) {
        self.inner
            .lock()
            .map(|g| (g.0.len(), g.1))
            .unwrap_or((0, 0))
    }
}

/// The stores of one extraction, in the order they are asked.
#[derive(Debug, Clone)]
pub struct Stores {
    pub list: Vec<Store>,
    /// Per store (same index as `list`): the ranges of a block id's first byte it serves,
    /// inclusive (rfs 2 `route(start, end, url)`). A store given by the operator or the hub's
    /// own 0-db serves every block (0..=255). Several stores covering one byte are
    /// alternatives, asked in `list` order.
    pub ranges: Vec<Vec<(u8, u8)>>,
    /// How http(s) stores are reached (DNS, TLS, timeouts); None: http stores are skipped.
    pub http: Option<http::HttpOptions>,
    /// Connect and read timeout for 0-db stores.
    pub timeout: Duration,
}

impl Stores {
    pub fn new(list: Vec<Store>) -> Self {
        Stores {
            ranges: vec![vec![(0, 255)]; list.len()],
            list,
            http: None,
            timeout: Duration::from_secs(10),
        }
    }
    pub fn parse_all<S: AsRef<str>>(urls: &[S]) -> Result<Self, Error> {
        let list = urls
            .iter()
            .map(|u| Store::parse(u.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Stores::new(list))
    }

    /// Adds the store at `url` for ids whose first byte is within `start..=end`; a URL already
    /// in the list gains the range (no second connection to one store).
    pub fn add(&mut self, url: &str, start: u8, end: u8) -> Result<(), Error> {
        if start > end {
            return Err(Error::new(format!(
                "route {start}..{end} to {url}: start after end"
            )));
        }
        let store = Store::parse(url)?;
        match self.list.iter().position(|s| *s == store) {
            Some(i) => self.ranges[i].push((start, end)),
            None => {
                self.list.push(store);
                self.ranges.push(vec![(start, end)]);
            }
        }
        Ok(())
    }

    /// Whether store `i` serves blocks whose id starts with `first`.
    pub fn serves(&self, i: usize, first: u8) -> bool {
        self.ranges
            .get(i)
            .is_some_and(|r| r.iter().any(|&(a, b)| (a..=b).contains(&first)))
    }

    /// The stores that serve `id`, in the order they are asked.
    pub fn candidates<'a>(&'a self, id: &'a [u8]) -> impl Iterator<Item = usize> + 'a {
        let first = id.first().copied().unwrap_or(0);
        (0..self.list.len()).filter(move |&i| self.serves(i, first))
    }

    /// The first store `conns` still asks for `id` (not given up after failures).
    pub fn first_for(&self, conns: &Conns, id: &[u8]) -> Option<usize> {
        self.candidates(id)
            .find(|i| conns.failures.get(i).copied().unwrap_or(0) < GIVE_UP_AFTER)
    }

    /// The verified plain bytes of `b`: from the cache, else from the first store serving it
    /// that has a block that verifies. `warn` hears about each store that served a bad block.
    /// The bool: from the cache.
    pub fn get(
        &self,
        conns: &mut Conns,
        cache: &Cache,
        b: &BlockRef,
        warn: &(dyn Fn(String) + Sync),
    ) -> Result<(Arc<Vec<u8>>, bool), Error> {
        self.get_with(conns, cache, b, warn, None)
    }

    /// [`Stores::get`] with the answer of store `i` already in hand (a pipelined GET, see
    /// [`Conns::pipeline`]): used in place of asking store `i` again.
    pub fn get_with(
        &self,
        conns: &mut Conns,
        cache: &Cache,
        b: &BlockRef,
        warn: &(dyn Fn(String) + Sync),
        mut answered: Option<(usize, Result<Vec<u8>, Miss>)>,
    ) -> Result<(Arc<Vec<u8>>, bool), Error> {
        if let Some(p) = cache.get(b.id()) {
            return Ok((p, true));
        }
        if self.list.is_empty() {
            return Err(Error::new(format!(
                "block {}: no store to fetch it from (give --store URL)",
                b.id_hex()
            )));
        }
        let mut why = Vec::new();
        let mut asked = false;
        for i in self.candidates(b.id()) {
            let store = &self.list[i];
            asked = true;
            let failures = conns.failures.entry(i).or_default();
            if *failures >= GIVE_UP_AFTER {
                why.push(format!(
                    "{}: skipped after {GIVE_UP_AFTER} failures",
                    store.name()
                ));
                continue;
            }
            let got = match answered.take() {
                Some((j, got)) if j == i => got,
                other => {
                    answered = other;
                    self.fetch(conns, i, store, b.id())
                }
            };
            let raw = match got {
                Ok(raw) => raw,
                Err(Miss::NotFound) => {
                    why.push(format!("{}: not found", store.name()));
                    continue;
                }
                Err(Miss::Failed(e)) => {
                    let n = conns.failures.entry(i).or_default();
                    *n += 1;
                    if *n == GIVE_UP_AFTER {
                        warn(format!(
                            "store {} failed {GIVE_UP_AFTER} times ({e}); not asking it again \
                             for this flist",
                            store.name()
                        ));
                    }
                    why.push(format!("{}: {e}", store.name()));
                    continue;
                }
            };
            let mut raw = raw;
            let mut plain = std::mem::take(&mut conns.spare_plain);
            let decoded = block::decode_into(b, &mut raw, &mut plain);
            conns.spare_raw = raw;
            match decoded {
                Ok(()) => {
                    let plain = Arc::new(plain);
                    cache.put(b.id(), plain.clone());
                    return Ok((plain, false));
                }
                Err(e) => {
                    conns.spare_plain = plain;
                    warn(format!(
                        "store {} served a bad block {}: {e}; asking the next store",
                        store.name(),
                        b.id_hex()
                    ));
                    why.push(format!("{}: bad block: {e}", store.name()));
                }
            }
        }
        if !asked {
            let first = b.id().first().copied().unwrap_or(0);
            return Err(Error::new(format!(
                "block {}: no store serves ids starting with {first:02x} (the flist's routes \
                 leave that byte out; give a store for it with zos.store= / --store)",
                b.id_hex()
            )));
        }
        Err(Error::new(format!(
            "block {}: no store had it intact ({})",
            b.id_hex(),
            why.join("; ")
        )))
    }

    fn fetch(
        &self,
        conns: &mut Conns,
        i: usize,
        store: &Store,
        id: &[u8],
    ) -> Result<Vec<u8>, Miss> {
        match store {
            Store::Dir { path } => {
                let name = hex(id);
                let flat = path.join(&name);
                let nested = path.join(&name[..2]).join(&name);
                for p in [flat, nested] {
                    match read_capped(&p) {
                        Ok(data) => return Ok(data),
                        Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                        Err(e) => return Err(Miss::Failed(format!("{}: {e}", p.display()))),
                    }
                }
                Err(Miss::NotFound)
            }
            Store::Http { base } => {
                let Some(opts) = &self.http else {
                    return Err(Miss::Failed("http stores are not enabled here".into()));
                };
                let name = hex(id);
                let mut last = Miss::NotFound;
                for url in [
                    format!("{base}/{}/{name}", &name[..2]),
                    format!("{base}/{name}"),
                ] {
                    let got = smol::block_on(async {
                        let mut resp =
                            http::request(http::Method::Get, &url, &[], None, opts).await?;
                        resp.body(MAX_STORED).await
                    });
                    match got {
                        Ok(body) if body.is_empty() => {
                            last = Miss::Failed(format!("{url}: empty body"));
                        }
                        Ok(body) => return Ok(body),
                        Err(e) if e.status() == Some(404) => continue,
                        Err(e) => last = Miss::Failed(e.to_string()),
                    }
                }
                Err(last)
            }
            Store::Zdb { .. } => {
                let conn = conns.zdb.entry(i).or_default();
                // One reconnect: a connection idle for long may have been closed by the server.
                let mut err = String::new();
                for _ in 0..2 {
                    if conn.is_none() {
                        match Zdb::connect(store, self.timeout) {
                            Ok(c) => *conn = Some(c),
                            Err(e) => return Err(Miss::Failed(e)),
                        }
                    }
                    let Some(c) = conn.as_mut() else { continue };
                    match c.get_into(id, &mut conns.spare_raw) {
                        Ok(Some(data)) if data.is_empty() => {
                            return Err(Miss::Failed("empty value".into()))
                        }
                        Ok(Some(data)) => return Ok(data),
                        Ok(None) => return Err(Miss::NotFound),
                        Err(e) => {
                            *conn = None;
                            err = e;
                        }
                    }
                }
                Err(Miss::Failed(err))
            }
        }
    }
}

fn read_capped(p: &std::path::Path) -> io::Result<Vec<u8>> {
    let f = std::fs::File::open(p)?;
    let mut data = Vec::new();
    f.take(MAX_STORED as u64 + 1).read_to_end(&mut data)?;
    if data.len() > MAX_STORED {
        return Err(io::Error::other(format!("more than {MAX_STORED} bytes")));
    }
    Ok(data)
}

/// Per-worker state: 0-db connections kept open between blocks, and how often each store
/// failed (down, stalled, refusing): after [`GIVE_UP_AFTER`] failures a store is not asked
/// again by this worker, so a stalled store costs a few timeouts, not one per block.
#[derive(Debug, Default)]
pub struct Conns {
    zdb: HashMap<usize, Option<Zdb>>,
    failures: HashMap<usize, u32>,
    /// Pipelined connections (a second one per 0-db store, so that a plain GET never reads a
    /// pipelined reply): GETs sent, replies not read yet.
    pipes: HashMap<usize, Pipe>,
    /// Stores whose pipelined connection could not be made or broke: asked the plain way only.
    no_pipe: std::collections::HashSet<usize>,
    /// Buffers reused from block to block (a stored block, a plain block): with 1 MiB blocks,
    /// a fresh allocation each is a fresh mapping and its page faults (musl maps every large
    /// allocation).
    spare_raw: Vec<u8>,
    spare_plain: Vec<u8>,
}

#[derive(Debug)]
struct Pipe {
    zdb: Zdb,
    /// Replies owed by the server.
    owed: usize,
}

impl Conns {
    /// Sends `GET id` to 0-db store `i` on its pipelined connection without waiting for the
    /// answer (RESP answers in order; read it with [`Conns::reply`]). False when store `i` is
    /// not a 0-db store or cannot be reached now: ask it the plain way ([`Stores::get`]).
    pub fn send(&mut self, stores: &Stores, i: usize, id: &[u8]) -> bool {
        let Some(store @ Store::Zdb { .. }) = stores.list.get(i) else {
            return false;
        };
        if self.no_pipe.contains(&i) {
            return false;
        }
        let pipe = match self.pipes.entry(i) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                match Zdb::connect(store, stores.timeout) {
                    Ok(zdb) => v.insert(Pipe { zdb, owed: 0 }),
                    Err(_) => {
                        self.no_pipe.insert(i);
                        return false;
                    }
                }
            }
        };
        pipe.zdb.queue(&[b"GET", id]);
        pipe.owed += 1;
        true
    }

    /// Takes back a block's plain bytes once written (when the cache holds no other reference):
    /// its allocation serves the next block.
    pub fn recycle(&mut self, plain: Arc<Vec<u8>>) {
        if let Ok(v) = Arc::try_unwrap(plain) {
            if v.capacity() > self.spare_plain.capacity() {
                self.spare_plain = v;
            }
        }
    }

    /// The answer to the oldest GET sent to store `i` by [`Conns::send`]; None when that
    /// connection broke before (the block must be asked for the plain way). A connection that
    /// breaks now is dropped with every answer it still owed.
    pub fn reply(&mut self, i: usize) -> Option<Result<Vec<u8>, Miss>> {
        let pipe = self.pipes.get_mut(&i).filter(|p| p.owed > 0)?;
        pipe.owed -= 1;
        let spare = &mut self.spare_raw;
        let got = pipe
            .zdb
            .flush()
            .and_then(|()| read_reply_into(&mut pipe.zdb.reader, spare));
        Some(match got {
            Ok(Reply::Bulk(Some(data))) if data.is_empty() => {
                Err(Miss::Failed("empty value".into()))
            }
            Ok(Reply::Bulk(Some(data))) => Ok(data),
            Ok(Reply::Bulk(None)) => Err(Miss::NotFound),
            Ok(Reply::Error(e)) => Err(Miss::Failed(format!("GET: {e}"))),
            Ok(other) => {
                self.pipes.remove(&i);
                self.no_pipe.insert(i);
                Err(Miss::Failed(format!("GET: unexpected reply {other:?}")))
            }
            Err(e) => {
                self.pipes.remove(&i);
                self.no_pipe.insert(i);
                Err(Miss::Failed(e))
            }
        })
    }
}

/// Failures (not "not found") after which a worker stops asking a store.
pub const GIVE_UP_AFTER: u32 = 2;

/// A RESP connection to one 0-db namespace.
#[derive(Debug)]
pub struct Zdb {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    /// Commands queued by [`Zdb::queue`], sent by the next [`Zdb::flush`].
    out: Vec<u8>,
}

impl Zdb {
    /// Connects (each address in turn, with `timeout`) and selects the namespace.
    pub fn connect(store: &Store, timeout: Duration) -> Result<Zdb, String> {
        let Store::Zdb {
            host,
            port,
            namespace,
            password,
        } = store
        else {
            return Err("not a zdb store".into());
        };
        let addrs: Vec<SocketAddr> = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, *port)],
            Err(_) => (host.as_str(), *port)
                .to_socket_addrs()
                .map_err(|e| format!("cannot resolve {host}: {e}"))?
                .collect(),
        };
        let mut last = format!("{host}: no address");
        for a in addrs {
            match TcpStream::connect_timeout(&a, timeout) {
                Ok(s) => {
                    s.set_read_timeout(Some(timeout))
                        .map_err(|e| e.to_string())?;
                    s.set_write_timeout(Some(timeout))
                        .map_err(|e| e.to_string())?;
                    let _ = s.set_nodelay(true);
                    let writer = s.try_clone().map_err(|e| e.to_string())?;
                    let mut z = Zdb {
                        reader: BufReader::with_capacity(64 << 10, s),
                        writer,
                        out: Vec::new(),
                    };
                    if let Some(ns) = namespace.as_deref().filter(|ns| *ns != "default") {
                        let mut args: Vec<&[u8]> = vec![b"SELECT", ns.as_bytes()];
                        if let Some(p) = password {
                            args.push(p.as_bytes());
                        }
                        match z.call(&args)? {
                            Reply::Status(_) => {}
                            Reply::Error(e) => {
                                return Err(format!(
                                    "SELECT {ns}: {e} (namespace or password wrong?)"
                                ))
                            }
                            other => {
                                return Err(format!("SELECT {ns}: unexpected reply {other:?}"))
                            }
                        }
                    }
                    return Ok(z);
                }
                Err(e) => last = format!("connect {a}: {e}"),
            }
        }
        Err(last)
    }

    /// GET of a raw key: Some(value), or None when the key is absent.
    pub fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
        self.get_into(key, &mut Vec::new())
    }

    /// [`Zdb::get`] reading the value into `spare`'s allocation.
    pub fn get_into(&mut self, key: &[u8], spare: &mut Vec<u8>) -> Result<Option<Vec<u8>>, String> {
        self.queue(&[b"GET", key]);
        self.flush()?;
        match read_reply_into(&mut self.reader, spare)? {
            Reply::Bulk(v) => Ok(v),
            Reply::Error(e) => Err(format!("GET: {e}")),
            other => Err(format!("GET: unexpected reply {other:?}")),
        }
    }

    fn call(&mut self, args: &[&[u8]]) -> Result<Reply, String> {
        self.queue(args);
        self.flush()?;
        read_reply(&mut self.reader)
    }

    /// Adds a command to the ones the next [`Zdb::flush`] sends.
    fn queue(&mut self, args: &[&[u8]]) {
        self.out
            .extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
        for a in args {
            self.out
                .extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            self.out.extend_from_slice(a);
            self.out.extend_from_slice(b"\r\n");
        }
    }

    /// Sends the queued commands.
    fn flush(&mut self) -> Result<(), String> {
        if self.out.is_empty() {
            return Ok(());
        }
        let r = self.writer.write_all(&self.out);
        self.out.clear();
        r.map_err(|e| format!("send: {e}"))
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    Status(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
}

/// Reads one RESP reply (arrays are not expected from SELECT or GET and are refused).
pub fn read_reply(r: &mut impl BufRead) -> Result<Reply, String> {
    read_reply_into(r, &mut Vec::new())
}

/// [`read_reply`], a bulk value read into `spare`'s allocation (taken from it).
pub fn read_reply_into(r: &mut impl BufRead, spare: &mut Vec<u8>) -> Result<Reply, String> {
    let mut line = Vec::new();
    r.by_ref()
        .take(1024)
        .read_until(b'\n', &mut line)
        .map_err(|e| format!("receive: {e}"))?;
    if !line.ends_with(b"\r\n") {
        return Err(if line.is_empty() {
            "connection closed".into()
        } else {
            "reply line cut or too long".into()
        });
    }
    let text = String::from_utf8_lossy(&line[1..line.len() - 2]).into_owned();
    match line[0] {
        b'+' => Ok(Reply::Status(text)),
        b'-' => Ok(Reply::Error(text)),
        b':' => text
            .parse()
            .map(Reply::Int)
            .map_err(|_| format!("bad integer reply {text:?}")),
        b'$' => {
            let n: i64 = text
                .parse()
                .map_err(|_| format!("bad bulk length {text:?}"))?;
            if n < 0 {
                return Ok(Reply::Bulk(None));
            }
            let n = usize::try_from(n).map_err(|_| "bad bulk length".to_string())?;
            if n > MAX_STORED {
                return Err(format!("value of {n} bytes, more than {MAX_STORED}"));
            }
            let mut data = std::mem::take(spare);
            // Truncates or grows (zeroing only the growth): read_exact overwrites it all.
            data.resize(n + 2, 0);
            r.read_exact(&mut data)
                .map_err(|e| format!("receive: {e}"))?;
            if &data[n..] != b"\r\n" {
                return Err("bulk value not followed by CRLF".into());
            }
            data.truncate(n);
            Ok(Reply::Bulk(Some(data)))
        }
        c => Err(format!("unexpected reply type {:?}", c as char)),
    }
}
