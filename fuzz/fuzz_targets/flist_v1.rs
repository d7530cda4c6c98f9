//! v1 flists' Cap'n Proto walk (`flist::v1::walk`): the directory and ACI messages a hub puts in
//! `flistdb.sqlite3`, as hostile as it likes (pointer loops, out-of-range and far pointers,
//! directories that name each other). Input: records `key \0 value` separated by `\n--\n`; the
//! first record's value is the root directory (its key is replaced by the root's key). Whatever
//! the bytes: no panic, no hang, and an accepted list has sane paths.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::collections::HashMap;
use zos_netboot::fetch::flist::{finish, v1};

fuzz_target!(|data: &[u8]| {
    let mut kv = HashMap::new();
    for (i, rec) in split(data, b"\n--\n").into_iter().enumerate() {
        let (key, value) = match rec.iter().position(|&b| b == 0) {
            Some(n) => (&rec[..n], &rec[n + 1..]),
            None => (&b""[..], rec),
        };
        let key = if i == 0 {
            v1::dir_key("")
        } else {
            String::from_utf8_lossy(key).into_owned()
        };
        kv.insert(key, value.to_vec());
    }
    if let Ok(entries) = v1::walk(&kv).and_then(finish) {
        for e in &entries {
            assert!(e.path.starts_with('/'));
            assert!(
                !e.path.split('/').any(|c| c == ".." || c == "."),
                "{}",
                e.path
            );
            assert!(!e.path.contains('\0'));
        }
    }
});

fn split<'a>(mut data: &'a [u8], sep: &[u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    while let Some(at) = data.windows(sep.len()).position(|w| w == sep) {
        out.push(&data[..at]);
        data = &data[at + sep.len()..];
    }
    out.push(data);
    out
}
