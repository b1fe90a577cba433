//! When the `rps` runner starts each iteration.
//!
//! Rally paces by comparing the cumulative average rate with the target and then bursts to
//! catch up, and its ramp starts one step low and climbs twice as fast as configured. Here the
//! schedule is the exact inverse of the integrated rate: iteration `k` starts when `k - 1`
//! iterations' worth of rate has elapsed, so a ramp ramps linearly and no iteration ever
//! starts before its time.

use std::time::Duration;

use crate::task::check::{self, Checked, PluginError};
use crate::task::node::Node;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Rate {
    /// Iterations per second, for the whole workload.
    Fixed(f64),
    /// Starts at `start`/s, grows by `step`/s every `duration` seconds, up to `end`/s.
    Ramp {
        start: f64,
        end: f64,
        step: f64,
        duration: f64,
    },
}

impl Rate {
    pub fn from_config(node: &Node) -> Checked<Rate> {
        if node.as_map().is_none() {
            return match node.as_f64() {
                Some(r) if r > 0.0 && r.is_finite() => Ok(Rate::Fixed(r)),
                _ => Err(PluginError::new(
                    "",
                    format!(
                        "must be a number > 0 or a ramp {{start, end, step, duration}}, got {}",
                        check::describe(node)
                    ),
                )),
            };
        }
        check::mapping(node, &["start", "end", "step", "duration"])?;
        let at_least_one = |key: &str| check::number(node, key, "a number >= 1", |v| v >= 1.0);
        let start = check::required(
            at_least_one("start")?,
            "start",
            "the first rate, a number >= 1",
        )?;
        let end = check::required(at_least_one("end")?, "end", "the final rate, a number >= 1")?;
        let step = check::required(
            at_least_one("step")?,
            "step",
            "the rate increase per duration, a number >= 1",
        )?;
        let duration = at_least_one("duration")?.unwrap_or(1.0);
        if end < start {
            return Err(PluginError::new(
                "end",
                format!("rps end value must not be less than rps start value ({end} < {start})"),
            ));
        }
        Ok(Rate::Ramp {
            start,
            end,
            step,
            duration,
        })
    }

    pub fn config_json(&self) -> serde_json::Value {
        match self {
            Rate::Fixed(r) => serde_json::json!(r),
            Rate::Ramp {
                start,
                end,
                step,
                duration,
            } => {
                serde_json::json!({"start": start, "end": end, "step": step, "duration": duration})
            }
        }
    }

    /// `40/s`, or a ramp as `5→40/s, +5/s every 0.5 s`.
    pub fn describe(&self) -> String {
        match self {
            Rate::Fixed(r) => format!("{r}/s"),
            Rate::Ramp {
                start,
                end,
                step,
                duration,
            } => format!("{start}→{end}/s, +{step}/s every {duration} s"),
        }
    }

    /// Offset from the run's start at which iteration `k` (1-based) is due.
    pub fn start_of(&self, k: u64) -> Duration {
        let n = k.saturating_sub(1) as f64;
        let seconds = match *self {
            Rate::Fixed(r) => n / r,
            Rate::Ramp {
                start,
                end,
                step,
                duration,
            } => {
                // rate(t) = start + slope * t until it reaches `end` at t_end.
                let slope = step / duration;
                let t_end = (end - start) / slope;
                let n_end = start * t_end + slope * t_end * t_end / 2.0;
                if n <= n_end {
                    // Solve slope/2 t² + start t - n = 0 for t >= 0.
                    (2.0 * n) / (start + (start * start + 2.0 * slope * n).sqrt())
                } else {
                    t_end + (n - n_end) / end
                }
            }
        };
        Duration::from_secs_f64(seconds.max(0.0))
    }

    /// The lowest rate the schedule ever runs at (a ramp only climbs, so its `start`), or
    /// `None` when the parameters do not describe a schedule: any rate that is not a finite
    /// positive number, a ramp whose `end` is below its `start`, or a ramp whose slope
    /// `step / duration` is not a finite positive number. [`start_of`](Self::start_of)
    /// divides by these, so callers holding a `Rate` that did not come from a validated config
    /// check here first; and since iteration `k` is due no later than `(k - 1) / slowest`
    /// seconds in, it also bounds how long the schedule runs.
    pub fn slowest(&self) -> Option<f64> {
        let positive = |x: f64| x.is_finite() && x > 0.0;
        let slowest = match *self {
            Rate::Fixed(r) => r,
            Rate::Ramp {
                start,
                end,
                step,
                duration,
            } => {
                let sane = positive(start)
                    && positive(end)
                    && end >= start
                    && positive(step)
                    && positive(duration)
                    && positive(step / duration);
                if !sane {
                    return None;
                }
                start
            }
        };
        positive(slowest).then_some(slowest)
    }

    /// The rate at offset `t` seconds (what the TUI's throughput chart draws as the target).
    pub fn at(&self, t: f64) -> f64 {
        match *self {
            Rate::Fixed(r) => r,
            Rate::Ramp {
                start,
                end,
                step,
                duration,
            } => (start + step / duration * t).min(end),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_rate_is_evenly_spaced() {
        let r = Rate::Fixed(3.0);
        assert_eq!(r.start_of(1), Duration::ZERO);
        assert!((r.start_of(20).as_secs_f64() - 19.0 / 3.0).abs() < 1e-9);
    }

    #[test]
    fn ramp_integrates_to_the_iteration_count() {
        let r = Rate::Ramp {
            start: 1.0,
            end: 10.0,
            step: 1.0,
            duration: 1.0,
        };
        // Linear from 1/s to 10/s over 9 s holds 49.5 iterations; then 10/s.
        let t = |k| r.start_of(k).as_secs_f64();
        assert_eq!(t(1), 0.0);
        assert!((t(2) - ((3.0f64).sqrt() - 1.0)).abs() < 1e-9, "{}", t(2));
        let n_end = 49.5;
        assert!((t(51) - (9.0 + (50.0 - n_end) / 10.0)).abs() < 1e-9);
        // Monotonic, and the instantaneous spacing matches the rate.
        for k in 2..200 {
            assert!(t(k + 1) > t(k));
        }
        let spacing = t(31) - t(30);
        let rate = r.at(t(30));
        assert!(
            (1.0 / spacing - rate).abs() / rate < 0.05,
            "{spacing} {rate}"
        );
    }

    #[test]
    fn slowest_is_the_floor_of_a_sane_schedule() {
        assert_eq!(Rate::Fixed(3.0).slowest(), Some(3.0));
        let ramp = |start, end, step, duration| Rate::Ramp {
            start,
            end,
            step,
            duration,
        };
        assert_eq!(ramp(2.0, 10.0, 1.0, 1.0).slowest(), Some(2.0));
        assert_eq!(ramp(5.0, 5.0, 1.0, 3.0).slowest(), Some(5.0));
        // Tiny but positive still counts; the caller decides how long is too long.
        assert_eq!(Rate::Fixed(1e-300).slowest(), Some(1e-300));
        let broken = [
            Rate::Fixed(0.0),
            Rate::Fixed(-1.0),
            Rate::Fixed(f64::NAN),
            Rate::Fixed(f64::INFINITY),
            ramp(5.0, 1.0, 1.0, 1.0),
            ramp(0.0, 1.0, 1.0, 1.0),
            ramp(1.0, f64::INFINITY, 1.0, 1.0),
            ramp(1.0, 10.0, 0.0, 1.0),
            ramp(1.0, 10.0, 1.0, 0.0),
            ramp(1.0, 10.0, f64::NAN, 1.0),
            // Each part positive, but the slope underflows to zero.
            ramp(1.0, 10.0, 1e-300, 1e300),
        ];
        for rate in broken {
            assert_eq!(rate.slowest(), None, "{rate:?}");
        }
    }

    #[test]
    fn ramp_respects_its_step_duration() {
        let slow = Rate::Ramp {
            start: 1.0,
            end: 10.0,
            step: 1.0,
            duration: 2.0,
        };
        let fast = Rate::Ramp {
            start: 1.0,
            end: 10.0,
            step: 1.0,
            duration: 1.0,
        };
        assert!(slow.start_of(20) > fast.start_of(20));
        assert_eq!(slow.at(2.0), 2.0);
    }
}
