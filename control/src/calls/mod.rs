//! Calls in channels: who is in which call on which rtcd node, host
//! controls, ringing, and the relay of media negotiation between a
//! client's control WebSocket and the call's rtcd node.

pub mod config;

pub use config::CallsConfig;
