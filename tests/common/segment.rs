//! More of the farm's segment for the fault tests: a third namespace on the same L2 segment as
//! the node (a rogue DHCP server, [`Lab::rogue_segment`] + [`Segment::rogue_dhcp`]), and a wire
//! that delays every frame ([`Lab::delayed_wire`], a userspace relay: this kernel has no
//! netem).
//!
//! The extra namespaces are named `zr-<pid>-<n>-...` like the router, so a crashed test
//! process's leftovers are swept the same way; each handle deletes its namespace (killing what
//! runs there, by PID) when dropped, and the lab's own teardown removes the rest.
use super::*;

/// A namespace attached to a segment of the lab (see [`Lab::rogue_segment`]).
pub struct Segment {
    pub ns: String,
    pub ifname: String,
    pub address: Ipv4Addr,
    dir: PathBuf,
}

impl Drop for Segment {
    fn drop(&mut self) {
        delete_namespace(&self.ns);
    }
}

/// A namespace `zr-<pid>-<n>-<tag>` with its own empty resolv.conf (before anything runs in it)
/// and `lo` up.
fn extra_namespace(tag: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let ns = format!("zr-{}-{n}-{tag}", std::process::id());
    let etc = Path::new("/etc/netns").join(&ns);
    fs::create_dir_all(&etc).unwrap_or_else(|e| panic!("mkdir {}: {e}", etc.display()));
    fs::write(etc.join("resolv.conf"), "")
        .unwrap_or_else(|e| panic!("write {}/resolv.conf: {e}", etc.display()));
    run_ok(&["ip", "netns", "add", &ns]);
    run_ok(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
    ns
}

/// Starts `program args` under `timeout` in namespace `ns`, stderr to `stderr`.
fn spawn_in(ns: &str, name: &str, program: &str, args: &[String], stderr: PathBuf) -> Daemon {
    let started = Instant::now();
    let child = Command::new("timeout")
        .args([
            "-k",
            "5",
            &DAEMON_MAX_SECS.to_string(),
            "ip",
            "netns",
            "exec",
            ns,
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
        log: None,
        config: None,
        started,
        ready: started,
    }
}

/// Waits (bounded) for a daemon's ready file; panics with its log if it exits or is late.
fn await_ready(d: &mut Daemon, ready: &Path, limit: Duration) {
    let ok = wait_until(limit, || {
        ready.exists() || !matches!(d.child.try_wait(), Ok(None))
    });
    if !d.alive() {
        panic!("{} exited early:\n{}", d.name, d.describe());
    }
    if !ok {
        panic!("{} not ready within {limit:?}:\n{}", d.name, d.describe());
    }
    d.ready = Instant::now();
}

impl Lab {
    /// A third namespace on the segment of `router_if`: a macvlan (mode bridge) on the router's
    /// end of the wire, moved into a namespace of its own as `q0`, addressed `cidr`, up. What
    /// runs there shares the node's L2 segment with the router (broadcasts reach both) but not
    /// its sockets: a second DHCP server on the farm's LAN.
    pub fn rogue_segment(&self, router_if: &str, cidr: &str) -> Segment {
        let ns = extra_namespace("rogue");
        let seg = Segment {
            ns: ns.clone(),
            ifname: "q0".into(),
            address: cidr
                .split('/')
                .next()
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| panic!("{cidr}: not a CIDR")),
            dir: self.dir.clone(),
        };
        let tmp = format!("zq{}", COUNTER.fetch_add(1, Ordering::SeqCst));
        run_ok(&[
            "ip",
            "-n",
            &self.router,
            "link",
            "add",
            "link",
            router_if,
            "name",
            &tmp,
            "type",
            "macvlan",
            "mode",
            "bridge",
        ]);
        run_ok(&["ip", "-n", &self.router, "link", "set", &tmp, "netns", &ns]);
        run_ok(&["ip", "-n", &ns, "link", "set", &tmp, "name", "q0"]);
        run_ok(&["ip", "-n", &ns, "addr", "add", cidr, "dev", "q0"]);
        run_ok(&["ip", "-n", &ns, "link", "set", "q0", "up"]);
        seg
    }

    /// `node_if` ⇄ a relay namespace ⇄ `router_if` (addressed `router_cidr`): two veth pairs
    /// and tests/common/delay_relay.py holding every frame `delay` in each direction. The node
    /// end is left down (the binary brings it up); it has carrier as soon as it is up. The
    /// returned [`Wire`] is the lab's like [`Lab::wire`]'s ([`Lab::dnsmasq`] serves it).
    pub fn delayed_wire(
        &self,
        node_if: &str,
        router_if: &str,
        router_cidr: &str,
        delay: Duration,
    ) -> (Wire, Relay) {
        let ns = extra_namespace("delay");
        let (ip, prefix) = router_cidr
            .split_once('/')
            .unwrap_or_else(|| panic!("{router_cidr}: not a CIDR"));
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
            "d0",
            "netns",
            &ns,
        ]);
        run_ok(&[
            "ip", "-n", &self.node, "link", "add", node_if, "type", "veth", "peer", "name", "d1",
            "netns", &ns,
        ]);
        // The relay's ports are no hosts: no IPv6 of their own (no DAD, RS or MLD of theirs
        // on the wire).
        run_ok(&[
            "ip",
            "netns",
            "exec",
            &ns,
            "sysctl",
            "-qw",
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
            "net.ipv6.conf.d0.disable_ipv6=1",
            "net.ipv6.conf.d1.disable_ipv6=1",
        ]);
        for dev in ["d0", "d1"] {
            run_ok(&["ip", "-n", &ns, "link", "set", dev, "up"]);
        }
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
        run_ok(&["ip", "-n", &self.router, "link", "set", router_if, "up"]);
        let wire = Wire {
            node_if: node_if.into(),
            router_if: router_if.into(),
            router_ip: ip.parse().unwrap_or_else(|e| panic!("{router_cidr}: {e}")),
            prefix: prefix
                .parse()
                .unwrap_or_else(|e| panic!("{router_cidr}: {e}")),
            carrier: true,
        };
        self.wires.lock().unwrap().push(wire.clone());

        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/common/delay_relay.py");
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let ready = self.path(&format!("relay-{n}.ready"));
        let args: Vec<String> = vec![
            script.to_string_lossy().into_owned(),
            "--a".into(),
            "d0".into(),
            "--b".into(),
            "d1".into(),
            "--delay-ms".into(),
            delay.as_millis().to_string(),
            "--ready-file".into(),
            ready.to_string_lossy().into_owned(),
            "--exit-after".into(),
            (DAEMON_MAX_SECS - 10).to_string(),
        ];
        let mut daemon = spawn_in(
            &ns,
            "delay_relay.py",
            PYTHON,
            &args,
            self.path(&format!("relay-{n}.stderr")),
        );
        await_ready(&mut daemon, &ready, Duration::from_secs(10));
        (
            wire,
            Relay {
                daemon: Some(daemon),
                ns,
            },
        )
    }
}

/// The delay line of [`Lab::delayed_wire`]; stops (and its namespace goes) when dropped.
pub struct Relay {
    daemon: Option<Daemon>,
    pub ns: String,
}

impl Relay {
    pub fn describe(&self) -> String {
        self.daemon
            .as_ref()
            .map(Daemon::describe)
            .unwrap_or_default()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.daemon.take();
        delete_namespace(&self.ns);
    }
}

/// What a rogue DHCP server ([`Segment::rogue_dhcp`]) says, however wrong.
#[derive(Debug, Clone)]
pub struct RogueConfig {
    pub offer: Ipv4Addr,
    pub netmask: Ipv4Addr,
    pub routers: Vec<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub lease_secs: u32,
    /// NAK every REQUEST (whichever server it names).
    pub nak: bool,
}

/// tests/common/rogue_dhcp.py running in a [`Segment`]; stops when dropped.
pub struct Rogue {
    pub daemon: Daemon,
    pub log: PathBuf,
}

impl Rogue {
    /// Client messages it received so far, by type name ("DISCOVER", "REQUEST", ...).
    pub fn received(&self, kind: &str) -> usize {
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.split_whitespace().nth(1) == Some(kind))
            .count()
    }
    /// Replies it sent so far of one type ("OFFER", "ACK", "NAK").
    pub fn sent(&self, kind: &str) -> usize {
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| {
                let mut w = l.split_whitespace().skip(1);
                w.next() == Some("sent") && w.next() == Some(kind)
            })
            .count()
    }
    pub fn describe(&self) -> String {
        format!(
            "{}\nrogue log:\n{}",
            self.daemon.describe(),
            fs::read_to_string(&self.log).unwrap_or_default()
        )
    }
}

impl Segment {
    /// A deliberately wrong DHCP server on this segment, answering at once with `cfg` (server
    /// identifier: the segment's address). Ready when its socket is bound.
    pub fn rogue_dhcp(&self, cfg: &RogueConfig) -> Rogue {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/common/rogue_dhcp.py");
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let log = self.dir.join(format!("rogue-{n}.log"));
        let ready = self.dir.join(format!("rogue-{n}.ready"));
        let mut args: Vec<String> = vec![
            script.to_string_lossy().into_owned(),
            "--iface".into(),
            self.ifname.clone(),
            "--server-id".into(),
            self.address.to_string(),
            "--offer".into(),
            cfg.offer.to_string(),
            "--netmask".into(),
            cfg.netmask.to_string(),
            "--lease".into(),
            cfg.lease_secs.to_string(),
            "--log".into(),
            log.to_string_lossy().into_owned(),
            "--ready-file".into(),
            ready.to_string_lossy().into_owned(),
            "--exit-after".into(),
            (DAEMON_MAX_SECS - 10).to_string(),
        ];
        for r in &cfg.routers {
            args.extend(["--router".into(), r.to_string()]);
        }
        for d in &cfg.dns {
            args.extend(["--dns".into(), d.to_string()]);
        }
        if cfg.nak {
            args.push("--nak".into());
        }
        let mut daemon = spawn_in(
            &self.ns,
            "rogue_dhcp.py",
            PYTHON,
            &args,
            self.dir.join(format!("rogue-{n}.stderr")),
        );
        await_ready(&mut daemon, &ready, Duration::from_secs(10));
        Rogue { daemon, log }
    }
}
