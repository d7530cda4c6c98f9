//! Helpers for the QEMU end-to-end tests (std + serde_json only): requirement checks that turn
//! into `SKIP <test>: <reason>` lines, the boot image, a router network namespace with tap
//! devices and daemons, and a QEMU VM whose serial console goes to a file.
//!
//! Safety: QEMU's NICs are taps created inside a namespace made here (`zq-<pid>-<n>`) or QEMU's
//! own user-mode network with `restrict=on`; nothing is attached to this machine's interfaces.
//! `/etc/netns/<ns>/resolv.conf` exists before anything runs in a namespace (so `ip netns exec`
//! bind-mounts it over `/etc/resolv.conf`). Every external command runs under `timeout`;
//! daemons and QEMU are stopped by PID when their handles drop, then the namespace's remaining
//! processes are killed and the namespace and its `/etc/netns` directory are deleted.
//!
//! Environment:
//! * `ZOS_QEMU_REQUIRED=1`: a missing requirement fails the test instead of skipping it.
//! * `ZOS_INITRAMFS=FILE`: boot FILE instead of building the image (scripts/build.sh, then
//!   tests/grid/grid.py --make-ca into target/qemu-e2e/grid-ca, qemu/build-next-root.sh and
//!   scripts/build-initramfs.sh --ca into target/qemu-e2e/initramfs.img).
//! * `ZOS_GRID_CA=DIR` (with `ZOS_INITRAMFS`): the `grid.py --make-ca` directory whose ca.pem
//!   that image holds as /etc/zos/ca.pem (default target/qemu-e2e/grid-ca); the tap-lab test
//!   checks that they match and skips otherwise.
//! * `ZOS_QEMU_KEEP=1`: keep each test's directory (console log, daemon logs) even on success.
#![allow(dead_code)]

use std::fs;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Once, OnceLock};
use std::thread::sleep;
use std::time::{Duration, Instant};

use serde_json::Value;

#[path = "../common/shared.rs"]
mod shared;
pub use shared::*;

pub const REPO: &str = env!("CARGO_MANIFEST_DIR");
/// Bound for the short housekeeping commands.
/// Upper bound on a daemon's life, in case this process dies without dropping it.
const DAEMON_MAX_SECS: u64 = 300;
/// What qemu/run.sh gives a TCG boot before it kills QEMU.
pub const BOOT_SECS: u64 = 90;

static COUNTER: AtomicUsize = AtomicUsize::new(0);
static SWEEP: Once = Once::new();

// ------------------------------------------------------------------------------------------
// Output and skipping

/// Prints `SKIP <test>: <why>` and returns false, or panics when `ZOS_QEMU_REQUIRED=1`.
pub fn skip(test: &str, why: &str) -> bool {
    skip_unless_required("ZOS_QEMU_REQUIRED", test, why)
}

/// What a QEMU test needs.
pub struct Needs<'a> {
    /// Tap devices (/dev/net/tun).
    pub tun: bool,
    /// Further programs that must be on PATH.
    pub tools: &'a [&'a str],
}

/// True when everything in `needs` is here: root, `ip netns`, qemu-system-x86_64, the Debian
/// cloud kernel (vmlinuz and its modules), the image tools, and the `needs` extras. Otherwise
/// prints a SKIP line (see [`skip`]) and returns false.
pub fn require(test: &str, needs: &Needs) -> bool {
    match check(needs) {
        Ok(()) => true,
        Err(why) => skip(test, &why),
    }
}

fn check(needs: &Needs) -> Result<(), String> {
    let status = fs::read_to_string("/proc/self/status").map_err(|e| format!("/proc: {e}"))?;
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("?");
    if euid != "0" {
        return Err(format!("needs root (effective uid is {euid})"));
    }
    if needs.tun && !Path::new("/dev/net/tun").exists() {
        return Err("needs /dev/net/tun (tap devices)".into());
    }
    match Command::new("timeout")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
    {
        Ok(s) if s.success() => {}
        _ => return Err("needs coreutils timeout".into()),
    }
    let runs = [
        ("qemu-system-x86_64", "--version"),
        ("ip", "-V"),
        ("busybox", "true"),
    ];
    for (tool, arg) in runs {
        let ok = Command::new("timeout")
            .args(["-k", "2", "20", tool, arg])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return Err(format!(
                "needs {tool} (`{tool} {arg}` did not run; bash scripts/setup.sh)"
            ));
        }
    }
    // The image carries the test grid's CA, which grid.py makes (python3-cryptography).
    let py = run_cmd(&[PYTHON, "-c", "import cryptography"], CMD_SECS);
    if !py.status.success() {
        return Err(format!(
            "needs {PYTHON} with python3-cryptography for tests/grid/grid.py (bash scripts/setup.sh)"
        ));
    }
    for tool in ["cpio", "zstd", "ss"].iter().chain(needs.tools) {
        if !on_path(tool) {
            return Err(format!("needs {tool} (not on PATH; bash scripts/setup.sh)"));
        }
    }
    if cloud_kernel().is_none() {
        return Err(
            "needs the Debian cloud kernel: /boot/vmlinuz-*-cloud-amd64 with its \
                    /lib/modules (apt-get install linux-image-cloud-amd64)"
                .into(),
        );
    }
    netns_support().clone()
}

/// Whether `ip netns add` works here (probed once per process: parallel tests share it).
fn netns_support() -> &'static Result<(), String> {
    static PROBE: OnceLock<Result<(), String>> = OnceLock::new();
    PROBE.get_or_init(|| {
        let ns = format!("zq-{}-probe", std::process::id());
        let add = run_cmd(&["ip", "netns", "add", &ns], CMD_SECS);
        let _ = run_cmd(&["ip", "netns", "del", &ns], CMD_SECS);
        if add.status.success() {
            Ok(())
        } else {
            Err(format!(
                "needs network namespaces (`ip netns add` failed: {})",
                String::from_utf8_lossy(&add.stderr).trim()
            ))
        }
    })
}

fn on_path(tool: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|d| {
            fs::metadata(d.join(tool))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

/// The newest Debian cloud kernel: (vmlinuz path, version), when its modules are installed.
pub fn cloud_kernel() -> Option<(PathBuf, String)> {
    let mut found: Vec<(Vec<u64>, PathBuf, String)> = fs::read_dir("/boot")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let ver = name.strip_prefix("vmlinuz-")?.to_string();
            if !ver.ends_with("-cloud-amd64")
                || !Path::new("/lib/modules")
                    .join(&ver)
                    .join("modules.dep")
                    .exists()
            {
                return None;
            }
            let key = ver
                .split(|c: char| !c.is_ascii_digit())
                .filter_map(|n| n.parse().ok())
                .collect();
            Some((key, e.path(), ver))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, p, v)| (p, v))
}

// ------------------------------------------------------------------------------------------
// Commands

// ------------------------------------------------------------------------------------------
// The boot image

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| {
            if p.is_absolute() {
                p
            } else {
                Path::new(REPO).join(p)
            }
        })
        .unwrap_or_else(|| Path::new(REPO).join("target"))
}

/// Debian's Python (it has python3-cryptography) for tests/grid/grid.py.
pub const PYTHON: &str = "/usr/bin/python3";
/// What the test grid's server certificate names: the tap lab's hub.
pub const GRID_NAMES: &str = "hub.lab.test,10.77.0.1,2001:db8:77::1";

/// The test grid's CA directory (`grid.py --make-ca`: ca.pem, server.pem, server-key.pem),
/// whose ca.pem the image holds as /etc/zos/ca.pem: target/qemu-e2e/grid-ca, made with the
/// image; with `ZOS_INITRAMFS=FILE`, `ZOS_GRID_CA=DIR` names the one that image was built with
/// (default the same target/qemu-e2e/grid-ca).
pub fn test_ca_dir() -> PathBuf {
    let made = target_dir().join("qemu-e2e").join("grid-ca");
    if std::env::var_os("ZOS_INITRAMFS").is_none() {
        return made;
    }
    std::env::var_os("ZOS_GRID_CA").map_or(made, PathBuf::from)
}

/// Removes `<prefix><pid>` directories under `dir` whose process is gone (earlier runs that
/// were killed before they could clean up).
fn sweep_stale_dirs(dir: &Path, prefix: &str) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(prefix)
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

/// The initramfs to boot: `ZOS_INITRAMFS`, or (once per test process) a fresh build of the
/// release binary (scripts/build.sh), the next root (qemu/build-next-root.sh) and the image
/// (scripts/build-initramfs.sh) at target/qemu-e2e/initramfs.img.
pub fn initramfs() -> PathBuf {
    static IMAGE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match IMAGE.get_or_init(build_initramfs) {
        Ok(p) => p.clone(),
        Err(e) => panic!("cannot make the boot image:\n{e}"),
    }
}

fn build_initramfs() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("ZOS_INITRAMFS") {
        let p = PathBuf::from(p);
        if !p.is_file() {
            return Err(format!("ZOS_INITRAMFS={} is not a file", p.display()));
        }
        say(&format!("qemu: booting ZOS_INITRAMFS={}", p.display()));
        return Ok(p);
    }
    let (_, kver) = cloud_kernel().ok_or("no cloud kernel")?;
    let out_dir = target_dir().join("qemu-e2e");
    fs::create_dir_all(&out_dir).map_err(|e| format!("mkdir {}: {e}", out_dir.display()))?;
    let started = Instant::now();
    let step = |what: &str, argv: &[&str], secs: u64| -> Result<String, String> {
        let out = run_cmd(argv, secs);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if out.status.success() {
            Ok(text)
        } else {
            Err(format!(
                "{what} (`{}`) failed ({}):\n{text}",
                argv.join(" "),
                out.status
            ))
        }
    };
    // Always through cargo, so the image never holds a binary older than the sources.
    let build = format!("{REPO}/scripts/build.sh");
    step("building the release binary", &["bash", &build], 1800)?;
    let bin = target_dir().join("x86_64-unknown-linux-musl/release/zos-netboot");
    // Leftovers of runs that were killed (and of the per-process CA directories of before).
    sweep_stale_dirs(&out_dir, "next-root-");
    sweep_stale_dirs(&out_dir, "grid-ca-");
    // The test grid's CA, trusted by the image as /etc/zos/ca.pem (zos.ca=): made with the
    // image (next to it, so a later ZOS_INITRAMFS run of that image finds it), for the names
    // the tap lab's hub answers to.
    let ca = test_ca_dir();
    let _ = fs::remove_dir_all(&ca);
    step(
        "making the test grid's CA",
        &[
            PYTHON,
            &format!("{REPO}/tests/grid/grid.py"),
            "--make-ca",
            &ca.to_string_lossy(),
            "--names",
            GRID_NAMES,
        ],
        60,
    )?;
    let next_root = out_dir.join(format!("next-root-{}", std::process::id()));
    let _ = fs::remove_dir_all(&next_root);
    let nr = next_root.to_string_lossy().into_owned();
    let result = (|| {
        step(
            "building the next root",
            &["bash", &format!("{REPO}/qemu/build-next-root.sh"), &nr],
            60,
        )?;
        let image = out_dir.join("initramfs.img");
        let report = step(
            "building the initramfs",
            &[
                "bash",
                &format!("{REPO}/scripts/build-initramfs.sh"),
                "--out",
                &image.to_string_lossy(),
                "--kernel-version",
                &kver,
                "--bin",
                &bin.to_string_lossy(),
                "--next-root",
                &nr,
                "--ca",
                &ca.join("ca.pem").to_string_lossy(),
            ],
            300,
        )?;
        say(&format!(
            "qemu: boot image built in {:.1}s:\n{}",
            started.elapsed().as_secs_f64(),
            report.trim_end()
        ));
        Ok(image)
    })();
    let _ = fs::remove_dir_all(&next_root);
    result
}

// ------------------------------------------------------------------------------------------
// A test's directory

/// A temporary directory for one test (console log, daemon logs, configs). Removed on drop
/// unless the test panicked or `ZOS_QEMU_KEEP=1` (then its path is printed).
pub struct TestDir {
    pub path: PathBuf,
}

impl TestDir {
    pub fn new(hint: &str) -> TestDir {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let hint: String = hint
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .take(32)
            .collect();
        let path = std::env::temp_dir().join(format!("zos-qemu-{}-{n}-{hint}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        TestDir { path }
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("ZOS_QEMU_KEEP").is_some_and(|v| v == "1") {
            say(&format!("qemu: files kept in {}", self.path.display()));
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

// ------------------------------------------------------------------------------------------
// Router namespace

/// A network namespace `zq-<pid>-<n>` for QEMU and the daemons it talks to.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// Creates the namespace (its `/etc/netns/<ns>/resolv.conf` first), `lo` up.
    pub fn new() -> Netns {
        SWEEP.call_once(|| sweep_stale_namespaces(&["zq-"]));
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("zq-{}-{n}", std::process::id());
        create_namespace(&name);
        Netns { name }
    }

    /// `ip -n <ns> ARGS`.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut argv = vec!["ip", "-n", &self.name];
        argv.extend_from_slice(args);
        run_ok(&argv)
    }

    /// `ip netns exec <ns> ARGV`, capturing output (not checked).
    pub fn exec(&self, argv: &[&str]) -> Output {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(argv);
        run_cmd(&full, CMD_SECS)
    }

    /// `sysctl -w` inside the namespace; panics on failure.
    pub fn sysctl(&self, settings: &[&str]) {
        for s in settings {
            let out = self.exec(&["sysctl", "-q", "-w", s]);
            assert!(
                out.status.success(),
                "sysctl {s} in {}: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// A persistent tap device `name` in this namespace (QEMU attaches to it), up.
    pub fn tap(&self, name: &str) {
        self.ip(&["tuntap", "add", name, "mode", "tap"]);
        self.ip(&["link", "set", name, "up"]);
    }

    /// Local TCP/UDP listening sockets (`ss -H -l -n -t|-u`), the local address column.
    pub fn listening(&self, proto: &str) -> Vec<String> {
        let out = self.exec(&["ss", "-H", "-l", "-n", &format!("-{proto}")]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().nth(3).map(str::to_string))
            .collect()
    }

    /// Starts `program args` in this namespace under `timeout` (stdout/stderr to `stderr`).
    pub fn spawn(&self, label: &str, program: &str, args: &[String], stderr: PathBuf) -> Daemon {
        let child = Command::new("timeout")
            .args([
                "-k",
                "5",
                &DAEMON_MAX_SECS.to_string(),
                "ip",
                "netns",
                "exec",
                &self.name,
            ])
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&stderr).expect("create daemon stderr file"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        Daemon {
            label: label.into(),
            child,
            args: args.to_vec(),
            stderr,
            log: None,
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        delete_namespace(&self.name);
    }
}

/// A daemon started by [`Netns::spawn`]; stopped by PID on drop.
pub struct Daemon {
    pub label: String,
    pub child: Child,
    pub args: Vec<String>,
    pub stderr: PathBuf,
    pub log: Option<PathBuf>,
}

impl Daemon {
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Its command line, stderr and log file, for failure messages.
    pub fn describe(&self) -> String {
        let mut s = format!("--- {} ({})\n", self.label, self.args.join(" "));
        s += &fs::read_to_string(&self.stderr).unwrap_or_default();
        if let Some(log) = &self.log {
            s += &format!("--- {} log\n", self.label);
            s += &fs::read_to_string(log).unwrap_or_default();
        }
        s
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        stop_child(&mut self.child, Duration::from_secs(3));
    }
}

// ------------------------------------------------------------------------------------------
// The router side of the tap lab

/// dnsmasq on `ifaces` in `ns`: DHCPv4 (`dhcp_range`, router and DNS `gateway`) and DNS with
/// `host_records`; `--bind-dynamic`, `--no-ping`, logging to `dir`. Ready when it logs its range.
pub fn dnsmasq(
    ns: &Netns,
    dir: &TestDir,
    ifaces: &[&str],
    dhcp_range: &str,
    gateway: &str,
    host_records: &[&str],
) -> Daemon {
    let log = dir.join("dnsmasq.log");
    let mut args: Vec<String> = vec![
        "--no-daemon".into(),
        "--conf-file=/dev/null".into(),
        "--no-hosts".into(),
        "--no-resolv".into(),
        "--bind-dynamic".into(),
        "--no-ping".into(),
        "--port=53".into(),
        format!("--dhcp-range={dhcp_range}"),
        format!("--dhcp-option=3,{gateway}"),
        format!("--dhcp-option=6,{gateway}"),
        "--domain=lab.test".into(),
        format!("--dhcp-leasefile={}", dir.join("dnsmasq.leases").display()),
        "--pid-file=".into(),
        "--log-dhcp".into(),
        "--log-queries".into(),
        format!("--log-facility={}", log.display()),
    ];
    args.extend(ifaces.iter().map(|i| format!("--interface={i}")));
    args.extend(host_records.iter().map(|r| format!("--host-record={r}")));
    fs::write(dir.join("dnsmasq.leases"), "").expect("create lease file");
    let mut d = ns.spawn("dnsmasq", "dnsmasq", &args, dir.join("dnsmasq.stderr"));
    d.log = Some(log.clone());
    let ok = wait_until(Duration::from_secs(10), || {
        fs::read_to_string(&log).is_ok_and(|l| l.contains("DHCP, IP range"))
            || !matches!(d.child.try_wait(), Ok(None))
    });
    if !d.alive() || !ok {
        panic!("dnsmasq did not start:\n{}", d.describe());
    }
    d
}

/// radvd on `iface` in `ns` advertising `prefix` (SLAAC) with RDNSS `rdnss`. Ready when it
/// wrote its pid file.
pub fn radvd(ns: &Netns, dir: &TestDir, iface: &str, prefix: &str, rdnss: &str) -> Daemon {
    let conf = dir.join("radvd.conf");
    let pidfile = dir.join("radvd.pid");
    fs::write(
        &conf,
        format!(
            "interface {iface} {{\n\
             \tAdvSendAdvert on;\n\
             \tMinRtrAdvInterval 3;\n\
             \tMaxRtrAdvInterval 4;\n\
             \tAdvDefaultLifetime 600;\n\
             \tprefix {prefix} {{ AdvOnLink on; AdvAutonomous on; }};\n\
             \tRDNSS {rdnss} {{ AdvRDNSSLifetime 8; }};\n\
             }};\n"
        ),
    )
    .expect("write radvd.conf");
    // radvd refuses a config file others can write.
    run_ok(&["chmod", "644", &conf.to_string_lossy()]);
    let args: Vec<String> = vec![
        "-n".into(),
        "-C".into(),
        conf.to_string_lossy().into_owned(),
        "-p".into(),
        pidfile.to_string_lossy().into_owned(),
        "-m".into(),
        "stderr".into(),
        "-d".into(),
        "1".into(),
    ];
    let mut d = ns.spawn("radvd", "radvd", &args, dir.join("radvd.stderr"));
    let ok = wait_until(Duration::from_secs(10), || {
        fs::read_to_string(&pidfile).is_ok_and(|p| p.trim().parse::<u32>().is_ok())
            || !matches!(d.child.try_wait(), Ok(None))
    });
    if !d.alive() || !ok {
        panic!("radvd did not start:\n{}", d.describe());
    }
    d
}

/// busybox httpd on port 80 (all addresses) in `ns`, serving a small index.html. Ready when it
/// listens.
pub fn httpd(ns: &Netns, dir: &TestDir) -> Daemon {
    let www = dir.join("www");
    fs::create_dir_all(&www).expect("mkdir www");
    fs::write(www.join("index.html"), "<html>zos qemu lab hub</html>\n").expect("write index");
    let args: Vec<String> = vec![
        "httpd".into(),
        "-f".into(),
        "-p".into(),
        "80".into(),
        "-h".into(),
        www.to_string_lossy().into_owned(),
    ];
    let mut d = ns.spawn("httpd", "busybox", &args, dir.join("httpd.stderr"));
    let ok = wait_until(Duration::from_secs(10), || {
        ns.listening("t").iter().any(|s| s.ends_with(":80"))
            || !matches!(d.child.try_wait(), Ok(None))
    });
    if !d.alive() || !ok {
        panic!("httpd did not start:\n{}", d.describe());
    }
    d
}

/// The test grid (tests/grid/grid.py) in `ns`: HTTPS on port 443 of `listen` (addresses that
/// exist in `ns`) with the test CA's server certificate, serving `root`, keeping registration
/// records in `records`. Ready when it writes its ready file.
pub fn grid(ns: &Netns, dir: &TestDir, root: &Path, records: &Path, listen: &[&str]) -> Daemon {
    grid_with(ns, dir, root, records, listen, &[])
}

/// [`grid`] with extra grid.py arguments (fault switches such as `--registrar-fail=2`).
pub fn grid_with(
    ns: &Netns,
    dir: &TestDir,
    root: &Path,
    records: &Path,
    listen: &[&str],
    extra: &[&str],
) -> Daemon {
    let ca = test_ca_dir();
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let ready = dir.join(&format!("grid-{n}.ready"));
    let mut args: Vec<String> = vec![
        format!("{REPO}/tests/grid/grid.py"),
        "--root".into(),
        root.to_string_lossy().into_owned(),
        "--cert".into(),
        ca.join("server.pem").to_string_lossy().into_owned(),
        "--key".into(),
        ca.join("server-key.pem").to_string_lossy().into_owned(),
        "--records".into(),
        records.to_string_lossy().into_owned(),
        "--ready-file".into(),
        ready.to_string_lossy().into_owned(),
        "--exit-after".into(),
        (DAEMON_MAX_SECS - 10).to_string(),
    ];
    for a in listen {
        args.push("--https".into());
        args.push(if a.contains(':') {
            format!("[{a}]:443")
        } else {
            format!("{a}:443")
        });
    }
    args.extend(extra.iter().map(|a| a.to_string()));
    let mut d = ns.spawn(
        "grid.py",
        PYTHON,
        &args,
        dir.join(&format!("grid-{n}.stderr")),
    );
    let ok = wait_until(Duration::from_secs(20), || {
        ready.exists() || !matches!(d.child.try_wait(), Ok(None))
    });
    if !d.alive() || !ok {
        panic!("grid.py did not start:\n{}", d.describe());
    }
    d
}

/// A next root for the grid to serve: qemu/build-next-root.sh's tree plus
/// /etc/zos-root-origin (its init prints it), as a reproducible tar.gz at `out` (names sorted,
/// owner 0:0, modes without group/other write, one fixed mtime; gzip from tar has no name or
/// time in its header).
pub fn fetched_root_tarball(dir: &TestDir, out: &Path, origin: &str) {
    let tree = dir.join("fetched-root");
    let t = tree.to_string_lossy().into_owned();
    let built = run_cmd(
        &["bash", &format!("{REPO}/qemu/build-next-root.sh"), &t],
        60,
    );
    assert!(
        built.status.success(),
        "build-next-root.sh: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    fs::write(tree.join("etc/zos-root-origin"), format!("{origin}\n")).unwrap();
    let tar = run_cmd(
        &[
            "tar",
            "--format=gnu",
            "--sort=name",
            "--mode=u+rwX,go+rX,go-w",
            "--owner=0",
            "--group=0",
            "--numeric-owner",
            "--mtime=@1700000000",
            "-C",
            &t,
            "-czf",
            &out.to_string_lossy(),
            ".",
        ],
        60,
    );
    assert!(
        tar.status.success(),
        "tar: {}",
        String::from_utf8_lossy(&tar.stderr)
    );
}

/// Lowercase hex SHA-256 of a file (sha256sum).
pub fn sha256_file(path: &Path) -> String {
    let out = run_cmd(&["sha256sum", &path.to_string_lossy()], 60);
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// The bytes of `member` (a path inside the archive, e.g. `etc/zos/ca.pem`) in the initramfs
/// `image` (a zstd, gzip or plain newc cpio), or None when it has no such file.
pub fn image_member(image: &Path, member: &str) -> Option<Vec<u8>> {
    let mut magic = [0u8; 4];
    {
        use std::io::Read as _;
        fs::File::open(image).ok()?.read_exact(&mut magic).ok()?;
    }
    let decompress = match magic {
        [0x28, 0xb5, 0x2f, 0xfd] => "zstd -q -dc",
        [0x1f, 0x8b, ..] => "gzip -dc",
        _ => "cat",
    };
    // No pipefail: cpio stops at the first archive's trailer, so the decompressor may die of
    // SIGPIPE before the /dev/console archive after it; a missing member is an empty output.
    let script =
        format!("{decompress} -- \"$1\" | cpio -i --quiet --to-stdout -- \"$2\" 2>/dev/null");
    let out = run_cmd(
        &[
            "bash",
            "-c",
            &script,
            "bash",
            &image.to_string_lossy(),
            member,
        ],
        60,
    );
    (out.status.success() && !out.stdout.is_empty()).then_some(out.stdout)
}

/// `GET url` from inside `ns` (the test grid's `/_grid/state`), trusting only the test CA and
/// never going through a proxy; the JSON answer.
pub fn grid_state(ns: &Netns, url: &str) -> Result<Value, String> {
    const GET: &str = "import ssl, sys, urllib.request as u\n\
        ctx = ssl.create_default_context(cafile=sys.argv[1])\n\
        op = u.build_opener(u.ProxyHandler({}), u.HTTPSHandler(context=ctx))\n\
        sys.stdout.write(op.open(sys.argv[2], timeout=10).read().decode())\n";
    let ca = test_ca_dir().join("ca.pem");
    let out = ns.exec(&[PYTHON, "-c", GET, &ca.to_string_lossy(), url]);
    if !out.status.success() {
        return Err(format!(
            "GET {url} in {}: {}",
            ns.name,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("GET {url}: not JSON: {e}"))
}

// ------------------------------------------------------------------------------------------
// QEMU

/// A VM started by qemu/run.sh inside a namespace; serial console in a file. Dropping it kills
/// QEMU by PID (from its pid file) and reaps the wrapper.
pub struct Vm {
    child: Child,
    pub cmdline: String,
    pub console: PathBuf,
    pidfile: PathBuf,
    pub started: Instant,
    /// When each watched marker first showed in the console (see [`Vm::wait`]).
    pub seen: Vec<(String, Duration)>,
    pub status: Option<ExitStatus>,
}

impl Vm {
    /// `timeout ip netns exec <ns> qemu/run.sh --initrd IMAGE --log console.log --pidfile …
    /// --timeout BOOT_SECS --append APPEND NICS…`.
    pub fn start(ns: &Netns, dir: &TestDir, image: &Path, nics: &[&str], append: &str) -> Vm {
        let console = dir.join("console.log");
        let pidfile = dir.join("qemu.pid");
        let run = format!("{REPO}/qemu/run.sh");
        let boot = BOOT_SECS.to_string();
        let mut argv: Vec<String> = [
            "ip",
            "netns",
            "exec",
            &ns.name,
            "bash",
            &run,
            "--initrd",
            &image.to_string_lossy(),
            "--log",
            &console.to_string_lossy(),
            "--pidfile",
            &pidfile.to_string_lossy(),
            "--timeout",
            &boot,
            "--append",
            append,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        argv.extend(nics.iter().map(|s| s.to_string()));
        let cmdline = argv
            .iter()
            .map(|a| {
                if a.contains(' ') {
                    format!("'{a}'")
                } else {
                    a.clone()
                }
            })
            .collect::<Vec<_>>()
            .join(" ");
        let stderr = dir.join("qemu.stderr");
        let started = Instant::now();
        let child = Command::new("timeout")
            .args(["-k", "5", &(BOOT_SECS + 20).to_string()])
            .args(&argv)
            .stdin(Stdio::null())
            .stdout(fs::File::create(dir.join("qemu.stdout")).expect("create qemu.stdout"))
            .stderr(fs::File::create(&stderr).expect("create qemu.stderr"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmdline}: {e}"));
        Vm {
            child,
            cmdline,
            console,
            pidfile,
            started,
            seen: Vec::new(),
            status: None,
        }
    }

    /// Waits (bounded by BOOT_SECS + 25 s) for QEMU to exit, noting when each of `markers`
    /// first appears in the console. Returns QEMU's (wrapper's) exit status; None if it had to
    /// be killed.
    pub fn wait(&mut self, markers: &[&str]) -> Option<ExitStatus> {
        let deadline = self.started + Duration::from_secs(BOOT_SECS + 25);
        loop {
            let text = self.console_text();
            for m in markers {
                if !self.seen.iter().any(|(s, _)| s == m) && text.contains(m) {
                    self.seen.push((m.to_string(), self.started.elapsed()));
                }
            }
            if let Ok(Some(s)) = self.child.try_wait() {
                self.status = Some(s);
                return Some(s);
            }
            if Instant::now() > deadline {
                self.kill();
                return None;
            }
            sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the console has shown `marker` at least `times` times (true), or QEMU
    /// exited, or `limit` passed (false). Notes when the marker first appeared.
    pub fn wait_for(&mut self, marker: &str, times: usize, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            let text = self.console_text();
            if text.matches(marker).count() >= times {
                if !self.seen.iter().any(|(s, _)| s == marker) {
                    self.seen.push((marker.to_string(), self.started.elapsed()));
                }
                return true;
            }
            if matches!(self.child.try_wait(), Ok(Some(_))) || Instant::now() > deadline {
                return false;
            }
            sleep(Duration::from_millis(50));
        }
    }

    /// The console log so far, `\r` removed.
    pub fn console_text(&self) -> String {
        let bytes = fs::read(&self.console).unwrap_or_default();
        String::from_utf8_lossy(&bytes).replace('\r', "")
    }

    /// QEMU's stderr (from qemu/run.sh).
    pub fn stderr_text(&self) -> String {
        let dir = self.console.parent().unwrap_or(Path::new("."));
        fs::read_to_string(dir.join("qemu.stderr")).unwrap_or_default()
    }

    fn qemu_pid(&self) -> Option<u32> {
        let pid: u32 = fs::read_to_string(&self.pidfile)
            .ok()?
            .trim()
            .parse()
            .ok()?;
        // Only if that PID is still a QEMU (not a recycled PID).
        let comm = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        comm.starts_with("qemu").then_some(pid)
    }

    fn kill(&mut self) {
        if let Some(pid) = self.qemu_pid() {
            kill_pid(pid, "KILL");
            wait_until(Duration::from_secs(3), || !pid_alive(pid));
        }
        stop_child(&mut self.child, Duration::from_secs(3));
    }

    /// The wall time from QEMU's start to the first appearance of `marker`, if it appeared.
    pub fn seen_at(&self, marker: &str) -> Option<Duration> {
        self.seen.iter().find(|(m, _)| m == marker).map(|(_, d)| *d)
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.kill();
    }
}

// ------------------------------------------------------------------------------------------
// Reading the console

/// A kernel log line on the console, e.g. `[    1.234567] virtio_net ...`.
fn is_kernel_line(l: &str) -> bool {
    let Some(rest) = l.strip_prefix('[') else {
        return false;
    };
    let Some((stamp, _)) = rest.split_once(']') else {
        return false;
    };
    let stamp = stamp.trim_start();
    stamp.split_once('.').is_some_and(|(s, us)| {
        !s.is_empty()
            && s.bytes().all(|b| b.is_ascii_digit())
            && us.len() == 6
            && us.bytes().all(|b| b.is_ascii_digit())
    })
}

/// One expected console line: a description and the substrings any of which matches.
pub struct Expect<'a> {
    pub what: &'a str,
    pub any: &'a [&'a str],
}

/// Checks that each group of expectations is met by console lines (kernel log lines are not
/// counted), all lines of a group after every line of the previous group (within a group in
/// any order). Returns the matched lines, or an error naming the first unmet expectation.
pub fn expect_in_order(console: &str, groups: &[&[Expect]]) -> Result<Vec<String>, String> {
    let lines: Vec<&str> = console.lines().filter(|l| !is_kernel_line(l)).collect();
    let mut from = 0;
    let mut matched = Vec::new();
    for group in groups {
        let mut last = from;
        for e in group.iter() {
            match lines[from..]
                .iter()
                .position(|l| e.any.iter().any(|s| l.contains(s)))
            {
                Some(i) => {
                    matched.push(format!("{}: {}", e.what, lines[from + i].trim()));
                    last = last.max(from + i + 1);
                }
                None => {
                    let earlier = lines[..from]
                        .iter()
                        .any(|l| e.any.iter().any(|s| l.contains(s)));
                    return Err(format!(
                        "missing {} (a line containing {}){}",
                        e.what,
                        e.any
                            .iter()
                            .map(|s| format!("{s:?}"))
                            .collect::<Vec<_>>()
                            .join(" or "),
                        if earlier {
                            " after the previous step (it appears earlier, out of order)"
                        } else {
                            ""
                        }
                    ));
                }
            }
        }
        from = last;
    }
    Ok(matched)
}

/// The guest's own timestamp (seconds since zos-netboot started, the `[   2.584]` prefix of
/// its console lines) of the first console line containing `needle`.
pub fn console_stamp(console: &str, needle: &str) -> Option<f64> {
    console
        .lines()
        .filter(|l| !is_kernel_line(l))
        .find(|l| l.contains(needle))
        .and_then(|l| l.strip_prefix('[')?.split_once(']'))
        .and_then(|(stamp, _)| stamp.trim().parse().ok())
}

/// The state JSON the next root printed between `---STATE---` and `---END---`, parsed.
pub fn printed_state(console: &str) -> Result<Value, String> {
    let start = console
        .find("---STATE---\n")
        .ok_or("no ---STATE--- marker on the console")?
        + "---STATE---\n".len();
    let len = console[start..]
        .find("---END---")
        .ok_or("no ---END--- marker after ---STATE---")?;
    let text: String = console[start..start + len]
        .lines()
        .filter(|l| !is_kernel_line(l))
        .collect::<Vec<_>>()
        .join("\n");
    serde_json::from_str(&text).map_err(|e| format!("state is not JSON ({e}):\n{text}"))
}

/// Whether `state` has an interface with role oob (in `role` or `roles`) and an IPv4 address
/// inside `net`/`prefix`; returns that address.
pub fn oob_ipv4_in(state: &Value, net: Ipv4Addr, prefix: u8) -> Option<Ipv4Addr> {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    state["interfaces"].as_array()?.iter().find_map(|i| {
        let oob = i["role"] == "oob"
            || i["roles"]
                .as_array()
                .is_some_and(|r| r.iter().any(|x| x == "oob"));
        if !oob {
            return None;
        }
        i["ipv4"].as_array()?.iter().find_map(|a| {
            let addr: Ipv4Addr = a["address"].as_str()?.parse().ok()?;
            (u32::from(addr) & mask == u32::from(net) & mask).then_some(addr)
        })
    })
}

// ------------------------------------------------------------------------------------------
// Boot media (tests/media_e2e.rs): QEMU started with firmware and disks instead of -kernel

/// Debian's OVMF (UEFI for QEMU): the read-only code and the variable store template.
pub fn ovmf() -> Option<(PathBuf, PathBuf)> {
    let code = Path::new("/usr/share/OVMF/OVMF_CODE_4M.fd");
    let vars = Path::new("/usr/share/OVMF/OVMF_VARS_4M.fd");
    (code.is_file() && vars.is_file()).then(|| (code.to_path_buf(), vars.to_path_buf()))
}

/// `-drive if=pflash` arguments for OVMF, with a fresh copy of the variable store in `dir`.
pub fn ovmf_args(dir: &TestDir) -> Vec<String> {
    let (code, vars) = ovmf().expect("OVMF is installed (checked by the caller)");
    let copy = dir.join("OVMF_VARS.fd");
    fs::copy(&vars, &copy).unwrap_or_else(|e| panic!("copy {}: {e}", vars.display()));
    vec![
        "-drive".into(),
        format!(
            "if=pflash,format=raw,unit=0,readonly=on,file={}",
            code.display()
        ),
        "-drive".into(),
        format!("if=pflash,format=raw,unit=1,file={}", copy.display()),
    ]
}

/// The media directory scripts/build-media.sh made for this test process (see
/// [`build_media_once`]).
pub fn media_dir() -> PathBuf {
    target_dir().join("media-e2e").join("media")
}

/// Builds, once per test process, the release binary (scripts/build.sh), the tiny next root
/// (qemu/build-next-root.sh: it prints the state and powers off, so a boot ends) and the media
/// (scripts/build-media.sh, with its reproducibility check) into target/media-e2e/media with
/// `cmdline`. Returns the directory and build-media.sh's report.
pub fn build_media_once(cmdline: &str) -> (PathBuf, String) {
    static MEDIA: OnceLock<Result<(PathBuf, String), String>> = OnceLock::new();
    let got = MEDIA.get_or_init(|| {
        let base = target_dir().join("media-e2e");
        fs::create_dir_all(&base).map_err(|e| format!("mkdir {}: {e}", base.display()))?;
        let started = Instant::now();
        let run = |what: &str, argv: &[&str], secs: u64| -> Result<String, String> {
            let out = run_cmd(argv, secs);
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            if out.status.success() {
                Ok(String::from_utf8_lossy(&out.stdout).into_owned())
            } else {
                Err(format!(
                    "{what} (`{}`) failed ({}):\n{text}",
                    argv.join(" "),
                    out.status
                ))
            }
        };
        run(
            "building the release binary",
            &["bash", &format!("{REPO}/scripts/build.sh")],
            1800,
        )?;
        let bin = target_dir().join("x86_64-unknown-linux-musl/release/zos-netboot");
        let next_root = base.join("next-root");
        let nr = next_root.to_string_lossy().into_owned();
        run(
            "building the next root",
            &["bash", &format!("{REPO}/qemu/build-next-root.sh"), &nr],
            60,
        )?;
        let out = media_dir();
        let report = run(
            "building the media",
            &[
                "bash",
                &format!("{REPO}/scripts/build-media.sh"),
                "--out",
                &out.to_string_lossy(),
                "--cmdline",
                cmdline,
                "--bin",
                &bin.to_string_lossy(),
                "--next-root",
                &nr,
                // 8 s instead of 80 s for the full kernel's 89 MB cpio (10 % larger).
                "--zstd-level",
                "12",
            ],
            900,
        )?;
        say(&format!(
            "media: built in {:.1}s:\n{}",
            started.elapsed().as_secs_f64(),
            report.trim_end()
        ));
        Ok((out, report))
    });
    match got {
        Ok(v) => v.clone(),
        Err(e) => panic!("cannot build the media:\n{e}"),
    }
}

impl Vm {
    /// `timeout [ip netns exec NS] qemu-system-x86_64 ARGS -serial file:console.log -pidfile …`
    /// (TCG, q35, no display, no reboot), for booting firmware and media rather than -kernel.
    /// QEMU is killed after `secs`.
    pub fn start_qemu(ns: Option<&Netns>, dir: &TestDir, args: &[String], secs: u64) -> Vm {
        let console = dir.join("console.log");
        let pidfile = dir.join("qemu.pid");
        let mut argv: Vec<String> = Vec::new();
        if let Some(ns) = ns {
            argv.extend(["ip", "netns", "exec", &ns.name].map(String::from));
        }
        argv.extend(
            [
                "qemu-system-x86_64",
                "-machine",
                "q35",
                "-accel",
                "tcg",
                "-cpu",
                "max",
                "-smp",
                "1",
                "-m",
                "512",
                "-nodefaults",
                "-no-user-config",
                "-display",
                "none",
                "-no-reboot",
            ]
            .map(String::from),
        );
        argv.extend(args.iter().cloned());
        argv.push("-serial".into());
        argv.push(format!("file:{}", console.display()));
        argv.push("-pidfile".into());
        argv.push(pidfile.to_string_lossy().into_owned());
        let cmdline = argv.join(" ");
        let started = Instant::now();
        let child = Command::new("timeout")
            .args(["-k", "5", &secs.to_string()])
            .args(&argv)
            .stdin(Stdio::null())
            .stdout(fs::File::create(dir.join("qemu.stdout")).expect("create qemu.stdout"))
            .stderr(fs::File::create(dir.join("qemu.stderr")).expect("create qemu.stderr"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmdline}: {e}"));
        Vm {
            child,
            cmdline,
            console,
            pidfile,
            started,
            seen: Vec::new(),
            status: None,
        }
    }
}
