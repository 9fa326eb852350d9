//! The resend window: how long (and how many) video packets rtcd keeps per
//! subscriber stream to answer NACKs. A NACK inside the window is answered,
//! one after it is not; the window starts short and grows with a
//! subscriber's round trip.
#![allow(clippy::disallowed_methods)]

mod common;

use std::time::Duration;

use common::{Net, Verdict, vp8};
use rtcd_core::CoreConfig;
use str0m::media::MediaKind;

/// What happened to the one video packet lost on its way to bob.
struct Outcome {
    /// Bob has every frame in the end.
    recovered: bool,
    /// rtcd counted NACKs from bob (so a miss was not a NACK lost too).
    nacks_seen: u64,
    /// Times rtcd resized a resend window to follow a round trip.
    window_changes: u64,
}

/// Alice sends video frames `gap` apart to bob; the network drops one of
/// them on its way to bob.
struct Loss {
    /// Frames sent before the lost one's run, so rtcd has seen bob's
    /// receiver reports (str0m reports stats every 5 s).
    warmup: u32,
    /// Frames after the warm-up; the sixth of them is lost.
    frames: u32,
    gap: Duration,
    /// From the loss on, bob's uplink (his NACKs with it) is held this long.
    nack_delay: Duration,
    /// Bob's datagrams to rtcd always arrive this late: his round trip.
    round_trip: Option<Duration>,
}

impl Loss {
    fn new(frames: u32, gap: Duration, nack_delay: Duration) -> Self {
        Loss {
            warmup: 0,
            frames,
            gap,
            nack_delay,
            round_trip: None,
        }
    }
}

fn lose_one_frame(tune: impl FnOnce(&mut CoreConfig), plan: Loss) -> Outcome {
    let (mut net, video) = Net::camera_and_viewer(tune);
    net.uplink_delay = plan.round_trip.map(|d| (1, d));
    let total = plan.warmup + plan.frames;
    let lost = plan.warmup + 5;
    let mut seen = 0;
    net.downlink_filter = Box::new(move |ci, bytes| {
        // SRTP (RTP version 2, not RTCP) of video size to bob.
        let rtcp = (192..=223).contains(&bytes[1]);
        if ci == 1 && bytes.len() > 30 && bytes[0] >> 6 == 2 && !rtcp {
            seen += 1;
            if seen == lost + 1 {
                return Verdict::Drop;
            }
        }
        Verdict::Deliver
    });
    let mut held_since = None;
    for i in 0..total {
        if i == lost && !plan.nack_delay.is_zero() {
            net.uplink_held = Some(1);
            held_since = Some(net.now);
        }
        net.send(
            0,
            video,
            None,
            100 + i as u64,
            3000 * i,
            vp8(i == 0, 0xBB, i),
            None,
        );
        net.advance(plan.gap);
        if held_since.is_some_and(|t| net.now - t >= plan.nack_delay) {
            net.release_uplink();
            held_since = None;
        }
    }
    if let Some(t) = held_since {
        net.advance(plan.nack_delay.saturating_sub(net.now - t));
        net.release_uplink();
    }
    // Resends go out; then a stats interval passes so the NACK count shows.
    net.advance(Duration::from_secs(6) + plan.round_trip.unwrap_or_default());
    let mut got: Vec<u32> = net
        .received_payloads(1, MediaKind::Video)
        .iter()
        .map(|p| u32::from_be_bytes([p[3], p[4], p[5], p[6]]))
        .collect();
    got.sort();
    got.dedup();
    assert!(!got.contains(&total), "no frame beyond those sent");
    let stats = net.sfu.stats();
    Outcome {
        recovered: got == (0..total).collect::<Vec<_>>(),
        nacks_seen: stats.nacks_received,
        window_changes: stats.resend_window_changes,
    }
}

/// Every stream keeps `ms`, whatever the round trip.
fn fixed_window(ms: u64) -> impl FnOnce(&mut CoreConfig) {
    move |c| {
        c.resend_window = Duration::from_millis(ms);
        c.resend_window_min = Duration::from_millis(ms);
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn a_nack_inside_the_window_is_answered() {
    let o = lose_one_frame(fixed_window(300), Loss::new(20, ms(30), ms(150)));
    assert!(o.recovered, "the lost frame was resent");
}

#[test]
fn a_nack_after_the_window_gets_nothing() {
    let o = lose_one_frame(fixed_window(300), Loss::new(20, ms(30), ms(600)));
    assert!(o.nacks_seen >= 1, "bob's NACK reached rtcd");
    assert!(!o.recovered, "a packet older than the window is gone");
}

#[test]
fn the_packet_cap_bounds_a_fast_stream_within_the_window() {
    // 40 frames 5 ms apart: the lost one is 35 packets old when the NACK
    // arrives 175 ms later, inside the 250 ms a stream starts with but
    // beyond 16 packets (str0m starts each cache at 10 slots and grows it
    // only up to the cap).
    let o = lose_one_frame(
        |c| c.resend_window_packets = 16,
        Loss::new(40, ms(5), ms(175)),
    );
    assert!(o.nacks_seen >= 1, "bob's NACK reached rtcd");
    assert!(!o.recovered, "pushed out by newer packets");
}

/// 11 s of frames 30 ms apart: two stats intervals.
const WARMUP: u32 = 370;

#[test]
fn a_nearby_subscriber_keeps_the_short_window() {
    let defaults = CoreConfig::new(rtcd_core::generate_dtls_cert());
    assert_eq!(defaults.resend_window, rtcd_core::DEFAULT_RESEND_WINDOW);
    assert_eq!(
        defaults.resend_window_min,
        rtcd_core::DEFAULT_RESEND_WINDOW_MIN
    );
    // Bob's round trip is ~0: after his reports the window stays at the
    // floor, and a NACK held 400 ms finds nothing.
    let o = lose_one_frame(
        |_| {},
        Loss {
            warmup: WARMUP,
            ..Loss::new(20, ms(30), ms(400))
        },
    );
    assert_eq!(o.window_changes, 0);
    assert!(o.nacks_seen >= 1, "bob's NACK reached rtcd");
    assert!(!o.recovered, "the floor is all a nearby subscriber keeps");
}

/// Bob is 350 ms away (his NACK reaches rtcd ~380 ms after the lost
/// packet left, past the 250 ms floor).
fn far_bob() -> Loss {
    Loss {
        warmup: WARMUP,
        round_trip: Some(ms(350)),
        ..Loss::new(20, ms(30), Duration::ZERO)
    }
}

#[test]
fn a_far_subscriber_gets_a_window_for_his_round_trip() {
    let o = lose_one_frame(|_| {}, far_bob());
    assert_eq!(o.window_changes, 1, "grown once, to the ceiling");
    assert!(o.recovered, "the lost frame was resent");
}

#[test]
fn a_far_subscriber_misses_out_with_a_fixed_floor() {
    // The same loss with the window held at the floor: what the round
    // trip bought in the test above.
    let o = lose_one_frame(fixed_window(250), far_bob());
    assert_eq!(o.window_changes, 0);
    assert!(o.nacks_seen >= 1, "bob's NACK reached rtcd");
    assert!(!o.recovered, "past the 250 ms window");
}
