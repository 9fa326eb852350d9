//! The kernel's receive time comes with each datagram: when it reached the
//! socket, not when the reader got round to it.
#![cfg(target_os = "linux")]

use std::time::{Duration, SystemTime};

use rtcd_udp::{MediaSocket, RecvBuffers, UdpConfig};

#[test]
fn a_datagram_read_late_carries_the_time_it_arrived() {
    let mut socket =
        MediaSocket::bind(&UdpConfig::new("127.0.0.1:0".parse().unwrap())).expect("bind");
    let to = socket.local_addr();
    let sender = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind sender");
    let before = SystemTime::now();
    sender.send_to(b"late", to).expect("send");
    let after = SystemTime::now();
    // The reader is busy elsewhere for a while.
    std::thread::sleep(Duration::from_millis(50));
    let mut bufs = RecvBuffers::new();
    let mut stamps = Vec::new();
    let n = socket
        .recv_batch(&mut bufs, |d| {
            stamps.push((d.contents.to_vec(), d.received_at))
        })
        .expect("recv_batch");
    let read = SystemTime::now();
    assert_eq!(n, 1);
    let (contents, at) = stamps.pop().expect("one datagram");
    assert_eq!(contents, b"late");
    let at = at.expect("Linux reports SO_TIMESTAMPNS");
    // Loopback delivers within the send call; allow the clock's granularity.
    let slack = Duration::from_millis(1);
    assert!(
        at + slack >= before && at <= after + slack,
        "{at:?} outside the send"
    );
    assert!(read.duration_since(at).unwrap() >= Duration::from_millis(50));
}
