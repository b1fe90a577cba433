//! Fixed-width formats for numbers, durations, percentages and counts: a cell keeps its
//! width as the value moves, so the screen does not jitter.

/// Display width of a short, single-line string.
pub(super) fn width(s: &str) -> u16 {
    s.chars().count().min(u16::MAX as usize) as u16
}

/// `h:mm:ss` (or `m:ss`) of a duration in seconds.
pub(super) fn clock(seconds: f64) -> String {
    let t = if seconds.is_finite() {
        seconds.max(0.0) as u64
    } else {
        0
    };
    let (h, m, s) = (t / 3600, t / 60 % 60, t % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

/// A figure in at most ~5 characters (3 significant digits, k/M suffixes).
pub(super) fn num(v: f64) -> String {
    // Judged on the rounded value, as `dur`: 9.996 is `10.0`, not `10.00`.
    let rounded = |decimals: i32| {
        let scale = 10f64.powi(decimals);
        (v.abs() * scale).round() / scale
    };
    let a = v.abs();
    if !v.is_finite() {
        "-".into()
    } else if (a / 1e3).round() >= 1000.0 {
        format!("{:.1}M", v / 1e6)
    } else if rounded(0) >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if rounded(1) >= 100.0 {
        format!("{v:.0}")
    } else if rounded(2) >= 10.0 {
        format!("{v:.1}")
    } else if a >= 0.01 || a == 0.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.4}")
    }
}

/// A duration in at most 6 characters, in the unit that keeps 3 digits: `250µs`,
/// `12.3ms`, `1.25s`.
pub(super) fn dur(v: f64) -> String {
    // Each unit is judged on the value as it will be rounded, so 0.09996 s is `100ms`, not
    // `100.0ms`: figures keep their column width at the boundaries.
    let rounds_below = |x: f64, decimals: i32, limit: f64| {
        let scale = 10f64.powi(decimals);
        (x.abs() * scale).round() / scale < limit
    };
    if !v.is_finite() {
        "-".into()
    } else if v == 0.0 {
        "0s".into()
    } else if rounds_below(v * 1e6, 0, 1000.0) {
        format!("{:.0}µs", v * 1e6)
    } else if rounds_below(v * 1e3, 2, 10.0) {
        format!("{:.2}ms", v * 1e3)
    } else if rounds_below(v * 1e3, 1, 100.0) {
        format!("{:.1}ms", v * 1e3)
    } else if rounds_below(v * 1e3, 0, 1000.0) {
        format!("{:.0}ms", v * 1e3)
    } else {
        format!("{}s", num(v))
    }
}

/// A clock offset: always signed, so "ahead" and "behind" read at a glance.
pub(super) fn signed_dur(v: f64) -> String {
    if v < 0.0 {
        format!("-{}", dur(-v))
    } else {
        format!("+{}", dur(v))
    }
}

/// A heartbeat age in at most 4 characters.
pub(super) fn short_age(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.1}s")
    } else if v < 1000.0 {
        format!("{v:.0}s")
    } else {
        "old".into()
    }
}

/// A percentage in at most 6 characters.
pub(super) fn pct(v: f64) -> String {
    let a = v.abs();
    if !v.is_finite() {
        "-".into()
    } else if a >= 99.995 || a == 0.0 {
        format!("{v:.0}%")
    } else if a >= 10.0 {
        format!("{v:.1}%")
    } else {
        format!("{v:.2}%")
    }
}

pub(super) fn count(n: u64) -> String {
    if n >= 1_000_000 {
        format!("{:.1}M", n as f64 / 1e6)
    } else if n >= 100_000 {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    }
}

pub(super) fn secs(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), dur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_fit() {
        assert_eq!(clock(3725.9), "1:02:05");
        assert_eq!(clock(65.0), "1:05");
        assert_eq!(clock(f64::NAN), "0:00");
        assert_eq!(num(0.0), "0.00");
        assert_eq!(num(0.1234), "0.12");
        assert_eq!(num(0.001234), "0.0012");
        assert_eq!(num(12.34), "12.3");
        assert_eq!(num(123_456.0), "123k");
        assert_eq!(num(f64::NAN), "-");
        assert_eq!(count(1_234_567), "1.2M");
        assert_eq!(secs(None), "-");
        assert_eq!(dur(0.000_25), "250µs");
        assert_eq!(dur(0.001_234), "1.23ms");
        assert_eq!(dur(0.0123), "12.3ms");
        assert_eq!(dur(0.25), "250ms");
        assert_eq!(dur(1.25), "1.25s");
        assert_eq!(dur(0.0), "0s");
        assert_eq!(signed_dur(-0.0015), "-1.50ms");
        assert_eq!(signed_dur(0.0), "+0s");
        assert_eq!(pct(0.0), "0%");
        assert_eq!(pct(1.984), "1.98%");
        assert_eq!(pct(12.34), "12.3%");
        assert_eq!(pct(100.0), "100%");
        assert_eq!(short_age(0.31), "0.3s");
        assert_eq!(short_age(42.0), "42s");
    }

    /// At a unit's boundary the rounded value picks the unit, so widths stay put.
    #[test]
    fn formats_keep_their_width_at_rounding_boundaries() {
        assert_eq!(dur(0.099_96), "100ms");
        assert_eq!(dur(0.009_996), "10.0ms");
        assert_eq!(dur(0.000_999_7), "1.00ms");
        assert_eq!(dur(0.999_7), "1.00s");
        assert_eq!(num(9.996), "10.0");
        assert_eq!(num(99.96), "100");
        assert_eq!(num(9_999.7), "10k");
        assert_eq!(num(999_700.0), "1.0M");
        for v in [0.0999, 0.099_96, 0.1, 0.009_96, 0.0101] {
            assert!(dur(v).chars().count() <= 6, "{v}: {}", dur(v));
        }
    }
}
