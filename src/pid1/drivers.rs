//! Coldplug without udev: load the kernel modules that the machine's devices ask for.
//!
//! Every device in sysfs publishes a `modalias` string (`pci:v00001AF4d00001000…`); depmod's
//! `modules.alias` maps glob patterns over those strings to module names and `modules.dep` lists each
//! module's dependencies. udev normally does the matching; in our initramfs there is no udev, so
//! `/init` walks sysfs itself. Loading one driver can reveal new devices (virtio_pci creates the
//! `virtio0` device that needs virtio_net), so the walk repeats until a round loads nothing new.
//!
//! A USB host controller's devices appear some time after its driver is loaded (the hub
//! enumerates its ports in a kernel thread), so after a round that loaded one the scan repeats
//! until the device list has been quiet for a while ([`Settle`]). The kernel loads firmware by
//! itself from /lib/firmware; `machine.rs` reads what it missed from the kernel log.
//!
//! A network device that no driver took after the last round is a [`NoDriver`]: bus,
//! vendor:device and class in words, and whether the image has a module for it at all.
//!
//! The tables, the glob matcher and [`Settle`] are pure; [`coldplug_with`] takes the loader and
//! the sleep as parameters so the round logic is tested on a fake sysfs tree without touching the
//! kernel or the clock.

use std::collections::{HashMap, HashSet};
use std::ffi::CString;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::kmod::{finit_module, init_module, ModuleInitFlags};
use serde::{Deserialize, Serialize};

/// Enough for PCI → virtio → (rarely) a bus below that; more means something keeps inventing devices.
const MAX_ROUNDS: u32 = 5;
/// sysfs device trees are far shallower; the bound only guards against a pathological tree.
const MAX_DEPTH: usize = 64;
/// `finit_module` flag asking the kernel to decompress the file itself (Linux ≥ 6.1 built with
/// CONFIG_MODULE_DECOMPRESS). Not in nix's flag set yet.
const MODULE_INIT_COMPRESSED_FILE: ModuleInitFlags = ModuleInitFlags::from_bits_retain(4);

/// Module names in /proc/modules always use `_`; file names and aliases may use `-`.
fn normalise(module: &str) -> String {
    module.replace('-', "_")
}

/// `kernel/drivers/net/virtio_net.ko.xz` → `virtio_net`.
fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    normalise(file.find(".ko").map_or(file, |end| &file[..end]))
}

/// Shell-style glob as fnmatch(3) with no flags: `*`, `?`, `[a-z]`, `[!x]`/`[^x]`, `\` escapes.
/// Case-sensitive, as modalias strings are (hex digits are upper case, field tags lower case).
pub fn fnmatch(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    // Where to resume after the last `*`: pattern index after it, text index it currently covers.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        let step = match p.get(pi) {
            Some('*') => {
                star = Some((pi + 1, ti));
                pi += 1;
                continue;
            }
            Some('?') => Some(pi + 1),
            Some('[') => match bracket(&p, pi, t[ti]) {
                Some((true, next)) => Some(next),
                Some((false, _)) => None,
                None => (t[ti] == '[').then_some(pi + 1), // no closing `]`: a literal `[`
            },
            Some('\\') if pi + 1 < p.len() => (p[pi + 1] == t[ti]).then_some(pi + 2),
            Some(&c) => (c == t[ti]).then_some(pi + 1),
            None => None,
        };
        match (step, star) {
            (Some(next), _) => {
                pi = next;
                ti += 1;
            }
            (None, Some((after, covered))) => {
                // Let the last `*` swallow one more character and retry from there.
                pi = after;
                ti = covered + 1;
                star = Some((after, covered + 1));
            }
            (None, None) => return false,
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Matches `c` against the bracket expression starting at `p[open]`.
/// Returns whether it matched and the index after the closing `]`, or `None` if it never closes.
fn bracket(p: &[char], open: usize, c: char) -> Option<(bool, usize)> {
    let mut i = open + 1;
    let negate = matches!(p.get(i), Some('!' | '^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let lo = *p.get(i)?;
        if lo == ']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if p.get(i + 1) == Some(&'-') && p.get(i + 2).is_some_and(|&hi| hi != ']') {
            matched |= (lo..=p[i + 2]).contains(&c);
            i += 3;
        } else {
            matched |= lo == c;
            i += 1;
        }
    }
}

/// `modules.alias`: lines `alias <glob> <module>`, in depmod's order.
#[derive(Debug, Clone, Default)]
pub struct AliasTable {
    entries: Vec<Alias>,
}

#[derive(Debug, Clone)]
struct Alias {
    pattern: String,
    /// Length of the pattern's wildcard-free start: a cheap `starts_with` rules out almost every
    /// line (tens of thousands in a full kernel) before the glob matcher runs.
    literal: usize,
    module: String,
}

impl AliasTable {
    /// Lines that are not `alias <glob> <module>` (comments, blanks) are ignored.
    pub fn parse(text: &str) -> Self {
        let entries = text
            .lines()
            .filter_map(|line| {
                let mut words = line.split_whitespace();
                if words.next()? != "alias" {
                    return None;
                }
                let pattern = words.next()?;
                let module = normalise(words.next()?);
                let literal = pattern.find(['*', '?', '[', '\\']).unwrap_or(pattern.len());
                Some(Alias {
                    pattern: pattern.to_string(),
                    literal,
                    module,
                })
            })
            .collect();
        AliasTable { entries }
    }

    /// Module names whose pattern matches `modalias`, each once, in file order.
    pub fn lookup(&self, modalias: &str) -> Vec<String> {
        let mut found: Vec<String> = Vec::new();
        for alias in &self.entries {
            if modalias.starts_with(&alias.pattern[..alias.literal])
                && fnmatch(&alias.pattern, modalias)
                && !found.contains(&alias.module)
            {
                found.push(alias.module.clone());
            }
        }
        found
    }
}

/// `modules.dep`: `<path>: <dependency path>…`, paths relative to /lib/modules/<version>.
#[derive(Debug, Clone, Default)]
pub struct DepTable {
    modules: HashMap<String, DepEntry>,
}

#[derive(Debug, Clone)]
struct DepEntry {
    path: String,
    deps: Vec<String>,
}

impl DepTable {
    pub fn parse(text: &str) -> Self {
        let modules = text
            .lines()
            .filter_map(|line| {
                let (path, deps) = line.split_once(':')?;
                let path = path.trim();
                if path.is_empty() || path.starts_with('#') {
                    return None;
                }
                let deps = deps.split_whitespace().map(str::to_string).collect();
                Some((
                    module_name(path),
                    DepEntry {
                        path: path.to_string(),
                        deps,
                    },
                ))
            })
            .collect();
        DepTable { modules }
    }

    /// `(name, relative path)` to insert, dependencies first, each once, `module` last.
    /// depmod already lists the transitive closure, but not in an order we may rely on, so the
    /// order comes from walking each dependency's own line.
    pub fn load_order(&self, module: &str) -> Result<Vec<(String, String)>, String> {
        let name = normalise(module);
        let entry = self
            .modules
            .get(&name)
            .ok_or_else(|| format!("{name} is not in modules.dep"))?;
        let mut order = Vec::new();
        self.visit(&name, &entry.path, &mut Vec::new(), &mut order)?;
        Ok(order)
    }

    fn visit(
        &self,
        name: &str,
        path: &str,
        stack: &mut Vec<String>,
        order: &mut Vec<(String, String)>,
    ) -> Result<(), String> {
        if order.iter().any(|(done, _)| done == name) {
            return Ok(());
        }
        if let Some(start) = stack.iter().position(|n| n == name) {
            return Err(format!(
                "dependency cycle: {} → {name}",
                stack[start..].join(" → ")
            ));
        }
        stack.push(name.to_string());
        // A dependency without a line of its own is taken as having no dependencies.
        for dep in self.modules.get(name).map_or(&[][..], |e| &e.deps[..]) {
            self.visit(&module_name(dep), dep, stack, order)?;
        }
        stack.pop();
        order.push((name.to_string(), path.to_string()));
        Ok(())
    }
}

/// `modules.softdep`: `softdep <module> pre: <module>… post: <module>…`. Only `pre:` is used
/// (r8169 wants the `realtek` PHY driver loaded before it; the kernel would otherwise fall back
/// to the generic PHY driver, which is wrong for some chips).
#[derive(Debug, Clone, Default)]
pub struct SoftdepTable {
    pre: HashMap<String, Vec<String>>,
}

impl SoftdepTable {
    pub fn parse(text: &str) -> Self {
        let mut pre: HashMap<String, Vec<String>> = HashMap::new();
        for line in text.lines() {
            let mut words = line.split_whitespace();
            if words.next() != Some("softdep") {
                continue;
            }
            let Some(module) = words.next() else { continue };
            let mut in_pre = false;
            for w in words {
                match w {
                    "pre:" => in_pre = true,
                    "post:" => in_pre = false,
                    m if in_pre => pre.entry(normalise(module)).or_default().push(normalise(m)),
                    _ => {}
                }
            }
        }
        SoftdepTable { pre }
    }

    /// Modules to load before `module`.
    pub fn pre(&self, module: &str) -> &[String] {
        self.pre.get(module).map_or(&[], |v| &v[..])
    }
}

/// When a round loaded a driver whose devices appear later (a USB host controller: its hub
/// enumerates the ports in a kernel thread), the scan is repeated until the device list has not
/// changed for `quiet`, or `limit` has passed. Pure: fed the time since the round and the
/// number of devices seen.
#[derive(Debug, Clone)]
pub struct Settle {
    quiet: Duration,
    limit: Duration,
    last_change: Duration,
    seen: usize,
}

/// Between two scans while settling.
pub const SETTLE_STEP: Duration = Duration::from_millis(100);

impl Settle {
    /// USB: a device needs a debounce (100 ms), a port reset and a few control transfers; a
    /// hub behind a hub doubles that. 1.5 s without a new device is taken as "all there".
    pub const USB: (Duration, Duration) = (Duration::from_millis(1500), Duration::from_secs(6));

    pub fn new(seen: usize, (quiet, limit): (Duration, Duration)) -> Self {
        Settle {
            quiet,
            limit,
            last_change: Duration::ZERO,
            seen,
        }
    }

    /// Whether to stop scanning, after a scan at `now` (since the round) that saw `seen` devices.
    pub fn settled(&mut self, now: Duration, seen: usize) -> bool {
        if seen != self.seen {
            self.seen = seen;
            self.last_change = now;
        }
        now >= self.limit || now.saturating_sub(self.last_change) >= self.quiet
    }
}

/// A network device no driver took after the last round.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoDriver {
    /// `PCI`, `USB` or `virtio`.
    pub bus: String,
    /// `vendor:device`, lower-case hex (PCI `8086:15f3`, USB `0bda:8153`).
    pub id: String,
    /// The device class in words (`Ethernet controller`, `CDC Ethernet`).
    pub class: String,
    /// The sysfs name: `0000:00:03.0` (PCI), `1-1:1.0` (USB interface).
    pub address: String,
    /// Modules of the image whose aliases match it (loaded, or failed to load, but it is not
    /// bound); empty: the image has no driver for it.
    pub modules: Vec<String>,
}

impl NoDriver {
    /// The console line: what the device is and what to do.
    pub fn line(&self) -> String {
        let what = format!(
            "{} {} ({}) at {}",
            self.bus, self.id, self.class, self.address
        );
        if self.modules.is_empty() {
            format!(
                "no driver in this image for {what}: this NIC cannot be used; report it with this line \
                 (README: checking a machine before the datacentre)"
            )
        } else {
            format!(
                "{what} has no driver bound although the image has {}: see the failures above and the \
                 kernel log (firmware?)",
                self.modules.join(", ")
            )
        }
    }
}

/// The PCI base class 0x02 (network controller) subclasses, as lspci names them.
fn pci_network_class(subclass: &str) -> &'static str {
    match subclass {
        "00" => "Ethernet controller",
        "01" => "Token ring network controller",
        "02" => "FDDI network controller",
        "03" => "ATM network controller",
        "04" => "ISDN controller",
        "07" => "Infiniband controller",
        "08" => "Fabric controller",
        _ => "Network controller",
    }
}

/// `(bus, vendor:device, class in words)` of a network device's modalias; `None` for anything
/// that is not a network device ([`is_network`]).
fn describe(modalias: &str) -> Option<(&'static str, String, String)> {
    if !is_network(modalias) {
        return None;
    }
    if let Some((vendor, device, _)) = pci_ids(modalias) {
        let sub = modalias
            .rfind("sc")
            .and_then(|i| modalias.get(i + 2..i + 4))
            .unwrap_or("80");
        let class = pci_network_class(&sub.to_ascii_lowercase());
        return Some(("PCI", format!("{vendor}:{device}"), class.to_string()));
    }
    if let Some(rest) = modalias.strip_prefix("usb:v") {
        let vendor = rest.get(..4)?.to_ascii_lowercase();
        let product = rest
            .get(4..)?
            .strip_prefix('p')?
            .get(..4)?
            .to_ascii_lowercase();
        let field = |tag: &str| {
            modalias
                .find(tag)
                .and_then(|i| modalias.get(i + tag.len()..i + tag.len() + 2))
        };
        let class = match (field("ic"), field("isc")) {
            (Some("02"), Some("06")) => "CDC Ethernet",
            (Some("02"), Some("0D")) => "CDC NCM",
            (Some("02"), Some("0C")) => "CDC EEM",
            (Some("02"), Some("02")) => "CDC ACM (RNDIS)",
            (Some("E0"), _) => "RNDIS",
            _ => "USB network interface",
        };
        return Some(("USB", format!("{vendor}:{product}"), class.to_string()));
    }
    // `virtio:d00000001v00001AF4`: 32-bit ids, shown as their low 16 bits like PCI's.
    let device = modalias.strip_prefix("virtio:d")?.get(4..8)?;
    let vendor = modalias.rsplit_once('v').map_or("", |(_, v)| v);
    let vendor = vendor
        .get(vendor.len().saturating_sub(4)..)
        .unwrap_or(vendor);
    Some((
        "virtio",
        format!(
            "{}:{}",
            vendor.to_ascii_lowercase(),
            device.to_ascii_lowercase()
        ),
        "virtio network device".to_string(),
    ))
}

/// Whether a modalias is a USB host controller (PCI class 0x0C03): its devices come later.
fn is_usb_host(modalias: &str) -> bool {
    modalias.starts_with("pci:") && modalias.contains("bc0Csc03")
}

/// One module this run inserted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    pub module: String,
    /// Modalias strings of the devices that asked for it; empty for a dependency.
    pub for_devices: Vec<String>,
    /// For a dependency: the module that needed it.
    pub needed_by: Option<String>,
    pub ms: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ColdplugReport {
    pub loaded: Vec<Loaded>,
    /// `(module, error)`; also `("modules.alias", …)` when a table cannot be read.
    pub failed: Vec<(String, String)>,
    /// Modalias strings of unbound PCI/virtio/USB network devices that no module matches.
    pub unmatched: Vec<String>,
    /// Network devices (PCI class 0x02, USB CDC/RNDIS, virtio net) no driver took after the
    /// last round.
    pub nics_without_driver: Vec<NoDriver>,
    /// sysfs scans that had at least one module to load.
    pub rounds: u32,
    /// Time spent waiting for a USB host controller's devices to appear.
    pub settle_ms: u64,
}

impl ColdplugReport {
    /// The report in words for whoever reads the node's console.
    pub fn summary_lines(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "coldplug: {} module(s) loaded in {} round(s), {} failure(s)",
            self.loaded.len(),
            self.rounds,
            self.failed.len()
        )];
        for l in &self.loaded {
            let why = match &l.needed_by {
                Some(by) => format!("needed by {by}"),
                None => format!("for {}", devices_in_words(&l.for_devices)),
            };
            lines.push(format!("loaded {} ({why}) in {} ms", l.module, l.ms));
        }
        for (module, error) in &self.failed {
            lines.push(if module.starts_with("modules.") {
                format!("FAILED: {error} (no driver can be matched without it)")
            } else {
                format!("FAILED to load {module}: {error}")
            });
        }
        for nic in &self.nics_without_driver {
            lines.push(nic.line());
        }
        lines
    }
}

/// At most two devices, each cut short: a CPU's modalias lists every feature flag (~1 kB),
/// and a quad-port card asks four times for the same module.
fn devices_in_words(devices: &[String]) -> String {
    const KEEP: usize = 48;
    let mut words: Vec<String> = devices
        .iter()
        .take(2)
        .map(|d| match d.char_indices().nth(KEEP) {
            Some((cut, _)) => format!("{}…", &d[..cut]),
            None => d.clone(),
        })
        .collect();
    if devices.len() > 2 {
        words.push(format!("{} more", devices.len() - 2));
    }
    words.join(", ")
}

/// A sysfs device directory that has a `modalias`.
#[derive(Debug)]
struct Device {
    dir: PathBuf,
    modalias: String,
    bound: bool,
}

/// Walks `devices` (normally /sys/devices) without following symlinks: sysfs links every device
/// from several places (`subsystem`, `driver`, `port`…), and following them would loop.
/// A directory's own `modalias` comes before its children's, so parents are served first.
fn scan_devices(devices: &Path) -> Vec<Device> {
    fn walk(dir: &Path, depth: usize, found: &mut Vec<Device>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
        entries.sort_by_key(|e| e.file_name());
        if let Ok(text) = fs::read_to_string(dir.join("modalias")) {
            let modalias = text.trim();
            if !modalias.is_empty() {
                found.push(Device {
                    dir: dir.to_path_buf(),
                    modalias: modalias.to_string(),
                    bound: dir.join("driver").symlink_metadata().is_ok(),
                });
            }
        }
        if depth == MAX_DEPTH {
            return;
        }
        for entry in entries {
            // DirEntry::file_type does not follow symlinks.
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                walk(&entry.path(), depth + 1, found);
            }
        }
    }
    let mut found = Vec::new();
    walk(devices, 0, &mut found);
    found
}

/// First field of each /proc/modules line. An unreadable file means "nothing known loaded":
/// inserting again then ends in EEXIST, which counts as success.
fn read_proc_modules(path: &Path) -> HashSet<String> {
    fs::read_to_string(path)
        .map(|text| {
            text.lines()
                .filter_map(|l| l.split_whitespace().next())
                .map(normalise)
                .collect()
        })
        .unwrap_or_default()
}

/// `(vendor, device, base class)` as lower-case hex from `pci:v0000VVVVd0000DDDDsv…sd…bcCCscSSiII`.
fn pci_ids(modalias: &str) -> Option<(String, String, String)> {
    let rest = modalias.strip_prefix("pci:v")?;
    let vendor = rest.get(4..8)?;
    let device = rest.get(8..)?.strip_prefix('d')?.get(4..8)?;
    // Hex digits are upper case, so the last lower-case "bc" is the class tag.
    let class = rest.get(rest.rfind("bc")? + 2..)?.get(..2)?;
    Some((
        vendor.to_ascii_lowercase(),
        device.to_ascii_lowercase(),
        class.to_ascii_lowercase(),
    ))
}

/// Whether a modalias belongs to a network device: PCI base class 0x02, virtio device id 1,
/// USB interface class 0x02 (CDC) or 0xE0 (RNDIS). Vendor-specific USB dongles can't be told apart.
fn is_network(modalias: &str) -> bool {
    if let Some((_, _, class)) = pci_ids(modalias) {
        return class == "02";
    }
    if let Some(rest) = modalias.strip_prefix("virtio:d") {
        return rest
            .get(..8)
            .and_then(|id| u32::from_str_radix(id, 16).ok())
            == Some(1);
    }
    if modalias.starts_with("usb:") {
        let class = modalias.find("ic").and_then(|i| modalias.get(i + 2..i + 4));
        return matches!(class, Some("02" | "E0"));
    }
    false
}

/// Coldplug with the real kernel loader and clock; see [`coldplug_with`].
pub fn coldplug(sys: &Path, modules_dir: &Path, proc_modules: &Path) -> ColdplugReport {
    coldplug_with(
        sys,
        modules_dir,
        proc_modules,
        &mut |path| load_module(path, ""),
        &mut std::thread::sleep,
    )
}

/// Reads every `modalias` under `<sys>/devices`, matches unbound devices against
/// `<modules_dir>/modules.alias`, inserts each needed module after its `modules.dep` dependencies
/// with `load` (soft `pre:` dependencies first), and rescans until a round inserts nothing (at
/// most [`MAX_ROUNDS`] rounds with work); after a round that loaded a USB host controller it
/// rescans every [`SETTLE_STEP`] (`sleep`) until the device list is quiet ([`Settle::USB`]).
/// Modules in `proc_modules`, or inserted or failed earlier in this run, are not tried again.
/// Never panics; every failure lands in the report.
pub fn coldplug_with(
    sys: &Path,
    modules_dir: &Path,
    proc_modules: &Path,
    load: &mut dyn FnMut(&Path) -> Result<(), String>,
    sleep: &mut dyn FnMut(Duration),
) -> ColdplugReport {
    let mut report = ColdplugReport::default();
    let mut read_table = |file: &str| {
        let path = modules_dir.join(file);
        fs::read_to_string(&path).unwrap_or_else(|e| {
            report.failed.push((
                file.to_string(),
                format!("cannot read {}: {e}", path.display()),
            ));
            String::new()
        })
    };
    let aliases = AliasTable::parse(&read_table("modules.alias"));
    let deps = DepTable::parse(&read_table("modules.dep"));
    // Optional: a kernel without soft dependencies has no such file.
    let softdeps = SoftdepTable::parse(
        &fs::read_to_string(modules_dir.join("modules.softdep")).unwrap_or_default(),
    );

    let mut inserted: HashSet<String> = HashSet::new();
    let mut devices = scan_devices(&sys.join("devices"));
    loop {
        let present = read_proc_modules(proc_modules);
        let tried = |m: &String, report: &ColdplugReport| {
            present.contains(m) || inserted.contains(m) || report.failed.iter().any(|(f, _)| f == m)
        };
        // Modules wanted by unbound devices, in device order, each with the devices asking for it.
        let mut wanted: Vec<(String, Vec<String>)> = Vec::new();
        for device in devices.iter().filter(|d| !d.bound) {
            for module in aliases.lookup(&device.modalias) {
                if tried(&module, &report) {
                    continue;
                }
                match wanted.iter_mut().find(|(m, _)| *m == module) {
                    Some((_, asking)) if asking.contains(&device.modalias) => {}
                    Some((_, asking)) => asking.push(device.modalias.clone()),
                    None => wanted.push((module, vec![device.modalias.clone()])),
                }
            }
        }
        if wanted.is_empty() {
            break;
        }
        if report.rounds == MAX_ROUNDS {
            for (module, _) in wanted {
                let why =
                    format!("not tried: new devices still appearing after {MAX_ROUNDS} rounds");
                report.failed.push((module, why));
            }
            break;
        }
        report.rounds += 1;
        let mut progress = false;
        let usb_host = wanted
            .iter()
            .any(|(_, asking)| asking.iter().any(|m| is_usb_host(m)));
        for (module, for_devices) in wanted {
            let order = match deps.load_order(&module) {
                Ok(order) => order,
                Err(e) => {
                    report.failed.push((module, e));
                    continue;
                }
            };
            // Soft dependencies first when the image has them (a missing one is not an error:
            // the kernel loads the module without it).
            let mut order: Vec<(String, String)> = softdeps
                .pre(&module)
                .iter()
                .filter_map(|pre| deps.load_order(pre).ok())
                .flatten()
                .chain(order)
                .collect();
            let mut seen_names = HashSet::new();
            order.retain(|(name, _)| seen_names.insert(name.clone()));
            for (name, relative) in order {
                if present.contains(&name) || inserted.contains(&name) {
                    continue;
                }
                let is_target = name == module;
                let is_softdep = !is_target && softdeps.pre(&module).contains(&name);
                if let Some((_, e)) = report.failed.iter().find(|(f, _)| *f == name) {
                    let why = format!("needs {name}, which failed: {e}");
                    report.failed.push((module.clone(), why));
                    break;
                }
                let started = Instant::now();
                match load(&modules_dir.join(&relative)) {
                    Ok(()) => {
                        progress = true;
                        inserted.insert(name.clone());
                        report.loaded.push(Loaded {
                            module: name,
                            for_devices: if is_target {
                                for_devices.clone()
                            } else {
                                Vec::new()
                            },
                            needed_by: (!is_target).then(|| module.clone()),
                            ms: started.elapsed().as_millis() as u64,
                        });
                    }
                    Err(e) => {
                        if is_softdep {
                            // Wanted before, not needed: go on with the module itself.
                            report.failed.push((name, e));
                            continue;
                        }
                        if !is_target {
                            report
                                .failed
                                .push((module.clone(), format!("needs {name}, which failed: {e}")));
                        }
                        report.failed.push((name, e));
                        break;
                    }
                }
            }
        }
        devices = scan_devices(&sys.join("devices"));
        if progress && usb_host {
            let mut settle = Settle::new(devices.len(), Settle::USB);
            let mut waited = Duration::ZERO;
            loop {
                sleep(SETTLE_STEP);
                waited += SETTLE_STEP;
                devices = scan_devices(&sys.join("devices"));
                if settle.settled(waited, devices.len()) {
                    break;
                }
            }
            report.settle_ms += waited.as_millis() as u64;
        }
        if !progress {
            break;
        }
    }

    for device in devices.iter().filter(|d| !d.bound) {
        let Some((bus, id, class)) = describe(&device.modalias) else {
            continue;
        };
        let modules = aliases.lookup(&device.modalias);
        if modules.is_empty() {
            report.unmatched.push(device.modalias.clone());
        }
        // virtio's PCI function is bound by virtio_pci; its virtio0 child is the NIC. A PCI
        // function still unbound is reported under PCI.
        report.nics_without_driver.push(NoDriver {
            bus: bus.to_string(),
            id,
            class,
            address: device
                .dir
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned(),
            modules,
        });
    }
    report
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compression {
    Gzip,
    Xz,
    Zstd,
}

impl Compression {
    fn of(path: &Path) -> Option<Self> {
        match path.extension()?.to_str()? {
            "gz" => Some(Compression::Gzip),
            "xz" => Some(Compression::Xz),
            "zst" => Some(Compression::Zstd),
            _ => None,
        }
    }
}

/// Loads `module` (with `params`) and its dependencies from `modules_dir` (its `modules.dep`),
/// unless the kernel has it already (`/sys/module/NAME`, also true when it is built in). `Ok(true)` when
/// something was inserted.
pub fn load_by_name(modules_dir: &Path, module: &str, params: &str) -> Result<bool, String> {
    let name = normalise(module);
    if Path::new("/sys/module").join(&name).exists() {
        return Ok(false);
    }
    let dep_path = modules_dir.join("modules.dep");
    let deps = DepTable::parse(
        &fs::read_to_string(&dep_path)
            .map_err(|e| format!("cannot read {}: {e}", dep_path.display()))?,
    );
    for (m, rel) in deps.load_order(&name)? {
        if Path::new("/sys/module").join(&m).exists() {
            continue;
        }
        let p = if m == name { params } else { "" };
        load_module(&modules_dir.join(rel), p).map_err(|e| format!("{m}: {e}"))?;
    }
    Ok(true)
}

/// Loads one module file (`.ko`, or `.ko.gz/.xz/.zst`) with `finit_module(2)`. A module that is
/// already loaded (EEXIST) counts as success: what matters is that the kernel has it.
///
/// Compressed files are handed to the kernel with MODULE_INIT_COMPRESSED_FILE; a kernel that is
/// older than 6.1 or built without CONFIG_MODULE_DECOMPRESS (Debian's 6.1) refuses the flag
/// (EINVAL / EOPNOTSUPP / ENOEXEC), and then a `.ko.zst` is decompressed here and the image given
/// to `init_module(2)`. The image is the module file as the kernel package shipped it, byte for
/// byte, so its appended signature still verifies (Secure Boot lockdown refuses anything else).
/// The initramfs stores modules as `.ko.zst` (scripts/build-initramfs.sh): the kernel then no
/// longer unpacks 45 MB of modules at boot of which a machine loads a handful.
pub fn load_module(path: &Path, params: &str) -> Result<(), String> {
    let params =
        CString::new(params).map_err(|_| "module parameters contain a NUL byte".to_string())?;
    let file = fs::File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let result = match Compression::of(path) {
        None => finit_module(&file, &params, ModuleInitFlags::empty()),
        Some(kind) => match finit_module(&file, &params, MODULE_INIT_COMPRESSED_FILE) {
            Err(Errno::EINVAL | Errno::ENOEXEC | Errno::EOPNOTSUPP) => {
                let image = decompress_in_userspace(kind, path)?;
                init_module(&image, &params)
            }
            other => other,
        },
    };
    match result {
        Ok(()) | Err(Errno::EEXIST) => Ok(()),
        Err(errno) => Err(format!("{errno}{}", errno_hint(errno))),
    }
}

/// The few errnos whose meaning for module loading isn't obvious from their name.
fn errno_hint(errno: Errno) -> &'static str {
    match errno {
        Errno::ENOENT => {
            " (unknown symbol: a dependency is missing or mismatched; see the kernel log)"
        }
        Errno::ENOEXEC => " (not a module for this kernel: wrong format or version magic)",
        Errno::EKEYREJECTED => " (module signature rejected)",
        Errno::EPERM => " (module loading disabled, or not running as root)",
        _ => "",
    }
}

/// A module image is at most this large once decompressed (the largest module of a Debian 6.1
/// kernel is ≈ 12 MB); a file claiming more is corrupt.
const MODULE_IMAGE_LIMIT: u64 = 64 << 20;

/// The module file's contents for `init_module(2)`: a `.ko.zst` decompressed with ruzstd (the
/// decoder the boot artifacts already need, src/fetch/install.rs); `.gz` and `.xz` have no
/// decoder here (the build makes `.zst` only) and end in an error that says so.
fn decompress_in_userspace(kind: Compression, path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    if kind != Compression::Zstd {
        return Err(format!(
            "{}: the kernel cannot decompress {kind:?} modules (needs CONFIG_MODULE_DECOMPRESS) \
             and this build decompresses .zst only; ship .ko or .ko.zst files",
            path.display()
        ));
    }
    let file = fs::File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    // ruzstd's error values are not formatted (their Display code alone is ~35 KiB).
    let corrupt = || format!("{}: corrupt zstd data", path.display());
    let decoder = ruzstd::decoding::StreamingDecoder::new(std::io::BufReader::new(file))
        .map_err(|_| corrupt())?;
    let mut image = Vec::new();
    decoder
        .take(MODULE_IMAGE_LIMIT + 1)
        .read_to_end(&mut image)
        .map_err(|_| corrupt())?;
    if image.len() as u64 > MODULE_IMAGE_LIMIT {
        return Err(format!(
            "{}: more than {} MiB decompressed, not a module",
            path.display(),
            MODULE_IMAGE_LIMIT >> 20
        ));
    }
    Ok(image)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Real lines: virtio_pci, virtio_net, ixgbevf and ena from Debian's 6.1.0-cloud-amd64
    // modules.alias, e1000e from Debian's generic kernel (the cloud kernel doesn't build it).
    const ALIASES: &str = "\
# Aliases extracted from modules themselves.
alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci
alias virtio:d00000001v* virtio_net
alias pci:v00008086d000010D3sv*sd*bc*sc*i* e1000e
alias pci:v00008086d0000105Esv*sd*bc*sc*i* e1000e
alias pci:v00008086d000057ADsv*sd*bc*sc*i* ixgbevf
alias pci:v00008086d000057ADsv*sd000000FFbc*sc*i* ixgbevf
alias pci:v00001D0Fd0000EC20sv*sd*bc*sc*i* ena
";

    // Real lines from the same modules.dep.
    const DEPS: &str = "\
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/net/core/failover.ko:
";

    const VIRTIO_NIC: &str = "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00";
    const I40E_NIC: &str = "pci:v00008086d00001572sv00008086sd00000000bc02sc00i00";
    const HOST_BRIDGE: &str = "pci:v00008086d00001237sv00001AF4sd00001100bc06sc00i00";
    const VIRTIO_NET_DEV: &str = "virtio:d00000001v00001AF4";

    fn names(order: &[(String, String)]) -> Vec<&str> {
        order.iter().map(|(n, _)| n.as_str()).collect()
    }

    #[test]
    fn fnmatch_handles_modalias_stars() {
        let pattern = "pci:v00001AF4d*sv*sd*bc*sc*i*";
        assert!(fnmatch(pattern, VIRTIO_NIC));
        assert!(!fnmatch(pattern, I40E_NIC));
        assert!(fnmatch("virtio:d00000001v*", VIRTIO_NET_DEV));
        assert!(!fnmatch("virtio:d00000001v*", "virtio:d00000002v00001AF4"));
        assert!(fnmatch("*", ""));
        assert!(fnmatch("a*b*c", "aXbYbZc"));
        assert!(!fnmatch("a*b*c", "aXbYbZ"));
    }

    #[test]
    fn fnmatch_question_mark_is_exactly_one_char() {
        assert!(fnmatch("usb:v?BDA", "usb:v0BDA"));
        assert!(!fnmatch("usb:v?BDA", "usb:vBDA"));
        assert!(!fnmatch("usb:v?BDA", "usb:v00BDA"));
    }

    #[test]
    fn fnmatch_bracket_classes() {
        let pattern = "usb:v0BDAp8179d00[0-9][0-9]dc*";
        assert!(fnmatch(pattern, "usb:v0BDAp8179d0042dcFF"));
        assert!(!fnmatch(pattern, "usb:v0BDAp8179d004Adc00"));
        assert!(fnmatch("x[!0-9]", "xA") && !fnmatch("x[!0-9]", "x5"));
        assert!(fnmatch("x[^A]", "xB") && !fnmatch("x[^A]", "xA"));
        assert!(fnmatch("[]a]", "]") && fnmatch("[a-]", "-"));
        assert!(fnmatch("a[b", "a[b"), "an unclosed bracket is a literal");
        assert!(fnmatch(r"a\*", "a*") && !fnmatch(r"a\*", "ab"));
    }

    #[test]
    fn fnmatch_is_case_sensitive() {
        assert!(!fnmatch("pci:v00001af4d*", "pci:v00001AF4d00001000"));
        assert!(!fnmatch("x[a-f]", "xA"));
    }

    #[test]
    fn alias_lookup_on_real_lines() {
        let table = AliasTable::parse(ALIASES);
        assert_eq!(table.lookup(VIRTIO_NIC), ["virtio_pci"]);
        assert_eq!(table.lookup(VIRTIO_NET_DEV), ["virtio_net"]);
        assert_eq!(
            table.lookup("pci:v00008086d000010D3sv00008086sd0000A01Fbc02sc00i00"),
            ["e1000e"]
        );
        assert!(table.lookup(I40E_NIC).is_empty());
    }

    #[test]
    fn alias_lookup_lists_a_module_once() {
        let table = AliasTable::parse(ALIASES);
        let both = "pci:v00008086d000057ADsv00008086sd000000FFbc02sc00i00";
        assert_eq!(table.lookup(both), ["ixgbevf"]);
    }

    #[test]
    fn dep_order_puts_dependencies_first() {
        let deps = DepTable::parse(DEPS);
        let order = deps.load_order("virtio_net").unwrap();
        assert_eq!(
            names(&order),
            [
                "failover",
                "net_failover",
                "virtio_ring",
                "virtio",
                "virtio_net"
            ]
        );
        assert_eq!(order[0].1, "kernel/net/core/failover.ko");
    }

    #[test]
    fn dep_shared_by_two_paths_is_loaded_once() {
        // virtio_pci needs virtio_ring directly and through virtio.
        let order = DepTable::parse(DEPS).load_order("virtio_pci").unwrap();
        assert_eq!(
            names(&order),
            [
                "virtio_pci_legacy_dev",
                "virtio_pci_modern_dev",
                "virtio_ring",
                "virtio",
                "virtio_pci"
            ]
        );
    }

    #[test]
    fn dep_cycle_is_an_error() {
        let deps = DepTable::parse("a.ko: b.ko\nb.ko: c.ko\nc.ko: a.ko\n");
        let err = deps.load_order("a").unwrap_err();
        assert!(err.contains("a → b → c → a"), "{err}");
    }

    #[test]
    fn dep_names_normalise_dashes_and_compression() {
        let deps = DepTable::parse(
            "kernel/drivers/net/ethernet/intel/e1000e/e1000e.ko.zst: kernel/lib/crc-itu-t.ko.xz\n\
             kernel/lib/crc-itu-t.ko.xz:\n",
        );
        let order = deps.load_order("e1000e").unwrap();
        assert_eq!(names(&order), ["crc_itu_t", "e1000e"]);
        assert_eq!(order[0].1, "kernel/lib/crc-itu-t.ko.xz");
        assert_eq!(deps.load_order("crc-itu-t").unwrap().len(), 1);
        assert!(deps.load_order("i40e").is_err());
        let aliases = AliasTable::parse("alias pci:v00001234d* snd-hda-intel\n");
        assert_eq!(aliases.lookup("pci:v00001234d00000001"), ["snd_hda_intel"]);
    }

    #[test]
    fn summary_cuts_long_device_lists_short() {
        let cpu = format!(
            "cpu:type:x86,ven0000fam0006mod0055:feature:{}",
            ",0000".repeat(50)
        );
        let devices = [cpu, VIRTIO_NIC.into(), I40E_NIC.into(), HOST_BRIDGE.into()];
        let words = devices_in_words(&devices);
        assert!(words.starts_with("cpu:type:x86,ven0000fam0006mod0055:feature:,0000…, "));
        assert!(words.ends_with(", 2 more"), "{words}");
        assert_eq!(devices_in_words(&[VIRTIO_NET_DEV.into()]), VIRTIO_NET_DEV);
    }

    #[test]
    fn network_class_detection() {
        assert!(is_network(VIRTIO_NIC) && is_network(VIRTIO_NET_DEV));
        assert!(!is_network(HOST_BRIDGE) && !is_network("virtio:d00000002v00001AF4"));
        assert!(is_network(
            "usb:v0BDAp8153d3000dc00dsc00dp00ic02isc06ip00in00"
        ));
        assert!(!is_network(
            "usb:v046DpC52Bd1211dc00dsc00dp00ic03isc01ip01in00"
        ));
        assert_eq!(
            pci_ids(I40E_NIC),
            Some(("8086".into(), "1572".into(), "02".into()))
        );
        assert_eq!(pci_ids("pci:v0000"), None);
    }

    /// A directory under the system temp dir, removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(tag: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("drivers-{}-{tag}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }

        fn write(&self, relative: &str, text: &str) -> PathBuf {
            let path = self.0.join(relative);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, text).unwrap();
            path
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// A QEMU-like machine: a virtio NIC, an Intel NIC the image has no module for, a host bridge,
    /// and a symlink loop that the walk must not follow.
    fn fake_machine(tag: &str) -> Scratch {
        let s = Scratch::new(tag);
        s.write(
            "sys/devices/pci0000:00/0000:00:00.0/modalias",
            &format!("{HOST_BRIDGE}\n"),
        );
        s.write(
            "sys/devices/pci0000:00/0000:00:03.0/modalias",
            &format!("{VIRTIO_NIC}\n"),
        );
        s.write(
            "sys/devices/pci0000:00/0000:00:04.0/modalias",
            &format!("{I40E_NIC}\n"),
        );
        std::os::unix::fs::symlink(
            "../..",
            s.0.join("sys/devices/pci0000:00/0000:00:03.0/subsystem"),
        )
        .unwrap();
        s.write("modules/modules.alias", ALIASES);
        s.write("modules/modules.dep", DEPS);
        // Already in the kernel: must be skipped.
        s.write(
            "proc_modules",
            "failover 16384 0 - Live 0x0000000000000000\n",
        );
        s
    }

    fn run(s: &Scratch, load: &mut dyn FnMut(&Path) -> Result<(), String>) -> ColdplugReport {
        coldplug_with(
            &s.0.join("sys"),
            &s.0.join("modules"),
            &s.0.join("proc_modules"),
            load,
            &mut |_| panic!("no USB host controller here: nothing to wait for"),
        )
    }

    /// `(address, modules)` of each NIC without a driver.
    fn without(report: &ColdplugReport) -> Vec<(String, Vec<String>)> {
        report
            .nics_without_driver
            .iter()
            .map(|n| (n.address.clone(), n.modules.clone()))
            .collect()
    }

    #[test]
    fn coldplug_second_round_serves_devices_the_first_created() {
        let s = fake_machine("rounds");
        let nic = s.0.join("sys/devices/pci0000:00/0000:00:03.0");
        let mut calls = Vec::new();
        let report = run(&s, &mut |path| {
            let name = module_name(&path.to_string_lossy());
            // What the kernel does: virtio_pci binds the PCI function and creates virtio0,
            // virtio_net then binds virtio0.
            match name.as_str() {
                "virtio_pci" => {
                    fs::create_dir(nic.join("driver")).unwrap();
                    s.write(
                        "sys/devices/pci0000:00/0000:00:03.0/virtio0/modalias",
                        VIRTIO_NET_DEV,
                    );
                }
                "virtio_net" => fs::create_dir(nic.join("virtio0/driver")).unwrap(),
                _ => {}
            }
            calls.push(path.to_path_buf());
            Ok(())
        });
        assert_eq!(report.rounds, 2);
        assert_eq!(report.failed, []);
        let loaded: Vec<&str> = report.loaded.iter().map(|l| l.module.as_str()).collect();
        assert_eq!(
            loaded,
            [
                "virtio_pci_legacy_dev",
                "virtio_pci_modern_dev",
                "virtio_ring",
                "virtio",
                "virtio_pci",
                "net_failover",
                "virtio_net"
            ]
        );
        assert_eq!(
            calls[4],
            s.0.join("modules/kernel/drivers/virtio/virtio_pci.ko")
        );
        assert_eq!(report.loaded[4].for_devices, [VIRTIO_NIC]);
        assert_eq!(report.loaded[5].needed_by.as_deref(), Some("virtio_net"));
        assert_eq!(report.loaded[6].for_devices, [VIRTIO_NET_DEV]);
        assert_eq!(report.unmatched, [I40E_NIC]);
        assert_eq!(
            report.nics_without_driver,
            [NoDriver {
                bus: "PCI".into(),
                id: "8086:1572".into(),
                class: "Ethernet controller".into(),
                address: "0000:00:04.0".into(),
                modules: vec![],
            }]
        );

        let lines = report.summary_lines();
        assert!(lines
            .iter()
            .any(|l| l.starts_with(&format!("loaded virtio_net (for {VIRTIO_NET_DEV}) in "))));
        assert!(lines
            .iter()
            .any(|l| l.starts_with("loaded net_failover (needed by virtio_net) in ")));
        assert!(lines.contains(
            &"no driver in this image for PCI 8086:1572 (Ethernet controller) at 0000:00:04.0: this NIC \
              cannot be used; report it with this line (README: checking a machine before the datacentre)"
                .to_string()
        ));
    }

    #[test]
    fn coldplug_failed_dependency_fails_its_user_and_is_reported() {
        let s = fake_machine("fail");
        let report = run(&s, &mut |path| {
            if path.ends_with("virtio_ring.ko") {
                Err("ENOEXEC: Exec format error".into())
            } else {
                Ok(())
            }
        });
        assert_eq!(report.rounds, 1);
        assert_eq!(
            report.failed,
            [
                (
                    "virtio_pci".to_string(),
                    "needs virtio_ring, which failed: ENOEXEC: Exec format error".to_string()
                ),
                (
                    "virtio_ring".to_string(),
                    "ENOEXEC: Exec format error".to_string()
                ),
            ]
        );
        assert_eq!(
            without(&report),
            [
                ("0000:00:03.0".to_string(), vec!["virtio_pci".to_string()]),
                ("0000:00:04.0".to_string(), vec![])
            ]
        );
        let lines = report.summary_lines();
        assert!(lines.iter().any(|l| l.starts_with(
            "PCI 1af4:1000 (Ethernet controller) at 0000:00:03.0 has no driver bound although the image has virtio_pci"
        )));
        assert!(
            lines.contains(&"FAILED to load virtio_ring: ENOEXEC: Exec format error".to_string())
        );
    }

    #[test]
    fn coldplug_stops_after_the_round_limit() {
        // Each module "creates" a device that wants the next one, forever.
        let s = Scratch::new("limit");
        s.write("sys/devices/d0/modalias", "fake:0");
        let aliases: String = (0..10).map(|i| format!("alias fake:{i} m{i}\n")).collect();
        let deps: String = (0..10).map(|i| format!("m{i}.ko:\n")).collect();
        s.write("modules/modules.alias", &aliases);
        s.write("modules/modules.dep", &deps);
        let report = run(&s, &mut |path| {
            let n: u32 = module_name(&path.to_string_lossy())[1..].parse().unwrap();
            s.write(
                &format!("sys/devices/d{}/modalias", n + 1),
                &format!("fake:{}", n + 1),
            );
            Ok(())
        });
        assert_eq!(report.rounds, MAX_ROUNDS);
        assert_eq!(report.loaded.len(), 5);
        assert_eq!(report.failed.len(), 1);
        assert!(report.failed[0].0 == "m5" && report.failed[0].1.starts_with("not tried"));
    }

    #[test]
    fn coldplug_without_tables_reports_instead_of_panicking() {
        let s = Scratch::new("empty");
        s.write("sys/devices/pci0000:00/0000:00:03.0/modalias", VIRTIO_NIC);
        let report = run(&s, &mut |_| panic!("nothing can be matched"));
        assert_eq!(report.rounds, 0);
        assert_eq!(report.failed.len(), 2);
        assert_eq!(report.failed[0].0, "modules.alias");
        assert!(report.summary_lines()[1].starts_with("FAILED: cannot read "));
        assert_eq!(report.unmatched, [VIRTIO_NIC]);
        assert_eq!(without(&report), [("0000:00:03.0".to_string(), vec![])]);
    }

    #[test]
    fn usb_and_virtio_nics_are_described() {
        assert_eq!(
            describe("usb:v0BDAp8153d3000dc00dsc00dp00ic02isc06ip00in00"),
            Some(("USB", "0bda:8153".into(), "CDC Ethernet".into()))
        );
        assert_eq!(
            describe("usb:v0525pA4A2d0333dc02dsc00dp00icE0isc01ip03in00"),
            Some(("USB", "0525:a4a2".into(), "RNDIS".into()))
        );
        assert_eq!(
            describe(VIRTIO_NET_DEV),
            Some(("virtio", "1af4:0001".into(), "virtio network device".into()))
        );
        // An InfiniBand HCA is class 02, subclass 07.
        assert_eq!(
            describe("pci:v000015B3d00001017sv000015B3sd00000020bc02sc07i00").map(|d| d.2),
            Some("Infiniband controller".into())
        );
        assert_eq!(describe(HOST_BRIDGE), None);
        assert!(is_usb_host(
            "pci:v00001B36d0000000Dsv00001AF4sd00001100bc0Csc03i30"
        ));
        assert!(!is_usb_host(VIRTIO_NIC));
    }

    #[test]
    fn softdeps_pre_are_parsed() {
        let t = SoftdepTable::parse(
            "# Soft dependencies\nsoftdep r8169 pre: realtek\nsoftdep a-b pre: c d post: e\n",
        );
        assert_eq!(t.pre("r8169"), ["realtek"]);
        assert_eq!(t.pre("a_b"), ["c", "d"]);
        assert!(t.pre("e1000e").is_empty());
    }

    #[test]
    fn settle_waits_for_quiet_or_the_limit() {
        let ms = Duration::from_millis;
        let mut s = Settle::new(3, (ms(1500), ms(6000)));
        assert!(!s.settled(ms(100), 3));
        // The USB NIC appears at 700 ms: quiet counts from there.
        assert!(!s.settled(ms(700), 5));
        assert!(!s.settled(ms(2100), 5));
        assert!(s.settled(ms(2200), 5));
        // A device list that never stops changing ends at the limit.
        let mut s = Settle::new(0, (ms(1500), ms(6000)));
        assert!((1..60).all(|i| !s.settled(ms(i * 100), i as usize)));
        assert!(s.settled(ms(6000), 61));
    }

    /// A USB NIC behind an xHCI controller: loading xhci_pci makes the NIC appear only after a
    /// few scans (the hub thread); coldplug waits for it and loads its driver in the next round,
    /// r8152's softdep first.
    #[test]
    fn coldplug_waits_for_usb_devices_and_loads_softdeps_first() {
        const XHCI: &str = "pci:v00001B36d0000000Dsv00001AF4sd00001100bc0Csc03i30";
        const R8152_NIC: &str = "usb:v0BDAp8153d3000dcFFdsc00dp00icFFisc00ip00in00";
        let s = Scratch::new("usb");
        s.write("sys/devices/pci0000:00/0000:00:05.0/modalias", XHCI);
        s.write(
            "modules/modules.alias",
            "alias pci:v*d*sv*sd*bc0Csc03i30* xhci_pci\nalias usb:v0BDAp8153d*dc*dsc*dp*ic*isc*ip*in* r8152\n",
        );
        s.write(
            "modules/modules.dep",
            "kernel/drivers/usb/host/xhci-pci.ko:\nkernel/drivers/net/usb/r8152.ko:\nkernel/drivers/net/phy/realtek.ko:\n",
        );
        s.write(
            "modules/modules.softdep",
            "softdep r8152 pre: realtek missing_one\n",
        );
        s.write("proc_modules", "");
        let mut loaded = Vec::new();
        let mut sleeps = 0;
        let report = coldplug_with(
            &s.0.join("sys"),
            &s.0.join("modules"),
            &s.0.join("proc_modules"),
            &mut |path| {
                let name = module_name(&path.to_string_lossy());
                if name == "xhci_pci" {
                    fs::create_dir(s.0.join("sys/devices/pci0000:00/0000:00:05.0/driver")).unwrap();
                }
                loaded.push(name);
                Ok(())
            },
            &mut |d| {
                assert_eq!(d, SETTLE_STEP);
                sleeps += 1;
                if sleeps == 4 {
                    s.write(
                        "sys/devices/pci0000:00/0000:00:05.0/usb1/1-1/1-1:1.0/modalias",
                        R8152_NIC,
                    );
                }
            },
        );
        assert_eq!(loaded, ["xhci_pci", "realtek", "r8152"]);
        assert_eq!(report.rounds, 2);
        // Found after 400 ms, then 1.5 s of quiet.
        assert_eq!(report.settle_ms, 1900);
        assert_eq!(sleeps, 19);
        // The USB NIC was not bound by the fake kernel: named with its id, with its module.
        assert_eq!(
            report.nics_without_driver.len(),
            0,
            "r8152 interface class FF is not flagged as a network device"
        );
    }

    #[test]
    fn load_module_reports_a_missing_file_without_touching_the_kernel() {
        let err = load_module(Path::new("/nonexistent/virtio_net.ko"), "").unwrap_err();
        assert!(
            err.starts_with("cannot open /nonexistent/virtio_net.ko"),
            "{err}"
        );
        assert!(load_module(Path::new("/nonexistent/x.ko"), "a\0b").is_err());
        assert_eq!(
            Compression::of(Path::new("a/e1000e.ko.zst")),
            Some(Compression::Zstd)
        );
        assert_eq!(Compression::of(Path::new("a/e1000e.ko")), None);
    }

    #[test]
    fn a_zstd_module_is_decompressed_to_the_very_bytes_the_kernel_checks() {
        let s = Scratch::new("ko-zst");
        // An ELF start, a body and the appended-signature trailer: all must come back as they were.
        let mut module = b"\x7fELF\x02\x01\x01".to_vec();
        module.extend((0..200_000u32).map(|i| (i % 251) as u8 ^ (i >> 9) as u8));
        module.extend_from_slice(b"~Module signature appended~\n");
        let packed = ruzstd::encoding::compress_to_vec(
            &module[..],
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        assert!(packed.len() < module.len());
        let path = s.0.join("virtio_net.ko.zst");
        fs::write(&path, &packed).unwrap();
        let image = decompress_in_userspace(Compression::Zstd, &path).unwrap();
        assert!(image == module, "the decompressed image differs");

        fs::write(&path, &packed[..packed.len() / 2]).unwrap();
        let err = decompress_in_userspace(Compression::Zstd, &path).unwrap_err();
        assert!(err.contains("corrupt zstd data"), "{err}");
        fs::write(&path, b"not zstd at all").unwrap();
        let err = decompress_in_userspace(Compression::Zstd, &path).unwrap_err();
        assert!(err.contains("corrupt zstd data"), "{err}");

        let err =
            decompress_in_userspace(Compression::Xz, Path::new("a/e1000e.ko.xz")).unwrap_err();
        assert!(err.contains("decompresses .zst only"), "{err}");
    }
}
