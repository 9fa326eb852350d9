//! [`MediaSocket`]: binding, batched receive, flushing a [`SendQueue`].

use std::io;
use std::net::SocketAddr;
use std::time::SystemTime;

use quinn_udp::{Transmit, UdpSocketState};
use socket2::{Domain, Protocol, Socket, Type};

use crate::addr;
use crate::config::{BufferSizes, UdpConfig};
use crate::counters::SocketCounters;
use crate::recv::{self, Datagram, RECV_BATCH, RecvBuffers};
use crate::send_queue::{BurstLimits, BurstOutcome, GSO_MAX_SEGMENTS, SendQueue};
use crate::sys;

/// A non-blocking UDP socket owned by one worker thread.
///
/// See the [crate docs](crate) for how to drive it.
#[derive(Debug)]
pub struct MediaSocket {
    io: mio::net::UdpSocket,
    state: UdpSocketState,
    local_addr: SocketAddr,
    batching: bool,
    gro_active: bool,
    gso_max_segment_size: usize,
    /// The kernel refused a GSO message sent with `sendmmsg`; quinn-udp
    /// keeps the same switch for its own sends, but it cannot be set from
    /// outside.
    gso_refused: bool,
    buffer_sizes: BufferSizes,
    counters: SocketCounters,
}

/// Result of [`MediaSocket::flush`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a blocked flush must be retried when the socket becomes writable"]
pub enum FlushStatus {
    /// Everything queued went to the kernel or was dropped on an error
    /// (counted); the queue is empty.
    Complete,
    /// The socket's send buffer is full. What was not sent is still queued;
    /// flush again when the socket is writable.
    Blocked,
}

impl MediaSocket {
    /// Binds one socket as `config` says: `SO_REUSEADDR` and `SO_REUSEPORT`
    /// as asked, buffer sizes, dual-stack on `[::]`, non-blocking.
    pub fn bind(config: &UdpConfig) -> io::Result<Self> {
        Self::bind_one(config, config.addr, config.reuse_port)
    }

    /// Binds `count` sockets to the same address and port with
    /// `SO_REUSEPORT`, one per worker thread; the kernel spreads incoming
    /// flows across them by a hash of the 4-tuple. With port 0 the first
    /// socket picks the port and the rest join it.
    ///
    /// Linux only (elsewhere `SO_REUSEPORT` does not spread load): other
    /// platforms get [`io::ErrorKind::Unsupported`]. `count == 0` is
    /// [`io::ErrorKind::InvalidInput`].
    pub fn bind_group(config: &UdpConfig, count: usize) -> io::Result<Vec<Self>> {
        if count == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a socket group needs at least one socket",
            ));
        }
        let first = Self::bind_one(config, config.addr, true)?;
        let shared = first.local_addr;
        let mut group = Vec::with_capacity(count);
        group.push(first);
        for _ in 1..count {
            group.push(Self::bind_one(config, shared, true)?);
        }
        Ok(group)
    }

    fn bind_one(config: &UdpConfig, addr: SocketAddr, reuse_port: bool) -> io::Result<Self> {
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        if addr.is_ipv6() {
            socket.set_only_v6(config.only_v6)?;
        }
        if config.reuse_address {
            socket.set_reuse_address(true)?;
        }
        if reuse_port {
            sys::set_reuse_port(&socket)?;
        }
        let buffer_sizes = size_buffers(&socket, config)?;
        socket.bind(&addr.into())?;

        let socket = std::net::UdpSocket::from(socket);
        // Non-blocking, IP_PKTINFO / IPV6_RECVPKTINFO, UDP_GRO, GSO probe.
        let state = UdpSocketState::new((&socket).into())?;
        let gro_active = if config.batching {
            state.gro_segments() > 1
        } else {
            if state.gro_segments() > 1 {
                sys::set_gro(&socket, false)?;
            }
            false
        };
        let local_addr = socket.local_addr()?;
        let this = Self {
            io: mio::net::UdpSocket::from_std(socket),
            state,
            local_addr,
            batching: config.batching,
            gro_active,
            gso_max_segment_size: config.gso_max_segment_size,
            gso_refused: false,
            buffer_sizes,
            counters: SocketCounters::default(),
        };
        tracing::debug!(
            %local_addr,
            batching = this.batching,
            gso = this.gso_active(),
            gro = this.gro_active,
            recv_buffer = buffer_sizes.recv_granted,
            send_buffer = buffer_sizes.send_granted,
            "media socket bound"
        );
        Ok(this)
    }

    /// The address the socket is bound to (with the real port when bound to
    /// port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Whether batching (recvmmsg, GRO, GSO) is on.
    pub fn batching(&self) -> bool {
        self.batching
    }

    /// Whether sends may be coalesced with GSO right now. Turns `false` for
    /// good if the kernel refuses a GSO send (`EIO` / `EINVAL`).
    pub fn gso_active(&self) -> bool {
        self.max_gso_segments() > 1
    }

    /// Most datagrams one send may carry (1 without GSO).
    pub fn max_gso_segments(&self) -> usize {
        if self.batching && !self.gso_refused {
            self.state.max_gso_segments().min(GSO_MAX_SEGMENTS)
        } else {
            1
        }
    }

    /// Whether the kernel coalesces received datagrams (GRO).
    pub fn gro_active(&self) -> bool {
        self.gro_active
    }

    /// Socket buffer sizes asked for and granted.
    pub fn buffer_sizes(&self) -> BufferSizes {
        self.buffer_sizes
    }

    /// What this socket has done so far.
    pub fn counters(&self) -> SocketCounters {
        SocketCounters {
            gso_active: self.gso_active(),
            gro_active: self.gro_active,
            ..self.counters
        }
    }

    /// Does one receive syscall (`recvmmsg` of up to [`RECV_BATCH`] buffers,
    /// or one datagram when batching is off) and calls `on_datagram` for
    /// every datagram received, GRO buffers split into their datagrams.
    ///
    /// - `Ok(n)` with `n > 0`: `n` datagrams were delivered; call again.
    /// - `Ok(0)`: nothing left to read (the syscall would block). With mio,
    ///   wait for the next readable event.
    /// - `Err(e)`: the kernel reported something other than "would block"
    ///   (counted in `recv_errors`). The socket stays usable; the caller
    ///   logs it and reads again on its next loop iteration, since an
    ///   edge-triggered poll will not report readiness it has already
    ///   reported.
    ///
    /// The datagrams borrow from `bufs` and are valid only inside
    /// `on_datagram`.
    pub fn recv_batch(
        &mut self,
        bufs: &mut RecvBuffers,
        mut on_datagram: impl FnMut(Datagram<'_>),
    ) -> io::Result<usize> {
        let buffers = if self.batching { RECV_BATCH } else { 1 };
        let received = {
            let (mut slices, meta) = bufs.prepare();
            let (io, state) = (&self.io, &self.state);
            io.try_io(|| state.recv(io.into(), &mut slices[..buffers], &mut meta[..buffers]))
        };
        self.counters.recv_syscalls += 1;
        let filled = match received {
            Ok(filled) => filled,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(0),
            Err(e) => {
                self.counters.recv_errors += 1;
                return Err(e);
            }
        };

        let mut delivered = 0;
        for index in 0..filled {
            let (meta, buffer) = bufs.filled(index);
            let source = addr::canonical(meta.addr);
            let destination = addr::destination(meta.dst_ip, meta.interface_index, self.local_addr);
            let received_at = meta.timestamp.map(|t| SystemTime::UNIX_EPOCH + t);
            let datagrams = recv::for_each_datagram(buffer, meta.stride, |contents| {
                on_datagram(Datagram {
                    source,
                    destination,
                    contents,
                    received_at,
                });
            });
            if datagrams > 1 {
                self.counters.recv_coalesced_buffers += 1;
            }
            delivered += datagrams;
            self.counters.bytes_in += buffer.len() as u64;
        }
        self.counters.datagrams_in += delivered as u64;
        Ok(delivered)
    }

    /// Sends what `queue` holds, in order: runs of same-size datagrams to
    /// one destination as GSO bursts. With batching on Linux, one
    /// `sendmmsg` carries up to 128 bursts, each to its own destination;
    /// otherwise each burst is one syscall.
    ///
    /// Never fails: a datagram the kernel refuses (unreachable, too big, an
    /// address this socket cannot reach) is dropped and counted in
    /// `send_errors`. If the kernel refuses GSO itself, the burst is sent
    /// again one datagram at a time and GSO stays off for this socket.
    /// Returns [`FlushStatus::Blocked`] when the socket buffer is full; the
    /// rest stays in `queue` for the next flush.
    pub fn flush(&mut self, queue: &mut SendQueue) -> FlushStatus {
        self.counters.send_queue_full_drops += queue.take_drops();
        let limits = BurstLimits {
            max_segments: self.max_gso_segments(),
            max_segment_size: self.gso_max_segment_size,
        };
        let socket_is_v6 = self.local_addr.is_ipv6();
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if self.batching {
            use std::os::fd::AsFd;
            let complete = crate::sendmmsg::flush(
                self.io.as_fd(),
                socket_is_v6,
                limits,
                queue,
                &mut self.counters,
                &mut self.gso_refused,
            );
            return if complete {
                FlushStatus::Complete
            } else {
                FlushStatus::Blocked
            };
        }
        let (io, state, counters) = (&self.io, &self.state, &mut self.counters);
        let complete = queue.drain(limits, |burst| {
            let datagrams = burst.datagrams as u64;
            let Some((destination, src_ip)) =
                addr::outgoing(burst.destination, burst.source_ip, socket_is_v6)
            else {
                tracing::trace!(
                    destination = %burst.destination,
                    source_ip = ?burst.source_ip,
                    "datagram cannot be sent from this socket (address family, port 0)"
                );
                counters.send_errors += datagrams;
                return BurstOutcome::Failed;
            };
            let transmit = Transmit {
                destination,
                ecn: None,
                contents: burst.contents,
                segment_size: (burst.datagrams > 1).then_some(burst.segment_size),
                src_ip,
            };
            counters.send_syscalls += 1;
            match io.try_io(|| state.try_send(io.into(), &transmit)) {
                Ok(()) => {
                    counters.datagrams_out += datagrams;
                    counters.bytes_out += burst.contents.len() as u64;
                    if burst.datagrams > 1 {
                        counters.gso_sends += 1;
                    }
                    BurstOutcome::Sent
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => BurstOutcome::WouldBlock,
                // quinn-udp has just switched GSO off after EIO / EINVAL.
                Err(e) if burst.datagrams > 1 && state.max_gso_segments() <= 1 => {
                    tracing::info!(
                        error = %e,
                        "kernel refused a GSO send; sending one datagram per syscall from now on"
                    );
                    BurstOutcome::SendSingly
                }
                Err(e) => {
                    tracing::trace!(error = %e, %destination, datagrams, "send failed");
                    counters.send_errors += datagrams;
                    BurstOutcome::Failed
                }
            }
        });
        if complete {
            FlushStatus::Complete
        } else {
            FlushStatus::Blocked
        }
    }
}

impl mio::event::Source for MediaSocket {
    fn register(
        &mut self,
        registry: &mio::Registry,
        token: mio::Token,
        interests: mio::Interest,
    ) -> io::Result<()> {
        self.io.register(registry, token, interests)
    }

    fn reregister(
        &mut self,
        registry: &mio::Registry,
        token: mio::Token,
        interests: mio::Interest,
    ) -> io::Result<()> {
        self.io.reregister(registry, token, interests)
    }

    fn deregister(&mut self, registry: &mio::Registry) -> io::Result<()> {
        self.io.deregister(registry)
    }
}

#[cfg(unix)]
impl std::os::fd::AsFd for MediaSocket {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.io.as_fd()
    }
}

/// Asks for the configured buffer sizes, forcing past the system limit where
/// the process may, and reports what was granted.
fn size_buffers(socket: &Socket, config: &UdpConfig) -> io::Result<BufferSizes> {
    socket.set_recv_buffer_size(config.recv_buffer_size)?;
    let mut recv_granted = socket.recv_buffer_size()?;
    if recv_granted < config.recv_buffer_size
        && sys::force_recv_buffer_size(socket, config.recv_buffer_size).is_ok()
    {
        recv_granted = socket.recv_buffer_size()?;
    }

    socket.set_send_buffer_size(config.send_buffer_size)?;
    let mut send_granted = socket.send_buffer_size()?;
    if send_granted < config.send_buffer_size
        && sys::force_send_buffer_size(socket, config.send_buffer_size).is_ok()
    {
        send_granted = socket.send_buffer_size()?;
    }

    let sizes = BufferSizes {
        recv_requested: config.recv_buffer_size,
        recv_granted,
        send_requested: config.send_buffer_size,
        send_granted,
    };
    if recv_granted < config.recv_buffer_size || send_granted < config.send_buffer_size {
        tracing::warn!(
            recv_requested = sizes.recv_requested,
            recv_granted,
            send_requested = sizes.send_requested,
            send_granted,
            "UDP socket buffers smaller than configured; raise net.core.rmem_max and \
             net.core.wmem_max (or grant CAP_NET_ADMIN) to avoid drops under bursts"
        );
    }
    Ok(sizes)
}
