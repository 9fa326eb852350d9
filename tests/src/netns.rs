//! A private network namespace with only loopback, for tests that run real
//! network peers (servers on 127.0.0.1, Chromium).
//!
//! Inside it a browser gathers only `127.0.0.1` candidates, ports cannot
//! clash with anything else on the machine, and no packet can leave it.
//!
//! # How to use
//!
//! Call [`enter_isolated_loopback`] as the **first thing in `main`** of a
//! `harness = false` test binary, before anything starts a thread:
//!
//! ```text
//! fn main() {
//!     let netns = tests::netns::enter_isolated_loopback();
//!     // ... now start servers, Chromium, the test runner ...
//! }
//! ```
//!
//! A network namespace belongs to a thread, not to a process: `unshare`
//! moves only the calling thread, and threads and child processes started
//! *afterwards* from it inherit the namespace. That is why it must run
//! while the process has one thread (it refuses otherwise), and why it
//! cannot work inside the default libtest harness, which runs each test on
//! a worker thread.
//!
//! Everything spawned afterwards (servers bound to 127.0.0.1, `node`,
//! Chromium) lives in the namespace. Services outside it, such as a
//! PostgreSQL on the host's 127.0.0.1:5432, are **not** reachable from
//! inside: start what the test needs after entering.

use std::ffi::CStr;
use std::io;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Moves the current process into a new network namespace whose only
/// interface is `lo`, brought up.
///
/// Tries `unshare(CLONE_NEWNET)` (root, or `CAP_SYS_ADMIN`); on `EPERM`
/// it tries a new user namespace too (`CLONE_NEWUSER | CLONE_NEWNET`,
/// mapping the caller's uid and gid to root inside), which unprivileged
/// users can do where the kernel allows user namespaces. See the module
/// docs for when to call it.
pub fn enter_isolated_loopback() -> Result<()> {
    let threads = thread_count().context("counting this process's threads")?;
    if threads != 1 {
        bail!(
            "enter_isolated_loopback must run while the process has one thread (it has {threads}): \
             call it first in main of a `harness = false` test"
        );
    }

    // SAFETY: unshare(2) takes flags only and touches no memory of ours.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        let plain = io::Error::last_os_error();
        if plain.raw_os_error() != Some(libc::EPERM) {
            return Err(plain).context("unshare(CLONE_NEWNET)");
        }
        // SAFETY: getuid/getgid cannot fail and take no arguments.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        // SAFETY: as above.
        if unsafe { libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNET) } != 0 {
            let user = io::Error::last_os_error();
            bail!(
                "cannot create a network namespace: unshare(CLONE_NEWNET): {plain}; \
                 unshare(CLONE_NEWUSER|CLONE_NEWNET): {user} (run as root, or allow unprivileged \
                 user namespaces)"
            );
        }
        // An unprivileged process may write gid_map only after denying
        // setgroups; kernels older than 3.19 have no such file.
        match std::fs::write("/proc/self/setgroups", "deny") {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(e).context("writing /proc/self/setgroups");
            }
            _ => {}
        }
        std::fs::write("/proc/self/uid_map", format!("0 {uid} 1"))
            .context("writing /proc/self/uid_map")?;
        std::fs::write("/proc/self/gid_map", format!("0 {gid} 1"))
            .context("writing /proc/self/gid_map")?;
    }

    if let Err(ioctl_err) = loopback_up() {
        // Fall back to iproute2, should the ioctl be refused.
        let status = Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .status()
            .with_context(|| {
                format!("bringing lo up: ioctl failed ({ioctl_err}) and `ip` could not run")
            })?;
        if !status.success() {
            bail!(
                "bringing lo up: ioctl failed ({ioctl_err}) and `ip link set lo up` exited {status}"
            );
        }
    }

    let names = interfaces()?;
    if names != ["lo"] {
        bail!("the new network namespace has interfaces {names:?}, expected only lo");
    }
    Ok(())
}

/// Names of the network interfaces this thread sees (in the namespace,
/// once entered: `["lo"]`).
pub fn interfaces() -> Result<Vec<String>> {
    // SAFETY: if_nameindex returns a heap array terminated by an entry with
    // index 0, or null on error; it is read only up to that entry and freed
    // once with if_freenameindex.
    unsafe {
        let list = libc::if_nameindex();
        if list.is_null() {
            return Err(io::Error::last_os_error()).context("if_nameindex");
        }
        let mut names = Vec::new();
        let mut entry = list;
        while (*entry).if_index != 0 {
            names.push(
                CStr::from_ptr((*entry).if_name)
                    .to_string_lossy()
                    .into_owned(),
            );
            entry = entry.add(1);
        }
        libc::if_freenameindex(list);
        Ok(names)
    }
}

/// Sets IFF_UP on `lo` with SIOCGIFFLAGS/SIOCSIFFLAGS.
fn loopback_up() -> io::Result<()> {
    // SAFETY: a plain socket(2) call; the fd is closed below on every path.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: ifreq is plain old data, valid when zeroed; the name is
    // NUL-terminated within IFNAMSIZ; the ioctls read and write only `req`.
    let result = unsafe {
        let mut req: libc::ifreq = std::mem::zeroed();
        for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as libc::c_char;
        }
        if libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req) < 0 {
            Err(io::Error::last_os_error())
        } else {
            req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
            if libc::ioctl(fd, libc::SIOCSIFFLAGS, &req) < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(())
            }
        }
    };
    // SAFETY: fd is ours and open.
    unsafe { libc::close(fd) };
    result
}

fn thread_count() -> Result<usize> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .context("no Threads: line in /proc/self/status")
}
