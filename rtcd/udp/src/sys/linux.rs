//! Linux and Android: `SO_REUSEPORT` load balancing, `UDP_GRO` switch,
//! `SO_RCVBUFFORCE` / `SO_SNDBUFFORCE`.

use std::io;
use std::os::fd::{AsFd, AsRawFd};

use socket2::Socket;

/// Lets several sockets bind the same address and port; the kernel spreads
/// incoming flows across them by a hash of the 4-tuple.
pub(crate) fn set_reuse_port(socket: &Socket) -> io::Result<()> {
    socket.set_reuse_port(true)
}

/// Turns kernel receive coalescing (`UDP_GRO`) on or off.
///
/// quinn-udp switches it on for every socket it sets up; the unbatched mode
/// turns it off again so that one receive call yields exactly one datagram.
pub(crate) fn set_gro(socket: &impl AsFd, on: bool) -> io::Result<()> {
    set_int_option(socket, libc::SOL_UDP, libc::UDP_GRO, libc::c_int::from(on))
}

/// Sets `SO_RCVBUF` past `net.core.rmem_max`; needs `CAP_NET_ADMIN`.
pub(crate) fn force_recv_buffer_size(socket: &impl AsFd, bytes: usize) -> io::Result<()> {
    set_int_option(socket, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, clamp(bytes))
}

/// Sets `SO_SNDBUF` past `net.core.wmem_max`; needs `CAP_NET_ADMIN`.
pub(crate) fn force_send_buffer_size(socket: &impl AsFd, bytes: usize) -> io::Result<()> {
    set_int_option(socket, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, clamp(bytes))
}

fn clamp(bytes: usize) -> libc::c_int {
    libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX)
}

fn set_int_option(
    socket: &impl AsFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    let fd = socket.as_fd();
    // SAFETY: `fd` is a live descriptor borrowed for the duration of the call;
    // `value` is a `c_int` on our stack and the length passed is exactly its
    // size, which is what every option set here expects.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&raw const value).cast::<libc::c_void>(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
