//! Video packets waiting for their fan-out, and how far the oldest one got.
//!
//! A screen-share frame to hundreds of listeners is thousands of subscriber
//! writes; an audio packet that arrived meanwhile would wait for all of
//! them. So video goes out in slices the driver asks for
//! ([`crate::Sfu::forward_backlog`]) while audio is forwarded as it
//! arrives. One queue for every video track keeps each track's packets in
//! arrival order, which the rewriter and the layer switch at keyframes rely
//! on.

use std::collections::VecDeque;
use std::time::Instant;

use str0m::format::PayloadParams;
use str0m::media::Mid;

use crate::demux::SessionKey;
use crate::sfu::Forward;
use crate::stats::MediaClass;

/// What every write of one packet needs from its publisher's track, looked
/// up once per packet.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FanoutSource {
    pub class: MediaClass,
    pub simulcast: bool,
    pub in_params: PayloadParams,
}

/// The packet whose fan-out has begun.
#[derive(Debug)]
pub(crate) struct InProgress {
    pub forward: Forward,
    pub source: FanoutSource,
    /// Subscribers already handled, in `Backlog::subscribers`.
    pub next: usize,
}

#[derive(Debug, Default)]
pub(crate) struct Backlog {
    queue: VecDeque<Forward>,
    pub current: Option<InProgress>,
    /// The current packet's subscribers, copied when its fan-out began: the
    /// live list may change between slices, and an index into it would
    /// then skip or repeat a subscriber. Kept to reuse its memory.
    pub subscribers: Vec<(SessionKey, Mid)>,
}

impl Backlog {
    pub fn push(&mut self, f: Forward) {
        self.queue.push_back(f);
    }

    /// The next packet to begin, once the current one is done.
    pub fn next_packet(&mut self) -> Option<Forward> {
        debug_assert!(self.current.is_none());
        self.queue.pop_front()
    }

    /// Packets waiting, the one under way included.
    pub fn len(&self) -> usize {
        self.queue.len() + usize::from(self.current.is_some())
    }

    /// When the oldest waiting packet arrived.
    pub fn oldest(&self) -> Option<Instant> {
        self.current
            .as_ref()
            .map(|c| &c.forward)
            .or(self.queue.front())
            .map(|f| f.arrival)
    }
}
