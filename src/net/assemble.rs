//! The links the boot builds before DHCP: bonds (`zos.bond=`, including `auto`, which asks the
//! DHCP servers which NICs share a segment) and VLANs (`zos.vlan=`) on top of the NICs found.
//! The plan itself is sans-IO in [`super::topology`]; this is its netlink driver.
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rtnetlink::packet_route::link::BondMode;
use rtnetlink::LinkUnspec;

use super::links::{self, Nic};
use super::topology::{self, BondSetting, VlanLink};
use super::{NetConfig, NetError};
use crate::console::Console;

/// How long `zos.bond=auto` waits for the NICs' carrier, and for OFFERs to its DISCOVERs.
const AUTO_BOND_CARRIER: Duration = Duration::from_secs(2);
const AUTO_BOND_SURVEY: Duration = Duration::from_secs(1);

/// `zos.bond=auto`: brings the NICs up, sends one DISCOVER from each with carrier (nothing is
/// requested) and bonds those whose OFFERs came from the same server. Costs up to 3 s of boot,
/// only when asked for.
pub(super) async fn auto_bond(
    handle: &rtnetlink::Handle,
    console: &Console,
    nics: &[Nic],
    explicit: &[BondSetting],
) -> Vec<BondSetting> {
    // Bonds an earlier run of this stage made (PID 1 bringing the network up again) stay.
    let mut kept: Vec<BondSetting> = Vec::new();
    let mut masters: Vec<u32> = nics.iter().filter_map(|n| n.controller).collect();
    masters.sort_unstable();
    masters.dedup();
    for m in masters {
        kept.push(BondSetting {
            mode: topology::BondMode::ActiveBackup,
            slaves: nics
                .iter()
                .filter(|n| n.controller == Some(m))
                .map(|n| n.name.clone())
                .collect(),
        });
    }
    if !kept.is_empty() {
        return kept;
    }
    for nic in nics.iter().filter(|n| !n.admin_up) {
        if let Err(e) = links::set_up(handle, nic.index).await {
            console.line(format_args!("{}: cannot bring the link up: {e}", nic.name));
        }
    }
    let deadline = Instant::now() + AUTO_BOND_CARRIER;
    let mut up: Vec<Nic> = Vec::new();
    while Instant::now() < deadline {
        let all = links::inventory(handle).await.unwrap_or_default();
        up = all
            .into_iter()
            .filter(|n| n.oper_up && nics.iter().any(|c| c.index == n.index))
            .collect();
        if up.len() == nics.len() {
            break;
        }
        // A bounded wait for carrier, polled; the stage proper follows notifications.
        smol::Timer::after(Duration::from_millis(50)).await;
    }
    let seen = crate::net::dhcp4::survey::survey(&up, AUTO_BOND_SURVEY).await;
    for (nic, servers) in &seen {
        let list: Vec<String> = servers.iter().map(|s| s.to_string()).collect();
        console.line(format_args!(
            "zos.bond=auto: {nic} sees DHCP server(s) {}",
            if list.is_empty() {
                "none".to_string()
            } else {
                list.join(", ")
            }
        ));
    }
    let bonds = topology::auto_bonds(&seen, explicit);
    if bonds.is_empty() {
        console.line("zos.bond=auto: no two NICs share a DHCP server; no bond");
    }
    for b in &bonds {
        console.line(format_args!(
            "zos.bond=auto: {} are on one segment (the same DHCP server): bonding them, \
             active-backup",
            b.slaves.join(" and ")
        ));
    }
    bonds
}

/// A bond's slave, for the console: its carrier changes are the farmer's cable alarms.
pub(super) struct Slave {
    name: String,
    bond: String,
    carrier: bool,
}

pub(super) fn report_slave(console: &Console, slave: &mut Slave, update: &Nic) {
    if update.carrier == slave.carrier {
        return;
    }
    slave.carrier = update.carrier;
    if update.carrier {
        console.line(format_args!(
            "{}: carrier up again (slave of {})",
            slave.name, slave.bond
        ));
    } else {
        console.line(format_args!(
            "{}: carrier lost (slave of {}): {} carries on over its other slaves; check this \
             cable and switch port",
            slave.name, slave.bond, slave.bond
        ));
    }
}

/// Creates the plan's bonds (after loading `bonding` when we may) and enslaves their NICs.
/// Returns the bonds as NICs and their slaves by index.
pub(super) async fn create_bonds(
    handle: &rtnetlink::Handle,
    console: &Console,
    cfg: &NetConfig,
    nics: &[Nic],
    plan: &topology::Plan,
) -> Result<(Vec<Nic>, BTreeMap<u32, Slave>), NetError> {
    let mut slaves = BTreeMap::new();
    if plan.bonds.is_empty() {
        return Ok((Vec::new(), slaves));
    }
    if let Some(dir) = &cfg.modules_dir {
        // max_bonds=0: the module would otherwise make a bond0 of its own (balance-rr).
        match crate::pid1::drivers::load_by_name(dir, "bonding", "max_bonds=0") {
            Ok(true) => console.line("loaded bonding"),
            Ok(false) => {}
            Err(e) => console.line(format_args!("bonding: {e}")),
        }
    }
    let mut made = Vec::new();
    for b in &plan.bonds {
        let mode = match b.mode {
            topology::BondMode::ActiveBackup => BondMode::ActiveBackup,
            topology::BondMode::Lacp => BondMode::Ieee8023Ad,
        };
        // Made by an earlier run of this stage (PID 1 bringing the network up again)?
        let existing = links::inventory(handle)
            .await
            .ok()
            .and_then(|all| all.into_iter().find(|n| n.name == b.name));
        if let Some(bond) = &existing {
            let ours = b.slaves.iter().all(|name| {
                nics.iter()
                    .any(|n| &n.name == name && n.controller == Some(bond.index))
            });
            if ours {
                for n in nics.iter().filter(|n| b.slaves.contains(&n.name)) {
                    slaves.insert(
                        n.index,
                        Slave {
                            name: n.name.clone(),
                            bond: b.name.clone(),
                            carrier: n.carrier,
                        },
                    );
                }
                made.push(b.name.clone());
                continue;
            }
        }
        // miimon: the bond follows its slaves' carrier every 100 ms (the default 0 never does).
        let bond = || {
            rtnetlink::LinkBond::new(&b.name)
                .mode(mode)
                .miimon(100)
                .build()
        };
        let mut result = handle.link().add(bond()).execute().await;
        if matches!(&result, Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -nix::libc::EEXIST)
        {
            // A bond of that name already there (the module's own, when it was loaded
            // without max_bonds=0): replaced, since its mode can't be trusted.
            if let Some(old) = links::inventory(handle)
                .await
                .ok()
                .and_then(|all| all.into_iter().find(|n| n.name == b.name))
            {
                let _ = handle.link().del(old.index).execute().await;
                result = handle.link().add(bond()).execute().await;
            }
        }
        if let Err(e) = result {
            console.line(format_args!(
                "{}: cannot create the bond ({}): {e}",
                b.name,
                b.slaves.join(", ")
            ));
            continue;
        }
        let Some(index) = links::inventory(handle)
            .await
            .ok()
            .and_then(|all| all.into_iter().find(|n| n.name == b.name).map(|n| n.index))
        else {
            continue;
        };
        let mut enslaved = Vec::new();
        for name in &b.slaves {
            let Some(nic) = nics.iter().find(|n| &n.name == name) else {
                continue;
            };
            // A NIC must be down to be enslaved; the bond brings it up.
            let down = LinkUnspec::new_with_index(nic.index).down().build();
            let join = LinkUnspec::new_with_index(nic.index)
                .controller(index)
                .build();
            let result = async {
                handle.link().set(down).execute().await?;
                handle.link().set(join).execute().await
            }
            .await;
            match result {
                Ok(()) => {
                    enslaved.push(name.clone());
                    slaves.insert(
                        nic.index,
                        Slave {
                            name: name.clone(),
                            bond: b.name.clone(),
                            carrier: nic.carrier,
                        },
                    );
                }
                Err(e) => console.line(format_args!("{name}: cannot join {}: {e}", b.name)),
            }
        }
        console.line(format_args!(
            "{}: bond ({}) of {}",
            b.name,
            match b.mode {
                topology::BondMode::ActiveBackup => "active-backup",
                topology::BondMode::Lacp => "802.3ad",
            },
            enslaved.join(" + ")
        ));
        made.push(b.name.clone());
    }
    let all = links::inventory(handle)
        .await
        .map_err(|e| NetError(format!("cannot list network interfaces: {e}")))?;
    let bonds = all.into_iter().filter(|n| made.contains(&n.name)).collect();
    Ok((bonds, slaves))
}

/// Creates the plan's VLAN links (after loading `8021q` when we may) and returns them with
/// their plan entries. A link that cannot be created is reported and left out; the others go on.
pub(super) async fn create_vlans(
    handle: &rtnetlink::Handle,
    console: &Console,
    cfg: &NetConfig,
    parents: &[Nic],
    plan: &topology::Plan,
) -> Result<Vec<(Nic, VlanLink)>, NetError> {
    if plan.vlans.is_empty() {
        return Ok(Vec::new());
    }
    if let Some(dir) = &cfg.modules_dir {
        match crate::pid1::drivers::load_by_name(dir, "8021q", "") {
            Ok(true) => console.line("loaded 8021q (VLAN support)"),
            Ok(false) => {}
            Err(e) => console.line(format_args!("8021q: {e}")),
        }
    }
    let mut made = Vec::new();
    for l in &plan.vlans {
        let Some(parent) = parents.iter().find(|n| n.name == l.parent) else {
            continue;
        };
        let msg = rtnetlink::LinkVlan::new(&l.name, parent.index, l.id).build();
        match handle.link().add(msg).execute().await {
            Ok(()) => {}
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -nix::libc::EEXIST => {
                log::info!("{}: exists already; used as it is", l.name)
            }
            Err(e) => {
                console.line(format_args!(
                    "{}: cannot create VLAN {} on {}: {e}{}",
                    l.name,
                    l.id,
                    l.parent,
                    if cfg.modules_dir.is_none() {
                        " (is the 8021q module loaded?)"
                    } else {
                        ""
                    }
                ));
                continue;
            }
        }
        made.push(l);
    }
    if made.is_empty() {
        return Ok(Vec::new());
    }
    let all = links::inventory(handle)
        .await
        .map_err(|e| NetError(format!("cannot list network interfaces: {e}")))?;
    Ok(made
        .into_iter()
        .filter_map(|l| {
            all.iter()
                .find(|n| n.name == l.name)
                .map(|n| (n.clone(), l.clone()))
        })
        .collect())
}
