//! The clock, before anything speaks TLS.
//!
//! A fresh node's RTC can be years off (flat battery, factory default, a board that never had
//! one), and certificate validation needs the date: a clock in 1970 sees every certificate as
//! not yet valid, which looks like a broken hub to a farmer (ZOS issues #1865, #1948, #2249).
//! Three sources, most trusted last:
//!
//! 1. **Build floor** ([`floor`]): this binary cannot run before it was built. The integrator
//!    passes `env!("ZOS_BUILD_UNIX")`, set by `build.rs` from `SOURCE_DATE_EPOCH` (or the last
//!    commit's time), so reproducible builds keep their floor.
//! 2. **SNTP** ([`sntp_request`], [`sntp_response`], [`query`], [`best`]): RFC 4330 client
//!    mode against the DHCP/`zos.ntp=` servers, unauthenticated but checked the way RFC 4330 §5
//!    and RFC 5905 §8 say.
//! 3. **HTTP `Date`** ([`parse_http_date`]): the hub's answer when UDP/123 is filtered; second
//!    precision, plenty for certificate validity.
//!
//! The protocol parts are pure (tested with hand-built packets); [`query`]/[`best`] are a thin
//! smol driver. Only PID 1 may step the clock ([`set_realtime`]), so tests and labs never touch
//! the machine they run on.
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::task::Poll;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_lite::future;

/// Seconds from the NTP prime epoch (1900-01-01) to the Unix epoch (RFC 5905 §6, Figure 4).
const NTP_UNIX_OFFSET: i64 = 2_208_988_800;
/// One NTP era: the 32-bit seconds field wraps every 2^32 s (next on 2036-02-07, RFC 5905 §6).
const ERA_SECS: i64 = 1 << 32;
/// RFC 4330 §4: the fixed part of an NTP packet.
pub const NTP_PACKET_LEN: usize = 48;
/// The NTP server port (RFC 5905 §7.2).
pub const NTP_PORT: u16 = 123;
/// Steps smaller than this are left alone: TLS needs seconds, and the full OS runs a real NTP
/// client that slews. (RFC 5905's step threshold is 128 ms, for a daemon that also slews.)
pub const STEP_THRESHOLD_MS: i64 = 1000;

/// Which source set the clock and by how much, for the console and the state JSON.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClockReport {
    /// `"build-floor"`, `"sntp 10.0.0.1"` or `"http-date https://hub…"`.
    pub source: String,
    /// Signed step in milliseconds (target − local), 0 when within [`STEP_THRESHOLD_MS`].
    pub step_ms: i64,
    /// Whether the clock was actually stepped (only PID 1 does).
    pub applied: bool,
}

// ------------------------------------------------------------------------------------------
// Build floor and stepping
// ------------------------------------------------------------------------------------------

/// The time to set when the clock is earlier than the build (`now_unix < build_unix`), else
/// `None`. `build_unix` is `env!("ZOS_BUILD_UNIX")` parsed by the integrator: a `build.rs`
/// sets it from `SOURCE_DATE_EPOCH`, else the git commit time. Applied first, so that the
/// NTP era arithmetic below (valid within 68 years of the local clock) always holds.
pub fn floor(build_unix: u64, now_unix: u64) -> Option<u64> {
    (now_unix < build_unix).then_some(build_unix)
}

/// How far to step the clock from `now_unix_ms` to reach `target_unix_ms`, or `None` when they
/// are within [`STEP_THRESHOLD_MS`].
pub fn step(now_unix_ms: i64, target_unix_ms: i64) -> Option<i64> {
    let diff = target_unix_ms.saturating_sub(now_unix_ms);
    (diff.unsigned_abs() > STEP_THRESHOLD_MS.unsigned_abs()).then_some(diff)
}

/// Sets CLOCK_REALTIME. Refuses unless this process is PID 1: the same binary runs in tests,
/// labs and network namespaces on a developer's machine, whose clock is not ours to step.
pub fn set_realtime(unix_ms: i64) -> io::Result<()> {
    if std::process::id() != 1 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "refusing to set the system clock: only PID 1 in the initramfs may",
        ));
    }
    if unix_ms < 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "refusing to set the clock before 1970",
        ));
    }
    let ts = nix::sys::time::TimeSpec::new(
        unix_ms.div_euclid(1000),
        unix_ms.rem_euclid(1000) * 1_000_000,
    );
    nix::time::clock_settime(nix::time::ClockId::CLOCK_REALTIME, ts).map_err(io::Error::from)
}

/// The local clock in Unix milliseconds (0 if it reads before 1970).
pub fn now_unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

// ------------------------------------------------------------------------------------------
// SNTP (RFC 4330, RFC 5905 on-wire format)
// ------------------------------------------------------------------------------------------

/// A 64-bit NTP timestamp (RFC 5905 §6): seconds since 1900 modulo 2^32, and a binary fraction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NtpTimestamp {
    pub secs: u32,
    pub frac: u32,
}

impl NtpTimestamp {
    /// The era is dropped: 2036-02-07 06:28:16 UTC is `secs == 0` again.
    pub fn from_unix_ms(unix_ms: i64) -> NtpTimestamp {
        let secs = (unix_ms.div_euclid(1000) + NTP_UNIX_OFFSET).rem_euclid(ERA_SECS);
        let ms = unix_ms.rem_euclid(1000) as u64;
        NtpTimestamp {
            secs: secs as u32,
            // Rounded up so that to_unix_ms gives the same millisecond back.
            frac: ((ms << 32).div_ceil(1000)) as u32,
        }
    }

    /// Unix milliseconds, choosing the era as RFC 4330 §3 does: most significant bit set means
    /// 1968–2036 (era 0), clear means 2036–2104 (era 1).
    pub fn to_unix_ms(self) -> i64 {
        let era = if self.secs & 0x8000_0000 != 0 { 0 } else { 1 };
        let secs = i64::from(self.secs) + era * ERA_SECS - NTP_UNIX_OFFSET;
        secs * 1000 + ((u64::from(self.frac) * 1000) >> 32) as i64
    }

    /// The local clock now.
    pub fn now() -> NtpTimestamp {
        NtpTimestamp::from_unix_ms(now_unix_ms())
    }

    fn to_u64(self) -> u64 {
        u64::from(self.secs) << 32 | u64::from(self.frac)
    }

    fn read(buf: &[u8], at: usize) -> NtpTimestamp {
        let word = |i: usize| u32::from_be_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
        NtpTimestamp {
            secs: word(at),
            frac: word(at + 4),
        }
    }
}

/// `a − b` in signed 32.32 fixed point seconds. Two's complement makes this right across an era
/// boundary as long as the two are within 68 years of each other (RFC 5905 §6).
fn diff(a: NtpTimestamp, b: NtpTimestamp) -> i128 {
    i128::from(a.to_u64().wrapping_sub(b.to_u64()) as i64)
}

/// 32.32 fixed point seconds → milliseconds, rounded to nearest.
fn fixed_to_ms(x: i128) -> i64 {
    ((x * 1000 + (1 << 31)) >> 32) as i64
}

/// One good SNTP answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// Server clock − local clock (RFC 4330 §5: ((T2 − T1) + (T3 − T4)) / 2).
    pub offset_ms: i64,
    /// Round trip minus the server's processing time ((T4 − T1) − (T3 − T2)), ≥ 0.
    pub delay_ms: u64,
    pub stratum: u8,
    /// The true time at the moment the reply was received (local receive time + offset):
    /// add the time elapsed since then to get the time to set.
    pub server_time_unix_ms: u64,
}

/// A client request (RFC 4330 §5): LI 0, version 4, mode 3 (client), every field zero but the
/// Transmit Timestamp, which the server copies into its Originate Timestamp: that echo is how
/// we recognise the answer to *this* request.
pub fn sntp_request(transmit: NtpTimestamp) -> [u8; NTP_PACKET_LEN] {
    let mut p = [0u8; NTP_PACKET_LEN];
    p[0] = 4 << 3 | 3;
    p[40..44].copy_from_slice(&transmit.secs.to_be_bytes());
    p[44..48].copy_from_slice(&transmit.frac.to_be_bytes());
    p
}

/// Whether `buf` is long enough and echoes `sent` (RFC 4330 §5, RFC 5905 §8 "bogus" test):
/// the driver silently waits on past replies that do not, as they answer someone else or are
/// forged by an off-path attacker who cannot see our transmit timestamp.
fn answers(buf: &[u8], sent: NtpTimestamp) -> bool {
    buf.len() >= NTP_PACKET_LEN && NtpTimestamp::read(buf, 24) == sent
}

/// Validates a server reply to a request whose transmit timestamp was `sent`, received at local
/// time `received`, and computes offset and delay (RFC 4330 §5).
pub fn sntp_response(
    buf: &[u8],
    sent: NtpTimestamp,
    received: NtpTimestamp,
) -> Result<Sample, String> {
    if buf.len() < NTP_PACKET_LEN {
        return Err(format!(
            "short reply: {} bytes, an NTP packet has at least {NTP_PACKET_LEN}",
            buf.len()
        ));
    }
    let li = buf[0] >> 6;
    let version = (buf[0] >> 3) & 7;
    let mode = buf[0] & 7;
    let stratum = buf[1];
    if mode != 4 {
        return Err(format!("not a server reply (mode {mode}, expected 4)"));
    }
    if !(3..=4).contains(&version) {
        return Err(format!("NTP version {version} is not supported (3 or 4)"));
    }
    if !answers(buf, sent) {
        return Err("originate timestamp does not match our request (stale or forged)".into());
    }
    if stratum == 0 {
        // RFC 5905 §7.4: a kiss-o'-death packet carries its code in the reference ID. Checked
        // before LI, which such packets set to 3.
        let code: String = buf[12..16]
            .iter()
            .map(|&c| if c.is_ascii_graphic() { c as char } else { '?' })
            .collect();
        let meaning = match code.as_str() {
            "RATE" => ": asked to slow down",
            "DENY" | "RSTR" => ": access denied",
            _ => "",
        };
        return Err(format!("kiss-o'-death {code:?}{meaning}"));
    }
    if li == 3 {
        return Err("server clock is not synchronised (leap indicator 3)".into());
    }
    if stratum > 15 {
        return Err(format!(
            "server clock is not synchronised (stratum {stratum})"
        ));
    }
    let t1 = sent;
    let t2 = NtpTimestamp::read(buf, 32);
    let t3 = NtpTimestamp::read(buf, 40);
    let t4 = received;
    if t3 == NtpTimestamp::default() {
        return Err("transmit timestamp is zero".into());
    }
    if t2 == NtpTimestamp::default() {
        return Err("receive timestamp is zero".into());
    }
    let offset_ms = fixed_to_ms((diff(t2, t1) + diff(t3, t4)) / 2);
    let delay_ms = fixed_to_ms(diff(t4, t1) - diff(t3, t2)).max(0) as u64;
    let server_time = t4.to_unix_ms().saturating_add(offset_ms);
    Ok(Sample {
        offset_ms,
        delay_ms,
        stratum,
        server_time_unix_ms: u64::try_from(server_time)
            .map_err(|_| format!("server time {server_time} ms is before 1970"))?,
    })
}

/// Asks one server; errors start with "NTP server ADDR:". Replies that do not echo our transmit timestamp are ignored (logged at
/// debug) and we keep waiting; the first one that does decides. The low 22 bits of the
/// timestamp's fraction (under 1 ms) are random, so a blind attacker has to guess them.
pub async fn query(server: SocketAddr, timeout: Duration) -> Result<Sample, String> {
    let exchange = async {
        let local: SocketAddr = match server {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let sock = smol::net::UdpSocket::bind(local)
            .await
            .map_err(|e| format!("cannot open a UDP socket: {e}"))?;
        // Connected: the kernel drops datagrams from other sources and reports ICMP errors.
        sock.connect(server)
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        let mut sent = NtpTimestamp::now();
        sent.frac = (sent.frac & !0x3f_ffff) | (fastrand::u32(..) & 0x3f_ffff);
        sock.send(&sntp_request(sent))
            .await
            .map_err(|e| format!("cannot send: {e}"))?;
        let mut buf = [0u8; 512];
        loop {
            let n = sock
                .recv(&mut buf)
                .await
                .map_err(|e| format!("no answer: {e}"))?;
            let received = NtpTimestamp::now();
            if !answers(&buf[..n], sent) {
                log::debug!(
                    "ntp {server}: ignoring a {n}-byte reply that does not answer our request"
                );
                continue;
            }
            return sntp_response(&buf[..n], sent, received);
        }
    };
    future::or(exchange, async {
        smol::Timer::after(timeout).await;
        Err(format!("no answer within {} ms", timeout.as_millis()))
    })
    .await
    .map_err(|e| format!("NTP server {server}: {e}"))
}

/// Asks every server (port 123) at once and keeps the answer with the lowest delay: the
/// smaller the round trip, the smaller the worst-case error of the offset (RFC 5905 §8).
/// Fails only when every server fails, listing each one's reason.
pub async fn best(servers: &[IpAddr], timeout: Duration) -> Result<(IpAddr, Sample), String> {
    let addrs: Vec<SocketAddr> = servers
        .iter()
        .map(|ip| SocketAddr::new(*ip, NTP_PORT))
        .collect();
    best_of(&addrs, timeout)
        .await
        .map(|(addr, sample)| (addr.ip(), sample))
}

async fn best_of(
    servers: &[SocketAddr],
    timeout: Duration,
) -> Result<(SocketAddr, Sample), String> {
    if servers.is_empty() {
        return Err("no NTP server to ask".into());
    }
    // One future type (query's), so no boxing of trait objects: pinned in place in the Vec.
    let mut pending: Vec<_> = servers
        .iter()
        .map(|s| Box::pin(query(*s, timeout)))
        .collect();
    let mut results: Vec<Option<Result<Sample, String>>> = vec![None; servers.len()];
    // Every query ends by itself (timeout), so polling them all until done is bounded.
    future::poll_fn(|cx| {
        let mut busy = false;
        for (fut, slot) in pending.iter_mut().zip(results.iter_mut()) {
            if slot.is_none() {
                match fut.as_mut().poll(cx) {
                    Poll::Ready(r) => *slot = Some(r),
                    Poll::Pending => busy = true,
                }
            }
        }
        if busy {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    let mut winner: Option<(SocketAddr, Sample)> = None;
    let mut errors = Vec::new();
    for (addr, r) in servers.iter().zip(results) {
        match r {
            Some(Ok(s)) if winner.is_none_or(|(_, w)| s.delay_ms < w.delay_ms) => {
                winner = Some((*addr, s))
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => errors.push(e),
            None => errors.push(format!("NTP server {addr}: no result")),
        }
    }
    winner.ok_or_else(|| errors.join("; "))
}

// ------------------------------------------------------------------------------------------
// HTTP Date (RFC 9110 §5.6.7, formerly RFC 7231 §7.1.1.1)
// ------------------------------------------------------------------------------------------

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const LONG_DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// Parses an HTTP `Date` header into Unix seconds. Accepts the three forms a recipient must
/// (RFC 9110 §5.6.7): IMF-fixdate `Sun, 06 Nov 1994 08:49:37 GMT`, the obsolete RFC 850
/// `Sunday, 06-Nov-94 08:49:37 GMT` and asctime `Sun Nov  6 08:49:37 1994`. RFC 850's
/// two-digit year is read as POSIX `%y` does (69–99 → 19xx, 00–68 → 20xx): the RFC's "50 years
/// in the future" rule needs the very clock we are trying to set. The weekday must be a valid
/// name but is not checked against the date. `None` for anything else, or before 1970.
pub fn parse_http_date(s: &str) -> Option<u64> {
    let t: Vec<&str> = s.split_ascii_whitespace().collect();
    let (year, month, day, time) = match t.as_slice() {
        // IMF-fixdate
        [wd, d, m, y, time, "GMT"] if DAYS.contains(&wd.strip_suffix(',')?) => {
            if d.len() != 2 || y.len() != 4 {
                return None;
            }
            (number(y)?, month(m)?, number(d)?, *time)
        }
        // RFC 850
        [wd, date, time, "GMT"] if LONG_DAYS.contains(&wd.strip_suffix(',')?) => {
            let mut parts = date.split('-');
            let (d, m, y) = (parts.next()?, parts.next()?, parts.next()?);
            if parts.next().is_some() || d.len() != 2 || y.len() != 2 {
                return None;
            }
            let yy = number(y)?;
            (
                if yy >= 69 { 1900 + yy } else { 2000 + yy },
                month(m)?,
                number(d)?,
                *time,
            )
        }
        // asctime
        [wd, m, d, time, y] if DAYS.contains(wd) => {
            if d.is_empty() || d.len() > 2 || y.len() != 4 {
                return None;
            }
            (number(y)?, month(m)?, number(d)?, *time)
        }
        _ => return None,
    };
    let mut hms = time.split(':');
    let (h, m, sec) = (hms.next()?, hms.next()?, hms.next()?);
    if hms.next().is_some() || h.len() != 2 || m.len() != 2 || sec.len() != 2 {
        return None;
    }
    let (h, m, sec) = (number(h)?, number(m)?, number(sec)?);
    // Second 60 is a leap second (RFC 9110 allows it).
    if year < 1970 || day == 0 || day > days_in_month(year, month) || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    u64::try_from(days * 86_400 + h * 3600 + m * 60 + sec).ok()
}

fn number(s: &str) -> Option<i64> {
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// 1–12.
fn month(s: &str) -> Option<i64> {
    MONTHS.iter().position(|m| *m == s).map(|i| i as i64 + 1)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's
/// `civil_from_days`): (year, month 1–12, day 1–31).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// `2026-11-25 06:47:13 UTC`, for the console.
pub fn format_unix(unix: i64) -> String {
    let (y, m, d) = civil_from_days(unix.div_euclid(86_400));
    let s = unix.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// CLOCK_BOOTTIME in ms: a clock no one steps, shared by the initramfs and the full OS (same
/// kernel), so a lease's age survives the hand-over and any correction of the wall clock.
pub fn boottime_ms() -> Option<u64> {
    let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME).ok()?;
    Some(ts.tv_sec() as u64 * 1000 + ts.tv_nsec() as u64 / 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    #[test]
    fn formats_unix_times_as_utc_dates() {
        assert_eq!(format_unix(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_unix(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(format_unix(1_795_588_033), "2026-11-25 06:27:13 UTC");
        assert_eq!(format_unix(-1), "1969-12-31 23:59:59 UTC");
        for days in [-800_000, -1, 0, 59, 11_016, 20_000, 2_000_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
    }

    const T1_MS: i64 = 1_700_000_000_000;

    fn ts(unix_ms: i64) -> NtpTimestamp {
        NtpTimestamp::from_unix_ms(unix_ms)
    }

    /// A server reply to `sent`: version 4, mode 4, the given LI, stratum and timestamps.
    fn reply(
        sent: NtpTimestamp,
        li: u8,
        stratum: u8,
        t2: NtpTimestamp,
        t3: NtpTimestamp,
    ) -> Vec<u8> {
        let mut p = vec![0u8; NTP_PACKET_LEN];
        p[0] = li << 6 | 4 << 3 | 4;
        p[1] = stratum;
        p[12..16].copy_from_slice(b"GPS\0");
        for (at, t) in [(24, sent), (32, t2), (40, t3)] {
            p[at..at + 4].copy_from_slice(&t.secs.to_be_bytes());
            p[at + 4..at + 8].copy_from_slice(&t.frac.to_be_bytes());
        }
        p
    }

    /// Server 10 s ahead, 50 ms each way, 10 ms processing.
    fn good() -> (NtpTimestamp, Vec<u8>, NtpTimestamp) {
        let t1 = ts(T1_MS);
        let t2 = ts(T1_MS + 10_050);
        let t3 = ts(T1_MS + 10_060);
        let t4 = ts(T1_MS + 110);
        (t1, reply(t1, 0, 2, t2, t3), t4)
    }

    #[test]
    fn request_is_a_version_4_client_packet_carrying_our_transmit_timestamp() {
        let t = NtpTimestamp {
            secs: 0xe8f0_1234,
            frac: 0x8000_0001,
        };
        let p = sntp_request(t);
        assert_eq!(p[0], 0x23, "LI 0, VN 4, mode 3");
        assert!(p[1..40].iter().all(|&b| b == 0));
        assert_eq!(
            &p[40..48],
            &[0xe8, 0xf0, 0x12, 0x34, 0x80, 0x00, 0x00, 0x01]
        );
    }

    #[test]
    fn good_reply_gives_offset_delay_and_server_time() {
        let (t1, p, t4) = good();
        let s = sntp_response(&p, t1, t4).unwrap();
        assert_eq!(s.offset_ms, 10_000);
        assert_eq!(s.delay_ms, 100);
        assert_eq!(s.stratum, 2);
        assert_eq!(s.server_time_unix_ms, (T1_MS + 110 + 10_000) as u64);
        // Version 3 servers are fine too.
        let mut v3 = p.clone();
        v3[0] = 3 << 3 | 4;
        assert!(sntp_response(&v3, t1, t4).is_ok());
    }

    #[test]
    fn server_behind_us_gives_a_negative_offset() {
        let t1 = ts(T1_MS);
        let p = reply(
            t1,
            0,
            1,
            ts(T1_MS - 3_600_000 + 20),
            ts(T1_MS - 3_600_000 + 21),
        );
        let s = sntp_response(&p, t1, ts(T1_MS + 41)).unwrap();
        assert_eq!(s.offset_ms, -3_600_000);
        assert_eq!(s.delay_ms, 40);
    }

    #[test]
    fn wrong_mode_or_version_is_refused() {
        let (t1, p, t4) = good();
        let mut client = p.clone();
        client[0] = 4 << 3 | 3;
        assert!(sntp_response(&client, t1, t4)
            .unwrap_err()
            .contains("mode 3"));
        let mut v2 = p;
        v2[0] = 2 << 3 | 4;
        assert!(sntp_response(&v2, t1, t4)
            .unwrap_err()
            .contains("version 2"));
    }

    #[test]
    fn kiss_of_death_reports_its_code() {
        let (t1, mut p, t4) = good();
        p[0] = 3 << 6 | 4 << 3 | 4;
        p[1] = 0;
        p[12..16].copy_from_slice(b"RATE");
        let e = sntp_response(&p, t1, t4).unwrap_err();
        assert!(
            e.contains("kiss-o'-death \"RATE\": asked to slow down"),
            "{e}"
        );
    }

    #[test]
    fn unsynchronised_server_is_refused() {
        let (t1, mut p, t4) = good();
        p[0] |= 3 << 6;
        assert!(sntp_response(&p, t1, t4)
            .unwrap_err()
            .contains("leap indicator 3"));
        let (t1, mut p, t4) = good();
        p[1] = 16;
        assert!(sntp_response(&p, t1, t4)
            .unwrap_err()
            .contains("stratum 16"));
    }

    #[test]
    fn reply_to_another_request_is_refused() {
        let (t1, p, t4) = good();
        let other = NtpTimestamp {
            frac: t1.frac ^ 1,
            ..t1
        };
        let e = sntp_response(&p, other, t4).unwrap_err();
        assert!(e.contains("originate timestamp does not match"), "{e}");
        assert!(!answers(&p, other));
        assert!(answers(&p, t1));
    }

    #[test]
    fn short_or_zero_timestamp_replies_are_refused() {
        let (t1, p, t4) = good();
        assert!(sntp_response(&p[..47], t1, t4)
            .unwrap_err()
            .contains("47 bytes"));
        assert!(sntp_response(&[], t1, t4).unwrap_err().contains("short"));
        let mut zero_tx = p.clone();
        zero_tx[40..48].fill(0);
        assert!(sntp_response(&zero_tx, t1, t4)
            .unwrap_err()
            .contains("transmit timestamp is zero"));
        let mut zero_rx = p;
        zero_rx[32..40].fill(0);
        assert!(sntp_response(&zero_rx, t1, t4)
            .unwrap_err()
            .contains("receive timestamp is zero"));
    }

    #[test]
    fn timestamps_round_trip_in_both_eras() {
        for ms in [
            0,
            1,
            999,
            T1_MS,
            T1_MS + 123,
            2_085_978_495_999,
            2_085_978_496_000,
            2_200_000_000_007,
        ] {
            assert_eq!(ts(ms).to_unix_ms(), ms, "{ms}");
        }
        // 2036-02-07 06:28:16 UTC is the first second of era 1.
        assert_eq!(ts(2_085_978_496_000), NtpTimestamp { secs: 0, frac: 0 });
        assert_eq!(
            NtpTimestamp { secs: 0, frac: 0 }.to_unix_ms(),
            2_085_978_496_000
        );
        assert_eq!(
            NtpTimestamp {
                secs: 0xffff_ffff,
                frac: 0
            }
            .to_unix_ms(),
            2_085_978_495_000
        );
    }

    #[test]
    fn offset_is_right_across_the_2036_era_wrap() {
        // Our clock reads the last second of era 0, the server is 1.5 s ahead, in era 1.
        let t1 = NtpTimestamp {
            secs: 0xffff_ffff,
            frac: 0,
        };
        let server = NtpTimestamp {
            secs: 0,
            frac: 0x8000_0000,
        };
        let s = sntp_response(&reply(t1, 0, 1, server, server), t1, t1).unwrap();
        assert_eq!(s.offset_ms, 1500);
        assert_eq!(s.delay_ms, 0);
        assert_eq!(s.server_time_unix_ms, 2_085_978_496_500);
    }

    #[test]
    fn http_dates_in_all_three_formats() {
        let want = Some(784_111_777);
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), want);
        assert_eq!(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), want);
        assert_eq!(parse_http_date("Sun Nov  6 08:49:37 1994"), want);
        assert_eq!(
            parse_http_date("  Thu, 29 Feb 2024 12:00:00 GMT\r\n"),
            Some(1_709_208_000)
        );
        assert_eq!(
            parse_http_date("Wed, 01 Mar 2000 00:00:00 GMT"),
            Some(951_868_800)
        );
        assert_eq!(
            parse_http_date("Tuesday, 07-Feb-36 06:28:16 GMT"),
            Some(2_085_978_496)
        );
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
    }

    #[test]
    fn garbage_http_dates_are_none() {
        for bad in [
            "",
            "yesterday",
            "Sun, 06 Nov 1994 08:49:37 PST",
            "Sun, 06 Nov 1994 08:49:37",
            "Sun, 6 Nov 1994 08:49:37 GMT",
            "Sun, 06 nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 94 08:49:37 GMT",
            "Fun, 06 Nov 1994 08:49:37 GMT",
            "Sun, 31 Feb 2024 00:00:00 GMT",
            "Sun, 29 Feb 2023 00:00:00 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Sun, 06 Nov 1994 08:60:00 GMT",
            "Sun, 06 Nov 1994 8:49:37 GMT",
            "Sun, 06 Nov 1969 08:49:37 GMT",
            "Sun, 06 Nov +994 08:49:37 GMT",
            "Sunday, 06-Nov-1994 08:49:37 GMT",
            "Sun Nov 6 08:49:37 94",
            "Sun Nov 6 08:49:37:00 1994",
        ] {
            assert_eq!(parse_http_date(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn floor_only_moves_the_clock_forward_to_the_build_time() {
        assert_eq!(floor(1_764_000_000, 0), Some(1_764_000_000));
        assert_eq!(floor(1_764_000_000, 1_763_999_999), Some(1_764_000_000));
        assert_eq!(floor(1_764_000_000, 1_764_000_000), None);
        assert_eq!(floor(1_764_000_000, 1_900_000_000), None);
    }

    #[test]
    fn step_only_beyond_one_second() {
        assert_eq!(step(T1_MS, T1_MS), None);
        assert_eq!(step(T1_MS, T1_MS + 1000), None);
        assert_eq!(step(T1_MS, T1_MS - 1000), None);
        assert_eq!(step(T1_MS, T1_MS + 1001), Some(1001));
        assert_eq!(step(T1_MS, T1_MS - 5000), Some(-5000));
        assert_eq!(step(0, T1_MS), Some(T1_MS));
        assert_eq!(step(i64::MIN, i64::MAX), Some(i64::MAX));
    }

    #[test]
    fn set_realtime_refuses_outside_pid_1() {
        assert_ne!(std::process::id(), 1, "tests must not run as PID 1");
        let e = set_realtime(now_unix_ms() + 3_600_000).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
    }

    /// A one-shot SNTP server on `bind`: answers each request `offset_ms` ahead of our clock,
    /// after `delay`, first sending `decoys` replies with a wrong originate timestamp.
    fn responder(bind: &str, offset_ms: i64, delay: Duration, decoys: usize) -> SocketAddr {
        let sock = UdpSocket::bind(bind).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let addr = sock.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 128];
            let Ok((n, peer)) = sock.recv_from(&mut buf) else {
                return;
            };
            assert_eq!(n, NTP_PACKET_LEN);
            let origin = NtpTimestamp::read(&buf, 40);
            // Before T2: a slow path, not server processing time (which delay excludes).
            std::thread::sleep(delay);
            let t2 = ts(now_unix_ms() + offset_ms);
            for i in 0..decoys {
                let forged = NtpTimestamp {
                    frac: origin.frac ^ (i as u32 + 1),
                    ..origin
                };
                let _ = sock.send_to(&reply(forged, 0, 1, t2, t2), peer);
            }
            let t3 = ts(now_unix_ms() + offset_ms);
            let _ = sock.send_to(&reply(origin, 0, 1, t2, t3), peer);
        });
        addr
    }

    #[test]
    fn query_measures_a_loopback_server_and_ignores_forged_replies() {
        let server = responder("127.0.0.1:0", 5_000, Duration::ZERO, 2);
        let s = smol::block_on(query(server, Duration::from_secs(2))).unwrap();
        // Loose bounds: a loaded CI machine may delay the responder thread.
        assert!((4_750..=5_250).contains(&s.offset_ms), "{s:?}");
        assert!(s.delay_ms < 250, "{s:?}");
        assert_eq!(s.stratum, 1);
        let expected = now_unix_ms() + 5_000;
        assert!(
            (s.server_time_unix_ms as i64 - expected).abs() < 500,
            "{s:?}"
        );
    }

    #[test]
    fn query_times_out_on_a_silent_server() {
        let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
        let start = std::time::Instant::now();
        let e = smol::block_on(query(
            silent.local_addr().unwrap(),
            Duration::from_millis(200),
        ))
        .unwrap_err();
        assert!(e.contains("within 200 ms"), "{e}");
        assert!(start.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn best_prefers_the_lowest_delay_and_reports_every_failure() {
        let slow = responder("127.0.0.1:0", 1_000, Duration::from_millis(400), 0);
        let fast = responder("127.0.0.2:0", 2_000, Duration::ZERO, 0);
        let silent = UdpSocket::bind("127.0.0.3:0").unwrap();
        let servers = [slow, silent.local_addr().unwrap(), fast];
        let (addr, s) = smol::block_on(best_of(&servers, Duration::from_millis(1000))).unwrap();
        assert_eq!(addr, fast);
        assert!((1_750..=2_250).contains(&s.offset_ms), "{s:?}");

        let silent2 = UdpSocket::bind("127.0.0.4:0").unwrap();
        let servers = [silent.local_addr().unwrap(), silent2.local_addr().unwrap()];
        let e = smol::block_on(best_of(&servers, Duration::from_millis(100))).unwrap_err();
        assert!(
            e.starts_with("NTP server 127.0.0.3:") && e.contains("; NTP server 127.0.0.4:"),
            "{e}"
        );
        assert!(smol::block_on(best(&[], Duration::from_millis(1))).is_err());
    }
}
