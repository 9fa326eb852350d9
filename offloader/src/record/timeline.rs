//! The shared wall timeline: every frame of every track gets a wall time.
//!
//! A frame's RTP time says when it was sampled on the sender's clock; its
//! arrival says when it got here, late by the network delay plus jitter. The
//! least-delayed frame is the best witness of the sender clock's offset, so
//! each track is anchored on the smallest `arrival − rtp` seen within a few
//! blocks of [`ANCHOR_BLOCK_US`]; blocks follow slow clock drift over long calls.
//! A restarted bot announces new tracks, so it gets new anchors.
//!
//! Frames are ordered by RTP time (undoing reordering); a repeated RTP time
//! is a duplicate and dropped. Gaps stay gaps: the consumer fills them with
//! silence or a frozen picture, so nothing after a gap shifts.

use super::capture::{CapturedFrame, CapturedTrack};

/// The span over which one anchor holds.
pub const ANCHOR_BLOCK_US: i64 = 10_000_000;
/// Blocks on each side whose anchors a block shares.
const ANCHOR_SPREAD: usize = 3;

/// A frame with its place on the wall clock.
#[derive(Debug, Clone, Copy)]
pub struct TimedFrame<'a> {
    /// Unix µs on the shared wall clock.
    pub wall_us: i64,
    pub keyframe: bool,
    pub data: &'a [u8],
}

/// A track's frames in RTP order, each on the wall clock.
pub fn timed_frames(track: &CapturedTrack) -> Vec<TimedFrame<'_>> {
    let rate = i128::from(track.meta.clock_rate.max(1));
    let mut frames: Vec<&CapturedFrame> = track.frames.iter().collect();
    frames.sort_by_key(|f| f.rtp_time);
    frames.dedup_by_key(|f| f.rtp_time);
    let Some(first) = frames.first() else {
        return Vec::new();
    };
    let base = first.rtp_time;
    let rtp_us = |f: &CapturedFrame| ((i128::from(f.rtp_time - base)) * 1_000_000 / rate) as i64;

    // Per block (by sender time): the smallest delay seen in it.
    let mut anchors: Vec<i64> = Vec::new();
    for f in &frames {
        let t = rtp_us(f);
        let block = (t / ANCHOR_BLOCK_US) as usize;
        let delay = f.arrival_us as i64 - t;
        if anchors.len() <= block {
            anchors.resize(block + 1, i64::MAX);
        }
        anchors[block] = anchors[block].min(delay);
    }
    // A block without frames (a long gap) takes the anchor before it.
    let mut last = anchors
        .iter()
        .copied()
        .find(|&a| a != i64::MAX)
        .unwrap_or(0);
    for a in anchors.iter_mut() {
        if *a == i64::MAX {
            *a = last;
        } else {
            last = *a;
        }
    }
    // The least delay over neighbouring blocks: one block where no frame
    // came through quickly must not shift the track (the sender's clock did
    // not move), while a drift of 100 ppm stays within a few ms.
    let anchors: Vec<i64> = (0..anchors.len())
        .map(|i| {
            let lo = i.saturating_sub(ANCHOR_SPREAD);
            let hi = (i + ANCHOR_SPREAD + 1).min(anchors.len());
            anchors[lo..hi].iter().copied().min().unwrap_or(0)
        })
        .collect();
    frames
        .into_iter()
        .map(|f| {
            let t = rtp_us(f);
            TimedFrame {
                wall_us: t + anchors[(t / ANCHOR_BLOCK_US) as usize],
                keyframe: f.keyframe,
                data: &f.data,
            }
        })
        .collect()
}
