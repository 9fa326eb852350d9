//! A private network namespace for a comparison run.
//!
//! Janus (libnice) gathers no candidates on a loopback-only host: it skips
//! `lo`. Inside a fresh namespace, a veth pair whose one end carries
//! 127.0.0.1/32 gives it an interface to gather on while every packet still
//! travels over 127.0.0.1. The namespace is anonymous and belongs to this
//! process and its children (Janus, rtcd): when the last of them exits, the
//! kernel removes it with the veth pair, however the run ended (error,
//! Ctrl-C, kill). Nothing on the host changes.

use std::process::Command;

use anyhow::Context as _;

/// The interface Janus gathers on (`ice_enforce_list`).
pub const JANUS_IFACE: &str = "bj0";
const PEER_IFACE: &str = "bj1";

/// Moves this process into a new network namespace with `lo` up and the
/// veth pair in place.
///
/// Must run while the process has one thread: a namespace is per thread,
/// and only threads started afterwards inherit it.
pub fn enter() -> anyhow::Result<()> {
    // SAFETY: a plain syscall with a constant flag.
    let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    anyhow::ensure!(
        rc == 0,
        "unshare(CLONE_NEWNET): {} (comparing against Janus needs root for its network namespace)",
        std::io::Error::last_os_error()
    );
    let steps: [&[&str]; 5] = [
        &["link", "set", "lo", "up"],
        &[
            "link",
            "add",
            JANUS_IFACE,
            "type",
            "veth",
            "peer",
            "name",
            PEER_IFACE,
        ],
        &["addr", "add", "127.0.0.1/32", "dev", JANUS_IFACE],
        &["link", "set", JANUS_IFACE, "up"],
        &["link", "set", PEER_IFACE, "up"],
    ];
    for args in steps {
        let out = Command::new("ip")
            .args(args)
            .output()
            .context("running `ip` (iproute2)")?;
        anyhow::ensure!(
            out.status.success(),
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
