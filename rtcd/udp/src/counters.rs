//! Per-socket counters.

/// What one [`MediaSocket`](crate::MediaSocket) has done since it was bound.
///
/// Plain integers: a socket is owned by one worker thread, so there is
/// nothing to synchronise. A metrics scrape asks each worker for a copy and
/// sums them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SocketCounters {
    /// Datagrams delivered to the caller (after splitting GRO buffers).
    pub datagrams_in: u64,
    /// Payload bytes delivered to the caller.
    pub bytes_in: u64,
    /// Receive syscalls made, including the final one that found nothing.
    pub recv_syscalls: u64,
    /// Received buffers that held more than one datagram (GRO at work).
    pub recv_coalesced_buffers: u64,
    /// Receive calls that failed with something other than "would block".
    pub recv_errors: u64,
    /// Datagrams the kernel accepted for sending.
    pub datagrams_out: u64,
    /// Payload bytes the kernel accepted for sending.
    pub bytes_out: u64,
    /// Send syscalls made, including ones that failed or would block.
    pub send_syscalls: u64,
    /// Send syscalls that carried more than one datagram (GSO bursts).
    pub gso_sends: u64,
    /// Datagrams lost to a send error (unreachable, too big, bad address …).
    pub send_errors: u64,
    /// Datagrams refused by a full [`SendQueue`](crate::SendQueue); the queue
    /// hands its count over at each flush.
    pub send_queue_full_drops: u64,
    /// GSO is in use: batching is on, the kernel supports it and has not
    /// refused it since.
    pub gso_active: bool,
    /// GRO is in use: batching is on and the kernel accepted `UDP_GRO`.
    pub gro_active: bool,
}
