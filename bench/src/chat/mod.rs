//! `bench chat`: control's chat under load. N WebSocket clients (one user
//! each, in channels of K members) stay connected while the bench posts M
//! messages a second over REST, spread round robin over the channels, each
//! from a random member. Every member's socket measures the delivery delay
//! of every post (the pending id carries the send time on this process's
//! monotonic clock) and logs which post came with which seq; afterwards
//! [`check`] proves every member got every accepted post exactly once, in
//! seq order, and nothing else.
//!
//! control runs as its own process ([`server`]) on a fresh SQLite data
//! directory or PostgreSQL database, pinned apart from the generator, so
//! its CPU time (user + system from `/proc`) and memory are its own.
//!
//! Phases: start control → set up users, team, channels and tokens through
//! the API ([`api`]) → connect every socket → post for the window
//! ([`poster`]) while sampling CPU every second → wait for the last
//! deliveries → close the sockets → check and report ([`report`]).

pub mod api;
pub mod check;
pub mod clients;
pub mod poster;
pub mod report;
pub mod server;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, watch};

use crate::payload::{clock, epoch, ns_since_epoch};
use crate::procstat;
use crate::report::Percentiles;
use crate::scenario::{OTHER_LOAD_LIMIT, SATURATION, git_commit, now_utc, wait_for_quiet};
use api::{Accounts, Api, Setup};
use clients::{ClientLog, Recorder, run_client};
use report::{ChatResult, ChatSample};
use server::{Control, Database, StartOptions};

/// Sockets connecting at once.
const CONNECT_CONCURRENCY: usize = 64;
/// Every socket must be connected within this long.
const CONNECT_DEADLINE: Duration = Duration::from_secs(300);
/// After the last post is answered, deliveries may take this long.
const DRAIN: Duration = Duration::from_secs(10);
/// The schedule running later than this (p99) means the generator could
/// not keep up.
const LATE_LIMIT_MS: f64 = 10.0;
/// Descriptors the generator needs besides one per socket.
const SPARE_FDS: u64 = 3_000;

#[derive(Debug, Clone)]
pub struct ChatOptions {
    pub clients: usize,
    pub posts_per_sec: f64,
    pub channel_members: usize,
    pub duration: Duration,
    pub database: Database,
    /// Use this running control instead of starting one.
    pub control_url: Option<String>,
    pub control_bin: Option<PathBuf>,
    pub control_cpus: Option<Vec<usize>>,
    pub gen_cpus: Vec<usize>,
    pub pinning: String,
    pub command: String,
    pub wait_quiet: Duration,
    pub progress: bool,
    /// Users (with passwords) or bot accounts.
    pub accounts: Accounts,
}

struct Snap {
    at: std::time::Instant,
    control: Duration,
    postgres: Duration,
    generator: Duration,
    system: Duration,
    deliveries: u64,
}

fn snap(pid: Option<u32>, recorder: &Recorder) -> Snap {
    Snap {
        at: clock(),
        control: pid.and_then(procstat::process_cpu).unwrap_or_default(),
        postgres: server::postgres_cpu(),
        generator: procstat::self_cpu(),
        system: procstat::system_cpu().map_or(Duration::ZERO, |s| s.0),
        deliveries: recorder.deliveries.load(Ordering::Relaxed),
    }
}

fn mib(b: Option<u64>) -> f64 {
    b.unwrap_or(0) as f64 / (1 << 20) as f64
}

pub async fn run(o: &ChatOptions) -> anyhow::Result<ChatResult> {
    anyhow::ensure!(o.clients > 0, "--clients must be at least 1");
    anyhow::ensure!(
        o.channel_members > 0,
        "--channel-members must be at least 1"
    );
    anyhow::ensure!(o.posts_per_sec > 0.0, "--posts-per-sec must be above 0");
    let _ = epoch();
    let nofile = server::raise_nofile();
    anyhow::ensure!(
        nofile >= o.clients as u64 + SPARE_FDS,
        "{} clients need {} open files; the limit is {nofile} (raise the hard limit, e.g. ulimit -Hn)",
        o.clients,
        o.clients as u64 + SPARE_FDS
    );
    if !o.wait_quiet.is_zero() {
        wait_for_quiet(o.wait_quiet).await;
    }
    let control = match (&o.control_url, &o.control_bin) {
        (Some(url), _) => Control::external(url)?,
        (None, Some(bin)) => {
            Control::start(&StartOptions {
                binary: bin.clone(),
                database: o.database,
                cpus: o.control_cpus.clone(),
            })
            .await?
        }
        (None, None) => anyhow::bail!("no control binary and no --control-url"),
    };
    let result = measure(o, &control).await;
    control.stop().await;
    result
}

fn say(o: &ChatOptions, s: String) {
    if o.progress {
        eprintln!("bench chat: {s}");
    }
}

async fn measure(o: &ChatOptions, control: &Control) -> anyhow::Result<ChatResult> {
    let api = Api::new(control.addr);
    let t0 = clock();
    let step = (o.clients / 10).max(1);
    say(o, format!("creating {} {}", o.clients, o.accounts.name()));
    let setup = api::setup(&api, o.clients, o.channel_members, o.accounts, &|done| {
        if o.progress && done % step == 0 {
            eprintln!("bench chat: {done} {} ready", o.accounts.name());
        }
    })
    .await?;
    let setup = Arc::new(setup);
    let setup_seconds = t0.elapsed().as_secs_f64();
    let rss_before = control.rss();

    // Connect every socket.
    say(o, format!("connecting {} sockets", o.clients));
    let window_secs = o.duration.as_secs_f64();
    let recorder = Arc::new(Recorder::new(window_secs.ceil() as usize + 1));
    let (stop_tx, stop_rx) = watch::channel(false);
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
    let t1 = clock();
    let mut tasks = Vec::with_capacity(o.clients);
    let gate = Arc::new(Semaphore::new(CONNECT_CONCURRENCY));
    let mut results = Vec::with_capacity(o.clients);
    for u in setup.users.iter() {
        let permit = gate.clone().acquire_owned().await?;
        let (addr, token, recorder, stop) = (
            control.addr,
            u.token.clone(),
            recorder.clone(),
            stop_rx.clone(),
        );
        let (tx, mut rx) = mpsc::unbounded_channel();
        let ready = ready_tx.clone();
        tasks.push(tokio::spawn(async move {
            let fwd = tokio::spawn(async move {
                let r = rx.recv().await.unwrap_or(Err("task ended".into()));
                drop(permit);
                let _ = ready.send(r);
            });
            let log = run_client(addr, token, &recorder, tx, stop).await;
            let _ = fwd.await;
            log
        }));
        while let Ok(r) = ready_rx.try_recv() {
            results.push(r);
        }
    }
    drop(ready_tx);
    let deadline = tokio::time::Instant::now() + CONNECT_DEADLINE;
    while results.len() < o.clients {
        match tokio::time::timeout_at(deadline, ready_rx.recv()).await {
            Ok(Some(r)) => results.push(r),
            _ => break,
        }
    }
    let connect_seconds = t1.elapsed().as_secs_f64();
    let connected = results.iter().filter(|r| r.is_ok()).count();
    let connect_errors: Vec<String> = results
        .iter()
        .filter_map(|r| r.as_ref().err().cloned())
        .take(5)
        .collect();
    say(
        o,
        format!(
            "{connected} of {} sockets connected in {connect_seconds:.1} s",
            o.clients
        ),
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_connected = control.rss();

    // The window: post on schedule, sample every second.
    say(
        o,
        format!("posting {} posts/s for {window_secs:.0} s", o.posts_per_sec),
    );
    let pid = control.pid;
    let start = snap(pid, &recorder);
    recorder
        .window_start_us
        .store(ns_since_epoch(start.at) / 1_000, Ordering::Relaxed);
    let samples = Arc::new(std::sync::Mutex::new(Vec::<ChatSample>::new()));
    let sampler = {
        let recorder = recorder.clone();
        let samples = samples.clone();
        tokio::spawn(async move {
            let mut prev = snap(pid, &recorder);
            let origin = prev.at;
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            loop {
                tick.tick().await;
                let cur = snap(pid, &recorder);
                let dt = cur.at.duration_since(prev.at).as_secs_f64().max(1e-3);
                let pct = |a: Duration, b: Duration| a.saturating_sub(b).as_secs_f64() / dt * 100.0;
                let sample = ChatSample {
                    t: cur.at.duration_since(origin).as_secs_f64(),
                    deliveries: (cur.deliveries - prev.deliveries) as f64 / dt,
                    control_cpu_pct: pct(cur.control, prev.control),
                    postgres_cpu_pct: pct(cur.postgres, prev.postgres),
                    gen_cpu_pct: pct(cur.generator, prev.generator),
                    control_rss_mib: mib(pid.and_then(procstat::rss_bytes)),
                    ..Default::default()
                };
                samples
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(sample);
                prev = cur;
            }
        })
    };
    let run = poster::post(&api, setup.clone(), o.posts_per_sec, window_secs).await;
    let end = snap(pid, &recorder);
    let window = end.at.duration_since(start.at).as_secs_f64().max(1e-3);

    // Wait for the last deliveries, then close every socket.
    let expected = expected_deliveries(&setup, &run.posts, connected);
    let drain_until = clock() + DRAIN;
    while recorder.deliveries.load(Ordering::Relaxed) < expected && clock() < drain_until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sampler.abort();
    let mut timeline = std::mem::take(&mut *samples.lock().unwrap_or_else(|e| e.into_inner()));
    let _ = stop_tx.send(true);
    let mut logs: Vec<ClientLog> = Vec::with_capacity(tasks.len());
    for t in tasks {
        logs.push(t.await.unwrap_or_default());
    }
    let delivery = check::check(&setup, &logs, &run.posts);
    say(o, "done; checking".into());

    Ok(summarise(
        o,
        control,
        Summary {
            setup_seconds,
            connect_seconds,
            connected,
            connect_errors,
            window,
            start,
            end,
            rss: [rss_before, rss_connected, control.rss()],
            recorder: &recorder,
            run,
            delivery,
            channels: setup.channels.len(),
            timeline: &mut timeline,
        },
    ))
}

/// Deliveries to wait for: each accepted post times its channel's members
/// (all of them when every socket connected; an estimate otherwise).
fn expected_deliveries(setup: &Setup, posts: &[poster::SentPost], connected: usize) -> u64 {
    let share = connected as f64 / setup.users.len().max(1) as f64;
    let all: u64 = posts
        .iter()
        .filter(|p| p.accepted())
        .map(|p| setup.channels[p.channel].members.len() as u64)
        .sum();
    (all as f64 * share).floor() as u64
}

struct Summary<'a> {
    setup_seconds: f64,
    connect_seconds: f64,
    connected: usize,
    connect_errors: Vec<String>,
    window: f64,
    start: Snap,
    end: Snap,
    rss: [Option<u64>; 3],
    recorder: &'a Recorder,
    run: poster::PostRun,
    delivery: check::DeliveryCheck,
    channels: usize,
    timeline: &'a mut Vec<ChatSample>,
}

fn summarise(o: &ChatOptions, control: &Control, s: Summary<'_>) -> ChatResult {
    let posts = &s.run.posts;
    let accepted = posts.iter().filter(|p| p.accepted()).count();
    let failed = posts.len() - accepted;
    let mut post_errors: Vec<String> = Vec::new();
    for p in posts.iter().filter(|p| !p.accepted()) {
        if post_errors.len() >= 5 {
            break;
        }
        if let Some(e) = &p.error {
            post_errors.push(format!("post failed: {e}"));
        }
    }
    let mut latency = clients::histogram();
    for p in posts.iter().filter(|p| p.accepted()) {
        let _ = latency.record(p.latency_us.max(1));
    }
    let delay = s
        .recorder
        .delay_us
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let mut cdf = Vec::new();
    if !delay.is_empty() {
        for q in 0..=200 {
            let q = q as f64 / 200.0;
            let q = if q >= 1.0 { 0.99999 } else { q };
            cdf.push((delay.value_at_quantile(q) as f64 / 1e3, q));
        }
    }
    // Per-second figures the sampler could not know: accepted posts and
    // delay by the second they were sent in.
    let start_us = s.recorder.window_start_us.load(Ordering::Relaxed);
    let by_second = s
        .recorder
        .delay_by_second
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    for (i, sample) in s.timeline.iter_mut().enumerate() {
        sample.posts_accepted = posts
            .iter()
            .filter(|p| {
                p.accepted() && (p.sent_us.saturating_sub(start_us) / 1_000_000) as usize == i
            })
            .count() as f64;
        if let Some(h) = by_second.get(i).filter(|h| !h.is_empty()) {
            sample.delay_p50_ms = h.value_at_quantile(0.5) as f64 / 1e3;
            sample.delay_p99_ms = h.value_at_quantile(0.99) as f64 / 1e3;
        }
    }

    let control_cpu = s.end.control.saturating_sub(s.start.control).as_secs_f64();
    let postgres_cpu = s
        .end
        .postgres
        .saturating_sub(s.start.postgres)
        .as_secs_f64();
    let gen_cpu = s
        .end
        .generator
        .saturating_sub(s.start.generator)
        .as_secs_f64();
    let system = s.end.system.saturating_sub(s.start.system).as_secs_f64();
    let gen_cores = o.gen_cpus.len().max(1);
    let gen_share = gen_cpu / s.window / gen_cores as f64;
    let late_p99_ms = s.run.lateness_us.value_at_quantile(0.99) as f64 / 1e3;
    let mut warnings = Vec::new();
    let mut saturated = false;
    if gen_share > SATURATION {
        saturated = true;
        warnings.push(format!(
            "the generator used {:.0}% of its cores: it, not control, may be the bottleneck",
            gen_share * 100.0
        ));
    }
    if late_p99_ms > LATE_LIMIT_MS {
        saturated = true;
        warnings.push(format!(
            "the post schedule ran {late_p99_ms:.1} ms late (p99): the generator (or control's answers) could not keep up"
        ));
    }
    let others = (system - control_cpu - postgres_cpu - gen_cpu) / s.window;
    if others > OTHER_LOAD_LIMIT {
        warnings.push(format!(
            "other processes used {others:.2} cores during the window: control did not have the machine to itself"
        ));
    }
    if s.connected < o.clients {
        warnings.push(format!(
            "{} of {} sockets did not connect",
            o.clients - s.connected,
            o.clients
        ));
    }
    let [rss_before, rss_connected, rss_end] = s.rss;
    let per_client_kib = match (rss_before, rss_connected) {
        (Some(a), Some(b)) if s.connected > 0 => {
            b.saturating_sub(a) as f64 / 1024.0 / s.connected as f64
        }
        _ => 0.0,
    };
    let valid = !saturated && s.connected == o.clients && others <= OTHER_LOAD_LIMIT;
    ChatResult {
        date: now_utc(),
        machine: procstat::machine(),
        command: o.command.clone(),
        commit: git_commit(),
        control: control.description.clone(),
        database: if o.control_url.is_some() {
            "external".into()
        } else {
            o.database.name().into()
        },
        pinning: o.pinning.clone(),
        clients: o.clients,
        accounts: o.accounts.name().into(),
        connected: s.connected,
        connect_failed: o.clients - s.connected,
        connect_errors: s.connect_errors,
        channels: s.channels,
        channel_members: o.channel_members,
        target_posts_per_sec: o.posts_per_sec,
        window_seconds: s.window,
        setup_seconds: s.setup_seconds,
        connect_seconds: s.connect_seconds,
        posts_sent: posts.len(),
        posts_accepted: accepted,
        posts_failed: failed,
        post_errors,
        // Over the whole window, which ends with the last answer: a control
        // that falls behind stretches it.
        accepted_per_sec: accepted as f64 / s.window,
        post_latency_ms: Percentiles::from_ns(&latency, 1e3),
        delay_ms: Percentiles::from_ns(&delay, 1e3),
        deliveries_per_sec: s.delivery.delivered as f64 / s.window,
        delivery: s.delivery,
        control_cpu_seconds: control_cpu,
        control_cores: control_cpu / s.window,
        postgres_cores: postgres_cpu / s.window,
        control_rss_before_mib: mib(rss_before),
        control_rss_connected_mib: mib(rss_connected),
        control_rss_end_mib: mib(rss_end),
        control_rss_per_client_kib: per_client_kib,
        gen_cpu_share: gen_share,
        gen_cores,
        schedule_late_p99_ms: late_p99_ms,
        saturated,
        timeline: std::mem::take(s.timeline),
        delay_cdf: cdf,
        valid,
        warnings,
    }
}
