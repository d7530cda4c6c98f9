//! Kernel command line → typed [`Settings`].
//!
//! Pure: takes the text of `/proc/cmdline` (or `--cmdline`), returns settings plus the words it
//! did not understand, so the console can say so instead of silently ignoring a typo.
use serde::{Deserialize, Serialize};
use std::fmt;

/// ZOS's grid selector (`runmode=`); prod when absent, like ZOS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunMode {
    #[default]
    Prod,
    Dev,
    Test,
    Qa,
}

impl fmt::Display for RunMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RunMode::Prod => "prod",
            RunMode::Dev => "dev",
            RunMode::Test => "test",
            RunMode::Qa => "qa",
        })
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Settings {
    /// `runmode=` (ZOS key).
    pub runmode: RunMode,
    /// `version=` (ZOS key), e.g. v3.
    pub version: Option<String>,
    /// `farmer_id=` (ZOS key).
    pub farmer_id: Option<u32>,
    /// `zos-debug` (ZOS key) or `zos.debug`: verbose logs (and, as PID 1, a rescue shell).
    pub debug: bool,
    /// `zos.oob=IF`: the NIC that must carry the management lease; default: the first bound.
    pub oob: Option<String>,
    /// `zos.iface=IF` (repeatable): consider only these NICs.
    pub ifaces: Vec<String>,
    /// `zos.hostname=NAME`: DHCP option 12; default `zos-<mac>`.
    pub hostname: Option<String>,
    /// `zos.clientid=HEX` (colon-separated bytes): DHCP option 61; default `01:<mac>`.
    pub client_id: Option<Vec<u8>>,
    /// `zos.timeout=SECS`: how long `net` waits for the network.
    pub timeout_secs: Option<u64>,
    /// `zos.probe=URL` (repeatable): reachability targets; `zos.probe=none` disables probing.
    /// Empty: the grid hub of the run mode.
    pub probes: Vec<String>,
    pub probes_disabled: bool,
    /// `zos.root=DIR`: the next root to switch into (default `/next-root`).
    pub next_root: Option<String>,
    /// `zos.init=PATH`: the init to exec in the next root (default `/sbin/init`).
    pub next_init: Option<String>,
    /// `ip=` (kernel/dracut syntax): a static IPv4 configuration, or an explicit DHCP request.
    pub ip: Option<IpSetting>,
    /// `zos.hub=URL` (repeatable, in order of preference): the hubs (default: the run mode's).
    pub hubs: Vec<String>,
    /// `zos.manifest=URL`: the boot manifest (default derived from the hub, runmode, version).
    pub manifest: Option<String>,
    /// `zos.ca=FILE` (repeatable): extra CA certificates to trust, besides the image's bundle.
    pub ca_files: Vec<String>,
    /// `zos.manifest_key=HEX` (repeatable, ignored in prod): an ed25519 public key whose
    /// manifest signatures are trusted besides the built-in ones (`fetch::signature`).
    pub manifest_keys: Vec<String>,
    /// `zos.identity=FILE`: the node's ed25519 seed on a persistent disk.
    pub identity: Option<String>,
    /// `zos.registrar=URL`: where the node registers; none: no registration.
    pub registrar: Option<String>,
    /// `zos.ntp=IP` (repeatable): SNTP servers, besides DHCP option 42.
    pub ntp: Vec<std::net::IpAddr>,
    /// `zos.fetch=none`: skip the fetch stage (the next root is already in the image).
    pub fetch_disabled: bool,
    /// `zos.fetch=flist`, or implied by `zos.config=` / `zos.flist=`: the OS comes as flists
    /// from the hub (ZOS's boot chain) instead of a manifest.
    pub fetch_flist: bool,
    /// `zos.config=URL`: a zos-config file (`hub_urls`) for the flist chain.
    pub config_url: Option<String>,
    /// `zos.flist=URL` (repeatable): install these flists, in order, instead of the chain.
    pub flists: Vec<String>,
    /// `zos.store=URL` (repeatable): block stores tried before the flists' own
    /// (`zdb://host:port[/ns]`, `http(s)://…`, `dir:///…`).
    pub stores: Vec<String>,
    /// `vlan:priv=ID`, `vlan:pub=ID` (ZOS's names) and `zos.vlan=IF.ID` (repeatable): 802.1Q
    /// links to create and use instead of (or beside) the untagged NICs.
    pub vlans: Vec<VlanSetting>,
    /// `zos.bond=MODE:IF,IF[,…]` (repeatable): bonds to create and use as one NIC.
    pub bonds: Vec<BondSetting>,
    /// `zos.bond=auto`: bond the NICs that see the same DHCP server.
    pub bond_auto: bool,
}

/// The kernel's `ip=` setting, as far as a node needs it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum IpSetting {
    /// `ip=dhcp` / `ip=IF:dhcp`: what we do anyway; `device` restricts it.
    Dhcp { device: Option<String> },
    /// `ip=<client>:<server>:<gw>:<netmask>:<hostname>:<device>:none[:<dns0>:<dns1>]`.
    Static(StaticIpv4),
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StaticIpv4 {
    pub address: std::net::Ipv4Addr,
    pub prefix: u8,
    pub gateway: Option<std::net::Ipv4Addr>,
    pub hostname: Option<String>,
    /// Empty: the first NIC with carrier.
    pub device: Option<String>,
    pub dns: Vec<std::net::Ipv4Addr>,
}

/// Parses the value of `ip=`. Accepts the kernel's nfsroot form and dracut's `IF:dhcp`.
pub fn parse_ip(value: &str) -> Result<IpSetting, String> {
    use std::net::Ipv4Addr;
    match value {
        "dhcp" | "on" | "any" => return Ok(IpSetting::Dhcp { device: None }),
        "off" | "none" => {
            return Err(
                "ip=off/none: no network configuration at all is not supported; \
                                      zos-netboot always configures the network"
                    .into(),
            )
        }
        _ => {}
    }
    let f: Vec<&str> = value.split(':').collect();
    if f.len() == 2 && matches!(f[1], "dhcp" | "on" | "any") && valid_ifname(f[0]) {
        return Ok(IpSetting::Dhcp {
            device: Some(f[0].to_string()),
        });
    }
    if f.len() < 7 {
        return Err(format!(
            "expected ip=<client>:<server>:<gateway>:<netmask>:<hostname>:<device>:none, got {} fields",
            f.len()
        ));
    }
    match f[6] {
        "none" | "off" | "static" => {}
        "dhcp" | "on" | "any" => {
            let device = Some(f[5]).filter(|d| !d.is_empty()).map(str::to_string);
            return Ok(IpSetting::Dhcp { device });
        }
        other => {
            return Err(format!(
                "autoconf method {other:?} is not supported (use none or dhcp)"
            ))
        }
    }
    let ip = |s: &str, what: &str| -> Result<Option<Ipv4Addr>, String> {
        if s.is_empty() {
            Ok(None)
        } else {
            s.parse()
                .map(Some)
                .map_err(|_| format!("{what} {s:?} is not an IPv4 address"))
        }
    };
    let address = ip(f[0], "client address")?.ok_or("a static ip= needs the client address")?;
    let netmask = ip(f[3], "netmask")?.ok_or("a static ip= needs the netmask")?;
    let m = u32::from(netmask);
    if m == 0 || m.leading_ones() + m.trailing_zeros() != 32 {
        return Err(format!("netmask {netmask} is not a valid mask"));
    }
    let gateway = ip(f[2], "gateway")?;
    let device = Some(f[5]).filter(|d| !d.is_empty()).map(str::to_string);
    if let Some(d) = &device {
        if !valid_ifname(d) {
            return Err(format!("{d:?} is not an interface name"));
        }
    }
    let hostname = Some(f[4])
        .filter(|h| !h.is_empty())
        .map(|h| {
            if is_valid_domain(h) {
                Ok(h.to_string())
            } else {
                Err(format!("hostname {h:?} is not a valid host name"))
            }
        })
        .transpose()?;
    let mut dns = Vec::new();
    for s in f.iter().skip(7).take(2) {
        dns.extend(ip(s, "DNS server")?);
    }
    Ok(IpSetting::Static(StaticIpv4 {
        address,
        prefix: m.leading_ones() as u8,
        gateway,
        hostname,
        device,
        dns,
    }))
}

/// The built-in hubs of a run mode, in order of preference. ZOS documents one hub per run
/// mode and no mirror of it, so each list has one entry; `zos.hub=` adds mirrors.
pub fn builtin_hubs(runmode: RunMode) -> &'static [&'static str] {
    match runmode {
        RunMode::Prod => &["https://hub.grid.tf/"],
        RunMode::Dev => &["https://hub.dev.grid.tf/"],
        RunMode::Test => &["https://hub.test.grid.tf/"],
        RunMode::Qa => &["https://hub.qa.grid.tf/"],
    }
}

impl Settings {
    /// Every hub, in order of preference: the `zos.hub=` URLs (duplicates dropped), else the
    /// run mode's built-in list.
    pub fn hub_urls(&self) -> Vec<String> {
        if self.hubs.is_empty() {
            return builtin_hubs(self.runmode)
                .iter()
                .map(|h| h.to_string())
                .collect();
        }
        let mut out: Vec<String> = Vec::new();
        for h in &self.hubs {
            if !out.contains(h) {
                out.push(h.clone());
            }
        }
        out
    }

    /// What `net` probes: the `zos.probe=` URLs, else the hubs; nothing when disabled.
    pub fn probe_urls(&self) -> Vec<String> {
        if self.probes_disabled {
            Vec::new()
        } else if self.probes.is_empty() {
            self.hub_urls()
        } else {
            self.probes.clone()
        }
    }
}

/// Something on the command line we could not use, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ignored {
    pub word: String,
    pub why: String,
}

/// Splits like the kernel does: whitespace separates words, double quotes group.
pub(crate) fn words(cmdline: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut started = false;
    for c in cmdline.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                started = true;
            }
            c if c.is_whitespace() && !quoted => {
                if started {
                    out.push(std::mem::take(&mut cur));
                    started = false;
                }
            }
            c => {
                cur.push(c);
                started = true;
            }
        }
    }
    if started {
        out.push(cur);
    }
    out
}

fn parse_hex_bytes(s: &str) -> Option<Vec<u8>> {
    let bytes: Option<Vec<u8>> = s
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).ok().filter(|_| b.len() <= 2))
        .collect();
    bytes.filter(|b| (2..=64).contains(&b.len()))
}

fn valid_ifname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':')
}

/// Parses a kernel command line. Keys it does not know that are not `zos.*` belong to the kernel
/// or to other programs and are skipped silently; an unknown or invalid `zos.*` key is reported.
pub fn parse(cmdline: &str) -> (Settings, Vec<Ignored>) {
    let mut s = Settings::default();
    let mut ignored = Vec::new();
    for word in words(cmdline) {
        let (key, value) = match word.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (word.as_str(), None),
        };
        let mut bad = |why: &str| {
            ignored.push(Ignored {
                word: word.clone(),
                why: why.to_string(),
            })
        };
        match (key, value) {
            ("runmode", Some(v)) => match v {
                "prod" => s.runmode = RunMode::Prod,
                "dev" => s.runmode = RunMode::Dev,
                "test" => s.runmode = RunMode::Test,
                "qa" => s.runmode = RunMode::Qa,
                _ => bad("runmode must be prod, dev, test or qa"),
            },
            ("version", Some(v)) if !v.is_empty() => s.version = Some(v.to_string()),
            ("farmer_id", Some(v)) => match v.parse() {
                Ok(id) => s.farmer_id = Some(id),
                Err(_) => bad("farmer_id must be a number"),
            },
            ("zos-debug", None) | ("zos.debug", None) => s.debug = true,
            ("zos.debug", Some(v)) => s.debug = !matches!(v, "0" | "no" | "false"),
            ("zos.oob", Some(v)) if valid_ifname(v) => s.oob = Some(v.to_string()),
            ("zos.iface", Some(v)) if valid_ifname(v) => s.ifaces.push(v.to_string()),
            ("zos.oob" | "zos.iface", _) => bad("expects an interface name"),
            ("zos.hostname", Some(v)) if is_valid_domain(v) => s.hostname = Some(v.to_string()),
            ("zos.hostname", _) => bad("expects a host name (letters, digits, '-', '.')"),
            ("zos.clientid", Some(v)) => match parse_hex_bytes(v) {
                Some(id) => s.client_id = Some(id),
                None => bad("expects hex bytes like 01:02:03:aa:bb:cc"),
            },
            ("zos.timeout", Some(v)) => match v.parse() {
                Ok(t) => s.timeout_secs = Some(t),
                Err(_) => bad("expects seconds"),
            },
            ("zos.root", Some(v)) if v.starts_with('/') => s.next_root = Some(v.to_string()),
            ("zos.init", Some(v)) if v.starts_with('/') => s.next_init = Some(v.to_string()),
            ("zos.root" | "zos.init", _) => bad("expects an absolute path"),
            ("ip", Some(v)) => match parse_ip(v) {
                Ok(ip) => s.ip = Some(ip),
                Err(e) => bad(&e),
            },
            ("zos.hub" | "zos.manifest" | "zos.registrar", Some(v))
                if v.starts_with("http://") || v.starts_with("https://") =>
            {
                let v = Some(v.to_string());
                match key {
                    "zos.hub" => s.hubs.extend(v),
                    "zos.manifest" => s.manifest = v,
                    _ => s.registrar = v,
                }
            }
            ("zos.hub" | "zos.manifest" | "zos.registrar", _) => {
                bad("expects an http:// or https:// URL")
            }
            ("zos.manifest_key", Some(v))
                if v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()) =>
            {
                s.manifest_keys.push(v.to_ascii_lowercase())
            }
            ("zos.manifest_key", _) => bad("expects 64 hex digits (an ed25519 public key)"),
            ("zos.ca", Some(v)) if v.starts_with('/') => s.ca_files.push(v.to_string()),
            ("zos.identity", Some(v)) if v.starts_with('/') => s.identity = Some(v.to_string()),
            ("zos.ca" | "zos.identity", _) => bad("expects an absolute path"),
            ("zos.ntp", Some(v)) => match v.parse() {
                Ok(ip) => s.ntp.push(ip),
                Err(_) => bad("expects an IP address"),
            },
            ("vlan:priv" | "vlan:pub", Some(v)) => match parse_vlan_id(v) {
                Ok(id) => s.vlans.push(VlanSetting {
                    parent: None,
                    id,
                    purpose: if key == "vlan:priv" {
                        Purpose::Management
                    } else {
                        Purpose::Public
                    },
                }),
                Err(e) => bad(&e),
            },
            ("zos.vlan", Some(v)) => match v
                .rsplit_once('.')
                .map(|(p, id)| (valid_ifname(p), p, parse_vlan_id(id)))
            {
                Some((true, parent, Ok(id))) => s.vlans.push(VlanSetting {
                    parent: Some(parent.to_string()),
                    id,
                    purpose: Purpose::Both,
                }),
                Some((_, _, Err(e))) => bad(&e),
                _ => bad("expects IF.ID, e.g. zos.vlan=eth1.200"),
            },
            ("zos.bond", Some("auto")) => s.bond_auto = true,
            ("zos.bond", Some(v)) => match parse_bond(v) {
                Ok(b) => s.bonds.push(b),
                Err(e) => bad(&e),
            },
            ("zos.fetch", Some("none")) => s.fetch_disabled = true,
            ("zos.fetch", Some("flist")) => s.fetch_flist = true,
            ("zos.fetch", _) => bad("expects none or flist"),
            ("zos.config" | "zos.flist", Some(v))
                if v.starts_with("http://") || v.starts_with("https://") =>
            {
                s.fetch_flist = true;
                match key {
                    "zos.config" => s.config_url = Some(v.to_string()),
                    _ => s.flists.push(v.to_string()),
                }
            }
            ("zos.config" | "zos.flist", _) => bad("expects an http:// or https:// URL"),
            ("zos.store", Some(v))
                if ["zdb://", "http://", "https://", "dir:///"]
                    .iter()
                    .any(|p| v.starts_with(p)) =>
            {
                s.stores.push(v.to_string())
            }
            ("zos.store", _) => bad("expects a zdb://, http(s):// or dir:/// URL"),
            ("zos.probe", Some("none")) => s.probes_disabled = true,
            ("zos.probe", Some(v)) if v.starts_with("http://") || v.starts_with("https://") => {
                s.probes.push(v.to_string())
            }
            ("zos.probe", _) => bad("expects an http:// or https:// URL, or none"),
            (k, _) if k.starts_with("zos.") => bad("unknown zos.* key"),
            _ => {}
        }
    }
    (s, ignored)
}

// Settings whose meaning the network stage gives (net::topology, net::dhcp4 use them).

/// What a VLAN carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Purpose {
    /// `vlan:priv`: the management (OOB) segment: DHCPv4.
    Management,
    /// `vlan:pub`: the public segment: IPv6 SLAAC.
    Public,
    /// `zos.vlan=IF.ID`: both, like an untagged NIC.
    Both,
}

/// One VLAN key from the kernel command line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VlanSetting {
    /// `None`: on every NIC considered (or on `zos.oob=` for `vlan:priv`).
    pub parent: Option<String>,
    pub id: u16,
    pub purpose: Purpose,
}

/// 802.1Q ids 1–4094 (0 means "priority tag only", 4095 is reserved).
pub fn parse_vlan_id(text: &str) -> Result<u16, String> {
    match text.parse::<u16>() {
        Ok(id) if (1..=4094).contains(&id) => Ok(id),
        _ => Err(format!("VLAN id must be 1-4094, not {text:?}")),
    }
}

/// `zos.bond=` modes: what a farmer's switch supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BondMode {
    /// One slave carries the traffic, another takes over when its carrier goes: any switch.
    ActiveBackup,
    /// 802.3ad / LACP: both slaves carry traffic; the switch ports must be in one LACP group.
    #[serde(rename = "802.3ad")]
    Lacp,
}

/// `zos.bond=MODE:IF,IF[,…]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BondSetting {
    pub mode: BondMode,
    pub slaves: Vec<String>,
}

/// Parses the value of `zos.bond=`.
pub fn parse_bond(text: &str) -> Result<BondSetting, String> {
    if text == "auto" {
        // Read by the command line as Settings::bond_auto, never as a MODE:IF,IF bond.
        return Err("auto is not a MODE:IF,IF bond".into());
    }
    let (mode, slaves) = text
        .split_once(':')
        .ok_or("expects MODE:IF,IF, e.g. zos.bond=active-backup:eth0,eth1")?;
    let mode = match mode {
        "active-backup" => BondMode::ActiveBackup,
        "802.3ad" | "lacp" => BondMode::Lacp,
        other => return Err(format!("bond mode {other:?}: use active-backup or 802.3ad")),
    };
    let slaves: Vec<String> = slaves.split(',').map(str::to_string).collect();
    if slaves.len() < 2 || slaves.iter().any(|s| s.is_empty() || s.len() > 15) {
        return Err("a bond needs at least two interface names".into());
    }
    Ok(BondSetting { mode, slaves })
}

/// A DNS name we are willing to write into resolv.conf: LDH labels, no spaces or control
/// characters that could inject another resolv.conf line.
pub fn is_valid_domain(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flist_keys_select_the_flist_mode() {
        let (s, ignored) = parse(
            "zos.config=http://10.1.0.1/zos-config/testing.json zos.flist=http://h/a.flist \
             zos.flist=https://h/b.fl zos.store=zdb://10.1.0.1:9900/ns zos.store=ftp://x \
             zos.config=/etc/x zos.fetch=maybe",
        );
        assert!(s.fetch_flist);
        assert_eq!(
            s.config_url.as_deref(),
            Some("http://10.1.0.1/zos-config/testing.json")
        );
        assert_eq!(s.flists, ["http://h/a.flist", "https://h/b.fl"]);
        assert_eq!(s.stores, ["zdb://10.1.0.1:9900/ns"]);
        let bad: Vec<&str> = ignored.iter().map(|i| i.word.as_str()).collect();
        assert_eq!(
            bad,
            ["zos.store=ftp://x", "zos.config=/etc/x", "zos.fetch=maybe"]
        );
        let (s, _) = parse("zos.fetch=flist");
        assert!(s.fetch_flist && s.flists.is_empty() && s.config_url.is_none());
        assert!(!parse("runmode=test").0.fetch_flist);
    }

    #[test]
    fn vlan_keys_are_read_and_bad_ones_named() {
        use super::{Purpose, VlanSetting};
        let (s, ignored) = parse(
            "vlan:priv=100 vlan:pub=200 zos.vlan=eth1.300 vlan:priv=0 zos.vlan=eth1 \
             zos.vlan=eth1.5000",
        );
        assert_eq!(
            s.vlans,
            vec![
                VlanSetting {
                    parent: None,
                    id: 100,
                    purpose: Purpose::Management
                },
                VlanSetting {
                    parent: None,
                    id: 200,
                    purpose: Purpose::Public
                },
                VlanSetting {
                    parent: Some("eth1".into()),
                    id: 300,
                    purpose: Purpose::Both
                },
            ]
        );
        let words: Vec<&str> = ignored.iter().map(|i| i.word.as_str()).collect();
        assert_eq!(
            words,
            ["vlan:priv=0", "zos.vlan=eth1", "zos.vlan=eth1.5000"]
        );
    }

    #[test]
    fn zos_keys_and_our_keys_are_read() {
        let (s, ignored) = parse(
            "BOOT_IMAGE=/vmlinuz console=ttyS0 runmode=test farmer_id=42 version=v3 zos-debug \
             zos.oob=eth1 zos.iface=eth0 zos.iface=eth1 zos.hostname=node-7 \
             zos.clientid=ff:00:11:22:33:44:55 zos.timeout=90 zos.probe=http://hub.lab.test/ \
             zos.probe=https://[2001:db8::1]/x\n",
        );
        assert!(ignored.is_empty(), "{ignored:?}");
        assert_eq!(s.runmode, RunMode::Test);
        assert_eq!(s.farmer_id, Some(42));
        assert_eq!(s.version.as_deref(), Some("v3"));
        assert!(s.debug);
        assert_eq!(s.oob.as_deref(), Some("eth1"));
        assert_eq!(s.ifaces, vec!["eth0", "eth1"]);
        assert_eq!(s.hostname.as_deref(), Some("node-7"));
        assert_eq!(
            s.client_id,
            Some(vec![0xff, 0, 0x11, 0x22, 0x33, 0x44, 0x55])
        );
        assert_eq!(s.timeout_secs, Some(90));
        assert_eq!(
            s.probe_urls(),
            vec!["http://hub.lab.test/", "https://[2001:db8::1]/x"]
        );
    }

    #[test]
    fn fetch_and_registration_keys_are_read() {
        let (s, ignored) = parse(
            "zos.hub=https://hub.lab.test/ zos.manifest=http://hub.lab.test/m.json \
             zos.ca=/etc/zos/ca.pem zos.identity=/var/cache/zos/seed \
             zos.registrar=https://grid.lab.test/api/v1/nodes zos.ntp=10.1.0.1 zos.ntp=2001:db8::123 \
             zos.fetch=none zos.ca=relative.pem zos.ntp=pool",
        );
        assert_eq!(s.hub_urls(), vec!["https://hub.lab.test/"]);
        assert_eq!(
            s.probe_urls(),
            vec!["https://hub.lab.test/"],
            "probes follow the hub"
        );
        assert_eq!(s.manifest.as_deref(), Some("http://hub.lab.test/m.json"));
        assert_eq!(s.ca_files, vec!["/etc/zos/ca.pem"]);
        assert_eq!(s.identity.as_deref(), Some("/var/cache/zos/seed"));
        assert_eq!(
            s.registrar.as_deref(),
            Some("https://grid.lab.test/api/v1/nodes")
        );
        assert_eq!(s.ntp.len(), 2);
        assert!(s.fetch_disabled);
        let words: Vec<_> = ignored.iter().map(|i| i.word.as_str()).collect();
        assert_eq!(words, vec!["zos.ca=relative.pem", "zos.ntp=pool"]);
    }

    #[test]
    fn hubs_repeat_in_order_and_default_to_the_runmode_list() {
        let (s, ignored) = parse(
            "zos.hub=https://a.lab.test/ zos.hub=http://198.51.100.81/ zos.hub=https://a.lab.test/ \
             zos.hub=ftp://c",
        );
        assert_eq!(ignored.len(), 1, "{ignored:?}");
        assert_eq!(
            s.hub_urls(),
            vec!["https://a.lab.test/", "http://198.51.100.81/"],
            "in the given order, once each"
        );
        assert_eq!(s.probe_urls(), s.hub_urls(), "every hub is probed");
        let (s, _) = parse("runmode=qa");
        assert_eq!(s.hub_urls(), vec!["https://hub.qa.grid.tf/"]);
    }

    #[test]
    fn probes_default_to_the_runmode_hub_and_can_be_disabled() {
        assert_eq!(parse("").0.probe_urls(), vec!["https://hub.grid.tf/"]);
        assert_eq!(
            parse("runmode=dev").0.probe_urls(),
            vec!["https://hub.dev.grid.tf/"]
        );
        assert!(parse("zos.probe=none").0.probe_urls().is_empty());
        assert_eq!(parse("zos.probe=ftp://x").1.len(), 1);
    }

    #[test]
    fn defaults_are_prod_and_nothing_else() {
        let (s, ignored) = parse("quiet");
        assert_eq!(s, Settings::default());
        assert_eq!(s.runmode, RunMode::Prod);
        assert!(ignored.is_empty());
    }

    #[test]
    fn bad_values_and_unknown_zos_keys_are_reported_not_applied() {
        let (s, ignored) = parse(
            "runmode=staging farmer_id=abc zos.oob=this-name-is-too-long zos.hostname=-bad- \
             zos.clientid=zz zos.frobnicate=1",
        );
        assert_eq!(s, Settings::default());
        let words: Vec<_> = ignored.iter().map(|i| i.word.as_str()).collect();
        assert_eq!(
            words,
            vec![
                "runmode=staging",
                "farmer_id=abc",
                "zos.oob=this-name-is-too-long",
                "zos.hostname=-bad-",
                "zos.clientid=zz",
                "zos.frobnicate=1"
            ]
        );
        assert!(ignored[0].why.contains("prod"));
    }

    #[test]
    fn static_ip_in_kernel_syntax_is_understood() {
        let (s, ignored) =
            parse("ip=192.0.2.10::192.0.2.1:255.255.255.0:node1:eth0:none:192.0.2.53");
        assert!(ignored.is_empty(), "{ignored:?}");
        assert_eq!(
            s.ip,
            Some(IpSetting::Static(StaticIpv4 {
                address: "192.0.2.10".parse().unwrap(),
                prefix: 24,
                gateway: Some("192.0.2.1".parse().unwrap()),
                hostname: Some("node1".into()),
                device: Some("eth0".into()),
                dns: vec!["192.0.2.53".parse().unwrap()],
            }))
        );
        let (s, _) = parse("ip=10.0.0.5:::255.255.0.0:::none");
        let Some(IpSetting::Static(st)) = s.ip else {
            panic!("{:?}", s.ip)
        };
        assert_eq!((st.prefix, st.gateway, st.device), (16, None, None));
    }

    #[test]
    fn ip_dhcp_forms_are_understood() {
        assert_eq!(parse_ip("dhcp"), Ok(IpSetting::Dhcp { device: None }));
        assert_eq!(
            parse_ip("eth1:dhcp"),
            Ok(IpSetting::Dhcp {
                device: Some("eth1".into())
            })
        );
        assert_eq!(
            parse_ip(":::::eth2:dhcp"),
            Ok(IpSetting::Dhcp {
                device: Some("eth2".into())
            })
        );
    }

    #[test]
    fn bad_ip_settings_say_what_is_wrong() {
        for (value, phrase) in [
            (
                "10.0.0.5::10.0.0.1:255.0.255.0:h:eth0:none",
                "not a valid mask",
            ),
            (
                "10.0.0.999::10.0.0.1:255.255.255.0:h:eth0:none",
                "client address",
            ),
            ("10.0.0.5::10.0.0.1", "fields"),
            (
                "10.0.0.5::10.0.0.1:255.255.255.0:h:eth0:bootp",
                "not supported",
            ),
            ("off", "not supported"),
            (":::255.255.255.0::eth0:none", "needs the client address"),
        ] {
            let e = parse_ip(value).unwrap_err();
            assert!(e.contains(phrase), "{value}: {e}");
        }
        let (s, ignored) = parse("ip=nonsense");
        assert_eq!(s.ip, None);
        assert_eq!(ignored[0].word, "ip=nonsense");
    }

    #[test]
    fn quotes_group_words() {
        let (s, _) = parse("a=\"x y\" zos.hostname=\"n1\" farmer_id=\"7\"");
        assert_eq!(s.hostname.as_deref(), Some("n1"));
        assert_eq!(s.farmer_id, Some(7));
        assert_eq!(words("a=\"x y\"  b"), vec!["a=x y", "b"]);
    }
}
