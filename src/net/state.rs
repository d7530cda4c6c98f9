//! The network stage's typed result ([`NetState`]): what the boot found on each NIC, the leases
//! handed over to `keep` ([`LeaseFile`]), probes, classification and timings. The hand-over
//! file (`crate::state::State`) holds it beside the later stages' records.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::net::classify::Classification;
use crate::net::dhcp4::client::{Lease, ServerSeen};
use crate::net::probe::{Family, ProbeResult};
use crate::net::slaac::ra::RouterAdvert;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Oob,
    Public,
    Unused,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ipv4Entry {
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub source: String,
    pub lease_secs: u32,
    pub server: Ipv4Addr,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ipv6Entry {
    pub address: std::net::Ipv6Addr,
    pub prefix: u8,
    pub source: String,
}

/// The lease as handed over, with what the full OS needs to resume it (RENEWING at T1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    pub client_id: String,
    #[serde(flatten)]
    pub lease: Lease,
    pub gateway: Option<Ipv4Addr>,
    /// The routes installed (option 121, or a default via option 3), "a.b.c.d/len" form.
    pub routes: Vec<RouteRecord>,
    /// Unix time of the ACK, so T1/T2/expiry can be computed after a handoff.
    pub obtained_unix: u64,
    /// CLOCK_BOOTTIME of the ACK, in ms: what `keep` counts T1/T2 from when it is there, since
    /// the wall clock may be stepped (by the clock stage) between the lease and the hand-over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub obtained_boottime_ms: Option<u64>,
}

/// One lease as handed to the full OS: `<state dir>/leases/<interface>.json`. `zos-netboot
/// keep` resumes it and rewrites the file at every renewal, so a restarted `keep` (or any other
/// tool) always finds the lease as it stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseFile {
    pub interface: String,
    pub mac: String,
    pub role: Role,
    /// Option 12 as sent at boot, so renewals don't rename the node in the server's table.
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(flatten)]
    pub record: LeaseRecord,
}

impl LeaseFile {
    pub const DIR: &'static str = "leases";

    /// `<dir of state.json>/leases/<interface>.json`.
    pub fn path(state_path: &Path, interface: &str) -> PathBuf {
        state_path
            .parent()
            .unwrap_or(Path::new("."))
            .join(Self::DIR)
            .join(format!("{interface}.json"))
    }

    pub fn write(&self, state_path: &Path) -> std::io::Result<()> {
        let mut json = serde_json::to_vec_pretty(self)?;
        json.push(b'\n');
        crate::net::dhcp4::apply::write_file_atomic(&Self::path(state_path, &self.interface), &json)
    }

    /// Every lease file next to `state_path`, sorted by interface; unreadable ones are
    /// reported as errors, not skipped silently.
    pub fn read_all(state_path: &Path) -> std::io::Result<Vec<Result<LeaseFile, String>>> {
        let dir = state_path
            .parent()
            .unwrap_or(Path::new("."))
            .join(Self::DIR);
        let mut paths: Vec<PathBuf> = match std::fs::read_dir(&dir) {
            Ok(entries) => entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        paths.sort();
        Ok(paths
            .iter()
            .map(|p| {
                let text =
                    std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
                serde_json::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))
            })
            .collect())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteRecord {
    pub destination: String,
    pub gateway: Ipv4Addr,
}

impl LeaseRecord {
    pub fn new(client_id: String, lease: Lease, obtained_unix: u64) -> Self {
        LeaseRecord {
            client_id,
            gateway: lease.gateway(),
            routes: lease
                .routes()
                .iter()
                .map(|r| RouteRecord {
                    destination: format!("{}/{}", r.destination, r.prefix),
                    gateway: r.gateway,
                })
                .collect(),
            lease,
            obtained_unix,
            obtained_boottime_ms: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    pub mac: String,
    pub role: Role,
    pub carrier: bool,
    pub mtu: u32,
    pub ipv4: Vec<Ipv4Entry>,
    pub ipv6: Vec<Ipv6Entry>,
    /// Where DHCPv4 stood when the state was written, e.g. BOUND or SELECTING.
    pub dhcp4: String,
    pub lease: Option<LeaseRecord>,
    /// Option 12 sent with the DHCP requests (kept in the lease file, not shown here).
    #[serde(skip)]
    pub dhcp_hostname: Option<String>,
    /// For a VLAN link: its parent, id, purpose and duties.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vlan: Option<crate::net::topology::VlanLink>,
    /// Every role this NIC carries; `role` is the first. A single-NIC node is oob and public.
    pub roles: Vec<Role>,
    /// What SLAAC found on this NIC; absent when IPv6 was not waited for (`dhcp4` command).
    pub slaac: Option<SlaacRecord>,
    /// The DHCPv4 servers that answered on this NIC (OFFERs, NAKs), with what was wrong with
    /// each; more than one means a second DHCP server on the segment.
    pub dhcp4_servers: Vec<ServerSeen>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlaacRecord {
    /// Carrier up → global address usable (DAD done) with a default route.
    pub ready_after_ms: Option<u64>,
    pub router: Option<Ipv6Addr>,
    pub dns: Vec<Ipv6Addr>,
    pub search: Vec<String>,
    /// Why there is no usable IPv6 here, in words; null when ready.
    pub diagnosis: Option<String>,
    /// The last router advertisement seen.
    pub ra: Option<RouterAdvert>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ipv4Summary {
    pub gateway: Option<Ipv4Addr>,
    /// Whether a probe target answered over IPv4; null when not probed.
    pub reachable: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ipv6Summary {
    pub router: Option<Ipv6Addr>,
    pub reachable: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timings {
    /// First DISCOVER to BOUND on the OOB NIC.
    pub dhcp4: Option<u64>,
    /// Process start to the OOB NIC's lease applied.
    pub bound: Option<u64>,
    /// Carrier up → the first NIC's SLAAC ready.
    pub slaac: Option<u64>,
    /// The probes, all families at once.
    pub probes: Option<u64>,
    /// Process start to the first family usable (IPv4 bound and confirmed on the OOB NIC, or
    /// SLAAC ready on a NIC): online should follow within a probe's round trip.
    pub usable: Option<u64>,
    /// Process start to online.
    pub total: Option<u64>,
}

/// What the network stage hands to the stages after it (and, inside the state file, to the
/// full OS and a farmer's support ticket).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetState {
    pub online: bool,
    /// Why the node is not online, in words for the console.
    pub error: Option<String>,
    /// class, topology, case, headline, advice, warnings (absent for `dhcp4`).
    #[serde(flatten)]
    pub classification: Option<Classification>,
    pub interfaces: Vec<Interface>,
    pub ipv4: Ipv4Summary,
    pub ipv6: Ipv6Summary,
    /// Resolvers: the OOB lease's, then the RAs' RDNSS.
    pub dns: Vec<IpAddr>,
    pub probes: Vec<ProbeResult>,
    /// The family that won a Happy Eyeballs race to the first probe target; downloads use it.
    pub preferred_family: Option<Family>,
    pub search: Vec<String>,
    pub ntp: Vec<Ipv4Addr>,
    pub timings_ms: Timings,
}

impl NetState {
    /// The summary table printed once the network stage ends.
    pub fn summary(&self) -> String {
        let state = self;
        let mut s = String::new();
        s.push_str("  NIC          ROLE     CARRIER  IPv4                DHCPv4   IPv6\n");
        for i in &state.interfaces {
            let role = i
                .roles
                .iter()
                .map(|r| match r {
                    Role::Oob => "oob",
                    Role::Public => "public",
                    Role::Unused => "unused",
                })
                .collect::<Vec<_>>()
                .join("+");
            let role = if role.is_empty() {
                "unused".into()
            } else {
                role
            };
            let v6 = i
                .ipv6
                .first()
                .map(|a| format!("{}/{}", a.address, a.prefix))
                .unwrap_or_else(|| "-".into());
            let v4 = i
                .ipv4
                .first()
                .map(|a| format!("{}/{}", a.address, a.prefix))
                .unwrap_or_else(|| "-".into());
            s.push_str(&format!(
                "  {:<12} {:<8} {:<8} {:<19} {:<8} {}\n",
                i.name,
                role,
                if i.carrier { "yes" } else { "no" },
                v4,
                i.dhcp4,
                v6
            ));
        }
        if let Some(gw) = state.ipv4.gateway {
            s.push_str(&format!("  IPv4 gateway {gw}\n"));
        }
        if !state.dns.is_empty() {
            let dns: Vec<String> = state.dns.iter().map(|d| d.to_string()).collect();
            s.push_str(&format!("  DNS          {}\n", dns.join(", ")));
        }
        s
    }
}

/// The address this NIC had in a previous state file, for INIT-REBOOT. Reads only the
/// fields it needs ([`PreviousBoot`]), so that a state file of another release (or one
/// written by hand) still gives the previous address.
pub fn previous_address(path: &Path, mac: &str) -> Option<Ipv4Addr> {
    let text = std::fs::read_to_string(path).ok()?;
    let previous: PreviousBoot = serde_json::from_str(&text)
        .map_err(|e| log::info!("{}: not reusing it: {e}", path.display()))
        .ok()?;
    previous
        .interfaces
        .into_iter()
        .find(|i| i.mac == mac)?
        .lease
        .map(|l| l.address)
}

/// What INIT-REBOOT takes from a previous boot's state file: its part of [`NetState`], whatever
/// the file's format.
#[derive(Deserialize)]
struct PreviousBoot {
    interfaces: Vec<PreviousNic>,
}

#[derive(Deserialize)]
struct PreviousNic {
    mac: String,
    lease: Option<PreviousLease>,
}

#[derive(Deserialize)]
struct PreviousLease {
    address: Ipv4Addr,
}
