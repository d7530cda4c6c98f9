//! The network stage: links up, carrier by netlink events, DHCPv4 on every candidate NIC at
//! once (the first bound becomes the OOB NIC), SLAAC watched on every NIC with carrier, then
//! reachability probes per family and the classification. Returns the [`NetState`] the next
//! stage takes.
mod assemble;
pub mod classify;
pub mod dhcp4;
pub mod links;
pub mod node;
pub mod probe;
pub mod slaac;
pub mod state;
pub mod topology;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_lite::future;
use rtnetlink::packet_core::NetlinkMessage;
use rtnetlink::packet_route::RouteNetlinkMessage;
use smol::channel::{self, Receiver, Sender};

use crate::clock;
use crate::cmdline::StaticIpv4;
use crate::console::{self, Console};
use assemble::{auto_bond, create_bonds, create_vlans, report_slave, Slave};
use classify::{Classification, NicFacts, RaFacts, Reach};
use dhcp4::apply;
use dhcp4::client::{self, Client, Config, Event, Lease, ServerSeen};
use dhcp4::driver::{self, Update};
use links::{Nic, Notifications};
use probe::{Family, ProbeConfig, ProbeResult};

use node::{resolv, Input, NicSpec, Node, NodeConfig, Output, Scope, SlaacWatch, OOB_METRIC};
use slaac::ra::{NdUserOpt, NdUserOptSocket, RaSocket, RouterAdvert};
use slaac::watch::{self, Change, SlaacState};
use state::{
    Interface, Ipv4Entry, Ipv4Summary, Ipv6Entry, Ipv6Summary, LeaseRecord, NetState, Role,
    SlaacRecord, Timings,
};
use topology::{BondSetting, Duties, VlanLink, VlanSetting};

/// One DNS try, one TCP connect, one HTTP exchange: each bounded by this.
const PROBE_STEP_TIMEOUT: Duration = Duration::from_secs(2);

/// What `net` (and `dhcp4`) are asked to do.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// Only these NICs; empty means every physical NIC.
    pub ifaces: Vec<String>,
    /// This NIC must be the OOB NIC.
    pub oob: Option<String>,
    pub timeout: Duration,
    pub state_path: PathBuf,
    pub resolv_path: PathBuf,
    pub hostname: Option<String>,
    pub client_id: Option<Vec<u8>>,
    /// How long to wait for SLAAC per NIC after its carrier comes up; `None`: IPv4 only.
    pub ipv6_wait: Option<Duration>,
    /// Reachability targets; empty: no probes (online = IPv4 bound on the OOB NIC).
    pub probes: Vec<String>,
    /// Where the IPv6 sysctls live (/proc/sys/net/ipv6).
    pub sysctl_root: PathBuf,
    /// `ip=` static configuration: applied instead of DHCP on its NIC, which becomes the OOB.
    pub static_ipv4: Option<StaticIpv4>,
    /// VLAN links to create (`vlan:priv=`, `vlan:pub=`, `zos.vlan=`).
    pub vlans: Vec<VlanSetting>,
    /// Bonds to create (`zos.bond=`), before the VLANs.
    pub bonds: Vec<BondSetting>,
    /// `zos.bond=auto`: survey the NICs first and bond those on one segment.
    pub bond_auto: bool,
    /// Where kernel modules live, when this process may load them (PID 1): `8021q` is loaded
    /// from there before the first VLAN link is created.
    pub modules_dir: Option<PathBuf>,
}

/// A static `ip=` configuration as a lease that never expires, so everything after this stage
/// (routes, resolv.conf, state, hand-off) treats both the same way.
fn static_lease(s: &StaticIpv4) -> Lease {
    Lease {
        address: s.address,
        prefix: s.prefix,
        server: Ipv4Addr::UNSPECIFIED,
        lease_secs: u32::MAX,
        t1_secs: u32::MAX,
        t2_secs: u32::MAX,
        routers: s.gateway.into_iter().collect(),
        classless_routes: Vec::new(),
        dns: s.dns.clone(),
        domain: None,
        search: Vec::new(),
        ntp: Vec::new(),
        mtu: None,
    }
}

/// Why the network stage could not even start, in words for the console.
#[derive(Debug)]
pub struct NetError(pub String);

impl std::fmt::Display for NetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
enum Msg {
    Netlink(Option<NetlinkMessage<RouteNetlinkMessage>>),
    Dhcp(Update),
    DhcpFailed(u32, String),
    Advert(u32, RouterAdvert),
    NdOpt(NdUserOpt),
    Probed(Family, Vec<ProbeResult>),
    Tick,
}

/// Per-NIC I/O and console bookkeeping (the decisions are the node core's).
struct NicRun {
    nic: Nic,
    dhcp: Option<smol::Task<()>>,
    dhcp_kick: Option<Sender<()>>,
    ra_task: Option<smol::Task<()>>,
    ra_socket: Option<Arc<RaSocket>>,
    client_id: Vec<u8>,
    obtained: Option<SystemTime>,
    obtained_boottime_ms: Option<u64>,
    /// Option 12 as sent, handed over with the lease.
    hostname: Option<String>,
    sent: Arc<AtomicU32>,
    failure: Option<String>,
    /// The DHCPv4 servers that answered (from the client's [`Event::Servers`]).
    servers: Vec<ServerSeen>,
    /// What this link is for: DHCPv4, SLAAC (a VLAN parent may do neither).
    duties: Duties,
    /// Set for a VLAN link this stage created.
    vlan: Option<VlanLink>,
}

/// The network stage while it runs: the node core and its driver (netlink, the DHCP clients,
/// the RA listeners, the probes). [`start`] → [`Stage::until_online`] → [`Stage::settle`].
pub struct Stage {
    cfg: NetConfig,
    console: Console,
    handle: rtnetlink::Handle,
    notifications: Notifications,
    tx: Sender<Msg>,
    rx: Receiver<Msg>,
    nics: BTreeMap<u32, NicRun>,
    slaves: BTreeMap<u32, Slave>,
    node: Node,
    static_done: bool,
    deadline: Instant,
    dhcp4_ms: Option<u64>,
    bound_ms: Option<u64>,
    probe_started: Option<Instant>,
    probe_done: Option<Instant>,
    error: Option<String>,
    _nduseropt: Option<smol::Task<()>>,
}

/// `net`: the whole stage, its state final (SLAAC settled on every NIC, every probe done).
pub async fn run(cfg: &NetConfig, console: &Console) -> Result<NetState, NetError> {
    let mut stage = start(cfg, console).await?;
    stage.until_online().await;
    Ok(stage.settle().await)
}

/// Links, bonds and VLANs set up, every NIC handed to the node core, the ones with carrier
/// started.
pub async fn start(cfg: &NetConfig, console: &Console) -> Result<Stage, NetError> {
    let (handle, notifications) =
        links::connect().map_err(|e| NetError(format!("cannot open netlink: {e}")))?;
    let all = links::inventory(&handle)
        .await
        .map_err(|e| NetError(format!("cannot list network interfaces: {e}")))?;
    let mut chosen = choose(&all, &cfg.ifaces)?;
    let names: Vec<String> = chosen.iter().map(|n| n.name.clone()).collect();
    let mut bonds = cfg.bonds.clone();
    if cfg.bond_auto {
        bonds.extend(auto_bond(&handle, console, &chosen, &cfg.bonds).await);
    }
    let plan = topology::plan(&names, &bonds, &cfg.vlans, cfg.oob.as_deref());
    for p in &plan.problems {
        console.line(p);
    }
    let (bonds, slaves) = create_bonds(&handle, console, cfg, &chosen, &plan).await?;
    chosen.retain(|n| !slaves.contains_key(&n.index));
    chosen.extend(bonds);
    let vlans = create_vlans(&handle, console, cfg, &chosen, &plan).await?;
    chosen.extend(vlans.iter().map(|(nic, _)| nic.clone()));

    let (tx, rx) = channel::unbounded::<Msg>();
    let mut nics: BTreeMap<u32, NicRun> = BTreeMap::new();
    let mut node = Node::new(NodeConfig {
        oob: cfg.oob.clone(),
        slaac: cfg.ipv6_wait.map_or(SlaacWatch::Off, SlaacWatch::Until),
        probes: !cfg.probes.is_empty(),
        resolv_adopt_first: false,
    });
    let nduseropt = cfg.ipv6_wait.and_then(|_| spawn_nduseropt(&tx));
    for nic in chosen {
        let vlan = vlans
            .iter()
            .find(|(n, _)| n.index == nic.index)
            .map(|(_, l)| l.clone());
        let duties = match &vlan {
            Some(l) => l.duties,
            None => plan
                .untagged
                .iter()
                .find(|(n, _)| *n == nic.name)
                .map_or(Duties::ALL, |(_, d)| *d),
        };
        match &vlan {
            Some(l) => console.line(format_args!(
                "{}: VLAN {} on {} ({}): {}",
                nic.name,
                l.id,
                l.parent,
                match l.purpose {
                    topology::Purpose::Management => "vlan:priv, the management segment",
                    topology::Purpose::Public => "vlan:pub, the public segment",
                    topology::Purpose::Both => "zos.vlan",
                },
                duties.describe()
            )),
            None => console.line(format_args!(
                "{}: found NIC {} ({}), carrier {}{}",
                nic.name,
                client::fmt_mac(&nic.mac),
                nic.kind.as_deref().unwrap_or("hardware"),
                if nic.carrier { "up" } else { "down" },
                if duties == Duties::ALL {
                    String::new()
                } else {
                    format!("; untagged: {}", duties.describe())
                }
            )),
        }
        let mut ra_task = None;
        let mut ra_socket = None;
        if cfg.ipv6_wait.is_some() && !duties.slaac {
            // The kernel would otherwise configure it from untagged RAs on its own.
            if let Err(e) = slaac::quiet(&cfg.sysctl_root, &nic.name) {
                log::warn!("{}: {e}", nic.name);
            }
        }
        if cfg.ipv6_wait.is_some() && duties.slaac {
            // Before the link comes up, so the first RS and DAD already use these settings.
            match slaac::prepare(&cfg.sysctl_root, &nic.name) {
                Ok(skipped) if !skipped.is_empty() => {
                    log::info!(
                        "{}: sysctls not on this kernel: {}",
                        nic.name,
                        skipped.join(", ")
                    )
                }
                Ok(_) => {}
                Err(e) => {
                    console.line(format_args!("{}: IPv6 settings not applied: {e}", nic.name))
                }
            }
            if let Some((sock, task)) = spawn_ra_listener(&nic, &tx) {
                ra_socket = Some(sock);
                ra_task = Some(task);
            }
        }
        if !nic.admin_up {
            links::set_up(&handle, nic.index)
                .await
                .map_err(|e| NetError(format!("{}: cannot bring the link up: {e}", nic.name)))?;
        }
        let client_id = cfg
            .client_id
            .clone()
            .unwrap_or_else(|| Config::mac_client_id(nic.mac));
        node.add_nic(NicSpec {
            index: nic.index,
            name: nic.name.clone(),
            duties,
            static_here: cfg
                .static_ipv4
                .as_ref()
                .is_some_and(|s| s.device.as_deref() == Some(nic.name.as_str())),
        });
        nics.insert(
            nic.index,
            NicRun {
                nic,
                dhcp: None,
                dhcp_kick: None,
                obtained_boottime_ms: None,
                hostname: None,
                ra_task,
                ra_socket,
                client_id,
                obtained: None,
                sent: Arc::default(),
                failure: None,
                servers: Vec::new(),
                duties,
                vlan,
            },
        );
    }
    let mut stage = Stage {
        cfg: cfg.clone(),
        console: console.try_clone(),
        handle,
        notifications,
        tx,
        rx,
        nics,
        slaves,
        node,
        static_done: false,
        deadline: Instant::now() + cfg.timeout,
        dhcp4_ms: None,
        bound_ms: None,
        probe_started: None,
        probe_done: None,
        error: None,
        _nduseropt: nduseropt,
    };
    // Links brought up just now report carrier by notification; ones already up may not, so
    // the ones that have it now start at once.
    let up: Vec<(u32, bool)> = stage
        .nics
        .values()
        .filter(|r| r.nic.carrier)
        .map(|r| (r.nic.index, r.nic.oper_up))
        .collect();
    for (index, oper_up) in up {
        stage.carrier(index, oper_up).await;
    }
    Ok(stage)
}

impl Stage {
    /// Runs until the node is online (or the stage gives up), then reports: the state then is
    /// what the boot goes on with; [`Stage::settle`] completes it.
    pub async fn until_online(&mut self) -> NetState {
        loop {
            let now = Instant::now();
            if self.node.online() {
                break;
            }
            if let Some(why) = self.node.gave_up(now) {
                self.error = Some(why.into());
                break;
            }
            if now >= self.deadline {
                self.error = Some(why_offline(&self.nics, &self.node, self.cfg.timeout));
                break;
            }
            let wake = self
                .node
                .poll_at()
                .filter(|w| *w > now)
                .map_or(self.deadline, |w| w.min(self.deadline));
            if !self.step(wake).await {
                break;
            }
        }
        self.state(false).await
    }

    /// After [`Stage::until_online`]: follows SLAAC until every NIC is ready or waited for,
    /// and the probes still running, then stops the stage's listeners and returns the final
    /// state (a late router advertisement updates the classification here instead of holding
    /// the boot).
    pub async fn settle(mut self) -> NetState {
        loop {
            let now = Instant::now();
            if self.node.settled(now) && !self.node.probing() {
                break;
            }
            let wake = self
                .node
                .poll_at()
                .filter(|w| *w > now)
                .unwrap_or(now + PROBE_STEP_TIMEOUT);
            if !self.step(wake).await {
                break;
            }
        }
        // Stop listening; the addresses stay with their lifetimes and the full OS resumes
        // the lease.
        for run in self.nics.values_mut() {
            run.dhcp.take();
            run.ra_task.take();
        }
        self.state(true).await
    }

    /// One message in, the node core's outputs carried out. False when netlink went away.
    async fn step(&mut self, wake: Instant) -> bool {
        let msg = next_msg(&mut self.notifications, &self.rx, wake).await;
        let now = Instant::now();
        let outputs = match msg {
            Msg::Netlink(None) => {
                self.error = Some("the netlink connection closed".to_string());
                return false;
            }
            Msg::Netlink(Some(msg)) => {
                if let Some(update) = links::link_update(&msg) {
                    if let Some(slave) = self.slaves.get_mut(&update.index) {
                        report_slave(&self.console, slave, &update);
                        return true;
                    }
                    let Some(run) = self.nics.get_mut(&update.index) else {
                        return true;
                    };
                    if update.carrier != run.nic.carrier {
                        self.console.line(format_args!(
                            "{}: carrier {}",
                            run.nic.name,
                            if update.carrier { "up" } else { "down" }
                        ));
                    }
                    run.nic.carrier = update.carrier;
                    run.nic.oper_up = update.oper_up;
                    run.nic.mtu = update.mtu;
                    if update.carrier {
                        self.carrier(update.index, update.oper_up).await;
                        return true;
                    }
                    self.node.handle(
                        now,
                        Input::Link {
                            ifindex: update.index,
                            carrier: false,
                            oper_up: update.oper_up,
                        },
                    )
                } else if let Some(input) = slaac::from_netlink(&msg) {
                    self.node.handle(now, Input::Slaac(input))
                } else {
                    Vec::new()
                }
            }
            Msg::Advert(ifindex, ra) => self
                .node
                .handle(now, Input::Slaac(watch::Input::Advert { ifindex, ra })),
            Msg::NdOpt(opt) => self.node.handle(
                now,
                Input::Slaac(watch::Input::Dns {
                    ifindex: opt.ifindex,
                    servers: opt.rdnss,
                    search: opt.dnssl,
                }),
            ),
            Msg::DhcpFailed(ifindex, why) => {
                if let Some(run) = self.nics.get_mut(&ifindex) {
                    self.console
                        .line(format_args!("{}: DHCPv4 stopped: {why}", run.nic.name));
                    run.failure = Some(why.clone());
                }
                self.node.handle(now, Input::DhcpFailed { ifindex, why })
            }
            Msg::Dhcp(u) => {
                if let Some(run) = self.nics.get_mut(&u.ifindex) {
                    match &u.event {
                        Event::Servers(servers) => {
                            report_servers(&self.console, &run.nic.name, &run.servers, servers);
                            run.servers = servers.clone();
                        }
                        Event::Deconfigured(why) => self.console.line(format_args!(
                            "{}: DHCPv4 lease dropped: {why}",
                            run.nic.name
                        )),
                        Event::Bound(_) if self.node.oob().is_none() => {
                            self.dhcp4_ms = Some(u.since_first_send.as_millis() as u64);
                        }
                        _ => {}
                    }
                }
                let first = matches!(u.event, Event::Bound(_));
                let ifindex = u.ifindex;
                let out = self.node.handle(
                    now,
                    Input::Dhcp {
                        ifindex,
                        event: u.event,
                    },
                );
                if first {
                    self.bound_line(ifindex, u.since_first_send, &out);
                }
                out
            }
            Msg::Probed(family, results) => {
                report_probes(&self.console, &results);
                self.probe_done = Some(now);
                self.node.handle(now, Input::Probed { family, results })
            }
            Msg::Tick => Vec::new(),
        };
        self.carry_out(outputs).await;
        true
    }

    /// The carrier is up on `index`: the `ip=` configuration if it is this NIC's, then the
    /// node core's decisions (start DHCP, solicit a router, kick a client).
    async fn carrier(&mut self, index: u32, oper_up: bool) {
        let now = Instant::now();
        let mut out = Vec::new();
        if let Some(lease) = self.apply_static(index).await {
            out.extend(self.node.handle(
                now,
                Input::StaticApplied {
                    ifindex: index,
                    lease,
                },
            ));
        }
        out.extend(self.node.handle(
            now,
            Input::Link {
                ifindex: index,
                carrier: true,
                oper_up,
            },
        ));
        self.carry_out(out).await;
    }

    /// The console's line for a lease that came (before it is applied).
    fn bound_line(&self, ifindex: u32, since_first_send: Duration, out: &[Output]) {
        let Some(run) = self.nics.get(&ifindex) else {
            return;
        };
        for o in out {
            if let Output::Apply { lease, scope, .. } = o {
                self.console.line(format_args!(
                    "{}: DHCPv4 {}, lease {} from {} ({} ms){}",
                    run.nic.name,
                    lease.summary(),
                    console::human_secs(lease.lease_secs),
                    lease.server,
                    since_first_send.as_millis(),
                    match scope {
                        Scope::Whole => "",
                        Scope::LinkOnly =>
                            "; not the management NIC: its address and subnet only (no default \
                             route, DNS or NTP from this segment)",
                    }
                ));
            }
        }
    }

    /// Carries out the node core's decisions; what they report back is fed in, until the core
    /// has nothing more to say.
    async fn carry_out(&mut self, outputs: Vec<Output>) {
        let mut queue: std::collections::VecDeque<Output> = outputs.into();
        while let Some(o) = queue.pop_front() {
            let now = Instant::now();
            match o {
                Output::StartDhcp { ifindex } => {
                    if let Some(run) = self.nics.get_mut(&ifindex) {
                        start_dhcp(run, &self.cfg, &self.tx);
                    }
                }
                Output::Kick { ifindex } => {
                    if let Some(kick) = self.nics.get(&ifindex).and_then(|r| r.dhcp_kick.as_ref()) {
                        let _ = kick.try_send(());
                    }
                }
                Output::Solicit { ifindex } => {
                    if let Some(run) = self.nics.get(&ifindex) {
                        solicit(run);
                    }
                }
                Output::Apply {
                    ifindex,
                    lease,
                    metric,
                    scope,
                } => {
                    let Some(run) = self.nics.get_mut(&ifindex) else {
                        continue;
                    };
                    let result = apply::apply(&self.handle, ifindex, &run.nic.name, &lease, metric)
                        .await
                        .map_err(|e| e.to_string());
                    match &result {
                        Ok(()) => {
                            run.obtained = Some(SystemTime::now());
                            run.obtained_boottime_ms = clock::boottime_ms();
                            let first = self.node.lease(ifindex).is_none();
                            if first && scope == Scope::Whole && self.bound_ms.is_none() {
                                self.bound_ms =
                                    Some(self.console.start().elapsed().as_millis() as u64);
                            }
                            if first {
                                self.console.line(format_args!(
                                    "{}: to keep this address, reserve it for MAC {} \
                                     (client-id {}) on the DHCP server",
                                    run.nic.name,
                                    client::fmt_mac(&run.nic.mac),
                                    client::fmt_mac(&run.client_id)
                                ));
                            }
                        }
                        Err(e) => self
                            .console
                            .line(format_args!("{}: lease not applied: {e}", run.nic.name)),
                    }
                    queue.extend(self.node.handle(
                        now,
                        Input::Applied {
                            ifindex,
                            lease,
                            result,
                        },
                    ));
                }
                Output::Remove { ifindex, lease } => {
                    if let Err(e) = apply::remove(&self.handle, ifindex, &lease).await {
                        log::warn!("{ifindex}: {e}");
                    }
                }
                Output::WriteResolv {
                    dns,
                    search,
                    origin,
                } => {
                    let text = apply::resolv_conf_text(&dns, &search, &origin);
                    if let Err(e) = apply::write_file_atomic(&self.cfg.resolv_path, text.as_bytes())
                    {
                        self.console.line(format_args!(
                            "could not write {}: {e}",
                            self.cfg.resolv_path.display()
                        ));
                    }
                }
                Output::Probe { family, dns } => {
                    self.probe_started.get_or_insert(now);
                    let (urls, tx) = (self.cfg.probes.clone(), self.tx.clone());
                    smol::spawn(async move {
                        let (_, results) = probe_targets(&urls, &[family], &dns).await;
                        let _ = tx.send(Msg::Probed(family, results)).await;
                    })
                    .detach();
                }
                Output::Slaac(change) => report_slaac(&self.console, &self.nics, &change),
                Output::Online => {}
            }
        }
    }

    /// Applies the static `ip=` configuration if it is meant for this NIC (its device, or the
    /// first NIC with carrier when it names none). Returns the lease it applied.
    async fn apply_static(&mut self, index: u32) -> Option<Lease> {
        let st = self.cfg.static_ipv4.as_ref()?;
        let run = self.nics.get_mut(&index)?;
        if self.static_done || st.device.as_deref().is_some_and(|d| d != run.nic.name) {
            return None;
        }
        self.static_done = true;
        let lease = static_lease(st);
        match apply::apply(
            &self.handle,
            run.nic.index,
            &run.nic.name,
            &lease,
            OOB_METRIC,
        )
        .await
        {
            Ok(()) => {
                self.console.line(format_args!(
                    "{}: static IPv4 {} (ip= on the kernel command line)",
                    run.nic.name,
                    lease.summary()
                ));
                run.obtained = Some(SystemTime::now());
                Some(lease)
            }
            Err(e) => {
                self.console.line(format_args!(
                    "{}: static IPv4 not applied: {e}",
                    run.nic.name
                ));
                None
            }
        }
    }

    /// The state as it is now; `last`: the stage is over (diagnoses for NICs without IPv6 and
    /// the family race are reported then).
    async fn state(&self, last: bool) -> NetState {
        let now = Instant::now();
        let watch = self.node.watch();
        let slaac: BTreeMap<u32, SlaacState> = self
            .nics
            .keys()
            .filter(|i| self.node.watched(**i))
            .map(|i| (*i, watch.state(*i)))
            .collect();
        let diagnoses: BTreeMap<u32, String> = if last {
            slaac
                .keys()
                .filter_map(|i| {
                    let d = watch.diagnosis(*i, watch.waited(*i, now))?;
                    self.console.line(&d);
                    Some((*i, d))
                })
                .collect()
        } else {
            BTreeMap::new()
        };
        let oob = self.node.oob();
        let oob_lease = self.node.oob_lease();
        let (dns, search) = resolv(oob_lease, slaac.values());
        if last && dns.is_empty() && oob.is_some() {
            self.console
                .line("no DNS server from DHCP or router advertisements; resolv.conf left as is");
        }
        let probes = self.node.probe_results();
        let (ipv4, ipv6) = self.node.reachability();
        let reach = Reach { ipv4, ipv6 };
        let preferred_family = preferred(&self.console, &self.cfg.probes, &probes, last).await;
        let gateway_mac = match oob_lease.and_then(Lease::gateway) {
            Some(gw) => links::neighbour_mac(&self.handle, IpAddr::V4(gw)).await,
            None => None,
        };
        let classification = self.cfg.ipv6_wait.map(|_| {
            classify::classify(&facts(&self.nics, &self.node, &slaac, gateway_mac), reach)
        });
        let online = self.node.online();
        let mut error = self.error.clone();
        if !online && error.is_none() {
            error = Some(why_offline(&self.nics, &self.node, self.cfg.timeout));
        }
        let ms = |t: Instant| {
            t.saturating_duration_since(self.console.start())
                .as_millis() as u64
        };
        build_state(Built {
            nics: &self.nics,
            node: &self.node,
            online,
            error,
            slaac: &slaac,
            diagnoses,
            search,
            classification,
            dns,
            probes,
            preferred_family,
            reach,
            timings: Timings {
                dhcp4: self.dhcp4_ms,
                bound: self.bound_ms,
                slaac: slaac.values().filter_map(|s| s.ready_after_ms).min(),
                probes: self
                    .probe_started
                    .zip(self.probe_done)
                    .map(|(a, b)| b.saturating_duration_since(a).as_millis() as u64),
                usable: self.node.first_usable_at().map(ms),
                total: self.node.online_at().map(ms),
            },
        })
    }
}

/// Sends a router solicitation from the unspecified address now: the kernel solicits too, but
/// only once its link-local address has passed DAD (RFC 4861 §6.3.7 allows this one).
fn solicit(run: &NicRun) {
    let Some(sock) = run.ra_socket.clone() else {
        return;
    };
    let (index, name) = (run.nic.index, run.nic.name.clone());
    smol::spawn(async move {
        // Right after carrier-up the kernel may not route the multicast yet (ENETUNREACH): try
        // again shortly rather than wait for the kernel's own RS.
        for attempt in 0..5 {
            match sock.solicit(index, None).await {
                Ok(()) => break,
                Err(e) => {
                    log::debug!("{name}: router solicitation not sent ({attempt}): {e}");
                    smol::Timer::after(Duration::from_millis(20)).await;
                }
            }
        }
    })
    .detach();
}

fn start_dhcp(run: &mut NicRun, cfg: &NetConfig, tx: &Sender<Msg>) {
    if run.dhcp.is_some() || run.failure.is_some() {
        return;
    }
    let mac = run.nic.mac;
    let mac_text = client::fmt_mac(&mac);
    let hostname = cfg
        .hostname
        .clone()
        .unwrap_or_else(|| format!("zos-{}", mac_text.replace(':', "")));
    run.hostname = Some(hostname.clone());
    let config = Config {
        ifname: run.nic.name.clone(),
        mac,
        client_id: run.client_id.clone(),
        hostname: Some(hostname),
        vendor_class: "zos".into(),
    };
    let now = Instant::now();
    let seed = fastrand::u64(..)
        ^ u64::from_be_bytes([0, 0, mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]]);
    let client = match state::previous_address(&cfg.state_path, &mac_text) {
        Some(prev) => {
            log::info!(
                "{}: asking for the previous address {prev} first",
                run.nic.name
            );
            Client::reboot(config, prev, now, seed)
        }
        None => Client::new(config, now, seed),
    };
    let (task, kick) = driver::spawn(
        client,
        run.nic.index,
        run.nic.name.clone(),
        mac,
        run.sent.clone(),
        driver::Reports {
            to: tx.clone(),
            update: Msg::Dhcp,
            failed: Msg::DhcpFailed,
        },
    );
    run.dhcp = Some(task);
    run.dhcp_kick = Some(kick);
}

/// Whether the network the boot found is still there: the OOB link has carrier and still holds
/// its lease's address (the kernel removes it when the lease runs out). `Err` says what went.
/// PID 1 asks before retrying a stage that needs the network, and brings it up again if not.
pub async fn still_up(state: &NetState) -> Result<(), String> {
    let Some(oob) = state.interfaces.iter().find(|i| i.role == Role::Oob) else {
        return Ok(());
    };
    let Some(address) = oob.lease.as_ref().map(|l| l.lease.address) else {
        return Ok(());
    };
    let (handle, _) = links::connect().map_err(|e| format!("cannot open netlink: {e}"))?;
    let nic = links::inventory(&handle)
        .await
        .map_err(|e| format!("cannot list network interfaces: {e}"))?
        .into_iter()
        .find(|n| n.name == oob.name)
        .ok_or_else(|| format!("{} is gone", oob.name))?;
    if !nic.carrier {
        return Err(format!(
            "{}: no carrier (cable, switch port or the other end)",
            oob.name
        ));
    }
    use futures_lite::StreamExt;
    let mut addrs = handle
        .address()
        .get()
        .set_link_index_filter(nic.index)
        .execute();
    while let Some(Ok(msg)) = addrs.next().await {
        let has = msg.attributes.iter().any(|a| {
            matches!(a, rtnetlink::packet_route::address::AddressAttribute::Address(IpAddr::V4(a)) if *a == address)
        });
        if has {
            return Ok(());
        }
    }
    Err(format!(
        "{}: its address {address} is gone (the lease ran out)",
        oob.name
    ))
}

fn choose(all: &[Nic], wanted: &[String]) -> Result<Vec<Nic>, NetError> {
    if wanted.is_empty() {
        let physical: Vec<Nic> = all.iter().filter(|n| n.is_physical()).cloned().collect();
        if physical.is_empty() {
            return Err(NetError(
                "no network card found: is its driver in the image? (see the driver lines above)"
                    .into(),
            ));
        }
        return Ok(physical);
    }
    wanted
        .iter()
        .map(|name| {
            all.iter()
                .find(|n| &n.name == name)
                .cloned()
                .ok_or_else(|| {
                    let present: Vec<&str> = all.iter().map(|n| n.name.as_str()).collect();
                    NetError(format!(
                        "no network interface named {name} (present: {})",
                        present.join(", ")
                    ))
                })
        })
        .collect()
}

/// Reads router advertisements on one NIC (the kernel acts on them too; we read them for what
/// it does not tell: flags, prefixes it ignored, the router's MAC).
fn spawn_ra_listener(nic: &Nic, tx: &Sender<Msg>) -> Option<(Arc<RaSocket>, smol::Task<()>)> {
    let sock = match RaSocket::open(&nic.name) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            log::warn!("{}: cannot listen for router advertisements: {e}", nic.name);
            return None;
        }
    };
    let (index, tx, reader) = (nic.index, tx.clone(), sock.clone());
    let task = smol::spawn(async move {
        while let Ok(ra) = reader.recv().await {
            if tx.send(Msg::Advert(index, ra)).await.is_err() {
                break;
            }
        }
    });
    Some((sock, task))
}

fn spawn_nduseropt(tx: &Sender<Msg>) -> Option<smol::Task<()>> {
    let sock = match NdUserOptSocket::open() {
        Ok(s) => s,
        Err(e) => {
            log::warn!("cannot listen for RDNSS/DNSSL notifications: {e}");
            return None;
        }
    };
    let tx = tx.clone();
    Some(smol::spawn(async move {
        while let Ok(opt) = sock.recv().await {
            if tx.send(Msg::NdOpt(opt)).await.is_err() {
                break;
            }
        }
    }))
}

fn report_slaac(console: &Console, nics: &BTreeMap<u32, NicRun>, c: &Change) {
    let name = |i: &u32| nics.get(i).map_or("?", |r| r.nic.name.as_str()).to_string();
    match c {
        Change::FirstAdvert { ifindex, router } => console.line(format_args!(
            "{}: router advertisement from {router}",
            name(ifindex)
        )),
        Change::Ready {
            ifindex,
            address,
            prefix,
            after,
        } => console.line(format_args!(
            "{}: SLAAC {address}/{prefix} ready in {:.2}s",
            name(ifindex),
            after.as_secs_f32()
        )),
        Change::DadFailed { ifindex, address } => console.line(format_args!(
            "{}: duplicate address detection failed for {address}: another host uses it",
            name(ifindex)
        )),
        Change::Lost { ifindex } => console.line(format_args!(
            "{}: IPv6 lost its address or default route",
            name(ifindex)
        )),
    }
}

/// Probes `urls` over `families` with `dns`.
pub(crate) async fn probe_targets(
    urls: &[String],
    families: &[Family],
    dns: &[IpAddr],
) -> (Vec<probe::Target>, Vec<ProbeResult>) {
    let mut targets = Vec::new();
    let mut results = Vec::new();
    for url in urls {
        match probe::parse_url(url) {
            Ok(t) => targets.push(t),
            Err(e) => {
                // A target that cannot be probed is a failed probe, named on the console.
                for f in families {
                    results.push(ProbeResult {
                        url: url.clone(),
                        family: *f,
                        ok: false,
                        ms: 0,
                        address: None,
                        status: None,
                        stage: probe::Step::Url,
                        error: Some(e.clone()),
                    });
                }
            }
        }
    }
    let pcfg = ProbeConfig {
        dns_servers: dns.to_vec(),
        timeout: PROBE_STEP_TIMEOUT,
        attempts: 2,
    };
    results.extend(probe::probe_all(&targets, families, &pcfg).await);
    (targets, results)
}

/// A console line per probe result.
pub(crate) fn report_probes(console: &Console, results: &[ProbeResult]) {
    for r in results {
        let fam = match r.family {
            Family::Ipv4 => "IPv4",
            Family::Ipv6 => "IPv6",
        };
        if r.ok {
            console.line(format_args!(
                "probe {} over {fam}: ok in {} ms{}{}",
                r.url,
                r.ms,
                r.address.map(|a| format!(" ({a})")).unwrap_or_default(),
                r.status.map(|s| format!(", HTTP {s}")).unwrap_or_default()
            ));
        } else {
            console.line(format_args!(
                "probe {} over {fam}: FAILED at {}: {}",
                r.url,
                r.stage,
                r.error.as_deref().unwrap_or("unknown error")
            ));
        }
    }
}

/// Probes `urls` over `families` with `dns` and prints a line per result (`keep`, once the
/// network is back after an outage).
pub(crate) async fn probe_and_report(
    urls: &[String],
    console: &Console,
    families: &[Family],
    dns: &[IpAddr],
) -> Vec<ProbeResult> {
    let (_, results) = probe_targets(urls, families, dns).await;
    report_probes(console, &results);
    results
}

/// Which family to use for the downloads that follow: race the addresses of the first target
/// that answered, RFC 8305 style (IPv6 first, IPv4 250 ms later), as a real connection would.
async fn preferred(
    console: &Console,
    urls: &[String],
    results: &[ProbeResult],
    last: bool,
) -> Option<Family> {
    let t = urls.first().and_then(|u| probe::parse_url(u).ok())?;
    let addrs: Vec<IpAddr> = results
        .iter()
        .filter(|r| r.ok && r.url == t.url)
        .filter_map(|r| r.address)
        .collect();
    if addrs.is_empty() {
        return None;
    }
    match probe::connect_happy(&addrs, t.port, PROBE_STEP_TIMEOUT).await {
        Ok((_, ip)) => {
            let f = Family::of(&ip);
            if last && addrs.iter().any(|a| Family::of(a) != f) {
                console.line(format_args!(
                    "both families reach {}; {f} wins the race",
                    t.host
                ));
            }
            Some(f)
        }
        Err(_) => None,
    }
}

fn facts(
    nics: &BTreeMap<u32, NicRun>,
    node: &Node,
    slaac: &BTreeMap<u32, SlaacState>,
    gateway_mac: Option<[u8; 6]>,
) -> Vec<NicFacts> {
    nics.values()
        .map(|run| {
            let s = slaac.get(&run.nic.index);
            let is_oob = node.oob() == Some(run.nic.index);
            let lease = node.lease(run.nic.index);
            NicFacts {
                name: run.nic.name.clone(),
                mac: run.nic.mac,
                carrier: run.nic.carrier || lease.is_some(),
                is_oob,
                ipv4: lease.map(|l| (l.address, l.prefix)),
                ipv4_gateway_mac: if is_oob { gateway_mac } else { None },
                ipv6: s
                    .map(|s| {
                        s.addresses
                            .iter()
                            .chain(&s.local_addresses)
                            .copied()
                            .collect()
                    })
                    .unwrap_or_default(),
                ipv6_dad_failed: s.map(|s| s.dad_failed.clone()).unwrap_or_default(),
                ra: s.and_then(|s| s.last_advert.as_ref()).map(|ra| RaFacts {
                    router_mac: ra.source_mac,
                    managed: ra.managed,
                    other: ra.other,
                    router_lifetime_secs: ra.router_lifetime_secs,
                    autonomous_prefixes: ra
                        .prefixes
                        .iter()
                        .filter(|p| p.autonomous)
                        .map(|p| (p.prefix, p.len))
                        .collect(),
                    non_autonomous_prefixes: ra
                        .prefixes
                        .iter()
                        .filter(|p| !p.autonomous)
                        .map(|p| (p.prefix, p.len))
                        .collect(),
                    rdnss: ra.rdnss.clone(),
                }),
                dhcp4_tried: run.sent.load(Ordering::Relaxed) > 0,
            }
        })
        .collect()
}

async fn next_msg(notifications: &mut Notifications, rx: &Receiver<Msg>, wake: Instant) -> Msg {
    future::or(
        async { Msg::Netlink(links::next_notification(notifications).await) },
        future::or(
            async {
                match rx.recv().await {
                    Ok(m) => m,
                    Err(_) => future::pending().await,
                }
            },
            async {
                smol::Timer::at(wake).await;
                Msg::Tick
            },
        ),
    )
    .await
}

/// One server as the console names it: "10.1.0.2 (offered 192.168.1.50: router 10.9.9.9
/// outside 192.168.1.50/24; 3 NAKs: \"wrong network\")".
fn server_words(s: &ServerSeen) -> String {
    let mut parts = Vec::new();
    if let Some(a) = s.offered {
        if s.problems.is_empty() {
            parts.push(format!("offered {a}"));
        } else {
            parts.push(format!("offered {a}: {}", s.problems.join(", ")));
        }
    }
    if s.naks > 0 {
        parts.push(format!(
            "{} NAK{}: \"{}\"",
            s.naks,
            if s.naks == 1 { "" } else { "s" },
            s.nak_message.as_deref().unwrap_or("")
        ));
    }
    if parts.is_empty() {
        s.server.to_string()
    } else {
        format!("{} ({})", s.server, parts.join("; "))
    }
}

/// Console lines for what changed among the DHCP servers seen on one NIC: a second server on
/// the segment (a classic farm problem), an OFFER that could not be used as it was, a first NAK.
pub(crate) fn report_servers(console: &Console, nic: &str, old: &[ServerSeen], new: &[ServerSeen]) {
    let before = |s: &ServerSeen| old.iter().find(|o| o.server == s.server);
    if new.len() > 1 && new.iter().any(|s| before(s).is_none()) {
        let list: Vec<String> = new.iter().map(server_words).collect();
        console.line(format_args!(
            "{nic}: {} DHCP servers answer on this segment: {}. Only one should: another \
             router or a switch with its DHCP server on?",
            new.len(),
            list.join("; ")
        ));
        return;
    }
    for s in new {
        let was = before(s);
        if !s.problems.is_empty() && was.is_none_or(|w| w.problems != s.problems) {
            console.line(format_args!(
                "{nic}: DHCP server {}'s offer of {} is flawed: {}",
                s.server,
                s.offered.map_or("nothing".into(), |a| a.to_string()),
                s.problems.join(", ")
            ));
        }
        if s.naks > 0 && was.is_none_or(|w| w.naks == 0) {
            console.line(format_args!(
                "{nic}: DHCP server {} refused a request (NAK: \"{}\")",
                s.server,
                s.nak_message.as_deref().unwrap_or("")
            ));
        }
    }
}

/// The reason `net` gives up, NIC by NIC, with what to check.
fn why_offline(nics: &BTreeMap<u32, NicRun>, node: &Node, timeout: Duration) -> String {
    let mut lines = vec![format!(
        "no NIC got a DHCPv4 lease within {}s:",
        timeout.as_secs()
    )];
    for run in nics.values().filter(|r| r.duties.dhcp) {
        let line = if let Some(f) = &run.failure {
            format!("{}: DHCP could not run: {f}", run.nic.name)
        } else if !run.nic.carrier {
            format!(
                "{}: no carrier — check the cable and the switch port",
                run.nic.name
            )
        } else if node.lease(run.nic.index).is_some() {
            format!(
                "{}: bound but not confirmed (address conflict?)",
                run.nic.name
            )
        } else if run.servers.iter().any(|s| s.naks > 0) {
            let list: Vec<String> = run.servers.iter().map(server_words).collect();
            format!(
                "{}: carrier up, {} DHCP requests sent, refused (NAK) by the server: {} — does \
                 the server have a free address for this segment (and this MAC)?",
                run.nic.name,
                run.sent.load(Ordering::Relaxed),
                list.join("; ")
            )
        } else if !run.servers.is_empty() {
            let list: Vec<String> = run.servers.iter().map(server_words).collect();
            format!(
                "{}: carrier up, {} DHCP requests sent, no usable offer: {} — check the DHCP \
                 server's settings",
                run.nic.name,
                run.sent.load(Ordering::Relaxed),
                list.join("; ")
            )
        } else {
            format!(
                "{}: carrier up, {} DHCP requests sent, no usable answer — is a DHCP server \
                 serving this segment (and this MAC)?",
                run.nic.name,
                run.sent.load(Ordering::Relaxed)
            )
        };
        lines.push(line);
    }
    lines.join("\n  ")
}

struct Built<'a> {
    nics: &'a BTreeMap<u32, NicRun>,
    node: &'a Node,
    online: bool,
    error: Option<String>,
    slaac: &'a BTreeMap<u32, SlaacState>,
    diagnoses: BTreeMap<u32, String>,
    search: Vec<String>,
    classification: Option<Classification>,
    dns: Vec<IpAddr>,
    probes: Vec<ProbeResult>,
    preferred_family: Option<Family>,
    reach: Reach,
    timings: Timings,
}

fn build_state(b: Built) -> NetState {
    let public_nic = b.classification.as_ref().and_then(|c| c.public_nic.clone());
    let mut gateway: Option<Ipv4Addr> = None;
    let oob = b.node.oob();
    let interfaces = b
        .nics
        .values()
        .map(|run| {
            let is_oob = oob == Some(run.nic.index);
            let lease = b.node.lease(run.nic.index);
            let phase = b.node.phase(run.nic.index);
            if is_oob {
                gateway = lease.and_then(Lease::gateway);
            }
            let mut roles = Vec::new();
            if is_oob {
                roles.push(Role::Oob);
            }
            if public_nic.as_deref() == Some(run.nic.name.as_str()) {
                roles.push(Role::Public);
            }
            let s = b.slaac.get(&run.nic.index);
            Interface {
                name: run.nic.name.clone(),
                mac: client::fmt_mac(&run.nic.mac),
                role: roles.first().copied().unwrap_or(Role::Unused),
                carrier: run.nic.carrier,
                mtu: lease.and_then(|l| l.mtu).map_or(run.nic.mtu, u32::from),
                ipv4: lease
                    .iter()
                    .map(|l| Ipv4Entry {
                        address: l.address,
                        prefix: l.prefix,
                        source: if phase == node::Phase::Static {
                            "static"
                        } else {
                            "dhcp"
                        }
                        .into(),
                        lease_secs: l.lease_secs,
                        server: l.server,
                    })
                    .collect(),
                ipv6: s
                    .map(|s| {
                        s.addresses
                            .iter()
                            .chain(&s.local_addresses)
                            .map(|(a, p)| Ipv6Entry {
                                address: *a,
                                prefix: *p,
                                source: "slaac".into(),
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                dhcp4: phase.as_str().to_string(),
                lease: lease.map(|l| {
                    let obtained = run
                        .obtained
                        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                        .map_or(0, |d| d.as_secs());
                    let mut record =
                        LeaseRecord::new(client::fmt_mac(&run.client_id), l.clone(), obtained);
                    record.obtained_boottime_ms = run.obtained_boottime_ms;
                    record
                }),
                dhcp_hostname: run.hostname.clone(),
                vlan: run.vlan.clone(),
                roles,
                dhcp4_servers: run.servers.clone(),
                slaac: s.map(|s| SlaacRecord {
                    ready_after_ms: s.ready_after_ms,
                    router: s.router,
                    dns: s.dns.clone(),
                    search: s.search.clone(),
                    diagnosis: b.diagnoses.get(&run.nic.index).cloned(),
                    ra: s.last_advert.clone(),
                }),
            }
        })
        .collect::<Vec<_>>();
    let router = b
        .slaac
        .values()
        .find_map(|s| s.router.filter(|_| !s.addresses.is_empty()));
    NetState {
        online: b.online,
        error: b.error,
        classification: b.classification,
        interfaces,
        ipv4: Ipv4Summary {
            gateway,
            reachable: b.reach.ipv4,
        },
        ipv6: Ipv6Summary {
            router,
            reachable: b.reach.ipv6,
        },
        dns: b.dns,
        probes: b.probes,
        preferred_family: b.preferred_family,
        search: b.search,
        ntp: b
            .node
            .oob_lease()
            .map(|l| l.ntp.clone())
            .unwrap_or_default(),
        timings_ms: b.timings,
    }
}
