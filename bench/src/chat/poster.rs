//! The posting load: M posts a second on a fixed schedule, spread round
//! robin over the channels, each from a random member of its channel, each
//! carrying its send time in its pending id. Requests run concurrently on
//! keep-alive connections; the schedule does not wait for answers.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::Semaphore;

use super::api::{Api, Setup};
use super::clients::{histogram, pending_id};
use crate::payload::{clock, ns_since_epoch};

/// Post requests in flight at most; past that the schedule slips and the
/// lateness shows it.
const MAX_IN_FLIGHT: usize = 2048;
/// A post request unanswered after this long failed (as far as the bench
/// knows: control may still commit it, which the delivery check reports).
const POST_TIMEOUT: Duration = Duration::from_secs(30);

/// One post the bench sent.
#[derive(Debug, Clone, Default)]
pub struct SentPost {
    pub channel: usize,
    pub sent_us: u64,
    /// HTTP status (0: no answer / connection error).
    pub status: u16,
    /// Send → answer, µs.
    pub latency_us: u64,
    pub error: Option<String>,
}

impl SentPost {
    pub fn accepted(&self) -> bool {
        self.status == 201
    }
}

pub struct PostRun {
    pub posts: Vec<SentPost>,
    /// How late the schedule was, µs.
    pub lateness_us: hdrhistogram::Histogram<u64>,
}

/// A small, fast generator for picking authors (no need for quality).
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as usize
    }
}

/// Sends `rate × seconds` posts; returns when every request is answered
/// or timed out.
pub async fn post(api: &Api, setup: Arc<Setup>, rate: f64, seconds: f64) -> PostRun {
    let total = (rate * seconds).round() as usize;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, SentPost)>();
    let limit = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut lateness = histogram();
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let start = clock();
    for i in 0..total {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        let Ok(permit) = limit.clone().acquire_owned().await else {
            break;
        };
        let now = clock();
        let _ = lateness.record((now.saturating_duration_since(due).as_micros() as u64).max(1));
        let channel = i % setup.channels.len().max(1);
        let setup = setup.clone();
        let api = api.clone();
        let tx = tx.clone();
        let author = {
            let members = &setup.channels[channel].members;
            members[rng.below(members.len())]
        };
        tokio::spawn(async move {
            let sent = clock();
            let sent_us = ns_since_epoch(sent) / 1_000;
            let ch = &setup.channels[channel].id;
            let body = json!({
                "message": format!("bench post {i}"),
                "pending_id": pending_id(i as u32, sent_us),
            });
            let r = tokio::time::timeout(
                POST_TIMEOUT,
                api.call(
                    "POST",
                    &format!("/channels/{ch}/posts"),
                    Some(&setup.users[author].token),
                    Some(&body),
                ),
            )
            .await;
            let latency_us = clock().saturating_duration_since(sent).as_micros() as u64;
            let (status, error) = match r {
                Ok(Ok(reply)) if reply.status == 201 => (201, None),
                Ok(Ok(reply)) => (
                    reply.status,
                    Some(format!(
                        "HTTP {} {}",
                        reply.status,
                        String::from_utf8_lossy(&reply.body)
                    )),
                ),
                Ok(Err(e)) => (0, Some(format!("{e:#}"))),
                Err(_) => (0, Some(format!("no answer in {POST_TIMEOUT:?}"))),
            };
            let _ = tx.send((
                i,
                SentPost {
                    channel,
                    sent_us,
                    status,
                    latency_us,
                    error,
                },
            ));
            drop(permit);
        });
    }
    drop(tx);
    let mut posts = vec![SentPost::default(); total];
    while let Some((i, p)) = rx.recv().await {
        posts[i] = p;
    }
    PostRun {
        posts,
        lateness_us: lateness,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authors_spread_over_members() {
        let mut r = XorShift(0x9E37_79B9_7F4A_7C15);
        let mut seen = [0u32; 10];
        for _ in 0..10_000 {
            seen[r.below(10)] += 1;
        }
        assert!(seen.iter().all(|n| (800..1200).contains(n)), "{seen:?}");
    }
}
