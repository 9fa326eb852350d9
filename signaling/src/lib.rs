//! Enclave's wire types. No IO, no logic beyond validation of identifiers.
//!
//! Four conversations cross process boundaries, each in its own module:
//!
//! - [`rtcd`]: control ⇄ rtcd, one authenticated WebSocket per control node.
//!   Control tells rtcd which calls exist and who may join them; rtcd answers
//!   with SDP, ICE candidates, session states, voice activity and its load.
//! - [`events`]: client ⇄ control chat events over the client's control
//!   WebSocket (sequence numbers, resume, resync), and the chat objects.
//! - [`call`]: what a client needs from control to join a call, and the SDP/ICE
//!   relay messages carried over the client's control WebSocket.
//! - [`jobs`]: control ⇄ offloader, the HTTP job API (recordings,
//!   transcripts, live captions).
//!
//! Every message is JSON, internally tagged by `"type"` in `snake_case`.
//! [`PROTOCOL_VERSION`] is exchanged when a control node connects to rtcd; a
//! peer refuses a version it does not speak. Golden files under
//! `signaling/tests/golden/` pin the encoding so that a change to the wire is
//! always deliberate (`UPDATE_GOLDEN=1 cargo test -p signaling` rewrites them).

pub mod call;
pub mod events;
pub mod ids;
pub mod jobs;
pub mod media;
pub mod rtcd;

pub use ids::{CallId, IdError, JobId, SessionId};

/// Version of the control ⇄ rtcd protocol. Bump on any incompatible change.
pub const PROTOCOL_VERSION: u32 = 1;
