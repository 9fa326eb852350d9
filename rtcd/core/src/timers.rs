//! Deadlines of sessions, so only due sessions are woken.
//!
//! A session keeps at most one live entry: `scheduled` remembers the
//! deadline already in the heap, and a newer, later deadline is pushed only
//! when that entry fires. Stale entries (session gone) are skipped on pop.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

use crate::demux::SessionKey;

#[derive(Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<(Instant, SessionKey)>>,
}

impl Timers {
    /// Makes sure the session is woken no later than `at`. `scheduled` is
    /// the session's own record of its earliest entry.
    pub fn schedule(&mut self, key: SessionKey, at: Instant, scheduled: &mut Option<Instant>) {
        if scheduled.is_none_or(|s| at < s) {
            self.heap.push(Reverse((at, key)));
            *scheduled = Some(at);
        }
    }

    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((t, _))| *t)
    }

    /// Pops one entry due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<(Instant, SessionKey)> {
        match self.heap.peek() {
            Some(Reverse((t, _))) if *t <= now => self.heap.pop().map(|Reverse(e)| e),
            _ => None,
        }
    }
}
