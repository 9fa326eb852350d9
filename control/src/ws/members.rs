//! Who is in each channel, as the dispatcher last read it: one database
//! query per channel instead of one per event.
//!
//! The durable dispatcher owns the cache and is its only user; it walks
//! the log in seq order. Every change of a channel's members writes an
//! event in the same transaction (`channel_created`, `member_joined`,
//! `member_left`, also when a team removal takes someone out of the team's
//! channels), and the dispatcher drops that channel's entry when it reaches
//! such an event, before it works out who reads it. Every node reads the
//! whole log, so every node's cache follows every change, whichever node
//! made it.
//!
//! An entry read at some point in the log holds the members as of the read,
//! which may already include changes further on; their events then drop it
//! again when the dispatcher gets there. That is what the dispatcher did
//! before the cache (it asked the database for every event).
//!
//! Bounded: past [`MAX_CACHED_MEMBERS`] member ids in all, the cache is
//! emptied and refills from the channels that still post.

use std::collections::HashMap;
use std::sync::Arc;

use signaling::events::Event;

use crate::db::{Db, DbResult, channels};

/// Member ids kept in all (each a short string: tens of MB at most).
pub const MAX_CACHED_MEMBERS: usize = 1_000_000;

#[derive(Default)]
pub struct MemberCache {
    channels: HashMap<String, Arc<[String]>>,
    ids: usize,
}

impl MemberCache {
    /// Forgets the channel's members if `event` may have changed them.
    pub fn observe(&mut self, channel_id: &str, event: &Event) {
        if matches!(
            event,
            Event::ChannelCreated { .. } | Event::MemberJoined { .. } | Event::MemberLeft { .. }
        ) && let Some(old) = self.channels.remove(channel_id)
        {
            self.ids -= old.len();
        }
    }

    /// The channel's members, from the cache or else the database.
    pub async fn members(&mut self, db: &Db, channel_id: &str) -> DbResult<Arc<[String]>> {
        if let Some(m) = self.channels.get(channel_id) {
            return Ok(m.clone());
        }
        let m: Arc<[String]> = channels::member_ids(db, channel_id).await?.into();
        if self.ids + m.len() > MAX_CACHED_MEMBERS {
            self.channels.clear();
            self.ids = 0;
        }
        self.ids += m.len();
        self.channels.insert(channel_id.to_owned(), m.clone());
        Ok(m)
    }

    #[cfg(test)]
    pub fn cached(&self, channel_id: &str) -> bool {
        self.channels.contains_key(channel_id)
    }
}
