//! Which time sources may move the clock, and how far: a pure decision, fed claims.
//!
//! The clock decides whether certificates are valid, so whoever sets it can make every real
//! certificate look expired (set it to 2200) — a denial of service until reboot. Sources:
//! SNTP (unauthenticated UDP: anyone on the path), the hub's HTTP `Date` (over verified TLS, or
//! plain http), and a verified certificate chain's notBefore (a lower bound of the time). Rules
//! (issue 17, point 2):
//! - nothing sets the clock before this binary's build time (the caller clamps to the floor);
//! - one source alone may set the clock up to [`MAX_AHEAD_ALONE`] after the build time (or
//!   correct it by up to [`AGREE`] forwards, or backwards, wherever it is: a good RTC is kept);
//! - further ahead, only if a second, *independent* source (another server or host) agrees:
//!   two point claims within [`AGREE`], or a point claim inside a verified certificate's first
//!   [`CERT_SPAN`] (a notBefore says "not earlier than", a certificate lives at most 398 days);
//! - a certificate's date is a claim only once its chain verified (see `fetch::tls`).
use std::time::Duration;

/// How far past the build time one source alone may move the clock. A little over a year: the
/// longest a public certificate lives (398 days) plus slack, so an image a year old still
/// boots from one source, while a rogue cannot send the clock decades ahead.
pub const MAX_AHEAD_ALONE: Duration = Duration::from_secs(400 * 86_400);
/// Two point claims (SNTP, HTTP Date) agree when this close (HTTP Date has 1 s precision and
/// comes seconds later over a slow link).
pub const AGREE: Duration = Duration::from_secs(120);
/// A point claim agrees with a certificate's notBefore when it is at most this far after it.
pub const CERT_SPAN: Duration = Duration::from_secs(400 * 86_400);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An SNTP answer: a point in time.
    Sntp,
    /// The hub's HTTP Date header: a point in time.
    HttpDate,
    /// A verified certificate chain's notBefore: the time is at least this.
    CertStart,
}

/// What one source says, as an offset from the local clock when it was heard (so claims heard
/// at different moments compare).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub kind: Kind,
    /// For the console ("sntp 10.1.0.1").
    pub source: String,
    /// Who vouches: a server address or a host name. Claims with the same origin are one source.
    pub origin: String,
    /// Claimed time minus local time, in ms.
    pub offset_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Move the clock by `offset_ms` (the caller still clamps to the build floor and ignores
    /// steps under a second). `confirmed_by` names the second source when one was needed.
    Step {
        offset_ms: i64,
        confirmed_by: Option<String>,
    },
    /// Not on this source's word alone: why, for the console.
    Hold { why: String },
}

/// Whether `claim` may move the clock, given the claims heard before it (`earlier`), the local
/// time `now_ms` and the build time `build_ms` (both Unix ms).
pub fn decide(now_ms: i64, build_ms: i64, claim: &Claim, earlier: &[Claim]) -> Verdict {
    let limit = build_ms.saturating_add(ms(MAX_AHEAD_ALONE));
    let target = now_ms.saturating_add(claim.offset_ms);
    // Within the bound, or not forward by more than a correction (a clock that is already
    // right, from a good RTC, is fine-tuned by one source; backwards stops at the build floor).
    if target <= limit || claim.offset_ms <= ms(AGREE) {
        return Verdict::Step {
            offset_ms: claim.offset_ms,
            confirmed_by: None,
        };
    }
    for other in earlier.iter().rev() {
        if other.origin == claim.origin {
            continue;
        }
        if let Some(offset_ms) = agreement(claim, other) {
            return Verdict::Step {
                offset_ms,
                confirmed_by: Some(other.source.clone()),
            };
        }
    }
    let days = (target - build_ms) / 86_400_000;
    Verdict::Hold {
        why: format!(
            "{} says {}, {days} days after this image was built: more than {} days ahead, so \
             a second source must agree (none did yet)",
            claim.source,
            crate::clock::format_unix(target / 1000),
            MAX_AHEAD_ALONE.as_secs() / 86_400
        ),
    }
}

/// The offset to step by if `a` and `b` agree: the point claim's (more precise than a bound).
fn agreement(a: &Claim, b: &Claim) -> Option<i64> {
    let point = |c: &Claim| c.kind != Kind::CertStart;
    match (point(a), point(b)) {
        (true, true) => {
            (a.offset_ms.abs_diff(b.offset_ms) <= ms(AGREE) as u64).then_some(a.offset_ms)
        }
        (true, false) => inside_cert(a.offset_ms, b.offset_ms).then_some(a.offset_ms),
        (false, true) => inside_cert(b.offset_ms, a.offset_ms).then_some(b.offset_ms),
        (false, false) => None,
    }
}

fn inside_cert(point: i64, not_before: i64) -> bool {
    point >= not_before.saturating_sub(ms(AGREE))
        && point <= not_before.saturating_add(ms(CERT_SPAN))
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;
    /// 2026-11-01, the fake build time; the fake clock starts at the build time (dead RTC).
    const BUILD: i64 = 1_793_491_200_000;

    fn claim(kind: Kind, origin: &str, offset_ms: i64) -> Claim {
        Claim {
            kind,
            source: format!("{kind:?} {origin}"),
            origin: origin.into(),
            offset_ms,
        }
    }

    fn steps(v: &Verdict) -> Option<i64> {
        match v {
            Verdict::Step { offset_ms, .. } => Some(*offset_ms),
            Verdict::Hold { .. } => None,
        }
    }

    #[test]
    fn one_source_moves_the_clock_within_the_bound() {
        let c = claim(Kind::Sntp, "10.1.0.1", 30 * DAY);
        assert_eq!(steps(&decide(BUILD, BUILD, &c, &[])), Some(30 * DAY));
        // Backwards (towards the floor, which the caller clamps to) is never held here.
        let c = claim(Kind::HttpDate, "hub", -DAY);
        assert_eq!(steps(&decide(BUILD + 2 * DAY, BUILD, &c, &[])), Some(-DAY));
    }

    /// The attack: a rogue SNTP server (or a certificate dated 2200) alone sends the clock
    /// 174 years ahead.
    #[test]
    fn one_source_alone_cannot_send_the_clock_far_ahead() {
        let far = 174 * 365 * DAY;
        for kind in [Kind::Sntp, Kind::HttpDate, Kind::CertStart] {
            let c = claim(kind, "rogue", far);
            let v = decide(BUILD, BUILD, &c, &[]);
            assert!(
                matches!(&v, Verdict::Hold { why } if why.contains("second source")),
                "{v:?}"
            );
        }
        // Two answers from the same origin are one source.
        let a = claim(Kind::Sntp, "rogue", far);
        let b = claim(Kind::HttpDate, "rogue", far + 1000);
        assert_eq!(steps(&decide(BUILD, BUILD, &b, &[a])), None);
    }

    /// An old image (2 years since its build) on a node with a dead RTC: SNTP alone is held,
    /// the hub's Date (another origin) agreeing lets it through.
    #[test]
    fn a_second_independent_source_that_agrees_lets_a_big_step_through() {
        let real = 2 * 365 * DAY;
        let sntp = claim(Kind::Sntp, "10.1.0.1", real);
        assert_eq!(steps(&decide(BUILD, BUILD, &sntp, &[])), None);
        let date = claim(Kind::HttpDate, "hub.test", real + 30_000);
        let v = decide(BUILD, BUILD, &date, std::slice::from_ref(&sntp));
        assert_eq!(
            v,
            Verdict::Step {
                offset_ms: real + 30_000,
                confirmed_by: Some("Sntp 10.1.0.1".into())
            }
        );
        // One that disagrees (a rogue NTP server saying 2200) does not.
        let rogue = claim(Kind::Sntp, "10.1.0.66", 174 * 365 * DAY);
        assert_eq!(steps(&decide(BUILD, BUILD, &date, &[rogue])), None);
    }

    #[test]
    fn a_verified_certificate_start_and_a_point_claim_inside_it_agree() {
        let real = 2 * 365 * DAY;
        let cert = claim(Kind::CertStart, "hub.test", real - 60 * DAY);
        let sntp = claim(Kind::Sntp, "10.1.0.1", real);
        // Either order; the step is the point claim's.
        assert_eq!(
            steps(&decide(BUILD, BUILD, &cert, std::slice::from_ref(&sntp))),
            Some(real)
        );
        assert_eq!(
            steps(&decide(BUILD, BUILD, &sntp, std::slice::from_ref(&cert))),
            Some(real)
        );
        // A point before the certificate's start, or years after it, does not agree.
        let early = claim(Kind::Sntp, "10.1.0.1", real - 90 * DAY);
        assert_eq!(steps(&decide(BUILD, BUILD, &cert, &[early])), None);
        let late = claim(Kind::Sntp, "10.1.0.1", real + 3 * 365 * DAY);
        assert_eq!(steps(&decide(BUILD, BUILD, &cert, &[late])), None);
        // Two lower bounds confirm nothing.
        let cert2 = claim(Kind::CertStart, "other.test", real - 59 * DAY);
        assert_eq!(steps(&decide(BUILD, BUILD, &cert2, &[cert])), None);
    }

    /// A clock that is already right (good RTC, image 3 years old) is fine-tuned by one
    /// source; a big jump forward from there still needs a second.
    #[test]
    fn a_small_correction_of_a_clock_past_the_bound_needs_no_second_source() {
        let now = BUILD + 3 * 365 * DAY;
        let c = claim(Kind::Sntp, "10.1.0.1", 5_000);
        assert_eq!(steps(&decide(now, BUILD, &c, &[])), Some(5_000));
        let c = claim(Kind::Sntp, "10.1.0.1", -40_000);
        assert_eq!(steps(&decide(now, BUILD, &c, &[])), Some(-40_000));
        let c = claim(Kind::Sntp, "10.1.0.1", 30 * DAY);
        assert_eq!(steps(&decide(now, BUILD, &c, &[])), None);
    }
}
