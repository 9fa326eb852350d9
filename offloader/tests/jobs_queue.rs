//! How jobs run: bounded concurrency with a FIFO queue, cancel, deadlines,
//! retries of transient failures, permanent failures with their logs.

mod jobs_common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jobs_common::*;
use offloader::service::RunError;
use signaling::jobs::JobState;

#[tokio::test]
async fn one_worker_runs_one_job_at_a_time_and_the_rest_wait() {
    let dir = tempfile::tempdir().unwrap();
    let busy = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let order = Arc::new(Mutex::new(Vec::new()));
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let (b, p, o, r) = (busy.clone(), peak.clone(), order.clone(), release.clone());
    let runner = FnRunner::new(move |ctx| {
        let (b, p, o, r) = (b.clone(), p.clone(), o.clone(), r.clone());
        async move {
            let now = b.fetch_add(1, Ordering::SeqCst) + 1;
            p.fetch_max(now, Ordering::SeqCst);
            o.lock().unwrap().push(ctx.spec.call_id.to_string());
            r.acquire().await.unwrap().forget();
            b.fetch_sub(1, Ordering::SeqCst);
            Ok(vec![])
        }
    });
    let mut cfg = config(dir.path());
    cfg.max_concurrent = 1;
    let c = start(cfg, runner).await;
    let ids = [
        c.create("call-1").await,
        c.create("call-2").await,
        c.create("call-3").await,
    ];
    c.wait_state(&ids[0], "running").await;
    // Busy is not full: the others were accepted and wait.
    for id in &ids[1..] {
        assert_eq!(c.job(id).await["state"], "queued");
    }
    let queued = c.call("GET", "/v1/jobs?state=queued", None).await.json();
    assert_eq!(queued["jobs"].as_array().unwrap().len(), 2);

    for id in &ids {
        release.add_permits(1);
        c.wait_state(id, "succeeded").await;
    }
    assert_eq!(peak.load(Ordering::SeqCst), 1);
    assert_eq!(*order.lock().unwrap(), ["call-1", "call-2", "call-3"]);
}

#[tokio::test]
async fn two_workers_run_two_jobs_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let busy = Arc::new(AtomicUsize::new(0));
    let b = busy.clone();
    let runner = FnRunner::new(move |ctx| {
        let b = b.clone();
        async move {
            b.fetch_add(1, Ordering::SeqCst);
            ctx.cancel.cancelled().await;
            Ok(vec![])
        }
    });
    let c = start(config(dir.path()), runner).await;
    let ids = [
        c.create("call-1").await,
        c.create("call-2").await,
        c.create("call-3").await,
    ];
    c.wait_state(&ids[1], "running").await;
    assert_eq!(c.job(&ids[2]).await["state"], "queued");
    assert_eq!(busy.load(Ordering::SeqCst), 2);
    // Cancelling one frees its worker for the third.
    c.call("POST", &format!("/v1/jobs/{}/cancel", ids[0]), None)
        .await;
    c.wait_state(&ids[2], "running").await;
}

#[tokio::test]
async fn cancel_reaches_the_running_attempt_and_keeps_what_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let saw_cancel = Arc::new(AtomicUsize::new(0));
    let s = saw_cancel.clone();
    let runner = FnRunner::new(move |ctx| {
        let s = s.clone();
        async move {
            ctx.progress.set_captured_ms(4000);
            ctx.cancel.cancelled().await;
            s.fetch_add(1, Ordering::SeqCst);
            ctx.log.line("cancelled: closing the file");
            Ok(vec![result("partial.webm")])
        }
    });
    let c = start(config(dir.path()), runner).await;
    let id = c.create("call-1").await;
    c.wait_for(&id, "capturing", |j| j["captured_ms"] == 4000)
        .await;
    let r = c.call("POST", &format!("/v1/jobs/{id}/cancel"), None).await;
    assert_eq!(
        (r.status, r.json()["state"].as_str()),
        (200, Some("cancelled")),
        "{}",
        r.text
    );
    eventually("the runner saw the token", || {
        saw_cancel.load(Ordering::SeqCst) == 1
    })
    .await;
    let j = c
        .wait_for(&id, "partial result kept", |j| {
            j["results"][0]["name"] == "partial.webm"
        })
        .await;
    assert_eq!(j["state"], "cancelled");
    assert_eq!(j["attempts"], 1);
    let logs = c.logs(&id).await;
    assert!(logs.contains("cancelled on request"), "{logs}");
    assert!(logs.contains("cancelled: closing the file"), "{logs}");
}

#[tokio::test]
async fn an_attempt_past_its_deadline_is_cancelled_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let runner = FnRunner::new(|ctx| async move {
        let budget = ctx.deadline - tokio::time::Instant::now();
        ctx.log.line(format!("budget {} ms", budget.as_millis()));
        ctx.cancel.cancelled().await;
        ctx.log.line("deadline: stopping");
        Ok(vec![])
    });
    let mut cfg = config(dir.path());
    cfg.processing_secs = 0;
    let c = start(cfg, runner).await;
    let mut s = spec("call-1");
    s["max_duration_secs"] = 1.into();
    let r = c.call("POST", "/v1/jobs", Some(s)).await;
    let id = r.json()["id"].as_str().unwrap().to_string();
    let j = c.wait_state(&id, "failed").await;
    assert_eq!(j["error"]["code"], "deadline_exceeded", "{j}");
    assert_eq!(j["attempts"], 1, "a deadline is not retried");
    let took = j["finished_at"].as_i64().unwrap() - j["started_at"].as_i64().unwrap();
    assert!((900..5000).contains(&took), "{took} ms");
    let logs = c.logs(&id).await;
    assert!(logs.contains("passed its deadline"), "{logs}");
    assert!(logs.contains("deadline: stopping"), "{logs}");
}

#[tokio::test]
async fn a_runner_that_ignores_cancel_is_dropped_after_the_grace() {
    let dir = tempfile::tempdir().unwrap();
    let runner = FnRunner::new(|_ctx| async move {
        std::future::pending::<()>().await;
        Ok(vec![])
    });
    let mut cfg = config(dir.path());
    cfg.processing_secs = 0;
    cfg.cancel_grace_secs = 0;
    cfg.max_concurrent = 1;
    let c = start(cfg, runner).await;
    let mut s = spec("call-1");
    s["max_duration_secs"] = 1.into();
    let id = c.call("POST", "/v1/jobs", Some(s)).await.json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let next = c.create("call-2").await;
    let j = c.wait_state(&id, "failed").await;
    assert_eq!(j["error"]["code"], "deadline_exceeded");
    // Its worker is free again.
    c.wait_state(&next, "running").await;
}

#[tokio::test]
async fn a_transient_failure_is_retried_then_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let runner = FnRunner::new(|ctx| async move {
        if ctx.attempt == 1 {
            return Err(RunError::transient(
                "control_unreachable",
                "connection refused",
            ));
        }
        Ok(vec![result("call.webm")])
    });
    let c = start(config(dir.path()), runner).await;
    let id = c.create("call-1").await;
    let j = c.wait_state(&id, "succeeded").await;
    assert_eq!(j["attempts"], 2);
    assert!(j.get("error").is_none(), "{j}");
    let logs = c.logs(&id).await;
    assert!(
        logs.contains("attempt 1 failed (transient): control_unreachable"),
        "{logs}"
    );
    assert!(logs.contains("retrying in 50 ms"), "{logs}");
    let m = c.raw("GET", "/metrics", None, None).await.text;
    assert!(m.contains("offloader_job_retries_total 1"), "{m}");
}

#[tokio::test]
async fn transient_failures_stop_at_max_attempts_with_back_off() {
    let dir = tempfile::tempdir().unwrap();
    let starts = Arc::new(Mutex::new(Vec::new()));
    let s = starts.clone();
    let runner = FnRunner::new(move |_ctx| {
        s.lock().unwrap().push(tokio::time::Instant::now());
        async move {
            Err(RunError::transient(
                "control_unreachable",
                "connection refused",
            ))
        }
    });
    let mut cfg = config(dir.path());
    cfg.retry_base_ms = 100;
    cfg.retry_max_ms = 1000;
    let c = start(cfg, runner).await;
    let id = c.create("call-1").await;
    let j = c.wait_state(&id, "failed").await;
    assert_eq!(j["attempts"], 3);
    assert_eq!(j["error"]["code"], "control_unreachable");
    let starts = starts.lock().unwrap().clone();
    let gaps: Vec<Duration> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps[0] >= Duration::from_millis(100), "{gaps:?}");
    assert!(
        gaps[1] >= Duration::from_millis(200),
        "back-off doubles: {gaps:?}"
    );
}

#[tokio::test]
async fn a_permanent_failure_is_not_retried_and_keeps_its_log() {
    let dir = tempfile::tempdir().unwrap();
    let runner = FnRunner::new(|ctx| async move {
        ctx.log.line("joining the call");
        tokio::fs::write(ctx.work_dir.join("part-1.webm"), b"media")
            .await
            .unwrap();
        Err(permanent(
            "call_ended",
            "the call ended before the bot joined",
        ))
    });
    let c = start(config(dir.path()), runner).await;
    let id = c.create("call-1").await;
    let j = c.wait_state(&id, "failed").await;
    assert_eq!(j["attempts"], 1);
    assert_eq!(j["error"]["code"], "call_ended");
    assert_eq!(
        j["error"]["message"],
        "the call ended before the bot joined"
    );
    let logs = c.logs(&id).await;
    assert!(logs.contains("joining the call"), "{logs}");
    assert!(logs.contains("attempt 1 failed: call_ended"), "{logs}");
    assert!(
        dir.path()
            .join("jobs")
            .join(&id)
            .join("work/part-1.webm")
            .exists()
    );
    let failed = c.call("GET", "/v1/jobs?state=failed", None).await.json();
    assert_eq!(failed["jobs"][0]["id"], id.as_str());
}

#[tokio::test]
async fn the_runner_reports_processing() {
    let dir = tempfile::tempdir().unwrap();
    let gate = Arc::new(tokio::sync::Notify::new());
    let g = gate.clone();
    let runner = FnRunner::new(move |ctx| {
        let g = g.clone();
        async move {
            ctx.progress.set_state(JobState::Processing);
            g.notified().await;
            Ok(vec![])
        }
    });
    let c = start(config(dir.path()), runner).await;
    let id = c.create("call-1").await;
    c.wait_state(&id, "processing").await;
    gate.notify_one();
    c.wait_state(&id, "succeeded").await;
}

/// A runner that reports progress before handing back its future.
struct EagerRunner;

impl offloader::service::Runner for EagerRunner {
    fn validate<'a>(
        &'a self,
        _spec: &'a signaling::jobs::JobSpec,
    ) -> futures_util::future::BoxFuture<'a, Result<(), signaling::jobs::JobError>> {
        Box::pin(async { Ok(()) })
    }

    fn run(
        &self,
        ctx: offloader::service::JobContext,
    ) -> futures_util::future::BoxFuture<'static, Result<Vec<signaling::jobs::JobResult>, RunError>>
    {
        ctx.progress.set_state(JobState::Processing);
        ctx.progress.set_captured_ms(7);
        ctx.log.line("eager");
        Box::pin(async { Ok(vec![]) })
    }
}

#[tokio::test]
async fn a_runner_may_report_progress_before_its_future_runs() {
    let dir = tempfile::tempdir().unwrap();
    let c = start(config(dir.path()), Arc::new(EagerRunner)).await;
    let id = c.create("call-1").await;
    let j = c.wait_state(&id, "succeeded").await;
    assert_eq!(j["captured_ms"], 7);
}

#[tokio::test]
async fn a_panicking_runner_fails_its_job_and_frees_its_worker() {
    let dir = tempfile::tempdir().unwrap();
    let runner = FnRunner::new(|ctx| async move {
        if ctx.spec.call_id.as_str() == "call-bug" {
            panic!("a bug in the workload");
        }
        Ok(vec![])
    });
    let mut cfg = config(dir.path());
    cfg.max_concurrent = 1;
    let c = start(cfg, runner).await;
    let bug = c.create("call-bug").await;
    let next = c.create("call-next").await;
    let j = c.wait_state(&bug, "failed").await;
    assert_eq!(j["error"]["code"], "runner_panicked");
    assert_eq!(j["attempts"], 1);
    c.wait_state(&next, "succeeded").await;
}
