//! `zos-netboot flist …`: the operator's commands. Not network set-up: they need neither root,
//! nor a network namespace, nor --allow-host.
//!
//! ```text
//! zos-netboot flist list FILE [--json]
//! zos-netboot flist extract FILE --to DIR [--store URL]... [--max-bytes N]
//! ```
use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{entry_json, entry_line, materialise, read_file, Cache, Limits, Progress, Stores};

pub const USAGE: &str = "\
  zos-netboot flist list FILE [--json]
  zos-netboot flist extract FILE --to DIR [--store URL]... [--max-bytes N] [--timeout SECS]";

pub const HELP: &str = "\
flist  reads a hub flist (v1 .flist or v2 .fl). `list` prints one entry per line (--json: one
       object per line: path, type, mode, uid, gid, size, target). `extract` writes the tree
       into DIR (all or nothing), fetching each block from the --store URLs in order (default:
       the stores the flist names): zdb://host[:port][/ns] (password: zdb://:PASS@host:port/ns),
       http(s)://base, dir:///path. Owners are set only when run as root. --max-bytes bounds
       the file bytes (default: the free space of DIR's filesystem); --timeout bounds each
       connect and read of a store (default 10 s; a store failing twice is not asked again).";

const EXIT_USAGE: u8 = 2;

fn usage(msg: &str) -> ExitCode {
    eprintln!("zos-netboot flist: {msg}\n\nusage:\n{USAGE}\n\n{HELP}");
    ExitCode::from(EXIT_USAGE)
}

#[derive(Default)]
struct Opts {
    words: Vec<String>,
    json: bool,
    to: Option<PathBuf>,
    stores: Vec<String>,
    max_bytes: Option<u64>,
    timeout: Option<u64>,
}

fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Opts, lexopt::Error> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_args(args);
    let mut o = Opts::default();
    while let Some(arg) = p.next()? {
        match arg {
            Long("json") => o.json = true,
            Long("to") => o.to = Some(PathBuf::from(p.value()?)),
            Long("store") => o.stores.push(p.value()?.string()?),
            Long("max-bytes") => o.max_bytes = Some(p.value()?.parse::<u64>()?),
            Long("timeout") => o.timeout = Some(p.value()?.parse::<u64>()?),
            Short('h') | Long("help") => o.words.insert(0, "help".into()),
            Value(v) => o.words.push(v.string()?),
            _ => return Err(arg.unexpected()),
        }
    }
    Ok(o)
}

/// Runs `flist` with the arguments after it.
pub fn main(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let Opts {
        words,
        json,
        to,
        stores,
        max_bytes,
        timeout,
    } = match parse(args) {
        Ok(o) => o,
        Err(e) => return usage(&e.to_string()),
    };
    match words.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["list", file] => list(file, json),
        ["extract", file] => match to {
            Some(dir) => extract(file, &dir, &stores, max_bytes, timeout),
            None => usage("extract needs --to DIR"),
        },
        ["help"] | [] => {
            println!("usage:\n{USAGE}\n\n{HELP}");
            ExitCode::SUCCESS
        }
        _ => usage("expected `list FILE` or `extract FILE --to DIR`"),
    }
}

fn list(file: &str, json: bool) -> ExitCode {
    let flist = match read_file(file.as_ref()) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("zos-netboot flist: {e}");
            return ExitCode::FAILURE;
        }
    };
    let out = std::io::stdout();
    let mut out = std::io::BufWriter::new(out.lock());
    for e in &flist.entries {
        let line = if json { entry_json(e) } else { entry_line(e) };
        if writeln!(out, "{line}").is_err() {
            return ExitCode::FAILURE; // stdout closed (a pager quit): nothing to say
        }
    }
    if out.flush().is_err() {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// Free bytes of the filesystem holding `dir`, for the default limit.
fn free_bytes(dir: &std::path::Path) -> Option<u64> {
    let st = nix::sys::statvfs::statvfs(dir).ok()?;
    Some((st.blocks_available() as u64).saturating_mul(st.fragment_size() as u64))
}

/// DNS servers for http stores named by host, from resolv.conf (operators' machines).
fn resolvers() -> Vec<std::net::IpAddr> {
    std::fs::read_to_string("/etc/resolv.conf")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.strip_prefix("nameserver"))
        .filter_map(|a| a.trim().parse().ok())
        .collect()
}

fn extract(
    file: &str,
    dir: &std::path::Path,
    urls: &[String],
    max_bytes: Option<u64>,
    timeout: Option<u64>,
) -> ExitCode {
    let start = Instant::now();
    let say = |m: &str| eprintln!("zos-netboot flist: {m}");
    let flist = match read_file(file.as_ref()) {
        Ok(f) => f,
        Err(e) => {
            say(&e.to_string());
            return ExitCode::FAILURE;
        }
    };
    // --store URLs serve every block; without them, the flist's routes, each for its range.
    let parsed = if urls.is_empty() {
        flist
            .routes
            .iter()
            .try_fold(Stores::new(Vec::new()), |mut s, r| {
                s.add(&r.url, r.start, r.end).map(|()| s)
            })
    } else {
        Stores::parse_all(urls)
    };
    let mut stores = match parsed {
        Ok(s) => s,
        Err(e) => {
            say(&e.to_string());
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if let Some(t) = timeout {
        stores.timeout = Duration::from_secs(t.max(1));
    }
    if stores
        .list
        .iter()
        .any(|s| matches!(s, super::Store::Http { .. }))
    {
        let dns = crate::net::probe::ProbeConfig {
            dns_servers: resolvers(),
            timeout: Duration::from_secs(5),
            attempts: 2,
        };
        let mut opts = crate::fetch::http::HttpOptions::new(dns, crate::net::probe::Family::Ipv4);
        let t = stores.timeout;
        opts.timeouts = crate::fetch::http::Timeouts {
            connect: t,
            tls: t,
            first_byte: t,
            idle: t,
            ..Default::default()
        };
        let ca = PathBuf::from(crate::fetch::tls::DEFAULT_CA_BUNDLE);
        opts.tls = crate::fetch::tls::client_config(&[ca]).ok();
        stores.http = Some(opts);
    }
    let limit = max_bytes.or_else(|| free_bytes(dir)).unwrap_or(u64::MAX);
    let names: Vec<String> = stores.list.iter().map(|s| s.name()).collect();
    say(&format!(
        "{file}: {} entries, {} bytes of files, into {} from {}",
        flist.entries.len(),
        flist.file_bytes(),
        dir.display(),
        if names.is_empty() {
            "(no store)".to_string()
        } else {
            names.join(", ")
        }
    ));
    let last = Mutex::new(Instant::now());
    let progress = |p: &Progress| match p {
        Progress::Warn(m) => say(m),
        Progress::Bytes {
            done,
            total,
            files,
            files_total,
        } => {
            let Ok(mut l) = last.lock() else { return };
            if l.elapsed() >= Duration::from_secs(2) {
                *l = Instant::now();
                say(&format!(
                    "{:.1} of {:.1} MiB, {files} of {files_total} files, {:.0} s",
                    *done as f64 / 1048576.0,
                    *total as f64 / 1048576.0,
                    start.elapsed().as_secs_f64()
                ));
            }
        }
    };
    let cache = Cache::new(64 << 20);
    match materialise(
        dir,
        &flist,
        &stores,
        &cache,
        &Limits { max_bytes: limit },
        &progress,
    ) {
        Ok(s) => {
            if s.chown_skipped {
                say("not root: owners not set (files belong to you)");
            }
            say(&format!(
                "done in {:.1} s: {} files ({} bytes, {} blocks fetched, {} from cache), {} dirs, {} links, {} special files",
                start.elapsed().as_secs_f64(),
                s.files,
                s.bytes,
                s.blocks_fetched,
                s.blocks_cached,
                s.dirs,
                s.links,
                s.specials
            ));
            ExitCode::SUCCESS
        }
        Err(e) => {
            say(&format!("{e}; nothing was written to {}", dir.display()));
            ExitCode::FAILURE
        }
    }
}
