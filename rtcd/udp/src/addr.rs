//! Address families at the edge of the socket: what the kernel reports on a
//! dual-stack socket versus what the layers above compare against.
//!
//! Above this crate an IPv4 peer is always a plain IPv4 address, whether the
//! socket is bound to `0.0.0.0` or to dual-stack `[::]`. Below it, an IPv6
//! socket speaks to IPv4 peers through IPv4-mapped addresses
//! (`::ffff:a.b.c.d`).

use std::net::{IpAddr, SocketAddr, SocketAddrV6};

/// A received datagram's source, IPv4-mapped addresses turned back into IPv4.
pub(crate) fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => addr,
        },
        SocketAddr::V4(_) => addr,
    }
}

/// The local address a datagram was sent to.
///
/// `dst_ip` comes from `IP_PKTINFO` / `IPV6_PKTINFO`. Where the platform does
/// not report it, the socket's own address is the best answer there is (it
/// is exact unless the socket is bound to a wildcard address).
pub(crate) fn destination(
    dst_ip: Option<IpAddr>,
    interface_index: Option<u32>,
    local: SocketAddr,
) -> SocketAddr {
    let Some(ip) = dst_ip else {
        return canonical(local);
    };
    match ip.to_canonical() {
        IpAddr::V6(v6) if v6.is_unicast_link_local() => {
            // A link-local address means nothing without its interface.
            SocketAddr::V6(SocketAddrV6::new(
                v6,
                local.port(),
                0,
                interface_index.unwrap_or(0),
            ))
        }
        ip => SocketAddr::new(ip, local.port()),
    }
}

/// Destination and source IP as the socket needs them, or `None` if the
/// datagram cannot be sent from this socket at all (an IPv6 peer on an IPv4
/// socket, a source address of the other family, or port 0).
///
/// Refusing these here matters beyond tidiness: some of them make the kernel
/// answer `EINVAL`, which reads as "GSO unsupported" and switches GSO off
/// for the socket's lifetime.
pub(crate) fn outgoing(
    destination: SocketAddr,
    source_ip: Option<IpAddr>,
    socket_is_v6: bool,
) -> Option<(SocketAddr, Option<IpAddr>)> {
    let destination = canonical(destination);
    if destination.port() == 0 {
        return None;
    }
    let source_ip = source_ip.map(|ip| ip.to_canonical());
    if source_ip.is_some_and(|ip| ip.is_ipv4() != destination.is_ipv4()) {
        return None;
    }
    let destination = match destination {
        SocketAddr::V4(v4) if socket_is_v6 => {
            SocketAddr::V6(SocketAddrV6::new(v4.ip().to_ipv6_mapped(), v4.port(), 0, 0))
        }
        SocketAddr::V6(_) if !socket_is_v6 => return None,
        other => other,
    };
    Some((destination, source_ip))
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().expect("test address literal")
    }

    #[test]
    fn mapped_sources_become_ipv4() {
        assert_eq!(canonical(sa("[::ffff:10.0.0.1]:5000")), sa("10.0.0.1:5000"));
        assert_eq!(
            canonical(sa("[2001:db8::1]:5000")),
            sa("[2001:db8::1]:5000")
        );
        assert_eq!(canonical(sa("10.0.0.1:5000")), sa("10.0.0.1:5000"));
    }

    #[test]
    fn destination_uses_packet_info_and_socket_port() {
        let local = sa("[::]:8443");
        let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 7).to_ipv6_mapped());
        assert_eq!(destination(Some(mapped), None, local), sa("192.0.2.7:8443"));
        assert_eq!(
            destination(Some(IpAddr::V6(Ipv6Addr::LOCALHOST)), Some(1), local),
            sa("[::1]:8443")
        );
        assert_eq!(
            destination(None, None, sa("127.0.0.1:9")),
            sa("127.0.0.1:9")
        );
        let link_local: Ipv6Addr = "fe80::1".parse().expect("literal");
        assert_eq!(
            destination(Some(link_local.into()), Some(3), local),
            SocketAddr::V6(SocketAddrV6::new(link_local, 8443, 0, 3))
        );
    }

    #[test]
    fn outgoing_maps_ipv4_on_ipv6_sockets_and_refuses_mismatches() {
        assert_eq!(
            outgoing(sa("10.0.0.1:5000"), None, true),
            Some((sa("[::ffff:10.0.0.1]:5000"), None))
        );
        assert_eq!(
            outgoing(sa("[::ffff:10.0.0.1]:5000"), None, false),
            Some((sa("10.0.0.1:5000"), None))
        );
        assert_eq!(outgoing(sa("[2001:db8::1]:5000"), None, false), None);
        assert_eq!(outgoing(sa("10.0.0.1:0"), None, false), None);
        let v4_source = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(outgoing(sa("[2001:db8::1]:5000"), v4_source, true), None);
        assert_eq!(
            outgoing(sa("10.0.0.1:5000"), v4_source, true),
            Some((sa("[::ffff:10.0.0.1]:5000"), v4_source))
        );
    }
}
