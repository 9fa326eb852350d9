//! Operations: health, readiness, metrics, error bodies, and the binary's
//! configuration check.

mod common;

use axum::http::{Method, StatusCode};
use common::TestApp;
use control::db::users::SystemRole;

async fn health_readiness_and_metrics(app: TestApp) {
    let r = app.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = app.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    let alice = app.user("alice", SystemRole::User).await;
    app.get("/api/v1/users/me", &alice).await;
    app.get("/api/v1/teams/nonexistent", &alice).await;
    // A login, a failed one and a post, for their families.
    for password in [common::PASSWORD, "Wrong-Password-1"] {
        app.call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(serde_json::json!({"username": "alice", "password": password})),
        )
        .await;
    }
    let team = app.team("eng", &alice, &[]).await;
    let ch = app.channel(&team, "general", "open", &alice).await;
    app.say(&ch, &alice, "hello").await;
    let r = app.call(Method::GET, "/metrics", None, None).await;
    let text = r.body.as_str().unwrap().to_owned();
    for needle in [
        r#"enclave_control_http_requests_total{method="GET",route="/api/v1/users/me",status="200"} 1"#,
        r#"enclave_control_http_requests_total{method="GET",route="/api/v1/teams/{id}",status="404"} 1"#,
        "enclave_control_http_request_duration_seconds_bucket",
        "enclave_control_db_pool_connections",
        "enclave_control_ws_connections 0",
        r#"enclave_control_logins_total{outcome="success"} 1"#,
        r#"enclave_control_logins_total{outcome="failure"} 1"#,
        "enclave_control_posts_created_total 1",
        "enclave_control_db_pool_idle_connections",
    ] {
        assert!(text.contains(needle), "{needle} missing from\n{text}");
    }
    app.state.start_drain();
    let r = app.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    );
}

async fn errors_have_one_stable_shape(app: TestApp) {
    let r = app
        .call(Method::GET, "/api/v1/no/such/thing", None, None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(
        r.body,
        serde_json::json!({"code": "not_found", "message": "not found"})
    );
    let r = app.call(Method::GET, "/api/v1/users/me", None, None).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNAUTHORIZED, "unauthenticated")
    );
    // A database failure answers 500 with an incident id and nothing else.
    let alice = app.user("alice", SystemRole::User).await;
    app.state.db.pool.close().await;
    let r = app.get("/api/v1/teams", &alice).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::INTERNAL_SERVER_ERROR, "internal")
    );
    assert_eq!(r.body["message"], "internal error");
    assert!(r.body["incident"].as_str().is_some_and(|s| s.len() == 26));
    assert_eq!(r.body.as_object().unwrap().len(), 3, "{:?}", r.body);
    let r = app.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
}

on_both_databases!(health_readiness_and_metrics, errors_have_one_stable_shape);

#[test]
fn a_bad_configuration_exits_64_listing_every_problem() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_control"))
        .arg("check-config")
        .env("ENCLAVE_SERVER__LISTEN", "nowhere")
        .env("ENCLAVE_AUTH__PASSWORD_MIN_LENGTH", "4")
        .env("ENCLAVE_DATABASE__URL", "mysql://db")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("3 problem(s)"), "{err}");
    assert!(
        err.contains("socket address")
            && err.contains("password_min_length")
            && err.contains("database.url"),
        "{err}"
    );
}

#[test]
fn the_admin_commands_work_on_a_fresh_database() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str], stdin: &str| {
        use std::io::Write as _;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_control"))
            .args(args)
            .env("ENCLAVE_SERVER__DATA_DIR", dir.path())
            .env("ENCLAVE_LOG__FILTER", "warn")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = run(&["create-user", "--username", "ops", "--role", "admin"], "");
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("password (shown once): "), "{err}");
    assert!(
        out.contains(r#""action":"user_create""#),
        "audit line on stdout: {out}"
    );
    let (code, _, err) = run(&["create-user", "--username", "ops"], "");
    assert_eq!(code, Some(1));
    assert!(err.contains("conflict"), "{err}");
    let (code, _, err) = run(
        &["reset-password", "--username", "ops", "--password-stdin"],
        "short\n",
    );
    assert_eq!(code, Some(1));
    assert!(err.contains("at least 12"), "{err}");
    let (code, _, err) = run(
        &["reset-password", "--username", "ops", "--password-stdin"],
        "A-Much-Better-One-9\n",
    );
    assert_eq!(code, Some(0), "{err}");
    let (code, out, _) = run(&["list-sessions"], "");
    assert_eq!(code, Some(0));
    assert!(out.starts_with("session"), "{out}");
}

/// TLS to PostgreSQL is built in: with `sslmode=require` the connection
/// is encrypted (the test server is Debian's, whose default configuration
/// offers TLS with its snakeoil certificate).
#[tokio::test]
async fn postgres_connections_use_tls_when_the_url_asks() {
    if common::skip_postgres() {
        return;
    }
    let tdb = common::TestDb::new(common::Kind::Postgres).await;
    let ssl = sqlx::query("SELECT setting FROM pg_settings WHERE name = 'ssl'")
        .fetch_one(&tdb.db.pool)
        .await
        .unwrap();
    if sqlx::Row::try_get::<String, _>(&ssl, "setting").unwrap() != "on" {
        eprintln!("this PostgreSQL server offers no TLS: skipped");
        return;
    }
    let sep = if tdb.url.contains('?') { '&' } else { '?' };
    for (mode, want) in [("disable", 0i64), ("require", 1)] {
        let db = control::db::Db::connect(&format!("{}{sep}sslmode={mode}", tdb.url), 1)
            .await
            .unwrap();
        let row = sqlx::query(
            "SELECT CASE WHEN ssl THEN 1 ELSE 0 END AS tls FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        )
        .fetch_one(&db.pool)
        .await
        .unwrap();
        let tls: i64 = sqlx::Row::try_get(&row, "tls").unwrap();
        assert_eq!(tls, want, "sslmode={mode}");
        db.pool.close().await;
    }
}

const MEDIA_KEY: &str = "ops-test-media-key-0123456789abcdef0123";

/// With external media nodes, readiness needs one that is up and takes
/// new calls; system admins see every node with its state, load, calls
/// and when it was last heard; others are refused.
async fn media_nodes_for_operators(kind: common::Kind) {
    use std::time::Duration;
    let mut rc = rtcd::Config {
        node_id: "ops-a".into(),
        ..rtcd::Config::default()
    };
    rc.rtc.bind_ip = [127, 0, 0, 1].into();
    rc.rtc.port = 0;
    rc.rtc.allow_loopback = true;
    rc.rtc.workers = 1;
    rc.api.listen = "127.0.0.1:0".parse().unwrap();
    rc.api.keys = vec![MEDIA_KEY.into()];
    let a = rtcd::Rtcd::start(rc).await.unwrap();
    let a_url = format!("http://{}", a.api_addr);
    // An address where nothing listens: that node stays down.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let config = control::Config {
        rtcd: control::nodes::RtcdConfig {
            mode: control::nodes::RtcdMode::External,
            nodes: vec![a_url.clone(), dead_url.clone()],
            api_key: MEDIA_KEY.into(),
            heartbeat_ms: 100,
            node_timeout_ms: 600,
            reconnect_max_ms: 200,
            ..control::nodes::RtcdConfig::default()
        },
        ..control::Config::default()
    };
    let app = TestApp::with_config(kind, config).await;
    // Not started yet: no node is known, so nothing can be placed.
    let r = app.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::SERVICE_UNAVAILABLE, "no_media_node"),
        "{:?}",
        r.body
    );
    app.state.nodes.start().await.unwrap();
    assert!(app.state.nodes.wait_up(1, Duration::from_secs(5)).await);
    let r = app.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);

    let root = app.user("root", SystemRole::Admin).await;
    let bob = app.user("bob", SystemRole::User).await;
    let r = app.get("/api/v1/admin/media-nodes", &bob).await;
    assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "forbidden"));
    let r = app
        .call(Method::GET, "/api/v1/admin/media-nodes", None, None)
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    // A call placed on the live node.
    let team = app.team("ops", &root, &[]).await;
    let ch = app.channel(&team, "war-room", "open", &root).await;
    let r = app
        .post(
            &format!("/api/v1/channels/{ch}/call"),
            &root,
            serde_json::json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);

    let node_of = |body: &serde_json::Value, url: &str| -> serde_json::Value {
        body["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["address"] == url)
            .cloned()
            .unwrap_or_else(|| panic!("{url} listed in {body}"))
    };
    let r = app.get("/api/v1/admin/media-nodes", &root).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["nodes"].as_array().unwrap().len(), 2, "{:?}", r.body);
    let up = node_of(&r.body, &a_url);
    assert_eq!(up["state"], "up", "{up}");
    assert_eq!(up["node_id"], "ops-a");
    assert_eq!(up["embedded"], false);
    assert_eq!(up["calls_placed"], 1, "{up}");
    assert_eq!(up["load"]["workers"], 1, "{up}");
    assert!(up["last_heard_at"].as_i64().is_some(), "{up}");
    let down = node_of(&r.body, &dead_url);
    assert_eq!(down["state"], "down", "{down}");
    assert_eq!(down["calls_placed"], 0);
    assert!(down["last_error"].as_str().is_some(), "{down}");
    assert!(down.get("last_heard_at").is_none(), "{down}");

    // The live node drains: nothing is left to take a new call.
    a.node
        .start_drain_until(std::time::Instant::now() + Duration::from_secs(60));
    let until = std::time::Instant::now() + Duration::from_secs(5);
    let drained = loop {
        let r = app.get("/api/v1/admin/media-nodes", &root).await;
        let n = node_of(&r.body, &a_url);
        if n["state"] == "draining" {
            break n;
        }
        assert!(std::time::Instant::now() < until, "{n}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let left = drained["load"]["drain_remaining_ms"].as_u64().unwrap();
    assert!(left <= 60_000, "{drained}");
    let r = app.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::SERVICE_UNAVAILABLE, "no_media_node"),
        "{:?}",
        r.body
    );
    let why = r.body["message"].as_str().unwrap();
    assert!(why.contains("draining") && why.contains("down"), "{why}");
    app.state.nodes.stop().await;
    a.stop().await;
}

mod media_nodes_for_operators {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::media_nodes_for_operators(super::common::Kind::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        if super::common::skip_postgres() {
            eprintln!("ENCLAVE_SKIP_POSTGRES=1: skipped");
            return;
        }
        super::media_nodes_for_operators(super::common::Kind::Postgres).await;
    }
}
