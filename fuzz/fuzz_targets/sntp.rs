//! An SNTP answer from the network (RFC 4330): any 48+ bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use zos_netboot::clock::{self, NtpTimestamp};

fuzz_target!(|data: &[u8]| {
    let sent = NtpTimestamp::from_unix_ms(1_764_000_000_000);
    let received = NtpTimestamp::from_unix_ms(1_764_000_000_020);
    let _ = clock::sntp_response(data, sent, received);
});
