//! Router advertisements and ND user options (RDNSS/DNSSL), from anyone on the segment.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::net::Ipv6Addr;
use zos_netboot::net::slaac::ra;

fuzz_target!(|data: &[u8]| {
    let _ = ra::parse_ra(data, Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1));
    let _ = ra::parse_nduseropt(data);
});
