//! Which NICs share a segment, for `zos.bond=auto`: one DISCOVER from each NIC with carrier,
//! and the server identifiers of the OFFERs that come back. Two cables to one switch segment
//! see the same DHCP server; those NICs are bonded ([`crate::net::topology::auto_bonds`]). Nothing
//! is REQUESTed, so no lease is taken on a NIC that ends up as a slave.
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use dhcproto::v4::{self, DhcpOption, MessageType, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable};
use futures_lite::future;

use super::client::Config;
use super::socket::RawDhcpSocket;
use crate::net::links::Nic;

/// The DISCOVER a survey sends: broadcast reply asked for, our usual client-id.
pub fn discover(mac: [u8; 6], xid: u32) -> Vec<u8> {
    let zero = Ipv4Addr::UNSPECIFIED;
    let mut msg = v4::Message::new_with_id(xid, zero, zero, zero, zero, &mac);
    msg.set_flags(v4::Flags::default().set_broadcast());
    let opts = msg.opts_mut();
    opts.insert(DhcpOption::MessageType(MessageType::Discover));
    opts.insert(DhcpOption::ClientIdentifier(Config::mac_client_id(mac)));
    opts.insert(DhcpOption::ClassIdentifier(b"zos".to_vec()));
    opts.insert(DhcpOption::ParameterRequestList(vec![
        OptionCode::SubnetMask,
        OptionCode::Router,
    ]));
    msg.to_vec().unwrap_or_default()
}

/// The server identifier of an OFFER answering our `xid` for `mac`, if `bytes` is one.
pub fn offer_server(bytes: &[u8], xid: u32, mac: [u8; 6]) -> Option<Ipv4Addr> {
    let msg = v4::Message::decode(&mut Decoder::new(bytes)).ok()?;
    if msg.xid() != xid || msg.hlen() != 6 || msg.chaddr().get(..6) != Some(&mac[..]) {
        return None;
    }
    if msg.opts().msg_type() != Some(MessageType::Offer) {
        return None;
    }
    match msg.opts().get(OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(ip)) => Some(*ip),
        _ => None,
    }
}

/// DISCOVERs from every NIC in `nics` (they must be up, with carrier), twice `wait / 2` apart,
/// and the servers that offered on each, in the order given.
pub async fn survey(nics: &[Nic], wait: Duration) -> Vec<(String, Vec<Ipv4Addr>)> {
    let tasks: Vec<_> = nics
        .iter()
        .map(|nic| {
            let nic = nic.clone();
            smol::spawn(async move {
                let seen = survey_one(&nic, wait).await.unwrap_or_else(|e| {
                    log::info!("{}: survey: {e}", nic.name);
                    Vec::new()
                });
                (nic.name, seen)
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await);
    }
    out
}

async fn survey_one(nic: &Nic, wait: Duration) -> std::io::Result<Vec<Ipv4Addr>> {
    let sock = RawDhcpSocket::open(nic.index)?;
    let xid = fastrand::u32(..);
    let packet = discover(nic.mac, xid);
    let end = Instant::now() + wait;
    let resend = Instant::now() + wait / 2;
    let mut resent = false;
    let mut seen: Vec<Ipv4Addr> = Vec::new();
    sock.send_broadcast(&packet).await?;
    loop {
        let now = Instant::now();
        if now >= end {
            return Ok(seen);
        }
        let wake = if resent { end } else { resend };
        let got = future::or(async { Some(sock.recv().await) }, async {
            smol::Timer::at(wake).await;
            None
        })
        .await;
        match got {
            Some(Ok((_, bytes))) => {
                if let Some(server) = offer_server(&bytes, xid, nic.mac) {
                    if !seen.contains(&server) {
                        seen.push(server);
                    }
                }
            }
            Some(Err(e)) => return Err(e),
            None if !resent => {
                resent = true;
                sock.send_broadcast(&packet).await?;
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 9];

    fn offer(xid: u32, mac: [u8; 6], server: Option<Ipv4Addr>, kind: MessageType) -> Vec<u8> {
        let z = Ipv4Addr::UNSPECIFIED;
        let mut m = v4::Message::new_with_id(xid, z, Ipv4Addr::new(10, 0, 0, 9), z, z, &mac);
        m.set_opcode(v4::Opcode::BootReply);
        m.opts_mut().insert(DhcpOption::MessageType(kind));
        if let Some(s) = server {
            m.opts_mut().insert(DhcpOption::ServerIdentifier(s));
        }
        m.to_vec().unwrap()
    }

    #[test]
    fn the_discover_is_a_broadcast_discover_with_our_client_id() {
        let bytes = discover(MAC, 77);
        let m = v4::Message::decode(&mut Decoder::new(&bytes)).unwrap();
        assert_eq!(m.xid(), 77);
        assert!(m.flags().broadcast());
        assert_eq!(m.opts().msg_type(), Some(MessageType::Discover));
        assert_eq!(
            m.opts().get(OptionCode::ClientIdentifier),
            Some(&DhcpOption::ClientIdentifier(vec![1, 2, 0, 0, 0, 0, 9]))
        );
    }

    #[test]
    fn only_offers_for_this_discover_name_a_server() {
        let s = Ipv4Addr::new(10, 0, 0, 1);
        assert_eq!(
            offer_server(&offer(5, MAC, Some(s), MessageType::Offer), 5, MAC),
            Some(s)
        );
        assert_eq!(
            offer_server(&offer(6, MAC, Some(s), MessageType::Offer), 5, MAC),
            None
        );
        assert_eq!(
            offer_server(
                &offer(5, [2, 0, 0, 0, 0, 8], Some(s), MessageType::Offer),
                5,
                MAC
            ),
            None
        );
        assert_eq!(
            offer_server(&offer(5, MAC, Some(s), MessageType::Ack), 5, MAC),
            None
        );
        assert_eq!(
            offer_server(&offer(5, MAC, None, MessageType::Offer), 5, MAC),
            None
        );
        assert_eq!(offer_server(b"not dhcp", 5, MAC), None);
    }
}
