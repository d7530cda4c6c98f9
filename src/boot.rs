//! The boot pipeline, as PID 1 in the initramfs (or `zos-netboot boot` in a lab):
//! early → drivers → network (DHCPv4 + SLAAC + probes + classification) → fetch (clock,
//! manifest, artifacts, install; drivers again if modules came) → registration → hand-off. The
//! state file is rewritten after each stage. As PID 1 it never exits: a failed stage is
//! reported on the console and retried with backoff. Outside PID 1 each stage runs once, and
//! the fetch and registration only with `--sysroot` (they write files: never the host's).
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cmdline::Settings;
use crate::config::StatePaths;
use crate::console::Console;
use crate::fetch::hubs::HubSet;
use crate::fetch::stage::{self, FetchConfig, FetchRecord};
use crate::net::{self, NetConfig};
use crate::pid1::handoff;
use crate::pid1::machine::MachineRecord;
use crate::register::{self, Farm, RegisterConfig};
use crate::retry::Backoff;
use crate::state::{NetState, State};

/// Between two attempts of a failed stage as PID 1: soon at first, at most every minute.
const STAGE_RETRY: Backoff = Backoff {
    initial: Duration::from_secs(2),
    cap: Duration::from_secs(60),
    jitter_pct: 20,
};

pub struct BootOptions {
    pub pid1: bool,
    pub handoff: bool,
    /// The state file and the files beside it (leases, cache, identity).
    pub paths: StatePaths,
    pub net: NetConfig,
    /// Where the boot's files are: `/` as PID 1, `--sysroot DIR` in a lab (None: not given,
    /// so no stage that writes files runs).
    pub sysroot: Option<PathBuf>,
    /// `uname -r`.
    pub release: String,
}

impl BootOptions {
    /// `abs` (an absolute path of the node) inside the sysroot.
    fn path(&self, abs: &str) -> PathBuf {
        let root = self.sysroot.as_deref().unwrap_or(Path::new("/"));
        root.join(abs.trim_start_matches('/'))
    }

    fn modules_root(&self) -> PathBuf {
        self.path("/lib/modules")
    }
}

/// Attempts of a registration outside PID 1 (a lab run must end).
const LAB_REGISTER_ATTEMPTS: u32 = 8;

/// Runs the pipeline. Returns only when not PID 1 (for `boot --no-handoff` in a lab).
pub fn run(console: &Console, settings: &Settings, opts: BootOptions) -> bool {
    let mut machine = None;
    if opts.pid1 {
        // How this node was booted (firmware, Secure Boot, network or local media), so a
        // farmer at the console sees it next to the farm settings.
        if let Err(e) =
            crate::pid1::bootpath::mount_efivarfs(&opts.modules_root().join(&opts.release))
        {
            console.line(format_args!("boot path: {e}"));
        }
        let path =
            crate::pid1::bootpath::decide(&crate::pid1::bootpath::Facts::read(Path::new("/")));
        console.line(&path);
        let report = coldplug(console, &opts);
        let mut record = MachineRecord {
            boot_path: path.to_string(),
            secure_boot: path.secure_boot,
            modules_loaded: report.loaded.iter().map(|l| l.module.clone()).collect(),
            modules_failed: report
                .failed
                .iter()
                .map(|(m, e)| format!("{m}: {e}"))
                .collect(),
            nics_without_driver: report.nics_without_driver,
            firmware_missing: Vec::new(),
        };
        check_firmware(console, &mut record);
        machine = Some(record);
    } else {
        console.line("drivers: not loading kernel modules (not PID 1)");
    }

    let Some((mut state, mut settling)) = bring_up(console, settings, &opts, &mut machine) else {
        return false;
    };
    console.line(format_args!(
        "online in {} ms",
        state.net.timings_ms.total.unwrap_or(0)
    ));
    if !fetch_stage(console, settings, &opts, &mut state, &mut settling) {
        return false;
    }
    // The registration reports the node's interfaces: the network's state is final by then.
    settling.finish(console, &opts.paths, &mut state);
    if !register_stage(console, settings, &opts, &mut state, &mut settling) {
        return false;
    }
    if !(opts.pid1 && opts.handoff) {
        return true;
    }

    let root = opts.path(settings.next_root.as_deref().unwrap_or("/next-root"));
    let init = PathBuf::from(settings.next_init.as_deref().unwrap_or("/sbin/init"));
    let mut attempt = 0;
    loop {
        console.line(format_args!(
            "handing off to {}{} in {} (switch_root)",
            init.display(),
            handoff::init_args(&init)
                .iter()
                .map(|a| format!(" {a}"))
                .collect::<String>(),
            root.display()
        ));
        // Only returns on failure.
        let Err(e) = handoff::switch_root(&root, &init);
        console.line(format_args!("hand-off failed: {e}"));
        if settings.debug {
            crate::pid1::early::rescue_shell("the hand-off failed (zos.debug)");
        }
        pause_before_retry(console, "the hand-off", attempt);
        attempt = (attempt + 1).min(10);
    }
}

/// The network stage after the node went online: SLAAC still settling on NICs that have not
/// finished, probes of a family that became usable late. It runs beside the fetch stage (the
/// boot is not held for it) and its final state replaces the network part of the boot's state
/// before the registration and the hand-over.
pub struct Settling(Option<std::thread::JoinHandle<NetState>>);

impl Settling {
    /// Waits for the network stage to finish (bounded by `zos.ipv6_wait` and the probes'
    /// timeouts), and takes its final state, keeping what the later stages recorded.
    fn finish(&mut self, console: &Console, paths: &StatePaths, state: &mut State) {
        let Some(handle) = self.0.take() else {
            return;
        };
        let Ok(mut last) = handle.join() else {
            console.line(
                "network: the settling stage stopped unexpectedly; keeping the state at online",
            );
            return;
        };
        if last.classification != state.net.classification {
            console.line("network settled: the classification changed since online");
            if let Some(c) = &last.classification {
                console.block(&c.report());
            }
        }
        last.online = state.net.online;
        last.error = state.net.error.take();
        last.timings_ms = state.net.timings_ms.clone();
        state.net = last;
        write_state(console, paths, state);
    }
}

/// The network stage, retried as PID 1 until online. `None` when it failed and this is not
/// PID 1.
fn bring_up(
    console: &Console,
    settings: &Settings,
    opts: &BootOptions,
    machine: &mut Option<MachineRecord>,
) -> Option<(State, Settling)> {
    let mut attempt = 0;
    let state = loop {
        let result = smol::block_on(async {
            let mut stage = net::start(&opts.net, console).await?;
            let state = stage.until_online().await;
            if state.online {
                return Ok::<_, net::NetError>((state, Some(stage)));
            }
            // Not online: the whole stage's account (every NIC's diagnosis) before the retry.
            Ok((stage.settle().await, None))
        });
        match result {
            Ok((net, stage)) => {
                // Drivers that load firmware when the link is opened (r8169, bnx2x) have
                // asked for it by now.
                if let Some(m) = machine.as_mut() {
                    check_firmware(console, m);
                }
                let mut state = State::new(net);
                state.machine = machine.clone();
                show(console, &state);
                write_state(console, &opts.paths, &state);
                if let (true, Some(stage)) = (state.net.online, stage) {
                    let handle = std::thread::spawn(move || smol::block_on(stage.settle()));
                    break (state, Settling(Some(handle)));
                }
                console.line(format_args!(
                    "NOT online: {}",
                    state.net.error.as_deref().unwrap_or("unknown reason")
                ));
            }
            Err(e) => console.line(format_args!("network: {e}")),
        }
        if !opts.pid1 {
            return None;
        }
        if attempt == 0 && settings.debug {
            crate::pid1::early::rescue_shell("the network is not up (zos.debug)");
        }
        pause_before_retry(console, "the network", attempt);
        attempt += 1;
    };
    Some(state)
}

/// PID 1, before retrying a stage that needs the network: if the network went away meanwhile
/// (carrier lost, the lease ran out during an outage), say so and bring it up again (the
/// previous address is asked for first, SLAAC and the probes run again) before the retry.
fn recover_network(
    console: &Console,
    settings: &Settings,
    opts: &BootOptions,
    state: &mut State,
    settling: &mut Settling,
) {
    // The previous stage's clients must be gone before a new one starts on the same NICs.
    settling.finish(console, &opts.paths, state);
    let Err(why) = smol::block_on(net::still_up(&state.net)) else {
        return;
    };
    let lost = std::time::Instant::now();
    console.line(format_args!(
        "network lost at {}: {why}; bringing it up again",
        crate::clock::format_unix(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64)
        )
    ));
    let mut machine = state.machine.clone();
    if let Some((back, next)) = bring_up(console, settings, opts, &mut machine) {
        *settling = next;
        console.line(format_args!(
            "network back after {}s",
            lost.elapsed().as_secs()
        ));
        state.net = back.net;
        write_state(console, &opts.paths, state);
    }
}

/// PID 1 between two attempts of a failed stage: says when it tries again, then waits.
fn pause_before_retry(console: &Console, what: &str, attempt: u32) {
    let wait = STAGE_RETRY.delay(attempt, fastrand::u32(..));
    console.line(format_args!("retrying {what} in {}s", wait.as_secs()));
    std::thread::sleep(wait);
}

fn coldplug(console: &Console, opts: &BootOptions) -> crate::pid1::drivers::ColdplugReport {
    let report = crate::pid1::drivers::coldplug(
        Path::new("/sys"),
        &opts.modules_root().join(&opts.release),
        Path::new("/proc/modules"),
    );
    for line in report.summary_lines() {
        console.line(format_args!("drivers: {line}"));
    }
    report
}

/// Firmware the kernel log says is missing and `machine` does not list yet: on the console and
/// into the record.
fn check_firmware(console: &Console, machine: &mut MachineRecord) {
    for m in crate::pid1::machine::missing_firmware_now(Path::new("/")) {
        if !machine.firmware_missing.iter().any(|k| k.file == m.file) {
            console.line(format_args!("drivers: {}", m.line()));
            machine.firmware_missing.push(m);
        }
    }
}

/// The CA files to trust: the image's bundle when it has one, then `zos.ca=` files.
fn ca_files(settings: &Settings, opts: &BootOptions) -> Vec<PathBuf> {
    let bundle = opts.path(crate::fetch::tls::DEFAULT_CA_BUNDLE);
    let mut files: Vec<PathBuf> = bundle.is_file().then_some(bundle).into_iter().collect();
    files.extend(settings.ca_files.iter().map(|f| opts.path(f)));
    files
}

/// Why a stage that writes the node's files must not run here, if it must not.
fn no_files_here(opts: &BootOptions) -> Option<&'static str> {
    (!opts.pid1 && opts.sysroot.is_none())
        .then_some("not PID 1 and no --sysroot: this machine's files are not ours to write")
}

/// The keys that may sign the manifest, and whether it must be signed (prod).
fn manifest_trust(console: &Console, settings: &Settings) -> crate::fetch::signature::Trust {
    let prod = settings.runmode == crate::cmdline::RunMode::Prod;
    crate::fetch::signature::Trust::for_runmode(prod, &settings.manifest_keys).unwrap_or_else(|e| {
        console.line(format_args!("fetch: manifest keys: {e}; trusting no key"));
        crate::fetch::signature::Trust {
            keys: Vec::new(),
            require_signature: prod,
        }
    })
}

/// Runs the fetch stage until it succeeds (PID 1) or once (elsewhere). False: it failed and
/// this is not PID 1.
fn fetch_stage(
    console: &Console,
    settings: &Settings,
    opts: &BootOptions,
    state: &mut State,
    settling: &mut Settling,
) -> bool {
    let skipped = if settings.fetch_disabled {
        Some("zos.fetch=none")
    } else {
        no_files_here(opts)
    };
    // One set of hubs for the whole boot: a hub found bad stays bad when the stage is retried.
    let mut hubs = HubSet::new(&settings.hub_urls());
    let cfg = FetchConfig {
        manifest_url: settings.manifest.clone(),
        runmode: settings.runmode.to_string(),
        version: settings.version.clone(),
        ca_files: ca_files(settings, opts),
        ntp: settings.ntp.clone(),
        cache_dir: opts.paths.cache(),
        next_root: opts.path(settings.next_root.as_deref().unwrap_or("/next-root")),
        modules_root: opts.modules_root(),
        release: opts.release.clone(),
        set_clock: opts.pid1,
        build_unix: env!("ZOS_BUILD_UNIX").parse().unwrap_or(0),
        flist: settings
            .fetch_flist
            .then(|| crate::fetch::flist::chain::FlistFetch {
                config_url: settings.config_url.clone(),
                flists: settings.flists.clone(),
                fallback_hubs: settings.hub_urls(),
                runmode: settings.runmode,
                version: settings.version.clone(),
                bootstrap: true,
            }),
        stores: settings.stores.clone(),
        trust: manifest_trust(console, settings),
    };
    if let Some(why) = skipped {
        console.line(format_args!("fetch: skipped ({why})"));
        state.fetch = Some(FetchRecord {
            manifest: stage::first_manifest_url(&cfg, &hubs),
            skipped: Some(why.into()),
            ..FetchRecord::default()
        });
        write_state(console, &opts.paths, state);
        return true;
    }
    if hubs.len() > 1 {
        let list: Vec<&str> = (0..hubs.len()).map(|i| hubs.url(i)).collect();
        console.line(format_args!("fetch: hubs {}", list.join(", ")));
    }
    let mut attempt = 0;
    loop {
        let fetched = smol::block_on(stage::run(&cfg, &mut hubs, &state.net, console));
        let ok = fetched.ok();
        state.fetch = Some(fetched.record);
        write_state(console, &opts.paths, state);
        if fetched.modules_installed {
            if opts.pid1 {
                let report = coldplug(console, opts);
                if let Some(m) = state.machine.as_mut() {
                    m.modules_loaded
                        .extend(report.loaded.iter().map(|l| l.module.clone()));
                    m.nics_without_driver = report.nics_without_driver;
                    check_firmware(console, m);
                }
            } else {
                console.line("drivers: new modules installed; not loading them (not PID 1)");
            }
        }
        if ok {
            return true;
        }
        if !opts.pid1 {
            return false;
        }
        if attempt == 0 && settings.debug {
            crate::pid1::early::rescue_shell("fetching the boot artifacts failed (zos.debug)");
        }
        pause_before_retry(console, "the fetch", attempt);
        recover_network(console, settings, opts, state, settling);
        attempt = (attempt + 1).min(10);
    }
}

/// Registers with `zos.registrar=` until it succeeds (PID 1) or once (elsewhere).
fn register_stage(
    console: &Console,
    settings: &Settings,
    opts: &BootOptions,
    state: &mut State,
    settling: &mut Settling,
) -> bool {
    if let Some(why) = no_files_here(opts) {
        // The identity seed is handed over in a file.
        console.line(format_args!("registration: skipped ({why})"));
        return true;
    }
    let Some(registrar) = settings.registrar.clone() else {
        // The full OS still gets the node's identity (README: "either way").
        let identity = settings.identity.as_deref().map(|p| opts.path(p));
        match register::Identity::load_or_generate(identity.as_deref(), opts.paths.identity_dir()) {
            Ok((id, source)) => console.line(format_args!(
                "registration: skipped (no zos.registrar=); node id {} ({source})",
                id.node_id()
            )),
            Err(e) => console.line(format_args!(
                "registration: skipped (no zos.registrar=); no identity: {e}"
            )),
        }
        return true;
    };
    let cfg = RegisterConfig {
        registrar,
        identity: settings.identity.as_deref().map(|p| opts.path(p)),
        handoff_dir: opts.paths.dir().to_path_buf(),
        kernel: opts.release.clone(),
        max_attempts: if opts.pid1 { 0 } else { LAB_REGISTER_ATTEMPTS },
    };
    let runmode = settings.runmode.to_string();
    let farm = Farm {
        farmer_id: settings.farmer_id,
        runmode: &runmode,
        version: settings.version.as_deref(),
    };
    // The node's key, once per boot: every retry below registers the same node.
    let identity =
        match register::Identity::load_or_generate(cfg.identity.as_deref(), &cfg.handoff_dir) {
            Ok(x) => x,
            Err(e) => {
                console.line(format_args!("registration failed: {e}"));
                state.registration = Some(register::RegistrationRecord {
                    error: Some(e),
                    ..register::RegistrationRecord::new(&cfg.registrar)
                });
                write_state(console, &opts.paths, state);
                return false;
            }
        };
    let mut attempt = 0;
    loop {
        let record = match stage::http_options(&state.net, &ca_files(settings, opts)) {
            Ok(http) => smol::block_on(register::run(
                &cfg,
                &farm,
                &state.net,
                &http,
                console,
                (&identity.0, &identity.1),
            )),
            Err(e) => {
                console.line(format_args!("registration failed: {e}"));
                register::RegistrationRecord {
                    error: Some(e),
                    ..register::RegistrationRecord::new(&cfg.registrar)
                }
            }
        };
        let ok = record.error.is_none();
        state.registration = Some(record);
        write_state(console, &opts.paths, state);
        if ok {
            return true;
        }
        if !opts.pid1 {
            return false;
        }
        pause_before_retry(console, "the registration", attempt);
        recover_network(console, settings, opts, state, settling);
        attempt = (attempt + 1).min(10);
    }
}

fn show(console: &Console, state: &State) {
    console.block(&state.net.summary());
    if let Some(c) = &state.net.classification {
        console.block(&c.report());
    }
}

fn write_state(console: &Console, paths: &StatePaths, state: &State) {
    match state.write(paths.state()) {
        Ok(()) => log::debug!("state written: {}", paths.state().display()),
        Err(e) => console.line(format_args!(
            "could not write {}: {e}",
            paths.state().display()
        )),
    }
}
