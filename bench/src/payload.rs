//! What every generated RTP payload carries so a receiver can measure the
//! path through the SFU: the send time (nanoseconds on the monotonic clock
//! since the run's epoch, shared by every thread of the one generator
//! process), a per-stream counter (loss and reorder, independent of the
//! SFU's sequence-number rewriting) and which stream it belongs to.
//!
//! Layout, big-endian, after two codec bytes the SFU may inspect (VP8
//! payload descriptor and header, or an Opus TOC byte):
//!
//! ```text
//! 0      1      2..4    4..12     12..20   20..24  24     25     26..
//! codec  codec  magic   sent_ns   counter  sender  track  layer  filler
//! ```

use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

pub const STAMP_LEN: usize = 26;
const MAGIC: [u8; 2] = [0xB3, 0x4E];

/// The run's clock origin, fixed at first use.
pub fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(clock)
}

/// The one place the generator reads the clock.
pub fn clock() -> Instant {
    Instant::now()
}

/// Nanoseconds since [`epoch`].
pub fn ns_since_epoch(t: Instant) -> u64 {
    t.saturating_duration_since(epoch()).as_nanos() as u64
}

/// Puts the kernel's receive time of a datagram (wall clock) on the
/// generator's clock, so a receiver's delay ends when the datagram reached
/// its socket, not when a busy generator thread got round to reading it.
///
/// The wall clock and the monotonic clock run at the same rate (NTP slews
/// both alike); only a step of the wall clock moves one against the other,
/// so the offset is read again every interval.
#[derive(Debug, Clone, Copy)]
pub struct KernelTime {
    /// Wall clock minus [`ns_since_epoch`], in ns.
    offset_ns: i128,
}

impl KernelTime {
    pub fn new() -> Self {
        let mut k = KernelTime { offset_ns: 0 };
        k.resync();
        k
    }

    pub fn resync(&mut self) {
        let epoch = epoch();
        let mono = clock().saturating_duration_since(epoch).as_nanos();
        self.offset_ns = wall_ns(SystemTime::now()) - mono as i128;
    }

    /// `received` on the generator's clock; never after `now` (when it was
    /// read), which bounds what a wall-clock step can do to one sample.
    pub fn to_clock(&self, received: SystemTime, now: Instant) -> Instant {
        let ns = wall_ns(received) - self.offset_ns;
        let at = if ns >= 0 {
            epoch() + Duration::from_nanos(ns as u64)
        } else {
            let before = Duration::from_nanos(ns.unsigned_abs() as u64);
            epoch().checked_sub(before).unwrap_or_else(epoch)
        };
        at.min(now)
    }
}

impl Default for KernelTime {
    fn default() -> Self {
        Self::new()
    }
}

fn wall_ns(t: SystemTime) -> i128 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub sent_ns: u64,
    pub counter: u64,
    pub sender: u32,
    pub track: u8,
    pub layer: u8,
}

impl Stamp {
    /// Identifies a (sender, track) pair, whatever the layer.
    pub fn stream_key(&self) -> u64 {
        (u64::from(self.sender) << 8) | u64::from(self.track)
    }
}

/// Fills `buf` (at least [`STAMP_LEN`] bytes; the codec bytes are the
/// caller's) with the stamp and a cheap filler.
pub fn write(buf: &mut [u8], s: &Stamp) {
    buf[2..4].copy_from_slice(&MAGIC);
    buf[4..12].copy_from_slice(&s.sent_ns.to_be_bytes());
    buf[12..20].copy_from_slice(&s.counter.to_be_bytes());
    buf[20..24].copy_from_slice(&s.sender.to_be_bytes());
    buf[24] = s.track;
    buf[25] = s.layer;
    let fill = (s.counter as u8) ^ 0x5A;
    for b in &mut buf[STAMP_LEN..] {
        *b = fill;
    }
}

pub fn read(buf: &[u8]) -> Option<Stamp> {
    if buf.len() < STAMP_LEN || buf[2..4] != MAGIC {
        return None;
    }
    let u64_at = |at: usize| u64::from_be_bytes(buf[at..at + 8].try_into().expect("8 bytes"));
    Some(Stamp {
        sent_ns: u64_at(4),
        counter: u64_at(12),
        sender: u32::from_be_bytes(buf[20..24].try_into().expect("4 bytes")),
        track: buf[24],
        layer: buf[25],
    })
}

/// Loss, duplicates and reorder of one received stream, from the sender's
/// counters. A 128-packet window tells a late packet (reordered or
/// repaired by a retransmission) from a duplicate.
#[derive(Debug, Clone, Default)]
pub struct SeqTracker {
    started: bool,
    highest: u64,
    window: u128,
    pub received: u64,
    pub lost: i64,
    pub reordered: u64,
    pub duplicates: u64,
}

impl SeqTracker {
    pub fn observe(&mut self, counter: u64) {
        if !self.started {
            self.started = true;
            self.highest = counter;
            self.window = 1;
            self.received += 1;
            return;
        }
        if counter > self.highest {
            let shift = counter - self.highest;
            self.lost += (shift - 1) as i64;
            self.window = if shift >= 128 {
                1
            } else {
                (self.window << shift) | 1
            };
            self.highest = counter;
            self.received += 1;
            return;
        }
        let back = self.highest - counter;
        if back < 128 {
            let bit = 1u128 << back;
            if self.window & bit != 0 {
                self.duplicates += 1;
                return;
            }
            self.window |= bit;
        }
        // A packet counted lost when the gap opened has arrived after all.
        self.lost -= 1;
        self.reordered += 1;
        self.received += 1;
    }

    /// Forget the position (the SFU switched this receiver to another
    /// simulcast layer, whose counter is unrelated), keep the totals.
    pub fn restart(&mut self) {
        self.started = false;
    }

    pub fn lost(&self) -> u64 {
        self.lost.max(0) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_receive_times_land_on_the_generator_clock() {
        let k = KernelTime::new();
        let now = clock();
        let wall = SystemTime::now();
        // A datagram the kernel took 3 ms before it was read.
        let read_late = k.to_clock(
            wall - Duration::from_millis(3),
            now + Duration::from_millis(5),
        );
        let behind = (now + Duration::from_millis(5)).saturating_duration_since(read_late);
        assert!(
            behind >= Duration::from_millis(7) && behind < Duration::from_millis(9),
            "{behind:?}"
        );
        // Never after the moment it was read.
        let ahead = k.to_clock(wall + Duration::from_secs(60), now);
        assert_eq!(ahead, now);
    }

    #[test]
    fn stamps_round_trip() {
        let s = Stamp {
            sent_ns: 123_456_789_000,
            counter: 42,
            sender: 7,
            track: 2,
            layer: 1,
        };
        let mut buf = vec![0u8; 80];
        buf[0] = 0x10;
        write(&mut buf, &s);
        assert_eq!(buf[0], 0x10);
        assert_eq!(read(&buf), Some(s));
        assert_eq!(read(&buf[..10]), None);
        buf[2] = 0;
        assert_eq!(read(&buf), None);
    }

    #[test]
    fn gaps_late_packets_and_duplicates() {
        let mut t = SeqTracker::default();
        for c in [10, 11, 14, 12, 12, 15, 13] {
            t.observe(c);
        }
        assert_eq!(t.received, 6);
        assert_eq!(t.lost(), 0);
        assert_eq!(t.reordered, 2);
        assert_eq!(t.duplicates, 1);
        t.observe(20);
        assert_eq!(t.lost(), 4);
        t.restart();
        t.observe(1000);
        assert_eq!(t.lost(), 4);
        assert_eq!(t.received, 8);
    }
}
