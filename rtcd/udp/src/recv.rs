//! Receive side: caller-owned buffers and splitting of GRO-coalesced
//! buffers into datagrams.

use std::io::IoSliceMut;
use std::net::SocketAddr;
use std::time::SystemTime;

use quinn_udp::RecvMeta;

/// Buffers filled by one receive syscall (`recvmmsg`), at most.
pub const RECV_BATCH: usize = quinn_udp::BATCH_SIZE;

/// Size of each receive buffer.
///
/// With GRO the kernel hands over up to 64 KiB of same-flow datagrams in one
/// buffer, and a buffer too small for that loses the excess silently
/// (`recvmmsg` truncates). 64 KiB also holds the largest possible single UDP
/// datagram, so nothing is ever truncated in either mode.
pub const RECV_SLOT_SIZE: usize = 64 * 1024;

/// One received datagram, borrowed from [`RecvBuffers`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Datagram<'a> {
    /// The peer that sent it. IPv4 peers are plain IPv4 even on a dual-stack
    /// socket.
    pub source: SocketAddr,
    /// The local address and port it was sent to: the exact IP even when the
    /// socket is bound to `0.0.0.0` or `[::]`, so it can be matched against
    /// the local ICE candidates. (On a platform that reports no packet
    /// info, this is the socket's own address.)
    pub destination: SocketAddr,
    /// The payload.
    pub contents: &'a [u8],
    /// When the kernel received it (`SO_TIMESTAMPNS`, the wall clock), on
    /// platforms that report it (Linux). Later than that is when this
    /// process got to it: a busy reader tells the two apart with this.
    pub received_at: Option<SystemTime>,
}

/// Memory for [`MediaSocket::recv_batch`](crate::MediaSocket::recv_batch):
/// [`RECV_BATCH`] buffers of [`RECV_SLOT_SIZE`] bytes (2 MiB on Linux).
///
/// Allocate one per worker at start-up and reuse it for every receive; the
/// packet path never allocates. The pages are only touched when the kernel
/// writes to them.
pub struct RecvBuffers {
    storage: Box<[u8]>,
    meta: Box<[RecvMeta]>,
}

impl RecvBuffers {
    /// Allocates the buffers.
    pub fn new() -> Self {
        Self {
            storage: vec![0; RECV_BATCH * RECV_SLOT_SIZE].into_boxed_slice(),
            meta: vec![RecvMeta::default(); RECV_BATCH].into_boxed_slice(),
        }
    }

    /// The buffers as the receive syscall wants them, and the slots for
    /// what it reports about each.
    pub(crate) fn prepare(&mut self) -> ([IoSliceMut<'_>; RECV_BATCH], &mut [RecvMeta]) {
        let mut slots = self.storage.chunks_exact_mut(RECV_SLOT_SIZE);
        // `storage` holds exactly RECV_BATCH slots, so the default (an empty
        // slice) is never used.
        let slices = std::array::from_fn(|_| IoSliceMut::new(slots.next().unwrap_or_default()));
        (slices, &mut self.meta)
    }

    /// Buffer `index` after a receive that filled it.
    pub(crate) fn filled(&self, index: usize) -> (&RecvMeta, &[u8]) {
        let meta = &self.meta[index];
        let start = index * RECV_SLOT_SIZE;
        let len = meta.len.min(RECV_SLOT_SIZE);
        (meta, &self.storage[start..start + len])
    }
}

impl Default for RecvBuffers {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for RecvBuffers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBuffers")
            .field("buffers", &self.meta.len())
            .field("buffer_size", &RECV_SLOT_SIZE)
            .finish()
    }
}

/// Calls `each` for every datagram in a received buffer and returns how
/// many there were.
///
/// A GRO buffer holds datagrams at `stride` intervals, the last one possibly
/// shorter. Without GRO, `stride` equals the length. A zero-length datagram
/// is still one datagram.
pub(crate) fn for_each_datagram(
    buffer: &[u8],
    stride: usize,
    mut each: impl FnMut(&[u8]),
) -> usize {
    if stride == 0 || stride >= buffer.len() {
        each(buffer);
        return 1;
    }
    let mut count = 0;
    for datagram in buffer.chunks(stride) {
        each(datagram);
        count += 1;
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(buffer: &[u8], stride: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let n = for_each_datagram(buffer, stride, |d| out.push(d.to_vec()));
        assert_eq!(n, out.len());
        out
    }

    #[test]
    fn single_datagram_is_passed_through() {
        assert_eq!(split(b"abc", 3), vec![b"abc".to_vec()]);
        assert_eq!(split(b"abc", 10), vec![b"abc".to_vec()]);
    }

    #[test]
    fn empty_datagram_counts_once() {
        assert_eq!(split(b"", 0), vec![Vec::<u8>::new()]);
    }

    #[test]
    fn gro_buffer_is_split_at_stride_with_short_tail() {
        assert_eq!(
            split(b"aaabbbcc", 3),
            vec![b"aaa".to_vec(), b"bbb".to_vec(), b"cc".to_vec()]
        );
        assert_eq!(split(b"aaabbb", 3), vec![b"aaa".to_vec(), b"bbb".to_vec()]);
    }

    #[test]
    fn buffers_cover_the_whole_batch() {
        let mut bufs = RecvBuffers::new();
        let (slices, meta) = bufs.prepare();
        assert_eq!(meta.len(), RECV_BATCH);
        assert!(slices.iter().all(|s| s.len() == RECV_SLOT_SIZE));
    }
}
