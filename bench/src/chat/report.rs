//! A chat run's figures: the JSON result, the terminal table, the SVG plot
//! (delay CDF, rates and CPU over time) and the Markdown row and section
//! for `bench/RESULTS.md`.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use super::check::DeliveryCheck;
use crate::plot::{GAP, LEFT, PANEL_H, Panel, TOP, W, escape};
use crate::report::Percentiles;

#[derive(Debug, Clone, Serialize, Default)]
pub struct ChatSample {
    /// Seconds since the window started.
    pub t: f64,
    pub posts_accepted: f64,
    pub deliveries: f64,
    pub control_cpu_pct: f64,
    pub postgres_cpu_pct: f64,
    pub gen_cpu_pct: f64,
    pub control_rss_mib: f64,
    /// Delivery delay of the posts sent in this second, ms.
    pub delay_p50_ms: f64,
    pub delay_p99_ms: f64,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct ChatResult {
    pub date: String,
    pub machine: String,
    pub command: String,
    pub commit: String,
    pub control: String,
    pub database: String,
    pub pinning: String,
    pub clients: usize,
    /// "users" or "bots".
    pub accounts: String,
    pub connected: usize,
    pub connect_failed: usize,
    pub connect_errors: Vec<String>,
    pub channels: usize,
    pub channel_members: usize,
    pub target_posts_per_sec: f64,
    pub window_seconds: f64,
    pub setup_seconds: f64,
    pub connect_seconds: f64,
    pub posts_sent: usize,
    pub posts_accepted: usize,
    pub posts_failed: usize,
    pub post_errors: Vec<String>,
    /// Accepted posts over the posting window.
    pub accepted_per_sec: f64,
    /// HTTP post request → 201, ms.
    pub post_latency_ms: Percentiles,
    /// Post sent → event read by a member's socket, ms.
    pub delay_ms: Percentiles,
    pub deliveries_per_sec: f64,
    pub delivery: DeliveryCheck,
    pub control_cpu_seconds: f64,
    pub control_cores: f64,
    pub postgres_cores: f64,
    pub control_rss_before_mib: f64,
    pub control_rss_connected_mib: f64,
    pub control_rss_end_mib: f64,
    pub control_rss_per_client_kib: f64,
    pub gen_cpu_share: f64,
    pub gen_cores: usize,
    pub schedule_late_p99_ms: f64,
    pub saturated: bool,
    pub timeline: Vec<ChatSample>,
    /// Delay CDF: (ms, fraction ≤).
    pub delay_cdf: Vec<(f64, f64)>,
    pub valid: bool,
    pub warnings: Vec<String>,
}

impl ChatResult {
    pub fn table(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(
            t,
            "== chat — {} clients, {} posts/s into channels of {} ({}) ==",
            self.clients, self.target_posts_per_sec, self.channel_members, self.database
        );
        let mut row = |k: &str, v: String| {
            let _ = writeln!(t, "  {k:<34} {v}");
        };
        row("control", self.control.clone());
        row("pinning", self.pinning.clone());
        row(
            "set-up / connect",
            format!(
                "{:.0} s / {:.1} s",
                self.setup_seconds, self.connect_seconds
            ),
        );
        row(
            "clients connected (failed)",
            format!(
                "{} of {} ({}), {} channels",
                self.connected, self.clients, self.connect_failed, self.channels
            ),
        );
        row("window", format!("{:.1} s", self.window_seconds));
        row(
            "posts accepted / sent (failed)",
            format!(
                "{} / {} ({}) → {:.0} posts/s sustained",
                self.posts_accepted, self.posts_sent, self.posts_failed, self.accepted_per_sec
            ),
        );
        let l = &self.post_latency_ms;
        row(
            "post request p50/p99/max",
            format!("{:.1} / {:.1} / {:.1} ms", l.p50, l.p99, l.max),
        );
        let d = &self.delay_ms;
        row(
            "delivery delay p50/p99/p99.9/max",
            format!(
                "{:.1} / {:.1} / {:.1} / {:.1} ms ({} deliveries, {:.0}/s)",
                d.p50, d.p99, d.p999, d.max, d.count, self.deliveries_per_sec
            ),
        );
        let c = &self.delivery;
        row(
            "delivery check",
            format!(
                "{} of {} expected; missing {}, duplicates {}, out of order {}, foreign {}, closed early {} — {}",
                c.delivered,
                c.expected,
                c.missing,
                c.duplicates,
                c.out_of_order,
                c.foreign,
                c.closed_early,
                if c.ok() { "OK" } else { "FAILED" }
            ),
        );
        row(
            "control CPU",
            format!(
                "{:.1} s ({:.0}% of a core); PostgreSQL {:.0}% of a core",
                self.control_cpu_seconds,
                self.control_cores * 100.0,
                self.postgres_cores * 100.0
            ),
        );
        row(
            "control RSS",
            format!(
                "{:.0} → {:.0} → {:.0} MiB ({:.1} KiB per client)",
                self.control_rss_before_mib,
                self.control_rss_connected_mib,
                self.control_rss_end_mib,
                self.control_rss_per_client_kib
            ),
        );
        row(
            "generator CPU",
            format!(
                "{:.0}% of its {} core(s), schedule late p99 {:.1} ms{}",
                self.gen_cpu_share * 100.0,
                self.gen_cores,
                self.schedule_late_p99_ms,
                if self.saturated { " — SATURATED" } else { "" }
            ),
        );
        row("valid", if self.valid { "yes" } else { "NO" }.into());
        for e in self.post_errors.iter().chain(&self.connect_errors) {
            let _ = writeln!(t, "  ! {e}");
        }
        for e in &self.delivery.examples {
            let _ = writeln!(t, "  ! {e}");
        }
        for w in &self.warnings {
            let _ = writeln!(t, "  ! {w}");
        }
        t
    }

    pub fn markdown_row(&self) -> String {
        let c = &self.delivery;
        format!(
            "| {} | {} / {} | {} | {:.0} | {:.0} | {:.1} / {:.1} / {:.1} / {:.1} | {} | {:.0}% | {:.0}% | {:.1} KiB | {:.0}%{} |",
            self.database,
            self.connected,
            self.clients,
            self.channel_members,
            self.target_posts_per_sec,
            self.accepted_per_sec,
            self.delay_ms.p50,
            self.delay_ms.p99,
            self.delay_ms.p999,
            self.delay_ms.max,
            if c.ok() {
                "ok".to_string()
            } else {
                format!(
                    "missing {} dup {} order {} closed {}",
                    c.missing, c.duplicates, c.out_of_order, c.closed_early
                )
            },
            self.control_cores * 100.0,
            self.postgres_cores * 100.0,
            self.control_rss_per_client_kib,
            self.gen_cpu_share * 100.0,
            if self.saturated { " SAT" } else { "" },
        )
    }

    pub fn write_files(&self, dir: &Path, stem: &str) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(
            dir.join(format!("{stem}.json")),
            serde_json::to_string_pretty(self)?,
        )?;
        std::fs::write(dir.join(format!("{stem}.svg")), svg(self))?;
        Ok(())
    }
}

pub const MARKDOWN_HEADER: &str = "| database | clients connected | channel members | posts/s offered | posts/s accepted | delivery delay p50 / p99 / p99.9 / max ms | every post once, in order | control CPU (of a core) | PostgreSQL CPU | control RSS / client | generator CPU |\n|---|---|---|---|---|---|---|---|---|---|---|";

/// Three panels: delay CDF, rates over time, CPU over time.
pub fn svg(r: &ChatResult) -> String {
    let h = TOP + 3.0 * (PANEL_H + GAP) + 10.0;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" viewBox="0 0 {W} {h}"><rect width="100%" height="100%" fill="white"/>"##
    );
    let _ = writeln!(
        svg,
        r##"<text x="{LEFT}" y="20" font-size="15" font-weight="bold" font-family="sans-serif">chat — {} clients, {} posts/s, channels of {}, {} ({})</text>"##,
        r.clients,
        r.target_posts_per_sec,
        r.channel_members,
        escape(&r.database),
        escape(&r.date)
    );
    let cdf = &r.delay_cdf;
    let x_min = cdf.first().map_or(0.1, |p| p.0).max(0.01);
    let x_max = cdf.last().map_or(1.0, |p| p.0).max(x_min * 10.0);
    let p = Panel {
        y0: TOP,
        x_min,
        x_max,
        y_min: 0.0,
        y_max: 1.0,
        log_x: true,
    };
    p.frame(
        &mut svg,
        "Delivery delay, post sent → event read by each member (CDF)",
        "delay (ms, log scale)",
        "fraction of deliveries",
    );
    p.line(&mut svg, cdf, "#1f77b4", "every delivery", 0);

    let tl = &r.timeline;
    let t_max = tl.last().map_or(1.0, |s| s.t).max(1.0);
    let rate_max = tl
        .iter()
        .map(|s| s.deliveries.max(s.posts_accepted))
        .fold(10.0f64, f64::max)
        * 1.1;
    let p = Panel {
        y0: TOP + PANEL_H + GAP,
        x_min: 0.0,
        x_max: t_max,
        y_min: 0.0,
        y_max: rate_max,
        log_x: false,
    };
    p.frame(&mut svg, "Rates over time", "seconds", "per second");
    let accepted: Vec<(f64, f64)> = tl.iter().map(|s| (s.t, s.posts_accepted)).collect();
    let deliveries: Vec<(f64, f64)> = tl.iter().map(|s| (s.t, s.deliveries)).collect();
    p.line(&mut svg, &accepted, "#2ca02c", "posts accepted/s", 0);
    p.line(&mut svg, &deliveries, "#9467bd", "events delivered/s", 1);

    let cpu_max = tl
        .iter()
        .map(|s| s.control_cpu_pct.max(s.gen_cpu_pct).max(s.postgres_cpu_pct))
        .fold(100.0f64, f64::max);
    let p = Panel {
        y0: TOP + 2.0 * (PANEL_H + GAP),
        x_min: 0.0,
        x_max: t_max,
        y_min: 0.0,
        y_max: cpu_max,
        log_x: false,
    };
    p.frame(
        &mut svg,
        "CPU over time (100% = one core)",
        "seconds",
        "% of a core",
    );
    let line = |f: fn(&ChatSample) -> f64| tl.iter().map(|s| (s.t, f(s))).collect::<Vec<_>>();
    p.line(
        &mut svg,
        &line(|s| s.control_cpu_pct),
        "#d62728",
        "control",
        0,
    );
    p.line(
        &mut svg,
        &line(|s| s.gen_cpu_pct),
        "#2ca02c",
        "generator",
        1,
    );
    if r.database == "postgres" {
        p.line(
            &mut svg,
            &line(|s| s.postgres_cpu_pct),
            "#1f77b4",
            "PostgreSQL",
            2,
        );
    }
    svg.push_str("</svg>\n");
    svg
}
