//! The boot manifest, as the hub (or whoever answers in its name) sends it.
#![no_main]
use libfuzzer_sys::fuzz_target;
use zos_netboot::fetch::manifest;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = manifest::parse(data, "https://hub.test/zos/test/v3/manifest.json") {
        let _ = m.modules_for("6.1.0-28-cloud-amd64");
        for a in &m.artifacts {
            assert!(a.url.starts_with("http://") || a.url.starts_with("https://"));
            assert!(a.size > 0 && a.size <= manifest::MAX_ARTIFACT_SIZE);
            if let Some(d) = &a.dest {
                assert!(
                    d.starts_with('/') && !d.split('/').any(|c| c == ".."),
                    "{d}"
                );
            }
        }
    }
});
