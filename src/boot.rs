//! The boot pipeline, as PID 1 in the initramfs (or `zos-netboot boot` in a lab):
//! early → drivers → network (DHCPv4 + SLAAC + probes + classification) → state → hand-off.
//! As PID 1 it never exits: a failed stage is reported on the console and retried with backoff.
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cmdline::Settings;
use crate::handoff;
use crate::net::{self, NetConfig};
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
    /// Where kernel modules live (/lib/modules/<release>).
    pub modules_dir: PathBuf,
}

/// Runs the pipeline. Returns only when not PID 1 (for `boot --no-handoff` in a lab).
pub fn run(console: &Console, settings: &Settings, opts: BootOptions) -> bool {
    if opts.pid1 {
        let report = crate::drivers::coldplug(
            Path::new("/sys"),
            &opts.modules_dir,
            Path::new("/proc/modules"),
        );
        for line in report.summary_lines() {
            console.line(format_args!("drivers: {line}"));
        }
    } else {
        console.line("drivers: not loading kernel modules (not PID 1)");
    }

    let mut attempt = 0;
    let state = loop {
        let result = smol::block_on(net::run(&opts.net, console));
        match result {
            Ok(state) => {
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
            return false;
        }
        if attempt == 0 && settings.debug {
            crate::early::rescue_shell("the network is not up (zos.debug)");
        }
        let wait = STAGE_RETRY.delay(attempt, fastrand::u32(..));
        console.line(format_args!("retrying the network in {}s", wait.as_secs()));
        std::thread::sleep(wait);
        attempt += 1;
    };
    console.line(format_args!(
        "online in {} ms",
        state.timings_ms.total.unwrap_or(0)
    ));
    if !(opts.pid1 && opts.handoff) {
        return true;
    }

    let root = PathBuf::from(settings.next_root.as_deref().unwrap_or("/next-root"));
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
        let wait = STAGE_RETRY.delay(attempt, fastrand::u32(..));
        console.line(format_args!("retrying the hand-off in {}s", wait.as_secs()));
        std::thread::sleep(wait);
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
