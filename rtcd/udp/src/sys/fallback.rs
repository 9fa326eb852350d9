//! Other platforms: no reuse-port load balancing, no GRO, no forced buffer
//! sizes. quinn-udp still gives batched receive where the OS has it.

use std::io;

use socket2::Socket;

/// `SO_REUSEPORT` spreads flows across sockets only on Linux; elsewhere it
/// either does not exist or hands every datagram to one socket, which would
/// silently starve the other workers.
pub(crate) fn set_reuse_port(_socket: &Socket) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "SO_REUSEPORT load balancing is only available on Linux",
    ))
}

/// quinn-udp enables GRO only on Linux, so there is nothing to switch.
pub(crate) fn set_gro<S>(_socket: &S, _on: bool) -> io::Result<()> {
    Ok(())
}

pub(crate) fn force_recv_buffer_size<S>(_socket: &S, _bytes: usize) -> io::Result<()> {
    Err(io::ErrorKind::Unsupported.into())
}

pub(crate) fn force_send_buffer_size<S>(_socket: &S, _bytes: usize) -> io::Result<()> {
    Err(io::ErrorKind::Unsupported.into())
}
