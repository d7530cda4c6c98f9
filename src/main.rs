//! zos-netboot's command line; the stages are in the library (src/lib.rs).
use zos_netboot::config::{Config, Invocation};
use zos_netboot::pid1::early;
use zos_netboot::state::State;
use zos_netboot::{boot, cmdline, console, keep, net};

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use console::Console;

const USAGE: &str = "\
usage:
  zos-netboot net   [--iface IF]... [--cmdline STR|@FILE] [--state PATH] [--timeout SECS]
                    [--wait-ipv6 SECS] [--resolv PATH] [--allow-host]
  zos-netboot dhcp4 IF [--cmdline STR|@FILE] [--state PATH] [--timeout SECS] [--resolv PATH]
                    [--allow-host]
  zos-netboot boot  [--no-handoff] [--sysroot DIR] [same options as net]
  zos-netboot keep  [--state PATH] [--resolv PATH] [--allow-host]
  zos-netboot version
  zos-netboot flist list FILE [--json] | extract FILE --to DIR [--store URL]...  (flist --help)
  zos-netboot manifest-keygen FILE          (hub operators: a manifest signing key)
  zos-netboot sign-manifest --key FILE MANIFEST...   (writes MANIFEST.sig)

net    brings up every physical NIC (or the --iface ones), runs DHCPv4 on all of them at once
       (the first bound is the OOB NIC), waits for IPv6 SLAAC (--wait-ipv6, default 3 s per
       NIC), probes the hub over IPv4 and IPv6, classifies the node and says what to fix.
       Exit 0 when IPv4 is bound on the OOB NIC and a probe answered, else 1.
dhcp4  runs DHCPv4 on IF only and exits 0 once bound.
boot   the whole pipeline (what PID 1 runs with any arguments): as PID 1 it mounts /proc /sys
       /dev /run, loads NIC drivers, brings the network up (retrying forever), writes the state
       under /run/zos-netboot, sets the clock, fetches and installs the manifest's artifacts
       (zos.manifest=), registers (zos.registrar=) and switches into the next root (zos.root=,
       zos.init=). Elsewhere, --sysroot DIR runs the fetch and registration with every file
       path inside DIR (state DIR/run/zos-netboot, modules DIR/lib/modules, next root
       DIR/next-root, zos.ca=/zos.identity= files); without it they are skipped. The download
       cache and identity.seed go next to the state file (--state moves them too).
keep   for the full OS, after the hand-over: resumes each lease the boot wrote next to the state
       file (leases/IF.json) and holds it: RENEWING at T1 with the same client-id (never a
       second DISCOVER), the lease file rewritten at each renewal, carrier losses and outages
       reported and recovered from (the same address asked for again), resolv.conf kept in
       step with the lease's DNS and the routers' RDNSS. Runs until stopped; as a service in
       the full OS it needs --allow-host.

Settings come from the kernel command line (/proc/cmdline, or --cmdline); see README.md for
the zos.* keys. Outside PID 1 and in the host's own network namespace, nothing is touched
unless --allow-host is given.";

/// Exit code for usage errors and for refusing to touch the host's network.
const EXIT_USAGE: u8 = 2;

#[derive(Debug)]
enum Command {
    Boot {
        handoff: bool,
    },
    Net {
        ifaces: Vec<String>,
    },
    Dhcp4 {
        iface: String,
    },
    Keep,
    Version,
    Help,
    /// Hub operators' tools (`fetch::signature`).
    Keygen {
        file: String,
    },
    Sign {
        key: String,
        manifests: Vec<String>,
    },
}

#[derive(Debug)]
struct Cli {
    command: Command,
    cmdline: Option<String>,
    state: Option<PathBuf>,
    timeout: Option<u64>,
    wait_ipv6: Option<f64>,
    resolv: Option<PathBuf>,
    allow_host: bool,
    sysroot: Option<PathBuf>,
}

impl Default for Cli {
    fn default() -> Self {
        Cli {
            command: Command::Help,
            cmdline: None,
            state: None,
            timeout: None,
            wait_ipv6: None,
            resolv: None,
            allow_host: false,
            sysroot: None,
        }
    }
}

fn parse_args() -> Result<Cli, lexopt::Error> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_env();
    let mut sub: Option<String> = None;
    let mut positional = Vec::new();
    let mut ifaces = Vec::new();
    let mut handoff = true;
    let mut cli = Cli::default();
    let mut key = None;
    while let Some(arg) = parser.next()? {
        match arg {
            Long("key") => key = Some(parser.value()?.string()?),
            Long("iface") => ifaces.push(parser.value()?.string()?),
            Long("cmdline") => cli.cmdline = Some(parser.value()?.string()?),
            Long("state") => cli.state = Some(parser.value()?.into()),
            Long("sysroot") => cli.sysroot = Some(parser.value()?.into()),
            Long("timeout") => cli.timeout = Some(parser.value()?.parse()?),
            Long("wait-ipv6") => cli.wait_ipv6 = Some(parser.value()?.parse()?),
            Long("resolv") => cli.resolv = Some(parser.value()?.into()),
            Long("allow-host") => cli.allow_host = true,
            Long("no-handoff") => handoff = false,
            Short('h') | Long("help") => sub = Some("help".into()),
            Value(v) if sub.is_none() => sub = Some(v.string()?),
            Value(v) => positional.push(v.string()?),
            _ => return Err(arg.unexpected()),
        }
    }
    cli.command = match sub.as_deref() {
        Some("net") if positional.is_empty() => Command::Net { ifaces },
        Some("boot") if positional.is_empty() && ifaces.is_empty() => Command::Boot { handoff },
        Some("dhcp4") if positional.len() == 1 && ifaces.is_empty() => Command::Dhcp4 {
            iface: positional.remove(0),
        },
        Some("dhcp4") => return Err("dhcp4 takes exactly one interface name".into()),
        Some("keep") if positional.is_empty() && ifaces.is_empty() => Command::Keep,
        Some("version") => Command::Version,
        Some("manifest-keygen") if positional.len() == 1 => Command::Keygen {
            file: positional.remove(0),
        },
        Some("sign-manifest") if key.is_some() && !positional.is_empty() => Command::Sign {
            key: key.unwrap_or_default(),
            manifests: positional,
        },
        Some("manifest-keygen" | "sign-manifest") => return Err("see usage".into()),
        Some("help") | None => Command::Help,
        Some(other) => return Err(format!("unknown command {other:?}").into()),
    };
    Ok(cli)
}

/// A hub operator's tool's result: its report on stdout, or the error on stderr (exit 1).
fn tool(result: Result<String, String>) -> ExitCode {
    match result {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("zos-netboot: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Why this process must not reconfigure the network it sees, if it must not: it is not PID 1
/// and its network namespace is the machine's own (PID 1's, or the kernel's initial one), or
/// it can't tell. Inside a namespace made by `ip netns` (tests, the lab) it may.
fn host_network_guard() -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    /// Kernels since 6.x give the initial network namespace this fixed inode (PROC_NET_INIT_INO).
    const INIT_NET_INO: u64 = 0xEFFF_FFF9;
    if std::process::id() == 1 {
        return Ok(());
    }
    let me = std::fs::metadata("/proc/self/ns/net")
        .map_err(|e| format!("cannot read /proc/self/ns/net ({e})"))?;
    let same = |m: &std::fs::Metadata| m.ino() == me.ino() && m.dev() == me.dev();
    if let Ok(pid1) = std::fs::metadata("/proc/1/ns/net") {
        if same(&pid1) {
            return Err("this is PID 1's network namespace".into());
        }
        if me.ino() != INIT_NET_INO {
            return Ok(());
        }
    }
    let named = std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| std::fs::metadata(e.path()).is_ok_and(|m| same(&m)));
    if named {
        Ok(())
    } else if me.ino() == INIT_NET_INO {
        Err("this is the kernel's initial network namespace".into())
    } else {
        Err("cannot tell whether this is the machine's own network namespace".into())
    }
}

fn read_cmdline(arg: Option<&str>) -> Result<String, String> {
    match arg {
        Some(file) if file.starts_with('@') => std::fs::read_to_string(&file[1..])
            .map_err(|e| format!("cannot read {}: {e}", &file[1..])),
        Some(text) => Ok(text.to_string()),
        None => Ok(std::fs::read_to_string("/proc/cmdline").unwrap_or_default()),
    }
}

fn main() -> ExitCode {
    let start = Instant::now();
    let pid1 = std::process::id() == 1;
    let mut early_problems = Vec::new();
    if pid1 {
        // Before anything can fail: a panic restarts us instead of panicking the kernel.
        early::install_panic_restart();
        early_problems = early::mount_pseudo_filesystems();
        if let Err(e) = early::attach_console() {
            early_problems.push(format!("/dev/console: {e}"));
        }
        if let Err(e) = early::start_reaper() {
            early_problems.push(format!("child reaper: {e}"));
        }
    }
    // Operators' flist tools: no network set-up, so no host guard and no --allow-host.
    if !pid1 && std::env::args_os().nth(1).is_some_and(|a| a == "flist") {
        return zos_netboot::fetch::flist::cli::main(std::env::args_os().skip(2));
    }
    // As PID 1 the kernel hands us the command line words it did not understand as arguments:
    // they are not ours to parse, the boot is what PID 1 does.
    let cli = if pid1 {
        Cli {
            command: Command::Boot { handoff: true },
            ..Cli::default()
        }
    } else {
        match parse_args() {
            Ok(cli) => cli,
            Err(e) => {
                eprintln!("zos-netboot: {e}\n\n{USAGE}");
                return ExitCode::from(EXIT_USAGE);
            }
        }
    };
    let (ifaces, oob_override, full) = match &cli.command {
        Command::Help => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Command::Version => {
            println!("zos-netboot {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Command::Keygen { file } => return tool(zos_netboot::fetch::signature::keygen_cli(file)),
        Command::Sign { key, manifests } => {
            return tool(zos_netboot::fetch::signature::sign_cli(key, manifests))
        }
        Command::Net { ifaces } => (ifaces.clone(), None, true),
        Command::Keep => (Vec::new(), None, false),
        Command::Boot { .. } => (Vec::new(), None, true),
        Command::Dhcp4 { iface } => (vec![iface.clone()], Some(iface.clone()), false),
    };
    let text = match read_cmdline(cli.cmdline.as_deref()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("zos-netboot: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let (settings, ignored) = cmdline::parse(&text);
    console::init_log(start, settings.debug, pid1);
    if let (Err(why), false) = (host_network_guard(), cli.allow_host) {
        eprintln!(
            "zos-netboot: refusing to touch this machine's own network: not PID 1, and {why}. \
             Run it inside a network namespace (ip netns exec NS ...) or pass --allow-host if \
             you really mean it."
        );
        return ExitCode::from(EXIT_USAGE);
    }
    let console = if pid1 {
        Console::with_kmsg(start)
    } else {
        Console::new(start)
    };
    if matches!(cli.command, Command::Boot { .. }) {
        console.line(format_args!(
            "zos-netboot {}: farmer_id={} runmode={} version={}",
            env!("CARGO_PKG_VERSION"),
            settings
                .farmer_id
                .map_or("(none)".to_string(), |f| f.to_string()),
            settings.runmode,
            settings.version.as_deref().unwrap_or("(default)")
        ));
    }
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let config = Config::resolve(
        &Invocation {
            state: cli.state.clone(),
            sysroot: cli.sysroot.clone(),
            timeout_secs: cli.timeout,
            wait_ipv6_secs: cli.wait_ipv6,
            resolv: cli.resolv.clone(),
            ifaces,
            oob: oob_override,
            full,
            pid1,
            release: release.clone(),
        },
        &settings,
    );
    let resolv_private = zos_netboot::hostsafety::is_mount_point(&config.net.resolv_path);
    if let (Err(why), false) = (
        zos_netboot::hostsafety::host_files_guard(
            pid1,
            &config.net.resolv_path,
            config.paths.state(),
            resolv_private,
        ),
        cli.allow_host,
    ) {
        eprintln!("zos-netboot: refusing to write this machine's files: {why}, or --allow-host.");
        return ExitCode::from(EXIT_USAGE);
    }
    if matches!(cli.command, Command::Keep) {
        let cfg = keep::KeepConfig {
            state_path: config.paths.state().to_path_buf(),
            resolv_path: config.net.resolv_path.clone(),
        };
        console.line(format_args!(
            "zos-netboot {} keep: holding the leases handed over in {}",
            env!("CARGO_PKG_VERSION"),
            config.paths.dir().display()
        ));
        return match smol::block_on(keep::run(&cfg, &console)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                console.line(format_args!("keep: {e}"));
                ExitCode::FAILURE
            }
        };
    }
    for p in &early_problems {
        console.line(format_args!("early: {p}"));
    }
    for i in &ignored {
        console.line(format_args!(
            "kernel command line: ignoring {:?}: {}",
            i.word, i.why
        ));
    }

    let cfg = config.net.clone();

    if let Command::Boot { handoff } = cli.command {
        let opts = boot::BootOptions {
            pid1,
            handoff,
            paths: config.paths.clone(),
            net: cfg,
            sysroot: config.sysroot.clone(),
            release,
        };
        return if boot::run(&console, &settings, opts) {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }

    let result = smol::block_on(net::run(&cfg, &console));
    let state = match result {
        Ok(net) => State::new(net),
        Err(e) => {
            console.line(format_args!("network: {e}"));
            return ExitCode::FAILURE;
        }
    };
    console.block(&state.net.summary());
    if let Some(c) = &state.net.classification {
        console.block(&c.report());
    }
    if let Err(e) = state.write(config.paths.state()) {
        console.line(format_args!(
            "could not write {}: {e}",
            config.paths.state().display()
        ));
    }
    if state.net.online {
        console.line(format_args!(
            "online in {} ms",
            state.net.timings_ms.total.unwrap_or(0)
        ));
        ExitCode::SUCCESS
    } else {
        console.line(format_args!(
            "NOT online: {}",
            state.net.error.as_deref().unwrap_or("unknown reason")
        ));
        ExitCode::FAILURE
    }
}
