//! One backoff-with-jitter policy, used by every stage that retries.
//!
//! Pure: the caller passes the attempt number and a random value, so the schedule is unit-tested
//! without a clock or a random source.
use std::time::Duration;

/// Exponential backoff: `initial × 2^attempt`, capped, with ± `jitter_pct` percent of jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub cap: Duration,
    pub jitter_pct: u32,
}

impl Backoff {
    /// DHCPv4 retransmission while a node boots. RFC 2131 §4.1 suggests 4 s doubling to 64 s;
    /// a booting node has nothing better to do, and a server that comes up late must be found
    /// within 2 s, so we start at 250 ms and cap at 1.5 s (+20 % jitter keeps it under 1.8 s).
    /// The jitter still spreads a rack of nodes that power on at the same instant.
    pub const DHCP_BOOT: Backoff = Backoff {
        initial: Duration::from_millis(250),
        cap: Duration::from_millis(1500),
        jitter_pct: 20,
    };

    /// DHCPv4 retransmission in `keep` after the lease was lost (outage, expiry, NAK): 1 s
    /// doubling to 8 s, so the node is back within ~8 s of the server, while a segment full
    /// of nodes waiting out an outage sends one DISCOVER each per 8 s, not per second.
    pub const DHCP_KEEP: Backoff = Backoff {
        initial: Duration::from_secs(1),
        cap: Duration::from_secs(8),
        jitter_pct: 20,
    };

    /// Downloads from the hub (timeouts, resets, 5xx): 100 ms doubling to 5 s, the schedule
    /// Ignition uses for its fetches. A dropped connection resumes almost at once; a hub that is
    /// down is asked every 5 s, and the jitter spreads a rack of nodes that retry together.
    pub const DOWNLOAD: Backoff = Backoff {
        initial: Duration::from_millis(100),
        cap: Duration::from_secs(5),
        jitter_pct: 20,
    };

    /// Registration with the grid (no answer, 5xx): 500 ms doubling to 30 s with ±50 % jitter.
    /// A whole farm powering on after an outage retries together; wide jitter spreads them so
    /// the registrar sees a trickle, not waves.
    pub const REGISTER: Backoff = Backoff {
        initial: Duration::from_millis(500),
        cap: Duration::from_secs(30),
        jitter_pct: 50,
    };

    /// Delay before retry number `attempt` (0 = the first retry). `random` is any u32 drawn
    /// uniformly by the caller; it picks the jitter.
    pub fn delay(&self, attempt: u32, random: u32) -> Duration {
        let base = self
            .initial
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.cap);
        let base_ms = base.as_millis() as i64;
        let spread = base_ms * self.jitter_pct as i64 / 100;
        let offset = if spread == 0 {
            0
        } else {
            (random as i64 % (2 * spread + 1)) - spread
        };
        Duration::from_millis((base_ms + offset).max(1) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dhcp_boot_backoff_doubles_then_caps_below_two_seconds() {
        let b = Backoff::DHCP_BOOT;
        let mid = u32::MAX / 2; // no jitter for even spreads: offset = mid % (2s+1) - s
        let no_jitter = |a| Backoff { jitter_pct: 0, ..b }.delay(a, mid);
        assert_eq!(no_jitter(0), Duration::from_millis(250));
        assert_eq!(no_jitter(1), Duration::from_millis(500));
        assert_eq!(no_jitter(2), Duration::from_millis(1000));
        assert_eq!(no_jitter(3), Duration::from_millis(1500));
        assert_eq!(no_jitter(40), Duration::from_millis(1500));
        for r in [0u32, 1, 7, 299, 300, 301, 12345, u32::MAX] {
            let d = b.delay(30, r);
            assert!(
                d >= Duration::from_millis(1200) && d <= Duration::from_millis(1800),
                "{d:?}"
            );
        }
    }

    #[test]
    fn jitter_covers_both_sides() {
        let b = Backoff::DHCP_BOOT;
        let ds: Vec<_> = (0..600u32).map(|r| b.delay(0, r)).collect();
        assert!(ds.iter().any(|d| *d < Duration::from_millis(250)));
        assert!(ds.iter().any(|d| *d > Duration::from_millis(250)));
        assert!(ds
            .iter()
            .all(|d| *d >= Duration::from_millis(200) && *d <= Duration::from_millis(300)));
    }
}
