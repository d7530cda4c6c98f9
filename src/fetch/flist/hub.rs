//! The ThreeFold hub's API and ZOS's boot chain over it, sans-IO.
//!
//! What ZOS's own `bootstrap` does (threefoldtech/zos `bootstrap/`), followed here:
//! 1. The hub list comes from `zos-config/<runmode>.json` (`{"hub_urls": [...]}`); a hub is
//!    usable when `GET {hub}/api/flist` answers 2xx. Without a usable list: `https://hub.grid.tf`.
//! 2. Stage 1: `tf-autobuilder/bootstrap:latest.flist` (its `/light` info gives the MD5).
//! 3. Stage 2: in the `tf-zos` repository, the **taglink** named after the run mode
//!    (`production`, `development`, `testing`, `qa`; `<mode>-v3light` for `version=v3light`)
//!    points at `<repo>/tags/<ref>`; that tag's entries are **symlinks** to the flists to install
//!    (`zos.flist` and the bins), each at `{hub}/{target}`.
//!
//! ZOS checks no checksum at all; here every `.flist` is checked against its MD5 (the `/light`
//! answer for stage 1, `{url}.md5` for the rest) before it is read.
//!
//! [`Chain`] is the resolution as a state machine: it says which URL to GET next
//! ([`Chain::want`]) and is told what came back ([`Chain::answer`]); a hub that fails at any
//! step is left for the next one, which starts over. No sockets here: the driver is
//! `fetch::flist::chain`.
use std::fmt;

use serde::Deserialize;

use crate::cmdline::RunMode;

/// Where ZOS's bootstrap takes stage 1 from.
pub const BOOTSTRAP_REPO: &str = "tf-autobuilder";
pub const BOOTSTRAP_FLIST: &str = "bootstrap:latest.flist";
/// The repository holding one taglink per run mode.
pub const ZOS_REPO: &str = "tf-zos";
/// ZOS's fallback when the zos-config file cannot be had.
pub const FALLBACK_HUB: &str = "https://hub.grid.tf";
/// API answers (listings, `/light`, `.md5`) are small; anything bigger is not the hub.
pub const MAX_API_BYTES: usize = 4 << 20;

/// The zos-config file for a run mode (ZOS's default `zos.config=`).
pub fn default_config_url(runmode: RunMode) -> String {
    format!(
        "https://github.com/threefoldtech/zos-config/raw/main/{}.json",
        zos_runmode(runmode)
    )
}

/// ZOS's spelling of a run mode (the zos-config file and the taglink are named so).
pub fn zos_runmode(runmode: RunMode) -> &'static str {
    match runmode {
        RunMode::Prod => "production",
        RunMode::Dev => "development",
        RunMode::Test => "testing",
        RunMode::Qa => "qa",
    }
}

/// The taglink in `tf-zos` for this run mode and `version=`.
pub fn taglink_name(runmode: RunMode, version: Option<&str>) -> String {
    match version {
        Some("v3light") => format!("{}-v3light", zos_runmode(runmode)),
        _ => zos_runmode(runmode).to_string(),
    }
}

/// `hub_urls` of a zos-config file: http(s) URLs, at least one, without a trailing `/`.
pub fn parse_config(body: &[u8]) -> Result<Vec<String>, String> {
    #[derive(Deserialize)]
    struct ZosConfig {
        hub_urls: Vec<String>,
    }
    let c: ZosConfig = serde_json::from_slice(body)
        .map_err(|e| format!("not a zos-config file (JSON with hub_urls): {e}"))?;
    let mut out: Vec<String> = Vec::new();
    for u in c.hub_urls {
        if !(u.starts_with("http://") || u.starts_with("https://")) {
            return Err(format!("hub_urls: {u:?} is not an http(s) URL"));
        }
        crate::net::probe::parse_url(&u)?;
        let u = u.trim_end_matches('/').to_string();
        if !out.contains(&u) {
            out.push(u);
        }
    }
    if out.is_empty() {
        return Err("hub_urls is empty".into());
    }
    Ok(out)
}

/// An entry's type in a hub listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    Regular,
    Symlink,
    Taglink,
    Tag,
}

/// One entry of `/api/flist/<repo>` or `/api/flist/<repo>/tags/<tag>` (the fields the boot
/// uses; `size` is text on the real hub and is not read).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct HubEntry {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: EntryKind,
    #[serde(default)]
    pub target: Option<String>,
    #[serde(default)]
    pub updated: Option<i64>,
}

/// `/api/flist/<repo>/<flist>/light`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LightInfo {
    pub name: String,
    #[serde(default)]
    pub md5: Option<String>,
}

pub fn parse_listing(body: &[u8]) -> Result<Vec<HubEntry>, String> {
    serde_json::from_slice(body).map_err(|e| format!("not a hub listing: {e}"))
}

/// A repository, tag or flist name as the hub spells them: no `/`, no `..`, printable.
fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.len() <= 255
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b'\\')
}

/// 32 hex digits (the first word of a `.md5` answer).
pub fn parse_md5(text: &[u8]) -> Result<[u8; 16], String> {
    let text = std::str::from_utf8(text).map_err(|_| "MD5 answer is not text".to_string())?;
    let word = text.split_whitespace().next().unwrap_or("");
    let mut out = [0u8; 16];
    if word.len() != 32 {
        return Err(format!("{:?} is not an MD5 (32 hex digits)", shown(word)));
    }
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&word[2 * i..2 * i + 2], 16)
            .map_err(|_| format!("{:?} is not an MD5 (32 hex digits)", shown(word)))?;
    }
    Ok(out)
}

fn shown(s: &str) -> String {
    s.chars().take(40).collect()
}

/// The taglink `name` in a listing → (repository, tag) of its `<repo>/tags/<tag>` target.
pub fn find_taglink(entries: &[HubEntry], name: &str) -> Result<(String, String), String> {
    let e = entries
        .iter()
        .find(|e| e.kind == EntryKind::Taglink && e.name == name)
        .ok_or_else(|| {
            let have: Vec<&str> = entries
                .iter()
                .filter(|e| e.kind == EntryKind::Taglink)
                .map(|e| e.name.as_str())
                .collect();
            format!(
                "no taglink {name:?} in {ZOS_REPO} (taglinks there: {})",
                if have.is_empty() {
                    "none".to_string()
                } else {
                    have.join(", ")
                }
            )
        })?;
    let target = e.target.as_deref().unwrap_or("");
    match target.split('/').collect::<Vec<_>>()[..] {
        [repo, "tags", tag] if valid_name(repo) && valid_name(tag) => {
            Ok((repo.to_string(), tag.to_string()))
        }
        _ => Err(format!(
            "taglink {name:?} points at {target:?}, not <repo>/tags/<tag>"
        )),
    }
}

/// One flist to fetch and install, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlistRef {
    /// `repo/name` as the hub names it (for the console and the state).
    pub name: String,
    pub url: String,
    /// The MD5 the hub gives for it (None: only for `zos.flist=` URLs with no `.md5`).
    pub md5: Option<[u8; 16]>,
}

/// The symlinks of a tag listing → the flists they point at (`<repo>/<name>`), under `hub`, in
/// the listing's order. Anything else in a tag, or a target that is not `<repo>/<name>`, is
/// refused: the hub's tags hold only symlinks.
pub fn tag_flists(hub: &str, entries: &[HubEntry]) -> Result<Vec<FlistRef>, String> {
    let mut out = Vec::new();
    for e in entries {
        if e.kind != EntryKind::Symlink {
            return Err(format!(
                "{:?} in the tag is a {:?}, not a symlink",
                e.name, e.kind
            ));
        }
        let target = e.target.as_deref().unwrap_or("");
        match target.split('/').collect::<Vec<_>>()[..] {
            [repo, name] if valid_name(repo) && valid_name(name) => out.push(FlistRef {
                name: target.to_string(),
                url: format!("{}/{target}", hub.trim_end_matches('/')),
                md5: None,
            }),
            _ => {
                return Err(format!(
                    "tag entry {:?} points at {target:?}, not <repo>/<name>",
                    e.name
                ))
            }
        }
    }
    if out.is_empty() {
        return Err("the tag lists no flists".into());
    }
    Ok(out)
}

/// What the chain needs next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Want {
    /// GET this URL and [`Chain::answer`] with the body of a 2xx, or the failure.
    Get(String),
    /// The flists to install, in order, all from `hub`.
    Done { hub: String, flists: Vec<FlistRef> },
    /// No hub got through; every hub's reason.
    Failed(String),
}

/// A GET that did not bring a 2xx body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The HTTP status, when there was one.
    pub status: Option<u16>,
    pub message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    /// `GET {hub}/api/flist`: is the hub usable?
    Probe,
    /// `/light` of the bootstrap flist.
    Bootstrap,
    /// `/api/flist/tf-zos`: the taglinks.
    Repo,
    /// `/api/flist/<repo>/tags/<tag>`.
    Tag { repo: String, tag: String },
    /// `{flist}.md5` of the tag's flist i.
    Md5(usize),
}

/// The boot chain over a list of hubs. Sans-IO: see the module doc.
#[derive(Debug, Clone)]
pub struct Chain {
    hubs: Vec<String>,
    taglink: String,
    bootstrap: bool,
    cur: usize,
    step: Step,
    flists: Vec<FlistRef>,
    /// One line per hub that was left, in order.
    errors: Vec<String>,
}

impl Chain {
    /// `hubs` in order of preference (base URLs); `taglink` from [`taglink_name`];
    /// `bootstrap`: stage 1 first (ZOS's order).
    pub fn new(hubs: Vec<String>, taglink: String, bootstrap: bool) -> Chain {
        Chain {
            hubs: hubs
                .into_iter()
                .map(|h| h.trim_end_matches('/').to_string())
                .collect(),
            taglink,
            bootstrap,
            cur: 0,
            step: Step::Probe,
            flists: Vec::new(),
            errors: Vec::new(),
        }
    }

    /// The hub being asked now.
    pub fn hub(&self) -> Option<&str> {
        self.hubs.get(self.cur).map(String::as_str)
    }

    /// What the step being asked is, in words (for the console).
    pub fn doing(&self) -> String {
        match &self.step {
            Step::Probe => "is the hub usable".into(),
            Step::Bootstrap => format!("stage 1 {BOOTSTRAP_REPO}/{BOOTSTRAP_FLIST}"),
            Step::Repo => format!("taglink {ZOS_REPO}/{}", self.taglink),
            Step::Tag { repo, tag } => format!("tag {repo}/tags/{tag}"),
            Step::Md5(i) => format!("MD5 of {}", self.flists[*i].name),
        }
    }

    pub fn want(&self) -> Want {
        let Some(hub) = self.hub() else {
            return Want::Failed(if self.errors.is_empty() {
                "no hub to ask".into()
            } else {
                self.errors.join("; ")
            });
        };
        Want::Get(match &self.step {
            Step::Probe => format!("{hub}/api/flist"),
            Step::Bootstrap => format!("{hub}/api/flist/{BOOTSTRAP_REPO}/{BOOTSTRAP_FLIST}/light"),
            Step::Repo => format!("{hub}/api/flist/{ZOS_REPO}"),
            Step::Tag { repo, tag } => format!("{hub}/api/flist/{repo}/tags/{tag}"),
            Step::Md5(i) if *i >= self.flists.len() => {
                return Want::Done {
                    hub: hub.to_string(),
                    flists: self.flists.clone(),
                }
            }
            Step::Md5(i) => format!("{}.md5", self.flists[*i].url),
        })
    }

    /// The answer to the last [`Want::Get`]: a 2xx body, or why not.
    pub fn answer(&mut self, got: Result<&[u8], Failure>) {
        if self.hub().is_none() {
            return;
        }
        let body = match got {
            Ok(b) => b,
            Err(f) => return self.leave(format!("{}: {f}", self.doing())),
        };
        if let Err(e) = self.take(body) {
            self.leave(format!("{}: {e}", self.doing()));
        }
    }

    fn take(&mut self, body: &[u8]) -> Result<(), String> {
        let hub = self.hubs[self.cur].clone();
        match self.step.clone() {
            // Any 2xx will do, as in ZOS.
            Step::Probe => {
                self.flists.clear();
                self.step = if self.bootstrap {
                    Step::Bootstrap
                } else {
                    Step::Repo
                };
            }
            Step::Bootstrap => {
                let info: LightInfo = serde_json::from_slice(body)
                    .map_err(|e| format!("not a /light answer: {e}"))?;
                let md5 = info
                    .md5
                    .as_deref()
                    .ok_or("the hub gives no md5 for it")
                    .and_then(|m| parse_md5(m.as_bytes()).map_err(|_| "its md5 is not an MD5"))?;
                self.flists.push(FlistRef {
                    name: format!("{BOOTSTRAP_REPO}/{BOOTSTRAP_FLIST}"),
                    url: format!("{hub}/{BOOTSTRAP_REPO}/{BOOTSTRAP_FLIST}"),
                    md5: Some(md5),
                });
                self.step = Step::Repo;
            }
            Step::Repo => {
                let (repo, tag) = find_taglink(&parse_listing(body)?, &self.taglink)?;
                self.step = Step::Tag { repo, tag };
            }
            Step::Tag { .. } => {
                let first = self.flists.len();
                self.flists.extend(tag_flists(&hub, &parse_listing(body)?)?);
                self.step = Step::Md5(first);
            }
            Step::Md5(i) => {
                self.flists[i].md5 = Some(parse_md5(body)?);
                self.step = Step::Md5(i + 1);
            }
        }
        Ok(())
    }

    /// Leaves the current hub: the next one starts over.
    fn leave(&mut self, why: String) {
        self.errors
            .push(format!("hub {}: {why}", self.hubs[self.cur]));
        self.cur += 1;
        self.step = Step::Probe;
        self.flists.clear();
    }

    /// Why each hub left so far was left.
    pub fn errors(&self) -> &[String] {
        &self.errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HUB: &str = "http://hub.lab.test";

    fn listing_repo() -> Vec<u8> {
        br#"[{"name":"development","size":"0.00 KB","type":"taglink","updated":1,
              "target":"tf-autobuilder/tags/dev1"},
             {"name":"production","size":"0.00 KB","type":"taglink","updated":1,
              "target":"tf-autobuilder/tags/v3.1.0"},
             {"name":"zos:production-3:latest.flist","size":"1.00 KB","type":"symlink",
              "target":"tf-autobuilder/zos-1.flist"}]"#
            .to_vec()
    }

    fn listing_tag() -> Vec<u8> {
        br#"[{"name":"zos.flist","size":"9.00 KB","type":"symlink","updated":2,
              "target":"tf-autobuilder/zos-v3.1.0.flist"},
             {"name":"zos-bins.flist","size":"9.00 KB","type":"symlink","updated":2,
              "target":"tf-zos-v3-bins/bins-v3.1.0.flist"}]"#
            .to_vec()
    }

    const MD5_A: &str = "0123456789abcdef0123456789abcdef";
    const MD5_B: &str = "fedcba9876543210fedcba9876543210";

    /// Runs a chain against a fake hub: `serve(url)` answers each GET.
    fn drive(
        mut chain: Chain,
        serve: impl Fn(&str) -> Result<Vec<u8>, Failure>,
    ) -> (Want, Vec<String>) {
        let mut asked = Vec::new();
        for _ in 0..100 {
            match chain.want() {
                Want::Get(url) => {
                    asked.push(url.clone());
                    let got = serve(&url);
                    chain.answer(got.as_deref().map_err(Clone::clone));
                }
                done => return (done, asked),
            }
        }
        panic!("the chain does not end: {asked:?}");
    }

    fn good_hub(url: &str) -> Result<Vec<u8>, Failure> {
        let path = url.split_once(".test").map_or(url, |(_, p)| p);
        Ok(match path {
            "/api/flist" => b"[]".to_vec(),
            "/api/flist/tf-autobuilder/bootstrap:latest.flist/light" => format!(
                r#"{{"name":"bootstrap:latest.flist","size":10,"type":"symlink","md5":"{MD5_A}"}}"#
            )
            .into_bytes(),
            "/api/flist/tf-zos" => listing_repo(),
            "/api/flist/tf-autobuilder/tags/v3.1.0" => listing_tag(),
            "/tf-autobuilder/zos-v3.1.0.flist.md5" => format!("{MD5_B}\n").into_bytes(),
            "/tf-zos-v3-bins/bins-v3.1.0.flist.md5" => format!("{MD5_A}\n").into_bytes(),
            _ => {
                return Err(Failure {
                    status: Some(404),
                    message: format!("404 for {path}"),
                })
            }
        })
    }

    #[test]
    fn taglink_tag_symlinks_with_md5s_in_zos_order() {
        let chain = Chain::new(vec![format!("{HUB}/")], "production".into(), true);
        let (want, asked) = drive(chain, good_hub);
        let Want::Done { hub, flists } = want else {
            panic!("{want:?}")
        };
        assert_eq!(hub, HUB);
        let names: Vec<&str> = flists.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "tf-autobuilder/bootstrap:latest.flist",
                "tf-autobuilder/zos-v3.1.0.flist",
                "tf-zos-v3-bins/bins-v3.1.0.flist"
            ]
        );
        assert_eq!(
            flists[1].url,
            "http://hub.lab.test/tf-autobuilder/zos-v3.1.0.flist"
        );
        assert_eq!(flists[0].md5, Some(parse_md5(MD5_A.as_bytes()).unwrap()));
        assert_eq!(flists[1].md5, Some(parse_md5(MD5_B.as_bytes()).unwrap()));
        assert_eq!(asked[0], "http://hub.lab.test/api/flist");
        assert_eq!(asked.len(), 6);
    }

    #[test]
    fn an_unusable_hub_is_left_for_the_next_which_starts_over() {
        let hubs = vec!["http://a.test".to_string(), "http://b.test".to_string()];
        let chain = Chain::new(hubs, "production".into(), true);
        // a answers the probe but has no tf-zos repository.
        let (want, asked) = drive(chain, |url| {
            if url.starts_with("http://a.test/api/flist/tf-zos") {
                Err(Failure {
                    status: Some(404),
                    message: "HTTP 404".into(),
                })
            } else {
                good_hub(url)
            }
        });
        let Want::Done { hub, flists } = want else {
            panic!("{want:?}")
        };
        assert_eq!(hub, "http://b.test");
        assert!(flists.iter().all(|f| f.url.starts_with("http://b.test/")));
        assert_eq!(flists.len(), 3);
        assert!(asked.contains(&"http://b.test/api/flist".to_string()));
    }

    #[test]
    fn every_hub_failing_names_each_reason() {
        let hubs = vec!["http://a.test".to_string(), "http://b.test".to_string()];
        let chain = Chain::new(hubs, "qa".into(), false);
        let (want, _) = drive(chain, |url| {
            if url.starts_with("http://a.test") {
                Err(Failure {
                    status: None,
                    message: "connection refused".into(),
                })
            } else {
                good_hub(url)
            }
        });
        let Want::Failed(why) = want else {
            panic!("{want:?}")
        };
        assert!(
            why.contains("hub http://a.test: is the hub usable: connection refused"),
            "{why}"
        );
        assert!(
            why.contains("hub http://b.test: taglink tf-zos/qa: no taglink \"qa\""),
            "{why}"
        );
        assert!(why.contains("development, production"), "{why}");
    }

    #[test]
    fn a_bad_md5_answer_or_hostile_targets_are_refused() {
        let chain = Chain::new(vec![HUB.into()], "production".into(), false);
        let (want, _) = drive(chain, |url| {
            if url.ends_with(".md5") {
                Ok(b"<html>captive portal</html>".to_vec())
            } else {
                good_hub(url)
            }
        });
        assert!(
            matches!(want, Want::Failed(ref w) if w.contains("is not an MD5")),
            "{want:?}"
        );

        let bad = |t: &str| {
            vec![HubEntry {
                name: "x".into(),
                kind: EntryKind::Symlink,
                target: Some(t.into()),
                updated: None,
            }]
        };
        for t in ["../etc/passwd", "a/../b", "a/b/c", "", "a/", "/a", ".. /x"] {
            assert!(tag_flists(HUB, &bad(t)).is_err(), "{t}");
        }
        let taglink = |t: &str| {
            vec![HubEntry {
                name: "production".into(),
                kind: EntryKind::Taglink,
                target: Some(t.into()),
                updated: None,
            }]
        };
        for t in [
            "tf-autobuilder/tags/..",
            "x/tag/y",
            "../tags/y",
            "a/tags/b/c",
        ] {
            assert!(find_taglink(&taglink(t), "production").is_err(), "{t}");
        }
        assert_eq!(
            find_taglink(&taglink("tf-autobuilder/tags/abc"), "production"),
            Ok(("tf-autobuilder".into(), "abc".into()))
        );
        // A regular file or a tag inside a tag is not what the hub serves there.
        let mut e = bad("a/b");
        e[0].kind = EntryKind::Regular;
        assert!(tag_flists(HUB, &e).is_err());
        assert!(tag_flists(HUB, &[]).is_err());
    }

    #[test]
    fn without_stage_one_the_chain_starts_at_the_taglink() {
        let chain = Chain::new(vec![HUB.into()], "production".into(), false);
        let (want, asked) = drive(chain, good_hub);
        assert!(matches!(want, Want::Done { ref flists, .. } if flists.len() == 2));
        assert!(!asked.iter().any(|u| u.contains("bootstrap")));
    }

    #[test]
    fn config_names_and_md5_parsing() {
        assert_eq!(
            parse_config(br#"{"hub_urls":["https://hub.threefold.me/","https://hub.grid.tf","https://hub.grid.tf/"]}"#),
            Ok(vec!["https://hub.threefold.me".to_string(), "https://hub.grid.tf".to_string()])
        );
        assert!(parse_config(br#"{"hub_urls":[]}"#).is_err());
        assert!(parse_config(br#"{"hub_urls":["ftp://x"]}"#).is_err());
        assert!(parse_config(b"<html>").is_err());
        assert_eq!(taglink_name(RunMode::Prod, None), "production");
        assert_eq!(
            taglink_name(RunMode::Test, Some("v3light")),
            "testing-v3light"
        );
        assert_eq!(taglink_name(RunMode::Dev, Some("v3")), "development");
        assert_eq!(
            default_config_url(RunMode::Qa),
            "https://github.com/threefoldtech/zos-config/raw/main/qa.json"
        );
        assert_eq!(
            parse_md5(format!("{MD5_A}\n").as_bytes()).map(|m| m[0]),
            Ok(0x01)
        );
        assert_eq!(
            parse_md5(format!("{MD5_A}  zos.flist\n").as_bytes()).map(|m| m[15]),
            Ok(0xef)
        );
        assert!(parse_md5(b"0123").is_err());
        assert!(parse_md5(b"0123456789abcdef0123456789abcdeg").is_err());
    }
}
