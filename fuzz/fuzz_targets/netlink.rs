//! Netlink route messages as the kernel sends them, through the parser we use and into the
//! code that turns them into NIC and SLAAC events.
#![no_main]
use libfuzzer_sys::fuzz_target;
use netlink_packet_core::NetlinkMessage;
use netlink_packet_route::RouteNetlinkMessage;
use zos_netboot::net::{links, slaac};

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(data) {
        let _ = slaac::from_netlink(&msg);
        let _ = links::link_update(&msg);
    }
});
