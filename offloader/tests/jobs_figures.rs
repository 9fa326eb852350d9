//! Figures, not checks: how long creating a job takes (one fsync'd state
//! file per job) and how long a restart takes to load a full queue.
//! `cargo test -p offloader --test jobs_figures -- --ignored --nocapture`

mod jobs_common;

use std::time::{Duration, Instant};

use jobs_common::*;

#[tokio::test]
#[ignore = "a measurement; run by hand"]
async fn create_latency_and_restart_load_time() {
    const N: usize = 1000;
    let dir = tempfile::tempdir().unwrap();
    let stuck = FnRunner::new(|ctx| async move {
        ctx.shutdown.cancelled().await;
        Ok(vec![])
    });
    let mut cfg = config(dir.path());
    cfg.max_concurrent = 1;
    cfg.max_queued = N;
    let c = start(cfg.clone(), stuck.clone()).await;
    let mut took = Vec::with_capacity(N);
    for i in 0..N {
        let t = Instant::now();
        c.create(&format!("call-{i}")).await;
        took.push(t.elapsed());
    }
    took.sort();
    let pct = |p: f64| took[((N as f64 * p) as usize).min(N - 1)];
    println!(
        "POST /v1/jobs x{N}: p50 {:?}, p99 {:?}, max {:?}",
        pct(0.5),
        pct(0.99),
        took[N - 1]
    );
    let t = Instant::now();
    let r = c.call("GET", "/v1/jobs", None).await;
    println!(
        "GET /v1/jobs with {N} jobs: {:?}, {} bytes",
        t.elapsed(),
        r.text.len()
    );
    drop(c);
    tokio::time::sleep(Duration::from_millis(50)).await;

    let t = Instant::now();
    let c = start(cfg, stuck).await;
    println!(
        "restart with {N} jobs on disk: serving after {:?}",
        t.elapsed()
    );
    let queued = c.call("GET", "/v1/jobs?state=queued", None).await.json();
    assert_eq!(queued["jobs"].as_array().unwrap().len(), N - 1);
}
