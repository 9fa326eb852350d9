//! Load generator for rtcd, and the reports that compare runs.
//!
//! Simulated participants are real WebRTC peers: str0m `Rtc` clients in RTP
//! mode doing ICE, DTLS and SRTP, joining through rtcd's control API (the
//! bench plays the control node) or WHIP/WHEP, and sending media at
//! realistic rates ([`media`]), video paced as a browser paces it
//! ([`pacer`]). Every payload carries its send time and a
//! counter ([`payload`]), so receivers measure one-way delay through the
//! SFU, loss and reorder. Many participants share a few threads
//! ([`worker`]): one UDP socket each, level-triggered epoll, batched
//! receive, GSO sends. rtcd runs as its own process ([`sfu`]) so its CPU
//! time and memory are its own; the generator watches its own CPU and
//! flags a run it could not drive. Before a run, [`stalls`] measures how
//! long the machine itself holds up the SFU's CPU: the floor under delay.
//!
//! `bench compare` runs a scenario against Janus's VideoRoom as well
//! ([`janus`], inside a private network namespace, [`netns`]) and prints
//! the ratios ([`compare`]); both SFUs are then measured by what their
//! receivers got, since Janus counts nothing it forwards.
//!
//! [`chat`] loads control instead: WebSocket clients in channels, posts
//! over REST, delivery delay and exactly-once, in-order delivery.
//!
//! [`record`] measures offloader's recordings: CPU-seconds per recorded
//! minute, audio-only and composed.
//!
//! [`transcribe`] measures the offloader's Whisper transcription on
//! synthetic speech (real-time factor, one thread).
//!
//! Entry points: [`scenario::run`] for one scenario, [`chat::run`] for a
//! chat run, [`transcribe::run`] for transcription, the `bench` binary for
//! the CLI.

pub mod chat;
pub mod compare;
pub mod janus;
pub mod media;
pub mod netns;
pub mod pacer;
pub mod payload;
pub mod plot;
pub mod procstat;
pub mod record;
pub mod report;
pub mod scenario;
pub mod sfu;
pub mod signal;
pub mod stalls;
pub mod transcribe;
pub mod worker;
