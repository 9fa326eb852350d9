//! A fixed-window rate limit per key (client address for logins), on this
//! node. Bounded: at most [`MAX_KEYS`] keys are tracked; past that, windows
//! that have ended are swept, and if all are live the oldest are dropped.

use std::collections::HashMap;
use std::sync::Mutex;

/// Most keys tracked at once.
pub const MAX_KEYS: usize = 100_000;
const WINDOW_MS: i64 = 60_000;

#[derive(Debug)]
pub struct RateLimiter {
    per_window: u32,
    windows: Mutex<HashMap<String, (i64, u32)>>,
}

impl RateLimiter {
    pub fn per_minute(per_window: u32) -> Self {
        RateLimiter {
            per_window,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one attempt for `key` at `now_ms`. Err(seconds to wait) when
    /// over the limit.
    pub fn check(&self, key: &str, now_ms: i64) -> Result<(), u64> {
        // A poisoned lock only means another request panicked mid-count;
        // the counts are still usable.
        let mut w = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if w.len() >= MAX_KEYS && !w.contains_key(key) {
            w.retain(|_, (start, _)| now_ms - *start < WINDOW_MS);
            if w.len() >= MAX_KEYS {
                w.clear();
            }
        }
        let entry = w.entry(key.to_owned()).or_insert((now_ms, 0));
        if now_ms - entry.0 >= WINDOW_MS {
            *entry = (now_ms, 0);
        }
        if entry.1 >= self.per_window {
            let wait_ms = WINDOW_MS - (now_ms - entry.0);
            return Err((wait_ms as u64).div_ceil(1000).max(1));
        }
        entry.1 += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_resets_with_the_window() {
        let r = RateLimiter::per_minute(2);
        assert!(r.check("a", 0).is_ok());
        assert!(r.check("a", 1).is_ok());
        assert_eq!(r.check("a", 1_000), Err(59));
        assert!(r.check("b", 1_000).is_ok());
        assert!(r.check("a", 60_000).is_ok());
    }
}
