//! Network links through rtnetlink: the one netlink connection, the NIC inventory, bringing
//! links up and carrier events.
//!
//! Roles (OOB/public) attach to the links found here; later a VLAN or a bond built from the
//! command line is one more `Nic` of another kind, and nothing after this stage changes.
use std::io;

use futures_lite::StreamExt;
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload};
use rtnetlink::packet_route::link::{
    InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkLayerType, LinkMessage, State,
};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::sys::SocketAddr;
use rtnetlink::{Handle, LinkUnspec, MulticastGroup};

/// Notifications from the kernel, as the netlink connection delivers them.
pub type Notifications = std::pin::Pin<
    Box<dyn futures_lite::Stream<Item = (NetlinkMessage<RouteNetlinkMessage>, SocketAddr)> + Send>,
>;

/// Opens the netlink connection (subscribed to link, IPv6 address and IPv6 route
/// notifications) and runs it on smol.
pub fn connect() -> io::Result<(Handle, Notifications)> {
    let (conn, handle, messages) =
        rtnetlink::new_multicast_connection_with_socket::<rtnetlink::sys::SmolSocket>(&[
            MulticastGroup::Link,
            MulticastGroup::Ipv6Ifaddr,
            MulticastGroup::Ipv6Route,
        ])?;
    smol::spawn(conn).detach();
    Ok((handle, Box::pin(messages)))
}

/// A network interface a node can use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nic {
    pub index: u32,
    pub name: String,
    pub mac: [u8; 6],
    pub carrier: bool,
    /// Operational state UP: the kernel's link watcher has activated the queue. Until then a
    /// packet sent with carrier already up can be dropped silently.
    pub oper_up: bool,
    pub admin_up: bool,
    pub mtu: u32,
    /// `None` for a real NIC, else the rtnetlink kind (veth in the lab).
    pub kind: Option<String>,
    /// The bond (or bridge) this link is enslaved to, by index.
    pub controller: Option<u32>,
}

impl Nic {
    /// Reads a link message; `None` for links that are not Ethernet-like.
    pub fn from_message(msg: &LinkMessage) -> Option<Nic> {
        if msg.header.link_layer_type != LinkLayerType::Ether {
            return None;
        }
        let mut nic = Nic {
            index: msg.header.index,
            name: String::new(),
            mac: [0; 6],
            carrier: false,
            oper_up: false,
            admin_up: msg.header.flags.contains(LinkFlags::Up),
            mtu: 0,
            kind: None,
            controller: None,
        };
        // IFF_LOWER_UP is set the moment the driver reports carrier; the operational state
        // turns UP once the kernel's link watcher has run (sometimes most of a second later;
        // UNKNOWN is what drivers without operstate support report).
        nic.carrier = msg.header.flags.contains(LinkFlags::LowerUp);
        let mut oper_ok = false;
        for attr in &msg.attributes {
            match attr {
                LinkAttribute::OperState(st) => oper_ok = matches!(st, State::Up | State::Unknown),
                LinkAttribute::IfName(n) => nic.name = n.clone(),
                LinkAttribute::Address(a) if a.len() == 6 => nic.mac.copy_from_slice(a),
                LinkAttribute::Mtu(m) => nic.mtu = *m,
                LinkAttribute::Controller(c) if *c != 0 => nic.controller = Some(*c),
                LinkAttribute::LinkInfo(infos) => {
                    for i in infos {
                        if let LinkInfo::Kind(k) = i {
                            nic.kind = Some(kind_name(k));
                        }
                    }
                }
                _ => {}
            }
        }
        nic.oper_up = nic.carrier && oper_ok;
        Some(nic)
    }

    /// A NIC that can lead to a DHCP server: hardware, or a veth standing in for a cable.
    /// Bridges, bonds, VLANs and tunnels are built by us (later) or by someone else.
    pub fn is_physical(&self) -> bool {
        self.mac != [0; 6] && matches!(self.kind.as_deref(), None | Some("veth"))
    }
}

fn kind_name(k: &InfoKind) -> String {
    match k {
        InfoKind::Veth => "veth".into(),
        InfoKind::Bridge => "bridge".into(),
        InfoKind::Bond => "bond".into(),
        InfoKind::Vlan => "vlan".into(),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// All Ethernet-like links, in index order.
pub async fn inventory(handle: &Handle) -> Result<Vec<Nic>, rtnetlink::Error> {
    let mut links = handle.link().get().execute();
    let mut nics = Vec::new();
    while let Some(msg) = links.try_next().await? {
        if let Some(nic) = Nic::from_message(&msg) {
            nics.push(nic);
        }
    }
    nics.sort_by_key(|n| n.index);
    Ok(nics)
}

pub async fn set_up(handle: &Handle, index: u32) -> Result<(), rtnetlink::Error> {
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
}

pub async fn set_mtu(handle: &Handle, index: u32, mtu: u32) -> Result<(), rtnetlink::Error> {
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).mtu(mtu).build())
        .execute()
        .await
}

/// A link notification, reduced to what the boot cares about.
pub fn link_update(msg: &NetlinkMessage<RouteNetlinkMessage>) -> Option<Nic> {
    match &msg.payload {
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(link)) => Nic::from_message(link),
        _ => None,
    }
}

/// Waits for the next notification; `None` when the connection is gone.
pub async fn next_notification(
    notifications: &mut Notifications,
) -> Option<NetlinkMessage<RouteNetlinkMessage>> {
    notifications.next().await.map(|(msg, _)| msg)
}

/// The link-layer address the kernel has for `ip` (e.g. the IPv4 gateway, once something has
/// talked to it). Used to tell a home router (one box doing NAT and IPv6 RAs) from a datacentre.
pub async fn neighbour_mac(handle: &Handle, ip: std::net::IpAddr) -> Option<[u8; 6]> {
    use rtnetlink::packet_route::neighbour::{NeighbourAddress, NeighbourAttribute};
    let mut neighbours = handle.neighbours().get().execute();
    while let Ok(Some(n)) = neighbours.try_next().await {
        let mut dest = None;
        let mut mac = None;
        for attr in &n.attributes {
            match attr {
                NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => {
                    dest = Some(std::net::IpAddr::V4(*a))
                }
                NeighbourAttribute::Destination(NeighbourAddress::Inet6(a)) => {
                    dest = Some(std::net::IpAddr::V6(*a))
                }
                NeighbourAttribute::LinkLayerAddress(l) if l.len() == 6 => {
                    let mut m = [0; 6];
                    m.copy_from_slice(l);
                    mac = Some(m);
                }
                _ => {}
            }
        }
        if dest == Some(ip) && mac.is_some() {
            return mac;
        }
    }
    None
}
