//! Which addresses rtcd advertises as ICE host candidates.
//!
//! An operator names them (`rtc.advertise`, or a 1:1 NAT pair). Otherwise
//! rtcd takes its interfaces' addresses, leaving out loopback, IPv6
//! link-local and container or VM bridges, which clients could never reach
//! and would only slow ICE down.

use std::net::IpAddr;

use crate::config::{Config, parse_nat};

/// Interface-name prefixes of container and VM plumbing.
const VIRTUAL_PREFIXES: &[&str] = &[
    "docker", "br-", "veth", "virbr", "cni", "flannel", "cali", "podman", "lxc", "vnet", "kube",
    "weave", "tun", "tap",
];

#[derive(Debug, thiserror::Error)]
pub enum AddrError {
    #[error(
        "no address to advertise: set rtc.advertise (or rtc.allow_loopback for a single-machine setup)"
    )]
    None,
    #[error("listing interfaces: {0}")]
    Io(#[from] std::io::Error),
}

/// The advertised IPs, after NAT mapping.
pub fn advertised(config: &Config) -> Result<Vec<IpAddr>, AddrError> {
    let rtc = &config.rtc;
    let mut ips: Vec<IpAddr> = if !rtc.advertise.is_empty() {
        rtc.advertise.clone()
    } else if !rtc.bind_ip.is_unspecified() {
        vec![rtc.bind_ip]
    } else {
        interface_ips()?
            .into_iter()
            .filter(|(name, ip)| usable(name, *ip, rtc.allow_loopback))
            .map(|(_, ip)| ip)
            .filter(|ip| rtc.bind_ip.is_ipv4() == ip.is_ipv4() || rtc.bind_ip.is_ipv6())
            .collect()
    };
    for n in &rtc.nat {
        if let Ok(m) = parse_nat(n) {
            for ip in ips.iter_mut() {
                if *ip == m.internal {
                    *ip = m.external;
                }
            }
        }
    }
    if !rtc.allow_loopback && rtc.advertise.is_empty() {
        ips.retain(|ip| !ip.is_loopback());
    }
    ips.dedup();
    if ips.is_empty() {
        return Err(AddrError::None);
    }
    Ok(ips)
}

fn usable(name: &str, ip: IpAddr, allow_loopback: bool) -> bool {
    if ip.is_loopback() {
        return allow_loopback;
    }
    if ip.is_unspecified() || ip.is_multicast() {
        return false;
    }
    if let IpAddr::V6(v6) = ip
        && (v6.segments()[0] & 0xffc0) == 0xfe80
    {
        return false;
    }
    !VIRTUAL_PREFIXES.iter().any(|p| name.starts_with(p))
}

fn interface_ips() -> std::io::Result<Vec<(String, IpAddr)>> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs allocates a list we own until freeifaddrs; we only
    // read it in between and check every pointer for null.
    unsafe {
        if libc::getifaddrs(&mut head) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut cur = head;
        while !cur.is_null() {
            let ifa = &*cur;
            if !ifa.ifa_addr.is_null() && !ifa.ifa_name.is_null() {
                let name = std::ffi::CStr::from_ptr(ifa.ifa_name)
                    .to_string_lossy()
                    .into_owned();
                match (*ifa.ifa_addr).sa_family as i32 {
                    libc::AF_INET => {
                        let sa = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                        let ip = std::net::Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr));
                        out.push((name, IpAddr::V4(ip)));
                    }
                    libc::AF_INET6 => {
                        let sa = &*(ifa.ifa_addr as *const libc::sockaddr_in6);
                        out.push((name, IpAddr::V6(sa.sin6_addr.s6_addr.into())));
                    }
                    _ => {}
                }
            }
            cur = ifa.ifa_next;
        }
        libc::freeifaddrs(head);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bridges_and_loopback_are_not_advertised() {
        assert!(!usable("docker0", "172.17.0.1".parse().unwrap(), false));
        assert!(!usable("br-1a2b", "172.18.0.1".parse().unwrap(), false));
        assert!(!usable("veth12", "10.1.0.1".parse().unwrap(), false));
        assert!(!usable("lo", "127.0.0.1".parse().unwrap(), false));
        assert!(usable("lo", "127.0.0.1".parse().unwrap(), true));
        assert!(!usable("eth0", "fe80::1".parse().unwrap(), false));
        assert!(usable("eth0", "192.0.2.10".parse().unwrap(), false));
        assert!(usable("ens3", "2001:db8::10".parse().unwrap(), false));
    }

    #[test]
    fn nat_pairs_replace_the_internal_address() {
        let mut c = Config::default();
        c.rtc.bind_ip = "10.0.0.7".parse().unwrap();
        c.rtc.nat = vec!["203.0.113.7/10.0.0.7".into()];
        assert_eq!(
            advertised(&c).unwrap(),
            vec!["203.0.113.7".parse::<IpAddr>().unwrap()]
        );
    }

    #[test]
    fn explicit_loopback_needs_permission() {
        let mut c = Config::default();
        c.rtc.bind_ip = "127.0.0.1".parse().unwrap();
        assert!(matches!(advertised(&c), Err(AddrError::None)));
        c.rtc.allow_loopback = true;
        assert_eq!(
            advertised(&c).unwrap(),
            vec!["127.0.0.1".parse::<IpAddr>().unwrap()]
        );
    }
}
