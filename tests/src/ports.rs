//! Free ports on 127.0.0.1 for servers a test starts.
//!
//! The port is free when this returns; another process could take it
//! before the server binds, so prefer letting a server bind port 0 and
//! report its address when it can. Inside a private network namespace
//! (see [`crate::netns`]) nothing else competes for ports.

use std::net::{Ipv4Addr, TcpListener, UdpSocket};

use anyhow::{Context, Result};

/// A TCP port on 127.0.0.1 that nothing listens on right now.
pub fn free_tcp_port() -> Result<u16> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding 127.0.0.1:0/tcp")?;
    Ok(l.local_addr()?.port())
}

/// A UDP port on 127.0.0.1 that nothing is bound to right now.
pub fn free_udp_port() -> Result<u16> {
    let s = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).context("binding 127.0.0.1:0/udp")?;
    Ok(s.local_addr()?.port())
}

/// A port free for both TCP and UDP on 127.0.0.1 (rtcd serves ICE-TCP on
/// the same port number as its UDP media).
pub fn free_tcp_udp_port() -> Result<u16> {
    for _ in 0..50 {
        let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).context("binding 127.0.0.1:0/udp")?;
        let port = udp.local_addr()?.port();
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return Ok(port);
        }
    }
    anyhow::bail!("found no port free for both TCP and UDP on 127.0.0.1 in 50 tries")
}
