//! Real sockets on loopback, port 0: what goes in comes out, batched or not.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};
use rtcd_udp::{FlushStatus, MediaSocket, RecvBuffers, SendQueue, UdpConfig};

/// Whether a batched flush sends with `sendmmsg`, many bursts per syscall.
const SENDMMSG: bool = cfg!(any(target_os = "linux", target_os = "android"));

/// How long a test waits for datagrams that loopback delivers in
/// microseconds.
const DEADLINE: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Received {
    source: SocketAddr,
    destination: SocketAddr,
    contents: Vec<u8>,
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address literal")
}

fn config(bind: &str, batching: bool) -> UdpConfig {
    let mut config = UdpConfig::new(addr(bind));
    config.batching = batching;
    config
}

fn bind(bind: &str, batching: bool) -> MediaSocket {
    MediaSocket::bind(&config(bind, batching)).expect("bind")
}

fn ipv6_loopback() -> bool {
    std::net::UdpSocket::bind("[::1]:0").is_ok()
}

/// Bytes that differ per datagram and per position, so a misplaced,
/// truncated or merged datagram is caught.
fn payload(index: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| (index * 31 + j * 7) as u8).collect()
}

/// Waits until `expected` datagrams arrived on any of `sockets` (or the
/// deadline passes) and returns them per socket, in arrival order.
fn receive_on(sockets: &mut [MediaSocket], expected: usize) -> Vec<Vec<Received>> {
    let mut poll = Poll::new().expect("poll");
    for (i, socket) in sockets.iter_mut().enumerate() {
        poll.registry()
            .register(socket, Token(i), Interest::READABLE)
            .expect("register");
    }
    let mut bufs = RecvBuffers::new();
    let mut events = Events::with_capacity(16);
    let mut got: Vec<Vec<Received>> = vec![Vec::new(); sockets.len()];
    let deadline = Instant::now() + DEADLINE;
    while got.iter().map(Vec::len).sum::<usize>() < expected {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        poll.poll(&mut events, Some(deadline - now)).expect("poll");
        for event in &events {
            let i = event.token().0;
            let sink = &mut got[i];
            loop {
                let n = sockets[i]
                    .recv_batch(&mut bufs, |d| {
                        sink.push(Received {
                            source: d.source,
                            destination: d.destination,
                            contents: d.contents.to_vec(),
                        });
                    })
                    .expect("recv_batch");
                if n == 0 {
                    break;
                }
            }
        }
    }
    for socket in sockets.iter_mut() {
        poll.registry().deregister(socket).expect("deregister");
    }
    got
}

fn receive(socket: &mut MediaSocket, expected: usize) -> Vec<Received> {
    receive_on(std::slice::from_mut(socket), expected)
        .pop()
        .unwrap_or_default()
}

fn flush_all(socket: &mut MediaSocket, queue: &mut SendQueue) {
    let deadline = Instant::now() + DEADLINE;
    while socket.flush(queue) == FlushStatus::Blocked {
        assert!(Instant::now() < deadline, "send queue never drained");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// 300 datagrams whose sizes mix GSO-able runs (with a shorter tail),
/// singles larger than the GSO cap, tiny and empty datagrams.
const MIXED_SIZES: [usize; 12] = [
    1, 1200, 1200, 1200, 700, 64, 1452, 1452, 3000, 0, 9000, 1200,
];
const MIXED_COUNT: usize = 300;

fn mixed_burst(bind_addr: &str, batching: bool) {
    let mut sender = bind(bind_addr, batching);
    let mut receiver = bind(bind_addr, batching);
    let mut queue = SendQueue::new();
    let sent: Vec<Vec<u8>> = (0..MIXED_COUNT)
        .map(|i| payload(i, MIXED_SIZES[i % MIXED_SIZES.len()]))
        .collect();
    for datagram in &sent {
        assert!(queue.push(receiver.local_addr(), None, datagram));
    }
    flush_all(&mut sender, &mut queue);

    let got = receive(&mut receiver, MIXED_COUNT);
    let contents: Vec<Vec<u8>> = got.iter().map(|r| r.contents.clone()).collect();
    assert_eq!(contents.len(), MIXED_COUNT, "every datagram arrives");
    assert_eq!(contents, sent, "in order and intact");
    for r in &got {
        assert_eq!(r.source, sender.local_addr());
        assert_eq!(r.destination, receiver.local_addr());
    }

    let total_bytes: u64 = sent.iter().map(|d| d.len() as u64).sum();
    let out = sender.counters();
    let inc = receiver.counters();
    assert_eq!(out.datagrams_out, MIXED_COUNT as u64);
    assert_eq!(out.bytes_out, total_bytes);
    assert_eq!(out.send_errors, 0);
    assert_eq!(inc.datagrams_in, MIXED_COUNT as u64);
    assert_eq!(inc.bytes_in, total_bytes);
    if batching {
        assert!(
            inc.recv_syscalls < MIXED_COUNT as u64,
            "batched receive needs fewer syscalls than datagrams: {inc:?}"
        );
        if out.gso_active {
            assert!(out.gso_sends > 0, "{out:?}");
            assert!(out.send_syscalls < MIXED_COUNT as u64, "{out:?}");
        }
    } else {
        assert!(!out.gso_active && !inc.gro_active);
        assert_eq!(out.send_syscalls, MIXED_COUNT as u64);
        assert_eq!(out.gso_sends, 0);
        assert_eq!(inc.recv_coalesced_buffers, 0);
        assert!(
            inc.recv_syscalls > MIXED_COUNT as u64,
            "one per datagram + the empty one"
        );
    }
}

#[test]
fn mixed_burst_ipv4_batched() {
    mixed_burst("127.0.0.1:0", true);
}

#[test]
fn mixed_burst_ipv4_unbatched() {
    mixed_burst("127.0.0.1:0", false);
}

#[test]
fn mixed_burst_ipv6_batched() {
    if ipv6_loopback() {
        mixed_burst("[::1]:0", true);
    }
}

#[test]
fn mixed_burst_ipv6_unbatched() {
    if ipv6_loopback() {
        mixed_burst("[::1]:0", false);
    }
}

/// 100 equal datagrams to one peer: GSO bursts of up to 64 out, separate
/// intact datagrams in, whether the receiver coalesces (GRO) or not.
fn gso_burst(bind_addr: &str, receiver_batching: bool) {
    const COUNT: usize = 100;
    const SIZE: usize = 1200;
    let mut sender = bind(bind_addr, true);
    let mut receiver = bind(bind_addr, receiver_batching);
    let mut queue = SendQueue::new();
    let sent: Vec<Vec<u8>> = (0..COUNT).map(|i| payload(i, SIZE)).collect();
    for datagram in &sent {
        assert!(queue.push(receiver.local_addr(), None, datagram));
    }
    flush_all(&mut sender, &mut queue);

    let out = sender.counters();
    if out.gso_active {
        let bursts = COUNT.div_ceil(sender.max_gso_segments()) as u64;
        assert_eq!(out.gso_sends, bursts, "{out:?}");
        // On Linux one sendmmsg carries every burst; elsewhere one each.
        let syscalls = if SENDMMSG { 1 } else { bursts };
        assert_eq!(out.send_syscalls, syscalls, "{out:?}");
    }

    let got = receive(&mut receiver, COUNT);
    let contents: Vec<Vec<u8>> = got.into_iter().map(|r| r.contents).collect();
    assert_eq!(contents, sent);
    let inc = receiver.counters();
    assert_eq!(inc.datagrams_in, COUNT as u64);
    if receiver_batching && inc.gro_active && out.gso_active {
        // Loopback hands a GSO burst to a GRO socket whole.
        assert!(inc.recv_coalesced_buffers > 0, "{inc:?}");
        assert!(inc.recv_syscalls < COUNT as u64, "{inc:?}");
    }
    if !receiver_batching {
        assert_eq!(inc.recv_coalesced_buffers, 0, "GRO must be off: {inc:?}");
    }
}

#[test]
fn gso_burst_ipv4_to_gro_receiver() {
    gso_burst("127.0.0.1:0", true);
}

#[test]
fn gso_burst_ipv4_to_unbatched_receiver() {
    gso_burst("127.0.0.1:0", false);
}

#[test]
fn gso_burst_ipv6_to_gro_receiver() {
    if ipv6_loopback() {
        gso_burst("[::1]:0", true);
    }
}

#[test]
fn destination_is_reported_on_ipv4_wildcard_and_replies_leave_from_it() {
    for batching in [true, false] {
        let mut receiver = bind("0.0.0.0:0", batching);
        let port = receiver.local_addr().port();
        let mut sender = bind("127.0.0.1:0", batching);
        let mut queue = SendQueue::new();
        queue.push(addr(&format!("127.0.0.1:{port}")), None, b"one");
        queue.push(addr(&format!("127.0.0.2:{port}")), None, b"two");
        flush_all(&mut sender, &mut queue);

        let got = receive(&mut receiver, 2);
        let seen: Vec<_> = got
            .iter()
            .map(|r| (r.destination, r.contents.as_slice()))
            .collect();
        assert_eq!(
            seen,
            vec![
                (addr(&format!("127.0.0.1:{port}")), &b"one"[..]),
                (addr(&format!("127.0.0.2:{port}")), &b"two"[..]),
            ],
            "batching = {batching}"
        );

        // Answer each from the address it was sent to.
        for r in &got {
            assert_eq!(r.source, sender.local_addr());
            queue.push(r.source, Some(r.destination.ip()), &r.contents);
        }
        flush_all(&mut receiver, &mut queue);
        let replies = receive(&mut sender, 2);
        let sources: Vec<_> = replies.iter().map(|r| r.source).collect();
        assert_eq!(
            sources,
            vec![
                addr(&format!("127.0.0.1:{port}")),
                addr(&format!("127.0.0.2:{port}")),
            ]
        );
    }
}

#[test]
fn dual_stack_socket_reports_plain_ipv4_and_ipv6_peers() {
    if !ipv6_loopback() {
        return;
    }
    let mut receiver = bind("[::]:0", true);
    let port = receiver.local_addr().port();
    let mut v4_peer = bind("127.0.0.1:0", true);
    let mut v6_peer = bind("[::1]:0", true);
    let mut queue = SendQueue::new();
    queue.push(addr(&format!("127.0.0.1:{port}")), None, b"v4");
    flush_all(&mut v4_peer, &mut queue);
    queue.push(addr(&format!("[::1]:{port}")), None, b"v6");
    flush_all(&mut v6_peer, &mut queue);

    let got = receive(&mut receiver, 2);
    assert_eq!(
        got,
        vec![
            Received {
                source: v4_peer.local_addr(),
                destination: addr(&format!("127.0.0.1:{port}")),
                contents: b"v4".to_vec(),
            },
            Received {
                source: v6_peer.local_addr(),
                destination: addr(&format!("[::1]:{port}")),
                contents: b"v6".to_vec(),
            },
        ]
    );

    // A plain IPv4 destination works from the dual-stack socket.
    for r in &got {
        queue.push(r.source, Some(r.destination.ip()), b"back");
    }
    flush_all(&mut receiver, &mut queue);
    assert_eq!(receiver.counters().send_errors, 0);
    assert_eq!(receive(&mut v4_peer, 1).len(), 1);
    assert_eq!(receive(&mut v6_peer, 1).len(), 1);
}

#[test]
fn bind_group_shares_one_port() {
    const WORKERS: usize = 3;
    const PEERS: usize = 24;
    let mut group = MediaSocket::bind_group(&config("127.0.0.1:0", true), WORKERS).expect("group");
    assert_eq!(group.len(), WORKERS);
    let shared = group[0].local_addr();
    assert_ne!(shared.port(), 0);
    assert!(group.iter().all(|s| s.local_addr() == shared));

    // Many source ports, so the kernel's hash has flows to spread.
    let mut queue = SendQueue::new();
    for i in 0..PEERS {
        let mut peer = bind("127.0.0.1:0", true);
        queue.push(shared, None, &payload(i, 100));
        flush_all(&mut peer, &mut queue);
    }
    let per_socket = receive_on(&mut group, PEERS);
    let mut all: Vec<Vec<u8>> = per_socket
        .iter()
        .flatten()
        .map(|r| r.contents.clone())
        .collect();
    all.sort();
    let mut expected: Vec<Vec<u8>> = (0..PEERS).map(|i| payload(i, 100)).collect();
    expected.sort();
    assert_eq!(
        all, expected,
        "each datagram reaches exactly one socket of the group"
    );

    // A socket without SO_REUSEADDR / SO_REUSEPORT cannot take the port.
    let mut plain = config(&shared.to_string(), true);
    plain.reuse_address = false;
    let err = MediaSocket::bind(&plain).expect_err("port is taken");
    assert_eq!(err.kind(), io::ErrorKind::AddrInUse);

    let err = MediaSocket::bind_group(&config("127.0.0.1:0", true), 0).expect_err("zero sockets");
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
}

#[test]
fn full_send_queue_drops_and_counts() {
    let mut sender = bind("127.0.0.1:0", true);
    let mut receiver = bind("127.0.0.1:0", true);
    let mut queue = SendQueue::with_limits(8, 64 * 1024);
    let accepted = (0..20)
        .filter(|&i| queue.push(receiver.local_addr(), None, &payload(i, 500)))
        .count();
    assert_eq!(accepted, 8);
    assert_eq!(queue.len(), 8, "the queue does not grow past its limit");
    flush_all(&mut sender, &mut queue);
    let c = sender.counters();
    assert_eq!(c.send_queue_full_drops, 12);
    assert_eq!(c.datagrams_out, 8);
    assert_eq!(receive(&mut receiver, 8).len(), 8);

    // Room again after the flush.
    assert!(queue.push(receiver.local_addr(), None, b"again"));
}

#[test]
fn unsendable_datagrams_are_counted_not_fatal() {
    let mut sender = bind("127.0.0.1:0", true);
    let mut receiver = bind("127.0.0.1:0", true);
    let mut queue = SendQueue::new();
    // An IPv6 peer cannot be reached from an IPv4 socket.
    queue.push(addr("[2001:db8::1]:9"), None, b"nowhere");
    // A source address of the wrong family.
    let v6_source = Some(IpAddr::from(std::net::Ipv6Addr::LOCALHOST));
    queue.push(receiver.local_addr(), v6_source, b"wrong family");
    queue.push(receiver.local_addr(), None, b"fine");
    assert_eq!(sender.flush(&mut queue), FlushStatus::Complete);
    let c = sender.counters();
    assert_eq!(c.send_errors, 2);
    assert_eq!(c.datagrams_out, 1);
    let got = receive(&mut receiver, 1);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].contents, b"fine");
    // The refusals happened before the kernel saw them, so GSO is intact.
    assert_eq!(sender.counters().gso_active, sender.gso_active());
}

#[test]
fn buffers_and_modes_are_reported() {
    let mut config = config("127.0.0.1:0", true);
    config.recv_buffer_size = 1 << 20;
    config.send_buffer_size = 1 << 20;
    let socket = MediaSocket::bind(&config).expect("bind");
    let sizes = socket.buffer_sizes();
    assert_eq!(sizes.recv_requested, 1 << 20);
    assert_eq!(sizes.send_requested, 1 << 20);
    assert!(sizes.recv_granted > 0 && sizes.send_granted > 0);
    assert!(socket.batching());

    let plain = bind("127.0.0.1:0", false);
    assert!(!plain.batching());
    assert!(!plain.gso_active() && !plain.gro_active());
    assert_eq!(plain.max_gso_segments(), 1);
}

/// Many sockets bound to port 0 with the default config each get a port of
/// their own. With `SO_REUSEADDR` the kernel may hand two sockets the same
/// ephemeral port (≈ 18 pairs expected among 1000 sockets), and a peer then
/// sees two endpoints as one address: the load generator's simulated
/// participants failed to join that way.
#[test]
fn port_zero_gives_every_default_socket_its_own_port() {
    const SOCKETS: usize = 1000;
    let mut config = config("127.0.0.1:0", true);
    config.recv_buffer_size = 64 * 1024;
    config.send_buffer_size = 64 * 1024;
    let sockets: Vec<MediaSocket> = (0..SOCKETS)
        .map(|_| MediaSocket::bind(&config).expect("bind"))
        .collect();
    let mut ports: Vec<u16> = sockets.iter().map(|s| s.local_addr().port()).collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(
        ports.len(),
        SOCKETS,
        "{} sockets share a port with another",
        SOCKETS - ports.len()
    );
}

/// A second default socket on a port that is taken fails instead of
/// quietly sharing it.
#[test]
fn a_taken_port_is_refused_by_default() {
    let first = bind("127.0.0.1:0", true);
    let err = MediaSocket::bind(&config(&first.local_addr().to_string(), true))
        .expect_err("the port is taken");
    assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
}

/// Binds `count` batching receivers with small buffers (enough for what the
/// tests send each of them), so hundreds of them stay cheap.
fn bind_peers(count: usize) -> Vec<MediaSocket> {
    let mut config = config("127.0.0.1:0", true);
    config.recv_buffer_size = 256 * 1024;
    config.send_buffer_size = 64 * 1024;
    (0..count)
        .map(|_| MediaSocket::bind(&config).expect("bind"))
        .collect()
}

/// What `sender` sent each peer, checked against what each received:
/// everything, once, in order, sizes intact, from the sender.
fn assert_received(peers: &mut [MediaSocket], sent: &[Vec<Vec<u8>>], sender: SocketAddr) {
    let expected: usize = sent.iter().map(Vec::len).sum();
    let got = receive_on(peers, expected);
    for (i, (got, sent)) in got.iter().zip(sent).enumerate() {
        let contents: Vec<&[u8]> = got.iter().map(|r| r.contents.as_slice()).collect();
        let sent: Vec<&[u8]> = sent.iter().map(Vec::as_slice).collect();
        assert_eq!(contents, sent, "peer {i}");
        assert!(got.iter().all(|r| r.source == sender), "peer {i}");
    }
}

/// A fan-out: every round one datagram to each of 300 peers, so every burst
/// is one datagram to a new destination. sendmmsg carries many per syscall.
#[test]
fn fan_out_to_many_destinations_shares_syscalls() {
    const PEERS: usize = 300;
    const ROUNDS: usize = 4;
    let mut sender = bind("127.0.0.1:0", true);
    let mut peers = bind_peers(PEERS);
    let mut queue = SendQueue::new();
    let mut sent = vec![Vec::new(); PEERS];
    for round in 0..ROUNDS {
        for (i, peer) in peers.iter().enumerate() {
            let datagram = payload(i * ROUNDS + round, 40 + (i * 7 + round * 13) % 1200);
            assert!(queue.push(peer.local_addr(), None, &datagram));
            sent[i].push(datagram);
        }
    }
    flush_all(&mut sender, &mut queue);
    assert_received(&mut peers, &sent, sender.local_addr());

    let datagrams = (PEERS * ROUNDS) as u64;
    let out = sender.counters();
    assert_eq!(out.datagrams_out, datagrams);
    assert_eq!(out.send_errors, 0);
    if SENDMMSG {
        assert!(out.send_syscalls < datagrams / 50, "{out:?}");
    }
}

/// Per peer a GSO-able run (1 to 5 datagrams, some with a shorter tail),
/// then a single of another size, for 100 peers, twice over.
#[test]
fn gso_bursts_and_singles_to_many_peers_arrive_whole() {
    const PEERS: usize = 100;
    let mut sender = bind("127.0.0.1:0", true);
    let mut peers = bind_peers(PEERS);
    let mut queue = SendQueue::new();
    let mut sent = vec![Vec::new(); PEERS];
    let mut index = 0;
    let mut bursts = 0u64;
    for _round in 0..2 {
        for (i, peer) in peers.iter().enumerate() {
            let run = i % 5 + 1;
            let size = 200 + i * 10;
            for j in 0..run {
                let len = if j + 1 == run && i % 2 == 0 {
                    size / 2
                } else {
                    size
                };
                sent[i].push(payload(index, len));
                index += 1;
            }
            sent[i].push(payload(index, size + 1));
            index += 1;
            bursts += 2;
            let to = peer.local_addr();
            for datagram in &sent[i][sent[i].len() - run - 1..] {
                assert!(queue.push(to, None, datagram));
            }
        }
    }
    flush_all(&mut sender, &mut queue);
    assert_received(&mut peers, &sent, sender.local_addr());

    let out = sender.counters();
    assert_eq!(out.datagrams_out, index as u64);
    assert_eq!(out.send_errors, 0);
    if out.gso_active {
        assert!(out.gso_sends > 0, "{out:?}");
    }
    if SENDMMSG {
        assert!(out.send_syscalls * 50 < bursts, "{out:?}");
    }
}

/// Within one chunk: an IPv6 peer and port 0 (refused before the kernel)
/// and a datagram too large for UDP (refused by the kernel) are dropped and
/// counted; every other peer still gets its datagram.
#[test]
fn a_destination_that_errors_is_dropped_while_the_rest_arrive() {
    const PEERS: usize = 50;
    let mut sender = bind("127.0.0.1:0", true);
    let mut peers = bind_peers(PEERS);
    let gso_before = sender.gso_active();
    let mut queue = SendQueue::new();
    let mut sent = vec![Vec::new(); PEERS];
    for (i, peer) in peers.iter().enumerate() {
        match i {
            10 => assert!(queue.push(addr("[2001:db8::1]:9"), None, b"v6")),
            20 => assert!(queue.push(addr("127.0.0.1:0"), None, b"port 0")),
            30 => assert!(queue.push(peer.local_addr(), None, &[0; 70_000])),
            _ => {}
        }
        let datagram = payload(i, 300);
        assert!(queue.push(peer.local_addr(), None, &datagram));
        sent[i].push(datagram);
    }
    assert_eq!(sender.flush(&mut queue), FlushStatus::Complete);
    assert_received(&mut peers, &sent, sender.local_addr());

    let out = sender.counters();
    assert_eq!(out.send_errors, 3, "{out:?}");
    assert_eq!(out.datagrams_out, PEERS as u64);
    if SENDMMSG {
        // Up to the too-large datagram, the one that fails, the rest.
        assert_eq!(out.send_syscalls, 3, "{out:?}");
    }
    assert_eq!(
        sender.gso_active(),
        gso_before,
        "no error here means no GSO"
    );
}
