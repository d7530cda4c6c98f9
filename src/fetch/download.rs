//! Fetches a boot artifact whose size and SHA-256 are known beforehand, and installs it only
//! once both check out.
//!
//! The bytes go to `<final>.part` next to the final path, hashed as they arrive (a fixed buffer:
//! memory does not grow with the file). A connection that drops is resumed with
//! `Range: bytes=N-` (RFC 9110 §14.2); a part left from an earlier run is re-hashed first so the
//! digest still covers the whole file. Timeouts, resets and 5xx/408/429 are retried with
//! `Backoff::DOWNLOAD`; any other 4xx stops at once with the server's message. A body that
//! passes the expected size is refused as soon as it does. Only a verified file is renamed into
//! place (atomically, in the same directory), so `final_path` never holds a partial or corrupt
//! file; a part that fails its hash is deleted.
//!
//! [`download_from`] takes several URLs for the same file (hub mirrors): a try that fails moves
//! on to the next URL, resuming with `Range` from the bytes already in the part (the SHA-256
//! covers the whole file, whoever served which bytes). A URL that gives a final answer (4xx,
//! TLS, wrong size) is dropped for this download. Which URLs served bytes is reported, so a
//! caller can tell which mirror served a file that failed its hash.
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ring::digest::{Context, SHA256};
use smol::Timer;

use super::http::{self, ErrorKind, Framing, HttpError, HttpOptions, Method};
use crate::retry::Backoff;

/// Progress is reported at most this often, besides each 10 % step.
pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(2);
/// The longest Retry-After we honour; a booting node does not wait for minutes.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);
/// Reading an existing part or cache file back for its hash.
const HASH_BUF: usize = 64 * 1024;

/// What the file must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected {
    pub size: u64,
    pub sha256: [u8; 32],
}

/// How far a download is; handed to [`DownloadOptions::progress`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    pub bytes: u64,
    pub total: u64,
    /// Bytes per second received by this download so far.
    pub rate: u64,
    /// At the current rate; None before anything arrived.
    pub eta: Option<Duration>,
}

impl fmt::Display for Progress {
    /// `12.3 of 40.0 MiB (30 %), 2.1 MiB/s, 13 s left`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mib = |b: u64| b as f64 / 1_048_576.0;
        let pct = (u128::from(self.bytes) * 100)
            .checked_div(u128::from(self.total))
            .unwrap_or(100);
        write!(
            f,
            "{:.1} of {:.1} MiB ({pct} %), {:.1} MiB/s",
            mib(self.bytes),
            mib(self.total),
            mib(self.rate)
        )?;
        match self.eta {
            Some(eta) if self.bytes < self.total => write!(f, ", {} s left", eta.as_secs()),
            _ => Ok(()),
        }
    }
}

/// Decides when a progress line is due: the first time, then after [`PROGRESS_INTERVAL`] or
/// when a new 10 % step is reached, whichever comes first. Pure: the caller passes the time.
#[derive(Debug, Clone, Default)]
pub struct ProgressThrottle {
    last: Option<(Duration, u64)>,
}

impl ProgressThrottle {
    pub fn due(&mut self, elapsed: Duration, bytes: u64, total: u64) -> bool {
        let tenth = (u128::from(bytes) * 10)
            .checked_div(u128::from(total))
            .map_or(10, |t| t.min(10) as u64);
        let due = match self.last {
            None => true,
            Some((at, last_tenth)) => tenth > last_tenth || elapsed >= at + PROGRESS_INTERVAL,
        };
        if due {
            self.last = Some((elapsed, tenth));
        }
        due
    }
}

/// Receives progress reports.
pub type ProgressFn = Arc<dyn Fn(&Progress) + Send + Sync>;

/// How [`download`] behaves.
#[derive(Clone)]
pub struct DownloadOptions {
    pub http: HttpOptions,
    /// Tries in a row that bring no new byte before giving up (the first one included). A try
    /// that made progress resets the count, so a long download over a link that drops now and
    /// then still finishes.
    pub attempts: u32,
    pub backoff: Backoff,
    /// Called at most every [`PROGRESS_INTERVAL`] or 10 % (see [`ProgressThrottle`]).
    pub progress: Option<ProgressFn>,
    /// With more than one URL: a try whose body arrives slower than this (bytes per second,
    /// measured over the try once it is [`SLOW_WINDOW`] old) is left for the next URL, resuming
    /// there. Once per other URL and download, so a link that is slow to every mirror does not
    /// hop for ever. None: never.
    pub min_rate: Option<u64>,
    /// With one URL (or none left to hop to): a try whose body arrives slower than this many
    /// bytes per second, measured once it is the given age, ends the download with a final
    /// error instead of trickling on for ever (issue 17, point 7: a server sending a byte every
    /// few seconds never trips the idle timeout). Far below any link a node can boot over.
    pub min_rate_alone: Option<(u64, Duration)>,
}

/// How long a try runs before its rate is judged (see [`DownloadOptions::min_rate`]).
pub const SLOW_WINDOW: Duration = Duration::from_secs(10);

impl DownloadOptions {
    pub fn new(http: HttpOptions) -> Self {
        DownloadOptions {
            http,
            attempts: 8,
            backoff: Backoff::DOWNLOAD,
            progress: None,
            min_rate: Some(64 * 1024),
            min_rate_alone: Some((4 * 1024, Duration::from_secs(60))),
        }
    }
}

/// A verified file in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downloaded {
    pub path: PathBuf,
    /// Bytes received over the network by this call, all tries together (0 when the file was
    /// already in place or in the cache).
    pub bytes: u64,
    pub ms: u64,
    /// The part's length when a try resumed it with a Range request (the last such try).
    pub resumed_from: Option<u64>,
    /// Requests made (0: no request was needed).
    pub attempts: u32,
    /// The server address of the last try.
    pub address: Option<IpAddr>,
    /// Index (into the URLs given) of the one that completed the file; None when no request
    /// was needed.
    pub source: Option<usize>,
    /// Every URL index that served bytes of the file, in order.
    pub served: Vec<usize>,
    /// The URL index of each try that failed, in order.
    pub failed: Vec<usize>,
}

#[derive(Debug)]
pub enum DownloadError {
    /// The request failed: at once for a final answer (4xx, TLS, protocol), or after the
    /// configured tries for a transient one.
    Http { error: HttpError, attempts: u32 },
    /// The bytes do not hash to the expected SHA-256; nothing was kept.
    Hash {
        url: String,
        expected: [u8; 32],
        actual: [u8; 32],
        /// URL indexes that served the bytes (one: that URL served the whole file).
        served: Vec<usize>,
    },
    /// The server's file is not the expected size; nothing was kept.
    Size {
        url: String,
        expected: u64,
        detail: String,
    },
    /// Reading or writing a local file.
    File {
        path: PathBuf,
        action: &'static str,
        error: io::Error,
    },
}

impl fmt::Display for DownloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DownloadError::Http { error, attempts } if *attempts > 1 => {
                write!(f, "{error} (gave up after {attempts} tries)")
            }
            DownloadError::Http { error, .. } => write!(f, "{error}"),
            DownloadError::Hash {
                url,
                expected,
                actual,
                ..
            } => write!(
                f,
                "{url}: SHA-256 mismatch: expected {}, got {}; the download was discarded",
                hex(expected),
                hex(actual)
            ),
            DownloadError::Size {
                url,
                expected,
                detail,
            } => write!(
                f,
                "{url}: expected {expected} bytes, but {detail}; the download was discarded"
            ),
            DownloadError::File {
                path,
                action,
                error,
            } => write!(f, "{}: cannot {action}: {error}", path.display()),
        }
    }
}

impl std::error::Error for DownloadError {}

/// Lowercase hex, as sha256sum prints it.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Where the bytes go until they are verified: `<final path>.part`. Appended rather than a
/// replaced extension, so `zos.efi` and `zos.img` in one directory never share a part file.
pub fn part_path(final_path: &Path) -> PathBuf {
    let mut p = final_path.as_os_str().to_owned();
    p.push(".part");
    PathBuf::from(p)
}

/// Downloads `url` to `final_path`, verified against `expected`.
///
/// `cache_dir`, when given, is a content-addressed store (`<cache_dir>/<sha256 hex>`): a file
/// there that verifies is installed without any request, and a fresh download is linked into it
/// (best effort). A `final_path` that already verifies is kept as it is.
pub async fn download(
    url: &str,
    expected: Expected,
    cache_dir: Option<&Path>,
    final_path: &Path,
    opts: &DownloadOptions,
) -> Result<Downloaded, DownloadError> {
    download_from(&[url.to_string()], expected, cache_dir, final_path, opts).await
}

/// [`download`] from any of `urls` (mirrors of the same file, best first): a failed try moves
/// on to the next URL and resumes there. `urls` must not be empty.
pub async fn download_from(
    urls: &[String],
    expected: Expected,
    cache_dir: Option<&Path>,
    final_path: &Path,
    opts: &DownloadOptions,
) -> Result<Downloaded, DownloadError> {
    assert!(!urls.is_empty(), "download_from needs a URL");
    let start = Instant::now();
    let done = |attempts, bytes, resumed_from, address| Downloaded {
        path: final_path.to_path_buf(),
        bytes,
        ms: u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
        resumed_from,
        attempts,
        address,
        source: None,
        served: Vec::new(),
        failed: Vec::new(),
    };
    if let Some(dir) = final_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(file_error(dir, "create the directory"))?;
    }
    if verifies(final_path, &expected)? {
        log::debug!("{}: already in place and verified", final_path.display());
        return Ok(done(0, 0, None, None));
    }
    let cached = cache_dir.map(|d| d.join(hex(&expected.sha256)));
    if let Some(cached) = cached.as_deref() {
        if verifies(cached, &expected)? {
            install_copy(cached, final_path)?;
            log::debug!(
                "{}: installed from {}",
                final_path.display(),
                cached.display()
            );
            return Ok(done(0, 0, None, None));
        }
    }

    let mut part = Part::open(part_path(final_path), expected.size)?;
    let mut run = Run {
        expected: &expected,
        opts,
        start,
        throttle: ProgressThrottle::default(),
        received: 0,
        resumed_from: None,
        address: None,
    };
    let mut tries = 0u32;
    let mut fruitless = 0u32;
    // A part from an earlier run may belong to another version of the file, and a part made
    // by several mirrors cannot say which one was wrong: if a resumed file fails its hash,
    // start over from byte 0 once (on one URL) before calling it corrupt.
    let mut may_start_over = true;
    // The URL in use, and those that gave a final answer (not asked again).
    let mut cur = 0usize;
    let mut dead = vec![false; urls.len()];
    let mut failed = Vec::new();
    let mut slow_hops = urls.len() - 1;
    loop {
        let url = urls[cur].as_str();
        let before = part.offset;
        let outcome = if part.offset == expected.size {
            Ok(())
        } else {
            tries += 1;
            let may_hop = slow_hops > 0 && dead.iter().filter(|d| !**d).count() > 1;
            let outcome = run.try_once(url, cur, &mut part, may_hop).await;
            if matches!(&outcome, Err(Failure::Retry(e)) if is_slow(e)) {
                slow_hops -= 1;
            }
            outcome
        };
        let error = match outcome {
            Ok(()) => {
                let actual = part.finish()?;
                if actual == expected.sha256 {
                    break;
                }
                if part.resumed && may_start_over {
                    log::warn!("{url}: SHA-256 mismatch after resuming; starting over from 0");
                    may_start_over = false;
                    part.restart()?;
                    continue;
                }
                let served = part.sources.clone();
                part.discard();
                return Err(DownloadError::Hash {
                    url: url.to_string(),
                    expected: expected.sha256,
                    actual,
                    served,
                });
            }
            // A part is kept for a later resume only after a failed request; a part that is
            // wrong (size, local I/O) or empty goes. Another URL may still do.
            Err(Failure::Final(DownloadError::Http { error, .. })) => {
                failed.push(cur);
                dead[cur] = true;
                if let Some(next) = next_alive(&dead, cur) {
                    log::warn!("{error}; trying {}", urls[next]);
                    cur = next;
                    continue;
                }
                if part.offset == 0 {
                    part.discard();
                }
                return Err(DownloadError::Http {
                    error,
                    attempts: tries,
                });
            }
            Err(Failure::Final(e @ DownloadError::Size { .. })) => {
                failed.push(cur);
                dead[cur] = true;
                if let Some(next) = next_alive(&dead, cur) {
                    log::warn!("{e}; trying {}", urls[next]);
                    part.restart()?;
                    cur = next;
                    continue;
                }
                part.discard();
                return Err(e);
            }
            Err(Failure::Final(e)) => {
                part.discard();
                return Err(e);
            }
            Err(Failure::Retry(e)) => e,
        };
        failed.push(cur);
        fruitless = if part.offset > before {
            0
        } else {
            fruitless + 1
        };
        // The next mirror at once; a pause only once every one has failed in a row.
        let alive = dead.iter().filter(|d| !**d).count().max(1) as u32;
        let switched = next_alive(&dead, cur).inspect(|&next| cur = next);
        if fruitless >= opts.attempts.max(1) {
            if part.offset == 0 {
                part.discard();
            }
            return Err(DownloadError::Http {
                error,
                attempts: tries,
            });
        }
        if alive > 1 && !fruitless.is_multiple_of(alive) {
            log::warn!(
                "{error}; trying {} (have {} of {} bytes)",
                urls[cur],
                part.offset,
                expected.size
            );
            continue;
        }
        let retry_after = match error.kind {
            ErrorKind::Status { retry_after, .. } => retry_after.unwrap_or_default(),
            _ => Duration::ZERO,
        };
        let delay = opts
            .backoff
            .delay((fruitless / alive).saturating_sub(1), fastrand::u32(..))
            .max(retry_after.min(MAX_RETRY_AFTER));
        log::warn!(
            "{error}; retrying{} in {} ms (have {} of {} bytes)",
            switched.map_or(String::new(), |n| format!(" with {}", urls[n])),
            delay.as_millis(),
            part.offset,
            expected.size
        );
        Timer::after(delay).await;
    }

    fs::rename(&part.path, final_path).map_err(file_error(&part.path, "rename into place"))?;
    sync_dir(final_path);
    if let Some(cached) = cached.as_deref() {
        if let Err(e) = install_copy(final_path, cached) {
            log::warn!("cache: {e}");
        }
    }
    let mut out = done(tries, run.received, run.resumed_from, run.address);
    out.source = (tries > 0).then_some(cur);
    out.served = part.sources.clone();
    out.failed = failed;
    Ok(out)
}

/// The URL after `cur` (wrapping) that has not given a final answer; `cur` itself when it is
/// the only one left; None when none is.
fn next_alive(dead: &[bool], cur: usize) -> Option<usize> {
    (1..=dead.len())
        .map(|k| (cur + k) % dead.len())
        .find(|&i| !dead[i])
}

/// The words of the error that leaves a slow mirror (see [`DownloadOptions::min_rate`]).
const SLOW_MESSAGE: &str = "too slow with another mirror to try";

fn is_slow(e: &HttpError) -> bool {
    matches!(&e.kind, ErrorKind::Io(e) if e.to_string().starts_with(SLOW_MESSAGE))
}

/// Why one try ended without the whole file.
enum Failure {
    /// Try again (after the backoff), resuming from what the part holds.
    Retry(HttpError),
    Final(DownloadError),
}

impl From<DownloadError> for Failure {
    fn from(e: DownloadError) -> Self {
        Failure::Final(e)
    }
}

/// What the tries of one download share.
struct Run<'a> {
    expected: &'a Expected,
    opts: &'a DownloadOptions,
    start: Instant,
    throttle: ProgressThrottle,
    received: u64,
    resumed_from: Option<u64>,
    address: Option<IpAddr>,
}

impl Run<'_> {
    /// One request: resume or restart, stream into the part, stop at the expected size.
    async fn try_once(
        &mut self,
        url: &str,
        source: usize,
        part: &mut Part,
        may_hop: bool,
    ) -> Result<(), Failure> {
        let size = self.expected.size;
        let began = Instant::now();
        let mut got = 0u64;
        let range = format!("bytes={}-", part.offset);
        let headers: &[(&str, &str)] = match part.offset {
            0 => &[],
            _ => &[("Range", range.as_str())],
        };
        let mut resp = match http::request(Method::Get, url, headers, None, &self.opts.http).await {
            Ok(r) => r,
            // RFC 9110 §15.5.17: the part is not a prefix of what the server has (now).
            Err(e) if e.status() == Some(416) && part.offset > 0 => {
                log::warn!("{e}; starting over from 0");
                part.restart()?;
                return Err(Failure::Retry(e));
            }
            Err(e) => return Err(self.http_failure(e)),
        };
        self.address = Some(resp.address);
        let url = resp.url.clone();
        let size_error = |detail: String| {
            Failure::Final(DownloadError::Size {
                url: url.clone(),
                expected: size,
                detail,
            })
        };
        let protocol = |e: String| {
            let e = HttpError {
                url: url.clone(),
                step: http::Step::Head,
                address: Some(resp.address),
                kind: ErrorKind::Protocol(e),
            };
            Failure::Final(DownloadError::Http {
                error: e,
                attempts: 1,
            })
        };
        match (resp.status(), part.offset) {
            (206, offset) if offset > 0 => {
                let range = match resp.head.content_range() {
                    Ok(Some(r)) => r,
                    Ok(None) => return Err(protocol("206 without Content-Range".into())),
                    Err(e) => return Err(protocol(e)),
                };
                if let Some(total) = range.complete.filter(|&t| t != size) {
                    return Err(size_error(format!("the server says the file is {total}")));
                }
                if range.last >= size {
                    let e = format!("the server sent a range up to byte {}", range.last);
                    return Err(size_error(e));
                }
                if range.first != offset {
                    // Not what we asked for; start over without Range rather than guess.
                    log::warn!(
                        "{url}: asked for bytes from {offset}, got {}; starting over",
                        range.first
                    );
                    part.restart()?;
                    let e = format!("range from {} instead of {offset}", range.first);
                    return Err(Failure::Retry(HttpError {
                        url,
                        step: http::Step::Head,
                        address: Some(resp.address),
                        kind: ErrorKind::Protocol(e),
                    }));
                }
                log::debug!("{url}: resuming at byte {offset}");
                self.resumed_from = Some(offset);
                part.resumed = true;
            }
            (200, offset) => {
                if offset > 0 {
                    log::warn!("{url}: the server ignored Range; starting over from 0");
                    part.restart()?;
                }
                if let Framing::Length(n) = resp.framing {
                    if n != size {
                        let e = format!("the server's Content-Length is {n}");
                        return Err(size_error(e));
                    }
                }
            }
            (status, _) => {
                return Err(protocol(format!(
                    "unexpected status {status} {} for a download",
                    resp.head.reason
                )))
            }
        }

        loop {
            let piece = match resp.chunk().await {
                Ok(Some(p)) => p,
                Ok(None) => break,
                Err(e) => return Err(self.http_failure(e)),
            };
            let len = piece.len() as u64;
            if part.offset + len > size {
                let e = format!(
                    "the server sent more than that (at least {})",
                    part.offset + len
                );
                return Err(size_error(e));
            }
            part.append(piece, source)?;
            self.received += len;
            got += len;
            self.report(part.offset);
            let elapsed = began.elapsed();
            if let Some((min, window)) = self.opts.min_rate_alone.filter(|_| !may_hop) {
                let rate = (u128::from(got) * 1000)
                    .checked_div(elapsed.as_millis())
                    .unwrap_or(u128::MAX);
                if elapsed >= window && part.offset < size && rate < u128::from(min) {
                    let e = io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "too slow: {rate} B/s over {} s, below the {min} B/s floor (check \
                             the uplink, or the hub is overloaded)",
                            elapsed.as_secs()
                        ),
                    );
                    return Err(Failure::Final(DownloadError::Http {
                        error: HttpError {
                            url,
                            step: http::Step::Body,
                            address: Some(resp.address),
                            kind: ErrorKind::Io(e),
                        },
                        attempts: 1,
                    }));
                }
            }
            if let Some(min) = self.opts.min_rate.filter(|_| may_hop) {
                let rate = (u128::from(got) * 1000)
                    .checked_div(elapsed.as_millis())
                    .unwrap_or(u128::MAX);
                if elapsed >= SLOW_WINDOW && part.offset < size && rate < u128::from(min) {
                    let e = io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "{SLOW_MESSAGE} ({} B/s over {} s, below {min} B/s)",
                            rate,
                            elapsed.as_secs()
                        ),
                    );
                    return Err(Failure::Retry(HttpError {
                        url,
                        step: http::Step::Body,
                        address: Some(resp.address),
                        kind: ErrorKind::Io(e),
                    }));
                }
            }
        }
        if part.offset == size {
            return Ok(());
        }
        // The body ended by its own framing, short of the size.
        if resp.status() == 200 && resp.framing != Framing::UntilClose {
            let e = format!("the server's file ends at {} bytes", part.offset);
            return Err(size_error(e));
        }
        let e = io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("body ended at {} of {size} bytes", part.offset),
        );
        Err(Failure::Retry(HttpError {
            url,
            step: http::Step::Body,
            address: Some(resp.address),
            kind: ErrorKind::Io(e),
        }))
    }

    fn http_failure(&self, e: HttpError) -> Failure {
        if e.is_transient() {
            return Failure::Retry(e);
        }
        Failure::Final(DownloadError::Http {
            error: e,
            attempts: 1,
        })
    }

    fn report(&mut self, bytes: u64) {
        let Some(progress) = &self.opts.progress else {
            return;
        };
        let elapsed = self.start.elapsed();
        if !self.throttle.due(elapsed, bytes, self.expected.size) {
            return;
        }
        let rate = (u128::from(self.received) * 1000)
            .checked_div(elapsed.as_millis())
            .map_or(0, |r| u64::try_from(r).unwrap_or(u64::MAX));
        let left = self.expected.size.saturating_sub(bytes);
        progress(&Progress {
            bytes,
            total: self.expected.size,
            rate,
            eta: (rate > 0).then(|| Duration::from_secs(left / rate)),
        });
    }
}

/// The part file being written, and the hash of everything in it.
struct Part {
    path: PathBuf,
    file: File,
    offset: u64,
    hasher: Context,
    /// Some of its bytes came before the current try's request.
    resumed: bool,
    /// The URL indexes that wrote its bytes (an earlier run's bytes are not counted).
    sources: Vec<usize>,
}

impl Part {
    /// Opens (or creates) the part file; bytes already in it are hashed so a resumed download
    /// verifies the whole file. One longer than the expected size can't be a prefix: dropped.
    fn open(path: PathBuf, size: u64) -> Result<Part, DownloadError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(file_error(&path, "open"))?;
        let mut part = Part {
            path,
            file,
            offset: 0,
            hasher: Context::new(&SHA256),
            resumed: false,
            sources: Vec::new(),
        };
        let len = part
            .file
            .metadata()
            .map_err(file_error(&part.path, "stat"))?
            .len();
        if len > size {
            part.restart()?;
            return Ok(part);
        }
        let mut hasher = Context::new(&SHA256);
        let read = hash_reader(&mut part.file, &mut hasher);
        let hashed = read.map_err(file_error(&part.path, "read"))?;
        if hashed != len {
            // Shrunk under us: start clean rather than trust it.
            part.restart()?;
            return Ok(part);
        }
        if len > 0 {
            log::debug!("{}: {len} bytes from an earlier try", part.path.display());
        }
        part.hasher = hasher;
        part.offset = len;
        part.resumed = len > 0;
        Ok(part)
    }

    fn append(&mut self, data: &[u8], source: usize) -> Result<(), DownloadError> {
        if self.sources.last() != Some(&source) && !data.is_empty() {
            self.sources.retain(|&s| s != source);
            self.sources.push(source);
        }
        self.file
            .write_all(data)
            .map_err(file_error(&self.path, "write"))?;
        self.hasher.update(data);
        self.offset += data.len() as u64;
        Ok(())
    }

    fn restart(&mut self) -> Result<(), DownloadError> {
        let path = &self.path;
        self.file.set_len(0).map_err(file_error(path, "truncate"))?;
        self.file
            .seek(SeekFrom::Start(0))
            .map_err(file_error(path, "seek"))?;
        self.hasher = Context::new(&SHA256);
        self.offset = 0;
        self.resumed = false;
        self.sources.clear();
        Ok(())
    }

    /// Flushes to disk and returns the digest of the whole file.
    fn finish(&mut self) -> Result<[u8; 32], DownloadError> {
        self.file
            .sync_all()
            .map_err(file_error(&self.path, "sync"))?;
        Ok(sha256_of(self.hasher.clone()))
    }

    fn discard(&self) {
        if let Err(e) = fs::remove_file(&self.path) {
            log::warn!("{}: cannot remove: {e}", self.path.display());
        }
    }
}

/// Hashes everything `r` yields through a fixed buffer; returns the byte count.
fn hash_reader(r: &mut impl Read, hasher: &mut Context) -> io::Result<u64> {
    let mut buf = vec![0u8; HASH_BUF];
    let mut total = 0u64;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        total += n as u64;
    }
}

/// SHA-256 through ring: already linked for TLS, and faster than a second implementation.
fn sha256_of(hasher: Context) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(hasher.finish().as_ref());
    out
}

/// Whether `path` exists with the expected size and hash.
fn verifies(path: &Path, expected: &Expected) -> Result<bool, DownloadError> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(file_error(path, "open")(e)),
    };
    let len = file.metadata().map_err(file_error(path, "stat"))?.len();
    if len != expected.size {
        return Ok(false);
    }
    let mut hasher = Context::new(&SHA256);
    hash_reader(&mut file, &mut hasher).map_err(file_error(path, "read"))?;
    Ok(sha256_of(hasher) == expected.sha256)
}

/// Puts a copy of `from` at `to` atomically: a hard link (or a copy, across file systems) under
/// the part name, then a rename.
fn install_copy(from: &Path, to: &Path) -> Result<(), DownloadError> {
    if let Some(dir) = to.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(file_error(dir, "create the directory"))?;
    }
    let tmp = part_path(to);
    let _ = fs::remove_file(&tmp);
    if fs::hard_link(from, &tmp).is_err() {
        fs::copy(from, &tmp).map_err(file_error(&tmp, "copy into"))?;
    }
    fs::rename(&tmp, to).map_err(file_error(to, "rename into"))?;
    sync_dir(to);
    Ok(())
}

/// A rename is durable once its directory is synced; best effort (tmpfs needs none).
fn sync_dir(path: &Path) {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Err(e) = File::open(dir).and_then(|d| d.sync_all()) {
            log::debug!("{}: cannot sync: {e}", dir.display());
        }
    }
}

fn file_error<'a>(
    path: &'a Path,
    action: &'static str,
) -> impl Fn(io::Error) -> DownloadError + 'a {
    move |error| DownloadError::File {
        path: path.to_path_buf(),
        action,
        error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn download_backoff_is_100ms_doubling_to_5s() {
        let b = Backoff {
            jitter_pct: 0,
            ..Backoff::DOWNLOAD
        };
        let ms: Vec<u128> = (0..8).map(|a| b.delay(a, 0).as_millis()).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
    }

    #[test]
    fn progress_is_throttled_to_2s_or_10_percent() {
        let mut t = ProgressThrottle::default();
        let s = Duration::from_millis;
        let total = 1000;
        assert!(t.due(s(0), 1, total), "first report");
        assert!(!t.due(s(500), 50, total));
        assert!(!t.due(s(1999), 99, total));
        assert!(t.due(s(2001), 99, total), "2 s passed");
        assert!(t.due(s(2100), 100, total), "reached 10 %");
        assert!(!t.due(s(2200), 150, total));
        assert!(t.due(s(2300), 450, total), "jumped to 40 %");
        assert!(!t.due(s(2400), 499, total));
        assert!(t.due(s(2500), 1000, total), "done");
        assert!(!t.due(s(2600), 1000, total));
        let mut empty = ProgressThrottle::default();
        assert!(empty.due(s(0), 0, 0));
    }

    #[test]
    fn progress_line_reads_well() {
        let p = Progress {
            bytes: 3 * 1_048_576,
            total: 10 * 1_048_576,
            rate: 1_048_576,
            eta: Some(Duration::from_secs(7)),
        };
        assert_eq!(p.to_string(), "3.0 of 10.0 MiB (30 %), 1.0 MiB/s, 7 s left");
    }

    #[test]
    fn part_path_appends_so_siblings_do_not_collide() {
        assert_eq!(
            part_path(Path::new("/run/zos/zos.efi")),
            Path::new("/run/zos/zos.efi.part")
        );
        assert_ne!(part_path(Path::new("a.efi")), part_path(Path::new("a.img")));
    }

    #[test]
    fn errors_read_as_one_line() {
        let e = DownloadError::Size {
            url: "https://hub.test/zos.efi".into(),
            expected: 100,
            detail: "the server's Content-Length is 90".into(),
        };
        assert_eq!(
            e.to_string(),
            "https://hub.test/zos.efi: expected 100 bytes, but the server's Content-Length is \
             90; the download was discarded"
        );
        assert_eq!(hex(&[0, 0xab, 0xff]), "00abff");
    }

    /// Downloads against a test server on 127.0.0.1 (plain and TLS with a CA made at test time)
    /// that misbehaves on cue.
    mod loopback {
        use super::*;
        use crate::net::probe::{Family, ProbeConfig};
        use std::collections::VecDeque;
        use std::net::{Ipv4Addr, Shutdown, TcpListener};
        use std::sync::Mutex;

        const SIZE: usize = 100_000;

        /// What the server does with one request; after the script, it serves the file.
        #[derive(Debug, Clone)]
        enum Reply {
            /// The file, honouring Range.
            File,
            /// Headers for the whole (ranged) body, then only this many bytes, then a close.
            DropAfter(usize),
            /// The file with the byte at this offset flipped.
            Corrupt(usize),
            /// Chunked, with this many bytes past the file's end.
            ChunkedLonger(usize),
            /// Content-Length and body of the file's length plus this (negative: shorter).
            Length(i64),
            /// The whole file with 200, whatever the Range.
            IgnoreRange,
            Status(u16, &'static str),
            Redirect(&'static str),
            /// Headers and 1000 bytes, then silence for 3 s.
            Stall,
            /// Headers, then 10 bytes every 20 ms (500 B/s), to the end.
            Trickle,
        }

        struct Server {
            port: u16,
            /// Each request head received, lowercased.
            requests: Arc<Mutex<Vec<String>>>,
        }

        impl Server {
            fn start(
                file: Vec<u8>,
                script: Vec<Reply>,
                tls: Option<Arc<rustls::ServerConfig>>,
            ) -> Server {
                let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
                let port = listener.local_addr().unwrap().port();
                let requests = Arc::new(Mutex::new(Vec::new()));
                let log = requests.clone();
                let mut script = VecDeque::from(script);
                std::thread::spawn(move || {
                    for tcp in listener.incoming().flatten() {
                        let reply = script.pop_front().unwrap_or(Reply::File);
                        let _ = match &tls {
                            None => serve(tcp.try_clone().unwrap(), &file, &reply, &log),
                            Some(cfg) => {
                                let conn = rustls::ServerConnection::new(cfg.clone()).unwrap();
                                let mut s =
                                    rustls::StreamOwned::new(conn, tcp.try_clone().unwrap());
                                let r = serve(&mut s, &file, &reply, &log);
                                if r.is_ok() && !matches!(reply, Reply::DropAfter(_)) {
                                    s.conn.send_close_notify();
                                    let _ = s.flush();
                                }
                                r
                            }
                        };
                        let _ = tcp.shutdown(Shutdown::Both);
                    }
                });
                Server { port, requests }
            }

            fn requests(&self) -> Vec<String> {
                self.requests.lock().unwrap().clone()
            }
        }

        fn serve(
            mut s: impl Read + Write,
            file: &[u8],
            reply: &Reply,
            log: &Mutex<Vec<String>>,
        ) -> io::Result<()> {
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                if s.read(&mut byte)? == 0 {
                    return Ok(());
                }
                head.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
            log.lock().unwrap().push(head.clone());
            // Read a request body too: closing with unread bytes would reset the connection.
            let body_len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .map_or(0, |n| n.trim().parse().unwrap());
            s.read_exact(&mut vec![0; body_len])?;
            let from: Option<usize> = head
                .lines()
                .find_map(|l| l.strip_prefix("range: bytes="))
                .and_then(|r| r.trim_end_matches('-').parse().ok());
            let len = file.len();
            let full = |body: &[u8]| {
                let mut r = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len())
                    .into_bytes();
                r.extend_from_slice(body);
                r
            };
            let ranged = |cut: Option<usize>| {
                let start = from.unwrap_or(0);
                let body = &file[start..];
                let mut r = match from {
                    Some(f) => format!(
                        "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {f}-{}/{len}\r\n",
                        len - 1
                    ),
                    None => "HTTP/1.1 200 OK\r\n".to_string(),
                }
                .into_bytes();
                r.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
                r.extend_from_slice(&body[..cut.unwrap_or(body.len()).min(body.len())]);
                r
            };
            let out = match reply {
                Reply::File => ranged(None),
                Reply::DropAfter(n) => ranged(Some(*n)),
                Reply::Corrupt(at) => {
                    let mut bad = file.to_vec();
                    bad[*at] ^= 0xff;
                    full(&bad)
                }
                Reply::ChunkedLonger(extra) => {
                    let mut body = file.to_vec();
                    body.resize(len + extra, b'x');
                    let mut r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
                    for c in body.chunks(7000) {
                        r.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
                        r.extend_from_slice(c);
                        r.extend_from_slice(b"\r\n");
                    }
                    r.extend_from_slice(b"0\r\n\r\n");
                    r
                }
                Reply::Length(delta) => {
                    let mut body = file.to_vec();
                    body.resize((len as i64 + delta) as usize, b'x');
                    full(&body)
                }
                Reply::IgnoreRange => full(file),
                Reply::Status(code, msg) => format!(
                    "HTTP/1.1 {code} Oops\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{msg}",
                    msg.len()
                )
                .into_bytes(),
                Reply::Redirect(to) => {
                    format!("HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\n\r\n")
                        .into_bytes()
                }
                Reply::Trickle => {
                    s.write_all(&ranged(Some(0)))?;
                    s.flush()?;
                    let start = from.unwrap_or(0);
                    for c in file[start..].chunks(10) {
                        s.write_all(c)?;
                        s.flush()?;
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    return Ok(());
                }
                Reply::Stall => {
                    s.write_all(&ranged(Some(1000)))?;
                    s.flush()?;
                    std::thread::sleep(Duration::from_secs(3));
                    return Ok(());
                }
            };
            s.write_all(&out)?;
            s.flush()
        }

        /// The test file: bytes that hash differently at every offset.
        fn data() -> Vec<u8> {
            (0..SIZE as u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
                .collect()
        }

        fn expected(data: &[u8]) -> Expected {
            Expected {
                size: data.len() as u64,
                sha256: sha256_of({
                    let mut c = Context::new(&SHA256);
                    c.update(data);
                    c
                }),
            }
        }

        /// A fresh directory for one test; removed by the test when it passes.
        fn dir(name: &str) -> PathBuf {
            let d = std::env::temp_dir().join(format!("zos-dl-{}-{name}", std::process::id()));
            let _ = fs::remove_dir_all(&d);
            fs::create_dir_all(&d).unwrap();
            d
        }

        fn options(tls: Option<Arc<rustls::ClientConfig>>) -> DownloadOptions {
            let dns = ProbeConfig {
                dns_servers: vec![],
                timeout: Duration::from_secs(1),
                attempts: 1,
            };
            let mut http = HttpOptions::new(dns, Family::Ipv4);
            http.hosts = vec![("hub.test".into(), IpAddr::from(Ipv4Addr::LOCALHOST))];
            http.tls = tls;
            http.timeouts.idle = Duration::from_millis(1500);
            let mut o = DownloadOptions::new(http);
            o.attempts = 4;
            o.backoff = Backoff {
                initial: Duration::from_millis(1),
                cap: Duration::from_millis(10),
                jitter_pct: 20,
            };
            o
        }

        struct Pki {
            server: Arc<rustls::ServerConfig>,
            ca_file: PathBuf,
            other_ca_file: PathBuf,
        }

        /// A test CA, a certificate for hub.test signed by it, and an unrelated CA.
        fn pki(dir: &Path) -> Pki {
            let ca_key = rcgen::KeyPair::generate().unwrap();
            let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            ca.distinguished_name
                .push(rcgen::DnType::CommonName, "zos-netboot test CA");
            let ca_cert = ca.clone().self_signed(&ca_key).unwrap();
            let other_key = rcgen::KeyPair::generate().unwrap();
            let other = ca.self_signed(&other_key).unwrap();
            let leaf_key = rcgen::KeyPair::generate().unwrap();
            let leaf = rcgen::CertificateParams::new(vec!["hub.test".to_string()])
                .unwrap()
                .signed_by(&leaf_key, &ca_cert, &ca_key)
                .unwrap();
            let key = rustls::pki_types::PrivatePkcs8KeyDer::from(leaf_key.serialize_der());
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let server = rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(vec![leaf.der().clone()], key.into())
                .unwrap();
            let ca_file = dir.join("ca.pem");
            let other_ca_file = dir.join("other-ca.pem");
            fs::write(&ca_file, ca_cert.pem()).unwrap();
            fs::write(&other_ca_file, other.pem()).unwrap();
            Pki {
                server: Arc::new(server),
                ca_file,
                other_ca_file,
            }
        }

        fn run(
            url: &str,
            data: &[u8],
            dir: &Path,
            opts: &DownloadOptions,
        ) -> Result<Downloaded, DownloadError> {
            let out = dir.join("zos.efi");
            smol::block_on(download(url, expected(data), None, &out, opts))
        }

        /// Nothing at the final path, no part left behind.
        fn assert_nothing_kept(dir: &Path) {
            let out = dir.join("zos.efi");
            assert!(!out.exists(), "{} exists", out.display());
            assert!(!part_path(&out).exists(), "part file left");
        }

        fn assert_installed(dir: &Path, data: &[u8]) {
            let out = dir.join("zos.efi");
            assert!(fs::read(&out).unwrap() == data, "content differs");
            assert!(!part_path(&out).exists(), "part file left");
        }

        fn dropped_connection_resumes(name: &str, tls: bool) {
            let d = dir(name);
            let data = data();
            let pki = pki(&d);
            let server_tls = tls.then(|| pki.server.clone());
            let server = Server::start(data.clone(), vec![Reply::DropAfter(30_000)], server_tls);
            let (url, client_tls) = match tls {
                true => (
                    format!("https://hub.test:{}/zos.efi", server.port),
                    Some(
                        crate::fetch::tls::client_config(std::slice::from_ref(&pki.ca_file))
                            .unwrap(),
                    ),
                ),
                false => (format!("http://127.0.0.1:{}/zos.efi", server.port), None),
            };
            let mut opts = options(client_tls);
            let seen = Arc::new(Mutex::new(Vec::new()));
            let log = seen.clone();
            opts.progress = Some(Arc::new(move |p: &Progress| log.lock().unwrap().push(*p)));
            let got = run(&url, &data, &d, &opts).unwrap();
            assert_eq!(
                (got.resumed_from, got.attempts, got.bytes),
                (Some(30_000), 2, SIZE as u64)
            );
            assert_eq!(got.address, Some(IpAddr::from(Ipv4Addr::LOCALHOST)));
            let reqs = server.requests();
            assert_eq!(reqs.len(), 2);
            assert!(!reqs[0].contains("range:"), "{}", reqs[0]);
            assert!(reqs[1].contains("range: bytes=30000-\r\n"), "{}", reqs[1]);
            assert_installed(&d, &data);
            let seen = seen.lock().unwrap();
            assert_eq!(
                seen.last().map(|p| (p.bytes, p.total)),
                Some((SIZE as u64, SIZE as u64))
            );
            fs::remove_dir_all(&d).unwrap();
        }

        #[test]
        fn dropped_connection_resumes_with_range_and_verifies() {
            dropped_connection_resumes("drop-http", false);
        }

        #[test]
        fn dropped_tls_connection_resumes_with_range_and_verifies() {
            dropped_connection_resumes("drop-https", true);
        }

        fn mirrored(urls: &[String], data: &[u8], dir: &Path) -> Result<Downloaded, DownloadError> {
            let out = dir.join("zos.efi");
            smol::block_on(download_from(
                urls,
                expected(data),
                None,
                &out,
                &options(None),
            ))
        }

        fn url_of(server: &Server) -> String {
            format!("http://127.0.0.1:{}/zos.efi", server.port)
        }

        #[test]
        fn a_drop_on_one_mirror_resumes_on_the_next_with_range() {
            let d = dir("mirror-drop");
            let data = data();
            let a = Server::start(data.clone(), vec![Reply::DropAfter(30_000)], None);
            let b = Server::start(data.clone(), vec![], None);
            let got = mirrored(&[url_of(&a), url_of(&b)], &data, &d).unwrap();
            assert_eq!(
                (got.source, got.served.clone(), got.failed.clone()),
                (Some(1), vec![0, 1], vec![0])
            );
            assert_eq!((got.resumed_from, got.attempts), (Some(30_000), 2));
            assert_eq!(a.requests().len(), 1);
            let reqs = b.requests();
            assert_eq!(reqs.len(), 1);
            assert!(reqs[0].contains("range: bytes=30000-\r\n"), "{}", reqs[0]);
            assert_installed(&d, &data);
            fs::remove_dir_all(&d).unwrap();
        }

        #[test]
        fn a_mirror_without_the_file_is_skipped_for_the_next() {
            let d = dir("mirror-404");
            let data = data();
            let a = Server::start(data.clone(), vec![Reply::Status(404, "no such file")], None);
            let b = Server::start(data.clone(), vec![], None);
            let got = mirrored(&[url_of(&a), url_of(&b)], &data, &d).unwrap();
            assert_eq!((got.source, got.served.clone()), (Some(1), vec![1]));
            assert_eq!(a.requests().len(), 1, "a 404 is not asked again");
            assert_installed(&d, &data);
            fs::remove_dir_all(&d).unwrap();
        }

        #[test]
        fn a_wrong_file_from_one_mirror_names_that_mirror() {
            let d = dir("mirror-corrupt");
            let data = data();
            let a = Server::start(data.clone(), vec![Reply::Corrupt(54_321)], None);
            let b = Server::start(data.clone(), vec![], None);
            let e = mirrored(&[url_of(&a), url_of(&b)], &data, &d).unwrap_err();
            let DownloadError::Hash { served, .. } = &e else {
                panic!("{e}")
            };
            assert_eq!(served, &vec![0], "the whole file came from the first");
            assert!(b.requests().is_empty(), "the caller decides what next");
            assert_nothing_kept(&d);
            fs::remove_dir_all(&d).unwrap();
        }

        #[test]
        fn a_mixed_wrong_file_is_fetched_again_from_one_mirror_to_name_it() {
            let d = dir("mirror-mixed");
            let data = data();
            let mut bad = data.clone();
            bad[70_000] ^= 0xff;
            let a = Server::start(data.clone(), vec![Reply::DropAfter(30_000)], None);
            let b = Server::start(bad, vec![], None);
            let e = mirrored(&[url_of(&a), url_of(&b)], &data, &d).unwrap_err();
            let DownloadError::Hash { served, .. } = &e else {
                panic!("{e}")
            };
            assert_eq!(
                served,
                &vec![1],
                "the second mirror, alone, served it wrong"
            );
            let reqs = b.requests();
            assert_eq!(reqs.len(), 2, "{reqs:?}");
            assert!(reqs[0].contains("range: bytes=30000-"), "{}", reqs[0]);
            assert!(!reqs[1].contains("range:"), "{}", reqs[1]);
            assert_nothing_kept(&d);
            fs::remove_dir_all(&d).unwrap();
        }

        #[test]
        fn existing_part_is_rehashed_then_resumed() {
            let d = dir("part");
            let data = data();
            fs::write(part_path(&d.join("zos.efi")), &data[..40_000]).unwrap();
            let server = Server::start(data.clone(), vec![], None);
            let url = format!("http://127.0.0.1:{}/zos.efi", server.port);
            let got = run(&url, &data, &d, &options(None)).unwrap();
            assert_eq!(
                (got.resumed_from, got.attempts, got.bytes),
                (Some(40_000), 1, 60_000)
            );
            assert_installed(&d, &data);
            fs::remove_dir_all(&d).unwrap();
        }

        #[test]
        fn server_ignoring_range_restarts_from_zero() {
            let d = dir("ignore-range");
            let data = data();
            fs::write(part_path(&d.join("zos.efi")), &data[..40_000]).unwrap();
            let server = Server::start(data.clone(), vec![Reply::IgnoreRange], None);
            let url = format!("http://127.0.0.1:{}/zos.efi", server.port);
            let got = run(&url, &data, &d, &options(None)).unwrap();
            assert_eq!((got.resumed_from, got.bytes), (None, SIZE as u64));
            assert_installed(&d, &data);
            fs::remove_dir_all(&d).unwrap();
        }

        #[test]
        fn unsatisfiable_range_starts_over() {
            let d = dir("416");
            let data = data();
            fs::write(part_path(&d.join("zos.efi")), &data[..40_000]).unwrap();
            let script = vec![Reply::Status(416, "")];
            let server = Server::start(data.clone(), script, None);
            let url = format!("http://127.0.0.1:{}/zos.efi", server.port);
            let got = run(&url, &data, &d, &options(None)).unwrap();
            assert_eq!((got.attempts, got.resumed_from), (2, None));
            assert!(!server.requests()[1].contains("range:"));
            assert_installed(&d, &data);
            fs::remove_dir_all(&d).unwrap();
        }

        #[test]
        fn stale_part_from_another_version_is_fetched_again() {
            let d = dir("stale");
            let data = data();
            fs::write(part_path(&d.join("zos.efi")), vec![7u8; 40_000]).unwrap();
            let server = Server::start(data.clone(), vec![], None);
            let url = format!("http://127.0.0.1:{}/zos.efi", server.port);
            let got = run(&url, &data, &d, &options(None)).unwrap();
            assert_eq!(got.attempts, 2);
            assert!(!server.requests()[1].contains("range:"));
            assert_installed(&d, &data);
            fs::remove_dir_all(&d).unwrap();
        }

        #[test]
        fn corrupted_byte_is_a_hash_error_and_nothing_is_kept() {
            let d = dir("corrupt");
            let data = data();
            let server = Server::start(data.clone(), vec![Reply::Corrupt(54_321)], None);
            let url = format!("http://127.0.0.1:{}/zos.efi", server.port);
            let e = run(&url, &data, &d, &options(None)).unwrap_err();
            assert!(matches!(e, DownloadError::Hash { .. }), "{e}");
            assert!(e.to_string().contains("SHA-256 mismatch"), "{e}");
            assert_eq!(server.requests().len(), 1);
            assert_nothing_kept(&d);
            fs::remove_dir_all(&d).unwrap();
        }

        #[test]
        fn longer_body_is_refused_as_soon_as_it_passes_the_size() {
            let d = dir("longer");
            let data = data();
            for reply in [Reply::ChunkedLonger(5000), Reply::Length(10)] {
                let server = Server::start(data.clone(), vec![reply.clone()], None);
                let url = format!("http://127.0.0.1:{}/zos.efi", server.port);
                let e = run(&url, &data, &d, &options(None)).unwrap_err();
                assert!(matches!(e, DownloadError::Size { .. }), "{reply:?}: {e}");
                assert_eq!(server.requests().len(), 1, "{reply:?}: not retried");
                assert_nothing_kept(&d);
            }
            fs::remove_dir_all(&d).unwrap();
        }

        #[test]
        fn shorter_file_is_refused() {
            let d = dir("shorter");
            let data = data();
            let server = Server::start(data.clone(), vec![Reply::Length(-10)], None);
            let url = format!("http://127.0.0.1:{}/zos.efi", server.port);
            let e = run(&url, &data, &d, &options(None)).unwrap_err();
            assert!(e.to_string().contains("Content-Length is 99990"), "{e}");
            assert_nothing_kept(&d);
            fs::remove_dir_all(&d).unwrap();
        }

        #[test]
        fn server_errors_are_retried_then_succeed() {
            let d = dir("5xx");
            let data = data();
            let busy = Reply::Status(503, "busy");
            let server = Server::start(data.clone(), vec![busy.clone(), busy], None);
            let url = format!("http://127.0.0.1:{}/zos.efi", server.port);
            let got = run(&url, &data, &d, &options(None)).unwrap();
            assert_eq!((got.attempts, server.requests().len()), (3, 3));
            assert_installed(&d, &data);
            fs::remove_dir_all(&d).unwrap();
        }

        #[test]
        fn retries_are_bounded() {
            let d = dir("bounded");
            let data = data();
            let script = vec![Reply::Status(502, "bad gateway"); 10];
            let server = Server::start(data.clone(), script, None);
            let url = format!("http://127.0.0.1:{}/zos.efi", server.port);
            let mut opts = options(None);
            opts.attempts = 3;
            let e = run(&url, &data, &d, &opts).unwrap_err();
            let DownloadError::Http { error, attempts } = &e else {
                panic!("{e}");
            };
            assert_eq!((error.status(), *attempts), (Some(502), 3));
            assert_eq!(server.requests().len(), 3);
            assert!(e.to_string().ends_with("(gave up after 3 tries)"), "{e}");
            assert_nothing_kept(&d);
            fs::remove_dir_all(&d).unwrap();
        }

        #[test]
        fn not_found_stops_at_once_with_the_server_message() {
            let d = dir("404");
            let data = data();
            let script = vec![Reply::Status(404, "no such flist:\n zos.efi")];
            let server = Server::start(data.clone(), script, None);
            let url = format!("http://127.0.0.1:{}/zos.efi", server.port);
            let e = run(&url, &data, &d, &options(None)).unwrap_err();
            let DownloadError::Http { error, attempts } = &e else {
                panic!("{e}");
            };
            assert_eq!((error.status(), *attempts), (Some(404), 1));
            assert!(
                e.to_string()
                    .ends_with("server answered 404 Oops: \"no such flist: zos.efi\""),
                "{e}"
            );
            assert_eq!(server.requests().len(), 1);
            assert_nothing_kept(&d);
            fs::remove_dir_all(&d).unwrap();
        }

        #[test]
        fn stalled_body_times_out_and_is_resumed() {
            let d = dir("stall");
            let data = data();
            let server = Server::start(data.clone(), vec![Reply::Stall], None);
            let url = format!("http://127.0.0.1:{}/zos.efi", server.port);
            let mut opts = options(None);
            opts.http.timeouts.idle = Duration::from_millis(300);
            let got = run(&url, &data, &d, &opts).unwrap();
            assert_eq!((got.resumed_from, got.attempts), (Some(1000), 2));
            assert_installed(&d, &data);
            fs::remove_dir_all(&d).unwrap();
        }

        #[test]
        fn relative_redirect_is_followed() {
            let d = dir("redirect");
            let data = data();
            let server = Server::start(data.clone(), vec![Reply::Redirect("real/zos.efi")], None);
            let url = format!("http://127.0.0.1:{}/v1/zos.efi", server.port);
            run(&url, &data, &d, &options(None)).unwrap();
            assert!(server.requests()[1].starts_with("get /v1/real/zos.efi http/1.1\r\n"));
            assert_installed(&d, &data);
            fs::remove_dir_all(&d).unwrap();
        }

        #[test]
        fn tls_download_is_verified_against_the_given_ca() {
            let d = dir("tls-ok");
            let data = data();
            let pki = pki(&d);
            let server = Server::start(data.clone(), vec![], Some(pki.server.clone()));
            let url = format!("https://hub.test:{}/zos.efi", server.port);
            let tls = crate::fetch::tls::client_config(std::slice::from_ref(&pki.ca_file)).unwrap();
            let got = run(&url, &data, &d, &options(Some(tls))).unwrap();
            assert_eq!((got.attempts, got.resumed_from), (1, None));
            assert!(server.requests()[0].contains("host: hub.test:"));
            assert_installed(&d, &data);
            fs::remove_dir_all(&d).unwrap();
        }

        #[test]
        fn wrong_ca_is_a_tls_error_and_nothing_is_written() {
            let d = dir("tls-wrong-ca");
            let data = data();
            let pki = pki(&d);
            let server = Server::start(data.clone(), vec![], Some(pki.server.clone()));
            let url = format!("https://hub.test:{}/zos.efi", server.port);
            let tls =
                crate::fetch::tls::client_config(std::slice::from_ref(&pki.other_ca_file)).unwrap();
            let e = run(&url, &data, &d, &options(Some(tls))).unwrap_err();
            let DownloadError::Http { error, attempts } = &e else {
                panic!("{e}");
            };
            assert_eq!((error.step, *attempts), (http::Step::Tls, 1));
            assert!(e.to_string().contains("not signed by a trusted CA"), "{e}");
            assert!(server.requests().is_empty());
            assert_nothing_kept(&d);
            fs::remove_dir_all(&d).unwrap();
        }

        /// A server presenting `leaf` (for `names`, valid from `from`, signed by the test CA
        /// when `ca` is given, else self-signed).
        fn server_cert(
            names: &[&str],
            from: i32,
            ca: Option<(&rcgen::Certificate, &rcgen::KeyPair)>,
        ) -> Arc<rustls::ServerConfig> {
            let key = rcgen::KeyPair::generate().unwrap();
            let mut params = rcgen::CertificateParams::new(
                names.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
            )
            .unwrap();
            params.not_before = rcgen::date_time_ymd(from, 1, 1);
            params.not_after = rcgen::date_time_ymd(from + 100, 1, 1);
            let cert = match ca {
                Some((ca_cert, ca_key)) => params.signed_by(&key, ca_cert, ca_key).unwrap(),
                None => params.self_signed(&key).unwrap(),
            };
            let key = rustls::pki_types::PrivatePkcs8KeyDer::from(key.serialize_der());
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            Arc::new(
                rustls::ServerConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .unwrap()
                    .with_no_client_auth()
                    .with_single_cert(vec![cert.der().clone()], key.into())
                    .unwrap(),
            )
        }

        fn test_ca(dir: &Path) -> (rcgen::Certificate, rcgen::KeyPair, PathBuf) {
            let key = rcgen::KeyPair::generate().unwrap();
            let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            ca.not_before = rcgen::date_time_ymd(2000, 1, 1);
            ca.not_after = rcgen::date_time_ymd(2400, 1, 1);
            let cert = ca.self_signed(&key).unwrap();
            let file = dir.join("ca-2400.pem");
            fs::write(&file, cert.pem()).unwrap();
            (cert, key, file)
        }

        fn tls_failure(name: &str, server: Arc<rustls::ServerConfig>) -> http::HttpError {
            let d = dir(name);
            let (_, _, ca_file) = test_ca(&d);
            let data = data();
            let server = Server::start(data.clone(), vec![], Some(server));
            let url = format!("https://hub.test:{}/zos.efi", server.port);
            let tls = crate::fetch::tls::client_config(std::slice::from_ref(&ca_file)).unwrap();
            let e = run(&url, &data, &d, &options(Some(tls))).unwrap_err();
            assert!(server.requests().is_empty());
            assert_nothing_kept(&d);
            fs::remove_dir_all(&d).unwrap();
            match e {
                DownloadError::Http { error, .. } => error,
                e => panic!("{e}"),
            }
        }

        /// Issue 17 point 2: an untrusted self-signed certificate dated 2200 must not pass as
        /// "not valid yet" (whose notBefore the clock would be stepped to): it is untrusted.
        #[test]
        fn an_untrusted_certificate_from_the_future_is_untrusted_not_early() {
            let e = tls_failure("tls-2200-self", server_cert(&["hub.test"], 2200, None));
            assert!(
                matches!(e.kind, http::ErrorKind::Tls(_)),
                "must not be TlsNotYetValid: {e}"
            );
            assert!(e.to_string().contains("not signed by a trusted CA"), "{e}");
        }

        /// The same date on a chain that verifies is a lower bound of the time.
        #[test]
        fn a_trusted_certificate_from_the_future_is_not_yet_valid() {
            let d = dir("tls-2200-ca");
            let (ca_cert, ca_key, ca_file) = test_ca(&d);
            let server = Server::start(
                data(),
                vec![],
                Some(server_cert(&["hub.test"], 2200, Some((&ca_cert, &ca_key)))),
            );
            let url = format!("https://hub.test:{}/zos.efi", server.port);
            let tls = crate::fetch::tls::client_config(std::slice::from_ref(&ca_file)).unwrap();
            let e = run(&url, &data(), &d, &options(Some(tls))).unwrap_err();
            let DownloadError::Http { error, .. } = &e else {
                panic!("{e}")
            };
            let http::ErrorKind::TlsNotYetValid { not_before, .. } = &error.kind else {
                panic!("{e}")
            };
            assert_eq!(*not_before, 7_258_118_400, "2200-01-01");
            fs::remove_dir_all(&d).unwrap();
        }

        /// Issue 17 point 9: a certificate from the trusted CA for another host name is refused
        /// (also when it is from the future: the name is checked before the date is believed).
        #[test]
        fn a_certificate_for_another_host_name_is_refused() {
            let d = dir("tls-name");
            let (ca_cert, ca_key, ca_file) = test_ca(&d);
            for (name, from) in [("tls-name-now", 2000), ("tls-name-2200", 2200)] {
                let server = Server::start(
                    data(),
                    vec![],
                    Some(server_cert(
                        &["other.test"],
                        from,
                        Some((&ca_cert, &ca_key)),
                    )),
                );
                let url = format!("https://hub.test:{}/zos.efi", server.port);
                let tls = crate::fetch::tls::client_config(std::slice::from_ref(&ca_file)).unwrap();
                let e = run(&url, &data(), &d, &options(Some(tls))).unwrap_err();
                let DownloadError::Http { error, .. } = &e else {
                    panic!("{name}: {e}")
                };
                assert!(matches!(error.kind, http::ErrorKind::Tls(_)), "{name}: {e}");
                assert!(
                    e.to_string().contains("not valid for hub.test"),
                    "{name}: {e}"
                );
                assert!(server.requests().is_empty());
                assert_nothing_kept(&d);
            }
            fs::remove_dir_all(&d).unwrap();
        }

        /// Issue 17 point 7: one hub trickling bytes (never idle long enough to time out) is
        /// given up on at the rate floor, once, not followed for ever.
        #[test]
        fn a_lone_trickling_hub_is_given_up_at_the_rate_floor() {
            let d = dir("trickle");
            let data = data();
            let server = Server::start(data.clone(), vec![Reply::Trickle; 8], None);
            let url = format!("http://127.0.0.1:{}/zos.efi", server.port);
            let mut opts = options(None);
            opts.min_rate_alone = Some((4096, Duration::from_millis(400)));
            let started = std::time::Instant::now();
            let e = run(&url, &data, &d, &opts).unwrap_err();
            assert!(e.to_string().contains("below the 4096 B/s floor"), "{e}");
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{:?}",
                started.elapsed()
            );
            assert_eq!(server.requests().len(), 1, "a final answer: not retried");
            fs::remove_dir_all(&d).unwrap();
        }

        /// Issue 17 point 7: a small body read whole (a manifest) has an overall deadline, so a
        /// server trickling bytes just often enough to beat the idle timeout is cut off.
        #[test]
        fn a_trickled_small_body_is_cut_at_its_overall_deadline() {
            let server = Server::start(data(), vec![Reply::Trickle], None);
            let url = format!("http://127.0.0.1:{}/zos.efi", server.port);
            let mut opts = options(None);
            opts.http.timeouts.whole_body = Duration::from_millis(300);
            let started = std::time::Instant::now();
            let e = smol::block_on(async {
                let mut resp = http::request(http::Method::Get, &url, &[], None, &opts.http)
                    .await
                    .unwrap();
                resp.body(1 << 20).await.unwrap_err()
            });
            assert!(
                matches!(e.kind, ErrorKind::Timeout(d) if d == Duration::from_millis(300)),
                "{e}"
            );
            assert!(
                started.elapsed() < Duration::from_secs(3),
                "{:?}",
                started.elapsed()
            );
        }

        #[test]
        fn verified_file_in_place_or_in_cache_needs_no_request() {
            let d = dir("cache");
            let data = data();
            let exp = expected(&data);
            let cache = d.join("cache");
            let out = d.join("zos.efi");
            // Nothing listens on this port: any request would fail.
            let url = "http://127.0.0.1:9/zos.efi";
            fs::create_dir_all(&cache).unwrap();
            fs::write(cache.join(hex(&exp.sha256)), &data).unwrap();
            let opts = options(None);
            let got = smol::block_on(download(url, exp, Some(&cache), &out, &opts)).unwrap();
            assert_eq!((got.attempts, got.bytes), (0, 0));
            assert_installed(&d, &data);
            fs::remove_dir_all(&cache).unwrap();
            let got = smol::block_on(download(url, exp, Some(&cache), &out, &opts)).unwrap();
            assert_eq!(got.attempts, 0);
            fs::remove_dir_all(&d).unwrap();
        }

        #[test]
        fn fresh_download_is_added_to_the_cache() {
            let d = dir("cache-add");
            let data = data();
            let exp = expected(&data);
            let cache = d.join("cache");
            let server = Server::start(data.clone(), vec![], None);
            let url = format!("http://127.0.0.1:{}/zos.efi", server.port);
            let out = d.join("zos.efi");
            smol::block_on(download(&url, exp, Some(&cache), &out, &options(None))).unwrap();
            assert!(fs::read(cache.join(hex(&exp.sha256))).unwrap() == data);
            assert_installed(&d, &data);
            fs::remove_dir_all(&d).unwrap();
        }

        #[test]
        fn post_reads_a_chunked_answer() {
            let server = Server::start(
                b"{\"ok\":true}".to_vec(),
                vec![Reply::ChunkedLonger(0)],
                None,
            );
            let url = format!("http://127.0.0.1:{}/api/register", server.port);
            let opts = options(None);
            let body = smol::block_on(async {
                let mut r = http::request(Method::Post, &url, &[], Some(b"{}"), &opts.http).await?;
                r.body(1024).await
            })
            .unwrap();
            assert_eq!(body, b"{\"ok\":true}");
            let req = &server.requests()[0];
            assert!(req.starts_with("post /api/register http/1.1\r\n"), "{req}");
            assert!(req.contains("content-length: 2\r\n"), "{req}");
        }
    }
}
