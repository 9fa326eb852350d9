//! Retention, on a clock the test moves: old succeeded and cancelled jobs
//! go entirely, old failed jobs keep their state and log but not their
//! media, young jobs and running ones stay.

mod jobs_common;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use jobs_common::*;
use offloader::service::{Clock, SweepReport, serve_with_clock};

const DAY_MS: i64 = 24 * 3600 * 1000;

/// Wall-clock time that moves only when the test says so.
struct ManualClock(AtomicI64);

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

#[tokio::test]
async fn old_jobs_go_and_failed_ones_keep_their_logs() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock(AtomicI64::new(1_767_225_600_000)));
    let runner = FnRunner::new(|ctx| async move {
        std::fs::write(ctx.work_dir.join("capture.webm"), b"media").unwrap();
        ctx.log.line("captured");
        match ctx.spec.call_id.as_str() {
            "call-fails" => Err(permanent("capture_failed", "the encoder stopped")),
            "call-cancelled" | "call-running" => {
                ctx.cancel.cancelled().await;
                Ok(vec![])
            }
            _ => Ok(vec![result("call.webm")]),
        }
    });
    let mut cfg = config(dir.path());
    cfg.retention_days = 30;
    let handle = serve_with_clock(cfg, runner, clock.clone()).await.unwrap();
    let c = Client::new(handle);
    let ok = c.create("call-ok").await;
    let failed = c.create("call-fails").await;
    let cancelled = c.create("call-cancelled").await;
    c.wait_state(&ok, "succeeded").await;
    c.wait_state(&failed, "failed").await;
    c.wait_state(&cancelled, "running").await;
    c.call("POST", &format!("/v1/jobs/{cancelled}/cancel"), None)
        .await;
    // Finished a day later: still young after 30 days from the others.
    clock.0.fetch_add(DAY_MS, Ordering::SeqCst);
    let young = c.create("call-young").await;
    c.wait_state(&young, "succeeded").await;
    let running = c.create("call-running").await;
    c.wait_state(&running, "running").await;
    let jobs = dir.path().join("jobs");

    assert_eq!(c.handle().sweep_now(), SweepReport::default());

    clock
        .0
        .fetch_add(30 * DAY_MS - DAY_MS / 2, Ordering::SeqCst);
    assert_eq!(
        c.handle().sweep_now(),
        SweepReport {
            removed: 2,
            trimmed: 1
        }
    );
    for gone in [&ok, &cancelled] {
        let r = c.call("GET", &format!("/v1/jobs/{gone}"), None).await;
        assert_eq!(r.status, 404, "{gone} still there");
        assert!(!jobs.join(gone).exists());
    }
    let f = c.job(&failed).await;
    assert_eq!(f["error"]["code"], "capture_failed");
    assert!(!jobs.join(&failed).join("work").exists());
    let logs = c.logs(&failed).await;
    assert!(logs.contains("captured"), "{logs}");
    assert!(logs.contains("captured media removed"), "{logs}");
    assert!(jobs.join(&young).join("work/capture.webm").exists());
    assert_eq!(c.job(&running).await["state"], "running");

    // A second sweep finds nothing more to do for the failed job.
    assert_eq!(c.handle().sweep_now(), SweepReport::default());
    clock.0.fetch_add(DAY_MS, Ordering::SeqCst);
    assert_eq!(
        c.handle().sweep_now(),
        SweepReport {
            removed: 1,
            trimmed: 0
        }
    );
    assert!(!jobs.join(&young).exists());
    assert_eq!(c.job(&failed).await["state"], "failed");
}
