//! rtcd against Janus: which scenarios both can run, and the table of
//! their figures and ratios that `bench compare` prints and appends to
//! RESULTS.md.
//!
//! Janus has no forwarded-packet counter, so both SFUs are measured by
//! what their receivers got of the packets sent inside the window
//! (`delivered`), against the SFU process's own CPU time.

use std::fmt::Write as _;

use crate::report::RunResult;
use crate::scenario::Scenario;

/// Why some scenarios are left out.
pub const JANUS_SCENARIOS: &str = "Janus runs the scenarios with listeners (large-call, large-call-screen, many-calls, join-storm, soak); a meeting needs publishers that also receive, and broadcast uses WHIP/WHEP";

pub fn janus_can_run(s: Scenario) -> bool {
    !matches!(s, Scenario::Meeting | Scenario::Broadcast)
}

/// The run did what the scenario asks: every join connected, every
/// expected stream arrived, packets flowed in the window.
pub fn worked(r: &RunResult) -> bool {
    r.join.attempted > 0
        && r.join.failed == 0
        && r.join.connected == r.join.attempted
        && r.delivery.missing_streams == 0
        && r.delivery.window_received > 0
}

fn ratio(num: f64, den: f64) -> String {
    if num > 0.0 && den > 0.0 {
        format!("×{:.2}", num / den)
    } else {
        "–".into()
    }
}

fn triple(a: f64, b: f64, c: f64) -> String {
    format!("{a:.0} / {b:.0} / {c:.0}")
}

/// Packets per second one fully used core would deliver.
fn per_cpu_second(r: &RunResult) -> f64 {
    if r.sfu.cpu_s_per_million_delivered > 0.0 {
        1e6 / r.sfu.cpu_s_per_million_delivered
    } else {
        0.0
    }
}

/// The comparison as Markdown: figures side by side, then ratios.
pub fn table(rtcd: &RunResult, janus: &RunResult) -> String {
    let mut t = String::new();
    let valid = |r: &RunResult| if r.valid { "yes" } else { "NO" };
    let _ = writeln!(
        t,
        "\nrtcd against Janus, {} ({}); SFU pinned to one core, generator to the other; packets counted at the receivers for both:\n",
        rtcd.scenario, rtcd.description
    );
    let _ = writeln!(
        t,
        "| figure | rtcd | Janus | rtcd vs Janus |\n|---|---|---|---|"
    );
    let mut row = |k: &str, a: String, b: String, r: String| {
        let _ = writeln!(t, "| {k} | {a} | {b} | {r} |");
    };
    let (rs, js) = (&rtcd.sfu, &janus.sfu);
    row(
        "SFU CPU-s per million delivered packets",
        format!("{:.2}", rs.cpu_s_per_million_delivered),
        format!("{:.2}", js.cpu_s_per_million_delivered),
        format!(
            "{} less CPU per packet",
            ratio(
                js.cpu_s_per_million_delivered,
                rs.cpu_s_per_million_delivered
            )
        ),
    );
    row(
        "delivered packets per SFU CPU-second",
        format!("{:.0}", per_cpu_second(rtcd)),
        format!("{:.0}", per_cpu_second(janus)),
        format!(
            "{} (target ≥ ×3)",
            ratio(per_cpu_second(rtcd), per_cpu_second(janus))
        ),
    );
    row(
        "delivered packets/s",
        format!("{:.0}", rs.delivered_pps),
        format!("{:.0}", js.delivered_pps),
        ratio(rs.delivered_pps, js.delivered_pps),
    );
    row(
        "SFU CPU (of a core)",
        format!("{:.0}%", rs.cores_used * 100.0),
        format!("{:.0}%", js.cores_used * 100.0),
        ratio(rs.cores_used, js.cores_used),
    );
    row(
        "loss",
        format!("{:.3}%", rtcd.delivery.loss_pct),
        format!("{:.3}%", janus.delivery.loss_pct),
        String::new(),
    );
    let (ra, ja) = (&rtcd.added_delay_us, &janus.added_delay_us);
    row(
        "added delay p50 / p99 / p99.9 µs",
        triple(ra.p50, ra.p99, ra.p999),
        triple(ja.p50, ja.p99, ja.p999),
        format!(
            "Janus's ÷ rtcd's: {} / {} / {}",
            ratio(ja.p50, ra.p50),
            ratio(ja.p99, ra.p99),
            ratio(ja.p999, ra.p999)
        ),
    );
    let (rj, jj) = (&rtcd.join.first_media_ms, &janus.join.first_media_ms);
    row(
        "join → first media p50 / p99 ms",
        format!("{:.0} / {:.0}", rj.p50, rj.p99),
        format!("{:.0} / {:.0}", jj.p50, jj.p99),
        format!(
            "Janus's ÷ rtcd's: {} / {}",
            ratio(jj.p50, rj.p50),
            ratio(jj.p99, rj.p99)
        ),
    );
    let kib = |v: f64| {
        if v > 0.0 {
            format!("{v:.0} KiB")
        } else {
            "not measured".into()
        }
    };
    row(
        "SFU memory per participant",
        kib(rs.memory_per_participant_kib),
        kib(js.memory_per_participant_kib),
        ratio(js.memory_per_participant_kib, rs.memory_per_participant_kib),
    );
    row(
        "valid SFU figures",
        valid(rtcd).into(),
        valid(janus).into(),
        String::new(),
    );
    if !rtcd.valid || !janus.valid {
        let _ = writeln!(
            t,
            "\nAt least one run is not valid (see its warnings): its figures were measured on a busy or saturated machine, and the ratios with them."
        );
    }
    t
}

/// Janus's CPU per delivered packet over rtcd's: how many times more
/// packets rtcd delivers per CPU-second. `None` when either has no figure.
fn cpu_ratio(rtcd: &RunResult, janus: &RunResult) -> Option<f64> {
    let (r, j) = (
        rtcd.sfu.cpu_s_per_million_delivered,
        janus.sfu.cpu_s_per_million_delivered,
    );
    (r > 0.0 && j > 0.0).then(|| j / r)
}

/// Several rounds of Janus then rtcd, one line each, and the median ratio
/// of the rounds in which both runs were valid. On a shared machine one
/// pair's ratio moves by a tenth or more from one minute to the next, so
/// the median of alternating rounds is the figure to quote.
pub fn rounds_summary(rounds: &[(RunResult, RunResult)]) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "\n{} rounds, Janus then rtcd in each; SFU CPU-s per million delivered packets:\n",
        rounds.len()
    );
    let _ = writeln!(t, "| round | rtcd | Janus | ratio | both valid |");
    let _ = writeln!(t, "|---|---|---|---|---|");
    let mut valid = Vec::new();
    for (i, (rtcd, janus)) in rounds.iter().enumerate() {
        let both = rtcd.valid && janus.valid;
        if both && let Some(r) = cpu_ratio(rtcd, janus) {
            valid.push(r);
        }
        let (r, j) = (
            rtcd.sfu.cpu_s_per_million_delivered,
            janus.sfu.cpu_s_per_million_delivered,
        );
        let _ = writeln!(
            t,
            "| {} | {r:.2} | {j:.2} | {} | {} |",
            i + 1,
            ratio(j, r),
            if both { "yes" } else { "NO" }
        );
    }
    valid.sort_by(f64::total_cmp);
    let _ = match median(&valid) {
        Some(m) => writeln!(
            t,
            "\nMedian ratio of the {} valid rounds: **×{m:.2}** (×{:.2}–×{:.2}; target ≥ ×3).",
            valid.len(),
            valid[0],
            valid[valid.len() - 1]
        ),
        None => writeln!(t, "\nNo round had two valid runs: no median ratio."),
    };
    t
}

/// The median of sorted values.
fn median(sorted: &[f64]) -> Option<f64> {
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(cpu_per_m: f64, pps: f64, valid: bool) -> RunResult {
        let mut r = RunResult {
            scenario: "large-call".into(),
            valid,
            ..Default::default()
        };
        r.sfu.cpu_s_per_million_delivered = cpu_per_m;
        r.sfu.delivered_pps = pps;
        r.join.attempted = 3;
        r.join.connected = 3;
        r.delivery.window_received = 10;
        r
    }

    #[test]
    fn ratios_compare_cpu_per_delivered_packet() {
        let t = table(&run(5.0, 30_000.0, true), &run(20.0, 29_000.0, true));
        assert!(t.contains("| SFU CPU-s per million delivered packets | 5.00 | 20.00 | ×4.00 less CPU per packet |"), "{t}");
        assert!(
            t.contains(
                "| delivered packets per SFU CPU-second | 200000 | 50000 | ×4.00 (target ≥ ×3) |"
            ),
            "{t}"
        );
        assert!(!t.contains("not valid"), "{t}");
        let t = table(&run(5.0, 30_000.0, false), &run(0.0, 0.0, true));
        assert!(t.contains("| 0 | – (target ≥ ×3) |"), "{t}");
        assert!(t.contains("not valid"), "{t}");
    }

    #[test]
    fn rounds_quote_the_median_of_the_valid_ones() {
        let rounds = vec![
            (run(10.0, 1.0, true), run(30.0, 1.0, true)),
            (run(10.0, 1.0, true), run(25.0, 1.0, true)),
            // A noisy round: left out of the median, still listed.
            (run(10.0, 1.0, false), run(90.0, 1.0, true)),
            (run(10.0, 1.0, true), run(32.0, 1.0, true)),
        ];
        let t = rounds_summary(&rounds);
        assert!(t.contains("| 3 | 10.00 | 90.00 | ×9.00 | NO |"), "{t}");
        assert!(
            t.contains("Median ratio of the 3 valid rounds: **×3.00** (×2.50–×3.20"),
            "{t}"
        );
        let t = rounds_summary(&rounds[..2]);
        assert!(t.contains("**×2.75**"), "{t}");
        let t = rounds_summary(&[(run(10.0, 1.0, false), run(30.0, 1.0, true))]);
        assert!(t.contains("No round had two valid runs"), "{t}");
    }

    #[test]
    fn a_run_works_only_if_every_join_and_stream_did() {
        assert!(worked(&run(1.0, 1.0, false)));
        let mut r = run(1.0, 1.0, true);
        r.delivery.missing_streams = 1;
        assert!(!worked(&r));
        let mut r = run(1.0, 1.0, true);
        r.join.connected = 2;
        assert!(!worked(&r));
        assert!(!janus_can_run(Scenario::Meeting));
        assert!(janus_can_run(Scenario::LargeCallScreen));
    }
}
