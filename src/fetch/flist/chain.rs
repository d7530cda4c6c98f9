//! The flist fetch mode: the hub's boot chain (or `zos.flist=` URLs), each `.flist` fetched and
//! checked against the hub's MD5, then installed into the next root by an [`Installer`] (the
//! flist core's materialise). The resolution itself is [`super::hub::Chain`] (sans-IO); this is
//! its thin driver over `fetch::http`.
//!
//! - Hubs: `zos.config=URL` (a zos-config file, `hub_urls`), else ZOS's own zos-config file
//!   for the run mode; when that cannot be had or is not one, the `zos.hub=` list (or the run
//!   mode's built-in hub), as ZOS falls back to `https://hub.grid.tf`.
//! - `zos.flist=URL` (repeatable) skips the chain: those flists, in that order, each checked
//!   against `URL.md5` when the server has one.
//! - A flist whose MD5 is not the hub's (both sums named) or that is not a flist is deleted and
//!   that hub left: the chain starts over on the next hub; from the last hub (or a `zos.flist=`
//!   URL) the stage fails. An installed flist leaves a stamp (name + MD5) in the cache
//!   directory, so a retry of the stage, or the next hub, does not install it again.
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use md5::{Digest, Md5};
use serde::Serialize;

use super::hub::{self, Chain, Failure, FlistRef, Want};
use crate::cmdline::RunMode;
use crate::console::Console;
use crate::fetch::download::hex;
use crate::fetch::http::{self, HttpOptions, Method};

/// A `.flist` is metadata (ZOS's biggest is a few MiB); more is not a flist.
pub const MAX_FLIST_BYTES: u64 = 256 << 20;

/// What the flist mode needs from the command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlistFetch {
    /// `zos.config=URL`; None: ZOS's zos-config file for the run mode.
    pub config_url: Option<String>,
    /// `zos.flist=URL`s: these instead of the chain.
    pub flists: Vec<String>,
    /// The hubs to use when no zos-config file can be had (`zos.hub=` or the built-in one).
    pub fallback_hubs: Vec<String>,
    pub runmode: RunMode,
    pub version: Option<String>,
    /// Stage 1 (`tf-autobuilder/bootstrap:latest.flist`) before the taglink's flists, as ZOS.
    pub bootstrap: bool,
}

/// What the mode did, for the state JSON (`fetch.flist`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct FlistRecord {
    /// `chain` (taglink → tag → flists) or `explicit` (`zos.flist=`).
    pub mode: String,
    /// The zos-config file the hubs came from (None: the fallback list).
    pub config: Option<String>,
    pub hubs: Vec<String>,
    /// The hub the chain went through.
    pub hub: Option<String>,
    pub flists: Vec<FlistInstalled>,
    /// Hubs left during the resolution, and why.
    pub hub_errors: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct FlistInstalled {
    pub name: String,
    pub url: String,
    /// Hex; None when the server had no `.md5` for a `zos.flist=` URL.
    pub md5: Option<String>,
    pub bytes: u64,
    pub ms: u64,
    /// What the installer said (files, directories, blocks …), or "installed by an earlier
    /// attempt".
    pub installed: String,
}

/// Installs one verified `.flist` file into the next root: all or nothing. Returns a summary
/// in words for the console.
pub trait Installer {
    fn install(
        &mut self,
        name: &str,
        file: &Path,
        hub: Option<&str>,
    ) -> Result<String, InstallError>;
}

/// Why a flist was not installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstallError {
    /// The file is not a flist one can install (truncated, corrupt, hostile names): the hub
    /// that served it is at fault, another hub may serve it intact.
    BadFlist(String),
    /// Anything else (a block no store has, the next root's disk): another hub is no help.
    Failed(String),
}

impl std::fmt::Display for InstallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InstallError::BadFlist(e) | InstallError::Failed(e) => f.write_str(e),
        }
    }
}

/// Why installing a hub's flists stopped.
enum Stop {
    /// The hub served a flist that is not its MD5 or not a flist: the next hub may do better.
    Hub(String),
    /// Anything else: the stage fails.
    Fatal(String),
}

/// The hubs after `hub` in `hubs` (compared without a trailing `/`): where the chain goes on
/// when `hub` served a bad flist.
pub fn hubs_after(hubs: &[String], hub: &str) -> Vec<String> {
    let same = |h: &String| h.trim_end_matches('/') == hub.trim_end_matches('/');
    match hubs.iter().position(same) {
        Some(i) => hubs[i + 1..].to_vec(),
        None => Vec::new(),
    }
}

/// One GET of an API answer (small): the body of a 2xx, or why not.
async fn get(url: &str, opts: &HttpOptions) -> Result<Vec<u8>, Failure> {
    let fail = |e: http::HttpError| Failure {
        status: e.status(),
        message: e.to_string(),
    };
    let mut resp = http::request(Method::Get, url, &[], None, opts)
        .await
        .map_err(fail)?;
    resp.body(hub::MAX_API_BYTES).await.map_err(fail)
}

/// The hubs to ask, and the zos-config file they came from.
async fn hub_list(
    cfg: &FlistFetch,
    opts: &HttpOptions,
    console: &Console,
) -> (Vec<String>, Option<String>) {
    let url = cfg
        .config_url
        .clone()
        .unwrap_or_else(|| hub::default_config_url(cfg.runmode));
    let fallback = || {
        if cfg.fallback_hubs.is_empty() {
            vec![hub::FALLBACK_HUB.to_string()]
        } else {
            cfg.fallback_hubs.clone()
        }
    };
    match get(&url, opts).await {
        Ok(body) => match hub::parse_config(&body) {
            Ok(hubs) => {
                console.line(format_args!("flist: hubs {} (from {url})", hubs.join(", ")));
                (hubs, Some(url))
            }
            Err(e) => {
                let hubs = fallback();
                console.line(format_args!("flist: {url}: {e}; using {}", hubs.join(", ")));
                (hubs, None)
            }
        },
        Err(e) => {
            let hubs = fallback();
            console.line(format_args!("flist: {url}: {e}; using {}", hubs.join(", ")));
            (hubs, None)
        }
    }
}

/// Resolves the chain over the hubs: (the hub used, the flists in order).
pub async fn resolve(
    hubs: Vec<String>,
    taglink: String,
    bootstrap: bool,
    opts: &HttpOptions,
    console: &Console,
) -> Result<(String, Vec<FlistRef>, Vec<String>), String> {
    let mut chain = Chain::new(hubs, taglink, bootstrap);
    let mut left = 0;
    loop {
        match chain.want() {
            Want::Get(url) => {
                log::debug!("flist: {}: GET {url}", chain.doing());
                let got = get(&url, opts).await;
                chain.answer(got.as_deref().map_err(Clone::clone));
                for e in &chain.errors()[left..] {
                    console.line(format_args!("flist: {e}; trying the next hub"));
                }
                left = chain.errors().len();
            }
            Want::Done { hub, flists } => return Ok((hub, flists, chain.errors().to_vec())),
            Want::Failed(why) => return Err(format!("no hub got through the boot chain: {why}")),
        }
    }
}

/// `zos.flist=` URLs, each with the MD5 of `URL.md5` when the server has one.
async fn explicit(
    urls: &[String],
    opts: &HttpOptions,
    console: &Console,
) -> Result<Vec<FlistRef>, String> {
    let mut out = Vec::new();
    for url in urls {
        let md5 = match get(&format!("{url}.md5"), opts).await {
            Ok(body) => Some(hub::parse_md5(&body).map_err(|e| format!("{url}.md5: {e}"))?),
            Err(Failure {
                status: Some(404), ..
            }) => {
                console.line(format_args!(
                    "flist: {url}: no .md5 next to it; not checked"
                ));
                None
            }
            Err(e) => return Err(format!("{url}.md5: {e}")),
        };
        let name = match url.rsplit('/').next() {
            Some(n) if !n.is_empty() => n.to_string(),
            _ => "flist".to_string(),
        };
        out.push(FlistRef {
            name,
            url: url.clone(),
            md5,
        });
    }
    Ok(out)
}

/// A file name for a flist in the cache directory.
fn cache_name(name: &str) -> String {
    if name.is_empty() || name.chars().all(|c| c == '.') {
        return "flist".into();
    }
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || ".-_:".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// GETs one flist into `dir`, checking its MD5 while it streams. Returns (path, bytes, ms).
/// The error says whether the MD5 was wrong (true) or the download failed (false).
pub async fn download(
    f: &FlistRef,
    dir: &Path,
    opts: &HttpOptions,
) -> Result<(PathBuf, u64, u64), (String, bool)> {
    let start = Instant::now();
    let path = dir.join(cache_name(&f.name));
    let part = dir.join(format!("{}.part", cache_name(&f.name)));
    let result = async {
        let mut resp = http::request(Method::Get, &f.url, &[], None, opts)
            .await
            .map_err(|e| (e.to_string(), false))?;
        let mut out = fs::File::create(&part)
            .map_err(|e| (format!("cannot create {}: {e}", part.display()), false))?;
        let mut md5 = Md5::new();
        let mut bytes = 0u64;
        while let Some(piece) = resp.chunk().await.map_err(|e| (e.to_string(), false))? {
            bytes += piece.len() as u64;
            if bytes > MAX_FLIST_BYTES {
                return Err((
                    format!("longer than {} MiB: not a flist", MAX_FLIST_BYTES >> 20),
                    true,
                ));
            }
            md5.update(piece);
            out.write_all(piece)
                .map_err(|e| (format!("cannot write {}: {e}", part.display()), false))?;
        }
        let got: [u8; 16] = md5.finalize().into();
        if let Some(want) = f.md5 {
            if got != want {
                return Err((
                    format!(
                        "MD5 {} but the hub says {} ({bytes} bytes received): not using it",
                        hex(&got),
                        hex(&want)
                    ),
                    true,
                ));
            }
        }
        fs::rename(&part, &path)
            .map_err(|e| (format!("cannot rename {}: {e}", part.display()), false))?;
        Ok(bytes)
    }
    .await;
    match result {
        Ok(bytes) => Ok((
            path,
            bytes,
            u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
        )),
        Err((e, bad)) => {
            let _ = fs::remove_file(&part);
            Err((format!("{}: {e}", f.url), bad))
        }
    }
}

/// Runs the mode once: hubs → chain (or `zos.flist=`) → each flist fetched, checked, installed.
/// In the chain, a hub that serves a flist whose MD5 is not its own or that is not a flist
/// (truncated, corrupt) is named on the console and the chain starts over on the next hub
/// (flists installed already are kept: their stamps).
pub async fn run(
    cfg: &FlistFetch,
    opts: &HttpOptions,
    cache_dir: &Path,
    console: &Console,
    installer: &mut dyn Installer,
    record: &mut FlistRecord,
) -> Result<(), String> {
    fs::create_dir_all(cache_dir)
        .map_err(|e| format!("cannot create {}: {e}", cache_dir.display()))?;
    if !cfg.flists.is_empty() {
        record.mode = "explicit".into();
        let flists = explicit(&cfg.flists, opts, console).await?;
        return match install_all(&flists, None, opts, cache_dir, console, installer, record).await {
            Ok(()) => Ok(()),
            Err(Stop::Hub(e) | Stop::Fatal(e)) => Err(e),
        };
    }
    record.mode = "chain".into();
    let (hubs, config) = hub_list(cfg, opts, console).await;
    record.hubs = hubs.clone();
    record.config = config;
    let taglink = hub::taglink_name(cfg.runmode, cfg.version.as_deref());
    let mut left = hubs;
    loop {
        let (hub, flists, errors) =
            resolve(left.clone(), taglink.clone(), cfg.bootstrap, opts, console).await?;
        record.hub_errors.extend(errors);
        console.line(format_args!(
            "flist: hub {hub}: {} → {}",
            format_args!("{}/{taglink}", hub::ZOS_REPO),
            flists
                .iter()
                .map(|f| f.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
        record.hub = Some(hub.clone());
        match install_all(
            &flists,
            Some(&hub),
            opts,
            cache_dir,
            console,
            installer,
            record,
        )
        .await
        {
            Ok(()) => return Ok(()),
            Err(Stop::Fatal(e)) => return Err(e),
            Err(Stop::Hub(e)) => {
                left = hubs_after(&left, &hub);
                record.hub_errors.push(format!("hub {hub}: {e}"));
                if left.is_empty() {
                    return Err(format!("{e} (from hub {hub}, the last hub)"));
                }
                console.line(format_args!(
                    "flist: hub {hub} served a bad flist: {e}; trying the next hub"
                ));
            }
        }
    }
}

/// Fetches, checks and installs `flists` (from `hub`, None for `zos.flist=` URLs) in order.
async fn install_all(
    flists: &[FlistRef],
    hub: Option<&str>,
    opts: &HttpOptions,
    cache_dir: &Path,
    console: &Console,
    installer: &mut dyn Installer,
    record: &mut FlistRecord,
) -> Result<(), Stop> {
    for f in flists {
        let md5 = f.md5.map(|m| hex(&m));
        let stamp = cache_dir.join(format!("{}.installed", cache_name(&f.name)));
        let stamp_text = format!("{} {}\n", md5.as_deref().unwrap_or("-"), f.url);
        // The same name with the same MD5 (from this hub or one left since) is the same flist.
        let stamped = |s: String| md5.as_deref() == s.split(' ').next();
        if f.md5.is_some() && fs::read_to_string(&stamp).is_ok_and(stamped) {
            console.line(format_args!(
                "flist {}: installed by an earlier attempt, keeping it",
                f.name
            ));
            record.flists.push(FlistInstalled {
                name: f.name.clone(),
                url: f.url.clone(),
                md5,
                bytes: 0,
                ms: 0,
                installed: "installed by an earlier attempt".into(),
            });
            continue;
        }
        let (path, bytes, ms) = match download(f, cache_dir, opts).await {
            Ok(got) => got,
            Err((e, true)) if hub.is_some() => return Err(Stop::Hub(e)),
            Err((e, _)) => return Err(Stop::Fatal(e)),
        };
        console.line(format_args!(
            "flist {}: {bytes} bytes in {ms} ms{}",
            f.name,
            if f.md5.is_some() {
                ", MD5 matches the hub's"
            } else {
                ""
            }
        ));
        let installed = installer.install(&f.name, &path, hub);
        // Installed or refused, the file has served: the cache is RAM.
        let _ = fs::remove_file(&path);
        let installed = match installed {
            Ok(s) => s,
            Err(e) => {
                let hubs_fault = matches!(e, InstallError::BadFlist(_)) && hub.is_some();
                let e = format!("flist {}: not installed: {e}", f.name);
                return Err(if hubs_fault {
                    Stop::Hub(e)
                } else {
                    Stop::Fatal(e)
                });
            }
        };
        console.line(format_args!("flist {}: installed: {installed}", f.name));
        if let Err(e) = fs::write(&stamp, &stamp_text) {
            log::warn!("cannot write {}: {e}", stamp.display());
        }
        record.flists.push(FlistInstalled {
            name: f.name.clone(),
            url: f.url.clone(),
            md5,
            bytes,
            ms,
            installed,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_names_stay_in_the_cache_directory() {
        assert_eq!(
            cache_name("tf-autobuilder/bootstrap:latest.flist"),
            "tf-autobuilder_bootstrap:latest.flist"
        );
        assert_eq!(cache_name("../../etc/passwd"), ".._.._etc_passwd");
        assert!(!cache_name("a/b\0c").contains('/'));
        assert_eq!(cache_name(""), "flist");
        assert_eq!(cache_name(".."), "flist");
    }

    #[test]
    fn a_bad_hub_leaves_the_hubs_after_it() {
        let hubs: Vec<String> = ["http://a/", "http://b", "http://c"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(hubs_after(&hubs, "http://a"), ["http://b", "http://c"]);
        assert_eq!(hubs_after(&hubs, "http://b/"), ["http://c"]);
        assert!(hubs_after(&hubs, "http://c").is_empty());
        assert!(hubs_after(&hubs, "http://elsewhere").is_empty());
    }
}
