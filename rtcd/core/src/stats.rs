//! Counters the driver turns into Prometheus metrics at scrape time. Plain
//! integers: one core runs on one thread, so no atomics on the packet path.

/// What a packet carried, for per-kind counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaClass {
    Audio = 0,
    Video = 1,
    /// STUN, DTLS, RTCP and anything that is not forwarded media.
    Other = 2,
}

impl MediaClass {
    pub const ALL: [MediaClass; 3] = [MediaClass::Audio, MediaClass::Video, MediaClass::Other];

    pub fn as_str(self) -> &'static str {
        match self {
            MediaClass::Audio => "audio",
            MediaClass::Video => "video",
            MediaClass::Other => "other",
        }
    }
}

/// Why something was dropped or refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// No session owns the source address and it is not STUN for one.
    UnknownSource,
    /// The session's WebRTC stack refused the datagram (bad STUN
    /// credentials, undecryptable SRTP, garbage).
    Rejected,
    /// Larger than any datagram rtcd accepts.
    Oversized,
    /// The publisher is muted (or its camera/screen is off) by control.
    Muted,
    /// The publisher lacks permission for this source.
    NotPermitted,
    /// A simulcast layer the subscriber is not receiving.
    LayerNotSelected,
    /// The subscriber cannot decode this codec.
    NoCodec,
    /// Malformed SDP from a client.
    BadSdp,
    /// Malformed ICE candidate from a client.
    BadCandidate,
}

impl DropReason {
    pub const ALL: [DropReason; 9] = [
        DropReason::UnknownSource,
        DropReason::Rejected,
        DropReason::Oversized,
        DropReason::Muted,
        DropReason::NotPermitted,
        DropReason::LayerNotSelected,
        DropReason::NoCodec,
        DropReason::BadSdp,
        DropReason::BadCandidate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::UnknownSource => "unknown_source",
            DropReason::Rejected => "rejected",
            DropReason::Oversized => "oversized",
            DropReason::Muted => "muted",
            DropReason::NotPermitted => "not_permitted",
            DropReason::LayerNotSelected => "layer_not_selected",
            DropReason::NoCodec => "no_codec",
            DropReason::BadSdp => "bad_sdp",
            DropReason::BadCandidate => "bad_candidate",
        }
    }
}

/// A fixed-bucket histogram (upper bounds inclusive), cheap to observe and
/// to merge across workers.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    pub bounds: &'static [f64],
    pub counts: Vec<u64>,
    pub sum: f64,
    pub count: u64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    pub fn observe(&mut self, v: f64) {
        if let Some(i) = self.bounds.iter().position(|b| v <= *b) {
            self.counts[i] += 1;
        }
        self.sum += v;
        self.count += 1;
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.sum += other.sum;
        self.count += other.count;
    }
}

pub const RTT_SECONDS: &[f64] = &[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];
pub const LOSS_RATIO: &[f64] = &[0.0, 0.001, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0];
pub const JITTER_SECONDS: &[f64] = &[0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25];
pub const FANOUT_SECONDS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
];

pub const CONNECT_SECONDS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Everything one core counts. Monotonic counters only grow; gauges are
/// current values.
#[derive(Debug, Clone, PartialEq)]
pub struct CoreStats {
    pub packets_in: [u64; 3],
    pub bytes_in: [u64; 3],
    /// Media packets written to subscribers, by class.
    pub forwarded_packets: [u64; 3],
    pub forwarded_bytes: [u64; 3],
    pub packets_out: u64,
    pub bytes_out: u64,
    pub dropped: [u64; DropReason::ALL.len()],
    pub nacks_received: u64,
    /// Subscriber video streams whose resend window was changed to follow
    /// their round trip.
    pub resend_window_changes: u64,
    pub keyframe_requests_forwarded: u64,
    pub keyframe_requests_suppressed: u64,
    /// Sessions given the time to release what was written to them: str0m
    /// sends a written packet only after such a pass, which costs per
    /// session, so forwarded packets per pass is what batching saves.
    pub release_passes: u64,
    pub sessions_created: u64,
    pub sessions_closed: u64,
    pub session_failures: u64,
    pub rtt: Histogram,
    pub loss: Histogram,
    pub jitter: Histogram,
    /// From a video packet's arrival to its last subscriber's write: what
    /// the backlog and the fan-out's length add to video.
    pub video_fanout: Histogram,
    /// From a session's creation (rtcd answered its offer) to its first
    /// ICE and DTLS connection: rtcd's share of the time a join takes.
    pub session_connect: Histogram,
    /// Gauges.
    pub sessions: u64,
    pub calls: u64,
}

impl Default for CoreStats {
    fn default() -> Self {
        CoreStats {
            packets_in: [0; 3],
            bytes_in: [0; 3],
            forwarded_packets: [0; 3],
            forwarded_bytes: [0; 3],
            packets_out: 0,
            bytes_out: 0,
            dropped: [0; DropReason::ALL.len()],
            nacks_received: 0,
            resend_window_changes: 0,
            keyframe_requests_forwarded: 0,
            keyframe_requests_suppressed: 0,
            release_passes: 0,
            sessions_created: 0,
            sessions_closed: 0,
            session_failures: 0,
            rtt: Histogram::new(RTT_SECONDS),
            loss: Histogram::new(LOSS_RATIO),
            jitter: Histogram::new(JITTER_SECONDS),
            video_fanout: Histogram::new(FANOUT_SECONDS),
            session_connect: Histogram::new(CONNECT_SECONDS),
            sessions: 0,
            calls: 0,
        }
    }
}

impl CoreStats {
    pub(crate) fn drop(&mut self, reason: DropReason) {
        self.dropped[reason as usize] += 1;
    }

    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped[reason as usize]
    }

    /// Adds another core's figures (for a node-wide view).
    pub fn merge(&mut self, o: &CoreStats) {
        fn add<const N: usize>(a: &mut [u64; N], b: &[u64; N]) {
            for (x, y) in a.iter_mut().zip(b) {
                *x += y;
            }
        }
        add(&mut self.packets_in, &o.packets_in);
        add(&mut self.bytes_in, &o.bytes_in);
        add(&mut self.forwarded_packets, &o.forwarded_packets);
        add(&mut self.forwarded_bytes, &o.forwarded_bytes);
        add(&mut self.dropped, &o.dropped);
        self.packets_out += o.packets_out;
        self.bytes_out += o.bytes_out;
        self.nacks_received += o.nacks_received;
        self.resend_window_changes += o.resend_window_changes;
        self.keyframe_requests_forwarded += o.keyframe_requests_forwarded;
        self.keyframe_requests_suppressed += o.keyframe_requests_suppressed;
        self.release_passes += o.release_passes;
        self.sessions_created += o.sessions_created;
        self.sessions_closed += o.sessions_closed;
        self.session_failures += o.session_failures;
        self.rtt.merge(&o.rtt);
        self.loss.merge(&o.loss);
        self.jitter.merge(&o.jitter);
        self.video_fanout.merge(&o.video_fanout);
        self.session_connect.merge(&o.session_connect);
        self.sessions += o.sessions;
        self.calls += o.calls;
    }
}
