//! URLs from the wire and the command line: one parser, one RFC 3986 resolver.
//!
//! Every URL the node uses comes from somewhere it does not trust (the kernel command line a
//! farmer typed, a hub's manifest, a redirect): [`parse_url`] splits an absolute `http(s)` URL
//! into what a connection needs ([`Target`]); [`Url`] resolves references against a base
//! (RFC 3986 §5.2) for manifests and redirects. Both refuse what is not plain `http(s)`.
use std::net::Ipv6Addr;

/// No URL longer than this is accepted.
pub const MAX_URL_LEN: usize = 2048;

/// A URL to probe, split into what the probe needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub url: String,
    pub https: bool,
    /// Lowercase host name, or an IP literal (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    /// Path and query, always starting with '/'; the fragment is dropped (RFC 3986 §3.5: it is
    /// never sent).
    pub path: String,
}

/// Parses an `http://` or `https://` URL. Strict on purpose: the URL comes from the kernel
/// command line, and a typo should be reported here, not as a strange network failure later.
pub fn parse_url(url: &str) -> Result<Target, String> {
    let bad = |why: &str| format!("URL {url:?}: {why}");
    if let Some(c) = url.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(bad(&match c {
            ' ' => "contains a space".to_string(),
            c if c.is_control() => format!("contains control character {c:?}"),
            c => format!("contains non-ASCII character {c:?} (percent-encode it)"),
        }));
    }
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| bad("must start with http:// or https://"))?;
    // RFC 3986 §3.1: schemes are case-insensitive.
    let https = match scheme.to_ascii_lowercase().as_str() {
        "http" => false,
        "https" => true,
        _ => return Err(bad("only http:// and https:// are supported")),
    };
    let rest = rest.split('#').next().unwrap_or_default();
    let (authority, path) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    if authority.contains('@') {
        return Err(bad("user:password@ is not supported"));
    }
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (literal, after) = bracketed
            .split_once(']')
            .ok_or_else(|| bad("missing ']' after the IPv6 address"))?;
        let ip: Ipv6Addr = literal
            .parse()
            .map_err(|_| bad(&format!("{literal:?} is not an IPv6 address")))?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(|| bad("junk after ']'"))?),
        };
        (ip.to_string(), port)
    } else {
        let (host, port) = match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        };
        if port.is_some_and(|p| p.contains(':')) {
            return Err(bad(
                "an IPv6 address must be written in brackets: http://[2001:db8::1]/",
            ));
        }
        let labels = host.strip_suffix('.').unwrap_or(host);
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if host.len() > 254 || !labels.split('.').all(label_ok) {
            return Err(bad(&format!("{host:?} is not a valid host name")));
        }
        (host.to_ascii_lowercase(), port)
    };
    let default_port = if https { 443 } else { 80 };
    // RFC 3986 §3.2.3: an empty port means the scheme's default.
    let port = match port {
        None | Some("") => default_port,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|&n| n != 0 && p.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| bad(&format!("port {p:?} is not a number from 1 to 65535")))?,
    };
    let path = match path {
        "" => "/".to_string(),
        p if p.starts_with('?') => format!("/{p}"),
        p => p.to_string(),
    };
    Ok(Target {
        url: url.to_string(),
        https,
        host,
        port,
        path,
    })
}

/// An absolute `http(s)` URL split into the parts RFC 3986 §5.2 resolution works on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// Lowercase `http` or `https`.
    scheme: String,
    /// `host[:port]`, host lowercased; never empty.
    authority: String,
    /// Starts with `/`.
    path: String,
    query: Option<String>,
}

/// A URI reference split as in RFC 3986 Appendix B; `None` = component absent.
struct RefParts<'a> {
    scheme: Option<&'a str>,
    authority: Option<&'a str>,
    path: &'a str,
    query: Option<&'a str>,
}

fn split_reference(s: &str) -> RefParts<'_> {
    // The fragment never reaches the server (RFC 9110 §4.2.4), so it is dropped here.
    let s = s.split_once('#').map_or(s, |(before, _)| before);
    let (s, query) = match s.split_once('?') {
        Some((before, q)) => (before, Some(q)),
        None => (s, None),
    };
    let (scheme, rest) = match s.split_once(':') {
        Some((sch, rest)) if !sch.is_empty() && !sch.contains('/') => (Some(sch), rest),
        _ => (None, s),
    };
    let (authority, path) = match rest.strip_prefix("//") {
        Some(r) => {
            let end = r.find('/').unwrap_or(r.len());
            (Some(&r[..end]), &r[end..])
        }
        None => (None, rest),
    };
    RefParts {
        scheme,
        authority,
        path,
        query,
    }
}

impl Url {
    pub fn parse_absolute(s: &str) -> Result<Url, String> {
        check_chars(s)?;
        let r = split_reference(s);
        match r.scheme {
            Some(_) => Url::build(r.scheme, r.authority, remove_dot_segments(r.path), r.query),
            None => Err("not an absolute URL".into()),
        }
    }

    /// RFC 3986 §5.2.2 (strict: a scheme in the reference is always taken as absolute).
    pub fn join(&self, reference: &str) -> Result<String, String> {
        check_chars(reference)?;
        let r = split_reference(reference);
        let url = if r.scheme.is_some() {
            Url::build(r.scheme, r.authority, remove_dot_segments(r.path), r.query)?
        } else if r.authority.is_some() {
            Url::build(
                Some(&self.scheme),
                r.authority,
                remove_dot_segments(r.path),
                r.query,
            )?
        } else if r.path.is_empty() {
            Url {
                query: r.query.map(str::to_string).or_else(|| self.query.clone()),
                ..self.clone()
            }
        } else {
            let path = if r.path.starts_with('/') {
                remove_dot_segments(r.path)
            } else {
                // §5.2.3 merge: our base always has an authority and a path starting with '/'.
                let dir = &self.path[..self.path.rfind('/').map_or(0, |i| i + 1)];
                remove_dot_segments(&format!("{dir}{}", r.path))
            };
            Url {
                path,
                query: r.query.map(str::to_string),
                ..self.clone()
            }
        };
        Ok(url.to_string())
    }

    fn build(
        scheme: Option<&str>,
        authority: Option<&str>,
        path: String,
        query: Option<&str>,
    ) -> Result<Url, String> {
        let scheme = scheme.unwrap_or_default().to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return Err(format!(
                "scheme {scheme:?} is not allowed (only http and https)"
            ));
        }
        let authority = check_authority(authority.unwrap_or_default())?;
        let path = if path.is_empty() { "/".into() } else { path };
        Ok(Url {
            scheme,
            authority,
            path,
            query: query.map(str::to_string),
        })
    }
}

impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}{}", self.scheme, self.authority, self.path)?;
        if let Some(q) = &self.query {
            write!(f, "?{q}")?;
        }
        Ok(())
    }
}

/// Printable ASCII only, none of the characters RFC 3986 excludes (`"<>\^`{|}` and space: a
/// backslash is a path separator to some clients), and `%` followed by two hex digits.
fn check_chars(s: &str) -> Result<(), String> {
    if s.len() > MAX_URL_LEN {
        return Err(format!("longer than {MAX_URL_LEN} characters"));
    }
    let b = s.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        if !c.is_ascii_graphic() || b"\"<>\\^`{|}".contains(&c) {
            return Err(format!(
                "character {:?} at position {i} is not allowed in a URL",
                s[i..].chars().next().unwrap_or('?')
            ));
        }
        if c == b'%'
            && !(b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
        {
            return Err(format!("bad percent-encoding at position {i}"));
        }
    }
    Ok(())
}

/// `host[:port]` with a DNS name, IPv4 address or `[IPv6]`; no user info (credentials do not
/// belong in a manifest, and `https://hub@evil/` is a classic spoof).
fn check_authority(a: &str) -> Result<String, String> {
    if a.contains('@') {
        return Err("user info (user@host) is not allowed".into());
    }
    let (host, port) = if let Some(rest) = a.strip_prefix('[') {
        let (inner, after) = rest.split_once(']').ok_or("unterminated [IPv6] host")?;
        if inner.is_empty()
            || !inner
                .bytes()
                .all(|c| c.is_ascii_hexdigit() || c == b':' || c == b'.')
        {
            return Err(format!("bad IPv6 host [{inner}]"));
        }
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or("junk after the [IPv6] host")?),
        };
        (&a[..inner.len() + 2], port)
    } else {
        match a.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (a, None),
        }
    };
    if host.is_empty() {
        return Err("no host".into());
    }
    if !host.starts_with('[')
        && !host
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.')
    {
        return Err(format!("bad host {host:?}"));
    }
    let mut out = host.to_ascii_lowercase();
    match port {
        None | Some("") => {}
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 && p.bytes().all(|c| c.is_ascii_digit()) => {
                out.push(':');
                out.push_str(p);
            }
            _ => return Err(format!("bad port {p:?}")),
        },
    }
    Ok(out)
}

/// RFC 3986 §5.2.4, literally.
fn remove_dot_segments(path: &str) -> String {
    let mut input = path;
    let mut out = String::with_capacity(path.len());
    let pop = |out: &mut String| {
        let cut = out.rfind('/').unwrap_or(0);
        out.truncate(cut);
    };
    while !input.is_empty() {
        if let Some(rest) = input.strip_prefix("../") {
            input = rest;
        } else if let Some(rest) = input.strip_prefix("./") {
            input = rest;
        } else if input.starts_with("/./") {
            input = &input[2..];
        } else if input == "/." {
            input = "/";
        } else if input.starts_with("/../") {
            input = &input[3..];
            pop(&mut out);
        } else if input == "/.." {
            input = "/";
            pop(&mut out);
        } else if input == "." || input == ".." {
            input = "";
        } else {
            let start = usize::from(input.starts_with('/'));
            let end = input[start..].find('/').map_or(input.len(), |i| i + start);
            out.push_str(&input[..end]);
            input = &input[end..];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_urls_resolve_against_the_manifest_url() {
        let base = Url::parse_absolute("https://hub.grid.tf/zos/prod/v3/manifest.json").unwrap();
        let cases = [
            ("x.tar", "https://hub.grid.tf/zos/prod/v3/x.tar"),
            ("./x", "https://hub.grid.tf/zos/prod/v3/x"),
            ("../x", "https://hub.grid.tf/zos/prod/x"),
            ("../../../../../x", "https://hub.grid.tf/x"),
            ("/abs", "https://hub.grid.tf/abs"),
            ("/a/./b/../c", "https://hub.grid.tf/a/c"),
            ("https://other/x", "https://other/x"),
            (
                "HTTP://Other.Example:8080/x?y=1#frag",
                "http://other.example:8080/x?y=1",
            ),
            ("//cdn.example/x", "https://cdn.example/x"),
            ("?v=2", "https://hub.grid.tf/zos/prod/v3/manifest.json?v=2"),
            ("x%20y", "https://hub.grid.tf/zos/prod/v3/x%20y"),
            ("http://[2001:db8::1]:8080/x", "http://[2001:db8::1]:8080/x"),
            ("http://10.0.0.1/x", "http://10.0.0.1/x"),
            ("https://host", "https://host/"),
        ];
        for (reference, want) in cases {
            assert_eq!(base.join(reference).as_deref(), Ok(want), "{reference}");
        }
    }

    #[test]
    fn remove_dot_segments_matches_rfc_3986_examples() {
        assert_eq!(remove_dot_segments("/a/b/c/./../../g"), "/a/g");
        assert_eq!(remove_dot_segments("mid/content=5/../6"), "mid/6");
        assert_eq!(remove_dot_segments("/.."), "/");
        assert_eq!(remove_dot_segments("/a/.."), "/");
        assert_eq!(remove_dot_segments("/a/b/"), "/a/b/");
    }
}
