//! Call flows of the web client in headless Chromium against a real
//! control with its embedded rtcd (tests/browser/calls.mjs), in a private
//! network namespace with only loopback:
//!
//! - `call_ringing`: a direct call rings the callee (alert dialog, Accept
//!   focused, announced); Decline ends the caller's call with a message;
//!   a second call is accepted from the keyboard and both get media. The
//!   pages' peer connections carry the `[[calls.ice_servers]]` of their
//!   join answers, with TURN credentials made for each user.
//! - `call_in_call_controls`: raise and lower a hand, a reaction, making
//!   another host, stopping someone's screen share, muting everyone else.
//! - `call_reconnect`: a page loses its control socket for a few seconds
//!   and comes back into the same session with media; then its media
//!   socket is blocked and an ICE restart brings the media back; the other
//!   page never shows a second tile for it.
//! - `call_device_switching`: another camera and microphone chosen from
//!   the Devices dialog mid-call; the other page keeps receiving both.
//! - `call_over_ice_tcp`: UDP to rtcd's port dropped (nftables in the
//!   namespace): the pages connect over ICE-TCP, say so, and get media.
//! - `call_media_blocked`: UDP and TCP to rtcd's port dropped: the page
//!   says media could not connect.
//!
//! Skipped (ignored) without node, Chromium or tests/browser/node_modules,
//! unless ENCLAVE_REQUIRE_BROWSER=1; the firewall tests also need nft.

use anyhow::Context as _;
use axum::http::Method;
use control::calls::ice::IceServerConfig;
use libtest_mimic::{Arguments, Failed};
use serde_json::{Value, json};
use tests::browser;
use tests::browser_gate::Gate;
use tests::firewall::{Block, Firewall};

#[path = "web/control.rs"]
mod server;

use server::{Control, PASSWORD, User};

fn main() {
    let gate = Gate::enter("browser_calls");
    let mut args = Arguments::from_args();
    // Chromium with three peers per test: one test at a time on a small machine.
    args.test_threads.get_or_insert(1);
    let no_firewall = gate.no_browser.clone().or_else(|| {
        (!tests::firewall::available())
            .then(|| "nft is not installed (apt-get install nftables)".to_string())
    });
    let trials = vec![
        gate.browser("call_ringing", call_ringing),
        gate.browser("call_in_call_controls", call_in_call_controls),
        gate.browser("call_device_switching", call_device_switching),
        gate.trial("call_reconnect", call_reconnect, no_firewall.clone()),
        gate.trial("call_over_ice_tcp", call_over_ice_tcp, no_firewall.clone()),
        gate.trial("call_media_blocked", call_media_blocked, no_firewall),
    ];
    libtest_mimic::run(&args, trials).exit();
}

fn check(ok: bool, what: String) -> Result<(), Failed> {
    if ok { Ok(()) } else { Err(what.into()) }
}

fn people(users: &[User]) -> Vec<Value> {
    users
        .iter()
        .map(|u| json!({"id": u.id, "username": u.username, "password": PASSWORD}))
        .collect()
}

/// Both pages get `want` received from the other over their sample.
fn check_media(r: &Value, what: &str) -> Result<(), Failed> {
    let m = &r[what];
    for (who, g) in m.as_object().into_iter().flatten() {
        check(
            g["audio_packets"].as_i64().is_some_and(|n| n > 20)
                && g["video_frames"].as_i64().is_some_and(|n| n > 5),
            format!("{who} receives too little ({what}): {g}"),
        )?;
    }
    Ok(())
}

const TURN_SECRET: &str = "browser-test-turn-secret";

fn call_ringing() -> Result<(), Failed> {
    // Servers on loopback that nothing answers: the page must carry them,
    // and media still flows to rtcd directly.
    let c = Control::start_with(|config| {
        let stun = IceServerConfig {
            urls: vec!["stun:127.0.0.1:3478".into()],
            username: None,
            credential: None,
            auth_secret: None,
            credential_ttl_secs: 3600,
        };
        let mut turn = stun.clone();
        turn.urls = vec!["turn:127.0.0.1:3478?transport=udp".into()];
        turn.auth_secret = Some(TURN_SECRET.into());
        config.calls.ice_servers = vec![stun, turn];
    })?;
    let users = [c.user("ana")?, c.user("ben")?];
    let ids = c.team(&[&users[0], &users[1]], &["town"])?;
    let dm = c.call(
        Method::POST,
        "/channels/direct",
        &users[0],
        json!({"user_id": users[1].id}),
    )?;
    let dm = dm["id"].as_str().context("direct channel id")?.to_owned();
    let shot = browser::artifacts_dir().join("browser_calls_ringing.png");
    let r = browser::run_scenario(&json!({
        "scenario": "ringing",
        "base": c.base,
        "users": people(&users),
        "channel_id": dm,
        "other_channel_id": ids[0],
        "timeout_ms": 120_000,
        "screenshot": shot,
    }))?;
    eprintln!("ringing: {r}");
    check(
        r["ring_label"]
            .as_str()
            .is_some_and(|t| t.contains("ana is calling you")),
        format!("the ring names the caller: {}", r["ring_label"]),
    )?;
    check(
        r["ring_buttons"] == json!(["Accept", "Decline"]),
        format!("ring buttons {}", r["ring_buttons"]),
    )?;
    check(
        r["ring_focus"] == "Accept",
        format!("focus on ring: {}", r["ring_focus"]),
    )?;
    check(
        r["ring_announced"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x == "ana is calling")),
        format!("announced: {}", r["ring_announced"]),
    )?;
    for key in ["declined_text", "declined_text_later"] {
        check(
            r[key] == "ben declined the call.",
            format!("{key}: {}", r[key]),
        )?;
    }
    check(
        r["caller_active_after_decline"] == false,
        "the caller is still in the declined call".into(),
    )?;
    let same = r["same_call"].as_array().cloned().unwrap_or_default();
    check(
        same.len() == 2 && same[0] == same[1] && same[0].is_string(),
        format!("both in one call: {}", r["same_call"]),
    )?;
    check_media(&r, "media")?;
    // The ICE servers of each page: STUN as configured, TURN with a
    // credential made for that user from the shared secret.
    for (key, user) in [
        ("caller_ice_servers", &users[0]),
        ("callee_ice_servers", &users[1]),
    ] {
        let list = r[key].as_array().cloned().unwrap_or_default();
        check(list.len() == 2, format!("{key}: {}", r[key]))?;
        check(
            list[0]["urls"] == json!(["stun:127.0.0.1:3478"]),
            format!("{key} STUN: {}", list[0]),
        )?;
        let username = list[1]["username"].as_str().unwrap_or_default();
        let credential = list[1]["credential"].as_str().unwrap_or_default();
        let (expiry, id) = username.split_once(':').unwrap_or_default();
        check(
            list[1]["urls"] == json!(["turn:127.0.0.1:3478?transport=udp"])
                && id == user.id
                && expiry.parse::<i64>().is_ok()
                && control::calls::ice::rest_credential(
                    TURN_SECRET,
                    &user.id,
                    expiry.parse().unwrap_or_default(),
                )
                .1 == credential,
            format!("{key} TURN: {}", list[1]),
        )?;
    }
    eprintln!(
        "rang after {} ms; decline reached the caller after {} ms; screenshot {}",
        r["ring_ms"],
        r["declined_ms"],
        shot.display()
    );
    Ok(())
}

fn call_in_call_controls() -> Result<(), Failed> {
    let c = Control::start()?;
    let users = [c.user("ana")?, c.user("ben")?, c.user("cleo")?];
    c.team(&[&users[0], &users[1], &users[2]], &["standup"])?;
    let shot = browser::artifacts_dir().join("browser_calls_controls.png");
    let r = browser::run_scenario(&json!({
        "scenario": "controls",
        "base": c.base,
        "users": people(&users),
        "channel": "standup",
        "timeout_ms": 180_000,
        "screenshot": shot,
    }))?;
    eprintln!("controls: {r}");
    check(
        r["hand_raised_pressed"] == "true" && r["hand_lowered"] == true,
        format!(
            "hand: raised {} lowered {}",
            r["hand_raised_pressed"], r["hand_lowered"]
        ),
    )?;
    check(
        r["hand_lowered_announced"] == true,
        "the lowered hand was not announced".into(),
    )?;
    for who in ["ana", "ben"] {
        check(
            r[format!("reaction_at_{who}")] == "👏",
            format!("reaction at {who}: {}", r[format!("reaction_at_{who}")]),
        )?;
    }
    check(
        r["reaction_announced"] == true,
        "reaction not announced".into(),
    )?;
    check(
        r["new_host_menus"] == true,
        "the new host has no menus".into(),
    )?;
    check(
        r["screen_stopped_local"] == true && r["screen_stop_announced"] == true,
        format!(
            "stopped share: local {} announced {}",
            r["screen_stopped_local"], r["screen_stop_announced"]
        ),
    )?;
    check(
        r["host_b_muted"] == "false",
        format!(
            "the host who muted everyone is muted: {}",
            r["host_b_muted"]
        ),
    )?;
    let m = &r["after_mute_all"];
    check(
        m["c_hears_a"] == 0 && m["a_hears_b"].as_i64().is_some_and(|n| n > 20),
        format!("after mute everyone else: {m}"),
    )?;
    Ok(())
}

fn call_device_switching() -> Result<(), Failed> {
    let c = Control::start()?;
    let users = [c.user("ana")?, c.user("ben")?];
    c.team(&[&users[0], &users[1]], &["standup"])?;
    let r = browser::run_scenario(&json!({
        "scenario": "devices",
        "base": c.base,
        "users": people(&users),
        "channel": "standup",
        // Three fake cameras (the third an ordinary one) to choose from.
        "chromium_args": ["--use-fake-device-for-media-stream=device-count=3"],
        "timeout_ms": 120_000,
        "screenshot": browser::artifacts_dir().join("browser_calls_devices.png"),
    }))?;
    eprintln!("devices: {r}");
    for kind in ["camera", "microphone"] {
        check(
            r["after"][kind].is_string() && r["after"][kind] != r["before"][kind],
            format!(
                "{kind}: before {} after {}",
                r["before"][kind], r["after"][kind]
            ),
        )?;
    }
    check(
        r["after"]["mic_enabled"] == true,
        format!("the new microphone is not live: {}", r["after"]),
    )?;
    check(
        r["focus_in_dialog"] == "device-microphone" && r["focus_after_done"] == "call-devices",
        format!(
            "focus: in the dialog {}, after Done {}",
            r["focus_in_dialog"], r["focus_after_done"]
        ),
    )?;
    check_media(&r, "media")?;
    Ok(())
}

fn call_reconnect() -> Result<(), Failed> {
    let c = Control::start()?;
    let users = [c.user("ana")?, c.user("ben")?];
    c.team(&[&users[0], &users[1]], &["standup"])?;
    let grace = c.state.config.calls.reconnect_grace_secs;
    let r = browser::run_scenario(&json!({
        "scenario": "reconnect",
        "base": c.base,
        "users": people(&users),
        "channel": "standup",
        "offline_ms": 4000,
        "timeout_ms": 180_000,
        "screenshot": browser::artifacts_dir().join("browser_calls_reconnect.png"),
    }))?;
    eprintln!("reconnect: {r}");
    for phase in ["after_socket", "after_restart"] {
        let p = &r[phase];
        check(
            p["session"].is_string() && p["session"] == r["after_socket"]["session"],
            format!("{phase}: not the same session: {p}"),
        )?;
        check(
            p["tiles_of_b_at_a"] == 1 && p["sessions_of_b_at_a"] == 1,
            format!("{phase}: the other page shows ben twice: {p}"),
        )?;
        for g in ["b_hears_a", "a_hears_b"] {
            check(
                p[g]["audio_packets"].as_i64().is_some_and(|n| n > 20)
                    && p[g]["video_frames"].as_i64().is_some_and(|n| n > 5),
                format!("{phase}: {g} {}", p[g]),
            )?;
        }
    }
    check(
        r["socket_back_ms"]
            .as_i64()
            .is_some_and(|ms| ms < grace as i64 * 1000),
        format!("socket back after {} ms", r["socket_back_ms"]),
    )?;
    check(
        r["recoveries"]["ice_restart"]
            .as_i64()
            .is_some_and(|n| n >= 1),
        format!("no ICE restart: {}", r["recoveries"]),
    )?;
    check(
        r["lost_text"]
            .as_str()
            .is_some_and(|t| t.contains("reconnecting")),
        format!("while lost the page said {}", r["lost_text"]),
    )?;
    eprintln!(
        "socket back after {} ms; media lost after {} ms and back after {} ms on port {} (was {}); recoveries {}",
        r["socket_back_ms"],
        r["media_lost_ms"],
        r["media_back_ms"],
        r["after_restart"]["pair"]["local_port"],
        r["pair_before"]["local_port"],
        r["recoveries"]
    );
    Ok(())
}

/// Control whose embedded rtcd serves media (UDP and ICE-TCP) on a port
/// known before it starts, so a firewall rule can name it.
fn control_on_known_port() -> Result<(Control, u16), Failed> {
    let port = tests::ports::free_tcp_udp_port()?;
    let c = Control::start_with(|config| {
        config.rtcd.media.port = port;
        config.rtcd.media.ice_tcp = true;
    })?;
    Ok((c, port))
}

fn call_over_ice_tcp() -> Result<(), Failed> {
    let (c, port) = control_on_known_port()?;
    let fw = Firewall::new()?;
    fw.block(Block::UdpTo(port))?;
    let users = [c.user("ana")?, c.user("ben")?];
    c.team(&[&users[0], &users[1]], &["standup"])?;
    let r = browser::run_scenario(&json!({
        "scenario": "media-blocked",
        "blocked": "udp",
        "base": c.base,
        "users": people(&users),
        "channel": "standup",
        "timeout_ms": 150_000,
        "screenshot": browser::artifacts_dir().join("browser_calls_ice_tcp.png"),
    }))?;
    eprintln!("ice-tcp: {r}");
    let pairs = r["pairs"].as_array().cloned().unwrap_or_default();
    check(
        pairs.len() == 2
            && pairs
                .iter()
                .all(|p| p["protocol"] == "tcp" && p["remote_port"] == port),
        format!("selected pairs {}", r["pairs"]),
    )?;
    let g = &r["media"];
    check(
        g["audio_packets"].as_i64().is_some_and(|n| n > 20)
            && g["video_frames"].as_i64().is_some_and(|n| n > 5),
        format!("media over TCP: {g}"),
    )?;
    check(
        r["quality_text"]
            .as_str()
            .is_some_and(|t| t.contains("over TCP")),
        format!("the page says {}", r["quality_text"]),
    )?;
    let dropped = fw.dropped(Block::UdpTo(port))?;
    check(
        dropped > 0,
        "no UDP was dropped: the browser never tried it".into(),
    )?;
    eprintln!(
        "connected over ICE-TCP after {} ms; {dropped} UDP datagrams dropped",
        r["connected_ms"]
    );
    Ok(())
}

fn call_media_blocked() -> Result<(), Failed> {
    let (c, port) = control_on_known_port()?;
    let fw = Firewall::new()?;
    fw.block(Block::UdpTo(port))?;
    fw.block(Block::TcpTo(port))?;
    let users = [c.user("ana")?];
    c.team(&[&users[0]], &["standup"])?;
    let r = browser::run_scenario(&json!({
        "scenario": "media-blocked",
        "blocked": "udp+tcp",
        "base": c.base,
        "users": people(&users),
        "channel": "standup",
        "fail_timeout_ms": 90_000,
        "timeout_ms": 150_000,
        "screenshot": browser::artifacts_dir().join("browser_calls_media_blocked.png"),
    }))?;
    eprintln!("blocked: {r}");
    check(
        r["failure_role"] == "alert",
        format!("failure role {}", r["failure_role"]),
    )?;
    check(
        r["failure_text"].as_str().is_some_and(|t| {
            t.contains("Media could not connect") && t.contains("TCP") && t.contains("Try again")
        }),
        format!("failure text {}", r["failure_text"]),
    )?;
    let (udp, tcp) = (
        fw.dropped(Block::UdpTo(port))?,
        fw.dropped(Block::TcpTo(port))?,
    );
    check(
        udp > 0 && tcp > 0,
        format!("dropped udp {udp}, tcp {tcp}: the page did not try both"),
    )?;
    eprintln!(
        "the page gave up after {} ms (udp {udp}, tcp {tcp} dropped)",
        r["failed_ms"]
    );
    Ok(())
}
