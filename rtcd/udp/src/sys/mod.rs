//! Socket options that neither quinn-udp nor socket2 expose, one file per
//! platform plus a portable fallback.
//!
//! Everything here is setup-time only; the packet path goes through
//! quinn-udp, which has its own per-platform code, and, for batched sends
//! on Linux, through `sendmmsg.rs`.

#[cfg(any(target_os = "linux", target_os = "android"))]
mod linux;
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) use linux::*;

#[cfg(not(any(target_os = "linux", target_os = "android")))]
mod fallback;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) use fallback::*;
