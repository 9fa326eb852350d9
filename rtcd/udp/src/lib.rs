//! Batched, fast UDP for the SFU's worker threads.
//!
//! This crate knows nothing about WebRTC. It gives each worker thread one
//! non-blocking [`MediaSocket`] with:
//!
//! - batched receive (`recvmmsg`, [`RECV_BATCH`] buffers per syscall) and
//!   GRO, with coalesced buffers split back into datagrams;
//! - GSO sends: consecutive same-size datagrams to one peer leave as one
//!   message, switched off at run time if the kernel refuses it;
//! - `sendmmsg` on Linux: one syscall carries up to 128 such messages, each
//!   to its own destination, so a fan-out to many subscribers is a few
//!   syscalls, not one per subscriber;
//! - the exact local destination address of every datagram, even on a
//!   socket bound to `0.0.0.0` or `[::]`, for matching local ICE candidates;
//! - large socket buffers (4 MiB by default; what the kernel granted is
//!   reported), IPv4, IPv6 and dual-stack `[::]`;
//! - `SO_REUSEPORT` groups, one socket per worker on one port
//!   ([`MediaSocket::bind_group`]);
//! - per-socket [`SocketCounters`];
//! - a switch, [`UdpConfig::batching`], that turns all batching off so
//!   benchmarks can show what it buys.
//!
//! Receiving, and sending with batching off or off Linux, go through
//! quinn-udp (it carries the per-platform code and the GSO fallback); the
//! batched Linux send is this crate's own `sendmmsg`, which quinn-udp does
//! not have. Socket setup is socket2's; readiness is mio's.
//!
//! # Driving it
//!
//! 1. **Bind**: [`MediaSocket::bind`], or [`MediaSocket::bind_group`] for
//!    one socket per worker. Give each worker its socket, one
//!    [`RecvBuffers`] and one [`SendQueue`], all allocated once.
//! 2. **Register** the socket with the worker's [`mio::Poll`] for
//!    `READABLE | WRITABLE` (it implements [`mio::event::Source`]). mio is
//!    edge-triggered: an event means "something changed", so each handler
//!    below runs until the socket says it would block.
//! 3. **On readable**: call [`MediaSocket::recv_batch`] until it returns
//!    `Ok(0)`. Each call is one syscall and hands every datagram to your
//!    closure, which feeds the SFU core and may [`SendQueue::push`] replies.
//! 4. **Queue sends** during the loop iteration with [`SendQueue::push`]:
//!    destination, optional source IP (answer from the `destination` the
//!    peer used), bytes. A full queue drops the new datagram and counts it.
//! 5. **Flush** once per iteration with [`MediaSocket::flush`]. On
//!    [`FlushStatus::Blocked`] the unsent datagrams stay queued.
//! 6. **On writable**: flush again.
//!
//! Nothing here reads the clock; timers are the caller's business (the poll
//! timeout).
//!
//! ```
//! use std::time::Duration;
//! use mio::{Events, Interest, Poll, Token};
//! use rtcd_udp::{MediaSocket, RecvBuffers, SendQueue, UdpConfig};
//!
//! # fn main() -> std::io::Result<()> {
//! let mut socket = MediaSocket::bind(&UdpConfig::new("127.0.0.1:0".parse().unwrap()))?;
//! let mut peer = MediaSocket::bind(&UdpConfig::new("127.0.0.1:0".parse().unwrap()))?;
//!
//! let mut poll = Poll::new()?;
//! poll.registry()
//!     .register(&mut socket, Token(0), Interest::READABLE | Interest::WRITABLE)?;
//! let (mut bufs, mut queue) = (RecvBuffers::new(), SendQueue::new());
//!
//! // Something to receive: the peer sends a burst of three.
//! let mut peer_queue = SendQueue::new();
//! for _ in 0..3 {
//!     peer_queue.push(socket.local_addr(), None, b"ping");
//! }
//! let _ = peer.flush(&mut peer_queue);
//!
//! let mut events = Events::with_capacity(64);
//! let mut received = 0;
//! while received < 3 {
//!     poll.poll(&mut events, Some(Duration::from_secs(2)))?;
//!     assert!(!events.is_empty(), "timed out");
//!     for event in &events {
//!         if event.is_readable() {
//!             // Drain until the socket would block; answer each datagram
//!             // from the address it was sent to.
//!             while socket.recv_batch(&mut bufs, |d| {
//!                 queue.push(d.source, Some(d.destination.ip()), d.contents);
//!             })? > 0 {}
//!         }
//!     }
//!     received = socket.counters().datagrams_in;
//!     // Flush once per iteration; if blocked, the writable event comes back.
//!     let _ = socket.flush(&mut queue);
//! }
//! assert_eq!(socket.counters().datagrams_out, 3);
//! # Ok(())
//! # }
//! ```
//!
//! # Errors and panics
//!
//! Network errors never panic and never stop the socket. Send errors drop
//! the datagram and are counted; receive errors other than "would block"
//! are counted and returned. Nothing in this crate unwraps input from the
//! network.
//!
//! A source IP given to [`SendQueue::push`] must be an address of this
//! host: the kernel answers a foreign one with `EINVAL`, which also reads as
//! "GSO unsupported" (with batching off, for any datagram; with `sendmmsg`,
//! for a GSO burst), switching GSO off for that socket.
//!
//! # Platforms
//!
//! Linux gets everything. Elsewhere each burst is one send syscall,
//! quinn-udp's fallback does one datagram per receive syscall where the OS
//! has no batch call, there is no GRO or GSO,
//! forced buffer sizes are not tried, and `SO_REUSEPORT` groups are refused
//! (platform code for this crate's own socket options is in `sys/`).

mod addr;
mod config;
mod counters;
mod recv;
mod send_queue;
#[cfg(any(target_os = "linux", target_os = "android"))]
mod sendmmsg;
mod socket;
mod sys;

pub use config::{BufferSizes, DEFAULT_GSO_MAX_SEGMENT_SIZE, DEFAULT_SOCKET_BUFFER, UdpConfig};
pub use counters::SocketCounters;
pub use recv::{Datagram, RECV_BATCH, RECV_SLOT_SIZE, RecvBuffers};
pub use send_queue::{DEFAULT_SEND_QUEUE_BYTES, DEFAULT_SEND_QUEUE_DATAGRAMS, SendQueue};
pub use socket::{FlushStatus, MediaSocket};
