//! Is the grid's hub reachable, over IPv4 and over IPv6, each on its own?
//!
//! A dual-stack node can have a perfect IPv4 path and a broken IPv6 one (or the reverse), and a
//! single "can I fetch the URL" check hides which. So every probe is pinned to one family: the
//! name is resolved for that family only (A or AAAA), and the TCP connection goes to an address
//! of that family. The DNS *server* may be reached over either family; that is a separate path.
//!
//! Sans-IO pieces (`parse_url`, `dns_query`/`dns_answer`, `http_request`/`http_status`,
//! `interleave`) hold every protocol decision and are unit-tested; the async drivers below them
//! only move bytes, keep time and turn failures into lines a farmer can act on.
//!
//! HTTPS targets are checked as far as DNS + TCP connect: TLS comes later, and their results say
//! so.
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use futures_lite::{future, AsyncReadExt, AsyncWriteExt};
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use smol::net::{TcpStream, UdpSocket};
use smol::Timer;

/// The most of a response we read looking for the status line.
const MAX_HEAD: usize = 4096;
/// RFC 8305 §5: the recommended Connection Attempt Delay.
const CONNECTION_ATTEMPT_DELAY: Duration = Duration::from_millis(250);
/// Our queries carry no EDNS, so answers are at most 512 bytes (RFC 1035 §4.2.1); the larger
/// buffer only avoids cutting a non-conforming one short before we can call it truncated.
const DNS_BUF: usize = 1232;

pub use crate::url::{parse_url, Target};

/// An IP family, probed separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Ipv4,
    Ipv6,
}

impl Family {
    pub fn of(ip: &IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::Ipv4,
            IpAddr::V6(_) => Family::Ipv6,
        }
    }

    fn record_type(self) -> RecordType {
        match self {
            Family::Ipv4 => RecordType::A,
            Family::Ipv6 => RecordType::AAAA,
        }
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Family::Ipv4 => "IPv4",
            Family::Ipv6 => "IPv6",
        })
    }
}

/// A standard query (RFC 1035 §4.1) for the A or AAAA records of `host`, recursion desired: we
/// are a stub and the DHCP/RA-provided server does the work.
pub fn dns_query(host: &str, family: Family, id: u16) -> Result<Vec<u8>, String> {
    let mut name = Name::from_ascii(host)
        .ok()
        .filter(|_| !host.is_empty())
        .ok_or_else(|| format!("DNS: {host:?} is not a valid host name"))?;
    // Absolute: a search list from DHCP must never turn the hub's name into something else.
    name.set_fqdn(true);
    let mut msg = Message::new();
    msg.set_id(id)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .add_query(Query::query(name, family.record_type()));
    msg.to_vec()
        .map_err(|e| format!("DNS: cannot build a query for {host}: {e}"))
}

/// Checks a response to [`dns_query`] and returns its addresses of `family`.
///
/// Only addresses owned by the queried name, or by a CNAME chain from it inside this same answer,
/// are taken (RFC 1034 §3.6.2 — the recursive server has already followed the chain; we issue no
/// further queries). A response for another question is refused (RFC 5452 §9.1).
#[cfg(test)]
pub fn dns_answer(bytes: &[u8], id: u16, family: Family) -> Result<Vec<IpAddr>, String> {
    read_answer(bytes, id, family).map_err(|e| match e {
        DnsError::Failed(e) | DnsError::Negative(e) => e,
        DnsError::Silent => "DNS: no answer".into(),
    })
}

/// Why a DNS server gave no addresses; the kinds rank differently when several servers fail.
enum DnsError {
    /// Nothing came back in time.
    Silent,
    /// The server, the packet or the socket failed; another server may do better.
    Failed(String),
    /// A valid answer saying the records don't exist (NXDOMAIN or NODATA, RFC 2308 §2): final.
    Negative(String),
}

fn read_answer(bytes: &[u8], id: u16, family: Family) -> Result<Vec<IpAddr>, DnsError> {
    use DnsError::{Failed, Negative};
    let msg =
        Message::from_vec(bytes).map_err(|e| Failed(format!("DNS: malformed response: {e}")))?;
    if msg.id() != id {
        return Err(Failed(format!(
            "DNS: response id {} does not match query id {id}",
            msg.id()
        )));
    }
    if msg.message_type() != MessageType::Response || msg.op_code() != OpCode::Query {
        return Err(Failed(
            "DNS: reply is not a response to a standard query".into(),
        ));
    }
    let question = msg.queries().first();
    let host = question.map_or("the host".into(), |q| {
        q.name().to_ascii().trim_end_matches('.').to_string()
    });
    let rtype = family.record_type();
    match msg.response_code() {
        ResponseCode::NoError => {}
        ResponseCode::NXDomain => {
            return Err(Negative(format!("DNS: {host} does not exist (NXDOMAIN)")))
        }
        ResponseCode::ServFail => {
            return Err(Failed(format!("DNS: resolving {host} failed (SERVFAIL)")))
        }
        ResponseCode::Refused => {
            return Err(Failed(format!(
                "DNS: resolving {host} was refused (REFUSED)"
            )))
        }
        rc => return Err(Failed(format!("DNS: server answered {rc} for {host}"))),
    }
    let question =
        question.ok_or_else(|| Failed("DNS: response has no question section".into()))?;
    if question.query_type() != rtype {
        let asked = question.query_type();
        return Err(Failed(format!(
            "DNS: response is for {asked} records, not {rtype}"
        )));
    }
    let mut names = vec![question.name().clone()];
    for _ in 0..msg.answers().len() {
        let next = msg.answers().iter().find_map(|r| match r.data() {
            RData::CNAME(c) if names.contains(r.name()) && !names.contains(&c.0) => {
                Some(c.0.clone())
            }
            _ => None,
        });
        match next {
            Some(n) => names.push(n),
            None => break,
        }
    }
    let addrs: Vec<IpAddr> = msg
        .answers()
        .iter()
        .filter(|r| names.contains(r.name()))
        .filter_map(|r| match (r.data(), family) {
            (RData::A(a), Family::Ipv4) => Some(IpAddr::V4(a.0)),
            (RData::AAAA(a), Family::Ipv6) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect();
    // A truncated answer (RFC 1035 §4.1.1 TC) still holds usable addresses if any made it; we
    // need one, so only an empty truncated answer is a failure (no TCP fallback here).
    match (addrs.is_empty(), msg.truncated()) {
        (false, _) => Ok(addrs),
        (true, true) => Err(Failed(format!(
            "DNS: answer for {host} was truncated, no {rtype} record"
        ))),
        (true, false) => Err(Negative(format!("DNS: no {rtype} record for {host}"))),
    }
}

/// A minimal HTTP/1.1 request (RFC 9112 §3). `t` must come from [`parse_url`], which keeps
/// spaces and line breaks out of the path and host.
pub fn http_request(t: &Target) -> Vec<u8> {
    crate::http1::request_head(crate::http1::Method::Get, t, &[], None).unwrap_or_default()
}

/// The status code from a response's status line: `HTTP/1.x NNN [reason]` (RFC 9112 §4).
pub fn http_status(head: &[u8]) -> Result<u16, String> {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let shown = || line[..line.len().min(40)].escape_ascii().to_string();
    let code = match line {
        [b'H', b'T', b'T', b'P', b'/', b'1', b'.', minor, b' ', code @ ..]
            if minor.is_ascii_digit() =>
        {
            code
        }
        _ => return Err(format!("HTTP: not an HTTP/1.x response: \"{}\"", shown())),
    };
    match code {
        [a, b, c, rest @ ..] if [a, b, c].iter().all(|d| d.is_ascii_digit()) => {
            let n = u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0');
            if (100..=599).contains(&n) && rest.first().is_none_or(|&b| b == b' ') {
                return Ok(n);
            }
        }
        _ => {}
    }
    Err(format!("HTTP: bad status line: \"{}\"", shown()))
}

/// One (URL, family) probe: how far it got and why it stopped.
/// The step a probe reached: the one that failed, or `done`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Step {
    /// The target's URL could not be parsed.
    Url,
    Dns,
    Connect,
    Http,
    Done,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Step::Url => "url",
            Step::Dns => "dns",
            Step::Connect => "connect",
            Step::Http => "http",
            Step::Done => "done",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProbeResult {
    pub url: String,
    pub family: Family,
    /// HTTP: any valid status (a 404 still proves the path works). HTTPS: TCP connected — TLS is
    /// not checked yet, and `error` says so even though `ok` is true.
    pub ok: bool,
    /// Total time, DNS included.
    pub ms: u64,
    pub address: Option<IpAddr>,
    pub status: Option<u16>,
    /// The step that failed, or "done": "dns" | "connect" | "http" | "done".
    pub stage: Step,
    pub error: Option<String>,
}

/// How the drivers below reach the network.
#[derive(Debug, Clone)]
pub struct ProbeConfig {
    /// Resolvers from DHCP/RA, queried on port 53. Link-local IPv6 servers can't be used: an
    /// `IpAddr` has no interface scope.
    pub dns_servers: Vec<IpAddr>,
    /// Bound on each step: one DNS try, the TCP connect, the HTTP exchange.
    pub timeout: Duration,
    /// DNS tries per server (the first send included).
    pub attempts: u32,
}

/// Resolves `host` to addresses of `family`. IP literals need no DNS. All servers are asked at
/// once; the first valid answer wins (addresses, or a final NXDOMAIN/NODATA), so a dead first
/// server costs nothing.
pub async fn resolve(host: &str, family: Family, cfg: &ProbeConfig) -> Result<Vec<IpAddr>, String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return if Family::of(&ip) == family {
            Ok(vec![ip])
        } else {
            Err(format!("no {family} address for {ip}"))
        };
    }
    if cfg.dns_servers.is_empty() {
        return Err(format!(
            "DNS: no DNS server known to resolve {host} (none from DHCP or router advertisements)"
        ));
    }
    let mut answer = None;
    let mut failure = None;
    let queries = cfg.dns_servers.iter().map(|&s| ask(s, host, family, cfg));
    drive(queries, |_, r| {
        match r {
            Ok(addrs) => answer = Some(Ok(addrs)),
            Err(DnsError::Negative(e)) => answer = Some(Err(e)),
            Err(DnsError::Failed(e)) => _ = failure.get_or_insert(e),
            Err(DnsError::Silent) => {}
        }
        answer.is_some()
    })
    .await;
    if let Some(answer) = answer {
        return answer;
    }
    // A server's own failure (SERVFAIL, refused) says more than another server's silence.
    Err(failure.unwrap_or_else(|| {
        let servers: Vec<String> = cfg.dns_servers.iter().map(|s| s.to_string()).collect();
        format!(
            "DNS: no answer for {host} from {}: timeout after {} ({} tries each)",
            servers.join(", "),
            crate::console::human(cfg.timeout),
            cfg.attempts.max(1)
        )
    }))
}

/// One server, over UDP (RFC 1035 §4.2.1), retransmitting the same query after each timeout. The
/// id stays the same across retries so a late answer to an earlier send still counts; anything
/// with another id is ignored, not fatal (RFC 5452 §9.1).
async fn ask(
    server: IpAddr,
    host: &str,
    family: Family,
    cfg: &ProbeConfig,
) -> Result<Vec<IpAddr>, DnsError> {
    let id = fastrand::u16(..);
    let failed =
        |e: io::Error| DnsError::Failed(format!("DNS: server {server}: {}", io_reason(&e)));
    let query = dns_query(host, family, id).map_err(DnsError::Failed)?;
    let local = match server {
        IpAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        IpAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
    };
    let sock = UdpSocket::bind(local).await.map_err(failed)?;
    // Connected, so the kernel drops datagrams from anyone else.
    sock.connect(SocketAddr::new(server, 53))
        .await
        .map_err(failed)?;
    let mut buf = [0u8; DNS_BUF];
    for attempt in 1..=cfg.attempts.max(1) {
        log::debug!(
            "DNS: asking {server} for {host} {} (try {attempt})",
            family.record_type()
        );
        sock.send(&query).await.map_err(failed)?;
        let deadline = Instant::now() + cfg.timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let n = match within(left, sock.recv(&mut buf)).await {
                None => break,
                Some(r) => r.map_err(failed)?,
            };
            let reply = &buf[..n];
            if reply.get(..2) != Some(&id.to_be_bytes()[..]) {
                log::debug!("DNS: ignoring a reply from {server} with another id");
                continue;
            }
            return read_answer(reply, id, family).map_err(|e| match e {
                DnsError::Failed(e) => DnsError::Failed(format!("{e} from {server}")),
                DnsError::Negative(e) => DnsError::Negative(format!("{e} from {server}")),
                DnsError::Silent => DnsError::Silent,
            });
        }
    }
    Err(DnsError::Silent)
}

/// Probes one target over one family. Never panics; a failure names its step and reason.
pub async fn probe(target: &Target, family: Family, cfg: &ProbeConfig) -> ProbeResult {
    let start = Instant::now();
    let mut r = ProbeResult {
        url: target.url.clone(),
        family,
        ok: false,
        ms: 0,
        address: None,
        status: None,
        stage: Step::Dns,
        error: None,
    };
    match run_probe(target, family, cfg, &mut r).await {
        Ok(()) => {
            r.ok = true;
            r.stage = Step::Done;
        }
        Err(e) => r.error = Some(e),
    }
    r.ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
    log::debug!("probe {} over {family}: {r:?}", target.url);
    r
}

async fn run_probe(
    t: &Target,
    family: Family,
    cfg: &ProbeConfig,
    r: &mut ProbeResult,
) -> Result<(), String> {
    let addrs = resolve(&t.host, family, cfg).await?;
    r.stage = Step::Connect;
    let ip = *addrs
        .iter()
        .find(|a| Family::of(a) == family)
        .ok_or_else(|| format!("no {family} address for {}", t.host))?;
    r.address = Some(ip);
    let at = format!("connect {ip} port {}", t.port);
    let mut stream = within(cfg.timeout, TcpStream::connect(SocketAddr::new(ip, t.port)))
        .await
        .ok_or_else(|| format!("{at}: timeout after {}", crate::console::human(cfg.timeout)))?
        .map_err(|e| format!("{at}: {}", io_reason(&e)))?;
    if t.https {
        r.error = Some("TLS not checked yet: TCP connect only".into());
        return Ok(());
    }
    r.stage = Step::Http;
    let status = within(cfg.timeout, exchange(&mut stream, t))
        .await
        .ok_or_else(|| {
            format!(
                "HTTP from {ip}: timeout after {}",
                crate::console::human(cfg.timeout)
            )
        })??;
    r.status = Some(status);
    Ok(())
}

/// Sends the request and reads just enough for the status line.
async fn exchange(stream: &mut TcpStream, t: &Target) -> Result<u16, String> {
    let io = |e: io::Error| format!("HTTP: {}", io_reason(&e));
    stream.write_all(&http_request(t)).await.map_err(io)?;
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 512];
    while !head.contains(&b'\n') {
        let room = MAX_HEAD - head.len();
        if room == 0 {
            return Err("HTTP: no status line in the first 4 KiB".into());
        }
        let n = stream.read(&mut buf[..room.min(512)]).await.map_err(io)?;
        if n == 0 {
            if head.is_empty() {
                return Err("HTTP: connection closed without a response".into());
            }
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    http_status(&head)
}

/// Every target over every requested family, all at once. Results come in targets order, IPv6
/// before IPv4 for each, whatever order they finished in.
pub async fn probe_all(
    targets: &[Target],
    families: &[Family],
    cfg: &ProbeConfig,
) -> Vec<ProbeResult> {
    let fams: Vec<Family> = [Family::Ipv6, Family::Ipv4]
        .into_iter()
        .filter(|f| families.contains(f))
        .collect();
    let jobs: Vec<_> = targets
        .iter()
        .flat_map(|t| fams.iter().map(move |&f| probe(t, f, cfg)))
        .collect();
    let mut out = vec![None; jobs.len()];
    drive(jobs, |i, r| {
        out[i] = Some(r);
        false
    })
    .await;
    out.into_iter().flatten().collect()
}

/// RFC 8305 §4: alternate families, IPv6 first, each family in its given order (the resolver's,
/// RFC 6724); what is left of the longer family goes last.
pub fn interleave(addrs: &[IpAddr]) -> Vec<IpAddr> {
    let mut v6 = addrs.iter().filter(|a| a.is_ipv6());
    let mut v4 = addrs.iter().filter(|a| a.is_ipv4());
    let mut out = Vec::with_capacity(addrs.len());
    loop {
        let (a, b) = (v6.next(), v4.next());
        if a.is_none() && b.is_none() {
            return out;
        }
        out.extend(a.into_iter().chain(b).copied());
    }
}

/// RFC 8305 Happy Eyeballs v2 (§5) for callers that need one connection: addresses in
/// [`interleave`] order, the next attempt 250 ms after the previous one began or as soon as one
/// fails, first success wins and the other attempts are dropped. `timeout` bounds the whole race.
pub async fn connect_happy(
    addrs: &[IpAddr],
    port: u16,
    timeout: Duration,
) -> io::Result<(TcpStream, IpAddr)> {
    let start = |ip| (ip, Box::pin(TcpStream::connect(SocketAddr::new(ip, port))));
    let mut queue = interleave(addrs).into_iter();
    let mut running: Vec<_> = queue.next().map(start).into_iter().collect();
    let mut last_err: Option<io::Error> = None;
    let mut next_attempt = Timer::after(CONNECTION_ATTEMPT_DELAY);
    let mut deadline = Timer::after(timeout);
    future::poll_fn(|cx| loop {
        if Pin::new(&mut deadline).poll(cx).is_ready() {
            let last = last_err
                .as_ref()
                .map(|e| format!(" (last: {e})"))
                .unwrap_or_default();
            let msg = format!(
                "no connection to port {port} within {}{last}",
                crate::console::human(timeout)
            );
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, msg)));
        }
        let mut failed = false;
        let mut i = 0;
        while i < running.len() {
            let (ip, attempt) = &mut running[i];
            let ip = *ip;
            match attempt.as_mut().poll(cx) {
                Poll::Ready(Ok(stream)) => return Poll::Ready(Ok((stream, ip))),
                Poll::Ready(Err(e)) => {
                    let msg = format!("connect {ip} port {port}: {}", io_reason(&e));
                    last_err = Some(io::Error::new(e.kind(), msg));
                    drop(running.swap_remove(i));
                    failed = true;
                }
                Poll::Pending => i += 1,
            }
        }
        let due = failed || running.is_empty() || Pin::new(&mut next_attempt).poll(cx).is_ready();
        if due {
            if let Some(ip) = queue.next() {
                running.push(start(ip));
                next_attempt.set_after(CONNECTION_ATTEMPT_DELAY);
                continue; // poll the new attempt and the new timer so both can wake us
            }
        }
        if running.is_empty() {
            let none = || io::Error::new(io::ErrorKind::InvalidInput, "no address to connect to");
            return Poll::Ready(Err(last_err.take().unwrap_or_else(none)));
        }
        return Poll::Pending;
    })
    .await
}

/// Runs futures concurrently on the calling task (no spawning, so they may borrow), handing each
/// output to `on_done` with its index; stops early, dropping the rest, when `on_done` says true.
async fn drive<F: Future>(
    futs: impl IntoIterator<Item = F>,
    mut on_done: impl FnMut(usize, F::Output) -> bool,
) {
    let mut slots: Vec<_> = futs.into_iter().map(|f| Some(Box::pin(f))).collect();
    future::poll_fn(|cx| {
        let mut busy = false;
        for (i, slot) in slots.iter_mut().enumerate() {
            if let Some(f) = slot {
                match f.as_mut().poll(cx) {
                    Poll::Ready(out) => {
                        *slot = None;
                        if on_done(i, out) {
                            return Poll::Ready(());
                        }
                    }
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
    .await
}

/// `Some(output)`, or `None` if `d` passed first.
async fn within<T>(d: Duration, fut: impl Future<Output = T>) -> Option<T> {
    future::or(async { Some(fut.await) }, async {
        Timer::after(d).await;
        None
    })
    .await
}

/// Short words for the socket errors a farmer will meet, instead of "os error 111".
fn io_reason(e: &io::Error) -> String {
    use io::ErrorKind as K;
    match e.kind() {
        K::ConnectionRefused => "connection refused".into(),
        K::ConnectionReset => "connection reset".into(),
        K::TimedOut => "timed out".into(),
        K::HostUnreachable => "host unreachable".into(),
        K::NetworkUnreachable => "network unreachable (no route)".into(),
        K::AddrNotAvailable => "no usable source address".into(),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::{A, AAAA, CNAME};
    use hickory_proto::rr::Record;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    fn name(s: &str) -> Name {
        Name::from_ascii(s).expect("test name")
    }

    /// A response to `qname`/`qtype` with id `id`, built the way a resolver would.
    fn response(
        id: u16,
        qname: &str,
        qtype: RecordType,
        rcode: ResponseCode,
        answers: Vec<(&str, RData)>,
    ) -> Vec<u8> {
        let mut m = Message::new();
        m.set_id(id)
            .set_message_type(MessageType::Response)
            .set_op_code(OpCode::Query)
            .set_recursion_desired(true)
            .set_recursion_available(true)
            .set_response_code(rcode)
            .add_query(Query::query(name(qname), qtype));
        for (owner, data) in answers {
            m.add_answer(Record::from_rdata(name(owner), 60, data));
        }
        m.to_vec().expect("encode test response")
    }

    #[test]
    fn url_defaults_port_and_path() {
        let t = parse_url("http://Hub.Grid.TF").unwrap();
        assert_eq!(
            (t.https, t.host.as_str(), t.port, t.path.as_str()),
            (false, "hub.grid.tf", 80, "/")
        );
        let t = parse_url("HTTPS://hub.grid.tf?x=1#frag").unwrap();
        assert_eq!((t.https, t.port, t.path.as_str()), (true, 443, "/?x=1"));
        assert_eq!(parse_url("http://h.test:/a").unwrap().port, 80);
    }

    #[test]
    fn url_with_bracketed_ipv6_literal_and_port() {
        let t = parse_url("http://[2001:db8::1]:8080/x").unwrap();
        assert_eq!(
            t,
            Target {
                url: "http://[2001:db8::1]:8080/x".into(),
                https: false,
                host: "2001:db8::1".into(),
                port: 8080,
                path: "/x".into(),
            }
        );
    }

    #[test]
    fn url_rejects_what_we_cannot_or_should_not_send() {
        for bad in [
            "ftp://h.test/",
            "h.test/x",
            "http://user:pw@h.test/",
            "http://h.test/a b",
            "http://h.test/\r\nX: y",
            "http://h.test/\u{e9}",
            "http://2001:db8::1/",
            "http://[2001:db8::1/",
            "http://[2001:db8::1]x/",
            "http://[not-v6]/",
            "http://h.test:0/",
            "http://h.test:65536/",
            "http://h.test:+80/",
            "http:///x",
            "http://a..b/",
            "http://h%2e.test/",
        ] {
            assert!(parse_url(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn dns_query_decodes_as_recursive_question() {
        for (family, rtype) in [
            (Family::Ipv4, RecordType::A),
            (Family::Ipv6, RecordType::AAAA),
        ] {
            let bytes = dns_query("hub.grid.tf", family, 0xbeef).unwrap();
            let m = Message::from_vec(&bytes).unwrap();
            assert_eq!(m.id(), 0xbeef);
            assert_eq!(m.message_type(), MessageType::Query);
            assert!(m.recursion_desired());
            assert_eq!(m.queries().len(), 1);
            assert_eq!(m.queries()[0].name(), &name("hub.grid.tf."));
            assert_eq!(m.queries()[0].query_type(), rtype);
        }
        assert!(dns_query("", Family::Ipv4, 1).is_err());
    }

    #[test]
    fn dns_answer_collects_a_and_aaaa() {
        let a = response(
            7,
            "hub.lab.test.",
            RecordType::A,
            ResponseCode::NoError,
            vec![
                ("hub.lab.test.", RData::A(A::new(10, 0, 0, 1))),
                ("hub.lab.test.", RData::A(A::new(10, 0, 0, 2))),
            ],
        );
        assert_eq!(
            dns_answer(&a, 7, Family::Ipv4).unwrap(),
            vec![ip("10.0.0.1"), ip("10.0.0.2")]
        );
        let v6 = ip("2001:db8::1");
        let IpAddr::V6(v6raw) = v6 else {
            unreachable!()
        };
        let aaaa = response(
            8,
            "hub.lab.test.",
            RecordType::AAAA,
            ResponseCode::NoError,
            vec![("hub.lab.test.", RData::AAAA(AAAA(v6raw)))],
        );
        assert_eq!(dns_answer(&aaaa, 8, Family::Ipv6).unwrap(), vec![v6]);
        // The right id but the other family's question: not ours.
        assert!(dns_answer(&aaaa, 8, Family::Ipv4).is_err());
    }

    #[test]
    fn dns_answer_follows_cname_chain_within_the_answer_only() {
        let bytes = response(
            9,
            "hub.lab.test.",
            RecordType::A,
            ResponseCode::NoError,
            vec![
                ("hub.lab.test.", RData::CNAME(CNAME(name("cdn.lab.test.")))),
                ("cdn.lab.test.", RData::A(A::new(10, 0, 0, 9))),
                ("evil.test.", RData::A(A::new(10, 6, 6, 6))),
            ],
        );
        assert_eq!(
            dns_answer(&bytes, 9, Family::Ipv4).unwrap(),
            vec![ip("10.0.0.9")]
        );
        let dangling = response(
            9,
            "hub.lab.test.",
            RecordType::A,
            ResponseCode::NoError,
            vec![("hub.lab.test.", RData::CNAME(CNAME(name("cdn.lab.test."))))],
        );
        let e = dns_answer(&dangling, 9, Family::Ipv4).unwrap_err();
        assert_eq!(e, "DNS: no A record for hub.lab.test");
    }

    #[test]
    fn dns_answer_reports_nxdomain_and_nodata_plainly() {
        let nx = response(
            1,
            "nope.lab.test.",
            RecordType::AAAA,
            ResponseCode::NXDomain,
            vec![],
        );
        let e = dns_answer(&nx, 1, Family::Ipv6).unwrap_err();
        assert!(e.contains("nope.lab.test does not exist (NXDOMAIN)"), "{e}");
        let empty = response(
            2,
            "hub.grid.tf.",
            RecordType::AAAA,
            ResponseCode::NoError,
            vec![],
        );
        assert_eq!(
            dns_answer(&empty, 2, Family::Ipv6).unwrap_err(),
            "DNS: no AAAA record for hub.grid.tf"
        );
    }

    #[test]
    fn dns_answer_refuses_wrong_id_queries_and_garbage() {
        let ok = response(
            3,
            "hub.lab.test.",
            RecordType::A,
            ResponseCode::NoError,
            vec![("hub.lab.test.", RData::A(A::new(10, 0, 0, 1)))],
        );
        assert!(dns_answer(&ok, 4, Family::Ipv4)
            .unwrap_err()
            .contains("does not match"));
        let query = dns_query("hub.lab.test", Family::Ipv4, 3).unwrap();
        assert!(dns_answer(&query, 3, Family::Ipv4).is_err());
        // Every truncation of a valid answer, and junk, is an error, never a panic.
        for n in 0..ok.len() {
            let _ = dns_answer(&ok[..n], 3, Family::Ipv4);
        }
        assert!(dns_answer(&[0xff; 40], 0xffff, Family::Ipv4).is_err());
        assert!(dns_answer(&ok[..20], 3, Family::Ipv4).is_err());
    }

    #[test]
    fn http_request_has_host_port_and_agent() {
        let t = parse_url("http://[2001:db8::1]:8080/x?y").unwrap();
        let req = String::from_utf8(http_request(&t)).unwrap();
        let agent = format!("User-Agent: zos-netboot/{}\r\n", env!("CARGO_PKG_VERSION"));
        assert!(
            req.starts_with("GET /x?y HTTP/1.1\r\nHost: [2001:db8::1]:8080\r\n"),
            "{req}"
        );
        assert!(
            req.contains(&agent) && req.ends_with("Connection: close\r\n\r\n"),
            "{req}"
        );
        let req = http_request(&parse_url("https://hub.grid.tf:443").unwrap());
        assert!(req.starts_with(b"GET / HTTP/1.1\r\nHost: hub.grid.tf\r\n"));
    }

    #[test]
    fn http_status_parses_status_lines() {
        assert_eq!(http_status(b"HTTP/1.1 200 OK\r\nServer: x\r\n"), Ok(200));
        assert_eq!(http_status(b"HTTP/1.0 404 Not Found\n"), Ok(404));
        assert_eq!(http_status(b"HTTP/1.1 204\r\n"), Ok(204));
        assert_eq!(http_status(b"HTTP/1.1 302 "), Ok(302));
        for bad in [
            &b""[..],
            b"SSH-2.0-OpenSSH_9.6\r\n",
            b"HTTP/1.1 20 OK\r\n",
            b"HTTP/1.1 2000 OK\r\n",
            b"HTTP/1.1 999 Nope\r\n",
            b"HTTP/1.1 099 x\r\n",
            b"HTTP/2 200\r\n",
            b"HTTP/1.1  200 OK\r\n",
            b"<html>\x00\xff",
        ] {
            assert!(
                http_status(bad).is_err(),
                "{:?} accepted",
                bad.escape_ascii().to_string()
            );
        }
    }

    #[test]
    fn interleave_alternates_starting_with_ipv6() {
        let [a4, b4, a6, b6, c6] = [
            "10.0.0.1",
            "10.0.0.2",
            "2001:db8::1",
            "2001:db8::2",
            "2001:db8::3",
        ]
        .map(ip);
        assert_eq!(interleave(&[a4, b4, a6, b6, c6]), vec![a6, a4, b6, b4, c6]);
        assert_eq!(interleave(&[a4, b4]), vec![a4, b4]);
        assert_eq!(interleave(&[b6, a4, a6]), vec![b6, a4, a6]);
        assert!(interleave(&[]).is_empty());
    }

    #[test]
    fn ip_literal_resolves_without_dns_and_only_for_its_family() {
        let cfg = ProbeConfig {
            dns_servers: vec![],
            timeout: Duration::from_secs(1),
            attempts: 1,
        };
        let v4 = smol::block_on(resolve("10.0.0.1", Family::Ipv4, &cfg));
        assert_eq!(v4, Ok(vec![ip("10.0.0.1")]));
        let v6 = smol::block_on(resolve("10.0.0.1", Family::Ipv6, &cfg));
        assert_eq!(v6.unwrap_err(), "no IPv6 address for 10.0.0.1");
        let none = smol::block_on(resolve("hub.lab.test", Family::Ipv4, &cfg));
        assert!(none.unwrap_err().contains("no DNS server"));
    }
}
