//! The kernel command line (from the boot loader: a farmer's typo, a bootstrap service's bug).
#![no_main]
use libfuzzer_sys::fuzz_target;
use zos_netboot::cmdline;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (settings, _ignored) = cmdline::parse(&text);
    let _ = settings.hub_urls();
    let _ = settings.probe_urls();
    let _ = cmdline::parse_ip(&text);
});
