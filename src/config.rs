//! One resolved configuration: the command line's options and the kernel command line's
//! settings become, in one place, the network stage's settings and one layout of the files the
//! boot hands over. Every default is here.
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cmdline::{self, Settings};
use crate::net::NetConfig;

/// Where the state lives when nothing says otherwise (tmpfs in the initramfs, moved into the
/// next root at the hand-over).
pub const DEFAULT_STATE: &str = "/run/zos-netboot/state.json";
/// The network stage gives up after this long without a lease (`zos.timeout=`, `--timeout`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long SLAAC is waited for per NIC after its carrier came up (`--wait-ipv6`).
pub const DEFAULT_IPV6_WAIT: Duration = Duration::from_secs(3);
pub const DEFAULT_RESOLV: &str = "/etc/resolv.conf";

/// The files the boot writes and `keep` reads, all derived from the state file's path so that
/// `--state /x/s.json` moves every one of them together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatePaths {
    state: PathBuf,
}

impl StatePaths {
    pub fn new(state: impl Into<PathBuf>) -> Self {
        StatePaths {
            state: state.into(),
        }
    }

    /// The state file itself (the typed hand-over, [`crate::state::State`]).
    pub fn state(&self) -> &Path {
        &self.state
    }

    /// The directory that holds it and everything below.
    pub fn dir(&self) -> &Path {
        match self.state.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        }
    }

    /// `leases/IF.json`: one per bound NIC, what `keep` resumes.
    pub fn lease(&self, interface: &str) -> PathBuf {
        self.dir()
            .join(crate::net::state::LeaseFile::DIR)
            .join(format!("{interface}.json"))
    }

    /// The download cache (resumed downloads survive a retry of the fetch stage).
    pub fn cache(&self) -> PathBuf {
        self.dir().join("cache")
    }

    /// Where `identity.seed` goes when `zos.identity=` names no file.
    pub fn identity_dir(&self) -> &Path {
        self.dir()
    }
}

/// What the command line asked for, before the kernel command line is read.
#[derive(Debug, Clone, Default)]
pub struct Invocation {
    /// `--state`.
    pub state: Option<PathBuf>,
    /// `--sysroot`: every path of the node inside this directory.
    pub sysroot: Option<PathBuf>,
    pub timeout_secs: Option<u64>,
    pub wait_ipv6_secs: Option<f64>,
    pub resolv: Option<PathBuf>,
    /// `--iface` (or `dhcp4 IF`).
    pub ifaces: Vec<String>,
    /// `dhcp4 IF`: that NIC is the OOB NIC.
    pub oob: Option<String>,
    /// SLAAC, probes and the classification too (`net`, `boot`), not IPv4 alone (`dhcp4`).
    pub full: bool,
    /// This process is PID 1 of the initramfs.
    pub pid1: bool,
    /// `uname -r`, for the modules directory.
    pub release: String,
}

/// Everything the stages take, resolved once.
#[derive(Debug, Clone)]
pub struct Config {
    pub net: NetConfig,
    pub paths: StatePaths,
    /// Where the node's files are: `/` as PID 1, `--sysroot DIR` in a lab, `None` elsewhere
    /// (no stage that writes the node's files runs).
    pub sysroot: Option<PathBuf>,
}

impl Config {
    pub fn resolve(cli: &Invocation, settings: &Settings) -> Config {
        let state = match (&cli.state, &cli.sysroot) {
            (Some(s), _) => s.clone(),
            (None, Some(root)) => root.join(DEFAULT_STATE.trim_start_matches('/')),
            (None, None) => PathBuf::from(DEFAULT_STATE),
        };
        let paths = StatePaths::new(state);
        let static_ipv4 = match &settings.ip {
            Some(cmdline::IpSetting::Static(s)) => Some(s.clone()),
            _ => None,
        };
        let mut ifaces = if cli.ifaces.is_empty() {
            settings.ifaces.clone()
        } else {
            cli.ifaces.clone()
        };
        if let Some(cmdline::IpSetting::Dhcp { device: Some(d) }) = &settings.ip {
            if ifaces.is_empty() {
                ifaces.push(d.clone());
            }
        }
        let ipv6_wait = cli.wait_ipv6_secs.map_or(DEFAULT_IPV6_WAIT, |s| {
            Duration::from_secs_f64(s.clamp(0.0, 3600.0))
        });
        let net = NetConfig {
            ifaces,
            oob: cli.oob.clone().or(settings.oob.clone()),
            timeout: cli
                .timeout_secs
                .or(settings.timeout_secs)
                .map_or(DEFAULT_TIMEOUT, Duration::from_secs),
            state_path: paths.state().to_path_buf(),
            resolv_path: cli
                .resolv
                .clone()
                .unwrap_or_else(|| PathBuf::from(DEFAULT_RESOLV)),
            hostname: settings.hostname.clone(),
            client_id: settings.client_id.clone(),
            ipv6_wait: cli.full.then_some(ipv6_wait),
            probes: if cli.full {
                settings.probe_urls()
            } else {
                Vec::new()
            },
            sysctl_root: PathBuf::from("/proc/sys/net/ipv6"),
            static_ipv4,
            vlans: settings.vlans.clone(),
            bonds: settings.bonds.clone(),
            bond_auto: settings.bond_auto,
            modules_dir: cli
                .pid1
                .then(|| PathBuf::from(format!("/lib/modules/{}", cli.release))),
        };
        Config {
            net,
            paths,
            sysroot: if cli.pid1 {
                Some(PathBuf::from("/"))
            } else {
                cli.sysroot.clone()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(cli: Invocation, cmdline: &str) -> Config {
        Config::resolve(&cli, &cmdline::parse(cmdline).0)
    }

    #[test]
    fn every_file_follows_the_state_path() {
        // `boot --state /x/s.json` once wrote /x/state.json while INIT-REBOOT and keep read
        // /x/s.json: one layout now, derived from one path.
        let c = resolve(
            Invocation {
                state: Some("/x/s.json".into()),
                ..Invocation::default()
            },
            "",
        );
        assert_eq!(c.paths.state(), Path::new("/x/s.json"));
        assert_eq!(c.net.state_path, PathBuf::from("/x/s.json"));
        assert_eq!(c.paths.lease("eth0"), PathBuf::from("/x/leases/eth0.json"));
        assert_eq!(c.paths.cache(), PathBuf::from("/x/cache"));
        assert_eq!(
            crate::net::state::LeaseFile::path(c.paths.state(), "eth0"),
            c.paths.lease("eth0")
        );
        assert_eq!(StatePaths::new("s.json").dir(), Path::new("."));
    }

    #[test]
    fn sysroot_moves_the_default_state_and_pid1_is_rooted() {
        let c = resolve(
            Invocation {
                sysroot: Some("/tmp/root".into()),
                ..Invocation::default()
            },
            "",
        );
        assert_eq!(
            c.paths.state(),
            Path::new("/tmp/root/run/zos-netboot/state.json")
        );
        assert_eq!(c.sysroot, Some(PathBuf::from("/tmp/root")));
        let c = resolve(
            Invocation {
                pid1: true,
                release: "6.1.0-1-amd64".into(),
                full: true,
                ..Invocation::default()
            },
            "",
        );
        assert_eq!(c.paths.state(), Path::new(DEFAULT_STATE));
        assert_eq!(c.sysroot, Some(PathBuf::from("/")));
        assert_eq!(
            c.net.modules_dir,
            Some(PathBuf::from("/lib/modules/6.1.0-1-amd64"))
        );
    }

    #[test]
    fn defaults_and_overrides_in_one_place() {
        let c = resolve(
            Invocation {
                full: true,
                ..Invocation::default()
            },
            "",
        );
        assert_eq!(c.net.timeout, DEFAULT_TIMEOUT);
        assert_eq!(c.net.ipv6_wait, Some(DEFAULT_IPV6_WAIT));
        assert_eq!(c.net.resolv_path, PathBuf::from(DEFAULT_RESOLV));
        // The CLI wins over the kernel command line; `dhcp4` is IPv4 alone.
        let c = resolve(
            Invocation {
                timeout_secs: Some(7),
                ifaces: vec!["eth1".into()],
                oob: Some("eth1".into()),
                ..Invocation::default()
            },
            "zos.timeout=30 zos.oob=eth0",
        );
        assert_eq!(c.net.timeout, Duration::from_secs(7));
        assert_eq!(c.net.ifaces, vec!["eth1".to_string()]);
        assert_eq!(c.net.oob.as_deref(), Some("eth1"));
        assert_eq!(c.net.ipv6_wait, None);
        assert!(c.net.probes.is_empty());
        // ip=:::::eth2:dhcp limits DHCP to that NIC.
        let c = resolve(Invocation::default(), "ip=:::::eth2:dhcp");
        assert_eq!(c.net.ifaces, vec!["eth2".to_string()]);
    }
}
