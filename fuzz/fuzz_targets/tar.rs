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
    // Every symlink the archive made, followed from outside (the kernel's view, not the
    // installer's lexical one): where it resolves, it resolves inside the target. A chain
    // (`a -> .`, `d/b -> a/../..`) is how a lexical check is fooled. Absolute links are allowed
    // by the rootfs policy (they mean the next root's `/`), so an archive with one is skipped.
    let canon_root = std::fs::canonicalize(&target).unwrap();
    let mut links = Vec::new();
    let mut todo = vec![target.clone()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => todo.push(e.path()),
                Ok(t) if t.is_symlink() => links.push(e.path()),
                _ => {}
            }
        }
    }
    let absolute = links
        .iter()
        .any(|l| std::fs::read_link(l).map_or(true, |t| t.is_absolute()));
    if !absolute {
        for l in &links {
            if let Ok(real) = std::fs::canonicalize(l) {
                assert!(
                    real.starts_with(&canon_root),
                    "{} resolves to {}, outside the target",
                    l.display(),
                    real.display()
                );
            }
        }
    }
    std::fs::remove_dir_all(&base).unwrap();
});
