//! What the core needs to know about its host; the driver fills it in.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use str0m::config::DtlsCert;

/// A 1:1 NAT: rtcd advertises `external` but its sockets see `internal`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NatMapping {
    pub external: IpAddr,
    pub internal: IpAddr,
}

#[derive(Clone)]
pub struct CoreConfig {
    /// Index of the worker running this core; prefixes every local ICE ufrag.
    pub worker: u8,
    /// Addresses advertised as UDP host candidates (after NAT mapping).
    pub udp_candidates: Vec<SocketAddr>,
    /// Addresses advertised as passive ICE-TCP host candidates.
    pub tcp_candidates: Vec<SocketAddr>,
    pub nat: Vec<NatMapping>,
    pub dtls_cert: DtlsCert,
    /// A session that never connects is closed after this long.
    pub connect_timeout: Duration,
    /// A connected session that loses connectivity is closed after this long.
    pub disconnect_timeout: Duration,
    /// Least time between two keyframe requests relayed to one publisher layer.
    pub keyframe_request_interval: Duration,
    /// Most sessions this core accepts; further joins are refused.
    pub max_sessions: usize,
    /// Longest time a video packet sent to a subscriber stays available for
    /// a resend on NACK: the window for the slowest round trips. Each
    /// outgoing video stream keeps its own window (str0m's per-stream resend
    /// cache), so the window times the subscriber's video rate is most of
    /// what a subscriber costs in memory.
    pub resend_window: Duration,
    /// Shortest window: where every stream starts, and all a subscriber
    /// with a short round trip gets (see `resend`). At or above
    /// `resend_window`, every stream keeps `resend_window`.
    pub resend_window_min: Duration,
    /// Most packets one outgoing video stream keeps for resends, whatever
    /// their age: the bound for very high rates.
    pub resend_window_packets: usize,
}

/// A receiver asks for a lost packet about one round trip after the gap
/// (the next packet shows it), and again each round trip while it waits.
/// One second is what a browser keeps for its own resends (at least 1 s,
/// or 3 round trips), so a subscriber with a round trip up to ~330 ms gets
/// from rtcd what it would get from the publisher directly: a request and
/// two retries. Each kept packet costs a subscriber stream 432 bytes of
/// str0m's bookkeeping (the payload itself is shared); str0m's own default,
/// 3 s and up to 1000 packets, held ~330 KiB per 1.5 Mbit/s subscribed
/// stream (heaptrack, `bench/scripts/heap-rtcd.sh`), 1 s holds ~150 KiB.
pub const DEFAULT_RESEND_WINDOW: Duration = Duration::from_secs(1);

/// The floor under the round-trip-based window: a gap is seen only when
/// the next packet arrives, which for a low-frame-rate stream (a screen
/// share, 5 frames/s) can be 200 ms after the lost one, before any round
/// trip. Janus keeps 200 ms at least (`min_nack_queue`), for the same
/// reason.
pub const DEFAULT_RESEND_WINDOW_MIN: Duration = Duration::from_millis(250);

/// 1 s of a 4.5 Mbit/s stream of 1.1 kB packets, more than a screen share
/// or a camera's top layer sends.
pub const DEFAULT_RESEND_WINDOW_PACKETS: usize = 512;

impl CoreConfig {
    pub fn new(dtls_cert: DtlsCert) -> Self {
        CoreConfig {
            worker: 0,
            udp_candidates: Vec::new(),
            tcp_candidates: Vec::new(),
            nat: Vec::new(),
            dtls_cert,
            connect_timeout: Duration::from_secs(30),
            disconnect_timeout: Duration::from_secs(15),
            keyframe_request_interval: Duration::from_millis(500),
            max_sessions: 10_000,
            resend_window: DEFAULT_RESEND_WINDOW,
            resend_window_min: DEFAULT_RESEND_WINDOW_MIN,
            resend_window_packets: DEFAULT_RESEND_WINDOW_PACKETS,
        }
    }

    /// The address str0m should see as the local end, for a packet that
    /// arrived at `local` (maps internal → external).
    pub(crate) fn to_advertised(&self, local: SocketAddr) -> SocketAddr {
        match self.nat.iter().find(|m| m.internal == local.ip()) {
            Some(m) => SocketAddr::new(m.external, local.port()),
            None => local,
        }
    }

    /// The socket address to send from, for str0m's advertised source.
    pub(crate) fn to_internal(&self, advertised: SocketAddr) -> SocketAddr {
        match self.nat.iter().find(|m| m.external == advertised.ip()) {
            Some(m) => SocketAddr::new(m.internal, advertised.port()),
            None => advertised,
        }
    }
}
