//! `/metrics`: built at scrape time from the workers' snapshots, so the
//! packet path only bumps plain integers on its own thread.

use std::sync::atomic::Ordering;

use prometheus::{
    Encoder, GaugeVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder, proto,
};
use rtcd_core::{DropReason, MediaClass};

use crate::node::Node;

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

/// A counter without labels, set to `value`.
fn unlabelled(r: &Registry, name: &str, help: &str, value: u64) {
    counter(r, name, help, &[])
        .with_label_values(&[] as &[&str])
        .inc_by(value);
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

/// A histogram family straight from merged bucket counts: cumulative
/// buckets, and the true sum and count (observations above the last bound
/// count only towards +Inf).
fn histogram(name: &str, help: &str, h: &rtcd_core::Histogram) -> proto::MetricFamily {
    let mut cumulative = 0;
    let buckets = h
        .bounds
        .iter()
        .zip(&h.counts)
        .map(|(bound, n)| {
            cumulative += n;
            let mut b = proto::Bucket::default();
            b.set_upper_bound(*bound);
            b.set_cumulative_count(cumulative);
            b
        })
        .collect();
    let mut hist = proto::Histogram::default();
    hist.set_sample_count(h.count);
    hist.set_sample_sum(h.sum);
    hist.set_bucket(buckets);
    let mut m = proto::Metric::default();
    m.set_histogram(hist);
    let mut f = proto::MetricFamily::default();
    f.set_name(format!("rtcd_{name}"));
    f.set_help(help.into());
    f.set_field_type(proto::MetricType::HISTOGRAM);
    f.set_metric(vec![m]);
    f
}

pub fn render(node: &Node) -> String {
    let r = Registry::new_custom(Some("rtcd".into()), None).expect("valid registry");
    let snaps = node.snapshots();
    let mut total = rtcd_core::CoreStats::default();
    for s in &snaps {
        total.merge(&s.core);
    }

    gauge(&r, "sessions", "Sessions on this node.").set(total.sessions as i64);
    gauge(&r, "calls", "Calls on this node.").set(node.call_count() as i64);
    gauge(&r, "draining", "1 while the node drains.").set(node.is_draining() as i64);
    gauge(&r, "control_connections", "Connected control nodes.").set(node.conn_count() as i64);
    gauge(&r, "ice_tcp_connections", "Open ICE-TCP connections.").set(node.tcp.len() as i64);

    let pin = counter(
        &r,
        "packets_in_total",
        "Packets received, by kind (other = STUN, DTLS, RTCP).",
        &["kind"],
    );
    let bin = counter(&r, "bytes_in_total", "Bytes received, by kind.", &["kind"]);
    let fwd = counter(
        &r,
        "forwarded_packets_total",
        "Media packets forwarded to subscribers, by kind.",
        &["kind"],
    );
    let fwdb = counter(
        &r,
        "forwarded_bytes_total",
        "Media payload bytes forwarded, by kind.",
        &["kind"],
    );
    for c in MediaClass::ALL {
        let i = c as usize;
        // The core counts every datagram as "other" on arrival and media
        // again by kind once decrypted; report other = all - media.
        let (p, b) = if c == MediaClass::Other {
            (
                total.packets_in[i].saturating_sub(total.packets_in[0] + total.packets_in[1]),
                total.bytes_in[i].saturating_sub(total.bytes_in[0] + total.bytes_in[1]),
            )
        } else {
            (total.packets_in[i], total.bytes_in[i])
        };
        pin.with_label_values(&[c.as_str()]).inc_by(p);
        bin.with_label_values(&[c.as_str()]).inc_by(b);
        fwd.with_label_values(&[c.as_str()])
            .inc_by(total.forwarded_packets[i]);
        fwdb.with_label_values(&[c.as_str()])
            .inc_by(total.forwarded_bytes[i]);
    }
    unlabelled(
        &r,
        "packets_out_total",
        "Datagrams sent.",
        total.packets_out,
    );
    unlabelled(&r, "bytes_out_total", "Bytes sent.", total.bytes_out);
    let dropped = counter(
        &r,
        "dropped_total",
        "Packets and requests dropped or refused, by reason.",
        &["reason"],
    );
    for reason in DropReason::ALL {
        dropped
            .with_label_values(&[reason.as_str()])
            .inc_by(total.dropped(reason));
    }
    unlabelled(
        &r,
        "nacks_received_total",
        "NACKs received from subscribers.",
        total.nacks_received,
    );
    unlabelled(
        &r,
        "resend_window_changes_total",
        "Subscriber video streams whose resend window changed to follow their round trip.",
        total.resend_window_changes,
    );
    unlabelled(
        &r,
        "release_passes_total",
        "Sessions given the time to send what was written to them; forwarded packets per pass is what batching saves.",
        total.release_passes,
    );
    let kf = counter(
        &r,
        "keyframe_requests_total",
        "Keyframe requests (PLI/FIR) towards publishers.",
        &["outcome"],
    );
    kf.with_label_values(&["forwarded"])
        .inc_by(total.keyframe_requests_forwarded);
    kf.with_label_values(&["rate_limited"])
        .inc_by(total.keyframe_requests_suppressed);
    let sess = counter(
        &r,
        "sessions_total",
        "Sessions created and closed.",
        &["event"],
    );
    sess.with_label_values(&["created"])
        .inc_by(total.sessions_created);
    sess.with_label_values(&["closed"])
        .inc_by(total.sessions_closed);
    sess.with_label_values(&["failed"])
        .inc_by(total.session_failures);

    let rej = counter(
        &r,
        "rejected_total",
        "Control and HTTP input refused, by reason.",
        &["reason"],
    );
    let j = &node.rejections;
    for (name, v) in [
        ("unauthenticated", &j.unauthenticated),
        ("bad_message", &j.bad_message),
        ("oversized", &j.oversized),
        ("version", &j.version),
        ("draining", &j.draining),
        ("whip_bad_request", &j.whip_bad_request),
    ] {
        rej.with_label_values(&[name])
            .inc_by(v.load(Ordering::Relaxed));
    }
    unlabelled(
        &r,
        "control_events_dropped_total",
        "Events dropped because a control node read too slowly.",
        node.events_dropped.load(Ordering::Relaxed),
    );

    let cpu = GaugeVec::new(
        Opts::new("worker_cpu_seconds", "CPU time used by each worker thread."),
        &["worker"],
    )
    .expect("valid metric");
    let busy = GaugeVec::new(
        Opts::new(
            "worker_busy_ratio",
            "Share of the last half second each worker spent working.",
        ),
        &["worker"],
    )
    .expect("valid metric");
    let steered = IntGaugeVec::new(
        Opts::new(
            "worker_steered_datagrams",
            "Datagrams handed to the owning worker (cumulative).",
        ),
        &["worker"],
    )
    .expect("valid metric");
    let sys = IntGaugeVec::new(
        Opts::new(
            "worker_syscalls",
            "UDP receive and send syscalls (cumulative).",
        ),
        &["worker", "direction"],
    )
    .expect("valid metric");
    for (i, s) in snaps.iter().enumerate() {
        let w = i.to_string();
        cpu.with_label_values(&[&w]).set(s.cpu.as_secs_f64());
        busy.with_label_values(&[&w]).set(s.busy as f64);
        steered.with_label_values(&[&w]).set(s.steered_out as i64);
        if let Some(c) = s.socket {
            sys.with_label_values(&[&w, "recv"])
                .set(c.recv_syscalls as i64);
            sys.with_label_values(&[&w, "send"])
                .set(c.send_syscalls as i64);
        }
    }
    for m in [
        Box::new(cpu) as Box<dyn prometheus::core::Collector>,
        Box::new(busy),
        Box::new(steered),
        Box::new(sys),
    ] {
        r.register(m).expect("unique metric");
    }
    if let Some(rss) = resident_bytes() {
        gauge(
            &r,
            "resident_memory_bytes",
            "Resident memory of the rtcd process.",
        )
        .set(rss as i64);
    }

    let mut families = r.gather();
    families.push(histogram(
        "rtt_seconds",
        "Round-trip time to peers.",
        &total.rtt,
    ));
    families.push(histogram(
        "loss_ratio",
        "Fraction of packets lost from publishers.",
        &total.loss,
    ));
    families.push(histogram(
        "jitter_seconds",
        "Interarrival jitter of published streams.",
        &total.jitter,
    ));
    families.push(histogram(
        "video_fanout_seconds",
        "From a video packet's arrival to its write to the last subscriber.",
        &total.video_fanout,
    ));
    families.push(histogram(
        "session_connect_seconds",
        "From a session's offer to its first ICE and DTLS connection.",
        &total.session_connect,
    ));
    let mut out = Vec::new();
    TextEncoder::new()
        .encode(&families, &mut out)
        .expect("text encoding cannot fail");
    String::from_utf8(out).expect("the text format is UTF-8")
}

fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * page.max(4096) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_keep_their_true_sum_count_and_overflow() {
        let mut h = rtcd_core::Histogram::new(&[0.1, 1.0]);
        for v in [0.05, 0.5, 0.7, 9.0] {
            h.observe(v);
        }
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&[histogram("x_seconds", "x", &h)], &mut out)
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("rtcd_x_seconds_bucket{le=\"0.1\"} 1"),
            "{text}"
        );
        assert!(text.contains("rtcd_x_seconds_bucket{le=\"1\"} 3"), "{text}");
        assert!(
            text.contains("rtcd_x_seconds_bucket{le=\"+Inf\"} 4"),
            "{text}"
        );
        assert!(text.contains("rtcd_x_seconds_sum 10.25"), "{text}");
        assert!(text.contains("rtcd_x_seconds_count 4"), "{text}");
    }
}
