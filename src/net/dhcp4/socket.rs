//! Socket drivers for the DHCPv4 client: they move already-encoded BOOTP payloads on the wire and
//! probe with ARP; all protocol decisions live in `client`.
//!
//! Until a lease is configured the interface has no IPv4 address, so the kernel UDP stack cannot
//! send from 0.0.0.0 to 255.255.255.255 on a chosen link, nor hand us unicast replies addressed to
//! an IP we do not own yet (RFC 2131 §4.1). Hence [`RawDhcpSocket`], which builds the IPv4/UDP
//! headers itself; [`UdpDhcpSocket`] takes over once the address is set.

use crate::sys::setsockopt_raw;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};

use nix::libc;
use nix::sys::socket::{
    bind, recv, recvmsg, sendto, setsockopt, socket, sockopt, AddressFamily, ControlMessageOwned,
    LinkAddr, MsgFlags, SockFlag, SockProtocol, SockType, SockaddrIn, SockaddrLike,
};
use smol::Async;

const CLIENT_PORT: u16 = 68;
const SERVER_PORT: u16 = 67;
const BROADCAST_MAC: [u8; 6] = [0xff; 6];
const ETH_P_IP: u16 = 0x0800;
const ETH_P_ARP: u16 = 0x0806;
const IPV4_HEADER_LEN: usize = 20;
const UDP_HEADER_LEN: usize = 8;
const ARP_LEN: usize = 28;
const RECV_BUF_LEN: usize = 4096;

// <asm/socket.h>; not exported by the libc crate. 26 on every architecture Rust targets.
const SO_ATTACH_FILTER: libc::c_int = 26;
// <linux/if_packet.h>
const PACKET_AUXDATA: libc::c_int = 8;
const TP_STATUS_CSUMNOTREADY: u32 = 1 << 3;

/// AF_PACKET socket (SOCK_DGRAM, protocol ETH_P_IP) bound to one interface, used before the
/// interface has an address. A classic BPF filter (SO_ATTACH_FILTER) passes only IPv4/UDP with
/// destination port 68 (and non-fragmented), so the process does not wake up for other traffic.
pub struct RawDhcpSocket {
    fd: Async<OwnedFd>,
    ifindex: u32,
}

impl RawDhcpSocket {
    pub fn open(ifindex: u32) -> io::Result<Self> {
        let fd = packet_socket()?;
        attach_filter(&fd, &udp_dport_filter(CLIENT_PORT))?;
        // Datagrams from a local or virtual sender (veth, virtio-net) may still be CHECKSUM_PARTIAL
        // here: the UDP checksum field holds only the pseudo-header sum. The auxdata status says
        // when, and then the checksum must not be verified (as systemd-networkd does).
        set_int_opt(&fd, libc::SOL_PACKET, PACKET_AUXDATA, 1)?;
        // Binding (not socket()) picks the protocol, so nothing is queued before the filter is on.
        bind(fd.as_raw_fd(), &link_addr(ifindex, ETH_P_IP, [0; 6])?)?;
        Ok(Self {
            fd: Async::new(fd)?,
            ifindex,
        })
    }

    /// Wraps `payload` in IPv4 (src 0.0.0.0, dst 255.255.255.255, TTL 64, DF unset, id 0, correct
    /// header checksum) + UDP (68 -> 67, correct checksum with pseudo header) and sends it to the
    /// Ethernet broadcast address ff:ff:ff:ff:ff:ff on the interface.
    pub async fn send_broadcast(&self, payload: &[u8]) -> io::Result<()> {
        self.send_unicast(
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::BROADCAST,
            BROADCAST_MAC,
            payload,
        )
        .await
    }

    /// Sends `payload` from src_ip:68 to dst_ip:67 at link-layer address dst_mac (used for
    /// unicast RENEW when no kernel socket is usable yet).
    pub async fn send_unicast(
        &self,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        dst_mac: [u8; 6],
        payload: &[u8],
    ) -> io::Result<()> {
        if payload.len() > usize::from(u16::MAX) - IPV4_HEADER_LEN - UDP_HEADER_LEN {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "DHCP payload too large",
            ));
        }
        let packet = build_udp_ipv4(src, dst, CLIENT_PORT, SERVER_PORT, payload);
        let to = link_addr(self.ifindex, ETH_P_IP, dst_mac)?;
        send_all(&self.fd, &packet, &to).await
    }

    /// Waits for the next datagram to UDP port 68; validates IPv4 header (version 4, IHL>=5,
    /// total length within the received bytes, header checksum), UDP length, UDP checksum when
    /// non-zero; silently skips (log::trace!) anything invalid; returns (source IPv4, UDP payload).
    pub async fn recv(&self) -> io::Result<(Ipv4Addr, Vec<u8>)> {
        let mut buf = vec![0u8; RECV_BUF_LEN];
        let mut cmsg = nix::cmsg_space!([u8; 20]); // struct tpacket_auxdata
        loop {
            let (len, csum_ready) = self
                .fd
                .read_with(|fd| {
                    let mut iov = [io::IoSliceMut::new(&mut buf)];
                    let msg = recvmsg::<()>(
                        fd.as_raw_fd(),
                        &mut iov,
                        Some(&mut cmsg),
                        MsgFlags::empty(),
                    )?;
                    let not_ready = msg.cmsgs()?.any(csum_not_ready);
                    Ok((msg.bytes, !not_ready))
                })
                .await?;
            let frame = buf.get(..len).unwrap_or(&buf);
            if let Some((src, payload)) = parse_udp(frame, CLIENT_PORT, csum_ready) {
                return Ok((src, payload.to_vec()));
            }
        }
    }
}

/// Kernel UDP socket on 0.0.0.0:68 with SO_BINDTODEVICE(ifname), SO_BROADCAST and SO_REUSEADDR,
/// used once the leased address is configured (RENEWING unicast to the server, REBINDING
/// broadcast), as RFC 2131 expects.
pub struct UdpDhcpSocket {
    sock: Async<UdpSocket>,
}

impl UdpDhcpSocket {
    pub fn open(ifname: &str) -> io::Result<Self> {
        let fd = socket(
            AddressFamily::Inet,
            SockType::Datagram,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            SockProtocol::Udp,
        )?;
        // Without the device binding a 255.255.255.255 REBIND would leave by the default route's
        // interface, and replies for other interfaces' clients would land here.
        setsockopt(&fd, sockopt::BindToDevice, &ifname.into())?;
        setsockopt(&fd, sockopt::Broadcast, &true)?;
        setsockopt(&fd, sockopt::ReuseAddr, &true)?;
        bind(fd.as_raw_fd(), &SockaddrIn::new(0, 0, 0, 0, CLIENT_PORT))?;
        Ok(Self {
            sock: Async::new(UdpSocket::from(fd))?,
        })
    }

    pub async fn send_to(&self, payload: &[u8], dst: Ipv4Addr) -> io::Result<()> {
        let sent = self
            .sock
            .send_to(payload, SocketAddrV4::new(dst, SERVER_PORT))
            .await?;
        check_sent(sent, payload.len())
    }

    pub async fn recv(&self) -> io::Result<(Ipv4Addr, Vec<u8>)> {
        let mut buf = vec![0u8; RECV_BUF_LEN];
        loop {
            let (len, from) = self.sock.recv_from(&mut buf).await?;
            if let SocketAddr::V4(from) = from {
                buf.truncate(len);
                return Ok((*from.ip(), buf));
            }
        }
    }
}

/// ARP on one interface (AF_PACKET SOCK_DGRAM, protocol ETH_P_ARP), for RFC 5227 address
/// conflict detection before/while a leased address is used.
pub struct ArpSocket {
    fd: Async<OwnedFd>,
    ifindex: u32,
    mac: [u8; 6],
}

/// One ARP packet seen on the link (RFC 826 fields relevant to RFC 5227 conflict detection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpSeen {
    pub sender_ip: Ipv4Addr,
    pub sender_mac: [u8; 6],
    pub target_ip: Ipv4Addr,
    pub is_request: bool,
}

impl ArpSocket {
    pub fn open(ifindex: u32, mac: [u8; 6]) -> io::Result<Self> {
        let fd = packet_socket()?;
        bind(fd.as_raw_fd(), &link_addr(ifindex, ETH_P_ARP, [0; 6])?)?;
        Ok(Self {
            fd: Async::new(fd)?,
            ifindex,
            mac,
        })
    }

    /// ARP probe for `ip` (RFC 5227 §2.1.1): request, sender MAC = ours, sender IP 0.0.0.0 so
    /// that no neighbour caches are polluted, target IP = ip, to ff:ff:ff:ff:ff:ff.
    pub async fn probe(&self, ip: Ipv4Addr) -> io::Result<()> {
        let to = link_addr(self.ifindex, ETH_P_ARP, BROADCAST_MAC)?;
        send_all(&self.fd, &build_arp_probe(self.mac, ip), &to).await
    }

    /// ARP announcement for `ip` (RFC 5227 §2.3): a request with sender and target IP both
    /// `ip`, broadcast. Defends an address we hold against another host's probe.
    pub async fn announce(&self, ip: Ipv4Addr) -> io::Result<()> {
        let to = link_addr(self.ifindex, ETH_P_ARP, BROADCAST_MAC)?;
        send_all(&self.fd, &build_arp_announce(self.mac, ip), &to).await
    }

    /// Next ARP packet (request or reply) whose sender is NOT our own MAC. The caller decides
    /// whether it is a conflict (sender IP == probed IP, or a probe from someone else for the
    /// same target IP, RFC 5227 §2.1.1).
    pub async fn recv(&self) -> io::Result<ArpSeen> {
        let mut buf = vec![0u8; RECV_BUF_LEN];
        loop {
            let len = self
                .fd
                .read_with(|fd| Ok(recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty())?))
                .await?;
            match parse_arp(buf.get(..len).unwrap_or(&buf)) {
                Some(seen) if seen.sender_mac != self.mac => return Ok(seen),
                _ => {}
            }
        }
    }
}

/// Builds a minimal IPv4 header (no options, TTL 64, id 0, DF unset) and a UDP header with its
/// RFC 768 checksum, followed by `payload`.
/// `payload` must fit in one IPv4 datagram (at most 65507 bytes).
pub fn build_udp_ipv4(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    let udp_len = (UDP_HEADER_LEN + payload.len()) as u16;
    let total_len = IPV4_HEADER_LEN as u16 + udp_len;
    let mut p = Vec::with_capacity(usize::from(total_len));
    p.extend_from_slice(&[0x45, 0]);
    p.extend_from_slice(&total_len.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 0, 64, libc::IPPROTO_UDP as u8, 0, 0]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    let ip_csum = internet_checksum(&p);
    p[10..12].copy_from_slice(&ip_csum.to_be_bytes());

    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&udp_len.to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    // RFC 768: a computed zero is sent as all ones, since zero means "no checksum".
    let udp_csum = match udp_checksum(src, dst, &p[IPV4_HEADER_LEN..]) {
        0 => 0xffff,
        c => c,
    };
    p[IPV4_HEADER_LEN + 6..IPV4_HEADER_LEN + 8].copy_from_slice(&udp_csum.to_be_bytes());
    p
}

/// Validates an IPv4/UDP packet (starting at the IPv4 header) addressed to UDP port `dport` and
/// returns its source address and UDP payload. Link-layer padding after the IPv4 total length is
/// ignored; fragments are refused because DHCP servers never need them for client replies.
#[cfg(test)]
pub fn parse_udp_ipv4(frame: &[u8], dport: u16) -> Option<(Ipv4Addr, &[u8])> {
    parse_udp(frame, dport, true)
}

fn parse_udp(frame: &[u8], dport: u16, verify_udp_csum: bool) -> Option<(Ipv4Addr, &[u8])> {
    let reject = |why: &str| {
        log::trace!("dhcp4: skipping {}-byte packet: {why}", frame.len());
        None
    };
    let Some(&vihl) = frame.first() else {
        return reject("empty");
    };
    let ihl = usize::from(vihl & 0x0f) * 4;
    if vihl >> 4 != 4 || ihl < IPV4_HEADER_LEN {
        return reject("not IPv4 or bad IHL");
    }
    let Some(header) = frame.get(..ihl) else {
        return reject("truncated IPv4 header");
    };
    let total_len = usize::from(u16::from_be_bytes([header[2], header[3]]));
    let Some(datagram) = frame.get(..total_len).filter(|_| total_len >= ihl) else {
        return reject("bad IPv4 total length");
    };
    if internet_checksum(header) != 0 {
        return reject("bad IPv4 header checksum");
    }
    if header[9] != libc::IPPROTO_UDP as u8 {
        return reject("not UDP");
    }
    if u16::from_be_bytes([header[6], header[7]]) & 0x3fff != 0 {
        return reject("IPv4 fragment");
    }
    let src = Ipv4Addr::new(header[12], header[13], header[14], header[15]);
    let dst = Ipv4Addr::new(header[16], header[17], header[18], header[19]);
    let ip_payload = &datagram[ihl..];
    let Some(udp_header) = ip_payload.get(..UDP_HEADER_LEN) else {
        return reject("truncated UDP header");
    };
    if u16::from_be_bytes([udp_header[2], udp_header[3]]) != dport {
        return reject("wrong UDP port");
    }
    let udp_len = usize::from(u16::from_be_bytes([udp_header[4], udp_header[5]]));
    let Some(udp) = ip_payload
        .get(..udp_len)
        .filter(|_| udp_len >= UDP_HEADER_LEN)
    else {
        return reject("bad UDP length");
    };
    let has_csum = udp_header[6] != 0 || udp_header[7] != 0;
    if verify_udp_csum && has_csum && udp_checksum(src, dst, udp) != 0 {
        return reject("bad UDP checksum");
    }
    Some((src, &udp[UDP_HEADER_LEN..]))
}

/// RFC 5227 §2.1.1 probe: an Ethernet/IPv4 ARP request (RFC 826) for `ip` with sender IP 0.0.0.0.
pub fn build_arp_probe(mac: [u8; 6], ip: Ipv4Addr) -> Vec<u8> {
    let mut p = Vec::with_capacity(ARP_LEN);
    p.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 1]); // htype, ptype, hlen, plen, request
    p.extend_from_slice(&mac);
    p.extend_from_slice(&[0; 4]);
    p.extend_from_slice(&[0; 6]);
    p.extend_from_slice(&ip.octets());
    p
}

/// RFC 5227 §2.3 announcement: like a probe, but the sender IP is `ip` too.
pub fn build_arp_announce(mac: [u8; 6], ip: Ipv4Addr) -> Vec<u8> {
    let mut p = build_arp_probe(mac, ip);
    p[14..18].copy_from_slice(&ip.octets());
    p
}

/// Parses an Ethernet/IPv4 ARP request or reply; anything else (other hardware or protocol
/// types, RARP, truncated packets) gives None.
pub fn parse_arp(buf: &[u8]) -> Option<ArpSeen> {
    let p: &[u8; ARP_LEN] = buf.get(..ARP_LEN)?.try_into().ok()?;
    if p[..6] != [0, 1, 0x08, 0x00, 6, 4] {
        log::trace!("arp: not Ethernet/IPv4");
        return None;
    }
    let is_request = match u16::from_be_bytes([p[6], p[7]]) {
        1 => true,
        2 => false,
        op => {
            log::trace!("arp: unknown operation {op}");
            return None;
        }
    };
    Some(ArpSeen {
        sender_mac: [p[8], p[9], p[10], p[11], p[12], p[13]],
        sender_ip: Ipv4Addr::new(p[14], p[15], p[16], p[17]),
        target_ip: Ipv4Addr::new(p[24], p[25], p[26], p[27]),
        is_request,
    })
}

/// RFC 1071 internet checksum. Over data that includes a correct checksum field it yields 0.
pub fn internet_checksum(data: &[u8]) -> u16 {
    fold(sum16(data))
}

fn sum16(data: &[u8]) -> u32 {
    data.chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)])))
        .sum()
}

fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// UDP checksum over the RFC 768 pseudo header and `udp` (header + payload).
fn udp_checksum(src: Ipv4Addr, dst: Ipv4Addr, udp: &[u8]) -> u16 {
    let pseudo = sum16(&src.octets())
        + sum16(&dst.octets())
        + u32::from(libc::IPPROTO_UDP as u16)
        + udp.len() as u32;
    fold(pseudo + sum16(udp))
}

/// Classic BPF, run by the kernel on SOCK_DGRAM packet sockets with offsets starting at the
/// network header: accept unfragmented IPv4/UDP to `dport`, drop everything else.
fn udp_dport_filter(dport: u16) -> [libc::sock_filter; 12] {
    const fn op(code: u32, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
        libc::sock_filter {
            code: code as u16,
            jt,
            jf,
            k,
        }
    }
    use libc::{
        BPF_ABS, BPF_ALU, BPF_AND, BPF_B, BPF_H, BPF_IND, BPF_JEQ, BPF_JMP, BPF_JSET, BPF_K,
        BPF_LD, BPF_LDX, BPF_MSH, BPF_RET,
    };
    [
        op(BPF_LD | BPF_B | BPF_ABS, 0, 0, 0),        // A = version/IHL
        op(BPF_ALU | BPF_AND | BPF_K, 0, 0, 0xf0),    // A &= 0xf0
        op(BPF_JMP | BPF_JEQ | BPF_K, 0, 8, 0x40),    // version 4?
        op(BPF_LD | BPF_B | BPF_ABS, 0, 0, 9),        // A = protocol
        op(BPF_JMP | BPF_JEQ | BPF_K, 0, 6, 17),      // UDP?
        op(BPF_LD | BPF_H | BPF_ABS, 0, 0, 6),        // A = flags/fragment offset
        op(BPF_JMP | BPF_JSET | BPF_K, 4, 0, 0x3fff), // MF or offset: fragment
        op(BPF_LDX | BPF_B | BPF_MSH, 0, 0, 0),       // X = 4 * IHL
        op(BPF_LD | BPF_H | BPF_IND, 0, 0, 2),        // A = UDP destination port
        op(BPF_JMP | BPF_JEQ | BPF_K, 0, 1, u32::from(dport)),
        op(BPF_RET | BPF_K, 0, 0, u32::MAX), // whole packet
        op(BPF_RET | BPF_K, 0, 0, 0),        // drop
    ]
}

/// Whether a PACKET_AUXDATA control message says the kernel has not finished the checksum.
fn csum_not_ready(cmsg: ControlMessageOwned) -> bool {
    let ControlMessageOwned::Unknown(u) = cmsg else {
        return false;
    };
    let status = match u.data_bytes.get(..4) {
        Some(&[a, b, c, d]) => u32::from_ne_bytes([a, b, c, d]),
        _ => 0,
    };
    u.cmsg_header.cmsg_level == libc::SOL_PACKET
        && u.cmsg_header.cmsg_type == PACKET_AUXDATA
        && status & TP_STATUS_CSUMNOTREADY != 0
}

/// A protocol-0 packet socket receives nothing until `bind` names a protocol.
fn packet_socket() -> io::Result<OwnedFd> {
    Ok(socket(
        AddressFamily::Packet,
        SockType::Datagram,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?)
}

fn link_addr(ifindex: u32, protocol: u16, mac: [u8; 6]) -> io::Result<LinkAddr> {
    let invalid = || io::Error::new(io::ErrorKind::InvalidInput, "bad interface index");
    let sll = libc::sockaddr_ll {
        sll_family: libc::AF_PACKET as u16,
        sll_protocol: protocol.to_be(),
        sll_ifindex: i32::try_from(ifindex).map_err(|_| invalid())?,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 6,
        sll_addr: [mac[0], mac[1], mac[2], mac[3], mac[4], mac[5], 0, 0],
    };
    let len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: `sll` is a fully initialised sockaddr_ll and `len` is its size.
    unsafe { LinkAddr::from_raw(std::ptr::from_ref(&sll).cast(), Some(len)) }.ok_or_else(invalid)
}

fn attach_filter(fd: &OwnedFd, prog: &[libc::sock_filter]) -> io::Result<()> {
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_ptr().cast_mut(),
    };
    // SAFETY: the kernel copies the program during the call; `fprog` and `prog` outlive it.
    setsockopt_raw(fd, libc::SOL_SOCKET, SO_ATTACH_FILTER, &fprog)
}

fn set_int_opt(
    fd: &OwnedFd,
    level: libc::c_int,
    name: libc::c_int,
    val: libc::c_int,
) -> io::Result<()> {
    setsockopt_raw(fd, level, name, &val)
}

async fn send_all(fd: &Async<OwnedFd>, packet: &[u8], to: &LinkAddr) -> io::Result<()> {
    let sent = fd
        .write_with(|fd| Ok(sendto(fd.as_raw_fd(), packet, to, MsgFlags::empty())?))
        .await?;
    check_sent(sent, packet.len())
}

fn check_sent(sent: usize, len: usize) -> io::Result<()> {
    if sent != len {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "short datagram send",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
    const DST: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 23);

    #[test]
    fn checksum_known_vectors() {
        // RFC 1071 §3 example: one's-complement sum ddf2.
        assert_eq!(
            internet_checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            !0xddf2
        );
        let mut header = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(internet_checksum(&header), 0xb861);
        header[10..12].copy_from_slice(&[0xb8, 0x61]);
        assert_eq!(internet_checksum(&header), 0);
        assert_eq!(internet_checksum(&[0x12]), !0x1200); // odd length pads with zero
    }

    #[test]
    fn round_trip() {
        let p = build_udp_ipv4(SRC, DST, 67, 68, b"hello dhcp");
        assert_eq!(p.len(), 20 + 8 + 10);
        assert_eq!(internet_checksum(&p[..20]), 0);
        assert_eq!(&p[..4], &[0x45, 0, 0, 38]);
        assert_eq!(&p[6..9], &[0, 0, 64]); // DF unset, TTL 64
        assert_eq!(parse_udp_ipv4(&p, 68), Some((SRC, &b"hello dhcp"[..])));
        // Ethernet minimum-frame padding after the datagram is ignored.
        let mut padded = p.clone();
        padded.extend_from_slice(&[0; 18]);
        assert_eq!(parse_udp_ipv4(&padded, 68), Some((SRC, &b"hello dhcp"[..])));
        let empty = build_udp_ipv4(Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST, 68, 67, b"");
        assert_eq!(
            parse_udp_ipv4(&empty, 67),
            Some((Ipv4Addr::UNSPECIFIED, &b""[..]))
        );
    }

    #[test]
    fn flipped_bytes_fail_checksums() {
        let p = build_udp_ipv4(SRC, DST, 67, 68, b"payload!");
        for i in 0..p.len() {
            let mut bad = p.clone();
            bad[i] ^= 0x01;
            assert_eq!(parse_udp_ipv4(&bad, 68), None, "byte {i}");
        }
    }

    #[test]
    fn zero_udp_checksum_accepted_and_partial_checksum_skippable() {
        let mut p = build_udp_ipv4(SRC, DST, 67, 68, b"abc");
        p[26..28].copy_from_slice(&[0x12, 0x34]);
        assert_eq!(parse_udp_ipv4(&p, 68), None);
        assert_eq!(parse_udp(&p, 68, false), Some((SRC, &b"abc"[..])));
        p[26..28].copy_from_slice(&[0, 0]);
        assert_eq!(parse_udp_ipv4(&p, 68), Some((SRC, &b"abc"[..])));
    }

    #[test]
    fn wrong_port_protocol_and_fragments_rejected() {
        let p = build_udp_ipv4(SRC, DST, 67, 68, b"x");
        assert_eq!(parse_udp_ipv4(&p, 67), None);
        let with_header = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut q = p.clone();
            f(&mut q);
            q[10..12].copy_from_slice(&[0, 0]);
            let c = internet_checksum(&q[..20]);
            q[10..12].copy_from_slice(&c.to_be_bytes());
            q
        };
        assert_eq!(parse_udp_ipv4(&with_header(&|q| q[9] = 6), 68), None); // TCP
        assert_eq!(parse_udp_ipv4(&with_header(&|q| q[6] = 0x20), 68), None); // MF
        assert_eq!(parse_udp_ipv4(&with_header(&|q| q[7] = 1), 68), None); // offset
        let df = with_header(&|q| q[6] = 0x40);
        assert_eq!(parse_udp_ipv4(&df, 68), Some((SRC, &b"x"[..])));
        assert_eq!(parse_udp_ipv4(&with_header(&|q| q[0] = 0x65), 68), None); // version 6
        assert_eq!(parse_udp_ipv4(&with_header(&|q| q[0] = 0x44), 68), None); // IHL 4
    }

    #[test]
    fn ip_options_are_skipped() {
        let p = build_udp_ipv4(SRC, DST, 67, 68, b"opts");
        let mut q = Vec::new();
        q.extend_from_slice(&p[..20]);
        q.extend_from_slice(&[0x94, 0x04, 0, 0]); // Router Alert option
        q.extend_from_slice(&p[20..]);
        q[0] = 0x46;
        let total = q.len() as u16;
        q[2..4].copy_from_slice(&total.to_be_bytes());
        q[10..12].copy_from_slice(&[0, 0]);
        let c = internet_checksum(&q[..24]);
        q[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(parse_udp_ipv4(&q, 68), Some((SRC, &b"opts"[..])));
    }

    #[test]
    fn truncation_never_panics() {
        let p = build_udp_ipv4(SRC, DST, 67, 68, b"truncate me");
        for n in 0..p.len() {
            assert_eq!(parse_udp_ipv4(&p[..n], 68), None, "len {n}");
        }
        // UDP length larger than the IP payload, or smaller than a UDP header.
        for udp_len in [0u16, 7, 100] {
            let mut q = p.clone();
            q[24..26].copy_from_slice(&udp_len.to_be_bytes());
            assert_eq!(parse_udp(&q, 68, false), None);
        }
        for n in 0..ARP_LEN {
            assert_eq!(parse_arp(&build_arp_probe([2; 6], SRC)[..n]), None);
        }
    }

    #[test]
    fn arp_probe_round_trip() {
        let mac = [0x02, 0, 0, 0, 0, 0x42];
        let probe = build_arp_probe(mac, DST);
        assert_eq!(probe.len(), 28);
        let seen = parse_arp(&probe).unwrap();
        assert_eq!(
            seen,
            ArpSeen {
                sender_ip: Ipv4Addr::UNSPECIFIED,
                sender_mac: mac,
                target_ip: DST,
                is_request: true,
            }
        );
        let mut reply = probe.clone();
        reply[7] = 2;
        reply[14..18].copy_from_slice(&DST.octets());
        reply.extend_from_slice(&[0; 18]); // padding to the Ethernet minimum
        let seen = parse_arp(&reply).unwrap();
        assert!(!seen.is_request);
        assert_eq!(seen.sender_ip, DST);
        reply[7] = 3; // RARP request
        assert_eq!(parse_arp(&reply), None);
    }

    #[test]
    fn an_announcement_names_the_address_as_sender_and_target() {
        let mac = [0x02, 0, 0, 0, 0, 0x42];
        let seen = parse_arp(&build_arp_announce(mac, DST)).unwrap();
        assert_eq!(
            seen,
            ArpSeen {
                sender_ip: DST,
                sender_mac: mac,
                target_ip: DST,
                is_request: true,
            }
        );
    }
}
