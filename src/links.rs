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

/// Opens the netlink connection (subscribed to link notifications) and runs it on smol.
pub fn connect() -> io::Result<(Handle, Notifications)> {
    let (conn, handle, messages) = rtnetlink::new_multicast_connection_with_socket::<
        rtnetlink::sys::SmolSocket,
    >(&[MulticastGroup::Link])?;
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
    pub admin_up: bool,
    pub mtu: u32,
    /// `None` for a real NIC, else the rtnetlink kind (veth in the lab).
    pub kind: Option<String>,
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
            admin_up: msg.header.flags.contains(LinkFlags::Up),
            mtu: 0,
            kind: None,
        };
        // IFF_LOWER_UP is set the moment the driver reports carrier, but until the kernel's
        // link watcher has run, the queue is not active and a packet sent then is dropped
        // silently. The operational state turns UP only after that, so carrier waits for it
        // (UNKNOWN is what drivers without operstate support report).
        let lower_up = msg.header.flags.contains(LinkFlags::LowerUp);
        let mut oper_ok = false;
        for attr in &msg.attributes {
            match attr {
                LinkAttribute::OperState(st) => oper_ok = matches!(st, State::Up | State::Unknown),
                LinkAttribute::IfName(n) => nic.name = n.clone(),
                LinkAttribute::Address(a) if a.len() == 6 => nic.mac.copy_from_slice(a),
                LinkAttribute::Mtu(m) => nic.mtu = *m,
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
        nic.carrier = lower_up && oper_ok;
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

/// Waits for the next link notification.
pub async fn next_link_update(notifications: &mut Notifications) -> Option<Nic> {
    while let Some((msg, _)) = notifications.next().await {
        if let Some(nic) = link_update(&msg) {
            return Some(nic);
        }
    }
    None
}
