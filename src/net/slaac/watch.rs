//! Sans-IO SLAAC watcher: netlink address/route events, router advertisements and ND user
//! options in; per-NIC readiness and a diagnosis out.
//!
//! "Ready" is a policy with a name (systemd-networkd's lesson): a NIC is ready for IPv6 when it
//! has a *global* address whose DAD has finished and a default route learned from an RA.
//! Link-local, ULA (fc00::/7) and site-local (fec0::/10) addresses are not global.
use std::collections::BTreeMap;
use std::net::Ipv6Addr;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::ra::RouterAdvert;
use crate::net::classify::{kind_v6, AddrKind};

/// See [`Watch::settled`].
pub const SILENT_GRACE: Duration = Duration::from_secs(1);

/// The address flags the kernel reports that matter to readiness (IFA_F_*).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AddrFlags {
    pub tentative: bool,
    pub dad_failed: bool,
    pub optimistic: bool,
    pub deprecated: bool,
}

/// One thing that happened, as the driver saw it.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// RTM_NEWADDR (or RTM_DELADDR with `removed`).
    Address {
        ifindex: u32,
        address: Ipv6Addr,
        prefix: u8,
        flags: AddrFlags,
        removed: bool,
    },
    /// RTM_NEWROUTE/DELROUTE for ::/0 with a gateway.
    DefaultRoute {
        ifindex: u32,
        gateway: Ipv6Addr,
        removed: bool,
    },
    /// A router advertisement received on the NIC.
    Advert { ifindex: u32, ra: RouterAdvert },
    /// RDNSS/DNSSL the kernel forwarded as an ND user option.
    Dns {
        ifindex: u32,
        servers: Vec<Ipv6Addr>,
        search: Vec<String>,
    },
}

/// A change worth a console line.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Ready {
        ifindex: u32,
        address: Ipv6Addr,
        prefix: u8,
        after: Duration,
    },
    DadFailed {
        ifindex: u32,
        address: Ipv6Addr,
    },
    FirstAdvert {
        ifindex: u32,
        router: Ipv6Addr,
    },
    Lost {
        ifindex: u32,
    },
}

/// What SLAAC gave one NIC: the typed result handed to classification and the state file.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SlaacState {
    /// Global addresses whose DAD finished.
    pub addresses: Vec<(Ipv6Addr, u8)>,
    /// Other addresses (ULA, site-local) that are usable locally only.
    pub local_addresses: Vec<(Ipv6Addr, u8)>,
    pub router: Option<Ipv6Addr>,
    pub dns: Vec<Ipv6Addr>,
    pub search: Vec<String>,
    pub dad_failed: Vec<Ipv6Addr>,
    pub last_advert: Option<RouterAdvert>,
    pub ready_after_ms: Option<u64>,
}

#[derive(Debug, Default)]
struct Nic {
    name: String,
    started: Option<Instant>,
    addrs: BTreeMap<Ipv6Addr, (u8, AddrFlags)>,
    router: Option<Ipv6Addr>,
    advert: Option<RouterAdvert>,
    dns: Vec<Ipv6Addr>,
    search: Vec<String>,
    dad_failed: Vec<Ipv6Addr>,
    ready: Option<(Ipv6Addr, u8, Duration)>,
}

impl Nic {
    fn usable_global(&self) -> Option<(Ipv6Addr, u8)> {
        self.addrs
            .iter()
            .find(|(a, (_, f))| is_global(**a) && !f.tentative && !f.dad_failed && !f.deprecated)
            .map(|(a, (p, _))| (*a, *p))
    }
}

fn is_global(a: Ipv6Addr) -> bool {
    matches!(kind_v6(a), AddrKind::Global | AddrKind::Documentation)
}

/// Watches SLAAC on a set of NICs.
#[derive(Debug, Default)]
pub struct Watch {
    nics: BTreeMap<u32, Nic>,
}

impl Watch {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts watching a NIC; `now` is when its link came up (readiness is timed from it).
    pub fn add(&mut self, ifindex: u32, name: &str, now: Instant) {
        let nic = self.nics.entry(ifindex).or_default();
        nic.name = name.to_string();
        nic.started.get_or_insert(now);
    }

    pub fn handle(&mut self, now: Instant, input: Input) -> Vec<Change> {
        let ifindex = match &input {
            Input::Address { ifindex, .. }
            | Input::DefaultRoute { ifindex, .. }
            | Input::Advert { ifindex, .. }
            | Input::Dns { ifindex, .. } => *ifindex,
        };
        let Some(nic) = self.nics.get_mut(&ifindex) else {
            return Vec::new();
        };
        let mut changes = Vec::new();
        match input {
            Input::Address {
                address,
                prefix,
                flags,
                removed,
                ..
            } => {
                // With optimistic DAD the kernel deletes a SLAAC address whose DAD failed, and
                // the DADFAILED flag is only on that RTM_DELADDR (it adds the address again at
                // the next RA, and it fails again): look at the flags on removals too.
                if flags.dad_failed && !nic.dad_failed.contains(&address) {
                    nic.dad_failed.push(address);
                    changes.push(Change::DadFailed { ifindex, address });
                }
                if removed {
                    nic.addrs.remove(&address);
                } else {
                    nic.addrs.insert(address, (prefix, flags));
                }
            }
            Input::DefaultRoute {
                gateway, removed, ..
            } => {
                if removed {
                    if nic.router == Some(gateway) {
                        nic.router = None;
                    }
                } else {
                    nic.router = Some(gateway);
                }
            }
            Input::Advert { ra, .. } => {
                if nic.advert.is_none() {
                    changes.push(Change::FirstAdvert {
                        ifindex,
                        router: ra.source,
                    });
                }
                if !ra.rdnss.is_empty() {
                    nic.dns = ra.rdnss.clone();
                }
                if !ra.dnssl.is_empty() {
                    nic.search = ra.dnssl.clone();
                }
                nic.advert = Some(ra);
            }
            Input::Dns {
                servers, search, ..
            } => {
                if !servers.is_empty() {
                    nic.dns = servers;
                }
                if !search.is_empty() {
                    nic.search = search;
                }
            }
        }
        let usable = nic.usable_global().filter(|_| nic.router.is_some());
        match (usable, nic.ready) {
            (Some((address, prefix)), None) => {
                let after = now.saturating_duration_since(nic.started.unwrap_or(now));
                nic.ready = Some((address, prefix, after));
                changes.push(Change::Ready {
                    ifindex,
                    address,
                    prefix,
                    after,
                });
            }
            (None, Some(_)) => {
                nic.ready = None;
                changes.push(Change::Lost { ifindex });
            }
            _ => {}
        }
        changes
    }

    #[cfg(test)]
    pub fn is_ready(&self, ifindex: u32) -> bool {
        self.nics.get(&ifindex).is_some_and(|n| n.ready.is_some())
    }

    /// True when no NIC can still be expected to become ready: each is ready, or has been
    /// waited for `limit` since its link came up, or — once another NIC is ready — has seen no
    /// router advertisement at all for [`SILENT_GRACE`]. A live router answers the solicitation
    /// sent at carrier-up within a fraction of that, so an OOB segment without IPv6 does not
    /// hold the boot for the whole `limit`.
    pub fn settled(&self, now: Instant, limit: Duration) -> bool {
        self.deadline(limit).is_none_or(|d| now >= d)
    }

    /// When [`Watch::settled`] becomes true by itself (None: already settled, all ready).
    pub fn deadline(&self, limit: Duration) -> Option<Instant> {
        let any_ready = self.nics.values().any(|n| n.ready.is_some());
        self.nics
            .values()
            .filter(|n| n.ready.is_none())
            .filter_map(|n| {
                let start = n.started?;
                let wait = if any_ready && n.advert.is_none() {
                    limit.min(SILENT_GRACE)
                } else {
                    limit
                };
                Some(start + wait)
            })
            .max()
    }

    /// How long this NIC has been waited for, at `now` (for the diagnosis).
    pub fn waited(&self, ifindex: u32, now: Instant) -> Duration {
        self.nics
            .get(&ifindex)
            .and_then(|n| n.started)
            .map_or(Duration::ZERO, |s| now.saturating_duration_since(s))
    }

    /// Every watched NIC's state, by interface index.
    pub fn states(&self) -> impl Iterator<Item = SlaacState> + '_ {
        self.nics.keys().map(|i| self.state(*i))
    }

    pub fn state(&self, ifindex: u32) -> SlaacState {
        let Some(n) = self.nics.get(&ifindex) else {
            return SlaacState::default();
        };
        let usable = |f: &AddrFlags| !f.tentative && !f.dad_failed;
        SlaacState {
            addresses: n
                .addrs
                .iter()
                .filter(|(a, (_, f))| is_global(**a) && usable(f))
                .map(|(a, (p, _))| (*a, *p))
                .collect(),
            local_addresses: n
                .addrs
                .iter()
                .filter(|(a, (_, f))| !is_global(**a) && !a.is_unicast_link_local() && usable(f))
                .map(|(a, (p, _))| (*a, *p))
                .collect(),
            router: n.router,
            dns: n.dns.clone(),
            search: n.search.clone(),
            dad_failed: n.dad_failed.clone(),
            last_advert: n.advert.clone(),
            ready_after_ms: n.ready.map(|(_, _, d)| d.as_millis() as u64),
        }
    }

    /// Why a NIC has no usable IPv6, in words for the console; `None` when it is ready.
    pub fn diagnosis(&self, ifindex: u32, waited: Duration) -> Option<String> {
        let n = self.nics.get(&ifindex)?;
        if n.ready.is_some() {
            return None;
        }
        let name = &n.name;
        if let Some(a) = n.dad_failed.first() {
            return Some(format!(
                "{name}: IPv6 address {a} is already used by another host on this segment (DAD failed)"
            ));
        }
        let Some(ra) = &n.advert else {
            return Some(format!(
                "{name}: no IPv6 router advertisement seen within {:.1}s",
                waited.as_secs_f32()
            ));
        };
        let autonomous: Vec<_> = ra.prefixes.iter().filter(|p| p.autonomous).collect();
        if ra.managed && autonomous.is_empty() {
            return Some(format!(
                "{name}: the router ({}) asks for DHCPv6 (M flag) and offers no SLAAC prefix; \
                 ZOS does no DHCPv6: enable SLAAC (the A flag on the prefix) on that router",
                ra.source
            ));
        }
        if autonomous.is_empty() {
            return Some(format!(
                "{name}: the router ({}) advertises no prefix with the autonomous (A) flag, so \
                 no address can be formed",
                ra.source
            ));
        }
        if autonomous.iter().all(|p| p.len != 64) {
            return Some(format!(
                "{name}: the advertised prefix {}/{} is not a /64; SLAAC needs a /64",
                autonomous[0].prefix, autonomous[0].len
            ));
        }
        if autonomous.iter().all(|p| !is_global(p.prefix)) {
            return Some(format!(
                "{name}: the advertised prefix {}/{} is not global (site-local or ULA); the \
                 grid cannot reach it",
                autonomous[0].prefix, autonomous[0].len
            ));
        }
        if ra.router_lifetime_secs == 0 {
            return Some(format!(
                "{name}: the router ({}) advertises a prefix but a router lifetime of 0, so it \
                 is not a default router: no IPv6 route to the Internet",
                ra.source
            ));
        }
        if n.usable_global().is_none() {
            return Some(format!(
                "{name}: router advertisement seen, address still being configured (DAD) after {:.1}s",
                waited.as_secs_f32()
            ));
        }
        Some(format!(
            "{name}: global address configured but no IPv6 default route after {:.1}s",
            waited.as_secs_f32()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::slaac::ra::PrefixInfo;

    const IF: u32 = 3;
    fn addr(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    fn ra(prefix: &str, len: u8, autonomous: bool, managed: bool, lifetime: u16) -> RouterAdvert {
        RouterAdvert {
            source: addr("fe80::1"),
            hop_limit: 64,
            managed,
            other: false,
            router_lifetime_secs: lifetime,
            reachable_ms: 0,
            retrans_ms: 0,
            source_mac: Some([2, 0, 0, 0, 0, 1]),
            mtu: None,
            prefixes: vec![PrefixInfo {
                prefix: addr(prefix),
                len,
                on_link: true,
                autonomous,
                valid_secs: 86400,
                preferred_secs: 14400,
            }],
            rdnss: vec![addr("2001:db8:1::53")],
            rdnss_lifetime_secs: 600,
            dnssl: vec!["lab.test".into()],
        }
    }

    fn address(a: &str, flags: AddrFlags) -> Input {
        Input::Address {
            ifindex: IF,
            address: addr(a),
            prefix: 64,
            flags,
            removed: false,
        }
    }

    fn watch(t0: Instant) -> Watch {
        let mut w = Watch::new();
        w.add(IF, "eth1", t0);
        w
    }

    const TENTATIVE: AddrFlags = AddrFlags {
        tentative: true,
        dad_failed: false,
        optimistic: false,
        deprecated: false,
    };

    #[test]
    fn ready_needs_dad_finished_global_address_and_default_route() {
        let t0 = Instant::now();
        let mut w = watch(t0);
        let t = |ms| t0 + Duration::from_millis(ms);
        w.handle(
            t(50),
            Input::Advert {
                ifindex: IF,
                ra: ra("2001:db8:1::", 64, true, false, 1800),
            },
        );
        assert!(w
            .handle(t(60), address("2001:db8:1::5", TENTATIVE))
            .is_empty());
        assert!(w
            .handle(
                t(70),
                Input::DefaultRoute {
                    ifindex: IF,
                    gateway: addr("fe80::1"),
                    removed: false
                }
            )
            .is_empty());
        assert!(!w.is_ready(IF), "still tentative");
        let ch = w.handle(t(180), address("2001:db8:1::5", AddrFlags::default()));
        assert_eq!(
            ch,
            vec![Change::Ready {
                ifindex: IF,
                address: addr("2001:db8:1::5"),
                prefix: 64,
                after: Duration::from_millis(180)
            }]
        );
        let st = w.state(IF);
        assert_eq!(st.dns, vec![addr("2001:db8:1::53")]);
        assert_eq!(st.search, vec!["lab.test"]);
        assert_eq!(st.ready_after_ms, Some(180));
        assert_eq!(w.diagnosis(IF, Duration::from_secs(1)), None);
    }

    #[test]
    fn link_local_ula_and_site_local_never_make_a_nic_ready() {
        let t0 = Instant::now();
        let mut w = watch(t0);
        w.handle(
            t0,
            Input::DefaultRoute {
                ifindex: IF,
                gateway: addr("fe80::1"),
                removed: false,
            },
        );
        for a in ["fe80::5", "fd00:1::5", "fec0::5"] {
            w.handle(t0, address(a, AddrFlags::default()));
        }
        assert!(!w.is_ready(IF));
        assert_eq!(
            w.state(IF).local_addresses.len(),
            2,
            "ULA and site-local kept as local"
        );
    }

    #[test]
    fn no_advert_is_diagnosed_with_the_wait() {
        let t0 = Instant::now();
        let w = watch(t0);
        let d = w.diagnosis(IF, Duration::from_secs(3)).unwrap();
        assert!(
            d.contains("no IPv6 router advertisement seen within 3.0s"),
            "{d}"
        );
        assert!(!w.settled(t0 + Duration::from_millis(2999), Duration::from_secs(3)));
        assert!(w.settled(t0 + Duration::from_secs(3), Duration::from_secs(3)));
        assert_eq!(
            w.deadline(Duration::from_secs(3)),
            Some(t0 + Duration::from_secs(3))
        );
    }

    #[test]
    fn managed_flag_without_slaac_prefix_says_zos_does_no_dhcpv6() {
        let t0 = Instant::now();
        let mut w = watch(t0);
        w.handle(
            t0,
            Input::Advert {
                ifindex: IF,
                ra: ra("2001:db8:1::", 64, false, true, 1800),
            },
        );
        let d = w.diagnosis(IF, Duration::from_secs(3)).unwrap();
        assert!(d.contains("DHCPv6") && d.contains("no DHCPv6"), "{d}");
    }

    #[test]
    fn site_local_prefix_wrong_length_and_zero_lifetime_are_diagnosed() {
        let t0 = Instant::now();
        let cases = [
            (ra("fec0::", 64, true, false, 1800), "not global"),
            (ra("2001:db8:1::", 56, true, false, 1800), "not a /64"),
            (
                ra("2001:db8:1::", 64, true, false, 0),
                "router lifetime of 0",
            ),
        ];
        for (advert, phrase) in cases {
            let mut w = watch(t0);
            w.handle(
                t0,
                Input::Advert {
                    ifindex: IF,
                    ra: advert,
                },
            );
            let d = w.diagnosis(IF, Duration::from_secs(3)).unwrap();
            assert!(d.contains(phrase), "{phrase}: {d}");
        }
    }

    #[test]
    fn dad_failure_is_reported_once_and_diagnosed() {
        let t0 = Instant::now();
        let mut w = watch(t0);
        let failed = AddrFlags {
            dad_failed: true,
            tentative: true,
            ..AddrFlags::default()
        };
        let ch = w.handle(t0, address("2001:db8:1::5", failed));
        assert_eq!(
            ch,
            vec![Change::DadFailed {
                ifindex: IF,
                address: addr("2001:db8:1::5")
            }]
        );
        assert!(w.handle(t0, address("2001:db8:1::5", failed)).is_empty());
        assert!(w
            .diagnosis(IF, Duration::from_secs(1))
            .unwrap()
            .contains("DAD failed"));
    }

    /// What the kernel does with optimistic DAD (seen with `ip -6 monitor address` against a
    /// host holding the node's EUI-64 address): NEWADDR optimistic+tentative, then DELADDR with
    /// dadfailed — the only place the failure shows.
    #[test]
    fn dad_failure_seen_only_on_the_removal_is_diagnosed() {
        let t0 = Instant::now();
        let mut w = watch(t0);
        let optimistic = AddrFlags {
            tentative: true,
            optimistic: true,
            ..AddrFlags::default()
        };
        assert!(w
            .handle(t0, address("2001:db8:1::5", optimistic))
            .is_empty());
        let gone = Input::Address {
            ifindex: IF,
            address: addr("2001:db8:1::5"),
            prefix: 64,
            flags: AddrFlags {
                dad_failed: true,
                ..optimistic
            },
            removed: true,
        };
        assert_eq!(
            w.handle(t0, gone),
            vec![Change::DadFailed {
                ifindex: IF,
                address: addr("2001:db8:1::5")
            }]
        );
        assert!(!w.is_ready(IF));
        let d = w.diagnosis(IF, Duration::from_secs(3)).unwrap();
        assert!(
            d.contains("DAD failed") && d.contains("2001:db8:1::5"),
            "{d}"
        );
    }

    #[test]
    fn losing_the_default_route_unreadies_the_nic() {
        let t0 = Instant::now();
        let mut w = watch(t0);
        w.handle(t0, address("2001:db8:1::5", AddrFlags::default()));
        w.handle(
            t0,
            Input::DefaultRoute {
                ifindex: IF,
                gateway: addr("fe80::1"),
                removed: false,
            },
        );
        assert!(w.is_ready(IF));
        let ch = w.handle(
            t0,
            Input::DefaultRoute {
                ifindex: IF,
                gateway: addr("fe80::1"),
                removed: true,
            },
        );
        assert_eq!(ch, vec![Change::Lost { ifindex: IF }]);
    }

    #[test]
    fn nd_user_option_dns_is_kept() {
        let t0 = Instant::now();
        let mut w = watch(t0);
        w.handle(
            t0,
            Input::Dns {
                ifindex: IF,
                servers: vec![addr("2001:db8::53")],
                search: vec!["x.test".into()],
            },
        );
        assert_eq!(w.state(IF).dns, vec![addr("2001:db8::53")]);
        assert_eq!(w.state(IF).search, vec!["x.test"]);
    }

    #[test]
    fn events_for_unwatched_nics_are_ignored() {
        let t0 = Instant::now();
        let mut w = watch(t0);
        assert!(w
            .handle(
                t0,
                Input::DefaultRoute {
                    ifindex: 99,
                    gateway: addr("fe80::1"),
                    removed: false
                }
            )
            .is_empty());
    }
}
