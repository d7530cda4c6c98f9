//! The DHCPv4 client state machine fed what the network can send, in every state: the input is
//! a script of steps (time passes, a raw packet, a well-formed reply that moves the client on,
//! an ARP packet, a carrier kick), so the fuzzer reaches SELECTING, REQUESTING, BOUND,
//! RENEWING, REBINDING, INIT-REBOOT and DECLINED and throws bytes at each. Raw packets get the
//! client's current xid and MAC patched in, so they are not all dropped at the first check.
#![no_main]
use dhcproto::v4::{self, DhcpOption, MessageType};
use dhcproto::{Decodable, Decoder, Encodable};
use libfuzzer_sys::fuzz_target;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};
use zos_netboot::net::dhcp4::client::{Action, Client, Config};

const MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);

fn last_sent(actions: &[Action], last: &mut Option<v4::Message>) {
    for a in actions {
        if let Action::Send(t) = a {
            // The client must only ever send packets it can decode itself.
            let m = v4::Message::decode(&mut Decoder::new(&t.payload)).expect("valid packet sent");
            *last = Some(m);
        }
    }
}

fn reply(req: &v4::Message, kind: MessageType, lease: u32, addr: Ipv4Addr) -> Vec<u8> {
    let mut m = v4::Message::new_with_id(
        req.xid(),
        Ipv4Addr::UNSPECIFIED,
        addr,
        SERVER,
        Ipv4Addr::UNSPECIFIED,
        &MAC,
    );
    m.set_opcode(v4::Opcode::BootReply);
    let o = m.opts_mut();
    o.insert(DhcpOption::MessageType(kind));
    o.insert(DhcpOption::ServerIdentifier(SERVER));
    o.insert(DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)));
    o.insert(DhcpOption::AddressLeaseTime(lease));
    o.insert(DhcpOption::Router(vec![SERVER]));
    m.to_vec().expect("encodes")
}

fuzz_target!(|data: &[u8]| {
    let t0 = Instant::now();
    let mut now = t0;
    let config = Config {
        ifname: "fuzz0".into(),
        mac: MAC,
        client_id: Config::mac_client_id(MAC),
        hostname: Some("zos-fuzz".into()),
        vendor_class: "zos".into(),
    };
    let (first, mut rest) = data.split_first().map_or((0, data), |(f, r)| (*f, r));
    let mut c = if first & 1 == 0 {
        Client::new(config, now, 7)
    } else {
        Client::reboot(config, Ipv4Addr::new(10, 1, 0, 23), now, 7)
    };
    let mut last = None;
    last_sent(&c.handle_timeout(now), &mut last);
    while let [op, len, tail @ ..] = rest {
        let n = (*len as usize).min(tail.len());
        let (arg, next) = tail.split_at(n);
        rest = next;
        let actions = match op % 6 {
            // Time passes: up to ~18 h, in steps that hit T1, T2 and expiry of short leases.
            0 => {
                let ms = arg.iter().fold(0u64, |a, b| a << 8 | u64::from(*b)) % 65_000_000;
                now += Duration::from_millis(ms);
                if now >= c.poll_at() {
                    c.handle_timeout(now)
                } else {
                    Vec::new()
                }
            }
            // Raw bytes, with our xid/MAC patched in when long enough.
            1 => {
                let mut p = arg.to_vec();
                if let (Some(m), true) = (&last, p.len() >= 34) {
                    p[0] = 2;
                    p[4..8].copy_from_slice(&m.xid().to_be_bytes());
                    p[28..34].copy_from_slice(&MAC);
                }
                c.handle_packet(now, &p)
            }
            // A well-formed OFFER/ACK/NAK to the last packet sent, with a lease time from the
            // input (0 and huge values included).
            2 => match &last {
                Some(m) => {
                    let kind = match arg.first().copied().unwrap_or(0) % 3 {
                        0 => MessageType::Offer,
                        1 => MessageType::Ack,
                        _ => MessageType::Nak,
                    };
                    let lease = arg
                        .get(1..5)
                        .map_or(3600, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                    let addr = arg.get(5..9).map_or(Ipv4Addr::new(10, 1, 0, 23), |b| {
                        Ipv4Addr::new(b[0], b[1], b[2], b[3])
                    });
                    c.handle_packet(now, &reply(m, kind, lease, addr))
                }
                None => Vec::new(),
            },
            // An ARP packet from someone else.
            3 => {
                let ip = |i: usize| {
                    arg.get(i..i + 4).map_or(Ipv4Addr::new(10, 1, 0, 23), |b| {
                        Ipv4Addr::new(b[0], b[1], b[2], b[3])
                    })
                };
                let mac = [0x02, 0, 0, 0, 0, arg.first().copied().unwrap_or(9) | 2];
                c.handle_arp(now, ip(1), mac, ip(5), arg.len() % 2 == 0)
            }
            4 => c.kick(now),
            _ => c.handle_timeout(now),
        };
        last_sent(&actions, &mut last);
        assert!(
            c.poll_at() >= t0,
            "the next wake-up is never before the start"
        );
        let _ = c.state_name();
    }
});
