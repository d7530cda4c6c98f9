//! v2 flists' rows (`flist::v2::read`): an in-memory SQLite database in rfs's schema filled with
//! rows decoded from the input (inodes with any parent, name, mode, owner and size; link
//! targets; blocks of any length; routes), so the fuzzer reaches the reader's checks rather than
//! SQLite's file format. An input that starts like a SQLite file is parsed as one instead
//! (`flist::parse`). Whatever the bytes: no panic, and an accepted list has sane paths.
#![no_main]
use libfuzzer_sys::fuzz_target;
use zos_netboot::fetch::flist::{self, v2};

struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
    fn int(&mut self, n: usize) -> Option<i64> {
        let mut v: i64 = 0;
        for _ in 0..n {
            v = (v << 8) | i64::from(self.byte()?);
        }
        // sign-extend so negative values happen
        let shift = 64 - 8 * n as u32;
        Some((v << shift) >> shift)
    }
    fn bytes(&mut self) -> Option<Vec<u8>> {
        let n = usize::from(self.byte()? % 48);
        if self.0.len() < n {
            return None;
        }
        let (a, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(a.to_vec())
    }
}

fuzz_target!(|data: &[u8]| {
    if data.starts_with(b"SQLite format 3\0") {
        check(flist::parse(data));
        return;
    }
    let Ok(conn) = rusqlite::Connection::open_in_memory() else {
        return;
    };
    conn.execute_batch(
        "CREATE TABLE inode (ino INTEGER PRIMARY KEY AUTOINCREMENT, parent INTEGER,
            name VARCHAR(255), size INTEGER, uid INTEGER, gid INTEGER, mode INTEGER,
            rdev INTEGER, ctime INTEGER, mtime INTEGER);
         CREATE TABLE extra (ino INTEGER PRIMARY KEY, data VARCHAR(4096));
         CREATE TABLE block (ino INTEGER, id VARCHAR(32), key VARCHAR(32));
         CREATE TABLE route (start integer, end integer, url VARCHAR(2048));",
    )
    .unwrap();
    let mut c = Cursor(data);
    while let Some(tag) = c.byte() {
        let r = (|| -> Option<()> {
            match tag % 4 {
                0 => {
                    let row = (
                        c.int(1)?,
                        c.int(1)?,
                        c.bytes()?,
                        c.int(4)?,
                        c.int(4)?,
                        c.int(4)?,
                        c.int(4)?,
                        c.int(2)?,
                        c.int(4)?,
                    );
                    let _ = conn.execute(
                        "INSERT INTO inode VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 0, ?9)",
                        rusqlite::params![
                            row.0, row.1, row.2, row.3, row.4, row.5, row.6, row.7, row.8
                        ],
                    );
                }
                1 => {
                    let (ino, target) = (c.int(1)?, c.bytes()?);
                    let _ = conn.execute(
                        "INSERT INTO extra VALUES (?1, ?2)",
                        rusqlite::params![ino, target],
                    );
                }
                2 => {
                    let (ino, id, key) = (c.int(1)?, c.bytes()?, c.bytes()?);
                    let _ = conn.execute(
                        "INSERT INTO block VALUES (?1, ?2, ?3)",
                        rusqlite::params![ino, id, key],
                    );
                }
                _ => {
                    let (s, e, url) = (c.int(2)?, c.int(2)?, c.bytes()?);
                    let _ = conn.execute(
                        "INSERT INTO route VALUES (?1, ?2, ?3)",
                        rusqlite::params![s, e, url],
                    );
                }
            }
            Some(())
        })();
        if r.is_none() {
            break;
        }
    }
    check(v2::read(&conn));
});

fn check(r: Result<flist::Flist, flist::Error>) {
    if let Ok(f) = r {
        for e in &f.entries {
            assert!(e.path.starts_with('/'));
            assert!(
                !e.path.split('/').any(|c| c == ".." || c == "."),
                "{}",
                e.path
            );
            if e.kind == flist::Kind::File && e.size > 0 {
                assert!(!e.blocks.is_empty());
            }
        }
    }
}
