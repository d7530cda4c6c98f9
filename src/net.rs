//! The network stage: links up, carrier by netlink events, DHCPv4 on every candidate NIC at
//! once, the first NIC bound becomes the OOB NIC. Returns the [`State`] the next stage takes.
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_lite::future;
use rtnetlink::Handle;
use smol::channel::{self, Receiver, Sender};

use crate::dhcp4::apply;
use crate::dhcp4::client::{self, Client, Config, Event, Lease};
use crate::dhcp4::driver::{self, Update};
use crate::links::{self, Nic, Notifications};
use crate::report::{self, Console};
use crate::state::{Interface, Ipv4Entry, Ipv4Summary, LeaseRecord, Role, State, Timings};

/// Route metric of the OOB NIC's routes; other NICs' routes come after it.
const OOB_METRIC: u32 = 100;
const OTHER_METRIC: u32 = 200;

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
    Link(Option<Nic>),
    Dhcp(Update),
    DhcpFailed(u32, String),
    Timeout,
}

/// Per-NIC bookkeeping while the stage runs.
struct NicRun {
    nic: Nic,
    dhcp: Option<smol::Task<()>>,
    client_id: Vec<u8>,
    lease: Option<Lease>,
    obtained: Option<SystemTime>,
    confirmed: bool,
    dhcp_state: &'static str,
    sent: u32,
    failure: Option<String>,
}

pub async fn run(cfg: &NetConfig, console: &Console) -> Result<State, NetError> {
    let (handle, mut notifications) =
        links::connect().map_err(|e| NetError(format!("cannot open netlink: {e}")))?;
    let all = links::inventory(&handle)
        .await
        .map_err(|e| NetError(format!("cannot list network interfaces: {e}")))?;
    let chosen = choose(&all, &cfg.ifaces)?;

    let (tx, rx) = channel::unbounded::<Msg>();
    let mut nics: BTreeMap<u32, NicRun> = BTreeMap::new();
    for nic in chosen {
        console.line(format_args!(
            "{}: found NIC {} ({}), carrier {}",
            nic.name,
            client::fmt_mac(&nic.mac),
            nic.kind.as_deref().unwrap_or("hardware"),
            if nic.carrier { "up" } else { "down" }
        ));
        if !nic.admin_up {
            links::set_up(&handle, nic.index)
                .await
                .map_err(|e| NetError(format!("{}: cannot bring the link up: {e}", nic.name)))?;
        }
        let client_id = cfg
            .client_id
            .clone()
            .unwrap_or_else(|| Config::mac_client_id(nic.mac));
        nics.insert(
            nic.index,
            NicRun {
                nic,
                dhcp: None,
                client_id,
                lease: None,
                obtained: None,
                confirmed: false,
                dhcp_state: "waiting for carrier",
                sent: 0,
                failure: None,
            },
        );
    }
    // Links brought up just now report carrier by notification; ones already up may not, so
    // the ones that have it now start at once.
    for run in nics.values_mut() {
        if run.nic.carrier {
            start_dhcp(run, cfg, &tx);
        }
    }

    let deadline = Instant::now() + cfg.timeout;
    let mut oob: Option<u32> = None;
    let mut dhcp4_ms = None;
    let mut online = false;
    let mut error = None;
    while !online {
        match next_msg(&mut notifications, &rx, deadline).await {
            Msg::Link(None) => {
                error = Some("the netlink connection closed".to_string());
                break;
            }
            Msg::Link(Some(update)) => {
                let Some(run) = nics.get_mut(&update.index) else {
                    continue;
                };
                if update.carrier != run.nic.carrier {
                    console.line(format_args!(
                        "{}: carrier {}",
                        run.nic.name,
                        if update.carrier { "up" } else { "down" }
                    ));
                }
                run.nic.carrier = update.carrier;
                run.nic.mtu = update.mtu;
                if update.carrier {
                    start_dhcp(run, cfg, &tx);
                }
            }
            Msg::DhcpFailed(index, why) => {
                if let Some(run) = nics.get_mut(&index) {
                    console.line(format_args!("{}: DHCPv4 stopped: {why}", run.nic.name));
                    run.failure = Some(why);
                    run.dhcp_state = "failed";
                }
            }
            Msg::Dhcp(u) => {
                let Some(run) = nics.get_mut(&u.ifindex) else {
                    continue;
                };
                run.sent = u.sent;
                match u.event {
                    Event::Bound(lease) => {
                        let is_oob =
                            oob.is_none() && cfg.oob.as_deref().is_none_or(|o| o == run.nic.name);
                        let metric = if is_oob {
                            OOB_METRIC
                        } else {
                            OTHER_METRIC + u.ifindex
                        };
                        match apply::apply(&handle, run.nic.index, &run.nic.name, &lease, metric)
                            .await
                        {
                            Ok(()) => {
                                console.line(format_args!(
                                    "{}: DHCPv4 {}/{}{}, lease {} from {} ({} ms)",
                                    run.nic.name,
                                    lease.address,
                                    lease.prefix,
                                    lease
                                        .gateway()
                                        .map(|g| format!(" via {g}"))
                                        .unwrap_or_default(),
                                    report::human_secs(lease.lease_secs),
                                    lease.server,
                                    u.since_first_send.as_millis()
                                ));
                                if is_oob {
                                    oob = Some(run.nic.index);
                                    dhcp4_ms = Some(u.since_first_send.as_millis() as u64);
                                    write_resolv_conf(cfg, console, &run.nic.name, &lease);
                                }
                                run.lease = Some(lease);
                                run.obtained = Some(SystemTime::now());
                                run.dhcp_state = "BOUND";
                            }
                            Err(e) => {
                                console
                                    .line(format_args!("{}: lease not applied: {e}", run.nic.name));
                                run.dhcp_state = "apply failed";
                            }
                        }
                    }
                    Event::Confirmed => {
                        run.confirmed = true;
                        if oob == Some(u.ifindex) {
                            online = true;
                        }
                    }
                    Event::Renewed(lease) => {
                        let metric = if oob == Some(u.ifindex) {
                            OOB_METRIC
                        } else {
                            OTHER_METRIC + u.ifindex
                        };
                        if let Err(e) =
                            apply::apply(&handle, run.nic.index, &run.nic.name, &lease, metric)
                                .await
                        {
                            console.line(format_args!(
                                "{}: renewed lease not applied: {e}",
                                run.nic.name
                            ));
                        }
                        run.lease = Some(lease);
                        run.obtained = Some(SystemTime::now());
                    }
                    Event::Deconfigured(why) => {
                        console.line(format_args!(
                            "{}: DHCPv4 lease dropped: {why}",
                            run.nic.name
                        ));
                        if let Some(lease) = run.lease.take() {
                            if let Err(e) = apply::remove(&handle, run.nic.index, &lease).await {
                                log::warn!("{}: {e}", run.nic.name);
                            }
                        }
                        run.confirmed = false;
                        run.dhcp_state = "SELECTING";
                        if oob == Some(u.ifindex) {
                            oob = None;
                        }
                    }
                }
            }
            Msg::Timeout => {
                error = Some(why_offline(&nics, cfg.timeout));
                break;
            }
        }
    }

    let state = build_state(&nics, oob, online, error, dhcp4_ms, console.start());
    // Stop the DHCP drivers: the addresses stay with their lease lifetimes; the full OS
    // resumes the lease from the state file.
    for run in nics.values_mut() {
        run.dhcp.take();
    }
    Ok(state)
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

fn start_dhcp(run: &mut NicRun, cfg: &NetConfig, tx: &Sender<Msg>) {
    if run.dhcp.is_some() || run.failure.is_some() {
        return;
    }
    let mac = run.nic.mac;
    let mac_text = client::fmt_mac(&mac);
    let config = Config {
        ifname: run.nic.name.clone(),
        mac,
        client_id: run.client_id.clone(),
        hostname: Some(
            cfg.hostname
                .clone()
                .unwrap_or_else(|| format!("zos-{}", mac_text.replace(':', ""))),
        ),
        vendor_class: "zos".into(),
    };
    let now = Instant::now();
    let seed = fastrand::u64(..)
        ^ u64::from_be_bytes([0, 0, mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]]);
    let client = match crate::state::State::previous_address(&cfg.state_path, &mac_text) {
        Some(prev) => {
            log::info!(
                "{}: asking for the previous address {prev} first",
                run.nic.name
            );
            Client::reboot(config, prev, now, seed)
        }
        None => Client::new(config, now, seed),
    };
    let (index, name, tx) = (run.nic.index, run.nic.name.clone(), tx.clone());
    run.dhcp_state = "SELECTING";
    run.dhcp = Some(smol::spawn(async move {
        let (updates, incoming) = channel::unbounded::<Update>();
        let forward = {
            let tx = tx.clone();
            async move {
                while let Ok(u) = incoming.recv().await {
                    if tx.send(Msg::Dhcp(u)).await.is_err() {
                        break;
                    }
                }
            }
        };
        let drive = driver::run(client, index, name, mac, updates);
        let (result, ()) = future::zip(drive, forward).await;
        if let Err(e) = result {
            let _ = tx.send(Msg::DhcpFailed(index, e.to_string())).await;
        }
    }));
}

async fn next_msg(notifications: &mut Notifications, rx: &Receiver<Msg>, deadline: Instant) -> Msg {
    future::or(
        async { Msg::Link(links::next_link_update(notifications).await) },
        future::or(
            async {
                match rx.recv().await {
                    Ok(m) => m,
                    Err(_) => future::pending().await,
                }
            },
            async {
                smol::Timer::at(deadline).await;
                Msg::Timeout
            },
        ),
    )
    .await
}

fn write_resolv_conf(cfg: &NetConfig, console: &Console, ifname: &str, lease: &Lease) {
    if lease.dns.is_empty() {
        console.line(format_args!(
            "{ifname}: the DHCP server gave no DNS server; resolv.conf left as is"
        ));
        return;
    }
    let text = apply::resolv_conf_text(lease, ifname);
    if let Err(e) = apply::write_file_atomic(&cfg.resolv_path, text.as_bytes()) {
        console.line(format_args!(
            "could not write {}: {e}",
            cfg.resolv_path.display()
        ));
    }
}

/// The reason `net` gives up, NIC by NIC, with what to check.
fn why_offline(nics: &BTreeMap<u32, NicRun>, timeout: Duration) -> String {
    let mut lines = vec![format!(
        "no NIC got a DHCPv4 lease within {}s:",
        timeout.as_secs()
    )];
    for run in nics.values() {
        let line = if let Some(f) = &run.failure {
            format!("{}: DHCP could not run: {f}", run.nic.name)
        } else if !run.nic.carrier {
            format!(
                "{}: no carrier — check the cable and the switch port",
                run.nic.name
            )
        } else if run.lease.is_some() {
            format!(
                "{}: bound but not confirmed (address conflict?)",
                run.nic.name
            )
        } else {
            format!(
                "{}: carrier up, {} DHCP requests sent, no usable answer — is a DHCP server \
                 serving this segment (and this MAC)?",
                run.nic.name, run.sent
            )
        };
        lines.push(line);
    }
    lines.join("\n  ")
}

fn build_state(
    nics: &BTreeMap<u32, NicRun>,
    oob: Option<u32>,
    online: bool,
    error: Option<String>,
    dhcp4_ms: Option<u64>,
    start: Instant,
) -> State {
    let mut gateway: Option<Ipv4Addr> = None;
    let mut dns = Vec::new();
    let mut search = Vec::new();
    let mut ntp = Vec::new();
    let interfaces = nics
        .values()
        .map(|run| {
            let is_oob = oob == Some(run.nic.index);
            if is_oob {
                if let Some(l) = &run.lease {
                    gateway = l.gateway();
                    dns = l.dns.clone();
                    search = if l.search.is_empty() {
                        l.domain.iter().cloned().collect()
                    } else {
                        l.search.clone()
                    };
                    ntp = l.ntp.clone();
                }
            }
            Interface {
                name: run.nic.name.clone(),
                mac: client::fmt_mac(&run.nic.mac),
                role: if is_oob { Role::Oob } else { Role::Unused },
                carrier: run.nic.carrier,
                mtu: run
                    .lease
                    .as_ref()
                    .and_then(|l| l.mtu)
                    .map_or(run.nic.mtu, u32::from),
                ipv4: run
                    .lease
                    .iter()
                    .map(|l| Ipv4Entry {
                        address: l.address,
                        prefix: l.prefix,
                        source: "dhcp".into(),
                        lease_secs: l.lease_secs,
                        server: l.server,
                    })
                    .collect(),
                ipv6: Vec::new(),
                dhcp4: run.dhcp_state.to_string(),
                lease: run.lease.as_ref().map(|l| {
                    let obtained = run
                        .obtained
                        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                        .map_or(0, |d| d.as_secs());
                    LeaseRecord::new(client::fmt_mac(&run.client_id), l.clone(), obtained)
                }),
            }
        })
        .collect();
    State {
        version: env!("CARGO_PKG_VERSION").to_string(),
        online,
        error,
        interfaces,
        ipv4: Ipv4Summary { gateway },
        dns,
        search,
        ntp,
        timings_ms: Timings {
            dhcp4: dhcp4_ms,
            total: online.then(|| start.elapsed().as_millis() as u64),
        },
    }
}

/// Keeps `Handle` in the public signature of helpers that need it later (VLAN, bonds).
#[allow(dead_code)]
pub type NetlinkHandle = Handle;
