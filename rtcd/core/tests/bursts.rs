//! A burst read in one go (a keyframe, a slide change) leaves for each
//! subscriber in slices: str0m's per-stream send queue keeps the capacity
//! of its longest run, so a burst queued whole would cost every subscriber
//! that much memory for the rest of the call.
#![allow(clippy::disallowed_methods)]

mod common;

use std::time::Duration;

use common::{Net, vp8};
use rtcd_core::FLUSH_AFTER_FORWARDS;
use str0m::media::MediaKind;

#[test]
fn a_burst_read_at_once_reaches_a_subscriber_in_slices() {
    let (mut net, video) = Net::camera_and_viewer(|_| {});
    // Alice's first frames arrive the usual way, so bob's stream is set up.
    let warmup = 5;
    for i in 0..warmup {
        net.send(
            0,
            video,
            None,
            100 + i as u64,
            3000 * i,
            vp8(i == 0, 0xCC, i),
            None,
        );
        net.advance(Duration::from_millis(20));
    }
    assert_eq!(
        net.received_payloads(1, MediaKind::Video).len(),
        warmup as usize
    );

    // A 40-packet frame reaches rtcd in one receive batch.
    let burst = 2 * FLUSH_AFTER_FORWARDS + 8;
    net.uplink_held = Some(0);
    for i in warmup..warmup + burst as u32 {
        let ts = 3000 * warmup;
        net.send(
            0,
            video,
            None,
            100 + i as u64,
            ts,
            vp8(false, 0xCC, i),
            None,
        );
        // Alice's str0m sends what was written on its next timeout.
        net.advance(Duration::from_millis(1));
    }
    let released = net.feed_held_as_one_batch(1);
    let sent: Vec<usize> = released.into_iter().filter(|n| *n > 0).collect();
    assert!(!sent.is_empty(), "nothing left before the driver's flush");
    // Released in slices of FLUSH_AFTER_FORWARDS packets, not one per
    // write and not all at the end (count the distinct totals).
    let mut totals = sent.clone();
    totals.dedup();
    assert_eq!(
        totals,
        vec![FLUSH_AFTER_FORWARDS, 2 * FLUSH_AFTER_FORWARDS],
        "released so far, after each write: {sent:?}"
    );
    // The driver's flush sends the rest; every packet arrives once.
    let now = net.now;
    net.sfu.flush(now);
    net.pump();
    let got = net.received_payloads(1, MediaKind::Video);
    let want: Vec<_> = (0..warmup + burst as u32)
        .map(|i| vp8(i == 0, 0xCC, i))
        .collect();
    assert_eq!(got, want);
}
