//! A duration histogram with fixed precision that serializes through HDR's V2
//! format, so percentile state can travel between agents and merge exactly
//! (counts are integers, merging is bucket-wise addition).
//!
//! Sized for what it holds: it starts with the counters for up to [`START`] and grows
//! (HDR's auto-resize) to the largest value recorded or merged into it, never past
//! [`HIGH`]. Iterations of 10 ms need about 5,000 counters (40 KB) where the full hour
//! would take 23,552 (188 KB) — which, per agent report, held and cloned by a controller
//! of thousands of agents, was most of its memory and much of its CPU. Bucket
//! boundaries depend only on the lowest value and the precision, not on the size, so
//! histograms of different sizes merge exactly and report the same percentiles.

use std::fmt;

use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer as HdrDeserializer, Serializer as _, V2Serializer};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Lowest discernible value: 1 µs.
const LOW: u64 = 1;
/// Highest trackable value: one hour in µs; longer iterations saturate.
const HIGH: u64 = 3_600_000_000;
/// 3 significant digits: relative error <= 0.1%.
const SIGFIG: u8 = 3;
/// The initial highest trackable value (µs): the smallest HDR allows at this precision.
const START: u64 = 2;

/// Iteration durations in microseconds.
#[derive(Clone, PartialEq)]
pub struct DurationHistogram(Histogram<u64>);

impl DurationHistogram {
    pub fn new() -> Self {
        // The bounds are constants that HDR accepts (1 <= LOW, START >= 2*LOW,
        // SIGFIG <= 5): failure here is a programming error.
        let mut h =
            Histogram::new_with_bounds(LOW, START, SIGFIG).expect("constant valid HDR bounds");
        h.auto(true);
        Self(h)
    }

    /// Seconds to the µs value that is actually recorded (rounded, clamped
    /// to the trackable range; negative and NaN become 0). Recording the
    /// clamped value ourselves keeps [`Self::bucket_top_secs`] consistent with
    /// what the histogram stores.
    #[inline]
    pub fn to_micros(seconds: f64) -> u64 {
        ((seconds * 1e6).round() as u64).min(HIGH)
    }

    /// Records `micros`, clamped to [`HIGH`]. Not `saturating_record`: HDR clamps to the
    /// *current* highest trackable value before it would auto-resize, so a histogram sized
    /// for what it holds would never grow and every value would saturate at [`START`].
    #[inline]
    pub fn record_micros(&mut self, micros: u64) {
        let micros = micros.min(HIGH);
        if self.0.record(micros).is_err() {
            // Only if growing failed (allocation): keep the count, saturated.
            self.0.saturating_record(micros);
        }
    }

    /// The value `value_at_quantile` reports for the bucket holding `micros`,
    /// in seconds.
    #[inline]
    pub fn bucket_top_secs(&self, micros: u64) -> f64 {
        self.0.highest_equivalent(micros) as f64 / 1e6
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> u64 {
        self.0.len()
    }

    /// Value at `quantile` (0, 1] in seconds; 0.0 when empty.
    pub fn value_at_quantile_secs(&self, quantile: f64) -> f64 {
        self.0.value_at_quantile(quantile) as f64 / 1e6
    }

    /// p50, p95, p99 and the maximum in seconds, in one pass; `None` when empty.
    pub fn quantiles_secs(&self) -> Option<[f64; 4]> {
        if self.is_empty() {
            return None;
        }
        let mut out = [0.0; 4];
        for (o, v) in out
            .iter_mut()
            .zip(self.0.value_at_quantiles([0.5, 0.95, 0.99, 1.0]))
        {
            *o = v as f64 / 1e6;
        }
        Some(out)
    }

    pub fn add(&mut self, other: &Self) -> Result<(), String> {
        self.0.add(&other.0).map_err(|e| format!("{e:?}"))
    }
}

impl Default for DurationHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for DurationHistogram {
    // The derived Debug would dump ~23k buckets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DurationHistogram")
            .field("len", &self.0.len())
            .field("min_us", &self.0.min())
            .field("max_us", &self.0.max())
            .finish()
    }
}

impl Serialize for DurationHistogram {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut bytes = Vec::new();
        V2Serializer::new()
            .serialize(&self.0, &mut bytes)
            .map_err(|e| serde::ser::Error::custom(format!("HDR V2 serialization: {e:?}")))?;
        serializer.serialize_bytes(&bytes)
    }
}

impl<'de> Deserialize<'de> for DurationHistogram {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        // Bytes in binary formats (agent reports), a number array in JSON.
        struct HdrBytes;
        impl<'de> serde::de::Visitor<'de> for HdrBytes {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an HDR V2 histogram's bytes")
            }
            fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Vec<u8>, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
                while let Some(b) = seq.next_element()? {
                    out.push(b);
                }
                Ok(out)
            }
        }
        let bytes = deserializer.deserialize_bytes(HdrBytes)?;
        check_header(&bytes).map_err(D::Error::custom)?;
        let h: Histogram<u64> = HdrDeserializer::new()
            .deserialize(&mut bytes.as_slice())
            .map_err(|e| D::Error::custom(format!("HDR V2 deserialization: {e:?}")))?;
        // Foreign bounds would break the bucket arithmetic of max_percentile; the size may be
        // anything up to what HIGH needs (HDR grows by whole buckets, so a histogram that
        // holds HIGH tracks up to the end of HIGH's bucket: compare counters, not values).
        if (h.low(), h.sigfig()) != (LOW, SIGFIG) || h.distinct_values() > max_counters() {
            return Err(D::Error::custom(format!(
                "histogram bounds ({}, {}, {}) differ from ({LOW}, <= {HIGH}, {SIGFIG})",
                h.low(),
                h.high(),
                h.sigfig()
            )));
        }
        let mut h = h;
        h.auto(true);
        Ok(Self(h))
    }
}

/// Checks an HDR V2 header (40 bytes: cookie, payload length, normalizing offset, digits,
/// lowest, highest, ratio, all big-endian) before the deserializer sees it: it sizes its
/// buffers from the header's payload length and bounds, which come from the peer, so a
/// 45-byte frame could otherwise make it allocate and zero gigabytes.
fn check_header(bytes: &[u8]) -> Result<(), String> {
    const V2_COOKIE: u32 = 0x1c84_9313;
    const HEADER: usize = 40;
    let field = |at: usize, len: usize| -> u64 {
        bytes[at..at + len]
            .iter()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
    };
    if bytes.len() < HEADER {
        return Err(format!(
            "histogram of {} bytes has no V2 header",
            bytes.len()
        ));
    }
    let cookie = field(0, 4);
    if cookie != u64::from(V2_COOKIE) {
        return Err(format!(
            "histogram cookie {cookie:#x} is not an uncompressed HDR V2 one"
        ));
    }
    let payload = field(4, 4);
    if payload != (bytes.len() - HEADER) as u64 {
        return Err(format!(
            "histogram says {payload} payload bytes, carries {}",
            bytes.len() - HEADER
        ));
    }
    let (digits, low, high) = (field(12, 4), field(16, 8), field(24, 8));
    // HDR grows by doubling, so one that holds HIGH tracks up to less than twice it.
    if digits != u64::from(SIGFIG) || low != LOW || high > HIGH.saturating_mul(2) {
        return Err(format!(
            "histogram bounds ({low}, {high}, {digits}) differ from ({LOW}, <= {HIGH}, {SIGFIG})"
        ));
    }
    Ok(())
}

/// Counters of a histogram that tracks up to [`HIGH`]: the most a peer's may have.
fn max_counters() -> usize {
    static MAX: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *MAX.get_or_init(|| {
        Histogram::<u64>::new_with_bounds(LOW, HIGH, SIGFIG)
            .expect("constant valid HDR bounds")
            .distinct_values()
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_header_that_asks_for_gigabytes_is_refused_before_any_allocation() {
        // 45 bytes whose header claims a 4 GiB payload: the deserializer would size its
        // buffer from that.
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&0x1c84_9313u32.to_be_bytes());
        bytes.extend_from_slice(&u32::MAX.to_be_bytes());
        bytes.extend_from_slice(&0u32.to_be_bytes());
        bytes.extend_from_slice(&3u32.to_be_bytes());
        bytes.extend_from_slice(&1u64.to_be_bytes());
        bytes.extend_from_slice(&2u64.to_be_bytes());
        bytes.extend_from_slice(&1f64.to_bits().to_be_bytes());
        bytes.extend_from_slice(&[0; 5]);
        let e = check_header(&bytes).unwrap_err();
        assert!(e.contains("payload"), "{e}");
        let json = serde_json::to_string(&bytes).unwrap();
        assert!(serde_json::from_str::<DurationHistogram>(&json).is_err());
        // Too high a bound, or a compressed cookie.
        let mut high = bytes.clone();
        high[4..8].copy_from_slice(&5u32.to_be_bytes());
        high[24..32].copy_from_slice(&u64::MAX.to_be_bytes());
        assert!(check_header(&high).unwrap_err().contains("bounds"));
        let mut compressed = high.clone();
        compressed[0..4].copy_from_slice(&0x1c84_9314u32.to_be_bytes());
        assert!(check_header(&compressed).unwrap_err().contains("cookie"));
        // A real one passes, and round-trips.
        let mut h = DurationHistogram::new();
        h.record_micros(250_000);
        let back: DurationHistogram =
            serde_json::from_str(&serde_json::to_string(&h).unwrap()).unwrap();
        assert_eq!(back.len(), 1);
    }

    use super::*;

    #[test]
    fn serde_round_trip() {
        let mut h = DurationHistogram::new();
        for us in [0, 1, 999, 12_345, 7_000_000, HIGH] {
            h.record_micros(us);
        }
        let json = serde_json::to_string(&h).unwrap();
        let back: DurationHistogram = serde_json::from_str(&json).unwrap();
        assert_eq!(back, h);
        assert_eq!(back.len(), 6);
        // Grown to hold what was recorded, not saturated at the starting size.
        assert_eq!(back.value_at_quantile_secs(1.0), h.bucket_top_secs(HIGH));
        assert!(back.value_at_quantile_secs(0.5) > 0.0005);
    }

    #[test]
    fn sized_for_what_it_holds_and_merges_across_sizes() {
        let mut small = DurationHistogram::new();
        small.record_micros(10_000);
        assert!(
            small.0.distinct_values() < 6_000,
            "{}",
            small.0.distinct_values()
        );
        let mut large = DurationHistogram::new();
        large.record_micros(HIGH);
        small.add(&large).unwrap();
        assert_eq!(small.len(), 2);
        assert_eq!(
            small.value_at_quantile_secs(1.0),
            large.value_at_quantile_secs(1.0)
        );
        let mut other = DurationHistogram::new();
        other.add(&small).unwrap();
        assert_eq!(
            other.value_at_quantile_secs(0.5),
            small.value_at_quantile_secs(0.5)
        );
    }

    #[test]
    fn rejects_garbage() {
        assert!(serde_json::from_str::<DurationHistogram>("[1,2,3]").is_err());
    }

    #[test]
    fn micros_conversion_clamps() {
        assert_eq!(DurationHistogram::to_micros(-1.0), 0);
        assert_eq!(DurationHistogram::to_micros(f64::NAN), 0);
        assert_eq!(DurationHistogram::to_micros(0.0000015), 2);
        assert_eq!(DurationHistogram::to_micros(1e9), HIGH);
    }
}
