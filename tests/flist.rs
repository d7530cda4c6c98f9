//! flists end to end through the binary (`zos-netboot flist list|extract`), without root or
//! namespaces (owners and devices are checked where the test runs as root):
//! - the real third-party fixtures in `../shared/fixtures/flist/` (skipped with a reason where
//!   absent; a failure under ZOS_LAB_REQUIRED=1) agree entry for entry with an independent
//!   Python reader (tests/flist/reference_list.py);
//! - flists with blocks, written here in both formats from a source tree the test makes
//!   (v2 with SQL, v1 with Cap'n Proto builders and `tar -czf`), extract into a tree equal to
//!   the source from a directory store and from a real Redis (`redis-server`, speaking RESP as
//!   0-db does), with a corrupted block on the first store fetched from the second;
//! - a truncated flist, a `..` name and a flist larger than the allowed bytes are refused and
//!   leave nothing behind.
use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use zos_netboot::fetch::flist::block::{encode_v1, encode_v2};
use zos_netboot::fetch::flist::flist_capnp::{a_c_i, dir};
use zos_netboot::fetch::flist::{hex, v1::dir_key, BlockRef, Kind};

const BIN: &str = env!("CARGO_BIN_EXE_zos-netboot");
const BLOCK: usize = 512 * 1024;

fn skip(test: &str, why: &str) -> bool {
    if std::env::var_os("ZOS_LAB_REQUIRED").is_some_and(|v| v == "1") {
        panic!("{test}: cannot run, and ZOS_LAB_REQUIRED=1: {why}");
    }
    let _ = std::io::stderr().write_all(format!("SKIP {test}: {why}\n").as_bytes());
    false
}

fn run(args: &[&str]) -> Output {
    let out = Command::new("timeout")
        .args(["-k", "5", "120", BIN])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run zos-netboot");
    out
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "zos-flist-{tag}-{}-{}",
        std::process::id(),
        fastrand::u32(..)
    ));
    fs::create_dir_all(&d).expect("tempdir");
    d
}

// ------------------------------------------------------------------------------------------
// Real fixtures

#[test]
fn fixtures_list_json_agrees_with_an_independent_reader() {
    let test = "fixtures_list_json_agrees_with_an_independent_reader";
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/flist");
    if !dir.is_dir() {
        skip(
            test,
            &format!(
                "no fixtures at {} (shared/ is beside the clone in CI)",
                dir.display()
            ),
        );
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/flist/reference_list.py");
    for (name, count) in [("funk.flist", 38081), ("alpine.fl", 524), ("hello.fl", 15)] {
        let file = dir.join(name);
        let file = file.to_str().expect("utf-8 path");
        let ours = run(&["flist", "list", file, "--json"]);
        assert!(ours.status.success(), "{name}: {}", stderr(&ours));
        let theirs = Command::new("timeout")
            .args(["-k", "5", "300", "/usr/bin/python3"])
            .arg(&script)
            .arg(file)
            .output()
            .expect("python3");
        assert!(
            theirs.status.success(),
            "{name}: reference: {}",
            stderr(&theirs)
        );
        let parse = |o: &Output| -> BTreeMap<String, serde_json::Value> {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(|l| {
                    let v: serde_json::Value = serde_json::from_str(l).expect("json line");
                    (v["path"].as_str().expect("path").to_string(), v)
                })
                .collect()
        };
        let (a, b) = (parse(&ours), parse(&theirs));
        assert_eq!(a.len(), count, "{name}: entries listed by zos-netboot");
        assert_eq!(b.len(), count, "{name}: entries listed by the reference");
        for (path, want) in &b {
            assert_eq!(a.get(path), Some(want), "{name}: {path}");
        }
        // The human listing has one line per entry too.
        let plain = run(&["flist", "list", file]);
        assert_eq!(
            String::from_utf8_lossy(&plain.stdout).lines().count(),
            count
        );
    }
    // funk's absolute symlinks are kept as written (not rewritten below any root).
    let funk = run(&[
        "flist",
        "list",
        dir.join("funk.flist").to_str().unwrap(),
        "--json",
    ]);
    assert!(String::from_utf8_lossy(&funk.stdout).contains(r#""target":"/bin/busybox""#));
}

// ------------------------------------------------------------------------------------------
// A source tree and flists of it with blocks

struct Node {
    rel: String,
    meta: fs::Metadata,
    target: Option<String>,
    blocks: Vec<(BlockRef, Vec<u8>)>,
}

fn kind_mode(m: &fs::Metadata) -> u32 {
    m.mode() & 0o170000
}

/// The test's source tree: files of 0, 1, several blocks, a duplicate, odd modes, links
/// (absolute, relative, dangling), a fifo; as root also other owners and /dev/null's twin.
fn make_source(root: &Path, root_user: bool) {
    let w = |p: &str, data: &[u8], mode: u32| {
        let p = root.join(p);
        fs::write(&p, data).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
    };
    fs::create_dir_all(root.join("etc/deep/er")).unwrap();
    fs::create_dir_all(root.join("bin")).unwrap();
    w("etc/hosts", b"127.0.0.1 localhost\n", 0o644);
    let big: Vec<u8> = (0..BLOCK * 2 + 12345)
        .map(|i| (i * 31 % 253) as u8)
        .collect();
    w("bin/big", &big, 0o755);
    w("bin/big-again", &big, 0o4755);
    w("empty", b"", 0o600);
    w("etc/deep/er/secret", b"s3cret", 0o400);
    fs::set_permissions(root.join("etc/deep"), fs::Permissions::from_mode(0o750)).unwrap();
    std::os::unix::fs::symlink("/etc/hosts", root.join("hosts-abs")).unwrap();
    std::os::unix::fs::symlink("../etc/hosts", root.join("bin/hosts-rel")).unwrap();
    std::os::unix::fs::symlink("/nowhere/at/all", root.join("dangling")).unwrap();
    nix::unistd::mkfifo(
        &root.join("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o620),
    )
    .unwrap();
    if root_user {
        nix::unistd::chown(
            &root.join("etc/hosts"),
            Some(1000.into()),
            Some(2000.into()),
        )
        .unwrap();
        nix::sys::stat::mknod(
            &root.join("null"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o666),
            nix::sys::stat::makedev(1, 3),
        )
        .unwrap();
    }
    // Fixed mtimes, children first, so the directories' stick.
    let mut all: Vec<PathBuf> = walk(root).into_iter().map(|n| root.join(&n.0)).collect();
    all.reverse();
    for (i, p) in all.iter().enumerate() {
        let t = nix::sys::time::TimeSpec::new(1_600_000_000 + i as i64 * 1000, 0);
        nix::sys::stat::utimensat(
            nix::fcntl::AT_FDCWD,
            p,
            &t,
            &t,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .unwrap();
    }
}

/// Every path below `root` ("" for the root itself), sorted, with its lstat.
fn walk(root: &Path) -> Vec<(String, fs::Metadata)> {
    let mut out = vec![(String::new(), fs::symlink_metadata(root).unwrap())];
    let mut i = 0;
    while i < out.len() {
        let (rel, meta) = out[i].clone();
        if meta.is_dir() {
            let mut kids: Vec<_> = fs::read_dir(root.join(&rel))
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            kids.sort();
            for k in kids {
                let r = if rel.is_empty() {
                    k
                } else {
                    format!("{rel}/{k}")
                };
                let m = fs::symlink_metadata(root.join(&r)).unwrap();
                out.push((r, m));
            }
        }
        i += 1;
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn nodes(root: &Path, v1: bool) -> Vec<Node> {
    walk(root)
        .into_iter()
        .map(|(rel, meta)| {
            let p = root.join(&rel);
            let target = meta
                .file_type()
                .is_symlink()
                .then(|| fs::read_link(&p).unwrap().to_str().unwrap().to_string());
            let blocks = if meta.is_file() {
                fs::read(&p)
                    .unwrap()
                    .chunks(BLOCK)
                    .map(|c| if v1 { encode_v1(c) } else { encode_v2(c) })
                    .collect()
            } else {
                Vec::new()
            };
            Node {
                rel,
                meta,
                target,
                blocks,
            }
        })
        .collect()
}

/// Writes every block into a dir store (rfs layout: `<hex id>`); returns the blocks.
fn fill_dir_store(store: &Path, nodes: &[Node]) -> Vec<(BlockRef, Vec<u8>)> {
    fs::create_dir_all(store).unwrap();
    let mut all = Vec::new();
    for n in nodes {
        for (b, stored) in &n.blocks {
            fs::write(store.join(hex(b.id())), stored).unwrap();
            all.push((*b, stored.clone()));
        }
    }
    all
}

/// A v2 `.fl` of `nodes`, in rfs's schema.
fn write_v2(path: &Path, nodes: &[Node]) {
    let c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch(
        "CREATE TABLE inode (ino INTEGER PRIMARY KEY AUTOINCREMENT, parent INTEGER,
            name VARCHAR(255), size INTEGER, uid INTEGER, gid INTEGER, mode INTEGER,
            rdev INTEGER, ctime INTEGER, mtime INTEGER);
         CREATE TABLE extra (ino INTEGER PRIMARY KEY, data VARCHAR(4096));
         CREATE TABLE block (ino INTEGER, id VARCHAR(32), key VARCHAR(32));
         CREATE TABLE tag (key VARCHAR(10) PRIMARY KEY, value VARCHAR(255));
         CREATE TABLE route (start integer, end integer, url VARCHAR(2048));",
    )
    .unwrap();
    let mut inos: BTreeMap<&str, i64> = BTreeMap::new();
    for (i, n) in nodes.iter().enumerate() {
        let ino = i as i64 + 1;
        let (parent, name) = match n.rel.rsplit_once('/') {
            _ if n.rel.is_empty() => (0, "/"),
            Some((p, name)) => (inos[p], name),
            None => (1, n.rel.as_str()),
        };
        inos.insert(&n.rel, ino);
        let m = &n.meta;
        c.execute(
            "INSERT INTO inode VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            rusqlite::params![
                ino,
                parent,
                name,
                m.size() as i64,
                m.uid(),
                m.gid(),
                m.mode(),
                m.rdev() as i64,
                m.ctime(),
                m.mtime()
            ],
        )
        .unwrap();
        if let Some(t) = &n.target {
            c.execute(
                "INSERT INTO extra VALUES (?1, ?2)",
                rusqlite::params![ino, t],
            )
            .unwrap();
        }
        for (b, _) in &n.blocks {
            let BlockRef::V2 { id, key } = b else {
                panic!("v2 block")
            };
            c.execute(
                "INSERT INTO block VALUES (?1, ?2, ?3)",
                rusqlite::params![ino, &id[..], &key[..]],
            )
            .unwrap();
        }
    }
}

/// A v1 `.flist` of `nodes`: Cap'n Proto `Dir`s and `ACI`s in `flistdb.sqlite3`, tar.gz'd.
fn write_v1(path: &Path, nodes: &[Node]) {
    let work = tempdir("v1w");
    let db = work.join("flistdb.sqlite3");
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch(
        "CREATE TABLE entries (key VARCHAR(64) PRIMARY KEY, value BLOB);
         CREATE TABLE metadata (key VARCHAR(64) PRIMARY KEY, value TEXT);",
    )
    .unwrap();
    let put = |key: &str, value: Vec<u8>| {
        c.execute(
            "INSERT OR REPLACE INTO entries VALUES (?1, ?2)",
            rusqlite::params![key, value],
        )
        .unwrap();
    };
    let acl = |m: &fs::Metadata| -> String {
        let key = format!("acl-{}-{}-{:o}", m.uid(), m.gid(), m.mode() & 0o7777);
        let mut msg = capnp::message::Builder::new_default();
        let mut a = msg.init_root::<a_c_i::Builder>();
        a.set_uname("u");
        a.set_gname("g");
        a.set_mode((m.mode() & 0o7777) as u16);
        a.set_uid(i64::from(m.uid()));
        a.set_gid(i64::from(m.gid()));
        let mut out = Vec::new();
        capnp::serialize::write_message(&mut out, &msg).unwrap();
        put(&key, out);
        key
    };
    for d in nodes.iter().filter(|n| n.meta.is_dir()) {
        let kids: Vec<&Node> = nodes
            .iter()
            .filter(|n| !n.rel.is_empty() && n.rel.rsplit_once('/').map_or("", |(p, _)| p) == d.rel)
            .collect();
        // Small segments, so that real messages span several (far pointers).
        let mut msg = capnp::message::Builder::new(
            capnp::message::HeapAllocator::new()
                .first_segment_words(16)
                .allocation_strategy(capnp::message::AllocationStrategy::FixedSize),
        );
        let mut dm = msg.init_root::<dir::Builder>();
        dm.set_name(d.rel.rsplit('/').next().unwrap_or(""));
        dm.set_location(&d.rel);
        dm.set_parent("");
        dm.set_size(4096);
        dm.set_aclkey(acl(&d.meta));
        dm.set_modification_time(d.meta.mtime() as u32);
        let mut list = dm.init_contents(kids.len() as u32);
        for (i, k) in kids.iter().enumerate() {
            let mut ino = list.reborrow().get(i as u32);
            ino.set_name(k.rel.rsplit('/').next().unwrap());
            ino.set_size(k.meta.size());
            ino.set_aclkey(acl(&k.meta));
            ino.set_modification_time(k.meta.mtime() as u32);
            let at = ino.init_attributes();
            match kind_mode(&k.meta) {
                0o040000 => at.init_dir().set_key(dir_key(&k.rel)),
                0o100000 => {
                    let mut f = at.init_file();
                    f.set_block_size(128);
                    let mut bl = f.init_blocks(k.blocks.len() as u32);
                    for (j, (b, _)) in k.blocks.iter().enumerate() {
                        let BlockRef::V1 { id, key } = b else {
                            panic!("v1 block")
                        };
                        let mut e = bl.reborrow().get(j as u32);
                        e.set_hash(&id[..]);
                        e.set_key(&key[..]);
                    }
                }
                0o120000 => at.init_link().set_target(k.target.as_deref().unwrap()),
                t => {
                    use zos_netboot::fetch::flist::flist_capnp::special::Type;
                    let mut s = at.init_special();
                    let (ty, data) = match t {
                        0o020000 => (
                            Type::Chardev,
                            format!(
                                "{},{}",
                                nix::sys::stat::major(k.meta.rdev()),
                                nix::sys::stat::minor(k.meta.rdev())
                            ),
                        ),
                        0o060000 => (
                            Type::Block,
                            format!(
                                "{},{}",
                                nix::sys::stat::major(k.meta.rdev()),
                                nix::sys::stat::minor(k.meta.rdev())
                            ),
                        ),
                        0o010000 => (Type::Fifopipe, String::new()),
                        _ => (Type::Socket, String::new()),
                    };
                    s.set_type(ty);
                    s.set_data(data.as_bytes());
                }
            }
        }
        let mut out = Vec::new();
        capnp::serialize::write_message(&mut out, &msg).unwrap();
        put(&dir_key(&d.rel), out);
    }
    drop(c);
    let st = Command::new("timeout")
        .args(["-k", "5", "60", "tar", "-C"])
        .arg(&work)
        .args(["-czf"])
        .arg(path)
        .arg("flistdb.sqlite3")
        .status()
        .unwrap();
    assert!(st.success(), "tar");
    fs::remove_dir_all(&work).unwrap();
}

/// The extracted tree equals the source: types, modes, sizes, contents, link targets,
/// mtimes, and (as root) owners and device numbers.
fn assert_same_tree(src: &Path, out: &Path, root_user: bool) {
    let a = walk(src);
    let b = walk(out);
    let names = |v: &[(String, fs::Metadata)]| v.iter().map(|x| x.0.clone()).collect::<Vec<_>>();
    assert_eq!(names(&a), names(&b), "same paths");
    for ((rel, ma), (_, mb)) in a.iter().zip(&b) {
        assert_eq!(ma.mode(), mb.mode(), "{rel}: mode");
        if rel.is_empty() {
            continue; // the root directory is the caller's
        }
        assert_eq!(ma.mtime(), mb.mtime(), "{rel}: mtime");
        if root_user {
            assert_eq!((ma.uid(), ma.gid()), (mb.uid(), mb.gid()), "{rel}: owner");
            assert_eq!(ma.rdev(), mb.rdev(), "{rel}: rdev");
        }
        if ma.is_file() {
            assert_eq!(
                fs::read(src.join(rel)).unwrap(),
                fs::read(out.join(rel)).unwrap(),
                "{rel}"
            );
        }
        if ma.file_type().is_symlink() {
            assert_eq!(
                fs::read_link(src.join(rel)).unwrap(),
                fs::read_link(out.join(rel)).unwrap()
            );
        }
    }
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

#[test]
fn extract_both_formats_from_a_dir_store_equals_the_source() {
    let root_user = is_root();
    let base = tempdir("dir");
    let src = base.join("src");
    fs::create_dir(&src).unwrap();
    make_source(&src, root_user);
    for v1 in [false, true] {
        let tag = if v1 { "v1" } else { "v2" };
        let ns = nodes(&src, v1);
        let store = base.join(format!("store-{tag}"));
        fill_dir_store(&store, &ns);
        let fl = base.join(format!("test.{tag}"));
        if v1 {
            write_v1(&fl, &ns)
        } else {
            write_v2(&fl, &ns)
        }
        let out = base.join(format!("out-{tag}"));
        fs::create_dir(&out).unwrap();
        let store_url = format!("dir://{}", store.display());
        let o = run(&[
            "flist",
            "extract",
            fl.to_str().unwrap(),
            "--to",
            out.to_str().unwrap(),
            "--store",
            &store_url,
        ]);
        assert!(o.status.success(), "{tag}: {}", stderr(&o));
        assert!(stderr(&o).contains("done in"), "{tag}: {}", stderr(&o));
        // Same listing as the source tree, then the same files.
        let listed = run(&["flist", "list", fl.to_str().unwrap(), "--json"]);
        assert_eq!(
            String::from_utf8_lossy(&listed.stdout).lines().count(),
            ns.len()
        );
        assert_same_tree(&src, &out, root_user);
        if !root_user {
            assert!(stderr(&o).contains("owners not set"), "{}", stderr(&o));
        }
        // No temporary directory left behind.
        assert!(!fs::read_dir(&out).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with(".zos-flist")));
    }
    fs::remove_dir_all(&base).unwrap();
}

// ------------------------------------------------------------------------------------------
// Redis as a 0-db

struct Redis {
    child: Child,
    port: u16,
}

impl Drop for Redis {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// Stops a server started under `timeout`: SIGTERM, which `timeout` passes on to the server
/// (a SIGKILL would end `timeout` alone and leave the server running), then waits.
fn stop(child: &mut Child) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let _ = child.wait();
}

fn start_redis(test: &str) -> Option<Redis> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let child = Command::new("timeout")
        .args(["-k", "5", "300", "redis-server", "--port"])
        .arg(port.to_string())
        .args([
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--databases",
            "4",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            skip(test, &format!("needs redis-server ({e})"));
            return None;
        }
    };
    // Ready when it says so (the log line), not after a sleep.
    let mut lines = BufReader::new(child.stdout.take()?).lines();
    let ready = lines
        .by_ref()
        .take(200)
        .any(|l| l.is_ok_and(|l| l.contains("Ready to accept connections")));
    if !ready {
        stop(&mut child);
        skip(test, "needs redis-server (it did not get ready)");
        return None;
    }
    std::thread::spawn(move || lines.for_each(drop));
    Some(Redis { child, port })
}

fn resp(stream: &mut std::net::TcpStream, args: &[&[u8]]) -> Vec<u8> {
    let mut req = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        req.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        req.extend_from_slice(a);
        req.extend_from_slice(b"\r\n");
    }
    stream.write_all(&req).unwrap();
    let mut line = [0u8; 5];
    stream.read_exact(&mut line).unwrap();
    line.to_vec()
}

fn fill_redis(port: u16, db: &str, blocks: &[(BlockRef, Vec<u8>)], corrupt: Option<usize>) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    assert_eq!(&resp(&mut s, &[b"SELECT", db.as_bytes()]), b"+OK\r\n");
    let bad = corrupt.map(|i| blocks[i].0);
    for (b, stored) in blocks {
        let mut v = stored.clone();
        // Every copy of that block (two files share it).
        if bad.as_ref() == Some(b) {
            let mid = v.len() / 2;
            v[mid] ^= 0xff;
        }
        assert_eq!(&resp(&mut s, &[b"SET", b.id(), &v]), b"+OK\r\n");
    }
}

#[test]
fn extract_from_redis_and_fail_over_a_corrupted_block() {
    let test = "extract_from_redis_and_fail_over_a_corrupted_block";
    let Some(redis) = start_redis(test) else {
        return;
    };
    let root_user = is_root();
    let base = tempdir("zdb");
    let src = base.join("src");
    fs::create_dir(&src).unwrap();
    make_source(&src, root_user);
    for v1 in [true, false] {
        let tag = if v1 { "v1" } else { "v2" };
        let ns = nodes(&src, v1);
        let good = base.join(format!("good-{tag}"));
        let blocks = fill_dir_store(&good, &ns);
        let fl = base.join(format!("test.{tag}"));
        if v1 {
            write_v1(&fl, &ns)
        } else {
            write_v2(&fl, &ns)
        }

        // Namespace 1 (SELECT 1) holds every block intact: extract from it alone.
        fill_redis(redis.port, "1", &blocks, None);
        let out = base.join(format!("out-ns-{tag}"));
        fs::create_dir(&out).unwrap();
        let url = format!("zdb://127.0.0.1:{}/1", redis.port);
        let o = run(&[
            "flist",
            "extract",
            fl.to_str().unwrap(),
            "--to",
            out.to_str().unwrap(),
            "--store",
            &url,
        ]);
        assert!(o.status.success(), "{tag}: {}", stderr(&o));
        assert_same_tree(&src, &out, root_user);

        // The default namespace has one block corrupted (the first of the big file): it must
        // come from the second store, and the first be named on the console.
        let big = blocks.iter().position(|(_, s)| s.len() > 1000).unwrap();
        fill_redis(redis.port, "0", &blocks, Some(big));
        let url0 = format!("zdb://127.0.0.1:{}", redis.port);
        // Alone, the corrupted store fails the flist and nothing is left in the root.
        let out = base.join(format!("out-bad-{tag}"));
        fs::create_dir(&out).unwrap();
        let o = run(&[
            "flist",
            "extract",
            fl.to_str().unwrap(),
            "--to",
            out.to_str().unwrap(),
            "--store",
            &url0,
        ]);
        assert!(!o.status.success(), "{tag}: a corrupted block was accepted");
        assert!(stderr(&o).contains("served a bad block"), "{}", stderr(&o));
        assert_eq!(
            fs::read_dir(&out).unwrap().count(),
            0,
            "{tag}: a failed flist left files"
        );
        // With a second store, it completes from there.
        let out = base.join(format!("out-failover-{tag}"));
        fs::create_dir(&out).unwrap();
        let good_url = format!("dir://{}", good.display());
        let o = run(&[
            "flist",
            "extract",
            fl.to_str().unwrap(),
            "--to",
            out.to_str().unwrap(),
            "--store",
            &url0,
            "--store",
            &good_url,
        ]);
        assert!(o.status.success(), "{tag}: {}", stderr(&o));
        let e = stderr(&o);
        assert!(
            e.contains(&format!(
                "store {url0} served a bad block {}",
                hex(blocks[big].0.id())
            )),
            "{e}"
        );
        assert_same_tree(&src, &out, root_user);
    }
    drop(redis);
    fs::remove_dir_all(&base).unwrap();
}

// ------------------------------------------------------------------------------------------
// Refusals

#[test]
fn truncated_hostile_and_oversized_flists_are_refused_and_write_nothing() {
    let base = tempdir("bad");
    let src = base.join("src");
    fs::create_dir(&src).unwrap();
    make_source(&src, false);
    let ns = nodes(&src, false);
    let store = base.join("store");
    fill_dir_store(&store, &ns);
    let store_url = format!("dir://{}", store.display());
    let fl = base.join("good.fl");
    write_v2(&fl, &ns);
    let v1 = base.join("good.flist");
    write_v1(&v1, &nodes(&src, true));
    let out = base.join("out");
    fs::create_dir(&out).unwrap();
    let extract = |f: &Path, extra: &[&str]| {
        let mut args = vec![
            "flist",
            "extract",
            f.to_str().unwrap(),
            "--to",
            out.to_str().unwrap(),
            "--store",
            &store_url,
        ];
        args.extend_from_slice(extra);
        run(&args)
    };
    // Truncated, both formats.
    for (good, name) in [(&fl, "cut.fl"), (&v1, "cut.flist")] {
        let bytes = fs::read(good).unwrap();
        let cut = base.join(name);
        fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
        let o = run(&["flist", "list", cut.to_str().unwrap()]);
        assert!(
            !o.status.success() && stderr(&o).contains("flist"),
            "{name}: {}",
            stderr(&o)
        );
        assert!(!extract(&cut, &[]).status.success());
    }
    // A `..` name.
    let evil = base.join("evil.fl");
    fs::copy(&fl, &evil).unwrap();
    let c = rusqlite::Connection::open(&evil).unwrap();
    c.execute("UPDATE inode SET name = '..' WHERE name = 'hosts'", [])
        .unwrap();
    drop(c);
    let o = extract(&evil, &[]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("name is . or .."), "{}", stderr(&o));
    // More bytes than allowed.
    let o = extract(&fl, &["--max-bytes", "1000"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("more than the 1000 bytes"),
        "{}",
        stderr(&o)
    );
    // An existing symlink where the flist has a directory is refused, not followed.
    std::os::unix::fs::symlink(&base, out.join("etc")).unwrap();
    let o = extract(&fl, &[]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("/etc: a non-directory"),
        "{}",
        stderr(&o)
    );
    assert!(!base.join("hosts").exists());
    fs::remove_file(out.join("etc")).unwrap();
    // A block missing from the only store: the flist fails, and nothing is left behind.
    let big = ns.iter().find(|n| n.blocks.len() > 1).unwrap();
    fs::remove_file(store.join(hex(big.blocks[1].0.id()))).unwrap();
    let o = extract(&fl, &[]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("not found"), "{}", stderr(&o));
    assert_eq!(
        fs::read_dir(&out).unwrap().count(),
        0,
        "something was left in the root"
    );
    let _ = Kind::File;
    fs::remove_dir_all(&base).unwrap();
}

#[test]
fn extract_works_without_root() {
    let test = "extract_works_without_root";
    let base = tempdir("user");
    fs::set_permissions(&base, fs::Permissions::from_mode(0o755)).unwrap();
    let src = base.join("src");
    fs::create_dir(&src).unwrap();
    make_source(&src, false);
    let ns = nodes(&src, true);
    let store = base.join("store");
    fill_dir_store(&store, &ns);
    let fl = base.join("t.flist");
    write_v1(&fl, &ns);
    let out = base.join("out");
    fs::create_dir(&out).unwrap();
    let store_url = format!("dir://{}", store.display());
    let args = [
        "flist",
        "extract",
        fl.to_str().unwrap(),
        "--to",
        out.to_str().unwrap(),
        "--store",
        &store_url,
    ];
    // As root, drop to nobody for the run (setpriv); otherwise this already is the case.
    let o = if is_root() {
        nix::unistd::chown(&out, Some(65534.into()), Some(65534.into())).unwrap();
        let o = Command::new("timeout")
            .args([
                "-k",
                "5",
                "120",
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                BIN,
            ])
            .args(args)
            .output();
        match o {
            Ok(o) => o,
            Err(e) => {
                skip(test, &format!("needs setpriv to drop root ({e})"));
                return;
            }
        }
    } else {
        run(&args)
    };
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("not root: owners not set"),
        "{}",
        stderr(&o)
    );
    assert_same_tree(&src, &out, false);
    if is_root() {
        let m = fs::symlink_metadata(out.join("etc/hosts")).unwrap();
        assert_eq!(m.uid(), 65534, "files belong to the user who ran it");
    }
    fs::remove_dir_all(&base).unwrap();
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        stop(&mut self.0);
    }
}

/// Python's http.server on 127.0.0.1 serving `dir` (flat `<hex id>` files: the store's first
/// URL form `hh/<hex>` is a 404, the second is found).
fn http_server(test: &str, dir: &Path) -> Option<(Server, u16)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let child = Command::new("timeout")
        .args([
            "-k",
            "5",
            "300",
            "/usr/bin/python3",
            "-u",
            "-m",
            "http.server",
        ])
        .arg(port.to_string())
        .args(["--bind", "127.0.0.1", "--directory"])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            skip(test, &format!("needs /usr/bin/python3 ({e})"));
            return None;
        }
    };
    let mut lines = BufReader::new(child.stdout.take()?).lines();
    if !lines
        .by_ref()
        .take(20)
        .any(|l| l.is_ok_and(|l| l.contains("Serving HTTP")))
    {
        skip(test, "python3 -m http.server did not start");
        return None;
    }
    std::thread::spawn(move || lines.for_each(drop));
    Some((Server(child), port))
}

#[test]
fn extract_from_http_and_past_a_down_and_a_stalled_store() {
    let test = "extract_from_http_and_past_a_down_and_a_stalled_store";
    let base = tempdir("http");
    let src = base.join("src");
    fs::create_dir(&src).unwrap();
    make_source(&src, false);
    let ns = nodes(&src, false);
    let good = base.join("good");
    fill_dir_store(&good, &ns);
    let fl = base.join("t.fl");
    write_v2(&fl, &ns);
    let good_url = format!("dir://{}", good.display());
    let extract = |name: &str, stores: &[&str]| {
        let out = base.join(name);
        fs::create_dir(&out).unwrap();
        let mut args = vec![
            "flist",
            "extract",
            fl.to_str().unwrap(),
            "--to",
            out.to_str().unwrap(),
            "--timeout",
            "1",
        ];
        for s in stores {
            args.extend_from_slice(&["--store", s]);
        }
        (run(&args), out)
    };

    // An http store alone.
    let Some((server, port)) = http_server(test, &good) else {
        return;
    };
    let (o, out) = extract("out-http", &[&format!("http://127.0.0.1:{port}")]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_same_tree(&src, &out, false);
    drop(server);

    // A store that refuses connections, then the good one.
    let down = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (o, out) = extract("out-down", &[&format!("zdb://127.0.0.1:{down}"), &good_url]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_same_tree(&src, &out, false);

    // A store that accepts and never answers: each worker gives up on it after two timeouts.
    let stall = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let stall_port = stall.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in stall.incoming().take(64) {
            held.push(c);
        }
    });
    let t = std::time::Instant::now();
    let (o, out) = extract(
        "out-stall",
        &[&format!("zdb://127.0.0.1:{stall_port}"), &good_url],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_same_tree(&src, &out, false);
    assert!(
        t.elapsed() < std::time::Duration::from_secs(30),
        "took {:?}",
        t.elapsed()
    );
    fs::remove_dir_all(&base).unwrap();
}

#[test]
fn a_second_flist_merges_into_the_same_root() {
    let base = tempdir("merge");
    let (a, b) = (base.join("a"), base.join("b"));
    fs::create_dir(&a).unwrap();
    make_source(&a, false);
    // The second tree: shares /etc and /bin, adds a file to /etc, replaces /bin/big.
    fs::create_dir_all(b.join("etc")).unwrap();
    fs::create_dir_all(b.join("bin")).unwrap();
    fs::write(b.join("etc/zinit.yaml"), b"exec: /bin/true\n").unwrap();
    fs::write(b.join("bin/big"), b"now small\n").unwrap();
    fs::set_permissions(b.join("etc"), fs::Permissions::from_mode(0o711)).unwrap();
    let store = base.join("store");
    let (na, nb) = (nodes(&a, false), nodes(&b, true));
    fill_dir_store(&store, &na);
    fill_dir_store(&store, &nb);
    let (fa, fb) = (base.join("a.fl"), base.join("b.flist"));
    write_v2(&fa, &na);
    write_v1(&fb, &nb);
    let out = base.join("out");
    fs::create_dir(&out).unwrap();
    let store_url = format!("dir://{}", store.display());
    for f in [&fa, &fb] {
        let o = run(&[
            "flist",
            "extract",
            f.to_str().unwrap(),
            "--to",
            out.to_str().unwrap(),
            "--store",
            &store_url,
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    assert_eq!(fs::read(out.join("bin/big")).unwrap(), b"now small\n");
    assert_eq!(
        fs::read(out.join("etc/zinit.yaml")).unwrap(),
        b"exec: /bin/true\n"
    );
    assert_eq!(
        fs::read(out.join("etc/hosts")).unwrap(),
        fs::read(a.join("etc/hosts")).unwrap()
    );
    assert!(out.join("etc/deep/er/secret").exists());
    // The merged directory takes the later flist's mode.
    assert_eq!(
        fs::metadata(out.join("etc")).unwrap().mode() & 0o7777,
        0o711
    );
    // A flist with a file where the root has a directory is refused whole.
    let c = base.join("c");
    fs::create_dir_all(c.join("new")).unwrap();
    fs::write(c.join("new/file"), b"x").unwrap();
    fs::write(c.join("etc"), b"not a dir").unwrap();
    let nc = nodes(&c, false);
    fill_dir_store(&store, &nc);
    let fc = base.join("c.fl");
    write_v2(&fc, &nc);
    let o = run(&[
        "flist",
        "extract",
        fc.to_str().unwrap(),
        "--to",
        out.to_str().unwrap(),
        "--store",
        &store_url,
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("/etc: a directory is there"),
        "{}",
        stderr(&o)
    );
    assert!(
        !out.join("new").exists(),
        "part of a refused flist was moved in"
    );
    fs::remove_dir_all(&base).unwrap();
}
