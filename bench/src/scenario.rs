//! Named, reproducible scenarios and the run that measures one: start
//! rtcd, join the participants through its control API (or WHIP/WHEP),
//! let media flow for a window, collect the figures, tear down.

use std::collections::HashMap;
use std::io::IsTerminal as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use hdrhistogram::Histogram;
use signaling::media::Permissions;
use signaling::rtcd::{FromRtcd, SessionState, ToRtcd};
use signaling::{CallId, SessionId};
use str0m::media::MediaKind;
use tokio::sync::mpsc;

use crate::media::{Talk, TrackSpec};
use crate::payload::{clock, ns_since_epoch};
use crate::report::{
    Delivery, GeneratorFigures, JoinFigures, Percentiles, RunResult, Sample, SfuFigures,
};
use crate::sfu::{Sfu, SfuOptions};
use crate::signal::{ControlTx, connect_control, http};
use crate::worker::{Cmd, JoinSpec, Note, WorkerHandle, WorkerReport, delay_histogram};
use crate::{payload, procstat};

mod janus_join;

/// A generator thread at or above this share of a core makes the run's
/// SFU figures suspect.
pub const SATURATION: f64 = 0.85;
/// Cores' worth of CPU other processes may use before a run is suspect.
pub const OTHER_LOAD_LIMIT: f64 = 0.15;
/// Joins in flight (requested, not yet connected) while setting up.
const JOIN_CONCURRENCY: usize = 48;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// 1 call, 2 speakers, N listeners.
    LargeCall,
    /// As large-call, plus one screen share.
    LargeCallScreen,
    /// C calls × 10 people, 2 speakers and a screen share each.
    ManyCalls,
    /// 1 call × 20 people, everyone with camera (simulcast) and mic.
    Meeting,
    /// Joins at a fixed rate into running calls: join → first media.
    JoinStorm,
    /// A fixed load for a long time: memory and delay must stay flat.
    Soak,
    /// WHIP publisher (mic + simulcast camera), N WHEP viewers.
    Broadcast,
}

impl Scenario {
    pub const ALL: [Scenario; 7] = [
        Scenario::LargeCall,
        Scenario::LargeCallScreen,
        Scenario::ManyCalls,
        Scenario::Meeting,
        Scenario::JoinStorm,
        Scenario::Soak,
        Scenario::Broadcast,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::LargeCall => "large-call",
            Scenario::LargeCallScreen => "large-call-screen",
            Scenario::ManyCalls => "many-calls",
            Scenario::Meeting => "meeting",
            Scenario::JoinStorm => "join-storm",
            Scenario::Soak => "soak",
            Scenario::Broadcast => "broadcast",
        }
    }
}

/// What to run. `None` takes the scenario's default (or its quick value).
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub scenario: Scenario,
    pub participants: Option<usize>,
    pub speakers: Option<usize>,
    pub screen: bool,
    pub video: bool,
    pub calls: Option<usize>,
    pub duration: Option<Duration>,
    pub join_rate: Option<f64>,
    pub quick: bool,
    pub sfu: SfuOptions,
    pub gen_threads: usize,
    /// CPUs the generator process is pinned to (already applied by the caller).
    pub gen_cpus: Vec<usize>,
    pub pinning: String,
    pub progress: bool,
    pub command: String,
    /// Every receiver decrypts every packet (no light receivers).
    pub full_receivers: bool,
    /// Listeners offer what the web client offers (see `--web-listeners`).
    pub web_listeners: bool,
    /// Publishers send each video frame as one burst instead of pacing it
    /// (see `--bursts`).
    pub bursts: bool,
    /// Before a (non-quick) run, wait at most this long for other
    /// processes to leave the CPUs alone.
    pub wait_quiet: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    Control,
    Whip,
    Whep,
}

#[derive(Debug, Clone)]
struct Planned {
    pid: u32,
    call: usize,
    path: Path,
    spec: JoinSpec,
}

struct Plan {
    description: String,
    calls: usize,
    initial: Vec<Planned>,
    storm: Vec<Planned>,
    storm_rate: f64,
    duration: Duration,
    settle: Duration,
    /// Publishers also receive the others (rtcd); a Janus VideoRoom
    /// publisher handle receives nothing.
    publishers_receive: bool,
}

/// One receiver in this many decrypts every packet (and measures delay);
/// the others count packets by RTP header after each stream's first.
pub const FULL_RECEIVER_EVERY: u32 = 8;

fn light(pid: u32) -> bool {
    !pid.is_multiple_of(FULL_RECEIVER_EVERY)
}

fn listener(pid: u32, call: usize) -> Planned {
    Planned {
        pid,
        call,
        path: Path::Control,
        spec: JoinSpec {
            pid,
            sends: Vec::new(),
            recv_only: Vec::new(),
            silent_sends: Vec::new(),
            data_channel: true,
            light: light(pid),
            answer_only: false,
            paced: true,
        },
    }
}

fn publisher(pid: u32, call: usize, sends: Vec<TrackSpec>) -> Planned {
    Planned {
        pid,
        call,
        path: Path::Control,
        spec: JoinSpec {
            pid,
            sends,
            recv_only: Vec::new(),
            silent_sends: Vec::new(),
            data_channel: true,
            light: false,
            answer_only: false,
            paced: true,
        },
    }
}

fn plan(o: &RunOptions) -> Plan {
    let q = o.quick;
    let pick =
        |v: Option<usize>, normal: usize, quick: usize| v.unwrap_or(if q { quick } else { normal });
    let duration = o
        .duration
        .unwrap_or(Duration::from_secs(match (o.scenario, q) {
            (Scenario::Soak, false) => 1800,
            (Scenario::Soak, true) => 8,
            (Scenario::JoinStorm, true) => 4,
            (_, true) => 4,
            (_, false) => 30,
        }));
    let settle = Duration::from_millis(if q { 1500 } else { 3000 });
    let mut next = 0u32;
    let mut pid = || {
        next += 1;
        next
    };
    let mut initial = Vec::new();
    let mut storm = Vec::new();
    let mut storm_rate = 0.0;
    let speakers_of =
        |n: usize, screen: bool, video: bool, call: usize, pid: &mut dyn FnMut() -> u32| {
            (0..n)
                .map(|i| {
                    let mut sends = vec![TrackSpec::mic(Talk::Continuous)];
                    if video {
                        sends.push(TrackSpec::camera());
                    }
                    if screen && i == 0 {
                        sends.push(TrackSpec::screen());
                    }
                    publisher(pid(), call, sends)
                })
                .collect::<Vec<_>>()
        };
    let (description, calls) = match o.scenario {
        Scenario::LargeCall | Scenario::LargeCallScreen => {
            let screen = o.screen || o.scenario == Scenario::LargeCallScreen;
            let speakers = pick(o.speakers, 2, 2);
            let listeners = pick(o.participants, 200, 6);
            initial.extend(speakers_of(speakers, screen, o.video, 0, &mut pid));
            for _ in 0..listeners {
                initial.push(listener(pid(), 0));
            }
            (
                format!(
                    "1 call, {speakers} speakers{}{}, {listeners} listeners",
                    if o.video { " with camera" } else { "" },
                    if screen { ", 1 screen share" } else { "" }
                ),
                1,
            )
        }
        Scenario::ManyCalls | Scenario::Soak => {
            let calls = pick(
                o.calls,
                if o.scenario == Scenario::Soak { 10 } else { 20 },
                2,
            );
            let people = pick(o.participants, 10, 4).max(2);
            let speakers = pick(o.speakers, 2, 2).min(people);
            for c in 0..calls {
                initial.extend(speakers_of(speakers, true, o.video, c, &mut pid));
                for _ in speakers..people {
                    initial.push(listener(pid(), c));
                }
            }
            (
                format!(
                    "{calls} calls × {people} people, {speakers} speakers and a screen share each"
                ),
                calls,
            )
        }
        Scenario::Meeting => {
            let people = pick(o.participants, 20, 4);
            for i in 0..people {
                let mut sends = vec![
                    TrackSpec::mic(Talk::Rotating {
                        slot: Duration::from_secs(3),
                        index: i as u32,
                        count: people as u32,
                    }),
                    TrackSpec::camera(),
                ];
                if o.screen && i == 0 {
                    sends.push(TrackSpec::screen());
                }
                initial.push(publisher(pid(), 0, sends));
            }
            (
                format!(
                    "1 call × {people} people, camera (3-layer simulcast) + mic each, one talker at a time"
                ),
                1,
            )
        }
        Scenario::JoinStorm => {
            let calls = pick(o.calls, 5, 2);
            let rate = o.join_rate.unwrap_or(if q { 10.0 } else { 20.0 });
            for c in 0..calls {
                initial.extend(speakers_of(2, false, o.video, c, &mut pid));
                for _ in 0..3 {
                    initial.push(listener(pid(), c));
                }
            }
            let joins = ((rate * duration.as_secs_f64()).round() as usize).max(1);
            for i in 0..joins {
                storm.push(listener(pid(), i % calls));
            }
            storm_rate = rate;
            (
                format!(
                    "{calls} running calls (2 speakers, 3 listeners each), {joins} joins at {rate}/s"
                ),
                calls,
            )
        }
        Scenario::Broadcast => {
            let viewers = pick(o.participants, 100, 4);
            let mut p = publisher(
                pid(),
                0,
                vec![TrackSpec::mic(Talk::Continuous), TrackSpec::camera()],
            );
            p.path = Path::Whip;
            p.spec.data_channel = false;
            initial.push(p);
            for _ in 0..viewers {
                let id = pid();
                initial.push(Planned {
                    pid: id,
                    call: 0,
                    path: Path::Whep,
                    spec: JoinSpec {
                        pid: id,
                        sends: Vec::new(),
                        recv_only: vec![MediaKind::Audio, MediaKind::Video],
                        silent_sends: Vec::new(),
                        data_channel: false,
                        light: light(id),
                        answer_only: false,
                        paced: true,
                    },
                });
            }
            (
                format!("WHIP publisher (mic + simulcast camera), {viewers} WHEP viewers"),
                1,
            )
        }
    };
    Plan {
        description,
        calls,
        initial,
        storm,
        storm_rate,
        duration,
        settle,
        publishers_receive: !matches!(o.sfu.mode, crate::sfu::SfuMode::Janus(_)),
    }
}

/// Per participant, what the run knows.
#[derive(Debug, Clone)]
struct Entry {
    call: usize,
    path: Path,
    worker: usize,
    session: Option<String>,
    requested: Option<Instant>,
    /// When the SFU's answer to the join's offer came back.
    answered: Option<Instant>,
    connected: Option<Instant>,
    first_media: Option<Instant>,
    failed: Option<String>,
    storm: bool,
}

#[derive(Default)]
struct Book {
    entries: HashMap<u32, Entry>,
    by_session: HashMap<String, u32>,
    errors: Vec<String>,
}

struct Ctx {
    book: Arc<Mutex<Book>>,
    workers: Arc<Vec<WorkerHandle>>,
    /// rtcd's control API (none when Janus is the SFU).
    control: Option<ControlTx>,
    janus: Option<Arc<janus_join::JanusCalls>>,
    call_ids: Vec<CallId>,
    api: std::net::SocketAddr,
    token_secret: String,
}

impl Ctx {
    fn to_rtcd(&self, msg: ToRtcd) {
        if let Some(c) = &self.control {
            c.send(msg);
        }
    }
}

fn call_id(i: usize) -> CallId {
    CallId::new(format!("bench-call-{i}")).expect("valid id")
}

fn session_of(pid: u32) -> String {
    format!("bench-p{pid}")
}

/// Routes signaling between rtcd and the generator threads until both
/// channels close.
async fn route(
    ctx: Arc<Ctx>,
    mut from_rtcd: mpsc::UnboundedReceiver<FromRtcd>,
    mut notes: mpsc::UnboundedReceiver<Note>,
) {
    loop {
        tokio::select! {
            m = from_rtcd.recv() => match m {
                Some(m) => on_rtcd(&ctx, m),
                None => break,
            },
            n = notes.recv() => match n {
                Some(n) => on_note(&ctx, n),
                None => break,
            },
        }
    }
}

/// The participant of `session` and what `f` makes of its book entry,
/// under one lock.
fn with_entry<T>(
    ctx: &Ctx,
    session: &SessionId,
    f: impl FnOnce(&mut Entry) -> T,
) -> Option<(u32, T)> {
    let mut book = ctx.book.lock().expect("book lock");
    let pid = *book.by_session.get(session.as_str())?;
    Some((pid, f(book.entries.get_mut(&pid)?)))
}

fn on_rtcd(ctx: &Ctx, m: FromRtcd) {
    match m {
        FromRtcd::Answer { session_id, answer } => {
            // The first answer a join gets ends its signaling round trip.
            let target = with_entry(ctx, &session_id, |e| {
                e.answered.get_or_insert_with(clock);
                e.worker
            });
            if let Some((pid, w)) = target {
                ctx.workers[w].send(Cmd::Answer {
                    pid,
                    sdp: answer.sdp,
                });
            }
        }
        FromRtcd::Offer { session_id, offer } => {
            if let Some((pid, w)) = with_entry(ctx, &session_id, |e| e.worker) {
                ctx.workers[w].send(Cmd::Offer {
                    pid,
                    sdp: offer.sdp,
                    negotiation: offer.negotiation,
                });
            }
        }
        FromRtcd::SessionState {
            session_id,
            state: SessionState::Closed { reason },
        } => {
            let mut book = ctx.book.lock().expect("book lock");
            if let Some(pid) = book.by_session.get(session_id.as_str()).copied()
                && let Some(e) = book.entries.get_mut(&pid)
                && e.failed.is_none()
            {
                e.failed = Some(format!("rtcd closed the session: {reason:?}"));
            }
        }
        FromRtcd::Error(e) => {
            let mut book = ctx.book.lock().expect("book lock");
            if book.errors.len() < 100 {
                book.errors.push(format!("{:?}: {}", e.code, e.message));
            }
        }
        _ => {}
    }
}

fn on_note(ctx: &Ctx, n: Note) {
    match n {
        Note::Offer { pid, sdp, tracks } => {
            let (path, call, worker) = {
                let book = ctx.book.lock().expect("book lock");
                let Some(e) = book.entries.get(&pid) else {
                    return;
                };
                (e.path, e.call, e.worker)
            };
            match path {
                Path::Control => ctx.to_rtcd(ToRtcd::Offer {
                    session_id: SessionId::new(session_of(pid)).expect("valid id"),
                    offer: signaling::media::Sdp {
                        sdp,
                        negotiation: 0,
                    },
                    tracks,
                }),
                Path::Whip | Path::Whep => {
                    let api = ctx.api;
                    let call = ctx.call_ids[call].clone();
                    let role = if path == Path::Whip {
                        rtcd::auth::Role::Publish
                    } else {
                        rtcd::auth::Role::Play
                    };
                    let token = rtcd::auth::mint_token(
                        &ctx.token_secret,
                        &call,
                        role,
                        Duration::from_secs(3600),
                    );
                    let book = ctx.book.clone();
                    let workers = ctx.workers.clone();
                    tokio::spawn(async move {
                        let url = if path == Path::Whip {
                            format!("/whip/{call}")
                        } else {
                            format!("/whep/{call}")
                        };
                        let auth = format!("Bearer {token}");
                        let r = http(
                            api,
                            "POST",
                            &url,
                            &[
                                ("Authorization", &auth),
                                ("Content-Type", "application/sdp"),
                            ],
                            sdp.as_bytes(),
                        )
                        .await;
                        match r {
                            Ok(r) if r.status == 201 => {
                                let session = r
                                    .header("location")
                                    .and_then(|l| l.rsplit('/').next())
                                    .unwrap_or_default()
                                    .to_string();
                                let mut b = book.lock().expect("book lock");
                                b.by_session.insert(session.clone(), pid);
                                if let Some(e) = b.entries.get_mut(&pid) {
                                    e.session = Some(session);
                                    e.answered.get_or_insert_with(clock);
                                }
                                drop(b);
                                workers[worker].send(Cmd::Answer { pid, sdp: r.text() });
                            }
                            other => {
                                let msg = match other {
                                    Ok(r) => {
                                        format!("{url}: HTTP {} {}", r.status, r.text().trim())
                                    }
                                    Err(e) => format!("{url}: {e:#}"),
                                };
                                if let Some(e) =
                                    book.lock().expect("book lock").entries.get_mut(&pid)
                                {
                                    e.failed = Some(msg);
                                }
                            }
                        }
                    });
                }
            }
        }
        Note::Answer {
            pid,
            sdp,
            negotiation,
        } => ctx.to_rtcd(ToRtcd::Answer {
            session_id: SessionId::new(session_of(pid)).expect("valid id"),
            answer: signaling::media::Sdp { sdp, negotiation },
        }),
        Note::Connected { pid, at } => {
            if let Some(e) = ctx.book.lock().expect("book lock").entries.get_mut(&pid) {
                e.connected.get_or_insert(at);
            }
        }
        Note::FirstMedia { pid, at } => {
            if let Some(e) = ctx.book.lock().expect("book lock").entries.get_mut(&pid) {
                e.first_media.get_or_insert(at);
            }
        }
        Note::Failed { pid, error } => {
            if let Some(e) = ctx.book.lock().expect("book lock").entries.get_mut(&pid) {
                e.failed.get_or_insert(error);
            }
        }
    }
}

fn start_join(ctx: &Arc<Ctx>, p: &Planned, storm: bool) {
    let worker = p.pid as usize % ctx.workers.len();
    {
        let mut book = ctx.book.lock().expect("book lock");
        let session = (p.path == Path::Control).then(|| session_of(p.pid));
        if let Some(s) = &session {
            book.by_session.insert(s.clone(), p.pid);
        }
        book.entries.insert(
            p.pid,
            Entry {
                call: p.call,
                path: p.path,
                worker,
                session,
                requested: Some(clock()),
                answered: None,
                connected: None,
                first_media: None,
                failed: None,
                storm,
            },
        );
    }
    if let Some(j) = &ctx.janus {
        janus_join::join(ctx, j, p, worker);
        return;
    }
    if p.path == Path::Control {
        ctx.to_rtcd(ToRtcd::AddSession {
            call_id: ctx.call_ids[p.call].clone(),
            session_id: SessionId::new(session_of(p.pid)).expect("valid id"),
            permissions: Permissions::PARTICIPANT,
            request: Some(u64::from(p.pid)),
        });
    }
    ctx.workers[worker].send(Cmd::Join(p.spec.clone()));
}

/// Joins `group` with at most JOIN_CONCURRENCY unconnected at a time and
/// waits until every one has connected or failed (bounded).
async fn join_all(ctx: &Arc<Ctx>, group: &[Planned], deadline: Duration) -> anyhow::Result<()> {
    let until = clock() + deadline;
    let mut started = 0;
    loop {
        let (pending, done) = {
            let book = ctx.book.lock().expect("book lock");
            let mut pending = 0;
            let mut done = 0;
            for p in &group[..started] {
                match book.entries.get(&p.pid) {
                    Some(e) if e.connected.is_some() || e.failed.is_some() => done += 1,
                    _ => pending += 1,
                }
            }
            (pending, done)
        };
        if done == group.len() {
            return Ok(());
        }
        let room = JOIN_CONCURRENCY.saturating_sub(pending);
        for p in group.iter().skip(started).take(room) {
            start_join(ctx, p, false);
            started += 1;
        }
        anyhow::ensure!(
            clock() < until,
            "joins did not complete in {deadline:?}: {done} of {} done",
            group.len()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// One-way delay of plain loopback UDP between two threads: the floor
/// the SFU's figure is measured against.
fn loopback_baseline() -> Percentiles {
    let run = || -> std::io::Result<Histogram<u64>> {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0")?;
        let tx = std::net::UdpSocket::bind("127.0.0.1:0")?;
        let to = rx.local_addr()?;
        rx.set_read_timeout(Some(Duration::from_secs(2)))?;
        let t = std::thread::spawn(move || {
            let mut h = delay_histogram();
            let mut buf = [0u8; 64];
            for _ in 0..300 {
                let Ok(n) = rx.recv(&mut buf) else { break };
                let now = ns_since_epoch(clock());
                if n >= 8 {
                    let sent = u64::from_be_bytes(buf[..8].try_into().expect("8 bytes"));
                    let _ = h.record(now.saturating_sub(sent).max(1_000));
                }
            }
            h
        });
        for _ in 0..300 {
            let now = ns_since_epoch(clock());
            tx.send_to(&now.to_be_bytes(), to)?;
            std::thread::sleep(Duration::from_micros(500));
        }
        Ok(t.join().unwrap_or_else(|_| delay_histogram()))
    };
    run().map_or_else(
        |_| Percentiles::default(),
        |h| Percentiles::from_ns(&h, 1e3),
    )
}

/// Waits (at most `max`) until other processes leave the CPUs alone for a
/// few seconds, so a run on a shared machine measures rtcd, not a build.
pub async fn wait_for_quiet(max: Duration) {
    let until = clock() + max;
    let mut quiet = 0;
    let mut told = false;
    while clock() < until && quiet < 3 {
        let busy = tokio::task::spawn_blocking(|| procstat::machine_busy(Duration::from_secs(1)))
            .await
            .unwrap_or(0.0);
        if busy < OTHER_LOAD_LIMIT {
            quiet += 1;
        } else {
            quiet = 0;
            if !told {
                eprintln!(
                    "bench: other processes use {busy:.2} cores; waiting for the machine to quiet down (at most {max:?})"
                );
                told = true;
            }
        }
    }
}

pub fn git_commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

pub fn now_utc() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

struct CpuSnap {
    at: Instant,
    system: Duration,
    steal: Duration,
    sfu: Duration,
    gen_cpu: Duration,
    threads: Vec<Duration>,
    rx: u64,
    tx: u64,
}

fn snap(sfu: &Sfu, workers: &[WorkerHandle]) -> CpuSnap {
    let me = procstat::self_pid();
    let mut gen_cpu = procstat::self_cpu();
    if sfu.in_process {
        gen_cpu = gen_cpu.saturating_sub(sfu.cpu().unwrap_or_default());
    }
    let (system, steal) = procstat::system_cpu().unwrap_or_default();
    CpuSnap {
        at: clock(),
        system,
        steal,
        sfu: sfu.cpu().unwrap_or_default(),
        gen_cpu,
        threads: workers
            .iter()
            .map(|w| {
                let tid = w.shared.tid.load(std::sync::atomic::Ordering::Relaxed);
                procstat::thread_cpu(me, tid).unwrap_or_default()
            })
            .collect(),
        rx: workers
            .iter()
            .map(|w| {
                w.shared
                    .rx_packets
                    .load(std::sync::atomic::Ordering::Relaxed)
            })
            .sum(),
        tx: workers
            .iter()
            .map(|w| {
                w.shared
                    .tx_packets
                    .load(std::sync::atomic::Ordering::Relaxed)
            })
            .sum(),
    }
}

fn video_sending(plan: &Plan, bursts: bool) -> String {
    let video = plan
        .initial
        .iter()
        .chain(&plan.storm)
        .any(|p| p.spec.sends.iter().any(|t| t.kind() == MediaKind::Video));
    match (video, bursts) {
        (false, _) => "no video".into(),
        (true, true) => "each frame as one burst".into(),
        (true, false) => format!(
            "paced as a browser paces it: 2.5 × the target rate, {} ms steps",
            crate::pacer::PACING_STEP.as_millis()
        ),
    }
}

/// How long the stall probe watches the SFU's CPU before a run.
const STALL_PROBE: Duration = Duration::from_secs(5);

/// Runs one scenario end to end and returns its figures.
pub async fn run(o: &RunOptions) -> anyhow::Result<RunResult> {
    let _ = payload::epoch();
    let mut plan = plan(o);
    // Whatever the count, the first receiver of each call measures delay.
    let mut seen = std::collections::HashSet::new();
    for p in plan.initial.iter_mut() {
        if p.spec.sends.is_empty() && seen.insert(p.call) {
            p.spec.light = false;
        }
    }
    if o.full_receivers {
        for p in plan.initial.iter_mut().chain(plan.storm.iter_mut()) {
            p.spec.light = false;
        }
    }
    if o.web_listeners {
        let listeners = plan.initial.iter_mut().chain(plan.storm.iter_mut());
        for p in listeners.filter(|p| p.path == Path::Control && p.spec.sends.is_empty()) {
            p.spec.data_channel = false;
            p.spec.silent_sends = vec![MediaKind::Audio, MediaKind::Video, MediaKind::Video];
        }
    }
    if o.bursts {
        for p in plan.initial.iter_mut().chain(plan.storm.iter_mut()) {
            p.spec.paced = false;
        }
    }
    if !o.quick && !o.wait_quiet.is_zero() {
        wait_for_quiet(o.wait_quiet).await;
    }
    let baseline = loopback_baseline();
    let stalls = if o.quick {
        Percentiles::default()
    } else {
        let cpus = o.sfu.cpus.clone();
        tokio::task::spawn_blocking(move || crate::stalls::measure(cpus, STALL_PROBE))
            .await
            .unwrap_or_default()
    };
    let sfu = Sfu::start(&o.sfu).await.context("starting rtcd")?;
    let result = run_with(o, &plan, &sfu, baseline).await;
    sfu.stop().await;
    result.map(|mut r| {
        r.stall_floor_us = stalls;
        r
    })
}

async fn run_with(
    o: &RunOptions,
    plan: &Plan,
    sfu: &Sfu,
    baseline: Percentiles,
) -> anyhow::Result<RunResult> {
    let (notes_tx, notes_rx) = mpsc::unbounded_channel();
    let mut workers = Vec::new();
    for i in 0..o.gen_threads.max(1) {
        workers.push(crate::worker::spawn(i, notes_tx.clone(), 1 << 20)?);
    }
    drop(notes_tx);
    let workers = Arc::new(workers);
    let mut ctx = Ctx {
        book: Arc::new(Mutex::new(Book::default())),
        workers: workers.clone(),
        control: None,
        janus: None,
        call_ids: (0..plan.calls).map(call_id).collect(),
        api: sfu.api,
        token_secret: sfu.token_secret.clone(),
    };
    let router = if sfu.janus {
        let (j, closed) = janus_join::setup(sfu.api, plan).await?;
        ctx.janus = Some(j.clone());
        let ctx = Arc::new(ctx);
        (
            ctx.clone(),
            tokio::spawn(janus_join::route(ctx, j, notes_rx, closed)),
        )
    } else {
        let (control, from_rtcd) = connect_control(sfu.api, &sfu.key).await?;
        ctx.control = Some(control);
        let ctx = Arc::new(ctx);
        (ctx.clone(), tokio::spawn(route(ctx, from_rtcd, notes_rx)))
    };
    let (ctx, router) = router;
    let r = measure(o, plan, sfu, &ctx, baseline).await;
    // Tear down: end the calls, stop the threads.
    for c in &ctx.call_ids {
        ctx.to_rtcd(ToRtcd::EndCall {
            call_id: c.clone(),
            request: None,
        });
    }
    if let Some(j) = &ctx.janus {
        janus_join::teardown(j).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let w = workers.clone();
    tokio::task::spawn_blocking(move || {
        for h in w.iter() {
            h.stop();
        }
    })
    .await?;
    router.abort();
    r
}

async fn measure(
    o: &RunOptions,
    plan: &Plan,
    sfu: &Sfu,
    ctx: &Arc<Ctx>,
    baseline: Percentiles,
) -> anyhow::Result<RunResult> {
    let mut warnings = Vec::new();
    let rss_before = sfu.rss().unwrap_or(0);
    for c in &ctx.call_ids {
        ctx.to_rtcd(ToRtcd::CreateCall {
            call_id: c.clone(),
            request: None,
        });
    }
    // Publishers first, so listeners get every track in their first offer.
    let (pubs, subs): (Vec<Planned>, Vec<Planned>) = plan
        .initial
        .iter()
        .cloned()
        .partition(|p| !p.spec.sends.is_empty());
    let deadline = Duration::from_secs(30 + plan.initial.len() as u64 / 10);
    let t_setup = clock();
    join_all(ctx, &pubs, deadline).await?;
    join_all(ctx, &subs, deadline).await?;
    let setup_s = t_setup.elapsed().as_secs_f64();
    tokio::time::sleep(plan.settle).await;
    let rss_after = sfu.rss().unwrap_or(0);

    let progress = (o.progress && std::io::stderr().is_terminal()).then(|| {
        let pb = indicatif::ProgressBar::new(plan.duration.as_secs().max(1));
        pb.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {prefix} [{bar:30}] {pos}/{len} s {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        pb.set_prefix(o.scenario.name());
        pb
    });

    // The window.
    let m0 = sfu.metrics().await?;
    let s0 = snap(sfu, &ctx.workers);
    let start_ns = ns_since_epoch(s0.at);
    for w in ctx.workers.iter() {
        w.shared
            .window_start
            .store(start_ns, std::sync::atomic::Ordering::Relaxed);
    }
    let mut timeline = Vec::new();
    let mut prev = snap(sfu, &ctx.workers);
    let end = s0.at + plan.duration;
    let mut storm = plan.storm.iter();
    let storm_gap = if plan.storm_rate > 0.0 {
        Duration::from_secs_f64(1.0 / plan.storm_rate)
    } else {
        Duration::MAX
    };
    let mut next_join = s0.at;
    let mut next_sample = s0.at + Duration::from_secs(1);
    let sample_every = if plan.duration > Duration::from_secs(600) {
        Duration::from_secs(10)
    } else {
        Duration::from_secs(1)
    };
    loop {
        let now = clock();
        if now >= end {
            break;
        }
        while next_join <= now {
            match storm.next() {
                Some(p) => start_join(ctx, p, true),
                None => break,
            }
            next_join += storm_gap;
        }
        if now >= next_sample {
            next_sample += sample_every;
            let cur = snap(sfu, &ctx.workers);
            let dt = cur.at.duration_since(prev.at).as_secs_f64().max(1e-3);
            let s = Sample {
                t: cur.at.duration_since(s0.at).as_secs_f64(),
                sfu_cpu_pct: (cur.sfu.saturating_sub(prev.sfu)).as_secs_f64() / dt * 100.0,
                gen_cpu_pct: (cur.gen_cpu.saturating_sub(prev.gen_cpu)).as_secs_f64() / dt * 100.0,
                rx_pps: (cur.rx - prev.rx) as f64 / dt,
                sfu_rss_mib: sfu.rss().unwrap_or(0) as f64 / 1048576.0,
            };
            if let Some(pb) = &progress {
                pb.set_position(s.t as u64);
                pb.set_message(format!(
                    "rx {:.0} pps, rtcd {:.0}%, generator {:.0}%",
                    s.rx_pps, s.sfu_cpu_pct, s.gen_cpu_pct
                ));
            }
            timeline.push(s);
            prev = cur;
        }
        let wake = next_sample.min(end).min(next_join);
        tokio::time::sleep(
            wake.saturating_duration_since(clock())
                .min(Duration::from_millis(200)),
        )
        .await;
    }
    let s1 = snap(sfu, &ctx.workers);
    let m1 = sfu.metrics().await?;
    let end_ns = ns_since_epoch(s1.at);
    for w in ctx.workers.iter() {
        w.shared
            .window_end
            .store(end_ns, std::sync::atomic::Ordering::Relaxed);
    }
    if let Some(pb) = progress {
        pb.finish_and_clear();
    }
    // Let packets sent inside the window arrive, and late joiners settle.
    let grace = if plan.storm.is_empty() { 500 } else { 3000 };
    tokio::time::sleep(Duration::from_millis(grace)).await;
    let rss_end = sfu.rss().unwrap_or(0);

    let workers = ctx.workers.clone();
    let reports: Vec<WorkerReport> =
        tokio::task::spawn_blocking(move || workers.iter().filter_map(|w| w.report()).collect())
            .await?;
    anyhow::ensure!(
        reports.len() == ctx.workers.len(),
        "a generator thread did not report"
    );

    // ---- figures
    let window = s1.at.duration_since(s0.at).as_secs_f64();
    let fwd = m1.forwarded_packets() - m0.forwarded_packets();
    let fwd_bytes = m1.forwarded_bytes() - m0.forwarded_bytes();
    let sfu_cpu = s1.sfu.saturating_sub(s0.sfu).as_secs_f64();
    let worker_cpu = m1.worker_cpu() - m0.worker_cpu();
    let mpkt = (fwd / 1e6).max(1e-9);
    // Janus counts nothing it forwards: its per-forwarded figures stay 0.
    let per_fwd = |cpu: f64| if fwd > 0.0 { cpu / mpkt } else { 0.0 };
    let participants = plan.initial.len() + plan.storm.len();
    let dropped: Vec<(String, f64)> = m1
        .series("rtcd_dropped_total")
        .into_iter()
        .map(|(k, v)| {
            let before = m0
                .series("rtcd_dropped_total")
                .into_iter()
                .find(|(k0, _)| *k0 == k)
                .map_or(0.0, |(_, v0)| v0);
            (k.replace("reason=", "").replace('"', ""), v - before)
        })
        .filter(|(_, v)| *v > 0.0)
        .collect();
    let mut sfu_fig = SfuFigures {
        cpu_seconds: sfu_cpu,
        worker_cpu_seconds: worker_cpu,
        cores_used: sfu_cpu / window,
        cpu_s_per_million_forwarded: per_fwd(sfu_cpu),
        worker_cpu_s_per_million_forwarded: per_fwd(worker_cpu),
        forwarded_packets: fwd,
        forwarded_pps: fwd / window,
        forwarded_bps: fwd_bytes * 8.0 / window,
        pps_per_core: if sfu_cpu > 0.0 { fwd / sfu_cpu } else { 0.0 },
        ingress_pps: (m1.sum("rtcd_packets_in_total") - m0.sum("rtcd_packets_in_total")) / window,
        rss_before_joins_mib: rss_before as f64 / 1048576.0,
        rss_after_joins_mib: rss_after as f64 / 1048576.0,
        rss_end_mib: rss_end as f64 / 1048576.0,
        memory_per_participant_kib: if rss_before > 0 {
            rss_after.saturating_sub(rss_before) as f64 / 1024.0 / plan.initial.len().max(1) as f64
        } else {
            0.0
        },
        dropped,
        udp_recv_syscalls: m1.sum_where("rtcd_worker_syscalls", "direction=\"recv\"")
            - m0.sum_where("rtcd_worker_syscalls", "direction=\"recv\""),
        udp_send_syscalls: m1.sum_where("rtcd_worker_syscalls", "direction=\"send\"")
            - m0.sum_where("rtcd_worker_syscalls", "direction=\"send\""),
        release_passes: m1.sum("rtcd_release_passes_total") - m0.sum("rtcd_release_passes_total"),
        ..Default::default()
    };

    let mut delay = delay_histogram();
    let mut delay_audio = delay_histogram();
    let mut delay_video = delay_histogram();
    let mut late = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
    for r in &reports {
        let _ = delay.add(&r.delay);
        let _ = delay_audio.add(&r.delay_audio);
        let _ = delay_video.add(&r.delay_video);
        let _ = late.add(&r.timer_late_us);
    }
    let pct = |h: &Histogram<u64>| Percentiles::from_ns(h, 1e3);
    let delay_us = pct(&delay);
    let sub = |v: f64| (v - baseline.p50).max(0.0);
    let added = Percentiles {
        count: delay_us.count,
        p50: sub(delay_us.p50),
        p99: sub(delay_us.p99),
        p999: sub(delay_us.p999),
        max: sub(delay_us.max),
    };
    let mut cdf = Vec::new();
    if !delay.is_empty() {
        for q in 0..=200 {
            let q = q as f64 / 200.0;
            let q = if q >= 1.0 { 0.99999 } else { q };
            cdf.push((delay.value_at_quantile(q) as f64 / 1e3, q));
        }
    }
    let mut delay_timeline = Vec::new();
    for w in ctx.workers.iter() {
        if let Ok(v) = w.shared.intervals.lock() {
            for s in v.iter() {
                let t = s.t - start_ns as f64 / 1e9;
                if t >= 0.0 && t <= window + 1.0 {
                    delay_timeline.push((t, s.p50_us, s.p99_us));
                }
            }
        }
    }
    delay_timeline.sort_by(|a, b| a.0.total_cmp(&b.0));

    // Joins and delivery.
    let book = ctx.book.lock().expect("book lock").clone_entries();
    let clients: HashMap<u32, &crate::worker::ClientReport> = reports
        .iter()
        .flat_map(|r| r.clients.iter())
        .map(|c| (c.pid, c))
        .collect();
    // Join times in µs, whole and split where they go: the SFU's answer,
    // then ICE and DTLS, then the first packet.
    let join_histogram = || Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("bounds");
    let (mut connect_ms, mut media_ms) = (join_histogram(), join_histogram());
    let (mut answer_ms, mut connect_after_ms, mut media_after_ms) =
        (join_histogram(), join_histogram(), join_histogram());
    let micros = |from: Instant, to: Instant| to.duration_since(from).as_micros().max(1) as u64;
    let storm_run = !plan.storm.is_empty();
    let mut join = JoinFigures::default();
    let all_planned: Vec<&Planned> = plan.initial.iter().chain(plan.storm.iter()).collect();
    for (pid, e) in &book {
        if storm_run && !e.storm {
            continue;
        }
        join.attempted += 1;
        let failed = e
            .failed
            .clone()
            .or_else(|| clients.get(pid).and_then(|c| c.failed.clone()));
        if let (Some(req), Some(c)) = (e.requested, e.connected) {
            join.connected += 1;
            let _ = connect_ms.record(micros(req, c));
        } else if failed.is_some() {
            join.failed += 1;
        }
        if expects_media(*pid, &all_planned, plan.publishers_receive) {
            join.expect_media += 1;
        }
        if let (Some(req), Some(m)) = (e.requested, e.first_media) {
            let _ = media_ms.record(micros(req, m));
        }
        if let (Some(req), Some(a)) = (e.requested, e.answered) {
            let _ = answer_ms.record(micros(req, a));
            if let Some(c) = e.connected {
                let _ = connect_after_ms.record(micros(a, c));
                if let Some(m) = e.first_media {
                    let _ = media_after_ms.record(micros(c, m));
                }
            }
        }
    }
    let stuck: Vec<String> = book
        .iter()
        .filter(|(_, e)| e.connected.is_none() && (!storm_run || e.storm))
        .take(3)
        .map(|(pid, e)| {
            format!(
                "p{pid} ({:?}, requested {:+.2} s into the window, session {:?}, {}; {})",
                e.path,
                e.requested.map_or(f64::NAN, |r| signed_secs(r, s0.at)),
                e.session,
                e.failed.clone().unwrap_or_else(|| "no error".into()),
                clients
                    .get(pid)
                    .map_or("no client".into(), |c| c.state.clone())
            )
        })
        .collect();
    if !stuck.is_empty() {
        warnings.push(format!("joins that never connected: {}", stuck.join("; ")));
    }
    join.connect_ms = Percentiles::from_ns(&connect_ms, 1e3);
    join.first_media_ms = Percentiles::from_ns(&media_ms, 1e3);
    join.answer_ms = Percentiles::from_ns(&answer_ms, 1e3);
    join.answer_to_connected_ms = Percentiles::from_ns(&connect_after_ms, 1e3);
    join.connected_to_media_ms = Percentiles::from_ns(&media_after_ms, 1e3);

    let mut delivery = Delivery::default();
    for r in all_planned.iter() {
        let expected = expected_streams(r, &all_planned, plan.publishers_receive);
        if expected.is_empty() {
            continue;
        }
        delivery.receivers += 1;
        let got = clients.get(&r.pid);
        for (sender, track) in expected {
            delivery.expected_streams += 1;
            let ok = got.is_some_and(|c| {
                c.streams
                    .iter()
                    .any(|s| s.sender == sender && s.track == track && s.received > 0)
            });
            if !ok {
                delivery.missing_streams += 1;
                if delivery.missing_examples.len() < 10 {
                    delivery.missing_examples.push(format!(
                        "p{} did not receive p{sender} track {track}",
                        r.pid
                    ));
                }
            }
        }
    }
    for c in clients.values() {
        for s in &c.streams {
            delivery.received_total += s.received;
            delivery.lost_total += s.lost;
            delivery.window_received += s.window_received;
            delivery.window_lost += s.window_lost;
        }
    }
    let win_total = delivery.window_received + delivery.window_lost;
    delivery.loss_pct = if win_total > 0 {
        delivery.window_lost as f64 / win_total as f64 * 100.0
    } else {
        0.0
    };

    // Generator health.
    let gen_cpu = s1.gen_cpu.saturating_sub(s0.gen_cpu).as_secs_f64();
    let thread_busy: Vec<f64> = s1
        .threads
        .iter()
        .zip(&s0.threads)
        .map(|(a, b)| a.saturating_sub(*b).as_secs_f64() / window)
        .collect();
    let gen_cores = o.gen_cpus.len().max(1) as f64;
    let cpu_share = gen_cpu / window / gen_cores;
    let late_p99_ms = if late.is_empty() {
        0.0
    } else {
        late.value_at_quantile(0.99) as f64 / 1e3
    };
    let mut saturated = false;
    if thread_busy.iter().any(|b| *b > SATURATION) {
        saturated = true;
        warnings.push(format!(
            "a generator thread used more than {:.0}% of a core: the generator, not rtcd, may be the bottleneck",
            SATURATION * 100.0
        ));
    }
    if cpu_share > SATURATION {
        saturated = true;
        warnings.push(format!(
            "the generator used {:.0}% of its cores",
            cpu_share * 100.0
        ));
    }
    if late_p99_ms > 5.0 {
        saturated = true;
        warnings.push(format!(
            "generator timers fired {late_p99_ms:.1} ms late (p99): it could not keep up"
        ));
    }
    // On a shared machine other work competes for the cores: say so.
    let system_cores = s1.system.saturating_sub(s0.system).as_secs_f64() / window;
    let steal_cores = s1.steal.saturating_sub(s0.steal).as_secs_f64() / window;
    let others = (system_cores - sfu_cpu / window - gen_cpu / window).max(0.0);
    if others > OTHER_LOAD_LIMIT {
        saturated = true;
        warnings.push(format!(
            "other processes used {others:.2} cores during the window: rtcd and the generator did not have their CPUs to themselves"
        ));
    }
    if steal_cores > OTHER_LOAD_LIMIT {
        warnings.push(format!(
            "the hypervisor stole {steal_cores:.2} cores' worth of time during the window"
        ));
    }
    if sfu.in_process {
        warnings.push(
            "rtcd ran in this process: CPU is its threads' only, memory per participant not measured"
                .into(),
        );
    }
    if join.failed > 0 {
        warnings.push(format!("{} joins failed", join.failed));
    }
    let errors = ctx.book.lock().expect("book lock").errors.clone();
    for e in errors.iter().take(5) {
        warnings.push(format!("rtcd error: {e}"));
    }
    let plis: u32 = clients.values().map(|c| c.plis_sent).sum();
    let pli_receivers = clients.values().filter(|c| c.plis_sent > 0).count();
    if plis > 0 {
        warnings.push(format!(
            "{pli_receivers} receivers had to ask for a keyframe themselves ({plis} PLIs): a video m-line stayed empty for 1 s after it was added"
        ));
    }
    if delivery.missing_streams > 0 {
        warnings.push(format!(
            "{} of {} expected streams never arrived, e.g. {}",
            delivery.missing_streams,
            delivery.expected_streams,
            delivery
                .missing_examples
                .first()
                .cloned()
                .unwrap_or_default()
        ));
    }
    if sfu.janus {
        warnings.push(
            "Janus has no forwarded-packet counter: its CPU per packet counts what the receivers got (the `delivered` figures)"
                .into(),
        );
        for e in sfu.janus_errors().iter().take(5) {
            warnings.push(format!("Janus logged: {e}"));
        }
    } else if fwd <= 0.0 && delivery.window_received > 0 {
        warnings.push(format!(
            "rtcd's /metrics did not advance in the window although {} packets arrived: its worker never reached its snapshot (a saturated receive loop starves it); SFU figures unavailable",
            delivery.window_received
        ));
    } else if fwd <= 0.0 {
        warnings.push("rtcd forwarded nothing in the window".into());
    }
    let publishers = plan
        .initial
        .iter()
        .filter(|p| !p.spec.sends.is_empty())
        .count();
    let counted = if sfu.janus {
        delivery.window_received > 0
    } else {
        fwd > 0.0
    };
    let valid = !saturated && counted && join.failed == 0 && delivery.missing_streams == 0;
    // What the receivers got of the packets sent in the window: the one
    // count both rtcd and Janus can be measured by.
    let delivered = delivery.window_received as f64;
    sfu_fig.delivered_packets = delivered;
    sfu_fig.delivered_pps = delivered / window;
    sfu_fig.cpu_s_per_million_delivered = if delivered > 0.0 {
        sfu_cpu / (delivered / 1e6)
    } else {
        0.0
    };
    let _ = setup_s;
    Ok(RunResult {
        scenario: o.scenario.name().into(),
        description: plan.description.clone(),
        command: o.command.clone(),
        date: now_utc(),
        machine: procstat::machine(),
        rtcd_commit: git_commit(),
        rtcd: match &o.sfu.mode {
            crate::sfu::SfuMode::Binary(p) => format!(
                "process {} (built {})",
                p.display(),
                std::fs::metadata(p)
                    .and_then(|m| m.modified())
                    .map(|t| {
                        let secs = t
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(0, |d| d.as_secs());
                        let age = std::time::SystemTime::now()
                            .duration_since(t)
                            .map_or(0, |d| d.as_secs());
                        format!("{} min before the run, unix {secs}", age / 60)
                    })
                    .unwrap_or_else(|_| "at an unknown time".into())
            ),
            crate::sfu::SfuMode::InProcess => "in process".into(),
            crate::sfu::SfuMode::Janus(j) => format!(
                "Janus (Debian package, VideoRoom over HTTP, {}), process {}",
                if j.event_loops > 0 {
                    format!("{} shared event loop(s)", j.event_loops)
                } else {
                    "a thread per handle".into()
                },
                j.binary.display()
            ),
        },
        sfu_name: o.sfu.mode.name().into(),
        rtcd_workers: o.sfu.workers,
        batching: o.sfu.batching,
        pinning: o.pinning.clone(),
        video_sending: video_sending(plan, o.bursts),
        calls: plan.calls,
        participants,
        publishers,
        window_seconds: window,
        sfu: sfu_fig,
        delay_us,
        delay_audio_us: pct(&delay_audio),
        delay_video_us: pct(&delay_video),
        baseline_us: baseline,
        added_delay_us: added,
        stall_floor_us: Percentiles::default(),
        join,
        delivery,
        generator: GeneratorFigures {
            cpu_seconds: gen_cpu,
            cpu_share,
            thread_busy,
            timer_late_p99_ms: late_p99_ms,
            saturated,
            rx_pps: (s1.rx - s0.rx) as f64 / window,
            tx_pps: (s1.tx - s0.tx) as f64 / window,
        },
        timeline,
        delay_timeline,
        delay_cdf: cdf,
        valid,
        warnings,
    })
}

impl Book {
    fn clone_entries(&self) -> Vec<(u32, Entry)> {
        let mut v: Vec<(u32, Entry)> = self.entries.iter().map(|(k, e)| (*k, e.clone())).collect();
        v.sort_by_key(|(k, _)| *k);
        v
    }
}

fn signed_secs(t: Instant, origin: Instant) -> f64 {
    if t >= origin {
        t.duration_since(origin).as_secs_f64()
    } else {
        -origin.duration_since(t).as_secs_f64()
    }
}

fn expects_media(pid: u32, all: &[&Planned], publishers_receive: bool) -> bool {
    all.iter()
        .find(|p| p.pid == pid)
        .is_some_and(|p| !expected_streams(p, all, publishers_receive).is_empty())
}

/// The (sender, track) streams a participant should receive.
fn expected_streams(r: &Planned, all: &[&Planned], publishers_receive: bool) -> Vec<(u32, u8)> {
    if !publishers_receive && !r.spec.sends.is_empty() {
        return Vec::new();
    }
    match r.path {
        Path::Whip => Vec::new(),
        Path::Whep => {
            // The call's first publisher: its first audio and first video track.
            let Some(p) = all
                .iter()
                .find(|p| p.call == r.call && !p.spec.sends.is_empty())
            else {
                return Vec::new();
            };
            let mut v = Vec::new();
            for kind in &r.spec.recv_only {
                if let Some(i) = p.spec.sends.iter().position(|t| t.kind() == *kind) {
                    v.push((p.pid, i as u8));
                }
            }
            v
        }
        Path::Control => all
            .iter()
            .filter(|p| p.call == r.call && p.pid != r.pid && p.path != Path::Whep)
            .flat_map(|p| (0..p.spec.sends.len()).map(|i| (p.pid, i as u8)))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_civil() {
        let d = now_utc();
        assert!(d.starts_with("20") && d.ends_with("UTC"), "{d}");
    }
}
