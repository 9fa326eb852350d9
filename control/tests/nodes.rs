//! The media-node pool against real rtcd nodes started in this process on
//! loopback: placement by load, draining, nodes that stop, go silent or
//! come back, DNS names, a wrong API key and the embedded default.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use control::metrics::Metrics;
use control::nodes::{MediaNodes, NodeEvent, NodeHealth, NodeStatus, RtcdConfig, RtcdMode, dns};
use signaling::rtcd::ToRtcd;
use signaling::{CallId, SessionId};
use tests::relay::FreezableRelay;
use tokio::sync::broadcast;

const KEY: &str = "0123456789abcdef0123456789abcdef-nodes-test";
const TIMEOUT_MS: u64 = 600;

fn rtcd_config(name: &str, api: SocketAddr) -> rtcd::Config {
    let mut c = rtcd::Config {
        node_id: name.into(),
        ..rtcd::Config::default()
    };
    c.rtc.bind_ip = [127, 0, 0, 1].into();
    c.rtc.port = 0;
    c.rtc.allow_loopback = true;
    c.rtc.workers = 1;
    c.api.listen = api;
    c.api.keys = vec![KEY.into()];
    c
}

async fn node(name: &str) -> rtcd::Rtcd {
    rtcd::Rtcd::start(rtcd_config(name, SocketAddr::from(([127, 0, 0, 1], 0))))
        .await
        .expect("rtcd starts")
}

fn key(r: &rtcd::Rtcd) -> String {
    format!("http://{}", r.api_addr)
}

fn external(urls: Vec<String>) -> RtcdConfig {
    RtcdConfig {
        mode: RtcdMode::External,
        nodes: urls,
        api_key: KEY.into(),
        heartbeat_ms: 100,
        node_timeout_ms: TIMEOUT_MS,
        reconnect_max_ms: 200,
        ..RtcdConfig::default()
    }
}

async fn pool(config: RtcdConfig) -> (Arc<MediaNodes>, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new());
    let nodes = MediaNodes::new(config, "control-test".into(), metrics.clone());
    nodes.start().await.expect("the pool starts");
    (nodes, metrics)
}

fn call(s: &str) -> CallId {
    CallId::new(s).unwrap()
}

fn status_of(nodes: &MediaNodes, key: &str) -> NodeStatus {
    nodes
        .status()
        .into_iter()
        .find(|s| s.key == key)
        .unwrap_or_else(|| panic!("{key} is in the pool"))
}

async fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + timeout;
    while Instant::now() < until {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    f()
}

/// Waits for the first event `want` accepts; its arrival time.
async fn event(
    rx: &mut broadcast::Receiver<NodeEvent>,
    timeout: Duration,
    want: impl Fn(&NodeEvent) -> bool,
) -> Option<Instant> {
    tokio::time::timeout(timeout, async {
        loop {
            match rx.recv().await {
                Ok(e) if want(&e) => return Instant::now(),
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
            }
        }
    })
    .await
    .ok()
}

#[tokio::test]
async fn new_calls_go_to_the_least_loaded_node() {
    let (a, b) = (node("a").await, node("b").await);
    let (nodes, metrics) = pool(external(vec![key(&a), key(&b)])).await;
    assert!(
        nodes.wait_up(2, Duration::from_secs(5)).await,
        "{:?}",
        nodes.status()
    );

    let first = nodes.place(&call("c1"), &[]).await.unwrap();
    let (busy, other) = if first == key(&a) { (&a, &b) } else { (&b, &a) };
    assert_eq!(busy.node.call_count(), 1);
    // Two participants on the first node's call: it is now the busier one.
    for s in ["s1", "s2"] {
        let add = ToRtcd::AddSession {
            call_id: call("c1"),
            session_id: SessionId::new(s).unwrap(),
            permissions: Default::default(),
            request: None,
        };
        nodes.request(&first, add).await.unwrap();
    }
    assert!(
        eventually(Duration::from_secs(5), || status_of(&nodes, &first)
            .load
            .is_some_and(|l| l.sessions == 2))
        .await,
        "the node reports its sessions: {:?}",
        nodes.status()
    );
    assert_eq!(nodes.place(&call("c2"), &[]).await.unwrap(), key(other));
    // Sessions weigh before calls: two calls with no one in them are
    // still less than one call with two people.
    assert_eq!(nodes.place(&call("c3"), &[]).await.unwrap(), key(other));
    assert_eq!(other.node.call_count(), 2);
    assert_eq!(busy.node.call_count(), 1);
    // Placing again is idempotent on the node.
    assert_eq!(
        nodes.place(&call("c2"), &[key(busy)]).await.unwrap(),
        key(other)
    );
    assert_eq!(other.node.call_count(), 2);
    assert_eq!(
        metrics.rtcd_placements.with_label_values(&["placed"]).get(),
        4
    );
    assert_eq!(metrics.rtcd_nodes.with_label_values(&["up"]).get(), 2);
    // A request the node refuses comes back with the node's reason.
    let dup = ToRtcd::AddSession {
        call_id: call("c1"),
        session_id: SessionId::new("s1").unwrap(),
        permissions: Default::default(),
        request: None,
    };
    let err = nodes.request(&first, dup).await.unwrap_err();
    assert!(err.to_string().contains("already in use"), "{err}");
    // What the node says about sessions reaches subscribers.
    let mut events = nodes.subscribe();
    let ghost = SessionId::new("ghost").unwrap();
    nodes
        .send(
            &first,
            ToRtcd::SetMuted {
                session_id: ghost.clone(),
                muted: true,
            },
        )
        .unwrap();
    let from = first.clone();
    assert!(
        event(&mut events, Duration::from_secs(3), |e| matches!(
            e,
            NodeEvent::Rtcd { node, msg: signaling::rtcd::FromRtcd::Error(err) }
                if *node == from && err.session_id.as_ref() == Some(&ghost)
        ))
        .await
        .is_some(),
        "the node's error about an unknown session is passed on"
    );
    nodes.stop().await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_draining_node_gets_no_new_calls() {
    let (a, b) = (node("a").await, node("b").await);
    let (nodes, metrics) = pool(external(vec![key(&a), key(&b)])).await;
    assert!(nodes.wait_up(2, Duration::from_secs(5)).await);
    let mut events = nodes.subscribe();
    let on_a = nodes.place(&call("before"), &[key(&b)]).await.unwrap();
    assert_eq!(on_a, key(&a));

    a.node.start_drain();
    // Whether or not the pool has heard yet, the call goes to b.
    assert_eq!(nodes.place(&call("during-1"), &[]).await.unwrap(), key(&b));
    let drained = key(&a);
    assert!(
        event(
            &mut events,
            Duration::from_secs(3),
            |e| matches!(e, NodeEvent::Draining { node } if *node == drained)
        )
        .await
        .is_some(),
        "a draining event"
    );
    assert_eq!(status_of(&nodes, &key(&a)).health, NodeHealth::Draining);
    assert!(
        nodes.is_up(&key(&a)),
        "a draining node still carries its calls"
    );
    for c in ["during-2", "during-3"] {
        assert_eq!(nodes.place(&call(c), &[]).await.unwrap(), key(&b));
    }
    let err = nodes.place(&call("nowhere"), &[key(&b)]).await.unwrap_err();
    assert!(err.attempts.is_empty(), "no node is even tried: {err}");
    assert_eq!(
        a.node.call_count(),
        1,
        "only the call from before the drain"
    );
    assert_eq!(metrics.rtcd_nodes.with_label_values(&["draining"]).get(), 1);
    assert_eq!(
        metrics.rtcd_placements.with_label_values(&["failed"]).get(),
        1
    );
    nodes.stop().await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_node_that_refuses_is_skipped_with_its_reason() {
    let a = node("a").await;
    // Load only on request and the node's own 5 s report: the pool cannot
    // know of the drain before it places.
    let mut config = external(vec![key(&a)]);
    config.heartbeat_ms = 30_000;
    config.node_timeout_ms = 60_000;
    let (nodes, _) = pool(config).await;
    assert!(nodes.wait_up(1, Duration::from_secs(5)).await);
    a.node.start_drain();
    let err = nodes.place(&call("refused"), &[]).await.unwrap_err();
    assert_eq!(err.attempts.len(), 1, "{err}");
    assert_eq!(err.attempts[0].0, key(&a));
    assert!(err.attempts[0].1.contains("draining"), "{err}");
    nodes.stop().await;
    a.stop().await;
}

#[tokio::test]
async fn a_stopped_node_goes_down_and_is_used_again_when_it_returns() {
    let (a, b) = (node("a").await, node("b").await);
    let b_api = b.api_addr;
    let (nodes, metrics) = pool(external(vec![key(&a), key(&b)])).await;
    assert!(nodes.wait_up(2, Duration::from_secs(5)).await);
    let mut events = nodes.subscribe();
    let b_key = key(&b);

    let stopped = Instant::now();
    b.stop().await;
    let down = event(
        &mut events,
        Duration::from_millis(TIMEOUT_MS * 3),
        |e| matches!(e, NodeEvent::Down { node } if *node == b_key),
    )
    .await
    .expect("b goes down within the timeout");
    eprintln!("stopped node down after {:?}", down - stopped);
    assert!(!nodes.is_up(&b_key));
    assert_eq!(status_of(&nodes, &b_key).health, NodeHealth::Down);
    assert!(nodes.send(&b_key, ToRtcd::GetLoad).is_err());
    for c in ["x1", "x2", "x3"] {
        assert_eq!(nodes.place(&call(c), &[]).await.unwrap(), key(&a));
    }
    assert!(nodes.place(&call("x4"), &[key(&a)]).await.is_err());
    assert_eq!(metrics.rtcd_node_disconnects.get(), 1);

    // The same node (same address) starts again.
    let b = rtcd::Rtcd::start(rtcd_config("b", b_api)).await.unwrap();
    assert!(
        event(
            &mut events,
            Duration::from_secs(5),
            |e| matches!(e, NodeEvent::Up { node } if *node == b_key)
        )
        .await
        .is_some(),
        "b comes back: {:?}",
        nodes.status()
    );
    assert_eq!(nodes.place(&call("y1"), &[]).await.unwrap(), b_key);
    assert_eq!(b.node.call_count(), 1);
    nodes.stop().await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_silent_node_goes_down_after_the_timeout() {
    let a = node("a").await;
    let relay = FreezableRelay::start(a.api_addr).unwrap();
    let relay_key = format!("http://{}", relay.addr);
    let (nodes, _) = pool(external(vec![relay_key.clone()])).await;
    assert!(nodes.wait_up(1, Duration::from_secs(5)).await);
    let mut events = nodes.subscribe();
    relay.freeze();
    let silent = Instant::now();
    let down = event(
        &mut events,
        Duration::from_millis(TIMEOUT_MS * 3),
        |e| matches!(e, NodeEvent::Down { node } if *node == relay_key),
    )
    .await
    .expect("the silent node goes down");
    let after = down - silent;
    eprintln!("silent node down after {after:?}");
    assert!(
        after >= Duration::from_millis(TIMEOUT_MS / 2),
        "down for silence, not for a closed socket: {after:?}"
    );
    let why = status_of(&nodes, &relay_key).last_error.unwrap();
    assert!(why.contains("silent"), "{why}");
    assert!(nodes.place(&call("z"), &[]).await.is_err());
    // It answers again: it is used again.
    relay.thaw();
    assert!(
        nodes.wait_up(1, Duration::from_secs(5)).await,
        "{:?}",
        nodes.status()
    );
    assert_eq!(nodes.place(&call("z"), &[]).await.unwrap(), relay_key);
    nodes.stop().await;
    a.stop().await;
}

#[tokio::test]
async fn a_wrong_api_key_leaves_the_node_down_with_the_reason() {
    let a = node("a").await;
    let mut config = external(vec![key(&a)]);
    config.api_key = "not-the-key-not-the-key-not-the-key-at-all".into();
    let (nodes, metrics) = pool(config).await;
    assert!(
        eventually(Duration::from_secs(5), || status_of(&nodes, &key(&a))
            .last_error
            .is_some())
        .await
    );
    let s = status_of(&nodes, &key(&a));
    assert_eq!(s.health, NodeHealth::Down);
    let why = s.last_error.unwrap();
    assert!(why.contains("401") && why.contains("rtcd.api_key"), "{why}");
    let err = nodes.place(&call("c"), &[]).await.unwrap_err();
    assert!(err.attempts.is_empty(), "{err}");
    assert_eq!(metrics.rtcd_nodes.with_label_values(&["down"]).get(), 1);
    assert_eq!(a.node.call_count(), 0);
    nodes.stop().await;
    a.stop().await;
}

#[tokio::test]
async fn a_dns_name_brings_every_address() {
    let a = node("a").await;
    let port = a.api_addr.port();
    let keys = dns::resolve(&format!("localhost:{port}")).await.unwrap();
    let v4 = format!("http://127.0.0.1:{port}");
    assert!(keys.contains(&v4), "{keys:?}");
    let mut config = external(Vec::new());
    config.dns = format!("localhost:{port}");
    let (nodes, _) = pool(config).await;
    assert!(
        nodes.wait_up(1, Duration::from_secs(5)).await,
        "{:?}",
        nodes.status()
    );
    let listed: Vec<String> = nodes.status().into_iter().map(|s| s.key).collect();
    assert_eq!(listed, keys, "each address is a node");
    // Only the IPv4 one is up (rtcd listens there); it takes the call.
    assert_eq!(nodes.place(&call("c"), &[]).await.unwrap(), v4);
    assert!(dns::resolve("no-such-host.invalid:8045").await.is_err());
    nodes.stop().await;
    a.stop().await;
}

#[tokio::test]
async fn the_embedded_node_takes_calls() {
    let (nodes, _) = pool(RtcdConfig::loopback()).await;
    let s = nodes.status();
    assert_eq!(s.len(), 1, "{s:?}");
    assert!(s[0].embedded);
    assert_eq!(s[0].health, NodeHealth::Up, "{s:?}");
    assert!(s[0].key.starts_with("http://127.0.0.1:"), "{s:?}");
    let node = nodes.place(&call("c"), &[]).await.unwrap();
    assert_eq!(node, s[0].key);
    nodes.stop().await;
    assert!(nodes.status().is_empty());
}
