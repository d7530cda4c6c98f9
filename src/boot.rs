//! The boot pipeline, as PID 1 in the initramfs (or `zos-netboot boot` in a lab):
//! early → drivers → network (DHCPv4 + SLAAC + probes + classification) → fetch (clock,
//! manifest, artifacts, install; drivers again if modules came) → registration → hand-off. The
//! state file is rewritten after each stage. As PID 1 it never exits: a failed stage is
//! reported on the console and retried with backoff. Outside PID 1 each stage runs once, and
//! the fetch and registration only with `--sysroot` (they write files: never the host's).
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cmdline::Settings;
use crate::fetch::hubs::HubSet;
use crate::handoff;
use crate::machine::MachineRecord;
use crate::net::{self, NetConfig};
use crate::provision::{self, FetchConfig, FetchRecord};
use crate::register::{self, Farm, RegisterConfig};
use crate::report::{self, Console};
use crate::retry::Backoff;
use crate::state::State;

/// Between two attempts of a failed stage as PID 1: soon at first, at most every minute.
const STAGE_RETRY: Backoff = Backoff {
    initial: Duration::from_secs(2),
    cap: Duration::from_secs(60),
    jitter_pct: 20,
};

pub struct BootOptions {
    pub pid1: bool,
    pub handoff: bool,
    pub state_dir: PathBuf,
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
        if let Err(e) = crate::bootpath::mount_efivarfs(&opts.modules_root().join(&opts.release)) {
            console.line(format_args!("boot path: {e}"));
        }
        let path = crate::bootpath::decide(&crate::bootpath::Facts::read(Path::new("/")));
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

    let Some(state) = bring_up(console, settings, &opts, &mut machine) else {
        return false;
    };
    console.line(format_args!(
        "online in {} ms",
        state.timings_ms.total.unwrap_or(0)
    ));
    let mut state = state;
    if !fetch_stage(console, settings, &opts, &mut state) {
        return false;
    }
    if !register_stage(console, settings, &opts, &mut state) {
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
            "handing off to {} in {} (switch_root)",
            init.display(),
            root.display()
        ));
        // Only returns on failure.
        let Err(e) = handoff::switch_root(&root, &init);
        console.line(format_args!("hand-off failed: {e}"));
        if settings.debug {
            crate::early::rescue_shell("the hand-off failed (zos.debug)");
        }
        pause_before_retry(console, "the hand-off", attempt);
        attempt = (attempt + 1).min(10);
    }
}

/// The network stage, retried as PID 1 until online. `None` when it failed and this is not
/// PID 1.
fn bring_up(
    console: &Console,
    settings: &Settings,
    opts: &BootOptions,
    machine: &mut Option<MachineRecord>,
) -> Option<State> {
    let mut attempt = 0;
    let state = loop {
        let result = smol::block_on(net::run(&opts.net, console));
        match result {
            Ok(mut state) => {
                // Drivers that load firmware when the link is opened (r8169, bnx2x) have
                // asked for it by now.
                if let Some(m) = machine.as_mut() {
                    check_firmware(console, m);
                }
                state.machine = machine.clone();
                show(console, &state);
                write_state(console, &opts.state_dir, &state);
                if state.online {
                    break state;
                }
                console.line(format_args!(
                    "NOT online: {}",
                    state.error.as_deref().unwrap_or("unknown reason")
                ));
            }
            Err(e) => console.line(format_args!("network: {e}")),
        }
        if !opts.pid1 {
            return None;
        }
        if attempt == 0 && settings.debug {
            crate::early::rescue_shell("the network is not up (zos.debug)");
        }
        pause_before_retry(console, "the network", attempt);
        attempt += 1;
    };
    Some(state)
}

/// PID 1, before retrying a stage that needs the network: if the network went away meanwhile
/// (carrier lost, the lease ran out during an outage), say so and bring it up again (the
/// previous address is asked for first, SLAAC and the probes run again) before the retry.
fn recover_network(console: &Console, settings: &Settings, opts: &BootOptions, state: &mut State) {
    let Err(why) = smol::block_on(net::still_up(state)) else {
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
    if let Some(back) = bring_up(console, settings, opts, &mut machine) {
        console.line(format_args!(
            "network back after {}s",
            lost.elapsed().as_secs()
        ));
        let fetch = state.fetch.take();
        let registration = state.registration.take();
        *state = back;
        state.fetch = fetch;
        state.registration = registration;
        write_state(console, &opts.state_dir, state);
    }
}

/// PID 1 between two attempts of a failed stage: says when it tries again, then waits.
fn pause_before_retry(console: &Console, what: &str, attempt: u32) {
    let wait = STAGE_RETRY.delay(attempt, fastrand::u32(..));
    console.line(format_args!("retrying {what} in {}s", wait.as_secs()));
    std::thread::sleep(wait);
}

fn coldplug(console: &Console, opts: &BootOptions) -> crate::drivers::ColdplugReport {
    let report = crate::drivers::coldplug(
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
    for m in crate::machine::missing_firmware_now(Path::new("/")) {
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

/// Runs the fetch stage until it succeeds (PID 1) or once (elsewhere). False: it failed and
/// this is not PID 1.
fn fetch_stage(
    console: &Console,
    settings: &Settings,
    opts: &BootOptions,
    state: &mut State,
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
        cache_dir: opts.state_dir.join("cache"),
        next_root: opts.path(settings.next_root.as_deref().unwrap_or("/next-root")),
        modules_root: opts.modules_root(),
        release: opts.release.clone(),
        set_clock: opts.pid1,
        build_unix: env!("ZOS_BUILD_UNIX").parse().unwrap_or(0),
    };
    if let Some(why) = skipped {
        console.line(format_args!("fetch: skipped ({why})"));
        state.fetch = Some(FetchRecord {
            manifest: provision::first_manifest_url(&cfg, &hubs),
            skipped: Some(why.into()),
            ..FetchRecord::default()
        });
        write_state(console, &opts.state_dir, state);
        return true;
    }
    if hubs.len() > 1 {
        let list: Vec<&str> = (0..hubs.len()).map(|i| hubs.url(i)).collect();
        console.line(format_args!("fetch: hubs {}", list.join(", ")));
    }
    let mut attempt = 0;
    loop {
        let fetched = smol::block_on(provision::run(&cfg, &mut hubs, state, console));
        let ok = fetched.ok();
        state.fetch = Some(fetched.record);
        write_state(console, &opts.state_dir, state);
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
            crate::early::rescue_shell("fetching the boot artifacts failed (zos.debug)");
        }
        pause_before_retry(console, "the fetch", attempt);
        recover_network(console, settings, opts, state);
        attempt = (attempt + 1).min(10);
    }
}

/// Registers with `zos.registrar=` until it succeeds (PID 1) or once (elsewhere).
fn register_stage(
    console: &Console,
    settings: &Settings,
    opts: &BootOptions,
    state: &mut State,
) -> bool {
    if let Some(why) = no_files_here(opts) {
        // The identity seed is handed over in a file.
        console.line(format_args!("registration: skipped ({why})"));
        return true;
    }
    let Some(registrar) = settings.registrar.clone() else {
        // The full OS still gets the node's identity (README: "either way").
        let identity = settings.identity.as_deref().map(|p| opts.path(p));
        match register::Identity::load_or_generate(identity.as_deref(), &opts.state_dir) {
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
        handoff_dir: opts.state_dir.clone(),
        kernel: opts.release.clone(),
        max_attempts: if opts.pid1 { 0 } else { LAB_REGISTER_ATTEMPTS },
    };
    let runmode = settings.runmode.to_string();
    let farm = Farm {
        farmer_id: settings.farmer_id,
        runmode: &runmode,
        version: settings.version.as_deref(),
    };
    let mut attempt = 0;
    loop {
        let record = match provision::http_options(state, &ca_files(settings, opts)) {
            Ok(http) => smol::block_on(register::run(&cfg, &farm, state, &http, console)),
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
        write_state(console, &opts.state_dir, state);
        if ok {
            return true;
        }
        if !opts.pid1 {
            return false;
        }
        pause_before_retry(console, "the registration", attempt);
        recover_network(console, settings, opts, state);
        attempt = (attempt + 1).min(10);
    }
}

fn show(console: &Console, state: &State) {
    console.block(&report::summary(state));
    if let Some(c) = &state.classification {
        console.block(&c.report());
    }
}

fn write_state(console: &Console, dir: &Path, state: &State) {
    match handoff::write_state(dir, state) {
        Ok(files) => log::debug!("state written: {files:?}"),
        Err(e) => console.line(format_args!(
            "could not write the state under {}: {e}",
            dir.display()
        )),
    }
}
