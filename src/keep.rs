//! `zos-netboot keep`: the full OS's half of "one lease from boot to full OS".
//!
//! The boot hands over each lease it took (`<state dir>/leases/<if>.json`, see
//! [`LeaseFile`]). `keep` resumes it where the boot left it: BOUND, first wake-up at T1, then
//! RENEWING by unicast with the same client-id, so the DHCP server sees one client and one
//! lease from power-on until shutdown, never a second DISCOVER. It also rides out outages:
//! a carrier loss is reported and, when the carrier returns, the lease is checked with the
//! server at once; a lease that expires is removed (address and routes) and asked for again
//! (the same address first) until a server answers. SLAAC is the kernel's; `keep` watches it and
//! keeps resolv.conf in step with the lease's DNS and the routers' RDNSS.
//!
//! The protocol decisions are the DHCP client's and the SLAAC watcher's; this is their driver.
use std::collections::BTreeMap;
use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU32;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_lite::StreamExt;
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload};
use rtnetlink::packet_route::RouteNetlinkMessage;
use smol::channel::{self, Sender};

use crate::clock;
use crate::console::{self, Console};
use crate::net::dhcp4::apply;
use crate::net::dhcp4::client::{self, Client, Config, Event, Lease, ServerSeen};
use crate::net::dhcp4::driver::{self, Update};
use crate::net::links::{self, Nic};
use crate::net::node::{resolv, Input, NicSpec, Node, NodeConfig, Output, SlaacWatch};
use crate::net::slaac;
use crate::net::slaac::ra::{NdUserOpt, NdUserOptSocket};
use crate::net::slaac::watch::{self, Change};
use crate::net::topology::Duties;
use crate::retry::Backoff;
use crate::state::{LeaseFile, LeaseRecord, Role, State};

#[derive(Debug, Clone)]
pub struct KeepConfig {
    /// The boot's state file; the lease files are in `leases/` next to it.
    pub state_path: PathBuf,
    pub resolv_path: PathBuf,
}

/// Why `keep` cannot start; says what to do.
#[derive(Debug)]
pub struct KeepError(pub String);

impl std::fmt::Display for KeepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// How long the boot's lease has been held: by CLOCK_BOOTTIME when both ends have it (the
/// wall clock may have been stepped since), else by the wall clock; never negative.
pub fn held_for(handed: &LeaseFile, boottime_now_ms: Option<u64>, unix_now: u64) -> Duration {
    match (handed.record.obtained_boottime_ms, boottime_now_ms) {
        (Some(then), Some(now)) => Duration::from_millis(now.saturating_sub(then)),
        _ => Duration::from_secs(unix_now.saturating_sub(handed.record.obtained_unix)),
    }
}

/// "01:02:00:00:00:00:01" → bytes; the client-id is written that way in the lease file.
pub fn parse_colon_hex(text: &str) -> Option<Vec<u8>> {
    text.split(':')
        .map(|b| {
            (b.len() == 2)
                .then(|| u8::from_str_radix(b, 16).ok())
                .flatten()
        })
        .collect::<Option<Vec<u8>>>()
        .filter(|v| !v.is_empty())
}

/// The leases handed over, and the interfaces whose SLAAC to watch (the state file's).
/// What `keep` takes over from the boot: the leases, the interfaces whose SLAAC to follow and
/// the URLs the boot probed (probed again once the network is back after an outage).
struct Handed {
    leases: Vec<LeaseFile>,
    watched: Vec<String>,
    probes: Vec<String>,
}

fn load(cfg: &KeepConfig) -> Result<Handed, KeepError> {
    let dir = cfg.state_path.parent().unwrap_or(Path::new("."));
    let files = LeaseFile::read_all(&cfg.state_path).map_err(|e| {
        KeepError(format!(
            "cannot read {}/{}: {e}",
            dir.display(),
            LeaseFile::DIR
        ))
    })?;
    let mut leases = Vec::new();
    for f in files {
        match f {
            Ok(l) => leases.push(l),
            Err(e) => log::warn!("lease file not used: {e}"),
        }
    }
    let state = State::read(&cfg.state_path)
        .map_err(|e| log::warn!("{e}; following only the leases"))
        .ok();
    let mut probes: Vec<String> = Vec::new();
    for p in state.iter().flat_map(|s| &s.net.probes) {
        if !probes.contains(&p.url) {
            probes.push(p.url.clone());
        }
    }
    let watched: Vec<String> = state
        .iter()
        .flat_map(|s| &s.net.interfaces)
        .filter(|i| i.slaac.is_some())
        .map(|i| i.name.clone())
        .collect();
    if leases.is_empty() && watched.is_empty() {
        return Err(KeepError(format!(
            "no lease handed over in {}/{}/ and no SLAAC interface in {}: keep resumes what \
             `zos-netboot boot` (or `net`) set up; run that first",
            dir.display(),
            LeaseFile::DIR,
            cfg.state_path.display()
        )));
    }
    Ok(Handed {
        leases,
        watched,
        probes,
    })
}

enum Msg {
    Dhcp(Update),
    DhcpFailed(u32, String),
    Netlink(NetlinkMessage<RouteNetlinkMessage>),
    NdOpt(NdUserOpt),
}

/// One kept lease's driver side (the lease itself is the node core's).
struct Kept {
    handed: LeaseFile,
    nic: Nic,
    kick: Sender<()>,
    _task: smol::Task<()>,
    /// When the lease was lost (wall clock, for the console), while it is.
    lost_at: Option<(Instant, SystemTime)>,
    /// The DHCP servers that answered, as last reported.
    servers: Vec<ServerSeen>,
}

/// Per-NIC carrier bookkeeping for the console.
struct Link {
    name: String,
    carrier: bool,
    down_since: Option<(Instant, SystemTime)>,
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn wall(t: SystemTime) -> String {
    clock::format_unix(unix_secs(t) as i64)
}

/// Runs until killed; returns only when it cannot start (or netlink goes away).
pub async fn run(cfg: &KeepConfig, console: &Console) -> Result<(), KeepError> {
    let Handed {
        leases: handed,
        watched: watched_names,
        probes,
    } = load(cfg)?;
    let (handle, mut notifications) =
        links::connect().map_err(|e| KeepError(format!("cannot open netlink: {e}")))?;
    let all = links::inventory(&handle)
        .await
        .map_err(|e| KeepError(format!("cannot list network interfaces: {e}")))?;
    let (tx, rx) = channel::unbounded::<Msg>();

    let mut node = Node::new(NodeConfig {
        oob: None,
        slaac: SlaacWatch::Always,
        probes: false,
        resolv_adopt_first: true,
    });
    let mut links: BTreeMap<u32, Link> = BTreeMap::new();
    let mut kept: BTreeMap<u32, Kept> = BTreeMap::new();
    let now = Instant::now();
    for h in handed {
        let Some(nic) = all.iter().find(|n| n.name == h.interface).cloned() else {
            console.line(format_args!(
                "{}: not found; its lease ({}) is not kept",
                h.interface, h.record.lease.address
            ));
            continue;
        };
        let mac = client::fmt_mac(&nic.mac);
        if mac != h.mac {
            console.line(format_args!(
                "{}: its MAC is {mac} now, the lease was for {}; not kept",
                nic.name, h.mac
            ));
            continue;
        }
        let Some(client_id) = parse_colon_hex(&h.record.client_id) else {
            console.line(format_args!(
                "{}: unreadable client-id {:?} in the lease file; not kept",
                nic.name, h.record.client_id
            ));
            continue;
        };
        let unix_now = unix_secs(SystemTime::now());
        let age = held_for(&h, clock::boottime_ms(), unix_now);
        let lease = h.record.lease.clone();
        let config = Config {
            ifname: nic.name.clone(),
            mac: nic.mac,
            client_id,
            hostname: h.hostname.clone(),
            vendor_class: "zos".into(),
        };
        let seed = fastrand::u64(..) ^ u64::from(nic.index);
        let c =
            Client::resume(config, lease.clone(), age, now, seed).with_backoff(Backoff::DHCP_KEEP);
        let secs = |s: u32| Duration::from_secs(u64::from(s));
        if c.lease().is_some() {
            console.line(format_args!(
                "{}: keeping {} from {} (MAC {mac}, client-id {}), held {}: renewing in {}, \
                 expires in {}",
                nic.name,
                lease.summary(),
                lease.server,
                h.record.client_id,
                console::human(age),
                console::human(secs(lease.t1_secs).saturating_sub(age)),
                console::human(secs(lease.lease_secs).saturating_sub(age)),
            ));
        } else {
            console.line(format_args!(
                "{}: the lease on {} expired {} ago; asking the DHCP server for it again \
                 (MAC {mac}, client-id {})",
                nic.name,
                lease.address,
                console::human(age.saturating_sub(secs(lease.lease_secs))),
                h.record.client_id
            ));
        }
        node.add_nic(NicSpec {
            index: nic.index,
            name: nic.name.clone(),
            duties: Duties {
                dhcp: true,
                slaac: watched_names.contains(&nic.name),
            },
            static_here: false,
        });
        // What the client resumed with: the lease, unless it had expired meanwhile.
        node.resume(
            nic.index,
            c.lease().cloned(),
            h.role == Role::Oob,
            nic.carrier,
        );
        let (task, kick) = driver::spawn(
            c,
            nic.index,
            nic.name.clone(),
            nic.mac,
            Arc::new(AtomicU32::new(0)),
            driver::Reports {
                to: tx.clone(),
                update: Msg::Dhcp,
                failed: Msg::DhcpFailed,
            },
        );
        kept.insert(
            nic.index,
            Kept {
                handed: h,
                nic: nic.clone(),
                kick,
                _task: task,
                lost_at: None,
                servers: Vec::new(),
            },
        );
    }

    // SLAAC: the kernel does it; seed the watcher with what is there now, then follow it.
    for nic in all.iter().filter(|n| watched_names.contains(&n.name)) {
        if !kept.contains_key(&nic.index) {
            node.add_nic(NicSpec {
                index: nic.index,
                name: nic.name.clone(),
                duties: Duties {
                    dhcp: false,
                    slaac: true,
                },
                static_here: false,
            });
        }
        node.watch_slaac(nic.index, now);
    }
    for nic in &all {
        links.insert(
            nic.index,
            Link {
                name: nic.name.clone(),
                carrier: nic.carrier,
                down_since: None,
            },
        );
    }
    let mut driver = Driver {
        console,
        handle: &handle,
        cfg,
        links,
        kept,
        ipv6_lost: Vec::new(),
        reprobe: false,
    };
    for msg in dump(&handle).await {
        if let Some(input) = slaac::from_netlink(&msg) {
            let out = node.handle(Instant::now(), Input::Slaac(input));
            driver.carry_out(&mut node, out).await;
        }
    }
    let _nduseropt = NdUserOptSocket::open()
        .map_err(|e| log::warn!("cannot listen for RDNSS/DNSSL notifications: {e}"))
        .ok()
        .map(|sock| {
            let tx = tx.clone();
            smol::spawn(async move {
                while let Ok(opt) = sock.recv().await {
                    if tx.send(Msg::NdOpt(opt)).await.is_err() {
                        break;
                    }
                }
            })
        });
    let _netlink = {
        let tx = tx.clone();
        smol::spawn(async move {
            while let Some((msg, _)) = notifications.next().await {
                if tx.send(Msg::Netlink(msg)).await.is_err() {
                    break;
                }
            }
        })
    };
    drop(tx);

    while let Ok(msg) = rx.recv().await {
        let now = Instant::now();
        let out = match msg {
            Msg::Netlink(msg) => {
                let mut out = Vec::new();
                if let Some(update) = links::link_update(&msg) {
                    driver.carrier_change(&update);
                    out.extend(node.handle(
                        now,
                        Input::Link {
                            ifindex: update.index,
                            carrier: update.carrier,
                            oper_up: update.oper_up,
                        },
                    ));
                }
                if let Some(input) = slaac::from_netlink(&msg) {
                    out.extend(node.handle(now, Input::Slaac(input)));
                }
                out
            }
            Msg::NdOpt(opt) => node.handle(
                now,
                Input::Slaac(watch::Input::Dns {
                    ifindex: opt.ifindex,
                    servers: opt.rdnss,
                    search: opt.dnssl,
                }),
            ),
            Msg::DhcpFailed(index, why) => {
                let name = driver.kept.get(&index).map_or("?", |k| k.nic.name.as_str());
                console.line(format_args!("{name}: DHCPv4 stopped: {why}"));
                node.handle(
                    now,
                    Input::DhcpFailed {
                        ifindex: index,
                        why,
                    },
                )
            }
            Msg::Dhcp(u) => {
                driver.dhcp_event(u.ifindex, &u.event);
                node.handle(
                    now,
                    Input::Dhcp {
                        ifindex: u.ifindex,
                        event: u.event,
                    },
                )
            }
        };
        driver.carry_out(&mut node, out).await;
        if std::mem::take(&mut driver.reprobe) && !probes.is_empty() {
            probe_again(console, &probes, &node).await;
        }
    }
    Err(KeepError("netlink went away".into()))
}

async fn dump(handle: &rtnetlink::Handle) -> Vec<NetlinkMessage<RouteNetlinkMessage>> {
    use rtnetlink::packet_route::route::RouteMessage;
    use rtnetlink::RouteMessageBuilder;
    let mut out = Vec::new();
    let mut addrs = handle.address().get().execute();
    while let Ok(Some(a)) = addrs.try_next().await {
        out.push(NetlinkMessage::from(RouteNetlinkMessage::NewAddress(a)));
    }
    let filter: RouteMessage = RouteMessageBuilder::<Ipv6Addr>::new().build();
    let mut routes = handle.route().get(filter).execute();
    while let Ok(Some(r)) = routes.try_next().await {
        out.push(NetlinkMessage::from(RouteNetlinkMessage::NewRoute(r)));
    }
    out.retain(|m| matches!(m.payload, NetlinkPayload::InnerMessage(_)));
    out
}

/// `keep`'s driver of the node core: netlink, the DHCP clients, the files, the console.
struct Driver<'a> {
    console: &'a Console,
    handle: &'a rtnetlink::Handle,
    cfg: &'a KeepConfig,
    links: BTreeMap<u32, Link>,
    kept: BTreeMap<u32, Kept>,
    /// NICs whose IPv6 went away: when it is back, the probes run again.
    ipv6_lost: Vec<u32>,
    reprobe: bool,
}

impl Driver<'_> {
    fn carrier_change(&mut self, update: &Nic) {
        let link = self.links.entry(update.index).or_insert_with(|| Link {
            name: update.name.clone(),
            carrier: update.carrier,
            down_since: None,
        });
        if link.carrier == update.carrier {
            return;
        }
        link.carrier = update.carrier;
        if !update.carrier {
            let at = SystemTime::now();
            link.down_since = Some((Instant::now(), at));
            self.console.line(format_args!(
                "{}: carrier lost at {} (cable, switch port or the other end)",
                link.name,
                wall(at)
            ));
            return;
        }
        let away = link
            .down_since
            .take()
            .map(|(t, _)| format!(" after {}", console::human(t.elapsed())))
            .unwrap_or_default();
        match self.kept.get(&update.index) {
            // The node core kicks the client once the link's queue is up again.
            Some(_) => self.console.line(format_args!(
                "{}: carrier back{away}; checking the lease with the DHCP server now",
                link.name
            )),
            None => self
                .console
                .line(format_args!("{}: carrier back{away}", link.name)),
        }
    }

    /// The console's part of a DHCP event (the decisions are the node core's).
    fn dhcp_event(&mut self, ifindex: u32, event: &Event) {
        let Some(k) = self.kept.get_mut(&ifindex) else {
            return;
        };
        let name = k.nic.name.clone();
        match event {
            Event::Servers(servers) => {
                crate::net::report_servers(self.console, &name, &k.servers, servers);
                k.servers = servers.clone();
            }
            Event::Deconfigured(why) => {
                let at = SystemTime::now();
                self.console.line(format_args!(
                    "{name}: IPv4 lost at {}: {why}; address and routes removed, asking for a \
                     lease again (the same address first)",
                    wall(at)
                ));
                k.lost_at = Some((Instant::now(), at));
            }
            _ => {}
        }
    }

    async fn carry_out(&mut self, node: &mut Node, outputs: Vec<Output>) {
        let mut queue: std::collections::VecDeque<Output> = outputs.into();
        while let Some(o) = queue.pop_front() {
            match o {
                Output::Kick { ifindex } => {
                    if let Some(k) = self.kept.get(&ifindex) {
                        let _ = k.kick.try_send(());
                    }
                }
                // The clients are resumed, not started; the kernel solicits routers itself.
                Output::StartDhcp { .. } | Output::Solicit { .. } => {}
                Output::Apply {
                    ifindex,
                    lease,
                    metric,
                    ..
                } => {
                    let result = self.applied(ifindex, &lease, metric).await;
                    queue.extend(node.handle(
                        Instant::now(),
                        Input::Applied {
                            ifindex,
                            lease,
                            result,
                        },
                    ));
                }
                Output::Remove { ifindex, lease } => {
                    if let Err(e) = apply::remove(self.handle, ifindex, &lease).await {
                        // The kernel removes an address whose lifetime ran out by itself.
                        log::debug!("{ifindex}: {e}");
                    }
                }
                Output::WriteResolv {
                    dns,
                    search,
                    origin,
                } => {
                    let path = &self.cfg.resolv_path;
                    let text = apply::resolv_conf_text(&dns, &search, &origin);
                    match apply::write_file_atomic(path, text.as_bytes()) {
                        Ok(()) => self.console.line(format_args!(
                            "DNS servers now {}; {} rewritten",
                            dns.iter()
                                .map(|d| d.to_string())
                                .collect::<Vec<_>>()
                                .join(", "),
                            path.display()
                        )),
                        Err(e) => self
                            .console
                            .line(format_args!("could not write {}: {e}", path.display())),
                    }
                }
                Output::Slaac(change) => {
                    report_slaac(self.console, &self.links, &change);
                    match change {
                        Change::Lost { ifindex } => self.ipv6_lost.push(ifindex),
                        Change::Ready { ifindex, .. } if self.ipv6_lost.contains(&ifindex) => {
                            self.ipv6_lost.retain(|i| *i != ifindex);
                            self.reprobe = true;
                        }
                        _ => {}
                    }
                }
                Output::Probe { .. } | Output::Online => {}
            }
        }
    }

    /// Applies a lease that came or was renewed, says so, rewrites its lease file.
    async fn applied(&mut self, ifindex: u32, lease: &Lease, metric: u32) -> Result<(), String> {
        let Some(k) = self.kept.get_mut(&ifindex) else {
            return Err("not a kept NIC".into());
        };
        let name = k.nic.name.clone();
        if let Err(e) = apply::apply(self.handle, ifindex, &name, lease, metric).await {
            self.console
                .line(format_args!("{name}: lease not applied: {e}"));
            return Err(e.to_string());
        }
        match k.lost_at.take() {
            Some((t, _)) => {
                let handed = k.handed.record.lease.address;
                let same = if lease.address == handed {
                    "the same address".to_string()
                } else {
                    format!("a new address: {handed} was given to someone else")
                };
                self.console.line(format_args!(
                    "{name}: IPv4 back after {}: {} from {}, lease {} ({same})",
                    console::human(t.elapsed()),
                    lease.summary(),
                    lease.server,
                    console::human_secs(lease.lease_secs)
                ));
                self.reprobe = true;
            }
            None => self.console.line(format_args!(
                "{name}: lease on {} renewed by {} for {}",
                lease.address,
                lease.server,
                console::human_secs(lease.lease_secs)
            )),
        }
        let mut record = LeaseRecord::new(
            k.handed.record.client_id.clone(),
            lease.clone(),
            unix_secs(SystemTime::now()),
        );
        record.obtained_boottime_ms = clock::boottime_ms();
        k.handed.record = record;
        if let Err(e) = k.handed.write(&self.cfg.state_path) {
            self.console.line(format_args!(
                "{name}: could not rewrite {}: {e}",
                LeaseFile::path(&self.cfg.state_path, &name).display()
            ));
        }
        Ok(())
    }
}

/// The network came back after an outage: probe what the boot probed, over the families that
/// are up again, and say whether the node is reachable again.
async fn probe_again(console: &Console, urls: &[String], node: &Node) {
    let states: Vec<_> = node.watch().states().collect();
    let mut families = Vec::new();
    if states
        .iter()
        .any(|s| s.router.is_some() && !s.addresses.is_empty())
    {
        families.push(crate::net::probe::Family::Ipv6);
    }
    if node.oob_lease().is_some() {
        families.push(crate::net::probe::Family::Ipv4);
    }
    let dns = resolv(node.oob_lease(), &states).0;
    let results = crate::net::probe_and_report(urls, console, &families, &dns).await;
    let ok = results.iter().filter(|r| r.ok).count();
    console.line(format_args!(
        "network back: {ok} of {} probes answered{}",
        results.len(),
        if ok > 0 {
            "; the node is reachable again"
        } else {
            ""
        }
    ));
}

fn report_slaac(console: &Console, links: &BTreeMap<u32, Link>, c: &Change) {
    let name = |i: &u32| links.get(i).map_or("?", |l| l.name.as_str()).to_string();
    match c {
        Change::Ready {
            ifindex,
            address,
            prefix,
            ..
        } => console.line(format_args!(
            "{}: IPv6 {address}/{prefix} usable (SLAAC, default route present)",
            name(ifindex)
        )),
        Change::Lost { ifindex } => console.line(format_args!(
            "{}: IPv6 lost at {}: no global address with a default route; waiting for \
             the router's next advertisement",
            name(ifindex),
            wall(SystemTime::now())
        )),
        Change::DadFailed { ifindex, address } => console.line(format_args!(
            "{}: IPv6 {address} is used by another host on the segment (DAD failed)",
            name(ifindex)
        )),
        Change::FirstAdvert { .. } => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn handed(obtained_unix: u64, boottime: Option<u64>) -> LeaseFile {
        let lease = Lease {
            address: Ipv4Addr::new(10, 1, 0, 23),
            prefix: 24,
            server: Ipv4Addr::new(10, 1, 0, 1),
            lease_secs: 60,
            t1_secs: 30,
            t2_secs: 52,
            routers: vec![],
            classless_routes: vec![],
            dns: vec![],
            domain: None,
            search: vec![],
            ntp: vec![],
            mtu: None,
        };
        let mut record = LeaseRecord::new("01:02:00:00:00:00:01".into(), lease, obtained_unix);
        record.obtained_boottime_ms = boottime;
        LeaseFile {
            interface: "eth0".into(),
            mac: "02:00:00:00:00:01".into(),
            role: Role::Oob,
            hostname: None,
            record,
        }
    }

    #[test]
    fn a_lease_is_aged_by_the_boot_clock_when_the_wall_clock_was_stepped() {
        // The clock stage stepped the wall clock 5 years forward after the lease: the boot
        // clock still says 12 s.
        let h = handed(1_000, Some(40_000));
        assert_eq!(
            held_for(&h, Some(52_000), 1_000 + 5 * 365 * 86_400),
            Duration::from_secs(12)
        );
        // Without the boot clock, the wall clock; a clock stepped backwards counts as 0.
        let h = handed(1_000, None);
        assert_eq!(held_for(&h, Some(52_000), 1_030), Duration::from_secs(30));
        assert_eq!(held_for(&h, None, 900), Duration::ZERO);
    }

    #[test]
    fn client_ids_are_read_back_as_written() {
        assert_eq!(
            parse_colon_hex("01:02:00:00:00:00:1f"),
            Some(vec![1, 2, 0, 0, 0, 0, 0x1f])
        );
        assert_eq!(
            parse_colon_hex(&client::fmt_mac(&[0xff, 0, 0xab])),
            Some(vec![0xff, 0, 0xab])
        );
        for bad in ["", "1:02", "01:0g", "01::02", "0102"] {
            assert_eq!(parse_colon_hex(bad), None, "{bad}");
        }
    }
}
