//! Linux send path for batching: one `sendmmsg(2)` carries a chunk of
//! bursts, each its own message with its own destination, GSO segment size
//! and source address.
//!
//! Hand-written on `libc` because quinn-udp makes one `sendmsg` per
//! transmit and has no multi-message send; in an SFU every subscriber is a
//! destination of its own, so a fan-out would otherwise cost a syscall per
//! listener. quinn-udp's own "GSO refused" switch cannot be set from
//! outside, so the socket keeps its own (`gso_refused`).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use crate::addr;
use crate::counters::SocketCounters;
use crate::send_queue::{BurstLimits, ChunkOutcome, SendQueue};

mod batch;

use batch::{Batch, Message};

/// Bursts per `sendmmsg` call. A 500-listener fan-out leaves in four calls;
/// going further buys little, since the kernel's work per message stays
/// and only the per-call cost (already split 128 ways) shrinks, while the
/// headers, addresses and control buffers for a chunk live on the worker's
/// stack (about 32 KiB at 128). Far below the kernel's cap, `UIO_MAXIOV`
/// (1024).
pub(crate) const SEND_BATCH: usize = 128;

/// Drains `queue` with one `sendmmsg` per chunk. Same contract as
/// [`MediaSocket::flush`](crate::MediaSocket::flush): order kept, errors
/// dropped and counted, `false` when the socket would block.
///
/// Sets `gso_refused` when the kernel answers a GSO message with `EIO` or
/// `EINVAL` (what a device without segmentation offload says); that burst
/// and everything after it then leave one datagram per message.
pub(crate) fn flush(
    fd: BorrowedFd<'_>,
    socket_is_v6: bool,
    limits: BurstLimits,
    queue: &mut SendQueue,
    counters: &mut SocketCounters,
    gso_refused: &mut bool,
) -> bool {
    let fd = fd.as_raw_fd();
    flush_with(
        |batch, start| batch.send(fd, start..batch.len()),
        socket_is_v6,
        limits,
        queue,
        counters,
        gso_refused,
    )
}

/// [`flush`] with the syscall passed in: `send(batch, start)` sends
/// messages `start..` and answers as `sendmmsg` does. Tests put a kernel
/// that runs out of buffer or refuses GSO here.
fn flush_with(
    mut send: impl FnMut(&mut Batch<'_>, usize) -> io::Result<usize>,
    socket_is_v6: bool,
    limits: BurstLimits,
    queue: &mut SendQueue,
    counters: &mut SocketCounters,
    gso_refused: &mut bool,
) -> bool {
    queue.drain_chunks(limits, SEND_BATCH, |bursts| {
        let mut batch = Batch::new();
        // Which burst of the chunk each message is.
        let mut owner = [0usize; SEND_BATCH];
        let mut chunk_len = 0;
        for (index, burst) in bursts.clone().enumerate() {
            chunk_len = index + 1;
            // Unsendable bursts get no message; they are counted below,
            // once it is known whether this call got past them.
            if let Some((destination, src_ip)) =
                addr::outgoing(burst.destination, burst.source_ip, socket_is_v6)
            {
                owner[batch.len()] = index;
                batch.push(Message {
                    destination,
                    src_ip,
                    contents: burst.contents,
                    segment_size: (burst.datagrams > 1).then_some(burst.segment_size),
                });
            }
        }

        let mut next = 0;
        let outcome = loop {
            if next == batch.len() {
                break ChunkOutcome::Done(chunk_len);
            }
            counters.send_syscalls += 1;
            match send(&mut batch, next) {
                Ok(0) => break ChunkOutcome::Blocked(owner[next]),
                Ok(sent) => {
                    let sent = sent.min(batch.len() - next);
                    for message in next..next + sent {
                        let datagrams = batch.datagrams(message) as u64;
                        counters.datagrams_out += datagrams;
                        counters.bytes_out += batch.bytes(message) as u64;
                        if datagrams > 1 {
                            counters.gso_sends += 1;
                        }
                    }
                    // The kernel stops at the first message that fails and
                    // keeps its error to itself; the next call starts there
                    // and hears it.
                    next += sent;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    break ChunkOutcome::Blocked(owner[next]);
                }
                Err(e) if batch.datagrams(next) > 1 && refuses_gso(&e) => {
                    if !*gso_refused {
                        tracing::info!(
                            error = %e,
                            "kernel refused a GSO send; sending one datagram per message from now on"
                        );
                    }
                    *gso_refused = true;
                    break ChunkOutcome::SendSingly(owner[next]);
                }
                Err(e) => {
                    let datagrams = batch.datagrams(next);
                    tracing::trace!(
                        error = %e,
                        destination = %batch.destination(next),
                        datagrams,
                        "send failed"
                    );
                    counters.send_errors += datagrams as u64;
                    next += 1;
                }
            }
        };

        let mut messages = owner[..batch.len()].iter().peekable();
        for (index, burst) in bursts.take(outcome.done()).enumerate() {
            if messages.next_if(|&&message_owner| message_owner == index).is_none() {
                tracing::trace!(
                    destination = %burst.destination,
                    source_ip = ?burst.source_ip,
                    "datagram cannot be sent from this socket (address family, port 0)"
                );
                counters.send_errors += burst.datagrams as u64;
            }
        }
        outcome
    })
}

fn refuses_gso(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EIO | libc::EINVAL))
}

#[cfg(test)]
mod tests {
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    use super::*;

    /// [`flush_with`] on an IPv4 socket with the default limits.
    fn flush_ipv4(
        send: impl FnMut(&mut Batch<'_>, usize) -> io::Result<usize>,
        queue: &mut SendQueue,
        counters: &mut SocketCounters,
        gso_refused: &mut bool,
    ) -> bool {
        flush_with(send, false, LIMITS, queue, counters, gso_refused)
    }

    const LIMITS: BurstLimits = BurstLimits {
        max_segments: 64,
        max_segment_size: 1452,
    };

    fn socket() -> UdpSocket {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        socket
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        socket
    }

    fn payload(peer: usize, index: usize) -> Vec<u8> {
        vec![(peer * 16 + index) as u8; 100 + peer]
    }

    /// Reads exactly `count` datagrams, then checks nothing more is waiting.
    fn read_all(socket: &UdpSocket, count: usize) -> Vec<Vec<u8>> {
        let mut buf = [0u8; 2048];
        let got: Vec<Vec<u8>> = (0..count)
            .map(|_| {
                let n = socket.recv(&mut buf).expect("datagram");
                buf[..n].to_vec()
            })
            .collect();
        socket.set_nonblocking(true).expect("nonblocking");
        assert!(socket.recv(&mut buf).is_err(), "no duplicate");
        got
    }

    /// The kernel takes the first few messages of a chunk, then the send
    /// buffer is full: flush reports blocked, keeps exactly the rest, and
    /// the next flush sends it once.
    #[test]
    fn blocked_mid_chunk_keeps_the_rest_once_in_order() {
        const PEERS: usize = 20;
        const ROUNDS: usize = 3;
        let sender = socket();
        let fd = sender.as_raw_fd();
        let peers: Vec<UdpSocket> = (0..PEERS).map(|_| socket()).collect();
        let mut queue = SendQueue::new();
        for round in 0..ROUNDS {
            for (i, peer) in peers.iter().enumerate() {
                let to = peer.local_addr().expect("addr");
                assert!(queue.push(to, None, &payload(i, round)));
            }
        }
        let mut counters = SocketCounters::default();
        let mut gso_refused = false;
        let mut calls = 0;
        let full_after_seven = |batch: &mut Batch<'_>, start: usize| {
            calls += 1;
            if calls == 1 {
                batch.send(fd, start..start + 7)
            } else {
                Err(io::ErrorKind::WouldBlock.into())
            }
        };
        let complete = flush_ipv4(
            full_after_seven,
            &mut queue,
            &mut counters,
            &mut gso_refused,
        );
        assert!(!complete);
        assert_eq!(queue.len(), PEERS * ROUNDS - 7);
        assert_eq!(counters.datagrams_out, 7);
        assert_eq!(counters.send_syscalls, 2);

        let complete = flush_ipv4(
            |batch, start| batch.send(fd, start..batch.len()),
            &mut queue,
            &mut counters,
            &mut gso_refused,
        );
        assert!(complete);
        assert!(queue.is_empty());
        assert_eq!(counters.datagrams_out, (PEERS * ROUNDS) as u64);
        assert_eq!(counters.send_errors, 0);
        for (i, peer) in peers.iter().enumerate() {
            let expected: Vec<_> = (0..ROUNDS).map(|round| payload(i, round)).collect();
            assert_eq!(read_all(peer, ROUNDS), expected, "peer {i}");
        }
    }

    /// `EIO` on a GSO message (a device without segmentation offload):
    /// GSO goes off and the burst leaves again one datagram per message.
    #[test]
    fn refused_gso_sends_the_burst_singly_and_stays_off() {
        let sender = socket();
        let fd = sender.as_raw_fd();
        let peers: Vec<UdpSocket> = (0..3).map(|_| socket()).collect();
        let to = |i: usize| peers[i].local_addr().expect("addr");
        let mut queue = SendQueue::new();
        queue.push(to(0), None, &payload(0, 0));
        for index in 0..3 {
            queue.push(to(1), None, &payload(1, index));
        }
        queue.push(to(2), None, &payload(2, 0));
        let mut counters = SocketCounters::default();
        let mut gso_refused = false;
        // Like the kernel: sends up to the first GSO message, fails on it.
        let no_gso = |batch: &mut Batch<'_>, start: usize| {
            let end = (start..batch.len())
                .find(|&m| batch.datagrams(m) > 1)
                .unwrap_or(batch.len());
            if end == start {
                Err(io::Error::from_raw_os_error(libc::EIO))
            } else {
                batch.send(fd, start..end)
            }
        };
        let complete = flush_ipv4(no_gso, &mut queue, &mut counters, &mut gso_refused);
        assert!(complete);
        assert!(gso_refused);
        assert_eq!(counters.datagrams_out, 5);
        assert_eq!(counters.gso_sends, 0);
        assert_eq!(counters.send_errors, 0);
        assert_eq!(read_all(&peers[0], 1), vec![payload(0, 0)]);
        let burst: Vec<_> = (0..3).map(|index| payload(1, index)).collect();
        assert_eq!(read_all(&peers[1], 3), burst);
        assert_eq!(read_all(&peers[2], 1), vec![payload(2, 0)]);
    }
}
