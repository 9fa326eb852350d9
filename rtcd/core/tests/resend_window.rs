//! The resend window: how long (and how many) video packets rtcd keeps per
//! subscriber stream to answer NACKs. A NACK inside the window is answered,
//! one after it is not, and the default window outlasts a slow round trip.
#![allow(clippy::disallowed_methods)]

mod common;

use std::time::Duration;

use common::{Net, Verdict, vp8};
use rtcd_core::CoreConfig;
use signaling::media::Permissions;
use str0m::media::MediaKind;

/// What happened to the one video packet lost on its way to bob.
struct Outcome {
    /// Bob has every frame in the end.
    recovered: bool,
    /// rtcd counted NACKs from bob (so a miss was not a NACK lost too).
    nacks_seen: u64,
}

/// Alice sends `frames` video frames, `gap` apart, to bob. The network
/// drops frame 5 to bob, and from then on holds bob's uplink (his NACKs
/// with it) for `nack_delay` before delivering it.
fn lose_one_frame(
    tune: impl FnOnce(&mut CoreConfig),
    frames: u32,
    gap: Duration,
    nack_delay: Duration,
) -> Outcome {
    let mut net = Net::with_config(tune);
    net.join(
        "alice",
        Permissions::PARTICIPANT,
        &[(MediaKind::Video, None, None)],
    );
    net.join("bob", Permissions::RECEIVE_ONLY, &[]);
    net.connect_all();
    let video = net.send_mid(0, MediaKind::Video, 0);
    let mut seen = 0;
    net.downlink_filter = Box::new(move |ci, bytes| {
        // SRTP (RTP version 2, not RTCP) of video size to bob.
        let rtcp = (192..=223).contains(&bytes[1]);
        if ci == 1 && bytes.len() > 30 && bytes[0] >> 6 == 2 && !rtcp {
            seen += 1;
            if seen == 6 {
                return Verdict::Drop;
            }
        }
        Verdict::Deliver
    });
    let mut held_since = None;
    for i in 0..frames {
        if i == 5 {
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
        net.advance(gap);
        if held_since.is_some_and(|t| net.now - t >= nack_delay) {
            net.release_uplink();
            held_since = None;
        }
    }
    if let Some(t) = held_since {
        net.advance(nack_delay.saturating_sub(net.now - t));
        net.release_uplink();
    }
    // Resends go out; then a stats interval passes so the NACK count shows.
    net.advance(Duration::from_secs(6));
    let mut got: Vec<u32> = net
        .received_payloads(1, MediaKind::Video)
        .iter()
        .map(|p| u32::from_be_bytes([p[3], p[4], p[5], p[6]]))
        .collect();
    got.sort();
    got.dedup();
    assert!(!got.contains(&frames), "no frame beyond those sent");
    Outcome {
        recovered: got == (0..frames).collect::<Vec<_>>(),
        nacks_seen: net.sfu.stats().nacks_received,
    }
}

fn window(ms: u64) -> impl FnOnce(&mut CoreConfig) {
    move |c| c.resend_window = Duration::from_millis(ms)
}

#[test]
fn a_nack_inside_the_window_is_answered() {
    let o = lose_one_frame(
        window(300),
        20,
        Duration::from_millis(30),
        Duration::from_millis(150),
    );
    assert!(o.recovered, "the lost frame was resent");
}

#[test]
fn a_nack_after_the_window_gets_nothing() {
    let o = lose_one_frame(
        window(300),
        20,
        Duration::from_millis(30),
        Duration::from_millis(600),
    );
    assert!(o.nacks_seen >= 1, "bob's NACK reached rtcd");
    assert!(!o.recovered, "a packet older than the window is gone");
}

#[test]
fn the_packet_cap_bounds_a_fast_stream_within_the_window() {
    // 40 frames 5 ms apart: the lost one is 35 packets old when the NACK
    // arrives 175 ms later, well inside 1 s but beyond 16 packets (str0m
    // starts each cache at 10 slots and grows it only up to the cap).
    let o = lose_one_frame(
        |c| c.resend_window_packets = 16,
        40,
        Duration::from_millis(5),
        Duration::from_millis(175),
    );
    assert!(o.nacks_seen >= 1, "bob's NACK reached rtcd");
    assert!(!o.recovered, "pushed out by newer packets");
}

#[test]
fn the_default_window_outlasts_a_slow_round_trip() {
    let defaults = CoreConfig::new(rtcd_core::generate_dtls_cert());
    assert_eq!(defaults.resend_window, rtcd_core::DEFAULT_RESEND_WINDOW);
    // NACKs 600 ms late (a 500 ms round trip and then some) still work.
    let o = lose_one_frame(
        |_| {},
        30,
        Duration::from_millis(30),
        Duration::from_millis(600),
    );
    assert!(o.recovered, "the lost frame was resent");
}
