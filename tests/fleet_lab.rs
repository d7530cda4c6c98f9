//! A small fleet in CI: `scripts/fleet.sh 10` (N node namespaces on one bridge, one dnsmasq, one
//! radvd, one test grid, all booting `zos-netboot boot --no-handoff --sysroot` at the same
//! instant), with this build's binary. The script's JSON summary must show every node bound,
//! online and registered exactly once. The full-size run (N=100) is a benchmark: docs/fleet.md.
//! Needs root; skips with a `SKIP` line otherwise (`ZOS_LAB_REQUIRED=1`: fail instead).
mod common;

use std::fs;
use std::path::Path;

use common::*;
use serde_json::Value;

#[test]
fn ten_nodes_booting_at_once_all_bind_and_register_once() {
    let t = "fleet_10";
    if !require_root(t)
        || !require_tool(t, "dnsmasq", "--version")
        || !require_tool_says(t, "radvd", "--version", "radvd")
        || !require_tool(t, "jq", "--version")
        || !require_grid(t)
    {
        return;
    }
    let n = 10;
    let out = std::env::temp_dir().join(format!("zos-fleet-{}.json", std::process::id()));
    let _ = fs::remove_file(&out);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/fleet.sh");
    let run = std::process::Command::new("timeout")
        .args(["-k", "10", "240", "bash"])
        .arg(&script)
        .arg(n.to_string())
        .arg("--json")
        .arg(&out)
        .env("BIN", BIN)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run scripts/fleet.sh");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    let summary: Value = serde_json::from_str(&fs::read_to_string(&out).unwrap_or_default())
        .unwrap_or_else(|e| panic!("no JSON summary ({e}); fleet.sh said:\n{text}"));
    let _ = fs::remove_file(&out);
    let why = format!("{}\n{text}", pretty(&summary));
    assert_eq!(summary["failed"], 0, "{why}");
    assert_eq!(summary["leases_in_state"], n, "{why}");
    assert_eq!(summary["leases_in_dnsmasq"], n, "{why}");
    assert_eq!(summary["online"], n, "{why}");
    assert_eq!(summary["registered"], n, "{why}");
    assert_eq!(summary["records"], n, "{why}");
    assert_eq!(summary["duplicate_registrations"], 0, "{why}");
    assert!(
        summary["registrar_peak_concurrent_posts"]
            .as_u64()
            .unwrap_or(0)
            >= 1,
        "the grid counted the POSTs: {why}"
    );
    assert!(run.status.success(), "fleet.sh exit status: {why}");
}
