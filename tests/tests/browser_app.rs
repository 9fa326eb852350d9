//! Enclave's web client in headless Chromium against a real control
//! (in process, SQLite in a temporary folder, on loopback in a private
//! network namespace): people sign in through the page and talk.
//!
//! - `web_client_headers`: `/` and `/app/*` carry the content types, the
//!   strict Content-Security-Policy, `nosniff` and a revalidating cache.
//! - `chat_two_users`: two users in two browser contexts (one 320 px
//!   wide); a post raises an unread badge, then appears live; a thread
//!   reply and a reaction made from the narrow page reach the other live.
//! - `call_three_users`: control with its embedded rtcd; one user starts a
//!   call in a channel and two join from the banner. Each page receives
//!   the others' audio and video; the host mutes one and the others stop
//!   receiving its audio; a screen share reaches the others; the host
//!   removes one (who cannot rejoin) and ends the call, whose post then
//!   shows the duration. A screenshot of the call is saved.
//! - `review_recording`, `call_recording_captions` (browser_app/recording.rs):
//!   the reviewer of a recording and its transcript, search into a
//!   transcript, and a call's recording indicator, controls and captions.
//!
//! Skipped (ignored) without node, Chromium or tests/browser/node_modules,
//! unless ENCLAVE_REQUIRE_BROWSER=1.

use std::time::Duration;

use anyhow::{Result, bail};
use libtest_mimic::{Arguments, Failed};
use serde_json::json;
use tests::browser;
use tests::browser_gate::Gate;

#[path = "browser_app/recording.rs"]
mod recording;
#[path = "web/control.rs"]
mod server;

use server::{Control, PASSWORD, User};

fn main() {
    let gate = Gate::enter("browser_app");
    let mut args = Arguments::from_args();
    args.test_threads.get_or_insert(1);
    let trials = vec![
        gate.trial(
            "web_client_headers",
            web_client_headers,
            gate.no_netns.clone(),
        ),
        gate.browser("chat_two_users", chat_two_users),
        gate.browser("call_three_users", call_three_users),
        gate.browser("review_recording", recording::review_recording),
        gate.browser(
            "call_recording_captions",
            recording::call_recording_captions,
        ),
        gate.browser("call_recording_bot", recording::call_recording_bot),
    ];
    libtest_mimic::run(&args, trials).exit();
}

fn web_client_headers() -> Result<(), Failed> {
    let c = Control::start()?;
    let (status, body) = tests::wait::http_get(&format!("{}/", c.base), Duration::from_secs(10))?;
    check(status == 200, format!("GET / {status}"))?;
    check(
        body.contains(r#"<script type="module" src="/app/app.js">"#),
        format!("the page loads app.js: {body}"),
    )?;
    let headers = raw_headers(&c.base, "/app/app.js")?;
    for want in [
        "content-type: text/javascript; charset=utf-8",
        "x-content-type-options: nosniff",
        "cache-control: no-cache",
        "x-frame-options: deny",
    ] {
        check(
            headers.to_ascii_lowercase().contains(want),
            format!("{want} missing in\n{headers}"),
        )?;
    }
    let csp = headers
        .lines()
        .find_map(|l| l.strip_prefix("content-security-policy: "))
        .unwrap_or_default()
        .to_owned();
    for want in [
        "default-src 'self'",
        "script-src 'self'",
        "frame-ancestors 'none'",
        "media-src 'self' blob:",
        "img-src 'self' blob: data:",
    ] {
        check(csp.contains(want), format!("CSP lacks {want}: {csp}"))?;
    }
    let host = c.base.trim_start_matches("http://");
    check(
        csp.contains(&format!("connect-src 'self' ws://{host} wss://{host}")),
        format!("CSP connect-src: {csp}"),
    )?;
    let (status, _) = tests::wait::http_get(
        &format!("{}/app/nothing.js", c.base),
        Duration::from_secs(5),
    )?;
    check(status == 404, format!("unknown file: {status}"))?;
    let (status, _) = tests::wait::http_get(
        &format!("{}/app/index.html", c.base),
        Duration::from_secs(5),
    )?;
    check(
        status == 404,
        format!("the page is served at / only: {status}"),
    )?;
    Ok(())
}

/// The response head of a GET, as sent.
fn raw_headers(base: &str, path: &str) -> Result<String> {
    use std::io::{Read, Write};
    let addr = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    let text = String::from_utf8_lossy(&out);
    match text.split_once("\r\n\r\n") {
        Some((head, _)) => Ok(head.replace("\r\n", "\n")),
        None => bail!("no response head: {text}"),
    }
}

fn chat_two_users() -> Result<(), Failed> {
    let c = Control::start()?;
    let alice = c.user("alice")?;
    let bob = c.user("bob")?;
    let ids = c.team(&[&alice, &bob], &["town", "general"])?;
    let shot = browser::artifacts_dir().join("browser_app_chat_narrow.png");
    let r = browser::run_scenario(&json!({
        "scenario": "chat",
        "base": c.base,
        "users": [
            {"username": alice.username, "password": PASSWORD},
            {"username": bob.username, "password": PASSWORD},
        ],
        "channel": "town",
        "channel_id": ids[0],
        "other_channel": "general",
        "timeout_ms": 90_000,
        "screenshot": shot,
    }))?;
    eprintln!("chat: {r}");
    for key in [
        "badge_ms",
        "live_post_ms",
        "reply_count_ms",
        "reply_in_thread",
        "reaction_ms",
    ] {
        check(
            r[key].as_i64().is_some_and(|ms| ms < 10_000),
            format!("{key}: {}", r[key]),
        )?;
    }
    check(
        r["badge_text"].as_str().is_some_and(|t| t.starts_with('1')),
        format!("badge {}", r["badge_text"]),
    )?;
    check(
        r["first_shown"] == true,
        "the first post shows when the channel opens".into(),
    )?;
    check(r["badge_cleared"] == true, "badge cleared".into())?;
    check(
        r["thread_closed_by_escape"] == true,
        "Escape closes the thread".into(),
    )?;
    check(
        r["narrow_sidebar_hidden"] == true,
        "at 320 px the sidebar starts hidden".into(),
    )?;
    check(
        r["reaction_text"].as_str().is_some_and(|t| t.contains('1')),
        format!("reaction {}", r["reaction_text"]),
    )?;
    let h = &r["headers"];
    check(
        h["content-security-policy"]
            .as_str()
            .is_some_and(|v| v.contains("default-src 'self'")),
        format!("headers the browser saw: {h}"),
    )?;
    eprintln!("screenshot (320 px): {}", shot.display());
    Ok(())
}

fn call_three_users() -> Result<(), Failed> {
    let c = Control::start()?;
    let users = [c.user("ana")?, c.user("ben")?, c.user("cleo")?];
    let ids = c.team(&[&users[0], &users[1], &users[2]], &["standup"])?;
    let shot = browser::artifacts_dir().join("browser_app_call.png");
    let r = browser::run_scenario(&json!({
        "scenario": "call",
        "base": c.base,
        "users": users.iter().map(|u| json!({"id": u.id, "username": u.username, "password": PASSWORD})).collect::<Vec<_>>(),
        "channel": "standup",
        "channel_id": ids[0],
        "sample_seconds": 3,
        "timeout_ms": 150_000,
        "screenshot": shot,
    }))?;
    eprintln!("call: {r}");
    let names = ["ana", "ben", "cleo"];
    for me in names {
        for other in names.iter().filter(|o| **o != me) {
            let g = &r["growth"][me][other];
            check(
                g["audio_packets"].as_i64().is_some_and(|n| n > 50),
                format!("{me} receives {other}'s audio: {g}"),
            )?;
            check(
                g["video_frames"].as_i64().is_some_and(|n| n > 10),
                format!("{me} decodes {other}'s video: {g}"),
            )?;
        }
    }
    let m = &r["after_mute"];
    check(
        m["host_hears_muted"] == 0 && m["other_hears_muted"] == 0,
        format!("the muted user's audio still arrives: {m}"),
    )?;
    check(
        m["other_hears_host"].as_i64().is_some_and(|n| n > 50),
        format!("the host's audio stopped too: {m}"),
    )?;
    check(
        r["screen_frames"].as_i64().is_some_and(|n| n > 5),
        format!("screen share frames {}", r["screen_frames"]),
    )?;
    check(
        r["removed_notice"]
            .as_str()
            .is_some_and(|t| t.contains("removed")),
        format!("removed notice {}", r["removed_notice"]),
    )?;
    check(
        r["rejoined"] == false
            && r["rejoin_notice"]
                .as_str()
                .is_some_and(|t| t.contains("removed")),
        format!(
            "rejoin after removal: {} {}",
            r["rejoined"], r["rejoin_notice"]
        ),
    )?;
    check(
        r["ended_notice"]
            .as_str()
            .is_some_and(|t| t.contains("ended")),
        format!("ended notice {}", r["ended_notice"]),
    )?;
    let post = r["call_post_text"].as_str().unwrap_or_default();
    check(
        has_duration(post),
        format!("the call post shows no duration: {post:?}"),
    )?;
    check(
        shot.is_file(),
        format!("no screenshot at {}", shot.display()),
    )?;
    eprintln!(
        "call in progress: {} (all media after {} ms, quality {})",
        shot.display(),
        r["all_media_ms"],
        r["quality"]
    );
    Ok(())
}

/// `m:ss`, `h:mm:ss` or a number of seconds or minutes.
fn has_duration(text: &str) -> bool {
    let b = text.as_bytes();
    let clock = b.windows(4).any(|w| {
        w[0].is_ascii_digit() && w[1] == b':' && w[2].is_ascii_digit() && w[3].is_ascii_digit()
    });
    let words = text
        .split(|c: char| !c.is_alphanumeric())
        .collect::<Vec<_>>();
    let units = words.windows(2).any(|w| {
        w[0].chars().all(|c| c.is_ascii_digit())
            && !w[0].is_empty()
            && [
                "s", "sec", "secs", "seconds", "second", "min", "mins", "minutes", "minute",
            ]
            .contains(&w[1])
    }) || words.iter().any(|w| {
        let digits = w.trim_end_matches(|c: char| c.is_ascii_alphabetic());
        !digits.is_empty()
            && digits.chars().all(|c| c.is_ascii_digit())
            && ["s", "m", "min"].contains(&&w[digits.len()..])
    });
    clock || units
}

fn check(ok: bool, what: String) -> Result<(), Failed> {
    if ok { Ok(()) } else { Err(what.into()) }
}
