//! A small HTTP/1.1 client over TCP or TLS: what fetching boot artifacts and talking to the hub
//! need and nothing more — one request per connection, no cookies, no compression, no proxies.
//!
//! The sans-IO half holds every protocol decision and is unit-tested without a socket:
//! [`request_head`] writes a request, [`parse_head`] reads a response head, [`framing`] decides
//! how the body ends (RFC 9112 §6.3), [`ChunkedDecoder`] undoes chunked coding whatever the read
//! boundaries, [`parse_content_range`] checks a 206, [`resolve_location`] follows a redirect
//! (RFC 3986 §5.2). The driver, [`request`], only moves bytes and keeps time: DNS through
//! `probe::resolve`, TCP through `probe::connect_happy`, TLS through futures-rustls (SNI = the
//! URL's host), a timeout per step, at most [`MAX_REDIRECTS`] redirects.
use crate::console::human;
pub use crate::http1::{is_tchar, request_head, url_of, Method};
use std::fmt;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_lite::{future, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use smol::Timer;

use crate::net::probe::{self, Family, ProbeConfig, Target};

/// RFC 9110 §15.4 leaves the limit to the client; 5 is what browsers' old guidance and Ignition
/// use, and more than a hub → CDN → mirror chain needs.
pub const MAX_REDIRECTS: u8 = 5;
/// The largest response head we accept; the hub's are well under 1 KiB.
const MAX_HEAD: usize = 16 * 1024;
/// One read from the connection; also the most a body chunk handed out can be. Fixed: memory
/// does not grow with the size of what is downloaded.
const READ_BUF: usize = 128 * 1024;
const MAX_HEADERS: usize = 100;
/// A chunk-size line with extensions, or one trailer field, longer than this is refused.
const MAX_CHUNK_LINE: usize = 4096;
/// All trailer fields of a chunked body together (each line is bounded by [`MAX_CHUNK_LINE`]
/// too): an endless stream of short trailer lines would otherwise never end the response.
const MAX_TRAILERS: usize = 16 * 1024;
/// How much of an error response's body is read to show the server's message.
const EXCERPT_READ: usize = 1024;
/// How much of it is shown.
const EXCERPT_CHARS: usize = 200;

// ---------------------------------------------------------------------------------------------
// Sans-IO: URLs, requests, response heads, bodies.

/// A response's status line and header fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    pub reason: String,
    /// In arrival order, names as sent; look them up with [`ResponseHead::header`].
    pub headers: Vec<(String, String)>,
}

/// Where the head ends: just past the empty line. LF alone is accepted as a line end
/// (RFC 9112 §2.2).
fn head_end(buf: &[u8]) -> Option<usize> {
    buf.iter().enumerate().find_map(|(i, &b)| {
        if b != b'\n' {
            return None;
        }
        match buf.get(i + 1..) {
            Some([b'\n', ..]) => Some(i + 2),
            Some([b'\r', b'\n', ..]) => Some(i + 3),
            _ => None,
        }
    })
}

/// Parses a response head at the start of `buf`. `Ok(None)`: not complete yet, read more.
/// `Ok(Some((head, n)))`: the head took `n` bytes; the body starts at `buf[n]`.
pub fn parse_head(buf: &[u8]) -> Result<Option<(ResponseHead, usize)>, String> {
    let Some(end) = head_end(buf) else {
        return if buf.len() >= MAX_HEAD {
            Err(format!("response head longer than {} KiB", MAX_HEAD / 1024))
        } else {
            Ok(None)
        };
    };
    if end > MAX_HEAD {
        return Err(format!("response head longer than {} KiB", MAX_HEAD / 1024));
    }
    let mut lines = buf[..end]
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let status_line = lines.next().unwrap_or_default();
    let status = probe::http_status(status_line)?;
    // "HTTP/1.1 200 OK": the reason phrase is whatever follows the code (RFC 9112 §4).
    let reason = String::from_utf8_lossy(status_line.get(13..).unwrap_or_default()).into_owned();
    let mut headers = Vec::new();
    for line in lines.filter(|l| !l.is_empty()) {
        if line[0] == b' ' || line[0] == b'\t' {
            // RFC 9112 §5.2: obsolete line folding; nothing we talk to sends it.
            return Err("response uses obsolete header line folding".into());
        }
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or_else(|| format!("header line without ':': \"{}\"", shown(line)))?;
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        // RFC 9112 §5.1: no whitespace between the name and the colon.
        if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
            return Err(format!("bad header name: \"{}\"", shown(name)));
        }
        if headers.len() == MAX_HEADERS {
            return Err(format!("more than {MAX_HEADERS} header fields"));
        }
        let value = String::from_utf8_lossy(value.trim_ascii()).into_owned();
        headers.push((String::from_utf8_lossy(name).into_owned(), value));
    }
    Ok(Some((
        ResponseHead {
            status,
            reason,
            headers,
        },
        end,
    )))
}

/// At most 60 bytes of `b`, escaped, for an error message.
fn shown(b: &[u8]) -> String {
    b[..b.len().min(60)].escape_ascii().to_string()
}

impl ResponseHead {
    /// The first field named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Content-Length. Repeated or list values must all agree (RFC 9112 §6.3 item 5).
    pub fn content_length(&self) -> Result<Option<u64>, String> {
        let mut length = None;
        for v in self.all("content-length").flat_map(|v| v.split(',')) {
            let v = v.trim();
            let n = v
                .parse::<u64>()
                .ok()
                .filter(|_| v.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| format!("bad Content-Length {v:?}"))?;
            if length.is_some_and(|l| l != n) {
                return Err("conflicting Content-Length values".into());
            }
            length = Some(n);
        }
        Ok(length)
    }

    /// Whether the body is chunked. We ask for no coding (`Accept-Encoding: identity`, no TE), so
    /// any other transfer coding is refused rather than handed out as if it were the content.
    pub fn chunked(&self) -> Result<bool, String> {
        let codings: Vec<String> = self
            .all("transfer-encoding")
            .flat_map(|v| v.split(','))
            .map(|c| c.trim().to_ascii_lowercase())
            .filter(|c| !c.is_empty())
            .collect();
        match codings.as_slice() {
            [] => Ok(false),
            [c] if c == "chunked" => Ok(true),
            _ => Err(format!(
                "unsupported Transfer-Encoding {:?}",
                codings.join(", ")
            )),
        }
    }

    /// The Content-Range of a 206, if any.
    pub fn content_range(&self) -> Result<Option<ContentRange>, String> {
        self.header("content-range")
            .map(parse_content_range)
            .transpose()
    }

    /// The Date header as sent (RFC 9110 §6.6.1); [`crate::clock::parse_http_date`] turns it into Unix time,
    /// e.g. to notice a node clock that makes certificates look not yet valid.
    pub fn date(&self) -> Option<&str> {
        self.header("date")
    }

    pub fn location(&self) -> Option<&str> {
        self.header("location")
    }

    /// Retry-After in its delay-seconds form (RFC 9110 §10.2.3); the date form is ignored.
    pub fn retry_after(&self) -> Option<Duration> {
        let v = self.header("retry-after")?.trim();
        v.parse().ok().map(Duration::from_secs)
    }
}

/// How a response body ends (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// HEAD, 1xx, 204 and 304 have no body, whatever the headers say.
    Empty,
    Length(u64),
    Chunked,
    /// No length given: the body is everything until the server closes.
    UntilClose,
}

pub fn framing(method: Method, head: &ResponseHead) -> Result<Framing, String> {
    if method == Method::Head || matches!(head.status, 100..=199 | 204 | 304) {
        return Ok(Framing::Empty);
    }
    // Transfer-Encoding overrides Content-Length (RFC 9112 §6.3 item 3).
    if head.chunked()? {
        return Ok(Framing::Chunked);
    }
    Ok(match head.content_length()? {
        Some(n) => Framing::Length(n),
        None => Framing::UntilClose,
    })
}

/// A satisfied byte range from a 206 (RFC 9110 §14.4): bytes `first..=last` of a representation
/// `complete` bytes long (None: "*", unknown).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentRange {
    pub first: u64,
    pub last: u64,
    pub complete: Option<u64>,
}

/// Parses `bytes FIRST-LAST/COMPLETE` or `bytes FIRST-LAST/*`. The unsatisfied form
/// (`bytes */N`, sent with a 416) is an error here.
pub fn parse_content_range(v: &str) -> Result<ContentRange, String> {
    let bad = || format!("bad Content-Range {v:?}");
    let number = |s: &str| {
        s.parse::<u64>()
            .ok()
            .filter(|_| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(bad)
    };
    let (unit, rest) = v.trim().split_once(' ').ok_or_else(bad)?;
    if !unit.eq_ignore_ascii_case("bytes") {
        return Err(bad());
    }
    let (range, complete) = rest.trim_start().split_once('/').ok_or_else(bad)?;
    let (first, last) = range.split_once('-').ok_or_else(bad)?;
    let (first, last) = (number(first)?, number(last)?);
    let complete = match complete {
        "*" => None,
        n => Some(number(n)?),
    };
    if first > last || complete.is_some_and(|c| last >= c) {
        return Err(bad());
    }
    Ok(ContentRange {
        first,
        last,
        complete,
    })
}

/// Undoes chunked transfer coding (RFC 9112 §7.1), one byte of state at a time, so a chunk-size
/// line or a CRLF split across reads is no special case. Extensions and trailers are skipped.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChunkedDecoder {
    state: ChunkState,
    /// Bytes of the current size line or trailer line, bounded by [`MAX_CHUNK_LINE`].
    line: usize,
    /// Bytes of all trailer lines, bounded by [`MAX_TRAILERS`].
    trailers: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Reading the hex chunk size.
    Size {
        size: u64,
        digits: u8,
    },
    /// After the size: `;name=value` extensions (or whitespace) up to the line end.
    Extension {
        size: u64,
    },
    /// Saw CR ending the size line.
    SizeLf {
        size: u64,
    },
    Data {
        left: u64,
    },
    /// The CRLF after a chunk's data.
    DataCr,
    DataLf,
    /// After the last chunk: a trailer field, or the empty line that ends the message.
    TrailerStart,
    TrailerLine,
    EndLf,
    Done,
}

impl Default for ChunkState {
    fn default() -> Self {
        ChunkState::Size { size: 0, digits: 0 }
    }
}

impl ChunkedDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// The terminating empty line has been read; bytes after it are not part of the body.
    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Decodes from `input`, appending chunk data to `out`. Returns how many input bytes were
    /// used: all of them, unless the message ended inside `input`.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, String> {
        use ChunkState::*;
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            self.state = match self.state {
                Done => return Ok(i),
                Data { left } => {
                    let n = (input.len() - i).min(usize::try_from(left).unwrap_or(usize::MAX));
                    out.extend_from_slice(&input[i..i + n]);
                    i += n;
                    let left = left - n as u64;
                    self.state = if left == 0 { DataCr } else { Data { left } };
                    continue;
                }
                Size { size, digits } => match (b as char).to_digit(16) {
                    Some(d) if digits < 16 => Size {
                        size: size << 4 | u64::from(d),
                        digits: digits + 1,
                    },
                    Some(_) => return Err("chunk size does not fit in 64 bits".into()),
                    None if digits == 0 => {
                        return Err(format!("bad chunk size line (byte {:?})", b as char))
                    }
                    None => match b {
                        b'\r' => SizeLf { size },
                        b'\n' => self.size_line_done(size),
                        b';' | b' ' | b'\t' => Extension { size },
                        _ => return Err(format!("bad chunk size line (byte {:?})", b as char)),
                    },
                },
                Extension { size } => match b {
                    b'\r' => SizeLf { size },
                    b'\n' => self.size_line_done(size),
                    _ => Extension { size },
                },
                SizeLf { size } if b == b'\n' => self.size_line_done(size),
                DataCr if b == b'\r' => DataLf,
                DataCr | DataLf if b == b'\n' => Size { size: 0, digits: 0 },
                DataCr | DataLf => return Err("chunk data longer than its size".into()),
                TrailerStart => match b {
                    b'\r' => EndLf,
                    b'\n' => Done,
                    _ => TrailerLine,
                },
                TrailerLine if b == b'\n' => {
                    self.line = 0;
                    TrailerStart
                }
                TrailerLine => TrailerLine,
                EndLf if b == b'\n' => Done,
                SizeLf { .. } | EndLf => return Err("CR without LF in chunked framing".into()),
            };
            i += 1;
            if matches!(
                self.state,
                Size { .. } | Extension { .. } | SizeLf { .. } | TrailerLine
            ) {
                self.line += 1;
                if self.line > MAX_CHUNK_LINE {
                    return Err("chunk size or trailer line too long".into());
                }
            }
            if matches!(self.state, TrailerStart | TrailerLine) {
                self.trailers += 1;
                if self.trailers > MAX_TRAILERS {
                    return Err(format!("chunked trailers longer than {MAX_TRAILERS} bytes"));
                }
            }
        }
        Ok(i)
    }

    fn size_line_done(&mut self, size: u64) -> ChunkState {
        self.line = 0;
        match size {
            0 => ChunkState::TrailerStart,
            left => ChunkState::Data { left },
        }
    }
}

/// Where a redirect goes: `location` resolved against `base` (RFC 9110 §10.2.2, RFC 3986 §5.2):
/// absolute, scheme-relative (`//host/p`), absolute-path, relative-path and query-only forms.
pub fn resolve_location(base: &Target, location: &str) -> Result<Target, String> {
    let fail = |e: String| format!("redirect to {location:?}: {e}");
    let joined = crate::url::Url::parse_absolute(&url_of(base))
        .and_then(|b| b.join(location.trim()))
        .map_err(fail)?;
    probe::parse_url(&joined).map_err(fail)
}

/// An error body made fit for one console line: printable, whitespace collapsed, shortened.
pub fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out = String::new();
    for word in text.split(|c: char| c.is_whitespace() || c.is_control()) {
        if word.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
        if out.chars().count() > EXCERPT_CHARS {
            let cut: String = out.chars().take(EXCERPT_CHARS).collect();
            return format!("{cut}…");
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Errors.

/// The step of a request that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Url,
    Dns,
    Connect,
    Tls,
    Send,
    /// Waiting for and reading the response head.
    Head,
    Body,
    Redirect,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::Url => "URL",
            Step::Dns => "DNS",
            Step::Connect => "connect",
            Step::Tls => "TLS",
            Step::Send => "sending the request",
            Step::Head => "response head",
            Step::Body => "response body",
            Step::Redirect => "redirect",
        })
    }
}

/// What went wrong in that step.
#[derive(Debug)]
pub enum ErrorKind {
    /// Our side: a bad URL or header, a refused redirect.
    Invalid(String),
    Dns(String),
    Timeout(Duration),
    Io(io::Error),
    /// The handshake failed: certificate not trusted, expired, for another name, or an alert.
    Tls(String),
    /// The certificate starts being valid after our clock's now: the clock is behind (a dead
    /// RTC). `not_before` (Unix seconds) is a lower bound for the true time that the caller
    /// may step the clock forward to (forward only: a forged certificate can then delay the
    /// boot, never make an expired certificate acceptable).
    TlsNotYetValid {
        message: String,
        not_before: u64,
    },
    /// The server's bytes are not HTTP we accept.
    Protocol(String),
    /// A 4xx or 5xx answer, with the start of the server's message.
    Status {
        code: u16,
        reason: String,
        excerpt: String,
        retry_after: Option<Duration>,
    },
    TooManyRedirects,
}

/// A failed request: which URL, which step, the peer if one was reached, and why.
#[derive(Debug)]
pub struct HttpError {
    pub url: String,
    pub step: Step,
    pub address: Option<IpAddr>,
    pub kind: ErrorKind,
}

impl HttpError {
    fn new(url: &str, step: Step, kind: ErrorKind) -> Self {
        HttpError {
            url: url.to_string(),
            step,
            address: None,
            kind,
        }
    }

    fn at(mut self, address: Option<IpAddr>) -> Self {
        self.address = address;
        self
    }

    /// The server's status, when it answered 4xx/5xx.
    pub fn status(&self) -> Option<u16> {
        match self.kind {
            ErrorKind::Status { code, .. } => Some(code),
            _ => None,
        }
    }

    /// Worth trying again: the network or the server may do better in a moment (timeouts,
    /// resets, refused connections, DNS, 5xx, 408 and 429). A 4xx, a certificate problem or a
    /// protocol violation will be the same next time.
    pub fn is_transient(&self) -> bool {
        match &self.kind {
            ErrorKind::Timeout(_) | ErrorKind::Io(_) | ErrorKind::Dns(_) => true,
            ErrorKind::Status { code, .. } => matches!(code, 408 | 429 | 500..=599),
            ErrorKind::Invalid(_)
            | ErrorKind::Tls(_)
            | ErrorKind::TlsNotYetValid { .. }
            | ErrorKind::Protocol(_)
            | ErrorKind::TooManyRedirects => false,
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.url, self.step)?;
        if let Some(ip) = self.address {
            write!(f, " ({ip})")?;
        }
        match &self.kind {
            ErrorKind::Invalid(e) | ErrorKind::Dns(e) | ErrorKind::Protocol(e) => {
                write!(f, ": {e}")
            }
            ErrorKind::Tls(e) | ErrorKind::TlsNotYetValid { message: e, .. } => write!(f, ": {e}"),
            ErrorKind::Timeout(d) => write!(f, ": no progress within {}", human(*d)),
            ErrorKind::Io(e) => write!(f, ": {}", io_reason(e)),
            ErrorKind::Status {
                code,
                reason,
                excerpt,
                ..
            } => {
                write!(f, ": server answered {code}")?;
                if !reason.is_empty() {
                    write!(f, " {reason}")?;
                }
                if !excerpt.is_empty() {
                    write!(f, ": \"{excerpt}\"")?;
                }
                Ok(())
            }
            ErrorKind::TooManyRedirects => write!(f, ": more than {MAX_REDIRECTS} redirects"),
        }
    }
}

impl std::error::Error for HttpError {}

fn io_reason(e: &io::Error) -> String {
    use io::ErrorKind as K;
    match e.kind() {
        K::ConnectionRefused => "connection refused".into(),
        K::ConnectionReset => "connection reset".into(),
        K::UnexpectedEof => match e.get_ref() {
            Some(inner) => format!("connection closed early: {inner}"),
            None => "connection closed early".into(),
        },
        _ => e.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// The driver.

/// Per-step time limits. None bounds a whole download: a large file on a slow link may take
/// long, as long as bytes keep coming.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// The TCP race over all addresses of one family (`probe::connect_happy`).
    pub connect: Duration,
    pub tls: Duration,
    /// Request sent → complete response head.
    pub first_byte: Duration,
    /// Between two reads of the body (and for sending the request).
    pub idle: Duration,
    /// A whole body read with [`Response::body`] (manifests, signatures, registrar answers:
    /// small by their limit): a server trickling a byte before each idle timeout must not hold
    /// the boot for ever (issue 17, point 7). Downloads have their rate floor instead.
    pub whole_body: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            tls: Duration::from_secs(10),
            first_byte: Duration::from_secs(15),
            idle: Duration::from_secs(20),
            whole_body: Duration::from_secs(60),
        }
    }
}

/// How [`request`] reaches servers.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// DNS servers (from DHCP/RA), per-try timeout and tries: handed to `probe::resolve`.
    pub dns: ProbeConfig,
    /// Families tried in this order, each resolved and raced on its own; the probes' preferred
    /// family first. A family left out is not used.
    pub families: Vec<Family>,
    /// Names answered without DNS (a static hosts table: tests, a pinned hub address).
    pub hosts: Vec<(String, IpAddr)>,
    /// Trust for https:// URLs (`tls::client_config`); None refuses them.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub timeouts: Timeouts,
    pub max_redirects: u8,
}

impl HttpOptions {
    /// Both families, `preferred` first, default timeouts, no TLS yet.
    pub fn new(dns: ProbeConfig, preferred: Family) -> Self {
        let other = match preferred {
            Family::Ipv4 => Family::Ipv6,
            Family::Ipv6 => Family::Ipv4,
        };
        HttpOptions {
            dns,
            families: vec![preferred, other],
            hosts: Vec::new(),
            tls: None,
            timeouts: Timeouts::default(),
            max_redirects: MAX_REDIRECTS,
        }
    }
}

/// A TCP or TLS connection.
trait Connection: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Connection for T {}

/// A response whose head has been read; the body is read with [`Response::chunk`].
pub struct Response {
    /// The URL that answered (after redirects).
    pub url: String,
    pub head: ResponseHead,
    pub address: IpAddr,
    pub redirects: u8,
    pub framing: Framing,
    conn: Box<dyn Connection>,
    /// Raw bytes from the connection; `buf[start..end]` not yet handed out or decoded.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Decoded chunked data, handed out from here.
    decoded: Vec<u8>,
    decoder: ChunkedDecoder,
    /// Body bytes still due under `Framing::Length`.
    left: u64,
    done: bool,
    idle: Duration,
    /// See [`Timeouts::whole_body`].
    whole_body: Duration,
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("url", &self.url)
            .field("head", &self.head)
            .field("address", &self.address)
            .field("framing", &self.framing)
            .finish_non_exhaustive()
    }
}

impl Response {
    pub fn status(&self) -> u16 {
        self.head.status
    }

    /// The next piece of the body (at most 16 KiB, borrowed until the next call), or None at
    /// its end. A connection closed before the framing says the body ends is an error
    /// (`ErrorKind::Io` with `UnexpectedEof`): the body was cut, not finished.
    pub async fn chunk(&mut self) -> Result<Option<&[u8]>, HttpError> {
        loop {
            if self.done || self.framing == Framing::Empty {
                self.done = true;
                return Ok(None);
            }
            if self.start == self.end && !self.fill().await? {
                return Ok(None);
            }
            let pending = self.start..self.end;
            match self.framing {
                Framing::Empty | Framing::UntilClose => {
                    self.start = self.end;
                    return Ok(Some(&self.buf[pending]));
                }
                Framing::Length(_) => {
                    let n = pending
                        .len()
                        .min(usize::try_from(self.left).unwrap_or(usize::MAX));
                    self.left -= n as u64;
                    self.done = self.left == 0;
                    self.start += n;
                    return Ok(Some(&self.buf[pending.start..pending.start + n]));
                }
                Framing::Chunked => {
                    self.decoded.clear();
                    let used = self
                        .decoder
                        .decode(&self.buf[pending], &mut self.decoded)
                        .map_err(|e| self.error(Step::Body, ErrorKind::Protocol(e)))?;
                    self.start += used;
                    self.done = self.decoder.is_done();
                    if !self.decoded.is_empty() {
                        return Ok(Some(&self.decoded));
                    }
                }
            }
        }
    }

    /// The whole body, refused when longer than `limit` (API answers, not artifacts).
    pub async fn body(&mut self, limit: usize) -> Result<Vec<u8>, HttpError> {
        let deadline = self.whole_body;
        let mut out = Vec::new();
        let read = within(deadline, async {
            while let Some(piece) = self.chunk().await? {
                if out.len() + piece.len() > limit {
                    let e = format!("response body longer than {limit} bytes");
                    return Err(self.error(Step::Body, ErrorKind::Protocol(e)));
                }
                out.extend_from_slice(piece);
            }
            Ok(())
        })
        .await;
        match read {
            Some(Ok(())) => Ok(out),
            Some(Err(e)) => Err(e),
            None => Err(self.error(Step::Body, ErrorKind::Timeout(deadline))),
        }
    }

    /// Reads more raw bytes. False: the connection ended where the framing allows it.
    async fn fill(&mut self) -> Result<bool, HttpError> {
        self.start = 0;
        self.end = 0;
        let read = within(self.idle, self.conn.read(&mut self.buf)).await;
        let n = match read {
            None => return Err(self.error(Step::Body, ErrorKind::Timeout(self.idle))),
            // A TLS peer that closes without close_notify: rustls reports UnexpectedEof. That
            // only matters when the close is what ends the body; then it is a normal end.
            Some(Err(e))
                if e.kind() == io::ErrorKind::UnexpectedEof
                    && self.framing == Framing::UntilClose =>
            {
                0
            }
            Some(Err(e)) => return Err(self.error(Step::Body, ErrorKind::Io(e))),
            Some(Ok(n)) => n,
        };
        if n > 0 {
            self.end = n;
            return Ok(true);
        }
        self.done = true;
        let cut = match self.framing {
            Framing::Empty | Framing::UntilClose => return Ok(false),
            Framing::Length(total) => {
                format!("after {} of {total} body bytes", total - self.left)
            }
            Framing::Chunked => "inside the chunked body".to_string(),
        };
        let e = io::Error::new(io::ErrorKind::UnexpectedEof, cut);
        Err(self.error(Step::Body, ErrorKind::Io(e)))
    }

    fn error(&self, step: Step, kind: ErrorKind) -> HttpError {
        HttpError::new(&self.url, step, kind).at(Some(self.address))
    }
}

/// `Some(output)`, or None if `d` passed first.
async fn within<T>(d: Duration, fut: impl Future<Output = T>) -> Option<T> {
    future::or(async { Some(fut.await) }, async {
        Timer::after(d).await;
        None
    })
    .await
}

/// Sends one request and follows redirects (301, 302, 303, 307, 308; 303 and a redirected POST
/// become a GET, RFC 9110 §15.4). Returns once a 2xx head has arrived; the body is read from the
/// [`Response`]. A 4xx/5xx is an error carrying the start of the server's message. An https URL
/// never redirects to http.
pub async fn request(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    opts: &HttpOptions,
) -> Result<Response, HttpError> {
    let mut target =
        probe::parse_url(url).map_err(|e| HttpError::new(url, Step::Url, ErrorKind::Invalid(e)))?;
    let (mut method, mut body) = (method, body);
    let mut redirects = 0u8;
    loop {
        let mut resp = exchange(method, &target, headers, body, opts).await?;
        resp.redirects = redirects;
        let status = resp.status();
        if matches!(status, 301 | 302 | 303 | 307 | 308) {
            let here = resp.url.clone();
            let fail = |kind| HttpError::new(&here, Step::Redirect, kind).at(Some(resp.address));
            let location = resp
                .head
                .location()
                .ok_or_else(|| fail(ErrorKind::Protocol(format!("{status} without a Location"))))?;
            let next =
                resolve_location(&target, location).map_err(|e| fail(ErrorKind::Invalid(e)))?;
            if target.https && !next.https {
                let e = format!("refusing to follow https to {}", url_of(&next));
                return Err(fail(ErrorKind::Invalid(e)));
            }
            if redirects >= opts.max_redirects {
                return Err(fail(ErrorKind::TooManyRedirects));
            }
            redirects += 1;
            if status == 303 || (matches!(status, 301 | 302) && method == Method::Post) {
                (method, body) = (Method::Get, None);
            }
            log::debug!("{here}: {status} → {}", url_of(&next));
            target = next;
            continue;
        }
        if status >= 400 {
            return Err(status_error(resp).await);
        }
        if !(200..300).contains(&status) {
            let e = format!("unexpected status {status} {}", resp.head.reason);
            return Err(resp.error(Step::Head, ErrorKind::Protocol(e)));
        }
        return Ok(resp);
    }
}

/// A 4xx/5xx as an error, with the start of the body if it comes quickly.
async fn status_error(mut resp: Response) -> HttpError {
    let mut body = Vec::new();
    let read = within(resp.idle, async {
        while let Ok(Some(piece)) = resp.chunk().await {
            body.extend_from_slice(piece);
            if body.len() >= EXCERPT_READ {
                break;
            }
        }
    });
    read.await;
    let kind = ErrorKind::Status {
        code: resp.head.status,
        reason: resp.head.reason.clone(),
        excerpt: excerpt(&body),
        retry_after: resp.head.retry_after(),
    };
    resp.error(Step::Head, kind)
}

/// One request on one new connection, up to the end of the response head.
async fn exchange(
    method: Method,
    t: &Target,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    opts: &HttpOptions,
) -> Result<Response, HttpError> {
    let url = url_of(t);
    let head = request_head(method, t, headers, body.map(<[u8]>::len))
        .map_err(|e| HttpError::new(&url, Step::Url, ErrorKind::Invalid(e)))?;
    let (mut conn, ip) = connect(t, &url, opts).await?;
    let err = |step, kind| HttpError::new(&url, step, kind).at(Some(ip));
    let tm = opts.timeouts;
    log::debug!("{} {url} via {ip}", method.as_str());
    let send = async {
        conn.write_all(&head).await?;
        if let Some(b) = body {
            conn.write_all(b).await?;
        }
        conn.flush().await
    };
    within(tm.idle, send)
        .await
        .ok_or_else(|| err(Step::Send, ErrorKind::Timeout(tm.idle)))?
        .map_err(|e| err(Step::Send, ErrorKind::Io(e)))?;

    let mut buf = vec![0u8; READ_BUF];
    let mut end = 0;
    let read_head = async {
        loop {
            if end == buf.len() {
                let e = format!("response head longer than {} KiB", MAX_HEAD / 1024);
                return Err(ErrorKind::Protocol(e));
            }
            let n = conn.read(&mut buf[end..]).await.map_err(ErrorKind::Io)?;
            if n == 0 {
                let e = match end {
                    0 => "connection closed without a response".to_string(),
                    _ => "connection closed inside the response head".to_string(),
                };
                return Err(ErrorKind::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    e,
                )));
            }
            end += n;
            let Some((head, used)) = parse_head(&buf[..end]).map_err(ErrorKind::Protocol)? else {
                continue;
            };
            // RFC 9110 §15.2: interim 1xx answers come before the real one; skip them.
            if (100..200).contains(&head.status) {
                buf.copy_within(used..end, 0);
                end -= used;
                continue;
            }
            return Ok((head, used));
        }
    };
    let (head, used) = within(tm.first_byte, read_head)
        .await
        .ok_or_else(|| err(Step::Head, ErrorKind::Timeout(tm.first_byte)))?
        .map_err(|k| err(Step::Head, k))?;
    let framing = framing(method, &head).map_err(|e| err(Step::Head, ErrorKind::Protocol(e)))?;
    log::debug!("{url}: {} {} ({framing:?})", head.status, head.reason);
    Ok(Response {
        url,
        head,
        address: ip,
        redirects: 0,
        framing,
        conn,
        buf,
        start: used,
        end,
        decoded: Vec::with_capacity(READ_BUF),
        decoder: ChunkedDecoder::new(),
        left: match framing {
            Framing::Length(n) => n,
            _ => 0,
        },
        done: framing == Framing::Length(0),
        idle: tm.idle,
        whole_body: tm.whole_body,
    })
}

/// TCP to the target, one family at a time in the configured order (each family raced over its
/// addresses by `probe::connect_happy`), then TLS for https.
async fn connect(
    t: &Target,
    url: &str,
    opts: &HttpOptions,
) -> Result<(Box<dyn Connection>, IpAddr), HttpError> {
    let tm = opts.timeouts;
    let literal = t.host.parse::<IpAddr>().ok();
    let families: Vec<Family> = match literal {
        Some(ip) => vec![Family::of(&ip)],
        None => opts.families.clone(),
    };
    let mut dns_errors = Vec::new();
    let mut connect_error = None;
    let mut tcp = None;
    for family in families {
        let fixed: Vec<IpAddr> = opts
            .hosts
            .iter()
            .filter(|(name, ip)| name.eq_ignore_ascii_case(&t.host) && Family::of(ip) == family)
            .map(|&(_, ip)| ip)
            .collect();
        let addrs = match (literal, fixed.is_empty()) {
            (Some(ip), _) => vec![ip],
            (None, false) => fixed,
            (None, true) => match probe::resolve(&t.host, family, &opts.dns).await {
                Ok(a) => a,
                Err(e) => {
                    log::debug!("{url}: {e}");
                    dns_errors.push(e);
                    continue;
                }
            },
        };
        match probe::connect_happy(&addrs, t.port, tm.connect).await {
            Ok(c) => {
                tcp = Some(c);
                break;
            }
            Err(e) => {
                log::debug!("{url}: {family}: {e}");
                connect_error = Some(e);
            }
        }
    }
    let (tcp, ip) = match (tcp, connect_error) {
        (Some(c), _) => c,
        (None, Some(e)) => {
            let kind = match e.kind() {
                io::ErrorKind::TimedOut => ErrorKind::Timeout(tm.connect),
                _ => ErrorKind::Io(e),
            };
            return Err(HttpError::new(url, Step::Connect, kind));
        }
        (None, None) => {
            let e = match dns_errors.is_empty() {
                true => format!("no address family allowed for {}", t.host),
                false => dns_errors.join("; "),
            };
            return Err(HttpError::new(url, Step::Dns, ErrorKind::Dns(e)));
        }
    };
    if !t.https {
        return Ok((Box::new(tcp), ip));
    }
    let err = |kind| HttpError::new(url, Step::Tls, kind).at(Some(ip));
    let config = opts.tls.clone().ok_or_else(|| {
        err(ErrorKind::Invalid(
            "https URL but no CA certificates loaded".into(),
        ))
    })?;
    let name = rustls::pki_types::ServerName::try_from(t.host.clone())
        .map_err(|e| err(ErrorKind::Invalid(format!("{}: {e}", t.host))))?;
    let connector = futures_rustls::TlsConnector::from(config);
    let tls = within(tm.tls, connector.connect(name, tcp))
        .await
        .ok_or_else(|| err(ErrorKind::Timeout(tm.tls)))?
        .map_err(|e| err(tls_error(e, &t.host)))?;
    Ok((Box::new(tls), ip))
}

/// futures-rustls hands rustls errors over inside an io::Error; take them out and say what a
/// farmer can check.
fn tls_error(e: io::Error, host: &str) -> ErrorKind {
    use rustls::CertificateError as C;
    let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
        return ErrorKind::Io(e);
    };
    if let rustls::Error::InvalidCertificate(C::NotValidYetContext { time, not_before }) = tls {
        return ErrorKind::TlsNotYetValid {
            message: format!(
                "certificate of {host} is not valid before {}, and this node's clock says {} — \
                 the clock is behind (RTC/BIOS time)",
                crate::clock::format_unix(not_before.as_secs() as i64),
                crate::clock::format_unix(time.as_secs() as i64)
            ),
            not_before: not_before.as_secs(),
        };
    }
    ErrorKind::Tls(match tls {
        rustls::Error::InvalidCertificate(c) => match c {
            C::UnknownIssuer | C::BadSignature => {
                format!("certificate of {host} is not signed by a trusted CA ({c:?})")
            }
            C::Expired
            | C::NotValidYet
            | C::ExpiredContext { .. }
            | C::NotValidYetContext { .. } => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                format!(
                    "certificate of {host} is not valid now ({tls}); this node's clock says \
                     {now} s since 1970 — check the clock (RTC/BIOS time)"
                )
            }
            C::NotValidForName | C::NotValidForNameContext { .. } => {
                format!("certificate is not valid for {host} ({tls})")
            }
            _ => format!("certificate of {host} rejected: {tls}"),
        },
        // What this build leaves out (see tls.rs) shows up as these two alerts.
        rustls::Error::AlertReceived(rustls::AlertDescription::ProtocolVersion) => {
            format!("{host} does not speak TLS 1.3 ({tls})")
        }
        rustls::Error::AlertReceived(rustls::AlertDescription::HandshakeFailure) => format!(
            "{host} accepts none of our TLS 1.3 settings (AES-GCM, P-256 key exchange) ({tls})"
        ),
        other => format!("handshake failed: {other}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str) -> Target {
        probe::parse_url(url).expect("test URL")
    }

    fn head(raw: &str) -> ResponseHead {
        let (h, n) = parse_head(raw.as_bytes())
            .expect("valid head")
            .expect("complete head");
        assert_eq!(n, raw.len());
        h
    }

    #[test]
    fn request_head_has_host_range_and_closes() {
        let t = target("https://hub.grid.tf/flist/zos.efi?x=1");
        let req = request_head(Method::Get, &t, &[("Range", "bytes=100-")], None).unwrap();
        let req = String::from_utf8(req).unwrap();
        assert!(
            req.starts_with("GET /flist/zos.efi?x=1 HTTP/1.1\r\nHost: hub.grid.tf\r\n"),
            "{req}"
        );
        for line in [
            "Range: bytes=100-\r\n",
            "Accept-Encoding: identity\r\n",
            "User-Agent: zos-netboot/",
        ] {
            assert!(req.contains(line), "{req}");
        }
        assert!(req.ends_with("Connection: close\r\n\r\n"));
        assert!(!req.contains("Content-Length"));
    }

    #[test]
    fn request_head_post_carries_length_and_caller_accept_replaces_ours() {
        let t = target("http://[2001:db8::1]:8080/api");
        let hdrs = [("Accept", "application/json")];
        let req = request_head(Method::Post, &t, &hdrs, Some(12)).unwrap();
        let req = String::from_utf8(req).unwrap();
        assert!(req.starts_with("POST /api HTTP/1.1\r\nHost: [2001:db8::1]:8080\r\n"));
        assert!(req.contains("Content-Length: 12\r\n"));
        assert_eq!(req.matches("Accept:").count(), 1, "{req}");
        let empty = request_head(Method::Post, &t, &[], None).unwrap();
        assert!(String::from_utf8(empty)
            .unwrap()
            .contains("Content-Length: 0\r\n"));
    }

    #[test]
    fn request_head_refuses_injection_and_reserved_headers() {
        let t = target("http://h.test/");
        for bad in [
            ("X-A", "1\r\nEvil: 1"),
            ("Bad Name", "v"),
            ("", "v"),
            ("Host", "other"),
            ("content-length", "5"),
            ("Transfer-Encoding", "chunked"),
        ] {
            assert!(
                request_head(Method::Get, &t, &[bad], None).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn head_parses_status_reason_and_headers() {
        let h = head(
            "HTTP/1.1 206 Partial Content\r\nContent-Length: 500\r\nContent-Range: bytes \
             100-599/1000\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nX-Empty:\r\n\r\n",
        );
        assert_eq!((h.status, h.reason.as_str()), (206, "Partial Content"));
        assert_eq!(h.content_length(), Ok(Some(500)));
        assert_eq!(h.header("x-empty"), Some(""));
        assert_eq!(h.header("CONTENT-length"), Some("500"));
        assert_eq!(
            h.content_range(),
            Ok(Some(ContentRange {
                first: 100,
                last: 599,
                complete: Some(1000)
            }))
        );
        assert_eq!(
            h.date().and_then(crate::clock::parse_http_date),
            Some(784_111_777)
        );
        assert_eq!(framing(Method::Get, &h), Ok(Framing::Length(500)));
        assert_eq!(framing(Method::Head, &h), Ok(Framing::Empty));
    }

    #[test]
    fn head_waits_for_the_empty_line_and_leaves_the_body() {
        let raw = b"HTTP/1.0 200 OK\nServer: x\n\nbody";
        assert_eq!(parse_head(&raw[..20]), Ok(None));
        let (h, n) = parse_head(raw).unwrap().unwrap();
        assert_eq!((h.status, &raw[n..]), (200, &b"body"[..]));
        assert_eq!(framing(Method::Get, &h), Ok(Framing::UntilClose));
        let (h, _) = parse_head(b"HTTP/1.1 204 No Content\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(framing(Method::Get, &h), Ok(Framing::Empty));
    }

    #[test]
    fn head_rejects_malformed_fields_and_huge_heads() {
        for bad in [
            "HTTP/1.1 200 OK\r\nNo colon here\r\n\r\n",
            "HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
            "HTTP/1.1 200 OK\r\nName : x\r\n\r\n",
            "HTTP/1.1 200 OK\r\nA: b\r\n folded\r\n\r\n",
            "ICY 200 OK\r\n\r\n",
        ] {
            assert!(parse_head(bad.as_bytes()).is_err(), "{bad:?}");
        }
        let mut huge = b"HTTP/1.1 200 OK\r\n".to_vec();
        huge.resize(MAX_HEAD + 10, b'a');
        assert!(parse_head(&huge).is_err());
    }

    #[test]
    fn content_length_must_agree_and_transfer_codings_are_checked() {
        let h = head("HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\nContent-Length: 5\r\n\r\n");
        assert_eq!(h.content_length(), Ok(Some(5)));
        for bad in ["5, 6", "-1", "+5", "0x10", ""] {
            let h = head(&format!("HTTP/1.1 200 OK\r\nContent-Length: {bad}\r\n\r\n"));
            assert!(h.content_length().is_err(), "{bad:?}");
        }
        let h = head("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n");
        assert_eq!(framing(Method::Get, &h), Ok(Framing::Chunked));
        let h = head("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
        assert!(framing(Method::Get, &h).is_err());
    }

    #[test]
    fn content_range_forms() {
        let r = parse_content_range("bytes 0-0/1").unwrap();
        assert_eq!((r.first, r.last, r.complete), (0, 0, Some(1)));
        let r = parse_content_range("bytes 10-19/*").unwrap();
        assert_eq!((r.first, r.last, r.complete), (10, 19, None));
        for bad in [
            "bytes */1000",
            "bytes 5-4/10",
            "bytes 0-10/10",
            "items 0-1/2",
            "bytes 0-/10",
            "bytes -1-2/10",
            "bytes 0-1",
            "bytes 1 - 2/10",
        ] {
            assert!(parse_content_range(bad).is_err(), "{bad:?}");
        }
    }

    const CHUNKED: &[u8] =
        b"5;name=v\r\nhello\r\n1\r\n \r\nB\r\nchunked wor\r\n2\nld\n0\r\nX-Trailer: 1\r\n\r\nNEXT";

    #[test]
    fn chunked_decoder_decodes_and_stops_at_the_end() {
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        let used = d.decode(CHUNKED, &mut out).unwrap();
        assert_eq!(out, b"hello chunked world");
        assert!(d.is_done());
        assert_eq!(&CHUNKED[used..], b"NEXT");
    }

    #[test]
    fn chunked_decoder_is_indifferent_to_read_boundaries() {
        let end = CHUNKED.len() - b"NEXT".len();
        for split in 0..CHUNKED.len() {
            let mut d = ChunkedDecoder::new();
            let mut out = Vec::new();
            let a = d.decode(&CHUNKED[..split], &mut out).unwrap();
            assert_eq!(a, split.min(end), "split {split}");
            let b = d.decode(&CHUNKED[a..], &mut out).unwrap();
            assert_eq!(out, b"hello chunked world", "split {split}");
            assert_eq!(a + b, end, "split {split}");
        }
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        for b in CHUNKED.chunks(1) {
            d.decode(b, &mut out).unwrap();
        }
        assert_eq!(out, b"hello chunked world");
    }

    #[test]
    fn chunked_decoder_rejects_bad_framing() {
        for bad in [
            &b"x\r\n"[..],
            b"\r\n",
            b"3\r\nabcd\r\n",
            b"3\rx",
            b"11111111111111111\r\n",
            b"0\r\n\rX",
        ] {
            let mut d = ChunkedDecoder::new();
            assert!(d.decode(bad, &mut Vec::new()).is_err(), "{bad:?}");
        }
        let mut long_ext = b"1;".to_vec();
        long_ext.resize(MAX_CHUNK_LINE + 10, b'a');
        assert!(ChunkedDecoder::new()
            .decode(&long_ext, &mut Vec::new())
            .is_err());
    }

    /// Issue 17 point 7: short trailer lines without end are cut at MAX_TRAILERS, fed in
    /// pieces as a server would send them; a few ordinary trailers still end the body.
    #[test]
    fn endless_chunked_trailers_are_bounded() {
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        assert_eq!(d.decode(b"2\r\nhi\r\n0\r\n", &mut out), Ok(10));
        let line = b"X-Pad: aaaaaaaaaaaaaaaaaaaaaaa\r\n";
        let mut result = Ok(0);
        for _ in 0..(2 * MAX_TRAILERS / line.len()) {
            result = d.decode(line, &mut out);
            if result.is_err() {
                break;
            }
        }
        assert!(result.unwrap_err().contains("trailers longer"));
        let mut d = ChunkedDecoder::new();
        let ok = b"2\r\nhi\r\n0\r\nX-A: 1\r\nX-B: 2\r\n\r\n";
        assert_eq!(d.decode(ok, &mut Vec::new()), Ok(ok.len()));
        assert!(d.is_done());
    }

    #[test]
    fn redirects_resolve_like_rfc_3986() {
        let base = target("https://hub.grid.tf/a/b/c.efi?v=1");
        for (loc, want) in [
            ("https://cdn.test/x", "https://cdn.test/x"),
            ("HTTP://cdn.test:8080", "http://cdn.test:8080/"),
            ("//mirror.test/y", "https://mirror.test/y"),
            ("/root", "https://hub.grid.tf/root"),
            ("d.efi", "https://hub.grid.tf/a/b/d.efi"),
            ("../d.efi?z=2#frag", "https://hub.grid.tf/a/d.efi?z=2"),
            ("./", "https://hub.grid.tf/a/b/"),
            ("..", "https://hub.grid.tf/a/"),
            ("../../../../x", "https://hub.grid.tf/x"),
            ("?v=2", "https://hub.grid.tf/a/b/c.efi?v=2"),
            (" /spaced ", "https://hub.grid.tf/spaced"),
        ] {
            let got = resolve_location(&base, loc).unwrap();
            assert_eq!(url_of(&got), want, "{loc:?}");
        }
        let v6 = target("http://[2001:db8::1]:81/p/q");
        assert_eq!(
            url_of(&resolve_location(&v6, "r").unwrap()),
            "http://[2001:db8::1]:81/p/r"
        );
        assert!(resolve_location(&base, "ftp://x.test/").is_err());
        assert!(resolve_location(&base, "/a b").is_err());
    }

    #[test]
    fn excerpt_is_one_short_printable_line() {
        assert_eq!(
            excerpt(b"<h1>Not\r\n  Found</h1>\n\x00flist\tmissing"),
            "<h1>Not Found</h1> flist missing"
        );
        let long = excerpt(&[b'a'; 500]);
        assert_eq!(long.chars().count(), EXCERPT_CHARS + 1);
        assert!(long.ends_with('…'));
        assert_eq!(excerpt(b""), "");
    }

    /// The Date header goes through the one HTTP-date parser, `clock::parse_http_date`.
    #[test]
    fn http_dates() {
        use crate::clock::parse_http_date;
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(
            parse_http_date("Tue, 25 Nov 2025 10:00:00 GMT"),
            Some(1_764_064_800)
        );
        assert_eq!(
            parse_http_date("Thu, 29 Feb 2024 23:59:59 GMT"),
            Some(1_709_251_199)
        );
        // RFC 9110 §5.6.7: recipients accept the two obsolete forms too.
        for old in ["Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994"] {
            assert_eq!(parse_http_date(old), Some(784_111_777), "{old:?}");
        }
        for bad in [
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 06 Foo 1994 08:49:37 GMT",
        ] {
            assert_eq!(parse_http_date(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn transient_errors_are_the_retryable_ones() {
        let status = |code| {
            HttpError::new(
                "u",
                Step::Head,
                ErrorKind::Status {
                    code,
                    reason: String::new(),
                    excerpt: String::new(),
                    retry_after: None,
                },
            )
        };
        for code in [408, 429, 500, 503] {
            assert!(status(code).is_transient(), "{code}");
        }
        for code in [400, 403, 404, 410, 416] {
            assert!(!status(code).is_transient(), "{code}");
        }
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert!(HttpError::new("u", Step::Body, ErrorKind::Io(reset)).is_transient());
        let tls = ErrorKind::Tls("untrusted".into());
        assert!(!HttpError::new("u", Step::Tls, tls).is_transient());
    }

    #[test]
    fn tls_errors_say_what_to_check() {
        let wrap = |e: rustls::Error| io::Error::new(io::ErrorKind::InvalidData, e);
        let text = |k: ErrorKind| match k {
            ErrorKind::Tls(t) => t,
            other => panic!("{other:?}"),
        };
        let untrusted = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        assert!(text(tls_error(wrap(untrusted), "hub.test")).contains("not signed by a trusted CA"));
        let expired = rustls::Error::InvalidCertificate(rustls::CertificateError::Expired);
        assert!(text(tls_error(wrap(expired), "hub.test")).contains("check the clock"));
        let old = rustls::Error::AlertReceived(rustls::AlertDescription::ProtocolVersion);
        assert!(text(tls_error(wrap(old), "hub.test")).contains("does not speak TLS 1.3"));
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert!(matches!(tls_error(reset, "hub.test"), ErrorKind::Io(_)));
    }

    #[test]
    fn status_error_message_names_url_code_and_server_text() {
        let e = HttpError::new(
            "https://hub.test/x",
            Step::Head,
            ErrorKind::Status {
                code: 404,
                reason: "Not Found".into(),
                excerpt: "no such flist".into(),
                retry_after: None,
            },
        )
        .at(Some("10.0.0.1".parse().unwrap()));
        assert_eq!(
            e.to_string(),
            "https://hub.test/x: response head (10.0.0.1): server answered 404 Not Found: \
             \"no such flist\""
        );
    }
}
