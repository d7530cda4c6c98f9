//! Network-namespace lab for the integration tests (std + serde_json only).
//!
//! A [`Lab`] is two network namespaces, a *router* (`zr-<pid>-<n>-<hint>`) and a *node*
//! (`zn-<pid>-<n>-<hint>`), joined by veth [`Lab::wire`]s. The router side runs dnsmasq
//! ([`Lab::dnsmasq`]) and, if asked, nftables packet loss ([`Lab::loss`]); the node side runs
//! the binary under test ([`Lab::run_node`], [`Lab::spawn_node`]). Nothing touches the host's
//! own interfaces or its `/etc/resolv.conf`: `/etc/netns/<ns>/resolv.conf` is created before
//! anything runs in a namespace, so `ip netns exec` bind-mounts it over `/etc/resolv.conf`.
//!
//! Every external command runs under `timeout`. Dropping a [`Lab`] kills whatever still runs in
//! its namespaces (by PID), deletes both namespaces, their `/etc/netns` directories and the
//! lab's temporary directory (kept, with its path printed, when the test panicked or
//! `ZOS_LAB_KEEP=1`).
//!
//! Tests call [`require_root`] first and return early when it says no (printing
//! `SKIP <test>: ...`). Set `ZOS_LAB_REQUIRED=1` to turn such a skip into a failure (CI).
#![allow(dead_code)]

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, Once, OnceLock};
use std::thread::sleep;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_zos-netboot");

/// Bound for the short housekeeping commands (`ip`, `nft`, `kill`, ...).
const CMD_SECS: u64 = 20;
/// Upper bound on a dnsmasq's life: protects against leaks if the test process is killed.
const DNSMASQ_MAX_SECS: u64 = 300;

static COUNTER: AtomicUsize = AtomicUsize::new(0);
static SWEEP: Once = Once::new();

// ------------------------------------------------------------------------------------------
// Skipping

/// True when this process can build labs: effective uid 0, `ip netns` works, and `ip`,
/// `timeout` and `dnsmasq` are installed. Otherwise prints
/// `SKIP <test>: needs root and network namespaces (<reason>)` and returns false (or panics
/// when `ZOS_LAB_REQUIRED=1`).
pub fn require_root(test: &str) -> bool {
    match lab_support() {
        Ok(()) => true,
        Err(reason) => skip(
            test,
            &format!("needs root and network namespaces ({reason})"),
        ),
    }
}

/// Why labs cannot be built here, if they cannot (probed once per process, prints nothing).
pub fn lab_support() -> &'static Result<(), String> {
    static PROBE: OnceLock<Result<(), String>> = OnceLock::new();
    PROBE.get_or_init(probe_lab_support)
}

/// True when `tool` runs (`tool <version_arg>` exits 0); otherwise prints a SKIP line.
pub fn require_tool(test: &str, tool: &str, version_arg: &str) -> bool {
    match Command::new("timeout")
        .args(["-k", "2", "10", tool, version_arg])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(s) if s.success() => true,
        Ok(s) => skip(
            test,
            &format!("needs {tool} (`{tool} {version_arg}` exited {s})"),
        ),
        Err(e) => skip(test, &format!("needs {tool} ({e})")),
    }
}

fn skip(test: &str, why: &str) -> bool {
    if std::env::var_os("ZOS_LAB_REQUIRED").is_some_and(|v| v == "1") {
        panic!("{test}: cannot run, and ZOS_LAB_REQUIRED=1: {why}");
    }
    // Straight to fd 2, past libtest's output capture, so the skip shows without --nocapture.
    // One write, so lines from parallel tests do not interleave.
    let _ = std::io::stderr().write_all(format!("SKIP {test}: {why}\n").as_bytes());
    false
}

fn probe_lab_support() -> Result<(), String> {
    let status = fs::read_to_string("/proc/self/status").map_err(|e| format!("/proc: {e}"))?;
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .ok_or("no Uid line in /proc/self/status")?;
    if euid != "0" {
        return Err(format!("effective uid is {euid}, not 0"));
    }
    for (tool, arg) in [
        ("timeout", "--version"),
        ("ip", "-V"),
        ("dnsmasq", "--version"),
    ] {
        // Bounded like every other command (except `timeout` itself, checked first).
        let mut cmd = if tool == "timeout" {
            Command::new(tool)
        } else {
            let mut c = Command::new("timeout");
            c.args(["-k", "2", "10", tool]);
            c
        };
        match cmd
            .arg(arg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
        {
            Ok(s) if s.success() => {}
            Ok(s) => return Err(format!("`{tool} {arg}` exited {s}")),
            Err(e) => return Err(format!("{tool} not runnable: {e}")),
        }
    }
    let ns = format!("zp-{}-probe", std::process::id());
    let add = run_cmd(&["ip", "netns", "add", &ns], CMD_SECS);
    if !add.status.success() {
        return Err(format!(
            "`ip netns add` failed: {}",
            String::from_utf8_lossy(&add.stderr).trim()
        ));
    }
    let lo = run_cmd(&["ip", "-n", &ns, "link", "set", "lo", "up"], CMD_SECS);
    let del = run_cmd(&["ip", "netns", "del", &ns], CMD_SECS);
    if !lo.status.success() {
        return Err(format!(
            "cannot configure a namespace: {}",
            String::from_utf8_lossy(&lo.stderr).trim()
        ));
    }
    if !del.status.success() {
        return Err(format!(
            "`ip netns del` failed: {}",
            String::from_utf8_lossy(&del.stderr).trim()
        ));
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------
// Command helpers

/// Runs `argv` under `timeout -k 2 <secs>`, capturing its output. Never panics on a non-zero
/// exit; panics only if `timeout` itself cannot be started.
pub fn run_cmd(argv: &[&str], secs: u64) -> Output {
    Command::new("timeout")
        .args(["-k", "2", &secs.to_string()])
        .args(argv)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run `timeout ... {}`: {e}", argv.join(" ")))
}

/// Like [`run_cmd`], and panics with the command's stderr unless it exits 0. Returns stdout.
pub fn run_ok(argv: &[&str]) -> String {
    let out = run_cmd(argv, CMD_SECS);
    if !out.status.success() {
        panic!(
            "`{}` failed ({}):\n{}{}",
            argv.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn run_json(argv: &[&str]) -> Value {
    let out = run_ok(argv);
    serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("`{}`: not JSON ({e}): {out}", argv.join(" ")))
}

fn kill_pid(pid: u32, signal: &str) {
    let _ = run_cmd(&["kill", &format!("-{signal}"), &pid.to_string()], CMD_SECS);
}

fn pid_alive(pid: u32) -> bool {
    // A zombie still has a /proc entry; its state is 'Z'.
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
            .unwrap_or(true),
        Err(_) => false,
    }
}

/// Stops a child that runs `timeout ... <cmd>`: SIGTERM to `timeout` (it forwards the signal
/// to its process group, and SIGKILLs after its `-k` grace), wait, then SIGKILL; always reaps.
fn stop_child(child: &mut Child, grace: Duration) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    kill_pid(child.id(), "TERM");
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn kill_namespace_pids(ns: &str) {
    let out = run_cmd(&["ip", "netns", "pids", ns], CMD_SECS);
    let pids: Vec<u32> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    for &pid in &pids {
        kill_pid(pid, "KILL");
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while pids.iter().any(|&p| pid_alive(p)) && Instant::now() < deadline {
        sleep(Duration::from_millis(10));
    }
}

fn delete_namespace(ns: &str) {
    kill_namespace_pids(ns);
    let _ = run_cmd(&["ip", "netns", "del", ns], CMD_SECS);
    let _ = fs::remove_dir_all(Path::new("/etc/netns").join(ns));
}

/// Removes namespaces left behind by earlier test processes that died (names
/// `zr-<pid>-...`/`zn-<pid>-...` whose pid no longer exists).
fn sweep_stale_namespaces() {
    let out = run_cmd(&["ip", "netns", "list"], CMD_SECS);
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(rest) = name
            .strip_prefix("zr-")
            .or_else(|| name.strip_prefix("zn-"))
        else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            eprintln!("lab: removing stale namespace {name}");
            delete_namespace(name);
        }
    }
}

// ------------------------------------------------------------------------------------------
// Lab

/// One veth pair between the router and the node.
#[derive(Debug, Clone)]
pub struct Wire {
    pub node_if: String,
    pub router_if: String,
    pub router_ip: Ipv4Addr,
    pub prefix: u8,
    /// False for a wire whose router end is left down (no carrier on the node side).
    pub carrier: bool,
}

impl Wire {
    /// The wire's IPv4 network address.
    pub fn network(&self) -> Ipv4Addr {
        let mask = if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - self.prefix)
        };
        Ipv4Addr::from(u32::from(self.router_ip) & mask)
    }
    /// `network + n`, e.g. `host(100)` is `10.1.0.100` on `10.1.0.0/24`.
    pub fn host(&self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network()) + n)
    }
    pub fn contains(&self, a: Ipv4Addr) -> bool {
        let mask = if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - self.prefix)
        };
        u32::from(a) & mask == u32::from(self.network())
    }
}

pub struct Lab {
    pub hint: String,
    pub router: String,
    pub node: String,
    /// Temporary directory of this lab: state files, dnsmasq logs and leases.
    pub dir: PathBuf,
    wires: Mutex<Vec<Wire>>,
}

impl Lab {
    /// Creates the router and node namespaces (with their `/etc/netns/<ns>/resolv.conf`
    /// first) and sets `lo` up in both. Call [`require_root`] before.
    pub fn new(name_hint: &str) -> Lab {
        SWEEP.call_once(sweep_stale_namespaces);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let hint: String = name_hint
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .take(24)
            .collect();
        let router = format!("zr-{pid}-{n}-{hint}");
        let node = format!("zn-{pid}-{n}-{hint}");
        let dir = std::env::temp_dir().join(format!("zos-lab-{pid}-{n}-{hint}"));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        let lab = Lab {
            hint,
            router,
            node,
            dir,
            wires: Mutex::new(Vec::new()),
        };
        for ns in [&lab.router, &lab.node] {
            // Before anything runs in the namespace: `ip netns exec` then bind-mounts this file
            // over /etc/resolv.conf, so nothing in the lab can write the host's.
            let etc = Path::new("/etc/netns").join(ns);
            fs::create_dir_all(&etc).unwrap_or_else(|e| panic!("mkdir {}: {e}", etc.display()));
            fs::write(etc.join("resolv.conf"), "")
                .unwrap_or_else(|e| panic!("write {}/resolv.conf: {e}", etc.display()));
            run_ok(&["ip", "netns", "add", ns]);
            run_ok(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        lab
    }

    /// A path inside the lab's temporary directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The state file tests pass with `--state` (never the default /run path).
    pub fn state_path(&self) -> PathBuf {
        self.path("state.json")
    }

    /// veth pair `router_if` (router ns, addressed `router_cidr`, up) ⇄ `node_if` (node ns,
    /// left DOWN: the binary must bring it up).
    pub fn wire(&self, node_if: &str, router_if: &str, router_cidr: &str) -> Wire {
        self.add_wire(node_if, router_if, router_cidr, true)
    }

    /// Like [`Lab::wire`], but the router end stays down: the node side never sees carrier.
    pub fn wire_no_carrier(&self, node_if: &str, router_if: &str, router_cidr: &str) -> Wire {
        self.add_wire(node_if, router_if, router_cidr, false)
    }

    fn add_wire(&self, node_if: &str, router_if: &str, router_cidr: &str, carrier: bool) -> Wire {
        assert!(
            node_if.len() <= 15 && router_if.len() <= 15,
            "interface names are at most 15 bytes"
        );
        let (ip, prefix) = router_cidr
            .split_once('/')
            .unwrap_or_else(|| panic!("{router_cidr}: not a CIDR"));
        let router_ip: Ipv4Addr = ip.parse().unwrap_or_else(|e| panic!("{router_cidr}: {e}"));
        let prefix: u8 = prefix
            .parse()
            .unwrap_or_else(|e| panic!("{router_cidr}: {e}"));
        run_ok(&[
            "ip",
            "-n",
            &self.router,
            "link",
            "add",
            router_if,
            "type",
            "veth",
            "peer",
            "name",
            node_if,
            "netns",
            &self.node,
        ]);
        run_ok(&[
            "ip",
            "-n",
            &self.router,
            "addr",
            "add",
            router_cidr,
            "dev",
            router_if,
        ]);
        if carrier {
            run_ok(&["ip", "-n", &self.router, "link", "set", router_if, "up"]);
        }
        let wire = Wire {
            node_if: node_if.into(),
            router_if: router_if.into(),
            router_ip,
            prefix,
            carrier,
        };
        self.wires.lock().unwrap().push(wire.clone());
        wire
    }

    /// Moves the router end of a wire to another address (flushes the old one), e.g. to
    /// simulate a node rebooting into another network. Returns the updated wire.
    pub fn renumber(&self, router_if: &str, router_cidr: &str) -> Wire {
        let (ip, prefix) = router_cidr
            .split_once('/')
            .unwrap_or_else(|| panic!("{router_cidr}: not a CIDR"));
        run_ok(&["ip", "-n", &self.router, "addr", "flush", "dev", router_if]);
        run_ok(&[
            "ip",
            "-n",
            &self.router,
            "addr",
            "add",
            router_cidr,
            "dev",
            router_if,
        ]);
        let mut wires = self.wires.lock().unwrap();
        let w = wires
            .iter_mut()
            .find(|w| w.router_if == router_if)
            .unwrap_or_else(|| panic!("no wire with router interface {router_if}"));
        w.router_ip = ip.parse().unwrap_or_else(|e| panic!("{router_cidr}: {e}"));
        w.prefix = prefix
            .parse()
            .unwrap_or_else(|e| panic!("{router_cidr}: {e}"));
        w.clone()
    }

    /// Puts a node interface back as a fresh boot finds it: no addresses, down.
    pub fn reset_node_if(&self, node_if: &str) {
        run_ok(&["ip", "-n", &self.node, "addr", "flush", "dev", node_if]);
        run_ok(&["ip", "-n", &self.node, "link", "set", node_if, "down"]);
    }

    fn wire_by_router_if(&self, router_if: &str) -> Wire {
        self.wires
            .lock()
            .unwrap()
            .iter()
            .find(|w| w.router_if == router_if)
            .cloned()
            .unwrap_or_else(|| panic!("no wire with router interface {router_if}"))
    }

    /// Starts dnsmasq (DHCP only, `--log-dhcp` into a file) on `router_if` in the router
    /// namespace and waits (bounded, by polling its log for the "DHCP, IP range" line it prints
    /// once its socket is bound) until it serves. Unless `extra_args` holds a `--dhcp-range`,
    /// the range is `.100`–`.200` of the wire's /24 with a 1 h lease. The returned handle stops
    /// it (by PID) when dropped.
    pub fn dnsmasq(&self, router_if: &str, extra_args: &[&str]) -> Dnsmasq {
        let wire = self.wire_by_router_if(router_if);
        let log = self.path(&format!("dnsmasq-{router_if}.log"));
        let leases = self.path(&format!("dnsmasq-{router_if}.leases"));
        let stderr = self.path(&format!("dnsmasq-{router_if}.stderr"));
        let _ = fs::remove_file(&log);
        fs::write(&leases, "").expect("create dnsmasq lease file");
        let mut args: Vec<String> = vec![
            "--no-daemon".into(),
            "--conf-file=/dev/null".into(),
            "--no-hosts".into(),
            format!("--interface={router_if}"),
            "--bind-interfaces".into(),
            "--except-interface=lo".into(),
            "--no-ping".into(),
            "--no-resolv".into(),
            "--port=0".into(),
            format!("--dhcp-leasefile={}", leases.display()),
            "--pid-file=".into(),
            "--log-dhcp".into(),
            format!("--log-facility={}", log.display()),
        ];
        if !extra_args.iter().any(|a| a.starts_with("--dhcp-range")) {
            assert_eq!(
                wire.prefix, 24,
                "default dhcp-range needs a /24; pass --dhcp-range"
            );
            args.push(format!(
                "--dhcp-range={},{},255.255.255.0,1h",
                wire.host(100),
                wire.host(200)
            ));
        }
        args.extend(extra_args.iter().map(|s| s.to_string()));

        let started = Instant::now();
        let child = Command::new("timeout")
            .args([
                "-k",
                "5",
                &DNSMASQ_MAX_SECS.to_string(),
                "ip",
                "netns",
                "exec",
                &self.router,
                "dnsmasq",
            ])
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&stderr).expect("create dnsmasq stderr file"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start dnsmasq: {e}"));
        let mut d = Dnsmasq {
            child,
            log,
            leases,
            stderr,
            started,
            ready: started,
            args,
        };
        let deadline = started + Duration::from_secs(10);
        loop {
            if d.log().contains("DHCP, IP range") {
                break;
            }
            if let Ok(Some(status)) = d.child.try_wait() {
                panic!("dnsmasq exited early ({status}):\n{}", d.describe());
            }
            if Instant::now() > deadline {
                panic!("dnsmasq not ready after 10 s:\n{}", d.describe());
            }
            sleep(Duration::from_millis(5));
        }
        d.ready = Instant::now();
        d
    }

    /// Drops `percent` % of DHCP packets on `router_if`, both ways, with an nftables table in
    /// the router namespace (input udp dport 67, output udp dport 68; `numgen random`).
    pub fn loss(&self, router_if: &str, percent: u32) {
        assert!(percent <= 100);
        // `numgen random mod 100 < 100` is rejected by nft (range 0-99): 100 % is a plain drop.
        let sel = if percent >= 100 {
            String::new()
        } else {
            format!("numgen random mod 100 < {percent} ")
        };
        let rules = format!(
            "table inet zlab_loss {{\n\
             \tchain input {{ type filter hook input priority 0; policy accept;\n\
             \t\tiifname \"{router_if}\" udp dport 67 {sel}counter drop\n\t}}\n\
             \tchain output {{ type filter hook output priority 0; policy accept;\n\
             \t\toifname \"{router_if}\" udp dport 68 {sel}counter drop\n\t}}\n\
             }}\n"
        );
        let file = self.path(&format!("loss-{router_if}.nft"));
        fs::write(&file, rules).expect("write nft rules");
        run_ok(&[
            "ip",
            "netns",
            "exec",
            &self.router,
            "nft",
            "-f",
            &file.to_string_lossy(),
        ]);
    }

    /// Packets dropped so far by [`Lab::loss`]: (client→server, server→client).
    pub fn loss_counters(&self) -> (u64, u64) {
        let v = run_json(&[
            "ip",
            "netns",
            "exec",
            &self.router,
            "nft",
            "-j",
            "list",
            "table",
            "inet",
            "zlab_loss",
        ]);
        let mut counts = (0, 0);
        for item in v["nftables"].as_array().into_iter().flatten() {
            let Some(rule) = item.get("rule") else {
                continue;
            };
            let packets = rule["expr"]
                .as_array()
                .into_iter()
                .flatten()
                .find_map(|e| e.get("counter").and_then(|c| c["packets"].as_u64()))
                .unwrap_or(0);
            match rule["chain"].as_str() {
                Some("input") => counts.0 += packets,
                Some("output") => counts.1 += packets,
                _ => {}
            }
        }
        counts
    }

    fn node_command(&self, args: &[&str], timeout: Duration) -> (Command, String) {
        let secs = timeout.as_secs().max(1).to_string();
        let mut cmd = Command::new("timeout");
        cmd.args(["-k", "5", &secs, "ip", "netns", "exec", &self.node, BIN])
            .args(args)
            .stdin(Stdio::null());
        cmd.env("RUST_BACKTRACE", "1");
        let line = format!(
            "timeout -k 5 {secs} ip netns exec {} {BIN} {}",
            self.node,
            args.join(" ")
        );
        (cmd, line)
    }

    /// Runs the binary in the node namespace, `timeout -k 5 <timeout> ip netns exec <node> BIN
    /// args...`, and returns its output and wall time. (RUST_LOG is inherited.)
    pub fn run_node(&self, args: &[&str], timeout: Duration) -> Run {
        let (mut cmd, cmdline) = self.node_command(args, timeout);
        let started = Instant::now();
        let output = cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot run {cmdline}: {e}"));
        Run {
            cmdline,
            output,
            elapsed: started.elapsed(),
        }
    }

    /// Starts the binary in the node namespace like [`Lab::run_node`] without waiting;
    /// stdout/stderr go to files in the lab directory (no pipe can fill up).
    pub fn spawn_node(&self, args: &[&str], timeout: Duration) -> NodeProc {
        let (mut cmd, cmdline) = self.node_command(args, timeout);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let out_path = self.path(&format!("node-{n}.stdout"));
        let err_path = self.path(&format!("node-{n}.stderr"));
        cmd.stdout(fs::File::create(&out_path).expect("create stdout file"))
            .stderr(fs::File::create(&err_path).expect("create stderr file"));
        let started = Instant::now();
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmdline}: {e}"));
        NodeProc {
            child,
            cmdline,
            started,
            exited: None,
            out_path,
            err_path,
        }
    }

    /// Runs a command in the node namespace (`ip netns exec <node> ...`), capturing output.
    pub fn node_exec(&self, argv: &[&str]) -> Output {
        let mut full = vec!["ip", "netns", "exec", &self.node];
        full.extend_from_slice(argv);
        run_cmd(&full, CMD_SECS)
    }

    /// Runs a command in the router namespace, capturing output.
    pub fn router_exec(&self, argv: &[&str]) -> Output {
        let mut full = vec!["ip", "netns", "exec", &self.router];
        full.extend_from_slice(argv);
        run_cmd(&full, CMD_SECS)
    }

    /// `ip -n <node> -j addr`, parsed.
    pub fn node_addrs_json(&self) -> Value {
        run_json(&["ip", "-n", &self.node, "-j", "addr"])
    }

    /// The node's IPv4 addresses on `ifname` (from `ip -j addr`).
    pub fn node_ipv4(&self, ifname: &str) -> Vec<Addr4> {
        let v = run_json(&[
            "ip", "-n", &self.node, "-j", "-4", "addr", "show", "dev", ifname,
        ]);
        let mut out = Vec::new();
        for link in v.as_array().into_iter().flatten() {
            for a in link["addr_info"].as_array().into_iter().flatten() {
                if a["family"] != "inet" {
                    continue;
                }
                let Some(local) = a["local"].as_str().and_then(|s| s.parse().ok()) else {
                    continue;
                };
                out.push(Addr4 {
                    address: local,
                    prefix: a["prefixlen"].as_u64().unwrap_or(0) as u8,
                    valid_lft: a["valid_life_time"].as_u64().unwrap_or(FOREVER),
                    preferred_lft: a["preferred_life_time"].as_u64().unwrap_or(FOREVER),
                });
            }
        }
        out
    }

    /// `ip -n <node> -j -4 route show table main`, parsed.
    pub fn node_routes_json(&self) -> Value {
        run_json(&[
            "ip", "-n", &self.node, "-j", "-4", "route", "show", "table", "main",
        ])
    }

    /// The node's IPv4 routes in the main table.
    pub fn node_routes(&self) -> Vec<Route4> {
        self.node_routes_json()
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| Route4 {
                dst: r["dst"].as_str().unwrap_or("").to_string(),
                gateway: r["gateway"].as_str().and_then(|g| g.parse().ok()),
                dev: r["dev"].as_str().unwrap_or("").to_string(),
                protocol: r["protocol"].as_str().unwrap_or("").to_string(),
            })
            .collect()
    }

    /// `ip -n <node> -j link show dev <ifname>`, the one object.
    pub fn node_link(&self, ifname: &str) -> Value {
        let v = run_json(&["ip", "-n", &self.node, "-j", "link", "show", "dev", ifname]);
        v.as_array()
            .and_then(|a| a.first())
            .cloned()
            .unwrap_or_else(|| panic!("no link {ifname}: {v}"))
    }

    pub fn node_mac(&self, ifname: &str) -> String {
        self.node_link(ifname)["address"]
            .as_str()
            .expect("link has an address")
            .to_string()
    }

    pub fn node_mtu(&self, ifname: &str) -> u64 {
        self.node_link(ifname)["mtu"]
            .as_u64()
            .expect("link has an mtu")
    }

    /// The node's resolv.conf (`/etc/netns/<node>/resolv.conf`).
    pub fn node_resolv_conf(&self) -> String {
        fs::read_to_string(Path::new("/etc/netns").join(&self.node).join("resolv.conf"))
            .unwrap_or_default()
    }

    /// Reads and parses a state file the binary wrote.
    pub fn read_state(&self, path: &Path) -> Value {
        let text = fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("read state {}: {e}", path.display()));
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("state {} is not JSON ({e}):\n{text}", path.display()))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in [self.node.clone(), self.router.clone()] {
            delete_namespace(&ns);
        }
        let keep =
            std::thread::panicking() || std::env::var_os("ZOS_LAB_KEEP").is_some_and(|v| v == "1");
        if keep {
            eprintln!("lab {}: files kept in {}", self.hint, self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// `valid_life_time` of a permanent address in `ip -j` output.
pub const FOREVER: u64 = u32::MAX as u64;

#[derive(Debug, Clone, PartialEq)]
pub struct Addr4 {
    pub address: Ipv4Addr,
    pub prefix: u8,
    /// Seconds; [`FOREVER`] for a permanent address.
    pub valid_lft: u64,
    pub preferred_lft: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Route4 {
    /// `default` or `a.b.c.d/n` (as `ip` prints it; host routes without `/32`).
    pub dst: String,
    pub gateway: Option<Ipv4Addr>,
    pub dev: String,
    pub protocol: String,
}

// ------------------------------------------------------------------------------------------
// Processes

/// A running dnsmasq; stopped (SIGTERM by PID, then SIGKILL) and reaped on drop.
pub struct Dnsmasq {
    child: Child,
    pub log: PathBuf,
    pub leases: PathBuf,
    stderr: PathBuf,
    /// Just before the process was spawned.
    pub started: Instant,
    /// When its readiness line was seen.
    pub ready: Instant,
    pub args: Vec<String>,
}

impl Dnsmasq {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
    /// Everything dnsmasq logged so far (`--log-dhcp`: every packet it saw and sent).
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
    /// Its lease file as written so far.
    pub fn leases(&self) -> String {
        fs::read_to_string(&self.leases).unwrap_or_default()
    }
    /// Arguments, log and stderr, for assertion messages.
    pub fn describe(&self) -> String {
        format!(
            "dnsmasq {}\n--- dnsmasq log ---\n{}--- dnsmasq stderr ---\n{}",
            self.args.join(" "),
            self.log(),
            fs::read_to_string(&self.stderr).unwrap_or_default()
        )
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        stop_child(&mut self.child, Duration::from_secs(8));
    }
}

/// The outcome of [`Lab::run_node`] / [`NodeProc::wait_timeout`].
pub struct Run {
    pub cmdline: String,
    pub output: Output,
    pub elapsed: Duration,
}

impl Run {
    pub fn status(&self) -> ExitStatus {
        self.output.status
    }
    /// Exit code (`timeout` gives 124 when it had to stop the binary, 137 after its SIGKILL).
    pub fn code(&self) -> Option<i32> {
        self.output.status.code()
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }
    /// stdout + stderr.
    pub fn all_output(&self) -> String {
        format!("{}\n{}", self.stdout(), self.stderr())
    }
    /// Command, exit status, wall time, stdout and stderr, for assertion messages.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "$ {}", self.cmdline);
        let _ = writeln!(s, "exit: {} after {:?}", self.output.status, self.elapsed);
        if self.code() == Some(124) || self.code() == Some(137) {
            let _ = writeln!(s, "(killed by `timeout`)");
        }
        let _ = writeln!(s, "--- stdout ---\n{}", self.stdout());
        let _ = write!(s, "--- stderr ---\n{}", self.stderr());
        s
    }
}

/// The binary started with [`Lab::spawn_node`]; stopped (SIGTERM, SIGKILL) and reaped on drop.
pub struct NodeProc {
    child: Child,
    pub cmdline: String,
    /// Just before the process was spawned.
    pub started: Instant,
    /// When a poll first saw it exited.
    pub exited: Option<Instant>,
    out_path: PathBuf,
    err_path: PathBuf,
}

impl NodeProc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Has it exited (polls once, records the time it was first seen exited)?
    pub fn has_exited(&mut self) -> bool {
        if self.exited.is_some() {
            return true;
        }
        match self.child.try_wait() {
            Ok(Some(_)) => {
                self.exited = Some(Instant::now());
                true
            }
            _ => false,
        }
    }

    /// Output so far (stdout, stderr).
    pub fn output_so_far(&self) -> (String, String) {
        (
            fs::read_to_string(&self.out_path).unwrap_or_default(),
            fs::read_to_string(&self.err_path).unwrap_or_default(),
        )
    }

    /// Waits (polling every 2 ms) up to `limit` for the process to exit; `None` if it is
    /// still running (it is left running; drop stops it).
    pub fn wait_timeout(&mut self, limit: Duration) -> Option<Run> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                let at = *self.exited.get_or_insert_with(Instant::now);
                let (stdout, stderr) = self.output_so_far();
                return Some(Run {
                    cmdline: self.cmdline.clone(),
                    output: Output {
                        status,
                        stdout: stdout.into_bytes(),
                        stderr: stderr.into_bytes(),
                    },
                    elapsed: at - self.started,
                });
            }
            if Instant::now() >= deadline {
                return None;
            }
            sleep(Duration::from_millis(2));
        }
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        stop_child(&mut self.child, Duration::from_secs(8));
    }
}

// ------------------------------------------------------------------------------------------
// State JSON helpers

/// `state.interfaces[]` entry named `name`; panics with the whole state if missing.
pub fn state_iface<'a>(state: &'a Value, name: &str) -> &'a Value {
    state["interfaces"]
        .as_array()
        .and_then(|a| a.iter().find(|i| i["name"] == name))
        .unwrap_or_else(|| panic!("state has no interface {name}:\n{}", pretty(state)))
}

pub fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

/// Parses a JSON string value as an IPv4 address.
pub fn ip_of(v: &Value) -> Option<Ipv4Addr> {
    v.as_str().and_then(|s| s.parse().ok())
}

/// Seconds since the epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
