//! Captures the audit log (tracing target `audit`) written while a test
//! drives the app without a socket: `TestApp::send` runs handlers on the
//! test's own thread, and records are routed to the capture installed on
//! the thread that writes them. Records are the JSON lines the binary
//! writes, parsed.
//!
//! One global subscriber per test binary does the writing (a per-thread
//! default subscriber would race with other tests over tracing's cached
//! interest, and miss records); the routing is per thread.

use std::cell::RefCell;
use std::io::Write;
use std::sync::{Arc, Mutex, Once};

use serde_json::Value;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt as _;

type Sink = Arc<Mutex<Vec<u8>>>;

thread_local! {
    static SINK: RefCell<Option<Sink>> = const { RefCell::new(None) };
}

/// Writes to this thread's capture, if any.
struct ThreadSink;

impl Write for ThreadSink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        SINK.with(|s| {
            if let Some(sink) = &*s.borrow() {
                sink.lock().unwrap().extend_from_slice(b);
            }
        });
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn install_once() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let layer = tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(false)
            .with_writer(|| ThreadSink)
            .with_filter(Targets::new().with_target("audit", tracing::Level::INFO));
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))
            .expect("no other global subscriber in this test binary");
    });
}

pub struct AuditLog {
    sink: Sink,
}

impl AuditLog {
    /// Starts capturing this thread's records until the value is dropped.
    pub fn capture() -> AuditLog {
        install_once();
        let sink = Sink::default();
        SINK.with(|s| *s.borrow_mut() = Some(sink.clone()));
        AuditLog { sink }
    }

    /// Every record so far: its fields (action, actor_id, actor, ip,
    /// outcome, detail) and `time` from the line's timestamp.
    pub fn records(&self) -> Vec<Value> {
        let bytes = self.sink.lock().unwrap().clone();
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).expect("audit lines are JSON");
                let mut f = v["fields"].clone();
                f["time"] = v["timestamp"].clone();
                f
            })
            .collect()
    }

    /// Records of `action` with `outcome`.
    pub fn find(&self, action: &str, outcome: &str) -> Vec<Value> {
        self.records()
            .into_iter()
            .filter(|r| r["action"] == action && r["outcome"] == outcome)
            .collect()
    }

    /// The one record of `action` with `outcome`; panics listing all
    /// records otherwise.
    pub fn one(&self, action: &str, outcome: &str) -> Value {
        let found = self.find(action, outcome);
        assert_eq!(
            found.len(),
            1,
            "one {action}/{outcome} audit record expected; all: {:#?}",
            self.records()
        );
        found.into_iter().next().unwrap()
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        SINK.with(|s| *s.borrow_mut() = None);
    }
}
