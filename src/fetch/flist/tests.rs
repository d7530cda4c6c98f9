//! Unit tests of the readers, blocks and stores (the end-to-end tests are tests/flist.rs).
use super::block::{decode, encode_v1, encode_v2, xxtea_decrypt, xxtea_encrypt};
use super::store::{read_reply, Reply, Store};
use super::*;

/// A v2 database built with SQL, returned as file bytes.
fn v2_db(sql: &str) -> Vec<u8> {
    let mut c = rusqlite::Connection::open_in_memory().expect("sqlite");
    c.execute_batch(
        "CREATE TABLE inode (ino INTEGER PRIMARY KEY AUTOINCREMENT, parent INTEGER,
            name VARCHAR(255), size INTEGER, uid INTEGER, gid INTEGER, mode INTEGER,
            rdev INTEGER, ctime INTEGER, mtime INTEGER);
         CREATE TABLE extra (ino INTEGER PRIMARY KEY, data VARCHAR(4096));
         CREATE TABLE block (ino INTEGER, id VARCHAR(32), key VARCHAR(32));
         CREATE TABLE tag (key VARCHAR(10) PRIMARY KEY, value VARCHAR(255));
         CREATE TABLE route (start integer, end integer, url VARCHAR(2048));
         INSERT INTO inode VALUES (1, 0, '/', 4096, 0, 0, 16877, 0, 0, 100);",
    )
    .expect("schema");
    c.execute_batch(sql).expect("rows");
    let data = c.serialize(rusqlite::MAIN_DB).expect("serialize");
    data.to_vec()
}

fn err_of(bytes: &[u8]) -> String {
    match parse(bytes) {
        Ok(f) => panic!("accepted: {:?}", f.entries),
        Err(e) => e.to_string(),
    }
}

#[test]
fn v2_reads_modes_owners_links_devices_and_gid_from_its_own_column() {
    let (b, _) = encode_v2(b"hello");
    let BlockRef::V2 { id, key } = b else {
        panic!()
    };
    let sql = format!(
        "INSERT INTO inode VALUES (2, 1, 'etc', 4096, 0, 0, {}, 0, 0, 7);
         INSERT INTO inode VALUES (3, 2, 'hosts', 5, 1000, 2000, {}, 0, 0, 8);
         INSERT INTO inode VALUES (4, 1, 'lnk', 8, 0, 0, {}, 0, 0, 9);
         INSERT INTO inode VALUES (5, 1, 'null', 0, 0, 0, {}, {}, 0, 9);
         INSERT INTO extra VALUES (4, '/etc/hosts');
         INSERT INTO block VALUES (3, x'{}', x'{}');
         INSERT INTO route VALUES (0, 255, 'dir:///tmp/store0');",
        0o40750,
        0o104755,
        0o120777,
        0o20666,
        v1::makedev(1, 3),
        hex(&id),
        hex(&key)
    );
    let f = parse(&v2_db(&sql)).expect("parse");
    assert_eq!(f.format, Format::V2);
    let paths: Vec<&str> = f.entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["/", "/etc", "/etc/hosts", "/lnk", "/null"]);
    let etc = &f.entries[1];
    assert_eq!((etc.kind, etc.mode, etc.mtime), (Kind::Dir, 0o750, 7));
    let hosts = &f.entries[2];
    assert_eq!((hosts.uid, hosts.gid, hosts.mode), (1000, 2000, 0o4755));
    assert_eq!(hosts.blocks, vec![b]);
    assert_eq!(f.entries[3].target.as_deref(), Some("/etc/hosts"));
    assert_eq!(
        (f.entries[4].kind, f.entries[4].rdev),
        (Kind::Char, v1::makedev(1, 3))
    );
    assert_eq!(f.routes[0].url, "dir:///tmp/store0");
    let json = entry_json(hosts);
    assert!(json.contains(r#""mode":"4755""#), "{json}");
}

#[test]
fn v2_hostile_names_are_refused() {
    for name in ["..", ".", "a/b", "", "a\u{0}b"] {
        let sql = format!(
            "INSERT INTO inode VALUES (2, 1, '{}', 0, 0, 0, {}, 0, 0, 0);",
            name.replace('\0', "' || char(0) || '"),
            0o100644
        );
        let e = err_of(&v2_db(&sql));
        assert!(e.contains("name"), "{name:?}: {e}");
    }
}

#[test]
fn v2_duplicates_orphans_loops_and_bad_sizes_are_refused() {
    let dup = format!(
        "INSERT INTO inode VALUES (2, 1, 'a', 0, 0, 0, {m}, 0, 0, 0);
         INSERT INTO inode VALUES (3, 1, 'a', 0, 0, 0, {m}, 0, 0, 0);",
        m = 0o100644
    );
    assert!(err_of(&v2_db(&dup)).contains("duplicate path /a"));
    let lp = format!(
        "INSERT INTO inode VALUES (2, 3, 'a', 0, 0, 0, {m}, 0, 0, 0);
         INSERT INTO inode VALUES (3, 2, 'b', 0, 0, 0, {m}, 0, 0, 0);",
        m = 0o40755
    );
    assert!(err_of(&v2_db(&lp)).contains("not reachable"));
    let (b, _) = encode_v2(b"x");
    let BlockRef::V2 { id, key } = b else {
        panic!()
    };
    let size = format!(
        "INSERT INTO inode VALUES (2, 1, 'a', 0, 0, 0, {}, 0, 0, 0);
         INSERT INTO block VALUES (2, x'{}', x'{}');",
        0o100644,
        hex(&id),
        hex(&key)
    );
    assert!(err_of(&v2_db(&size)).contains("does not match"));
    let huge = format!(
        "INSERT INTO inode VALUES (2, 1, 'a', 99999999999, 0, 0, {}, 0, 0, 0);
         INSERT INTO block VALUES (2, x'{}', x'{}');",
        0o100644,
        hex(&id),
        hex(&key)
    );
    assert!(err_of(&v2_db(&huge)).contains("more than its 1 blocks"));
    let child_of_file = format!(
        "INSERT INTO inode VALUES (2, 1, 'f', 0, 0, 0, {}, 0, 0, 0);
         INSERT INTO inode VALUES (3, 2, 'g', 0, 0, 0, {}, 0, 0, 0);",
        0o100644, 0o100644
    );
    assert!(err_of(&v2_db(&child_of_file)).contains("with children"));
    let two_roots = "INSERT INTO inode VALUES (2, 0, 'x', 0, 0, 0, 16877, 0, 0, 0);";
    assert!(err_of(&v2_db(two_roots)).contains("2 root inodes"));
    let link_without_target = format!(
        "INSERT INTO inode VALUES (2, 1, 'l', 0, 0, 0, {}, 0, 0, 0);",
        0o120777
    );
    assert!(err_of(&v2_db(&link_without_target)).contains("without a target"));
}

#[test]
fn truncated_and_foreign_files_are_refused_with_a_reason() {
    let db = v2_db("");
    let e = err_of(&db[..db.len() / 2]);
    assert!(e.contains("v2 flist"), "{e}");
    assert!(err_of(b"<html>").contains("not a flist"));
    assert!(err_of(b"").contains("empty"));
    // A gzip header cut short and a gzip stream cut short.
    assert!(err_of(&[0x1f, 0x8b, 8, 0, 0, 0]).contains("gzip"));
    let gz = [
        0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0x4b, 0x4c, 0x4a, 6, 0, 0, 0, 0, 0,
    ];
    assert!(err_of(&gz).contains("v1 flist"));
}

#[test]
fn blocks_round_trip_and_every_hash_is_checked() {
    for len in [1usize, 3, 4, 5, 7, 8, 100, 4096, 524_288] {
        let plain: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        for (b, stored) in [encode_v1(&plain), encode_v2(&plain)] {
            assert_eq!(decode(&b, &stored).expect("decode"), plain);
            // One flipped byte: the id no longer matches.
            let mut bad = stored.clone();
            bad[stored.len() / 2] ^= 1;
            assert!(decode(&b, &bad)
                .unwrap_err()
                .to_string()
                .contains("id mismatch"));
            // Another block's bytes under this id: refused too.
            let (_, other) = encode_v1(b"other");
            assert!(decode(&b, &other).is_err());
        }
    }
}

#[test]
fn a_matching_id_with_a_wrong_key_is_refused() {
    // The id is right (it hashes the stored bytes), but the plain does not hash to the key.
    let (b, stored) = encode_v1(b"some plain bytes");
    let BlockRef::V1 { id, mut key } = b else {
        panic!()
    };
    key[0] ^= 1;
    let e = decode(&BlockRef::V1 { id, key }, &stored)
        .unwrap_err()
        .to_string();
    assert!(e.contains("XXTEA") || e.contains("key"), "{e}");
    let (b, stored) = encode_v2(b"some plain bytes");
    let BlockRef::V2 { id, mut key } = b else {
        panic!()
    };
    key[31] ^= 1; // the nonce (key[..12]) stays, the AES key changes
    let e = decode(&BlockRef::V2 { id, key }, &stored)
        .unwrap_err()
        .to_string();
    assert!(e.contains("does not open"), "{e}");
}

#[test]
fn xxtea_matches_its_definition_and_round_trips() {
    let key = *b"0123456789abcdef";
    for len in 1usize..40 {
        let data: Vec<u8> = (0..len as u8).collect();
        let c = xxtea_encrypt(&data, &key);
        assert_eq!(c.len(), len.div_ceil(4) * 4 + 4);
        if len > 0 {
            assert_ne!(&c[..len], &data[..]);
        }
        assert_eq!(xxtea_decrypt(&c, &key).expect("decrypt"), data);
    }
    assert!(xxtea_decrypt(&[1, 2, 3], &key).is_err());
    assert!(xxtea_decrypt(&xxtea_encrypt(b"hello world", &key), b"fedcba9876543210").is_err());
}

#[test]
fn xxtea_known_answer() {
    // Reference: the published XXTEA (Wheeler & Needham's corrected block TEA) on the words
    // [data..., len], computed by tests/flist/xxtea_vector.py.
    let c = xxtea_encrypt(b"abcd", &[0u8; 16]);
    assert_eq!(
        hex(&c),
        include_str!("../../../tests/flist/xxtea_vector.txt").trim()
    );
}

#[test]
fn store_urls() {
    assert_eq!(
        Store::parse("zdb://hub.grid.tf:9900").unwrap(),
        Store::Zdb {
            host: "hub.grid.tf".into(),
            port: 9900,
            namespace: None,
            password: None
        }
    );
    assert_eq!(
        Store::parse("zdb://:secret@[::1]:9901/ns1").unwrap(),
        Store::Zdb {
            host: "::1".into(),
            port: 9901,
            namespace: Some("ns1".into()),
            password: Some("secret".into())
        }
    );
    assert!(Store::parse("zdb://h:notaport").is_err());
    let Store::Zdb { password, .. } = Store::parse("zdb://:a%2Fb%40c@h/ns").unwrap() else {
        panic!("zdb")
    };
    assert_eq!(password.as_deref(), Some("a/b@c"));
    assert!(Store::parse("zdb://:bad%4@h/ns").is_err());
    assert!(Store::parse("dir://relative").is_err());
    assert!(Store::parse("ftp://x").is_err());
    assert_eq!(
        Store::parse("dir:///s").unwrap(),
        Store::Dir { path: "/s".into() }
    );
    assert_eq!(
        Store::parse("https://h/b/").unwrap(),
        Store::Http {
            base: "https://h/b".into()
        }
    );
    assert_eq!(
        Store::parse("zdb://:pw@h/ns").unwrap().name(),
        "zdb://h:9900/ns"
    );
}

#[test]
fn resp_replies() {
    let mut r = &b"$5\r\nhello\r\n$-1\r\n+OK\r\n-ERR no\r\n$3\r\nabcd\r\n"[..];
    assert_eq!(read_reply(&mut r), Ok(Reply::Bulk(Some(b"hello".to_vec()))));
    assert_eq!(read_reply(&mut r), Ok(Reply::Bulk(None)));
    assert_eq!(read_reply(&mut r), Ok(Reply::Status("OK".into())));
    assert_eq!(read_reply(&mut r), Ok(Reply::Error("ERR no".into())));
    assert!(read_reply(&mut r).is_err());
    let mut big = &b"$999999999\r\n"[..];
    assert!(read_reply(&mut big).unwrap_err().contains("more than"));
    let mut cut = &b"$5\r\nhel"[..];
    assert!(read_reply(&mut cut).is_err());
}

#[test]
fn finish_orders_parents_first_and_checks_names() {
    assert!(check_name("ok.txt").is_ok());
    for bad in ["", ".", "..", "a/b", "a\0"] {
        assert!(check_name(bad).is_err(), "{bad:?}");
    }
    assert!(check_name(&"x".repeat(256)).is_err());
    let e = |p: &str, kind| Entry {
        path: p.into(),
        kind,
        mode: 0o755,
        uid: 0,
        gid: 0,
        size: 0,
        mtime: 0,
        rdev: 0,
        target: None,
        blocks: vec![],
    };
    let got = finish(vec![
        e("/a-b", Kind::File),
        e("/a/c", Kind::File),
        e("/a", Kind::Dir),
        e("/", Kind::Dir),
    ])
    .unwrap();
    let paths: Vec<&str> = got.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["/", "/a", "/a/c", "/a-b"]);
    assert!(finish(vec![
        e("/", Kind::Dir),
        e("/f", Kind::File),
        e("/f/g", Kind::File)
    ])
    .is_err());
    assert!(finish(vec![e("/x", Kind::Dir)]).is_err());
}

/// A v1 directory message: with `file`, a file "hello" (one block), a link, and a
/// subdirectory "sub" under key `sub_key`; ACIs under "a1".
fn v1_dir_msg(name: &str, file: bool, file_name: &str, sub_key: &str) -> Vec<u8> {
    use super::flist_capnp::dir;
    let mut msg = capnp::message::Builder::new(
        capnp::message::HeapAllocator::new()
            .first_segment_words(8)
            .allocation_strategy(capnp::message::AllocationStrategy::FixedSize),
    );
    let mut d = msg.init_root::<dir::Builder>();
    d.set_name(name);
    d.set_size(4096);
    d.set_aclkey("a1");
    d.set_modification_time(1_600_000_000);
    let mut list = d.init_contents(if file { 3 } else { 0 });
    if file {
        let (b, _) = encode_v1(b"hello");
        let BlockRef::V1 { id, key } = b else {
            panic!()
        };
        let mut f = list.reborrow().get(0);
        f.set_name(file_name);
        f.set_size(5);
        f.set_aclkey("a1");
        let mut bl = f.init_attributes().init_file().init_blocks(1);
        bl.reborrow().get(0).set_hash(&id[..]);
        bl.reborrow().get(0).set_key(&key[..]);
        let mut l = list.reborrow().get(1);
        l.set_name("link");
        l.set_aclkey("a1");
        l.init_attributes().init_link().set_target("/etc/hosts");
        let mut s = list.reborrow().get(2);
        s.set_name("sub");
        s.set_aclkey("a1");
        s.init_attributes().init_dir().set_key(sub_key);
    }
    let mut out = Vec::new();
    capnp::serialize::write_message(&mut out, &msg).expect("write");
    out
}

fn v1_aci() -> Vec<u8> {
    use super::flist_capnp::a_c_i;
    let mut aci = capnp::message::Builder::new_default();
    let mut a = aci.init_root::<a_c_i::Builder>();
    a.set_uname("root");
    a.set_gname("root");
    a.set_mode(0o755);
    a.set_uid(0);
    a.set_gid(0);
    let mut aci_bytes = Vec::new();
    capnp::serialize::write_message(&mut aci_bytes, &aci).expect("write");
    aci_bytes
}

#[test]
fn v1_loops_and_hostile_names_are_refused() {
    let walk = |root: Vec<u8>, sub: Option<Vec<u8>>| {
        let mut kv = std::collections::HashMap::new();
        kv.insert(v1::dir_key(""), root);
        kv.insert("a1".to_string(), v1_aci());
        if let Some(sub) = sub {
            kv.insert("k1".to_string(), sub);
        }
        v1::walk(&kv).and_then(finish).map_err(|e| e.to_string())
    };
    let ok = walk(
        v1_dir_msg("", true, "hello", "k1"),
        Some(v1_dir_msg("sub", false, "", "")),
    );
    assert_eq!(ok.expect("valid").len(), 4);
    // The subdirectory is the root again: a loop.
    let root_key = v1::dir_key("");
    let e = walk(v1_dir_msg("", true, "hello", &root_key), None).unwrap_err();
    assert!(e.contains("reached twice"), "{e}");
    // The subdirectory's key is missing.
    let e = walk(v1_dir_msg("", true, "hello", "k1"), None).unwrap_err();
    assert!(e.contains("not in table entries"), "{e}");
    for bad in ["..", "a/b", ""] {
        let e = walk(
            v1_dir_msg("", true, bad, "k1"),
            Some(v1_dir_msg("sub", false, "", "")),
        )
        .unwrap_err();
        assert!(e.contains("name"), "{bad:?}: {e}");
    }
    // Garbage and a message cut short are errors, not panics.
    let mut cut = v1_dir_msg("", true, "hello", "k1");
    cut.truncate(cut.len() - 9);
    assert!(walk(cut, None).unwrap_err().contains("Cap'n Proto"));
    assert!(walk(vec![0xff; 64], None).is_err());
}

/// The committed fuzz seeds (fuzz/seeds/flist_v1, flist_v2) are valid inputs that the readers
/// accept; `ZOS_WRITE_FUZZ_SEEDS=1 cargo test --lib fuzz_seeds` rewrites them.
#[test]
fn fuzz_seeds_are_accepted() {
    let records: Vec<(&str, Vec<u8>)> = vec![
        ("", v1_dir_msg("", true, "hello", "k1")),
        ("a1", v1_aci()),
        ("k1", v1_dir_msg("sub", false, "", "")),
    ];
    let mut kv = std::collections::HashMap::new();
    let mut seed1 = Vec::new();
    for (i, (k, v)) in records.iter().enumerate() {
        let key = if i == 0 {
            v1::dir_key("")
        } else {
            k.to_string()
        };
        kv.insert(key, v.clone());
        if i > 0 {
            seed1.extend_from_slice(b"\n--\n");
        }
        seed1.extend_from_slice(k.as_bytes());
        seed1.push(0);
        seed1.extend_from_slice(v);
    }
    let entries = finish(v1::walk(&kv).expect("walk")).expect("finish");
    let paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["/", "/hello", "/link", "/sub"]);

    // flist_v2's row encoding: tag, then fields (see fuzz/fuzz_targets/flist_v2.rs).
    let (b, _) = encode_v2(b"hello");
    let BlockRef::V2 { id, key } = b else {
        panic!()
    };
    let mut seed2 = Vec::new();
    let inode = |s: &mut Vec<u8>, ino: u8, parent: u8, name: &str, size: u32, mode: u32| {
        s.extend_from_slice(&[0, ino, parent, name.len() as u8]);
        s.extend_from_slice(name.as_bytes());
        for v in [size, 0, 0, mode] {
            s.extend_from_slice(&v.to_be_bytes());
        }
        s.extend_from_slice(&[0, 0]);
        s.extend_from_slice(&1_600_000_000u32.to_be_bytes());
    };
    inode(&mut seed2, 1, 0, "/", 4096, 0o40755);
    inode(&mut seed2, 2, 1, "hello", 5, 0o100644);
    inode(&mut seed2, 3, 1, "link", 0, 0o120777);
    seed2.extend_from_slice(&[1, 3, 10]);
    seed2.extend_from_slice(b"/etc/hosts");
    seed2.extend_from_slice(&[2, 2, 32]);
    seed2.extend_from_slice(&id);
    seed2.push(32);
    seed2.extend_from_slice(&key);

    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    for (name, bytes) in [
        ("flist_v1/dir-file-link-sub", &seed1),
        ("flist_v2/rows-file-link", &seed2),
    ] {
        let p = root.join(name);
        if std::env::var_os("ZOS_WRITE_FUZZ_SEEDS").is_some() {
            std::fs::write(&p, bytes).expect("write seed");
        }
        assert_eq!(
            &std::fs::read(&p).expect("seed"),
            bytes,
            "{name}: rerun with ZOS_WRITE_FUZZ_SEEDS=1"
        );
    }
}

/// A dir store (rfs's flat layout) under the temp directory holding `blocks`; removed on drop.
struct TempStore(std::path::PathBuf);

impl TempStore {
    fn new(name: &str, blocks: &[&(BlockRef, Vec<u8>)]) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "zos-flist-test-{}-{name}-{:08x}",
            std::process::id(),
            fastrand::u32(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        for (b, stored) in blocks {
            std::fs::write(dir.join(b.id_hex()), stored).unwrap();
        }
        TempStore(dir)
    }
    fn url(&self) -> String {
        format!("dir://{}", self.0.display())
    }
}

impl Drop for TempStore {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// v2 blocks until one has an id starting below 0x80 and one at or above.
fn low_and_high_blocks() -> ((BlockRef, Vec<u8>), (BlockRef, Vec<u8>)) {
    let (mut low, mut high) = (None, None);
    for i in 0u32.. {
        let blk = encode_v2(format!("block {i}").as_bytes());
        match blk.0.id()[0] {
            0..=0x7f if low.is_none() => low = Some(blk),
            0x80..=0xff if high.is_none() => high = Some(blk),
            _ => {}
        }
        if let (Some(l), Some(h)) = (&low, &high) {
            return (l.clone(), h.clone());
        }
    }
    unreachable!()
}

#[test]
fn routes_choose_the_store_by_the_first_byte_of_the_block_id() {
    let (low, high) = low_and_high_blocks();
    // A serves 00..7f, B serves 80..ff. A also holds a spoiled copy of the high block: were
    // routes ignored, A would be asked for it first and named for a bad block.
    let mut spoiled = high.clone();
    spoiled.1[0] ^= 1;
    let a = TempStore::new("a", &[&low, &spoiled]);
    let b = TempStore::new("b", &[&high]);
    let mut stores = Stores::new(Vec::new());
    stores.add(&a.url(), 0, 0x7f).unwrap();
    stores.add(&b.url(), 0x80, 0xff).unwrap();
    assert_eq!(stores.list.len(), 2);
    let warnings = std::sync::Mutex::new(Vec::new());
    let warn = |m: String| warnings.lock().unwrap().push(m);
    let cache = Cache::new(0);
    let mut conns = store::Conns::default();
    let got = stores.get(&mut conns, &cache, &low.0, &warn).unwrap();
    assert_eq!(*got.0, block::decode(&low.0, &low.1).unwrap());
    assert_eq!(
        block::decode(&high.0, &high.1).unwrap(),
        *stores.get(&mut conns, &cache, &high.0, &warn).unwrap().0
    );
    assert!(warnings.lock().unwrap().is_empty(), "{:?}", warnings.lock());
    // B does not serve the low range: without A's route the low block is nowhere.
    let mut only_b = Stores::new(Vec::new());
    only_b.add(&b.url(), 0x80, 0xff).unwrap();
    let err = only_b
        .get(&mut conns, &cache, &low.0, &warn)
        .unwrap_err()
        .to_string();
    assert!(err.contains(&low.0.id_hex()), "{err}");
    assert!(
        err.contains(&format!(
            "no store serves ids starting with {:02x}",
            low.0.id()[0]
        )),
        "{err}"
    );
    // One URL on two routes is one store with both ranges.
    only_b.add(&b.url(), 0, 0x0f).unwrap();
    assert_eq!(only_b.list.len(), 1);
    assert_eq!(only_b.ranges[0], vec![(0x80, 0xff), (0, 0x0f)]);
    assert!(only_b.add(&b.url(), 9, 3).is_err());
}

#[test]
fn routes_over_one_range_are_alternatives_in_order() {
    let (low, high) = low_and_high_blocks();
    let mut spoiled = low.clone();
    spoiled.1[3] ^= 1;
    // Three routes over 00..ff: the first lacks the low block, the second spoils it, the third
    // has it; the high block is only on the first.
    let empty = TempStore::new("empty", &[&high]);
    let bad = TempStore::new("bad", &[&spoiled]);
    let good = TempStore::new("good", &[&low]);
    let mut stores = Stores::new(Vec::new());
    for s in [&empty, &bad, &good] {
        stores.add(&s.url(), 0, 255).unwrap();
    }
    let warnings = std::sync::Mutex::new(Vec::new());
    let warn = |m: String| warnings.lock().unwrap().push(m);
    let cache = Cache::new(0);
    let mut conns = store::Conns::default();
    let got = stores.get(&mut conns, &cache, &low.0, &warn).unwrap();
    assert_eq!(*got.0, block::decode(&low.0, &low.1).unwrap());
    let w = warnings.lock().unwrap().join("\n");
    assert!(w.contains(&bad.url()) && w.contains("bad block"), "{w}");
    assert!(!w.contains(&empty.url()), "{w}");
    assert!(stores.get(&mut conns, &cache, &high.0, &warn).is_ok());
}

#[test]
fn zdb_gets_are_pipelined_and_answered_in_order() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let blocks: Vec<(BlockRef, Vec<u8>)> = (0..3)
        .map(|i| encode_v2(format!("pipelined {i}").as_bytes()))
        .collect();
    let values: Vec<Vec<u8>> = blocks.iter().map(|b| b.1.clone()).collect();
    // A RESP server that answers nothing until all three GETs are in: a client waiting for
    // each answer before the next GET would stall here (and the test fail on its timeout).
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while got.windows(9).filter(|w| w == b"$3\r\nGET\r\n").count() < 3 {
            let n = s.read(&mut buf).expect("all three GETs before any answer");
            assert!(n > 0, "client closed");
            got.extend_from_slice(&buf[..n]);
        }
        for v in &values {
            s.write_all(format!("${}\r\n", v.len()).as_bytes()).unwrap();
            s.write_all(v).unwrap();
            s.write_all(b"\r\n").unwrap();
        }
        s.write_all(b"$-1\r\n").unwrap();
        let mut rest = [0u8; 1];
        let _ = s.read(&mut rest);
    });
    let mut stores = Stores::parse_all(&[format!("zdb://127.0.0.1:{port}")]).unwrap();
    stores.timeout = std::time::Duration::from_secs(5);
    let mut conns = store::Conns::default();
    for (b, _) in &blocks {
        assert!(conns.send(&stores, 0, b.id()));
    }
    let (missing, _) = encode_v2(b"not there");
    assert!(conns.send(&stores, 0, missing.id()));
    for (b, stored) in &blocks {
        match conns.reply(0) {
            Some(Ok(v)) => assert_eq!(&v, stored, "answer for {}", b.id_hex()),
            other => panic!("{other:?}"),
        }
    }
    assert!(matches!(conns.reply(0), Some(Err(store::Miss::NotFound))));
    // Nothing more is owed.
    assert!(conns.reply(0).is_none());
    drop(conns);
    server.join().unwrap();
}
