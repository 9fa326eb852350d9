//! The memory one `sendmmsg` call reads: per message an address, an iovec
//! over the queue's bytes (no copy) and a control buffer.

use std::io;
use std::mem;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::os::fd::RawFd;

use super::SEND_BATCH;

/// One burst as the kernel gets it.
pub(super) struct Message<'a> {
    pub(super) destination: SocketAddr,
    pub(super) src_ip: Option<IpAddr>,
    pub(super) contents: &'a [u8],
    /// Set for a GSO burst (more than one datagram).
    pub(super) segment_size: Option<usize>,
}

/// Room for `UDP_SEGMENT` plus the larger of the two pktinfo structs.
// SAFETY: CMSG_SPACE is arithmetic on its argument.
const CONTROL_LEN: usize = unsafe {
    libc::CMSG_SPACE(size_of::<u16>() as u32)
        + libc::CMSG_SPACE(size_of::<libc::in6_pktinfo>() as u32)
} as usize;

/// Aligned for `cmsghdr`, which every control message starts with.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
struct Control([u8; CONTROL_LEN]);

#[derive(Clone, Copy)]
#[repr(C)]
union SockAddr {
    v4: libc::sockaddr_in,
    v6: libc::sockaddr_in6,
}

// SAFETY: all-zero bytes are valid for these C structs (integers, and
// pointers that are null until `send` sets them).
const EMPTY_HDR: libc::mmsghdr = unsafe { mem::zeroed() };
// SAFETY: as above; a zeroed `sockaddr_in6` is a valid union value.
const EMPTY_ADDR: SockAddr = unsafe { mem::zeroed() };
const EMPTY_IOV: libc::iovec = libc::iovec {
    iov_base: std::ptr::null_mut(),
    iov_len: 0,
};

/// Up to [`SEND_BATCH`] messages, filled with [`push`](Self::push) and sent
/// from any message on with [`send`](Self::send).
pub(super) struct Batch<'a> {
    len: usize,
    contents: [&'a [u8]; SEND_BATCH],
    destinations: [SocketAddr; SEND_BATCH],
    datagrams: [usize; SEND_BATCH],
    addrs: [SockAddr; SEND_BATCH],
    addr_lens: [libc::socklen_t; SEND_BATCH],
    controls: [Control; SEND_BATCH],
    control_lens: [usize; SEND_BATCH],
}

impl<'a> Batch<'a> {
    pub(super) fn new() -> Self {
        Self {
            len: 0,
            contents: [&[]; SEND_BATCH],
            destinations: [SocketAddr::from(([0, 0, 0, 0], 0)); SEND_BATCH],
            datagrams: [0; SEND_BATCH],
            addrs: [EMPTY_ADDR; SEND_BATCH],
            addr_lens: [0; SEND_BATCH],
            controls: [Control([0; CONTROL_LEN]); SEND_BATCH],
            control_lens: [0; SEND_BATCH],
        }
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Adds a message. Panics past [`SEND_BATCH`]; the caller's chunks are
    /// never longer.
    pub(super) fn push(&mut self, message: Message<'a>) {
        let n = self.len;
        assert!(n < SEND_BATCH, "a chunk holds at most SEND_BATCH bursts");
        self.contents[n] = message.contents;
        self.destinations[n] = message.destination;
        (self.addrs[n], self.addr_lens[n]) = sockaddr(message.destination);
        let control = &mut self.controls[n];
        let mut used = 0;
        self.datagrams[n] = match message.segment_size {
            Some(size) if size > 0 => {
                // A burst is at most GSO_MAX_BURST_BYTES (< 2^16) and holds
                // two datagrams or more, so its segment size fits.
                encode(
                    control,
                    &mut used,
                    libc::SOL_UDP,
                    libc::UDP_SEGMENT,
                    size as u16,
                );
                message.contents.len().div_ceil(size)
            }
            _ => 1,
        };
        match message.src_ip {
            Some(IpAddr::V4(ip)) => {
                let info = libc::in_pktinfo {
                    ipi_ifindex: 0,
                    ipi_spec_dst: libc::in_addr {
                        s_addr: u32::from_ne_bytes(ip.octets()),
                    },
                    ipi_addr: libc::in_addr { s_addr: 0 },
                };
                encode(control, &mut used, libc::IPPROTO_IP, libc::IP_PKTINFO, info);
            }
            Some(IpAddr::V6(ip)) => {
                let info = libc::in6_pktinfo {
                    ipi6_addr: libc::in6_addr {
                        s6_addr: ip.octets(),
                    },
                    ipi6_ifindex: 0,
                };
                encode(
                    control,
                    &mut used,
                    libc::IPPROTO_IPV6,
                    libc::IPV6_PKTINFO,
                    info,
                );
            }
            None => {}
        }
        self.control_lens[n] = used;
        self.len += 1;
    }

    /// Datagrams in message `n` (more than one for a GSO burst).
    pub(super) fn datagrams(&self, n: usize) -> usize {
        self.datagrams[n]
    }

    pub(super) fn bytes(&self, n: usize) -> usize {
        self.contents[n].len()
    }

    pub(super) fn destination(&self, n: usize) -> SocketAddr {
        self.destinations[n]
    }

    /// One `sendmmsg` of `messages`: how many the kernel took, or the error
    /// of the first if it took none.
    pub(super) fn send(&mut self, fd: RawFd, messages: Range<usize>) -> io::Result<usize> {
        assert!(messages.end <= self.len, "only messages pushed");
        let start = messages.start;
        let count = messages.len();
        let mut iovs = [EMPTY_IOV; SEND_BATCH];
        let mut hdrs = [EMPTY_HDR; SEND_BATCH];
        for (i, contents) in self.contents[messages].iter().enumerate() {
            // The kernel only reads through it; the type is shared with
            // receiving, hence `*mut`.
            iovs[i].iov_base = contents.as_ptr().cast_mut().cast();
            iovs[i].iov_len = contents.len();
        }
        let iov = iovs.as_mut_ptr();
        for (i, hdr) in hdrs[..count].iter_mut().enumerate() {
            let m = start + i;
            let hdr = &mut hdr.msg_hdr;
            hdr.msg_name = (&raw mut self.addrs[m]).cast();
            hdr.msg_namelen = self.addr_lens[m];
            hdr.msg_iov = iov.wrapping_add(i);
            hdr.msg_iovlen = 1;
            if self.control_lens[m] > 0 {
                hdr.msg_control = (&raw mut self.controls[m]).cast();
                hdr.msg_controllen = self.control_lens[m] as _;
            }
        }
        // SAFETY: `hdrs[..count]` point only at `iovs`, `self.addrs` and
        // `self.controls`, which outlive the call and are not touched during
        // it, and at the queue's bytes through `self.contents` (borrowed for
        // 'a); lengths match what each points at. `count <= SEND_BATCH`.
        let sent = unsafe { libc::sendmmsg(fd, hdrs.as_mut_ptr(), count as libc::c_uint, 0) };
        if sent < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(sent as usize)
        }
    }
}

fn sockaddr(addr: SocketAddr) -> (SockAddr, libc::socklen_t) {
    match addr {
        SocketAddr::V4(v4) => {
            // SAFETY: all-zero is a valid `sockaddr_in` (it has padding
            // fields that must stay zero).
            let mut sin: libc::sockaddr_in = unsafe { mem::zeroed() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = v4.port().to_be();
            sin.sin_addr = libc::in_addr {
                s_addr: u32::from_ne_bytes(v4.ip().octets()),
            };
            (
                SockAddr { v4: sin },
                size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        }
        SocketAddr::V6(v6) => {
            // SAFETY: as above.
            let mut sin6: libc::sockaddr_in6 = unsafe { mem::zeroed() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = v6.port().to_be();
            // Passed through as std does.
            sin6.sin6_flowinfo = v6.flowinfo();
            sin6.sin6_addr = libc::in6_addr {
                s6_addr: v6.ip().octets(),
            };
            sin6.sin6_scope_id = v6.scope_id();
            (
                SockAddr { v6: sin6 },
                size_of::<libc::sockaddr_in6>() as libc::socklen_t,
            )
        }
    }
}

/// Appends one control message at `*used`.
fn encode<T: Copy>(
    control: &mut Control,
    used: &mut usize,
    level: libc::c_int,
    kind: libc::c_int,
    value: T,
) {
    // SAFETY: CMSG_SPACE and CMSG_LEN are arithmetic on their argument.
    let (space, len) = unsafe {
        (
            libc::CMSG_SPACE(size_of::<T>() as u32) as usize,
            libc::CMSG_LEN(size_of::<T>() as u32) as usize,
        )
    };
    assert!(
        *used + space <= CONTROL_LEN,
        "control buffer sized for both"
    );
    // SAFETY: all-zero is a valid `cmsghdr` (some libcs add padding fields).
    let mut header: libc::cmsghdr = unsafe { mem::zeroed() };
    header.cmsg_len = len as _;
    header.cmsg_level = level;
    header.cmsg_type = kind;
    let at = control
        .0
        .as_mut_ptr()
        .wrapping_add(*used)
        .cast::<libc::cmsghdr>();
    // SAFETY: `at` is inside `control` with `space` bytes after it (checked
    // above) and aligned for `cmsghdr`: the buffer is 8-aligned and `used`
    // is a sum of CMSG_SPACE values, which keep that alignment. CMSG_DATA
    // points past the header, still inside those `space` bytes; the value
    // may be less aligned there, hence write_unaligned.
    unsafe {
        at.write(header);
        libc::CMSG_DATA(at).cast::<T>().write_unaligned(value);
    }
    *used += space;
}
