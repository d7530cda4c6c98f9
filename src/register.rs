//! Node registration: the node's ed25519 identity, the signed registration body, and the retry
//! loop around one POST to the grid's registrar.
//!
//! The protocol (README, "Registration"): `POST <zos.registrar URL>` with a JSON body, the node's
//! public key in `X-Zos-Node-Id` and an ed25519 signature over the exact body bytes in
//! `X-Zos-Signature` (both hex). The registrar keeps one record per node id, so registering again
//! (every boot, or a retry whose answer was lost) updates it instead of creating a second node.
//!
//! Split like the DHCP client: [`body`] and [`classify_response`] are pure; [`register`] only
//! sequences attempts and waits, with the POST itself injected by the caller (the HTTP client
//! lives in `crate::fetch`), so the whole retry policy is tested with a fake poster.
use crate::fetch::download::hex;
use std::fmt;
use std::fs;
use std::future::Future;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ring::signature::{Ed25519KeyPair, KeyPair};
use serde::{Deserialize, Serialize};

use crate::retry::Backoff;
use crate::state::State;

/// Where the seed is left for the full OS, inside the hand-off directory.
pub const HANDOFF_SEED_FILE: &str = "identity.seed";

/// The registrar rejects a body whose `sent_unix` is more than 10 minutes off its clock (replay
/// guard). The body is signed once, so [`register`] stops retrying a little before that; the
/// caller builds a fresh body and calls again.
pub const SIGNED_BODY_LIFETIME: Duration = Duration::from_secs(9 * 60);

/// A guard around one POST, in case the injected client has no timeout of its own: a registrar
/// that accepts the connection and never answers must not hold the boot forever.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(60);

/// Before its first POST a node waits a random time below this: nodes that power on together
/// (a farm after an outage) reach the registrar spread over a second instead of at once. The
/// retries' jitter ([`Backoff::REGISTER`]) keeps them apart afterwards.
pub const FIRST_POST_SPREAD: Duration = Duration::from_millis(1000);

/// Longest server-provided text we put on the console.
const MAX_SERVER_TEXT: usize = 160;

/// The node's ed25519 key. Debug shows the public key only; the seed never leaves except into
/// the hand-off file.
pub struct Identity {
    /// Kept for the hand-off file; wiped on drop.
    seed: [u8; 32],
    /// ring's Ed25519 (RFC 8032): ring is already in the binary for TLS and SHA-256, so this
    /// costs ~100 KiB less than a second curve25519 implementation.
    pair: Ed25519KeyPair,
}

impl Drop for Identity {
    fn drop(&mut self) {
        wipe(&mut self.seed);
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentitySource {
    /// Read from `zos.identity=FILE`.
    Loaded(PathBuf),
    /// No `zos.identity=`: a fresh key from the kernel's random source, this boot only (unless
    /// the full OS keeps `identity.seed` from the hand-off directory).
    Generated,
}

impl fmt::Display for IdentitySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdentitySource::Loaded(path) => write!(f, "loaded from {}", path.display()),
            IdentitySource::Generated => f.write_str("generated for this boot"),
        }
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("node_id", &self.node_id())
            .finish_non_exhaustive()
    }
}

impl Identity {
    pub fn from_seed(seed: &[u8; 32]) -> Identity {
        Identity {
            seed: *seed,
            // A 32-byte seed always makes a key pair (RFC 8032 §5.1.5); "unchecked" only means
            // there is no stored public key to compare with.
            pair: Ed25519KeyPair::from_seed_unchecked(seed)
                .expect("an ed25519 key from a 32-byte seed"),
        }
    }

    /// The identity for this boot: the seed in `path` (`zos.identity=FILE`) when given, else a
    /// new random one. Either way the seed is written to `handoff_dir/identity.seed` (0600) for
    /// the full OS. A file that is unreadable or does not hold a seed is an error naming it: it is
    /// never replaced, since a new key would make the node a different node on the grid.
    pub fn load_or_generate(
        path: Option<&Path>,
        handoff_dir: &Path,
    ) -> Result<(Identity, IdentitySource), String> {
        let (identity, source) = match path {
            Some(path) => {
                let named = |e: String| format!("zos.identity={}: {e}", path.display());
                let mut bytes = fs::read(path).map_err(|e| named(e.to_string()))?;
                let seed = parse_seed(&bytes);
                wipe(&mut bytes);
                let mut seed = seed.map_err(|e| named(format!("{e}; not replacing it")))?;
                let identity = Identity::from_seed(&seed);
                wipe(&mut seed);
                (identity, IdentitySource::Loaded(path.to_path_buf()))
            }
            None => {
                let mut seed = [0u8; 32];
                // Blocks until the kernel's CRNG is seeded; on current kernels that is at most
                // about a second after boot, even without a hardware RNG (jitter entropy).
                ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed)
                    .map_err(|_| "no random source (getrandom) for a new identity".to_string())?;
                let identity = Identity::from_seed(&seed);
                wipe(&mut seed);
                (identity, IdentitySource::Generated)
            }
        };
        identity.write_seed(&handoff_dir.join(HANDOFF_SEED_FILE))?;
        Ok((identity, source))
    }

    /// The public key, 64 lowercase hex digits: the node id the registrar knows the node by.
    pub fn node_id(&self) -> String {
        hex(self.pair.public_key().as_ref())
    }

    /// The ed25519 signature over `body`, 128 lowercase hex digits.
    pub fn sign(&self, body: &[u8]) -> String {
        hex(self.pair.sign(body).as_ref())
    }

    /// `<64 hex>\n`, mode 0600, written atomically (temporary file + rename).
    fn write_seed(&self, path: &Path) -> Result<(), String> {
        let failed = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(failed)?;
        }
        let tmp = path.with_extension("seed.tmp");
        let _ = fs::remove_file(&tmp);
        let mut text = hex(&self.seed).into_bytes();
        text.push(b'\n');
        let written = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| {
                f.set_permissions(fs::Permissions::from_mode(0o600))?;
                f.write_all(&text)?;
                f.sync_all()
            })
            .and_then(|()| fs::rename(&tmp, path));
        wipe(&mut text);
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written.map_err(failed)
    }
}

/// A seed file holds 32 raw bytes, or 64 hex digits with an optional trailing newline. The
/// error never quotes the content: it is a secret.
fn parse_seed(bytes: &[u8]) -> Result<[u8; 32], String> {
    let mut seed = [0u8; 32];
    if bytes.len() == 32 {
        seed.copy_from_slice(bytes);
    } else {
        let text = bytes
            .strip_suffix(b"\n")
            .map(|t| t.strip_suffix(b"\r").unwrap_or(t))
            .unwrap_or(bytes);
        if text.len() != 64 {
            return Err(format!(
                "not a seed: expected 32 raw bytes or 64 hex digits, found {} bytes",
                bytes.len()
            ));
        }
        for (i, pair) in text.chunks_exact(2).enumerate() {
            match (hex_value(pair[0]), hex_value(pair[1])) {
                (Some(hi), Some(lo)) => seed[i] = hi << 4 | lo,
                _ => return Err("not a seed: 64 characters, but not all hex digits".into()),
            }
        }
    }
    if seed.iter().all(|b| *b == 0) {
        return Err("the seed is all zeros (a blank or wiped file?)".into());
    }
    Ok(seed)
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Best effort: overwrite copies of the seed we own before they are freed. (ring's key pair
/// keeps its expanded private key until freed; it lives as long as the boot does.)
fn wipe(bytes: &mut [u8]) {
    bytes.fill(0);
    std::hint::black_box(bytes);
}

/// The farm settings from the kernel command line that the registrar needs
/// (`cmdline::Settings`: `farmer_id`, `runmode`, `version`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Farm<'a> {
    pub farmer_id: Option<u32>,
    pub runmode: &'a str,
    pub version: Option<&'a str>,
}

#[derive(Serialize)]
struct Body<'a> {
    node_id: String,
    farmer_id: Option<u32>,
    runmode: &'a str,
    version: Option<&'a str>,
    kernel: &'a str,
    zos_netboot: &'static str,
    boot_unix: u64,
    sent_unix: u64,
    macs: Vec<&'a str>,
    network: Network<'a>,
}

#[derive(Serialize)]
struct Network<'a> {
    class: Option<crate::classify::Class>,
    topology: Option<crate::classify::Topology>,
    online: bool,
    interfaces: Vec<NetInterface<'a>>,
    preferred_family: Option<crate::probe::Family>,
}

#[derive(Serialize)]
struct NetInterface<'a> {
    name: &'a str,
    mac: &'a str,
    roles: &'a [crate::state::Role],
    /// "address/prefix".
    ipv4: Vec<String>,
    ipv6: Vec<String>,
}

/// The registration body: who the node is (id, farm, MACs, kernel) and what its network looks
/// like (from the state the network stage wrote). These exact bytes are what gets signed.
pub fn body(
    identity: &Identity,
    farm: &Farm,
    state: &State,
    kernel: &str,
    boot_unix: u64,
    now_unix: u64,
) -> Vec<u8> {
    let mut macs: Vec<&str> = Vec::new();
    for i in &state.interfaces {
        if !macs.contains(&i.mac.as_str()) {
            macs.push(&i.mac);
        }
    }
    let body = Body {
        node_id: identity.node_id(),
        farmer_id: farm.farmer_id,
        runmode: farm.runmode,
        version: farm.version,
        kernel,
        zos_netboot: env!("CARGO_PKG_VERSION"),
        boot_unix,
        sent_unix: now_unix,
        macs,
        network: Network {
            class: state.classification.as_ref().map(|c| c.class),
            topology: state.classification.as_ref().map(|c| c.topology),
            online: state.online,
            interfaces: state
                .interfaces
                .iter()
                .map(|i| NetInterface {
                    name: &i.name,
                    mac: &i.mac,
                    roles: &i.roles,
                    ipv4: i
                        .ipv4
                        .iter()
                        .map(|a| format!("{}/{}", a.address, a.prefix))
                        .collect(),
                    ipv6: i
                        .ipv6
                        .iter()
                        .map(|a| format!("{}/{}", a.address, a.prefix))
                        .collect(),
                })
                .collect(),
            preferred_family: state.preferred_family,
        },
    };
    // Plain structs with string keys: serde_json cannot fail on them.
    serde_json::to_vec(&body).expect("the registration body serialises")
}

/// What one answer (or its absence) means for the retry loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Registered {
        node_id: String,
        created: bool,
        registrations: u64,
    },
    /// Worth trying again later: no answer, a timeout, an overloaded or failing registrar.
    Retry(String),
    /// The registrar refused this request; sending it again would get the same answer.
    Fatal(String),
}

#[derive(Deserialize)]
struct Answer {
    node_id: String,
    created: bool,
    registrations: u64,
}

#[derive(Deserialize)]
struct ErrorAnswer {
    error: String,
}

/// Decides what an answer means. `status` None is a transport error (`body` then holds its
/// text): connection refused or reset, timeout, TLS failure.
pub fn classify_response(status: Option<u16>, body: &[u8]) -> Outcome {
    let Some(status) = status else {
        return Outcome::Retry(format!("no answer from the registrar: {}", printable(body)));
    };
    match status {
        200..=299 => match serde_json::from_slice::<Answer>(body) {
            Ok(a) => Outcome::Registered {
                node_id: a.node_id,
                created: a.created,
                registrations: a.registrations,
            },
            // A proxy or captive portal answering in the registrar's place: it may go away.
            Err(e) => Outcome::Retry(format!(
                "registrar answered {status} but not with a registration ({e}): {}",
                server_text(body)
            )),
        },
        408 | 429 | 500..=599 => Outcome::Retry(format!(
            "registrar busy or failing ({status}): {}",
            server_text(body)
        )),
        400..=499 => {
            let text = server_text(body);
            let hint = match status {
                401 if !text.contains("clock") => {
                    " (bad signature, or the node's clock is more than 10 minutes off)"
                }
                404 | 405 => " (check zos.registrar=: it must be the full endpoint URL)",
                _ => "",
            };
            Outcome::Fatal(format!(
                "registrar refused the registration ({status}): {text}{hint}"
            ))
        }
        _ => Outcome::Fatal(format!(
            "unexpected answer from the registrar ({status}): {}",
            server_text(body)
        )),
    }
}

/// The server's `{"error": "..."}` text, or the start of whatever it sent, made safe for the
/// console.
fn server_text(body: &[u8]) -> String {
    match serde_json::from_slice::<ErrorAnswer>(body) {
        Ok(e) => printable(e.error.as_bytes()),
        Err(_) => printable(body),
    }
}

/// Printable characters only (control characters and runs of whitespace become one space),
/// at most [`MAX_SERVER_TEXT`] characters.
fn printable(bytes: &[u8]) -> String {
    let head = &bytes[..bytes.len().min(4 * MAX_SERVER_TEXT)];
    let text = String::from_utf8_lossy(head);
    let words: Vec<&str> = text
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
        .collect();
    let text = words.join(" ");
    match text.char_indices().nth(MAX_SERVER_TEXT) {
        _ if text.is_empty() => "(no detail)".to_string(),
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// A successful registration, for the console and the state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Registration {
    pub node_id: String,
    /// True the first time the registrar saw this node id.
    pub created: bool,
    /// How many times the registrar has seen this node register, this one included.
    pub registrations: u64,
    pub attempts: u32,
    /// From the first attempt to the answer.
    pub ms: u64,
}

/// POSTs the signed `body` until the registrar takes it, a refusal, or `max_attempts` (0: no
/// limit) attempts. `post(body, headers)` sends one request and returns the status and body of
/// the answer, or the transport error. `on_attempt(n, reason)` is called after each failed
/// attempt `n` that will be retried, with why it failed and how long the wait is.
///
/// The body's `sent_unix` goes stale for the registrar after 10 minutes, so retries stop after
/// [`SIGNED_BODY_LIFETIME`]; the caller rebuilds the body and calls again if it wants more.
pub async fn register<F, Fut>(
    post: F,
    body: Vec<u8>,
    sig: String,
    node_id: String,
    policy: Backoff,
    max_attempts: u32,
    mut on_attempt: impl FnMut(u32, &str),
) -> Result<Registration, String>
where
    F: Fn(Vec<u8>, Vec<(String, String)>) -> Fut,
    Fut: Future<Output = Result<(u16, Vec<u8>), String>>,
{
    let start = Instant::now();
    let headers = vec![
        ("Content-Type".to_string(), "application/json".to_string()),
        ("X-Zos-Node-Id".to_string(), node_id.clone()),
        ("X-Zos-Signature".to_string(), sig),
    ];
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let answer = futures_lite::future::or(post(body.clone(), headers.clone()), async {
            smol::Timer::after(ATTEMPT_TIMEOUT).await;
            Err(format!("no answer within {} s", ATTEMPT_TIMEOUT.as_secs()))
        })
        .await;
        let outcome = match answer {
            Ok((status, answer)) => classify_response(Some(status), &answer),
            Err(e) => classify_response(None, e.as_bytes()),
        };
        let why = match outcome {
            Outcome::Registered {
                node_id: answered,
                created,
                registrations,
            } => {
                if answered != node_id {
                    return Err(format!(
                        "the registrar answered for another node ({}), not {node_id}",
                        printable(answered.as_bytes())
                    ));
                }
                return Ok(Registration {
                    node_id,
                    created,
                    registrations,
                    attempts: attempt,
                    ms: start.elapsed().as_millis() as u64,
                });
            }
            Outcome::Fatal(why) => return Err(why),
            Outcome::Retry(why) => why,
        };
        if max_attempts != 0 && attempt >= max_attempts {
            return Err(format!("{why}; gave up after {attempt} attempts"));
        }
        let wait = policy.delay(attempt - 1, fastrand::u32(..));
        if start.elapsed() + wait > SIGNED_BODY_LIFETIME {
            return Err(format!(
                "{why}; gave up after {attempt} attempts: the signed body is about to expire"
            ));
        }
        on_attempt(attempt, &format!("{why}; retrying in {}", human(wait)));
        smol::Timer::after(wait).await;
    }
}

/// What the registration stage did (`"registration"` in the state JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegistrationRecord {
    pub registrar: String,
    pub node_id: Option<String>,
    /// Where the identity came from (`loaded from FILE`, `generated for this boot`).
    pub identity: Option<String>,
    pub created: Option<bool>,
    pub registrations: Option<u64>,
    pub attempts: u32,
    pub ms: u64,
    /// Why it failed; null once registered.
    pub error: Option<String>,
}

impl RegistrationRecord {
    /// Nothing known yet but where to register.
    pub fn new(registrar: &str) -> Self {
        RegistrationRecord {
            registrar: registrar.to_string(),
            node_id: None,
            identity: None,
            created: None,
            registrations: None,
            attempts: 0,
            ms: 0,
            error: None,
        }
    }
}

/// The registration stage's inputs, paths resolved.
#[derive(Debug, Clone)]
pub struct RegisterConfig {
    /// `zos.registrar=`.
    pub registrar: String,
    /// `zos.identity=`.
    pub identity: Option<PathBuf>,
    /// Where `identity.seed` is left for the full OS.
    pub handoff_dir: PathBuf,
    /// `uname -r`.
    pub kernel: String,
    /// 0: until the signed body expires (PID 1); a lab run gives up sooner.
    pub max_attempts: u32,
}

/// The registration stage: identity, signed body, POST with retries. Never panics; the
/// outcome (or why it failed) is in the record and on the console.
pub async fn run(
    cfg: &RegisterConfig,
    farm: &Farm<'_>,
    state: &State,
    http: &crate::fetch::http::HttpOptions,
    console: &crate::report::Console,
) -> RegistrationRecord {
    let mut record = RegistrationRecord::new(&cfg.registrar);
    let (identity, source) =
        match Identity::load_or_generate(cfg.identity.as_deref(), &cfg.handoff_dir) {
            Ok(x) => x,
            Err(e) => {
                console.line(format_args!("registration failed: {e}"));
                record.error = Some(e);
                return record;
            }
        };
    let node_id = identity.node_id();
    console.line(format_args!("node id {node_id} ({source})"));
    record.node_id = Some(node_id.clone());
    record.identity = Some(source.to_string());

    let now = u64::try_from(crate::clock::now_unix_ms() / 1000).unwrap_or(0);
    let body = body(&identity, farm, state, &cfg.kernel, boot_unix(now), now);
    let sig = identity.sign(&body);
    let url = cfg.registrar.clone();
    let post = |body: Vec<u8>, headers: Vec<(String, String)>| {
        let url = url.clone();
        async move {
            use crate::fetch::http::{self as h, ErrorKind, Method};
            let hdrs: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            match h::request(Method::Post, &url, &hdrs, Some(&body), http).await {
                Ok(mut resp) => {
                    let status = resp.status();
                    let answer = resp.body(64 * 1024).await.map_err(|e| e.to_string())?;
                    Ok((status, answer))
                }
                Err(e) => match e.kind {
                    ErrorKind::Status { code, excerpt, .. } => Ok((code, excerpt.into_bytes())),
                    _ => Err(e.to_string()),
                },
            }
        }
    };
    let spread = Duration::from_millis(fastrand::u64(..FIRST_POST_SPREAD.as_millis() as u64));
    log::debug!(
        "registration: first POST in {} ms (spread)",
        spread.as_millis()
    );
    smol::Timer::after(spread).await;
    let attempts = std::cell::Cell::new(1u32);
    let start = Instant::now();
    let result = register(
        post,
        body,
        sig,
        node_id,
        Backoff::REGISTER,
        cfg.max_attempts,
        |n, why| {
            attempts.set(n + 1);
            console.line(format_args!("registration attempt {n} failed: {why}"));
        },
    )
    .await;
    record.attempts = attempts.get();
    record.ms = start.elapsed().as_millis() as u64;
    match result {
        Ok(r) => {
            console.line(format_args!(
                "registered as {} at {}: {} (registration #{}, {} attempt{}, {} ms)",
                r.node_id,
                cfg.registrar,
                if r.created { "new node" } else { "updated" },
                r.registrations,
                r.attempts,
                if r.attempts == 1 { "" } else { "s" },
                r.ms
            ));
            record.created = Some(r.created);
            record.registrations = Some(r.registrations);
            record.attempts = r.attempts;
        }
        Err(e) => {
            console.line(format_args!("registration failed: {e}"));
            record.error = Some(e);
        }
    }
    record
}

/// When the machine booted: now minus /proc/uptime (now if that cannot be read).
fn boot_unix(now_unix: u64) -> u64 {
    let up = fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split('.').next()?.parse::<u64>().ok())
        .unwrap_or(0);
    now_unix.saturating_sub(up)
}

fn human(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::{Case, Class, Classification, Topology};
    use crate::probe::Family;
    use crate::state::{Interface, Ipv4Entry, Ipv4Summary, Ipv6Entry, Ipv6Summary, Role, Timings};
    use std::cell::RefCell;
    use std::net::{Ipv4Addr, Ipv6Addr};

    // RFC 8032 §7.1, TEST 1 and TEST 2.
    const SEED1: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
    const PUB1: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
    const SIG1_EMPTY: &str = "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155\
                              5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b";
    const SEED2: &str = "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb";
    const PUB2: &str = "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c";
    const SIG2_72: &str = "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da\
                           085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00";

    fn seed(hex_text: &str) -> [u8; 32] {
        parse_seed(hex_text.as_bytes()).unwrap()
    }

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn verify(node_id: &str, body: &[u8], sig: &str) -> bool {
        let key = unhex(node_id);
        let sig = unhex(sig);
        assert_eq!((key.len(), sig.len()), (32, 64));
        ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, &key)
            .verify(body, &sig)
            .is_ok()
    }

    fn scratch_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "zos-register-{name}-{}-{}",
            std::process::id(),
            fastrand::u32(..)
        ));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn signatures_match_rfc8032_test_vectors() {
        let id = Identity::from_seed(&seed(SEED1));
        assert_eq!(id.node_id(), PUB1);
        assert_eq!(id.sign(b""), SIG1_EMPTY);
        let id = Identity::from_seed(&seed(SEED2));
        assert_eq!(id.node_id(), PUB2);
        assert_eq!(id.sign(&[0x72]), SIG2_72);
        assert!(verify(PUB2, &[0x72], SIG2_72));
        assert!(!verify(PUB2, &[0x73], SIG2_72));
    }

    #[test]
    fn seed_files_are_raw_or_hex_and_anything_else_is_refused() {
        let raw = seed(SEED1);
        assert_eq!(parse_seed(&raw).unwrap(), raw);
        assert_eq!(parse_seed(format!("{SEED1}\n").as_bytes()).unwrap(), raw);
        assert_eq!(parse_seed(format!("{SEED1}\r\n").as_bytes()).unwrap(), raw);
        assert_eq!(
            parse_seed(SEED1.to_uppercase().as_bytes()).unwrap(),
            raw,
            "uppercase hex"
        );
        for bad in [
            &b""[..],
            &[7u8; 31][..],
            &[7u8; 33][..],
            format!("{SEED1}\n\n").as_bytes(),
            format!(" {SEED1}").as_bytes(),
            SEED1.replace('d', "g").as_bytes(),
            &[0u8; 32][..],
            "0".repeat(64).as_bytes(),
        ] {
            assert!(parse_seed(bad).is_err(), "{bad:?}");
        }
        let e = parse_seed(&[b'x'; 40]).unwrap_err();
        assert!(e.contains("40 bytes") && !e.contains("xxx"), "{e}");
    }

    #[test]
    fn a_seed_file_is_loaded_and_handed_off_with_mode_0600() {
        let dir = scratch_dir("load");
        let disk = dir.join("disk-seed");
        fs::write(&disk, format!("{SEED1}\n")).unwrap();
        let handoff = dir.join("run");
        let (id, source) = Identity::load_or_generate(Some(&disk), &handoff).unwrap();
        assert_eq!(id.node_id(), PUB1);
        assert_eq!(source, IdentitySource::Loaded(disk.clone()));
        let seed_file = handoff.join(HANDOFF_SEED_FILE);
        assert_eq!(
            fs::read_to_string(&seed_file).unwrap(),
            format!("{SEED1}\n")
        );
        let mode = fs::metadata(&seed_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // Raw bytes work too, and the hand-off file is rewritten, not appended to.
        fs::write(&disk, seed(SEED2)).unwrap();
        let (id, _) = Identity::load_or_generate(Some(&disk), &handoff).unwrap();
        assert_eq!(id.node_id(), PUB2);
        assert_eq!(
            fs::read_to_string(&seed_file).unwrap(),
            format!("{SEED2}\n")
        );
        assert!(!format!("{id:?}").contains(SEED2));
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_bad_or_missing_seed_file_is_an_error_naming_it_and_is_left_alone() {
        let dir = scratch_dir("bad");
        let handoff = dir.join("run");
        let disk = dir.join("garbage");
        fs::write(&disk, "not a seed at all\n").unwrap();
        let e = Identity::load_or_generate(Some(&disk), &handoff).unwrap_err();
        assert!(e.contains(&disk.display().to_string()), "{e}");
        assert!(e.contains("not replacing it"), "{e}");
        assert_eq!(fs::read_to_string(&disk).unwrap(), "not a seed at all\n");
        let missing = dir.join("missing");
        let e = Identity::load_or_generate(Some(&missing), &handoff).unwrap_err();
        assert!(e.contains(&missing.display().to_string()), "{e}");
        assert!(!missing.exists());
        assert!(!handoff.join(HANDOFF_SEED_FILE).exists());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn without_a_seed_file_a_random_identity_is_generated_and_handed_off() {
        let dir = scratch_dir("gen");
        let (a, source) = Identity::load_or_generate(None, &dir).unwrap();
        assert_eq!(source, IdentitySource::Generated);
        let (b, _) = Identity::load_or_generate(None, &dir).unwrap();
        assert_ne!(a.node_id(), b.node_id());
        // The hand-off file holds the latest identity and loads back as the same node.
        let (c, _) =
            Identity::load_or_generate(Some(&dir.join(HANDOFF_SEED_FILE)), &dir.join("x")).unwrap();
        assert_eq!(c.node_id(), b.node_id());
        assert_eq!(a.node_id().len(), 64);
        assert_eq!(a.sign(b"x").len(), 128);
        fs::remove_dir_all(dir).unwrap();
    }

    fn interface(name: &str, mac: &str, roles: Vec<Role>, v4: Option<Ipv4Addr>) -> Interface {
        Interface {
            name: name.into(),
            mac: mac.into(),
            role: roles[0],
            carrier: true,
            mtu: 1500,
            ipv4: v4
                .map(|address| Ipv4Entry {
                    address,
                    prefix: 24,
                    source: "dhcp".into(),
                    lease_secs: 3600,
                    server: Ipv4Addr::new(10, 1, 0, 1),
                })
                .into_iter()
                .collect(),
            ipv6: vec![Ipv6Entry {
                address: Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x23),
                prefix: 64,
                source: "slaac".into(),
            }],
            dhcp4: "BOUND".into(),
            lease: None,
            dhcp_hostname: None,
            vlan: None,
            roles,
            slaac: None,
            dhcp4_servers: Vec::new(),
        }
    }

    fn state() -> State {
        State {
            version: "0.1.0".into(),
            online: true,
            error: None,
            classification: Some(Classification {
                class: Class::Ipv6,
                topology: Topology::DualNic,
                case: Case::DcTwoNics,
                public_nic: Some("eth1".into()),
                headline: "IPv6 node".into(),
                advice: vec![],
                warnings: vec![],
            }),
            interfaces: vec![
                interface(
                    "eth0",
                    "02:00:00:00:00:01",
                    vec![Role::Oob],
                    Some(Ipv4Addr::new(10, 1, 0, 23)),
                ),
                interface("eth1", "02:00:00:00:00:02", vec![Role::Public], None),
            ],
            ipv4: Ipv4Summary::default(),
            ipv6: Ipv6Summary::default(),
            dns: vec![],
            probes: vec![],
            preferred_family: Some(Family::Ipv6),
            search: vec![],
            ntp: vec![],
            timings_ms: Timings::default(),
            fetch: None,
            registration: None,
            machine: None,
        }
    }

    const FARM: Farm = Farm {
        farmer_id: Some(42),
        runmode: "test",
        version: Some("v3"),
    };

    #[test]
    fn body_names_the_node_its_farm_macs_and_network_class() {
        let id = Identity::from_seed(&seed(SEED1));
        let bytes = body(
            &id,
            &FARM,
            &state(),
            "6.1.0-test",
            1_764_000_000,
            1_764_000_042,
        );
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["node_id"], PUB1);
        assert_eq!(v["farmer_id"], 42);
        assert_eq!(v["runmode"], "test");
        assert_eq!(v["version"], "v3");
        assert_eq!(v["kernel"], "6.1.0-test");
        assert_eq!(v["zos_netboot"], env!("CARGO_PKG_VERSION"));
        assert_eq!(v["boot_unix"], 1_764_000_000u64);
        assert_eq!(v["sent_unix"], 1_764_000_042u64);
        assert_eq!(
            v["macs"],
            serde_json::json!(["02:00:00:00:00:01", "02:00:00:00:00:02"])
        );
        let net = &v["network"];
        assert_eq!(net["class"], "ipv6");
        assert_eq!(net["topology"], "dual-nic");
        assert_eq!(net["online"], true);
        assert_eq!(net["preferred_family"], "ipv6");
        assert_eq!(net["interfaces"][0]["name"], "eth0");
        assert_eq!(net["interfaces"][0]["roles"], serde_json::json!(["oob"]));
        assert_eq!(net["interfaces"][0]["ipv4"][0], "10.1.0.23/24");
        assert_eq!(net["interfaces"][1]["ipv4"], serde_json::json!([]));
        assert_eq!(net["interfaces"][1]["ipv6"][0], "2001:db8:1::23/64");
        // Same inputs, same bytes: what is signed is reproducible.
        let again = body(
            &id,
            &FARM,
            &state(),
            "6.1.0-test",
            1_764_000_000,
            1_764_000_042,
        );
        assert_eq!(bytes, again);
        assert!(verify(&id.node_id(), &bytes, &id.sign(&bytes)));
    }

    #[test]
    fn body_without_farm_or_classification_has_nulls() {
        let id = Identity::from_seed(&seed(SEED1));
        let mut s = state();
        s.classification = None;
        s.preferred_family = None;
        let farm = Farm {
            farmer_id: None,
            runmode: "prod",
            version: None,
        };
        let v: serde_json::Value =
            serde_json::from_slice(&body(&id, &farm, &s, "k", 1, 2)).unwrap();
        assert!(v["farmer_id"].is_null() && v["version"].is_null());
        assert!(v["network"]["class"].is_null() && v["network"]["topology"].is_null());
        assert!(v["network"]["preferred_family"].is_null());
    }

    #[test]
    fn transport_errors_overload_and_server_failures_are_retried() {
        assert!(matches!(
            classify_response(None, b"connection reset by peer"),
            Outcome::Retry(m) if m.contains("connection reset by peer")
        ));
        for status in [408, 429, 500, 502, 503, 504] {
            assert!(
                matches!(
                    classify_response(Some(status), br#"{"error":"busy"}"#),
                    Outcome::Retry(m) if m.contains("busy") && m.contains(&status.to_string())
                ),
                "{status}"
            );
        }
        // A 200 that is not a registration (a captive portal's page) is retried too.
        assert!(matches!(
            classify_response(Some(200), b"<html>login</html>"),
            Outcome::Retry(m) if m.contains("<html>login</html>")
        ));
    }

    #[test]
    fn client_errors_are_fatal_with_the_servers_words() {
        assert_eq!(
            classify_response(Some(400), br#"{"error":"farmer_id is not a number"}"#),
            Outcome::Fatal(
                "registrar refused the registration (400): farmer_id is not a number".into()
            )
        );
        assert!(matches!(
            classify_response(Some(401), br#"{"error":"bad signature"}"#),
            Outcome::Fatal(m) if m.contains("bad signature") && m.contains("clock")
        ));
        assert!(matches!(
            classify_response(Some(404), b"<h1>Not Found</h1>"),
            Outcome::Fatal(m) if m.contains("<h1>Not Found</h1>") && m.contains("zos.registrar=")
        ));
        assert!(matches!(
            classify_response(Some(302), b""),
            Outcome::Fatal(_)
        ));
        assert!(matches!(
            classify_response(Some(101), b""),
            Outcome::Fatal(_)
        ));
    }

    #[test]
    fn server_text_is_printable_and_bounded() {
        let nasty = br#"{"error":"line1\n\u001b[31mred\u0007\r\n  end"}"#;
        let Outcome::Fatal(m) = classify_response(Some(422), nasty) else {
            panic!("not fatal")
        };
        assert_eq!(
            m,
            "registrar refused the registration (422): line1 [31mred end"
        );
        let long = format!(r#"{{"error":"{}"}}"#, "é".repeat(5000));
        let Outcome::Fatal(m) = classify_response(Some(400), long.as_bytes()) else {
            panic!("not fatal")
        };
        assert!(m.chars().count() < 220 && m.ends_with('…'), "{m}");
        let Outcome::Fatal(m) = classify_response(Some(400), &[0xff, 0xfe, 0, 1, 2]) else {
            panic!("not fatal")
        };
        assert!(m.chars().all(|c| !c.is_control()), "{m:?}");
        assert!(matches!(
            classify_response(Some(403), b""),
            Outcome::Fatal(m) if m.ends_with("(no detail)")
        ));
    }

    #[test]
    fn a_2xx_registration_is_parsed() {
        assert_eq!(
            classify_response(
                Some(201),
                br#"{"node_id":"ab","created":true,"registrations":1}"#
            ),
            Outcome::Registered {
                node_id: "ab".into(),
                created: true,
                registrations: 1
            }
        );
        assert_eq!(
            classify_response(
                Some(200),
                br#"{"node_id":"ab","created":false,"registrations":7,"extra":[]}"#
            ),
            Outcome::Registered {
                node_id: "ab".into(),
                created: false,
                registrations: 7
            }
        );
        assert!(matches!(
            classify_response(Some(201), br#"{"node_id":"ab","created":"yes"}"#),
            Outcome::Retry(_)
        ));
    }

    const TINY: Backoff = Backoff {
        initial: Duration::from_millis(30),
        cap: Duration::from_secs(1),
        jitter_pct: 20,
    };

    type Reply = Result<(u16, Vec<u8>), String>;

    /// A registrar stand-in: answers from a script, checks the signature and headers of every
    /// request, and records when each one came.
    struct FakeRegistrar {
        script: RefCell<Vec<Reply>>,
        seen: RefCell<Vec<Instant>>,
    }

    impl FakeRegistrar {
        fn new(mut script: Vec<Result<(u16, &str), &str>>) -> FakeRegistrar {
            script.reverse();
            FakeRegistrar {
                script: RefCell::new(
                    script
                        .into_iter()
                        .map(|r| {
                            r.map(|(s, b)| (s, b.as_bytes().to_vec()))
                                .map_err(String::from)
                        })
                        .collect(),
                ),
                seen: RefCell::new(Vec::new()),
            }
        }

        async fn post(&self, body: Vec<u8>, headers: Vec<(String, String)>) -> Reply {
            self.seen.borrow_mut().push(Instant::now());
            let header = |name: &str| {
                headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.clone())
                    .unwrap()
            };
            assert_eq!(header("content-type"), "application/json");
            assert!(verify(
                &header("x-zos-node-id"),
                &body,
                &header("x-zos-signature")
            ));
            self.script
                .borrow_mut()
                .pop()
                .expect("more requests than scripted")
        }
    }

    fn run(
        registrar: &FakeRegistrar,
        max_attempts: u32,
    ) -> (Result<Registration, String>, Vec<(u32, String)>) {
        let id = Identity::from_seed(&seed(SEED1));
        let bytes = body(&id, &FARM, &state(), "k", 1, 2);
        let sig = id.sign(&bytes);
        let mut calls = Vec::new();
        let result = smol::block_on(register(
            |b, h| registrar.post(b, h),
            bytes,
            sig,
            id.node_id(),
            TINY,
            max_attempts,
            |n, why| calls.push((n, why.to_string())),
        ));
        (result, calls)
    }

    fn ok(created: bool, registrations: u64) -> String {
        format!(r#"{{"node_id":"{PUB1}","created":{created},"registrations":{registrations}}}"#)
    }

    #[test]
    fn three_503s_then_success_takes_four_attempts_with_growing_waits() {
        let created = ok(true, 1);
        let busy = r#"{"error":"overloaded"}"#;
        let registrar = FakeRegistrar::new(vec![
            Ok((503, busy)),
            Ok((503, busy)),
            Ok((503, busy)),
            Ok((201, &created)),
        ]);
        let (result, calls) = run(&registrar, 10);
        let r = result.unwrap();
        assert_eq!((r.attempts, r.created, r.registrations), (4, true, 1));
        assert_eq!(r.node_id, PUB1);
        assert_eq!(calls.len(), 3);
        assert!(
            calls[0].1.contains("(503): overloaded; retrying in"),
            "{calls:?}"
        );
        assert_eq!(calls.iter().map(|c| c.0).collect::<Vec<_>>(), [1, 2, 3]);
        // The waits announced: 30 ms, 60 ms, 120 ms ± 20 % (ranges that cannot overlap), and
        // each really waited before the next request.
        let waits: Vec<u64> = calls
            .iter()
            .map(|(_, why)| {
                let ms = why.rsplit("retrying in ").next().unwrap();
                ms.trim_end_matches(" ms").parse().unwrap()
            })
            .collect();
        for (wait, base) in waits.iter().zip([30, 60, 120]) {
            assert!(
                *wait >= base * 8 / 10 && *wait <= base * 12 / 10,
                "{waits:?}"
            );
        }
        assert!(waits[0] < waits[1] && waits[1] < waits[2], "{waits:?}");
        let seen = registrar.seen.borrow();
        for (pair, wait) in seen.windows(2).zip(&waits) {
            assert!(
                pair[1] - pair[0] >= Duration::from_millis(*wait),
                "{waits:?}"
            );
        }
        assert!(r.ms >= 168, "{}", r.ms);
    }

    #[test]
    fn a_400_is_not_retried_and_its_message_surfaces() {
        let registrar = FakeRegistrar::new(vec![Ok((400, r#"{"error":"macs must be a list"}"#))]);
        let (result, calls) = run(&registrar, 10);
        let e = result.unwrap_err();
        assert!(e.contains("(400): macs must be a list"), "{e}");
        assert!(calls.is_empty());
        assert_eq!(registrar.seen.borrow().len(), 1);
    }

    #[test]
    fn transport_errors_are_retried_and_a_repeat_registration_is_not_created() {
        let updated = ok(false, 5);
        let registrar = FakeRegistrar::new(vec![
            Err("connect: connection refused"),
            Err("timed out reading the answer"),
            Ok((200, &updated)),
        ]);
        let (result, calls) = run(&registrar, 0);
        let r = result.unwrap();
        assert_eq!((r.attempts, r.created, r.registrations), (3, false, 5));
        assert!(calls[0].1.contains("connection refused"), "{calls:?}");
        assert!(calls[1].1.contains("timed out"), "{calls:?}");
    }

    #[test]
    fn retries_stop_at_max_attempts_with_the_last_reason() {
        let registrar = FakeRegistrar::new(vec![Ok((502, "bad gateway")), Ok((429, ""))]);
        let (result, calls) = run(&registrar, 2);
        let e = result.unwrap_err();
        assert!(
            e.contains("(429)") && e.contains("gave up after 2 attempts"),
            "{e}"
        );
        assert_eq!(calls.len(), 1);
    }

    #[test]
    fn an_answer_for_another_node_is_an_error() {
        let other = r#"{"node_id":"00ff","created":true,"registrations":1}"#;
        let registrar = FakeRegistrar::new(vec![Ok((201, other))]);
        let e = run(&registrar, 3).0.unwrap_err();
        assert!(e.contains("another node (00ff)"), "{e}");
    }
}
