//! Send side: a bounded queue the worker fills during one loop iteration,
//! drained into as few syscalls as the kernel allows.
//!
//! Datagrams are copied back to back into one byte arena, so a run of
//! consecutive datagrams to the same peer is already one contiguous GSO
//! buffer: no second copy at flush time.

use std::net::{IpAddr, SocketAddr};

/// Datagrams a [`SendQueue::new`] queue holds before it starts dropping.
pub const DEFAULT_SEND_QUEUE_DATAGRAMS: usize = 4096;

/// Payload bytes a [`SendQueue::new`] queue holds before it starts dropping:
/// about what fits in the default 4 MiB socket send buffer twice over, i.e.
/// more than the kernel could take in one go anyway.
pub const DEFAULT_SEND_QUEUE_BYTES: usize = 8 * 1024 * 1024;

/// Linux's `UDP_MAX_SEGMENTS` (64 on every kernel with UDP GSO; newer
/// kernels allow 128, but asking for more than 64 fails on older ones).
pub(crate) const GSO_MAX_SEGMENTS: usize = 64;

/// Largest GSO burst in payload bytes: one IP packet's worth for both
/// families, 65535 − 40 (IPv6 header) − 8 (UDP header). The IPv4 limit,
/// 65507, is higher.
pub(crate) const GSO_MAX_BURST_BYTES: usize = 65_487;

#[derive(Debug, Clone, Copy)]
struct Entry {
    destination: SocketAddr,
    source_ip: Option<IpAddr>,
    len: usize,
}

/// Outgoing datagrams waiting for [`MediaSocket::flush`](crate::MediaSocket::flush).
///
/// Fill it during one loop iteration with [`push`](Self::push), then flush.
/// Consecutive datagrams to the same destination from the same source IP
/// with the same size (the last may be shorter) leave in one GSO send; the
/// rest leave one per syscall. Order is kept.
///
/// **Bounded.** A queue holds at most `max_datagrams` datagrams and
/// `max_bytes` payload bytes, both allocated up front. **Overflow policy:
/// drop the new datagram and count it** (`push` returns `false`; the count
/// shows up in the socket's
/// [`send_queue_full_drops`](crate::SocketCounters::send_queue_full_drops)
/// at the next flush).
/// Dropping the newest rather than the oldest keeps `push` O(1) and never
/// cuts into a burst that is half handed to the kernel; the queue is only
/// full when the socket has been blocked for a while, and media above us
/// recovers from loss (NACK, keyframe request) either way.
///
/// When the socket would block, whatever was not sent stays queued, in
/// order, for the next flush.
pub struct SendQueue {
    entries: Vec<Entry>,
    bytes: Vec<u8>,
    max_datagrams: usize,
    max_bytes: usize,
    unreported_drops: u64,
}

/// Limits a socket puts on a burst, decided at flush time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BurstLimits {
    /// 1 turns GSO off.
    pub(crate) max_segments: usize,
    /// Datagrams larger than this leave alone.
    pub(crate) max_segment_size: usize,
}

/// One send syscall's worth of queued datagrams.
#[derive(Debug)]
pub(crate) struct Burst<'a> {
    pub(crate) destination: SocketAddr,
    pub(crate) source_ip: Option<IpAddr>,
    /// All datagrams back to back.
    pub(crate) contents: &'a [u8],
    /// Size of each datagram but the last, which may be shorter.
    pub(crate) segment_size: usize,
    pub(crate) datagrams: usize,
}

/// What became of a burst handed to the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BurstOutcome {
    /// The kernel took it.
    Sent,
    /// Lost to an error; counted by the socket, dropped from the queue.
    Failed,
    /// The socket buffer is full: stop, keep this burst and the rest.
    WouldBlock,
    /// The kernel just refused GSO: send these datagrams again one by one,
    /// and everything after them too.
    SendSingly,
}

/// What became of a chunk of bursts handed to the socket. Each variant
/// says how many bursts from the chunk's front are done with: sent, or
/// dropped and counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChunkOutcome {
    /// Continue after these; at least one, or the drain stops.
    Done(usize),
    /// The socket buffer is full: stop, keep the rest.
    Blocked(usize),
    /// The kernel refused GSO for the burst right after these (one of more
    /// than one datagram): send it and everything after it again, one
    /// datagram per message.
    SendSingly(usize),
}

impl ChunkOutcome {
    /// Bursts from the chunk's front that are done with.
    pub(crate) fn done(self) -> usize {
        match self {
            Self::Done(n) | Self::Blocked(n) | Self::SendSingly(n) => n,
        }
    }
}

/// The bursts of one chunk, front first. Cloning it walks the same bursts
/// again.
#[derive(Debug, Clone)]
pub(crate) struct Bursts<'a> {
    entries: &'a [Entry],
    bytes: &'a [u8],
    limits: BurstLimits,
    left: usize,
}

impl<'a> Iterator for Bursts<'a> {
    type Item = Burst<'a>;

    fn next(&mut self) -> Option<Burst<'a>> {
        if self.left == 0 {
            return None;
        }
        let first = *self.entries.first()?;
        let count = burst_len(
            self.entries,
            self.limits.max_segments,
            self.limits.max_segment_size,
        );
        let len: usize = self.entries[..count].iter().map(|e| e.len).sum();
        let (contents, bytes) = self.bytes.split_at(len);
        self.entries = &self.entries[count..];
        self.bytes = bytes;
        self.left -= 1;
        Some(Burst {
            destination: first.destination,
            source_ip: first.source_ip,
            contents,
            segment_size: first.len,
            datagrams: count,
        })
    }
}

impl SendQueue {
    /// A queue with [`DEFAULT_SEND_QUEUE_DATAGRAMS`] and
    /// [`DEFAULT_SEND_QUEUE_BYTES`].
    pub fn new() -> Self {
        Self::with_limits(DEFAULT_SEND_QUEUE_DATAGRAMS, DEFAULT_SEND_QUEUE_BYTES)
    }

    /// A queue that holds at most `max_datagrams` datagrams and `max_bytes`
    /// payload bytes. Both are allocated now.
    pub fn with_limits(max_datagrams: usize, max_bytes: usize) -> Self {
        Self {
            entries: Vec::with_capacity(max_datagrams),
            bytes: Vec::with_capacity(max_bytes),
            max_datagrams,
            max_bytes,
            unreported_drops: 0,
        }
    }

    /// Queues one datagram to `destination`, sent from `source_ip` if given
    /// (it must be an address of this host, typically the `destination` of
    /// the datagram being answered), otherwise from whatever the routing
    /// table picks.
    ///
    /// Returns `false`, and counts a drop, if the queue is full.
    pub fn push(
        &mut self,
        destination: SocketAddr,
        source_ip: Option<IpAddr>,
        contents: &[u8],
    ) -> bool {
        if self.entries.len() >= self.max_datagrams
            || self.bytes.len() + contents.len() > self.max_bytes
        {
            self.unreported_drops += 1;
            return false;
        }
        self.bytes.extend_from_slice(contents);
        self.entries.push(Entry {
            destination,
            source_ip,
            len: contents.len(),
        });
        true
    }

    /// Datagrams waiting.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Nothing waiting.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Payload bytes waiting.
    pub fn queued_bytes(&self) -> usize {
        self.bytes.len()
    }

    /// Forgets everything waiting (e.g. when the socket goes away). Not
    /// counted as drops.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.bytes.clear();
    }

    /// Drops counted since the last call; the socket adds them to its
    /// counters at each flush.
    pub(crate) fn take_drops(&mut self) -> u64 {
        std::mem::take(&mut self.unreported_drops)
    }

    /// Hands the queued datagrams to `send` burst by burst, in order, until
    /// the queue is empty (returns `true`) or `send` says it would block
    /// (returns `false`; the unsent datagrams stay queued).
    pub(crate) fn drain(
        &mut self,
        limits: BurstLimits,
        mut send: impl FnMut(&Burst<'_>) -> BurstOutcome,
    ) -> bool {
        self.drain_chunks(limits, 1, |mut bursts| {
            let Some(burst) = bursts.next() else {
                return ChunkOutcome::Blocked(0);
            };
            match send(&burst) {
                BurstOutcome::Sent | BurstOutcome::Failed => ChunkOutcome::Done(1),
                BurstOutcome::WouldBlock => ChunkOutcome::Blocked(0),
                BurstOutcome::SendSingly if burst.datagrams > 1 => ChunkOutcome::SendSingly(0),
                BurstOutcome::SendSingly => ChunkOutcome::Done(1),
            }
        })
    }

    /// Hands the queued datagrams to `send` in chunks of up to `max_bursts`
    /// bursts, in order, until the queue is empty (returns `true`) or `send`
    /// says it would block (returns `false`; the unsent datagrams stay
    /// queued). The next chunk starts after the bursts `send` reports done.
    pub(crate) fn drain_chunks(
        &mut self,
        limits: BurstLimits,
        max_bursts: usize,
        mut send: impl FnMut(Bursts<'_>) -> ChunkOutcome,
    ) -> bool {
        let mut limits = limits;
        let mut head = 0;
        let mut offset = 0;
        let complete = loop {
            if head == self.entries.len() {
                break true;
            }
            let chunk = Bursts {
                entries: &self.entries[head..],
                bytes: &self.bytes[offset..],
                limits,
                left: max_bursts.max(1),
            };
            let outcome = send(chunk.clone());
            for burst in chunk.take(outcome.done()) {
                head += burst.datagrams;
                offset += burst.contents.len();
            }
            match outcome {
                // A sender that reports nothing done and does not block
                // would be asked the same again forever.
                ChunkOutcome::Done(0) => break false,
                ChunkOutcome::Done(_) => {}
                ChunkOutcome::Blocked(_) => break false,
                // The rest again, one datagram per message; no further GSO.
                ChunkOutcome::SendSingly(_) => limits.max_segments = 1,
            }
        };
        if complete {
            self.clear();
        } else {
            // Only on the blocked path: shift the unsent tail to the front.
            self.entries.drain(..head);
            self.bytes.drain(..offset);
        }
        complete
    }
}

impl Default for SendQueue {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for SendQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendQueue")
            .field("datagrams", &self.entries.len())
            .field("bytes", &self.bytes.len())
            .field("max_datagrams", &self.max_datagrams)
            .field("max_bytes", &self.max_bytes)
            .finish()
    }
}

/// How many datagrams from the front of `pending` (not empty) go in one
/// send: a run to the same destination from the same source, all the size
/// of the first except a shorter last one, within the segment and byte caps.
fn burst_len(pending: &[Entry], max_segments: usize, max_segment_size: usize) -> usize {
    let first = pending[0];
    if max_segments <= 1 || first.len == 0 || first.len > max_segment_size {
        return 1;
    }
    let max_segments = max_segments.min(GSO_MAX_SEGMENTS);
    let mut count = 1;
    let mut total = first.len;
    for next in &pending[1..] {
        if count == max_segments
            || next.destination != first.destination
            || next.source_ip != first.source_ip
            || next.len == 0
            || next.len > first.len
            || total + next.len > GSO_MAX_BURST_BYTES
        {
            break;
        }
        count += 1;
        total += next.len;
        if next.len < first.len {
            // A shorter datagram can only end a burst.
            break;
        }
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    const GSO: BurstLimits = BurstLimits {
        max_segments: 64,
        max_segment_size: 1452,
    };

    fn peer(port: u16) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, 1], port))
    }

    fn payload(tag: u8, len: usize) -> Vec<u8> {
        (0..len).map(|i| tag.wrapping_add(i as u8)).collect()
    }

    /// A burst as the fake sender saw it.
    struct Seen {
        destination: SocketAddr,
        segment_size: usize,
        datagrams: usize,
        contents: Vec<u8>,
    }

    /// Drains with a sender that records every burst and answers from
    /// `outcomes` (then `Sent`).
    fn drain_recording(
        queue: &mut SendQueue,
        limits: BurstLimits,
        outcomes: &[BurstOutcome],
    ) -> (bool, Vec<Seen>) {
        let mut seen = Vec::new();
        let mut outcomes = outcomes.iter();
        let complete = queue.drain(limits, |b| {
            seen.push(Seen {
                destination: b.destination,
                segment_size: b.segment_size,
                datagrams: b.datagrams,
                contents: b.contents.to_vec(),
            });
            outcomes.next().copied().unwrap_or(BurstOutcome::Sent)
        });
        (complete, seen)
    }

    /// (destination port, segment size, datagrams) per burst.
    fn shape(bursts: &[Seen]) -> Vec<(u16, usize, usize)> {
        bursts
            .iter()
            .map(|b| (b.destination.port(), b.segment_size, b.datagrams))
            .collect()
    }

    #[test]
    fn equal_sizes_to_one_peer_form_one_burst_with_short_tail() {
        let mut q = SendQueue::new();
        for i in 0..5 {
            assert!(q.push(peer(1), None, &payload(i, 1200)));
        }
        assert!(q.push(peer(1), None, &payload(9, 300)));
        assert!(q.push(peer(1), None, &payload(10, 1200)));
        let (complete, bursts) = drain_recording(&mut q, GSO, &[]);
        assert!(complete);
        assert!(q.is_empty());
        assert_eq!(shape(&bursts), vec![(1, 1200, 6), (1, 1200, 1)]);
        let mut expected: Vec<u8> = (0..5).flat_map(|i| payload(i, 1200)).collect();
        expected.extend(payload(9, 300));
        assert_eq!(bursts[0].contents, expected);
        assert_eq!(bursts[1].contents, payload(10, 1200));
    }

    #[test]
    fn bursts_break_on_destination_source_and_larger_size() {
        let mut q = SendQueue::new();
        let src = Some(IpAddr::from([10, 0, 0, 1]));
        q.push(peer(1), None, &[1; 100]);
        q.push(peer(1), None, &[1; 100]);
        q.push(peer(2), None, &[2; 100]);
        q.push(peer(2), src, &[3; 100]);
        q.push(peer(2), src, &[3; 200]);
        q.push(peer(2), src, &[4; 0]);
        q.push(peer(2), src, &[4; 0]);
        let (_, bursts) = drain_recording(&mut q, GSO, &[]);
        assert_eq!(
            shape(&bursts),
            vec![
                (1, 100, 2),
                (2, 100, 1),
                (2, 100, 1),
                (2, 200, 1),
                (2, 0, 1),
                (2, 0, 1)
            ]
        );
    }

    #[test]
    fn bursts_respect_segment_count_size_and_byte_caps() {
        let mut q = SendQueue::new();
        for _ in 0..70 {
            q.push(peer(1), None, &[7; 100]);
        }
        let (_, bursts) = drain_recording(&mut q, GSO, &[]);
        assert_eq!(shape(&bursts), vec![(1, 100, 64), (1, 100, 6)]);

        for _ in 0..3 {
            q.push(peer(1), None, &[7; 1500]);
        }
        let (_, bursts) = drain_recording(&mut q, GSO, &[]);
        assert_eq!(shape(&bursts), vec![(1, 1500, 1); 3]);

        let big = BurstLimits {
            max_segments: 64,
            max_segment_size: 65_000,
        };
        for _ in 0..10 {
            q.push(peer(1), None, &[7; 9000]);
        }
        let (_, bursts) = drain_recording(&mut q, big, &[]);
        // 7 × 9000 = 63 000 ≤ 65 487 < 8 × 9000.
        assert_eq!(shape(&bursts), vec![(1, 9000, 7), (1, 9000, 3)]);
    }

    #[test]
    fn without_gso_every_datagram_leaves_alone() {
        let mut q = SendQueue::new();
        for _ in 0..3 {
            q.push(peer(1), None, &[1; 100]);
        }
        let single = BurstLimits {
            max_segments: 1,
            ..GSO
        };
        let (_, bursts) = drain_recording(&mut q, single, &[]);
        assert_eq!(shape(&bursts), vec![(1, 100, 1); 3]);
    }

    #[test]
    fn would_block_keeps_the_rest_in_order() {
        let mut q = SendQueue::new();
        q.push(peer(1), None, &payload(1, 50));
        q.push(peer(2), None, &payload(2, 60));
        q.push(peer(3), None, &payload(3, 70));
        let (complete, bursts) =
            drain_recording(&mut q, GSO, &[BurstOutcome::Sent, BurstOutcome::WouldBlock]);
        assert!(!complete);
        assert_eq!(bursts.len(), 2);
        assert_eq!(q.len(), 2);
        assert_eq!(q.queued_bytes(), 130);

        q.push(peer(4), None, &payload(4, 80));
        let (complete, bursts) = drain_recording(&mut q, GSO, &[]);
        assert!(complete);
        let got: Vec<_> = bursts
            .iter()
            .map(|b| (b.destination, b.contents.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                (peer(2), payload(2, 60)),
                (peer(3), payload(3, 70)),
                (peer(4), payload(4, 80)),
            ]
        );
    }

    #[test]
    fn failed_bursts_are_dropped_and_the_rest_still_sent() {
        let mut q = SendQueue::new();
        q.push(peer(1), None, &[1; 10]);
        q.push(peer(2), None, &[2; 10]);
        let (complete, bursts) = drain_recording(&mut q, GSO, &[BurstOutcome::Failed]);
        assert!(complete);
        assert_eq!(shape(&bursts), vec![(1, 10, 1), (2, 10, 1)]);
    }

    #[test]
    fn refused_gso_resends_the_burst_one_by_one() {
        let mut q = SendQueue::new();
        for i in 0..3 {
            q.push(peer(1), None, &payload(i, 100));
        }
        let (complete, bursts) = drain_recording(&mut q, GSO, &[BurstOutcome::SendSingly]);
        assert!(complete);
        assert_eq!(
            shape(&bursts),
            vec![(1, 100, 3), (1, 100, 1), (1, 100, 1), (1, 100, 1)]
        );
        assert_eq!(bursts[3].contents, payload(2, 100));
    }

    /// Drains in chunks of `max`, answering each chunk from `outcomes`
    /// (then all done); returns the chunks as (port, datagrams) per burst.
    fn drain_chunks_recording(
        queue: &mut SendQueue,
        max: usize,
        outcomes: &[fn(usize) -> ChunkOutcome],
    ) -> (bool, Vec<Vec<(u16, usize)>>) {
        let mut chunks = Vec::new();
        let mut outcomes = outcomes.iter();
        let complete = queue.drain_chunks(GSO, max, |bursts| {
            let chunk: Vec<_> = bursts
                .map(|b| (b.destination.port(), b.datagrams))
                .collect();
            let len = chunk.len();
            chunks.push(chunk);
            outcomes.next().map_or(ChunkOutcome::Done(len), |f| f(len))
        });
        (complete, chunks)
    }

    #[test]
    fn chunks_hold_up_to_max_bursts_in_order() {
        let mut q = SendQueue::new();
        for port in 1..=9 {
            q.push(peer(port), None, &[1; 100]);
            if port % 3 == 0 {
                q.push(peer(port), None, &[1; 100]);
            }
        }
        let (complete, chunks) = drain_chunks_recording(&mut q, 4, &[]);
        assert!(complete);
        assert!(q.is_empty());
        assert_eq!(
            chunks,
            vec![
                vec![(1, 1), (2, 1), (3, 2), (4, 1)],
                vec![(5, 1), (6, 2), (7, 1), (8, 1)],
                vec![(9, 2)],
            ]
        );
    }

    #[test]
    fn a_partly_done_chunk_continues_after_what_was_done() {
        let mut q = SendQueue::new();
        for port in 1..=5 {
            q.push(peer(port), None, &[1; 10]);
        }
        let (complete, chunks) = drain_chunks_recording(&mut q, 4, &[|_| ChunkOutcome::Done(1)]);
        assert!(complete);
        let firsts: Vec<u16> = chunks.iter().map(|c| c[0].0).collect();
        assert_eq!(firsts, vec![1, 2]);
        assert_eq!(chunks[1].len(), 4);
    }

    #[test]
    fn a_blocked_chunk_keeps_the_rest_for_the_next_drain() {
        let mut q = SendQueue::new();
        for port in 1..=6 {
            q.push(peer(port), None, &payload(port as u8, 10 + port as usize));
        }
        let (complete, chunks) = drain_chunks_recording(&mut q, 4, &[|_| ChunkOutcome::Blocked(2)]);
        assert!(!complete);
        assert_eq!(chunks.len(), 1);
        assert_eq!(q.len(), 4);
        assert_eq!(q.queued_bytes(), (13..=16).sum::<usize>());

        let (_, bursts) = drain_recording(&mut q, GSO, &[]);
        let got: Vec<_> = bursts
            .iter()
            .map(|b| (b.destination.port(), b.contents.clone()))
            .collect();
        let expected: Vec<_> = (3..=6u16)
            .map(|port| (port, payload(port as u8, 10 + port as usize)))
            .collect();
        assert_eq!(got, expected, "the rest once each, in order");
    }

    #[test]
    fn refused_gso_in_a_chunk_resends_from_that_burst_singly() {
        let mut q = SendQueue::new();
        q.push(peer(1), None, &[1; 100]);
        q.push(peer(1), None, &[1; 100]);
        q.push(peer(2), None, &[2; 100]);
        q.push(peer(2), None, &[2; 100]);
        q.push(peer(3), None, &[3; 100]);
        q.push(peer(3), None, &[3; 100]);
        let (complete, chunks) =
            drain_chunks_recording(&mut q, 8, &[|_| ChunkOutcome::SendSingly(1)]);
        assert!(complete);
        assert_eq!(
            chunks,
            vec![
                vec![(1, 2), (2, 2), (3, 2)],
                vec![(2, 1), (2, 1), (3, 1), (3, 1)],
            ]
        );
    }

    #[test]
    fn full_queue_drops_and_counts() {
        let mut q = SendQueue::with_limits(4, 1 << 20);
        let accepted = (0..10).filter(|_| q.push(peer(1), None, &[0; 10])).count();
        assert_eq!(accepted, 4);
        assert_eq!(q.len(), 4);
        assert_eq!(q.take_drops(), 6);
        assert_eq!(q.take_drops(), 0);

        let mut q = SendQueue::with_limits(100, 3000);
        let capacity = q.bytes.capacity();
        assert!(q.push(peer(1), None, &[0; 1200]));
        assert!(q.push(peer(1), None, &[0; 1200]));
        assert!(!q.push(peer(1), None, &[0; 1200]));
        assert!(q.push(peer(1), None, &[0; 600]));
        assert_eq!(q.queued_bytes(), 3000);
        assert_eq!(q.take_drops(), 1);
        assert_eq!(q.bytes.capacity(), capacity, "the arena never grows");
    }
}
