//! The job API's contract over a real socket: creating, reading, listing,
//! cancelling, logs, and every refusal with its exact status and code.

mod jobs_common;

use jobs_common::*;
use serde_json::json;

fn quick() -> std::sync::Arc<FnRunner> {
    FnRunner::new(|ctx| async move {
        ctx.log.line("bot joined");
        ctx.progress.set_captured_ms(1500);
        Ok(vec![result("call.webm")])
    })
}

#[tokio::test]
async fn a_job_runs_and_reads_back_without_its_token() {
    let dir = tempfile::tempdir().unwrap();
    let c = start(config(dir.path()), quick()).await;
    let created = c.call("POST", "/v1/jobs", Some(spec("call-1"))).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.json()["id"].as_str().unwrap().to_string();
    assert_eq!(created.json()["spec"]["call_id"], "call-1");
    assert_eq!(created.json()["spec"]["control_url"], "http://127.0.0.1:9");
    assert!(!created.text.contains(SECRET), "{}", created.text);

    let done = c.wait_state(&id, "succeeded").await;
    assert_eq!(done["attempts"], 1);
    assert_eq!(done["captured_ms"], 1500);
    assert_eq!(done["results"][0]["name"], "call.webm");
    assert!(done["finished_at"].as_i64() >= done["started_at"].as_i64());

    let logs = c.call("GET", &format!("/v1/jobs/{id}/logs"), None).await;
    assert_eq!(logs.status, 200);
    assert!(
        logs.content_type.starts_with("text/plain"),
        "{}",
        logs.content_type
    );
    assert!(logs.text.contains("bot joined"), "{}", logs.text);
    assert!(logs.text.contains("attempt 1 succeeded"), "{}", logs.text);
    assert!(!logs.text.contains(SECRET));

    // On disk the spec keeps its token (a restart needs it), nowhere else.
    let on_disk =
        std::fs::read_to_string(dir.path().join("jobs").join(&id).join("job.json")).unwrap();
    assert!(on_disk.contains(SECRET));
    let list = c.call("GET", "/v1/jobs", None).await;
    assert!(!list.text.contains(SECRET));
}

#[tokio::test]
async fn list_is_newest_first_and_filters_by_state() {
    let dir = tempfile::tempdir().unwrap();
    let runner = FnRunner::new(|ctx| async move {
        if ctx.spec.call_id.as_str() == "call-fail" {
            return Err(permanent("capture_failed", "no media"));
        }
        Ok(vec![])
    });
    let c = start(config(dir.path()), runner).await;
    let a = c.create("call-a").await;
    let b = c.create("call-fail").await;
    let d = c.create("call-d").await;
    c.wait_state(&a, "succeeded").await;
    c.wait_state(&b, "failed").await;
    c.wait_state(&d, "succeeded").await;

    let all = c.call("GET", "/v1/jobs", None).await.json();
    let ids: Vec<_> = all["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, vec![d.clone(), b.clone(), a.clone()]);

    let ok = c.call("GET", "/v1/jobs?state=succeeded", None).await.json();
    let ids: Vec<_> = ok["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, vec![d, a]);

    let bad = c.call("GET", "/v1/jobs?state=sleeping", None).await;
    assert_eq!(
        (bad.status, bad.code().as_str()),
        (400, "invalid_query"),
        "{}",
        bad.text
    );
}

#[tokio::test]
async fn bad_requests_get_exact_codes() {
    let dir = tempfile::tempdir().unwrap();
    let c = start(config(dir.path()), quick()).await;

    let r = c
        .raw(
            "POST",
            "/v1/jobs",
            Some(KEY),
            Some(("application/json", "{\"call_id\": ".into())),
        )
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (400, "invalid_spec"),
        "{}",
        r.text
    );

    let mut extra = spec("call-1");
    extra["priority"] = json!("high");
    let r = c.call("POST", "/v1/jobs", Some(extra)).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (400, "invalid_spec"),
        "{}",
        r.text
    );
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("unknown field `priority`"),
        "{}",
        r.text
    );

    let mut bad_kind = spec("call-1");
    bad_kind["job"] = json!({"kind": "painting"});
    let r = c.call("POST", "/v1/jobs", Some(bad_kind)).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (400, "invalid_spec"),
        "{}",
        r.text
    );

    let r = c.call("POST", "/v1/jobs", Some(spec("../etc"))).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (400, "invalid_spec"),
        "{}",
        r.text
    );

    let r = c
        .raw(
            "POST",
            "/v1/jobs",
            Some(KEY),
            Some(("text/plain", spec("call-1").to_string())),
        )
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (415, "unsupported_media_type"),
        "{}",
        r.text
    );

    let r = c
        .raw(
            "POST",
            "/v1/jobs",
            Some(KEY),
            Some(("application/json", "x".repeat(100_000))),
        )
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (413, "payload_too_large"),
        "{}",
        r.text
    );

    let r = c
        .call("POST", "/v1/jobs", Some(spec("unknown-call-9")))
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (422, "unknown_call"),
        "{}",
        r.text
    );
    assert!(r.text.contains("unknown-call-9"));

    for key in [
        None,
        Some("wrong-key"),
        Some("jobs-test-key-0123456789abcdeF"),
    ] {
        let r = c.raw("GET", "/v1/jobs", key, None).await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (401, "unauthorized"),
            "{key:?}: {}",
            r.text
        );
    }
    let r = c
        .raw(
            "POST",
            "/v1/jobs",
            Some("wrong-key"),
            Some(("application/json", spec("call-1").to_string())),
        )
        .await;
    assert_eq!(r.status, 401);

    for path in [
        "/v1/jobs/job-0000000000000000",
        "/v1/jobs/no%2Fsuch",
        "/v1/jobs/job-0000000000000000/logs",
    ] {
        let r = c.call("GET", path, None).await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (404, "not_found"),
            "{path}: {}",
            r.text
        );
    }
    let r = c
        .call("POST", "/v1/jobs/job-0000000000000000/cancel", None)
        .await;
    assert_eq!((r.status, r.code().as_str()), (404, "not_found"));

    // None of the refusals created a job.
    let list = c.call("GET", "/v1/jobs", None).await.json();
    assert_eq!(list["jobs"], json!([]));

    let h = c.raw("GET", "/healthz", None, None).await;
    assert_eq!((h.status, h.text.as_str()), (200, "ok\n"));
}

#[tokio::test]
async fn cancel_of_a_finished_job_is_a_conflict_and_cancel_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let gate = std::sync::Arc::new(tokio::sync::Notify::new());
    let g = gate.clone();
    let runner = FnRunner::new(move |ctx| {
        let g = g.clone();
        async move {
            if ctx.spec.call_id.as_str() == "call-wait" {
                g.notified().await;
            }
            Ok(vec![])
        }
    });
    let mut cfg = config(dir.path());
    cfg.max_concurrent = 1;
    let c = start(cfg, runner).await;
    let done = c.create("call-done").await;
    c.wait_state(&done, "succeeded").await;
    let r = c
        .call("POST", &format!("/v1/jobs/{done}/cancel"), None)
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (409, "already_finished"),
        "{}",
        r.text
    );

    // A queued job behind a busy worker: cancelled at once, twice is fine.
    let busy = c.create("call-wait").await;
    c.wait_state(&busy, "running").await;
    let queued = c.create("call-queued").await;
    for _ in 0..2 {
        let r = c
            .call("POST", &format!("/v1/jobs/{queued}/cancel"), None)
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.json()["state"], "cancelled");
    }
    gate.notify_one();
    c.wait_state(&busy, "succeeded").await;
    let j = c.job(&queued).await;
    assert_eq!(
        (j["state"].as_str(), j["attempts"].as_i64()),
        (Some("cancelled"), Some(0))
    );
}

#[tokio::test]
async fn a_full_queue_refuses_with_503() {
    let dir = tempfile::tempdir().unwrap();
    let runner = FnRunner::new(|ctx| async move {
        ctx.cancel.cancelled().await;
        Ok(vec![])
    });
    let mut cfg = config(dir.path());
    cfg.max_concurrent = 1;
    cfg.max_queued = 2;
    let c = start(cfg, runner).await;
    let running = c.create("call-1").await;
    c.wait_state(&running, "running").await;
    c.create("call-2").await;
    c.create("call-3").await;
    let r = c.call("POST", "/v1/jobs", Some(spec("call-4"))).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (503, "queue_full"),
        "{}",
        r.text
    );

    let m = c.raw("GET", "/metrics", None, None).await;
    assert_eq!(m.status, 200);
    assert!(m.text.contains("offloader_queue_depth 2"), "{}", m.text);
    assert!(
        m.text.contains("offloader_jobs{state=\"running\"} 1"),
        "{}",
        m.text
    );
    assert!(m.text.contains("offloader_workers_busy 1"), "{}", m.text);
    assert!(
        m.text.contains("offloader_job_attempts_total 1"),
        "{}",
        m.text
    );
}
