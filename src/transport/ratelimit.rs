//! One log line per offending address per window: a peer that sends garbage a million times
//! must not write a million lines (or grow the log pane without bound), but the first offence
//! of every address is seen at once, and the count of what was held back comes with the next.
//!
//! Pure: time is an argument. Memory is bounded too: at most [`MAX_KEYS`] addresses are
//! remembered; past that the stalest is forgotten (it will simply be logged again).

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

const MAX_KEYS: usize = 1024;

#[derive(Debug)]
struct Seen {
    logged_at: Instant,
    held_back: u64,
}

#[derive(Debug)]
pub struct LogLimiter {
    window: Duration,
    seen: HashMap<String, Seen>,
}

impl LogLimiter {
    pub fn new(window: Duration) -> LogLimiter {
        LogLimiter {
            window,
            seen: HashMap::new(),
        }
    }

    /// Whether to log an offence by `key` now: `Some(n)` with the number of offences held
    /// back since its last line, or `None` to stay quiet.
    pub fn allow(&mut self, key: &str, now: Instant) -> Option<u64> {
        if let Some(s) = self.seen.get_mut(key) {
            if now.saturating_duration_since(s.logged_at) < self.window {
                s.held_back += 1;
                return None;
            }
            let held = s.held_back;
            *s = Seen {
                logged_at: now,
                held_back: 0,
            };
            return Some(held);
        }
        if self.seen.len() >= MAX_KEYS
            && let Some(stalest) = self
                .seen
                .iter()
                .min_by_key(|(_, s)| s.logged_at)
                .map(|(k, _)| k.clone())
        {
            self.seen.remove(&stalest);
        }
        self.seen.insert(
            key.to_string(),
            Seen {
                logged_at: now,
                held_back: 0,
            },
        );
        Some(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_first_offence_is_logged_then_one_line_per_window_with_the_count() {
        let mut l = LogLimiter::new(Duration::from_secs(10));
        assert_eq!(l.allow("10.0.0.1", Instant::now()), Some(0));
        for _ in 0..999 {
            assert_eq!(l.allow("10.0.0.1", Instant::now()), None);
        }
        // Another address is not held back by the first one's noise.
        assert_eq!(l.allow("10.0.0.2", Instant::now()), Some(0));
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(l.allow("10.0.0.1", Instant::now()), Some(999));
        assert_eq!(l.allow("10.0.0.1", Instant::now()), None);
    }

    #[tokio::test(start_paused = true)]
    async fn memory_is_bounded_by_forgetting_the_stalest_address() {
        let mut l = LogLimiter::new(Duration::from_secs(10));
        for i in 0..(MAX_KEYS + 10) {
            tokio::time::advance(Duration::from_millis(1)).await;
            assert_eq!(l.allow(&format!("peer {i}"), Instant::now()), Some(0));
        }
        assert_eq!(l.seen.len(), MAX_KEYS);
        // The first ones were forgotten: they are logged again.
        assert_eq!(l.allow("peer 0", Instant::now()), Some(0));
    }
}
