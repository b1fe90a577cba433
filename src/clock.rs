//! Wall-clock timestamps read from the monotonic clock.
//!
//! Rally stamps iterations and atomic actions with wall-clock Unix seconds. Reading the
//! system clock for each is slower than reading `Instant` and can jump (NTP); so each workload
//! reads the wall clock once and derives every later timestamp from the monotonic clock.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy)]
pub struct Clock {
    wall_at_base: f64,
    base: Instant,
}

impl Clock {
    pub fn new() -> Clock {
        let base = Instant::now();
        let wall_at_base = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        Clock { wall_at_base, base }
    }

    /// Unix seconds at `instant`.
    pub fn wall(&self, instant: Instant) -> f64 {
        match instant.checked_duration_since(self.base) {
            Some(d) => self.wall_at_base + d.as_secs_f64(),
            None => self.wall_at_base - self.base.duration_since(instant).as_secs_f64(),
        }
    }

    /// Unix seconds now.
    pub fn now(&self) -> f64 {
        self.wall(Instant::now())
    }

    pub fn base(&self) -> Instant {
        self.base
    }
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::new()
    }
}

/// Unix seconds from the system clock, for the rare one-off stamp.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
