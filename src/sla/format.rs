//! Number and status formatting shared by the `detail` strings.
//!
//! Rust's `{:.N}` formatting rounds the exact binary value half-to-even like
//! Python's `%.Nf`, so `format!("{:.2}", x)` reproduces Rally's `%.2f`.

/// Rally's `status()`: "Passed" / "Failed".
pub(crate) fn status_word(success: bool) -> &'static str {
    if success { "Passed" } else { "Failed" }
}

/// Rally's `utils.format_float_to_str`: `"%f"` (6 decimals), trailing zeros
/// stripped but at least one decimal kept (`63.333333`, `50.0`, `0.0`).
pub(crate) fn format_float_to_str(num: f64) -> String {
    let s = format!("{num:.6}");
    match s.split_once('.') {
        Some((int, frac)) => {
            let frac = frac.trim_end_matches('0');
            let frac = if frac.is_empty() { "0" } else { frac };
            format!("{int}.{frac}")
        }
        // Only non-finite values have no '.', Python would raise IndexError.
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_to_str_matches_rally() {
        assert_eq!(format_float_to_str(63.333_333_333), "63.333333");
        assert_eq!(format_float_to_str(50.0), "50.0");
        assert_eq!(format_float_to_str(0.0), "0.0");
        assert_eq!(format_float_to_str(20.0 / 3.0 - 0.0), "6.666667");
        assert_eq!(format_float_to_str(1.5), "1.5");
        assert_eq!(format_float_to_str(0.000_000_4), "0.0");
    }

    #[test]
    fn two_decimals_round_like_python() {
        // Python: '%.2f' % 0.125 == '0.12', '%.2f' % 2.675 == '2.67'
        assert_eq!(format!("{:.2}", 0.125_f64), "0.12");
        assert_eq!(format!("{:.2}", 0.375_f64), "0.38");
        assert_eq!(format!("{:.2}", 2.675_f64), "2.67");
    }

    #[test]
    fn status_words() {
        assert_eq!(status_word(true), "Passed");
        assert_eq!(status_word(false), "Failed");
    }
}
