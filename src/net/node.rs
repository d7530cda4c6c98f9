//! The node core: one sans-IO state machine for the whole node, driven by the boot's network
//! stage (`net::run`) and by `keep` in the full OS, in the manner of quinn-proto's `Connection`
//! and networkd's single `link_check_ready()`.
//!
//! Inputs: link changes, DHCPv4 client events (and whether their lease could be applied), SLAAC
//! watcher inputs, probe results, and the time. Outputs: start or kick a NIC's DHCP client,
//! apply or remove a lease (with its route metric and scope), write resolv.conf, start probes of
//! a family, a console line. The drivers own the sockets, netlink and the files.
//!
//! The rules it owns, each unit-tested with a fake clock below:
//! - **OOB election**: the first NIC whose lease is applied is the management (OOB) NIC, or the
//!   one `zos.oob=` names; it keeps the role until its lease is lost.
//! - **Route metrics and scope**: the OOB NIC's lease is applied whole with metric
//!   [`OOB_METRIC`]; any other NIC's lease gives its address and on-link routes only (no
//!   default route, no option-121 route outside its subnet, no DNS, no NTP), metric
//!   [`OTHER_METRIC`] + ifindex: a rogue DHCP server on a secondary segment cannot steer the
//!   node's traffic or its name lookups.
//! - **The resolv rule**: the OOB lease's DNS servers, then the routers' RDNSS; its search list
//!   (option 119), else its domain (option 15), then DNSSL. Rewritten only when it changes.
//! - **Online**: IPv4 bound and confirmed on the OOB NIC, and — when probes are configured — a
//!   probe answered over either family. Each family is probed as soon as it is usable (IPv4:
//!   the OOB lease on the NIC, its conflict watch overlapping the probe; IPv6: SLAAC ready on a
//!   NIC), not after the other one settles; a
//!   late router advertisement updates the SLAAC state (and so the classification) afterwards
//!   instead of holding the boot.
//! - **The DHCP phase** of each NIC, as an enum ([`Phase`]).
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use super::dhcp4::client::{Event, Lease};
use super::probe::{Family, ProbeResult};
use super::slaac::watch::{self, Change, SlaacState, Watch};
use super::topology::Duties;

/// Route metric of the OOB NIC's routes; other NICs' routes come after it.
pub const OOB_METRIC: u32 = 100;
pub const OTHER_METRIC: u32 = 200;

/// Where a NIC's DHCPv4 is, as the state file and the console name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// No carrier yet (nothing sent).
    WaitingForCarrier,
    /// This link does not do DHCPv4 (a VLAN parent, or `ip=` configured it).
    NotUsed,
    /// `ip=` configured this NIC.
    Static,
    /// The client runs and holds no lease.
    Selecting,
    /// A lease is applied.
    Bound,
    /// A lease came but could not be applied.
    ApplyFailed,
    /// The client could not run (its socket failed).
    Failed,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::WaitingForCarrier => "waiting for carrier",
            Phase::NotUsed => "not used",
            Phase::Static => "STATIC",
            Phase::Selecting => "SELECTING",
            Phase::Bound => "BOUND",
            Phase::ApplyFailed => "apply failed",
            Phase::Failed => "failed",
        }
    }
}

/// How much of a lease a NIC may apply (see the module's rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The OOB NIC: address, routes, and (through the resolv rule) DNS and NTP.
    Whole,
    /// Any other NIC: its address and routes inside its own subnet only.
    LinkOnly,
}

/// The part of `lease` a NIC with `scope` applies.
pub fn scoped(lease: &Lease, scope: Scope) -> Lease {
    if scope == Scope::Whole {
        return lease.clone();
    }
    let inside = |dest: Ipv4Addr, prefix: u8| {
        prefix >= lease.prefix && mask(dest, lease.prefix) == mask(lease.address, lease.prefix)
    };
    Lease {
        routers: Vec::new(),
        classless_routes: lease
            .classless_routes
            .iter()
            .filter(|r| inside(r.destination, r.prefix))
            .cloned()
            .collect(),
        dns: Vec::new(),
        domain: None,
        search: Vec::new(),
        ntp: Vec::new(),
        ..lease.clone()
    }
}

fn mask(a: Ipv4Addr, prefix: u8) -> u32 {
    let m = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    };
    u32::from(a) & m
}

/// The resolvers and search domains: the OOB lease's DNS servers then the routers' RDNSS; its
/// search list (option 119), else its domain (option 15), then the routers' DNSSL. One rule
/// for the boot and `keep`.
pub fn resolv<'a>(
    oob_lease: Option<&Lease>,
    slaac: impl IntoIterator<Item = &'a SlaacState>,
) -> (Vec<IpAddr>, Vec<String>) {
    let mut dns: Vec<IpAddr> = Vec::new();
    let mut search: Vec<String> = Vec::new();
    if let Some(l) = oob_lease {
        dns.extend(l.dns.iter().map(|d| IpAddr::V4(*d)));
        if l.search.is_empty() {
            search.extend(l.domain.iter().cloned());
        } else {
            search.extend(l.search.iter().cloned());
        }
    }
    for s in slaac {
        for d in &s.dns {
            if !dns.contains(&IpAddr::V6(*d)) {
                dns.push(IpAddr::V6(*d));
            }
        }
        for d in &s.search {
            if !search.contains(d) {
                search.push(d.clone());
            }
        }
    }
    (dns, search)
}

/// Whether the node core follows SLAAC on the NICs that have the duty.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SlaacWatch {
    /// IPv6 is not looked at (`dhcp4`).
    #[default]
    Off,
    /// Watched, and waited for up to this long per NIC before the state is final (the boot).
    Until(Duration),
    /// Watched for as long as the process runs; nothing waits for it to settle (`keep`).
    Always,
}

/// What the node core is told about itself once.
#[derive(Debug, Clone, Default)]
pub struct NodeConfig {
    /// `zos.oob=`: only this NIC may be the OOB NIC.
    pub oob: Option<String>,
    /// Whether SLAAC is watched, and for how long the state waits for it.
    pub slaac: SlaacWatch,
    /// Probe targets are configured: online needs one to answer.
    pub probes: bool,
    /// `keep`: resolv.conf was written by the boot from the same sources, so the first
    /// non-empty computation only records it; later changes rewrite it.
    pub resolv_adopt_first: bool,
}

/// One NIC as the core sees it.
#[derive(Debug, Clone)]
pub struct NicSpec {
    pub index: u32,
    pub name: String,
    pub duties: Duties,
    /// `ip=` names this NIC: its address is applied by the driver, no DHCP.
    pub static_here: bool,
}

#[derive(Debug)]
struct NicCore {
    spec: NicSpec,
    carrier: bool,
    oper_up: bool,
    phase: Phase,
    lease: Option<Lease>,
    confirmed: bool,
    dhcp_started: bool,
    watched: bool,
    carrier_lost_while_bound: bool,
}

/// Something that happened, as a driver saw it.
#[derive(Debug, Clone)]
pub enum Input {
    /// A link's carrier or operational state (RTM_NEWLINK), or its state at start.
    Link {
        ifindex: u32,
        carrier: bool,
        oper_up: bool,
    },
    /// The `ip=` configuration was applied on this NIC.
    StaticApplied { ifindex: u32, lease: Lease },
    /// An event of the NIC's DHCPv4 client.
    Dhcp { ifindex: u32, event: Event },
    /// The driver applied (or failed to apply) the lease of an [`Output::Apply`].
    Applied {
        ifindex: u32,
        lease: Lease,
        result: Result<(), String>,
    },
    /// The NIC's DHCPv4 client stopped for good.
    DhcpFailed { ifindex: u32, why: String },
    /// Addresses, routes, RAs, RDNSS for the SLAAC watcher.
    Slaac(watch::Input),
    /// The probes of one family finished.
    Probed {
        family: Family,
        results: Vec<ProbeResult>,
    },
}

/// What the driver does next.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Carrier came up on a NIC that does DHCPv4: start its client.
    StartDhcp { ifindex: u32 },
    /// Ask the NIC's client to resend now, or to check its lease with the server.
    Kick { ifindex: u32 },
    /// Carrier came up on a NIC that does SLAAC: solicit a router now.
    Solicit { ifindex: u32 },
    /// Put this (already scoped) lease on the NIC, routes with this metric.
    Apply {
        ifindex: u32,
        lease: Lease,
        metric: u32,
        scope: Scope,
    },
    /// Take the lease's address (and so its routes) off the NIC.
    Remove { ifindex: u32, lease: Lease },
    /// resolv.conf's content changed.
    WriteResolv {
        dns: Vec<IpAddr>,
        search: Vec<String>,
        origin: String,
    },
    /// Probe the targets over this family, with these resolvers.
    Probe { family: Family, dns: Vec<IpAddr> },
    /// A SLAAC change for the console.
    Slaac(Change),
    /// The node is online (once).
    Online,
}

/// Where a family's probes are.
#[derive(Debug, Clone, Default)]
enum Probes {
    #[default]
    NotStarted,
    Running,
    Done(Vec<ProbeResult>),
}

/// The node core.
#[derive(Debug)]
pub struct Node {
    cfg: NodeConfig,
    nics: BTreeMap<u32, NicCore>,
    oob: Option<u32>,
    watch: Watch,
    resolv_written: Option<(Vec<IpAddr>, Vec<String>)>,
    probes_v4: Probes,
    probes_v6: Probes,
    online_at: Option<Instant>,
    /// When the OOB lease was confirmed (the moment IPv4 became usable).
    ipv4_usable_at: Option<Instant>,
    ipv6_usable_at: Option<Instant>,
}

impl Node {
    pub fn new(cfg: NodeConfig) -> Self {
        Node {
            cfg,
            nics: BTreeMap::new(),
            oob: None,
            watch: Watch::new(),
            resolv_written: None,
            probes_v4: Probes::NotStarted,
            probes_v6: Probes::NotStarted,
            online_at: None,
            ipv4_usable_at: None,
            ipv6_usable_at: None,
        }
    }

    pub fn add_nic(&mut self, spec: NicSpec) {
        let phase = if spec.static_here {
            Phase::Static
        } else if !spec.duties.dhcp {
            Phase::NotUsed
        } else {
            Phase::WaitingForCarrier
        };
        self.nics.insert(
            spec.index,
            NicCore {
                spec,
                carrier: false,
                oper_up: false,
                phase,
                lease: None,
                confirmed: false,
                dhcp_started: false,
                watched: false,
                carrier_lost_while_bound: false,
            },
        );
    }

    /// `keep`: a lease the boot handed over, already on the NIC, its client resumed (`None`:
    /// it expired meanwhile and the client asks again). `oob`: the boot's OOB NIC.
    pub fn resume(&mut self, ifindex: u32, lease: Option<Lease>, oob: bool, carrier: bool) {
        if let Some(n) = self.nics.get_mut(&ifindex) {
            n.carrier = carrier;
            n.oper_up = carrier;
            n.dhcp_started = true;
            n.phase = if lease.is_some() {
                Phase::Bound
            } else {
                Phase::Selecting
            };
            n.confirmed = lease.is_some();
            n.lease = lease;
        }
        if oob {
            self.oob = Some(ifindex);
        }
    }

    /// `keep`: follow SLAAC on this NIC from now on (the kernel already configured it).
    pub fn watch_slaac(&mut self, ifindex: u32, now: Instant) {
        if let Some(n) = self.nics.get_mut(&ifindex) {
            if !n.watched {
                n.watched = true;
                self.watch.add(ifindex, &n.spec.name, now);
            }
        }
    }

    pub fn handle(&mut self, now: Instant, input: Input) -> Vec<Output> {
        let mut out = Vec::new();
        match input {
            Input::Link {
                ifindex,
                carrier,
                oper_up,
            } => self.link(now, ifindex, carrier, oper_up, &mut out),
            Input::StaticApplied { ifindex, lease } => {
                if let Some(n) = self.nics.get_mut(&ifindex) {
                    n.phase = Phase::Static;
                    n.lease = Some(lease);
                    n.confirmed = true;
                    self.oob = Some(ifindex);
                    self.ipv4_usable_at.get_or_insert(now);
                }
            }
            Input::Dhcp { ifindex, event } => self.dhcp(now, ifindex, event, &mut out),
            Input::Applied {
                ifindex,
                lease,
                result,
            } => {
                let Some(n) = self.nics.get_mut(&ifindex) else {
                    return out;
                };
                match result {
                    Ok(()) => {
                        n.lease = Some(lease);
                        n.phase = Phase::Bound;
                    }
                    Err(_) => {
                        n.phase = Phase::ApplyFailed;
                        if self.oob == Some(ifindex) && n.lease.is_none() {
                            self.oob = None;
                        }
                    }
                }
            }
            Input::DhcpFailed { ifindex, .. } => {
                if let Some(n) = self.nics.get_mut(&ifindex) {
                    n.phase = Phase::Failed;
                }
            }
            Input::Slaac(input) => {
                for c in self.watch.handle(now, input) {
                    if matches!(c, Change::Ready { .. }) {
                        self.ipv6_usable_at.get_or_insert(now);
                    }
                    out.push(Output::Slaac(c));
                }
            }
            Input::Probed { family, results } => {
                let slot = match family {
                    Family::Ipv4 => &mut self.probes_v4,
                    Family::Ipv6 => &mut self.probes_v6,
                };
                *slot = Probes::Done(results);
            }
        }
        self.resolv_rule(&mut out);
        self.probe_rule(&mut out);
        if self.online_at.is_none() && self.online() {
            self.online_at = Some(now);
            out.push(Output::Online);
        }
        out
    }

    fn link(
        &mut self,
        now: Instant,
        ifindex: u32,
        carrier: bool,
        oper_up: bool,
        out: &mut Vec<Output>,
    ) {
        let watching = self.cfg.slaac != SlaacWatch::Off;
        let Some(n) = self.nics.get_mut(&ifindex) else {
            return;
        };
        if !carrier && n.lease.is_some() {
            n.carrier_lost_while_bound = true;
        }
        // The queue just became active: resend what the kernel may have dropped, or, holding
        // a lease whose link went away meanwhile, check it now. A lease taken while the queue
        // was still coming up needs no check.
        if oper_up
            && !n.oper_up
            && n.dhcp_started
            && (n.lease.is_none() || n.carrier_lost_while_bound)
        {
            n.carrier_lost_while_bound = false;
            out.push(Output::Kick { ifindex });
        }
        n.carrier = carrier;
        n.oper_up = oper_up;
        if !carrier {
            return;
        }
        if watching && n.spec.duties.slaac && !n.watched {
            n.watched = true;
            self.watch.add(ifindex, &n.spec.name, now);
            out.push(Output::Solicit { ifindex });
        }
        if n.spec.duties.dhcp
            && !n.spec.static_here
            && n.phase != Phase::Static
            && !n.dhcp_started
            && n.phase != Phase::Failed
        {
            n.dhcp_started = true;
            n.phase = Phase::Selecting;
            out.push(Output::StartDhcp { ifindex });
        }
    }

    fn dhcp(&mut self, now: Instant, ifindex: u32, event: Event, out: &mut Vec<Output>) {
        let forced = self.cfg.oob.clone();
        let oob = self.oob;
        let Some(n) = self.nics.get_mut(&ifindex) else {
            return;
        };
        match event {
            Event::Bound(lease) | Event::Renewed(lease) => {
                let is_oob = match oob {
                    Some(o) => o == ifindex,
                    None => forced.as_deref().is_none_or(|o| o == n.spec.name),
                };
                if is_oob {
                    self.oob = Some(ifindex);
                }
                let scope = if is_oob {
                    Scope::Whole
                } else {
                    Scope::LinkOnly
                };
                out.push(Output::Apply {
                    ifindex,
                    lease: scoped(&lease, scope),
                    metric: metric(ifindex, is_oob),
                    scope,
                });
            }
            Event::Confirmed => {
                n.confirmed = true;
                if oob == Some(ifindex) {
                    self.ipv4_usable_at.get_or_insert(now);
                }
            }
            Event::Servers(_) => {}
            Event::Deconfigured(_) => {
                if let Some(lease) = n.lease.take() {
                    out.push(Output::Remove { ifindex, lease });
                }
                n.confirmed = false;
                n.phase = Phase::Selecting;
                if oob == Some(ifindex) {
                    self.oob = None;
                    self.ipv4_usable_at = None;
                    // IPv4 must be probed again once a lease is back.
                    if matches!(self.probes_v4, Probes::Done(_)) && self.online_at.is_none() {
                        self.probes_v4 = Probes::NotStarted;
                    }
                }
            }
        }
    }

    fn resolv_now(&self) -> (Vec<IpAddr>, Vec<String>) {
        let states: Vec<SlaacState> = self.watch.states().collect();
        resolv(self.oob_lease(), &states)
    }

    fn resolv_rule(&mut self, out: &mut Vec<Output>) {
        let now = self.resolv_now();
        if now.0.is_empty() || self.resolv_written.as_ref() == Some(&now) {
            return;
        }
        if self.cfg.resolv_adopt_first && self.resolv_written.is_none() {
            self.resolv_written = Some(now);
            return;
        }
        let origin = self
            .oob
            .and_then(|i| self.nics.get(&i))
            .filter(|n| n.lease.is_some())
            .map_or("router advertisements".to_string(), |n| n.spec.name.clone());
        out.push(Output::WriteResolv {
            dns: now.0.clone(),
            search: now.1.clone(),
            origin,
        });
        self.resolv_written = Some(now);
    }

    fn ipv4_usable(&self) -> bool {
        self.oob
            .and_then(|i| self.nics.get(&i))
            .is_some_and(|n| n.lease.is_some() && n.confirmed)
    }

    /// The OOB lease is on the NIC (its ARP conflict watch may still be running).
    fn ipv4_bound(&self) -> bool {
        self.oob
            .and_then(|i| self.nics.get(&i))
            .is_some_and(|n| n.lease.is_some())
    }

    fn ipv6_usable(&self) -> bool {
        self.watch
            .states()
            .any(|s| s.router.is_some() && !s.addresses.is_empty())
    }

    fn probe_rule(&mut self, out: &mut Vec<Output>) {
        if !self.cfg.probes {
            return;
        }
        let dns = self.resolv_now().0;
        // IPv4 is probed as soon as the lease is on the NIC: the address is in use from then on
        // anyway, and the probe's round trip overlaps the 200 ms conflict watch; online still
        // waits for the lease to be confirmed.
        if self.ipv4_bound() && matches!(self.probes_v4, Probes::NotStarted) {
            self.probes_v4 = Probes::Running;
            out.push(Output::Probe {
                family: Family::Ipv4,
                dns: dns.clone(),
            });
        }
        if self.ipv6_usable() && matches!(self.probes_v6, Probes::NotStarted) {
            self.probes_v6 = Probes::Running;
            out.push(Output::Probe {
                family: Family::Ipv6,
                dns,
            });
        }
    }

    fn reach(&self, family: Family) -> Option<bool> {
        let p = match family {
            Family::Ipv4 => &self.probes_v4,
            Family::Ipv6 => &self.probes_v6,
        };
        match p {
            Probes::Done(r) if !r.is_empty() => Some(r.iter().any(|r| r.ok)),
            _ => None,
        }
    }

    /// The online rule (see the module's documentation).
    pub fn online(&self) -> bool {
        self.ipv4_usable()
            && (!self.cfg.probes
                || self.reach(Family::Ipv4) == Some(true)
                || self.reach(Family::Ipv6) == Some(true))
    }

    /// Why the node will not come online without something changing: IPv4 is usable, every
    /// family that could be probed was, none answered, and SLAAC has settled (no family is
    /// still to come). `None` while there is hope.
    pub fn gave_up(&self, now: Instant) -> Option<&'static str> {
        let done = |p: &Probes| !matches!(p, Probes::Running);
        (self.cfg.probes
            && self.ipv4_usable()
            && !self.online()
            && done(&self.probes_v4)
            && done(&self.probes_v6)
            && matches!(self.probes_v4, Probes::Done(_))
            && (!self.ipv6_usable() || matches!(self.probes_v6, Probes::Done(_)))
            && self.settled(now))
        .then_some("IPv4 is configured but no probe target answered over IPv4 or IPv6")
    }

    /// Probes still running: the stage waits for them before it reports.
    pub fn probing(&self) -> bool {
        matches!(self.probes_v4, Probes::Running) || matches!(self.probes_v6, Probes::Running)
    }

    /// Every probe that finished: IPv6 first, as the boot has always listed them.
    pub fn probe_results(&self) -> Vec<ProbeResult> {
        let mut all = Vec::new();
        for p in [&self.probes_v6, &self.probes_v4] {
            if let Probes::Done(r) = p {
                all.extend(r.iter().cloned());
            }
        }
        all
    }

    pub fn reachability(&self) -> (Option<bool>, Option<bool>) {
        (self.reach(Family::Ipv4), self.reach(Family::Ipv6))
    }

    /// True once no watched NIC can still be expected to become ready for IPv6 (see
    /// [`Watch::settled`]); the state is final then.
    pub fn settled(&self, now: Instant) -> bool {
        match self.cfg.slaac {
            SlaacWatch::Off => true,
            SlaacWatch::Until(w) => self.watch.settled(now, w),
            SlaacWatch::Always => false,
        }
    }

    /// When to call [`Node::handle`] again without an input, at the latest (None: only on
    /// input): when SLAAC settles by itself.
    pub fn poll_at(&self) -> Option<Instant> {
        match self.cfg.slaac {
            SlaacWatch::Until(w) => self.watch.deadline(w),
            SlaacWatch::Off | SlaacWatch::Always => None,
        }
    }

    pub fn oob(&self) -> Option<u32> {
        self.oob
    }

    pub fn oob_lease(&self) -> Option<&Lease> {
        self.oob.and_then(|i| self.nics.get(&i)?.lease.as_ref())
    }

    pub fn lease(&self, ifindex: u32) -> Option<&Lease> {
        self.nics.get(&ifindex)?.lease.as_ref()
    }

    pub fn phase(&self, ifindex: u32) -> Phase {
        self.nics.get(&ifindex).map_or(Phase::NotUsed, |n| n.phase)
    }

    pub fn carrier(&self, ifindex: u32) -> bool {
        self.nics.get(&ifindex).is_some_and(|n| n.carrier)
    }

    pub fn confirmed(&self, ifindex: u32) -> bool {
        self.nics.get(&ifindex).is_some_and(|n| n.confirmed)
    }

    /// SLAAC is watched on this NIC.
    pub fn watched(&self, ifindex: u32) -> bool {
        self.nics.get(&ifindex).is_some_and(|n| n.watched)
    }

    pub fn watch(&self) -> &Watch {
        &self.watch
    }

    /// The moment the node went online, and the first moment a family was usable.
    pub fn online_at(&self) -> Option<Instant> {
        self.online_at
    }

    pub fn first_usable_at(&self) -> Option<Instant> {
        match (self.ipv4_usable_at, self.ipv6_usable_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// The route metric of a NIC's lease (see the module's rules).
pub fn metric(ifindex: u32, oob: bool) -> u32 {
    if oob {
        OOB_METRIC
    } else {
        OTHER_METRIC + ifindex
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::dhcp4::client::Route;
    use crate::net::slaac::watch::AddrFlags;
    use std::net::Ipv6Addr;

    fn lease(addr: [u8; 4], dns: [u8; 4]) -> Lease {
        let a = Ipv4Addr::from(addr);
        let gw = Ipv4Addr::new(addr[0], addr[1], addr[2], 1);
        Lease {
            address: a,
            prefix: 24,
            server: gw,
            lease_secs: 3600,
            t1_secs: 1800,
            t2_secs: 3150,
            routers: vec![gw],
            classless_routes: vec![],
            dns: vec![Ipv4Addr::from(dns)],
            domain: Some("farm.example".into()),
            search: vec![],
            ntp: vec![gw],
            mtu: None,
        }
    }

    fn node(probes: bool, ipv6: bool, oob: Option<&str>) -> Node {
        let mut n = Node::new(NodeConfig {
            oob: oob.map(str::to_string),
            slaac: if ipv6 {
                SlaacWatch::Until(Duration::from_secs(3))
            } else {
                SlaacWatch::Off
            },
            probes,
            resolv_adopt_first: false,
        });
        for (i, name) in [(2, "eth0"), (3, "eth1")] {
            n.add_nic(NicSpec {
                index: i,
                name: name.into(),
                duties: Duties::ALL,
                static_here: false,
            });
        }
        n
    }

    fn up(n: &mut Node, t: Instant, i: u32) -> Vec<Output> {
        n.handle(
            t,
            Input::Link {
                ifindex: i,
                carrier: true,
                oper_up: true,
            },
        )
    }

    /// Binds `l` on `i` as a driver would: Bound → Apply → Applied → Confirmed.
    fn bind(n: &mut Node, t: Instant, i: u32, l: Lease) -> Vec<Output> {
        let mut out = n.handle(
            t,
            Input::Dhcp {
                ifindex: i,
                event: Event::Bound(l),
            },
        );
        let (lease, _) = applied(&out).expect("an Apply");
        out.extend(n.handle(
            t,
            Input::Applied {
                ifindex: i,
                lease,
                result: Ok(()),
            },
        ));
        out.extend(n.handle(
            t,
            Input::Dhcp {
                ifindex: i,
                event: Event::Confirmed,
            },
        ));
        out
    }

    fn applied(out: &[Output]) -> Option<(Lease, u32)> {
        out.iter().find_map(|o| match o {
            Output::Apply { lease, metric, .. } => Some((lease.clone(), *metric)),
            _ => None,
        })
    }

    fn ready_v6(n: &mut Node, t: Instant, i: u32) -> Vec<Output> {
        let mut out = n.handle(
            t,
            Input::Slaac(watch::Input::Address {
                ifindex: i,
                address: "2001:db8:1::10".parse().unwrap(),
                prefix: 64,
                flags: AddrFlags::default(),
                removed: false,
            }),
        );
        out.extend(n.handle(
            t,
            Input::Slaac(watch::Input::DefaultRoute {
                ifindex: i,
                gateway: "fe80::1".parse().unwrap(),
                removed: false,
            }),
        ));
        out
    }

    fn probe_started(out: &[Output], f: Family) -> bool {
        out.iter()
            .any(|o| matches!(o, Output::Probe { family, .. } if *family == f))
    }

    fn ok(family: Family) -> Vec<ProbeResult> {
        vec![ProbeResult {
            url: "http://hub/".into(),
            family,
            ok: true,
            ms: 3,
            address: None,
            status: Some(200),
            stage: crate::net::probe::Step::Done,
            error: None,
        }]
    }

    #[test]
    fn carrier_starts_dhcp_and_slaac_once() {
        let t = Instant::now();
        let mut n = node(false, true, None);
        let out = up(&mut n, t, 2);
        assert!(out.contains(&Output::StartDhcp { ifindex: 2 }));
        assert!(out.contains(&Output::Solicit { ifindex: 2 }));
        assert_eq!(n.phase(2), Phase::Selecting);
        assert_eq!(n.phase(3), Phase::WaitingForCarrier);
        // A second carrier event starts nothing twice.
        let again = n.handle(
            t,
            Input::Link {
                ifindex: 2,
                carrier: true,
                oper_up: true,
            },
        );
        assert!(again.is_empty(), "{again:?}");
    }

    #[test]
    fn first_bound_nic_is_the_oob_and_gets_the_whole_lease() {
        let t = Instant::now();
        let mut n = node(false, false, None);
        up(&mut n, t, 2);
        up(&mut n, t, 3);
        let out = bind(&mut n, t, 3, lease([10, 1, 0, 20], [10, 1, 0, 53]));
        let (l, metric) = applied(&out).unwrap();
        assert_eq!(n.oob(), Some(3));
        assert_eq!(metric, OOB_METRIC);
        assert_eq!(l.routers, vec![Ipv4Addr::new(10, 1, 0, 1)]);
        assert_eq!(n.phase(3), Phase::Bound);
        // The second NIC bound is not the OOB: no default route, no DNS, metric after the OOB's.
        let out = bind(&mut n, t, 2, lease([192, 0, 2, 20], [192, 0, 2, 53]));
        let (l, metric) = applied(&out).unwrap();
        assert_eq!(n.oob(), Some(3));
        assert_eq!(metric, OTHER_METRIC + 2);
        assert!(l.routers.is_empty() && l.dns.is_empty() && l.ntp.is_empty());
        assert!(l.routes().is_empty());
    }

    #[test]
    fn zos_oob_names_the_only_nic_that_may_be_the_oob() {
        let t = Instant::now();
        let mut n = node(false, false, Some("eth0"));
        up(&mut n, t, 2);
        up(&mut n, t, 3);
        let (l, m) = applied(&bind(&mut n, t, 3, lease([10, 1, 0, 20], [10, 1, 0, 53]))).unwrap();
        assert_eq!(n.oob(), None);
        assert_eq!(m, OTHER_METRIC + 3);
        assert!(l.routers.is_empty());
        assert!(!n.online());
        bind(&mut n, t, 2, lease([10, 2, 0, 20], [10, 2, 0, 53]));
        assert_eq!(n.oob(), Some(2));
        assert!(n.online());
    }

    #[test]
    fn a_secondary_lease_keeps_only_routes_inside_its_subnet() {
        // A rogue server on the public segment offering 0.0.0.0/1 + 128.0.0.0/1 (the whole
        // Internet through it) and one route inside its own subnet.
        let mut l = lease([192, 0, 2, 20], [192, 0, 2, 53]);
        let via = Ipv4Addr::new(192, 0, 2, 66);
        l.classless_routes = vec![
            Route {
                destination: Ipv4Addr::new(0, 0, 0, 0),
                prefix: 1,
                gateway: via,
            },
            Route {
                destination: Ipv4Addr::new(128, 0, 0, 0),
                prefix: 1,
                gateway: via,
            },
            Route {
                destination: Ipv4Addr::new(192, 0, 2, 128),
                prefix: 25,
                gateway: via,
            },
        ];
        let s = scoped(&l, Scope::LinkOnly);
        assert_eq!(s.routes().len(), 1);
        assert_eq!(s.routes()[0].destination, Ipv4Addr::new(192, 0, 2, 128));
        assert_eq!(s.address, l.address);
        assert_eq!(scoped(&l, Scope::Whole), l);
    }

    #[test]
    fn losing_the_oob_lease_removes_it_and_frees_the_role() {
        let t = Instant::now();
        let mut n = node(false, false, None);
        up(&mut n, t, 2);
        let l = lease([10, 1, 0, 20], [10, 1, 0, 53]);
        bind(&mut n, t, 2, l.clone());
        let out = n.handle(
            t,
            Input::Dhcp {
                ifindex: 2,
                event: Event::Deconfigured("expired".into()),
            },
        );
        assert!(out.contains(&Output::Remove {
            ifindex: 2,
            lease: l
        }));
        assert_eq!(n.oob(), None);
        assert_eq!(n.phase(2), Phase::Selecting);
        assert!(!n.online());
    }

    #[test]
    fn an_apply_failure_is_its_own_phase_and_elects_nobody() {
        let t = Instant::now();
        let mut n = node(false, false, None);
        up(&mut n, t, 2);
        let l = lease([10, 1, 0, 20], [10, 1, 0, 53]);
        n.handle(
            t,
            Input::Dhcp {
                ifindex: 2,
                event: Event::Bound(l.clone()),
            },
        );
        n.handle(
            t,
            Input::Applied {
                ifindex: 2,
                lease: l,
                result: Err("EPERM".into()),
            },
        );
        assert_eq!(n.phase(2), Phase::ApplyFailed);
        assert_eq!(n.oob(), None);
    }

    #[test]
    fn resolv_is_the_oob_lease_then_rdnss_and_written_once_per_change() {
        let t = Instant::now();
        let mut n = node(false, true, None);
        up(&mut n, t, 2);
        let out = bind(&mut n, t, 2, lease([10, 1, 0, 20], [10, 1, 0, 53]));
        let writes: Vec<&Output> = out
            .iter()
            .filter(|o| matches!(o, Output::WriteResolv { .. }))
            .collect();
        assert_eq!(writes.len(), 1, "{out:?}");
        assert_eq!(
            writes[0],
            &Output::WriteResolv {
                dns: vec!["10.1.0.53".parse().unwrap()],
                search: vec!["farm.example".into()],
                origin: "eth0".into(),
            }
        );
        // The same again: nothing to write.
        let out = n.handle(
            t,
            Input::Dhcp {
                ifindex: 2,
                event: Event::Confirmed,
            },
        );
        assert!(!out.iter().any(|o| matches!(o, Output::WriteResolv { .. })));
        // RDNSS and DNSSL add to it.
        let dns6: Ipv6Addr = "2001:db8::53".parse().unwrap();
        let out = n.handle(
            t,
            Input::Slaac(watch::Input::Dns {
                ifindex: 2,
                servers: vec![dns6],
                search: vec!["v6.example".into()],
            }),
        );
        assert!(out.contains(&Output::WriteResolv {
            dns: vec!["10.1.0.53".parse().unwrap(), IpAddr::V6(dns6)],
            search: vec!["farm.example".into(), "v6.example".into()],
            origin: "eth0".into(),
        }));
    }

    #[test]
    fn keep_adopts_what_the_boot_wrote_and_rewrites_only_changes() {
        let t = Instant::now();
        let mut n = Node::new(NodeConfig {
            slaac: SlaacWatch::Always,
            resolv_adopt_first: true,
            ..NodeConfig::default()
        });
        n.add_nic(NicSpec {
            index: 2,
            name: "eth0".into(),
            duties: Duties::ALL,
            static_here: false,
        });
        n.resume(2, Some(lease([10, 1, 0, 20], [10, 1, 0, 53])), true, true);
        n.watch_slaac(2, t);
        let out = n.handle(
            t,
            Input::Dhcp {
                ifindex: 2,
                event: Event::Confirmed,
            },
        );
        assert!(!out.iter().any(|o| matches!(o, Output::WriteResolv { .. })));
        let (l, m) = applied(&n.handle(
            t,
            Input::Dhcp {
                ifindex: 2,
                event: Event::Renewed(lease([10, 1, 0, 20], [10, 1, 0, 54])),
            },
        ))
        .unwrap();
        assert_eq!(m, OOB_METRIC);
        let out = n.handle(
            t,
            Input::Applied {
                ifindex: 2,
                lease: l,
                result: Ok(()),
            },
        );
        assert!(out
            .iter()
            .any(|o| matches!(o, Output::WriteResolv { dns, .. }
            if dns == &vec![IpAddr::from([10, 1, 0, 54])])));
    }

    #[test]
    fn the_search_list_wins_over_the_domain_for_boot_and_keep_alike() {
        let mut l = lease([10, 1, 0, 20], [10, 1, 0, 53]);
        assert_eq!(resolv(Some(&l), []).1, vec!["farm.example".to_string()]);
        l.search = vec!["a.example".into(), "b.example".into()];
        assert_eq!(
            resolv(Some(&l), []).1,
            vec!["a.example".to_string(), "b.example".to_string()]
        );
        assert!(resolv(None, []).0.is_empty());
    }

    #[test]
    fn ipv4_is_probed_as_soon_as_it_is_usable_without_waiting_for_ipv6() {
        let t0 = Instant::now();
        let mut n = node(true, true, None);
        up(&mut n, t0, 2);
        up(&mut n, t0, 3);
        let t1 = t0 + Duration::from_millis(40);
        let out = bind(&mut n, t1, 2, lease([10, 1, 0, 20], [10, 1, 0, 53]));
        // No RA yet on either NIC, SLAAC far from settled: IPv4 is probed now.
        assert!(!n.settled(t1));
        assert!(probe_started(&out, Family::Ipv4), "{out:?}");
        assert!(!probe_started(&out, Family::Ipv6));
        let t2 = t1 + Duration::from_millis(5);
        let out = n.handle(
            t2,
            Input::Probed {
                family: Family::Ipv4,
                results: ok(Family::Ipv4),
            },
        );
        assert!(out.contains(&Output::Online));
        assert_eq!(n.online_at(), Some(t2));
        assert_eq!(n.first_usable_at(), Some(t1));
        // A late RA: IPv6 is probed then, and the state follows; online stays once.
        let out = ready_v6(&mut n, t2 + Duration::from_secs(1), 3);
        assert!(probe_started(&out, Family::Ipv6));
        assert!(!out.contains(&Output::Online));
    }

    #[test]
    fn the_ipv4_probe_overlaps_the_conflict_watch_but_online_waits_for_it() {
        let t = Instant::now();
        let mut n = node(true, false, None);
        up(&mut n, t, 2);
        let l = lease([10, 1, 0, 20], [10, 1, 0, 53]);
        let out = n.handle(
            t,
            Input::Dhcp {
                ifindex: 2,
                event: Event::Bound(l.clone()),
            },
        );
        assert!(
            !probe_started(&out, Family::Ipv4),
            "not before the lease is on the NIC"
        );
        let out = n.handle(
            t,
            Input::Applied {
                ifindex: 2,
                lease: l,
                result: Ok(()),
            },
        );
        assert!(probe_started(&out, Family::Ipv4), "{out:?}");
        let out = n.handle(
            t + Duration::from_millis(30),
            Input::Probed {
                family: Family::Ipv4,
                results: ok(Family::Ipv4),
            },
        );
        assert!(
            !out.contains(&Output::Online),
            "the conflict watch is not over"
        );
        assert!(n.gave_up(t + Duration::from_millis(30)).is_none());
        let t2 = t + Duration::from_millis(200);
        let out = n.handle(
            t2,
            Input::Dhcp {
                ifindex: 2,
                event: Event::Confirmed,
            },
        );
        assert!(out.contains(&Output::Online));
        assert_eq!(n.online_at(), Some(t2));
        assert_eq!(n.first_usable_at(), Some(t2));
    }

    #[test]
    fn ipv6_answering_makes_the_node_online_while_ipv4_probes_fail() {
        let t = Instant::now();
        let mut n = node(true, true, None);
        up(&mut n, t, 2);
        let out = ready_v6(&mut n, t, 2);
        assert!(probe_started(&out, Family::Ipv6));
        bind(&mut n, t, 2, lease([10, 1, 0, 20], [10, 1, 0, 53]));
        let mut failed = ok(Family::Ipv4);
        failed[0].ok = false;
        n.handle(
            t,
            Input::Probed {
                family: Family::Ipv4,
                results: failed,
            },
        );
        assert!(!n.online());
        let out = n.handle(
            t,
            Input::Probed {
                family: Family::Ipv6,
                results: ok(Family::Ipv6),
            },
        );
        assert!(out.contains(&Output::Online));
        assert_eq!(n.reachability(), (Some(false), Some(true)));
    }

    #[test]
    fn without_probes_online_is_the_oob_lease_confirmed() {
        let t = Instant::now();
        let mut n = node(false, false, None);
        up(&mut n, t, 2);
        let mut out = n.handle(
            t,
            Input::Dhcp {
                ifindex: 2,
                event: Event::Bound(lease([10, 1, 0, 20], [10, 1, 0, 53])),
            },
        );
        let (l, _) = applied(&out).unwrap();
        out = n.handle(
            t,
            Input::Applied {
                ifindex: 2,
                lease: l,
                result: Ok(()),
            },
        );
        // Bound but the ARP check has not confirmed it yet.
        assert!(!out.contains(&Output::Online));
        let out = n.handle(
            t,
            Input::Dhcp {
                ifindex: 2,
                event: Event::Confirmed,
            },
        );
        assert!(out.contains(&Output::Online));
    }

    #[test]
    fn slaac_settles_on_the_clock_and_says_when() {
        let t0 = Instant::now();
        let mut n = node(false, true, None);
        up(&mut n, t0, 2);
        assert_eq!(n.poll_at(), Some(t0 + Duration::from_secs(3)));
        assert!(!n.settled(t0 + Duration::from_millis(2999)));
        assert!(n.settled(t0 + Duration::from_secs(3)));
    }

    #[test]
    fn the_queue_coming_up_kicks_a_client_without_a_lease_or_after_a_loss() {
        let t = Instant::now();
        let mut n = node(false, false, None);
        let out = n.handle(
            t,
            Input::Link {
                ifindex: 2,
                carrier: true,
                oper_up: false,
            },
        );
        assert!(out.contains(&Output::StartDhcp { ifindex: 2 }));
        let out = up(&mut n, t, 2);
        assert_eq!(out, vec![Output::Kick { ifindex: 2 }]);
        bind(&mut n, t, 2, lease([10, 1, 0, 20], [10, 1, 0, 53]));
        // Carrier lost while bound, then back: check the lease.
        n.handle(
            t,
            Input::Link {
                ifindex: 2,
                carrier: false,
                oper_up: false,
            },
        );
        let out = up(&mut n, t, 2);
        assert!(out.contains(&Output::Kick { ifindex: 2 }));
    }
}
