//! The boot console: one timestamped line per event, then a summary a farmer can read.
use std::io::Write;
use std::time::Instant;

/// Writes console lines, stamped with seconds since the process started (like dmesg), and, as
/// PID 1, into the kernel log too so `dmesg` in the full OS still has them.
pub struct Console {
    start: Instant,
    kmsg: Option<std::sync::Mutex<std::fs::File>>,
}

impl Console {
    pub fn new(start: Instant) -> Self {
        Console { start, kmsg: None }
    }

    /// Also copies every line to /dev/kmsg (only for PID 1: elsewhere that is the host's log).
    pub fn with_kmsg(start: Instant) -> Self {
        let kmsg = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/kmsg")
            .ok()
            .map(std::sync::Mutex::new);
        Console { start, kmsg }
    }

    pub fn start(&self) -> Instant {
        self.start
    }

    /// A second handle on the same console (same clock, same kmsg), for a progress callback
    /// that must own what it uses.
    pub fn try_clone(&self) -> Console {
        let kmsg = self
            .kmsg
            .as_ref()
            .and_then(|k| k.lock().ok()?.try_clone().ok())
            .map(std::sync::Mutex::new);
        Console {
            start: self.start,
            kmsg,
        }
    }

    pub fn line(&self, text: impl std::fmt::Display) {
        let t = self.start.elapsed();
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "[{:4}.{:03}] {text}", t.as_secs(), t.subsec_millis());
        let _ = out.flush();
        if let Some(k) = &self.kmsg {
            if let Ok(mut k) = k.lock() {
                // One write per record; <6> = KERN_INFO.
                let _ = k.write_all(format!("<6>zos-netboot: {text}").as_bytes());
            }
        }
    }

    pub fn block(&self, text: &str) {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }
}

/// The `log` records: warnings and errors are console lines (stdout with the same stamp, and
/// the kernel log as PID 1) so a farmer and `dmesg` see them; info and debug go to stderr, for
/// whoever debugs (`zos.debug` or RUST_LOG).
struct ConsoleLog {
    inner: env_logger::Logger,
    console: Console,
}

impl log::Log for ConsoleLog {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        self.inner.enabled(metadata)
    }

    fn log(&self, record: &log::Record) {
        if !self.inner.matches(record) {
            return;
        }
        if record.level() <= log::Level::Warn {
            self.console
                .line(format_args!("{}: {}", record.level(), record.args()));
        } else {
            self.inner.log(record);
        }
    }

    fn flush(&self) {}
}

/// Sets up `log` for this process (see [`ConsoleLog`]); `kmsg`: also into the kernel log.
pub fn init_log(start: Instant, debug: bool, kmsg: bool) {
    use std::io::Write as _;
    let default = if debug { "debug" } else { "info" };
    let inner =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default))
            .format(move |buf, record| {
                let t = start.elapsed();
                writeln!(
                    buf,
                    "[{:4}.{:03}] {:<5} {}",
                    t.as_secs(),
                    t.subsec_millis(),
                    record.level(),
                    record.args()
                )
            })
            .build();
    let max = inner.filter();
    let console = if kmsg {
        Console::with_kmsg(start)
    } else {
        Console::new(start)
    };
    if log::set_boxed_logger(Box::new(ConsoleLog { inner, console })).is_ok() {
        log::set_max_level(max);
    }
}

/// "850 ms", "42s", "1.5s", "3m 20s", "2h 5m": the one format for durations measured or waited
/// here (lease times, which are whole seconds from a server, are [`human_secs`]).
pub fn human(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => format!("{} ms", d.as_millis()),
        1..=59 if d.subsec_millis() >= 100 => format!("{:.1}s", d.as_secs_f64()),
        1..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {}s", s / 60, s % 60),
        _ => format!("{}h {}m", s / 3600, s % 3600 / 60),
    }
}

/// "1h", "30m", "45s": lease times as a farmer reads them.
pub fn human_secs(s: u32) -> String {
    match s {
        u32::MAX => "infinite".into(),
        0 => "0s".into(),
        s if s % 86400 == 0 => format!("{}d", s / 86400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        use std::time::Duration;
        assert_eq!(human(Duration::from_millis(640)), "640 ms");
        assert_eq!(human(Duration::from_secs(42)), "42s");
        assert_eq!(human(Duration::from_millis(1500)), "1.5s");
        assert_eq!(human(Duration::from_secs(200)), "3m 20s");
        assert_eq!(human(Duration::from_secs(7500)), "2h 5m");
    }

    #[test]
    fn lease_times_read_naturally() {
        assert_eq!(human_secs(3600), "1h");
        assert_eq!(human_secs(86400), "1d");
        assert_eq!(human_secs(120), "2m");
        assert_eq!(human_secs(90), "90s");
        assert_eq!(human_secs(u32::MAX), "infinite");
    }
}
