//! Runs one [`Client`] on one interface: sockets in, timers, actions out. No protocol decisions
//! are made here; they are all in `client`.
use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::future;
use smol::channel::{Receiver, Sender};

use super::client::{Action, Client, Destination, Event};
use super::socket::{ArpSeen, ArpSocket, RawDhcpSocket, UdpDhcpSocket};

/// What the driver reports to whoever configures the system.
#[derive(Debug)]
pub struct Update {
    pub ifindex: u32,
    pub event: Event,
    /// Time from the first packet sent to this event.
    pub since_first_send: Duration,
}

enum Input {
    Timer,
    Kick,
    Dhcp(io::Result<Vec<u8>>),
    Arp(io::Result<ArpSeen>),
}

/// Drives `client` on `ifindex` until the receiver of `updates` goes away. A message on
/// `kicks` means the link can transmit now (see [`Client::kick`]). `sent` counts the packets
/// sent, for "no answer after N requests".
pub async fn run(
    mut client: Client,
    ifindex: u32,
    ifname: String,
    mac: [u8; 6],
    updates: Sender<Update>,
    kicks: Receiver<()>,
    sent: Arc<AtomicU32>,
) -> io::Result<()> {
    let raw = RawDhcpSocket::open(ifindex)?;
    let arp = ArpSocket::open(ifindex, mac)?;
    let mut udp: Option<UdpDhcpSocket> = None;
    let mut first_send: Option<Instant> = None;
    loop {
        let deadline = client.poll_at();
        let input = future::or(
            async {
                smol::Timer::at(deadline).await;
                Input::Timer
            },
            future::or(
                async { Input::Dhcp(raw.recv().await.map(|(_, p)| p)) },
                future::or(
                    async {
                        match &udp {
                            Some(u) => Input::Dhcp(u.recv().await.map(|(_, p)| p)),
                            None => future::pending().await,
                        }
                    },
                    future::or(async { Input::Arp(arp.recv().await) }, async {
                        match kicks.recv().await {
                            Ok(()) => Input::Kick,
                            Err(_) => future::pending().await,
                        }
                    }),
                ),
            ),
        )
        .await;
        let now = Instant::now();
        let actions = match input {
            Input::Timer => client.handle_timeout(now),
            Input::Kick => client.kick(now),
            Input::Dhcp(Ok(p)) => client.handle_packet(now, &p),
            Input::Arp(Ok(a)) => {
                client.handle_arp(now, a.sender_ip, a.sender_mac, a.target_ip, a.is_request)
            }
            Input::Dhcp(Err(e)) | Input::Arp(Err(e)) => {
                // A transient socket error (ENETDOWN while the link flaps) must not end DHCP.
                log::debug!("{ifname}: receive failed: {e}");
                smol::Timer::after(Duration::from_millis(100)).await;
                Vec::new()
            }
        };
        for action in actions {
            match action {
                Action::Send(tx) => {
                    let result = if tx.ciaddr_configured {
                        if udp.is_none() {
                            udp = Some(UdpDhcpSocket::open(&ifname)?);
                        }
                        let sock = udp.as_ref().expect("opened above");
                        let dst = match tx.to {
                            Destination::Unicast(ip) => ip,
                            Destination::Broadcast => std::net::Ipv4Addr::BROADCAST,
                        };
                        sock.send_to(&tx.payload, dst).await
                    } else {
                        raw.send_broadcast(&tx.payload).await
                    };
                    match result {
                        Ok(()) => {
                            sent.fetch_add(1, Ordering::Relaxed);
                            first_send.get_or_insert(now);
                            log::debug!("{ifname}: sent {:?} ({})", tx.kind, client.state_name());
                        }
                        Err(e) => log::warn!("{ifname}: could not send {:?}: {e}", tx.kind),
                    }
                }
                Action::ArpProbe(ip) => {
                    if let Err(e) = arp.probe(ip).await {
                        log::warn!("{ifname}: could not send ARP probe for {ip}: {e}");
                    }
                }
                Action::ArpAnnounce(ip) => {
                    if let Err(e) = arp.announce(ip).await {
                        log::warn!("{ifname}: could not announce {ip}: {e}");
                    }
                }
                Action::Event(event) => {
                    let update = Update {
                        ifindex,
                        event,
                        since_first_send: first_send.map(|t| now - t).unwrap_or_default(),
                    };
                    if updates.send(update).await.is_err() {
                        return Ok(());
                    }
                }
            }
        }
    }
}

/// Where a spawned driver's reports go: the caller's message type, made from an [`Update`]
/// or from a driver that stopped (interface index, error).
pub struct Reports<M> {
    pub to: Sender<M>,
    pub update: fn(Update) -> M,
    pub failed: fn(u32, String) -> M,
}

/// Runs [`run`] as a task, forwarding its updates (and its end, if it fails) to `reports`.
/// Returns the task (dropping it stops the client) and the sender of kicks ([`Client::kick`]).
pub fn spawn<M: Send + 'static>(
    client: Client,
    ifindex: u32,
    ifname: String,
    mac: [u8; 6],
    sent: Arc<AtomicU32>,
    reports: Reports<M>,
) -> (smol::Task<()>, Sender<()>) {
    let (kick, kicks) = smol::channel::bounded(1);
    let task = smol::spawn(async move {
        let (updates, incoming) = smol::channel::unbounded::<Update>();
        let forward = async {
            while let Ok(u) = incoming.recv().await {
                if reports.to.send((reports.update)(u)).await.is_err() {
                    break;
                }
            }
        };
        let drive = run(client, ifindex, ifname, mac, updates, kicks, sent);
        let (result, ()) = future::zip(drive, forward).await;
        if let Err(e) = result {
            let _ = reports
                .to
                .send((reports.failed)(ifindex, e.to_string()))
                .await;
        }
    });
    (task, kick)
}
