//! Traffic models: what a simulated participant sends, and when.
//!
//! - Microphone: Opus, 20 ms frames (50 packets/s, 60–120 B payloads) while
//!   talking; DTX in silence, one packet per 400 ms.
//! - Camera: VP8 simulcast, by default three layers (150/500/1500 kbps) at
//!   30 fps, deltas varying ±30 %, keyframes (6× a delta) on the first frame
//!   and when the SFU asks (PLI/FIR).
//! - Screen: VP8, 10 fps, frames of 6–28 KB and a 60 KB "slide change"
//!   every 3 s (≈1.5 Mbps, bursty).
//!
//! Video frames then leave through a pacer as a browser's do ([`crate::pacer`]),
//! unless a run asks for each frame as one burst.
//!
//! Everything is deterministic given the participant and track numbers.

use std::time::{Duration, Instant};

use signaling::media::TrackSource;
use str0m::media::{MediaKind, Rid};

use crate::payload::{STAMP_LEN, Stamp};

/// Largest RTP payload a video packet carries (RTP header, extensions and
/// the SRTP tag keep the datagram under str0m's 1150-byte MTU target... and
/// close to what browsers send).
pub const VIDEO_MTU_PAYLOAD: usize = 1100;
const AUDIO_FRAME: Duration = Duration::from_millis(20);
/// DTX: in silence Opus sends one frame per 400 ms.
const DTX_EVERY: u64 = 20;
/// Least time between two keyframes sent on request, per layer.
const KEYFRAME_MIN_GAP: Duration = Duration::from_millis(200);
const SCREEN_FPS: u32 = 10;
const SLIDE_EVERY_FRAMES: u64 = 30;
const SLIDE_BYTES: usize = 60_000;

/// Who is talking when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Talk {
    /// Talks all the time (an unmuted speaker in a large call).
    Continuous,
    /// `count` people take turns of `slot`; this is turn `index` (meetings).
    Rotating {
        slot: Duration,
        index: u32,
        count: u32,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum TrackModel {
    Audio(Talk),
    /// Simulcast layers, lowest first, in kbps.
    Camera {
        layers_kbps: Vec<u32>,
        fps: u32,
    },
    Screen {
        kbps: u32,
    },
}

/// One track a participant publishes.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackSpec {
    pub source: TrackSource,
    pub model: TrackModel,
}

impl TrackSpec {
    pub fn mic(talk: Talk) -> Self {
        TrackSpec {
            source: TrackSource::Microphone,
            model: TrackModel::Audio(talk),
        }
    }

    pub fn camera() -> Self {
        TrackSpec {
            source: TrackSource::Camera,
            model: TrackModel::Camera {
                layers_kbps: vec![150, 500, 1500],
                fps: 30,
            },
        }
    }

    pub fn screen() -> Self {
        TrackSpec {
            source: TrackSource::ScreenVideo,
            model: TrackModel::Screen { kbps: 1500 },
        }
    }

    pub fn kind(&self) -> MediaKind {
        match self.model {
            TrackModel::Audio(_) => MediaKind::Audio,
            _ => MediaKind::Video,
        }
    }

    /// The rids this track sends, lowest first (none without simulcast).
    pub fn rids(&self) -> Vec<&'static str> {
        match &self.model {
            TrackModel::Camera { layers_kbps, .. } if layers_kbps.len() > 1 => {
                ["q", "h", "f"][..layers_kbps.len().min(3)].to_vec()
            }
            _ => Vec::new(),
        }
    }
}

/// A small, fast, seedable generator (xorshift64*).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }
}

/// Per-layer sending state.
#[derive(Debug)]
pub struct LayerState {
    pub rid: Option<Rid>,
    pub kbps: u32,
    pub seq: u64,
    pub counter: u64,
    pub ts: u32,
    pub key_pending: bool,
    pub last_key: Option<Instant>,
}

/// One packet to write: the payload is complete except for the send time,
/// which the writer stamps right before handing it to str0m.
#[derive(Debug)]
pub struct Packet {
    pub layer: usize,
    pub seq: u64,
    pub ts: u32,
    pub marker: bool,
    pub payload: Vec<u8>,
    pub audio_level: Option<i8>,
    pub nackable: bool,
    pub stamp: Stamp,
}

/// A track being sent.
#[derive(Debug)]
pub struct SendTrack {
    pub spec: TrackSpec,
    pub index: u8,
    pub layers: Vec<LayerState>,
    pub next_at: Instant,
    started: Instant,
    tick: u64,
    rng: Rng,
}

impl SendTrack {
    pub fn new(spec: TrackSpec, index: u8, sender: u32, now: Instant) -> Self {
        let mut rng = Rng::new((u64::from(sender) << 8) | u64::from(index));
        let rids = spec.rids();
        let kbps: Vec<u32> = match &spec.model {
            TrackModel::Audio(_) => vec![32],
            TrackModel::Camera { layers_kbps, .. } => layers_kbps.clone(),
            TrackModel::Screen { kbps } => vec![*kbps],
        };
        let layers = kbps
            .iter()
            .enumerate()
            .map(|(i, k)| LayerState {
                rid: rids.get(i).map(|r| Rid::from(*r)),
                kbps: *k,
                // Below 2^16: the receiver's SRTP rollover counter starts at 0.
                seq: rng.range(1, 30_000) as u64,
                counter: 0,
                ts: rng.next_u64() as u32,
                key_pending: true,
                last_key: None,
            })
            .collect();
        // Publishers' capture clocks are independent. Participants who join
        // together would otherwise send their frames, and their slide
        // changes, in lockstep: a periodic burst no real call makes.
        let interval = frame_interval(&spec.model);
        let phase = Duration::from_nanos(rng.range(0, interval.as_nanos() as usize - 1) as u64);
        let tick = match spec.model {
            TrackModel::Screen { .. } => rng.range(1, SLIDE_EVERY_FRAMES as usize - 1) as u64,
            _ => 0,
        };
        SendTrack {
            spec,
            index,
            layers,
            next_at: now + phase,
            started: now,
            tick,
            rng,
        }
    }

    fn interval(&self) -> Duration {
        frame_interval(&self.spec.model)
    }

    /// A keyframe was asked for on `layer` (or every layer).
    pub fn request_keyframe(&mut self, rid: Option<Rid>) {
        for l in &mut self.layers {
            if rid.is_none() || l.rid == rid {
                l.key_pending = true;
            }
        }
    }

    /// The packets due at `now` (one frame per layer at most), advancing
    /// the schedule. `sender` names the participant in the stamps.
    pub fn due(&mut self, now: Instant, sender: u32, out: &mut Vec<Packet>) {
        while self.next_at <= now {
            let tick = self.tick;
            self.tick += 1;
            self.next_at += self.interval();
            // Far behind (the generator stalled): skip rather than burst.
            if now.saturating_duration_since(self.next_at) > Duration::from_millis(200) {
                let behind = now.saturating_duration_since(self.next_at);
                let skip = (behind.as_nanos() / self.interval().as_nanos().max(1)) as u64;
                self.tick += skip;
                self.next_at += self.interval() * skip as u32;
            }
            match self.spec.model.clone() {
                TrackModel::Audio(talk) => self.audio(now, tick, talk, sender, out),
                TrackModel::Camera { fps, .. } => {
                    for li in 0..self.layers.len() {
                        self.video_frame(now, li, fps, sender, out);
                    }
                }
                TrackModel::Screen { .. } => self.screen_frame(now, tick, sender, out),
            }
        }
    }

    fn talking(&self, now: Instant, talk: Talk) -> bool {
        match talk {
            Talk::Continuous => true,
            Talk::Rotating { slot, index, count } => {
                let turn =
                    now.saturating_duration_since(self.started).as_nanos() / slot.as_nanos().max(1);
                (turn % u128::from(count.max(1))) as u32 == index
            }
        }
    }

    fn audio(&mut self, now: Instant, tick: u64, talk: Talk, sender: u32, out: &mut Vec<Packet>) {
        let talking = self.talking(now, talk);
        let l = &mut self.layers[0];
        l.ts = l.ts.wrapping_add(960);
        if !talking && !tick.is_multiple_of(DTX_EVERY) {
            return;
        }
        let size = if talking { self.rng.range(60, 120) } else { 3 }.max(STAMP_LEN);
        let mut payload = vec![0u8; size];
        payload[0] = 0xFC; // Opus TOC: SILK/CELT FB 20 ms, one frame
        out.push(packet(
            l,
            0,
            payload,
            true,
            Some(if talking { -30 } else { -127 }),
            false,
            sender,
            self.index,
        ));
    }

    fn video_frame(
        &mut self,
        now: Instant,
        li: usize,
        fps: u32,
        sender: u32,
        out: &mut Vec<Packet>,
    ) {
        let l = &mut self.layers[li];
        l.ts = l.ts.wrapping_add(90_000 / fps.max(1));
        let avg = (l.kbps as usize * 1000 / 8) / fps.max(1) as usize;
        let keyframe = l.key_pending
            && l.last_key
                .is_none_or(|t| now.saturating_duration_since(t) >= KEYFRAME_MIN_GAP);
        let size = if keyframe {
            l.key_pending = false;
            l.last_key = Some(now);
            avg * 6
        } else {
            self.rng.range(avg * 7 / 10, avg * 13 / 10)
        };
        vp8_frame(l, li, size, keyframe, sender, self.index, out);
    }

    fn screen_frame(&mut self, now: Instant, tick: u64, sender: u32, out: &mut Vec<Packet>) {
        let l = &mut self.layers[0];
        l.ts = l.ts.wrapping_add(90_000 / SCREEN_FPS);
        let keyframe = l.key_pending
            && l.last_key
                .is_none_or(|t| now.saturating_duration_since(t) >= KEYFRAME_MIN_GAP);
        let scale = l.kbps as usize;
        let size = if keyframe {
            l.key_pending = false;
            l.last_key = Some(now);
            SLIDE_BYTES * scale / 1500
        } else if tick.is_multiple_of(SLIDE_EVERY_FRAMES) {
            SLIDE_BYTES * scale / 1500
        } else {
            self.rng.range(6_000, 28_000) * scale / 1500
        };
        vp8_frame(l, 0, size, keyframe, sender, self.index, out);
    }
}

fn frame_interval(model: &TrackModel) -> Duration {
    match model {
        TrackModel::Audio(_) => AUDIO_FRAME,
        TrackModel::Camera { fps, .. } => Duration::from_secs(1) / (*fps).max(1),
        TrackModel::Screen { .. } => Duration::from_secs(1) / SCREEN_FPS,
    }
}

#[allow(clippy::too_many_arguments)]
fn packet(
    l: &mut LayerState,
    layer: usize,
    payload: Vec<u8>,
    marker: bool,
    audio_level: Option<i8>,
    nackable: bool,
    sender: u32,
    track: u8,
) -> Packet {
    let p = Packet {
        layer,
        seq: l.seq,
        ts: l.ts,
        marker,
        payload,
        audio_level,
        nackable,
        stamp: Stamp {
            sent_ns: 0,
            counter: l.counter,
            sender,
            track,
            layer: layer as u8,
        },
    };
    l.seq += 1;
    l.counter += 1;
    p
}

/// Splits a frame into VP8 packets: the first carries the payload
/// descriptor with S=1 and the payload header whose P bit marks a
/// keyframe (what an SFU looks at); the last carries the marker.
fn vp8_frame(
    l: &mut LayerState,
    li: usize,
    size: usize,
    keyframe: bool,
    sender: u32,
    track: u8,
    out: &mut Vec<Packet>,
) {
    let size = size.max(STAMP_LEN);
    let count = size.div_ceil(VIDEO_MTU_PAYLOAD);
    let each = size.div_ceil(count).max(STAMP_LEN);
    for i in 0..count {
        let len = if i + 1 == count {
            (size - each * i).max(STAMP_LEN)
        } else {
            each
        };
        let mut payload = vec![0u8; len];
        payload[0] = if i == 0 { 0x10 } else { 0x00 };
        payload[1] = if i == 0 && keyframe { 0x00 } else { 0x01 };
        out.push(packet(
            l,
            li,
            payload,
            i + 1 == count,
            None,
            true,
            sender,
            track,
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(spec: TrackSpec, secs: u64) -> Vec<Packet> {
        let t0 = Instant::now();
        let mut t = SendTrack::new(spec, 0, 1, t0);
        let mut out = Vec::new();
        let step = Duration::from_millis(5);
        let mut now = t0;
        while now < t0 + Duration::from_secs(secs) {
            t.due(now, 1, &mut out);
            now += step;
        }
        out
    }

    #[test]
    fn opus_talks_at_50_pps_and_dtx_at_2_5() {
        let talk = run(TrackSpec::mic(Talk::Continuous), 10);
        assert!((495..=505).contains(&talk.len()), "{}", talk.len());
        assert!(
            talk.iter()
                .all(|p| (60..=120).contains(&p.payload.len()) && p.marker)
        );
        let silent = run(
            TrackSpec::mic(Talk::Rotating {
                slot: Duration::from_secs(100),
                index: 1,
                count: 2,
            }),
            10,
        );
        assert!((24..=26).contains(&silent.len()), "{}", silent.len());
    }

    #[test]
    fn simulcast_layers_hit_their_bitrates_and_start_with_keyframes() {
        let pkts = run(TrackSpec::camera(), 10);
        for (li, kbps) in [150u64, 500, 1500].iter().enumerate() {
            let bytes: usize = pkts
                .iter()
                .filter(|p| p.layer == li)
                .map(|p| p.payload.len())
                .sum();
            let got = bytes as u64 * 8 / 10 / 1000;
            assert!(
                got >= kbps * 9 / 10 && got <= kbps * 12 / 10,
                "layer {li}: {got} kbps"
            );
        }
        let first = pkts.iter().find(|p| p.layer == 2).unwrap();
        assert_eq!(
            &first.payload[..2],
            &[0x10, 0x00],
            "first frame is a keyframe"
        );
        assert!(pkts.iter().all(|p| p.payload.len() <= VIDEO_MTU_PAYLOAD));
    }

    /// When each sender's first frame and first slide change after its
    /// opening keyframe go out, for senders all starting at `t0`.
    fn first_frame_and_slide(sender: u32) -> (Duration, Duration) {
        let t0 = Instant::now();
        let mut t = SendTrack::new(TrackSpec::screen(), 0, sender, t0);
        let (mut first, mut now, mut out) = (None, t0, Vec::new());
        loop {
            // A 1 ms step emits one whole frame at most.
            out.clear();
            t.due(now, sender, &mut out);
            let bytes: usize = out.iter().map(|p| p.payload.len()).sum();
            if bytes > 0 {
                match first {
                    // The opening keyframe is as big as a slide.
                    None => first = Some(now - t0),
                    Some(f) if bytes >= SLIDE_BYTES - VIDEO_MTU_PAYLOAD => return (f, now - t0),
                    Some(_) => {}
                }
            }
            now += Duration::from_millis(1);
        }
    }

    #[test]
    fn publishers_who_start_together_do_not_send_in_lockstep() {
        let (frames, slides): (Vec<_>, Vec<_>) = (1..=40).map(first_frame_and_slide).unzip();
        let spread = |v: &[Duration]| *v.iter().max().unwrap() - *v.iter().min().unwrap();
        // Over the 100 ms frame interval and the 3 s slide period, not
        // within the first fifth of either.
        assert!(spread(&frames) >= Duration::from_millis(80), "{frames:?}");
        assert!(
            spread(&slides) >= Duration::from_millis(2_400),
            "{slides:?}"
        );
        assert!(
            slides.iter().all(|s| *s <= Duration::from_secs(3)),
            "{slides:?}"
        );
    }

    #[test]
    fn screen_share_is_about_1_5_mbps() {
        let pkts = run(TrackSpec::screen(), 12);
        let bytes: usize = pkts.iter().map(|p| p.payload.len()).sum();
        let kbps = bytes * 8 / 12 / 1000;
        assert!((1300..=1800).contains(&kbps), "{kbps} kbps");
    }
}
