//! A small SVG plot of a run, written by hand (no font or graphics
//! libraries): the one-way delay CDF on a log axis, CPU of the SFU and the
//! generator over time, and the received packet rate over time.

use std::fmt::Write as _;

use crate::report::RunResult;

pub(crate) const W: f64 = 900.0;
pub(crate) const PANEL_H: f64 = 220.0;
pub(crate) const LEFT: f64 = 70.0;
pub(crate) const RIGHT: f64 = 20.0;
pub(crate) const TOP: f64 = 62.0;
pub(crate) const GAP: f64 = 60.0;

pub(crate) struct Panel {
    pub y0: f64,
    pub x_min: f64,
    pub x_max: f64,
    pub y_min: f64,
    pub y_max: f64,
    pub log_x: bool,
}

impl Panel {
    fn x(&self, v: f64) -> f64 {
        let (a, b, v) = if self.log_x {
            (
                self.x_min.log10(),
                self.x_max.log10(),
                v.max(self.x_min).log10(),
            )
        } else {
            (self.x_min, self.x_max, v)
        };
        LEFT + (v - a) / (b - a).max(1e-9) * (W - LEFT - RIGHT)
    }

    fn y(&self, v: f64) -> f64 {
        self.y0 + PANEL_H - (v - self.y_min) / (self.y_max - self.y_min).max(1e-9) * PANEL_H
    }

    pub(crate) fn frame(&self, svg: &mut String, title: &str, x_label: &str, y_label: &str) {
        let _ = writeln!(
            svg,
            r##"<rect x="{LEFT}" y="{}" width="{}" height="{PANEL_H}" fill="none" stroke="#888"/>"##,
            self.y0,
            W - LEFT - RIGHT
        );
        let _ = writeln!(
            svg,
            r##"<text x="{LEFT}" y="{}" font-size="14" font-family="sans-serif">{title}</text>"##,
            self.y0 - 8.0
        );
        let _ = writeln!(
            svg,
            r##"<text x="{}" y="{}" font-size="11" font-family="sans-serif" text-anchor="middle">{x_label}</text>"##,
            (LEFT + W - RIGHT) / 2.0,
            self.y0 + PANEL_H + 32.0
        );
        let _ = writeln!(
            svg,
            r##"<text x="14" y="{}" font-size="11" font-family="sans-serif" transform="rotate(-90 14 {})" text-anchor="middle">{y_label}</text>"##,
            self.y0 + PANEL_H / 2.0,
            self.y0 + PANEL_H / 2.0
        );
        // Ticks: 5 on y, decades or 6 on x.
        for i in 0..=4 {
            let v = self.y_min + (self.y_max - self.y_min) * i as f64 / 4.0;
            let y = self.y(v);
            let _ = writeln!(
                svg,
                r##"<line x1="{LEFT}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#eee"/><text x="{}" y="{:.1}" font-size="10" font-family="sans-serif" text-anchor="end">{}</text>"##,
                W - RIGHT,
                LEFT - 4.0,
                y + 3.0,
                tick(v)
            );
        }
        let xs: Vec<f64> = if self.log_x {
            let mut v = Vec::new();
            let mut d = 10f64.powf(self.x_min.log10().floor());
            while d <= self.x_max {
                if d >= self.x_min {
                    v.push(d);
                }
                d *= 10.0;
            }
            v
        } else {
            (0..=6)
                .map(|i| self.x_min + (self.x_max - self.x_min) * i as f64 / 6.0)
                .collect()
        };
        for v in xs {
            let x = self.x(v);
            let _ = writeln!(
                svg,
                r##"<line x1="{x:.1}" y1="{}" x2="{x:.1}" y2="{}" stroke="#eee"/><text x="{x:.1}" y="{}" font-size="10" font-family="sans-serif" text-anchor="middle">{}</text>"##,
                self.y0,
                self.y0 + PANEL_H,
                self.y0 + PANEL_H + 14.0,
                tick(v)
            );
        }
    }

    pub(crate) fn line(
        &self,
        svg: &mut String,
        pts: &[(f64, f64)],
        color: &str,
        label: &str,
        slot: usize,
    ) {
        if pts.is_empty() {
            return;
        }
        let d: Vec<String> = pts
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", self.x(*x), self.y(*y)))
            .collect();
        let _ = writeln!(
            svg,
            r##"<polyline fill="none" stroke="{color}" stroke-width="1.8" points="{}"/>"##,
            d.join(" ")
        );
        let lx = W - RIGHT - 200.0;
        let ly = self.y0 + 16.0 + slot as f64 * 16.0;
        let _ = writeln!(
            svg,
            r##"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{color}" stroke-width="3"/><text x="{}" y="{}" font-size="11" font-family="sans-serif">{label}</text>"##,
            lx + 20.0,
            lx + 26.0,
            ly + 4.0
        );
    }
}

fn tick(v: f64) -> String {
    if v.abs() >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v.abs() >= 1e3 {
        format!("{:.0}k", v / 1e3)
    } else if v.abs() >= 10.0 || v == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

pub(crate) fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

pub fn svg(r: &RunResult) -> String {
    let h = TOP + 3.0 * (PANEL_H + GAP) + 10.0;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" viewBox="0 0 {W} {h}"><rect width="100%" height="100%" fill="white"/>"##
    );
    let _ = writeln!(
        svg,
        r##"<text x="{LEFT}" y="20" font-size="15" font-weight="bold" font-family="sans-serif">{} — {} ({})</text>"##,
        escape(&r.scenario),
        escape(&r.description),
        escape(&r.date)
    );

    // 1. Delay CDF.
    let cdf = &r.delay_cdf;
    let x_min = cdf.first().map_or(1.0, |p| p.0).max(1.0);
    let x_max = cdf.last().map_or(10.0, |p| p.0).max(x_min * 10.0);
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
        "One-way delay through the SFU (CDF)",
        "delay (µs, log scale)",
        "fraction of packets",
    );
    p.line(&mut svg, cdf, "#1f77b4", "all packets", 0);

    // 2. CPU over time.
    let tl = &r.timeline;
    let t_min = tl.first().map_or(0.0, |s| s.t);
    let t_max = tl.last().map_or(1.0, |s| s.t).max(t_min + 1.0);
    let cpu_max = tl
        .iter()
        .map(|s| s.sfu_cpu_pct.max(s.gen_cpu_pct))
        .fold(100.0f64, f64::max);
    let p = Panel {
        y0: TOP + PANEL_H + GAP,
        x_min: t_min,
        x_max: t_max,
        y_min: 0.0,
        y_max: cpu_max,
        log_x: false,
    };
    p.frame(
        &mut svg,
        "CPU over time (100% = one core; window starts at 0)",
        "seconds",
        "% of a core",
    );
    let sfu: Vec<(f64, f64)> = tl.iter().map(|s| (s.t, s.sfu_cpu_pct)).collect();
    let gen_cpu: Vec<(f64, f64)> = tl.iter().map(|s| (s.t, s.gen_cpu_pct)).collect();
    p.line(&mut svg, &sfu, "#d62728", "rtcd", 0);
    p.line(&mut svg, &gen_cpu, "#2ca02c", "generator", 1);

    // 3. Packet rate over time.
    let pps_max = tl.iter().map(|s| s.rx_pps).fold(10.0f64, f64::max) * 1.1;
    let p = Panel {
        y0: TOP + 2.0 * (PANEL_H + GAP),
        x_min: t_min,
        x_max: t_max,
        y_min: 0.0,
        y_max: pps_max,
        log_x: false,
    };
    p.frame(
        &mut svg,
        "Packets received by the simulated participants per second",
        "seconds",
        "packets/s",
    );
    let pps: Vec<(f64, f64)> = tl.iter().map(|s| (s.t, s.rx_pps)).collect();
    p.line(&mut svg, &pps, "#9467bd", "received pps", 0);
    svg.push_str("</svg>\n");
    svg
}
