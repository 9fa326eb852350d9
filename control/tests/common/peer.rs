//! A WebRTC peer for the calls tests: str0m in RTP mode on a loopback
//! UDP socket, pumped by a thread of its own. It offers what a browser in
//! a call offers (audio out, audio in), answers rtcd's offers, sends
//! Opus-shaped packets and counts what arrives.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{ExtensionValues, RtpWrite};
use str0m::{Candidate, Event, Input, Output, Rtc};

struct State {
    rtc: Rtc,
    connected: bool,
    audio_in: usize,
    /// When the first and the latest audio packet arrived (outage figures).
    first_audio_at: Option<Instant>,
    last_audio_at: Option<Instant>,
    pending: Option<SdpPendingOffer>,
    audio_out: Option<Mid>,
    error: Option<String>,
}

struct Shared {
    socket: UdpSocket,
    local: SocketAddr,
    state: Mutex<State>,
    stop: AtomicBool,
    /// The pump thread sends an audio packet every 20 ms while set.
    talking: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Lets str0m say everything it has to; returns its next deadline.
    fn drain(&self, st: &mut State) -> Instant {
        loop {
            match st.rtc.poll_output() {
                Ok(Output::Timeout(t)) => return t,
                Ok(Output::Transmit(t)) => {
                    let _ = self.socket.send_to(&t.contents, t.destination);
                }
                Ok(Output::Event(Event::Connected)) => st.connected = true,
                Ok(Output::Event(Event::RtpPacket(_))) => {
                    let now = Instant::now();
                    st.audio_in += 1;
                    st.first_audio_at.get_or_insert(now);
                    st.last_audio_at = Some(now);
                }
                Ok(Output::Event(_)) => {}
                Err(e) => {
                    st.error.get_or_insert_with(|| e.to_string());
                    return Instant::now() + Duration::from_millis(20);
                }
            }
        }
    }

    /// Sends `payload` as audio packet `n` sampled in 20 ms slot `slot`.
    fn send_opus_at(&self, n: u32, slot: u32, payload: Vec<u8>) -> bool {
        let mut st = self.lock();
        let Some(mid) = st.audio_out else {
            return false;
        };
        let Some(pt) = st
            .rtc
            .codec_config()
            .find(|p| p.spec().codec == Codec::Opus)
            .map(|p| p.pt())
        else {
            return false;
        };
        let now = Instant::now();
        let ext = ExtensionValues {
            audio_level: Some(-20),
            voice_activity: Some(true),
            ..Default::default()
        };
        {
            let mut api = st.rtc.direct_api();
            let Some(tx) = api.stream_tx_by_mid(mid, None) else {
                return false;
            };
            tx.write_rtp(
                RtpWrite::new(pt, u64::from(1000 + n).into(), 960 * slot, now, payload)
                    .marker(true)
                    .ext_vals(ext),
            );
        }
        if let Err(e) = st.rtc.handle_input(Input::Timeout(now)) {
            st.error.get_or_insert_with(|| e.to_string());
        }
        self.drain(&mut st);
        true
    }

    fn input(&self, input: Input<'_>) {
        let mut st = self.lock();
        if let Err(e) = st.rtc.handle_input(input) {
            st.error.get_or_insert_with(|| e.to_string());
        }
        self.drain(&mut st);
    }
}

pub struct Peer {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Peer {
    pub fn new() -> Peer {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("a client socket");
        let local = socket.local_addr().expect("its address");
        let mut rtc = Rtc::builder().set_rtp_mode(true).build(Instant::now());
        rtc.add_local_candidate(Candidate::host(local, "udp").expect("a host candidate"));
        let shared = Arc::new(Shared {
            socket,
            local,
            state: Mutex::new(State {
                rtc,
                connected: false,
                audio_in: 0,
                first_audio_at: None,
                last_audio_at: None,
                pending: None,
                audio_out: None,
                error: None,
            }),
            stop: AtomicBool::new(false),
            talking: AtomicBool::new(false),
        });
        let s = shared.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 65_536];
            let mut next_talk = Instant::now();
            let mut packet = 0u32;
            while !s.stop.load(Ordering::Relaxed) {
                let now = Instant::now();
                if s.talking.load(Ordering::Relaxed) && now >= next_talk {
                    s.send_opus_at(
                        packet,
                        packet,
                        vec![0xf8, 0xff, 0xfe, (packet & 0xff) as u8],
                    );
                    packet += 1;
                    next_talk = (next_talk + Duration::from_millis(20)).max(now);
                }
                s.input(Input::Timeout(Instant::now()));
                let _ = s.socket.set_read_timeout(Some(Duration::from_millis(5)));
                if let Ok((n, source)) = s.socket.recv_from(&mut buf)
                    && let Ok(contents) = buf[..n].try_into()
                {
                    s.input(Input::Receive(
                        Instant::now(),
                        Receive {
                            proto: Protocol::Udp,
                            source,
                            destination: s.local,
                            contents,
                        },
                    ));
                }
            }
        });
        Peer {
            shared,
            thread: Some(thread),
        }
    }

    /// An offer to send audio and receive audio.
    pub fn offer(&self) -> String {
        let mut st = self.shared.lock();
        let mut api = st.rtc.sdp_api();
        let out = api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
        let (offer, pending) = api.apply().expect("the offer has changes");
        st.audio_out = Some(out);
        st.pending = Some(pending);
        offer.to_sdp_string()
    }

    pub fn accept_answer(&self, sdp: &str) -> Result<(), String> {
        let answer = SdpAnswer::from_sdp_string(sdp).map_err(|e| e.to_string())?;
        let mut st = self.shared.lock();
        let pending = st.pending.take().ok_or("no offer is pending")?;
        st.rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .map_err(|e| e.to_string())?;
        self.shared.drain(&mut st);
        Ok(())
    }

    /// rtcd's offer (new tracks to receive): our answer.
    pub fn accept_offer(&self, sdp: &str) -> Result<String, String> {
        let offer = SdpOffer::from_sdp_string(sdp).map_err(|e| e.to_string())?;
        let mut st = self.shared.lock();
        let answer = st
            .rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| e.to_string())?;
        self.shared.drain(&mut st);
        Ok(answer.to_sdp_string())
    }

    pub fn connected(&self) -> bool {
        self.shared.lock().connected
    }

    pub fn error(&self) -> Option<String> {
        self.shared.lock().error.clone()
    }

    /// Audio packets received so far.
    pub fn audio_in(&self) -> usize {
        self.shared.lock().audio_in
    }

    /// When the first audio packet arrived.
    #[allow(dead_code)]
    pub fn first_audio_at(&self) -> Option<Instant> {
        self.shared.lock().first_audio_at
    }

    /// When the latest audio packet arrived.
    #[allow(dead_code)]
    pub fn last_audio_at(&self) -> Option<Instant> {
        self.shared.lock().last_audio_at
    }

    /// From now on the peer speaks on its own: one packet every 20 ms, as
    /// a microphone does, until it is dropped.
    #[allow(dead_code)]
    pub fn talk(&self) {
        self.shared.talking.store(true, Ordering::Relaxed);
    }

    /// Sends audio packet `n` (loud, with voice activity). False until the
    /// outgoing stream exists.
    pub fn send_audio(&self, n: u32) -> bool {
        self.send_opus(n, vec![0xf8, 0xff, 0xfe, (n & 0xff) as u8])
    }

    /// Sends `payload` (one 20 ms Opus frame) as audio packet `n`.
    pub fn send_opus(&self, n: u32, payload: Vec<u8>) -> bool {
        self.send_opus_at(n, n, payload)
    }

    /// Sends `payload` as audio packet `n` sampled in 20 ms slot `slot`:
    /// a sender that stops during silence (DTX) keeps numbering its
    /// packets but its RTP time moves on.
    pub fn send_opus_at(&self, n: u32, slot: u32, payload: Vec<u8>) -> bool {
        self.shared.send_opus_at(n, slot, payload)
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
