//! Recordings in the web client (tests/browser/recording.mjs):
//!
//! - `review_recording`: a WebM made here with FFmpeg (test pattern and a
//!   tone, 5 s) and a WebVTT of two cues, uploaded through the page; the
//!   reviewer plays it, lists the cues and seeks to the one clicked. The
//!   recorder's transcript in that post's thread is found by search and
//!   opens the reviewer at its line's time. The page's VTT parser is
//!   checked in the page.
//! - `call_recording_captions`: a call of two; the host's Record and
//!   Captions are refused without an offloader; the recorder's joining and
//!   leaving and two live captions go into each page's socket handler as
//!   control sends them (no offloader runs here): the pages show the
//!   indicator and no bot tile, the named captions in order until they
//!   fade, and the indicator goes with the bot.
//! - `call_recording_bot`: the same with control's routes: a recording
//!   job's bot (with the credential control stores for a job of this call)
//!   joins and sends the captions through control, and the host's Stop
//!   recording takes it out.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use axum::http::Method;
use control::db::call_jobs::{self, CallJob};
use control::db::posts::{self, Mentions, NewPost};
use libtest_mimic::Failed;
use serde_json::{Value, json};
use tests::browser;

use super::{Control, PASSWORD, User, check};

/// Two cues, the second from 2.5 s: the reviewer must seek there.
const VTT: &str = "WEBVTT\n\n\
00:00:00.500 --> 00:00:02.000\n<v Alice Ames>Welcome to the review test\n\n\
00:00:02.500 --> 00:00:04.500\n<v Bob Burns>The budget comes second\n";

/// The account recordings and transcripts are posted as (the web client
/// knows it by this id).
const RECORDER: &str = "calls-recorder";

/// What control posts of a recording's transcript (`Transcript` and one
/// line per cue).
const TRANSCRIPT: &str = "Transcript\n[00:00:00] Alice Ames: Welcome to the review test\n\
[00:00:03] Bob Burns: The budget comes second";

const WAIT: Duration = Duration::from_secs(90);

/// A 5 s WebM (VP8 test pattern, Opus tone), as a recording would be.
fn make_webm(out: &Path) -> Result<()> {
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args([
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=15:duration=5",
        ])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:duration=5"])
        .args([
            "-c:v",
            "libvpx",
            "-b:v",
            "300k",
            "-c:a",
            "libopus",
            "-shortest",
        ])
        .arg(out)
        .status()
        .context("running ffmpeg")?;
    if !status.success() {
        bail!("ffmpeg failed: {status}");
    }
    Ok(())
}

/// The recorder's account, as control's migrations make it (kept if
/// they already did).
fn recorder_account(c: &Control) -> Result<()> {
    c.rt.block_on(
        sqlx::query(
            "INSERT INTO users (id, username, display_name, password_hash, system_role, created_at)
             VALUES ($1, $1, 'Recording', NULL, 'user', 0) ON CONFLICT DO NOTHING",
        )
        .bind(RECORDER)
        .execute(&c.state.db.pool),
    )?;
    Ok(())
}

/// Once `who` posted a recording with its captions in `channel`, the
/// recorder's transcript goes in its thread, as the recorder posts it.
fn transcript_in_thread(c: &Control, who: &User, channel: &str) -> Result<String> {
    recorder_account(c)?;
    let end = Instant::now() + WAIT;
    loop {
        let list = c.call(
            Method::GET,
            &format!("/channels/{channel}/posts?limit=20"),
            who,
            json!({}),
        )?;
        let root = list.as_array().into_iter().flatten().find(|p| {
            p["root_id"].is_null() && p["files"].as_array().is_some_and(|f| f.len() >= 2)
        });
        if let Some(root) = root {
            let root_id = root["id"].as_str().context("post id")?.to_owned();
            c.rt.block_on(async {
                let now = c.state.clock.now_ms();
                let new = NewPost {
                    channel_id: channel,
                    user_id: RECORDER,
                    root_id: Some(&root_id),
                    message: TRANSCRIPT,
                    ..Default::default()
                };
                posts::create(&c.state.db, new, &Mentions::default(), now).await
            })?;
            c.state.announce();
            return Ok(root_id);
        }
        if Instant::now() > end {
            bail!("no post with two files appeared in {WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

pub(super) fn review_recording() -> Result<(), Failed> {
    let c = Control::start()?;
    let alice = c.user("alice")?;
    let ids = c.team(&[&alice], &["records"])?;
    let dir = tempfile::tempdir()?;
    let media = dir.path().join("call-demo.webm");
    make_webm(&media)?;
    let vtt = dir.path().join("call-demo.vtt");
    std::fs::write(&vtt, VTT)?;
    let shot = browser::artifacts_dir().join("browser_app_review.png");
    let scenario = json!({
        "scenario": "review",
        "base": c.base,
        "users": [{"username": alice.username, "password": PASSWORD}],
        "channel": "records",
        "media": media,
        "vtt": vtt,
        "query": "budget",
        "timeout_ms": 120_000,
        "screenshot": shot,
    });
    let (r, root) = std::thread::scope(|s| {
        let watcher = s.spawn(|| transcript_in_thread(&c, &alice, &ids[0]));
        let r = browser::run_scenario(&scenario);
        (r, watcher.join())
    });
    let r = r?;
    eprintln!("review: {r}");
    let root = root
        .map_err(|_| "the transcript poster panicked")?
        .map_err(|e| format!("{e:#}"))?;
    modules_checked(&r["modules"])?;
    check(
        r["post_id"] == root.as_str(),
        format!("reviewed {} but uploaded {root}", r["post_id"]),
    )?;
    check(
        r["hash"] == format!("#/review/{root}").as_str(),
        format!("reviewer route {}", r["hash"]),
    )?;
    let d = r["duration"].as_f64().unwrap_or(0.0);
    check(
        (4.5..5.5).contains(&d) && r["player_tag"] == "video",
        format!("player {} duration {d}", r["player_tag"]),
    )?;
    let cues = r["cues"].as_array().cloned().unwrap_or_default();
    check(cues.len() == 2, format!("cues listed: {}", r["cues"]))?;
    let texts: Vec<&str> = cues.iter().filter_map(|c| c["text"].as_str()).collect();
    check(
        texts[0].contains("Alice Ames") && texts[0].contains("Welcome to the review test"),
        format!("first cue {:?}", texts[0]),
    )?;
    check(
        texts[1].contains("Bob Burns") && texts[1].contains("The budget comes second"),
        format!("second cue {:?}", texts[1]),
    )?;
    let at = r["after_click"].as_f64().unwrap_or(-1.0);
    check(
        (at - 2.5).abs() <= 0.3 && r["second_start"] == 2.5,
        format!("after clicking the second cue: currentTime {at}"),
    )?;
    check(
        r["highlighted"] == "1",
        format!("cue highlighted while playing: {}", r["highlighted"]),
    )?;
    check(
        r["track"]["kind"] == "subtitles",
        format!("the player's track: {}", r["track"]),
    )?;
    let t = r["search_time"].as_f64().unwrap_or(-1.0);
    check(
        (t - 3.0).abs() <= 0.3,
        format!("search hit opened at {t} s (want 3): {}", r["search_hash"]),
    )?;
    check(
        r["search_src"] == r["first_src"],
        format!("search opened {} not {}", r["search_src"], r["first_src"]),
    )?;
    check(
        r["hit_text"]
            .as_str()
            .is_some_and(|h| h.contains("0:03") && h.contains("Bob Burns")),
        format!("hit {}", r["hit_text"]),
    )?;
    check(
        shot.is_file(),
        format!("no screenshot at {}", shot.display()),
    )?;
    eprintln!("reviewer: {}", shot.display());
    Ok(())
}

/// The page's own parser, run in the page (recording.mjs moduleChecks).
fn modules_checked(m: &Value) -> Result<(), Failed> {
    let cues = &m["cues"];
    check(
        cues[0]["start"] == 1.0
            && cues[0]["end"] == 2.5
            && cues[0]["speaker"] == "Ana Lima"
            && cues[0]["text"] == "Good & early"
            && cues[0]["id"] == "intro",
        format!("first parsed cue {}", cues[0]),
    )?;
    check(
        cues[1]["start"] == 62.25 && cues[1]["speaker"] == "Ben" && cues[1]["text"] == "Two\nlines",
        format!("second parsed cue {}", cues[1]),
    )?;
    check(
        m["cue_at"] == json!([0, -1, 1]),
        format!("cueAt {}", m["cue_at"]),
    )?;
    for (k, want) in [
        ("no_header", "WEBVTT header"),
        ("bad_time", "bad cue timing"),
        ("backwards", "ends before it starts"),
        ("no_timing", "without a timing line"),
    ] {
        check(
            m["errors"][k].as_str().is_some_and(|e| e.contains(want)),
            format!("VTT error {k}: {}", m["errors"][k]),
        )?;
    }
    check(
        m["lines"]
            == json!([
                {"seconds": 3, "speaker": "Ana", "text": "hello there"},
                {"seconds": 3725, "speaker": "Ben Ito", "text": "fine: thanks"},
            ]),
        format!("transcript lines {}", m["lines"]),
    )?;
    check(
        m["line_for"]["seconds"] == 4,
        format!("line for a query {}", m["line_for"]),
    )
}

/// Once a call runs in `channel`, control holds a recording job for it
/// whose bot acts with `token`: what control stores before it hands a job
/// to an offloader (none runs here).
fn job_for_next_call(c: &Control, host: &User, channel: &str, token: &str) -> Result<()> {
    let end = Instant::now() + WAIT;
    loop {
        let path = format!("/channels/{channel}/call");
        if let Ok(call) = c.call(Method::GET, &path, host, json!({})) {
            let job = CallJob {
                id: control::db::new_id(),
                call_id: call["id"].as_str().context("call id")?.to_owned(),
                kind: "recording".into(),
                started_by: host.id.clone(),
                created_at: c.state.clock.now_ms(),
                offloader_job: None,
                session_id: None,
                stopped_at: None,
            };
            let hash = control::auth::tokens::hash_secret(token);
            c.rt.block_on(call_jobs::create(&c.state.db, &job, &hash))?;
            return Ok(());
        }
        if Instant::now() > end {
            bail!("no call started in {WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

pub(super) fn call_recording_captions() -> Result<(), Failed> {
    recording_in_call(false)
}

pub(super) fn call_recording_bot() -> Result<(), Failed> {
    recording_in_call(true)
}

/// `through_control`: the bot joins, captions and is stopped through
/// control's routes; otherwise what control would send is fed to the pages.
fn recording_in_call(through_control: bool) -> Result<(), Failed> {
    let c = Control::start()?;
    let users = [c.user("ana")?, c.user("ben")?];
    let ids = c.team(&[&users[0], &users[1]], &["briefing"])?;
    let name = if through_control {
        "browser_app_recording_bot.png"
    } else {
        "browser_app_captions.png"
    };
    let shot = browser::artifacts_dir().join(name);
    let token = control::auth::tokens::random_secret(control::auth::JOB_TOKEN_PREFIX);
    let scenario = json!({
        "scenario": "recording",
        "base": c.base,
        "users": users.iter().map(|u| json!({"id": u.id, "username": u.username, "password": PASSWORD})).collect::<Vec<_>>(),
        "channel": "briefing",
        "bot_token": through_control.then_some(&token),
        "timeout_ms": 150_000,
        "screenshot": shot,
    });
    let (r, job) = std::thread::scope(|s| {
        let watcher =
            through_control.then(|| s.spawn(|| job_for_next_call(&c, &users[0], &ids[0], &token)));
        let r = browser::run_scenario(&scenario);
        (r, watcher.map(|w| w.join()))
    });
    let r = r?;
    eprintln!("recording: {r}");
    if let Some(job) = job {
        job.map_err(|_| "the job maker panicked")?
            .map_err(|e| format!("{e:#}"))?;
    }
    check(
        r["guest_has_record"] == false,
        "only hosts get the Record control".into(),
    )?;
    check(
        r["record_refused"]
            .as_str()
            .is_some_and(|t| t.starts_with("Recording did not start: ") && t.contains("offloader")),
        format!("Record without an offloader: {}", r["record_refused"]),
    )?;
    check(
        r["record_pressed_after_refusal"] == "false",
        "a refused Record stays off".into(),
    )?;
    check(r["recording_shown"] == true, "recording indicator".into())?;
    check(
        r["bot_tiles"] == 0 && r["tiles"]["ana"] == 2 && r["tiles"]["ben"] == 2,
        format!("tiles {} (bot tiles {})", r["tiles"], r["bot_tiles"]),
    )?;
    check(
        r["record_button_text"]
            .as_str()
            .is_some_and(|t| t.contains("Stop recording")),
        format!(
            "host's control while recording: {}",
            r["record_button_text"]
        ),
    )?;
    check(
        r["caption_lines"] == json!(["ben: caption one from ben", "ana: caption two from ana"]),
        format!("captions at the host {}", r["caption_lines"]),
    )?;
    check(
        r["guest_caption_lines"]
            .as_array()
            .is_some_and(|l| l.len() == 2),
        format!("captions at the guest {}", r["guest_caption_lines"]),
    )?;
    let gone = r["captions_gone_ms"].as_i64().unwrap_or(0);
    check(
        (6_000..12_000).contains(&gone),
        format!("captions faded after {gone} ms (want about 6 s)"),
    )?;
    check(
        r["recording_hidden"] == true
            && r["record_after_stop"]
                .as_str()
                .is_some_and(|t| t.contains("Record") && !t.contains("Stop")),
        format!("after the bot left: {}", r["record_after_stop"]),
    )?;
    check(
        r["captions_refused"]
            .as_str()
            .is_some_and(|t| t.starts_with("Captions did not start: ") && t.contains("offloader")),
        format!("Captions without an offloader: {}", r["captions_refused"]),
    )?;
    check(
        shot.is_file(),
        format!("no screenshot at {}", shot.display()),
    )?;
    eprintln!(
        "captions in a call: {} (shown after {} ms)",
        shot.display(),
        r["captions_ms"]
    );
    Ok(())
}
