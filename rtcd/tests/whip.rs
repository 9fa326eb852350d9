//! WHIP (RFC 9725) ingest and WHEP egress with str0m clients over HTTP and
//! real UDP: status codes, headers, the session resource's life cycle, and
//! media from the WHIP publisher to the WHEP player.
#![allow(clippy::disallowed_methods)]

mod common;

use std::time::Duration;

use common::{
    Client, Response, TOKEN_SECRET, assert_stream, call_id, config, http, publish, start, value,
    wait_metrics,
};
use rtcd::auth::{Role, mint_token};
use str0m::media::MediaKind;

const SDP: &str = "application/sdp";
const FRAG: &str = "application/trickle-ice-sdpfrag";

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// The session id of a `/whip|whep/{call}/{session}` Location.
fn resource_session(r: &Response, kind: &str, call: &str) -> String {
    let location = r.header("location").expect("a Location header");
    let prefix = format!("/{kind}/{call}/");
    location
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("Location {location} is not under {prefix}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whip_publisher_reaches_whep_player_and_the_resources_behave() {
    let rtcd = start(config(2)).await;
    let api = rtcd.api_addr;
    let call = call_id("stream");
    let ttl = Duration::from_secs(60);
    let publish_token = mint_token(TOKEN_SECRET, &call, Role::Publish, ttl);
    let play_token = mint_token(TOKEN_SECRET, &call, Role::Play, ttl);
    let other_call_token = mint_token(TOKEN_SECRET, &call_id("other"), Role::Publish, ttl);

    let publisher = Client::udp("whip-publisher");
    let (offer, _) = publisher.offer(
        &[(MediaKind::Audio, None), (MediaKind::Video, None)],
        &[],
        false,
    );

    // Refused: no token, a garbage token, a play token, another call's
    // token; then a good token with the wrong content type.
    let auth = |t: &str| bearer(t);
    let refusals: Vec<(Vec<(&str, String)>, u16)> = vec![
        (vec![("Content-Type", SDP.into())], 401),
        (
            vec![
                ("Content-Type", SDP.into()),
                ("Authorization", auth("v1.stream.publish.9999999999.00")),
            ],
            401,
        ),
        (
            vec![
                ("Content-Type", SDP.into()),
                ("Authorization", auth(&play_token)),
            ],
            401,
        ),
        (
            vec![
                ("Content-Type", SDP.into()),
                ("Authorization", auth(&other_call_token)),
            ],
            401,
        ),
        (
            vec![
                ("Content-Type", "text/plain".into()),
                ("Authorization", auth(&publish_token)),
            ],
            415,
        ),
    ];
    for (headers, want) in &refusals {
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = http(api, "POST", "/whip/stream", &h, offer.as_bytes())
            .await
            .expect("POST");
        assert_eq!(r.status, *want, "{headers:?}: {}", r.text());
        if *want == 401 {
            assert_eq!(r.header("www-authenticate"), Some("Bearer"));
        }
    }

    // The publisher's offer is answered with a resource.
    let pub_auth = auth(&publish_token);
    let r = http(
        api,
        "POST",
        "/whip/stream",
        &[("Content-Type", SDP), ("Authorization", &pub_auth)],
        offer.as_bytes(),
    )
    .await
    .expect("POST");
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.header("content-type"), Some(SDP));
    assert_eq!(r.header("accept-patch"), Some(FRAG));
    let whip_session = resource_session(&r, "whip", "stream");
    let etag = format!("\"{whip_session}\"");
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    publisher.accept_answer(&r.text()).expect("answer applies");
    publisher
        .wait_connected(Duration::from_secs(5))
        .await
        .expect("publisher connects");

    // A player.
    let player = Client::udp("whep-player");
    let (offer, _) = player.offer(&[], &[MediaKind::Audio, MediaKind::Video], false);
    let play_auth = auth(&play_token);
    let r = http(
        api,
        "POST",
        "/whep/stream",
        &[("Content-Type", SDP), ("Authorization", &play_auth)],
        offer.as_bytes(),
    )
    .await
    .expect("POST");
    assert_eq!(r.status, 201, "{}", r.text());
    let whep_session = resource_session(&r, "whep", "stream");
    player.accept_answer(&r.text()).expect("answer applies");
    player
        .wait_connected(Duration::from_secs(5))
        .await
        .expect("player connects");

    // Media flows publisher → player, intact.
    let sending = publish(&publisher);
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    let (audio, video) = sending.stop();
    player
        .wait_received(MediaKind::Audio, audio as usize, Duration::from_secs(1))
        .await;
    player
        .wait_received(MediaKind::Video, video as usize, Duration::from_secs(1))
        .await;
    assert_eq!(player.error(), None);
    assert_stream(&player, MediaKind::Audio, audio, 5);
    assert_stream(&player, MediaKind::Video, video, 3);

    // Trickle: a candidate PATCHed with the right ETag is taken.
    let whip_path = format!("/whip/stream/{whip_session}");
    let frag = format!(
        "a=mid:0\r\na=candidate:1 1 udp 2130706431 127.0.0.1 {} typ host\r\n",
        publisher.local_addr().port()
    );
    let patch = |if_match: &str, ctype: &str, token: &str| {
        let (if_match, ctype, token) = (if_match.to_string(), ctype.to_string(), auth(token));
        let path = whip_path.clone();
        let frag = frag.clone();
        async move {
            http(
                api,
                "PATCH",
                &path,
                &[
                    ("Content-Type", ctype.as_str()),
                    ("Authorization", token.as_str()),
                    ("If-Match", if_match.as_str()),
                ],
                frag.as_bytes(),
            )
            .await
            .expect("PATCH")
        }
    };
    let r = patch(&etag, FRAG, &publish_token).await;
    assert_eq!(r.status, 204, "{}", r.text());
    let r = patch("*", FRAG, &publish_token).await;
    assert_eq!(r.status, 204, "If-Match: * {}", r.text());
    let r = patch("\"someone-else\"", FRAG, &publish_token).await;
    assert_eq!(r.status, 412, "{}", r.text());
    let r = patch(&etag, SDP, &publish_token).await;
    assert_eq!(r.status, 415, "{}", r.text());
    let r = patch(&etag, FRAG, &play_token).await;
    assert_eq!(r.status, 401, "{}", r.text());

    // DELETE ends the session: the resource is gone and nothing the
    // publisher still sends reaches the player.
    let r = http(
        api,
        "DELETE",
        &whip_path,
        &[("Authorization", &pub_auth)],
        b"",
    )
    .await
    .expect("DELETE");
    assert_eq!(r.status, 200, "{}", r.text());
    let r = patch(&etag, FRAG, &publish_token).await;
    assert_eq!(r.status, 404, "PATCH after DELETE: {}", r.text());
    let r = http(
        api,
        "DELETE",
        &whip_path,
        &[("Authorization", &pub_auth)],
        b"",
    )
    .await
    .expect("DELETE");
    assert_eq!(r.status, 404, "DELETE twice: {}", r.text());
    let before = player.count(MediaKind::Audio);
    for n in audio..audio + 25 {
        publisher.send_media(MediaKind::Audio, n);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        player.count(MediaKind::Audio),
        before,
        "media of a deleted publisher was forwarded"
    );

    let r = http(
        api,
        "DELETE",
        &format!("/whep/stream/{whep_session}"),
        &[("Authorization", &play_auth)],
        b"",
    )
    .await
    .expect("DELETE");
    assert_eq!(r.status, 200, "{}", r.text());

    // The call WHIP opened ended with its last session; refusals counted.
    let rejected = |r: &str| format!(r#"rtcd_rejected_total{{reason="{r}"}}"#);
    let (m, ok) = wait_metrics(api, Duration::from_secs(3), |m| {
        value(m, "rtcd_calls") == 0.0
            && value(m, "rtcd_sessions") == 0.0
            && value(m, &rejected("unauthenticated")) >= 5.0
            && value(m, &rejected("whip_bad_request")) >= 2.0
    })
    .await;
    assert!(
        ok,
        "calls {}, sessions {}, unauthenticated {}, whip_bad_request {}",
        value(&m, "rtcd_calls"),
        value(&m, "rtcd_sessions"),
        value(&m, &rejected("unauthenticated")),
        value(&m, &rejected("whip_bad_request")),
    );
    drop((publisher, player));
    rtcd.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_whip_offer_is_a_bad_request_and_leaves_no_call() {
    let rtcd = start(config(1)).await;
    let api = rtcd.api_addr;
    let token = mint_token(
        TOKEN_SECRET,
        &call_id("broken"),
        Role::Publish,
        Duration::from_secs(60),
    );
    let auth = bearer(&token);
    let r = http(
        api,
        "POST",
        "/whip/broken",
        &[("Content-Type", SDP), ("Authorization", &auth)],
        b"v=0\r\nthis is not an offer\r\n",
    )
    .await
    .expect("POST");
    assert_eq!(r.status, 400, "{}", r.text());
    let (m, ok) = wait_metrics(api, Duration::from_secs(2), |m| {
        value(m, "rtcd_calls") == 0.0
            && value(m, r#"rtcd_dropped_total{reason="bad_sdp"}"#) >= 1.0
            && value(m, r#"rtcd_rejected_total{reason="whip_bad_request"}"#) >= 1.0
    })
    .await;
    assert!(ok, "{m:?}");
    // WHEP with a publisher that does not exist.
    let token = mint_token(
        TOKEN_SECRET,
        &call_id("broken"),
        Role::Play,
        Duration::from_secs(60),
    );
    let auth = bearer(&token);
    let player = Client::udp("p");
    let (offer, _) = player.offer(&[], &[MediaKind::Audio], false);
    let r = http(
        api,
        "POST",
        "/whep/broken?publisher=nobody",
        &[("Content-Type", SDP), ("Authorization", &auth)],
        offer.as_bytes(),
    )
    .await
    .expect("POST");
    assert_eq!(r.status, 404, "{}", r.text());
    let (_, ok) = wait_metrics(api, Duration::from_secs(2), |m| {
        value(m, "rtcd_calls") == 0.0
    })
    .await;
    assert!(ok, "the refused player left a call behind");
    rtcd.stop().await;
}

/// RFC 8840 says a trickle sdpfrag carries the sender's current
/// `a=ice-ufrag`/`a=ice-pwd`, and RFC 9725 (section 4.3.1) shows WHIP
/// clients sending them with every trickle PATCH; only *new* credentials
/// (with `If-Match: *`) mean an ICE restart. Such a PATCH must be taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standard_trickle_patch_with_the_current_credentials_is_accepted() {
    let rtcd = start(config(1)).await;
    let api = rtcd.api_addr;
    let call = call_id("trickle");
    let token = mint_token(TOKEN_SECRET, &call, Role::Publish, Duration::from_secs(60));
    let auth = bearer(&token);
    let publisher = Client::udp("whip-publisher");
    let (offer, _) = publisher.offer(&[(MediaKind::Audio, None)], &[], false);
    let pwd = offer
        .lines()
        .find_map(|l| l.trim().strip_prefix("a=ice-pwd:"))
        .expect("the offer has an ice-pwd")
        .to_string();
    let ufrag = common::ice_ufrag(&offer).expect("the offer has an ice-ufrag");
    let r = http(
        api,
        "POST",
        "/whip/trickle",
        &[("Content-Type", SDP), ("Authorization", &auth)],
        offer.as_bytes(),
    )
    .await
    .expect("POST");
    assert_eq!(r.status, 201, "{}", r.text());
    let session = resource_session(&r, "whip", "trickle");
    let etag = format!("\"{session}\"");
    let frag = format!(
        "a=ice-ufrag:{ufrag}\r\na=ice-pwd:{pwd}\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
         a=mid:0\r\na=candidate:1 1 udp 2130706431 127.0.0.1 {} typ host\r\n\
         a=end-of-candidates\r\n",
        publisher.local_addr().port()
    );
    let r = http(
        api,
        "PATCH",
        &format!("/whip/trickle/{session}"),
        &[
            ("Content-Type", FRAG),
            ("Authorization", &auth),
            ("If-Match", &etag),
        ],
        frag.as_bytes(),
    )
    .await
    .expect("PATCH");
    assert_eq!(r.status, 204, "{}", r.text());
    drop(publisher);
    rtcd.stop().await;
}
