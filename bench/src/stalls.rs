//! How long the machine itself holds up a thread on the SFU's CPU.
//!
//! On a virtual machine the hypervisor takes a CPU away now and then for a
//! few milliseconds; the guest sees nothing but a thread that ran late.
//! Every packet in flight through the SFU at that moment is late by as
//! much, so such stalls set a floor under the delay percentiles that no SFU
//! can go below on that machine. Measured before the run, on the CPU the
//! SFU will be pinned to, by a thread that sleeps 1 ms at a time and
//! records how late it woke.

use std::time::Duration;

use crate::payload::clock;
use crate::procstat;
use crate::report::Percentiles;
use crate::worker::delay_histogram;

const NAP: Duration = Duration::from_millis(1);

/// Wake-up lateness (µs) over `span` on `cpus` (or wherever the thread
/// runs when `None`); all zero if the probe could not run.
pub fn measure(cpus: Option<Vec<usize>>, span: Duration) -> Percentiles {
    let probe = std::thread::spawn(move || {
        if let Some(cpus) = &cpus {
            procstat::pin_current(cpus).ok()?;
        }
        let mut h = delay_histogram();
        let end = clock() + span;
        loop {
            let before = clock();
            if before >= end {
                break;
            }
            std::thread::sleep(NAP);
            let late = clock().saturating_duration_since(before + NAP);
            let _ = h.record((late.as_nanos() as u64).max(1_000));
        }
        Some(h)
    });
    match probe.join() {
        Ok(Some(h)) => Percentiles::from_ns(&h, 1e3),
        _ => Percentiles::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_counts_every_nap_and_sees_no_negative_lateness() {
        let p = measure(None, Duration::from_millis(200));
        // At most 200 naps of 1 ms fit in 200 ms; a machine busy enough
        // to make the average nap 10 ms still gets 20.
        assert!((20..=200).contains(&p.count), "{} naps", p.count);
        assert!(p.p50 >= 1.0 && p.p50 <= p.p99 && p.p99 <= p.max);
    }
}
