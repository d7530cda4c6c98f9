//! The state file: what the boot found, for the full OS, the tests and a farmer's support ticket.
//! A serialisation of the stages' typed results, never a second source of truth.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::classify::Classification;
use crate::dhcp4::client::{Lease, ServerSeen};
use crate::probe::{Family, ProbeResult};
use crate::slaac::ra::RouterAdvert;

pub const DEFAULT_PATH: &str = "/run/zos-netboot/state.json";

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
        crate::dhcp4::apply::write_file_atomic(&Self::path(state_path, &self.interface), &json)
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

#[derive(Debug, Clone, PartialEq, Serialize)]
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
    pub vlan: Option<crate::topology::VlanLink>,
    /// Every role this NIC carries; `role` is the first. A single-NIC node is oob and public.
    pub roles: Vec<Role>,
    /// What SLAAC found on this NIC; absent when IPv6 was not waited for (`dhcp4` command).
    pub slaac: Option<SlaacRecord>,
    /// The DHCPv4 servers that answered on this NIC (OFFERs, NAKs), with what was wrong with
    /// each; more than one means a second DHCP server on the segment.
    pub dhcp4_servers: Vec<ServerSeen>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
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
    /// Process start to online.
    pub total: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct State {
    pub version: String,
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
    /// The fetch stage (`boot` only): clock, manifest, artifacts installed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fetch: Option<crate::provision::FetchRecord>,
    /// The registration (`boot` with `zos.registrar=` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registration: Option<crate::register::RegistrationRecord>,
    /// The machine as PID 1 found it (`boot` as PID 1 only): boot path and Secure Boot,
    /// modules loaded, NICs without a driver, missing firmware.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine: Option<crate::machine::MachineRecord>,
}

impl State {
    /// Writes the state file and, next to it, one [`LeaseFile`] per lease held (the hand-over
    /// to `keep`).
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let mut json = serde_json::to_vec_pretty(self)?;
        json.push(b'\n');
        crate::dhcp4::apply::write_file_atomic(path, &json)?;
        for nic in &self.interfaces {
            if let Some(record) = &nic.lease {
                LeaseFile {
                    interface: nic.name.clone(),
                    mac: nic.mac.clone(),
                    role: nic.role,
                    hostname: nic.dhcp_hostname.clone(),
                    record: record.clone(),
                }
                .write(path)?;
            }
        }
        Ok(())
    }

    /// The address this NIC had in a previous state file, for INIT-REBOOT. Reads only the
    /// two fields it needs, so a state file from another version (or written by hand) works.
    pub fn previous_address(path: &Path, mac: &str) -> Option<Ipv4Addr> {
        let text = std::fs::read_to_string(path).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| log::info!("{}: not reusing it: {e}", path.display()))
            .ok()?;
        v.get("interfaces")?
            .as_array()?
            .iter()
            .find(|i| i.get("mac").and_then(|m| m.as_str()) == Some(mac))?
            .get("lease")?
            .get("address")?
            .as_str()?
            .parse()
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_has_the_contract_keys() {
        let lease = Lease {
            address: Ipv4Addr::new(10, 1, 0, 23),
            prefix: 24,
            server: Ipv4Addr::new(10, 1, 0, 1),
            lease_secs: 3600,
            t1_secs: 1800,
            t2_secs: 3150,
            routers: vec![Ipv4Addr::new(10, 1, 0, 1)],
            classless_routes: vec![],
            dns: vec![],
            domain: None,
            search: vec![],
            ntp: vec![],
            mtu: None,
        };
        let state = State {
            version: "0.1.0".into(),
            online: true,
            error: None,
            interfaces: vec![Interface {
                name: "eth0".into(),
                mac: "02:00:00:00:00:01".into(),
                role: Role::Oob,
                carrier: true,
                mtu: 1500,
                ipv4: vec![Ipv4Entry {
                    address: lease.address,
                    prefix: 24,
                    source: "dhcp".into(),
                    lease_secs: 3600,
                    server: lease.server,
                }],
                ipv6: vec![],
                dhcp4: "BOUND".into(),
                lease: Some(LeaseRecord::new("01:02:00:00:00:00:01".into(), lease, 1)),
                dhcp_hostname: Some("zos-node".into()),
                vlan: None,
                roles: vec![Role::Oob],
                slaac: None,
                dhcp4_servers: Vec::new(),
            }],
            classification: None,
            ipv4: Ipv4Summary {
                gateway: Some(Ipv4Addr::new(10, 1, 0, 1)),
                reachable: Some(true),
            },
            ipv6: Ipv6Summary::default(),
            dns: vec![],
            probes: vec![],
            preferred_family: None,
            search: vec![],
            ntp: vec![],
            timings_ms: Timings {
                dhcp4: Some(12),
                total: Some(40),
                ..Timings::default()
            },
            fetch: None,
            registration: None,
            machine: None,
        };
        let v: serde_json::Value = serde_json::to_value(&state).unwrap();
        assert_eq!(v["interfaces"][0]["role"], "oob");
        assert_eq!(v["interfaces"][0]["ipv4"][0]["address"], "10.1.0.23");
        assert_eq!(v["interfaces"][0]["lease"]["address"], "10.1.0.23");
        assert_eq!(
            v["interfaces"][0]["lease"]["routes"][0]["destination"],
            "0.0.0.0/0"
        );
        assert_eq!(
            v["interfaces"][0]["lease"]["routes"][0]["gateway"],
            "10.1.0.1"
        );
        assert_eq!(v["ipv4"]["gateway"], "10.1.0.1");
        assert_eq!(v["timings_ms"]["dhcp4"], 12);
        let dir = std::env::temp_dir().join(format!("zos-state-{}", std::process::id()));
        let path = dir.join("state.json");
        state.write(&path).unwrap();
        let leases = LeaseFile::read_all(&path).unwrap();
        assert_eq!(leases.len(), 1, "{leases:?}");
        let handed = leases[0].as_ref().unwrap();
        assert_eq!(handed.interface, "eth0");
        assert_eq!(handed.hostname.as_deref(), Some("zos-node"));
        assert_eq!(Some(&handed.record), state.interfaces[0].lease.as_ref());
        assert!(LeaseFile::path(&path, "eth0").ends_with("leases/eth0.json"));
        assert_eq!(
            State::previous_address(&path, "02:00:00:00:00:01"),
            Some(Ipv4Addr::new(10, 1, 0, 23))
        );
        assert_eq!(State::previous_address(&path, "02:00:00:00:00:02"), None);
        // A minimal hand-written file is enough.
        std::fs::write(
            &path,
            r#"{"interfaces":[{"mac":"02:00:00:00:00:03","lease":{"address":"10.9.0.5"}}]}"#,
        )
        .unwrap();
        assert_eq!(
            State::previous_address(&path, "02:00:00:00:00:03"),
            Some(Ipv4Addr::new(10, 9, 0, 5))
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
