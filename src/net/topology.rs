//! Logical links: which links the network stage runs DHCPv4 and SLAAC on.
//!
//! Roles belong to logical links (`eth0`, `eth0.100`), not to cards. With no VLAN setting every
//! physical NIC does both, as before. ZOS's `vlan:priv=ID` puts the management segment (the
//! DHCPv4 lease) on VLAN ID of the NIC(s), and `vlan:pub=ID` the public segment (SLAAC); the
//! untagged parent then stops doing what moved to the tag, so untagged traffic gets no lease
//! when `vlan:priv` is set. `zos.vlan=IF.ID` adds a tagged link on IF that does both, and
//! leaves IF as it was. Pure: a plan from the settings and the NIC names, unit-tested; the
//! network stage creates the links (netlink) and follows the duties.
use serde::{Deserialize, Serialize};

pub use crate::cmdline::{parse_bond, parse_vlan_id, BondMode, BondSetting, Purpose, VlanSetting};

/// `zos.bond=auto`: the NICs that saw an OFFER from the same DHCP server (two cables to one
/// segment) become one active-backup bond, in the order given; NICs already in a `zos.bond=`
/// bond are left out. `seen` is each NIC's list of server identifiers.
pub fn auto_bonds(
    seen: &[(String, Vec<std::net::Ipv4Addr>)],
    explicit: &[BondSetting],
) -> Vec<BondSetting> {
    let taken = |n: &String| explicit.iter().any(|b| b.slaves.contains(n));
    let mut groups: Vec<(Vec<String>, Vec<std::net::Ipv4Addr>)> = Vec::new();
    for (nic, servers) in seen.iter().filter(|(n, s)| !taken(n) && !s.is_empty()) {
        let hits: Vec<usize> = (0..groups.len())
            .filter(|&g| groups[g].1.iter().any(|s| servers.contains(s)))
            .collect();
        let mut merged = (vec![nic.clone()], servers.clone());
        // Every group this NIC shares a server with joins it (later ones first, so the
        // indexes stay valid).
        for g in hits.into_iter().rev() {
            let (members, more) = groups.remove(g);
            merged.0.extend(members);
            merged.1.extend(more);
        }
        groups.push(merged);
    }
    let order = |n: &String| seen.iter().position(|(s, _)| s == n);
    let mut bonds: Vec<BondSetting> = groups
        .into_iter()
        .filter(|(g, _)| g.len() >= 2)
        .map(|(mut slaves, _)| {
            slaves.sort_by_key(order);
            BondSetting {
                mode: BondMode::ActiveBackup,
                slaves,
            }
        })
        .collect();
    bonds.sort_by_key(|b| order(&b.slaves[0]));
    bonds
}

/// A bond to create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BondLink {
    pub name: String,
    pub mode: BondMode,
    pub slaves: Vec<String>,
}

/// What the network stage does on one link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Duties {
    pub dhcp: bool,
    pub slaac: bool,
}

impl Duties {
    pub const ALL: Duties = Duties {
        dhcp: true,
        slaac: true,
    };

    /// "DHCPv4 + SLAAC", "DHCPv4", "SLAAC", "nothing (carries the VLANs)".
    pub fn describe(&self) -> &'static str {
        match (self.dhcp, self.slaac) {
            (true, true) => "DHCPv4 + SLAAC",
            (true, false) => "DHCPv4 only",
            (false, true) => "SLAAC only",
            (false, false) => "no addresses (it carries the VLANs)",
        }
    }
}

/// A VLAN link to create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VlanLink {
    pub name: String,
    pub parent: String,
    pub id: u16,
    pub purpose: Purpose,
    pub duties: Duties,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Created first; their slaves then do nothing of their own.
    pub bonds: Vec<BondLink>,
    pub vlans: Vec<VlanLink>,
    /// Duties of each untagged NIC considered, in the order given.
    pub untagged: Vec<(String, Duties)>,
    /// Settings that could not be followed, in words for the console.
    pub problems: Vec<String>,
}

/// Interface names are at most 15 bytes: `PARENT.ID` when it fits, else `vlanID.N`.
fn vlan_name(parent: &str, id: u16, n: usize) -> String {
    let name = format!("{parent}.{id}");
    if name.len() <= 15 {
        name
    } else {
        format!("vlan{id}.{n}")
    }
}

/// The links to use, from the NICs considered (`nics`, names), the bonds and the VLANs. A bond
/// replaces its slaves in the list; VLANs go on top of what remains (`vlan:priv` over a bond
/// tags on the bond).
pub fn plan(
    nics: &[String],
    bonds: &[BondSetting],
    vlans: &[VlanSetting],
    oob: Option<&str>,
) -> Plan {
    let mut p = Plan::default();
    let mut enslaved: Vec<String> = Vec::new();
    for b in bonds {
        let missing: Vec<&String> = b.slaves.iter().filter(|s| !nics.contains(s)).collect();
        let taken: Vec<&String> = b.slaves.iter().filter(|s| enslaved.contains(s)).collect();
        if !missing.is_empty() || !taken.is_empty() {
            p.problems.push(format!(
                "zos.bond={}: {}; no bond made (NICs: {})",
                b.slaves.join(","),
                if missing.is_empty() {
                    format!("{} already in another bond", taken[0])
                } else {
                    format!("there is no NIC {}", missing[0])
                },
                nics.join(", ")
            ));
            continue;
        }
        enslaved.extend(b.slaves.iter().cloned());
        p.bonds.push(BondLink {
            name: format!("bond{}", p.bonds.len()),
            mode: b.mode,
            slaves: b.slaves.clone(),
        });
    }
    let links: Vec<String> = nics
        .iter()
        .filter(|n| !enslaved.contains(n))
        .cloned()
        .chain(p.bonds.iter().map(|b| b.name.clone()))
        .collect();
    let nics = &links[..];
    let management = vlans.iter().any(|v| v.purpose == Purpose::Management);
    let public = vlans.iter().any(|v| v.purpose == Purpose::Public);
    for v in vlans {
        let parents: Vec<&String> = match (&v.parent, v.purpose) {
            (Some(parent), _) => {
                if !nics.contains(parent) {
                    p.problems.push(format!(
                        "zos.vlan={parent}.{}: there is no NIC {parent} (NICs: {})",
                        v.id,
                        nics.join(", ")
                    ));
                }
                nics.iter().filter(|n| *n == parent).collect()
            }
            (None, Purpose::Management) if oob.is_some_and(|o| nics.iter().any(|n| n == o)) => {
                nics.iter().filter(|n| Some(n.as_str()) == oob).collect()
            }
            (None, _) => nics.iter().collect(),
        };
        let duties = match v.purpose {
            Purpose::Management => Duties {
                dhcp: true,
                slaac: false,
            },
            Purpose::Public => Duties {
                dhcp: false,
                slaac: true,
            },
            Purpose::Both => Duties::ALL,
        };
        for parent in parents {
            if p.vlans.iter().any(|l| &l.parent == parent && l.id == v.id) {
                p.problems.push(format!(
                    "VLAN {} on {parent} is asked for twice; the first setting is used",
                    v.id
                ));
                continue;
            }
            let name = vlan_name(parent, v.id, p.vlans.len());
            p.vlans.push(VlanLink {
                name,
                parent: parent.clone(),
                id: v.id,
                purpose: v.purpose,
                duties,
            });
        }
    }
    p.untagged = nics
        .iter()
        .map(|n| {
            (
                n.clone(),
                Duties {
                    dhcp: !management,
                    slaac: !public,
                },
            )
        })
        .collect();
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nics(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn v(parent: Option<&str>, id: u16, purpose: Purpose) -> VlanSetting {
        VlanSetting {
            parent: parent.map(str::to_string),
            id,
            purpose,
        }
    }

    #[test]
    fn without_vlans_every_nic_does_everything() {
        let p = plan(&nics(&["eth0", "eth1"]), &[], &[], None);
        assert!(p.vlans.is_empty() && p.problems.is_empty());
        assert_eq!(
            p.untagged,
            vec![("eth0".into(), Duties::ALL), ("eth1".into(), Duties::ALL)]
        );
    }

    #[test]
    fn vlan_priv_moves_dhcp_to_the_tag_on_every_nic_or_the_oob_one() {
        let p = plan(
            &nics(&["eth0", "eth1"]),
            &[],
            &[v(None, 100, Purpose::Management)],
            None,
        );
        let names: Vec<&str> = p.vlans.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["eth0.100", "eth1.100"]);
        assert!(p.vlans.iter().all(|l| l.duties.dhcp && !l.duties.slaac));
        // Untagged: no lease (untagged traffic must get none), SLAAC stays.
        assert!(p.untagged.iter().all(|(_, d)| !d.dhcp && d.slaac));

        let p = plan(
            &nics(&["eth0", "eth1"]),
            &[],
            &[v(None, 100, Purpose::Management)],
            Some("eth1"),
        );
        assert_eq!(p.vlans.len(), 1);
        assert_eq!(p.vlans[0].parent, "eth1");
    }

    #[test]
    fn vlan_pub_and_priv_together_leave_the_parent_only_carrying() {
        let p = plan(
            &nics(&["eth0"]),
            &[],
            &[
                v(None, 100, Purpose::Management),
                v(None, 200, Purpose::Public),
            ],
            None,
        );
        assert_eq!(p.vlans.len(), 2);
        assert_eq!(
            (p.vlans[1].name.as_str(), p.vlans[1].duties),
            (
                "eth0.200",
                Duties {
                    dhcp: false,
                    slaac: true
                }
            )
        );
        assert_eq!(
            p.untagged[0].1.describe(),
            "no addresses (it carries the VLANs)"
        );
    }

    #[test]
    fn an_explicit_vlan_adds_a_link_and_names_a_missing_parent() {
        let p = plan(
            &nics(&["eth0", "enp129s0f1np1"]),
            &[],
            &[
                v(Some("enp129s0f1np1"), 4094, Purpose::Both),
                v(Some("eth9"), 7, Purpose::Both),
            ],
            None,
        );
        assert_eq!(p.vlans.len(), 1);
        assert_eq!(
            p.vlans[0].name, "vlan4094.0",
            "names longer than 15 bytes are replaced"
        );
        assert_eq!(p.vlans[0].duties, Duties::ALL);
        assert!(p.untagged.iter().all(|(_, d)| *d == Duties::ALL));
        assert_eq!(p.problems.len(), 1);
        assert!(p.problems[0].contains("no NIC eth9"), "{:?}", p.problems);
    }

    #[test]
    fn a_bond_replaces_its_slaves_and_carries_the_vlans() {
        let bond = parse_bond("active-backup:eth0,eth1").unwrap();
        let p = plan(
            &nics(&["eth0", "eth1", "eth2"]),
            &[bond.clone(), bond],
            &[v(None, 100, Purpose::Management)],
            None,
        );
        assert_eq!(
            p.bonds.len(),
            1,
            "a NIC is in one bond only: {:?}",
            p.problems
        );
        assert_eq!(p.bonds[0].name, "bond0");
        assert_eq!(p.bonds[0].slaves, ["eth0", "eth1"]);
        assert!(
            p.problems[0].contains("already in another bond"),
            "{:?}",
            p.problems
        );
        let untagged: Vec<&str> = p.untagged.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(untagged, ["eth2", "bond0"]);
        let vlans: Vec<&str> = p.vlans.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(vlans, ["eth2.100", "bond0.100"]);
    }

    #[test]
    fn auto_bonds_group_the_nics_that_see_the_same_server() {
        let ip = |d: u8| std::net::Ipv4Addr::new(10, 0, d, 1);
        let seen = vec![
            ("eth0".to_string(), vec![ip(1)]),
            ("eth1".to_string(), vec![ip(2)]),
            ("eth2".to_string(), vec![ip(1)]),
            ("eth3".to_string(), vec![]),
            ("eth4".to_string(), vec![ip(3), ip(2)]),
            ("eth5".to_string(), vec![ip(9)]),
            ("eth6".to_string(), vec![ip(3)]),
        ];
        let bonds = auto_bonds(&seen, &[]);
        let slaves: Vec<Vec<&str>> = bonds
            .iter()
            .map(|b| b.slaves.iter().map(String::as_str).collect())
            .collect();
        assert_eq!(slaves, [vec!["eth0", "eth2"], vec!["eth1", "eth4", "eth6"]]);
        assert!(bonds.iter().all(|b| b.mode == BondMode::ActiveBackup));
        // A NIC bonded explicitly is not bonded again.
        let explicit = parse_bond("802.3ad:eth0,eth5").unwrap();
        let bonds = auto_bonds(&seen, &[explicit]);
        assert_eq!(bonds.len(), 1);
        assert_eq!(bonds[0].slaves, ["eth1", "eth4", "eth6"]);
    }

    #[test]
    fn bond_settings_are_checked() {
        assert_eq!(
            parse_bond("802.3ad:eth0,eth1,eth2").map(|b| (b.mode, b.slaves.len())),
            Ok((BondMode::Lacp, 3))
        );
        for bad in [
            "auto",
            "active-backup:eth0",
            "balance-rr:eth0,eth1",
            "eth0,eth1",
            "active-backup:eth0,",
        ] {
            assert!(parse_bond(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn vlan_ids_are_checked() {
        assert_eq!(parse_vlan_id("1"), Ok(1));
        assert_eq!(parse_vlan_id("4094"), Ok(4094));
        for bad in ["0", "4095", "-1", "x", ""] {
            assert!(parse_vlan_id(bad).is_err(), "{bad}");
        }
    }
}
