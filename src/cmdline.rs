//! Kernel command line → typed [`Settings`].
//!
//! Pure: takes the text of `/proc/cmdline` (or `--cmdline`), returns settings plus the words it
//! did not understand, so the console can say so instead of silently ignoring a typo.
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
}

impl Settings {
    /// The hub a run mode talks to (ZOS's hubs; `zos.probe=` overrides for probing).
    pub fn hub_url(&self) -> &'static str {
        match self.runmode {
            RunMode::Prod => "https://hub.grid.tf/",
            RunMode::Dev => "https://hub.dev.grid.tf/",
            RunMode::Test => "https://hub.test.grid.tf/",
            RunMode::Qa => "https://hub.qa.grid.tf/",
        }
    }

    /// What `net` probes: the `zos.probe=` URLs, else the hub; nothing when disabled.
    pub fn probe_urls(&self) -> Vec<String> {
        if self.probes_disabled {
            Vec::new()
        } else if self.probes.is_empty() {
            vec![self.hub_url().to_string()]
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
fn words(cmdline: &str) -> Vec<String> {
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
            ("zos.hostname", Some(v)) if crate::dhcp4::client::is_valid_domain(v) => {
                s.hostname = Some(v.to_string())
            }
            ("zos.hostname", _) => bad("expects a host name (letters, digits, '-', '.')"),
            ("zos.clientid", Some(v)) => match parse_hex_bytes(v) {
                Some(id) => s.client_id = Some(id),
                None => bad("expects hex bytes like 01:02:03:aa:bb:cc"),
            },
            ("zos.timeout", Some(v)) => match v.parse() {
                Ok(t) => s.timeout_secs = Some(t),
                Err(_) => bad("expects seconds"),
            },
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn quotes_group_words() {
        let (s, _) = parse("a=\"x y\" zos.hostname=\"n1\" farmer_id=\"7\"");
        assert_eq!(s.hostname.as_deref(), Some("n1"));
        assert_eq!(s.farmer_id, Some(7));
        assert_eq!(words("a=\"x y\"  b"), vec!["a=x y", "b"]);
    }
}
