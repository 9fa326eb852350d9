//! O(1) routing of datagrams to sessions.
//!
//! The fast path is a hash lookup of the remote address. The first packet on
//! a new path is always a STUN binding request (ICE), whose USERNAME
//! attribute is `<our ufrag>:<their ufrag>`; our ufrag names the session.

use std::collections::HashMap;
use std::net::SocketAddr;

use crate::sfu::Protocol;

pub(crate) type SessionKey = u64;

/// True when the datagram looks like STUN (RFC 7983 demultiplexing: first
/// byte 0..=3 and the magic cookie in place).
pub fn is_stun(buf: &[u8]) -> bool {
    buf.len() >= 20 && buf[0] < 4 && buf[4..8] == [0x21, 0x12, 0xA4, 0x42]
}

/// The local (first) half of a STUN USERNAME, without validating integrity:
/// str0m checks MESSAGE-INTEGRITY once the packet reaches the session.
pub fn stun_username_ufrag(buf: &[u8]) -> Option<&str> {
    if !is_stun(buf) {
        return None;
    }
    let declared = u16::from_be_bytes([buf[2], buf[3]]) as usize;
    let end = (20 + declared).min(buf.len());
    let mut at = 20;
    while at + 4 <= end {
        let kind = u16::from_be_bytes([buf[at], buf[at + 1]]);
        let len = u16::from_be_bytes([buf[at + 2], buf[at + 3]]) as usize;
        let value = buf.get(at + 4..at + 4 + len)?;
        if kind == 0x0006 {
            let username = std::str::from_utf8(value).ok()?;
            return username.split(':').next();
        }
        at += 4 + len.div_ceil(4) * 4;
    }
    None
}

/// Which worker owns a local ufrag minted by [`new_ufrag`].
pub fn ufrag_worker(ufrag: &str) -> Option<u8> {
    let hex = ufrag.get(..2)?;
    u8::from_str_radix(hex, 16).ok()
}

/// A local ICE ufrag: two hex digits of worker index, then randomness.
pub(crate) fn new_ufrag(worker: u8) -> String {
    use rand::Rng as _;
    use rand::distr::Alphanumeric;
    let random: String = rand::rng()
        .sample_iter(&Alphanumeric)
        .take(10)
        .map(char::from)
        .collect();
    format!("{worker:02x}{random}")
}

pub(crate) fn new_ice_password() -> String {
    use rand::Rng as _;
    use rand::distr::Alphanumeric;
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(24)
        .map(char::from)
        .collect()
}

#[derive(Default)]
pub(crate) struct Demux {
    by_addr: HashMap<(Protocol, SocketAddr), SessionKey>,
    by_ufrag: HashMap<String, SessionKey>,
}

impl Demux {
    pub fn add_session(&mut self, ufrag: String, key: SessionKey) {
        self.by_ufrag.insert(ufrag, key);
    }

    pub fn remove_ufrag(&mut self, ufrag: &str) {
        self.by_ufrag.remove(ufrag);
    }

    pub fn remove_addr(&mut self, proto: Protocol, addr: SocketAddr) {
        self.by_addr.remove(&(proto, addr));
    }

    /// The session for a datagram, and whether the address was new to it.
    pub fn route(
        &self,
        proto: Protocol,
        source: SocketAddr,
        contents: &[u8],
    ) -> Option<(SessionKey, bool)> {
        if let Some(key) = self.by_addr.get(&(proto, source)) {
            return Some((*key, false));
        }
        let ufrag = stun_username_ufrag(contents)?;
        self.by_ufrag.get(ufrag).map(|k| (*k, true))
    }

    pub fn learn(&mut self, proto: Protocol, source: SocketAddr, key: SessionKey) {
        self.by_addr.insert((proto, source), key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding_request(username: &str) -> Vec<u8> {
        let mut attr = Vec::new();
        attr.extend_from_slice(&0x0006u16.to_be_bytes());
        attr.extend_from_slice(&(username.len() as u16).to_be_bytes());
        attr.extend_from_slice(username.as_bytes());
        while attr.len() % 4 != 0 {
            attr.push(0);
        }
        let mut msg = vec![0x00, 0x01];
        msg.extend_from_slice(&(attr.len() as u16).to_be_bytes());
        msg.extend_from_slice(&[0x21, 0x12, 0xA4, 0x42]);
        msg.extend_from_slice(&[7; 12]);
        msg.extend_from_slice(&attr);
        msg
    }

    #[test]
    fn finds_the_local_ufrag() {
        let msg = binding_request("01abcdefghij:remote");
        assert!(is_stun(&msg));
        assert_eq!(stun_username_ufrag(&msg), Some("01abcdefghij"));
        assert_eq!(ufrag_worker("01abcdefghij"), Some(1));
    }

    #[test]
    fn survives_truncation_and_garbage() {
        let msg = binding_request("01abcdefghij:remote");
        for n in 0..msg.len() {
            let _ = stun_username_ufrag(&msg[..n]);
        }
        let mut lying = msg.clone();
        lying[2] = 0xff; // declared length larger than the datagram
        let _ = stun_username_ufrag(&lying);
        assert_eq!(stun_username_ufrag(b"\x80\x00rtp"), None);
        assert_eq!(ufrag_worker("zz"), None);
    }

    #[test]
    fn minted_ufrags_name_their_worker() {
        let u = new_ufrag(0x2a);
        assert_eq!(ufrag_worker(&u), Some(0x2a));
        assert_eq!(u.len(), 12);
    }
}
