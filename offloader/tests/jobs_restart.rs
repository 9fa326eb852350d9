//! Jobs survive the offloader: a job cut off mid-run starts again with
//! attempt + 1 in the same work dir, queued jobs keep their order, a
//! corrupt state file fails its job without stopping the service, and a
//! one-job run (a Kubernetes Job's pod) resumes the same way.

mod jobs_common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use jobs_common::*;
use offloader::service::{RunOneError, ServeError, run_one, serve};
use signaling::jobs::{JobSpec, JobState};

/// Lists a work dir, sorted.
fn files(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// (attempt, files its work dir held when it started), per attempt.
type Seen = Arc<Mutex<Vec<(u32, Vec<String>)>>>;

/// First attempt: captures a segment, then keeps capturing until the
/// process goes away. Later attempts: record what they found, finish.
fn capturing(seen: Seen) -> Arc<FnRunner> {
    FnRunner::new(move |ctx| {
        let seen = seen.clone();
        async move {
            let found = files(&ctx.work_dir);
            std::fs::write(
                ctx.work_dir.join(format!("segment-{}.webm", ctx.attempt)),
                b"media",
            )
            .unwrap();
            ctx.progress.set_captured_ms(3000 * ctx.attempt as u64);
            seen.lock().unwrap().push((ctx.attempt, found));
            if ctx.attempt == 1 {
                ctx.shutdown.cancelled().await;
                if ctx.cancel.is_cancelled() {
                    ctx.log.line("cancel fired on shutdown");
                }
                ctx.log.line("offloader stopping: segment closed");
                return Ok(vec![]);
            }
            Ok(vec![result("call.webm")])
        }
    })
}

#[tokio::test]
async fn a_job_cut_off_by_a_crash_resumes_with_its_captured_files() {
    let dir = tempfile::tempdir().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let c = start(config(dir.path()), capturing(seen.clone())).await;
    let id = c.create("call-1").await;
    c.wait_for(&id, "capturing", |j| j["captured_ms"] == 3000)
        .await;
    // A crash: the handle goes, every task with it, nothing more is written.
    drop(c);
    tokio::task::yield_now().await;

    let c = start(config(dir.path()), capturing(seen.clone())).await;
    let j = c.wait_state(&id, "succeeded").await;
    assert_eq!(j["attempts"], 2);
    assert_eq!(j["captured_ms"], 6000);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[1], (2, vec!["segment-1.webm".to_string()]));
    let logs = c.logs(&id).await;
    assert!(
        logs.contains("attempt 1 was interrupted by an offloader restart"),
        "{logs}"
    );
    assert!(logs.contains("attempt 2 succeeded"), "{logs}");
}

#[tokio::test]
async fn a_graceful_shutdown_lets_the_attempt_close_then_resumes_it() {
    let dir = tempfile::tempdir().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut c = start(config(dir.path()), capturing(seen.clone())).await;
    let id = c.create("call-1").await;
    c.wait_for(&id, "capturing", |j| j["captured_ms"] == 3000)
        .await;
    c.handle.take().unwrap().shutdown().await;
    let on_disk: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("jobs").join(&id).join("job.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        on_disk["state"], "running",
        "a stopped attempt is not an outcome"
    );

    let c = start(config(dir.path()), capturing(seen.clone())).await;
    let j = c.wait_state(&id, "succeeded").await;
    assert_eq!(j["attempts"], 2);
    let logs = c.logs(&id).await;
    assert!(
        logs.contains("offloader stopping: segment closed"),
        "{logs}"
    );
    assert!(
        logs.contains("attempt 1 stopped for an offloader shutdown"),
        "{logs}"
    );
}

#[tokio::test]
async fn queued_jobs_survive_a_restart_in_their_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.max_concurrent = 1;
    let stuck = FnRunner::new(|_ctx| async move {
        std::future::pending::<()>().await;
        Ok(vec![])
    });
    let c = start(cfg.clone(), stuck).await;
    let mut ids = Vec::new();
    for call in ["call-a", "call-b", "call-c", "call-d", "call-e"] {
        ids.push(c.create(call).await);
    }
    c.wait_state(&ids[0], "running").await;
    drop(c);
    tokio::task::yield_now().await;

    let order = Arc::new(Mutex::new(Vec::new()));
    let o = order.clone();
    let recorder = FnRunner::new(move |ctx| {
        o.lock()
            .unwrap()
            .push((ctx.spec.call_id.to_string(), ctx.attempt));
        async move { Ok(vec![]) }
    });
    let c = start(cfg, recorder).await;
    for id in &ids {
        c.wait_state(id, "succeeded").await;
    }
    let order = order.lock().unwrap().clone();
    let want: Vec<(String, u32)> = [
        ("call-a", 2),
        ("call-b", 1),
        ("call-c", 1),
        ("call-d", 1),
        ("call-e", 1),
    ]
    .into_iter()
    .map(|(c, n)| (c.to_string(), n))
    .collect();
    assert_eq!(order, want);
}

#[tokio::test]
async fn a_corrupt_state_file_fails_its_job_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let quick = FnRunner::new(|_ctx| async move { Ok(vec![]) });
    let c = start(cfg.clone(), quick.clone()).await;
    let bent = c.create("call-bent").await;
    let torn = c.create("call-torn").await;
    let fine = c.create("call-fine").await;
    for id in [&bent, &torn, &fine] {
        c.wait_state(id, "succeeded").await;
    }
    drop(c);

    let jobs = dir.path().join("jobs");
    // A state file whose spec still reads but whose state does not.
    let path = jobs.join(&bent).join("job.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    v["state"] = "exploded".into();
    std::fs::write(&path, v.to_string()).unwrap();
    // One cut in half, and a directory that is no job at all.
    let path = jobs.join(&torn).join("job.json");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, &text[..text.len() / 2]).unwrap();
    std::fs::create_dir(jobs.join("not a job")).unwrap();

    let c = start(cfg, quick).await;
    let j = c.job(&bent).await;
    assert_eq!(j["state"], "failed");
    assert_eq!(j["error"]["code"], "corrupt_state");
    assert!(
        j["error"]["message"].as_str().unwrap().contains("exploded"),
        "{j}"
    );
    assert!(jobs.join(&bent).join("job.json.corrupt").exists());
    assert!(c.logs(&bent).await.contains("job.json does not parse"));
    // Unreadable beyond repair: left on disk for a person, not served.
    let r = c.call("GET", &format!("/v1/jobs/{torn}"), None).await;
    assert_eq!(r.status, 404);
    assert!(jobs.join(&torn).join("job.json").exists());
    assert_eq!(c.job(&fine).await["state"], "succeeded");
    // The service still takes work.
    let id = c.create("call-new").await;
    c.wait_state(&id, "succeeded").await;
}

#[tokio::test]
async fn one_data_dir_serves_one_offloader() {
    let dir = tempfile::tempdir().unwrap();
    let quick = FnRunner::new(|_ctx| async move { Ok(vec![]) });
    let _c = start(config(dir.path()), quick.clone()).await;
    match serve(config(dir.path()), quick).await {
        Err(ServeError::DataDirInUse(p)) => assert_eq!(p, dir.path()),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a second offloader started on the same data dir"),
    }
}

#[tokio::test]
async fn bad_config_is_reported_all_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.api_key = "short".into();
    cfg.max_concurrent = 0;
    let quick = FnRunner::new(|_ctx| async move { Ok(vec![]) });
    match serve(cfg, quick).await {
        Err(ServeError::Config(errors)) => assert_eq!(errors.len(), 2, "{errors:?}"),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("started with a bad config"),
    }
}

fn job_spec(call: &str) -> JobSpec {
    serde_json::from_value(spec(call)).unwrap()
}

#[tokio::test]
async fn run_one_resumes_a_killed_pod_and_returns_a_finished_job() {
    let dir = tempfile::tempdir().unwrap();
    let runs = Arc::new(AtomicU32::new(0));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (r, s) = (runs.clone(), seen.clone());
    let runner = FnRunner::new(move |ctx| {
        r.fetch_add(1, Ordering::SeqCst);
        let s = s.clone();
        async move {
            s.lock().unwrap().push((ctx.attempt, files(&ctx.work_dir)));
            std::fs::write(
                ctx.work_dir.join(format!("segment-{}.webm", ctx.attempt)),
                b"m",
            )
            .unwrap();
            if ctx.attempt == 1 {
                std::future::pending::<()>().await;
            }
            Ok(vec![result("call.webm")])
        }
    });
    // The pod is killed mid-capture.
    let data = dir.path().to_path_buf();
    let first = tokio::spawn({
        let (runner, data) = (runner.clone(), data.clone());
        async move { run_one(job_spec("call-1"), &data, runner).await }
    });
    eventually("the first attempt captured", || {
        !seen.lock().unwrap().is_empty()
    })
    .await;
    first.abort();
    let _ = first.await;

    let info = run_one(job_spec("call-1"), &data, runner.clone())
        .await
        .unwrap();
    assert_eq!(info.state, JobState::Succeeded);
    assert_eq!(info.attempts, 2);
    assert_eq!(
        seen.lock().unwrap()[1],
        (2, vec!["segment-1.webm".to_string()])
    );

    // Run again (the Job's pod restarted after success): nothing reruns.
    let again = run_one(job_spec("call-1"), &data, runner.clone())
        .await
        .unwrap();
    assert_eq!(
        (again.id, again.state),
        (info.id.clone(), JobState::Succeeded)
    );
    assert_eq!(runs.load(Ordering::SeqCst), 2);

    // A finished job is returned without asking control again: its call
    // may be unknown by now (here: renamed on disk to one control refuses).
    let state = dir
        .path()
        .join("jobs")
        .join(info.id.as_str())
        .join("job.json");
    let text = std::fs::read_to_string(&state).unwrap();
    std::fs::write(&state, text.replace("\"call-1\"", "\"unknown-now\"")).unwrap();
    let ended = run_one(job_spec("unknown-now"), &data, runner.clone())
        .await
        .unwrap();
    assert_eq!((ended.id, ended.state), (info.id, JobState::Succeeded));

    match run_one(job_spec("unknown-call"), &data, runner).await {
        Err(RunOneError::Rejected(e)) => assert_eq!(e.code, "unknown_call"),
        other => panic!("unknown call ran: {other:?}"),
    }
}
