//! Drives the client with a fake clock and hand-built server replies.
use super::*;
use std::str::FromStr;

const MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
const OFFERED: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 23);

fn config() -> Config {
    Config {
        ifname: "eth0".into(),
        mac: MAC,
        client_id: Config::mac_client_id(MAC),
        hostname: Some("zos-node".into()),
        vendor_class: "zos".into(),
    }
}

fn sent(actions: &[Action]) -> Vec<(v4::Message, Transmit)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send(t) => Some((
                v4::Message::decode(&mut Decoder::new(&t.payload)).expect("we send valid packets"),
                t.clone(),
            )),
            _ => None,
        })
        .collect()
}

fn events(actions: &[Action]) -> Vec<Event> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Event(e) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

/// A server reply to `req`, with the usual options; `edit` changes it before encoding.
fn reply(req: &v4::Message, kind: MessageType, edit: impl FnOnce(&mut v4::Message)) -> Vec<u8> {
    let mut m = v4::Message::new_with_id(
        req.xid(),
        Ipv4Addr::UNSPECIFIED,
        OFFERED,
        SERVER,
        Ipv4Addr::UNSPECIFIED,
        &MAC,
    );
    m.set_opcode(v4::Opcode::BootReply);
    let o = m.opts_mut();
    o.insert(DhcpOption::MessageType(kind));
    o.insert(DhcpOption::ServerIdentifier(SERVER));
    o.insert(DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)));
    o.insert(DhcpOption::AddressLeaseTime(3600));
    o.insert(DhcpOption::Router(vec![SERVER]));
    o.insert(DhcpOption::DomainNameServer(vec![SERVER]));
    o.insert(DhcpOption::DomainName("lab.test".into()));
    edit(&mut m);
    m.to_vec().unwrap()
}

fn nak(req: &v4::Message, server: Ipv4Addr) -> Vec<u8> {
    let mut m = v4::Message::new_with_id(
        req.xid(),
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        &MAC,
    );
    m.set_opcode(v4::Opcode::BootReply);
    m.opts_mut()
        .insert(DhcpOption::MessageType(MessageType::Nak));
    m.opts_mut().insert(DhcpOption::ServerIdentifier(server));
    m.opts_mut()
        .insert(DhcpOption::Message("wrong network".into()));
    m.to_vec().unwrap()
}

/// Runs DISCOVER → OFFER → REQUEST and returns the client in REQUESTING with the REQUEST sent.
fn to_requesting(t0: Instant) -> (Client, v4::Message) {
    let mut c = Client::new(config(), t0, 7);
    let (discover, _) = sent(&c.handle_timeout(t0)).remove(0);
    let actions = c.handle_packet(t0, &reply(&discover, MessageType::Offer, |_| {}));
    assert!(actions.contains(&Action::ArpProbe(OFFERED)), "{actions:?}");
    let (request, _) = sent(&actions).remove(0);
    assert_eq!(c.state_name(), "REQUESTING");
    (c, request)
}

fn to_bound(t0: Instant) -> (Client, Lease) {
    let (mut c, request) = to_requesting(t0);
    let ev = events(&c.handle_packet(t0, &reply(&request, MessageType::Ack, |_| {})));
    let Event::Bound(lease) = ev[0].clone() else {
        panic!("expected Bound, got {ev:?}")
    };
    (c, lease)
}

#[test]
fn discover_carries_identity_and_asks_for_classless_routes() {
    let t0 = Instant::now();
    let mut c = Client::new(config(), t0, 1);
    let (msg, tx) = sent(&c.handle_timeout(t0)).remove(0);
    assert_eq!(tx.to, Destination::Broadcast);
    assert!(!tx.ciaddr_configured);
    assert_eq!(msg.opts().msg_type(), Some(MessageType::Discover));
    assert_eq!(&msg.chaddr()[..6], &MAC);
    assert_eq!(
        msg.opts().get(OptionCode::ClientIdentifier),
        Some(&DhcpOption::ClientIdentifier(vec![1, 2, 0, 0, 0, 0, 1]))
    );
    assert_eq!(
        msg.opts().get(OptionCode::ClassIdentifier),
        Some(&DhcpOption::ClassIdentifier(b"zos".to_vec()))
    );
    let Some(DhcpOption::ParameterRequestList(prl)) =
        msg.opts().get(OptionCode::ParameterRequestList)
    else {
        panic!("no PRL")
    };
    assert!(prl.contains(&OptionCode::ClasslessStaticRoute));
    assert!(prl.contains(&OptionCode::InterfaceMtu));
}

#[test]
fn discover_is_retransmitted_with_growing_capped_gaps_and_secs() {
    let t0 = Instant::now();
    let mut c = Client::new(config(), t0, 3);
    let mut now = t0;
    let mut gaps = Vec::new();
    let mut xids = Vec::new();
    let mut last_secs = 0;
    for _ in 0..12 {
        let sends = sent(&c.handle_timeout(now));
        assert_eq!(sends.len(), 1);
        xids.push(sends[0].0.xid());
        assert!(sends[0].0.secs() >= last_secs);
        last_secs = sends[0].0.secs();
        let next = c.poll_at();
        gaps.push(next - now);
        // Nothing happens before the deadline.
        assert!(c.handle_timeout(now + (next - now) / 2).is_empty());
        now = next;
    }
    assert!(gaps[0] <= Duration::from_millis(300), "{gaps:?}");
    assert!(gaps[1] > gaps[0]);
    assert!(
        gaps.iter().all(|g| *g < Duration::from_millis(1900)),
        "{gaps:?}"
    );
    assert!(xids.windows(2).all(|w| w[0] == w[1]), "one transaction");
    assert!(
        last_secs >= 9,
        "secs counts from the first DISCOVER: {last_secs}"
    );
}

#[test]
fn offer_then_ack_binds_and_confirms_after_conflict_window() {
    let t0 = Instant::now();
    let (mut c, request) = to_requesting(t0);
    assert_eq!(request.opts().msg_type(), Some(MessageType::Request));
    assert_eq!(
        request.opts().get(OptionCode::RequestedIpAddress),
        Some(&DhcpOption::RequestedIpAddress(OFFERED))
    );
    assert_eq!(
        request.opts().get(OptionCode::ServerIdentifier),
        Some(&DhcpOption::ServerIdentifier(SERVER))
    );
    let t1 = t0 + Duration::from_millis(2);
    let ev = events(&c.handle_packet(t1, &reply(&request, MessageType::Ack, |_| {})));
    let Event::Bound(lease) = &ev[0] else {
        panic!("{ev:?}")
    };
    assert_eq!(lease.address, OFFERED);
    assert_eq!(lease.prefix, 24);
    assert_eq!(lease.lease_secs, 3600);
    assert_eq!((lease.t1_secs, lease.t2_secs), (1800, 3150));
    assert_eq!(lease.gateway(), Some(SERVER));
    assert_eq!(lease.dns, vec![SERVER]);
    assert_eq!(lease.domain.as_deref(), Some("lab.test"));
    assert_eq!(c.poll_at(), t0 + CONFLICT_WINDOW);
    assert_eq!(
        events(&c.handle_timeout(t0 + CONFLICT_WINDOW)),
        vec![Event::Confirmed]
    );
    assert_eq!(
        c.poll_at(),
        t1 + Duration::from_secs(1800),
        "next wake-up is T1"
    );
}

#[test]
fn nak_in_requesting_restarts_discovery() {
    let t0 = Instant::now();
    let (mut c, request) = to_requesting(t0);
    let actions = c.handle_packet(t0, &nak(&request, SERVER));
    let (msg, _) = sent(&actions).remove(0);
    assert_eq!(msg.opts().msg_type(), Some(MessageType::Discover));
    assert_ne!(msg.xid(), request.xid(), "a new transaction");
    assert_eq!(c.state_name(), "SELECTING");
}

#[test]
fn nak_from_another_server_is_ignored() {
    let t0 = Instant::now();
    let (mut c, request) = to_requesting(t0);
    let rogue = Ipv4Addr::new(10, 1, 0, 99);
    let actions = c.handle_packet(t0, &nak(&request, rogue));
    assert!(sent(&actions).is_empty(), "{actions:?}");
    assert_eq!(c.state_name(), "REQUESTING");
    // ... but the rogue is named.
    let ev = events(&actions);
    let Some(Event::Servers(servers)) = ev.first() else {
        panic!("{ev:?}")
    };
    let r = servers
        .iter()
        .find(|s| s.server == rogue)
        .expect("rogue seen");
    assert_eq!(
        (r.naks, r.nak_message.as_deref()),
        (1, Some("wrong network"))
    );
}

#[test]
fn replies_for_other_transactions_or_hardware_are_dropped() {
    let t0 = Instant::now();
    let mut c = Client::new(config(), t0, 5);
    let (discover, _) = sent(&c.handle_timeout(t0)).remove(0);
    let other_xid = reply(&discover, MessageType::Offer, |m| {
        m.set_xid(discover.xid().wrapping_add(1));
    });
    assert!(c.handle_packet(t0, &other_xid).is_empty());
    let other_mac = reply(&discover, MessageType::Offer, |m| {
        m.set_chaddr(&[2, 0, 0, 0, 0, 9]);
    });
    assert!(c.handle_packet(t0, &other_mac).is_empty());
    let request_op = reply(&discover, MessageType::Offer, |m| {
        m.set_opcode(v4::Opcode::BootRequest);
    });
    assert!(c.handle_packet(t0, &request_op).is_empty());
    assert!(c.handle_packet(t0, &[1, 2, 3]).is_empty(), "garbage");
    assert!(c.handle_packet(t0, &[]).is_empty(), "empty");
    assert_eq!(c.state_name(), "SELECTING");
}

/// Regression (fuzz/artifacts/dhcp4_client/crash-8d04169c…): a reply with our xid and an hlen
/// over 16 made dhcproto's `chaddr()` slice out of bounds and panic — any host on the segment
/// could crash-loop a booting node. It is dropped like any reply not for our MAC.
#[test]
fn a_reply_with_an_oversized_hardware_address_length_is_dropped_not_a_panic() {
    let t0 = Instant::now();
    let mut c = Client::new(config(), t0, 5);
    let (discover, _) = sent(&c.handle_timeout(t0)).remove(0);
    for hlen in [0u8, 5, 7, 16, 17, 0x24, 255] {
        let mut bytes = reply(&discover, MessageType::Offer, |_| {});
        bytes[2] = hlen; // op, htype, hlen
        assert!(c.handle_packet(t0, &bytes).is_empty(), "hlen {hlen}");
        assert_eq!(c.state_name(), "SELECTING", "hlen {hlen}");
    }
    // The same offer with hlen 6 is taken.
    let ok = reply(&discover, MessageType::Offer, |_| {});
    assert!(!c.handle_packet(t0, &ok).is_empty());
}

#[test]
fn offers_with_insane_options_are_dropped() {
    let t0 = Instant::now();
    type Edit = Box<dyn Fn(&mut v4::Message)>;
    let bad: Vec<(&str, Edit)> = vec![
        (
            "zero netmask",
            Box::new(|m| {
                m.opts_mut()
                    .insert(DhcpOption::SubnetMask(Ipv4Addr::UNSPECIFIED));
            }),
        ),
        (
            "non-contiguous netmask",
            Box::new(|m| {
                m.opts_mut()
                    .insert(DhcpOption::SubnetMask(Ipv4Addr::new(255, 0, 255, 0)));
            }),
        ),
        (
            "lease 0",
            Box::new(|m| {
                m.opts_mut().insert(DhcpOption::AddressLeaseTime(0));
            }),
        ),
        (
            "no lease time",
            Box::new(|m| {
                m.opts_mut().remove(OptionCode::AddressLeaseTime);
            }),
        ),
        (
            "no server id",
            Box::new(|m| {
                m.opts_mut().remove(OptionCode::ServerIdentifier);
            }),
        ),
        (
            "broadcast yiaddr",
            Box::new(|m| {
                m.set_yiaddr(Ipv4Addr::BROADCAST);
            }),
        ),
        (
            "zero yiaddr",
            Box::new(|m| {
                m.set_yiaddr(Ipv4Addr::UNSPECIFIED);
            }),
        ),
    ];
    for (what, edit) in bad {
        let mut c = Client::new(config(), t0, 9);
        let (discover, _) = sent(&c.handle_timeout(t0)).remove(0);
        let actions = c.handle_packet(t0, &reply(&discover, MessageType::Offer, |m| edit(m)));
        assert!(
            sent(&actions).is_empty() && !actions.iter().any(|a| matches!(a, Action::ArpProbe(_))),
            "{what}: {actions:?}"
        );
        assert_eq!(c.state_name(), "SELECTING", "{what}");
        // Nothing held either: the client keeps DISCOVERing on its own schedule.
        assert!(c.poll_at() < t0 + OFFER_HOLD, "{what}");
    }
}

#[test]
fn router_outside_subnet_is_not_used_as_gateway() {
    let t0 = Instant::now();
    let (mut c, request) = to_requesting(t0);
    let ev = events(&c.handle_packet(
        t0,
        &reply(&request, MessageType::Ack, |m| {
            m.opts_mut().insert(DhcpOption::Router(vec![
                Ipv4Addr::new(192, 168, 9, 1),
                SERVER,
            ]));
        }),
    ));
    let Event::Bound(lease) = &ev[0] else {
        panic!("{ev:?}")
    };
    assert_eq!(lease.routers, vec![SERVER]);
    assert_eq!(lease.gateway(), Some(SERVER));
}

#[test]
fn classless_routes_override_the_router_option() {
    let t0 = Instant::now();
    let (mut c, request) = to_requesting(t0);
    let r1 = Ipv4Addr::new(10, 1, 0, 254);
    let ev = events(&c.handle_packet(
        t0,
        &reply(&request, MessageType::Ack, |m| {
            m.opts_mut().insert(DhcpOption::ClasslessStaticRoute(vec![
                (ipnet::Ipv4Net::from_str("192.0.2.77/24").unwrap(), r1),
                (ipnet::Ipv4Net::from_str("0.0.0.0/0").unwrap(), r1),
                (
                    ipnet::Ipv4Net::from_str("10.9.0.0/16").unwrap(),
                    Ipv4Addr::UNSPECIFIED,
                ),
            ]));
        }),
    ));
    let Event::Bound(lease) = &ev[0] else {
        panic!("{ev:?}")
    };
    let routes = lease.routes();
    assert_eq!(routes.len(), 3);
    assert_eq!(
        routes[0],
        Route {
            destination: Ipv4Addr::new(192, 0, 2, 0),
            prefix: 24,
            gateway: r1
        },
        "host bits cleared"
    );
    assert_eq!(lease.gateway(), Some(r1), "option 3 ({SERVER}) ignored");
    assert!(routes[2].gateway.is_unspecified(), "on-link route kept");
}

#[test]
fn dns_and_domain_values_that_could_inject_resolv_conf_lines_are_refused() {
    let t0 = Instant::now();
    let (mut c, request) = to_requesting(t0);
    let ev = events(&c.handle_packet(
        t0,
        &reply(&request, MessageType::Ack, |m| {
            m.opts_mut().insert(DhcpOption::DomainName(
                "lab.test\nnameserver 6.6.6.6".into(),
            ));
            m.opts_mut().insert(DhcpOption::DomainNameServer(vec![
                Ipv4Addr::UNSPECIFIED,
                Ipv4Addr::new(224, 0, 0, 1),
                SERVER,
            ]));
            m.opts_mut().insert(DhcpOption::InterfaceMtu(100));
        }),
    ));
    let Event::Bound(lease) = &ev[0] else {
        panic!("{ev:?}")
    };
    assert_eq!(lease.domain, None);
    assert_eq!(lease.dns, vec![SERVER]);
    assert_eq!(lease.mtu, None);
    assert!(is_valid_domain("grid.tf"));
    assert!(!is_valid_domain("a b"));
    assert!(!is_valid_domain(""));
    assert!(!is_valid_domain("-bad.tf"));
}

#[test]
fn arp_reply_during_request_declines_the_ack() {
    let t0 = Instant::now();
    let (mut c, request) = to_requesting(t0);
    let other = [2, 0, 0, 0, 0, 0x42];
    assert!(c
        .handle_arp(t0, OFFERED, other, Ipv4Addr::UNSPECIFIED, false)
        .is_empty());
    let actions = c.handle_packet(t0, &reply(&request, MessageType::Ack, |_| {}));
    let (msg, _) = sent(&actions).remove(0);
    assert_eq!(msg.opts().msg_type(), Some(MessageType::Decline));
    assert_eq!(
        msg.opts().get(OptionCode::RequestedIpAddress),
        Some(&DhcpOption::RequestedIpAddress(OFFERED))
    );
    assert!(events(&actions).is_empty(), "nothing was configured");
    assert_eq!(c.state_name(), "DECLINED");
    // RFC 2131 §3.1.5: quiet for 10 s, then DISCOVER again.
    assert!(c.handle_timeout(t0 + Duration::from_secs(9)).is_empty());
    let (msg, _) = sent(&c.handle_timeout(t0 + Duration::from_secs(10))).remove(0);
    assert_eq!(msg.opts().msg_type(), Some(MessageType::Discover));
}

#[test]
fn arp_conflict_just_after_binding_deconfigures_and_declines() {
    let t0 = Instant::now();
    let (mut c, _) = to_bound(t0);
    let actions = c.handle_arp(
        t0 + Duration::from_millis(50),
        OFFERED,
        [2, 0, 0, 0, 0, 0x42],
        OFFERED,
        false,
    );
    assert_eq!(
        sent(&actions)[0].0.opts().msg_type(),
        Some(MessageType::Decline)
    );
    assert!(matches!(events(&actions)[0], Event::Deconfigured(_)));
}

#[test]
fn arp_after_the_window_or_from_ourselves_is_not_a_conflict() {
    let t0 = Instant::now();
    let (mut c, _) = to_bound(t0);
    assert!(c.handle_arp(t0, OFFERED, MAC, OFFERED, false).is_empty());
    let later = t0 + CONFLICT_WINDOW + Duration::from_millis(1);
    assert!(c
        .handle_arp(later, OFFERED, [2, 0, 0, 0, 0, 0x42], OFFERED, false)
        .is_empty());
    assert_eq!(c.state_name(), "BOUND");
}

#[test]
fn renews_by_unicast_at_t1_and_rebinds_by_broadcast_at_t2() {
    let t0 = Instant::now();
    let (mut c, lease) = to_bound(t0);
    let _ = c.handle_timeout(t0 + CONFLICT_WINDOW);
    let t1 = t0 + Duration::from_secs(lease.t1_secs as u64);
    assert_eq!(c.poll_at(), t1);
    let (renew, tx) = sent(&c.handle_timeout(t1)).remove(0);
    assert_eq!(c.state_name(), "RENEWING");
    assert_eq!(tx.to, Destination::Unicast(SERVER));
    assert!(tx.ciaddr_configured);
    assert_eq!(renew.ciaddr(), OFFERED);
    assert!(
        renew.opts().get(OptionCode::ServerIdentifier).is_none(),
        "RFC 2131 table 5"
    );
    assert!(renew.opts().get(OptionCode::RequestedIpAddress).is_none());
    // Retransmission halves the remaining time to T2 (1350 s → 675 s).
    assert_eq!(c.poll_at(), t1 + Duration::from_secs(675));
    let t2 = t0 + Duration::from_secs(lease.t2_secs as u64);
    let mut now = c.poll_at();
    while now < t2 {
        let _ = c.handle_timeout(now);
        now = c.poll_at();
    }
    let (rebind, tx) = sent(&c.handle_timeout(t2)).remove(0);
    assert_eq!(c.state_name(), "REBINDING");
    assert_eq!(tx.to, Destination::Broadcast);
    assert_eq!(rebind.ciaddr(), OFFERED);
    // The server answers the rebind: same address, new timers.
    let t = t2 + Duration::from_secs(1);
    let ev = events(&c.handle_packet(t, &reply(&rebind, MessageType::Ack, |_| {})));
    assert!(
        matches!(&ev[0], Event::Renewed(l) if l.address == OFFERED),
        "{ev:?}"
    );
    assert_eq!(c.state_name(), "BOUND");
    assert_eq!(c.poll_at(), t + Duration::from_secs(1800));
}

#[test]
fn renewal_ack_refreshes_the_lease() {
    let t0 = Instant::now();
    let (mut c, lease) = to_bound(t0);
    let _ = c.handle_timeout(t0 + CONFLICT_WINDOW);
    let t1 = t0 + Duration::from_secs(lease.t1_secs as u64);
    let (renew, _) = sent(&c.handle_timeout(t1)).remove(0);
    let ev = events(&c.handle_packet(
        t1,
        &reply(&renew, MessageType::Ack, |m| {
            m.opts_mut().insert(DhcpOption::AddressLeaseTime(7200));
        }),
    ));
    assert!(
        matches!(&ev[0], Event::Renewed(l) if l.lease_secs == 7200),
        "{ev:?}"
    );
}

#[test]
fn lease_expiry_without_answer_deconfigures_and_rediscovers() {
    let t0 = Instant::now();
    let (mut c, _) = to_bound(t0);
    let mut now = t0;
    let mut deconfigured = false;
    for _ in 0..100 {
        now = c.poll_at();
        let actions = c.handle_timeout(now);
        if events(&actions)
            .iter()
            .any(|e| matches!(e, Event::Deconfigured(_)))
        {
            deconfigured = true;
            let (msg, _) = sent(&actions).remove(0);
            assert_eq!(msg.opts().msg_type(), Some(MessageType::Discover));
            break;
        }
    }
    assert!(deconfigured);
    assert_eq!(now, t0 + Duration::from_secs(3600));
    assert_eq!(c.state_name(), "SELECTING");
}

#[test]
fn nak_while_renewing_deconfigures() {
    let t0 = Instant::now();
    let (mut c, lease) = to_bound(t0);
    let _ = c.handle_timeout(t0 + CONFLICT_WINDOW);
    let t1 = t0 + Duration::from_secs(lease.t1_secs as u64);
    let (renew, _) = sent(&c.handle_timeout(t1)).remove(0);
    let actions = c.handle_packet(t1, &nak(&renew, SERVER));
    assert!(matches!(events(&actions)[0], Event::Deconfigured(_)));
    assert_eq!(
        sent(&actions)[0].0.opts().msg_type(),
        Some(MessageType::Discover)
    );
}

#[test]
fn init_reboot_asks_for_the_previous_address_then_falls_back_on_nak() {
    let t0 = Instant::now();
    let prev = Ipv4Addr::new(10, 99, 0, 5);
    let mut c = Client::reboot(config(), prev, t0, 11);
    let (req, _) = sent(&c.handle_timeout(t0)).remove(0);
    assert_eq!(req.opts().msg_type(), Some(MessageType::Request));
    assert_eq!(
        req.opts().get(OptionCode::RequestedIpAddress),
        Some(&DhcpOption::RequestedIpAddress(prev))
    );
    assert!(req.opts().get(OptionCode::ServerIdentifier).is_none());
    let actions = c.handle_packet(t0, &nak(&req, SERVER));
    assert_eq!(
        sent(&actions)[0].0.opts().msg_type(),
        Some(MessageType::Discover)
    );
    assert_eq!(c.state_name(), "SELECTING");
}

#[test]
fn init_reboot_ack_binds_the_same_address() {
    let t0 = Instant::now();
    let mut c = Client::reboot(config(), OFFERED, t0, 11);
    let (req, _) = sent(&c.handle_timeout(t0)).remove(0);
    let actions = c.handle_packet(t0, &reply(&req, MessageType::Ack, |_| {}));
    assert!(actions.contains(&Action::ArpProbe(OFFERED)));
    assert!(matches!(&events(&actions)[0], Event::Bound(l) if l.address == OFFERED));
}

#[test]
fn silent_init_reboot_gives_up_and_discovers() {
    let t0 = Instant::now();
    let mut c = Client::reboot(config(), OFFERED, t0, 11);
    let mut kinds = Vec::new();
    for _ in 0..6 {
        let now = c.poll_at();
        for (m, _) in sent(&c.handle_timeout(now)) {
            kinds.push(m.opts().msg_type().unwrap());
        }
    }
    assert_eq!(
        &kinds[..REQUEST_TRIES as usize],
        &[MessageType::Request; REQUEST_TRIES as usize]
    );
    assert_eq!(kinds[REQUEST_TRIES as usize], MessageType::Discover);
}

#[test]
fn server_t1_t2_used_only_when_ordered() {
    let t0 = Instant::now();
    let (mut c, request) = to_requesting(t0);
    let ev = events(&c.handle_packet(
        t0,
        &reply(&request, MessageType::Ack, |m| {
            m.opts_mut().insert(DhcpOption::Renewal(4000));
            m.opts_mut().insert(DhcpOption::Rebinding(100));
        }),
    ));
    assert!(matches!(&ev[0], Event::Bound(l) if (l.t1_secs, l.t2_secs) == (1800, 3150)));
}

#[test]
fn kick_retransmits_at_once_without_growing_the_backoff() {
    let t0 = Instant::now();
    let mut c = Client::new(config(), t0, 3);
    let (first, _) = sent(&c.handle_timeout(t0)).remove(0);
    let gap = c.poll_at() - t0;
    let t = t0 + Duration::from_millis(5);
    let (again, _) = sent(&c.kick(t)).remove(0);
    assert_eq!(again.xid(), first.xid());
    assert_eq!(again.opts().msg_type(), Some(MessageType::Discover));
    let next_gap = c.poll_at() - t;
    assert!(
        next_gap <= gap + gap / 2,
        "backoff not advanced: {gap:?} then {next_gap:?}"
    );
    // A lease just bound is not re-checked: the kick of a first carrier often follows the ACK,
    // and the ARP conflict watch must still end in Confirmed.
    let (mut c, _) = to_bound(t0);
    assert!(c.kick(t0 + Duration::from_millis(50)).is_empty());
    assert_eq!(
        events(&c.handle_timeout(t0 + CONFLICT_WINDOW)),
        vec![Event::Confirmed]
    );
    // Holding a lease for a while, a kick (the link came back) checks it with its server at once.
    let t = t0 + Duration::from_secs(10);
    let (check, tx) = sent(&c.kick(t)).remove(0);
    assert_eq!(check.opts().msg_type(), Some(MessageType::Request));
    assert_eq!(check.ciaddr(), OFFERED);
    assert_eq!(tx.to, Destination::Unicast(SERVER));
    assert_eq!(c.state_name(), "RENEWING");
    let ev = events(&c.handle_packet(t, &reply(&check, MessageType::Ack, |_| {})));
    assert!(
        matches!(&ev[0], Event::Renewed(l) if l.address == OFFERED),
        "{ev:?}"
    );
    assert_eq!(c.poll_at(), t + Duration::from_secs(1800));
}

fn handed_over_lease() -> Lease {
    let (_, lease) = to_bound(Instant::now());
    assert_eq!((lease.lease_secs, lease.t1_secs), (3600, 1800));
    lease
}

#[test]
fn a_resumed_lease_renews_by_unicast_at_its_t1_not_by_discover() {
    let lease = handed_over_lease();
    let now = Instant::now() + Duration::from_secs(100_000);
    let mut c = Client::resume(config(), lease, Duration::from_secs(1000), now, 5);
    assert_eq!(c.state_name(), "BOUND");
    assert_eq!(c.lease().map(|l| l.address), Some(OFFERED));
    // Nothing is sent before T1, which is 1800 - 1000 s away.
    assert!(c.handle_timeout(now).is_empty());
    let t1 = now + Duration::from_secs(800);
    assert_eq!(c.poll_at(), t1);
    let (renew, tx) = sent(&c.handle_timeout(t1)).remove(0);
    assert_eq!(renew.opts().msg_type(), Some(MessageType::Request));
    assert_eq!(renew.ciaddr(), OFFERED);
    assert_eq!(tx.to, Destination::Unicast(SERVER));
    assert_eq!(
        renew.opts().get(OptionCode::ClientIdentifier),
        {
            let (m, _) = sent(&Client::new(config(), now, 1).handle_timeout(now)).remove(0);
            m.opts().get(OptionCode::ClientIdentifier).cloned()
        }
        .as_ref()
    );
    assert_eq!(c.state_name(), "RENEWING");
}

#[test]
fn a_resumed_lease_past_t2_rebinds_and_an_expired_one_is_asked_for_again() {
    let lease = handed_over_lease();
    let now = Instant::now() + Duration::from_secs(100_000);
    let mut c = Client::resume(config(), lease.clone(), Duration::from_secs(3300), now, 5);
    let (rebind, tx) = sent(&c.handle_timeout(now)).remove(0);
    assert_eq!(c.state_name(), "REBINDING");
    assert_eq!(tx.to, Destination::Broadcast);
    assert_eq!(rebind.ciaddr(), OFFERED);

    let mut c = Client::resume(config(), lease, Duration::from_secs(3600), now, 5);
    assert_eq!(c.state_name(), "INIT-REBOOT");
    let (ask, _) = sent(&c.handle_timeout(now)).remove(0);
    assert_eq!(
        ask.opts().get(OptionCode::RequestedIpAddress),
        Some(&DhcpOption::RequestedIpAddress(OFFERED))
    );
}

#[test]
fn after_losing_a_lease_discover_asks_for_the_same_address() {
    let t0 = Instant::now();
    let (mut c, lease) = to_bound(t0);
    let expiry = t0 + Duration::from_secs(u64::from(lease.lease_secs));
    let mut actions = Vec::new();
    while !events(&actions)
        .iter()
        .any(|e| matches!(e, Event::Deconfigured(_)))
    {
        let now = c.poll_at();
        assert!(now <= expiry);
        actions = c.handle_timeout(now);
    }
    let (discover, _) = sent(&actions).remove(0);
    assert_eq!(discover.opts().msg_type(), Some(MessageType::Discover));
    assert_eq!(
        discover.opts().get(OptionCode::RequestedIpAddress),
        Some(&DhcpOption::RequestedIpAddress(OFFERED))
    );
    // A first boot asks for nothing in particular.
    let (fresh, _) = sent(&Client::new(config(), t0, 1).handle_timeout(t0)).remove(0);
    assert!(fresh.opts().get(OptionCode::RequestedIpAddress).is_none());
}

const ROGUE: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 2);

/// An OFFER from `server` for `addr` (the usual options, then `edit`).
fn offer_from(
    req: &v4::Message,
    server: Ipv4Addr,
    addr: Ipv4Addr,
    edit: impl FnOnce(&mut v4::Message),
) -> Vec<u8> {
    reply(req, MessageType::Offer, |m| {
        m.set_yiaddr(addr);
        m.opts_mut().insert(DhcpOption::ServerIdentifier(server));
        m.opts_mut().insert(DhcpOption::Router(vec![server]));
        edit(m);
    })
}

fn requested_server(actions: &[Action]) -> Option<Ipv4Addr> {
    sent(actions).iter().find_map(|(m, _)| {
        (m.opts().msg_type() == Some(MessageType::Request))
            .then(|| server_id(m))
            .flatten()
    })
}

#[test]
fn a_flawed_offer_is_held_and_a_clean_one_from_another_server_wins() {
    type Edit = Box<dyn Fn(&mut v4::Message)>;
    let flawed: Vec<(&str, Edit)> = vec![
        (
            "router outside the subnet",
            Box::new(|m| {
                m.opts_mut()
                    .insert(DhcpOption::Router(vec![Ipv4Addr::new(192, 168, 9, 1)]));
            }),
        ),
        (
            "router 0.0.0.0",
            Box::new(|m| {
                m.opts_mut()
                    .insert(DhcpOption::Router(vec![Ipv4Addr::UNSPECIFIED]));
            }),
        ),
        (
            "a /32 netmask (the router cannot be on the subnet)",
            Box::new(|m| {
                m.opts_mut()
                    .insert(DhcpOption::SubnetMask(Ipv4Addr::BROADCAST));
            }),
        ),
        (
            "a netmask that does not contain the router",
            Box::new(|m| {
                m.opts_mut()
                    .insert(DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 252)));
                m.opts_mut()
                    .insert(DhcpOption::Router(vec![Ipv4Addr::new(10, 1, 0, 200)]));
            }),
        ),
        (
            "bad DNS servers",
            Box::new(|m| {
                m.opts_mut().insert(DhcpOption::DomainNameServer(vec![
                    Ipv4Addr::UNSPECIFIED,
                    Ipv4Addr::new(127, 0, 0, 53),
                    Ipv4Addr::BROADCAST,
                    Ipv4Addr::new(10, 1, 0, 255),
                ]));
            }),
        ),
    ];
    let t0 = Instant::now();
    let rogue_addr = Ipv4Addr::new(10, 1, 0, 77);
    for (what, edit) in flawed {
        let mut c = Client::new(config(), t0, 5);
        let (discover, _) = sent(&c.handle_timeout(t0)).remove(0);
        let actions = c.handle_packet(t0, &offer_from(&discover, ROGUE, rogue_addr, |m| edit(m)));
        assert!(
            sent(&actions).is_empty(),
            "{what}: not requested: {actions:?}"
        );
        assert_eq!(c.poll_at(), t0 + OFFER_HOLD, "{what}: held");
        // The flaw is named at once (one server so far, its offer flawed).
        let ev = events(&actions);
        let Some(Event::Servers(s)) = ev.first() else {
            panic!("{what}: {ev:?}")
        };
        assert!(!s[0].problems.is_empty(), "{what}: {s:?}");
        // The legit server answers later: it is requested at once.
        let t = t0 + Duration::from_millis(900);
        let actions = c.handle_packet(t, &offer_from(&discover, SERVER, OFFERED, |_| {}));
        assert_eq!(
            requested_server(&actions),
            Some(SERVER),
            "{what}: {actions:?}"
        );
        let ev = events(&actions);
        let Some(Event::Servers(s)) = ev.first() else {
            panic!("{what}: both servers named: {ev:?}")
        };
        assert_eq!(
            s.iter().map(|s| s.server).collect::<Vec<_>>(),
            vec![ROGUE, SERVER],
            "{what}"
        );
        assert!(s[1].problems.is_empty(), "{what}: {s:?}");
        assert_eq!(c.servers().len(), 2);
    }
}

#[test]
fn a_flawed_offer_alone_is_taken_after_the_hold() {
    let t0 = Instant::now();
    let mut c = Client::new(config(), t0, 5);
    let (discover, _) = sent(&c.handle_timeout(t0)).remove(0);
    let bad_router = |m: &mut v4::Message| {
        m.opts_mut()
            .insert(DhcpOption::Router(vec![Ipv4Addr::new(192, 168, 9, 1)]));
    };
    let _ = c.handle_packet(t0, &offer_from(&discover, ROGUE, OFFERED, bad_router));
    // No DISCOVER retransmissions while holding.
    assert!(c.handle_timeout(t0 + OFFER_HOLD / 2).is_empty());
    let actions = c.handle_timeout(t0 + OFFER_HOLD);
    assert_eq!(requested_server(&actions), Some(ROGUE));
    assert_eq!(c.state_name(), "REQUESTING");
    let (request, _) = sent(&actions).remove(0);
    let ev = events(&c.handle_packet(
        t0 + OFFER_HOLD,
        &reply(&request, MessageType::Ack, |m| {
            m.opts_mut().insert(DhcpOption::ServerIdentifier(ROGUE));
            bad_router(m);
        }),
    ));
    let Some(Event::Bound(lease)) = ev.first() else {
        panic!("{ev:?}")
    };
    assert_eq!(lease.gateway(), None, "the bad router is never installed");
}

#[test]
fn a_less_flawed_offer_beats_a_more_flawed_one() {
    let t0 = Instant::now();
    let mut c = Client::new(config(), t0, 5);
    let (discover, _) = sent(&c.handle_timeout(t0)).remove(0);
    let other = Ipv4Addr::new(10, 1, 0, 3);
    let _ = c.handle_packet(
        t0,
        &offer_from(&discover, ROGUE, Ipv4Addr::new(10, 1, 0, 77), |m| {
            m.opts_mut()
                .insert(DhcpOption::Router(vec![Ipv4Addr::UNSPECIFIED]));
            m.opts_mut()
                .insert(DhcpOption::DomainNameServer(vec![Ipv4Addr::LOCALHOST]));
        }),
    );
    let _ = c.handle_packet(
        t0 + Duration::from_millis(10),
        &offer_from(&discover, other, Ipv4Addr::new(10, 1, 0, 88), |m| {
            m.opts_mut()
                .insert(DhcpOption::DomainNameServer(vec![Ipv4Addr::LOCALHOST]));
        }),
    );
    // The hold runs from the first flawed offer.
    assert_eq!(c.poll_at(), t0 + OFFER_HOLD);
    assert_eq!(
        requested_server(&c.handle_timeout(t0 + OFFER_HOLD)),
        Some(other)
    );
}

#[test]
fn bad_dns_servers_are_filtered_from_the_lease() {
    let t0 = Instant::now();
    let (mut c, request) = to_requesting(t0);
    let ev = events(&c.handle_packet(
        t0,
        &reply(&request, MessageType::Ack, |m| {
            m.opts_mut().insert(DhcpOption::DomainNameServer(vec![
                Ipv4Addr::UNSPECIFIED,
                Ipv4Addr::new(127, 0, 0, 1),
                Ipv4Addr::BROADCAST,
                Ipv4Addr::new(10, 1, 0, 255), // the subnet's broadcast
                Ipv4Addr::new(10, 1, 0, 0),   // its network address
                OFFERED,                      // ourselves
                Ipv4Addr::new(224, 0, 0, 251),
                Ipv4Addr::new(9, 9, 9, 9),
            ]));
        }),
    ));
    let Some(Event::Bound(lease)) = ev.first() else {
        panic!("{ev:?}")
    };
    assert_eq!(lease.dns, vec![Ipv4Addr::new(9, 9, 9, 9)]);
    let msg = v4::Message::decode(&mut Decoder::new(&reply(&request, MessageType::Ack, |m| {
        m.opts_mut().insert(DhcpOption::DomainNameServer(vec![
            Ipv4Addr::new(127, 0, 0, 1),
            SERVER,
        ]));
    })))
    .unwrap();
    let (lease, problems) = parse_offer(&msg).unwrap();
    assert_eq!(lease.dns, vec![SERVER]);
    assert_eq!(problems, vec!["DNS 127.0.0.1 unusable".to_string()]);
}

#[test]
fn a_huge_lease_is_accepted_and_never_overflows_the_timers() {
    for secs in [0xffff_fffe_u32, u32::MAX] {
        let t0 = Instant::now();
        let (mut c, request) = to_requesting(t0);
        let ev = events(&c.handle_packet(
            t0,
            &reply(&request, MessageType::Ack, |m| {
                m.opts_mut().insert(DhcpOption::AddressLeaseTime(secs));
                m.opts_mut().insert(DhcpOption::Renewal(secs - 2));
                m.opts_mut().insert(DhcpOption::Rebinding(secs - 1));
            }),
        ));
        let Some(Event::Bound(lease)) = ev.first() else {
            panic!("{ev:?}")
        };
        assert_eq!(lease.lease_secs, secs, "accepted as given");
        let _ = c.handle_timeout(t0 + CONFLICT_WINDOW);
        let year = Duration::from_secs(365 * 86400);
        assert!(c.poll_at() > t0 + 60 * year, "{secs}: T1 decades away");
        // Nothing happens for years; at T1 (if the clock gets there) it renews, no panic.
        assert!(c.handle_timeout(t0 + year).is_empty());
        let t1 = c.poll_at();
        let actions = c.handle_timeout(t1);
        if secs == u32::MAX {
            // Infinite: never renewed, never expired.
            assert_eq!(c.state_name(), "BOUND");
            assert!(actions.is_empty(), "{actions:?}");
        } else {
            assert_eq!(c.state_name(), "RENEWING", "{secs}");
            assert!(!sent(&actions).is_empty());
        }
        assert!(c.poll_at() > t1);
    }
    // The clock guard itself: an Instant near its end does not panic.
    let t = Instant::now();
    assert!(after(t, u32::MAX) > t);
}

#[test]
fn a_nak_from_the_server_we_asked_makes_its_next_offer_flawed() {
    let t0 = Instant::now();
    let mut c = Client::new(config(), t0, 5);
    let (d1, _) = sent(&c.handle_timeout(t0)).remove(0);
    // The rogue answers first, and NAKs our REQUEST.
    let actions = c.handle_packet(
        t0,
        &offer_from(&d1, ROGUE, Ipv4Addr::new(10, 1, 0, 77), |_| {}),
    );
    assert_eq!(requested_server(&actions), Some(ROGUE));
    let (req, _) = sent(&actions).remove(0);
    let actions = c.handle_packet(t0, &nak(&req, ROGUE));
    // First NAK: DISCOVER again at once.
    let (d2, _) = sent(&actions).remove(0);
    assert_eq!(d2.opts().msg_type(), Some(MessageType::Discover));
    // The rogue's next offer is held; the legit server's is taken.
    let t = t0 + Duration::from_millis(5);
    let actions = c.handle_packet(
        t,
        &offer_from(&d2, ROGUE, Ipv4Addr::new(10, 1, 0, 77), |_| {}),
    );
    assert!(sent(&actions).is_empty(), "{actions:?}");
    let r = &c.servers()[0];
    assert!(r.problems.iter().any(|p| p.contains("NAK")), "{r:?}");
    let t = t + Duration::from_millis(500);
    let actions = c.handle_packet(t, &offer_from(&d2, SERVER, OFFERED, |_| {}));
    assert_eq!(requested_server(&actions), Some(SERVER));
    let (req, _) = sent(&actions).remove(0);
    // The rogue NAKs this REQUEST too: it is not the server we asked.
    let actions = c.handle_packet(t, &nak(&req, ROGUE));
    assert!(sent(&actions).is_empty());
    assert_eq!(c.state_name(), "REQUESTING");
    let ev = events(&c.handle_packet(t, &reply(&req, MessageType::Ack, |_| {})));
    assert!(
        matches!(ev.first(), Some(Event::Bound(l)) if l.server == SERVER),
        "{ev:?}"
    );
    assert_eq!(c.servers()[0].naks, 2);
}

/// A server that OFFERs and then NAKs every REQUEST, alone on the segment, for ten simulated
/// minutes: the client keeps trying (the server may be fixed) but paces itself.
#[test]
fn a_server_that_naks_everything_is_not_stormed() {
    let t0 = Instant::now();
    let mut c = Client::new(config(), t0, 11);
    let mut now = t0;
    let mut packets: Vec<Instant> = Vec::new();
    let end = t0 + Duration::from_secs(600);
    let mut pending = c.handle_timeout(now);
    while now < end {
        let mut replies = Vec::new();
        for (m, _) in sent(&pending) {
            packets.push(now);
            match m.opts().msg_type() {
                Some(MessageType::Discover) => {
                    replies.push(offer_from(&m, SERVER, OFFERED, |_| {}))
                }
                Some(MessageType::Request) => replies.push(nak(&m, SERVER)),
                _ => {}
            }
        }
        pending = Vec::new();
        for r in replies {
            pending.extend(c.handle_packet(now, &r));
        }
        if sent(&pending).is_empty() {
            now = c.poll_at().max(now + Duration::from_millis(1));
            pending = c.handle_timeout(now);
        }
    }
    let in_first = |secs: u64| {
        packets
            .iter()
            .filter(|t| **t < t0 + Duration::from_secs(secs))
            .count()
    };
    assert!(in_first(20) <= 16, "first 20 s: {} packets", in_first(20));
    // At most one DISCOVER+REQUEST pair every 16 s or so once paced.
    assert!(packets.len() <= 100, "{} packets in 10 min", packets.len());
    assert!(packets.len() >= 40, "it keeps trying: {}", packets.len());
    assert_eq!(c.servers()[0].naks as usize, packets.len() / 2);
}

#[test]
fn an_offer_arriving_while_requesting_is_not_taken_but_its_server_is_named() {
    let t0 = Instant::now();
    let mut c = Client::new(config(), t0, 5);
    let (discover, _) = sent(&c.handle_timeout(t0)).remove(0);
    let _ = c.handle_packet(t0, &offer_from(&discover, SERVER, OFFERED, |_| {}));
    assert_eq!(c.state_name(), "REQUESTING");
    let actions = c.handle_packet(
        t0,
        &offer_from(&discover, ROGUE, Ipv4Addr::new(10, 1, 0, 77), |_| {}),
    );
    assert!(sent(&actions).is_empty());
    assert_eq!(c.state_name(), "REQUESTING");
    assert!(
        matches!(events(&actions).first(), Some(Event::Servers(s)) if s.len() == 2),
        "{actions:?}"
    );
}

// ---- issue 17: trust nothing on the wire --------------------------------------------------

const OTHER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x42];

fn arp_actions(actions: &[Action]) -> Vec<Action> {
    actions
        .iter()
        .filter(|a| matches!(a, Action::ArpProbe(_) | Action::ArpAnnounce(_)))
        .cloned()
        .collect()
}

/// Point 10: dnsmasq offered one address to two nodes; node B's ARP probe (sender 0.0.0.0)
/// reached node A just after A's ACK. A must keep its lease and announce it, not decline it and
/// wait 10 s.
#[test]
fn another_hosts_probe_after_our_ack_is_defended_not_declined() {
    let t0 = Instant::now();
    let (mut c, lease) = to_bound(t0);
    let t = t0 + Duration::from_millis(50); // inside the conflict watch
    let actions = c.handle_arp(t, Ipv4Addr::UNSPECIFIED, OTHER_MAC, lease.address, true);
    assert_eq!(actions, vec![Action::ArpAnnounce(lease.address)]);
    assert_eq!(c.state_name(), "BOUND");
    // A second probe right after is not answered again (no ARP amplifier) ...
    assert!(c
        .handle_arp(t, Ipv4Addr::UNSPECIFIED, OTHER_MAC, lease.address, true)
        .is_empty());
    // ... one after DEFEND_INTERVAL is.
    assert_eq!(
        c.handle_arp(
            t + DEFEND_INTERVAL,
            Ipv4Addr::UNSPECIFIED,
            OTHER_MAC,
            lease.address,
            true
        ),
        vec![Action::ArpAnnounce(lease.address)]
    );
    // The watch still ends in Confirmed: the lease was never given up.
    assert_eq!(
        events(&c.handle_timeout(t0 + CONFLICT_WINDOW)),
        vec![Event::Confirmed]
    );
}

#[test]
fn another_hosts_probe_while_requesting_is_announced_at_bind() {
    let t0 = Instant::now();
    let (mut c, request) = to_requesting(t0);
    assert!(c
        .handle_arp(t0, Ipv4Addr::UNSPECIFIED, OTHER_MAC, OFFERED, true)
        .is_empty());
    let actions = c.handle_packet(t0, &reply(&request, MessageType::Ack, |_| {}));
    assert!(sent(&actions).is_empty(), "no DECLINE: {actions:?}");
    assert_eq!(arp_actions(&actions), vec![Action::ArpAnnounce(OFFERED)]);
    assert!(matches!(events(&actions)[0], Event::Bound(_)));
    assert_eq!(c.state_name(), "BOUND");
}

#[test]
fn an_announcement_from_another_host_is_a_conflict() {
    // While requesting: an announcement (sender = target = the address) → DECLINE at the ACK.
    let t0 = Instant::now();
    let (mut c, request) = to_requesting(t0);
    assert!(c
        .handle_arp(t0, OFFERED, OTHER_MAC, OFFERED, true)
        .is_empty());
    let actions = c.handle_packet(t0, &reply(&request, MessageType::Ack, |_| {}));
    assert_eq!(
        sent(&actions)[0].0.opts().msg_type(),
        Some(MessageType::Decline)
    );
    // Just after binding: an announcement → DECLINE and deconfigure.
    let (mut c, lease) = to_bound(t0);
    let actions = c.handle_arp(
        t0 + Duration::from_millis(10),
        lease.address,
        OTHER_MAC,
        lease.address,
        true,
    );
    assert_eq!(
        sent(&actions)[0].0.opts().msg_type(),
        Some(MessageType::Decline)
    );
    assert_eq!(c.state_name(), "DECLINED");
}

#[test]
fn a_probe_for_another_address_or_our_own_probe_is_ignored() {
    let t0 = Instant::now();
    let (mut c, lease) = to_bound(t0);
    assert!(c
        .handle_arp(
            t0,
            Ipv4Addr::UNSPECIFIED,
            OTHER_MAC,
            Ipv4Addr::new(10, 1, 0, 99),
            true
        )
        .is_empty());
    assert!(c
        .handle_arp(t0, Ipv4Addr::UNSPECIFIED, MAC, lease.address, true)
        .is_empty());
}

/// Point 4: the REQUEST named SERVER; an ACK from a rogue that answers everyone is dropped.
#[test]
fn an_ack_from_a_server_the_request_did_not_name_is_dropped() {
    let t0 = Instant::now();
    let (mut c, request) = to_requesting(t0);
    let rogue = Ipv4Addr::new(10, 1, 0, 66);
    let actions = c.handle_packet(
        t0,
        &reply(&request, MessageType::Ack, |m| {
            m.opts_mut().insert(DhcpOption::ServerIdentifier(rogue));
            m.opts_mut().insert(DhcpOption::Router(vec![rogue]));
        }),
    );
    assert!(actions.is_empty(), "{actions:?}");
    assert_eq!(c.state_name(), "REQUESTING");
    // The real server's ACK still binds.
    let ev = events(&c.handle_packet(t0, &reply(&request, MessageType::Ack, |_| {})));
    assert!(
        matches!(&ev[0], Event::Bound(l) if l.server == SERVER),
        "{ev:?}"
    );
}

fn renewing(t0: Instant) -> (Client, v4::Message, Lease) {
    let (mut c, lease) = to_bound(t0);
    let _ = c.handle_timeout(t0 + CONFLICT_WINDOW);
    let t1 = t0 + Duration::from_secs(lease.t1_secs as u64);
    let (renew, _) = sent(&c.handle_timeout(t1)).remove(0);
    assert_eq!(c.state_name(), "RENEWING");
    (c, renew, lease)
}

#[test]
fn a_nak_while_renewing_or_rebinding_from_another_server_is_dropped() {
    let t0 = Instant::now();
    let rogue = Ipv4Addr::new(10, 1, 0, 66);
    let (mut c, renew, lease) = renewing(t0);
    let t1 = t0 + Duration::from_secs(lease.t1_secs as u64);
    let actions = c.handle_packet(t1, &nak(&renew, rogue));
    assert!(sent(&actions).is_empty(), "{actions:?}");
    assert!(
        !events(&actions)
            .iter()
            .any(|e| matches!(e, Event::Deconfigured(_))),
        "{actions:?}"
    );
    assert_eq!(c.state_name(), "RENEWING");
    // REBINDING: the same.
    let t2 = t0 + Duration::from_secs(lease.t2_secs as u64);
    let mut now = c.poll_at();
    while now < t2 {
        let _ = c.handle_timeout(now);
        now = c.poll_at();
    }
    let (rebind, _) = sent(&c.handle_timeout(t2)).remove(0);
    assert_eq!(c.state_name(), "REBINDING");
    let actions = c.handle_packet(t2, &nak(&rebind, rogue));
    assert!(sent(&actions).is_empty(), "{actions:?}");
    assert_eq!(c.state_name(), "REBINDING");
    // The lease's own server may still take it back.
    let actions = c.handle_packet(t2, &nak(&rebind, SERVER));
    assert!(matches!(events(&actions)[0], Event::Deconfigured(_)));
}

#[test]
fn a_renewal_ack_from_another_server_is_dropped() {
    let t0 = Instant::now();
    let rogue = Ipv4Addr::new(10, 1, 0, 66);
    let (mut c, renew, lease) = renewing(t0);
    let t1 = t0 + Duration::from_secs(lease.t1_secs as u64);
    let actions = c.handle_packet(
        t1,
        &reply(&renew, MessageType::Ack, |m| {
            m.opts_mut().insert(DhcpOption::ServerIdentifier(rogue));
        }),
    );
    assert!(actions.is_empty(), "{actions:?}");
    assert_eq!(c.state_name(), "RENEWING");
}

#[test]
fn dns_and_ntp_lists_are_capped() {
    let t0 = Instant::now();
    let (mut c, request) = to_requesting(t0);
    let many: Vec<Ipv4Addr> = (2..60).map(|i| Ipv4Addr::new(10, 1, 0, i)).collect();
    let ev = events(&c.handle_packet(
        t0,
        &reply(&request, MessageType::Ack, |m| {
            m.opts_mut()
                .insert(DhcpOption::DomainNameServer(many.clone()));
            m.opts_mut().insert(DhcpOption::NtpServers(many.clone()));
        }),
    ));
    let Event::Bound(lease) = &ev[0] else {
        panic!("{ev:?}")
    };
    assert_eq!(lease.dns, many[..MAX_SERVERS_PER_OPTION].to_vec());
    assert_eq!(lease.ntp, many[..MAX_SERVERS_PER_OPTION].to_vec());
}

/// Strips END (and trailing padding) from an encoded reply and makes its last option claim
/// `extra` more bytes than are left.
fn overrun(mut bytes: Vec<u8>, extra: u8) -> Vec<u8> {
    let mut at = 240;
    let mut last = None;
    while at < bytes.len() && bytes[at] != 255 {
        if bytes[at] == 0 {
            at += 1;
            continue;
        }
        last = Some(at);
        at += 2 + bytes[at + 1] as usize;
    }
    bytes.truncate(at);
    let last = last.expect("options");
    bytes[last + 1] += extra;
    bytes
}

/// Point 8: options running past the end of the packet (no END) are dropped, not trimmed.
#[test]
fn a_reply_whose_options_run_past_the_end_is_dropped() {
    let t0 = Instant::now();
    let (mut c, request) = to_requesting(t0);
    let ack = reply(&request, MessageType::Ack, |_| {});
    assert_eq!(check_options(&ack), Ok(()));
    let bad = overrun(ack.clone(), 7);
    assert!(check_options(&bad).unwrap_err().contains("left"), "{bad:?}");
    assert!(c.handle_packet(t0, &bad).is_empty());
    assert_eq!(c.state_name(), "REQUESTING");
    // No END at all, every option whole: dropped too.
    let no_end = overrun(ack.clone(), 0);
    assert_eq!(check_options(&no_end), Err("no END option".into()));
    assert!(c.handle_packet(t0, &no_end).is_empty());
    // The well-formed one binds.
    assert!(matches!(
        events(&c.handle_packet(t0, &ack))[0],
        Event::Bound(_)
    ));
}
