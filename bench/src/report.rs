//! A run's figures: the JSON result, the terminal table, the SVG plot and
//! the dated section appended to `bench/RESULTS.md`.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

#[derive(Debug, Clone, Serialize, Default)]
pub struct Percentiles {
    pub count: u64,
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Percentiles {
    /// From a histogram of nanoseconds, in `unit` nanoseconds (1e3 → µs).
    pub fn from_ns(h: &hdrhistogram::Histogram<u64>, unit: f64) -> Self {
        if h.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            count: h.len(),
            p50: h.value_at_quantile(0.5) as f64 / unit,
            p99: h.value_at_quantile(0.99) as f64 / unit,
            p999: h.value_at_quantile(0.999) as f64 / unit,
            max: h.max() as f64 / unit,
        }
    }
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct SfuFigures {
    /// rtcd's CPU time in the window (process, or its threads in process).
    pub cpu_seconds: f64,
    /// rtcd's worker threads only, from its own /metrics.
    pub worker_cpu_seconds: f64,
    /// Share of one core rtcd used on average.
    pub cores_used: f64,
    pub cpu_s_per_million_forwarded: f64,
    pub worker_cpu_s_per_million_forwarded: f64,
    pub forwarded_packets: f64,
    pub forwarded_pps: f64,
    /// Payload bits per second forwarded.
    pub forwarded_bps: f64,
    /// Forwarded packets per second one fully used core would carry.
    pub pps_per_core: f64,
    pub ingress_pps: f64,
    pub rss_before_joins_mib: f64,
    pub rss_after_joins_mib: f64,
    pub rss_end_mib: f64,
    pub memory_per_participant_kib: f64,
    pub dropped: Vec<(String, f64)>,
    pub udp_recv_syscalls: f64,
    pub udp_send_syscalls: f64,
    /// rtcd's passes over a session to release what was written to it.
    pub release_passes: f64,
    /// Packets sent inside the window that the receivers got: counted the
    /// same way whatever the SFU (Janus has no forwarded-packet counter).
    pub delivered_packets: f64,
    pub delivered_pps: f64,
    pub cpu_s_per_million_delivered: f64,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct GeneratorFigures {
    pub cpu_seconds: f64,
    /// Of the cores the generator may use.
    pub cpu_share: f64,
    pub thread_busy: Vec<f64>,
    pub timer_late_p99_ms: f64,
    pub saturated: bool,
    pub rx_pps: f64,
    pub tx_pps: f64,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct JoinFigures {
    pub attempted: usize,
    pub connected: usize,
    pub failed: usize,
    /// Joins that should receive media (not a send-only publisher).
    pub expect_media: usize,
    pub connect_ms: Percentiles,
    /// Join request → first media packet received.
    pub first_media_ms: Percentiles,
    /// Where a join's time goes: request → the SFU's answer (signaling),
    /// answer → connected (ICE and DTLS), connected → first media.
    pub answer_ms: Percentiles,
    pub answer_to_connected_ms: Percentiles,
    pub connected_to_media_ms: Percentiles,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct Delivery {
    pub receivers: usize,
    pub expected_streams: usize,
    pub missing_streams: usize,
    pub missing_examples: Vec<String>,
    /// Packets received over the whole run, and lost (gaps not repaired).
    pub received_total: u64,
    pub lost_total: u64,
    pub window_received: u64,
    pub window_lost: u64,
    pub loss_pct: f64,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct Sample {
    /// Seconds since the window started (negative: before).
    pub t: f64,
    pub sfu_cpu_pct: f64,
    pub gen_cpu_pct: f64,
    pub rx_pps: f64,
    pub sfu_rss_mib: f64,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct RunResult {
    pub scenario: String,
    pub description: String,
    pub command: String,
    pub date: String,
    pub machine: String,
    pub rtcd_commit: String,
    pub rtcd: String,
    /// "rtcd", or "janus" for the peer SFU of `bench compare`.
    pub sfu_name: String,
    pub rtcd_workers: usize,
    pub batching: bool,
    pub pinning: String,
    /// How publishers put video on the wire: paced or as bursts.
    pub video_sending: String,
    pub calls: usize,
    pub participants: usize,
    pub publishers: usize,
    pub window_seconds: f64,
    pub sfu: SfuFigures,
    /// One-way delay through the SFU (send → receive, same clock), µs.
    pub delay_us: Percentiles,
    pub delay_audio_us: Percentiles,
    pub delay_video_us: Percentiles,
    /// Loopback UDP between two generator threads without an SFU, µs.
    pub baseline_us: Percentiles,
    /// delay − baseline p50.
    pub added_delay_us: Percentiles,
    /// How late a thread on the SFU's CPU woke from 1 ms naps before the
    /// run, µs: the machine's own stalls (see [`crate::stalls`]).
    pub stall_floor_us: Percentiles,
    pub join: JoinFigures,
    pub delivery: Delivery,
    pub generator: GeneratorFigures,
    pub timeline: Vec<Sample>,
    /// Per-second delay percentiles (µs) over the window.
    pub delay_timeline: Vec<(f64, f64, f64)>,
    /// Delay CDF: (µs, fraction ≤).
    pub delay_cdf: Vec<(f64, f64)>,
    pub valid: bool,
    pub warnings: Vec<String>,
}

fn fmt_num(x: f64) -> String {
    if x >= 1e9 {
        format!("{:.2} G", x / 1e9)
    } else if x >= 1e6 {
        format!("{:.2} M", x / 1e6)
    } else if x >= 1e4 {
        format!("{:.1} k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

impl RunResult {
    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(t, "== {} — {} ==", self.scenario, self.description);
        let row = |t: &mut String, k: &str, v: String| {
            let _ = writeln!(t, "  {k:<34} {v}");
        };
        if self.sfu_name == "janus" {
            row(&mut t, "SFU", self.rtcd.clone());
        } else {
            row(
                &mut t,
                "rtcd",
                format!(
                    "{} workers, batching {}, {}",
                    self.rtcd_workers,
                    if self.batching { "on" } else { "off" },
                    self.rtcd
                ),
            );
        }
        row(&mut t, "pinning", self.pinning.clone());
        row(&mut t, "video sending", self.video_sending.clone());
        row(
            &mut t,
            "calls / participants / publishers",
            format!(
                "{} / {} / {}",
                self.calls, self.participants, self.publishers
            ),
        );
        row(&mut t, "window", format!("{:.1} s", self.window_seconds));
        let s = &self.sfu;
        let janus = self.sfu_name == "janus";
        if !janus {
            row(
                &mut t,
                "forwarded",
                format!(
                    "{} pps, {}bit/s",
                    fmt_num(s.forwarded_pps),
                    fmt_num(s.forwarded_bps)
                ),
            );
        }
        row(
            &mut t,
            "SFU CPU",
            if janus {
                format!(
                    "{:.2} s ({:.0}% of a core)",
                    s.cpu_seconds,
                    s.cores_used * 100.0
                )
            } else {
                format!(
                    "{:.2} s ({:.0}% of a core); workers {:.2} s",
                    s.cpu_seconds,
                    s.cores_used * 100.0,
                    s.worker_cpu_seconds
                )
            },
        );
        if !janus {
            row(
                &mut t,
                "SFU CPU-s per million forwarded",
                format!(
                    "{:.2} (workers {:.2}) → {} pps per core{}",
                    s.cpu_s_per_million_forwarded,
                    s.worker_cpu_s_per_million_forwarded,
                    fmt_num(s.pps_per_core),
                    // An rtcd older than the counter reports no passes.
                    if s.release_passes > 0.0 {
                        format!(
                            "; {:.1} forwarded per release pass",
                            s.forwarded_packets / s.release_passes
                        )
                    } else {
                        String::new()
                    }
                ),
            );
        }
        row(
            &mut t,
            "delivered (receivers' count)",
            format!(
                "{} pps; SFU CPU-s per million delivered {:.2}",
                fmt_num(s.delivered_pps),
                s.cpu_s_per_million_delivered
            ),
        );
        row(
            &mut t,
            "loss",
            format!(
                "{:.4}% ({} of {} in window)",
                self.delivery.loss_pct,
                self.delivery.window_lost,
                self.delivery.window_received + self.delivery.window_lost
            ),
        );
        let d = &self.delay_us;
        row(
            &mut t,
            "one-way delay p50/p99/p99.9/max",
            format!(
                "{:.0} / {:.0} / {:.0} / {:.0} µs ({} pkts)",
                d.p50, d.p99, d.p999, d.max, d.count
            ),
        );
        let a = &self.added_delay_us;
        row(
            &mut t,
            "added delay p50/p99/p99.9",
            format!(
                "{:.0} / {:.0} / {:.0} µs (loopback baseline p50 {:.0} µs)",
                a.p50, a.p99, a.p999, self.baseline_us.p50
            ),
        );
        if self.stall_floor_us.count > 0 {
            let f = &self.stall_floor_us;
            row(
                &mut t,
                "stall floor (SFU CPU, before run)",
                format!(
                    "p99 / p99.9 / max {:.0} / {:.0} / {:.0} µs late from 1 ms naps",
                    f.p99, f.p999, f.max
                ),
            );
        }
        if self.delay_audio_us.count > 0 && self.delay_video_us.count > 0 {
            row(
                &mut t,
                "delay p99 audio / video",
                format!(
                    "{:.0} / {:.0} µs",
                    self.delay_audio_us.p99, self.delay_video_us.p99
                ),
            );
        }
        let j = &self.join;
        row(
            &mut t,
            "joins (ok/failed of attempted)",
            format!("{}/{} of {}", j.connected, j.failed, j.attempted),
        );
        row(
            &mut t,
            "join → connected p50/p99",
            format!("{:.1} / {:.1} ms", j.connect_ms.p50, j.connect_ms.p99),
        );
        row(
            &mut t,
            "join → first media p50/p99",
            format!(
                "{:.1} / {:.1} ms",
                j.first_media_ms.p50, j.first_media_ms.p99
            ),
        );
        if j.answer_ms.count > 0 {
            row(
                &mut t,
                "  answer; +connect; +media p50/p99",
                format!(
                    "{:.1}/{:.1}, +{:.1}/{:.1}, +{:.1}/{:.1} ms",
                    j.answer_ms.p50,
                    j.answer_ms.p99,
                    j.answer_to_connected_ms.p50,
                    j.answer_to_connected_ms.p99,
                    j.connected_to_media_ms.p50,
                    j.connected_to_media_ms.p99
                ),
            );
        }
        if s.memory_per_participant_kib > 0.0 {
            row(
                &mut t,
                "SFU memory per participant",
                format!(
                    "{:.0} KiB (RSS {:.0} → {:.0} → {:.0} MiB)",
                    s.memory_per_participant_kib,
                    s.rss_before_joins_mib,
                    s.rss_after_joins_mib,
                    s.rss_end_mib
                ),
            );
        }
        row(
            &mut t,
            "delivery",
            format!(
                "{} receivers, {} streams expected, {} missing",
                self.delivery.receivers,
                self.delivery.expected_streams,
                self.delivery.missing_streams
            ),
        );
        let g = &self.generator;
        row(
            &mut t,
            "generator CPU",
            format!(
                "{:.2} s ({:.0}% of its cores; threads {}), timer lateness p99 {:.1} ms{}",
                g.cpu_seconds,
                g.cpu_share * 100.0,
                g.thread_busy
                    .iter()
                    .map(|b| format!("{:.0}%", b * 100.0))
                    .collect::<Vec<_>>()
                    .join(" "),
                g.timer_late_p99_ms,
                if g.saturated { " — SATURATED" } else { "" }
            ),
        );
        if !s.dropped.is_empty() {
            row(
                &mut t,
                "SFU drops in window",
                s.dropped
                    .iter()
                    .map(|(k, v)| format!("{k}={v:.0}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            );
        }
        row(
            &mut t,
            "valid SFU figures",
            if self.valid {
                "yes".into()
            } else {
                "NO".into()
            },
        );
        for w in &self.warnings {
            let _ = writeln!(t, "  ! {w}");
        }
        t
    }

    /// One line for the RESULTS.md tables.
    pub fn markdown_row(&self) -> String {
        let s = &self.sfu;
        // Janus counts nothing it forwards: its row shows what the
        // receivers got instead.
        let (fwd_pps, fwd_cpu, per_core) = if self.sfu_name == "janus" {
            let per_core = if s.cpu_s_per_million_delivered > 0.0 {
                1e6 / s.cpu_s_per_million_delivered
            } else {
                0.0
            };
            (s.delivered_pps, s.cpu_s_per_million_delivered, per_core)
        } else {
            (
                s.forwarded_pps,
                s.cpu_s_per_million_forwarded,
                s.pps_per_core,
            )
        };
        format!(
            "| {} | {} | {}{} | {} | {:.0}% | {:.2} | {} | {:.3}% | {:.0} / {:.0} / {:.0} | {:.0} / {:.0} | {} | {:.0}%{} |",
            self.scenario,
            self.participants,
            self.rtcd_workers,
            if self.sfu_name == "janus" {
                " (Janus: forwarded = delivered)"
            } else if self.batching {
                ""
            } else {
                " (no batching)"
            },
            fmt_num(fwd_pps),
            s.cores_used * 100.0,
            fwd_cpu,
            fmt_num(per_core),
            self.delivery.loss_pct,
            self.added_delay_us.p50,
            self.added_delay_us.p99,
            self.added_delay_us.p999,
            self.join.first_media_ms.p50,
            self.join.first_media_ms.p99,
            if s.memory_per_participant_kib > 0.0 {
                format!("{:.0} KiB", s.memory_per_participant_kib)
            } else {
                "–".into()
            },
            self.generator.cpu_share * 100.0,
            if self.generator.saturated { " SAT" } else { "" },
        )
    }

    pub fn write_files(&self, dir: &Path, stem: &str) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(
            dir.join(format!("{stem}.json")),
            serde_json::to_string_pretty(self)?,
        )?;
        std::fs::write(dir.join(format!("{stem}.svg")), crate::plot::svg(self))?;
        Ok(())
    }
}

pub const MARKDOWN_HEADER: &str = "| scenario | participants | rtcd workers | forwarded pps | SFU CPU (of a core) | CPU-s / M fwd | pps per core | loss | added delay p50 / p99 / p99.9 µs | join→media p50 / p99 ms | SFU mem / participant | generator CPU |\n|---|---|---|---|---|---|---|---|---|---|---|---|";
