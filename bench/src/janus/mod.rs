//! Janus (Debian's package, VideoRoom plugin) as the peer SFU of
//! `bench compare`: its process and configuration ([`server`]) and the
//! signaling client the simulated participants join through ([`api`]).
//! Nothing here is on rtcd's path.

pub mod api;
pub mod server;
