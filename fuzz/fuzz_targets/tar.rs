//! Archives as the hub serves them (tar, tar.gz, tar.zst), unpacked by the installer into a
//! scratch directory: whatever the bytes, nothing may be written outside it.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use zos_netboot::fetch::install;

fuzz_target!(|data: &[u8]| {
    let base = PathBuf::from(std::env::var_os("ZOS_FUZZ_TMP").unwrap_or_else(|| "/dev/shm".into()))
        .join(format!("zos-fuzz-tar-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let target = base.join("root");
    std::fs::create_dir_all(&target).unwrap();
    let archive = base.join("archive");
    std::fs::write(&archive, data).unwrap();
    let policy = install::Policy {
        max_entries: 2000,
        max_bytes: 4 << 20,
        ..install::Policy::ROOTFS
    };
    let _ = install::unpack_with(&archive, &target, &policy);
    // Only the archive and the target may exist in the scratch directory.
    let mut names: Vec<_> = std::fs::read_dir(&base)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec!["archive", "root"],
        "something was written beside the target"
    );
    std::fs::remove_dir_all(&base).unwrap();
});
