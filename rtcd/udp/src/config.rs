//! How a [`MediaSocket`](crate::MediaSocket) is bound and tuned.

use std::net::SocketAddr;

/// Socket buffer size asked of the kernel by default, each way.
///
/// 4 MiB holds roughly 3 000 full-size media datagrams: a few milliseconds
/// of a busy worker's traffic, enough to ride out a scheduling hiccup.
pub const DEFAULT_SOCKET_BUFFER: usize = 4 * 1024 * 1024;

/// Largest datagram that is ever coalesced into a GSO burst, by default.
///
/// The kernel rejects a GSO send whose segment does not fit the device MTU
/// with `EINVAL`, which reads as "this NIC cannot do GSO" and switches GSO
/// off for good. 1452 bytes is the largest UDP payload that
/// fits a 1500-byte MTU over IPv6 (1500 − 40 − 8), so a burst never trips
/// that on an ordinary network. Larger datagrams are still sent, one per
/// syscall. Raise it (e.g. on loopback benchmarks) only where the MTU allows.
pub const DEFAULT_GSO_MAX_SEGMENT_SIZE: usize = 1452;

/// Configuration for [`MediaSocket::bind`](crate::MediaSocket::bind) and
/// [`MediaSocket::bind_group`](crate::MediaSocket::bind_group).
///
/// Start from [`UdpConfig::new`] and change the fields you need:
///
/// ```
/// let mut config = rtcd_udp::UdpConfig::new("[::]:0".parse().unwrap());
/// config.batching = false; // baseline for a benchmark
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct UdpConfig {
    /// Address to bind. Port 0 lets the kernel pick. `[::]` is dual-stack
    /// (IPv4 peers appear as plain IPv4 addresses) unless `only_v6` is set.
    pub addr: SocketAddr,
    /// Batched receive (`recvmmsg`), GRO, GSO and, on Linux, many
    /// destinations per send syscall (`sendmmsg`). `false` gives one datagram
    /// per syscall in both directions, GRO switched off and no GSO, so
    /// benchmarks can show what batching buys. Default `true`.
    ///
    /// The unbatched path still goes through `recvmsg`/`sendmsg` with
    /// packet-info control messages rather than plain `recv_from`/`send_to`:
    /// those cannot report the destination address on a wildcard socket, and
    /// a benchmark should differ from production in batching only.
    pub batching: bool,
    /// Set `SO_REUSEADDR`. Default `false`.
    ///
    /// Beware: UDP has no TIME_WAIT, so this buys no faster restarts. What
    /// it does on Linux is let two sockets that both set it bind the very
    /// same address and port (unicast then reaches only one of them), so a
    /// second instance started on the same port succeeds and quietly takes
    /// traffic instead of failing with `EADDRINUSE`. It also lets a socket
    /// on a specific address share the port with one on the wildcard.
    ///
    /// Worse, with port 0 the kernel counts a port held by another
    /// `SO_REUSEADDR` socket as free, so two such sockets can be handed the
    /// same ephemeral port: of 300 sockets bound that way, one or two pairs
    /// typically share a port, and each pair's peer sees one address for
    /// two endpoints (one of them never hears back). Only set it when
    /// sharing a port is the point.
    pub reuse_address: bool,
    /// Set `SO_REUSEPORT` (Linux only; elsewhere binding fails with
    /// `Unsupported`). [`MediaSocket::bind_group`](crate::MediaSocket::bind_group)
    /// sets it regardless. Default `false`.
    pub reuse_port: bool,
    /// For an IPv6 address: refuse IPv4 traffic (`IPV6_V6ONLY`). Default
    /// `false`, i.e. `[::]` also receives IPv4.
    pub only_v6: bool,
    /// `SO_RCVBUF` to ask for. If the kernel caps it (`net.core.rmem_max`),
    /// `SO_RCVBUFFORCE` is tried (needs `CAP_NET_ADMIN`); what was granted
    /// is reported by [`MediaSocket::buffer_sizes`](crate::MediaSocket::buffer_sizes).
    /// Default [`DEFAULT_SOCKET_BUFFER`].
    pub recv_buffer_size: usize,
    /// `SO_SNDBUF` to ask for; same rules as `recv_buffer_size`.
    pub send_buffer_size: usize,
    /// Datagrams larger than this are never put in a GSO burst.
    /// Default [`DEFAULT_GSO_MAX_SEGMENT_SIZE`].
    pub gso_max_segment_size: usize,
}

impl UdpConfig {
    /// Batching on, 4 MiB buffers, no `SO_REUSEADDR`, no `SO_REUSEPORT`,
    /// dual-stack.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            batching: true,
            reuse_address: false,
            reuse_port: false,
            only_v6: false,
            recv_buffer_size: DEFAULT_SOCKET_BUFFER,
            send_buffer_size: DEFAULT_SOCKET_BUFFER,
            gso_max_segment_size: DEFAULT_GSO_MAX_SEGMENT_SIZE,
        }
    }
}

/// Socket buffer sizes asked for and granted.
///
/// "Granted" is what `getsockopt` reports. Linux reports twice the usable
/// size (it counts its bookkeeping overhead), so a granted value at least
/// as large as the requested one means the request was honoured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferSizes {
    /// `SO_RCVBUF` asked for.
    pub recv_requested: usize,
    /// `SO_RCVBUF` the kernel reports.
    pub recv_granted: usize,
    /// `SO_SNDBUF` asked for.
    pub send_requested: usize,
    /// `SO_SNDBUF` the kernel reports.
    pub send_granted: usize,
}
