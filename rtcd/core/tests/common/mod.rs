//! An in-memory network on a fake clock: str0m clients and one `Sfu`.
//!
//! Time only moves when the test says so; every datagram passes through a
//! filter so tests can drop packets deterministically.
#![allow(dead_code, clippy::disallowed_methods, clippy::too_many_arguments)]

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rtcd_core::{CoreConfig, Datagram, Output, Protocol, Sfu, Transmit};
use signaling::media::{Permissions, Sdp, TrackDeclaration, TrackSource};
use signaling::rtcd::{FromRtcd, ToRtcd};
use signaling::{CallId, SessionId};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Simulcast, SimulcastLayer};
use str0m::net::Receive;
use str0m::rtp::{RtpPacket, RtpWrite};
use str0m::{Candidate, Event, Input, Rtc};

pub const SFU_ADDR: &str = "10.0.0.1:8443";

pub struct Client {
    pub id: SessionId,
    pub addr: SocketAddr,
    pub rtc: Rtc,
    pub received: Vec<RtpPacket>,
    pub received_mids: HashMap<Mid, MediaKind>,
    pub connected: bool,
    pending: Option<SdpPendingOffer>,
    /// Packets that would go to this client are dropped while this says so.
    pub offline: bool,
    pub send_mids: Vec<(MediaKind, Mid)>,
    /// Simulcast rids of each sending m-line that has them.
    pub send_rids: HashMap<Mid, Vec<String>>,
    /// Has sent its first packet on every sending m-line ([`Net::prime`]).
    pub primed: bool,
    /// Keyframe requests (PLI/FIR) this client received as a publisher.
    pub keyframe_requests: usize,
}

/// Decides the fate of each SFU → client datagram (client index, bytes).
pub type Filter = Box<dyn FnMut(usize, &[u8]) -> Verdict>;

/// What a joining client sends: kind, simulcast rids, declared source.
pub type SendSpec<'a> = (MediaKind, Option<&'a [&'a str]>, Option<TrackSource>);

/// What the network does to a datagram in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Deliver,
    Drop,
}

pub struct Net {
    pub now: Instant,
    pub sfu: Sfu,
    pub clients: Vec<Client>,
    pub events: Vec<FromRtcd>,
    pub call: CallId,
    pub downlink_filter: Filter,
    /// A client whose datagrams to the SFU are held back (in order) until
    /// [`Net::release_uplink`], as a congested uplink delays them.
    pub uplink_held: Option<usize>,
    held: Vec<(SocketAddr, SocketAddr, Vec<u8>)>,
    /// A client whose datagrams to the SFU arrive this much later: with
    /// the downlink instant, its round trip.
    pub uplink_delay: Option<(usize, Duration)>,
    delayed: VecDeque<(Instant, SocketAddr, SocketAddr, Vec<u8>)>,
}

pub fn sfu_addr() -> SocketAddr {
    SFU_ADDR.parse().unwrap()
}

impl Net {
    pub fn new() -> Self {
        Self::with_config(|_| {})
    }

    /// A network whose SFU runs with `tune` applied to the default config.
    pub fn with_config(tune: impl FnOnce(&mut CoreConfig)) -> Self {
        if let Ok(filter) = std::env::var("RTCD_TEST_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_test_writer()
                .try_init();
        }
        let now = Instant::now();
        let mut config = CoreConfig::new(rtcd_core::generate_dtls_cert());
        config.udp_candidates = vec![sfu_addr()];
        tune(&mut config);
        let mut sfu = Sfu::new(config);
        let call = CallId::new("call-1").unwrap();
        sfu.create_call(call.clone());
        Net {
            now,
            sfu,
            clients: Vec::new(),
            events: Vec::new(),
            call,
            downlink_filter: Box::new(|_, _| Verdict::Deliver),
            uplink_held: None,
            held: Vec::new(),
            uplink_delay: None,
            delayed: VecDeque::new(),
        }
    }

    /// A client's datagram reaches the SFU now.
    fn uplink(&mut self, source: SocketAddr, destination: SocketAddr, contents: &[u8]) {
        let _ = self.sfu.handle_datagram(
            self.now,
            Datagram {
                proto: Protocol::Udp,
                source,
                destination,
                contents,
            },
        );
    }

    /// Delivers what the held client sent meanwhile, in order, and stops
    /// holding.
    pub fn release_uplink(&mut self) {
        self.uplink_held = None;
        for (source, destination, contents) in std::mem::take(&mut self.held) {
            self.uplink(source, destination, &contents);
        }
        self.pump();
    }

    /// Hands what the held client sent to the SFU as one large receive
    /// batch would, then fans the video out one subscriber write at a
    /// time with no flush in between, and stops holding. Returns, after
    /// each write, how many RTP packets the SFU had released to client
    /// `to` so far. What the SFU releases is delivered at the end.
    pub fn feed_held_as_one_batch(&mut self, to: usize) -> Vec<usize> {
        self.uplink_held = None;
        let to_addr = self.clients[to].addr;
        let mut released = 0;
        let mut after_each = Vec::new();
        let mut out = Vec::new();
        for (source, destination, contents) in std::mem::take(&mut self.held) {
            self.uplink(source, destination, &contents);
        }
        loop {
            let more = self.sfu.forward_backlog(self.now, 1);
            while let Some(o) = self.sfu.poll_output() {
                if let Output::Transmit(t) = &o
                    && t.destination == to_addr
                    && is_rtp(&t.contents)
                {
                    released += 1;
                }
                out.push(o);
            }
            after_each.push(released);
            if !more {
                break;
            }
        }
        for o in out {
            match o {
                Output::Transmit(t) => self.deliver(t),
                Output::Event(e) => self.signal(e),
            }
        }
        after_each
    }

    /// Alice publishes a camera, receive-only bob watches; both connected.
    /// Returns the network and alice's video mid.
    pub fn camera_and_viewer(tune: impl FnOnce(&mut CoreConfig)) -> (Net, Mid) {
        let mut net = Net::with_config(tune);
        net.join(
            "alice",
            Permissions::PARTICIPANT,
            &[(MediaKind::Video, None, None)],
        );
        net.join("bob", Permissions::RECEIVE_ONLY, &[]);
        net.connect_all();
        let video = net.send_mid(0, MediaKind::Video, 0);
        (net, video)
    }

    /// Adds a client through control's path: AddSession, then the client's
    /// offer with the media it sends (and a data channel, so a receive-only
    /// client has something to offer).
    pub fn join(&mut self, name: &str, permissions: Permissions, send: &[SendSpec<'_>]) -> usize {
        let idx = self.clients.len();
        let id = SessionId::new(name).unwrap();
        let addr: SocketAddr = format!("10.0.1.{}:5000", idx + 1).parse().unwrap();
        self.sfu.handle_command(
            self.now,
            ToRtcd::AddSession {
                call_id: self.call.clone(),
                session_id: id.clone(),
                permissions,
                request: Some(1),
            },
        );
        let mut rtc = Rtc::builder().set_rtp_mode(true).build(self.now);
        rtc.add_local_candidate(Candidate::host(addr, "udp").unwrap());
        let mut api = rtc.sdp_api();
        let mut send_mids = Vec::new();
        let mut send_rids = HashMap::new();
        let mut tracks = Vec::new();
        for (kind, rids, source) in send {
            let simulcast = rids.map(|rids| {
                let mut s = Simulcast::new();
                for r in rids {
                    s.add_send_layer(SimulcastLayer::new(r));
                }
                s
            });
            let mid = api.add_media(*kind, Direction::SendOnly, None, None, simulcast);
            send_mids.push((*kind, mid));
            if let Some(rids) = rids {
                send_rids.insert(mid, rids.iter().map(|r| r.to_string()).collect());
            }
            if let Some(source) = source {
                tracks.push(TrackDeclaration {
                    mid: mid.to_string(),
                    source: *source,
                });
            }
        }
        api.add_channel("enclave".into());
        let (offer, pending) = api.apply().unwrap();
        self.clients.push(Client {
            id: id.clone(),
            addr,
            rtc,
            received: Vec::new(),
            received_mids: HashMap::new(),
            connected: false,
            pending: Some(pending),
            offline: false,
            send_mids,
            send_rids,
            primed: false,
            keyframe_requests: 0,
        });
        self.sfu.handle_command(
            self.now,
            ToRtcd::Offer {
                session_id: id,
                offer: Sdp {
                    sdp: offer.to_sdp_string(),
                    negotiation: 0,
                },
                tracks,
            },
        );
        self.pump();
        idx
    }

    /// Hands the held client's datagrams to the SFU, in order, without
    /// fanning out its video backlog, and stops holding. Nothing is
    /// flushed or delivered.
    pub fn feed_held(&mut self) {
        self.uplink_held = None;
        for (source, destination, contents) in std::mem::take(&mut self.held) {
            self.uplink(source, destination, &contents);
        }
    }

    /// How many datagrams the held client has sent since it was held.
    pub fn held_count(&self) -> usize {
        self.held.len()
    }

    /// Hands the `i`-th held datagram to the SFU (nothing is fanned out,
    /// flushed or delivered); the others stay held.
    pub fn feed_one_held(&mut self, i: usize) {
        let (source, destination, contents) = self.held[i].clone();
        self.uplink(source, destination, &contents);
    }

    /// Forgets what the held client sent and stops holding.
    pub fn drop_held(&mut self) {
        self.uplink_held = None;
        self.held.clear();
    }

    /// One slice of the video backlog as rtcd's worker runs it: up to
    /// `max_writes` subscriber writes, a flush, and delivery of what came
    /// out, without fanning out the rest. Returns whether video still waits.
    pub fn slice(&mut self, max_writes: usize) -> bool {
        let more = self.sfu.forward_backlog(self.now, max_writes);
        self.release();
        more
    }

    /// Flushes the SFU and delivers what comes out (and what the clients
    /// answer), without fanning out the video backlog.
    pub fn release(&mut self) {
        self.sfu.flush(self.now);
        while let Some(out) = self.sfu.poll_output() {
            match out {
                Output::Transmit(t) => self.deliver(t),
                Output::Event(e) => self.signal(e),
            }
        }
        for ci in 0..self.clients.len() {
            self.drain_client(ci);
        }
    }

    /// Moves every pending output (datagrams and signaling) to its
    /// destination until nothing moves, without advancing time. The video
    /// backlog is fanned out whole.
    pub fn pump(&mut self) {
        for _ in 0..10_000 {
            let mut moved = self.sfu.forward_backlog(self.now, usize::MAX);
            self.sfu.flush(self.now);
            while let Some(out) = self.sfu.poll_output() {
                moved = true;
                match out {
                    Output::Transmit(t) => self.deliver(t),
                    Output::Event(e) => self.signal(e),
                }
            }
            for ci in 0..self.clients.len() {
                moved |= self.drain_client(ci);
            }
            if !moved {
                return;
            }
        }
        panic!("network did not settle");
    }

    /// A datagram from the SFU reaches its client (unless filtered).
    fn deliver(&mut self, t: Transmit) {
        let Some(ci) = self.clients.iter().position(|c| c.addr == t.destination) else {
            return;
        };
        if self.clients[ci].offline || (self.downlink_filter)(ci, &t.contents) == Verdict::Drop {
            return;
        }
        let now = self.now;
        let c = &mut self.clients[ci];
        let _ = c.rtc.handle_input(Input::Receive(
            now,
            Receive {
                proto: str0m::net::Protocol::Udp,
                source: t.source,
                destination: t.destination,
                contents: t.contents.as_slice().try_into().unwrap(),
            },
        ));
        // str0m wants a full drain after every input.
        self.drain_client(ci);
    }

    fn signal(&mut self, e: FromRtcd) {
        match &e {
            FromRtcd::Answer { session_id, answer } => {
                let c = self.client_by_id(session_id);
                let pending = c.pending.take().expect("client has an offer out");
                let answer = SdpAnswer::from_sdp_string(&answer.sdp).unwrap();
                c.rtc.sdp_api().accept_answer(pending, answer).unwrap();
            }
            FromRtcd::Offer { session_id, offer } => {
                let negotiation = offer.negotiation;
                let c = self.client_by_id(session_id);
                let sdp = SdpOffer::from_sdp_string(&offer.sdp).unwrap();
                let answer = c.rtc.sdp_api().accept_offer(sdp).unwrap();
                let id = c.id.clone();
                self.sfu.handle_command(
                    self.now,
                    ToRtcd::Answer {
                        session_id: id,
                        answer: Sdp {
                            sdp: answer.to_sdp_string(),
                            negotiation,
                        },
                    },
                );
            }
            _ => {}
        }
        self.events.push(e);
    }

    fn client_by_id(&mut self, id: &SessionId) -> &mut Client {
        self.clients.iter_mut().find(|c| &c.id == id).unwrap()
    }

    fn drain_client(&mut self, ci: usize) -> bool {
        let mut moved = false;
        loop {
            let c = &mut self.clients[ci];
            match c.rtc.poll_output() {
                Ok(str0m::Output::Timeout(_)) => return moved,
                Ok(str0m::Output::Transmit(t)) => {
                    moved = true;
                    if c.offline {
                        continue;
                    }
                    let contents: Vec<u8> = t.contents.into();
                    if self.uplink_held == Some(ci) {
                        self.held.push((t.source, t.destination, contents));
                        continue;
                    }
                    if let Some((_, delay)) = self.uplink_delay.filter(|(c, _)| *c == ci) {
                        let due = self.now + delay;
                        self.delayed
                            .push_back((due, t.source, t.destination, contents));
                        continue;
                    }
                    self.uplink(t.source, t.destination, &contents);
                }
                Ok(str0m::Output::Event(e)) => {
                    moved = true;
                    match e {
                        Event::Connected => c.connected = true,
                        Event::RtpPacket(p) => c.received.push(p),
                        Event::KeyframeRequest(_) => c.keyframe_requests += 1,
                        Event::MediaAdded(m) => {
                            c.received_mids.insert(m.mid, m.kind);
                        }
                        _ => {}
                    }
                }
                Err(e) => panic!("client {ci} failed: {e}"),
            }
        }
    }

    /// The client's network changes: a new address, and an ICE restart
    /// offered through control as a browser's `restartIce()` would.
    pub fn move_and_restart(&mut self, ci: usize, to: SocketAddr) {
        let c = &mut self.clients[ci];
        let old = Candidate::host(c.addr, "udp").unwrap();
        c.rtc.direct_api().invalidate_candidate(&old);
        c.rtc
            .add_local_candidate(Candidate::host(to, "udp").unwrap());
        c.addr = to;
        let mut api = c.rtc.sdp_api();
        api.ice_restart(true);
        let (offer, pending) = api.apply().unwrap();
        c.pending = Some(pending);
        let id = c.id.clone();
        self.sfu.handle_command(
            self.now,
            ToRtcd::Offer {
                session_id: id,
                offer: Sdp {
                    sdp: offer.to_sdp_string(),
                    negotiation: 0,
                },
                tracks: vec![],
            },
        );
        self.pump();
    }

    /// Advances the fake clock in steps, firing every due timeout.
    pub fn advance(&mut self, by: Duration) {
        let end = self.now + by;
        while self.now < end {
            let step = Duration::from_millis(5).min(end - self.now);
            self.now += step;
            let now = self.now;
            self.sfu.handle_timeout(now);
            for c in &mut self.clients {
                let _ = c.rtc.handle_input(Input::Timeout(now));
            }
            while self.delayed.front().is_some_and(|d| d.0 <= now) {
                let (_, source, destination, contents) = self.delayed.pop_front().unwrap();
                self.uplink(source, destination, &contents);
            }
            self.pump();
        }
    }

    /// Connects every client, then [`Net::prime`]s them.
    pub fn connect_all(&mut self) {
        self.connect();
        self.prime();
    }

    /// Connects every client and lets the negotiations that started
    /// settle; nobody sends media.
    pub fn connect(&mut self) {
        for _ in 0..400 {
            if self.clients.iter().all(|c| c.connected) {
                self.advance(Duration::from_millis(50));
                return;
            }
            self.advance(Duration::from_millis(5));
        }
        panic!("clients did not connect");
    }

    /// Each client not yet primed sends one packet (sequence number 0) on
    /// every m-line and simulcast layer it sends: rtcd offers a track to
    /// subscribers once media arrives on it. Then the negotiations that
    /// started settle. These packets reach no subscriber.
    pub fn prime(&mut self) {
        for ci in 0..self.clients.len() {
            if std::mem::replace(&mut self.clients[ci].primed, true) {
                continue;
            }
            for (kind, mid) in self.clients[ci].send_mids.clone() {
                let payload = if kind == MediaKind::Audio {
                    opus(0)
                } else {
                    vp8(false, 0, 0)
                };
                let rids = self.clients[ci].send_rids.get(&mid).cloned();
                match rids {
                    Some(rids) => {
                        for rid in rids {
                            self.send(ci, mid, Some(&rid), 0, 0, payload.clone(), None);
                        }
                    }
                    None => self.send(ci, mid, None, 0, 0, payload, None),
                }
            }
        }
        self.advance(Duration::from_millis(50));
    }

    /// The mid a client sends `kind` on (its n-th sending m-line of that kind).
    pub fn send_mid(&self, ci: usize, kind: MediaKind, n: usize) -> Mid {
        self.clients[ci]
            .send_mids
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, m)| *m)
            .nth(n)
            .expect("client sends that kind")
    }

    /// Writes one RTP packet from a client, then lets the network settle.
    pub fn send(
        &mut self,
        ci: usize,
        mid: Mid,
        rid: Option<&str>,
        seq: u64,
        ts: u32,
        payload: Vec<u8>,
        audio_level: Option<i8>,
    ) {
        let now = self.now;
        let c = &mut self.clients[ci];
        let codec = if c.rtc.media(mid).unwrap().kind() == MediaKind::Audio {
            Codec::Opus
        } else {
            Codec::Vp8
        };
        let pt = c
            .rtc
            .codec_config()
            .find(|p| p.spec().codec == codec)
            .unwrap()
            .pt();
        let ext = str0m::media::ExtensionValues {
            audio_level,
            voice_activity: audio_level.map(|_| true),
            ..Default::default()
        };
        let mut api = c.rtc.direct_api();
        let tx = api
            .stream_tx_by_mid(mid, rid.map(|r| r.into()))
            .expect("client has a send stream for this mid/rid");
        tx.write_rtp(
            RtpWrite::new(pt, seq.into(), ts, now, payload)
                .marker(true)
                .ext_vals(ext)
                .nackable(codec == Codec::Vp8),
        );
        self.pump();
    }

    pub fn received_payloads(&self, ci: usize, kind: MediaKind) -> Vec<Vec<u8>> {
        let c = &self.clients[ci];
        c.received
            .iter()
            .filter(|p| {
                let is_audio = p.header.payload_type == opus_pt(&c.rtc);
                is_audio == (kind == MediaKind::Audio)
            })
            .map(|p| p.payload.to_vec())
            .collect()
    }
}

fn opus_pt(rtc: &Rtc) -> str0m::media::Pt {
    rtc.codec_config()
        .find(|p| p.spec().codec == Codec::Opus)
        .unwrap()
        .pt()
}

/// A VP8 payload: descriptor with S=1, PID=0, then a payload header whose
/// P bit says key (0) or delta (1), then a marker byte and a counter.
/// SRTP carrying RTP (version 2, not an RTCP packet type).
pub fn is_rtp(datagram: &[u8]) -> bool {
    datagram.len() > 12 && datagram[0] >> 6 == 2 && !(192..=223).contains(&datagram[1])
}

pub fn vp8(keyframe: bool, tag: u8, n: u32) -> Vec<u8> {
    let mut p = vec![0x10, if keyframe { 0x00 } else { 0x01 }, tag];
    p.extend_from_slice(&n.to_be_bytes());
    p
}

pub fn opus(n: u32) -> Vec<u8> {
    let mut p = vec![0xfc];
    p.extend_from_slice(&n.to_be_bytes());
    p
}
