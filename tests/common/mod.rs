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
//! For IPv6 and reachability ([`Lab::hub`] and below): radvd ([`Lab::radvd`]), a second
//! router MAC on a segment ([`Lab::macvlan`]), busybox httpd ([`Lab::http_server`]), a DNS-only
//! dnsmasq ([`Lab::dns`]), "the Internet" on the router's `lo` ([`Lab::hub`]: the probe target
//! `hub.lab.test`), and per-family TCP rejects ([`Lab::reject_tcp`]). A run of the binary
//! that passes no `--cmdline` gets `--cmdline zos.probe=none` ([`Lab::run_node`]), so the
//! binary never probes its default public hub from a lab.
//!
//! Tests call [`require_root`] first and return early when it says no (printing
//! `SKIP <test>: ...`). Set `ZOS_LAB_REQUIRED=1` to turn such a skip into a failure (CI).
#![allow(dead_code)]

use std::fmt::Write as _;
use std::fs;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, Once, OnceLock};
use std::thread::sleep;
use std::time::{Duration, Instant};

use serde_json::Value;

#[path = "shared.rs"]
mod shared;
pub use shared::*;

#[path = "segment.rs"]
pub mod segment;
#[allow(unused_imports)]
pub use segment::*;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_zos-netboot");

/// Bound for the short housekeeping commands (`ip`, `nft`, `kill`, ...).
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

/// Like [`require_tool`], for tools whose version option exits non-zero (radvd 2.19's
/// `--version` exits 1): true when `tool <arg>` runs and prints `needle` (stdout or stderr).
pub fn require_tool_says(test: &str, tool: &str, arg: &str, needle: &str) -> bool {
    match Command::new("timeout")
        .args(["-k", "2", "10", tool, arg])
        .stdin(Stdio::null())
        .output()
    {
        Ok(o)
            if String::from_utf8_lossy(&o.stdout).contains(needle)
                || String::from_utf8_lossy(&o.stderr).contains(needle) =>
        {
            true
        }
        Ok(o) => skip(
            test,
            &format!(
                "needs {tool} (`{tool} {arg}` exited {} without {needle:?})",
                o.status
            ),
        ),
        Err(e) => skip(test, &format!("needs {tool} ({e})")),
    }
}

pub fn skip(test: &str, why: &str) -> bool {
    skip_unless_required("ZOS_LAB_REQUIRED", test, why)
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

fn run_json(argv: &[&str]) -> Value {
    let out = run_ok(argv);
    serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("`{}`: not JSON ({e}): {out}", argv.join(" ")))
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
        SWEEP.call_once(|| sweep_stale_namespaces(&["zr-", "zn-"]));
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
            create_namespace(ns);
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
        // Network safety: without `--cmdline` the binary would read the host's /proc/cmdline
        // and probe its default, public hub. A test that does not say otherwise gets probes
        // disabled (`zos.probe=none`), so nothing in a lab ever aims at a public host.
        let mut args: Vec<&str> = args.to_vec();
        let wants_cmdline = matches!(args.first(), Some(&"net") | Some(&"dhcp4") | Some(&"boot"));
        let has_cmdline = args
            .iter()
            .any(|a| *a == "--cmdline" || a.starts_with("--cmdline="));
        if wants_cmdline && !has_cmdline {
            args.extend(["--cmdline", "zos.probe=none"]);
        }
        let mut cmd = Command::new("timeout");
        cmd.args(["-k", "5", &secs, "ip", "netns", "exec", &self.node, BIN])
            .args(&args)
            .stdin(Stdio::null());
        cmd.env("RUST_BACKTRACE", "1");
        let shown: Vec<String> = args
            .iter()
            .map(|a| {
                if a.is_empty() || a.contains(char::is_whitespace) {
                    format!("'{a}'")
                } else {
                    a.to_string()
                }
            })
            .collect();
        let line = format!(
            "timeout -k 5 {secs} ip netns exec {} {BIN} {}",
            self.node,
            shown.join(" ")
        );
        (cmd, line)
    }

    /// Runs the binary in the node namespace, `timeout -k 5 <timeout> ip netns exec <node> BIN
    /// args...`, and returns its output and wall time. (RUST_LOG is inherited.) `net`/`dhcp4`
    /// without `--cmdline` get `--cmdline zos.probe=none` appended (see the module docs).
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

    /// `zos-netboot net --cmdline CMDLINE --state <lab>/state.json --resolv <lab>/resolv.conf
    /// EXTRA...` in the node namespace; the run is also kept as `run.txt` in the lab directory.
    pub fn run_net(&self, cmdline: &str, extra: &[&str], limit: Duration) -> Run {
        let state = self.state_path().to_string_lossy().into_owned();
        let resolv = self.path("resolv.conf").to_string_lossy().into_owned();
        let mut args = vec![
            "net",
            "--cmdline",
            cmdline,
            "--state",
            &state,
            "--resolv",
            &resolv,
        ];
        args.extend_from_slice(extra);
        let run = self.run_node(&args, limit);
        let _ = fs::write(self.path("run.txt"), run.describe());
        run
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

// ------------------------------------------------------------------------------------------
// IPv6 router side and "the Internet": radvd, macvlan, httpd, DNS, nftables rejects
//
// The router namespace stands in for the farmer's router *and* the Internet: the probe target
// ([`Lab::hub`]) lives on the router's `lo` at documentation addresses, so the node reaches it
// only through its default routes (DHCPv4 option 3, the RA's default route), and finds it only
// through the DNS servers it learned (DHCPv4 option 6, RA RDNSS).

/// Upper bound on the life of a lab daemon (radvd, httpd, DNS): protects against leaks.
const DAEMON_MAX_SECS: u64 = 300;

/// The probe target's name, and its addresses on the router's `lo`.
/// Debian's Python, which has python3-cryptography (scripts/setup.sh) for tests/grid/grid.py.
pub const PYTHON: &str = "/usr/bin/python3";

/// True when [`PYTHON`] can run tests/grid/grid.py (it needs python3-cryptography); else skips.
pub fn require_grid(test: &str) -> bool {
    let ok = Command::new("timeout")
        .args(["-k", "2", "20", PYTHON, "-c", "import cryptography"])
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success());
    ok || skip(
        test,
        &format!("needs {PYTHON} with python3-cryptography (bash scripts/setup.sh installs it)"),
    )
}

pub const HUB_NAME: &str = "hub.lab.test";
pub const HUB_V4: &str = "198.51.100.80";
pub const HUB_V6: &str = "2001:db8:ffff::80";
/// The lab's DNS server (dnsmasq, DNS only) on the router's `lo`.
pub const DNS_V4: &str = "198.51.100.53";
pub const DNS_V6: &str = "2001:db8:ffff::53";

/// An address family, for [`Lab::reject_tcp`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    fn nft_family(self) -> &'static str {
        match self {
            Family::V4 => "ip",
            Family::V6 => "ip6",
        }
    }
    fn table(self) -> &'static str {
        match self {
            Family::V4 => "zlab_reject4",
            Family::V6 => "zlab_reject6",
        }
    }
}

/// A background process started in the router namespace under `timeout` (radvd, busybox
/// httpd, a DNS-only dnsmasq). Stopped by PID (SIGTERM to `timeout`, which forwards it, then
/// SIGKILL) and reaped on drop; the lab's namespace cleanup catches any helper it forked.
pub struct Daemon {
    pub name: String,
    child: Child,
    pub args: Vec<String>,
    /// stderr (radvd logs here with `-m stderr`).
    pub stderr: PathBuf,
    /// A log file of its own, if it writes one (dnsmasq `--log-facility`).
    pub log: Option<PathBuf>,
    pub config: Option<PathBuf>,
    pub started: Instant,
    pub ready: Instant,
}

impl Daemon {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
    /// Still running?
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
    /// Its log so far: the log file if it has one, then stderr.
    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Some(l) = &self.log {
            s.push_str(&fs::read_to_string(l).unwrap_or_default());
        }
        s.push_str(&fs::read_to_string(&self.stderr).unwrap_or_default());
        s
    }
    /// Arguments, config and log, for assertion messages.
    pub fn describe(&self) -> String {
        let mut s = format!("--- {} {} ---\n", self.name, self.args.join(" "));
        if let Some(c) = &self.config {
            let _ = writeln!(
                s,
                "config {}:\n{}",
                c.display(),
                fs::read_to_string(c).unwrap_or_default()
            );
        }
        let _ = write!(s, "log:\n{}", self.log());
        s
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        stop_child(&mut self.child, Duration::from_secs(8));
    }
}

/// The probe target: httpd on [`HUB_V4`] and [`HUB_V6`], DNS on [`DNS_V4`]/[`DNS_V6`] that
/// answers [`HUB_NAME`] with both. Its daemons stop when it is dropped.
pub struct Hub {
    pub url: String,
    pub dns: Daemon,
    pub http: Vec<Daemon>,
}

impl Hub {
    /// The kernel command line that aims the node's probes at this hub (and only at it).
    pub fn cmdline(&self) -> String {
        format!("zos.probe={}", self.url)
    }
    /// dnsmasq argument: DHCPv4 option 6 pointing at the lab DNS.
    pub fn dhcp_dns_option(&self) -> String {
        format!("--dhcp-option=6,{DNS_V4}")
    }
    pub fn describe(&self) -> String {
        let mut s = self.dns.describe();
        for h in &self.http {
            s.push('\n');
            s.push_str(&h.describe());
        }
        s
    }
}

/// An IPv6 address on a node interface, from `ip -j -6 addr`.
#[derive(Debug, Clone, PartialEq)]
pub struct Addr6 {
    pub address: Ipv6Addr,
    pub prefix: u8,
    /// "global", "link", "site", "host".
    pub scope: String,
    pub tentative: bool,
    pub dadfailed: bool,
    pub optimistic: bool,
    pub valid_lft: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Route6 {
    /// `default` or `prefix/len` as `ip` prints it.
    pub dst: String,
    pub gateway: Option<Ipv6Addr>,
    pub dev: String,
    pub protocol: String,
}

/// The EUI-64 SLAAC address (RFC 4291 appendix A) for `mac` in the /64 of `prefix`.
pub fn eui64_address(prefix: Ipv6Addr, mac: &str) -> Ipv6Addr {
    let iid = eui64_interface_id(mac);
    let net = prefix.to_bits() & !(u128::MAX >> 64);
    Ipv6Addr::from_bits(net | u128::from(iid))
}

/// The 64-bit interface identifier derived from a MAC: U/L bit flipped, ff:fe in the middle.
pub fn eui64_interface_id(mac: &str) -> u64 {
    let b: Vec<u8> = mac
        .split(':')
        .map(|x| u8::from_str_radix(x, 16).unwrap_or_else(|e| panic!("MAC {mac}: {e}")))
        .collect();
    assert_eq!(b.len(), 6, "MAC {mac}");
    u64::from_be_bytes([b[0] ^ 0x02, b[1], b[2], 0xff, 0xfe, b[3], b[4], b[5]])
}

impl Lab {
    /// `sysctl -qw k=v ...` in the router namespace.
    pub fn router_sysctl(&self, settings: &[&str]) {
        let mut argv = vec!["ip", "netns", "exec", &self.router, "sysctl", "-qw"];
        argv.extend_from_slice(settings);
        run_ok(&argv);
    }

    /// Makes a router-side interface an IPv6 router port: `forwarding=1` (and
    /// `all.forwarding=1`, which radvd checks), `accept_ra=0` (it must not configure itself
    /// from the RAs on the segment), `accept_dad=0` (its link-local, made when the node side
    /// comes up, is usable at once, so the first RA is not held back by the router's DAD).
    pub fn ipv6_router_if(&self, router_if: &str) {
        self.router_sysctl(&[
            "net.ipv6.conf.all.forwarding=1",
            &format!("net.ipv6.conf.{router_if}.forwarding=1"),
            &format!("net.ipv6.conf.{router_if}.accept_ra=0"),
            &format!("net.ipv6.conf.{router_if}.accept_dad=0"),
        ]);
    }

    /// Adds an address (IPv4 or IPv6, CIDR) to a router-namespace interface; IPv6 without DAD.
    pub fn router_addr(&self, dev: &str, cidr: &str) {
        let mut argv = vec!["ip", "-n", &self.router, "addr", "add", cidr, "dev", dev];
        if cidr.contains(':') {
            argv.push("nodad");
        }
        run_ok(&argv);
    }

    /// MAC of a router-namespace interface.
    pub fn router_mac(&self, ifname: &str) -> String {
        let v = run_json(&[
            "ip",
            "-n",
            &self.router,
            "-j",
            "link",
            "show",
            "dev",
            ifname,
        ]);
        v[0]["address"]
            .as_str()
            .unwrap_or_else(|| panic!("router link {ifname}: {v}"))
            .to_string()
    }

    /// The link-local address of a router interface (it gets one once it has carrier).
    pub fn router_link_local(&self, ifname: &str) -> Ipv6Addr {
        let v = run_json(&[
            "ip",
            "-n",
            &self.router,
            "-j",
            "-6",
            "addr",
            "show",
            "dev",
            ifname,
            "scope",
            "link",
        ]);
        v.as_array()
            .into_iter()
            .flatten()
            .flat_map(|l| l["addr_info"].as_array().cloned().unwrap_or_default())
            .find_map(|a| a["local"].as_str().and_then(|s| s.parse().ok()))
            .unwrap_or_else(|| panic!("router interface {ifname} has no link-local address: {v}"))
    }

    /// Starts radvd for `router_if` in the router namespace. The config is
    /// `interface IF { AdvSendAdvert on; MinRtrAdvInterval 3; MaxRtrAdvInterval 4; BODY };`,
    /// BODY holding flags (`AdvManagedFlag on;`), `prefix`, `RDNSS`, `DNSSL` blocks. Before:
    /// [`Lab::ipv6_router_if`]. Give the interface a global address in the prefix with
    /// [`Lab::router_addr`] when the node must reach the router over IPv6. Ready when radvd
    /// wrote its pid file (config parsed, sockets open); panics with its log if it exits.
    pub fn radvd(&self, router_if: &str, conf_body: &str) -> Daemon {
        self.ipv6_router_if(router_if);
        let conf = self.path(&format!("radvd-{router_if}.conf"));
        let pidfile = self.path(&format!("radvd-{router_if}.pid"));
        let stderr = self.path(&format!("radvd-{router_if}.log"));
        let _ = fs::remove_file(&pidfile);
        let text = format!(
            "interface {router_if} {{\n\tAdvSendAdvert on;\n\tMinRtrAdvInterval 3;\n\
             \tMaxRtrAdvInterval 4;\n{conf_body}\n}};\n"
        );
        fs::write(&conf, text).expect("write radvd config");
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
        let mut d = self.spawn_router_daemon("radvd", "radvd", &args, stderr, None);
        d.config = Some(conf);
        let ok = wait_until(Duration::from_secs(10), || {
            fs::read_to_string(&pidfile).is_ok_and(|p| p.trim().parse::<u32>().is_ok())
                || !matches!(d.child.try_wait(), Ok(None))
        });
        if !d.alive() {
            panic!("radvd exited early:\n{}", d.describe());
        }
        if !ok {
            panic!("radvd wrote no pid file within 10 s:\n{}", d.describe());
        }
        d.ready = Instant::now();
        d
    }

    /// A second router-side interface `name` on the segment of `router_if`, with its own MAC
    /// (macvlan, mode bridge), up, an IPv6 router port like [`Lab::ipv6_router_if`]. Sets
    /// `arp_ignore=1` in the router namespace so that only the interface that holds an IPv4
    /// address answers ARP for it (otherwise the macvlan could answer for the IPv4 gateway and
    /// blur "IPv4 gateway MAC ≠ IPv6 router MAC"). Returns its MAC.
    pub fn macvlan(&self, router_if: &str, name: &str) -> String {
        assert!(name.len() <= 15, "interface names are at most 15 bytes");
        run_ok(&[
            "ip",
            "-n",
            &self.router,
            "link",
            "add",
            "link",
            router_if,
            "name",
            name,
            "type",
            "macvlan",
            "mode",
            "bridge",
        ]);
        self.router_sysctl(&[
            "net.ipv4.conf.all.arp_ignore=1",
            &format!("net.ipv4.conf.{router_if}.arp_ignore=1"),
            &format!("net.ipv4.conf.{name}.arp_ignore=1"),
            "net.ipv4.conf.all.arp_announce=2",
        ]);
        self.ipv6_router_if(name);
        run_ok(&["ip", "-n", &self.router, "link", "set", name, "up"]);
        let mac = self.router_mac(name);
        assert_ne!(mac, self.router_mac(router_if), "macvlan got the same MAC");
        mac
    }

    pub fn spawn_router_daemon(
        &self,
        name: &str,
        program: &str,
        args: &[String],
        stderr: PathBuf,
        log: Option<PathBuf>,
    ) -> Daemon {
        let started = Instant::now();
        let child = Command::new("timeout")
            .args([
                "-k",
                "5",
                &DAEMON_MAX_SECS.to_string(),
                "ip",
                "netns",
                "exec",
                &self.router,
                program,
            ])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&stderr).expect("create daemon stderr file"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        Daemon {
            name: name.into(),
            child,
            args: args.to_vec(),
            stderr,
            log,
            config: None,
            started,
            ready: started,
        }
    }

    /// Local sockets listening in the router namespace (`ss -H -l -n`, `t`cp or `u`dp):
    /// the local address:port column.
    fn router_listening(&self, proto: &str) -> Vec<String> {
        let out = self.router_exec(&["ss", "-H", "-l", "-n", &format!("-{proto}")]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().nth(3).map(str::to_string))
            .collect()
    }

    /// busybox httpd (`-f -p ADDR:80`) in the router namespace, one per address (an empty
    /// list: one on every address, `-p 80`), serving a small index.html. The addresses must
    /// exist. Ready when `ss -ltn` shows each listening socket (bounded, 10 s).
    pub fn http_server(&self, addrs: &[&str]) -> Vec<Daemon> {
        let www = self.path("www");
        fs::create_dir_all(&www).expect("mkdir www");
        fs::write(www.join("index.html"), "<html>zos lab hub</html>\n").expect("write index");
        let binds: Vec<(String, Vec<String>)> = if addrs.is_empty() {
            vec![(
                "80".into(),
                vec!["*:80".into(), "0.0.0.0:80".into(), "[::]:80".into()],
            )]
        } else {
            addrs
                .iter()
                .map(|a| {
                    let sock = if a.contains(':') {
                        format!("[{a}]:80")
                    } else {
                        format!("{a}:80")
                    };
                    (sock.clone(), vec![sock])
                })
                .collect()
        };
        let mut out = Vec::new();
        for (n, (bind, listen)) in binds.into_iter().enumerate() {
            let args: Vec<String> = vec![
                "httpd".into(),
                "-f".into(),
                "-p".into(),
                bind.clone(),
                "-h".into(),
                www.to_string_lossy().into_owned(),
            ];
            let stderr = self.path(&format!("httpd-{n}.log"));
            let mut d =
                self.spawn_router_daemon(&format!("httpd {bind}"), "busybox", &args, stderr, None);
            let ok = wait_until(Duration::from_secs(10), || {
                let l = self.router_listening("t");
                listen.iter().any(|s| l.contains(s)) || !matches!(d.child.try_wait(), Ok(None))
            });
            if !d.alive() {
                panic!("httpd exited early:\n{}", d.describe());
            }
            if !ok {
                panic!(
                    "httpd not listening on {bind} within 10 s:\n{}",
                    d.describe()
                );
            }
            d.ready = Instant::now();
            out.push(d);
        }
        out
    }

    /// A DNS-only dnsmasq in the router namespace (`--port=53`, no DHCP, `--no-resolv`,
    /// `--no-hosts`, `--log-queries`) bound to `listen` (addresses that must exist) and
    /// answering `host_records` (`--host-record=` values: `name,ipv4,ipv6`). Ready when
    /// `ss -lun` shows every listening address.
    pub fn dns(&self, listen: &[&str], host_records: &[&str]) -> Daemon {
        assert!(!listen.is_empty());
        let log = self.path("dns.log");
        let stderr = self.path("dns.stderr");
        let _ = fs::remove_file(&log);
        let mut args: Vec<String> = vec![
            "--no-daemon".into(),
            "--conf-file=/dev/null".into(),
            "--no-hosts".into(),
            "--no-resolv".into(),
            "--port=53".into(),
            "--bind-interfaces".into(),
            format!("--listen-address={}", listen.join(",")),
            "--pid-file=".into(),
            "--log-queries".into(),
            format!("--log-facility={}", log.display()),
        ];
        args.extend(host_records.iter().map(|r| format!("--host-record={r}")));
        let mut d = self.spawn_router_daemon("dns (dnsmasq)", "dnsmasq", &args, stderr, Some(log));
        let want: Vec<String> = listen
            .iter()
            .map(|a| {
                if a.contains(':') {
                    format!("[{a}]:53")
                } else {
                    format!("{a}:53")
                }
            })
            .collect();
        let ok = wait_until(Duration::from_secs(10), || {
            let l = self.router_listening("u");
            want.iter().all(|w| l.contains(w)) || !matches!(d.child.try_wait(), Ok(None))
        });
        if !d.alive() {
            panic!("DNS dnsmasq exited early:\n{}", d.describe());
        }
        if !ok {
            panic!(
                "DNS dnsmasq not listening on {want:?} within 10 s:\n{}",
                d.describe()
            );
        }
        d.ready = Instant::now();
        d
    }

    /// "The Internet": [`HUB_V4`]/[`HUB_V6`] and [`DNS_V4`]/[`DNS_V6`] on the router's `lo`,
    /// httpd on both hub addresses, DNS answering [`HUB_NAME`]. The node reaches them only
    /// through its default routes; the router needs an address in the node's IPv6 prefix on
    /// the segment (a connected route) to answer over IPv6.
    pub fn hub(&self) -> Hub {
        for a in [format!("{HUB_V4}/32"), format!("{DNS_V4}/32")] {
            self.router_addr("lo", &a);
        }
        for a in [format!("{HUB_V6}/128"), format!("{DNS_V6}/128")] {
            self.router_addr("lo", &a);
        }
        let http = self.http_server(&[HUB_V4, HUB_V6]);
        let dns = self.dns(
            &[DNS_V4, DNS_V6],
            &[&format!("{HUB_NAME},{HUB_V4},{HUB_V6}")],
        );
        Hub {
            url: format!("http://{HUB_NAME}/"),
            dns,
            http,
        }
    }

    /// Rejects (TCP reset) incoming TCP to `port` of one family in the router namespace,
    /// counting the packets ([`Lab::reject_count`]): that family cannot reach the hub.
    pub fn reject_tcp(&self, family: Family, port: u16) {
        let rules = format!(
            "table {} {} {{\n\tchain input {{ type filter hook input priority 0; policy accept;\n\
             \t\ttcp dport {port} counter reject with tcp reset\n\t}}\n}}\n",
            family.nft_family(),
            family.table()
        );
        let file = self.path(&format!("{}.nft", family.table()));
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

    /// Packets rejected so far by [`Lab::reject_tcp`] for `family`.
    pub fn reject_count(&self, family: Family) -> u64 {
        let v = run_json(&[
            "ip",
            "netns",
            "exec",
            &self.router,
            "nft",
            "-j",
            "list",
            "table",
            family.nft_family(),
            family.table(),
        ]);
        let mut n = 0;
        for item in v["nftables"].as_array().into_iter().flatten() {
            let Some(rule) = item.get("rule") else {
                continue;
            };
            n += rule["expr"]
                .as_array()
                .into_iter()
                .flatten()
                .find_map(|e| e.get("counter").and_then(|c| c["packets"].as_u64()))
                .unwrap_or(0);
        }
        n
    }

    /// The node's IPv6 addresses on `ifname` (from `ip -j -6 addr`), with their DAD flags.
    pub fn node_ipv6(&self, ifname: &str) -> Vec<Addr6> {
        let v = run_json(&[
            "ip", "-n", &self.node, "-j", "-6", "addr", "show", "dev", ifname,
        ]);
        let mut out = Vec::new();
        for link in v.as_array().into_iter().flatten() {
            for a in link["addr_info"].as_array().into_iter().flatten() {
                if a["family"] != "inet6" {
                    continue;
                }
                let Some(local) = a["local"].as_str().and_then(|s| s.parse().ok()) else {
                    continue;
                };
                let flag = |k: &str| a[k].as_bool().unwrap_or(false);
                out.push(Addr6 {
                    address: local,
                    prefix: a["prefixlen"].as_u64().unwrap_or(0) as u8,
                    scope: a["scope"].as_str().unwrap_or("").to_string(),
                    tentative: flag("tentative"),
                    dadfailed: flag("dadfailed"),
                    optimistic: flag("optimistic"),
                    valid_lft: a["valid_life_time"].as_u64().unwrap_or(FOREVER),
                });
            }
        }
        out
    }

    /// The node's IPv6 routes in the main table.
    pub fn node_routes6(&self) -> Vec<Route6> {
        let v = run_json(&[
            "ip", "-n", &self.node, "-j", "-6", "route", "show", "table", "main",
        ]);
        v.as_array()
            .into_iter()
            .flatten()
            .map(|r| Route6 {
                dst: r["dst"].as_str().unwrap_or("").to_string(),
                gateway: r["gateway"].as_str().and_then(|g| g.parse().ok()),
                dev: r["dev"].as_str().unwrap_or("").to_string(),
                protocol: r["protocol"].as_str().unwrap_or("").to_string(),
            })
            .collect()
    }

    /// The MAC the node has in its neighbour table for `ip` (e.g. the IPv4 gateway).
    pub fn node_neighbour_mac(&self, ip: &str) -> Option<String> {
        let v = run_json(&["ip", "-n", &self.node, "-j", "neigh", "show", "to", ip]);
        v.as_array()
            .into_iter()
            .flatten()
            .find_map(|n| n["lladdr"].as_str().map(str::to_string))
    }

    /// The test grid (tests/grid/grid.py) as "the Internet": [`HUB_V4`]/[`HUB_V6`] on the
    /// router's `lo` with HTTPS on 443 and HTTP on 80 (and SNTP on [`HUB_V4`]:123, for nodes
    /// told about it with DHCP option 42 or `zos.ntp=`), a test CA made for this lab
    /// ([`Grid::ca`], naming [`HUB_NAME`] and both addresses), DNS answering [`HUB_NAME`], and
    /// `faults` passed to grid.py as they are. Serves [`Grid::root`] (create files there before
    /// or after; the grid reads them per request). Ready when grid.py writes its ready file.
    pub fn grid(&self, faults: &[&str]) -> Grid {
        for a in [format!("{HUB_V4}/32"), format!("{DNS_V4}/32")] {
            self.router_addr("lo", &a);
        }
        for a in [format!("{HUB_V6}/128"), format!("{DNS_V6}/128")] {
            self.router_addr("lo", &a);
        }
        let dns = self.dns(
            &[DNS_V4, DNS_V6],
            &[&format!("{HUB_NAME},{HUB_V4},{HUB_V6}")],
        );
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/grid/grid.py");
        let ca_dir = self.path("grid-ca");
        if !ca_dir.join("server.pem").exists() {
            let names = format!("{HUB_NAME},{HUB_V4},{HUB_V6}");
            run_ok(&[
                PYTHON,
                &script.to_string_lossy(),
                "--make-ca",
                &ca_dir.to_string_lossy(),
                "--names",
                &names,
            ]);
        }
        let root = self.path("grid-root");
        fs::create_dir_all(&root).expect("mkdir grid root");
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let ready = self.path(&format!("grid-{n}.ready"));
        let records = self.path("grid-records.json");
        let mut args: Vec<String> = vec![
            script.to_string_lossy().into_owned(),
            "--root".into(),
            root.to_string_lossy().into_owned(),
            "--https".into(),
            format!("{HUB_V4}:443"),
            "--https".into(),
            format!("[{HUB_V6}]:443"),
            "--http".into(),
            format!("{HUB_V4}:80"),
            "--http".into(),
            format!("[{HUB_V6}]:80"),
            "--ntp".into(),
            format!("{HUB_V4}:123"),
            "--cert".into(),
            ca_dir.join("server.pem").to_string_lossy().into_owned(),
            "--key".into(),
            ca_dir.join("server-key.pem").to_string_lossy().into_owned(),
            "--records".into(),
            records.to_string_lossy().into_owned(),
            "--ready-file".into(),
            ready.to_string_lossy().into_owned(),
            "--exit-after".into(),
            (DAEMON_MAX_SECS - 10).to_string(),
        ];
        args.extend(faults.iter().map(|f| f.to_string()));
        let stderr = self.path(&format!("grid-{n}.stderr"));
        let mut d = self.spawn_router_daemon("grid.py", PYTHON, &args, stderr, None);
        let ok = wait_until(Duration::from_secs(20), || {
            ready.exists() || !matches!(d.child.try_wait(), Ok(None))
        });
        if !d.alive() {
            panic!("grid.py exited early:\n{}", d.describe());
        }
        if !ok {
            panic!("grid.py not ready within 20 s:\n{}", d.describe());
        }
        d.ready = Instant::now();
        Grid {
            daemon: d,
            dns,
            router: self.router.clone(),
            root,
            ca: ca_dir.join("ca.pem"),
            records,
        }
    }
}

/// The test grid started by [`Lab::grid`]; stops when dropped.
pub struct Grid {
    pub daemon: Daemon,
    pub dns: Daemon,
    /// The router namespace it runs in (where [`Grid::state`] asks it).
    pub router: String,
    /// Served as static files: `https://hub.lab.test/<path>`.
    pub root: PathBuf,
    /// The test CA's certificate (PEM): what the node must trust.
    pub ca: PathBuf,
    /// The registrar's records (JSON object keyed by node id), rewritten on each registration.
    pub records: PathBuf,
}

impl Grid {
    /// `GET /_grid/state` over plain HTTP on [`HUB_V4`], from inside the router namespace
    /// (Python's urllib, no proxy, under `timeout`): `{"records", "counters", "paths"}`, what
    /// the grid itself saw (requests per path, registrations created/updated/rejected, faults
    /// applied, TLS handshakes that failed).
    pub fn state(&self) -> Value {
        const GET: &str = "import sys, urllib.request as u\n\
            op = u.build_opener(u.ProxyHandler({}))\n\
            sys.stdout.write(op.open(sys.argv[1], timeout=10).read().decode())\n";
        let url = format!("http://{HUB_V4}/_grid/state");
        let out = run_ok(&["ip", "netns", "exec", &self.router, PYTHON, "-c", GET, &url]);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{url}: not JSON ({e}): {out}"))
    }

    /// How many requests the grid saw for a URL path (`paths` in [`Grid::state`]).
    pub fn requests(&self, path: &str) -> u64 {
        self.state()["paths"][path].as_u64().unwrap_or(0)
    }

    /// The registrar's records, `{}` before the first registration.
    pub fn records(&self) -> Value {
        match fs::read_to_string(&self.records) {
            Ok(text) => serde_json::from_str(&text).expect("grid records are JSON"),
            Err(_) => serde_json::json!({}),
        }
    }

    pub fn describe(&self) -> String {
        format!("{}\n{}", self.daemon.describe(), self.dns.describe())
    }
}

/// More hub addresses, for tests with several hubs (on the router's `lo`, reached by IP).
pub const HUB2_V4: &str = "198.51.100.81";
pub const HUB3_V4: &str = "198.51.100.82";

/// One more test grid (tests/grid/grid.py) on its own address, started by [`Lab::grid_at`]:
/// HTTPS on 443 and HTTP on 80 of [`HubGrid::addr`] only, its own CA ([`HubGrid::ca`], naming
/// the address), no DNS and no SNTP (reach it by IP). Stops when dropped.
pub struct HubGrid {
    pub daemon: Daemon,
    pub router: String,
    pub addr: String,
    /// Served as static files: `https://<addr>/<path>`.
    pub root: PathBuf,
    pub ca: PathBuf,
}

impl Lab {
    /// Starts a [`HubGrid`] on `addr` (an IPv4 address put on the router's `lo`) with `faults`
    /// passed to grid.py as they are. Ready when grid.py writes its ready file.
    pub fn grid_at(&self, addr: &str, faults: &[&str]) -> HubGrid {
        self.router_addr("lo", &format!("{addr}/32"));
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/grid/grid.py");
        let ca_dir = self.path(&format!("grid-ca-{addr}"));
        if !ca_dir.join("server.pem").exists() {
            run_ok(&[
                PYTHON,
                &script.to_string_lossy(),
                "--make-ca",
                &ca_dir.to_string_lossy(),
                "--names",
                addr,
            ]);
        }
        let root = self.path(&format!("grid-root-{addr}"));
        fs::create_dir_all(&root).expect("mkdir grid root");
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let ready = self.path(&format!("grid-{n}.ready"));
        let mut args: Vec<String> = vec![
            script.to_string_lossy().into_owned(),
            "--root".into(),
            root.to_string_lossy().into_owned(),
            "--https".into(),
            format!("{addr}:443"),
            "--http".into(),
            format!("{addr}:80"),
            "--cert".into(),
            ca_dir.join("server.pem").to_string_lossy().into_owned(),
            "--key".into(),
            ca_dir.join("server-key.pem").to_string_lossy().into_owned(),
            "--records".into(),
            self.path(&format!("grid-records-{addr}.json"))
                .to_string_lossy()
                .into_owned(),
            "--ready-file".into(),
            ready.to_string_lossy().into_owned(),
            "--exit-after".into(),
            (DAEMON_MAX_SECS - 10).to_string(),
        ];
        args.extend(faults.iter().map(|f| f.to_string()));
        let stderr = self.path(&format!("grid-{n}.stderr"));
        let mut d =
            self.spawn_router_daemon(&format!("grid.py {addr}"), PYTHON, &args, stderr, None);
        let ok = wait_until(Duration::from_secs(20), || {
            ready.exists() || !matches!(d.child.try_wait(), Ok(None))
        });
        if !d.alive() {
            panic!("grid.py on {addr} exited early:\n{}", d.describe());
        }
        if !ok {
            panic!("grid.py on {addr} not ready within 20 s:\n{}", d.describe());
        }
        d.ready = Instant::now();
        HubGrid {
            daemon: d,
            router: self.router.clone(),
            addr: addr.to_string(),
            root,
            ca: ca_dir.join("ca.pem"),
        }
    }
}

impl HubGrid {
    /// `https://<addr>/`: what `zos.hub=` names.
    pub fn url(&self) -> String {
        format!("https://{}/", self.addr)
    }

    /// `GET /_grid/state` over plain HTTP on its address (see [`Grid::state`]).
    pub fn state(&self) -> Value {
        const GET: &str = "import sys, urllib.request as u\n\
            op = u.build_opener(u.ProxyHandler({}))\n\
            sys.stdout.write(op.open(sys.argv[1], timeout=10).read().decode())\n";
        let url = format!("http://{}/_grid/state", self.addr);
        let out = run_ok(&["ip", "netns", "exec", &self.router, PYTHON, "-c", GET, &url]);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{url}: not JSON ({e}): {out}"))
    }

    /// How many requests it saw for a URL path.
    pub fn requests(&self, path: &str) -> u64 {
        self.state()["paths"][path].as_u64().unwrap_or(0)
    }

    pub fn describe(&self) -> String {
        self.daemon.describe()
    }
}
