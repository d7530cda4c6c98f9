//! The fetch stage, once the node is online: clock → manifest → artifacts → install.
//!
//! 1. **Clock** before any TLS: never earlier than this binary's build, then SNTP against the
//!    lease's option 42 and `zos.ntp=` servers; if none answers, the hub's HTTP `Date` (taken
//!    from the manifest answer). Only PID 1 steps the clock; elsewhere the step is reported.
//! 2. **Manifest** (`zos.manifest=`, else derived from each hub, runmode and version), fetched
//!    with the downloads' retry policy, failing over from hub to hub, and validated by
//!    `fetch::manifest::parse`.
//! 3. **Artifacts**, one after the other, each verified (size + SHA-256) into the cache
//!    directory by `fetch::download`, then installed: the modules for the running kernel into
//!    `/lib/modules` (the boot then runs the coldplug loader again), rootfs tarballs into the
//!    next root, single files into the next root. Nothing unverified is ever installed, and an
//!    archive is deleted once installed (the cache is RAM); a stamp remembers it, so a retry
//!    of the stage after a later failure does not fetch it again. An artifact under a hub's
//!    URL is fetched from any hub (`fetch::hubs`), a failed try resuming on the next one; a
//!    hub that served a wrong SHA-256 is not used again during this boot.
//!
//! Paths come in resolved (`--sysroot` in a lab, `/` as PID 1): this module never names a
//! host path itself.
use std::fs;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::{self, ClockReport};
use crate::clock_trust;
use crate::console::Console;
use crate::fetch::download::{self, DownloadError, DownloadOptions, Expected};
use crate::fetch::http::{self, HttpOptions, Method};
use crate::fetch::hubs::{HubRecord, HubSet};
use crate::fetch::install;
use crate::fetch::manifest::{self, Artifact, Kind, Manifest};
use crate::net::probe::{Family, ProbeConfig};
use crate::net::state::NetState;
use crate::retry::Backoff;

/// SNTP: one wait for all servers at once; a LAN server answers in a millisecond.
const NTP_TIMEOUT: Duration = Duration::from_millis(1500);
/// Manifest tries (transient failures only: timeouts, resets, 5xx), all hubs together.
const MANIFEST_ATTEMPTS: u32 = 6;
/// Downloads smaller than this get no progress lines, only the final one.
const PROGRESS_MIN_SIZE: u64 = 8 << 20;

/// Everything the stage needs, paths already resolved.
#[derive(Debug, Clone)]
pub struct FetchConfig {
    /// `zos.manifest=`: this manifest only; None: `<hub>/zos/<runmode>/<version>/manifest.json`
    /// on each hub.
    pub manifest_url: Option<String>,
    pub runmode: String,
    pub version: Option<String>,
    /// PEM files to trust: the image's bundle (when it exists) and `zos.ca=` files.
    pub ca_files: Vec<PathBuf>,
    /// `zos.ntp=` servers; the lease's option 42 servers are added from the state.
    pub ntp: Vec<IpAddr>,
    pub cache_dir: PathBuf,
    pub next_root: PathBuf,
    /// `/lib/modules` (the release directory is inside the tarball).
    pub modules_root: PathBuf,
    /// `uname -r`.
    pub release: String,
    /// PID 1 only: step the clock for real.
    pub set_clock: bool,
    pub build_unix: u64,
    /// The flist mode (`zos.fetch=flist`, `zos.config=`, `zos.flist=`) instead of the manifest.
    pub flist: Option<crate::fetch::flist::chain::FlistFetch>,
    /// `zos.store=` block stores, for the flist mode.
    pub stores: Vec<String>,
    /// Who may sign the manifest, and whether it must be signed ([`crate::fetch::signature`]).
    pub trust: crate::fetch::signature::Trust,
}

/// What the stage did, for the console and the state JSON (`"fetch"`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FetchRecord {
    pub manifest: String,
    /// The hub the manifest came from (None: not from a hub, or not fetched).
    pub manifest_hub: Option<String>,
    /// The id of the key that signed the manifest; None: taken unsigned (https, not prod).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest_key: Option<String>,
    /// Every hub, its status (`untried`, `ok`, `failing`, `bad`), what it served.
    pub hubs: Vec<HubRecord>,
    pub clock: Option<ClockReport>,
    pub artifacts: Vec<ArtifactRecord>,
    /// Why the stage failed; null when it completed.
    pub error: Option<String>,
    /// Why the stage did not run at all (`zos.fetch=none`, not PID 1 without `--sysroot`).
    pub skipped: Option<String>,
    /// The flist mode's record (None: the manifest mode).
    pub flist: Option<crate::fetch::flist::chain::FlistRecord>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArtifactRecord {
    pub name: String,
    pub kind: String,
    pub size: u64,
    pub sha256: String,
    pub url: String,
    /// Where it was installed.
    pub path: String,
    pub bytes_received: u64,
    pub attempts: u32,
    pub resumed_from: Option<u64>,
    pub ms: u64,
    pub address: Option<IpAddr>,
    /// The hub that completed the download (None: not from a hub, or from the cache).
    pub served_by: Option<String>,
    /// Every hub (or URL, when not on a hub) that served bytes of it, in order.
    pub sources: Vec<String>,
    /// Files (and links) and directories an archive installed.
    pub files: u64,
    pub dirs: u64,
    /// "installed by an earlier attempt", device nodes skipped, …
    pub note: Option<String>,
}

/// The stage's result: the record, and whether new kernel modules are in place.
#[derive(Debug, Clone, Default)]
pub struct Fetched {
    pub record: FetchRecord,
    pub modules_installed: bool,
}

impl Fetched {
    pub fn ok(&self) -> bool {
        self.record.error.is_none()
    }
}

/// How to reach the hub: the resolvers the network stage found, the family the probes
/// preferred (IPv6 when nothing was probed: it is the base), and the CA files.
pub fn http_options(state: &NetState, ca_files: &[PathBuf]) -> Result<HttpOptions, String> {
    let dns = state
        .dns
        .iter()
        .filter(|ip| !matches!(ip, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80))
        .copied()
        .collect();
    let preferred = state.preferred_family.unwrap_or(
        if state.ipv4.gateway.is_some() && state.ipv6.router.is_none() {
            Family::Ipv4
        } else {
            Family::Ipv6
        },
    );
    let mut opts = HttpOptions::new(
        ProbeConfig {
            dns_servers: dns,
            timeout: Duration::from_secs(2),
            attempts: 3,
        },
        preferred,
    );
    if !ca_files.is_empty() {
        opts.tls = Some(crate::fetch::tls::client_config(ca_files)?);
    }
    Ok(opts)
}

/// The manifest URLs to try, best first, with the hub each is on.
fn manifest_candidates(cfg: &FetchConfig, hubs: &HubSet) -> Vec<(Option<usize>, String)> {
    match &cfg.manifest_url {
        Some(url) => vec![(hubs.hub_of(url), url.clone())],
        None => hubs
            .order()
            .into_iter()
            .map(|i| {
                let url = manifest::default_url(hubs.url(i), &cfg.runmode, cfg.version.as_deref());
                (Some(i), url)
            })
            .collect(),
    }
}

/// The manifest URL the stage starts with, for a record of a stage that does not run.
pub fn first_manifest_url(cfg: &FetchConfig, hubs: &HubSet) -> String {
    manifest_candidates(cfg, hubs)
        .into_iter()
        .next()
        .map_or_else(String::new, |(_, u)| u)
}

/// Runs the stage once. Failures end up in `record.error`, in words for the console. `hubs`
/// lives for the whole boot: a hub found bad stays bad when the stage is run again.
pub async fn run(
    cfg: &FetchConfig,
    hubs: &mut HubSet,
    state: &NetState,
    console: &Console,
) -> Fetched {
    let mut out = Fetched {
        record: FetchRecord {
            manifest: first_manifest_url(cfg, hubs),
            ..FetchRecord::default()
        },
        modules_installed: false,
    };
    if let Err(e) = stage(cfg, hubs, state, console, &mut out).await {
        console.line(format_args!("fetch failed: {e}"));
        out.record.error = Some(e);
    }
    out.record.hubs = hubs.records();
    out
}

async fn stage(
    cfg: &FetchConfig,
    hubs: &mut HubSet,
    state: &NetState,
    console: &Console,
    out: &mut Fetched,
) -> Result<(), String> {
    // The clock first: certificate validity depends on it.
    let mut clock = ClockSync::new(cfg.set_clock, console);
    clock.floor(cfg.build_unix);
    let mut ntp = cfg.ntp.clone();
    ntp.extend(state.ntp.iter().map(|ip| IpAddr::V4(*ip)));
    ntp.sort();
    ntp.dedup();
    clock.sntp(&ntp).await;
    out.record.clock = clock.report.clone();

    if let Some(fl) = &cfg.flist {
        return crate::fetch::flist::install::stage(cfg, fl, state, console, &mut out.record).await;
    }

    let candidates = manifest_candidates(cfg, hubs);
    if candidates.is_empty() {
        return Err("every hub served a wrong file during this boot; none is left to ask".into());
    }
    if let Some((_, url)) = candidates.iter().find(|(_, u)| u.starts_with("https:")) {
        if cfg.ca_files.is_empty() {
            return Err(format!(
                "{url}: no CA certificates to check the hub with: the image has no {} and no \
                 zos.ca= was given",
                crate::fetch::tls::DEFAULT_CA_BUNDLE
            ));
        }
    }
    let opts = http_options(state, &cfg.ca_files)?;
    let ((manifest, signed_by), date, used) =
        match fetch_manifest(&candidates, hubs, &opts, &cfg.trust, console).await {
            // A clock behind the hub's certificate (dead RTC, no NTP): the certificate's start
            // is a lower bound of the time. Step forward to it and try once more.
            Err(ManifestError::NotYetValid {
                not_before,
                message,
            }) if cfg.set_clock && !clock.synced => {
                let now = clock::now_unix_ms();
                let target = i64::try_from(not_before)
                    .unwrap_or(i64::MAX)
                    .saturating_mul(1000);
                console.line(format_args!("clock: {message}"));
                // The chain verified at its notBefore (fetch::tls), so a CA vouches for this date.
                clock.claim(
                    clock_trust::Kind::CertStart,
                    "certificate-start (the hub certificate's notBefore)".into(),
                    "certificate".into(),
                    target - now + 1000,
                );
                out.record.clock = clock.report.clone();
                fetch_manifest(&candidates, hubs, &opts, &cfg.trust, console)
                    .await
                    .map_err(|e| e.to_string())?
            }
            other => other.map_err(|e| e.to_string())?,
        };
    let (hub, manifest_url) = &candidates[used];
    if !clock.synced {
        if let Some(date) = date {
            clock.http_date(manifest_url, &date);
            out.record.clock = clock.report.clone();
        }
    }
    out.record.manifest = manifest_url.clone();
    out.record.manifest_hub = hub.map(|h| hubs.url(h).to_string());
    out.record.manifest_key = signed_by.as_ref().map(|k| k.id());
    match &signed_by {
        Some(k) if k.name.is_empty() => {
            console.line(format_args!("manifest signed by key {}", k.id()))
        }
        Some(k) => console.line(format_args!(
            "manifest signed by key {} ({})",
            k.id(),
            k.name
        )),
        None => console.line("manifest not signed (taken over https outside prod)"),
    }
    console.line(format_args!(
        "manifest {}: {} artifacts{}",
        manifest_url,
        manifest.artifacts.len(),
        match (hub, hubs.len()) {
            (Some(h), 2..) => format!(" (from hub {})", hubs.url(*h)),
            _ => String::new(),
        }
    ));

    fs::create_dir_all(&cfg.cache_dir)
        .map_err(|e| format!("cannot create {}: {e}", cfg.cache_dir.display()))?;
    let mut dl = DownloadOptions::new(opts);
    for artifact in plan(&manifest, &cfg.release, console) {
        let record = fetch_and_install(cfg, artifact, hubs, &mut dl, console).await?;
        if artifact.kind == Kind::Modules && record.note.is_none() {
            out.modules_installed = true;
        }
        out.record.artifacts.push(record);
    }
    Ok(())
}

/// The artifacts to install, in order: the modules for this kernel first (the drivers may be
/// needed by what follows), then rootfs tarballs, then files (which may go over them).
fn plan<'a>(manifest: &'a Manifest, release: &str, console: &Console) -> Vec<&'a Artifact> {
    let modules = manifest.modules_for(release);
    for a in manifest
        .artifacts
        .iter()
        .filter(|a| a.kind == Kind::Modules)
    {
        if modules != Some(a) {
            console.line(format_args!(
                "skipping {}: modules for kernel {}, this one is {release}",
                a.name,
                a.kernel.as_deref().unwrap_or("?")
            ));
        }
    }
    if modules.is_none() && manifest.artifacts.iter().any(|a| a.kind == Kind::Modules) {
        console.line(format_args!(
            "the manifest has no modules for this kernel ({release}): only the drivers in the \
             image are available"
        ));
    }
    let mut out: Vec<&Artifact> = modules.into_iter().collect();
    out.extend(manifest.artifacts.iter().filter(|a| a.kind == Kind::Rootfs));
    out.extend(manifest.artifacts.iter().filter(|a| a.kind == Kind::File));
    out
}

enum ManifestError {
    NotYetValid { not_before: u64, message: String },
    Other(String),
}

impl std::fmt::Display for ManifestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ManifestError::NotYetValid { message, .. } => write!(f, "manifest: {message}"),
            ManifestError::Other(e) => f.write_str(e),
        }
    }
}

/// GETs and validates the manifest from the first candidate that has a good one, retrying
/// transient failures: a failed try moves on to the next hub at once, a pause comes only after
/// every hub failed in a row; a final answer (4xx, TLS, an invalid manifest) drops that hub
/// for this stage. Returns the hub's `Date` header too (the clock's last resort), and which
/// candidate answered.
async fn fetch_manifest(
    candidates: &[(Option<usize>, String)],
    hubs: &mut HubSet,
    opts: &HttpOptions,
    trust: &crate::fetch::signature::Trust,
    console: &Console,
) -> Result<(SignedManifest, Option<String>, usize), ManifestError> {
    let mut dead = vec![false; candidates.len()];
    let mut last_error: Vec<Option<String>> = vec![None; candidates.len()];
    let mut cur = 0;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (hub, url) = &candidates[cur];
        let (error, transient) = match get_manifest(url, opts, trust).await {
            Ok((m, date)) => {
                if let Some(h) = hub {
                    hubs.served(*h);
                }
                return Ok((m, date, cur));
            }
            Err(ManifestTry::Http(error)) => {
                if let http::ErrorKind::TlsNotYetValid { not_before, .. } = error.kind {
                    return Err(ManifestError::NotYetValid {
                        not_before,
                        message: error.to_string(),
                    });
                }
                let transient = error.is_transient();
                (format!("manifest: {error}"), transient)
            }
            Err(ManifestTry::Invalid(e)) => (e, false),
        };
        if let Some(h) = hub {
            hubs.failed(*h);
        }
        if !transient {
            dead[cur] = true;
        }
        last_error[cur] = Some(error.clone());
        let alive: Vec<usize> = (1..=candidates.len())
            .map(|k| (cur + k) % candidates.len())
            .filter(|&i| !dead[i])
            .collect();
        if alive.is_empty() || attempt >= MANIFEST_ATTEMPTS.max(candidates.len() as u32) {
            let errors: Vec<String> = last_error.into_iter().flatten().collect();
            return Err(ManifestError::Other(errors.join("; ")));
        }
        let next = alive[0];
        if next != cur {
            console.line(format_args!("{error}; trying {}", candidates[next].1));
            cur = next;
        }
        // The next hub at once; a pause only once every hub left has failed in a row.
        let n = alive.len() as u32;
        if !attempt.is_multiple_of(n) {
            continue;
        }
        let wait = Backoff::DOWNLOAD.delay((attempt / n).saturating_sub(1), fastrand::u32(..));
        log::warn!("{error}; retrying in {} ms", wait.as_millis());
        smol::Timer::after(wait).await;
    }
}

enum ManifestTry {
    Http(http::HttpError),
    Invalid(String),
}

/// A manifest and the key that signed it.
type SignedManifest = (Manifest, crate::fetch::signature::SignedBy);

/// One GET of a manifest and of its signature (`<url>.sig`), checked and validated.
async fn get_manifest(
    url: &str,
    opts: &HttpOptions,
    trust: &crate::fetch::signature::Trust,
) -> Result<(SignedManifest, Option<String>), ManifestTry> {
    let mut resp = http::request(Method::Get, url, &[], None, opts)
        .await
        .map_err(ManifestTry::Http)?;
    let date = resp.head.date().map(str::to_string);
    let body = resp
        .body(manifest::MAX_MANIFEST_BYTES)
        .await
        .map_err(ManifestTry::Http)?;
    let sig_url = format!("{}.sig", resp.url);
    let sig = match http::request(Method::Get, &sig_url, &[], None, opts).await {
        Ok(mut r) => Some(
            r.body(crate::fetch::signature::MAX_SIGNATURE_BYTES)
                .await
                .map_err(ManifestTry::Http)?,
        ),
        Err(e) if matches!(e.kind, http::ErrorKind::Status { code: 404, .. }) => None,
        Err(e) => return Err(ManifestTry::Http(e)),
    };
    let signed_by = trust
        .check(&resp.url, &body, sig.as_deref())
        .map_err(|e| ManifestTry::Invalid(format!("manifest {e}")))?;
    let m = manifest::parse(&body, &resp.url)
        .map_err(|e| ManifestTry::Invalid(format!("manifest {}: {e}", resp.url)))?;
    Ok(((m, signed_by), date))
}

async fn fetch_and_install(
    cfg: &FetchConfig,
    a: &Artifact,
    hubs: &mut HubSet,
    dl: &mut DownloadOptions,
    console: &Console,
) -> Result<ArtifactRecord, String> {
    let sha = download::hex(&a.sha256);
    let target = match a.kind {
        Kind::Modules => cfg.modules_root.join(&cfg.release),
        Kind::Rootfs | Kind::File => match a.dest.as_deref().unwrap_or("/") {
            "/" => cfg.next_root.clone(),
            dest => cfg.next_root.join(dest.trim_start_matches('/')),
        },
    };
    let mut record = ArtifactRecord {
        name: a.name.clone(),
        kind: a.kind.to_string(),
        size: a.size,
        sha256: sha.clone(),
        url: a.url.clone(),
        path: target.display().to_string(),
        bytes_received: 0,
        attempts: 0,
        resumed_from: None,
        ms: 0,
        address: None,
        served_by: None,
        sources: Vec::new(),
        files: 0,
        dirs: 0,
        note: None,
    };
    let stamp = cfg.cache_dir.join(format!("{}.installed", a.name));
    let stamp_text = format!("{sha} {}\n", target.display());
    if fs::read_to_string(&stamp).is_ok_and(|s| s == stamp_text) {
        console.line(format_args!(
            "{}: installed by an earlier attempt, keeping it",
            a.name
        ));
        record.note = Some("installed by an earlier attempt".into());
        return Ok(record);
    }

    let archive = cfg.cache_dir.join(&a.name);
    dl.progress = (a.size >= PROGRESS_MIN_SIZE).then(|| {
        let console = console.try_clone();
        let name = a.name.clone();
        Arc::new(move |p: &download::Progress| console.line(format_args!("fetching {name}: {p}")))
            as download::ProgressFn
    });
    let expected = Expected {
        size: a.size,
        sha256: a.sha256,
    };
    // From one mirror after the other until one serves the right file; each pass marks a hub
    // bad or ends, so this is bounded by the number of hubs.
    let (got, sources) = loop {
        let sources = hubs.mirrors(&a.url);
        if sources.is_empty() {
            return Err(format!(
                "{}: every hub that has it served a wrong file during this boot",
                a.name
            ));
        }
        let urls: Vec<String> = sources.iter().map(|s| s.url.clone()).collect();
        match download::download_from(&urls, expected, None, &archive, dl).await {
            Ok(got) => {
                for &f in &got.failed {
                    if let Some(h) = sources[f].hub {
                        hubs.failed(h);
                    }
                }
                if let Some(h) = got.source.and_then(|s| sources[s].hub) {
                    hubs.served(h);
                }
                break (got, sources);
            }
            // The last usable hub is never marked bad: the node would have nothing left to
            // try until a reboot, and the hub may be fixed while the stage waits to retry.
            Err(DownloadError::Hash { served, .. })
                if served.len() == 1
                    && sources[served[0]].hub.is_some()
                    && hubs.order().len() > 1 =>
            {
                let h = sources[served[0]].hub.unwrap_or_default();
                hubs.mark_bad(h, format!("served a wrong SHA-256 for {}", a.name));
                console.line(format_args!(
                    "hub {} served a wrong SHA-256 for {}; not using it again this boot",
                    hubs.url(h),
                    a.name
                ));
            }
            Err(e) => {
                if let DownloadError::Hash { served, .. } = &e {
                    for h in served.iter().filter_map(|&i| sources[i].hub) {
                        hubs.failed(h);
                    }
                }
                return Err(format!("{}: {e}", a.name));
            }
        }
    };
    let name_of = |i: usize| match sources[i].hub {
        Some(h) => hubs.url(h).to_string(),
        None => sources[i].url.clone(),
    };
    record.bytes_received = got.bytes;
    record.attempts = got.attempts;
    record.resumed_from = got.resumed_from;
    record.ms = got.ms;
    record.address = got.address;
    if let Some(s) = got.source {
        record.url = sources[s].url.clone();
        record.served_by = sources[s].hub.map(|h| hubs.url(h).to_string());
    }
    record.sources = got.served.iter().map(|&i| name_of(i)).collect();
    let from = match (got.source, got.address) {
        (Some(s), Some(ip)) if sources[s].hub.is_some() => format!("hub {} ({ip})", name_of(s)),
        (_, Some(ip)) => ip.to_string(),
        (_, None) => "the cache".to_string(),
    };
    console.line(format_args!(
        "fetched {} ({} bytes, sha256 verified) in {} ms from {}{}{}{}",
        a.name,
        a.size,
        got.ms,
        from,
        if record.sources.len() > 1 {
            format!(" (bytes from {})", record.sources.join(", then "))
        } else {
            String::new()
        },
        match got.attempts {
            0 | 1 => String::new(),
            n => format!(", {n} requests"),
        },
        got.resumed_from
            .map_or(String::new(), |o| format!(", resumed at byte {o}"))
    ));

    let installed = install_one(cfg, a, &archive);
    // Installed or refused, the archive has served: the cache is RAM.
    if let Err(e) = fs::remove_file(&archive) {
        log::warn!("cannot remove {}: {e}", archive.display());
    }
    let (files, dirs, notes) = installed.map_err(|e| format!("{}: not installed: {e}", a.name))?;
    record.files = files;
    record.dirs = dirs;
    if !notes.is_empty() {
        record.note = Some(notes.join("; "));
    }
    let count = |n: u64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    console.line(format_args!(
        "installed {} ({}) into {}: {}, {}",
        a.name,
        a.kind,
        target.display(),
        count(files, "file", "files"),
        count(dirs, "directory", "directories")
    ));
    for n in notes.iter().take(4) {
        console.line(format_args!("  {}: {n}", a.name));
    }
    if let Err(e) = fs::write(&stamp, stamp_text) {
        log::warn!("cannot write {}: {e}", stamp.display());
    }
    Ok(record)
}

/// Installs a verified archive or file. Returns (files, dirs, notes).
fn install_one(
    cfg: &FetchConfig,
    a: &Artifact,
    archive: &Path,
) -> Result<(u64, u64, Vec<String>), String> {
    match a.kind {
        Kind::Modules => {
            let u = install::install_modules(archive, &cfg.modules_root, &cfg.release)
                .map_err(|e| e.to_string())?;
            Ok((u.files, u.dirs, u.notes))
        }
        Kind::Rootfs => {
            fs::create_dir_all(&cfg.next_root)
                .map_err(|e| format!("cannot create {}: {e}", cfg.next_root.display()))?;
            let dir = crate::fetch::beneath::Root::open(&cfg.next_root)
                .and_then(|root| root.create_dirs(Path::new(a.dest.as_deref().unwrap_or("/"))))
                .map_err(|e| e.to_string())?;
            let policy = install::Policy::ROOTFS.within_memory(install::mem_available());
            let u = install::unpack_into(archive, &dir, &policy).map_err(|e| e.to_string())?;
            Ok((u.files, u.dirs, u.notes))
        }
        Kind::File => {
            fs::create_dir_all(&cfg.next_root)
                .map_err(|e| format!("cannot create {}: {e}", cfg.next_root.display()))?;
            let dest = a.dest.as_deref().unwrap_or("/");
            place_file(archive, &cfg.next_root, dest).map_err(|e| e.to_string())?;
            Ok((1, 0, Vec::new()))
        }
    }
}

/// Copies a verified file to `dest` beneath `root` (0644) through a temporary file (random name,
/// O_EXCL) renamed into place: the next root never sees half a file, and no symlink in the next
/// root (planted by a rootfs tarball at a directory or at the temporary name) is followed.
fn place_file(src: &Path, root: &Path, dest: &str) -> io::Result<()> {
    let root = crate::fetch::beneath::Root::open(root)?;
    let mut from = fs::File::open(src)?;
    root.write_file(Path::new(dest), &mut from, 0o644).map(drop)
}

/// Sets the clock from the best source it gets, and keeps one report for the state.
struct ClockSync<'a> {
    apply: bool,
    console: &'a Console,
    report: Option<ClockReport>,
    /// SNTP answered: the HTTP Date (second precision) is not needed.
    synced: bool,
    /// This binary's build time (ms): no source may set the clock earlier.
    floor_ms: i64,
    /// What each source said so far ([`crate::clock_trust`]: a big step needs two).
    claims: Vec<clock_trust::Claim>,
}

impl<'a> ClockSync<'a> {
    fn new(apply: bool, console: &'a Console) -> Self {
        ClockSync {
            apply,
            console,
            report: None,
            synced: false,
            floor_ms: 0,
            claims: Vec::new(),
        }
    }

    /// What a source says (`offset_ms` from the local clock): stepped to if
    /// [`clock_trust::decide`] allows it, else held with a console line. True if taken.
    fn claim(
        &mut self,
        kind: clock_trust::Kind,
        source: String,
        origin: String,
        offset_ms: i64,
    ) -> bool {
        let claim = clock_trust::Claim {
            kind,
            source: source.clone(),
            origin,
            offset_ms,
        };
        let verdict =
            clock_trust::decide(clock::now_unix_ms(), self.floor_ms, &claim, &self.claims);
        self.claims.push(claim);
        match verdict {
            clock_trust::Verdict::Step {
                offset_ms,
                confirmed_by,
            } => {
                let source = match confirmed_by {
                    Some(other) => format!("{source}, confirmed by {other}"),
                    None => source,
                };
                self.step(source, Some(offset_ms));
                // The claims were heard against the old clock.
                if let Some(r) = self.report.as_ref().filter(|r| r.applied) {
                    for c in &mut self.claims {
                        c.offset_ms = c.offset_ms.saturating_sub(r.step_ms);
                    }
                }
                true
            }
            clock_trust::Verdict::Hold { why } => {
                self.console.line(format_args!(
                    "clock: {why}; not moving the clock on its word alone"
                ));
                false
            }
        }
    }

    fn step(&mut self, source: String, step_ms: Option<i64>) {
        // Never before the build: a server (or a forged answer) saying 1999 is wrong.
        let step_ms = step_ms.map(|s| {
            let now = clock::now_unix_ms();
            if now.saturating_add(s) < self.floor_ms {
                self.console.line(format_args!(
                    "clock: {source} says {}, before this binary was built; keeping the build time",
                    clock::format_unix(now.saturating_add(s) / 1000)
                ));
                self.floor_ms - now
            } else {
                s
            }
        });
        let Some(step_ms) = step_ms.filter(|s| s.unsigned_abs() > clock::STEP_THRESHOLD_MS as u64)
        else {
            self.console.line(format_args!(
                "clock: {} (within 1 s of {source})",
                clock::format_unix(clock::now_unix_ms() / 1000)
            ));
            self.report = Some(ClockReport {
                source,
                step_ms: 0,
                applied: false,
            });
            return;
        };
        let target = clock::now_unix_ms() + step_ms;
        let applied = if self.apply {
            match clock::set_realtime(target) {
                Ok(()) => true,
                Err(e) => {
                    self.console
                        .line(format_args!("clock: cannot set the clock: {e}"));
                    false
                }
            }
        } else {
            false
        };
        self.console.line(format_args!(
            "clock: {source} says {}: {} by {:.1} s{}",
            clock::format_unix(target / 1000),
            if step_ms > 0 { "ahead" } else { "back" },
            step_ms.unsigned_abs() as f64 / 1000.0,
            if applied {
                ", clock stepped"
            } else {
                " (not PID 1: the clock is left alone)"
            }
        ));
        self.report = Some(ClockReport {
            source,
            step_ms,
            applied,
        });
    }

    fn floor(&mut self, build_unix: u64) {
        let now = clock::now_unix_ms();
        self.floor_ms = i64::try_from(build_unix)
            .unwrap_or(i64::MAX)
            .saturating_mul(1000);
        if let Some(floor) = clock::floor(build_unix, u64::try_from(now / 1000).unwrap_or(0)) {
            let target = i64::try_from(floor)
                .unwrap_or(i64::MAX)
                .saturating_mul(1000);
            self.step("build-floor".into(), Some(target - now));
        }
    }

    async fn sntp(&mut self, servers: &[IpAddr]) {
        if servers.is_empty() {
            self.console
                .line("clock: no NTP server (DHCP option 42 or zos.ntp=); the hub's Date will do");
            return;
        }
        match clock::best(servers, NTP_TIMEOUT).await {
            Ok((ip, sample)) => {
                self.synced = self.claim(
                    clock_trust::Kind::Sntp,
                    format!("sntp {ip}"),
                    ip.to_string(),
                    sample.offset_ms,
                );
            }
            Err(e) => self
                .console
                .line(format_args!("clock: {e}; the hub's Date will do")),
        }
    }

    fn http_date(&mut self, url: &str, date: &str) {
        let Some(secs) = clock::parse_http_date(date) else {
            log::info!("clock: cannot read the hub's Date {date:?}");
            return;
        };
        // The Date is truncated to the second: the middle of that second is the best guess.
        let target = i64::try_from(secs).unwrap_or(i64::MAX).saturating_mul(1000) + 500;
        let now = clock::now_unix_ms();
        let host = url.split("://").nth(1).unwrap_or(url);
        let host = host.split('/').next().unwrap_or(host).to_string();
        self.claim(
            clock_trust::Kind::HttpDate,
            format!("http-date {url}"),
            host,
            target - now,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "zos-provision-{name}-{}-{}",
            std::process::id(),
            fastrand::u32(..)
        ));
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn no_clock_source_may_go_before_the_build() {
        let console = Console::new(std::time::Instant::now());
        let mut c = ClockSync::new(false, &console);
        // A build an hour ahead of this clock; a server says a day behind it.
        let now = clock::now_unix_ms();
        c.floor_ms = now + 3_600_000;
        c.step("sntp 192.0.2.1".into(), Some(-86_400_000));
        let r = c.report.clone().unwrap();
        assert!(
            (3_590_000..=3_600_000).contains(&r.step_ms),
            "clamped to the build time: {r:?}"
        );
        assert!(!r.applied, "not PID 1");
        // Within a second of now: no step at all.
        c.floor_ms = 0;
        c.step("sntp 192.0.2.1".into(), Some(400));
        assert_eq!(c.report.clone().unwrap().step_ms, 0);
    }

    /// Issue 17 point 2: a rogue SNTP server saying 2200 does not move the clock alone, nor
    /// does the hub's Date agreeing with nobody; two origins agreeing do.
    #[test]
    fn a_far_step_from_one_source_is_held_until_another_agrees() {
        use clock_trust::Kind;
        const YEAR: i64 = 365 * 86_400_000;
        let console = Console::new(std::time::Instant::now());
        let mut c = ClockSync::new(false, &console);
        c.floor_ms = clock::now_unix_ms() - 5 * YEAR; // an image built 5 years ago
        let rogue = 174 * YEAR;
        assert!(!c.claim(
            Kind::Sntp,
            "sntp 10.1.0.66".into(),
            "10.1.0.66".into(),
            rogue
        ));
        assert!(c.report.is_none(), "nothing stepped: {:?}", c.report);
        c.http_date(
            "https://hub.test/zos/manifest.json",
            "Sat, 01 Jan 2300 00:00:00 GMT",
        );
        assert!(c.report.is_none(), "held: {:?}", c.report);
        // The local clock a year behind (dead RTC): NTP alone is held, the Date agreeing is not.
        let mut c = ClockSync::new(false, &console);
        c.floor_ms = clock::now_unix_ms() - 5 * YEAR;
        assert!(!c.claim(Kind::Sntp, "sntp 10.1.0.1".into(), "10.1.0.1".into(), YEAR));
        assert!(c.claim(
            Kind::HttpDate,
            "http-date hub".into(),
            "hub".into(),
            YEAR + 10_000
        ));
        let r = c.report.clone().unwrap();
        assert!(r.source.contains("confirmed by sntp 10.1.0.1"), "{r:?}");
        assert_eq!(r.step_ms, YEAR + 10_000);
    }

    #[test]
    fn place_file_replaces_atomically_with_0644() {
        let root = scratch("place");
        let src = root.join("src");
        fs::write(&src, "new").unwrap();
        let dest = root.join("motd");
        fs::write(&dest, "old").unwrap();
        place_file(&src, &root, "/motd").unwrap();
        assert_eq!(fs::read_to_string(&dest).unwrap(), "new");
        assert_eq!(
            fs::metadata(&dest).unwrap().permissions().mode() & 0o777,
            0o644
        );
        let left: Vec<_> = fs::read_dir(&root).unwrap().flatten().collect();
        assert_eq!(left.len(), 2, "no temporary file left: {left:?}");
        fs::remove_dir_all(&root).unwrap();
    }

    /// Issue 17 point 3: an earlier rootfs tarball planted a symlink at the temporary name the
    /// file artifact used (`<dest>.zos-tmp-<pid>`, `.zos-tmp-1` as PID 1) and at a directory:
    /// nothing outside the next root may be written, and the file still lands.
    #[test]
    fn place_file_follows_no_symlink_planted_in_the_next_root() {
        let base = scratch("planted");
        let root = base.join("root");
        let outside = base.join("outside");
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::create_dir_all(&outside).unwrap();
        let victim = outside.join("shadow");
        fs::write(&victim, "precious").unwrap();
        let src = base.join("src");
        fs::write(&src, "motd\n").unwrap();
        for pid in [1, std::process::id()] {
            std::os::unix::fs::symlink(&victim, root.join(format!("etc/motd.zos-tmp-{pid}")))
                .unwrap();
        }
        place_file(&src, &root, "/etc/motd").unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
        assert_eq!(fs::read_to_string(root.join("etc/motd")).unwrap(), "motd\n");
        // The chain `a -> .`, `b -> a/../..`, and a plain link to outside: refused.
        std::os::unix::fs::symlink(".", root.join("a")).unwrap();
        std::os::unix::fs::symlink("a/../..", root.join("b")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("var")).unwrap();
        for dest in ["/b/outside/x", "/a/b/outside/x", "/var/x"] {
            let e = place_file(&src, &root, dest).unwrap_err();
            assert!(e.to_string().contains("symlink"), "{dest}: {e}");
        }
        let outside_now: Vec<_> = fs::read_dir(&outside).unwrap().flatten().collect();
        assert_eq!(outside_now.len(), 1, "only the victim: {outside_now:?}");
        fs::remove_dir_all(&base).unwrap();
    }

    fn artifact(name: &str, kind: Kind, kernel: Option<&str>) -> Artifact {
        Artifact {
            name: name.into(),
            url: format!("http://hub.test/{name}"),
            size: 1,
            sha256: [0; 32],
            kind,
            dest: match kind {
                Kind::Modules => None,
                Kind::Rootfs => Some("/".into()),
                Kind::File => Some("/etc/motd".into()),
            },
            kernel: kernel.map(str::to_string),
        }
    }

    fn config(manifest: Option<&str>) -> FetchConfig {
        FetchConfig {
            manifest_url: manifest.map(str::to_string),
            runmode: "test".into(),
            version: None,
            ca_files: vec![],
            ntp: vec![],
            cache_dir: PathBuf::new(),
            next_root: PathBuf::new(),
            modules_root: PathBuf::new(),
            release: String::new(),
            set_clock: false,
            build_unix: 0,
            flist: None,
            stores: vec![],
            trust: Default::default(),
        }
    }

    #[test]
    fn the_manifest_is_asked_of_each_usable_hub_or_only_where_zos_manifest_says() {
        let mut hubs = HubSet::new(&["https://a.test".into(), "http://b.test/m/".into()]);
        assert_eq!(
            manifest_candidates(&config(None), &hubs),
            vec![
                (
                    Some(0),
                    "https://a.test/zos/test/v3/manifest.json".to_string()
                ),
                (
                    Some(1),
                    "http://b.test/m/zos/test/v3/manifest.json".to_string()
                ),
            ]
        );
        hubs.mark_bad(0, "wrong SHA-256".into());
        assert_eq!(
            first_manifest_url(&config(None), &hubs),
            "http://b.test/m/zos/test/v3/manifest.json",
            "a bad hub is not asked for the manifest either"
        );
        let explicit = config(Some("https://a.test/other/manifest.json"));
        assert_eq!(
            manifest_candidates(&explicit, &hubs),
            vec![(Some(0), "https://a.test/other/manifest.json".to_string())]
        );
        assert_eq!(
            manifest_candidates(&config(Some("https://cdn.test/m.json")), &hubs),
            vec![(None, "https://cdn.test/m.json".to_string())]
        );
    }

    #[test]
    fn plan_puts_this_kernels_modules_first_and_files_last() {
        let m = Manifest {
            version: 1,
            artifacts: vec![
                artifact("motd", Kind::File, None),
                artifact("root", Kind::Rootfs, None),
                artifact("mods-old", Kind::Modules, Some("5.10.0")),
                artifact("mods", Kind::Modules, Some("6.1.0")),
            ],
        };
        let console = Console::new(std::time::Instant::now());
        let names: Vec<&str> = plan(&m, "6.1.0", &console)
            .iter()
            .map(|a| a.name.as_str())
            .collect();
        assert_eq!(names, vec!["mods", "root", "motd"]);
        let names: Vec<&str> = plan(&m, "6.12.0", &console)
            .iter()
            .map(|a| a.name.as_str())
            .collect();
        assert_eq!(names, vec!["root", "motd"], "no modules for another kernel");
    }
}
