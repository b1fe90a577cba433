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
//!
//! It starts in a sparse form ([`sparse`], its non-zero counters only) and becomes dense when
//! it holds too many distinct durations for that, or has counted so many values that it is on
//! a hot path: a controller holds and merges every agent's
//! interval histogram and keeps figures per agent, each of a few non-zero counters among
//! thousands.

mod sparse;

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
#[derive(Clone)]
pub struct DurationHistogram(Repr);

#[derive(Clone)]
enum Repr {
    /// HDR's counters, every one up to the largest value.
    Dense(Histogram<u64>),
    /// Its non-zero counters, while there are few.
    Sparse(sparse::Sparse),
}

/// An empty dense histogram of the fixed bounds, growing as values come.
fn dense() -> Histogram<u64> {
    // The bounds are constants that HDR accepts (1 <= LOW, START >= 2*LOW, SIGFIG <= 5):
    // failure here is a programming error.
    let mut h = Histogram::new_with_bounds(LOW, START, SIGFIG).expect("constant valid HDR bounds");
    h.auto(true);
    h
}

/// Adds `count` at `micros` to a dense histogram, growing it (saturated only if growing
/// failed).
fn record_n(h: &mut Histogram<u64>, micros: u64, count: u64) {
    let micros = micros.min(HIGH);
    if h.record_n(micros, count).is_err() {
        h.saturating_record_n(micros, count);
    }
}

impl DurationHistogram {
    pub fn new() -> Self {
        Self(Repr::Sparse(sparse::Sparse::default()))
    }

    /// The dense form, made from the sparse one.
    fn dense_mut(&mut self) -> &mut Histogram<u64> {
        if let Repr::Sparse(s) = &self.0 {
            let mut h = dense();
            for (value, count) in s.entries() {
                record_n(&mut h, value, count);
            }
            self.0 = Repr::Dense(h);
        }
        match &mut self.0 {
            Repr::Dense(h) => h,
            Repr::Sparse(_) => unreachable!("made dense above"),
        }
    }

    /// (highest value, count) of every non-zero counter, values ascending.
    fn entries(&self) -> Vec<(u64, u64)> {
        match &self.0 {
            Repr::Dense(h) => h
                .iter_recorded()
                .map(|v| (v.value_iterated_to(), v.count_at_value()))
                .collect(),
            Repr::Sparse(s) => s
                .entries()
                .map(|(v, c)| (sparse::highest_equivalent(v), c))
                .collect(),
        }
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
        if let Repr::Sparse(s) = &mut self.0
            && s.record_n(sparse::index_for(micros), 1)
        {
            return;
        }
        // Only if growing failed (allocation) is the count kept saturated.
        record_n(self.dense_mut(), micros, 1);
    }

    /// `(value, count)` of every non-zero counter, values ascending; the value is the
    /// highest of its counter (as HDR's `iter_recorded` gives `value_iterated_to`).
    pub fn recorded(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.entries().into_iter()
    }

    /// The lowest value counted with `micros`.
    pub fn lowest_equivalent(micros: u64) -> u64 {
        sparse::lowest_equivalent(micros)
    }

    /// The middle of the values counted with `micros`.
    pub fn median_equivalent(micros: u64) -> u64 {
        sparse::median_equivalent(micros)
    }

    /// Value at `quantile` in µs, HDR's rule; 0 when empty.
    pub fn value_at_quantile(&self, quantile: f64) -> u64 {
        match &self.0 {
            Repr::Dense(h) => h.value_at_quantile(quantile),
            Repr::Sparse(s) => s.value_at_quantiles([quantile])[0],
        }
    }

    /// The value `value_at_quantile` reports for the bucket holding `micros`,
    /// in seconds.
    #[inline]
    pub fn bucket_top_secs(&self, micros: u64) -> f64 {
        sparse::highest_equivalent(micros) as f64 / 1e6
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn len(&self) -> u64 {
        match &self.0 {
            Repr::Dense(h) => h.len(),
            Repr::Sparse(s) => s.len(),
        }
    }

    /// Value at `quantile` (0, 1] in seconds; 0.0 when empty.
    pub fn value_at_quantile_secs(&self, quantile: f64) -> f64 {
        self.value_at_quantile(quantile) as f64 / 1e6
    }

    /// p50, p95, p99 and the maximum in seconds, in one pass; `None` when empty.
    pub fn quantiles_secs(&self) -> Option<[f64; 4]> {
        if self.is_empty() {
            return None;
        }
        const QUANTILES: [f64; 4] = [0.5, 0.95, 0.99, 1.0];
        let mut micros = [0u64; 4];
        match &self.0 {
            Repr::Dense(h) => {
                for (o, v) in micros.iter_mut().zip(h.value_at_quantiles(QUANTILES)) {
                    *o = v;
                }
            }
            Repr::Sparse(s) => micros = s.value_at_quantiles(QUANTILES),
        }
        Some(micros.map(|v| v as f64 / 1e6))
    }

    /// Adds `other`'s counts; a sparse `other` costs its non-zero counters, not its size.
    pub fn add(&mut self, other: &Self) -> Result<(), String> {
        match &other.0 {
            Repr::Dense(o) => self.dense_mut().add(o).map_err(|e| format!("{e:?}")),
            Repr::Sparse(o) => {
                for (value, count) in o.entries() {
                    if let Repr::Sparse(s) = &mut self.0
                        && s.record_n(sparse::index_for(value), count)
                    {
                        continue;
                    }
                    record_n(self.dense_mut(), value, count);
                }
                Ok(())
            }
        }
    }
}

impl PartialEq for DurationHistogram {
    /// The same counts in the same buckets, whatever the form or size.
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.entries() == other.entries()
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
        let entries = self.entries();
        f.debug_struct("DurationHistogram")
            .field("len", &self.len())
            .field("buckets", &entries.len())
            .field("max_us", &entries.last().map_or(0, |e| e.0))
            .finish()
    }
}

impl Serialize for DurationHistogram {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let h = match &self.0 {
            Repr::Dense(h) => h,
            Repr::Sparse(s) => return serializer.serialize_bytes(&s.to_v2()),
        };
        let mut bytes = Vec::new();
        V2Serializer::new()
            .serialize(h, &mut bytes)
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
        let high = check_header(&bytes).map_err(D::Error::custom)?;
        let limit = sparse::counters_for(high).min(max_counters());
        let bytes = match sparse::Sparse::decode(bytes, limit).map_err(D::Error::custom)? {
            Ok(s) => return Ok(Self(Repr::Sparse(s))),
            Err(bytes) => bytes,
        };
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
        Ok(Self(Repr::Dense(h)))
    }
}

/// Checks an HDR V2 header (40 bytes: cookie, payload length, normalizing offset, digits,
/// lowest, highest, ratio, all big-endian) before the deserializer sees it: it sizes its
/// buffers from the header's payload length and bounds, which come from the peer, so a
/// 45-byte frame could otherwise make it allocate and zero gigabytes. Returns the highest
/// trackable value it declares.
fn check_header(bytes: &[u8]) -> Result<u64, String> {
    const V2_COOKIE: u32 = sparse::V2_COOKIE;
    const HEADER: usize = sparse::HEADER;
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
    Ok(high)
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
        let h = small.dense_mut();
        assert!(h.distinct_values() < 6_000, "{}", h.distinct_values());
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

    /// Durations over several decades, the same every run.
    fn spread(n: usize) -> DurationHistogram {
        let mut h = DurationHistogram::new();
        let mut x = 12_345u64;
        for _ in 0..n {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            h.record_micros(((x >> 33) % 5_000_000) >> ((x >> 20) % 12));
        }
        h
    }

    fn same_quantiles(a: &DurationHistogram, b: &DurationHistogram) {
        for q in [0.0, 0.001, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0] {
            assert_eq!(
                a.value_at_quantile_secs(q),
                b.value_at_quantile_secs(q),
                "q {q}"
            );
        }
        assert_eq!(a.quantiles_secs(), b.quantiles_secs());
        assert_eq!(a.len(), b.len());
    }

    #[test]
    fn the_sparse_form_reads_merges_and_travels_as_the_dense_one() {
        let small = spread(150);
        assert!(matches!(small.0, Repr::Sparse(_)));
        let mut dense = small.clone();
        dense.dense_mut();
        assert_eq!(small, dense);
        same_quantiles(&small, &dense);
        // Its own V2 bytes are HDR's: HDR reads them back to the same counts.
        let bytes = rmp_serde::to_vec(&small).unwrap();
        let v2: serde_bytes_owned::Bytes = rmp_serde::from_slice(&bytes).unwrap();
        let hdr: Histogram<u64> = HdrDeserializer::new()
            .deserialize(&mut v2.0.as_slice())
            .unwrap();
        assert_eq!(DurationHistogram(Repr::Dense(hdr)), dense);
        // A dense one decodes sparse, the same.
        let got: DurationHistogram =
            rmp_serde::from_slice(&rmp_serde::to_vec(&dense).unwrap()).unwrap();
        assert!(matches!(got.0, Repr::Sparse(_)));
        assert_eq!(got, dense);
        same_quantiles(&got, &dense);
        // Merging it is merging the dense one.
        let (mut a, mut b) = (DurationHistogram::new(), DurationHistogram::new());
        a.record_micros(7);
        b.record_micros(7);
        b.dense_mut();
        a.add(&got).unwrap();
        b.add(&dense).unwrap();
        assert_eq!(a, b);
        same_quantiles(&a, &b);
        // Recorded into, it is sent as its new counts.
        let (mut grown, mut expected) = (got.clone(), dense.clone());
        grown.record_micros(3);
        expected.record_micros(3);
        assert!(matches!(grown.0, Repr::Sparse(_)));
        assert_eq!(grown, expected);
        same_quantiles(&grown, &expected);
        let back: DurationHistogram =
            rmp_serde::from_slice(&rmp_serde::to_vec(&grown).unwrap()).unwrap();
        assert_eq!(back, expected);
        // Past its size it turns dense, with every count.
        let mut many = grown.clone();
        many.add(&spread(5_000)).unwrap();
        assert!(matches!(many.0, Repr::Dense(_)));
        assert_eq!(many.len(), grown.len() + 5_000);
    }

    /// MessagePack bin read back as bytes.
    mod serde_bytes_owned {
        pub struct Bytes(pub Vec<u8>);
        impl<'de> serde::Deserialize<'de> for Bytes {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl serde::de::Visitor<'_> for V {
                    type Value = Vec<u8>;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str("bytes")
                    }
                    fn visit_bytes<E>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                        Ok(v.to_vec())
                    }
                }
                d.deserialize_bytes(V).map(Bytes)
            }
        }
    }

    #[test]
    fn a_histogram_counted_into_often_turns_dense() {
        let mut h = DurationHistogram::new();
        for _ in 0..(1 << 16) {
            h.record_micros(5);
        }
        assert!(matches!(h.0, Repr::Sparse(_)));
        h.record_micros(5);
        assert!(matches!(h.0, Repr::Dense(_)));
        assert_eq!(h.len(), (1 << 16) + 1);
        assert_eq!(h.value_at_quantile(1.0), 5);
    }

    #[test]
    fn many_distinct_durations_stay_dense_and_empty_ones_read_empty() {
        let sent = spread(5_000);
        let got: DurationHistogram =
            rmp_serde::from_slice(&rmp_serde::to_vec(&sent).unwrap()).unwrap();
        assert!(matches!(got.0, Repr::Dense(_)));
        same_quantiles(&got, &sent);
        let empty: DurationHistogram =
            rmp_serde::from_slice(&rmp_serde::to_vec(&DurationHistogram::new()).unwrap()).unwrap();
        assert!(empty.is_empty());
        assert_eq!(empty.quantiles_secs(), None);
        assert_eq!(empty.value_at_quantile_secs(0.5), 0.0);
    }

    #[test]
    fn a_counter_past_the_declared_size_is_refused() {
        let mut h = DurationHistogram::new();
        h.record_micros(1);
        let mut bytes = Vec::new();
        V2Serializer::new()
            .serialize(h.dense_mut(), &mut bytes)
            .unwrap();
        // Skip 100,000 zero counters (zig-zag -100,000 = 199,999), then a count of 1.
        let mut payload = vec![0xbf, 0x9a, 0x0c, 0x02];
        bytes.truncate(40);
        bytes[4..8].copy_from_slice(&(payload.len() as u32).to_be_bytes());
        bytes.append(&mut payload);
        let e = rmp_serde::from_slice::<DurationHistogram>(
            &rmp_serde::to_vec(&serde_bytes(&bytes)).unwrap(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("past its"), "{e}");
    }

    /// `bytes` as MessagePack bin, as a peer's histogram travels.
    fn serde_bytes(bytes: &[u8]) -> impl Serialize + '_ {
        struct B<'a>(&'a [u8]);
        impl Serialize for B<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(self.0)
            }
        }
        B(bytes)
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
