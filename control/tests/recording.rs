//! Recording a real call through the offloader, as processes: a str0m
//! participant speaks espeak-ng speech (real Opus) into a call on the
//! embedded rtcd; a host starts a recording; the offloader's bot joins
//! through control's signaling, receive-only; the host stops it; the
//! recording and its transcript come back as a post in the call's thread
//! and are checked with FFmpeg and for the words spoken. Then the same
//! with the offloader killed (SIGKILL) mid-recording and started again:
//! the job resumes and the file holds media from before and after.
//!
//! Needs the offloader binary (`cargo test --workspace` builds it) and
//! the Whisper test model scripts/setup fetches.

mod common;
// Shared with the calls tests; this one only talks.
#[allow(dead_code)]
#[path = "common/peer.rs"]
mod peer;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::socket::{self, Ws};
use common::{Kind, Server, TestApp, TestUser};
use control::Config;
use control::db::users::SystemRole;
use control::nodes::RtcdConfig;
use futures_util::StreamExt as _;
use peer::Peer;
use serde_json::{Value, json};
use tests::offloader_proc::OffloaderProcess;
use tokio_tungstenite::tungstenite::Message;

const KEY: &str = "offloader-test-key-0123456789abcdef";
const SENTENCE: &str = "hello world this is a test of the transcription system";
const WAIT: Duration = Duration::from_secs(15);

/// The CTranslate2 tiny.en model scripts/setup unpacks (the offloader
/// converts it on start).
fn ct2_model() -> PathBuf {
    let dir = std::env::var_os("ENCLAVE_WHISPER_CT2")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let cache = std::env::var_os("ENCLAVE_CACHE_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    std::env::var_os("XDG_CACHE_HOME")
                        .map(PathBuf::from)
                        .unwrap_or_else(|| {
                            PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache")
                        })
                        .join("enclave")
                });
            cache.join("models/whisper-tiny.en-ct2")
        });
    assert!(
        dir.join("model.bin").is_file(),
        "no Whisper test model at {}: run scripts/setup",
        dir.display()
    );
    dir
}

/// `text` spoken by espeak-ng and encoded by FFmpeg as 20 ms Opus frames.
fn speech_frames(text: &str, dir: &Path) -> Vec<Vec<u8>> {
    let wav = dir.join("speech.wav");
    let ogg = dir.join("speech.ogg");
    let ok = Command::new("espeak-ng")
        .arg("-w")
        .arg(&wav)
        .arg(text)
        .status()
        .unwrap();
    assert!(ok.success(), "espeak-ng");
    let ok = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-i"])
        .arg(&wav)
        .args([
            "-ar",
            "48000",
            "-ac",
            "1",
            "-c:a",
            "libopus",
            "-b:a",
            "32k",
            "-frame_duration",
            "20",
        ])
        .arg(&ogg)
        .status()
        .unwrap();
    assert!(ok.success(), "ffmpeg encoding speech");
    let packets = ogg_packets(&std::fs::read(&ogg).unwrap());
    // OpusHead and OpusTags come first.
    packets.into_iter().skip(2).collect()
}

/// The packets of an Ogg stream (one logical stream).
fn ogg_packets(mut b: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    while b.len() >= 27 && &b[..4] == b"OggS" {
        let nseg = b[26] as usize;
        let lacing = &b[27..27 + nseg];
        let mut data = &b[27 + nseg..];
        for &l in lacing {
            cur.extend_from_slice(&data[..l as usize]);
            data = &data[l as usize..];
            if l < 255 {
                out.push(std::mem::take(&mut cur));
            }
        }
        let used = 27 + nseg + lacing.iter().map(|&l| l as usize).sum::<usize>();
        b = &b[used..];
    }
    out
}

struct Ctx {
    app: TestApp,
    server: Server,
    offloader: OffloaderProcess,
    _data: tempfile::TempDir,
}

impl Ctx {
    async fn new() -> Ctx {
        let data = tempfile::tempdir().unwrap();
        let offloader = OffloaderProcess::start(data.path(), KEY, Some(&ct2_model())).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut config = Config {
            rtcd: RtcdConfig::loopback(),
            ..Config::default()
        };
        config.calls.offloader_url = offloader.url();
        config.calls.offloader_api_key = KEY.into();
        config.calls.bot_url = format!("http://{addr}");
        // Handed-back files go to a folder of the test's own.
        config.server.data_dir = data.path().join("control");
        let app = TestApp::with_config(Kind::Sqlite, config).await;
        app.state
            .nodes
            .start()
            .await
            .expect("the embedded media node starts");
        let server = Server::start_on(listener, app.state.clone()).await;
        Ctx {
            app,
            server,
            offloader,
            _data: data,
        }
    }

    async fn stop(self) {
        self.server.stop().await;
        self.app.state.nodes.stop().await;
    }
}

/// Reads until a message `pred` accepts; panics after [`WAIT`].
async fn until(ws: &mut Ws, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        assert!(tokio::time::Instant::now() < deadline, "no {what} in time");
        let v = socket::read(ws, WAIT).await;
        if pred(&v) {
            return v;
        }
    }
}

/// Joins `channel`'s call as `who` with a str0m peer and negotiates until
/// media is up: (call id, the peer, its socket).
async fn speaker(ctx: &Ctx, channel: &str, who: &TestUser) -> (String, Peer, Ws) {
    let r = ctx
        .app
        .post(&format!("/api/v1/channels/{channel}/call"), who, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let call = r.body["call_id"].as_str().unwrap().to_owned();
    let session = r.body["session_id"].as_str().unwrap().to_owned();
    let mut ws = socket::connect(ctx.server.addr, who).await;
    let peer = Peer::new();
    let offer = peer.offer();
    socket::send(
        &mut ws,
        json!({"type": "call_signal", "call_id": call, "session_id": session,
               "signal": {"type": "offer", "offer": {"sdp": offer, "negotiation": 0}}}),
    )
    .await;
    let a = until(&mut ws, "the answer", |v| {
        v["type"] == "call_signal" && v["signal"]["type"] == "answer" || v["type"] == "error"
    })
    .await;
    peer.accept_answer(a["signal"]["answer"]["sdp"].as_str().unwrap())
        .unwrap();
    let deadline = Instant::now() + WAIT;
    while !peer.connected() {
        assert!(
            Instant::now() < deadline,
            "peer did not connect: {:?}",
            peer.error()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (call, peer, ws)
}

/// Sends the speech in real time, over and over with `pause` slots of 20
/// ms of silence between, until stopped. Nothing is sent in a pause, but
/// the RTP time goes on, as with a browser's DTX: the recording holds the
/// silence, so each utterance Whisper gets is one whole sentence.
fn talk(
    peer: Arc<Peer>,
    frames: Vec<Vec<u8>>,
    stop: Arc<AtomicBool>,
    pause: usize,
    ends: Arc<std::sync::Mutex<Vec<Instant>>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let start = Instant::now();
        let mut n: u32 = 0;
        let mut slot: u32 = 0;
        while !stop.load(Ordering::Relaxed) {
            let i = slot as usize % (frames.len() + pause);
            if i < frames.len() {
                peer.send_opus_at(n, slot, frames[i].clone());
                n += 1;
                if i + 1 == frames.len() {
                    ends.lock().unwrap().push(Instant::now());
                }
            }
            slot += 1;
            let next = start + Duration::from_millis(20 * u64::from(slot));
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
        }
    })
}

/// Keeps answering rtcd's offers on `ws` (nothing else reads it); the
/// captions that arrive go to `captions` with the time they came.
fn keep_answering(
    mut ws: Ws,
    peer: Arc<Peer>,
    call: String,
    session: String,
    captions: tokio::sync::mpsc::UnboundedSender<(Instant, Value)>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(Ok(msg)) = ws.next().await {
            let Message::Text(t) = msg else { continue };
            let v: Value = serde_json::from_str(&t).unwrap_or_default();
            if v["type"] == "call_caption" {
                let _ = captions.send((Instant::now(), v));
                continue;
            }
            if v["type"] == "call_signal" && v["signal"]["type"] == "offer" {
                let Ok(answer) =
                    peer.accept_offer(v["signal"]["offer"]["sdp"].as_str().unwrap_or(""))
                else {
                    continue;
                };
                let n = v["signal"]["offer"]["negotiation"].clone();
                socket::send(
                    &mut ws,
                    json!({"type": "call_signal", "call_id": call, "session_id": session,
                           "signal": {"type": "answer", "answer": {"sdp": answer, "negotiation": n}}}),
                )
                .await;
            }
        }
    })
}

/// Alice in the call, speaking: what a test needs to stop her.
struct Talking {
    call: String,
    answering: tokio::task::JoinHandle<()>,
    stop: Arc<AtomicBool>,
    talker: std::thread::JoinHandle<()>,
    /// When each sentence's last frame was sent.
    ends: Arc<std::sync::Mutex<Vec<Instant>>>,
    /// Captions that reached the speaker's socket, with when.
    captions: tokio::sync::mpsc::UnboundedReceiver<(Instant, Value)>,
}

/// `who` joins `channel`'s call and speaks the sentence over and over,
/// `pause` 20 ms slots of silence between.
async fn start_talking(
    ctx: &Ctx,
    channel: &str,
    who: &TestUser,
    tmp: &Path,
    pause: usize,
) -> Talking {
    let frames = speech_frames(SENTENCE, tmp);
    let (call, peer, ws) = speaker(ctx, channel, who).await;
    let peer = Arc::new(peer);
    let session = ctx
        .app
        .get(&format!("/api/v1/calls/{call}"), who)
        .await
        .body["participants"][0]["session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (tx, captions) = tokio::sync::mpsc::unbounded_channel();
    let answering = keep_answering(ws, peer.clone(), call.clone(), session, tx);
    let stop = Arc::new(AtomicBool::new(false));
    let ends = Arc::new(std::sync::Mutex::new(Vec::new()));
    let talker = talk(peer, frames, stop.clone(), pause, ends.clone());
    Talking {
        call,
        answering,
        stop,
        talker,
        ends,
        captions,
    }
}

/// Waits until a bot is in the call (the call shows `recording`).
async fn recording_shown(ctx: &Ctx, call: &str, who: &TestUser, on: bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = ctx.app.get(&format!("/api/v1/calls/{call}"), who).await;
        if r.body["recording"] == on {
            if on {
                let bots = r.body["participants"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|p| p["bot"] == true)
                    .count();
                assert_eq!(bots, 1, "{}", r.body);
            }
            return;
        }
        assert!(
            Instant::now() < deadline,
            "recording never became {on}: {}",
            r.body
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The recorder's post in the call's thread, once it came: its files as
/// (name, bytes).
async fn handed_back(
    ctx: &Ctx,
    call: &str,
    who: &TestUser,
    within: Duration,
) -> Vec<(String, Vec<u8>)> {
    let info = ctx.app.get(&format!("/api/v1/calls/{call}"), who).await;
    let root = info.body["post_id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + within;
    loop {
        let r = ctx
            .app
            .get(&format!("/api/v1/posts/{root}/thread"), who)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let posts = r.body.as_array().cloned().unwrap_or_default();
        let by_bot = |p: &&Value| p["user_id"] == "calls-recorder";
        let with_files = |p: &&Value| p["files"].as_array().is_some_and(|f| !f.is_empty());
        if let Some(p) = posts.iter().filter(by_bot).find(with_files) {
            let mut out = Vec::new();
            for f in p["files"].as_array().expect("the post has files") {
                let id = f["id"].as_str().unwrap();
                let d = ctx.app.get(&format!("/api/v1/files/{id}"), who).await;
                assert_eq!(d.status, StatusCode::OK);
                out.push((f["name"].as_str().unwrap().to_owned(), d.bytes.to_vec()));
            }
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "no recording posted in time: {posts:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `ffprobe`'s JSON for a file.
fn probe(path: &Path) -> Value {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-print_format",
            "json",
            "-show_format",
            "-show_streams",
        ])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ffprobe: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Decodes the whole file; FFmpeg's complaints, if any.
fn decode_errors(path: &Path) -> String {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Loudness (RMS) of the file's audio per `window` samples at 16 kHz mono.
fn rms(path: &Path, window: usize) -> Vec<f64> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-f", "s16le", "-ac", "1", "-ar", "16000", "-"])
        .output()
        .unwrap();
    out.stdout
        .chunks(window * 2)
        .map(|c| {
            let n = c.len() / 2;
            let sum: f64 = c
                .chunks_exact(2)
                .map(|s| f64::from(i16::from_le_bytes([s[0], s[1]])).powi(2))
                .sum();
            (sum / n.max(1) as f64).sqrt()
        })
        .collect()
}

fn words(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

async fn setup(ctx: &Ctx) -> (TestUser, String) {
    let alice = ctx.app.user("alice", SystemRole::User).await;
    let team = ctx.app.team("t", &alice, &[]).await;
    let channel = ctx.app.channel(&team, "standup", "open", &alice).await;
    (alice, channel)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_recorded_call_comes_back_as_a_file_and_a_transcript() {
    let ctx = Ctx::new().await;
    let (alice, channel) = setup(&ctx).await;
    let tmp = tempfile::tempdir().unwrap();
    let Talking {
        call,
        answering,
        stop,
        talker,
        ..
    } = start_talking(&ctx, &channel, &alice, tmp.path(), 50).await;

    let r = ctx
        .app
        .post(
            &format!("/api/v1/calls/{call}/jobs"),
            &alice,
            json!({"job": {"kind": "recording", "format": "webm", "profile": "low", "transcribe": true}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    // One recording at a time.
    let again = ctx
        .app
        .post(&format!("/api/v1/calls/{call}/jobs"), &alice, json!({}))
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.body);
    assert_eq!(again.code(), "already_running");

    recording_shown(&ctx, &call, &alice, true).await;
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(9)).await;
    let r = ctx
        .app
        .post(
            &format!("/api/v1/calls/{call}/jobs/recording/stop"),
            &alice,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let recorded = started.elapsed();
    recording_shown(&ctx, &call, &alice, false).await;

    let files = handed_back(&ctx, &call, &alice, Duration::from_secs(180)).await;
    stop.store(true, Ordering::Relaxed);
    talker.join().unwrap();
    answering.abort();
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    let webm = files
        .iter()
        .find(|(n, _)| n.ends_with(".webm"))
        .unwrap_or_else(|| panic!("{names:?}"));
    let vtt = files
        .iter()
        .find(|(n, _)| n.ends_with(".vtt"))
        .unwrap_or_else(|| panic!("{names:?}"));
    assert!(files.iter().any(|(n, _)| n.ends_with(".txt")), "{names:?}");

    let path = tmp.path().join(&webm.0);
    std::fs::write(&path, &webm.1).unwrap();
    let p = probe(&path);
    let kinds: Vec<&str> = p["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["codec_name"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"opus") && kinds.contains(&"vp8"),
        "{kinds:?}"
    );
    let duration: f64 = p["format"]["duration"].as_str().unwrap().parse().unwrap();
    // The bot hears the speaker from its join to its leave; the file is
    // that long (the speaker talked the whole time).
    println!(
        "recording: {duration:.2} s for {:.2} s between start and stop",
        recorded.as_secs_f64()
    );
    assert!(
        duration > 5.0 && duration < recorded.as_secs_f64() + 2.0,
        "{duration}"
    );
    assert_eq!(decode_errors(&path), "", "the recording decodes cleanly");
    let loud = rms(&path, 16_000).iter().filter(|r| **r > 300.0).count();
    assert!(loud >= 3, "speech in the recording: {loud} loud seconds");

    let text = String::from_utf8_lossy(&vtt.1).into_owned();
    assert!(text.starts_with("WEBVTT"), "{text}");
    assert!(text.contains("<v alice>"), "the speaker is named: {text}");
    let want = words(SENTENCE);
    let got = words(&text);
    let hits = want.iter().filter(|w| got.contains(w)).count();
    println!(
        "transcript: {hits}/{} words of the sentence\n{text}",
        want.len()
    );
    assert!(
        hits * 2 >= want.len(),
        "{hits}/{} words: {text}",
        want.len()
    );

    // What was said is found by chat search, in the transcript's post.
    let word = want
        .iter()
        .find(|w| w.len() > 4 && got.contains(w))
        .expect("a long word was heard");
    let r = ctx
        .app
        .get(&format!("/api/v1/search/posts?q={word}"), &alice)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let found = r.body["results"].as_array().unwrap().iter().any(|h| {
        let m = h["post"]["message"]
            .as_str()
            .or(h["message"].as_str())
            .unwrap_or("");
        m.starts_with("Transcript") && m.contains("] alice: ")
    });
    assert!(found, "search for {word:?}: {}", r.body);
    ctx.stop().await;
}

/// The call as `who` sees it: its bot sessions that are connected.
async fn connected_bots(ctx: &Ctx, call: &str, who: &TestUser) -> Vec<String> {
    let r = ctx.app.get(&format!("/api/v1/calls/{call}"), who).await;
    r.body["participants"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .filter(|p| p["bot"] == true && p["connected"] == true)
                .map(|p| p["session_id"].as_str().unwrap_or("").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_recording_survives_the_offloader_being_killed() {
    let mut ctx = Ctx::new().await;
    let (alice, channel) = setup(&ctx).await;
    let tmp = tempfile::tempdir().unwrap();
    let Talking {
        call,
        answering,
        stop,
        talker,
        ..
    } = start_talking(&ctx, &channel, &alice, tmp.path(), 0).await;

    let r = ctx
        .app
        .post(
            &format!("/api/v1/calls/{call}/jobs"),
            &alice,
            json!({"job": {"kind": "recording", "format": "audio"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let deadline = Instant::now() + Duration::from_secs(30);
    let first = loop {
        if let Some(s) = connected_bots(&ctx, &call, &alice).await.pop() {
            break s;
        }
        assert!(Instant::now() < deadline, "the bot never connected");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(5)).await;

    ctx.offloader.kill();
    let killed = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    ctx.offloader.restart().expect("the offloader starts again");
    // The job resumes: a new bot session joins and connects.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if connected_bots(&ctx, &call, &alice)
            .await
            .iter()
            .any(|s| *s != first)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the job did not resume after the restart"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let gap = killed.elapsed();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let r = ctx
        .app
        .post(
            &format!("/api/v1/calls/{call}/jobs/recording/stop"),
            &alice,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let span = started.elapsed();

    let files = handed_back(&ctx, &call, &alice, Duration::from_secs(120)).await;
    stop.store(true, Ordering::Relaxed);
    talker.join().unwrap();
    answering.abort();
    let (name, bytes) = files
        .iter()
        .find(|(n, _)| n.ends_with(".ogg"))
        .expect("an audio recording");
    let path = tmp.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    let p = probe(&path);
    assert_eq!(p["streams"][0]["codec_name"], "opus", "{p}");
    let duration: f64 = p["format"]["duration"].as_str().unwrap().parse().unwrap();
    assert_eq!(decode_errors(&path), "", "the recording decodes cleanly");
    // Loudness per 100 ms. The speaker never pauses (but for espeak's
    // quiet edges of each sentence), so the longest quiet stretch is the
    // downtime, plus what the bot had not yet made durable, plus the time
    // from its new session connecting to the first frame.
    let loud: Vec<bool> = rms(&path, 1600).iter().map(|r| *r > 300.0).collect();
    let mut longest = 0;
    let mut run = 0;
    for l in &loud {
        run = if *l { 0 } else { run + 1 };
        longest = longest.max(run);
    }
    let longest = f64::from(longest) / 10.0;
    println!(
        "killed for {:.1} s (until the bot was back); file {duration:.1} s for {:.1} s recorded; longest quiet {longest:.1} s",
        gap.as_secs_f64(),
        span.as_secs_f64(),
    );
    assert!(loud[..30].iter().any(|l| *l), "speech before the kill");
    assert!(
        loud[loud.len().saturating_sub(40)..].iter().any(|l| *l),
        "speech after the restart"
    );
    assert!(
        duration >= span.as_secs_f64() - gap.as_secs_f64() - 1.0
            && duration <= span.as_secs_f64() + 2.0,
        "{duration} s for {span:?} with a gap of {gap:?}"
    );
    assert!(
        longest <= gap.as_secs_f64() + 1.5,
        "quiet for {longest} s, down for {gap:?}"
    );
    ctx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn live_captions_reach_the_call_while_it_runs() {
    let ctx = Ctx::new().await;
    let (alice, channel) = setup(&ctx).await;
    let tmp = tempfile::tempdir().unwrap();
    let mut t = start_talking(&ctx, &channel, &alice, tmp.path(), 50).await;
    let call = t.call.clone();
    let r = ctx
        .app
        .post(
            &format!("/api/v1/calls/{call}/jobs"),
            &alice,
            json!({"job": {"kind": "captions"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);

    // Captions for three sentences, each as it comes.
    let mut text = String::new();
    let mut arrivals = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while arrivals.len() < 5 {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(Some((at, c))) = tokio::time::timeout(left, t.captions.recv()).await else {
            panic!("{} captions in time; so far: {text:?}", arrivals.len());
        };
        assert_eq!(c["call_id"], call.as_str());
        assert_eq!(c["user_id"], alice.id.as_str(), "the speaker is named: {c}");
        let said = c["text"].as_str().unwrap();
        text.push_str(said);
        text.push(' ');
        arrivals.push(at);
    }
    // The caption delay: from the end of each sentence to the first
    // caption after it (the one that closes the sentence), once captions
    // run (sentences before the bot was in say nothing).
    let delays: Vec<f64> = t
        .ends
        .lock()
        .unwrap()
        .iter()
        .filter(|e| **e > arrivals[0])
        .filter_map(|e| {
            arrivals
                .iter()
                .find(|a| *a >= e)
                .map(|a| a.duration_since(*e).as_secs_f64())
        })
        .collect();
    let r = ctx
        .app
        .post(
            &format!("/api/v1/calls/{call}/jobs/captions/stop"),
            &alice,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    t.stop.store(true, Ordering::Relaxed);
    t.talker.join().unwrap();
    t.answering.abort();
    println!("live captions: {text:?}; delays after a sentence's end {delays:.2?} s");
    let want = words(SENTENCE);
    let got = words(&text);
    let hits = want.iter().filter(|w| got.contains(w)).count();
    assert!(
        hits * 2 >= want.len(),
        "{hits}/{} words: {text}",
        want.len()
    );
    ctx.stop().await;
}

/// A JSON POST to the offloader's job API over a plain socket: (status,
/// body).
async fn post_job(offloader: &OffloaderProcess, body: Value) -> (u16, Value) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let body = body.to_string();
    let mut s = tokio::net::TcpStream::connect(offloader.addr)
        .await
        .unwrap();
    let req = format!(
        "POST /v1/jobs HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {KEY}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        offloader.addr,
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut out))
        .await
        .expect("the offloader answers")
        .unwrap();
    let text = String::from_utf8_lossy(&out);
    let status = text[9..12].parse().unwrap();
    let json = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, serde_json::from_str(json).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_for_calls_that_do_not_run_are_refused() {
    let ctx = Ctx::new().await;
    let (alice, channel) = setup(&ctx).await;
    let joined = ctx
        .app
        .post(
            &format!("/api/v1/channels/{channel}/call"),
            &alice,
            json!({}),
        )
        .await;
    let call = joined.body["call_id"].as_str().unwrap().to_owned();
    let session = joined.body["session_id"].as_str().unwrap().to_owned();

    // A credential control never gave out: the offloader asks control,
    // which refuses it, and the job is refused before it queues.
    let spec = |call: &str, token: &str| {
        json!({"call_id": call, "control": {"url": format!("http://{}", ctx.server.addr), "token": token},
               "job": {"kind": "recording"}})
    };
    let (status, body) = post_job(&ctx.offloader, spec(&call, "enj_forged")).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("control_refused")),
        "{body}"
    );

    // A real credential, for a call that has ended since.
    let token = control::auth::tokens::random_secret(control::auth::JOB_TOKEN_PREFIX);
    let job = control::db::call_jobs::CallJob {
        id: "job-for-an-ended-call".into(),
        call_id: call.clone(),
        kind: "recording".into(),
        started_by: alice.id.clone(),
        created_at: 0,
        offloader_job: None,
        session_id: None,
        stopped_at: None,
    };
    let hash = control::auth::tokens::hash_secret(&token);
    control::db::call_jobs::create(&ctx.app.state.db, &job, &hash)
        .await
        .unwrap();
    let left = ctx
        .app
        .call(
            axum::http::Method::DELETE,
            &format!("/api/v1/calls/{call}/sessions/{session}"),
            Some(&alice),
            None,
        )
        .await;
    assert!(left.status.is_success(), "{}", left.body);
    let (status, body) = post_job(&ctx.offloader, spec(&call, &token)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("unknown_call")),
        "{body}"
    );

    // And control will not start one for it either.
    let r = ctx
        .app
        .post(&format!("/api/v1/calls/{call}/jobs"), &alice, json!({}))
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "call_ended"),
        "{}",
        r.body
    );
    ctx.stop().await;
}

#[tokio::test]
async fn the_bot_account_does_not_make_a_database_look_used() {
    // Migrations create the calls' bot account; a fresh database must
    // still be a first run, when control creates its admin.
    let app = TestApp::new(Kind::Sqlite).await;
    assert_eq!(control::db::users::count(&app.state.db).await.unwrap(), 0);
    app.user("someone", SystemRole::User).await;
    assert_eq!(control::db::users::count(&app.state.db).await.unwrap(), 1);
}
