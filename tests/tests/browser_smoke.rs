//! The browser harness works: Chromium starts in a loopback-only network
//! namespace and moves real audio and video, first between two peer
//! connections in one page (no server), then through the WHIP/WHEP client
//! pages against the reference server. Every browser test builds on this.
//!
//! Browser tests are skipped (reported as ignored) when node, Chromium or
//! tests/browser/node_modules is missing, unless ENCLAVE_REQUIRE_BROWSER=1
//! (set by scripts/test), which makes them fail instead.

use libtest_mimic::{Arguments, Failed};
use serde_json::{Value, json};
use tests::browser::{self, ReferenceServer};
use tests::browser_gate::Gate;
use tests::netns;

fn main() {
    // First, while the process has one thread: everything started below
    // (node, Chromium, the reference server) lives in the namespace.
    let gate = Gate::enter("browser_smoke");
    let mut args = Arguments::from_args();
    // Each browser run encodes video in real time; two at once on a small
    // machine only make both slower and flakier.
    args.test_threads.get_or_insert(1);
    let trials = vec![
        gate.trial(
            "netns_has_only_loopback",
            netns_has_only_loopback,
            gate.no_netns.clone(),
        ),
        gate.browser(
            "chromium_loopback_peer_connection",
            chromium_loopback_peer_connection,
        ),
        gate.browser(
            "whip_whep_trickle_patch_reference_server",
            whip_whep_trickle_patch,
        ),
        gate.browser(
            "whip_whep_patch_unsupported_reference_server",
            whip_whep_patch_unsupported,
        ),
    ];
    libtest_mimic::run(&args, trials).exit();
}

fn netns_has_only_loopback() -> Result<(), Failed> {
    let names = netns::interfaces()?;
    check(names == ["lo"], format!("interfaces: {names:?}"))
}

fn chromium_loopback_peer_connection() -> Result<(), Failed> {
    let r = browser::run_scenario(&json!({
        "scenario": "loopback",
        "sample_seconds": 2,
        "screenshot": browser::artifacts_dir().join("browser_smoke_loopback.png"),
    }))?;
    check_media_flows(&r)
}

/// Offer without candidates; they follow in PATCH requests (204).
fn whip_whep_trickle_patch() -> Result<(), Failed> {
    let server = ReferenceServer::start(&["--token", "t0k"])?;
    let r = browser::run_scenario(&json!({
        "scenario": "whip-whep",
        "base": server.base,
        "call": "smoke",
        "token": "t0k",
        "trickle": "patch",
        "sample_seconds": 2,
    }))?;
    check_whip_whep(&r)?;
    for side in ["publisher", "player"] {
        let statuses = &r[side]["patch_statuses"];
        check(
            statuses
                .as_array()
                .is_some_and(|s| !s.is_empty() && s.iter().all(|v| v == 204)),
            format!("{side} PATCH statuses {statuses}"),
        )?;
        check(
            r[side]["offer_candidates"] == 0,
            format!("{side} offer carried candidates"),
        )?;
    }
    Ok(())
}

/// A server without trickle support answers PATCH with 405: allowed by
/// RFC 9725, so the session must still work (the server's candidates in
/// the answer are enough).
fn whip_whep_patch_unsupported() -> Result<(), Failed> {
    let server = ReferenceServer::start(&["--patch", "405"])?;
    let r = browser::run_scenario(&json!({
        "scenario": "whip-whep",
        "base": server.base,
        "trickle": "patch",
        "sample_seconds": 2,
    }))?;
    check_whip_whep(&r)?;
    for side in ["publisher", "player"] {
        check(
            r[side]["patch_unsupported"] == true,
            format!("{side}: {}", r[side]),
        )?;
    }
    Ok(())
}

fn check_whip_whep(r: &Value) -> Result<(), Failed> {
    for side in ["publisher", "player"] {
        check(
            r[side]["post_status"] == 201,
            format!("{side} POST: {}", r[side]),
        )?;
        check(
            r[side]["delete_status"] == 200,
            format!("{side} DELETE: {}", r[side]),
        )?;
    }
    check_media_flows(r)
}

fn check_media_flows(r: &Value) -> Result<(), Failed> {
    check(
        r["connection_state"] == "connected",
        format!("connection_state {}", r["connection_state"]),
    )?;
    check(
        r["protocol"] == "udp",
        format!("selected pair protocol {}", r["protocol"]),
    )?;
    let local = &r["samples"][1]["candidate_pair"]["local"];
    check(
        local.as_str().is_some_and(|a| a.starts_with("127.0.0.1:")),
        format!("local candidate {local} is not on loopback"),
    )?;
    let g = &r["growth"];
    for key in ["audio_packets", "video_packets", "video_frames"] {
        check(
            g[key].as_i64().is_some_and(|n| n > 0),
            format!("{key} did not grow: {g}; samples {}", r["samples"]),
        )?;
    }
    Ok(())
}

fn check(ok: bool, what: String) -> Result<(), Failed> {
    if ok { Ok(()) } else { Err(what.into()) }
}
