//! The beneath-the-root writer (src/fetch/beneath.rs) against a next root an attacker shaped:
//! the input is a script, one step a line: `L name target` plants a symlink (as a rootfs
//! tarball could), `D name` makes a directory, `W path` writes a file through
//! `Root::write_file`. Whatever the script, nothing may appear outside the root: the scratch
//! directory holds only `root` and `outside`, and `outside` stays empty. Every symlink left in
//! the root is then followed from outside (the host's view, `canonicalize`) to show where a
//! write through it would have gone.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::{Path, PathBuf};
use zos_netboot::fetch::beneath::Root;

fn listing(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(p.clone());
            }
            out.push(p);
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let base = PathBuf::from(std::env::var_os("ZOS_FUZZ_TMP").unwrap_or_else(|| "/dev/shm".into()))
        .join(format!("zos-fuzz-beneath-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let root_path = base.join("root");
    let outside = base.join("outside");
    std::fs::create_dir_all(&root_path).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    let root = Root::open(&root_path).unwrap();
    let text = String::from_utf8_lossy(data);
    for line in text.lines().take(64) {
        let mut words = line.splitn(3, ' ');
        let (Some(op), Some(a)) = (words.next(), words.next()) else {
            continue;
        };
        if a.contains('\0') || a.len() > 200 {
            continue;
        }
        // Planting is done by path, as an attacker's earlier archive would have: only within
        // the root's own names (no `..`, not absolute), so the planting itself stays inside.
        // And never through a link planted before: every directory above the name must be a
        // real directory (else the planting itself, done by path, would follow it out).
        let plantable = !a.starts_with('/')
            && !a.split('/').any(|c| c == "..")
            && Path::new(a).parent().is_none_or(|parent| {
                let mut at = root_path.clone();
                parent.components().all(|c| {
                    at.push(c);
                    std::fs::symlink_metadata(&at).is_ok_and(|m| m.is_dir())
                })
            });
        match op {
            "L" if plantable => {
                if let Some(t) = words.next().filter(|t| !t.contains('\0')) {
                    let _ = std::os::unix::fs::symlink(t, root_path.join(a));
                }
            }
            "D" if plantable => {
                let _ = std::fs::create_dir(root_path.join(a));
            }
            "W" => {
                let _ = root.write_file(Path::new(a), &mut &b"x"[..], 0o644);
            }
            _ => {}
        }
    }
    let mut names: Vec<_> = std::fs::read_dir(&base)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec!["outside", "root"],
        "something was written beside the root"
    );
    assert!(
        listing(&outside).is_empty(),
        "written outside the root: {:?}",
        listing(&outside)
    );
    // Links the script planted may well point outside (that is the attack); what matters is
    // that no write went through them, checked above. Following them from outside must not
    // panic either way.
    for p in listing(&root_path) {
        let _ = std::fs::canonicalize(&p);
    }
    std::fs::remove_dir_all(&base).unwrap();
});
