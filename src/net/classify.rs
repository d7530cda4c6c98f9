//! Pure: what the node found on its NICs (DHCPv4, SLAAC, router advertisements) and what the
//! reachability probes said → the kind of network the node is on, and what the farmer should fix.
//!
//! The classes follow the farmer's network design (ZOS v2: "IPv6 is the base, IPv4 is there to
//! accommodate the transition"):
//! - `public`: a routable IPv4 address on the node (OOB or public NIC) and IPv4 reaches the grid;
//! - `ipv6`: a global IPv6 address reaches the grid while IPv4 is private/NAT or absent;
//! - `hidden`: private or carrier-grade-NAT IPv4, no usable IPv6: workloads only through the
//!   overlay. A home router that hands out both NAT IPv4 and IPv6 (the IPv6 router's MAC is the
//!   IPv4 gateway's MAC) also makes the node hidden: home routers firewall inbound IPv6, and the
//!   design says "we assume these nodes to be HIDDEN";
//! - `offline`: no carrier, no DHCP, or nothing reaches the grid.
//!
//! Cases, first match wins:
//! 1. `no-carrier`: no NIC has a link.
//! 2. `no-dhcp`: no IPv4 lease on any NIC with a link, and no IPv6 that reaches the grid.
//! 3. `unreachable`: addresses, but neither family reaches the grid.
//! 4. `dc-two-nics`: besides the OOB NIC, another NIC carries global IPv6 and/or public IPv4;
//!    that NIC is the public NIC (topology dual-nic). Class public, ipv6 or hidden by what works.
//! 5. `ra-wants-dhcpv6`: no working IPv6, and a router advertises the M flag without a prefix for
//!    SLAAC: ZOS does no DHCPv6. Class from IPv4.
//! 6. IPv6 reaches the grid: `dc-public-v4-with-ipv6` (public IPv4), `dual-stack-home` (the same
//!    router MAC for both families: hidden), otherwise `dc-private-v4-with-ipv6` (also when no
//!    IPv4 lease at all).
//! 7. No working IPv6: `isp-without-ipv6` (public IPv4) or `home-nat-v4-only`.
//!
//! A probe result of `None` while the node has an address of that family means "not probed":
//! the family is assumed to work and a `not-probed` warning says so, so that a run with probes
//! disabled still classifies by addresses. NICs without carrier are ignored, except to be named
//! when no NIC has a link.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

/// What an address is, as far as reaching the grid is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AddrKind {
    Global,
    /// RFC 5737, RFC 3849, RFC 9637: counted as routable so that a namespace lab can stand in for
    /// the Internet, but warned about.
    Documentation,
    /// RFC 1918.
    Private,
    /// 100.64.0.0/10 (RFC 6598): the ISP's NAT, so the node is hidden over IPv4.
    Cgnat,
    LinkLocal,
    Loopback,
    /// fc00::/7 (RFC 4193): never reachable from the grid.
    Ula,
    /// fec0::/10: deprecated by RFC 3879, still sent by old routers.
    SiteLocal,
    Unspecified,
    Multicast,
    /// Special-purpose ranges no node address belongs in (0/8, 240/4, benchmarking, …).
    Reserved,
}

impl AddrKind {
    /// Whether the grid can reach an address of this kind (documentation ranges: in a lab).
    pub fn is_routable(self) -> bool {
        matches!(self, AddrKind::Global | AddrKind::Documentation)
    }
}

use AddrKind::*;

/// IANA special-purpose IPv4 registry, the parts a DHCP server could plausibly hand out.
/// First match wins, so a more specific range comes before the range that contains it;
/// anything unlisted is global.
const V4_RANGES: &[(u32, u8, AddrKind)] = &[
    (v4(0, 0, 0, 0), 32, Unspecified),
    (v4(0, 0, 0, 0), 8, Reserved), // "this network", RFC 791
    (v4(10, 0, 0, 0), 8, Private),
    (v4(100, 64, 0, 0), 10, Cgnat),
    (v4(127, 0, 0, 0), 8, Loopback),
    (v4(169, 254, 0, 0), 16, LinkLocal),
    (v4(172, 16, 0, 0), 12, Private),
    (v4(192, 0, 0, 0), 24, Reserved), // IETF protocol assignments
    (v4(192, 0, 2, 0), 24, Documentation),
    (v4(192, 88, 99, 0), 24, Reserved), // 6to4 relay anycast, RFC 7526
    (v4(192, 168, 0, 0), 16, Private),
    (v4(198, 18, 0, 0), 15, Reserved), // benchmarking, RFC 2544
    (v4(198, 51, 100, 0), 24, Documentation),
    (v4(203, 0, 113, 0), 24, Documentation),
    (v4(224, 0, 0, 0), 4, Multicast),
    (v4(240, 0, 0, 0), 4, Reserved), // includes 255.255.255.255
];

/// IPv4-mapped addresses (::ffff:0:0/96) are handled before this table. Only 2000::/3 is
/// allocated as global unicast (RFC 4291), so anything unlisted is reserved.
const V6_RANGES: &[(u128, u8, AddrKind)] = &[
    (0, 128, Unspecified),
    (1, 128, Loopback),
    (v6(0xff00, 0), 8, Multicast),
    (v6(0xfe80, 0), 10, LinkLocal),
    (v6(0xfec0, 0), 10, SiteLocal),
    (v6(0xfc00, 0), 7, Ula),
    (v6(0x2001, 0xdb8), 32, Documentation),
    (v6(0x3fff, 0), 20, Documentation), // RFC 9637
    (v6(0x2001, 2), 48, Reserved),      // benchmarking, RFC 5180
    (v6(0x2000, 0), 3, Global),
];

const fn v4(a: u8, b: u8, c: u8, d: u8) -> u32 {
    Ipv4Addr::new(a, b, c, d).to_bits()
}

/// The network address with the two leading 16-bit groups given, the rest zero.
const fn v6(g0: u16, g1: u16) -> u128 {
    Ipv6Addr::new(g0, g1, 0, 0, 0, 0, 0, 0).to_bits()
}

fn v4_range(a: Ipv4Addr) -> Option<(u32, u8, AddrKind)> {
    let a = a.to_bits();
    let mask = |len: u8| u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
    V4_RANGES
        .iter()
        .copied()
        .find(|&(net, len, _)| a & mask(len) == net)
}

fn v6_range(a: Ipv6Addr) -> Option<(u128, u8, AddrKind)> {
    let a = a.to_bits();
    let mask = |len: u8| u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
    V6_RANGES
        .iter()
        .copied()
        .find(|&(net, len, _)| a & mask(len) == net)
}

pub fn kind_v4(a: Ipv4Addr) -> AddrKind {
    v4_range(a).map_or(Global, |r| r.2)
}

pub fn kind_v6(a: Ipv6Addr) -> AddrKind {
    match a.to_ipv4_mapped() {
        Some(v4) => kind_v4(v4),
        None => v6_range(a).map_or(Reserved, |r| r.2),
    }
}

pub fn kind(a: IpAddr) -> AddrKind {
    match a {
        IpAddr::V4(a) => kind_v4(a),
        IpAddr::V6(a) => kind_v6(a),
    }
}

/// "192.0.2.0/24" for an address in a documentation range, for the warning.
fn documentation_range(a: IpAddr) -> Option<String> {
    let range = match a.to_canonical() {
        IpAddr::V4(a) => v4_range(a).map(|(n, l, k)| (IpAddr::from(Ipv4Addr::from_bits(n)), l, k)),
        IpAddr::V6(a) => v6_range(a).map(|(n, l, k)| (IpAddr::from(Ipv6Addr::from_bits(n)), l, k)),
    };
    let range = range.filter(|r| r.2 == Documentation);
    range.map(|(net, len, _)| format!("{net}/{len}"))
}

/// What the caller found on one NIC (DHCPv4, SLAAC, the last router advertisement).
#[derive(Debug, Clone, Default)]
pub struct NicFacts {
    pub name: String,
    pub mac: [u8; 6],
    pub carrier: bool,
    /// The NIC that got the management DHCPv4 lease.
    pub is_oob: bool,
    /// DHCPv4 address on this NIC.
    pub ipv4: Option<(Ipv4Addr, u8)>,
    /// MAC of this NIC's IPv4 default gateway, if known.
    pub ipv4_gateway_mac: Option<[u8; 6]>,
    /// Usable (DAD finished) addresses other than link-local.
    pub ipv6: Vec<(Ipv6Addr, u8)>,
    pub ipv6_dad_failed: Vec<Ipv6Addr>,
    /// None: no router advertisement seen on this NIC.
    pub ra: Option<RaFacts>,
    /// DHCPv4 ran on this NIC (it had carrier), whether or not it got a lease.
    pub dhcp4_tried: bool,
}

#[derive(Debug, Clone, Default)]
pub struct RaFacts {
    /// Source link-layer address option of the RA.
    pub router_mac: Option<[u8; 6]>,
    /// M flag: addresses by DHCPv6.
    pub managed: bool,
    /// O flag: other configuration by DHCPv6.
    pub other: bool,
    /// 0: the router is not a default router.
    pub router_lifetime_secs: u16,
    /// Prefix information options with the A flag (SLAAC).
    pub autonomous_prefixes: Vec<(Ipv6Addr, u8)>,
    pub non_autonomous_prefixes: Vec<(Ipv6Addr, u8)>,
    pub rdnss: Vec<Ipv6Addr>,
}

/// Whether each family reaches the grid. None: not probed (no address of that family, or probes
/// disabled).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reach {
    pub ipv4: Option<bool>,
    pub ipv6: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    Public,
    Ipv6,
    Hidden,
    Offline,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Topology {
    SingleNic,
    /// The OOB NIC plus a different NIC carrying public IPv6/IPv4.
    DualNic,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Case {
    NoCarrier,
    NoDhcp,
    HomeNatV4Only,
    DualStackHome,
    DcPrivateV4WithIpv6,
    DcPublicV4WithIpv6,
    DcTwoNics,
    IspWithoutIpv6,
    RaWantsDhcpv6,
    Unreachable,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Classification {
    pub class: Class,
    pub topology: Topology,
    pub case: Case,
    /// The NIC with the public role (may be the OOB NIC); None for hidden and offline nodes,
    /// except in `dc-two-nics` where the public segment's NIC is named even if it is broken.
    pub public_nic: Option<String>,
    /// One line, e.g. "HIDDEN node: private IPv4 behind NAT, no IPv6".
    pub headline: String,
    /// Plain sentences for the farmer: what it means, what to change.
    pub advice: Vec<String>,
    /// "token: text", e.g. "cgnat: eth0 100.64.0.7 is behind carrier-grade NAT: hidden".
    pub warnings: Vec<String>,
}

impl Classification {
    /// The block printed on the boot console (the console adds no timestamps to it).
    pub fn report(&self) -> String {
        let mut s = format!("  {}\n", self.headline);
        for a in &self.advice {
            s.push_str(&format!("    - {a}\n"));
        }
        for w in &self.warnings {
            s.push_str(&format!("    ! {w}\n"));
        }
        s
    }
}

fn mac_str(mac: [u8; 6]) -> String {
    let parts: Vec<String> = mac.iter().map(|b| format!("{b:02x}")).collect();
    parts.join(":")
}

impl NicFacts {
    /// "eth1 (02:00:00:00:00:02)": the MAC is what a farmer finds in the DHCP server and switch.
    fn label(&self) -> String {
        format!("{} ({})", self.name, mac_str(self.mac))
    }

    fn global_v6(&self) -> Option<Ipv6Addr> {
        self.ipv6
            .iter()
            .map(|a| a.0)
            .find(|a| kind_v6(*a).is_routable())
    }

    fn public_v4(&self) -> Option<Ipv4Addr> {
        self.ipv4.map(|a| a.0).filter(|a| kind_v4(*a).is_routable())
    }

    fn carries_public(&self) -> bool {
        self.global_v6().is_some() || self.public_v4().is_some()
    }

    /// The router asks for DHCPv6 (M flag) and offers nothing for SLAAC: ZOS gets no address.
    fn wants_dhcpv6(&self) -> bool {
        self.global_v6().is_none()
            && (self.ra.as_ref()).is_some_and(|r| r.managed && r.autonomous_prefixes.is_empty())
    }

    /// "10.0.0.5/24, 2a02:1802:5e::5/64", or "no address".
    fn addresses(&self) -> String {
        let v4 = self.ipv4.map(|(a, l)| format!("{a}/{l}"));
        let v6 = self.ipv6.iter().map(|(a, l)| format!("{a}/{l}"));
        let all: Vec<String> = v4.into_iter().chain(v6).collect();
        if all.is_empty() {
            "no address".into()
        } else {
            all.join(", ")
        }
    }
}

/// Classifies the node; see the module documentation for the rules.
pub fn classify(nics: &[NicFacts], reach: Reach) -> Classification {
    use Case::*;
    let up: Vec<&NicFacts> = nics.iter().filter(|n| n.carrier).collect();
    let Some(&first) = up.first() else {
        return no_carrier(nics);
    };
    let has_v4 = up.iter().any(|n| n.ipv4.is_some());
    let has_v6 = up.iter().any(|n| n.global_v6().is_some());
    let v4_ok = has_v4 && reach.ipv4 != Some(false);
    let v6_ok = has_v6 && reach.ipv6 != Some(false);
    let public_v4 = up.iter().any(|n| n.public_v4().is_some());
    let find = |f: &dyn Fn(&NicFacts) -> bool| up.iter().copied().find(|n| f(n));
    // The caller names the OOB NIC; failing that, a NAT lease looks most like management.
    let oob = find(&|n| n.is_oob)
        .or_else(|| find(&|n| n.ipv4.is_some() && n.public_v4().is_none()))
        .or_else(|| find(&|n| n.ipv4.is_some()));
    let second = oob.and_then(|o| find(&|n| !std::ptr::eq(n, o) && n.carries_public()));
    // The NIC the verdict is about: the public NIC of a two-NIC node, else the first with global
    // IPv6, else with public IPv4, else the OOB NIC.
    let main = second
        .or_else(|| find(&|n| n.global_v6().is_some()))
        .or_else(|| find(&|n| n.public_v4().is_some()))
        .or(oob)
        .unwrap_or(first);
    // One box doing both NAT and RA is a home/SOHO router, which firewalls inbound IPv6.
    let ra_mac = main.ra.as_ref().and_then(|r| r.router_mac);
    let same_router = ra_mac.is_some() && ra_mac == main.ipv4_gateway_mac;

    let case = if !has_v4 && !v6_ok {
        NoDhcp
    } else if !v4_ok && !v6_ok {
        Unreachable
    } else if second.is_some() {
        DcTwoNics
    } else if !v6_ok && up.iter().any(|n| n.wants_dhcpv6()) {
        RaWantsDhcpv6
    } else if v6_ok && public_v4 {
        DcPublicV4WithIpv6
    } else if v6_ok && same_router {
        DualStackHome
    } else if v6_ok {
        DcPrivateV4WithIpv6
    } else if public_v4 {
        IspWithoutIpv6
    } else {
        HomeNatV4Only
    };
    let class = match case {
        DualStackHome => Class::Hidden,
        _ if public_v4 && v4_ok => Class::Public,
        _ if v6_ok => Class::Ipv6,
        _ if v4_ok => Class::Hidden,
        _ => Class::Offline,
    };

    let (name, label) = (&main.name, main.label());
    let v6 = main.global_v6().map_or(String::new(), |a| a.to_string());
    let mut advice = Vec::new();
    let text = match case {
        // NoCarrier returned early, through no_carrier().
        NoCarrier | NoDhcp => {
            for n in &up {
                advice.push(match n.dhcp4_tried {
                    true => format!("{} has a link but no DHCPv4 server answered.", n.label()),
                    false => format!("{} has a link but DHCPv4 did not run on it.", n.label()),
                });
            }
            advice.push("Make the DHCP server on the management (OOB) segment hand this node an IPv4 address (by its MAC).".into());
            "link up, but no DHCPv4 lease and no IPv6".into()
        }
        Unreachable => {
            for n in up.iter().filter(|n| n.ipv4.is_some() || !n.ipv6.is_empty()) {
                advice.push(format!("{} has {}.", n.label(), n.addresses()));
            }
            advice.push("Check the default gateway, the NAT and the firewall for outgoing traffic, and DNS.".into());
            "the node has addresses but reaches the grid over neither IPv4 nor IPv6".into()
        }
        DcTwoNics => {
            let o = oob.unwrap_or(main); // always the OOB NIC: a second NIC needs a first
            let (oa, pa) = (o.addresses(), main.addresses());
            let ol = o.label();
            advice.push(format!(
                "Management (OOB) on {ol} with {oa}; public traffic on {label} with {pa}."
            ));
            if main.global_v6().is_none() && main.ra.is_none() {
                advice.push(format!("{label} got no IPv6 router advertisement: run a SLAAC router advertiser on the public segment."));
            }
            if main.public_v4().is_none() {
                advice.push(format!("{name} has no public IPv4: IPv4 leaves through the NAT of the management segment; add a small public IPv4 subnet on the public segment for IPv4 entry points."));
            }
            if main.global_v6().is_some() {
                advice.push("Do not firewall the IPv6 prefix on the public segment: the ports that services expose are not known in advance.".into());
            }
            format!("management on {}, public traffic on {name}", o.name)
        }
        RaWantsDhcpv6 => {
            for n in up.iter().filter(|n| n.wants_dhcpv6()) {
                let router = n.ra.as_ref().and_then(|r| r.router_mac);
                let router = router.map_or("unknown MAC".into(), mac_str);
                advice.push(format!("The router ({router}) on {} asks for DHCPv6 (M flag) and offers no prefix for SLAAC, so the node got no IPv6 address.", n.label()));
            }
            advice.push("ZOS does no DHCPv6: enable SLAAC on the router (a /64 prefix with the A flag, e.g. radvd AdvAutonomous on).".into());
            "the IPv6 router wants DHCPv6, which ZOS does not do".into()
        }
        DcPublicV4WithIpv6 => {
            let v4 = main.public_v4().map_or(String::new(), |a| a.to_string());
            advice.push(format!(
                "{name} has public IPv4 {v4} and global IPv6 {v6}: the best single-NIC setup."
            ));
            if !v4_ok {
                advice.push(format!("But IPv4 from {v4} does not reach the grid: check the IPv4 gateway and firewall."));
            }
            advice.push(
                "Keep the IPv6 prefix unfirewalled so that exposed services stay reachable.".into(),
            );
            match v4_ok {
                true => "public IPv4 and global IPv6 (best single-NIC setup)".into(),
                false => "global IPv6 works, public IPv4 does not reach the grid".into(),
            }
        }
        DualStackHome => {
            let router = ra_mac.map_or(String::new(), mac_str);
            let mac = mac_str(main.mac);
            advice.push(format!("{name} gets private IPv4 and global IPv6 ({v6}) from the same router ({router}); home routers block incoming IPv6, so the node is treated as hidden."));
            advice.push(format!("To make it reachable, allow incoming IPv6 on the router to this node's MAC {mac} or address {v6}; otherwise it stays hidden, which is fine for a home node."));
            "home router with NAT IPv4 and firewalled IPv6".into()
        }
        DcPrivateV4WithIpv6 => {
            advice.push(format!(
                "{name} reaches the grid over IPv6 ({v6}): fine for IPv6 workloads."
            ));
            advice.push(match has_v4 {
                true => "For IPv4 entry points into the farm, add a small public IPv4 subnet.".into(),
                false => "No DHCPv4 server answered: give the node an IPv4 address by DHCP on the management segment, for IPv4-only services.".into(),
            });
            advice.push("Do not firewall the IPv6 prefix: the ports that services expose are not known in advance.".into());
            match has_v4 {
                true => "private IPv4 behind NAT, global IPv6 reaches the grid".into(),
                false => "no IPv4 lease, global IPv6 reaches the grid".into(),
            }
        }
        IspWithoutIpv6 | HomeNatV4Only => {
            if case == IspWithoutIpv6 {
                advice.push(format!("{name} has a public IPv4 address, so IPv4 works; but the grid uses IPv6 as its base."));
                advice.push("Ask your ISP for an IPv6 prefix and run a SLAAC router advertiser (a /64) on this segment.".into());
            } else {
                advice.push("The node can run workloads through the overlay network but cannot expose services.".into());
                advice.push("To make it reachable, ask your ISP for IPv6 and let the router hand it out with SLAAC; in a datacentre, add a public segment with an IPv6 prefix.".into());
            }
            // A second cable with nothing on it is often the public segment left unconfigured.
            for n in &up {
                if !std::ptr::eq(*n, main) && n.ipv4.is_none() && n.ra.is_none() {
                    advice.push(format!("{} has a link but got no address and no IPv6 router advertisement: if it is the public segment, run a SLAAC router advertiser there.", n.label()));
                }
            }
            let v4 = if public_v4 {
                "public IPv4"
            } else {
                "private IPv4 behind NAT"
            };
            match has_v6 {
                true => format!("{v4}, IPv6 does not reach the grid"),
                false => format!("{v4}, no IPv6"),
            }
        }
    };
    let has_public_role = case == DcTwoNics || matches!(class, Class::Public | Class::Ipv6);
    let topology = match case {
        DcTwoNics => Topology::DualNic,
        _ => Topology::SingleNic,
    };
    Classification {
        class,
        topology,
        case,
        public_nic: has_public_role.then(|| main.name.clone()),
        headline: format!("{}: {text}", class_label(class)),
        advice,
        warnings: warnings(&up, reach, case, v4_ok, v6_ok),
    }
}

fn class_label(class: Class) -> &'static str {
    match class {
        Class::Public => "PUBLIC node",
        Class::Ipv6 => "IPv6 node",
        Class::Hidden => "HIDDEN node",
        Class::Offline => "OFFLINE",
    }
}

/// No NIC has a link: name them all, or say that none was found (a missing driver).
fn no_carrier(nics: &[NicFacts]) -> Classification {
    let all: Vec<String> = nics.iter().map(|n| n.label()).collect();
    let (text, advice) = match all.is_empty() {
        true => (
            "no network card found",
            "No network card was found: the driver for the NIC may be missing from the image."
                .to_string(),
        ),
        false => (
            "no NIC has a link",
            format!(
                "No link on {}: check the cable and the switch port.",
                all.join(", ")
            ),
        ),
    };
    Classification {
        class: Class::Offline,
        topology: Topology::SingleNic,
        case: Case::NoCarrier,
        public_nic: None,
        headline: format!("{}: {text}", class_label(Class::Offline)),
        advice: vec![advice],
        warnings: Vec::new(),
    }
}

/// Things worth fixing whatever the case: each "token: text", the token for tests and grep.
fn warnings(up: &[&NicFacts], reach: Reach, case: Case, v4_ok: bool, v6_ok: bool) -> Vec<String> {
    let mut w = Vec::new();
    for n in up {
        let (name, global_v6) = (&n.name, n.global_v6().is_some());
        let v4 = n.ipv4.map(|a| IpAddr::from(a.0));
        for a in v4
            .into_iter()
            .chain(n.ipv6.iter().map(|a| IpAddr::from(a.0)))
        {
            let not_global = "not global, the grid cannot reach it";
            match kind(a) {
                Documentation => {
                    let range = documentation_range(a).unwrap_or_default();
                    w.push(format!("documentation-prefix: {name} {a} is in {range}, a documentation range (lab?)"));
                }
                Cgnat => w.push(format!(
                    "cgnat: {name} {a} is behind carrier-grade NAT: hidden over IPv4"
                )),
                SiteLocal => w.push(format!(
                    "not-global: {name} {a} is site-local: {not_global}"
                )),
                // ULA beside a global address is normal on home routers; alone it is a dead end.
                Ula if !global_v6 => w.push(format!(
                    "not-global: {name} {a} is unique-local: {not_global}"
                )),
                _ => {}
            }
        }
        for a in &n.ipv6_dad_failed {
            w.push(format!(
                "dad-failed: {name} duplicate address {a}: another host on the segment uses it"
            ));
        }
        let Some(ra) = &n.ra else { continue };
        if ra.router_lifetime_secs == 0 {
            w.push(format!("ra-not-default-router: {name}: the router advertises prefixes but is not a default router (router lifetime 0)"));
        }
        for (p, l) in ra.autonomous_prefixes.iter().filter(|p| p.1 != 64) {
            w.push(format!(
                "prefix-not-64: {name}: {p}/{l} is advertised for SLAAC, which needs a /64"
            ));
        }
        if ra.autonomous_prefixes.is_empty() && !global_v6 {
            for (p, l) in &ra.non_autonomous_prefixes {
                w.push(format!("prefix-not-autonomous: {name}: {p}/{l} is advertised without the A flag, so SLAAC makes no address"));
            }
        }
        if n.wants_dhcpv6() && case != Case::RaWantsDhcpv6 {
            w.push(format!("dhcpv6-only: {name}: the router asks for DHCPv6, which ZOS does not do; enable SLAAC (A flag)"));
        }
    }
    if reach.ipv6 == Some(false) && up.iter().any(|n| n.ra.is_some()) {
        w.push("ipv6-unreachable: IPv6 address but the grid is not reachable over IPv6: check the firewall/route".into());
    }
    if reach.ipv4 == Some(false) && up.iter().any(|n| n.ipv4.is_some()) {
        w.push("ipv4-unreachable: IPv4 address but the grid is not reachable over IPv4: check the gateway/NAT".into());
    }
    // With IPv4 working, DNS over IPv4 (from the DHCPv4 lease) covers for a missing RDNSS.
    let ras = || up.iter().filter_map(|n| n.ra.as_ref());
    if v6_ok && !v4_ok && ras().all(|r| r.rdnss.is_empty()) {
        let why = match ras().any(|r| r.other) {
            true => " (the O flag says DNS comes by DHCPv6, which ZOS does not do)",
            false => "",
        };
        w.push(format!("no-rdnss: only IPv6 works and no router advertisement names a DNS server (RDNSS){why}: names may not resolve"));
    }
    let probes = [
        ("IPv4", reach.ipv4, up.iter().any(|n| n.ipv4.is_some())),
        (
            "IPv6",
            reach.ipv6,
            up.iter().any(|n| n.global_v6().is_some()),
        ),
    ];
    for (family, _, _) in probes.iter().filter(|p| p.1.is_none() && p.2) {
        w.push(format!(
            "not-probed: {family} reachability was not checked; assumed to work"
        ));
    }
    w
}

#[cfg(test)]
mod tests {
    use super::{Case::*, Class::*, Topology::*, *};

    const NAT4: &str = "192.168.1.10/24";
    const PUB4: &str = "185.69.166.10/24";
    const PUB6: &str = "2a02:1802:5e::10/64";
    /// Last byte of the IPv4 gateway's MAC, and of a different (datacentre) IPv6 router's.
    const GW: u8 = 0xfe;
    const RTR: u8 = 0xfd;
    const BOTH: Reach = reach(Some(true), Some(true));
    const V4_ONLY: Reach = reach(Some(true), None);

    const fn reach(ipv4: Option<bool>, ipv6: Option<bool>) -> Reach {
        Reach { ipv4, ipv6 }
    }

    fn mac(last: u8) -> [u8; 6] {
        [2, 0, 0, 0, 0, last]
    }

    /// "a/len" → (address, len); test data only.
    fn cidr<T: std::str::FromStr<Err: std::fmt::Debug>>(s: &str) -> (T, u8) {
        let (a, l) = s.split_once('/').unwrap_or((s, "64"));
        (a.parse().expect("address"), l.parse().expect("length"))
    }

    /// A NIC with a link on which DHCPv4 ran; MAC 02:00:00:00:00:<last>.
    fn nic(name: &str, last: u8) -> NicFacts {
        let mut n = NicFacts::default();
        (n.name, n.mac, n.carrier, n.dhcp4_tried) = (name.into(), mac(last), true, true);
        n
    }

    /// eth0, the OOB NIC, with a DHCPv4 lease `a` from gateway GW.
    fn oob(a: &str) -> NicFacts {
        let mut n = nic("eth0", 1).v4(a, GW);
        n.is_oob = true;
        n
    }

    impl NicFacts {
        fn v4(mut self, a: &str, gw: u8) -> Self {
            (self.ipv4, self.ipv4_gateway_mac) = (Some(cidr(a)), Some(mac(gw)));
            self
        }
        /// An RA from router 02:..:<router> offering the address's /64 for SLAAC, and the address.
        fn slaac(mut self, a: &str, router: u8) -> Self {
            let (addr, len): (Ipv6Addr, u8) = cidr(a);
            let prefix = Ipv6Addr::from_bits(addr.to_bits() & !(u128::MAX >> 64));
            self.ipv6.push((addr, len));
            self.edit_ra(|r| {
                (r.router_mac, r.router_lifetime_secs) = (Some(mac(router)), 1800);
                (r.autonomous_prefixes, r.rdnss) = (vec![(prefix, 64)], vec![prefix]);
            })
        }
        fn edit_ra(mut self, f: impl FnOnce(&mut RaFacts)) -> Self {
            f(self.ra.get_or_insert_with(RaFacts::default));
            self
        }
    }

    /// Asserts the verdict and that headline or advice says `phrase`.
    fn check(c: &Classification, want: (Class, Case, Topology), phrase: &str) {
        assert_eq!((c.class, c.case, c.topology), want, "{}", c.report());
        let all = format!("{}\n{}", c.headline, c.advice.join("\n"));
        assert!(
            all.contains(phrase),
            "missing {phrase:?} in:\n{}",
            c.report()
        );
    }

    /// Whether a warning with this token mentions `text` ("" for any).
    fn warned(c: &Classification, token: &str, text: &str) -> bool {
        let token = format!("{token}: ");
        (c.warnings.iter()).any(|w| w.starts_with(&token) && w.contains(text))
    }

    #[test]
    fn address_kind_table() {
        // Each range's first and last address and the neighbours just outside it.
        let rows = "0.0.0.0 unspecified 0.0.0.1 reserved 0.255.255.255 reserved 1.0.0.0 global
            9.255.255.255 global 10.0.0.0 private 10.255.255.255 private 11.0.0.0 global
            100.63.255.255 global 100.64.0.0 cgnat 100.127.255.255 cgnat 100.128.0.0 global
            126.255.255.255 global 127.0.0.1 loopback 128.0.0.0 global 169.253.255.255 global
            169.254.0.0 link-local 169.254.255.255 link-local 169.255.0.0 global
            172.15.255.255 global 172.16.0.0 private 172.31.255.255 private 172.32.0.0 global
            191.255.255.255 global 192.0.0.0 reserved 192.0.0.255 reserved 192.0.1.255 global
            192.0.2.0 documentation 192.0.2.255 documentation 192.0.3.0 global
            192.88.99.1 reserved 192.167.255.255 global 192.168.0.0 private
            192.168.255.255 private 192.169.0.0 global 198.17.255.255 global 198.18.0.0 reserved
            198.19.255.255 reserved 198.20.0.0 global 198.51.99.255 global
            198.51.100.0 documentation 198.51.100.255 documentation 198.51.101.0 global
            203.0.112.255 global 203.0.113.0 documentation 203.0.113.255 documentation
            203.0.114.0 global 223.255.255.255 global 224.0.0.0 multicast
            239.255.255.255 multicast 240.0.0.0 reserved 255.255.255.255 reserved
            :: unspecified ::1 loopback ::2 reserved ::ffff:10.1.2.3 private
            ::ffff:8.8.8.8 global ::ffff:192.0.2.1 documentation ::ffff:100.64.0.1 cgnat
            1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff reserved 2000:: global 2001:1::1 global
            2001:2:: reserved 2001:2:0:ffff:ffff:ffff:ffff:ffff reserved 2001:2:1:: global
            2001:db7:ffff:ffff:ffff:ffff:ffff:ffff global 2001:db8:: documentation
            2001:db8:ffff:ffff:ffff:ffff:ffff:ffff documentation 2001:db9:: global
            2a02:1802:5e::1 global 3ffe:ffff::1 global 3fff:: documentation
            3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff documentation 3fff:1000:: global
            3fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff global 4000:: reserved
            fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff reserved fc00:: ula
            fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ula fe00:: reserved fe7f:ffff::1 reserved
            fe80:: link-local febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff link-local fec0:: site-local
            feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff site-local ff00:: multicast ff02::1 multicast";
        let words: Vec<&str> = rows.split_whitespace().collect();
        assert!(words.len() > 150 && words.len().is_multiple_of(2));
        for row in words.chunks(2) {
            let ip: IpAddr = row[0].parse().expect("test address");
            let got = serde_json::to_string(&kind(ip)).unwrap_or_default();
            assert_eq!(got, format!("\"{}\"", row[1]), "{}", row[0]);
        }
    }

    #[test]
    fn only_global_and_documentation_are_routable() {
        let all = [
            Global,
            Documentation,
            Private,
            Cgnat,
            LinkLocal,
            Loopback,
            Ula,
        ];
        for k in all
            .into_iter()
            .chain([SiteLocal, Unspecified, Multicast, Reserved])
        {
            assert_eq!(
                k.is_routable(),
                matches!(k, Global | Documentation),
                "{k:?}"
            );
        }
    }

    #[test]
    fn verdict_names_serialize_as_the_state_file_spells_them() {
        let json = |v: serde_json::Result<String>| v.unwrap_or_default();
        assert_eq!(json(serde_json::to_string(&Ipv6)), "\"ipv6\"");
        assert_eq!(
            json(serde_json::to_string(&DcPrivateV4WithIpv6)),
            "\"dc-private-v4-with-ipv6\""
        );
        assert_eq!(json(serde_json::to_string(&DualNic)), "\"dual-nic\"");
    }

    #[test]
    fn no_link_anywhere_is_offline_and_says_check_the_cable() {
        let (mut eth0, mut eth1) = (nic("eth0", 1), nic("eth1", 2));
        (eth0.carrier, eth1.carrier) = (false, false);
        let c = classify(&[eth0, eth1], Reach::default());
        check(&c, (Offline, NoCarrier, SingleNic), "check the cable");
        assert!(c.advice[0].contains("eth1 (02:00:00:00:00:02)"));
        let none = classify(&[], Reach::default());
        let says = "driver for the NIC may be missing";
        check(&none, (Offline, NoCarrier, SingleNic), says);
    }

    #[test]
    fn link_without_lease_is_offline_and_asks_for_a_dhcp_server() {
        let c = classify(&[nic("eth0", 1)], Reach::default());
        let says = "eth0 (02:00:00:00:00:01) has a link but no DHCPv4 server answered";
        check(&c, (Offline, NoDhcp, SingleNic), says);
        assert_eq!(c.public_nic, None);
    }

    #[test]
    fn addresses_without_reach_are_offline_and_say_check_the_gateway() {
        let c = classify(&[oob(NAT4)], reach(Some(false), None));
        let says = "Check the default gateway";
        check(&c, (Offline, Unreachable, SingleNic), says);
        assert!(c.advice[0].contains("192.168.1.10/24"));
    }

    #[test]
    fn home_nat_without_ipv6_is_hidden_and_says_ask_for_ipv6() {
        let c = classify(&[oob(NAT4)], V4_ONLY);
        let says = "ask your ISP for IPv6";
        check(&c, (Hidden, HomeNatV4Only, SingleNic), says);
        assert_eq!(c.headline, "HIDDEN node: private IPv4 behind NAT, no IPv6");
        assert_eq!((c.public_nic, c.warnings), (None, vec![]));
    }

    #[test]
    fn public_ipv4_without_ipv6_is_public_and_says_ask_the_isp() {
        let c = classify(&[oob(PUB4)], V4_ONLY);
        let says = "Ask your ISP for an IPv6 prefix";
        check(&c, (Public, IspWithoutIpv6, SingleNic), says);
        assert_eq!(c.public_nic.as_deref(), Some("eth0"));
    }

    #[test]
    fn managed_ra_without_slaac_prefix_says_zos_does_no_dhcpv6() {
        let dhcpv6 = |r: &mut RaFacts| (r.managed, r.router_mac) = (true, Some(mac(GW)));
        let c = classify(&[oob(NAT4).edit_ra(dhcpv6)], V4_ONLY);
        let says = "ZOS does no DHCPv6: enable SLAAC";
        check(&c, (Hidden, RaWantsDhcpv6, SingleNic), says);
        assert!(c.advice[0].contains("(02:00:00:00:00:fe) on eth0"));
        assert!(!warned(&c, "dhcpv6-only", ""), "the case already says it");
        let c = classify(&[oob(PUB4).edit_ra(dhcpv6)], V4_ONLY);
        check(&c, (Public, RaWantsDhcpv6, SingleNic), "AdvAutonomous on");
    }

    #[test]
    fn home_router_with_ipv6_is_hidden_and_says_open_the_firewall() {
        let c = classify(&[oob(NAT4).slaac(PUB6, GW)], BOTH);
        let phrase = "allow incoming IPv6 on the router to this node's MAC 02:00:00:00:00:01";
        check(&c, (Hidden, DualStackHome, SingleNic), phrase);
        assert_eq!(c.public_nic, None);
    }

    #[test]
    fn private_v4_with_ipv6_from_another_router_is_ipv6_and_says_dont_firewall_the_prefix() {
        let c = classify(&[oob(NAT4).slaac(PUB6, RTR)], BOTH);
        let says = "Do not firewall the IPv6 prefix";
        check(&c, (Ipv6, DcPrivateV4WithIpv6, SingleNic), says);
        assert!(c
            .advice
            .iter()
            .any(|a| a.contains("small public IPv4 subnet")));
        assert_eq!(c.public_nic.as_deref(), Some("eth0"));
        // An RA without a source link-layer option cannot prove it comes from the home router.
        let unknown = oob(NAT4).slaac(PUB6, GW).edit_ra(|r| r.router_mac = None);
        assert_eq!(classify(&[unknown], BOTH).case, DcPrivateV4WithIpv6);
    }

    #[test]
    fn ipv6_without_any_lease_is_ipv6_and_asks_for_dhcp4() {
        let c = classify(&[nic("eth0", 1).slaac(PUB6, RTR)], reach(None, Some(true)));
        let says = "No DHCPv4 server answered";
        check(&c, (Ipv6, DcPrivateV4WithIpv6, SingleNic), says);
        assert_eq!(
            c.headline,
            "IPv6 node: no IPv4 lease, global IPv6 reaches the grid"
        );
    }

    #[test]
    fn public_v4_with_ipv6_on_one_nic_is_the_best_single_nic_setup() {
        let c = classify(&[oob(PUB4).slaac(PUB6, GW)], BOTH);
        let says = "the best single-NIC setup";
        check(&c, (Public, DcPublicV4WithIpv6, SingleNic), says);
        assert_eq!(c.public_nic.as_deref(), Some("eth0"));
    }

    #[test]
    fn public_v4_that_does_not_reach_leaves_an_ipv6_node_and_says_check_ipv4() {
        let c = classify(
            &[oob(PUB4).slaac(PUB6, RTR)],
            reach(Some(false), Some(true)),
        );
        let says = "IPv4 from 185.69.166.10 does not reach the grid";
        check(&c, (Ipv6, DcPublicV4WithIpv6, SingleNic), says);
        assert!(warned(&c, "ipv4-unreachable", "check the gateway/NAT"));
    }

    #[test]
    fn second_nic_with_public_ipv6_is_dual_nic_ipv6_and_asks_for_public_v4() {
        let c = classify(&[oob(NAT4), nic("eth1", 2).slaac(PUB6, RTR)], BOTH);
        check(&c, (Ipv6, DcTwoNics, DualNic), "eth1 has no public IPv4");
        assert!(c.advice[0].starts_with("Management (OOB) on eth0 (02:00:00:00:00:01)"));
        assert_eq!(c.public_nic.as_deref(), Some("eth1"));
    }

    #[test]
    fn second_nic_with_public_v4_and_ipv6_is_dual_nic_public() {
        let public = nic("eth1", 2).v4(PUB4, RTR).slaac(PUB6, RTR);
        let c = classify(&[oob(NAT4), public], BOTH);
        let says = "management on eth0, public traffic on eth1";
        check(&c, (Public, DcTwoNics, DualNic), says);
        assert_eq!(c.public_nic.as_deref(), Some("eth1"));
    }

    #[test]
    fn public_segment_without_ra_says_run_a_router_advertiser_on_it() {
        let c = classify(&[oob(NAT4), nic("eth1", 2).v4(PUB4, RTR)], V4_ONLY);
        let phrase = "eth1 (02:00:00:00:00:02) got no IPv6 router advertisement: run a SLAAC";
        check(&c, (Public, DcTwoNics, DualNic), phrase);
        // A second link with nothing at all on it leaves the node hidden, and is named.
        let c = classify(&[oob(NAT4), nic("eth1", 2)], V4_ONLY);
        let phrase = "eth1 (02:00:00:00:00:02) has a link but got no address";
        check(&c, (Hidden, HomeNatV4Only, SingleNic), phrase);
    }

    #[test]
    fn nic_without_carrier_beside_a_working_one_changes_nothing() {
        let works = oob(NAT4).slaac(PUB6, RTR);
        let mut dead = nic("eth1", 2).v4(PUB4, RTR).slaac(PUB6, RTR);
        dead.carrier = false;
        let alone = classify(std::slice::from_ref(&works), BOTH);
        assert_eq!(classify(&[dead, works], BOTH), alone);
    }

    #[test]
    fn cgnat_is_hidden_and_warns() {
        let c = classify(&[oob("100.64.3.7/10")], V4_ONLY);
        let says = "private IPv4 behind NAT";
        check(&c, (Hidden, HomeNatV4Only, SingleNic), says);
        assert!(warned(&c, "cgnat", "eth0 100.64.3.7"));
    }

    #[test]
    fn documentation_prefix_counts_as_public_but_warns() {
        let lab = oob("198.51.100.10/24").slaac("2001:db8:1::10/64", GW);
        let c = classify(&[lab], BOTH);
        let says = "best single-NIC";
        check(&c, (Public, DcPublicV4WithIpv6, SingleNic), says);
        assert!(warned(&c, "documentation-prefix", "in 198.51.100.0/24"));
        assert!(warned(&c, "documentation-prefix", "in 2001:db8::/32"));
    }

    #[test]
    fn ula_only_or_site_local_ipv6_warns_not_global() {
        let c = classify(&[oob(NAT4).slaac("fd00:1::10/64", GW)], V4_ONLY);
        check(&c, (Hidden, HomeNatV4Only, SingleNic), "no IPv6");
        assert!(warned(&c, "not-global", "eth0 fd00:1::10 is unique-local"));
        let site = classify(&[oob(NAT4).slaac("fec0::10/64", GW)], V4_ONLY);
        assert!(warned(&site, "not-global", "site-local"));
        // ULA beside a global address is common on home routers and harmless.
        let both = oob(NAT4).slaac("fd00::10/64", RTR).slaac(PUB6, RTR);
        assert!(!warned(&classify(&[both], BOTH), "not-global", ""));
    }

    #[test]
    fn router_lifetime_zero_warns_not_a_default_router() {
        let n = oob(NAT4).edit_ra(|r| r.autonomous_prefixes = vec![cidr(PUB6)]);
        let c = classify(&[n], V4_ONLY);
        assert!(warned(&c, "ra-not-default-router", "router lifetime 0"));
    }

    #[test]
    fn slaac_prefix_that_is_not_a_64_or_not_autonomous_warns() {
        let n = oob(NAT4).edit_ra(|r| r.autonomous_prefixes = vec![cidr("2a02:1802:5e::/56")]);
        let c = classify(&[n], V4_ONLY);
        let says = "2a02:1802:5e::/56 is advertised for SLAAC, which needs a /64";
        assert!(warned(&c, "prefix-not-64", says));
        let n = oob(NAT4).edit_ra(|r| r.non_autonomous_prefixes = vec![cidr(PUB6)]);
        let c = classify(&[n], V4_ONLY);
        assert!(warned(&c, "prefix-not-autonomous", "without the A flag"));
    }

    #[test]
    fn failed_dad_warns_duplicate_address() {
        let mut n = oob(NAT4).slaac(PUB6, RTR);
        n.ipv6_dad_failed = n.ipv6.drain(..).map(|a| a.0).collect();
        let c = classify(&[n], V4_ONLY);
        assert!(warned(
            &c,
            "dad-failed",
            "eth0 duplicate address 2a02:1802:5e::10"
        ));
        assert_eq!(c.case, HomeNatV4Only);
    }

    #[test]
    fn ipv6_address_that_does_not_reach_warns_and_does_not_count() {
        let c = classify(
            &[oob(PUB4).slaac(PUB6, RTR)],
            reach(Some(true), Some(false)),
        );
        let says = "public IPv4, IPv6 does not reach the grid";
        check(&c, (Public, IspWithoutIpv6, SingleNic), says);
        assert!(warned(&c, "ipv6-unreachable", "check the firewall/route"));
    }

    #[test]
    fn missing_rdnss_warns_only_when_only_ipv6_works() {
        let n = oob(NAT4)
            .slaac(PUB6, RTR)
            .edit_ra(|r| (r.rdnss, r.other) = (vec![], true));
        let both = classify(std::slice::from_ref(&n), BOTH);
        assert!(!warned(&both, "no-rdnss", ""));
        let c = classify(&[n], reach(Some(false), Some(true)));
        assert_eq!(c.class, Ipv6);
        assert!(warned(&c, "no-rdnss", "O flag") && warned(&c, "ipv4-unreachable", ""));
    }

    #[test]
    fn unprobed_family_is_assumed_to_work_and_warns() {
        let c = classify(&[oob(PUB4)], Reach::default());
        assert_eq!((c.class, c.case), (Public, IspWithoutIpv6));
        assert!(warned(&c, "not-probed", "IPv4"));
    }

    #[test]
    fn report_indents_headline_advice_and_warnings() {
        let r = classify(&[oob("100.64.3.7/10")], V4_ONLY).report();
        let lines: Vec<&str> = r.lines().collect();
        assert_eq!(lines[0], "  HIDDEN node: private IPv4 behind NAT, no IPv6");
        assert!(lines[1].starts_with("    - The node can run workloads"));
        assert!(lines
            .last()
            .is_some_and(|l| l.starts_with("    ! cgnat: eth0 100.64.3.7")));
    }
}
