//! No single hub: which hub to ask next, and which not to ask again.
//!
//! Sans-IO: the fetch stage tells a [`HubSet`] what happened (a hub answered, failed, served a
//! wrong SHA-256) and asks it in which order to try the hubs and where an artifact can be had.
//! Rules:
//! - **Order**: the hub that last served something first (a hub that answered is likely to
//!   answer again, and a hub that stalls costs a timeout each time it is tried), then the rest
//!   in the configured order, hubs whose last try failed after those that have not failed.
//! - **Bad**: a hub that served a whole file whose SHA-256 was wrong is never asked again
//!   during this boot (its mirror of the release is not what the manifest says). The caller
//!   keeps the last usable hub: with none left the node could only wait for a reboot.
//! - **Mirrors**: an artifact URL under the base URL of a hub (`https://hub.grid.tf/…`) can be
//!   had from every hub at the same path under its own base; any other URL only from itself.
use serde::{Deserialize, Serialize};

/// What the boot knows of a hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HubStatus {
    /// Not asked yet.
    Untried,
    /// Its last answer was good.
    Ok,
    /// Its last try failed (timeout, refused, 5xx, 4xx …): still used, after the others.
    Failing,
    /// It served a wrong SHA-256: not used again this boot.
    Bad,
}

/// One hub, as the state JSON shows it (`fetch.hubs[]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HubRecord {
    /// Base URL, ending with `/`.
    pub url: String,
    pub status: HubStatus,
    /// Manifests and artifacts it served.
    pub served: u32,
    /// Tries that failed (requests, not files).
    pub failures: u32,
    /// Why it is bad.
    pub bad_reason: Option<String>,
}

/// Where one artifact can be fetched: a URL, and the hub it is on (None: not on any hub).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub hub: Option<usize>,
    pub url: String,
}

/// The boot's hubs, in order of preference, and what happened with each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HubSet {
    hubs: Vec<HubRecord>,
    /// The hub that served last.
    preferred: Option<usize>,
}

/// `https://hub.grid.tf` and `https://hub.grid.tf/` are the same base.
fn base(url: &str) -> String {
    if url.ends_with('/') {
        url.to_string()
    } else {
        format!("{url}/")
    }
}

impl HubSet {
    /// Hubs in order of preference; duplicates (after adding the trailing `/`) are dropped.
    pub fn new(urls: &[String]) -> HubSet {
        let mut hubs: Vec<HubRecord> = Vec::new();
        for u in urls {
            let url = base(u);
            if hubs.iter().all(|h| h.url != url) {
                hubs.push(HubRecord {
                    url,
                    status: HubStatus::Untried,
                    served: 0,
                    failures: 0,
                    bad_reason: None,
                });
            }
        }
        HubSet {
            hubs,
            preferred: None,
        }
    }

    pub fn len(&self) -> usize {
        self.hubs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hubs.is_empty()
    }

    /// The base URL of hub `i` (ends with `/`).
    pub fn url(&self, i: usize) -> &str {
        &self.hubs[i].url
    }

    pub fn records(&self) -> Vec<HubRecord> {
        self.hubs.clone()
    }

    pub fn is_bad(&self, i: usize) -> bool {
        self.hubs[i].status == HubStatus::Bad
    }

    /// The hubs to try, best first; bad ones are left out.
    pub fn order(&self) -> Vec<usize> {
        let mut out: Vec<usize> = (0..self.hubs.len()).filter(|&i| !self.is_bad(i)).collect();
        out.sort_by_key(|&i| {
            (
                self.preferred != Some(i),
                self.hubs[i].status == HubStatus::Failing,
                i,
            )
        });
        out
    }

    /// The hub whose base `url` is under (the longest base, when bases nest).
    pub fn hub_of(&self, url: &str) -> Option<usize> {
        (0..self.hubs.len())
            .filter(|&i| {
                let b = &self.hubs[i].url;
                url.starts_with(b.as_str()) || url == b.trim_end_matches('/')
            })
            .max_by_key(|&i| self.hubs[i].url.len())
    }

    /// Where an artifact at `url` can be had, best first: under a hub's base, the same path
    /// under every usable hub's base; anywhere else, `url` itself. Empty: it is on a hub and
    /// every hub is bad.
    pub fn mirrors(&self, url: &str) -> Vec<Source> {
        let Some(origin) = self.hub_of(url) else {
            return vec![Source {
                hub: None,
                url: url.to_string(),
            }];
        };
        let path = url.get(self.hubs[origin].url.len()..).unwrap_or("");
        self.order()
            .into_iter()
            .map(|i| Source {
                hub: Some(i),
                url: format!("{}{path}", self.hubs[i].url),
            })
            .collect()
    }

    /// Hub `i` served a manifest or a verified artifact: it is tried first from now on.
    pub fn served(&mut self, i: usize) {
        let h = &mut self.hubs[i];
        h.served += 1;
        if h.status != HubStatus::Bad {
            h.status = HubStatus::Ok;
            self.preferred = Some(i);
        }
    }

    /// A try on hub `i` failed (not a wrong hash: see [`HubSet::mark_bad`]).
    pub fn failed(&mut self, i: usize) {
        let h = &mut self.hubs[i];
        h.failures += 1;
        if h.status != HubStatus::Bad {
            h.status = HubStatus::Failing;
        }
        if self.preferred == Some(i) {
            self.preferred = None;
        }
    }

    /// Hub `i` served a wrong file: not used again this boot. True the first time.
    pub fn mark_bad(&mut self, i: usize, why: String) -> bool {
        let h = &mut self.hubs[i];
        if h.status == HubStatus::Bad {
            return false;
        }
        h.status = HubStatus::Bad;
        h.bad_reason = Some(why);
        if self.preferred == Some(i) {
            self.preferred = None;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(urls: &[&str]) -> HubSet {
        HubSet::new(&urls.iter().map(|u| u.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn bases_get_a_slash_and_duplicates_go() {
        let s = set(&["https://a.test", "https://a.test/", "http://b.test/m/"]);
        assert_eq!(s.len(), 2);
        assert_eq!(s.url(0), "https://a.test/");
        assert_eq!(s.url(1), "http://b.test/m/");
    }

    #[test]
    fn order_is_configured_then_last_server_first_failing_last_bad_never() {
        let mut s = set(&["https://a.test/", "https://b.test/", "https://c.test/"]);
        assert_eq!(s.order(), vec![0, 1, 2]);
        s.failed(0);
        assert_eq!(
            s.order(),
            vec![1, 2, 0],
            "a failing hub goes after the others"
        );
        s.served(2);
        assert_eq!(
            s.order(),
            vec![2, 1, 0],
            "the last hub that served goes first"
        );
        s.served(0);
        assert_eq!(s.order(), vec![0, 1, 2]);
        assert!(s.mark_bad(0, "wrong SHA-256 for rootfs".into()));
        assert!(!s.mark_bad(0, "again".into()), "reported once");
        assert_eq!(s.order(), vec![1, 2], "a bad hub is never tried again");
        s.served(0);
        assert_eq!(s.order(), vec![1, 2], "not even after it serves something");
        let r = s.records();
        assert_eq!(r[0].status, HubStatus::Bad);
        assert_eq!(r[0].bad_reason.as_deref(), Some("wrong SHA-256 for rootfs"));
        assert_eq!((r[0].served, r[0].failures), (2, 1));
        assert_eq!(r[1].status, HubStatus::Untried);
    }

    #[test]
    fn artifacts_under_a_hub_are_mirrored_onto_every_usable_hub() {
        let mut s = set(&["https://a.test/", "http://198.51.100.81/mirror"]);
        let m = s.mirrors("https://a.test/zos/test/v3/rootfs.tar.gz");
        assert_eq!(
            m,
            vec![
                Source {
                    hub: Some(0),
                    url: "https://a.test/zos/test/v3/rootfs.tar.gz".into()
                },
                Source {
                    hub: Some(1),
                    url: "http://198.51.100.81/mirror/zos/test/v3/rootfs.tar.gz".into()
                },
            ]
        );
        // From the second hub's manifest, the first is still a mirror (and first in order).
        let m = s.mirrors("http://198.51.100.81/mirror/x");
        assert_eq!(m[0].url, "https://a.test/x");
        assert_eq!(m[1].url, "http://198.51.100.81/mirror/x");
        // Elsewhere: only itself.
        let m = s.mirrors("https://cdn.example/x");
        assert_eq!(
            m,
            vec![Source {
                hub: None,
                url: "https://cdn.example/x".into()
            }]
        );
        // A look-alike host is not the hub.
        assert_eq!(s.hub_of("https://a.test.evil/x"), None);
        s.mark_bad(0, "x".into());
        let m = s.mirrors("https://a.test/x");
        assert_eq!(m.len(), 1, "the bad hub is not a mirror any more: {m:?}");
        assert_eq!(m[0].hub, Some(1));
        s.mark_bad(1, "x".into());
        assert!(s.mirrors("https://a.test/x").is_empty());
    }

    #[test]
    fn nested_bases_pick_the_longest() {
        let s = set(&["https://a.test/", "https://a.test/mirror/"]);
        assert_eq!(s.hub_of("https://a.test/mirror/x"), Some(1));
        assert_eq!(s.hub_of("https://a.test/x"), Some(0));
        assert_eq!(s.hub_of("https://a.test"), Some(0));
    }
}
