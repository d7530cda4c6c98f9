//! Applies a [`Lease`] to the kernel (address, MTU, routes) and writes resolv.conf.
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use rtnetlink::packet_route::address::{AddressAttribute, CacheInfo};
use rtnetlink::packet_route::route::{RouteFlags, RouteProtocol, RouteScope};
use rtnetlink::{Handle, RouteMessageBuilder};

use super::client::{Lease, Route};
use crate::net::links;

/// What failed while applying, with the netlink error.
#[derive(Debug)]
pub struct ApplyError(pub String);

impl std::fmt::Display for ApplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Address with the lease lifetime (the kernel removes it if nobody renews), then MTU, then
/// routes. Idempotent: replaces what a previous call installed, so a renewal calls it again.
pub async fn apply(
    handle: &Handle,
    ifindex: u32,
    ifname: &str,
    lease: &Lease,
    metric: u32,
) -> Result<(), ApplyError> {
    let mut req = handle
        .address()
        .add(ifindex, IpAddr::V4(lease.address), lease.prefix)
        .replace();
    let msg = req.message_mut();
    msg.attributes.push(AddressAttribute::Broadcast(broadcast(
        lease.address,
        lease.prefix,
    )));
    // 0xffffffff is "forever" for both the kernel and DHCP.
    let mut lifetimes = CacheInfo::default();
    lifetimes.ifa_preferred = lease.lease_secs;
    lifetimes.ifa_valid = lease.lease_secs;
    msg.attributes.push(AddressAttribute::CacheInfo(lifetimes));
    req.execute().await.map_err(|e| {
        ApplyError(format!(
            "{ifname}: could not add {}/{}: {e}",
            lease.address, lease.prefix
        ))
    })?;

    if let Some(mtu) = lease.mtu {
        links::set_mtu(handle, ifindex, u32::from(mtu))
            .await
            .map_err(|e| ApplyError(format!("{ifname}: could not set MTU {mtu}: {e}")))?;
    }

    for route in lease.routes() {
        add_route(handle, ifindex, lease, &route, metric)
            .await
            .map_err(|e| {
                ApplyError(format!(
                    "{ifname}: could not add route {}/{} via {}: {e}",
                    route.destination, route.prefix, route.gateway
                ))
            })?;
    }
    Ok(())
}

async fn add_route(
    handle: &Handle,
    ifindex: u32,
    lease: &Lease,
    route: &Route,
    metric: u32,
) -> Result<(), rtnetlink::Error> {
    let mut b = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(route.destination, route.prefix)
        .output_interface(ifindex)
        .pref_source(lease.address)
        .priority(metric)
        .protocol(RouteProtocol::Dhcp);
    if route.gateway.is_unspecified() {
        b = b.scope(RouteScope::Link);
    } else {
        b = b.gateway(route.gateway);
        if !same_subnet(route.gateway, lease.address, lease.prefix) {
            // RFC 3442 lets a server name a gateway outside the subnet (reached by an earlier
            // on-link route); the kernel needs "onlink" to accept it.
            b.get_mut().header.flags |= RouteFlags::Onlink;
        }
    }
    handle.route().add(b.build()).replace().execute().await
}

/// Removes the lease's address; the kernel drops the routes that used it.
pub async fn remove(handle: &Handle, ifindex: u32, lease: &Lease) -> Result<(), ApplyError> {
    let msg = rtnetlink::AddressMessageBuilder::<Ipv4Addr>::new()
        .index(ifindex)
        .address(lease.address, lease.prefix)
        .build();
    handle
        .address()
        .del(msg)
        .execute()
        .await
        .map_err(|e| ApplyError(format!("could not remove {}: {e}", lease.address)))
}

fn same_subnet(a: Ipv4Addr, b: Ipv4Addr, prefix: u8) -> bool {
    let m = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    };
    u32::from(a) & m == u32::from(b) & m
}

fn broadcast(addr: Ipv4Addr, prefix: u8) -> Ipv4Addr {
    if prefix >= 31 {
        return Ipv4Addr::BROADCAST;
    }
    Ipv4Addr::from(u32::from(addr) | (u32::MAX >> prefix))
}

/// The resolv.conf text. Everything in it was validated where it was parsed (addresses are
/// addresses, names are LDH names), so no line can be injected.
pub fn resolv_conf_text(servers: &[IpAddr], search: &[String], origin: &str) -> String {
    let mut s = format!("# written by zos-netboot from {origin}\n");
    if !search.is_empty() {
        s.push_str(&format!("search {}\n", search.join(" ")));
    }
    // glibc and musl read at most three nameservers.
    for ns in servers.iter().take(3) {
        s.push_str(&format!("nameserver {ns}\n"));
    }
    s
}

/// Writes `text` to `path` atomically (temp file + rename). When `path` is a mount point (a
/// bind-mounted file, as `ip netns exec` and some container runtimes do) rename fails with
/// EBUSY; then the file is rewritten in place, which is the only thing that can work there.
pub fn write_file_atomic(path: &Path, text: &[u8]) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // A unique name made with O_EXCL: several writers (threads, fleet nodes sharing one state
    // directory) never share a temp file, and a symlink planted at the name is not followed.
    let (mut f, tmp) = crate::tempfile::create_next_to(path, 0o644)?;
    let result = (|| {
        f.write_all(text)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    match result {
        Err(e) if e.raw_os_error() == Some(nix::libc::EBUSY) => {
            let _ = std::fs::remove_file(&tmp);
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .truncate(true)
                .create(true)
                .open(path)?;
            f.write_all(text)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
        Ok(()) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease() -> Lease {
        Lease {
            address: Ipv4Addr::new(10, 1, 0, 23),
            prefix: 24,
            server: Ipv4Addr::new(10, 1, 0, 1),
            lease_secs: 3600,
            t1_secs: 1800,
            t2_secs: 3150,
            routers: vec![Ipv4Addr::new(10, 1, 0, 1)],
            classless_routes: vec![],
            dns: vec![
                Ipv4Addr::new(10, 1, 0, 1),
                Ipv4Addr::new(10, 1, 0, 2),
                Ipv4Addr::new(10, 1, 0, 3),
                Ipv4Addr::new(10, 1, 0, 4),
            ],
            domain: Some("lab.test".into()),
            search: vec![],
            ntp: vec![],
            mtu: None,
        }
    }

    #[test]
    fn resolv_conf_has_search_and_at_most_three_nameservers() {
        let l = lease();
        let mut servers: Vec<IpAddr> = l.dns.iter().map(|d| IpAddr::V4(*d)).collect();
        servers.insert(1, "2001:db8::53".parse().unwrap());
        let text = resolv_conf_text(&servers, &["lab.test".into(), "b.test".into()], "eth0");
        assert!(text.contains("search lab.test b.test\n"));
        assert_eq!(text.matches("nameserver ").count(), 3);
        assert!(text.contains("nameserver 10.1.0.1\nnameserver 2001:db8::53\n"));
        assert!(!resolv_conf_text(&servers, &[], "eth0").contains("search"));
    }

    #[test]
    fn broadcast_address_follows_the_prefix() {
        assert_eq!(
            broadcast(Ipv4Addr::new(10, 1, 0, 23), 24),
            Ipv4Addr::new(10, 1, 0, 255)
        );
        assert_eq!(
            broadcast(Ipv4Addr::new(10, 1, 2, 3), 16),
            Ipv4Addr::new(10, 1, 255, 255)
        );
        assert_eq!(
            broadcast(Ipv4Addr::new(10, 1, 2, 3), 32),
            Ipv4Addr::BROADCAST
        );
    }

    #[test]
    fn atomic_write_replaces_content() {
        let dir = std::env::temp_dir().join(format!("zos-apply-{}", std::process::id()));
        let p = dir.join("resolv.conf");
        write_file_atomic(&p, b"one\n").unwrap();
        write_file_atomic(&p, b"two\n").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "two\n");
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            1,
            "no temp file left"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// Issue 17 point 10: nodes of a fleet keeping their state in one directory wrote through
    /// one temp name (`<file>.tmp.<pid>`) and failed with "File exists" / lost renames. Many
    /// writers at once, each must succeed and the file must hold one whole version.
    #[test]
    fn concurrent_atomic_writes_to_one_file_all_succeed() {
        let dir = std::env::temp_dir().join(format!("zos-apply-conc-{}", std::process::id()));
        let p = dir.join("s1.json");
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let p = p.clone();
                std::thread::spawn(move || {
                    for n in 0..100 {
                        let text = format!("writer {i} version {n}\n");
                        write_file_atomic(&p, text.as_bytes())
                            .unwrap_or_else(|e| panic!("writer {i} version {n}: {e}"));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(
            text.starts_with("writer ") && text.ends_with(" version 99\n"),
            "{text:?}"
        );
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "no temp left");
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A symlink planted at the old, predictable temp name must not be followed.
    #[test]
    fn a_symlink_at_the_old_temp_name_is_not_followed() {
        let dir = std::env::temp_dir().join(format!("zos-apply-link-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let victim = dir.join("victim");
        std::fs::write(&victim, "precious\n").unwrap();
        let p = dir.join("resolv.conf");
        let old_tmp = p.with_extension(format!("tmp.{}", std::process::id()));
        std::os::unix::fs::symlink(&victim, &old_tmp).unwrap();
        write_file_atomic(&p, b"nameserver 10.1.0.1\n").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "nameserver 10.1.0.1\n"
        );
        assert!(!std::fs::symlink_metadata(&p).unwrap().is_symlink());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
