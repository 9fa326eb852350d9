//! control's media-node pool against rtcd PROCESSES: a node killed with
//! SIGKILL goes down within the timeout and new calls go to the other; a
//! node sent SIGTERM drains (its call goes on there, new calls go to the
//! other) and, once its last call ends, exits and goes down.
//!
//! Needs the rtcd binary: `cargo build -p rtcd` (or set RTCD_BIN).

use std::sync::Arc;
use std::time::{Duration, Instant};

use control::metrics::Metrics;
use control::nodes::{MediaNodes, NodeEvent, NodeHealth, RtcdConfig, RtcdMode};
use signaling::CallId;
use signaling::rtcd::ToRtcd;
use tests::rtcd_proc::RtcdProcess;
use tokio::sync::broadcast;

const KEY: &str = "media-nodes-test-key-0123456789abcdef0123";
const TIMEOUT_MS: u64 = 1000;

async fn pool(urls: Vec<String>) -> Arc<MediaNodes> {
    let config = RtcdConfig {
        mode: RtcdMode::External,
        nodes: urls,
        api_key: KEY.into(),
        heartbeat_ms: 200,
        node_timeout_ms: TIMEOUT_MS,
        reconnect_max_ms: 300,
        ..RtcdConfig::default()
    };
    let nodes = MediaNodes::new(config, "control-e2e".into(), Arc::new(Metrics::new()));
    nodes.start().await.unwrap();
    assert!(
        nodes.wait_up(2, Duration::from_secs(10)).await,
        "{:?}",
        nodes.status()
    );
    nodes
}

fn call(s: &str) -> CallId {
    CallId::new(s).unwrap()
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_goes_down_and_new_calls_go_elsewhere() {
    let mut a = RtcdProcess::start("media-a", KEY, 30).unwrap();
    let b = RtcdProcess::start("media-b", KEY, 30).unwrap();
    let nodes = pool(vec![a.url(), b.url()]).await;
    let mut events = nodes.subscribe();
    assert_eq!(nodes.place(&call("k1"), &[b.url()]).await.unwrap(), a.url());

    let killed = Instant::now();
    a.kill();
    let a_url = a.url();
    let down = event(
        &mut events,
        Duration::from_millis(3 * TIMEOUT_MS),
        |e| matches!(e, NodeEvent::Down { node } if *node == a_url),
    )
    .await
    .expect("the killed node goes down within the timeout");
    eprintln!("SIGKILLed node down after {:?}", down - killed);
    assert!(!nodes.is_up(&a.url()));
    for c in ["k2", "k3"] {
        assert_eq!(nodes.place(&call(c), &[]).await.unwrap(), b.url());
    }
    nodes.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_sent_sigterm_keeps_its_calls_and_takes_no_new_ones() {
    let mut a = RtcdProcess::start("media-a", KEY, 30).unwrap();
    let b = RtcdProcess::start("media-b", KEY, 30).unwrap();
    let nodes = pool(vec![a.url(), b.url()]).await;
    let mut events = nodes.subscribe();
    assert_eq!(nodes.place(&call("d1"), &[b.url()]).await.unwrap(), a.url());

    a.terminate();
    let a_url = a.url();
    event(
        &mut events,
        Duration::from_secs(5),
        |e| matches!(e, NodeEvent::Draining { node } if *node == a_url),
    )
    .await
    .expect("the node reports draining");
    for c in ["d2", "d3"] {
        assert_eq!(nodes.place(&call(c), &[]).await.unwrap(), b.url());
    }
    // Its call is still there, and so is the node.
    tokio::time::sleep(Duration::from_millis(3 * TIMEOUT_MS)).await;
    let s = nodes
        .status()
        .into_iter()
        .find(|s| s.key == a.url())
        .unwrap();
    assert_eq!(s.health, NodeHealth::Draining, "{s:?}");
    assert_eq!(s.load.as_ref().map(|l| l.calls), Some(1), "{s:?}");
    assert!(!a.exited());

    // The last call ends: the drain is over, the process exits.
    nodes
        .request(
            &a.url(),
            ToRtcd::EndCall {
                call_id: call("d1"),
                request: None,
            },
        )
        .await
        .unwrap();
    event(
        &mut events,
        Duration::from_secs(10),
        |e| matches!(e, NodeEvent::Down { node } if *node == a_url),
    )
    .await
    .expect("the drained node exits and goes down");
    let until = Instant::now() + Duration::from_secs(10);
    while !a.exited() {
        assert!(Instant::now() < until, "rtcd exits after its drain");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    nodes.stop().await;
}
