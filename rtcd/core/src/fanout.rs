//! Per-subscriber forwarding state: which simulcast layer a subscriber gets,
//! and the sequence-number/timestamp rewrite that keeps its stream
//! continuous across layer switches. The payload itself is shared
//! (`Arc<[u8]>`) by every subscriber; only this small state is per copy.

use std::time::Instant;

use signaling::media::VideoQuality;

/// Rewrites one incoming stream (which may switch between layers with
/// unrelated sequence numbers and timestamps) into one continuous outgoing
/// stream.
#[derive(Debug, Default)]
pub(crate) struct Rewriter {
    /// out = in + seq_offset (in the extended, 64-bit space).
    seq_offset: i64,
    ts_offset: u32,
    /// First incoming seq of the current layer; older packets are dropped.
    layer_first_seq: u64,
    last_out_seq: Option<u64>,
    last_out_ts: u32,
    last_out_at: Option<Instant>,
    clock_rate: u32,
}

impl Rewriter {
    pub fn new(clock_rate: u32) -> Self {
        Rewriter {
            clock_rate,
            ..Default::default()
        }
    }

    /// Starts a new source stream (first packet, or a layer switch on a
    /// keyframe) so that its first packet follows the last one sent.
    pub fn switch(&mut self, now: Instant, in_seq: u64, in_ts: u32) {
        let out_seq = match self.last_out_seq {
            Some(last) => last + 1,
            // Start with a zero rollover counter: str0m cannot signal another.
            None => in_seq & 0xFFFF,
        };
        self.seq_offset = out_seq as i64 - in_seq as i64;
        let out_ts = match self.last_out_at {
            Some(at) => {
                let elapsed = now.saturating_duration_since(at).as_secs_f64();
                let ticks = ((elapsed * self.clock_rate as f64) as u32).max(1);
                self.last_out_ts.wrapping_add(ticks)
            }
            None => in_ts,
        };
        self.ts_offset = out_ts.wrapping_sub(in_ts);
        self.layer_first_seq = in_seq;
    }

    /// The outgoing (seq, ts) for a packet of the current layer, or `None`
    /// for a late packet from before the last switch.
    pub fn rewrite(&mut self, now: Instant, in_seq: u64, in_ts: u32) -> Option<(u64, u32)> {
        if in_seq < self.layer_first_seq {
            return None;
        }
        let out_seq = (in_seq as i64 + self.seq_offset) as u64;
        let out_ts = in_ts.wrapping_add(self.ts_offset);
        if self.last_out_seq.is_none_or(|l| out_seq > l) {
            self.last_out_seq = Some(out_seq);
            self.last_out_ts = out_ts;
            self.last_out_at = Some(now);
        }
        Some((out_seq, out_ts))
    }

    pub fn started(&self) -> bool {
        self.last_out_seq.is_some()
    }
}

/// Orders simulcast layers from lowest to highest. Measured bitrate is the
/// truth once known; before that, common rid names give the order.
pub(crate) fn rank_layers(rids: &[Option<String>], bitrates: &[u64]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..rids.len()).collect();
    let measured = bitrates.iter().filter(|b| **b > 0).count() == rids.len() && rids.len() > 1;
    if measured {
        idx.sort_by_key(|i| bitrates[*i]);
    } else {
        idx.sort_by_key(|i| rid_rank(rids[*i].as_deref()));
    }
    idx
}

fn rid_rank(rid: Option<&str>) -> u8 {
    match rid.unwrap_or("") {
        "q" | "l" | "low" | "r0" | "0" => 0,
        "m" | "mid" | "r1" | "1" => 1,
        // "h" is the middle layer in the q/h/f convention; f ranks above it.
        "h" | "high" | "r2" | "2" => 2,
        "f" | "full" => 3,
        _ => 1,
    }
}

/// Which of the ranked layers a subscriber wants.
pub(crate) fn pick_layer(
    ranked: &[usize],
    active: &[bool],
    quality: VideoQuality,
) -> Option<usize> {
    let live: Vec<usize> = ranked.iter().copied().filter(|i| active[*i]).collect();
    if live.is_empty() {
        return None;
    }
    let pos = match quality {
        VideoQuality::Low => 0,
        VideoQuality::Medium => live.len() / 2,
        VideoQuality::High | VideoQuality::Auto => live.len() - 1,
    };
    Some(live[pos])
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn continuous_across_a_switch() {
        let t0 = Instant::now();
        let mut r = Rewriter::new(90_000);
        r.switch(t0, 70_000, 1000);
        assert_eq!(r.rewrite(t0, 70_000, 1000), Some((70_000 & 0xFFFF, 1000)));
        assert_eq!(r.rewrite(t0, 70_001, 1000), Some((4465, 1000)));
        // A gap (loss upstream) is kept so the subscriber can NACK it.
        assert_eq!(r.rewrite(t0, 70_003, 4000), Some((4467, 4000)));
        // Switch to another layer with unrelated numbering, 100 ms later.
        let t1 = t0 + Duration::from_millis(100);
        r.switch(t1, 5, 777);
        let (seq, ts) = r.rewrite(t1, 5, 777).unwrap();
        assert_eq!(seq, 4468);
        assert_eq!(ts, 4000 + 9000);
        // A late packet of the new layer from before the switch is dropped.
        assert_eq!(r.rewrite(t1, 4, 700), None);
    }

    #[test]
    fn layers_rank_by_bitrate_then_name() {
        let rids = vec![Some("f".to_string()), Some("h".into()), Some("q".into())];
        assert_eq!(rank_layers(&rids, &[0, 0, 0]), vec![2, 1, 0]);
        assert_eq!(rank_layers(&rids, &[100, 900, 50]), vec![2, 0, 1]);
        let ranked = rank_layers(&rids, &[0, 0, 0]);
        assert_eq!(pick_layer(&ranked, &[true; 3], VideoQuality::Low), Some(2));
        assert_eq!(pick_layer(&ranked, &[true; 3], VideoQuality::High), Some(0));
        assert_eq!(
            pick_layer(&ranked, &[false, true, true], VideoQuality::High),
            Some(1)
        );
        assert_eq!(pick_layer(&ranked, &[false; 3], VideoQuality::Auto), None);
    }
}
