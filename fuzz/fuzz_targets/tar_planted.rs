//! Archives unpacked into a next root an earlier artifact already shaped: links to a sentinel
//! directory outside the root where an archive's directories usually are (`etc`, absolute;
//! `bin`, relative `../outside`; `usr/lib` one level down), the chain `a -> .`,
//! `b -> a/../..`, and links at the names of a leftover staging directory. Whatever the bytes,
//! nothing is written outside the root (issue 17, point 3): the scratch directory holds only
//! the archive, the root and `outside`, and `outside` holds only its sentinel, unchanged.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::os::unix::fs::symlink;
use std::path::PathBuf;
use zos_netboot::fetch::install;

fuzz_target!(|data: &[u8]| {
    let base = PathBuf::from(std::env::var_os("ZOS_FUZZ_TMP").unwrap_or_else(|| "/dev/shm".into()))
        .join(format!("zos-fuzz-tar-planted-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let target = base.join("root");
    let outside = base.join("outside");
    std::fs::create_dir_all(target.join("usr")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("sentinel"), "precious").unwrap();
    symlink(&outside, target.join("etc")).unwrap();
    symlink("../outside", target.join("bin")).unwrap();
    symlink(&outside, target.join("usr/lib")).unwrap();
    symlink(".", target.join("a")).unwrap();
    symlink("a/../..", target.join("b")).unwrap();
    let stale = format!(".zos-unpack-{}", std::process::id());
    symlink(&outside, target.join(&stale)).unwrap();
    symlink(&outside, target.join(format!("{stale}-0000000000000000"))).unwrap();
    let archive = base.join("archive");
    std::fs::write(&archive, data).unwrap();
    let policy = install::Policy {
        max_entries: 2000,
        max_bytes: 4 << 20,
        ..install::Policy::ROOTFS
    };
    let _ = install::unpack_with(&archive, &target, &policy);
    let mut names: Vec<_> = std::fs::read_dir(&base)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec!["archive", "outside", "root"],
        "something was written beside the root"
    );
    let inside: Vec<_> = std::fs::read_dir(&outside)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        inside,
        vec!["sentinel"],
        "something was written outside the root"
    );
    assert_eq!(
        std::fs::read(outside.join("sentinel")).unwrap(),
        b"precious",
        "the sentinel outside the root was changed"
    );
    std::fs::remove_dir_all(&base).unwrap();
});
