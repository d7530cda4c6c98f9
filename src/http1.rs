//! HTTP/1.1 request heads (RFC 9110, RFC 9112): the one builder under both the probes
//! (`net::probe`) and the fetch client (`fetch::http`).
use crate::url::Target;

/// The request methods we send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
        }
    }
}

/// `t`'s authority as the Host header and URLs write it (RFC 9110 §7.2): the port only when it
/// is not the scheme's default, an IPv6 literal in brackets (RFC 3986 §3.2.2).
pub fn authority(t: &Target) -> String {
    let host = if t.host.contains(':') {
        format!("[{}]", t.host)
    } else {
        t.host.clone()
    };
    match (t.https, t.port) {
        (false, 80) | (true, 443) => host,
        (_, port) => format!("{host}:{port}"),
    }
}

/// `t` written back out as a URL (normalised: lowercase scheme and host, no fragment).
pub fn url_of(t: &Target) -> String {
    let scheme = if t.https { "https" } else { "http" };
    format!("{scheme}://{}{}", authority(t), t.path)
}

/// Headers the driver sets itself; a caller may not send its own.
const RESERVED: [&str; 4] = ["host", "connection", "content-length", "transfer-encoding"];

/// A request head (RFC 9112 §3). `t` comes from `probe::parse_url`, which keeps spaces and line
/// breaks out of the path and host; caller headers are checked here for the same reason.
/// `Accept-Encoding: identity` because bodies are hashed as received; `Connection: close`
/// because every request gets its own connection.
pub fn request_head(
    method: Method,
    t: &Target,
    headers: &[(&str, &str)],
    body_len: Option<usize>,
) -> Result<Vec<u8>, String> {
    let defaults = [
        (
            "User-Agent",
            concat!("zos-netboot/", env!("CARGO_PKG_VERSION")),
        ),
        ("Accept", "*/*"),
        ("Accept-Encoding", "identity"),
    ];
    for (name, value) in headers {
        if name.is_empty() || !name.bytes().all(is_tchar) {
            return Err(format!("header name {name:?} is not a valid token"));
        }
        if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            return Err(format!("header {name}: value contains a line break or NUL"));
        }
        if RESERVED.iter().any(|r| r.eq_ignore_ascii_case(name)) {
            return Err(format!("header {name} is set by the HTTP client itself"));
        }
    }
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: {}\r\n",
        method.as_str(),
        t.path,
        authority(t)
    );
    let overridden = |d: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(d));
    for (name, value) in defaults.iter().filter(|(n, _)| !overridden(n)) {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    // RFC 9110 §8.6: a POST without a body still says so.
    match (body_len, method) {
        (Some(n), _) => head.push_str(&format!("Content-Length: {n}\r\n")),
        (None, Method::Post) => head.push_str("Content-Length: 0\r\n"),
        (None, _) => {}
    }
    head.push_str("Connection: close\r\n\r\n");
    Ok(head.into_bytes())
}

/// RFC 9110 §5.6.2 token characters.
pub fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}
