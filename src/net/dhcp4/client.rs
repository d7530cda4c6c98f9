//! A sans-IO DHCPv4 client (RFC 2131), in the style of smoltcp's.
//!
//! Three verbs and no I/O: feed it a received packet ([`Client::handle_packet`]), an ARP
//! observation ([`Client::handle_arp`]) or the passing of time ([`Client::handle_timeout`]);
//! ask it when it wants to be woken ([`Client::poll_at`]). Every call returns [`Action`]s: packets
//! to send, addresses to probe, and [`Event`]s the driver acts on (apply a lease, remove it).
//! The driver owns sockets, netlink and the clock.
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use dhcproto::v4::{self, DhcpOption, MessageType, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable};
use serde::{Deserialize, Serialize};

use crate::retry::Backoff;

/// REQUESTs sent for one OFFER (or one INIT-REBOOT) before starting over with DISCOVER.
const REQUEST_TRIES: u32 = 4;
/// RFC 2131 §3.1.5: wait at least 10 s after a DECLINE before starting over.
const DECLINE_WAIT: Duration = Duration::from_secs(10);
/// How long after the first ARP probe a reply still counts as a conflict. RFC 5227 waits
/// seconds; a booting node can't, so we probe when the OFFER arrives (in parallel with the
/// REQUEST/ACK exchange) and keep listening for this short window after binding.
pub const CONFLICT_WINDOW: Duration = Duration::from_millis(200);
/// RFC 2131 §4.4.5: retransmissions in RENEWING/REBINDING are never closer than 60 s apart.
const RENEW_MIN_RETRY: Duration = Duration::from_secs(60);
const MAX_MESSAGE_SIZE: u16 = 1500;
/// A flawed OFFER (bad values had to be dropped from it, or its server refused us with a NAK
/// before) waits this long for a clean OFFER from another server before it is taken anyway. A
/// rogue DHCP server on the segment (a home router, a switch with DHCP on) often answers first.
pub const OFFER_HOLD: Duration = Duration::from_secs(2);
/// Restarts after NAKs: the first at once (RFC 2131 §3.1), the next ones after 1 s doubling to
/// 16 s, so a server that refuses every REQUEST does not make us storm the segment.
const NAK_BACKOFF: Backoff = Backoff {
    initial: Duration::from_secs(1),
    cap: Duration::from_secs(16),
    jitter_pct: 20,
};
/// Distinct DHCP servers remembered per interface (a segment with more is beyond diagnosis).
const MAX_SERVERS: usize = 8;
/// A probe from another host for an address we hold is answered with an announcement at most
/// this often (RFC 5227 §2.4 (b): defend, but do not become an ARP amplifier).
pub const DEFEND_INTERVAL: Duration = Duration::from_secs(1);
/// DNS (option 6) and NTP (option 42) servers kept from one lease; the rest are dropped (glibc
/// and musl read three nameservers; a list of 63 is an attack, not a plan).
pub const MAX_SERVERS_PER_OPTION: usize = 4;

/// What the client is, on the wire.
#[derive(Debug, Clone)]
pub struct Config {
    /// Interface name, only for log lines.
    pub ifname: String,
    pub mac: [u8; 6],
    /// Option 61. Stable across boots so a farmer can write a reservation for it.
    pub client_id: Vec<u8>,
    pub hostname: Option<String>,
    /// Option 60.
    pub vendor_class: String,
}

impl Config {
    /// RFC 2132 §9.14 client identifier of type 1 (Ethernet) + MAC: the identity a farmer
    /// already uses for reservations, and the same one every boot.
    pub fn mac_client_id(mac: [u8; 6]) -> Vec<u8> {
        let mut id = vec![1];
        id.extend_from_slice(&mac);
        id
    }
}

/// One IPv4 route learned from DHCP. `gateway` 0.0.0.0 means "on link" (RFC 3442 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub destination: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
}

/// A validated lease: everything the server told us that we are willing to apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub server: Ipv4Addr,
    pub lease_secs: u32,
    pub t1_secs: u32,
    pub t2_secs: u32,
    /// Option 3, only routers inside the subnet.
    pub routers: Vec<Ipv4Addr>,
    /// Option 121 (RFC 3442). When present, option 3 is ignored.
    pub classless_routes: Vec<Route>,
    pub dns: Vec<Ipv4Addr>,
    pub domain: Option<String>,
    pub search: Vec<String>,
    pub ntp: Vec<Ipv4Addr>,
    pub mtu: Option<u16>,
}

impl Lease {
    /// The routes to install: option 121 if the server sent it, else a default route via the
    /// first router (RFC 3442 §3: "the client MUST ignore the Router option").
    pub fn routes(&self) -> Vec<Route> {
        if !self.classless_routes.is_empty() {
            return self.classless_routes.clone();
        }
        self.routers
            .first()
            .map(|gw| {
                vec![Route {
                    destination: Ipv4Addr::UNSPECIFIED,
                    prefix: 0,
                    gateway: *gw,
                }]
            })
            .unwrap_or_default()
    }

    /// "10.1.0.23/24 via 10.1.0.1", for console lines.
    pub fn summary(&self) -> String {
        let via = self
            .gateway()
            .map(|g| format!(" via {g}"))
            .unwrap_or_default();
        format!("{}/{}{via}", self.address, self.prefix)
    }

    /// The default gateway actually used, if any.
    pub fn gateway(&self) -> Option<Ipv4Addr> {
        self.routes()
            .iter()
            .find(|r| r.prefix == 0 && !r.gateway.is_unspecified())
            .map(|r| r.gateway)
    }
}

/// A DHCP server that answered us, for the console and the state file: more than one on a
/// segment is a classic farm problem (a home router plus a switch with DHCP on).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerSeen {
    /// Its server identifier (option 54).
    pub server: Ipv4Addr,
    /// The address it offered last.
    pub offered: Option<Ipv4Addr>,
    pub offers: u32,
    /// NAKs it sent us (to any REQUEST, ours to it or not).
    pub naks: u32,
    /// The text of its last NAK (option 56), sanitized.
    pub nak_message: Option<String>,
    /// What was wrong with its last OFFER: why it was refused, or the values dropped from it.
    pub problems: Vec<String>,
}

/// Where a packet goes. `ciaddr_configured` tells the driver whether the kernel has our address
/// (then a normal UDP socket works) or not (then it must use a packet socket).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub payload: Vec<u8>,
    pub to: Destination,
    pub ciaddr_configured: bool,
    pub kind: MessageType,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    Broadcast,
    Unicast(Ipv4Addr),
}

/// What the driver must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A new lease: configure it now.
    Bound(Lease),
    /// No ARP conflict within [`CONFLICT_WINDOW`]: the lease is confirmed.
    Confirmed,
    /// Same address, new timers (and possibly new options): refresh what was applied.
    Renewed(Lease),
    /// Remove the address and routes of the previous lease.
    Deconfigured(String),
    /// The DHCP servers seen so far, sent when a second server shows up, when a server's OFFER
    /// could not be used, and on every NAK.
    Servers(Vec<ServerSeen>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Send(Transmit),
    /// Send an RFC 5227 ARP probe for this address and report what comes back.
    ArpProbe(Ipv4Addr),
    /// Send an RFC 5227 §2.3 ARP announcement for this address (ours): defends it against
    /// another host's probe.
    ArpAnnounce(Ipv4Addr),
    Event(Event),
}

#[derive(Debug, Clone)]
enum State {
    Selecting {
        xid: u32,
        started: Instant,
        attempt: u32,
        retry_at: Instant,
        /// The best flawed OFFER so far, taken at its deadline unless a clean one comes first.
        held: Option<Box<Held>>,
    },
    Requesting {
        xid: u32,
        started: Instant,
        attempt: u32,
        retry_at: Instant,
        offer: Lease,
        probed_at: Instant,
        conflict: bool,
    },
    /// RFC 2131 §3.2: a node that remembers its address asks for it again first.
    InitReboot {
        xid: u32,
        started: Instant,
        attempt: u32,
        retry_at: Instant,
        requested: Ipv4Addr,
    },
    Bound {
        lease: Lease,
        bound_at: Instant,
        /// Until then, an ARP reply for our address means someone else has it.
        watch_until: Option<Instant>,
    },
    Renewing {
        lease: Lease,
        bound_at: Instant,
        xid: u32,
        retry_at: Instant,
    },
    Rebinding {
        lease: Lease,
        bound_at: Instant,
        xid: u32,
        retry_at: Instant,
    },
    /// After a DECLINE, quiet until `until`.
    Declined { until: Instant },
}

/// A flawed OFFER waiting for a better one (see [`OFFER_HOLD`]).
#[derive(Debug, Clone)]
struct Held {
    offer: Lease,
    problems: usize,
    until: Instant,
}

/// The RFC 2131 client state machine for one interface.
pub struct Client {
    config: Config,
    state: State,
    backoff: Backoff,
    rng: fastrand::Rng,
    /// The address of the last lease held, asked for again (option 50) in DISCOVER after it
    /// was lost, so a node that rides out an outage comes back with the same address.
    last_address: Option<Ipv4Addr>,
    servers: Vec<ServerSeen>,
    /// Servers whose NAK to our REQUEST sent us back to DISCOVER (their OFFERs count as flawed).
    refused_by: Vec<Ipv4Addr>,
    /// NAKs since the last bind: paces the restarts ([`NAK_BACKOFF`]).
    naks: u32,
    /// An address another host probed for while we were REQUESTING it: announced when the
    /// ACK comes (the server chose us, the other host was or will be NAKed).
    contested: Option<Ipv4Addr>,
    /// The last announcement sent to defend the address we hold ([`DEFEND_INTERVAL`]).
    last_defended: Option<Instant>,
}

impl Client {
    /// A client that starts in INIT: the first [`Client::handle_timeout`] at `now` sends DISCOVER.
    pub fn new(config: Config, now: Instant, seed: u64) -> Self {
        let mut rng = fastrand::Rng::with_seed(seed);
        let state = State::Selecting {
            xid: rng.u32(..),
            started: now,
            attempt: 0,
            retry_at: now,
            held: None,
        };
        Client {
            config,
            state,
            backoff: Backoff::DHCP_BOOT,
            rng,
            last_address: None,
            servers: Vec::new(),
            refused_by: Vec::new(),
            naks: 0,
            contested: None,
            last_defended: None,
        }
    }

    /// A client that already holds `lease`, obtained `held_for` ago (by the boot, before a
    /// hand-over): BOUND, and its first wake-up is T1 (RENEWING by unicast, not DISCOVER), or
    /// T2 / expiry if those passed already. A lease that expired while nobody held it is asked
    /// for again with INIT-REBOOT.
    pub fn resume(
        config: Config,
        lease: Lease,
        held_for: Duration,
        now: Instant,
        seed: u64,
    ) -> Self {
        if held_for >= secs(lease.lease_secs) {
            let mut client = Client::reboot(config, lease.address, now, seed);
            client.last_address = Some(lease.address);
            return client;
        }
        let mut client = Client::new(config, now, seed);
        // An Instant can't go before the clock's origin; then the lease counts from now, which
        // at worst renews late by the time the system was up before the lease.
        let bound_at = now.checked_sub(held_for).unwrap_or(now);
        client.last_address = Some(lease.address);
        client.state = State::Bound {
            lease,
            bound_at,
            watch_until: None,
        };
        client
    }

    /// Replaces the retransmission schedule used while looking for a server (DISCOVER,
    /// REQUEST, INIT-REBOOT); `keep` uses a slower one than the boot.
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The lease held (BOUND, RENEWING, REBINDING), if any.
    pub fn lease(&self) -> Option<&Lease> {
        match &self.state {
            State::Bound { lease, .. }
            | State::Renewing { lease, .. }
            | State::Rebinding { lease, .. } => Some(lease),
            _ => None,
        }
    }

    /// A client that starts in INIT-REBOOT, asking for `previous` first.
    pub fn reboot(config: Config, previous: Ipv4Addr, now: Instant, seed: u64) -> Self {
        let mut client = Client::new(config, now, seed);
        client.state = State::InitReboot {
            xid: client.rng.u32(..),
            started: now,
            attempt: 0,
            retry_at: now,
            requested: previous,
        };
        client
    }

    /// The state's name, for logs and the state file.
    pub fn state_name(&self) -> &'static str {
        match self.state {
            State::Selecting { .. } => "SELECTING",
            State::Requesting { .. } => "REQUESTING",
            State::InitReboot { .. } => "INIT-REBOOT",
            State::Bound { .. } => "BOUND",
            State::Renewing { .. } => "RENEWING",
            State::Rebinding { .. } => "REBINDING",
            State::Declined { .. } => "DECLINED",
        }
    }

    /// The DHCP servers that answered so far (OFFERs and NAKs), in the order first seen.
    pub fn servers(&self) -> &[ServerSeen] {
        &self.servers
    }

    /// When the driver must call [`Client::handle_timeout`] next.
    pub fn poll_at(&self) -> Instant {
        match &self.state {
            // Holding an OFFER: no more DISCOVERs, the other servers had theirs.
            State::Selecting { held: Some(h), .. } => h.until,
            State::Selecting { retry_at, .. }
            | State::Requesting { retry_at, .. }
            | State::InitReboot { retry_at, .. } => *retry_at,
            State::Bound {
                lease,
                bound_at,
                watch_until,
            } => {
                let renew = after(*bound_at, lease.t1_secs);
                watch_until.map_or(renew, |w| w.min(renew))
            }
            State::Renewing { retry_at, .. } | State::Rebinding { retry_at, .. } => *retry_at,
            State::Declined { until } => *until,
        }
    }

    /// The link just became able to transmit (its queue was activated after carrier came up):
    /// what was sent before may have been dropped by the kernel, so retransmit now instead of
    /// waiting for the backoff. Counts as no extra attempt.
    ///
    /// Holding a lease, it means the link came back after a carrier loss: the server may have
    /// moved on meanwhile, so check the lease with it now (REQUEST from RENEWING, or REBINDING
    /// after T2) instead of trusting it until T1. Not during the ARP conflict watch right after
    /// binding (the queue activation that follows a first carrier often comes after the ACK):
    /// the server has just spoken, and the watch must end in `Confirmed`.
    pub fn kick(&mut self, now: Instant) -> Vec<Action> {
        if let State::Bound {
            watch_until: Some(_),
            ..
        } = &self.state
        {
            return Vec::new();
        }
        if let State::Bound {
            lease, bound_at, ..
        }
        | State::Renewing {
            lease, bound_at, ..
        }
        | State::Rebinding {
            lease, bound_at, ..
        } = self.state.clone()
        {
            return self.renew_or_rebind(now, lease, bound_at, true);
        }
        match &mut self.state {
            State::Selecting {
                retry_at, attempt, ..
            }
            | State::Requesting {
                retry_at, attempt, ..
            }
            | State::InitReboot {
                retry_at, attempt, ..
            } if *attempt > 0 => {
                *retry_at = now;
                *attempt -= 1;
                self.handle_timeout(now)
            }
            _ => Vec::new(),
        }
    }

    /// Time passed: retransmit, move to RENEWING/REBINDING, expire, or end the conflict watch.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<Action> {
        if now < self.poll_at() {
            return Vec::new();
        }
        match self.state.clone() {
            State::Selecting {
                xid,
                started,
                held: Some(h),
                ..
            } => {
                log::info!(
                    "{}: no better OFFER within {}s, taking {}'s",
                    self.config.ifname,
                    OFFER_HOLD.as_secs(),
                    h.offer.server
                );
                self.select(now, xid, started, h.offer)
            }
            State::Selecting {
                xid,
                started,
                attempt,
                ..
            } => {
                let retry_at = now + self.next_delay(attempt);
                self.state = State::Selecting {
                    xid,
                    started,
                    attempt: attempt + 1,
                    retry_at,
                    held: None,
                };
                vec![self.discover(xid, started, now)]
            }
            State::Requesting {
                attempt, started, ..
            } if attempt >= REQUEST_TRIES => {
                log::info!(
                    "{}: no answer to {REQUEST_TRIES} REQUESTs, starting over",
                    self.config.ifname
                );
                self.restart(now, started)
            }
            State::Requesting {
                xid,
                started,
                attempt,
                offer,
                probed_at,
                conflict,
                ..
            } => {
                let retry_at = now + self.next_delay(attempt);
                let tx = self.request_selecting(xid, started, now, &offer);
                self.state = State::Requesting {
                    xid,
                    started,
                    attempt: attempt + 1,
                    retry_at,
                    offer,
                    probed_at,
                    conflict,
                };
                vec![tx]
            }
            State::InitReboot {
                attempt, started, ..
            } if attempt >= REQUEST_TRIES => {
                log::info!(
                    "{}: no answer asking for the previous address, starting over",
                    self.config.ifname
                );
                self.restart(now, started)
            }
            State::InitReboot {
                xid,
                started,
                attempt,
                requested,
                ..
            } => {
                let retry_at = now + self.next_delay(attempt);
                self.state = State::InitReboot {
                    xid,
                    started,
                    attempt: attempt + 1,
                    retry_at,
                    requested,
                };
                vec![self.request_init_reboot(xid, started, now, requested)]
            }
            State::Bound {
                lease,
                bound_at,
                watch_until: Some(w),
            } if now >= w => {
                self.state = State::Bound {
                    lease,
                    bound_at,
                    watch_until: None,
                };
                vec![Action::Event(Event::Confirmed)]
            }
            State::Bound { lease, .. } if lease.lease_secs == u32::MAX => {
                // An infinite lease (RFC 2131 §3.3) is never renewed and never expires; 136
                // years on, just look again in another 136.
                self.state = State::Bound {
                    lease,
                    bound_at: now,
                    watch_until: None,
                };
                Vec::new()
            }
            State::Bound {
                lease, bound_at, ..
            } => {
                log::info!(
                    "{}: T1 reached, renewing {} with {}",
                    self.config.ifname,
                    lease.address,
                    lease.server
                );
                self.renew_or_rebind(now, lease, bound_at, true)
            }
            State::Renewing {
                lease, bound_at, ..
            } => self.renew_or_rebind(now, lease, bound_at, true),
            State::Rebinding {
                lease, bound_at, ..
            } => self.renew_or_rebind(now, lease, bound_at, false),
            State::Declined { .. } => self.restart(now, now),
        }
    }

    /// An ARP packet was seen on the interface (not sent by us).
    ///
    /// RFC 5227: a packet whose *sender* IP is the address (a reply, or another host's
    /// announcement) means another host uses it: a conflict, the address is declined. A probe
    /// (sender IP 0.0.0.0) for the address is another host *asking* whether it is free: not a
    /// use. While we REQUEST the address it is noted (the server decides: if it ACKs us, the other
    /// host gets a NAK, and we announce); once we hold the ACK we defend the address with an
    /// announcement. Declining on a probe made one node of 50 give up a good lease and wait 10 s
    /// when dnsmasq offered one address to two nodes (issue 17, point 10).
    pub fn handle_arp(
        &mut self,
        now: Instant,
        sender_ip: Ipv4Addr,
        sender_mac: [u8; 6],
        target_ip: Ipv4Addr,
        is_probe: bool,
    ) -> Vec<Action> {
        if sender_mac == self.config.mac {
            return Vec::new();
        }
        let probe_for = |ip: Ipv4Addr| is_probe && sender_ip.is_unspecified() && target_ip == ip;
        match &mut self.state {
            State::Requesting {
                offer, conflict, ..
            } if sender_ip == offer.address => {
                log::warn!(
                    "{}: {} is already used by {}; will DECLINE it",
                    self.config.ifname,
                    offer.address,
                    fmt_mac(&sender_mac)
                );
                *conflict = true;
                Vec::new()
            }
            State::Requesting { offer, .. } if probe_for(offer.address) => {
                log::info!(
                    "{}: {} also probes for {}; the server decides, we announce it if ACKed",
                    self.config.ifname,
                    fmt_mac(&sender_mac),
                    offer.address
                );
                self.contested = Some(offer.address);
                Vec::new()
            }
            State::Bound {
                lease,
                watch_until: Some(w),
                ..
            } if now < *w && sender_ip == lease.address => {
                let lease = lease.clone();
                log::warn!(
                    "{}: {} is already used by {}; declining it",
                    self.config.ifname,
                    lease.address,
                    fmt_mac(&sender_mac)
                );
                self.decline(now, &lease)
            }
            State::Bound { lease, .. }
            | State::Renewing { lease, .. }
            | State::Rebinding { lease, .. }
                if probe_for(lease.address) =>
            {
                let address = lease.address;
                if self
                    .last_defended
                    .is_some_and(|t| now.saturating_duration_since(t) < DEFEND_INTERVAL)
                {
                    return Vec::new();
                }
                log::info!(
                    "{}: {} probes for {}, which we hold: announcing it",
                    self.config.ifname,
                    fmt_mac(&sender_mac),
                    address
                );
                self.last_defended = Some(now);
                vec![Action::ArpAnnounce(address)]
            }
            _ => Vec::new(),
        }
    }

    /// A DHCP payload arrived for UDP port 68 on this interface.
    pub fn handle_packet(&mut self, now: Instant, bytes: &[u8]) -> Vec<Action> {
        if let Err(why) = check_options(bytes) {
            self.drop_packet(format_args!("malformed options ({why})"));
            return Vec::new();
        }
        let msg = match v4::Message::decode(&mut Decoder::new(bytes)) {
            Ok(m) => m,
            Err(e) => {
                self.drop_packet(format_args!("malformed packet ({e})"));
                return Vec::new();
            }
        };
        let Some(xid) = self.xid() else {
            return Vec::new();
        };
        if msg.opcode() != v4::Opcode::BootReply {
            return Vec::new(); // another client's request, seen on a broadcast segment
        }
        if msg.xid() != xid {
            log::trace!(
                "{}: ignoring reply for another transaction",
                self.config.ifname
            );
            return Vec::new();
        }
        // dhcproto's chaddr() slices chaddr[..hlen] and panics on an hlen over 16 (found by
        // fuzzing): anything but Ethernet's 6 is not a reply to us anyway.
        if msg.hlen() != 6 {
            self.drop_packet(format_args!(
                "reply with hardware address length {}",
                msg.hlen()
            ));
            return Vec::new();
        }
        if msg.chaddr().get(..6) != Some(&self.config.mac[..]) {
            self.drop_packet(format_args!("reply with our xid but another chaddr"));
            return Vec::new();
        }
        let Some(kind) = msg.opts().msg_type() else {
            self.drop_packet(format_args!("reply without a message type"));
            return Vec::new();
        };
        match (self.state.clone(), kind) {
            (State::Selecting { started, held, .. }, MessageType::Offer) => {
                self.offer_in_selecting(now, xid, started, held, &msg)
            }
            // Late OFFERs (ours is chosen) are not taken, but their servers are named: a second
            // DHCP server on the segment is what a farmer needs to hear about.
            (State::Requesting { .. }, MessageType::Offer) => {
                match (parse_offer(&msg), server_id(&msg)) {
                    (Ok((offer, problems)), _) => {
                        self.note_offer(offer.server, offer.address, problems)
                    }
                    (Err(why), Some(sid)) => self.note_offer(sid, msg.yiaddr(), vec![why]),
                    (Err(_), None) => Vec::new(),
                }
            }
            (
                State::Requesting {
                    offer,
                    probed_at,
                    conflict,
                    ..
                },
                MessageType::Ack,
            ) => match parse_lease(&msg) {
                // RFC 2131 §4.3.2: the REQUEST named one server; an ACK from another (a rogue
                // on the segment answering everyone's REQUEST) is not the lease we asked for.
                Ok(lease) if lease.server != offer.server => {
                    self.drop_packet(format_args!(
                        "ACK from {}, but our REQUEST named {}",
                        lease.server, offer.server
                    ));
                    Vec::new()
                }
                Ok(lease) if lease.address != offer.address => {
                    self.drop_packet(format_args!(
                        "ACK for {} but {} was offered",
                        lease.address, offer.address
                    ));
                    Vec::new()
                }
                Ok(lease) if conflict => self.decline(now, &lease),
                Ok(lease) => self.bind(now, lease, Some(probed_at + CONFLICT_WINDOW)),
                Err(why) => {
                    self.drop_packet(format_args!("ACK: {why}"));
                    Vec::new()
                }
            },
            (State::InitReboot { requested, .. }, MessageType::Ack) => match parse_lease(&msg) {
                Ok(lease) if lease.address == requested => {
                    let mut actions = vec![Action::ArpProbe(lease.address)];
                    actions.extend(self.bind(now, lease, Some(now + CONFLICT_WINDOW)));
                    actions
                }
                Ok(lease) => {
                    self.drop_packet(format_args!(
                        "ACK for {} but {requested} was requested",
                        lease.address
                    ));
                    Vec::new()
                }
                Err(why) => {
                    self.drop_packet(format_args!("ACK: {why}"));
                    Vec::new()
                }
            },
            (
                State::Renewing { lease: old, .. } | State::Rebinding { lease: old, .. },
                MessageType::Ack,
            ) => match parse_lease(&msg) {
                // RENEWING asks the lease's server by unicast: only it answers. (REBINDING
                // broadcasts to any server, RFC 2131 §4.4.5.)
                Ok(lease)
                    if matches!(self.state, State::Renewing { .. })
                        && lease.server != old.server =>
                {
                    self.drop_packet(format_args!(
                        "renewal ACK from {}, but the lease is {}'s",
                        lease.server, old.server
                    ));
                    Vec::new()
                }
                Ok(lease) if lease.address == old.address => {
                    log::info!(
                        "{}: lease on {} renewed for {}s by {}",
                        self.config.ifname,
                        lease.address,
                        lease.lease_secs,
                        lease.server
                    );
                    self.state = State::Bound {
                        lease: lease.clone(),
                        bound_at: now,
                        watch_until: None,
                    };
                    vec![Action::Event(Event::Renewed(lease))]
                }
                Ok(lease) => {
                    self.drop_packet(format_args!(
                        "renewal ACK for {} but we hold {}",
                        lease.address, old.address
                    ));
                    Vec::new()
                }
                Err(why) => {
                    self.drop_packet(format_args!("ACK: {why}"));
                    Vec::new()
                }
            },
            (State::Requesting { offer, .. }, MessageType::Nak) => {
                let mut actions = self.note_nak(&msg);
                if server_id(&msg) != Some(offer.server) {
                    // RFC 2131 §3.1.4/§4.3.2: only the server we asked can refuse us.
                    self.drop_packet(format_args!(
                        "NAK from {}, a server we did not ask",
                        server_id(&msg).map_or("an unnamed server".into(), |s| s.to_string())
                    ));
                    return actions;
                }
                if !self.refused_by.contains(&offer.server) {
                    self.refused_by.push(offer.server);
                }
                self.naks += 1;
                let wait = if self.naks <= 1 {
                    Duration::ZERO
                } else {
                    let r = self.rng.u32(..);
                    NAK_BACKOFF.delay(self.naks - 2, r)
                };
                log::warn!(
                    "{}: NAK from {} ({}); starting over{}",
                    self.config.ifname,
                    offer.server,
                    nak_text(&msg),
                    if wait.is_zero() {
                        String::new()
                    } else {
                        format!(" in {} ms", wait.as_millis())
                    }
                );
                if wait.is_zero() {
                    actions.extend(self.restart(now, now));
                } else {
                    self.state = State::Selecting {
                        xid: self.rng.u32(..),
                        started: now,
                        attempt: 0,
                        retry_at: now + wait,
                        held: None,
                    };
                }
                actions
            }
            (State::Selecting { .. }, MessageType::Nak) => self.note_nak(&msg),
            (
                State::InitReboot {
                    started, requested, ..
                },
                MessageType::Nak,
            ) => {
                log::warn!(
                    "{}: NAK for previous address {requested} ({}); starting over with DISCOVER",
                    self.config.ifname,
                    nak_text(&msg)
                );
                let mut actions = self.note_nak(&msg);
                actions.extend(self.restart(now, started));
                actions
            }
            (State::Renewing { lease, .. } | State::Rebinding { lease, .. }, MessageType::Nak)
                if server_id(&msg) != Some(lease.server) =>
            {
                // Anyone on the segment can send a NAK; only the server that leased the address
                // may take it back (issue 17, point 4).
                self.drop_packet(format_args!(
                    "NAK for {} from {}, not the lease's server {}",
                    lease.address,
                    server_id(&msg).map_or("an unnamed server".into(), |s| s.to_string()),
                    lease.server
                ));
                self.note_nak(&msg)
            }
            (State::Renewing { lease, .. } | State::Rebinding { lease, .. }, MessageType::Nak) => {
                log::warn!(
                    "{}: NAK while renewing {} ({}); dropping it and starting over",
                    self.config.ifname,
                    lease.address,
                    nak_text(&msg)
                );
                let mut actions = vec![Action::Event(Event::Deconfigured(format!(
                    "server refused to renew {}",
                    lease.address
                )))];
                actions.extend(self.restart(now, now));
                actions
            }
            (_, kind) => {
                log::debug!(
                    "{}: ignoring {kind:?} in {}",
                    self.config.ifname,
                    self.state_name()
                );
                Vec::new()
            }
        }
    }

    /// An OFFER in SELECTING: a clean one is requested at once; a flawed one (values dropped
    /// from it, or its server refused us before) is held up to [`OFFER_HOLD`] for a clean one
    /// from another server, the least flawed winning; an unusable one is dropped.
    fn offer_in_selecting(
        &mut self,
        now: Instant,
        xid: u32,
        started: Instant,
        held: Option<Box<Held>>,
        msg: &v4::Message,
    ) -> Vec<Action> {
        let sid = server_id(msg);
        let (offer, mut problems) = match parse_offer(msg) {
            Ok(x) => x,
            Err(why) => {
                self.drop_packet(format_args!(
                    "OFFER of {} from {}: {why}",
                    msg.yiaddr(),
                    sid.map_or("an unnamed server".into(), |s| s.to_string())
                ));
                return match sid {
                    Some(s) => self.note_offer(s, msg.yiaddr(), vec![why]),
                    None => Vec::new(),
                };
            }
        };
        if self.refused_by.contains(&offer.server) {
            problems.push("it refused our last REQUEST (NAK)".into());
        }
        let mut actions = self.note_offer(offer.server, offer.address, problems.clone());
        if problems.is_empty() {
            log::info!(
                "{}: OFFER {}/{} from {}",
                self.config.ifname,
                offer.address,
                offer.prefix,
                offer.server
            );
            actions.extend(self.select(now, xid, started, offer));
            return actions;
        }
        log::info!(
            "{}: OFFER {}/{} from {} is flawed ({}); waiting up to {}s for a better one",
            self.config.ifname,
            offer.address,
            offer.prefix,
            offer.server,
            problems.join("; "),
            OFFER_HOLD.as_secs()
        );
        let until = held.as_ref().map_or(now + OFFER_HOLD, |h| h.until);
        let better = held.as_ref().is_none_or(|h| problems.len() < h.problems);
        let held = if better {
            Some(Box::new(Held {
                offer,
                problems: problems.len(),
                until,
            }))
        } else {
            held
        };
        if let State::Selecting { held: h, .. } = &mut self.state {
            *h = held;
        }
        actions
    }

    /// REQUEST `offer` (SELECTING → REQUESTING) and ARP-probe its address meanwhile.
    fn select(&mut self, now: Instant, xid: u32, started: Instant, offer: Lease) -> Vec<Action> {
        let tx = self.request_selecting(xid, started, now, &offer);
        let probe = Action::ArpProbe(offer.address);
        self.contested = None;
        self.state = State::Requesting {
            xid,
            started,
            attempt: 1,
            retry_at: now + self.next_delay(0),
            offer,
            probed_at: now,
            conflict: false,
        };
        vec![tx, probe]
    }

    fn server_entry(&mut self, server: Ipv4Addr) -> Option<(&mut ServerSeen, bool)> {
        let new = !self.servers.iter().any(|s| s.server == server);
        if new {
            if self.servers.len() >= MAX_SERVERS {
                return None;
            }
            self.servers.push(ServerSeen {
                server,
                offered: None,
                offers: 0,
                naks: 0,
                nak_message: None,
                problems: Vec::new(),
            });
        }
        let entry = self.servers.iter_mut().find(|s| s.server == server)?;
        Some((entry, new))
    }

    /// Records an OFFER; an [`Event::Servers`] when a second server shows up or an OFFER
    /// changed from usable to not (or the other way).
    fn note_offer(
        &mut self,
        server: Ipv4Addr,
        offered: Ipv4Addr,
        problems: Vec<String>,
    ) -> Vec<Action> {
        let Some((entry, new)) = self.server_entry(server) else {
            return Vec::new();
        };
        entry.offers = entry.offers.saturating_add(1);
        entry.offered = Some(offered);
        let changed = entry.problems != problems;
        entry.problems = problems;
        let flawed = !entry.problems.is_empty();
        if (new && (self.servers.len() > 1 || flawed)) || (!new && changed) {
            vec![Action::Event(Event::Servers(self.servers.clone()))]
        } else {
            Vec::new()
        }
    }

    /// Records a NAK from whichever server sent it; always an [`Event::Servers`].
    fn note_nak(&mut self, msg: &v4::Message) -> Vec<Action> {
        let Some(server) = server_id(msg) else {
            return Vec::new();
        };
        let Some((entry, _)) = self.server_entry(server) else {
            return Vec::new();
        };
        entry.naks = entry.naks.saturating_add(1);
        entry.nak_message = Some(nak_text(msg));
        vec![Action::Event(Event::Servers(self.servers.clone()))]
    }

    fn xid(&self) -> Option<u32> {
        match self.state {
            State::Selecting { xid, .. }
            | State::Requesting { xid, .. }
            | State::InitReboot { xid, .. }
            | State::Renewing { xid, .. }
            | State::Rebinding { xid, .. } => Some(xid),
            State::Bound { .. } | State::Declined { .. } => None,
        }
    }

    fn drop_packet(&self, why: std::fmt::Arguments) {
        log::info!("{}: dropped a DHCP reply: {why}", self.config.ifname);
    }

    fn next_delay(&mut self, attempt: u32) -> Duration {
        let r = self.rng.u32(..);
        self.backoff.delay(attempt, r)
    }

    /// Back to INIT; the first DISCOVER goes out at once (the backoff restarts too, since a NAK
    /// or a silent server is no reason to wait).
    fn restart(&mut self, now: Instant, _previous_start: Instant) -> Vec<Action> {
        let xid = self.rng.u32(..);
        self.state = State::Selecting {
            xid,
            started: now,
            attempt: 1,
            retry_at: now + self.next_delay(0),
            held: None,
        };
        vec![self.discover(xid, now, now)]
    }

    fn bind(&mut self, now: Instant, lease: Lease, watch_until: Option<Instant>) -> Vec<Action> {
        self.last_address = Some(lease.address);
        self.naks = 0;
        let mut actions = Vec::new();
        if self.contested.take() == Some(lease.address) {
            // Another host probed for it while we asked: tell it the address is taken.
            self.last_defended = Some(now);
            actions.push(Action::ArpAnnounce(lease.address));
        }
        self.state = State::Bound {
            lease: lease.clone(),
            bound_at: now,
            watch_until,
        };
        actions.push(Action::Event(Event::Bound(lease)));
        actions
    }

    fn decline(&mut self, now: Instant, lease: &Lease) -> Vec<Action> {
        let xid = self.rng.u32(..);
        let mut msg = self.message(xid, MessageType::Decline, None, 0);
        let opts = msg.opts_mut();
        opts.insert(DhcpOption::RequestedIpAddress(lease.address));
        opts.insert(DhcpOption::ServerIdentifier(lease.server));
        opts.insert(DhcpOption::Message("address in use (ARP)".into()));
        self.last_address = None;
        let was_bound = matches!(self.state, State::Bound { .. });
        self.state = State::Declined {
            until: now + DECLINE_WAIT,
        };
        let mut actions = vec![self.transmit(msg, Destination::Broadcast, false)];
        if was_bound {
            actions.push(Action::Event(Event::Deconfigured(format!(
                "{} is in use by another host",
                lease.address
            ))));
        }
        actions
    }

    /// RENEWING (unicast to the server) until T2, REBINDING (broadcast) until expiry, then INIT.
    fn renew_or_rebind(
        &mut self,
        now: Instant,
        lease: Lease,
        bound_at: Instant,
        renewing: bool,
    ) -> Vec<Action> {
        let t2 = after(bound_at, lease.t2_secs);
        let expiry = after(bound_at, lease.lease_secs);
        if now >= expiry {
            log::warn!(
                "{}: lease on {} expired without renewal",
                self.config.ifname,
                lease.address
            );
            let mut actions = vec![Action::Event(Event::Deconfigured(format!(
                "lease on {} expired",
                lease.address
            )))];
            actions.extend(self.restart(now, now));
            return actions;
        }
        let renewing = renewing && now < t2;
        let deadline = if renewing { t2 } else { expiry };
        // §4.4.5: half the remaining time, at least 60 s, never past the deadline.
        let retry_at = (now + ((deadline - now) / 2).max(RENEW_MIN_RETRY)).min(deadline);
        let xid = match &self.state {
            State::Renewing { xid, .. } | State::Rebinding { xid, .. } => *xid,
            _ => self.rng.u32(..),
        };
        let msg = self.message(xid, MessageType::Request, Some(lease.address), 0);
        let tx = if renewing {
            self.transmit(msg, Destination::Unicast(lease.server), true)
        } else {
            self.transmit(msg, Destination::Broadcast, true)
        };
        if !renewing && !matches!(self.state, State::Rebinding { .. }) {
            log::info!(
                "{}: T2 reached without an answer from {}, rebinding by broadcast",
                self.config.ifname,
                lease.server
            );
        }
        self.state = if renewing {
            State::Renewing {
                lease,
                bound_at,
                xid,
                retry_at,
            }
        } else {
            State::Rebinding {
                lease,
                bound_at,
                xid,
                retry_at,
            }
        };
        vec![tx]
    }

    fn discover(&self, xid: u32, started: Instant, now: Instant) -> Action {
        let mut msg = self.message(xid, MessageType::Discover, None, elapsed_secs(started, now));
        if let Some(previous) = self.last_address {
            // RFC 2131 §4.4.1: a client MAY suggest the address it had.
            msg.opts_mut()
                .insert(DhcpOption::RequestedIpAddress(previous));
        }
        self.transmit(msg, Destination::Broadcast, false)
    }

    fn request_selecting(&self, xid: u32, started: Instant, now: Instant, offer: &Lease) -> Action {
        let mut msg = self.message(xid, MessageType::Request, None, elapsed_secs(started, now));
        msg.opts_mut()
            .insert(DhcpOption::RequestedIpAddress(offer.address));
        msg.opts_mut()
            .insert(DhcpOption::ServerIdentifier(offer.server));
        self.transmit(msg, Destination::Broadcast, false)
    }

    fn request_init_reboot(
        &self,
        xid: u32,
        started: Instant,
        now: Instant,
        requested: Ipv4Addr,
    ) -> Action {
        let mut msg = self.message(xid, MessageType::Request, None, elapsed_secs(started, now));
        msg.opts_mut()
            .insert(DhcpOption::RequestedIpAddress(requested));
        self.transmit(msg, Destination::Broadcast, false)
    }

    fn message(
        &self,
        xid: u32,
        kind: MessageType,
        ciaddr: Option<Ipv4Addr>,
        secs: u16,
    ) -> v4::Message {
        let zero = Ipv4Addr::UNSPECIFIED;
        let mut msg = v4::Message::new_with_id(
            xid,
            ciaddr.unwrap_or(zero),
            zero,
            zero,
            zero,
            &self.config.mac,
        );
        msg.set_secs(secs);
        let opts = msg.opts_mut();
        opts.insert(DhcpOption::MessageType(kind));
        opts.insert(DhcpOption::ClientIdentifier(self.config.client_id.clone()));
        if kind != MessageType::Decline {
            opts.insert(DhcpOption::ClassIdentifier(
                self.config.vendor_class.as_bytes().to_vec(),
            ));
            opts.insert(DhcpOption::MaxMessageSize(MAX_MESSAGE_SIZE));
            if let Some(h) = &self.config.hostname {
                opts.insert(DhcpOption::Hostname(h.clone()));
            }
            opts.insert(DhcpOption::ParameterRequestList(vec![
                OptionCode::SubnetMask,
                OptionCode::ClasslessStaticRoute,
                OptionCode::Router,
                OptionCode::DomainNameServer,
                OptionCode::DomainName,
                OptionCode::DomainSearch,
                OptionCode::InterfaceMtu,
                OptionCode::BroadcastAddr,
                OptionCode::NtpServers,
                OptionCode::AddressLeaseTime,
                OptionCode::Renewal,
                OptionCode::Rebinding,
            ]));
        }
        msg
    }

    fn transmit(&self, msg: v4::Message, to: Destination, ciaddr_configured: bool) -> Action {
        let kind = msg.opts().msg_type().unwrap_or(MessageType::Discover);
        // Encoding our own well-formed message cannot fail; an empty payload would be dropped
        // by the driver with a log line rather than crash PID 1.
        let payload = msg.to_vec().unwrap_or_default();
        Action::Send(Transmit {
            payload,
            to,
            ciaddr_configured,
            kind,
        })
    }
}

/// Where the options start: after the 236-byte BOOTP header and the magic cookie.
const OPTIONS_AT: usize = 240;

/// Walks the options field of a DHCP packet: every option must fit in the packet and the list
/// must end with END (255). dhcproto decodes what fits and drops the rest, so a reply whose last
/// option claims more bytes than are left would otherwise be bound with its options trimmed;
/// such a packet was not built by a sane server and is dropped (issue 17, point 8). A packet
/// too short for the header is left to the decoder's own error.
pub fn check_options(bytes: &[u8]) -> Result<(), String> {
    let Some(mut rest) = bytes.get(OPTIONS_AT..) else {
        return Ok(());
    };
    while let Some((&code, tail)) = rest.split_first() {
        match code {
            0 => rest = tail,
            255 => return Ok(()),
            _ => {
                let Some((&len, data)) = tail.split_first() else {
                    return Err(format!("option {code} has no length byte"));
                };
                let Some(after) = data.get(usize::from(len)..) else {
                    return Err(format!(
                        "option {code} claims {len} bytes, {} left",
                        data.len()
                    ));
                };
                rest = after;
            }
        }
    }
    Err("no END option".into())
}

fn secs(s: u32) -> Duration {
    Duration::from_secs(u64::from(s))
}

/// `t + s` seconds, never panicking: a lease of 0xfffffffe s (136 years) from a careless or
/// rogue server must not overflow a clock whose range is smaller than that.
fn after(t: Instant, s: u32) -> Instant {
    t.checked_add(secs(s))
        .or_else(|| t.checked_add(Duration::from_secs(10 * 365 * 86400)))
        .unwrap_or(t)
}

fn elapsed_secs(started: Instant, now: Instant) -> u16 {
    now.saturating_duration_since(started)
        .as_secs()
        .min(u64::from(u16::MAX)) as u16
}

fn server_id(msg: &v4::Message) -> Option<Ipv4Addr> {
    match msg.opts().get(OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(ip)) => Some(*ip),
        _ => None,
    }
}

fn nak_text(msg: &v4::Message) -> String {
    match msg.opts().get(OptionCode::Message) {
        Some(DhcpOption::Message(m)) => sanitize_text(m),
        _ => "no reason given".into(),
    }
}

/// Server-supplied text goes to the console: printable ASCII only, bounded.
fn sanitize_text(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(120)
        .collect()
}

pub fn fmt_mac(mac: &[u8]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A unicast address a host could use or talk to.
pub fn is_usable_unicast(ip: Ipv4Addr) -> bool {
    !(ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_loopback()
        || ip.octets()[0] >= 240)
}

fn in_subnet(ip: Ipv4Addr, net: Ipv4Addr, prefix: u8) -> bool {
    mask(prefix) & u32::from(ip) == mask(prefix) & u32::from(net)
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    }
}

pub use crate::cmdline::is_valid_domain;

/// Turns an OFFER or ACK into a [`Lease`], or says why it can't be used.
pub fn parse_lease(msg: &v4::Message) -> Result<Lease, String> {
    parse_offer(msg).map(|(lease, _)| lease)
}

/// Like [`parse_lease`], also listing the values dropped from the reply because they cannot
/// be right (a router outside the subnet, a DNS server at 0.0.0.0, 127.x or a broadcast
/// address, ...): a reply with any is *flawed*, and a clean OFFER from another server is
/// preferred to it.
pub fn parse_offer(msg: &v4::Message) -> Result<(Lease, Vec<String>), String> {
    let mut problems: Vec<String> = Vec::new();
    let opts = msg.opts();
    let address = msg.yiaddr();
    if !is_usable_unicast(address) {
        return Err(format!("unusable address {address}"));
    }
    let server = server_id(msg).ok_or("no server identifier (option 54)")?;
    let netmask = match opts.get(OptionCode::SubnetMask) {
        Some(DhcpOption::SubnetMask(m)) => *m,
        _ => return Err("no subnet mask (option 1)".into()),
    };
    let m = u32::from(netmask);
    if m == 0 || m.leading_ones() + m.trailing_zeros() != 32 {
        return Err(format!("invalid subnet mask {netmask}"));
    }
    let prefix = m.leading_ones() as u8;
    let lease_secs = match opts.get(OptionCode::AddressLeaseTime) {
        Some(DhcpOption::AddressLeaseTime(0)) => return Err("lease time 0".into()),
        Some(DhcpOption::AddressLeaseTime(t)) => *t,
        _ => return Err("no lease time (option 51)".into()),
    };
    // RFC 2131 §4.4.5 defaults; a server's T1/T2 are used only when they are ordered sanely.
    let mut t1 = lease_secs / 2;
    let mut t2 = (lease_secs as u64 * 7 / 8) as u32;
    if let (Some(DhcpOption::Renewal(a)), Some(DhcpOption::Rebinding(b))) = (
        opts.get(OptionCode::Renewal),
        opts.get(OptionCode::Rebinding),
    ) {
        if 0 < *a && a < b && *b < lease_secs {
            t1 = *a;
            t2 = *b;
        }
    }
    if lease_secs == u32::MAX {
        // Infinite lease: never renew.
        t1 = u32::MAX;
        t2 = u32::MAX;
    }

    let classless_routes: Vec<Route> = match opts.get(OptionCode::ClasslessStaticRoute) {
        Some(DhcpOption::ClasslessStaticRoute(routes)) => routes
            .iter()
            .map(|(net, gw)| Route {
                destination: net.trunc().addr(),
                prefix: net.prefix_len(),
                gateway: *gw,
            })
            .filter(|r| {
                let ok = r.gateway.is_unspecified() || is_usable_unicast(r.gateway);
                if !ok {
                    log::info!(
                        "ignoring classless route {}/{} via {}",
                        r.destination,
                        r.prefix,
                        r.gateway
                    );
                    problems.push(format!(
                        "route {}/{} via unusable {}",
                        r.destination, r.prefix, r.gateway
                    ));
                }
                ok
            })
            .collect(),
        _ => Vec::new(),
    };
    let routers = ip_list(opts, OptionCode::Router, "router", &mut problems)
        .into_iter()
        .filter(|r| {
            let ok = in_subnet(*r, address, prefix) && *r != address;
            if !ok {
                log::info!("ignoring router {r}: outside {address}/{prefix}");
                problems.push(format!("router {r} outside {address}/{prefix}"));
            }
            ok
        })
        .collect();
    // A DNS server at the subnet's own network or broadcast address, or at our address, is a
    // misconfiguration, not a resolver.
    let net = mask(prefix) & u32::from(address);
    let bcast = net | !mask(prefix);
    let dns = ip_list(opts, OptionCode::DomainNameServer, "DNS", &mut problems)
        .into_iter()
        .filter(|d| {
            let edge = prefix <= 30 && (u32::from(*d) == net || u32::from(*d) == bcast);
            let ok = *d != address && !edge;
            if !ok {
                log::info!("ignoring DNS server {d}: not a host of {address}/{prefix}");
                problems.push(format!("DNS {d} unusable"));
            }
            ok
        })
        .collect();
    let dns = capped(dns, "DNS");
    let domain = match opts.get(OptionCode::DomainName) {
        Some(DhcpOption::DomainName(d)) if is_valid_domain(d) => {
            Some(d.trim_end_matches('.').to_string())
        }
        Some(DhcpOption::DomainName(d)) => {
            log::info!("ignoring invalid domain name {:?}", sanitize_text(d));
            problems.push("invalid domain name".into());
            None
        }
        _ => None,
    };
    let search = match opts.get(OptionCode::DomainSearch) {
        Some(DhcpOption::DomainSearch(names)) => names
            .iter()
            .map(|n| n.to_string().trim_end_matches('.').to_string())
            .filter(|n| is_valid_domain(n))
            .collect(),
        _ => Vec::new(),
    };
    let mtu = match opts.get(OptionCode::InterfaceMtu) {
        // RFC 791 minimum datagram every host must accept; anything smaller breaks TCP.
        Some(DhcpOption::InterfaceMtu(m)) if *m >= 576 => Some(*m),
        Some(DhcpOption::InterfaceMtu(m)) => {
            log::info!("ignoring MTU {m}: below 576");
            problems.push(format!("MTU {m} below 576"));
            None
        }
        _ => None,
    };
    let ntp = capped(
        ip_list(opts, OptionCode::NtpServers, "NTP", &mut problems),
        "NTP",
    );
    let lease = Lease {
        address,
        prefix,
        server,
        lease_secs,
        t1_secs: t1,
        t2_secs: t2,
        routers,
        classless_routes,
        dns,
        domain,
        search,
        ntp,
        mtu,
    };
    Ok((lease, problems))
}

/// The first [`MAX_SERVERS_PER_OPTION`] of `list` (logged when longer). Not a flaw that makes
/// the OFFER wait for another: a site may well list five resolvers.
fn capped(mut list: Vec<Ipv4Addr>, what: &str) -> Vec<Ipv4Addr> {
    if list.len() > MAX_SERVERS_PER_OPTION {
        log::info!(
            "keeping the first {MAX_SERVERS_PER_OPTION} of {} {what} servers",
            list.len()
        );
        list.truncate(MAX_SERVERS_PER_OPTION);
    }
    list
}

/// The usable unicast addresses of an address-list option; each other one is logged and
/// named in `problems` ("DNS 127.0.0.1 unusable").
fn ip_list(
    opts: &v4::DhcpOptions,
    code: OptionCode,
    what: &str,
    problems: &mut Vec<String>,
) -> Vec<Ipv4Addr> {
    let list = match opts.get(code) {
        Some(
            DhcpOption::Router(l) | DhcpOption::DomainNameServer(l) | DhcpOption::NtpServers(l),
        ) => l.clone(),
        _ => Vec::new(),
    };
    list.into_iter()
        .filter(|ip| {
            let ok = is_usable_unicast(*ip);
            if !ok {
                log::info!("ignoring {what} {ip}: not a usable unicast address");
                problems.push(format!("{what} {ip} unusable"));
            }
            ok
        })
        .collect()
}

#[cfg(test)]
mod tests;
