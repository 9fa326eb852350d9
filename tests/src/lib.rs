//! End-to-end tests across processes; the tests live in `tests/tests/`.
//!
//! This library is their harness:
//! - [`netns`]: a private network namespace with only loopback, entered
//!   first thing in a `harness = false` test's `main`;
//! - [`browser`]: headless Chromium scenarios (`tests/browser/run.mjs`) and
//!   a reference WHIP/WHEP server;
//! - [`entra`]: signing keys, a JWKS server and Teams SSO tokens, as
//!   Microsoft Entra ID would make them;
//! - [`firewall`]: nftables rules in the namespace (block UDP, TCP);
//! - [`ports`] and [`wait`]: free ports and bounded readiness waits;
//! - [`rtcd_proc`]: rtcd nodes as processes, to kill or drain;
//! - [`relay`]: a TCP relay that freezes, for a node that seems to hang;
//! - [`offloader_proc`]: the offloader as a process, to kill and restart.

pub mod browser;
pub mod browser_gate;
pub mod entra;
pub mod firewall;
pub mod netns;
pub mod offloader_proc;
pub mod ports;
pub mod relay;
pub mod rtcd_proc;
pub mod wait;
