//! Router advertisements, read by us next to the kernel's own SLAAC: the kernel configures
//! addresses and routes, but only an RA shows the M/O flags, the prefixes it was offered and the
//! DNS options (RFC 8106) that the kernel does not act on.
//!
//! The parsers are pure ([`parse_ra`], [`parse_nduseropt`], [`router_solicitation`]);
//! [`RaSocket`] and [`NdUserOptSocket`] are thin drivers that only move bytes and drop invalid
//! packets with a one-line `debug!` reason.

use crate::sys::setsockopt_raw;
use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{self, IoSliceMut};
use std::net::{Ipv6Addr, SocketAddrV6};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Mutex;

use nix::libc;
use nix::sys::socket::{
    bind, recvmsg, sendto, setsockopt, socket, sockopt, AddressFamily, ControlMessageOwned,
    MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, SockaddrIn6,
};
use smol::Async;

const ND_ROUTER_SOLICIT: u8 = 133;
const ND_ROUTER_ADVERT: u8 = 134;
/// Fixed part of an RA before its options (RFC 4861 §4.2).
const RA_HEADER_LEN: usize = 16;

const OPT_SOURCE_LL: u8 = 1;
const OPT_PREFIX: u8 = 3;
const OPT_MTU: u8 = 5;
const OPT_RDNSS: u8 = 25;
const OPT_DNSSL: u8 = 31;

/// <netinet/icmp6.h>, level IPPROTO_ICMPV6; not exported by the libc crate.
const ICMP6_FILTER: libc::c_int = 1;
/// <linux/rtnetlink.h>: RTM_NEWNDUSEROPT and RTNLGRP_ND_USEROPT.
const RTM_NEWNDUSEROPT: u16 = 68;
const RTNLGRP_ND_USEROPT: libc::c_int = 20;
/// <linux/netlink.h>, level SOL_NETLINK.
const NETLINK_ADD_MEMBERSHIP: libc::c_int = 1;
/// <linux/neighbour.h>: the attribute carrying the RA's source address.
const NDUSEROPT_SRCADDR: u16 = 1;
const NLMSG_HDR_LEN: usize = 16;
const NDUSEROPTMSG_LEN: usize = 16;

/// Large enough for an RA on a jumbo-frame link; ND messages are never fragmented (RFC 6980).
const RA_BUF_LEN: usize = 9216;
/// The kernel sends one ND user option per netlink message; 8 KiB is the usual netlink buffer.
const NETLINK_BUF_LEN: usize = 8192;

/// A router advertisement (RFC 4861 §4.2) with the options a node cares about.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RouterAdvert {
    /// The router's link-local address: the packet's IPv6 source, given by the caller.
    pub source: Ipv6Addr,
    pub hop_limit: u8,
    /// M flag: addresses are available via DHCPv6 (ZOS does not run it, but reports it).
    pub managed: bool,
    /// O flag: other configuration is available via DHCPv6.
    pub other: bool,
    /// 0 means "not a default router" (RFC 4861 §6.3.4).
    pub router_lifetime_secs: u16,
    pub reachable_ms: u32,
    pub retrans_ms: u32,
    /// Source link-layer address option (1), when it is an Ethernet (6-byte) address.
    pub source_mac: Option<[u8; 6]>,
    /// MTU option (5).
    pub mtu: Option<u32>,
    /// Prefix information options (3).
    pub prefixes: Vec<PrefixInfo>,
    /// Recursive DNS servers from every RDNSS option (25, RFC 8106).
    pub rdnss: Vec<Ipv6Addr>,
    /// The smallest lifetime among the RDNSS options (0 when there are none). A router sending
    /// several normally gives them all the same; the smallest is the safe one to honour.
    pub rdnss_lifetime_secs: u32,
    /// Search domains from every DNSSL option (31, RFC 8106); only valid LDH names.
    pub dnssl: Vec<String>,
}

/// A prefix information option (RFC 4861 §4.6.2).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PrefixInfo {
    /// Bits beyond `len` are cleared: RFC 4861 says the receiver ignores them.
    pub prefix: Ipv6Addr,
    pub len: u8,
    /// L flag.
    pub on_link: bool,
    /// A flag: usable for SLAAC (RFC 4862 §5.5.3).
    pub autonomous: bool,
    pub valid_secs: u32,
    pub preferred_secs: u32,
}

/// RFC 8106 options as the kernel forwards them over netlink (see [`parse_nduseropt`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NdUserOpt {
    pub ifindex: u32,
    /// The advertising router, from the NDUSEROPT_SRCADDR attribute.
    pub source: Option<Ipv6Addr>,
    pub rdnss: Vec<Ipv6Addr>,
    pub rdnss_lifetime_secs: u32,
    pub dnssl: Vec<String>,
}

/// Parses an RA; `icmp` starts at the ICMPv6 type byte (134), as a raw ICMPv6 socket delivers
/// it. Structural faults (RFC 4861 §6.1.2: code, length, an option of length 0 or running past
/// the end) reject the packet; a known option of the wrong size, a prefix longer than 128 bits
/// or an invalid search domain is skipped alone, as RFC 4861/8106 ask. Unknown options are
/// skipped (§4.6).
pub fn parse_ra(icmp: &[u8], source: Ipv6Addr) -> Result<RouterAdvert, String> {
    let header: &[u8; RA_HEADER_LEN] = icmp
        .get(..RA_HEADER_LEN)
        .and_then(|h| h.try_into().ok())
        .ok_or_else(|| format!("{} bytes, shorter than an RA header", icmp.len()))?;
    let [kind, code, _, _, hop_limit, flags, lt0, lt1, r0, r1, r2, r3, t0, t1, t2, t3] = *header;
    if kind != ND_ROUTER_ADVERT {
        return Err(format!("ICMPv6 type {kind}, not a router advertisement"));
    }
    if code != 0 {
        return Err(format!("ICMPv6 code {code}, must be 0"));
    }
    let mut ra = RouterAdvert {
        source,
        hop_limit,
        managed: flags & 0x80 != 0,
        other: flags & 0x40 != 0,
        router_lifetime_secs: u16::from_be_bytes([lt0, lt1]),
        reachable_ms: u32::from_be_bytes([r0, r1, r2, r3]),
        retrans_ms: u32::from_be_bytes([t0, t1, t2, t3]),
        source_mac: None,
        mtu: None,
        prefixes: Vec::new(),
        rdnss: Vec::new(),
        rdnss_lifetime_secs: 0,
        dnssl: Vec::new(),
    };
    let mut dns = DnsOptions::default();
    for opt in split_options(icmp.get(RA_HEADER_LEN..).unwrap_or_default())? {
        match (opt.first().copied(), opt.len()) {
            (Some(OPT_SOURCE_LL), 8) => {
                ra.source_mac = opt.get(2..8).and_then(|m| m.try_into().ok());
            }
            (Some(OPT_MTU), 8) => ra.mtu = be32(opt, 4),
            (Some(OPT_PREFIX), 32) => ra.prefixes.extend(prefix_info(opt)),
            (Some(OPT_RDNSS | OPT_DNSSL), _) => dns.add(opt),
            (Some(kind @ (OPT_SOURCE_LL | OPT_MTU | OPT_PREFIX)), len) => {
                log::debug!("RA from {source}: skipping option {kind} of unexpected length {len}");
            }
            _ => {}
        }
    }
    (ra.rdnss, ra.rdnss_lifetime_secs, ra.dnssl) = dns.finish();
    Ok(ra)
}

/// Parses the body (after the 16-byte nlmsghdr) of an `RTM_NEWNDUSEROPT` message: the kernel
/// passes some RA options (RDNSS, DNSSL, captive portal, PREF64 and, seen on 6.18, every
/// prefix information option too) to netlink group `RTNLGRP_ND_USEROPT`, one option per
/// message, and only for interfaces whose accept_ra makes it process RAs. Layout: `struct
/// nduseroptmsg { u8 family, pad1; u16 opts_len; i32 ifindex; u8 icmp_type, icmp_code; u16
/// pad2; u32 pad3 }` (host byte order), the raw options, then netlink attributes. Options other
/// than RDNSS/DNSSL are ignored, which leaves the lists empty.
pub fn parse_nduseropt(payload: &[u8]) -> Result<NdUserOpt, String> {
    let header: &[u8; NDUSEROPTMSG_LEN] = payload
        .get(..NDUSEROPTMSG_LEN)
        .and_then(|h| h.try_into().ok())
        .ok_or_else(|| format!("{} bytes, shorter than nduseroptmsg", payload.len()))?;
    let [family, _, l0, l1, i0, i1, i2, i3, icmp_type, ..] = *header;
    if i32::from(family) != libc::AF_INET6 || icmp_type != ND_ROUTER_ADVERT {
        return Err(format!(
            "family {family} ICMP type {icmp_type}, not an IPv6 RA"
        ));
    }
    let ifindex = u32::try_from(i32::from_ne_bytes([i0, i1, i2, i3]))
        .map_err(|_| "negative interface index".to_string())?;
    let opts_len = usize::from(u16::from_ne_bytes([l0, l1]));
    let rest = payload.get(NDUSEROPTMSG_LEN..).unwrap_or_default();
    let (opts, mut attrs) = rest
        .split_at_checked(opts_len)
        .ok_or_else(|| format!("opts_len {opts_len} runs past the message"))?;
    let mut dns = DnsOptions::default();
    for opt in split_options(opts)? {
        if matches!(opt.first(), Some(&(OPT_RDNSS | OPT_DNSSL))) {
            dns.add(opt);
        }
    }
    let mut source = None;
    // Attributes follow the options at a 4-byte boundary (NLMSG_ALIGN); options are 8-byte units.
    while let Some(&[a0, a1, t0, t1]) = attrs.get(..4) {
        let len = usize::from(u16::from_ne_bytes([a0, a1]));
        let data = attrs
            .get(4..len.max(4))
            .ok_or_else(|| format!("attribute length {len} runs past the message"))?;
        if u16::from_ne_bytes([t0, t1]) & 0x3fff == NDUSEROPT_SRCADDR {
            source = <[u8; 16]>::try_from(data).ok().map(Ipv6Addr::from);
        }
        attrs = attrs.get(align4(len.max(4))..).unwrap_or_default();
    }
    let (rdnss, rdnss_lifetime_secs, dnssl) = dns.finish();
    Ok(NdUserOpt {
        ifindex,
        source,
        rdnss,
        rdnss_lifetime_secs,
        dnssl,
    })
}

/// A router solicitation (RFC 4861 §4.1). Include `source_mac` only when the packet will leave
/// from a link-local address: §4.1 forbids the option when the source is unspecified (::).
/// The checksum stays 0: the kernel computes it for raw ICMPv6 sockets (RFC 3542 §3.1).
pub fn router_solicitation(source_mac: Option<[u8; 6]>) -> Vec<u8> {
    let mut rs = vec![ND_ROUTER_SOLICIT, 0, 0, 0, 0, 0, 0, 0];
    if let Some(mac) = source_mac {
        rs.extend([OPT_SOURCE_LL, 1]);
        rs.extend(mac);
    }
    rs
}

/// Splits ND options (RFC 4861 §4.6): each is `type, length in 8-octet units, data`. A length
/// of 0 or an option running past the end makes the whole packet invalid (§6.1.2).
fn split_options(mut bytes: &[u8]) -> Result<Vec<&[u8]>, String> {
    let mut opts = Vec::new();
    while let Some(&[kind, units]) = bytes.get(..2) {
        if units == 0 {
            return Err(format!("option {kind} has length 0"));
        }
        let (opt, rest) = bytes
            .split_at_checked(usize::from(units) * 8)
            .ok_or_else(|| format!("option {kind} ({units}×8 bytes) runs past the end"))?;
        opts.push(opt);
        bytes = rest;
    }
    if !bytes.is_empty() {
        return Err(format!("{} stray bytes after the options", bytes.len()));
    }
    Ok(opts)
}

fn prefix_info(opt: &[u8]) -> Option<PrefixInfo> {
    let len = *opt.get(2)?;
    if len > 128 {
        log::debug!("skipping prefix option with length {len}");
        return None;
    }
    let flags = *opt.get(3)?;
    let bits = u128::from_be_bytes(opt.get(16..32)?.try_into().ok()?);
    let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
    Some(PrefixInfo {
        prefix: Ipv6Addr::from(bits & mask),
        len,
        on_link: flags & 0x80 != 0,
        autonomous: flags & 0x40 != 0,
        valid_secs: be32(opt, 4)?,
        preferred_secs: be32(opt, 8)?,
    })
}

/// Collects RDNSS and DNSSL options (RFC 8106 §5.1, §5.2), shared by both parsers.
#[derive(Default)]
struct DnsOptions {
    rdnss: Vec<Ipv6Addr>,
    rdnss_lifetime: Option<u32>,
    dnssl: Vec<String>,
}

impl DnsOptions {
    fn add(&mut self, opt: &[u8]) {
        let (Some(&kind), Some(lifetime)) = (opt.first(), be32(opt, 4)) else {
            return;
        };
        let data = opt.get(8..).unwrap_or_default();
        match kind {
            // §5.1: length 3 + 2n; anything shorter is invalid and silently discarded.
            OPT_RDNSS if data.len() >= 16 && data.len() % 16 == 0 => {
                let servers = data.chunks_exact(16).filter_map(|c| c.try_into().ok());
                self.rdnss
                    .extend(servers.map(|a: [u8; 16]| Ipv6Addr::from(a)));
                self.rdnss_lifetime =
                    Some(self.rdnss_lifetime.map_or(lifetime, |l| l.min(lifetime)));
            }
            OPT_DNSSL if !data.is_empty() => decode_dnssl(data, &mut self.dnssl),
            _ => log::debug!("skipping malformed option {kind} of length {}", opt.len()),
        }
    }

    fn finish(self) -> (Vec<Ipv6Addr>, u32, Vec<String>) {
        (self.rdnss, self.rdnss_lifetime.unwrap_or(0), self.dnssl)
    }
}

/// Decodes the names of a DNSSL option: uncompressed DNS wire format (RFC 1035 §3.1), padded
/// with zero bytes to the option's end (RFC 8106 §5.2). A name that is not a valid LDH host
/// name (it will end up in resolv.conf) is skipped; a malformed encoding ends the option.
fn decode_dnssl(mut data: &[u8], out: &mut Vec<String>) {
    let mut labels: Vec<&[u8]> = Vec::new();
    while let Some((&len, rest)) = data.split_first() {
        if len == 0 {
            // End of a name; zeros without labels are padding.
            if !labels.is_empty() {
                let name = labels
                    .iter()
                    .map(|l| String::from_utf8_lossy(l))
                    .collect::<Vec<_>>()
                    .join(".");
                if labels.iter().all(|l| is_ldh_label(l)) && name.len() <= 253 {
                    out.push(name);
                } else {
                    log::debug!("skipping DNSSL name {name:?}: not a valid host name");
                }
                labels.clear();
            }
            data = rest;
            continue;
        }
        // Lengths above 63 are compression pointers (forbidden here) or reserved encodings.
        let Some((label, rest)) = rest
            .split_at_checked(usize::from(len))
            .filter(|_| len <= 63)
        else {
            log::debug!("DNSSL: bad label length {len}, ignoring the rest of the option");
            return;
        };
        labels.push(label);
        data = rest;
    }
    if !labels.is_empty() {
        log::debug!("DNSSL: last name is not terminated, ignoring it");
    }
}

/// RFC 952/1123 label: letters, digits and hyphens, not starting or ending with a hyphen.
fn is_ldh_label(label: &[u8]) -> bool {
    label
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        && label.first() != Some(&b'-')
        && label.last() != Some(&b'-')
}

fn be32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn align4(len: usize) -> usize {
    (len + 3) & !3
}

/// Raw ICMPv6 socket that receives router advertisements on one interface and sends router
/// solicitations. A raw socket gets a copy of every RA the kernel receives, whether or not the
/// kernel itself accepts RAs on that interface.
pub struct RaSocket {
    fd: Async<OwnedFd>,
    ifname: String,
}

impl RaSocket {
    /// Opens the socket: SO_BINDTODEVICE to `ifname`, an ICMP6_FILTER passing only type 134 (so
    /// the process does not wake for neighbour solicitations and echo traffic), and
    /// IPV6_RECVHOPLIMIT so that RAs not sent with hop limit 255 — i.e. forwarded from off-link,
    /// RFC 4861 §6.1.2 — can be dropped. Needs CAP_NET_RAW.
    pub fn open(ifname: &str) -> io::Result<Self> {
        let fd = socket(
            AddressFamily::Inet6,
            SockType::Raw,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            SockProtocol::IcmpV6,
        )?;
        // struct icmp6_filter: on Linux a set bit *blocks* the type (ICMP6_FILTER_SETBLOCKALL,
        // then ICMP6_FILTER_SETPASS(134)).
        let mut filter = [u32::MAX; 8];
        let ra = usize::from(ND_ROUTER_ADVERT);
        if let Some(word) = filter.get_mut(ra >> 5) {
            *word &= !(1 << (ra & 31));
        }
        setsockopt_raw(&fd, libc::IPPROTO_ICMPV6, ICMP6_FILTER, &filter)?;
        setsockopt(&fd, sockopt::BindToDevice, &OsString::from(ifname))?;
        setsockopt(&fd, sockopt::Ipv6RecvHopLimit, &true)?;
        // RFC 4861 §4.1: a router discards an RS whose hop limit is not 255.
        setsockopt(&fd, sockopt::Ipv6MulticastHops, &255)?;
        // Packets from any interface may have queued before the filter and binding took effect.
        let mut scratch = [0u8; 1];
        while nix::sys::socket::recv(fd.as_raw_fd(), &mut scratch, MsgFlags::MSG_TRUNC).is_ok() {}
        Ok(Self {
            fd: Async::new(fd)?,
            ifname: ifname.to_string(),
        })
    }

    /// Waits for the next valid RA (RFC 4861 §6.1.2: link-local source, hop limit 255, plus the
    /// checks of [`parse_ra`]; the kernel has already verified the ICMPv6 checksum). Invalid
    /// packets are dropped with a `debug!` reason.
    pub async fn recv(&self) -> io::Result<RouterAdvert> {
        let mut buf = vec![0u8; RA_BUF_LEN];
        loop {
            let got = self.fd.read_with(|fd| recv_ra(fd, &mut buf)).await?;
            let from = got.source.map_or("?".to_string(), |s| s.to_string());
            let verdict = match (got.source, got.hop_limit) {
                _ if got.truncated => Err(format!("longer than {RA_BUF_LEN} bytes")),
                (None, _) => Err("no IPv6 source address".to_string()),
                (Some(s), _) if !s.is_unicast_link_local() => {
                    Err("source is not link-local".to_string())
                }
                (_, hop) if hop != Some(255) => Err(format!("hop limit {hop:?}, must be 255")),
                (Some(s), _) => parse_ra(buf.get(..got.len).unwrap_or_default(), s),
            };
            match verdict {
                Ok(ra) => return Ok(ra),
                Err(why) => log::debug!("{}: ignoring RA from {from}: {why}", self.ifname),
            }
        }
    }

    /// Sends a router solicitation to all-routers (ff02::2) on `ifindex` (the interface the
    /// socket is bound to). IPV6_MULTICAST_IF and the scope id both pin the link, since a
    /// link-local multicast destination is otherwise ambiguous.
    pub async fn solicit(&self, ifindex: u32, mac: Option<[u8; 6]>) -> io::Result<()> {
        let index = libc::c_int::try_from(ifindex)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "bad interface index"))?;
        setsockopt_raw(
            self.fd.get_ref(),
            libc::IPPROTO_IPV6,
            libc::IPV6_MULTICAST_IF,
            &index,
        )?;
        let rs = router_solicitation(mac);
        let to = SockaddrIn6::from(SocketAddrV6::new(
            Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2),
            0,
            0,
            ifindex,
        ));
        let sent = self
            .fd
            .write_with(|fd| Ok(sendto(fd.as_raw_fd(), &rs, &to, MsgFlags::empty())?))
            .await?;
        if sent != rs.len() {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "short RS send"));
        }
        Ok(())
    }
}

struct ReceivedRa {
    len: usize,
    source: Option<Ipv6Addr>,
    hop_limit: Option<i32>,
    truncated: bool,
}

fn recv_ra(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<ReceivedRa> {
    let mut iov = [IoSliceMut::new(buf)];
    let mut cmsg = nix::cmsg_space!(libc::c_int);
    let msg = recvmsg::<SockaddrIn6>(fd.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::empty())?;
    let hop_limit = msg.cmsgs()?.find_map(|c| match c {
        ControlMessageOwned::Ipv6HopLimit(h) => Some(h),
        _ => None,
    });
    Ok(ReceivedRa {
        len: msg.bytes,
        source: msg.address.map(|a| a.ip()),
        hop_limit,
        truncated: msg.flags.contains(MsgFlags::MSG_TRUNC),
    })
}

/// Netlink (NETLINK_ROUTE) socket subscribed to `RTNLGRP_ND_USEROPT`, yielding the RDNSS/DNSSL
/// options the kernel forwards from RAs. The kernel only does so for interfaces where it
/// processes RAs itself (accept_ra on, and not overridden by forwarding).
pub struct NdUserOptSocket {
    fd: Async<OwnedFd>,
    /// A datagram may carry several messages; [`Self::recv`] hands them out one at a time.
    pending: Mutex<VecDeque<NdUserOpt>>,
}

impl NdUserOptSocket {
    pub fn open() -> io::Result<Self> {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkRoute,
        )?;
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0))?;
        // The legacy nl_groups bitmask in bind() only reaches groups 1..32 as bit (n-1);
        // NETLINK_ADD_MEMBERSHIP takes the group number itself and has no such limit.
        setsockopt_raw(
            &fd,
            libc::SOL_NETLINK,
            NETLINK_ADD_MEMBERSHIP,
            &RTNLGRP_ND_USEROPT,
        )?;
        Ok(Self {
            fd: Async::new(fd)?,
            pending: Mutex::new(VecDeque::new()),
        })
    }

    /// Waits for the next message carrying RDNSS servers or DNSSL names (with a lifetime of 0
    /// when the router withdraws them); the other ND user options are skipped. A receive-queue
    /// overflow (ENOBUFS) is only logged: routers repeat the options with every RA.
    pub async fn recv(&self) -> io::Result<NdUserOpt> {
        let mut buf = vec![0u8; NETLINK_BUF_LEN];
        loop {
            if let Some(opt) = self.pending.lock().ok().and_then(|mut q| q.pop_front()) {
                return Ok(opt);
            }
            let (len, from_kernel) = match self.fd.read_with(|fd| recv_netlink(fd, &mut buf)).await
            {
                Ok(got) => got,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    log::warn!("ND user option socket overflowed; some RA options were lost");
                    continue;
                }
                Err(e) => return Err(e),
            };
            if !from_kernel {
                log::debug!("ignoring netlink datagram not sent by the kernel");
                continue;
            }
            let parsed = split_netlink(buf.get(..len).unwrap_or_default())
                .into_iter()
                .filter(|o| !o.rdnss.is_empty() || !o.dnssl.is_empty());
            if let Ok(mut queue) = self.pending.lock() {
                queue.extend(parsed);
            }
        }
    }
}

/// Receives one datagram: its length (0 if truncated, which then parses as nothing) and whether
/// it came from the kernel (netlink port id 0), since other processes may also send.
fn recv_netlink(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<(usize, bool)> {
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<NetlinkAddr>(fd.as_raw_fd(), &mut iov, None, MsgFlags::empty())?;
    if msg.flags.contains(MsgFlags::MSG_TRUNC) {
        log::debug!("netlink datagram larger than {NETLINK_BUF_LEN} bytes dropped");
        return Ok((0, true));
    }
    Ok((msg.bytes, msg.address.is_some_and(|a| a.pid() == 0)))
}

/// Walks the netlink messages of a datagram and parses the `RTM_NEWNDUSEROPT` ones.
fn split_netlink(mut data: &[u8]) -> Vec<NdUserOpt> {
    let mut out = Vec::new();
    while let Some(&[l0, l1, l2, l3, t0, t1, ..]) = data.get(..NLMSG_HDR_LEN) {
        let len = usize::try_from(u32::from_ne_bytes([l0, l1, l2, l3])).unwrap_or(usize::MAX);
        let Some(body) = data.get(NLMSG_HDR_LEN..len) else {
            log::debug!("netlink message length {len} is invalid");
            break;
        };
        if u16::from_ne_bytes([t0, t1]) == RTM_NEWNDUSEROPT {
            match parse_nduseropt(body) {
                Ok(opt) => out.push(opt),
                Err(why) => log::debug!("ignoring ND user option message: {why}"),
            }
        }
        data = data.get(align4(len)..).unwrap_or_default();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTER: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);

    fn prefix_opt(prefix: Ipv6Addr, len: u8, flags: u8, valid: u32, preferred: u32) -> Vec<u8> {
        let mut o = vec![OPT_PREFIX, 4, len, flags];
        o.extend(valid.to_be_bytes());
        o.extend(preferred.to_be_bytes());
        o.extend([0; 4]);
        o.extend(prefix.octets());
        o
    }

    fn dnssl_opt(names: &[&str]) -> Vec<u8> {
        let mut wire = Vec::new();
        for name in names {
            for label in name.split('.') {
                wire.push(label.len() as u8);
                wire.extend(label.as_bytes());
            }
            wire.push(0);
        }
        wire.resize(wire.len().div_ceil(8) * 8, 0);
        let mut o = vec![OPT_DNSSL, (1 + wire.len() / 8) as u8, 0, 0];
        o.extend(600u32.to_be_bytes());
        o.extend(wire);
        o
    }

    fn rdnss_opt(lifetime: u32, servers: &[Ipv6Addr]) -> Vec<u8> {
        let mut o = vec![OPT_RDNSS, (1 + 2 * servers.len()) as u8, 0, 0];
        o.extend(lifetime.to_be_bytes());
        for s in servers {
            o.extend(s.octets());
        }
        o
    }

    fn dns1() -> Ipv6Addr {
        "2001:db8:1::53".parse().unwrap()
    }

    fn dns2() -> Ipv6Addr {
        "2001:db8:2::53".parse().unwrap()
    }

    fn sample_ra() -> Vec<u8> {
        let mut p = vec![134, 0, 0, 0, 64, 0xc0, 0x07, 0x08];
        p.extend(30_000u32.to_be_bytes());
        p.extend(1_000u32.to_be_bytes());
        p.extend([OPT_SOURCE_LL, 1, 0x02, 0x11, 0x22, 0x33, 0x44, 0x55]);
        p.extend([OPT_MTU, 1, 0, 0]);
        p.extend(1500u32.to_be_bytes());
        let slaac: Ipv6Addr = "2001:db8:1::".parse().unwrap();
        p.extend(prefix_opt(slaac, 64, 0xc0, 86_400, 14_400));
        // Host bits set on purpose: they must be cleared.
        let onlink: Ipv6Addr = "2001:db8:ff:ffff::1".parse().unwrap();
        p.extend(prefix_opt(onlink, 56, 0x80, 7200, 3600));
        p.extend([200, 1, 0, 0, 0, 0, 0, 0]); // unknown option
        p.extend(rdnss_opt(900, &[dns1(), dns2()]));
        p.extend(dnssl_opt(&["lab.test", "example.org"]));
        p
    }

    #[test]
    fn parses_header_flags_and_all_options() {
        let ra = parse_ra(&sample_ra(), ROUTER).unwrap();
        let expected = RouterAdvert {
            source: ROUTER,
            hop_limit: 64,
            managed: true,
            other: true,
            router_lifetime_secs: 0x0708,
            reachable_ms: 30_000,
            retrans_ms: 1_000,
            source_mac: Some([0x02, 0x11, 0x22, 0x33, 0x44, 0x55]),
            mtu: Some(1500),
            prefixes: vec![
                PrefixInfo {
                    prefix: "2001:db8:1::".parse().unwrap(),
                    len: 64,
                    on_link: true,
                    autonomous: true,
                    valid_secs: 86_400,
                    preferred_secs: 14_400,
                },
                PrefixInfo {
                    prefix: "2001:db8:ff:ff00::".parse().unwrap(),
                    len: 56,
                    on_link: true,
                    autonomous: false,
                    valid_secs: 7200,
                    preferred_secs: 3600,
                },
            ],
            rdnss: vec![dns1(), dns2()],
            rdnss_lifetime_secs: 900,
            dnssl: vec!["lab.test".into(), "example.org".into()],
        };
        assert_eq!(ra, expected);
    }

    #[test]
    fn bare_ra_without_options_has_defaults() {
        let ra = parse_ra(
            &[134, 0, 0, 0, 255, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            ROUTER,
        )
        .unwrap();
        assert!(!ra.managed && !ra.other && ra.prefixes.is_empty() && ra.mtu.is_none());
        assert_eq!((ra.router_lifetime_secs, ra.rdnss_lifetime_secs), (0, 0));
    }

    #[test]
    fn malformed_ras_are_rejected() {
        let ra = sample_ra();
        let mut zero_len = ra.clone();
        zero_len.extend([99, 0, 0, 0, 0, 0, 0, 0]);
        assert!(parse_ra(&zero_len, ROUTER)
            .unwrap_err()
            .contains("length 0"));
        let mut overrun = ra.clone();
        overrun.extend([OPT_MTU, 2, 0, 0, 0, 0, 5, 0xdc]);
        assert!(parse_ra(&overrun, ROUTER)
            .unwrap_err()
            .contains("past the end"));
        let mut wrong_type = ra.clone();
        wrong_type[0] = 133;
        assert!(parse_ra(&wrong_type, ROUTER).is_err());
        let mut wrong_code = ra.clone();
        wrong_code[1] = 1;
        assert!(parse_ra(&wrong_code, ROUTER).is_err());
        assert!(parse_ra(&ra[..15], ROUTER).is_err());
    }

    #[test]
    fn every_truncation_is_an_error_or_a_prefix_of_the_options() {
        let ra = sample_ra();
        for len in 0..ra.len() {
            // Cuts on an option boundary are valid shorter RAs; all others must be errors.
            let _ = parse_ra(&ra[..len], ROUTER);
            if len < RA_HEADER_LEN || !(len - RA_HEADER_LEN).is_multiple_of(8) {
                assert!(parse_ra(&ra[..len], ROUTER).is_err(), "length {len}");
            }
        }
        for len in 0..64 {
            let mut junk = sample_ra();
            junk.truncate(RA_HEADER_LEN);
            junk.extend((0..len).map(|i| (i * 37 % 251) as u8));
            let _ = parse_ra(&junk, ROUTER);
        }
    }

    #[test]
    fn invalid_option_contents_are_skipped_not_fatal() {
        let mut p = sample_ra();
        p.truncate(RA_HEADER_LEN);
        p.extend(prefix_opt(Ipv6Addr::UNSPECIFIED, 129, 0xc0, 1, 1));
        p.extend([OPT_RDNSS, 1, 0, 0, 0, 0, 0, 60]); // below the minimum length 3
        p.extend([
            OPT_SOURCE_LL,
            2,
            1,
            2,
            3,
            4,
            5,
            6,
            7,
            8,
            9,
            10,
            11,
            12,
            13,
            14,
        ]);
        // "bad_name" has an underscore, "-x" starts with a hyphen; "ok" survives.
        p.extend(dnssl_opt(&["bad_name.test", "-x.test", "ok"]));
        let ra = parse_ra(&p, ROUTER).unwrap();
        assert!(ra.prefixes.is_empty() && ra.rdnss.is_empty() && ra.source_mac.is_none());
        assert_eq!(ra.dnssl, vec!["ok".to_string()]);
    }

    #[test]
    fn dnssl_with_compression_pointer_keeps_earlier_names() {
        let mut o = dnssl_opt(&["a.test"]);
        o.extend([0xc0, 0x0c, 0, 0, 0, 0, 0, 0]);
        o[1] += 1;
        let mut names = Vec::new();
        decode_dnssl(&o[8..], &mut names);
        assert_eq!(names, vec!["a.test".to_string()]);
    }

    #[test]
    fn rdnss_lifetime_is_the_smallest_of_several_options() {
        let mut p = sample_ra();
        p.truncate(RA_HEADER_LEN);
        p.extend(rdnss_opt(900, &[dns1()]));
        p.extend(rdnss_opt(300, &[dns2()]));
        let ra = parse_ra(&p, ROUTER).unwrap();
        assert_eq!(
            (ra.rdnss, ra.rdnss_lifetime_secs),
            (vec![dns1(), dns2()], 300)
        );
    }

    fn nduseropt_payload(opt: &[u8], src: Option<Ipv6Addr>) -> Vec<u8> {
        let mut p = vec![libc::AF_INET6 as u8, 0];
        p.extend((opt.len() as u16).to_ne_bytes());
        p.extend(7i32.to_ne_bytes());
        p.extend([134, 0, 0, 0, 0, 0, 0, 0]);
        p.extend(opt);
        if let Some(src) = src {
            p.extend(20u16.to_ne_bytes());
            p.extend(NDUSEROPT_SRCADDR.to_ne_bytes());
            p.extend(src.octets());
        }
        p
    }

    #[test]
    fn nduseropt_rdnss_with_source_address() {
        let p = nduseropt_payload(&rdnss_opt(600, &[dns1(), dns2()]), Some(ROUTER));
        let opt = parse_nduseropt(&p).unwrap();
        let expected = NdUserOpt {
            ifindex: 7,
            source: Some(ROUTER),
            rdnss: vec![dns1(), dns2()],
            rdnss_lifetime_secs: 600,
            dnssl: vec![],
        };
        assert_eq!(opt, expected);
        for len in 0..p.len() {
            let _ = parse_nduseropt(&p[..len]);
        }
    }

    #[test]
    fn nduseropt_dnssl_and_netlink_framing() {
        let body = nduseropt_payload(&dnssl_opt(&["lab.test"]), None);
        let mut datagram = Vec::new();
        for _ in 0..2 {
            datagram.extend(((NLMSG_HDR_LEN + body.len()) as u32).to_ne_bytes());
            datagram.extend(RTM_NEWNDUSEROPT.to_ne_bytes());
            datagram.extend([0; 10]);
            datagram.extend(&body);
        }
        let opts = split_netlink(&datagram);
        assert_eq!(opts.len(), 2);
        assert_eq!(
            (opts[0].source, &opts[0].dnssl[..]),
            (None, &["lab.test".to_string()][..])
        );
        for len in 0..datagram.len() {
            assert!(split_netlink(&datagram[..len]).len() <= 1);
        }
    }

    #[test]
    fn nduseropt_prefix_option_gives_empty_lists() {
        let prefix = prefix_opt("2001:db8:1::".parse().unwrap(), 64, 0xc0, 1, 1);
        let opt = parse_nduseropt(&nduseropt_payload(&prefix, Some(ROUTER))).unwrap();
        assert!(opt.rdnss.is_empty() && opt.dnssl.is_empty() && opt.rdnss_lifetime_secs == 0);
    }

    #[test]
    fn nduseropt_rejects_non_ra_and_overlong_opts_len() {
        let mut p = nduseropt_payload(&rdnss_opt(600, &[dns1()]), None);
        p[8] = 137;
        assert!(parse_nduseropt(&p).is_err());
        p[8] = 134;
        p[2..4].copy_from_slice(&200u16.to_ne_bytes());
        assert!(parse_nduseropt(&p).is_err());
    }

    #[test]
    fn router_solicitation_layout() {
        assert_eq!(router_solicitation(None), vec![133, 0, 0, 0, 0, 0, 0, 0]);
        let rs = router_solicitation(Some([2, 0, 0, 0, 0, 9]));
        assert_eq!(rs[8..], [1, 1, 2, 0, 0, 0, 0, 9]);
    }
}
