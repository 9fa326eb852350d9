//! Audio overtakes a large video fan-out: video goes out in slices of
//! subscriber writes, audio as soon as it arrives.
#![allow(clippy::disallowed_methods)]

mod common;

use std::time::Duration;

use common::{Net, opus, vp8};
use signaling::media::Permissions;
use signaling::rtcd::ToRtcd;
use str0m::media::{MediaKind, Mid};

const LISTENERS: usize = 40;
const SLICE: usize = 8;

/// Alice publishes audio and video to 40 receive-only listeners (clients
/// 1..=40); one packet of each has reached everyone.
fn large_call() -> (Net, Mid, Mid) {
    let mut net = Net::new();
    net.join(
        "alice",
        Permissions::PARTICIPANT,
        &[
            (MediaKind::Audio, None, None),
            (MediaKind::Video, None, None),
        ],
    );
    for i in 0..LISTENERS {
        net.join(&format!("listener-{i}"), Permissions::RECEIVE_ONLY, &[]);
    }
    net.connect_all();
    let audio = net.send_mid(0, MediaKind::Audio, 0);
    let video = net.send_mid(0, MediaKind::Video, 0);
    net.send(0, video, None, 100, 0, vp8(true, 0xAA, 0), None);
    net.send(0, audio, None, 100, 0, opus(0), Some(-30));
    net.advance(Duration::from_millis(20));
    for ci in listeners() {
        assert_eq!(
            net.received_payloads(ci, MediaKind::Video),
            [vp8(true, 0xAA, 0)]
        );
        assert_eq!(net.received_payloads(ci, MediaKind::Audio), [opus(0)]);
    }
    (net, audio, video)
}

fn listeners() -> std::ops::RangeInclusive<usize> {
    1..=LISTENERS
}

/// Alice writes one packet; her str0m sends it on its next timeout. Returns
/// how many datagrams she has sent since she was held.
fn write(net: &mut Net, mid: Mid, seq: u64, payload: Vec<u8>) -> usize {
    net.send(0, mid, None, seq, 3000 * seq as u32, payload, None);
    net.advance(Duration::from_millis(1));
    net.held_count()
}

fn has(net: &Net, ci: usize, kind: MediaKind, payload: &[u8]) -> bool {
    net.received_payloads(ci, kind).iter().any(|p| p == payload)
}

fn count_with(net: &Net, kind: MediaKind, payload: &[u8]) -> usize {
    listeners()
        .filter(|ci| has(net, *ci, kind, payload))
        .count()
}

#[test]
fn audio_arriving_during_a_video_fan_out_reaches_everyone_before_it_ends() {
    let (mut net, audio, video) = large_call();
    net.uplink_held = Some(0);
    let video_sent = write(&mut net, video, 101, vp8(false, 0xAA, 1));
    let audio_sent = write(&mut net, audio, 101, opus(1));
    assert!(video_sent >= 1 && audio_sent > video_sent);

    // The video packet arrives; its fan-out begins with one slice.
    for i in 0..video_sent {
        net.feed_one_held(i);
    }
    net.slice(SLICE);
    let video_early = count_with(&net, MediaKind::Video, &vp8(false, 0xAA, 1));
    assert_eq!(net.sfu.audio_unflushed_since(), None, "only video written");
    // Then the audio packet arrives, and what it wrote is released.
    for i in video_sent..audio_sent {
        net.feed_one_held(i);
    }
    net.drop_held();
    assert_eq!(
        net.sfu.audio_unflushed_since(),
        Some(net.now),
        "the driver learns how long the written audio has waited"
    );
    net.release();
    assert_eq!(net.sfu.audio_unflushed_since(), None);
    assert_eq!(
        count_with(&net, MediaKind::Audio, &opus(1)),
        LISTENERS,
        "audio reached every listener at once"
    );
    let video_then = count_with(&net, MediaKind::Video, &vp8(false, 0xAA, 1));
    assert!(
        video_then < LISTENERS,
        "audio waited for the video fan-out: {video_then} listeners had the video first"
    );
    assert_eq!(
        video_early, SLICE,
        "one slice reached {video_early} listeners"
    );

    // The rest of the video follows, once to each listener.
    while net.slice(SLICE) {}
    for ci in listeners() {
        assert_eq!(
            net.received_payloads(ci, MediaKind::Video),
            [vp8(true, 0xAA, 0), vp8(false, 0xAA, 1)],
            "listener {ci}"
        );
        assert_eq!(
            net.received_payloads(ci, MediaKind::Audio),
            [opus(0), opus(1)],
            "listener {ci}"
        );
    }
}

#[test]
fn video_keeps_its_order_across_slices_and_arrives_once() {
    let (mut net, audio, video) = large_call();
    net.uplink_held = Some(0);
    // Five video packets with audio between them.
    let mut sent = Vec::new();
    for i in 1..=5u32 {
        sent.push(write(&mut net, video, 100 + i as u64, vp8(false, 0xBB, i)));
        if i % 2 == 0 {
            sent.push(write(&mut net, audio, 100 + i as u64, opus(i)));
        }
    }
    // Datagrams arrive one by one, a slice of the backlog after each, as
    // the worker reads between slices; slices of 7 end mid-list.
    let mut fed = 0;
    let mut sliced = false;
    for upto in sent {
        for i in fed..upto {
            net.feed_one_held(i);
        }
        fed = upto;
        net.slice(7);
        let with_first = count_with(&net, MediaKind::Video, &vp8(false, 0xBB, 1));
        sliced |= with_first > 0 && with_first < LISTENERS;
    }
    net.drop_held();
    assert!(sliced, "the first packet never reached only some listeners");
    assert!(net.sfu.video_backlog() > 0, "video had caught up already");
    while net.slice(7) {}
    assert_eq!(net.sfu.video_backlog(), 0);
    let want: Vec<Vec<u8>> = std::iter::once(vp8(true, 0xAA, 0))
        .chain((1..=5).map(|i| vp8(false, 0xBB, i)))
        .collect();
    for ci in listeners() {
        assert_eq!(
            net.received_payloads(ci, MediaKind::Video),
            want,
            "listener {ci}"
        );
        assert_eq!(
            net.received_payloads(ci, MediaKind::Audio),
            [opus(0), opus(2), opus(4)],
            "listener {ci}"
        );
    }
}

#[test]
fn subscribers_and_publishers_leaving_mid_backlog_are_skipped() {
    let (mut net, _audio, video) = large_call();
    net.uplink_held = Some(0);
    for i in 1..=3u32 {
        write(&mut net, video, 100 + i as u64, vp8(false, 0xCC, i));
    }
    net.feed_held();
    net.slice(SLICE);
    // Listener 3 has the first packet, listener 20 not yet; both leave.
    let (done, waiting) = (3, 20);
    assert!(has(&net, done, MediaKind::Video, &vp8(false, 0xCC, 1)));
    assert!(!has(&net, waiting, MediaKind::Video, &vp8(false, 0xCC, 1)));
    for ci in [done, waiting] {
        let session_id = net.clients[ci].id.clone();
        let now = net.now;
        net.sfu.handle_command(
            now,
            ToRtcd::RemoveSession {
                session_id,
                request: None,
            },
        );
    }
    while net.slice(SLICE) {}
    let burst: Vec<Vec<u8>> = (1..=3).map(|i| vp8(false, 0xCC, i)).collect();
    for ci in listeners() {
        let got = net.received_payloads(ci, MediaKind::Video);
        let want: &[Vec<u8>] = match ci {
            _ if ci == done => &burst[..1],
            _ if ci == waiting => &[],
            _ => &burst,
        };
        assert_eq!(got[1..], *want, "listener {ci}");
    }

    // Alice leaves with two packets part way through their fan-out.
    net.uplink_held = Some(0);
    for i in 4..=5u32 {
        write(&mut net, video, 100 + i as u64, vp8(false, 0xCC, i));
    }
    net.feed_held();
    net.slice(SLICE);
    let forwarded = net.sfu.stats().forwarded_packets;
    let session_id = net.clients[0].id.clone();
    let now = net.now;
    net.sfu.handle_command(
        now,
        ToRtcd::RemoveSession {
            session_id,
            request: None,
        },
    );
    while net.slice(SLICE) {}
    assert_eq!(net.sfu.video_backlog(), 0);
    assert_eq!(
        net.sfu.stats().forwarded_packets,
        forwarded,
        "nothing of alice's went out after she left"
    );
    net.advance(Duration::from_millis(100));
    assert_eq!(
        count_with(&net, MediaKind::Video, &vp8(false, 0xCC, 4)),
        SLICE,
        "only the first slice had alice's 4th packet"
    );
    assert_eq!(count_with(&net, MediaKind::Video, &vp8(false, 0xCC, 5)), 0);
}

#[test]
fn a_sliced_fan_out_is_timed_from_arrival_to_its_last_write() {
    let (mut net, _audio, video) = large_call();
    let before = net.sfu.stats().video_fanout.clone();
    net.uplink_held = Some(0);
    write(&mut net, video, 101, vp8(false, 0xDD, 1));
    net.feed_held();
    // It waits 2 ms behind other work; then 40 listeners in slices of 8:
    // five slices, 3 ms apart. The clock starts at its arrival.
    net.now += Duration::from_millis(2);
    let mut slices = 1;
    while net.slice(SLICE) {
        slices += 1;
        net.now += Duration::from_millis(3);
    }
    assert_eq!(slices, LISTENERS / SLICE);
    assert_eq!(
        count_with(&net, MediaKind::Video, &vp8(false, 0xDD, 1)),
        LISTENERS
    );
    let after = &net.sfu.stats().video_fanout;
    assert_eq!(after.count, before.count + 1, "one packet, timed once");
    let took = after.sum - before.sum;
    assert!((took - 0.014).abs() < 1e-9, "timed {took} s, not 14 ms");
    let bucket = |h: &rtcd_core::Histogram| h.counts[7];
    assert_eq!(after.bounds[7], 0.025);
    assert_eq!(bucket(after), bucket(&before) + 1, "in the 10–25 ms bucket");
}
