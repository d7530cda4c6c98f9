//! The boot's [`Installer`]: a verified `.flist` read by the flist core and materialised into
//! the next root, its blocks from (in this order) the `zos.store=` stores, the stores the
//! flist names (v2 `route`, v1 `backend`), and the hub's own 0-db on TCP 9900 (where the real
//! hub keeps the blocks of the flists it serves).
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::chain::{InstallError, Installer};
use super::materialise::{materialise, Limits, Progress};
use super::store::{Cache, Stores};
use crate::console::Console;
use crate::fetch::http::HttpOptions;

/// The hub's 0-db port.
pub const HUB_ZDB_PORT: u16 = 9900;
/// Progress lines at most this often.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// Memory left to the system when bounding a flist by MemAvailable.
const MEMORY_RESERVE: u64 = 64 << 20;
/// Verified blocks kept in RAM across the flists of one stage run: flists of one release share
/// blocks (the same service file in two flists). Small: it is most of the stage's RSS
/// (docs/flist-bench.md: 64 MiB cost 80 MiB peak RSS), and an installed flist is not fetched
/// again on a retry anyway (its stamp).
const CACHE_BYTES: usize = 16 << 20;

pub struct BootInstaller {
    pub root: PathBuf,
    /// `zos.store=` URLs.
    pub stores: Vec<String>,
    pub http: HttpOptions,
    pub cache: Cache,
    pub console: Console,
}

impl BootInstaller {
    pub fn new(root: PathBuf, stores: Vec<String>, http: HttpOptions, console: Console) -> Self {
        BootInstaller {
            root,
            stores,
            http,
            cache: Cache::new(CACHE_BYTES),
            console,
        }
    }
}

/// `zdb://<hub host>:9900` for a hub base URL.
pub fn hub_store(hub: &str) -> Option<String> {
    let t = crate::net::probe::parse_url(hub).ok()?;
    let host = if t.host.contains(':') {
        format!("[{}]", t.host)
    } else {
        t.host
    };
    Some(format!("zdb://{host}:{HUB_ZDB_PORT}"))
}

/// MemAvailable (bytes) less a reserve; None when /proc/meminfo cannot be read.
fn memory_for_files() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some((kib * 1024).saturating_sub(MEMORY_RESERVE))
}

impl Installer for BootInstaller {
    fn install(
        &mut self,
        name: &str,
        file: &std::path::Path,
        hub: Option<&str>,
    ) -> Result<String, InstallError> {
        let flist = super::read_file(file).map_err(|e| InstallError::BadFlist(e.to_string()))?;
        // A route the flist names that is no store (unknown scheme, start after end) is the
        // flist's fault too: another hub may serve it intact.
        let mut routes = Stores::new(Vec::new());
        for r in &flist.routes {
            routes
                .add(&r.url, r.start, r.end)
                .map_err(|e| InstallError::BadFlist(format!("its route table: {e}")))?;
        }
        self.install_flist(name, &flist, hub)
            .map_err(InstallError::Failed)
    }
}

impl BootInstaller {
    /// Materialises a parsed flist (see [`Installer::install`]).
    fn install_flist(
        &mut self,
        name: &str,
        flist: &super::Flist,
        hub: Option<&str>,
    ) -> Result<String, String> {
        // zos.store= first (every block), then the flist's routes (each for its range of the
        // block id's first byte), then the hub's own 0-db (every block).
        let mut stores = Stores::parse_all(&self.stores).map_err(|e| e.to_string())?;
        for r in &flist.routes {
            stores
                .add(&r.url, r.start, r.end)
                .map_err(|e| e.to_string())?;
        }
        if let Some(h) = hub.and_then(hub_store) {
            stores.add(&h, 0, 255).map_err(|e| e.to_string())?;
        }
        if stores.list.is_empty() && flist.file_bytes() > 0 {
            return Err("the flist names no block store and none was given (zos.store=)".into());
        }
        stores.http = Some(self.http.clone());
        std::fs::create_dir_all(&self.root)
            .map_err(|e| format!("cannot create {}: {e}", self.root.display()))?;
        let names: Vec<String> = stores.list.iter().map(|s| s.name()).collect();
        self.console.line(format_args!(
            "flist {name}: {} entries, {} bytes of files; blocks from {}",
            flist.entries.len(),
            flist.file_bytes(),
            if names.is_empty() {
                "nowhere (no files)".to_string()
            } else {
                names.join(", then ")
            }
        ));
        let limits = Limits {
            max_bytes: memory_for_files().unwrap_or(u64::MAX),
        };
        let last = Mutex::new(Instant::now());
        let console = &self.console;
        let progress = |p: &Progress| match p {
            Progress::Warn(w) => console.line(format_args!("flist {name}: {w}")),
            Progress::Bytes {
                done,
                total,
                files,
                files_total,
            } => {
                let Ok(mut last) = last.lock() else { return };
                if last.elapsed() >= PROGRESS_EVERY {
                    *last = Instant::now();
                    console.line(format_args!(
                        "flist {name}: {} of {} MiB, {files} of {files_total} files",
                        done >> 20,
                        total >> 20
                    ));
                }
            }
        };
        let s = materialise(&self.root, flist, &stores, &self.cache, &limits, &progress)
            .map_err(|e| e.to_string())?;
        Ok(format!(
            "{} files ({} bytes), {} directories, {} links, {} special into {}; {} blocks \
             fetched, {} from the cache",
            s.files,
            s.bytes,
            s.dirs,
            s.links,
            s.specials,
            self.root.display(),
            s.blocks_fetched,
            s.blocks_cached
        ))
    }
}

/// The fetch stage in the flist mode (the hook in the fetch stage: after the clock, instead
/// of the manifest): the chain or `zos.flist=`, each flist installed into the next root.
pub async fn stage(
    cfg: &crate::fetch::stage::FetchConfig,
    fl: &super::chain::FlistFetch,
    state: &crate::net::state::NetState,
    console: &Console,
    record: &mut crate::fetch::stage::FetchRecord,
) -> Result<(), String> {
    let mut urls = fl.flists.clone();
    urls.extend(fl.config_url.clone());
    if urls.iter().any(|u| u.starts_with("https:")) && cfg.ca_files.is_empty() {
        return Err(format!(
            "no CA certificates to check the hub with: the image has no {} and no zos.ca= was \
             given",
            crate::fetch::tls::DEFAULT_CA_BUNDLE
        ));
    }
    let opts = crate::fetch::stage::http_options(state, &cfg.ca_files)?;
    let mut installer = BootInstaller::new(
        cfg.next_root.clone(),
        cfg.stores.clone(),
        opts.clone(),
        console.try_clone(),
    );
    let mut rec = super::chain::FlistRecord::default();
    let result =
        super::chain::run(fl, &opts, &cfg.cache_dir, console, &mut installer, &mut rec).await;
    record.manifest = match rec.mode.as_str() {
        "explicit" => fl.flists.join(" "),
        _ => format!(
            "{}/{}",
            rec.hub.as_deref().unwrap_or("(no hub)"),
            super::hub::taglink_name(fl.runmode, fl.version.as_deref())
        ),
    };
    record.manifest_hub = rec.hub.clone();
    record.flist = Some(rec);
    result
}
