//! Local identity: passwords ([`password`]), secrets ([`tokens`]), the
//! request extractor that turns a cookie or bearer token into a user
//! ([`extract`]), and the login rate limit ([`ratelimit`]).

pub mod extract;
pub mod password;
pub mod ratelimit;
pub mod tokens;

pub use extract::{AuthVia, CurrentUser};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "enclave_session";
/// The header that carries the CSRF token for cookie-authenticated writes.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Prefix of personal access tokens, so they are recognisable in configs
/// and secret scanners, and told apart from session tokens.
pub const PAT_PREFIX: &str = "enp_";
/// Prefix of a job bot's credential: good for one call's bot routes only.
pub const JOB_TOKEN_PREFIX: &str = "enj_";
