//! The boot manifest: which artifacts to fetch, how big they are, their digests and where they go.
//!
//! Pure: [`parse`] takes the bytes the hub sent and the URL they came from and returns a
//! validated [`Manifest`], or one line naming the artifact and the field that is wrong. Everything
//! in it is treated as hostile: the hub (or whoever answers in its name over plain HTTP) chooses
//! the URLs we fetch, the sizes we are willing to download and the paths we write to.
//!
//! ```json
//! { "version": 1,
//!   "artifacts": [
//!     { "name": "modules", "url": "modules-6.1.0-56-cloud-amd64.tar.zst", "size": 123,
//!       "sha256": "<64 hex>", "kind": "modules", "kernel": "6.1.0-56-cloud-amd64" },
//!     { "name": "rootfs", "url": "https://mirror.example/rootfs.tar.gz", "size": 456,
//!       "sha256": "<64 hex>", "kind": "rootfs", "dest": "/" },
//!     { "name": "motd", "url": "motd.txt", "size": 7, "sha256": "<64 hex>", "kind": "file",
//!       "dest": "/etc/motd" } ] }
//! ```
//!
//! Rules (each has a test):
//! - `version` is 1; unknown keys are ignored so a hub can add fields without breaking nodes.
//! - `name`: 1–63 characters of `A-Z a-z 0-9 . _ -`, starting with a letter or digit (it may
//!   name a file in the download directory), unique ignoring case.
//! - `url`: resolved against the manifest's URL as RFC 3986 §5.2 says (`../x`, `/abs`,
//!   `//host/x`, `https://other/x`); the result must be `http` or `https` with a host and no
//!   user info; the fragment is dropped (RFC 9110 §4.2.4: it is never sent).
//! - `size`: an integer, 1 B to [`MAX_ARTIFACT_SIZE`]; the download stops at that many bytes.
//! - `sha256`: exactly 64 hex digits. `blake2b` is recognised and refused (not verified yet: we
//!   never claim a digest we did not check).
//! - `kind`: `modules`, `rootfs` or `file`. `dest` is an absolute path without `..`, normalised
//!   (`//` and `.` removed); required for `file` (and not `/`), default `/` for `rootfs`,
//!   ignored for `modules` (they go to `/lib/modules/<release>`).
//! - `kernel` (modules only, optional): the `uname -r` the modules are for; at most one modules
//!   artifact per kernel, and at most one without `kernel` (it serves any kernel and the
//!   installer checks the tarball's release directory). See [`Manifest::modules_for`].
//! - no two `file` artifacts with the same `dest`; 1 to [`MAX_ARTIFACTS`] artifacts.
use serde_json::Value;

use crate::url::Url;

/// The only manifest format this binary understands.
pub const VERSION: u32 = 1;
/// The largest artifact we agree to download: a rootfs, held in RAM until hand-off.
pub const MAX_ARTIFACT_SIZE: u64 = 8 << 30;
/// More than this is not a boot manifest.
pub const MAX_ARTIFACTS: usize = 64;
/// Longer URLs are refused (common server limits are 8 KiB; ours is a sanity bound).
pub use crate::url::MAX_URL_LEN;
/// PATH_MAX.
const MAX_DEST_LEN: usize = 4096;
/// A manifest is a few KiB; the downloader can use this as its cap too.
pub const MAX_MANIFEST_BYTES: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub version: u32,
    pub artifacts: Vec<Artifact>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    pub name: String,
    /// Absolute `http(s)` URL, resolved against the manifest URL.
    pub url: String,
    /// Exact size in bytes.
    pub size: u64,
    pub sha256: [u8; 32],
    pub kind: Kind,
    /// Normalised absolute path: `Some` for `rootfs` (default `/`) and `file`, `None` for
    /// `modules`.
    pub dest: Option<String>,
    /// `modules` only: the kernel release (`uname -r`) the tarball is for, when the hub says.
    pub kernel: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A tarball of `<release>/…` unpacked under `/lib/modules`.
    Modules,
    /// A tarball unpacked into the next root at `dest`.
    Rootfs,
    /// One file written to `dest` in the next root.
    File,
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::Modules => "modules",
            Kind::Rootfs => "rootfs",
            Kind::File => "file",
        })
    }
}

impl Manifest {
    /// The modules artifact for kernel `release`: the one whose `kernel` is `release`, else the
    /// one without `kernel` (the installer then checks the tarball's top directory).
    pub fn modules_for(&self, release: &str) -> Option<&Artifact> {
        let modules = || self.artifacts.iter().filter(|a| a.kind == Kind::Modules);
        modules()
            .find(|a| a.kernel.as_deref() == Some(release))
            .or_else(|| modules().find(|a| a.kernel.is_none()))
    }
}

/// The manifest URL when `zos.manifest=` is not given:
/// `<hub>/zos/<runmode>/<version or "v3">/manifest.json`. `runmode` and `version` come from the
/// kernel command line; characters outside RFC 3986 `unreserved` are percent-encoded so they
/// stay one path segment each.
pub fn default_url(hub: &str, runmode: &str, version: Option<&str>) -> String {
    let version = version.map(str::trim).filter(|v| !v.is_empty());
    format!(
        "{}/zos/{}/{}/manifest.json",
        hub.trim_end_matches('/'),
        segment(runmode),
        segment(version.unwrap_or("v3"))
    )
}

/// Percent-encodes everything but RFC 3986 §2.3 `unreserved`, and the dots of `.`/`..` (which
/// would otherwise be removed as dot segments, §5.2.4).
fn segment(s: &str) -> String {
    let dots = s == "." || s == "..";
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (b.is_ascii_alphanumeric() || b"-._~".contains(&b)) && !(dots && b == b'.') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Parses and validates a manifest fetched from `manifest_url`. The error is one line that
/// names the artifact (index and name) and the field.
pub fn parse(json: &[u8], manifest_url: &str) -> Result<Manifest, String> {
    let base = Url::parse_absolute(manifest_url)
        .map_err(|e| format!("manifest URL {}: {e}", shown(manifest_url)))?;
    if json.len() > MAX_MANIFEST_BYTES {
        return Err(format!(
            "manifest: {} bytes, more than {MAX_MANIFEST_BYTES}",
            json.len()
        ));
    }
    let root: Value =
        serde_json::from_slice(json).map_err(|e| format!("manifest is not valid JSON: {e}"))?;
    let root = root.as_object().ok_or("manifest: expected a JSON object")?;
    let version = match root.get("version") {
        None => return Err("manifest: version: missing".into()),
        Some(v) => v
            .as_u64()
            .ok_or_else(|| format!("manifest: version: expected an integer, got {}", what(v)))?,
    };
    if version != u64::from(VERSION) {
        return Err(format!(
            "manifest: version {version} is not supported (this zos-netboot reads version \
             {VERSION}); update the boot image"
        ));
    }
    let list = match root.get("artifacts") {
        None => return Err("manifest: artifacts: missing".into()),
        Some(Value::Array(list)) => list,
        Some(_) => return Err("manifest: artifacts: expected a list".into()),
    };
    if list.is_empty() {
        return Err("manifest: artifacts: empty, nothing to boot".into());
    }
    if list.len() > MAX_ARTIFACTS {
        return Err(format!(
            "manifest: artifacts: {} listed, at most {MAX_ARTIFACTS} allowed",
            list.len()
        ));
    }
    let mut artifacts: Vec<Artifact> = Vec::with_capacity(list.len());
    for (i, v) in list.iter().enumerate() {
        let a = artifact(i, v, &base)?;
        let at = |field: &str| format!("manifest: artifact {i} ({:?}): {field}", a.name);
        if let Some(o) = artifacts
            .iter()
            .find(|o| o.name.eq_ignore_ascii_case(&a.name))
        {
            return Err(format!(
                "{}: same as another artifact's ({:?})",
                at("name"),
                o.name
            ));
        }
        if a.kind == Kind::Modules {
            if let Some(o) = artifacts
                .iter()
                .find(|o| o.kind == Kind::Modules && o.kernel == a.kernel)
            {
                let which = a
                    .kernel
                    .as_deref()
                    .map_or("without a kernel field".to_string(), |k| format!("for {k}"));
                return Err(format!(
                    "{}: a second modules artifact {which} (first: {:?})",
                    at("kernel"),
                    o.name
                ));
            }
        }
        if a.kind == Kind::File {
            if let Some(o) = artifacts
                .iter()
                .find(|o| o.kind == Kind::File && o.dest == a.dest)
            {
                return Err(format!(
                    "{}: {:?} also written by {:?}",
                    at("dest"),
                    a.dest,
                    o.name
                ));
            }
        }
        artifacts.push(a);
    }
    Ok(Manifest {
        version: VERSION,
        artifacts,
    })
}

fn artifact(i: usize, v: &Value, base: &Url) -> Result<Artifact, String> {
    let obj = v
        .as_object()
        .ok_or_else(|| format!("manifest: artifact {i}: expected an object"))?;
    let name = match obj.get("name") {
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(format!("manifest: artifact {i}: name: expected a string")),
        None => return Err(format!("manifest: artifact {i}: name: missing")),
    };
    check_name(name).map_err(|e| format!("manifest: artifact {i}: name {}: {e}", shown(name)))?;
    let err =
        |field: &str, why: String| format!("manifest: artifact {i} ({name:?}): {field}: {why}");
    let text = |field: &str| -> Result<Option<&str>, String> {
        match obj.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(err(field, "expected a string".into())),
        }
    };
    let required = |field: &str| text(field)?.ok_or_else(|| err(field, "missing".into()));

    let url = required("url")?;
    let url = base
        .join(url)
        .map_err(|e| err("url", format!("{}: {e}", shown(url))))?;

    let size = match obj.get("size") {
        None => return Err(err("size", "missing".into())),
        Some(v) => v.as_u64().ok_or_else(|| {
            err(
                "size",
                format!("expected a whole number of bytes, got {}", what(v)),
            )
        })?,
    };
    if size == 0 || size > MAX_ARTIFACT_SIZE {
        return Err(err(
            "size",
            format!("{size} is outside 1..={MAX_ARTIFACT_SIZE} bytes"),
        ));
    }

    if obj.contains_key("blake2b") {
        return Err(err(
            "blake2b",
            "not supported yet by this zos-netboot; give a sha256".into(),
        ));
    }
    let sha256 = required("sha256")?;
    let sha256 = hex32(sha256).map_err(|e| err("sha256", e))?;

    let kind = match required("kind")? {
        "modules" => Kind::Modules,
        "rootfs" => Kind::Rootfs,
        "file" => Kind::File,
        other => {
            return Err(err(
                "kind",
                format!("{} is not one of modules, rootfs, file", shown(other)),
            ))
        }
    };

    let dest = text("dest")?;
    let dest = match (kind, dest) {
        (Kind::Modules, _) => None,
        (Kind::Rootfs, None) => Some("/".to_string()),
        (Kind::File, None) => return Err(err("dest", "missing (required for a file)".into())),
        (_, Some(d)) => {
            let d = normalise_dest(d).map_err(|e| err("dest", format!("{}: {e}", shown(d))))?;
            if kind == Kind::File && d == "/" {
                return Err(err(
                    "dest",
                    "\"/\" is a directory, a file needs a name".into(),
                ));
            }
            Some(d)
        }
    };

    let kernel = match (kind, text("kernel")?) {
        (_, None) => None,
        (Kind::Modules, Some(k)) => {
            check_release(k).map_err(|e| err("kernel", format!("{}: {e}", shown(k))))?;
            Some(k.to_string())
        }
        (_, Some(_)) => return Err(err("kernel", "only modules artifacts have one".into())),
    };

    Ok(Artifact {
        name: name.to_string(),
        url,
        size,
        sha256,
        kind,
        dest,
        kernel,
    })
}

/// A hub-supplied string for an error line: quoted and escaped (no control characters reach
/// the console) and cut at 80 characters.
fn shown(s: &str) -> String {
    match s.char_indices().nth(80) {
        Some((cut, _)) => format!("{:?}...", &s[..cut]),
        None => format!("{s:?}"),
    }
}

/// What a JSON value is, for error messages (without echoing hub-supplied text).
fn what(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a fraction or a huge number",
        Value::Number(n) if n.is_i64() => "a negative number",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Names may become file names in the download directory: no `/`, no leading dot, no spaces.
fn check_name(name: &str) -> Result<(), &'static str> {
    let b = name.as_bytes();
    if b.is_empty() || b.len() > 63 {
        return Err("must be 1 to 63 characters");
    }
    if !b[0].is_ascii_alphanumeric() {
        return Err("must start with a letter or digit");
    }
    if !b
        .iter()
        .all(|c| c.is_ascii_alphanumeric() || b"-._".contains(c))
    {
        return Err("only letters, digits, '-', '.' and '_' are allowed");
    }
    Ok(())
}

/// A kernel release becomes a directory name under /lib/modules.
pub(crate) fn check_release(k: &str) -> Result<(), &'static str> {
    let b = k.as_bytes();
    if b.is_empty() || b.len() > 64 {
        return Err("must be 1 to 64 characters");
    }
    if !b[0].is_ascii_alphanumeric() {
        return Err("must start with a letter or digit");
    }
    if !b
        .iter()
        .all(|c| c.is_ascii_alphanumeric() || b"-._+~".contains(c))
    {
        return Err("only letters, digits and '-', '.', '_', '+', '~' are allowed");
    }
    Ok(())
}

fn hex32(s: &str) -> Result<[u8; 32], String> {
    if s.len() != 64 {
        return Err(format!(
            "expected 64 hex digits, got {} characters",
            s.len()
        ));
    }
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(s.as_bytes().chunks(2)) {
        let hi = hex_digit(pair[0]);
        let lo = hex_digit(pair[1]);
        match (hi, lo) {
            (Some(h), Some(l)) => *o = h << 4 | l,
            _ => return Err("expected 64 hex digits, found another character".into()),
        }
    }
    Ok(out)
}

fn hex_digit(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// `dest` is joined to the next root by the installer, so it must not climb out of it. We
/// refuse `..` rather than resolve it: a manifest that needs it is wrong.
fn normalise_dest(d: &str) -> Result<String, &'static str> {
    if !d.starts_with('/') {
        return Err("must be an absolute path");
    }
    if d.len() > MAX_DEST_LEN {
        return Err("too long");
    }
    if d.bytes().any(|c| c.is_ascii_control()) {
        return Err("contains a control character");
    }
    let mut out = String::with_capacity(d.len());
    for part in d.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err("contains a '..' component"),
            p => {
                out.push('/');
                out.push_str(p);
            }
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "https://hub.grid.tf/zos/prod/v3/manifest.json";
    const HASH: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    fn one(fields: &str) -> Result<Manifest, String> {
        let json = format!(r#"{{"version":1,"artifacts":[{{{fields}}}]}}"#);
        parse(json.as_bytes(), BASE)
    }

    fn rootfs_with(extra: &str) -> Result<Manifest, String> {
        one(&format!(
            r#""name":"rootfs","url":"rootfs.tar.gz","size":456,"sha256":"{HASH}","kind":"rootfs"{extra}"#
        ))
    }

    fn err_of(r: Result<Manifest, String>) -> String {
        r.expect_err("should be refused")
    }

    #[test]
    fn example_manifest_parses_with_resolved_urls_and_dests() {
        let json = format!(
            r#"{{ "version": 1, "future_field": true,
              "artifacts": [
                {{ "name": "modules", "url": "modules-6.1.0-56-cloud-amd64.tar.zst", "size": 123,
                   "sha256": "{HASH}", "kind": "modules", "dest": "/ignored" }},
                {{ "name": "rootfs", "url": "https://mirror.example/rootfs.tar.gz", "size": 456,
                   "sha256": "{}", "kind": "rootfs" }},
                {{ "name": "motd", "url": "motd.txt", "size": 7, "sha256": "{HASH}",
                   "kind": "file", "dest": "//etc/./motd" }} ] }}"#,
            HASH.to_uppercase()
        );
        let m = parse(json.as_bytes(), BASE).unwrap();
        assert_eq!(m.version, 1);
        let [modules, rootfs, motd] = &m.artifacts[..] else {
            panic!("three artifacts expected: {m:?}")
        };
        assert_eq!(
            modules.url,
            "https://hub.grid.tf/zos/prod/v3/modules-6.1.0-56-cloud-amd64.tar.zst"
        );
        assert_eq!(modules.kind, Kind::Modules);
        assert_eq!(modules.dest, None);
        assert_eq!(modules.sha256[0], 0x9f);
        assert_eq!(modules.sha256[31], 0x08);
        assert_eq!(rootfs.url, "https://mirror.example/rootfs.tar.gz");
        assert_eq!(rootfs.dest.as_deref(), Some("/"));
        assert_eq!(rootfs.sha256, modules.sha256);
        assert_eq!(motd.dest.as_deref(), Some("/etc/motd"));
        assert_eq!(motd.size, 7);
    }

    #[test]
    fn urls_other_than_http_and_https_are_refused() {
        for bad in [
            "file:///etc/passwd",
            "ftp://mirror/x",
            "javascript:alert(1)",
            "https://user:pw@hub.grid.tf/x",
            "https://hub.grid.tf@evil.example/x",
            "https:///x",
            "https://host:99999/x",
            "https://host:8o/x",
            "https://ho_st/x",
            "https://[::1/x",
            "x y",
            "a\\b",
            "100%",
            "https://hub/\u{e9}",
        ] {
            let url = serde_json::to_string(bad).unwrap();
            let e = err_of(rootfs_with(&format!(r#","url":{url}"#)));
            assert!(e.contains(r#"artifact 0 ("rootfs"): url"#), "{bad}: {e}");
        }
    }

    #[test]
    fn manifest_url_must_be_absolute_http() {
        let json = br#"{"version":1,"artifacts":[]}"#;
        assert!(parse(json, "manifest.json")
            .unwrap_err()
            .contains("manifest URL"));
        assert!(parse(json, "file:///m.json")
            .unwrap_err()
            .contains("scheme"));
    }

    #[test]
    fn hub_strings_in_errors_are_escaped_and_cut() {
        let long = format!("ftp://{}", "x".repeat(5000));
        let e = err_of(rootfs_with(&format!(r#","url":"{long}""#)));
        assert!(e.len() < 300, "{e}");
        assert!(e.contains("xxx\"...: longer than 2048"), "{e}");
        let e = err_of(rootfs_with(r#","kind":"\u001b[31mred""#));
        assert!(e.contains(r#""\u{1b}[31mred""#), "{e}");
        let huge = vec![b' '; MAX_MANIFEST_BYTES + 1];
        assert!(parse(&huge, BASE).unwrap_err().contains("more than"));
    }

    #[test]
    fn only_version_1_is_understood() {
        let e = parse(br#"{"version":2,"artifacts":[]}"#, BASE).unwrap_err();
        assert!(e.contains("version 2 is not supported"), "{e}");
        let e = parse(br#"{"artifacts":[]}"#, BASE).unwrap_err();
        assert!(e.contains("version: missing"), "{e}");
        let e = parse(br#"{"version":"1","artifacts":[]}"#, BASE).unwrap_err();
        assert!(e.contains("version: expected an integer"), "{e}");
        assert!(parse(b"[1]", BASE)
            .unwrap_err()
            .contains("expected a JSON object"));
        assert!(parse(b"{", BASE).unwrap_err().contains("not valid JSON"));
    }

    #[test]
    fn artifact_list_must_be_non_empty_and_bounded() {
        let e = parse(br#"{"version":1,"artifacts":[]}"#, BASE).unwrap_err();
        assert!(e.contains("nothing to boot"), "{e}");
        let many: Vec<String> = (0..=MAX_ARTIFACTS)
            .map(|i| {
                format!(
                    r#"{{"name":"f{i}","url":"f","size":1,"sha256":"{HASH}","kind":"file","dest":"/f{i}"}}"#
                )
            })
            .collect();
        let json = format!(r#"{{"version":1,"artifacts":[{}]}}"#, many.join(","));
        let e = parse(json.as_bytes(), BASE).unwrap_err();
        assert!(e.contains("at most 64"), "{e}");
    }

    #[test]
    fn names_must_be_ldh_and_unique() {
        let long = "n".repeat(64);
        for bad in ["", ".hidden", "-x", "a/b", "a b", "é", &long] {
            let e = err_of(one(&format!(
                r#""name":"{bad}","url":"x","size":1,"sha256":"{HASH}","kind":"rootfs""#
            )));
            assert!(e.contains("artifact 0: name"), "{bad:?}: {e}");
        }
        let e = err_of(one(r#""url":"x""#));
        assert!(e.contains("artifact 0: name: missing"), "{e}");
        let a =
            format!(r#"{{"name":"rootfs","url":"a","size":1,"sha256":"{HASH}","kind":"rootfs"}}"#);
        let b = a
            .replace("\"rootfs\",\"url", "\"RootFS\",\"url")
            .replace("rootfs\"}", "rootfs\",\"dest\":\"/opt\"}");
        let json = format!(r#"{{"version":1,"artifacts":[{a},{b}]}}"#);
        let e = parse(json.as_bytes(), BASE).unwrap_err();
        assert!(
            e.contains(r#"artifact 1 ("RootFS"): name: same as another"#),
            "{e}"
        );
    }

    #[test]
    fn size_must_be_a_positive_integer_below_the_cap() {
        for (size, why) in [
            ("0", "outside"),
            ("8589934593", "outside"),
            ("-1", "whole number"),
            ("1.5", "whole number"),
            ("\"12\"", "whole number"),
        ] {
            let e = err_of(rootfs_with(&format!(r#","size":{size}"#)));
            assert!(
                e.contains(r#"artifact 0 ("rootfs"): size"#) && e.contains(why),
                "{size}: {e}"
            );
        }
        assert_eq!(
            rootfs_with(r#","size":8589934592"#).unwrap().artifacts[0].size,
            MAX_ARTIFACT_SIZE
        );
    }

    #[test]
    fn sha256_must_be_exactly_64_hex_digits() {
        let (long, bad_digit) = (format!("{HASH}0"), HASH.replace('9', "g"));
        for bad in [&HASH[1..], &long, &bad_digit, ""] {
            let e = err_of(rootfs_with(&format!(r#","sha256":"{bad}""#)));
            assert!(e.contains(r#"artifact 0 ("rootfs"): sha256"#), "{bad}: {e}");
        }
        let e = err_of(one(
            r#""name":"m","url":"x","size":1,"kind":"file","dest":"/m""#,
        ));
        assert!(e.contains("sha256: missing"), "{e}");
    }

    #[test]
    fn blake2b_is_refused_as_not_supported_yet() {
        let e = err_of(rootfs_with(r#","blake2b":"00""#));
        assert!(e.contains("blake2b: not supported yet"), "{e}");
    }

    #[test]
    fn kind_must_be_known() {
        let e = err_of(rootfs_with(r#","kind":"kernel""#));
        assert!(e.contains(r#"kind: "kernel" is not one of"#), "{e}");
    }

    #[test]
    fn dest_is_absolute_normalised_and_never_climbs() {
        let ok = |d: &str| {
            rootfs_with(&format!(r#","dest":"{d}""#)).map(|m| m.artifacts[0].dest.clone())
        };
        assert_eq!(ok("/"), Ok(Some("/".into())));
        assert_eq!(ok("/opt//zos/./x/"), Ok(Some("/opt/zos/x".into())));
        assert_eq!(ok("/a/.../b"), Ok(Some("/a/.../b".into())));
        for bad in ["relative", "", "/a/../b", "/..", "/a\\u0000b", "/a\\nb"] {
            let e = ok(bad).unwrap_err();
            assert!(e.contains(r#"artifact 0 ("rootfs"): dest"#), "{bad}: {e}");
        }
    }

    #[test]
    fn dest_is_required_for_files_and_ignored_for_modules() {
        let file = |extra: &str| {
            one(&format!(
                r#""name":"motd","url":"m","size":1,"sha256":"{HASH}","kind":"file"{extra}"#
            ))
        };
        assert!(file("").unwrap_err().contains("dest: missing"));
        assert!(file(r#","dest":"/""#)
            .unwrap_err()
            .contains("a file needs a name"));
        assert!(file(r#","dest":"/etc/../motd""#)
            .unwrap_err()
            .contains("'..'"));
        let m = one(&format!(
            r#""name":"m","url":"m","size":1,"sha256":"{HASH}","kind":"modules","dest":"../x""#
        ))
        .unwrap();
        assert_eq!(m.artifacts[0].dest, None);
    }

    #[test]
    fn two_files_may_not_share_a_dest() {
        let f = |n: &str| {
            format!(
                r#"{{"name":"{n}","url":"m","size":1,"sha256":"{HASH}","kind":"file","dest":"/etc/motd"}}"#
            )
        };
        let json = format!(r#"{{"version":1,"artifacts":[{},{}]}}"#, f("a"), f("b"));
        let e = parse(json.as_bytes(), BASE).unwrap_err();
        assert!(e.contains(r#"artifact 1 ("b"): dest"#), "{e}");
    }

    #[test]
    fn at_most_one_modules_artifact_per_kernel() {
        let m = |n: &str, k: Option<&str>| {
            let k = k.map_or(String::new(), |k| format!(r#","kernel":"{k}""#));
            format!(
                r#"{{"name":"{n}","url":"{n}.tar.zst","size":1,"sha256":"{HASH}","kind":"modules"{k}}}"#
            )
        };
        let doc =
            |parts: &[String]| format!(r#"{{"version":1,"artifacts":[{}]}}"#, parts.join(","));
        let good = doc(&[
            m("a", Some("6.1.0-56-cloud-amd64")),
            m("b", Some("6.12.0-1")),
            m("c", None),
        ]);
        let man = parse(good.as_bytes(), BASE).unwrap();
        assert_eq!(
            man.modules_for("6.12.0-1").map(|a| a.name.as_str()),
            Some("b")
        );
        assert_eq!(man.modules_for("5.10").map(|a| a.name.as_str()), Some("c"));

        let twice = doc(&[m("a", Some("6.1.0")), m("b", Some("6.1.0"))]);
        let e = parse(twice.as_bytes(), BASE).unwrap_err();
        assert!(
            e.contains(r#"artifact 1 ("b"): kernel: a second modules artifact for 6.1.0"#),
            "{e}"
        );
        let two_any = doc(&[m("a", None), m("b", None)]);
        let e = parse(two_any.as_bytes(), BASE).unwrap_err();
        assert!(e.contains("without a kernel field"), "{e}");

        let bad = doc(&[m("a", Some("../6.1"))]);
        assert!(parse(bad.as_bytes(), BASE).unwrap_err().contains("kernel"));
        let e = err_of(rootfs_with(r#","kernel":"6.1.0""#));
        assert!(e.contains("only modules artifacts"), "{e}");
    }

    #[test]
    fn wrong_types_name_the_field() {
        let e = err_of(rootfs_with(r#","url":7"#));
        assert!(
            e.contains(r#"artifact 0 ("rootfs"): url: expected a string"#),
            "{e}"
        );
        let e = parse(br#"{"version":1,"artifacts":[3]}"#, BASE).unwrap_err();
        assert!(e.contains("artifact 0: expected an object"), "{e}");
        let e = parse(br#"{"version":1,"artifacts":{}}"#, BASE).unwrap_err();
        assert!(e.contains("artifacts: expected a list"), "{e}");
    }

    #[test]
    fn default_url_follows_hub_runmode_and_version() {
        assert_eq!(
            default_url("https://hub.grid.tf/", "prod", None),
            "https://hub.grid.tf/zos/prod/v3/manifest.json"
        );
        assert_eq!(
            default_url("https://hub.test.grid.tf", "test", Some("v3.1")),
            "https://hub.test.grid.tf/zos/test/v3.1/manifest.json"
        );
        assert_eq!(
            default_url("http://hub.lab.test//", "dev", Some(" ")),
            "http://hub.lab.test/zos/dev/v3/manifest.json"
        );
        assert_eq!(
            default_url("https://h", "qa", Some("../x y")),
            "https://h/zos/qa/..%2Fx%20y/manifest.json"
        );
        assert_eq!(
            default_url("https://h", "qa", Some("..")),
            "https://h/zos/qa/%2E%2E/manifest.json"
        );
        // What default_url builds, parse accepts as a base.
        let m = one(&format!(
            r#""name":"r","url":"r.tgz","size":1,"sha256":"{HASH}","kind":"rootfs""#
        ));
        assert!(m.is_ok());
    }
}
