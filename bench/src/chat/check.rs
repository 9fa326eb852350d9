//! After a run: did every member get every accepted post of its channel
//! exactly once, in seq order, and nothing from other channels?

use std::collections::HashMap;

use serde::Serialize;

use super::api::Setup;
use super::clients::ClientLog;
use super::poster::SentPost;

#[derive(Debug, Clone, Serialize, Default)]
pub struct DeliveryCheck {
    /// Member sockets that were connected and stayed open.
    pub sockets_checked: usize,
    /// Σ over accepted posts of their channel's connected members.
    pub expected: u64,
    pub delivered: u64,
    /// Accepted posts a member never got.
    pub missing: u64,
    /// Posts a member got more than once.
    pub duplicates: u64,
    /// Events whose seq was not above the previous one on that socket.
    pub out_of_order: u64,
    /// Posts of another channel that reached a member (must be 0).
    pub foreign: u64,
    /// One post arriving with different seqs on different sockets.
    pub seq_mismatch: u64,
    /// Posts whose request failed but that arrived anyway (control
    /// committed them after the bench stopped waiting): not an error.
    pub delivered_unacknowledged: u64,
    /// Sockets control closed before the end (e.g. too slow).
    pub closed_early: usize,
    pub examples: Vec<String>,
}

impl DeliveryCheck {
    pub fn ok(&self) -> bool {
        self.missing == 0
            && self.duplicates == 0
            && self.out_of_order == 0
            && self.foreign == 0
            && self.seq_mismatch == 0
            && self.closed_early == 0
    }
}

const EXAMPLES: usize = 5;

pub fn check(setup: &Setup, logs: &[ClientLog], posts: &[SentPost]) -> DeliveryCheck {
    let mut c = DeliveryCheck::default();
    let note = |c: &mut DeliveryCheck, s: String| {
        if c.examples.len() < EXAMPLES {
            c.examples.push(s);
        }
    };
    let channel_of_user: HashMap<usize, usize> = setup
        .channels
        .iter()
        .enumerate()
        .flat_map(|(ci, ch)| ch.members.iter().map(move |m| (*m, ci)))
        .collect();
    let mut accepted_by_channel: Vec<Vec<u32>> = vec![Vec::new(); setup.channels.len()];
    for (i, p) in posts.iter().enumerate() {
        if p.accepted() {
            accepted_by_channel[p.channel].push(i as u32);
        }
    }
    let mut seq_of: HashMap<u32, u64> = HashMap::new();
    let mut seen = vec![0u8; posts.len()];
    for (u, log) in logs.iter().enumerate() {
        if !log.connected {
            continue;
        }
        if log.closed_early {
            c.closed_early += 1;
            note(
                &mut c,
                format!("socket of user {u} closed early: {:?}", log.error),
            );
        }
        c.sockets_checked += 1;
        c.out_of_order += log.out_of_order;
        let Some(&ch) = channel_of_user.get(&u) else {
            continue;
        };
        for &(post, seq) in &log.posts {
            c.delivered += 1;
            let Some(p) = posts.get(post as usize) else {
                c.foreign += 1;
                continue;
            };
            if p.channel != ch {
                c.foreign += 1;
                note(
                    &mut c,
                    format!(
                        "user {u} (channel {ch}) got post {post} of channel {}",
                        p.channel
                    ),
                );
                continue;
            }
            if *seq_of.entry(post).or_insert(seq) != seq {
                c.seq_mismatch += 1;
            }
            let s = &mut seen[post as usize];
            *s = s.saturating_add(1);
            if *s == 2 {
                c.duplicates += 1;
                note(&mut c, format!("user {u} got post {post} twice"));
            }
            if !p.accepted() && *s == 1 {
                c.delivered_unacknowledged += 1;
            }
        }
        for &post in &accepted_by_channel[ch] {
            c.expected += 1;
            if seen[post as usize] == 0 {
                c.missing += 1;
                note(
                    &mut c,
                    format!("user {u} (channel {ch}) never got post {post}"),
                );
            }
        }
        // Reset only what this socket touched: cheap for ten thousand sockets.
        for &(post, _) in &log.posts {
            if let Some(s) = seen.get_mut(post as usize) {
                *s = 0;
            }
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::api::{BenchChannel, BenchUser};

    fn setup() -> Setup {
        let user = |i: usize| BenchUser {
            id: format!("u{i}"),
            token: String::new(),
        };
        Setup {
            users: (0..4).map(user).collect(),
            channels: vec![
                BenchChannel {
                    id: "a".into(),
                    members: vec![0, 1],
                },
                BenchChannel {
                    id: "b".into(),
                    members: vec![2, 3],
                },
            ],
            admin_token: String::new(),
        }
    }

    fn post(channel: usize, status: u16) -> SentPost {
        SentPost {
            channel,
            status,
            ..Default::default()
        }
    }

    fn log(posts: &[(u32, u64)]) -> ClientLog {
        ClientLog {
            connected: true,
            posts: posts.to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn a_clean_run_passes() {
        let posts = [post(0, 201), post(1, 201), post(0, 201)];
        let logs = [
            log(&[(0, 5), (2, 7)]),
            log(&[(0, 5), (2, 7)]),
            log(&[(1, 6)]),
            log(&[(1, 6)]),
        ];
        let c = check(&setup(), &logs, &posts);
        assert!(c.ok(), "{c:?}");
        assert_eq!((c.expected, c.delivered), (6, 6));
    }

    #[test]
    fn every_fault_is_counted() {
        let posts = [post(0, 201), post(1, 201), post(0, 0)];
        let logs = [
            // Duplicate of post 0, and post 2 whose request failed.
            log(&[(0, 5), (0, 5), (2, 7)]),
            // Misses post 0.
            log(&[]),
            // Gets channel a's post, and post 1 with another seq.
            log(&[(0, 5), (1, 9)]),
            log(&[(1, 6)]),
        ];
        let c = check(&setup(), &logs, &posts);
        assert!(!c.ok());
        assert_eq!(c.duplicates, 1);
        assert_eq!(c.missing, 1);
        assert_eq!(c.foreign, 1);
        assert_eq!(c.seq_mismatch, 1);
        assert_eq!(c.delivered_unacknowledged, 1);
    }
}
