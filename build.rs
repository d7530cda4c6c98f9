//! Records when this binary was built (ZOS_BUILD_UNIX), the floor for the node's clock: a fresh
//! node's RTC can be years behind, and TLS refuses certificates "not yet valid". Reproducible:
//! SOURCE_DATE_EPOCH when set, else the last commit's time, else 0 (no floor).
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    println!("cargo:rerun-if-changed=.git/HEAD");
    let from_env = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.parse::<u64>().ok());
    let from_git = || {
        let out = Command::new("git")
            .args(["log", "-1", "--format=%ct"])
            .output()
            .ok()?;
        String::from_utf8(out.stdout)
            .ok()?
            .trim()
            .parse::<u64>()
            .ok()
    };
    let when = from_env.or_else(from_git).unwrap_or(0);
    println!("cargo:rustc-env=ZOS_BUILD_UNIX={when}");
}
