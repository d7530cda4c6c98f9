//! The state file: the hand-over, one versioned type that is written and read back as it is
//! (serde both ways). The network stage's result ([`NetState`]) flattened, with the fetch
//! stage's and the registration's records beside it: a serialisation of the stages' typed
//! results, never a second source of truth.
use std::path::Path;

use serde::{Deserialize, Serialize};

pub use crate::net::state::*;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// The hand-over's format ([`State::FORMAT`]): a reader refuses another one rather than
    /// guess at it.
    #[serde(default)]
    pub format: u32,
    pub version: String,
    /// The network stage's result.
    #[serde(flatten)]
    pub net: NetState,
    /// The fetch stage (`boot` only): clock, manifest, artifacts installed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fetch: Option<crate::fetch::stage::FetchRecord>,
    /// The registration (`boot` with `zos.registrar=` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registration: Option<crate::register::RegistrationRecord>,
    /// The machine as PID 1 found it (`boot` as PID 1 only): boot path and Secure Boot,
    /// modules loaded, NICs without a driver, missing firmware.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine: Option<crate::pid1::machine::MachineRecord>,
}

impl State {
    /// The hand-over after the network stage.
    pub fn new(net: NetState) -> State {
        State {
            format: State::FORMAT,
            version: env!("CARGO_PKG_VERSION").to_string(),
            net,
            fetch: None,
            registration: None,
            machine: None,
        }
    }

    /// Writes the state file and, next to it, one [`LeaseFile`] per lease held (the hand-over
    /// to `keep`).
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let mut json = serde_json::to_vec_pretty(self)?;
        json.push(b'\n');
        crate::net::dhcp4::apply::write_file_atomic(path, &json)?;
        for nic in &self.net.interfaces {
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

    /// The hand-over's format; bump it when a field changes meaning or goes away.
    pub const FORMAT: u32 = 1;

    /// Reads a state file back into the type that wrote it.
    pub fn read(path: &Path) -> Result<State, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let state: State = serde_json::from_str(&text)
            .map_err(|e| format!("{} is not a zos-netboot state file: {e}", path.display()))?;
        if state.format != State::FORMAT {
            return Err(format!(
                "{} is in format {} (written by zos-netboot {}); this is zos-netboot {}, which \
                 reads format {}",
                path.display(),
                state.format,
                state.version,
                env!("CARGO_PKG_VERSION"),
                State::FORMAT
            ));
        }
        // Option 12 is handed over in the lease files only.
        let mut state = state;
        for nic in state
            .net
            .interfaces
            .iter_mut()
            .filter(|i| i.lease.is_some())
        {
            nic.dhcp_hostname = std::fs::read_to_string(LeaseFile::path(path, &nic.name))
                .ok()
                .and_then(|t| serde_json::from_str::<LeaseFile>(&t).ok())
                .and_then(|f| f.hostname);
        }
        Ok(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::dhcp4::client::Lease;
    use std::net::Ipv4Addr;

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
        let mut state = State::new(NetState {
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
        });
        state.version = "0.1.0".into();
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
        assert_eq!(Some(&handed.record), state.net.interfaces[0].lease.as_ref());
        assert!(LeaseFile::path(&path, "eth0").ends_with("leases/eth0.json"));
        assert_eq!(
            previous_address(&path, "02:00:00:00:00:01"),
            Some(Ipv4Addr::new(10, 1, 0, 23))
        );
        assert_eq!(previous_address(&path, "02:00:00:00:00:02"), None);
        // The same type reads it back, whole.
        assert_eq!(State::read(&path).unwrap(), state);
        // Another format is refused with a reason, not half-read.
        let mut other = serde_json::to_value(&state).unwrap();
        other["format"] = 99.into();
        std::fs::write(&path, other.to_string()).unwrap();
        let err = State::read(&path).unwrap_err();
        assert!(err.contains("format 99"), "{err}");
        // INIT-REBOOT takes the previous address from any format, even a minimal file.
        assert_eq!(
            previous_address(&path, "02:00:00:00:00:01"),
            Some(Ipv4Addr::new(10, 1, 0, 23))
        );
        std::fs::write(
            &path,
            r#"{"interfaces":[{"mac":"02:00:00:00:00:03","lease":{"address":"10.9.0.5"}}]}"#,
        )
        .unwrap();
        assert_eq!(
            previous_address(&path, "02:00:00:00:00:03"),
            Some(Ipv4Addr::new(10, 9, 0, 5))
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
