//! Shared helpers for rtcd's integration tests over real loopback sockets.
//!
//! - [`config`]/[`start`]: an in-process rtcd on 127.0.0.1 with ephemeral
//!   ports; [`Proc`]: the real binary, for signals and exit codes.
//! - [`Client`]: a str0m peer (RTP mode) on its own UDP socket or ICE-TCP
//!   stream, pumped by a thread, so a test only says what to send and
//!   looks at what arrived.
//! - [`Control`]: the control API as control speaks it, answering rtcd's
//!   renegotiation offers on behalf of the clients attached to it.
//! - [`http`] and [`metrics`]: a tiny HTTP/1.1 client and a parser of the
//!   Prometheus text format.
//!
//! Set `RTCD_TEST_LOG=rtcd=debug` (a tracing filter) to see rtcd's logs.
#![allow(dead_code, clippy::disallowed_methods)]

use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures_util::{SinkExt as _, StreamExt as _};
use rtcd::{Config, Rtcd};
use signaling::media::{Permissions, Sdp, TrackDeclaration, TrackSource};
use signaling::rtcd::{ErrorCode, FromRtcd, NodeLoad, RtcdError, ToRtcd};
use signaling::{CallId, SessionId};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid};
use str0m::net::{Protocol, Receive, TcpType};
use str0m::rtp::{ExtensionValues, RtpWrite};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

/// 40 characters each, as the brief for test nodes asks.
pub const API_KEY: &str = "0123456789abcdef0123456789abcdef-apikey!";
pub const TOKEN_SECRET: &str = "fedcba9876543210fedcba9876543210-tokens!";

/// First RTP sequence numbers of the test publisher's streams.
pub const AUDIO_SEQ0: u64 = 1_000;
pub const VIDEO_SEQ0: u64 = 20_000;

pub fn init_logs() {
    if let Ok(filter) = std::env::var("RTCD_TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
}

/// An rtcd on loopback with ephemeral ports, `workers` worker threads.
pub fn config(workers: usize) -> Config {
    assert_eq!(API_KEY.len(), 40);
    assert_eq!(TOKEN_SECRET.len(), 40);
    let mut c = Config {
        node_id: "rtcd-test".into(),
        ..Config::default()
    };
    c.rtc.bind_ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    c.rtc.port = 0;
    c.rtc.allow_loopback = true;
    c.rtc.workers = workers;
    c.api.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    c.api.keys = vec![API_KEY.into()];
    c.api.token_secret = TOKEN_SECRET.into();
    c.validate().expect("the test configuration is valid");
    c
}

pub async fn start(config: Config) -> Rtcd {
    init_logs();
    Rtcd::start(config).await.expect("rtcd starts")
}

pub fn call_id(s: &str) -> CallId {
    CallId::new(s).expect("valid call id")
}

pub fn session_id(s: &str) -> SessionId {
    SessionId::new(s).expect("valid session id")
}

/// Polls `f` every 10 ms until it returns `Some`, or `timeout` passes.
pub async fn eventually<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let until = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= until {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ------------------------------------------------------------------ payloads

fn filler(seed: u32, len: usize) -> impl Iterator<Item = u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9) | 1;
    (0..len).map(move |_| {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x as u8
    })
}

/// An Opus-sized (120 bytes) audio payload carrying counter `n`.
pub fn audio_payload(n: u32) -> Vec<u8> {
    let mut p = vec![0xfc];
    p.extend_from_slice(&n.to_be_bytes());
    p.extend(filler(n, 115));
    p
}

/// A VP8-like 1000-byte payload carrying counter `n`: descriptor with
/// S=1, then a payload header whose P bit marks a keyframe every 50 frames.
pub fn video_payload(n: u32) -> Vec<u8> {
    let key = n.is_multiple_of(50);
    let mut p = vec![0x10, if key { 0x00 } else { 0x01 }, 0xAA];
    p.extend_from_slice(&n.to_be_bytes());
    p.extend(filler(n ^ 0x5555_5555, 993));
    p
}

fn payload_counter(kind: MediaKind, p: &[u8]) -> Option<u32> {
    let at = if kind == MediaKind::Audio { 1 } else { 3 };
    Some(u32::from_be_bytes(p.get(at..at + 4)?.try_into().ok()?))
}

fn expected_payload(kind: MediaKind, n: u32) -> Vec<u8> {
    if kind == MediaKind::Audio {
        audio_payload(n)
    } else {
        video_payload(n)
    }
}

// ------------------------------------------------------------------ client

/// One RTP packet a client received.
#[derive(Debug, Clone)]
pub struct Received {
    pub kind: MediaKind,
    pub ssrc: u32,
    pub seq: u64,
    pub payload: Vec<u8>,
    pub at: Instant,
}

pub struct ClientState {
    pub rtc: Rtc,
    pub connected: bool,
    pub received: Vec<Received>,
    /// m-lines str0m reported as added (by our offer or rtcd's).
    pub media_added: Vec<(Mid, MediaKind, Direction)>,
    pub send_mids: Vec<(MediaKind, Mid)>,
    pub keyframe_requests: usize,
    /// rtcd's ICE ufrag, from the last answer or offer it sent.
    pub remote_ufrag: Option<String>,
    pub error: Option<String>,
    /// The ICE-TCP stream reached its end.
    pub eof: bool,
    /// RFC 4571 frames received over ICE-TCP.
    pub tcp_frames: usize,
    pending: Option<SdpPendingOffer>,
}

impl ClientState {
    fn on_event(&mut self, e: Event) {
        match e {
            Event::Connected => self.connected = true,
            Event::MediaAdded(m) => self.media_added.push((m.mid, m.kind, m.direction)),
            Event::KeyframeRequest(_) => self.keyframe_requests += 1,
            Event::RtpPacket(p) => {
                let pt = p.header.payload_type;
                let audio = self
                    .rtc
                    .codec_config()
                    .find(|c| c.pt() == pt)
                    .is_some_and(|c| c.spec().codec.is_audio());
                self.received.push(Received {
                    kind: if audio {
                        MediaKind::Audio
                    } else {
                        MediaKind::Video
                    },
                    ssrc: *p.header.ssrc,
                    seq: *p.seq_no,
                    payload: p.payload.to_vec(),
                    at: p.timestamp,
                });
            }
            _ => {}
        }
    }
}

enum Link {
    Udp(UdpSocket),
    Tcp(Mutex<TcpStream>),
}

pub struct Shared {
    name: String,
    local: SocketAddr,
    link: Link,
    state: Mutex<ClientState>,
    stop: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, ClientState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn transmit(&self, proto: Protocol, destination: SocketAddr, contents: &[u8]) {
        match (&self.link, proto) {
            (Link::Udp(s), Protocol::Udp) => {
                let _ = s.send_to(contents, destination);
            }
            (Link::Tcp(s), Protocol::Tcp) => {
                let mut frame = Vec::with_capacity(contents.len() + 2);
                frame.extend_from_slice(&(contents.len() as u16).to_be_bytes());
                frame.extend_from_slice(contents);
                let mut s = s.lock().unwrap_or_else(|p| p.into_inner());
                let _ = s.write_all(&frame);
            }
            _ => {}
        }
    }

    /// Polls str0m until it has nothing more to say; returns its deadline.
    fn drain(&self, st: &mut ClientState) -> Instant {
        loop {
            match st.rtc.poll_output() {
                Ok(Output::Timeout(t)) => return t,
                Ok(Output::Transmit(t)) => self.transmit(t.proto, t.destination, &t.contents),
                Ok(Output::Event(e)) => st.on_event(e),
                Err(e) => {
                    st.error.get_or_insert_with(|| e.to_string());
                    return Instant::now() + Duration::from_millis(20);
                }
            }
        }
    }

    fn receive(&self, proto: Protocol, source: SocketAddr, bytes: &[u8]) {
        let Ok(contents) = bytes.try_into() else {
            return;
        };
        let mut st = self.lock();
        if proto == Protocol::Tcp {
            st.tcp_frames += 1;
        }
        let now = Instant::now();
        let input = Input::Receive(
            now,
            Receive {
                proto,
                source,
                destination: self.local,
                contents,
            },
        );
        if let Err(e) = st.rtc.handle_input(input) {
            st.error.get_or_insert_with(|| e.to_string());
        }
        self.drain(&mut st);
    }

    fn tick(&self) -> Instant {
        let mut st = self.lock();
        let now = Instant::now();
        if let Err(e) = st.rtc.handle_input(Input::Timeout(now)) {
            st.error.get_or_insert_with(|| e.to_string());
        }
        self.drain(&mut st)
    }
}

/// The socket side of the pump thread.
enum Reader {
    Udp(UdpSocket),
    Tcp {
        stream: TcpStream,
        peer: SocketAddr,
        acc: Vec<u8>,
        eof: bool,
    },
}

fn pump(shared: Arc<Shared>, mut reader: Reader) {
    let mut buf = vec![0u8; 65_536];
    while !shared.stop.load(Ordering::Relaxed) {
        let deadline = shared.tick();
        let wait = deadline
            .saturating_duration_since(Instant::now())
            .clamp(Duration::from_millis(1), Duration::from_millis(5));
        match &mut reader {
            Reader::Udp(s) => {
                let _ = s.set_read_timeout(Some(wait));
                if let Ok((n, from)) = s.recv_from(&mut buf) {
                    shared.receive(Protocol::Udp, from, &buf[..n]);
                }
            }
            Reader::Tcp {
                stream,
                peer,
                acc,
                eof,
            } => {
                if *eof {
                    std::thread::sleep(wait);
                    continue;
                }
                let _ = stream.set_read_timeout(Some(wait));
                match stream.read(&mut buf) {
                    Ok(0) => {
                        *eof = true;
                        shared.lock().eof = true;
                    }
                    Ok(n) => acc.extend_from_slice(&buf[..n]),
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(_) => {
                        *eof = true;
                        shared.lock().eof = true;
                    }
                }
                // RFC 4571 framing: a 16-bit length, then the datagram.
                while acc.len() >= 2 {
                    let n = u16::from_be_bytes([acc[0], acc[1]]) as usize;
                    if acc.len() < 2 + n {
                        break;
                    }
                    let frame: Vec<u8> = acc.drain(..2 + n).skip(2).collect();
                    shared.receive(Protocol::Tcp, *peer, &frame);
                }
            }
        }
    }
}

/// A str0m peer in RTP mode on a real loopback socket.
pub struct Client {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// What a client sends: kind and, optionally, the source it declares.
pub type SendSpec = (MediaKind, Option<TrackSource>);

impl Client {
    /// A client on its own UDP socket on 127.0.0.1.
    pub fn udp(name: &str) -> Client {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("binding a client socket");
        Self::udp_on(name, socket)
    }

    /// A client on a given UDP socket (see [`socket_landing_on`]).
    pub fn udp_on(name: &str, socket: UdpSocket) -> Client {
        let local = socket.local_addr().expect("local address");
        let mut rtc = Rtc::builder().set_rtp_mode(true).build(Instant::now());
        rtc.add_local_candidate(Candidate::host(local, "udp").expect("host candidate"));
        let reader = Reader::Udp(socket.try_clone().expect("cloning the socket"));
        Self::spawn(name, local, Link::Udp(socket), reader, rtc)
    }

    /// A client that reaches rtcd only over ICE-TCP: one active TCP
    /// candidate, the stream already connected to rtcd's media port.
    pub fn tcp(name: &str, rtcd_media: SocketAddr) -> Client {
        let stream = TcpStream::connect(rtcd_media).expect("connecting ICE-TCP");
        stream.set_nodelay(true).expect("nodelay");
        let local = stream.local_addr().expect("local address");
        let mut rtc = Rtc::builder().set_rtp_mode(true).build(Instant::now());
        let candidate = Candidate::builder()
            .tcp()
            .host(local)
            .tcptype(TcpType::Active)
            .build()
            .expect("tcp candidate");
        rtc.add_local_candidate(candidate);
        let reader = Reader::Tcp {
            stream: stream.try_clone().expect("cloning the stream"),
            peer: rtcd_media,
            acc: Vec::new(),
            eof: false,
        };
        Self::spawn(name, local, Link::Tcp(Mutex::new(stream)), reader, rtc)
    }

    fn spawn(name: &str, local: SocketAddr, link: Link, reader: Reader, rtc: Rtc) -> Client {
        let shared = Arc::new(Shared {
            name: name.into(),
            local,
            link,
            state: Mutex::new(ClientState {
                rtc,
                connected: false,
                received: Vec::new(),
                media_added: Vec::new(),
                send_mids: Vec::new(),
                keyframe_requests: 0,
                remote_ufrag: None,
                error: None,
                eof: false,
                tcp_frames: 0,
                pending: None,
            }),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("client-{name}"))
            .spawn(move || pump(s, reader))
            .expect("spawning a client thread");
        Client {
            shared,
            thread: Some(thread),
        }
    }

    pub fn name(&self) -> &str {
        &self.shared.name
    }

    pub fn session_id(&self) -> SessionId {
        session_id(&self.shared.name)
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local
    }

    pub fn handle(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Locks the client's state (the pump thread waits meanwhile).
    pub fn state(&self) -> MutexGuard<'_, ClientState> {
        self.shared.lock()
    }

    pub fn connected(&self) -> bool {
        self.state().connected
    }

    pub fn error(&self) -> Option<String> {
        self.state().error.clone()
    }

    /// Makes an offer: `send` m-lines (sendonly), `recv` m-lines
    /// (recvonly), and a data channel if asked. Returns the SDP and what
    /// each sending m-line carries.
    pub fn offer(
        &self,
        send: &[SendSpec],
        recv: &[MediaKind],
        channel: bool,
    ) -> (String, Vec<TrackDeclaration>) {
        let mut st = self.state();
        let mut api = st.rtc.sdp_api();
        let mut mids = Vec::new();
        let mut tracks = Vec::new();
        for (kind, source) in send {
            let mid = api.add_media(*kind, Direction::SendOnly, None, None, None);
            mids.push((*kind, mid));
            if let Some(source) = source {
                tracks.push(TrackDeclaration {
                    mid: mid.to_string(),
                    source: *source,
                });
            }
        }
        for kind in recv {
            api.add_media(*kind, Direction::RecvOnly, None, None, None);
        }
        if channel {
            api.add_channel("enclave".into());
        }
        let (offer, pending) = api.apply().expect("the offer has changes");
        st.send_mids.extend(mids);
        st.pending = Some(pending);
        (offer.to_sdp_string(), tracks)
    }

    pub fn accept_answer(&self, sdp: &str) -> Result<(), String> {
        self.shared.accept_answer(sdp)
    }

    pub fn accept_offer(&self, sdp: &str) -> Result<String, String> {
        self.shared.accept_offer(sdp)
    }

    /// Sends media counter `n` of `kind` on this client's first sending
    /// m-line of that kind. False while that stream does not exist yet.
    pub fn send_media(&self, kind: MediaKind, n: u32) -> bool {
        self.shared.send_media(kind, n)
    }

    /// Sends one packet on each of its sending m-lines that reaches no
    /// subscriber but makes rtcd offer the track ([`Shared::prime`]).
    pub async fn prime(&self) -> anyhow::Result<()> {
        let kinds: Vec<MediaKind> = self.state().send_mids.iter().map(|(k, _)| *k).collect();
        for kind in kinds {
            let sent = eventually(Duration::from_secs(5), || {
                self.shared.prime(kind).then_some(())
            })
            .await;
            if sent.is_none() {
                bail!("{} has no {kind:?} stream to send on", self.name());
            }
        }
        Ok(())
    }

    /// Sends raw bytes from this client's socket (UDP only).
    pub fn send_raw(&self, destination: SocketAddr, bytes: &[u8]) {
        if let Link::Udp(s) = &self.shared.link {
            let _ = s.send_to(bytes, destination);
        }
    }

    pub fn received(&self, kind: MediaKind) -> Vec<Received> {
        self.state()
            .received
            .iter()
            .filter(|r| r.kind == kind)
            .cloned()
            .collect()
    }

    pub fn count(&self, kind: MediaKind) -> usize {
        self.state()
            .received
            .iter()
            .filter(|r| r.kind == kind)
            .count()
    }

    /// Kinds of the m-lines rtcd (or our own offer) added that we receive on.
    pub fn receiving_kinds(&self) -> Vec<MediaKind> {
        self.state()
            .media_added
            .iter()
            .filter(|(_, _, d)| d.is_receiving())
            .map(|(_, k, _)| *k)
            .collect()
    }

    /// Waits until the client is connected (ICE and DTLS up).
    pub async fn wait_connected(&self, timeout: Duration) -> anyhow::Result<()> {
        let ok = eventually(timeout, || self.connected().then_some(())).await;
        match (ok, self.error()) {
            (_, Some(e)) => bail!("client {} failed: {e}", self.name()),
            (None, None) => bail!("client {} did not connect in {timeout:?}", self.name()),
            (Some(()), None) => Ok(()),
        }
    }

    /// Waits until `n` packets of `kind` more than `from` have arrived.
    pub async fn wait_received(&self, kind: MediaKind, at_least: usize, timeout: Duration) -> bool {
        eventually(timeout, || (self.count(kind) >= at_least).then_some(()))
            .await
            .is_some()
    }
}

impl Shared {
    fn accept_answer(&self, sdp: &str) -> Result<(), String> {
        let answer = SdpAnswer::from_sdp_string(sdp).map_err(|e| e.to_string())?;
        let mut st = self.lock();
        let pending = st.pending.take().ok_or("no offer is pending")?;
        st.rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .map_err(|e| e.to_string())?;
        st.remote_ufrag = ice_ufrag(sdp);
        self.drain(&mut st);
        Ok(())
    }

    fn accept_offer(&self, sdp: &str) -> Result<String, String> {
        let offer = SdpOffer::from_sdp_string(sdp).map_err(|e| e.to_string())?;
        let mut st = self.lock();
        let answer = st
            .rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| e.to_string())?;
        st.remote_ufrag = ice_ufrag(sdp);
        self.drain(&mut st);
        Ok(answer.to_sdp_string())
    }

    fn send_media(&self, kind: MediaKind, n: u32) -> bool {
        let (seq, ts, payload) = if kind == MediaKind::Audio {
            (AUDIO_SEQ0 + n as u64, 960 * n, audio_payload(n))
        } else {
            (VIDEO_SEQ0 + n as u64, 3600 * n, video_payload(n))
        };
        self.send_rtp(kind, seq, ts, payload)
    }

    /// One packet just before counter 0: rtcd offers a track once media
    /// arrives on it, and this one reaches no subscriber.
    fn prime(&self, kind: MediaKind) -> bool {
        let (seq, payload) = if kind == MediaKind::Audio {
            (AUDIO_SEQ0 - 1, audio_payload(0))
        } else {
            (VIDEO_SEQ0 - 1, video_payload(0))
        };
        self.send_rtp(kind, seq, 0, payload)
    }

    fn send_rtp(&self, kind: MediaKind, seq: u64, ts: u32, payload: Vec<u8>) -> bool {
        let mut st = self.lock();
        let now = Instant::now();
        let Some(mid) = st
            .send_mids
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, m)| *m)
        else {
            return false;
        };
        let audio = kind == MediaKind::Audio;
        let codec = if audio { Codec::Opus } else { Codec::Vp8 };
        let Some(pt) = st
            .rtc
            .codec_config()
            .find(|p| p.spec().codec == codec)
            .map(|p| p.pt())
        else {
            return false;
        };
        let ext = ExtensionValues {
            audio_level: audio.then_some(-30),
            voice_activity: audio.then_some(true),
            ..Default::default()
        };
        {
            let mut api = st.rtc.direct_api();
            let Some(tx) = api.stream_tx_by_mid(mid, None) else {
                return false;
            };
            tx.write_rtp(
                RtpWrite::new(pt, seq.into(), ts, now, payload)
                    .marker(true)
                    .ext_vals(ext)
                    .nackable(!audio),
            );
        }
        if let Err(e) = st.rtc.handle_input(Input::Timeout(now)) {
            st.error.get_or_insert_with(|| e.to_string());
        }
        self.drain(&mut st);
        true
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The `a=ice-ufrag:` of an SDP.
pub fn ice_ufrag(sdp: &str) -> Option<String> {
    sdp.lines()
        .find_map(|l| l.trim().strip_prefix("a=ice-ufrag:"))
        .map(str::to_string)
}

// ------------------------------------------------------------------ media checks

/// A publisher sending audio at 50 packets/s and video at 25 frames/s
/// (one packet each) from a thread, counters from 0, until stopped.
pub struct Publishing {
    stop: Arc<AtomicBool>,
    pub audio: Arc<AtomicU32>,
    pub video: Arc<AtomicU32>,
    thread: Option<std::thread::JoinHandle<()>>,
}

pub fn publish(client: &Client) -> Publishing {
    let shared = client.handle();
    let stop = Arc::new(AtomicBool::new(false));
    let audio = Arc::new(AtomicU32::new(0));
    let video = Arc::new(AtomicU32::new(0));
    let (s, a, v) = (stop.clone(), audio.clone(), video.clone());
    let thread = std::thread::spawn(move || {
        let start = Instant::now();
        let mut tick = 0u32;
        while !s.load(Ordering::Relaxed) {
            let n = a.load(Ordering::Relaxed);
            if shared.send_media(MediaKind::Audio, n) {
                a.store(n + 1, Ordering::Relaxed);
            }
            if tick.is_multiple_of(2) {
                let n = v.load(Ordering::Relaxed);
                if shared.send_media(MediaKind::Video, n) {
                    v.store(n + 1, Ordering::Relaxed);
                }
            }
            tick += 1;
            let next = start + Duration::from_millis(20) * tick;
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
        }
    });
    Publishing {
        stop,
        audio,
        video,
        thread: Some(thread),
    }
}

impl Publishing {
    pub fn sent(&self, kind: MediaKind) -> u32 {
        match kind {
            MediaKind::Audio => self.audio.load(Ordering::Relaxed),
            MediaKind::Video => self.video.load(Ordering::Relaxed),
        }
    }

    /// Stops sending; returns how many audio and video packets were sent.
    pub fn stop(mut self) -> (u32, u32) {
        self.halt();
        (self.sent(MediaKind::Audio), self.sent(MediaKind::Video))
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Publishing {
    fn drop(&mut self) {
        self.halt();
    }
}

/// What one subscriber got of one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamCheck {
    /// Counter of the first and last packet received.
    pub first: u32,
    pub last: u32,
    pub packets: usize,
}

/// Checks one received stream end to end: every payload is byte-for-byte
/// what the publisher wrote for its counter, counters run without gap,
/// duplicate or reordering, and the RTP sequence numbers rtcd wrote are
/// continuous on a single SSRC.
pub fn check_stream(received: &[Received], kind: MediaKind) -> Result<StreamCheck, String> {
    let rx: Vec<&Received> = received.iter().filter(|r| r.kind == kind).collect();
    let first = rx.first().ok_or(format!("no {kind:?} packet received"))?;
    let mut counters = Vec::with_capacity(rx.len());
    for r in &rx {
        let n = payload_counter(kind, &r.payload).ok_or(format!(
            "{kind:?} payload too short: {} bytes",
            r.payload.len()
        ))?;
        if r.payload != expected_payload(kind, n) {
            return Err(format!(
                "{kind:?} payload {n} differs from what was sent ({} bytes)",
                r.payload.len()
            ));
        }
        counters.push(n);
    }
    if let Some(w) = counters.windows(2).find(|w| w[1] != w[0] + 1) {
        return Err(format!(
            "{kind:?} counters not continuous: {} then {} (of {} packets)",
            w[0],
            w[1],
            counters.len()
        ));
    }
    if let Some(r) = rx.iter().find(|r| r.ssrc != first.ssrc) {
        return Err(format!(
            "{kind:?} arrived on two SSRCs: {} and {}",
            first.ssrc, r.ssrc
        ));
    }
    if let Some(w) = rx.windows(2).find(|w| w[1].seq != w[0].seq + 1) {
        return Err(format!(
            "{kind:?} RTP sequence jumps from {} to {}",
            w[0].seq, w[1].seq
        ));
    }
    Ok(StreamCheck {
        first: counters[0],
        last: *counters.last().expect("not empty"),
        packets: counters.len(),
    })
}

/// Asserts that `client` received `kind` intact and continuously, up to
/// the last of `sent` packets, starting within `late_start` packets.
pub fn assert_stream(client: &Client, kind: MediaKind, sent: u32, late_start: u32) -> StreamCheck {
    let rx = client.received(kind);
    let c = check_stream(&rx, kind).unwrap_or_else(|e| panic!("{}: {e}", client.name()));
    eprintln!("{}: {kind:?} {c:?} of {sent} sent", client.name());
    assert_eq!(
        c.last,
        sent - 1,
        "{}: the last {kind:?} packet sent arrived",
        client.name()
    );
    assert!(
        c.first <= late_start,
        "{}: {kind:?} started only at packet {}",
        client.name(),
        c.first
    );
    c
}

// ------------------------------------------------------------------ control

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A raw control WebSocket, authenticated with `key` when given.
pub async fn ws_connect(
    api: SocketAddr,
    key: Option<&str>,
) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    let mut req = format!("ws://{api}/api/v1/control")
        .into_client_request()
        .expect("valid request");
    if let Some(key) = key {
        req.headers_mut().insert(
            "authorization",
            format!("Bearer {key}").parse().expect("header value"),
        );
    }
    let (ws, _) = tokio_tungstenite::connect_async(req).await?;
    Ok(ws)
}

/// The next protocol message on a raw socket (skipping periodic loads),
/// `None` when the connection ends or nothing comes within `timeout`.
pub async fn ws_next(ws: &mut Ws, timeout: Duration) -> Option<FromRtcd> {
    let until = tokio::time::Instant::now() + timeout;
    loop {
        let msg = tokio::time::timeout_at(until, ws.next()).await.ok()??;
        match msg.ok()? {
            Message::Text(t) => {
                let m: FromRtcd = serde_json::from_str(t.as_str()).expect("rtcd sends valid JSON");
                if !matches!(m, FromRtcd::Load(_)) {
                    return Some(m);
                }
            }
            Message::Close(_) => return None,
            _ => {}
        }
    }
}

pub async fn ws_send(ws: &mut Ws, msg: &ToRtcd) {
    ws.send(Message::text(
        serde_json::to_string(msg).expect("serializes"),
    ))
    .await
    .expect("sending on the control socket");
}

/// A control node's connection to rtcd, with the answers to rtcd's offers
/// made by the clients attached to it.
pub struct Control {
    tx: tokio::sync::mpsc::UnboundedSender<Message>,
    events: Arc<Mutex<Vec<FromRtcd>>>,
    clients: Arc<Mutex<HashMap<SessionId, Arc<Shared>>>>,
    failures: Arc<Mutex<Vec<String>>>,
    closed: Arc<AtomicBool>,
    next_request: AtomicU64,
    pub welcome: NodeLoad,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Control {
    /// Connects, says hello and waits for the welcome.
    pub async fn connect(api: SocketAddr) -> anyhow::Result<Control> {
        let mut ws = ws_connect(api, Some(API_KEY))
            .await
            .context("control upgrade")?;
        ws_send(
            &mut ws,
            &ToRtcd::Hello {
                version: signaling::PROTOCOL_VERSION,
                node_id: "control-test".into(),
            },
        )
        .await;
        let welcome = match ws_next(&mut ws, Duration::from_secs(5)).await {
            Some(FromRtcd::Welcome {
                version,
                node_id,
                load,
            }) => {
                anyhow::ensure!(version == signaling::PROTOCOL_VERSION, "version {version}");
                anyhow::ensure!(!node_id.is_empty(), "empty node id");
                load
            }
            other => bail!("expected welcome, got {other:?}"),
        };
        let (mut sink, mut stream) = ws.split();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Message>();
        let writer = tokio::spawn(async move {
            while let Some(m) = rx.recv().await {
                if sink.send(m).await.is_err() {
                    break;
                }
            }
        });
        let events = Arc::new(Mutex::new(Vec::new()));
        let clients: Arc<Mutex<HashMap<SessionId, Arc<Shared>>>> = Arc::default();
        let failures = Arc::new(Mutex::new(Vec::new()));
        let closed = Arc::new(AtomicBool::new(false));
        let reader = {
            let (events, clients, failures, closed, tx) = (
                events.clone(),
                clients.clone(),
                failures.clone(),
                closed.clone(),
                tx.clone(),
            );
            tokio::spawn(async move {
                while let Some(Ok(msg)) = stream.next().await {
                    let text = match msg {
                        Message::Text(t) => t,
                        Message::Close(_) => break,
                        _ => continue,
                    };
                    let event: FromRtcd = match serde_json::from_str(text.as_str()) {
                        Ok(e) => e,
                        Err(e) => {
                            failures
                                .lock()
                                .unwrap()
                                .push(format!("bad message {text}: {e}"));
                            continue;
                        }
                    };
                    let client = |id: &SessionId| clients.lock().unwrap().get(id).cloned();
                    match &event {
                        FromRtcd::Answer { session_id, answer } => {
                            if let Some(c) = client(session_id)
                                && let Err(e) = c.accept_answer(&answer.sdp)
                            {
                                failures
                                    .lock()
                                    .unwrap()
                                    .push(format!("{session_id}: answer refused: {e}"));
                            }
                        }
                        FromRtcd::Offer { session_id, offer } => {
                            if let Some(c) = client(session_id) {
                                match c.accept_offer(&offer.sdp) {
                                    Ok(sdp) => {
                                        let answer = ToRtcd::Answer {
                                            session_id: session_id.clone(),
                                            answer: Sdp {
                                                sdp,
                                                negotiation: offer.negotiation,
                                            },
                                        };
                                        let _ = tx.send(Message::text(
                                            serde_json::to_string(&answer).expect("serializes"),
                                        ));
                                    }
                                    Err(e) => failures
                                        .lock()
                                        .unwrap()
                                        .push(format!("{session_id}: offer refused: {e}")),
                                }
                            }
                        }
                        _ => {}
                    }
                    events.lock().unwrap().push(event);
                }
                closed.store(true, Ordering::SeqCst);
            })
        };
        Ok(Control {
            tx,
            events,
            clients,
            failures,
            closed,
            next_request: AtomicU64::new(1),
            welcome,
            tasks: vec![reader, writer],
        })
    }

    pub fn request(&self) -> u64 {
        self.next_request.fetch_add(1, Ordering::Relaxed)
    }

    pub fn send(&self, msg: &ToRtcd) {
        self.send_text(serde_json::to_string(msg).expect("serializes"));
    }

    pub fn send_text(&self, text: String) {
        let _ = self.tx.send(Message::text(text));
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    pub fn events(&self) -> Vec<FromRtcd> {
        self.events.lock().unwrap().clone()
    }

    /// Answers and offers the attached clients refused.
    pub fn failures(&self) -> Vec<String> {
        self.failures.lock().unwrap().clone()
    }

    /// The first event (received so far or within `timeout`) that `f` picks.
    pub async fn wait_for<T>(
        &self,
        timeout: Duration,
        mut f: impl FnMut(&FromRtcd) -> Option<T>,
    ) -> Option<T> {
        eventually(timeout, || {
            self.events.lock().unwrap().iter().find_map(&mut f)
        })
        .await
    }

    /// Waits until `f`, shown every event received so far, returns `Some`.
    pub async fn wait_events<T>(
        &self,
        timeout: Duration,
        mut f: impl FnMut(&[FromRtcd]) -> Option<T>,
    ) -> Option<T> {
        eventually(timeout, || f(&self.events.lock().unwrap())).await
    }

    /// The error answering request `request`.
    pub async fn error_for(&self, request: u64, timeout: Duration) -> Option<RtcdError> {
        self.wait_for(timeout, |e| match e {
            FromRtcd::Error(err) if err.request == Some(request) => Some(err.clone()),
            _ => None,
        })
        .await
    }

    /// Creates a call (idempotent) and checks rtcd did not refuse it.
    pub async fn create_call(&self, call: &CallId) -> anyhow::Result<()> {
        let request = self.request();
        self.send(&ToRtcd::CreateCall {
            call_id: call.clone(),
            request: Some(request),
        });
        // Success is silent; a refusal comes back at once.
        if let Some(e) = self.error_for(request, Duration::from_millis(200)).await {
            bail!("create_call refused: {e:?}");
        }
        Ok(())
    }

    /// Joins `client` to `call` as control would: AddSession, then the
    /// client's offer (its sending m-lines and a data channel); waits for
    /// rtcd's answer, which the reader applies to the client.
    pub async fn join(
        &self,
        call: &CallId,
        client: &Client,
        permissions: Permissions,
        send: &[SendSpec],
    ) -> anyhow::Result<()> {
        let id = client.session_id();
        self.clients
            .lock()
            .unwrap()
            .insert(id.clone(), client.handle());
        let request = self.request();
        self.send(&ToRtcd::AddSession {
            call_id: call.clone(),
            session_id: id.clone(),
            permissions,
            request: Some(request),
        });
        let (sdp, tracks) = client.offer(send, &[], true);
        self.send(&ToRtcd::Offer {
            session_id: id.clone(),
            offer: Sdp {
                sdp,
                negotiation: 0,
            },
            tracks,
        });
        let outcome = self
            .wait_for(Duration::from_secs(5), |e| match e {
                FromRtcd::Answer { session_id, .. } if *session_id == id => Some(Ok(())),
                FromRtcd::Error(err) if err.session_id.as_ref() == Some(&id) => {
                    Some(Err(err.clone()))
                }
                _ => None,
            })
            .await;
        match outcome {
            Some(Ok(())) => {}
            Some(Err(e)) => bail!("{id}: rtcd refused the join: {e:?}"),
            None => bail!("{id}: no answer from rtcd"),
        }
        if let Some(f) = self.failures().first() {
            bail!("{f}");
        }
        Ok(())
    }

    pub async fn end_call(&self, call: &CallId) -> anyhow::Result<()> {
        let request = self.request();
        self.send(&ToRtcd::EndCall {
            call_id: call.clone(),
            request: Some(request),
        });
        let ended = self
            .wait_for(Duration::from_secs(5), |e| match e {
                FromRtcd::CallEnded { call_id } if call_id == call => Some(Ok(())),
                FromRtcd::Error(err) if err.request == Some(request) => Some(Err(err.clone())),
                _ => None,
            })
            .await;
        match ended {
            Some(Ok(())) => Ok(()),
            Some(Err(e)) => bail!("end_call refused: {e:?}"),
            None => bail!("no call_ended for {call}"),
        }
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// A call running on `control`: one publisher (audio and camera) and
/// `subscribers` receive-only listeners, all connected, with rtcd's offers
/// of the publisher's tracks answered by every subscriber.
pub async fn running_call(
    control: &Control,
    call: &CallId,
    publisher: Client,
    subscribers: Vec<Client>,
) -> anyhow::Result<(Client, Vec<Client>)> {
    control.create_call(call).await?;
    control
        .join(
            call,
            &publisher,
            Permissions::PARTICIPANT,
            &[
                (MediaKind::Audio, Some(TrackSource::Microphone)),
                (MediaKind::Video, Some(TrackSource::Camera)),
            ],
        )
        .await?;
    for s in &subscribers {
        control
            .join(call, s, Permissions::RECEIVE_ONLY, &[])
            .await?;
    }
    publisher.wait_connected(Duration::from_secs(5)).await?;
    publisher.prime().await?;
    for s in &subscribers {
        s.wait_connected(Duration::from_secs(5)).await?;
        wait_subscribed(s).await?;
    }
    Ok((publisher, subscribers))
}

/// Waits until a subscriber has answered rtcd's offer of an audio and a
/// video track, and gives rtcd a moment to apply the answer.
pub async fn wait_subscribed(s: &Client) -> anyhow::Result<()> {
    let got = eventually(Duration::from_secs(5), || {
        let kinds = s.receiving_kinds();
        (kinds.contains(&MediaKind::Audio) && kinds.contains(&MediaKind::Video)).then_some(())
    })
    .await;
    if got.is_none() {
        bail!(
            "{} was never offered the publisher's tracks: {:?}",
            s.name(),
            s.receiving_kinds()
        );
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    Ok(())
}

pub fn error_code(e: &FromRtcd) -> Option<ErrorCode> {
    match e {
        FromRtcd::Error(err) => Some(err.code),
        _ => None,
    }
}

// ------------------------------------------------------------------ http

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`).
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> anyhow::Result<Response> {
    let io = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).await?;
        s.write_all(body).await?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await?;
        anyhow::Ok(raw)
    };
    let raw = tokio::time::timeout(Duration::from_secs(5), io)
        .await
        .context("HTTP request timed out")??;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of headers")?;
    let head = std::str::from_utf8(&raw[..split]).context("headers are not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().context("no status line")?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .context("no status code")?
        .parse()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        body = dechunk(&body)?;
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut b: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let end = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("chunk size")?;
        let size_text = std::str::from_utf8(&b[..end])?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)?;
        b = &b[end + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(b.get(..size).context("short chunk")?);
        b = b.get(size + 2..).context("chunk end")?;
    }
}

// ------------------------------------------------------------------ metrics

/// Every sample of a Prometheus text exposition, keyed by its series as
/// printed, e.g. `rtcd_dropped_total{reason="rejected"}`.
pub fn parse_metrics(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.trim().to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

pub async fn metrics(api: SocketAddr) -> HashMap<String, f64> {
    let r = http(api, "GET", "/metrics", &[], b"")
        .await
        .expect("GET /metrics");
    assert_eq!(r.status, 200, "GET /metrics");
    parse_metrics(&r.text())
}

/// One series' value (0 when absent).
pub async fn metric(api: SocketAddr, series: &str) -> f64 {
    metrics(api).await.get(series).copied().unwrap_or(0.0)
}

/// The sum of every series of `name` (all label values).
pub fn sum_of(m: &HashMap<String, f64>, name: &str) -> f64 {
    m.iter()
        .filter(|(k, _)| k.as_str() == name || k.starts_with(&format!("{name}{{")))
        .map(|(_, v)| v)
        .sum()
}

/// Polls /metrics until `series` satisfies `ok` (worker snapshots refresh
/// every 500 ms). Returns the last value seen and whether it passed.
pub async fn wait_metric(
    api: SocketAddr,
    series: &str,
    timeout: Duration,
    ok: impl Fn(f64) -> bool,
) -> (f64, bool) {
    let until = Instant::now() + timeout;
    loop {
        let v = metric(api, series).await;
        if ok(v) {
            return (v, true);
        }
        if Instant::now() >= until {
            return (v, false);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls /metrics until `ok` holds for the whole exposition. Returns the
/// last exposition and whether it passed.
pub async fn wait_metrics(
    api: SocketAddr,
    timeout: Duration,
    ok: impl Fn(&HashMap<String, f64>) -> bool,
) -> (HashMap<String, f64>, bool) {
    let until = Instant::now() + timeout;
    loop {
        let m = metrics(api).await;
        if ok(&m) {
            return (m, true);
        }
        if Instant::now() >= until {
            return (m, false);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A value of an exposition (0 when absent).
pub fn value(m: &HashMap<String, f64>, series: &str) -> f64 {
    m.get(series).copied().unwrap_or(0.0)
}

/// Deterministic pseudo-random bytes.
pub fn noise(seed: u32, len: usize) -> Vec<u8> {
    filler(seed, len).collect()
}

/// A client socket whose datagrams the kernel hands to `worker`'s socket
/// (of a node with two workers). `SO_REUSEPORT` picks a socket by a keyed
/// hash of the 4-tuple, so this probes fresh sockets: from each, binding
/// requests whose ufrags name worker 0 and worker 1; the worker that got
/// them steers the one naming the other, which `/metrics` shows.
pub async fn socket_landing_on(api: SocketAddr, media: SocketAddr, worker: usize) -> UdpSocket {
    const STEERED: [&str; 2] = [
        r#"rtcd_worker_steered_datagrams{worker="0"}"#,
        r#"rtcd_worker_steered_datagrams{worker="1"}"#,
    ];
    for _ in 0..12 {
        let before = metrics(api).await;
        let socket = UdpSocket::bind("127.0.0.1:0").expect("binding a client socket");
        for w in 0..2 {
            let probe = stun_binding_request(&format!("{w:02x}probeprobe:p"), "probe-password");
            socket.send_to(&probe, media).expect("probe");
        }
        let landed = eventually_async(Duration::from_secs(3), || async {
            let m = metrics(api).await;
            (0..2).find(|w| value(&m, STEERED[*w]) > value(&before, STEERED[*w]))
        })
        .await
        .expect("a probe was steered");
        if landed == worker {
            return socket;
        }
    }
    panic!("no socket landed on worker {worker} in 12 tries");
}

/// Like [`eventually`], for an async check.
pub async fn eventually_async<T, F: std::future::Future<Output = Option<T>>>(
    timeout: Duration,
    mut f: impl FnMut() -> F,
) -> Option<T> {
    let until = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if Instant::now() >= until {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The worker index a session's rtcd ufrag names.
pub fn ufrag_worker(client: &Client) -> Option<u8> {
    let ufrag = client.state().remote_ufrag.clone()?;
    rtcd_core::ufrag_worker(&ufrag)
}

// ------------------------------------------------------------------ STUN

fn sha1_hmac(key: &[u8], payloads: &[&[u8]]) -> [u8; 20] {
    use aws_lc_rs::hmac;
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key);
    let mut ctx = hmac::Context::with_key(&key);
    for p in payloads {
        ctx.update(p);
    }
    ctx.sign().as_ref().try_into().expect("SHA-1 is 20 bytes")
}

/// A well-formed ICE binding request for `<local ufrag>:<remote ufrag>`,
/// with MESSAGE-INTEGRITY keyed by `password` and a valid FINGERPRINT.
pub fn stun_binding_request(username: &str, password: &str) -> Vec<u8> {
    let msg = str0m::ice::StunMessage::binding_request(
        username,
        str0m::ice::TransId::new(),
        true,
        0x1234_5678_9abc_def0,
        2_130_706_431,
        false,
    );
    let mut buf = vec![0u8; 1500];
    let n = msg
        .to_bytes(Some(password.as_bytes()), &mut buf, sha1_hmac)
        .expect("STUN serializes");
    buf.truncate(n);
    buf
}

// ------------------------------------------------------------------ binary

/// The real rtcd binary, killed when dropped.
pub struct Proc {
    child: std::process::Child,
    pub api: SocketAddr,
    pub media: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

/// The environment that makes the binary a loopback test node.
pub fn binary_env(workers: usize, drain_secs: u64) -> Vec<(String, String)> {
    [
        ("RTCD_NODE_ID", "rtcd-bin-test".to_string()),
        ("RTCD_RTC__BIND_IP", "127.0.0.1".into()),
        ("RTCD_RTC__PORT", "0".into()),
        ("RTCD_RTC__ALLOW_LOOPBACK", "true".into()),
        ("RTCD_RTC__WORKERS", workers.to_string()),
        ("RTCD_API__LISTEN", "127.0.0.1:0".into()),
        ("RTCD_API__KEYS", format!("[\"{API_KEY}\"]")),
        ("RTCD_API__TOKEN_SECRET", TOKEN_SECRET.into()),
        ("RTCD_DRAIN__DEADLINE_SECS", drain_secs.to_string()),
        ("RTCD_LOG__JSON", "true".into()),
        ("RTCD_LOG__FILTER", "info".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// A command for the binary with exactly `env` among RTCD_* variables.
pub fn rtcd_command(env: &[(String, String)]) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_rtcd"));
    for (k, _) in std::env::vars() {
        if k.starts_with("RTCD_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    cmd
}

impl Proc {
    /// Starts `rtcd run` and waits for its "rtcd started" log line, which
    /// names the bound addresses.
    pub fn spawn(env: &[(String, String)]) -> anyhow::Result<Proc> {
        use std::io::BufRead as _;
        let mut child = rtcd_command(env)
            .arg("run")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .context("spawning rtcd")?;
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                        let f = &v["fields"];
                        if f["message"] == "rtcd started" {
                            let addr = |k: &str| f[k].as_str().and_then(|s| s.parse().ok());
                            let _ = tx.send((addr("api"), addr("media")));
                        }
                    }
                    log.lock().unwrap().push(line);
                }
            });
        }
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    log.lock().unwrap().push(format!("stderr: {line}"));
                }
            });
        }
        let started = rx.recv_timeout(Duration::from_secs(15));
        let mut proc = Proc {
            child,
            api: SocketAddr::from(([127, 0, 0, 1], 0)),
            media: SocketAddr::from(([127, 0, 0, 1], 0)),
            log,
        };
        match started {
            Ok((Some(api), Some(media))) => {
                proc.api = api;
                proc.media = media;
                Ok(proc)
            }
            other => bail!(
                "rtcd did not report its addresses ({other:?}); log:\n{}",
                proc.log()
            ),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) with the pid of a child we own and have not reaped.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill({}, {sig})", self.child.id());
    }

    /// Waits for the process to exit; `None` if it is still running.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let until = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= until {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
