//! The sans-IO SFU core of rtcd.
//!
//! [`Sfu`] owns the WebRTC sessions of the calls placed on one worker and
//! routes media between them. It never reads a clock, touches a socket or
//! spawns a thread: time and datagrams come in as arguments, datagrams and
//! events come out of [`Sfu::poll_output`]. That makes whole calls testable
//! on a fake clock in memory, and lets the driver shard calls across cores
//! by running one `Sfu` per worker thread.
//!
//! # Driving contract
//!
//! ```text
//! loop {
//!     // 1. Feed whatever happened, with the time it happened:
//!     sfu.handle_command(now, msg);            // control ⇄ rtcd messages
//!     sfu.handle_datagram(now, datagram);      // every UDP/TCP packet
//!     sfu.flush(now);                          // after the datagrams read this turn
//!     while sfu.forward_backlog(now, slice) {  // video, a slice at a time
//!         // send what came out; read the socket again and feed it
//!         if sfu.audio_unflushed_since().is_some() { sfu.flush(now) } // audio first
//!     }
//!     sfu.flush(now);                          // the video written
//!     sfu.handle_timeout(now);                 // when poll_timeout() is due
//!     // 2. After each input, drain the outputs:
//!     while let Some(out) = sfu.poll_output() {
//!         match out {
//!             Output::Transmit(t) => send t.contents from t.source to t.destination,
//!             Output::Event(e) => hand the FromRtcd message to control,
//!         }
//!     }
//!     // 3. Sleep until a datagram arrives or sfu.poll_timeout().
//! }
//! ```
//!
//! Audio is forwarded as soon as its datagram is handled; video waits in
//! one backlog (arrival order, so a track's packets never reorder) until
//! [`Sfu::forward_backlog`] fans it out in slices of subscriber writes. A
//! large video fan-out (a screen-share frame to hundreds of listeners is
//! thousands of writes) thus no longer holds up audio that arrives during
//! it, as long as the driver reads between slices. While video waits,
//! [`Sfu::poll_timeout`] is a time already passed; only
//! `forward_backlog` empties the backlog, so a driver must call it.
//!
//! Inputs never block and never fail the whole core: a malformed datagram,
//! SDP or candidate is refused with a precise reason (and counted in
//! [`CoreStats`]), and a panic-free error in one session closes only that
//! session.
//!
//! # Demultiplexing
//!
//! Datagrams are routed in O(1): a map from the remote address (and
//! protocol) to its session, and, for the first packet of a new path, the
//! ICE ufrag in the STUN USERNAME. Each session's local ufrag starts with its
//! worker's index ([`ufrag_worker`]), so a driver with several workers can
//! steer a STUN packet to its worker without shared state.
//!
//! # Timers
//!
//! Only sessions whose deadline is due are woken (a binary heap of
//! deadlines); an idle session costs nothing per loop.

mod backlog;
mod call;
mod codec;
mod config;
mod demux;
mod fanout;
mod fasthash;
mod negotiation;
mod resend;
mod routing;
mod session;
mod sfu;
mod stats;
mod timers;
mod vad;

pub use config::{
    CoreConfig, DEFAULT_RESEND_WINDOW, DEFAULT_RESEND_WINDOW_MIN, DEFAULT_RESEND_WINDOW_PACKETS,
    NatMapping,
};
pub use demux::{is_stun, stun_username_ufrag, ufrag_worker};
pub use sfu::{
    CoreError, Datagram, FLUSH_AFTER_FORWARDS, MAX_DATAGRAM, Output, Protocol, Sfu, Transmit,
    WhepRequest, WhipAnswer,
};
pub use stats::{CoreStats, DropReason, Histogram, MediaClass};

/// Reuse one DTLS certificate for every session of the process: generating
/// one costs ~2 ms of CPU, which would dominate join time.
pub fn generate_dtls_cert() -> str0m::config::DtlsCert {
    let provider = str0m::crypto::from_feature_flags();
    provider
        .dtls_provider
        .generate_certificate()
        // The aws-lc-rs provider, the only one this crate enables, always generates.
        .expect("the aws-lc-rs crypto provider generates DTLS certificates")
}
