//! IPv6 SLAAC: the kernel does the protocol; we set it up for a node (sysctls), listen
//! (netlink, router advertisements, ND user options) and judge readiness (`watch`).
pub mod ra;
pub mod watch;

use std::io;
use std::net::{IpAddr, Ipv6Addr};
use std::path::Path;

use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload};
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};

use watch::{AddrFlags, Input};

/// The per-interface sysctls a node needs, written before the link comes up so that the very
/// first router solicitation and DAD already use them. Why each:
/// - `disable_ipv6=0`, `accept_ra=2` (accept RAs even if forwarding gets enabled), `autoconf=1`;
/// - `addr_gen_mode=0`: EUI-64 addresses, stable and derived from the MAC, so a farmer can write
///   a firewall rule for the node; `use_tempaddr=0`: no privacy addresses on a server;
/// - `router_solicitation_delay=0` (RFC 4861 allows skipping the random delay when the link is
///   new to the host), `router_solicitation_interval=1`: a lost RS is retried after 1 s, not 4;
/// - `optimistic_dad=1`, `use_optimistic=1` (RFC 4429), where the kernel has them: the address
///   is usable while DAD runs;
/// - `neigh/IF/retrans_time_ms=100`: DAD waits 100 ms for an answer instead of 1 s. A duplicate
///   on the same segment answers in well under that; a router's RA can still set its own value.
pub const SYSCTLS: &[(&str, &str)] = &[
    ("conf/{}/disable_ipv6", "0"),
    ("conf/{}/accept_ra", "2"),
    ("conf/{}/autoconf", "1"),
    ("conf/{}/addr_gen_mode", "0"),
    ("conf/{}/use_tempaddr", "0"),
    ("conf/{}/router_solicitation_delay", "0"),
    ("conf/{}/router_solicitation_interval", "1"),
    ("conf/{}/optimistic_dad", "1"),
    ("conf/{}/use_optimistic", "1"),
    ("neigh/{}/retrans_time_ms", "100"),
];

/// Writes [`SYSCTLS`] for `ifname` under `root` (normally /proc/sys/net/ipv6). A sysctl the
/// kernel lacks (optimistic DAD is a build option) is skipped; any other failure is returned.
pub fn prepare(root: &Path, ifname: &str) -> io::Result<Vec<String>> {
    let mut skipped = Vec::new();
    for (pattern, value) in SYSCTLS {
        let path = root.join(pattern.replace("{}", ifname));
        match std::fs::write(&path, value) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                skipped.push(path.display().to_string())
            }
            Err(e) => {
                return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display())));
            }
        }
    }
    Ok(skipped)
}

/// For a link that must get no IPv6 address of its own (a VLAN parent whose public segment is
/// tagged, a management VLAN): no RAs accepted, no autoconfiguration. Link-local stays.
pub fn quiet(root: &Path, ifname: &str) -> io::Result<()> {
    for key in ["accept_ra", "autoconf"] {
        let path = root.join(format!("conf/{ifname}/{key}"));
        std::fs::write(&path, "0")
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    }
    Ok(())
}

/// Turns an IPv6 address or default-route notification into a watcher input.
pub fn from_netlink(msg: &NetlinkMessage<RouteNetlinkMessage>) -> Option<Input> {
    match &msg.payload {
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewAddress(a)) => address_input(a, false),
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelAddress(a)) => address_input(a, true),
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRoute(r)) => route_input(r, false),
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelRoute(r)) => route_input(r, true),
        _ => None,
    }
}

fn address_input(a: &AddressMessage, removed: bool) -> Option<Input> {
    if a.header.family != AddressFamily::Inet6 {
        return None;
    }
    let mut address = None;
    // The header carries the low 8 flag bits; IFA_FLAGS (when present) all 32.
    let mut bits = u32::from(a.header.flags.bits());
    for attr in &a.attributes {
        match attr {
            AddressAttribute::Address(IpAddr::V6(v6)) => address = Some(*v6),
            AddressAttribute::Flags(f) => bits = f.bits(),
            _ => {}
        }
    }
    let f = AddressFlags::from_bits_retain(bits);
    Some(Input::Address {
        ifindex: a.header.index,
        address: address?,
        prefix: a.header.prefix_len,
        flags: AddrFlags {
            tentative: f.contains(AddressFlags::Tentative),
            dad_failed: f.contains(AddressFlags::Dadfailed),
            optimistic: f.contains(AddressFlags::Optimistic),
            deprecated: f.contains(AddressFlags::Deprecated),
        },
        removed,
    })
}

fn route_input(r: &RouteMessage, removed: bool) -> Option<Input> {
    if r.header.address_family != AddressFamily::Inet6 || r.header.destination_prefix_length != 0 {
        return None;
    }
    let mut gateway: Option<Ipv6Addr> = None;
    let mut oif = None;
    for attr in &r.attributes {
        match attr {
            RouteAttribute::Gateway(RouteAddress::Inet6(g)) => gateway = Some(*g),
            RouteAttribute::Oif(i) => oif = Some(*i),
            _ => {}
        }
    }
    Some(Input::DefaultRoute {
        ifindex: oif?,
        gateway: gateway?,
        removed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysctls_are_written_per_interface_and_missing_ones_skipped() {
        let root = std::env::temp_dir().join(format!("zos-sysctl-{}", std::process::id()));
        for dir in ["conf/eth1", "neigh/eth1"] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
        }
        // Pretend this kernel lacks optimistic DAD: make that path impossible to create.
        std::fs::create_dir_all(root.join("conf/eth1/optimistic_dad")).unwrap();
        let err = prepare(&root, "eth1").unwrap_err();
        assert!(err.to_string().contains("optimistic_dad"), "{err}");
        std::fs::remove_dir_all(root.join("conf/eth1/optimistic_dad")).unwrap();
        let skipped = prepare(&root, "eth1").unwrap();
        assert!(skipped.is_empty());
        assert_eq!(
            std::fs::read_to_string(root.join("conf/eth1/addr_gen_mode")).unwrap(),
            "0"
        );
        assert_eq!(
            std::fs::read_to_string(root.join("neigh/eth1/retrans_time_ms")).unwrap(),
            "100"
        );
        let skipped = prepare(&root, "eth9").unwrap();
        assert_eq!(skipped.len(), SYSCTLS.len(), "nothing exists for eth9");
        std::fs::remove_dir_all(root).unwrap();
    }
}
