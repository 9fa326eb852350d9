//! `[[calls.ice_servers]]`: every join answer carries the configured STUN
//! and TURN servers; a TURN server with `auth_secret` gets a credential
//! made for the joining user that a coturn-style server accepts until it
//! expires, and refuses after. Bad entries stop start-up (exit 64) with
//! the entry named. On SQLite and PostgreSQL.

mod common;

use aws_lc_rs::hmac;
use axum::http::StatusCode;
use base64::Engine as _;
use common::{Kind, T0, TestApp};
use control::Config;
use control::calls::ice::IceServerConfig;
use control::db::users::SystemRole;
use control::nodes::RtcdConfig;
use serde_json::{Value, json};

const SECRET: &str = "shared-with-the-turn-server";
const TTL_SECS: u64 = 600;

fn servers() -> Vec<IceServerConfig> {
    let server = |urls: &[&str]| IceServerConfig {
        urls: urls.iter().map(|u| u.to_string()).collect(),
        username: None,
        credential: None,
        auth_secret: None,
        credential_ttl_secs: TTL_SECS,
    };
    let stun = server(&["stun:stun.corp.example:3478"]);
    let mut fixed = server(&["turn:relay.corp.example:3478?transport=udp"]);
    fixed.username = Some("enclave".into());
    fixed.credential = Some("static-pass".into());
    let mut rest = server(&[
        "turn:turn.corp.example:3478",
        "turns:turn.corp.example:5349?transport=tcp",
    ]);
    rest.auth_secret = Some(SECRET.into());
    vec![stun, fixed, rest]
}

/// What a TURN server with `use-auth-secret` checks: the username's
/// expiry is not past and the credential is the secret's HMAC-SHA1 of it.
fn turn_server_accepts(username: &str, credential: &str, now_secs: i64) -> bool {
    let Some(expiry) = username
        .split(':')
        .next()
        .and_then(|t| t.parse::<i64>().ok())
    else {
        return false;
    };
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, SECRET.as_bytes());
    let mac = base64::engine::general_purpose::STANDARD
        .decode(credential)
        .unwrap_or_default();
    expiry > now_secs && hmac::verify(&key, username.as_bytes(), &mac).is_ok()
}

async fn start(kind: Kind) -> TestApp {
    let config = Config {
        rtcd: RtcdConfig::loopback(),
        calls: control::calls::CallsConfig {
            ice_servers: servers(),
            ..Default::default()
        },
        ..Config::default()
    };
    let app = TestApp::with_config(kind, config).await;
    app.state
        .nodes
        .start()
        .await
        .expect("the embedded media node starts");
    app
}

async fn join_answer(app: &TestApp, channel: &str, who: &common::TestUser) -> Value {
    let r = app
        .post(&format!("/api/v1/channels/{channel}/call"), who, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body
}

async fn the_join_answer_carries_them_and_credentials_expire(kind: Kind) {
    let app = start(kind).await;
    let ana = app.user("ana", SystemRole::User).await;
    let ben = app.user("ben", SystemRole::User).await;
    let team = app.team("crew", &ana, &[&ben]).await;
    let ch = app.channel(&team, "bridge", "open", &ana).await;
    let r = app
        .post(&format!("/api/v1/channels/{ch}/join"), &ben, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);

    let a = join_answer(&app, &ch, &ana).await;
    let list = a["ice_servers"].as_array().expect("ice_servers");
    assert_eq!(list.len(), 3, "{a}");
    // STUN: the URL alone, no credential fields at all.
    assert_eq!(list[0], json!({"urls": ["stun:stun.corp.example:3478"]}));
    // A static TURN credential, as configured.
    assert_eq!(
        list[1],
        json!({
            "urls": ["turn:relay.corp.example:3478?transport=udp"],
            "username": "enclave",
            "credential": "static-pass",
        })
    );
    // A made one: `<expiry>:<user id>`, good for TTL_SECS from the join.
    let rest = &list[2];
    assert_eq!(
        rest["urls"],
        json!([
            "turn:turn.corp.example:3478",
            "turns:turn.corp.example:5349?transport=tcp"
        ])
    );
    let user_a = rest["username"].as_str().unwrap().to_owned();
    let cred_a = rest["credential"].as_str().unwrap().to_owned();
    let t0 = T0 / 1000;
    assert_eq!(user_a, format!("{}:{}", t0 + TTL_SECS as i64, ana.id));
    assert!(turn_server_accepts(&user_a, &cred_a, t0));
    assert!(turn_server_accepts(
        &user_a,
        &cred_a,
        t0 + TTL_SECS as i64 - 1
    ));
    // The secret never reaches a client, and a forged user id fails.
    assert!(!a.to_string().contains(SECRET), "{a}");
    let forged = user_a.replace(&ana.id, &ben.id);
    assert!(!turn_server_accepts(&forged, &cred_a, t0));

    // Later, another user joins: a credential of their own, from then on.
    app.clock.advance_ms(60_000);
    let b = join_answer(&app, &ch, &ben).await;
    let user_b = b["ice_servers"][2]["username"].as_str().unwrap();
    let cred_b = b["ice_servers"][2]["credential"].as_str().unwrap();
    assert_eq!(user_b, format!("{}:{}", t0 + 60 + TTL_SECS as i64, ben.id));
    assert_ne!(cred_b, cred_a);
    assert!(turn_server_accepts(user_b, cred_b, t0 + 60));

    // Past its expiry the first one is refused; the second lives on
    // for the minute it was made later.
    let expired_at = t0 + TTL_SECS as i64;
    assert!(!turn_server_accepts(&user_a, &cred_a, expired_at));
    assert!(turn_server_accepts(user_b, cred_b, expired_at));
    assert!(!turn_server_accepts(user_b, cred_b, expired_at + 60));
    app.state.nodes.stop().await;
}

async fn none_by_default(kind: Kind) {
    let app = TestApp::with_config(
        kind,
        Config {
            rtcd: RtcdConfig::loopback(),
            ..Config::default()
        },
    )
    .await;
    app.state.nodes.start().await.expect("media node");
    let ana = app.user("ana", SystemRole::User).await;
    let team = app.team("crew", &ana, &[]).await;
    let ch = app.channel(&team, "bridge", "open", &ana).await;
    let a = join_answer(&app, &ch, &ana).await;
    assert_eq!(
        a["ice_servers"],
        json!([]),
        "no public STUN by default: {a}"
    );
    app.state.nodes.stop().await;
}

macro_rules! both {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name(super::Kind::Sqlite).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    if crate::common::skip_postgres() {
                        eprintln!("ENCLAVE_SKIP_POSTGRES=1: skipped");
                        return;
                    }
                    super::$name(super::Kind::Postgres).await;
                }
            }
        )*
    };
}

both!(
    the_join_answer_carries_them_and_credentials_expire,
    none_by_default
);

/// `control check-config` on a file with `[[calls.ice_servers]]` entries.
fn check_config(toml: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("control.toml");
    std::fs::write(&path, toml).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_control"))
        .arg("--config")
        .arg(&path)
        .arg("check-config")
        .env_remove("ENCLAVE_CONFIG")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_entries_stop_start_up_with_exit_64() {
    let (code, err) = check_config(
        r#"
[[calls.ice_servers]]
urls = ["stun:stun.corp.example"]

[[calls.ice_servers]]
urls = ["turn:turn.corp.example"]
auth_secret = "s"
credential_ttl_secs = 3600
"#,
    );
    assert_eq!(code, Some(0), "a good list is accepted: {err}");

    let (code, err) = check_config(
        r#"
[[calls.ice_servers]]
urls = ["https://turn.corp.example"]

[[calls.ice_servers]]
urls = ["turn:turn.corp.example"]

[[calls.ice_servers]]
urls = ["turn:turn.corp.example"]
username = "u"
"#,
    );
    assert_eq!(code, Some(64), "{err}");
    assert!(err.contains("3 problem(s)"), "{err}");
    assert!(
        err.contains("calls.ice_servers[0].urls")
            && err.contains(r#"scheme "https"; use stun:, stuns:, turn: or turns:"#),
        "{err}"
    );
    assert!(
        err.contains("calls.ice_servers[1]: a turn: or turns: URL needs username and credential, or auth_secret"),
        "{err}"
    );
    assert!(
        err.contains("calls.ice_servers[2]: username and credential go together"),
        "{err}"
    );

    let (code, err) = check_config(
        r#"
[[calls.ice_servers]]
urls = ["stun:s.example"]
password = "typo"
"#,
    );
    assert_eq!(code, Some(64), "an unknown key is refused: {err}");
    assert!(err.contains("password"), "{err}");
}
