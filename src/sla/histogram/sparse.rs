//! The small form of a [`super::DurationHistogram`]: its non-zero counters only (and, for one
//! that came from a peer, the V2 bytes it came in).
//!
//! An agent's interval histogram (what it ran over the last second) or the controller's
//! figures for one agent hold a handful of distinct durations, but HDR's dense form holds
//! every counter up to its largest value: 8 to 11 × 1,024 counters of 8 bytes for iterations
//! of 0.1 to 1 s at 3 significant digits. A controller of a thousand agents decoded, zeroed,
//! walked, kept and merged that many counters per agent every second (most of its memory,
//! and the HDR share of its CPU). This form keeps what is there, until it has more than
//! [`MAX_SPARSE`] distinct counters: the histogram is dense from then on.
//!
//! The counter layout is HDR's at [`super::LOW`] = 1 µs and [`super::SIGFIG`] = 3 (2,048
//! sub-buckets, the upper 1,024 used past the first bucket); the tests check it against
//! HDR's own arithmetic.

/// log2 of the sub-buckets used per bucket past the first (1,024 at 3 significant digits).
const HALF_MAGNITUDE: u32 = 10;
const HALF: u64 = 1 << HALF_MAGNITUDE;
/// 64 - unit magnitude (0 for a lowest value of 1) - (HALF_MAGNITUDE + 1): HDR's
/// `leading_zero_count_base`.
const LEADING_ZERO_BASE: u32 = 64 - (HALF_MAGNITUDE + 1);

/// The most non-zero counters kept in this form: a recording finds its counter by binary
/// search in at most 8 steps, and above it the dense form of a histogram of short
/// durations is about as small.
const MAX_SPARSE: usize = 256;

/// The most values counted in this form: a histogram recorded into this often is on a hot
/// path (a local run's statistics, millions of iterations a second), where the dense form's
/// direct index is about 10% quicker per iteration than the search; its memory then matters
/// less than its speed. A controller's figures for one agent stay sparse for that agent's
/// first 65,536 iterations.
const MAX_COUNTED: u64 = 1 << 16;

/// V2 header bytes (cookie, payload length, normalizing offset, digits, lowest, highest,
/// ratio).
pub(super) const HEADER: usize = 40;

/// The lowest value counted by counter `index` (HDR's private `value_for`).
pub(super) fn value_for(index: usize) -> u64 {
    let bucket = (index >> HALF_MAGNITUDE) as u32;
    let sub = index as u64 & (HALF - 1);
    if bucket == 0 {
        sub
    } else {
        (sub + HALF) << (bucket - 1)
    }
}

/// The bucket (power of two) `value` falls in.
fn bucket_of(value: u64) -> u32 {
    LEADING_ZERO_BASE - (value | (2 * HALF - 1)).leading_zeros()
}

/// The counter that counts `value` (HDR's `index_for`).
pub(super) fn index_for(value: u64) -> usize {
    let bucket = bucket_of(value);
    ((bucket as usize) << HALF_MAGNITUDE) + (value >> bucket) as usize
}

/// The lowest value counted with `value` (HDR's `lowest_equivalent`).
pub(super) fn lowest_equivalent(value: u64) -> u64 {
    let bucket = bucket_of(value);
    (value >> bucket) << bucket
}

/// The highest value counted with `value` (HDR's `highest_equivalent`).
pub(super) fn highest_equivalent(value: u64) -> u64 {
    lowest_equivalent(value).saturating_add((1u64 << bucket_of(value)) - 1)
}

/// The middle of the values counted with `value` (HDR's `median_equivalent`).
pub(super) fn median_equivalent(value: u64) -> u64 {
    lowest_equivalent(value).saturating_add((1u64 << bucket_of(value)) >> 1)
}

/// How many counters a histogram that tracks up to `high` has (HDR's `buckets_to_cover`,
/// plus one half bucket).
pub(super) fn counters_for(high: u64) -> usize {
    let mut untrackable = 2 * HALF;
    let mut buckets = 1usize;
    while untrackable <= high {
        if untrackable > u64::MAX / 2 {
            buckets += 1;
            break;
        }
        untrackable <<= 1;
        buckets += 1;
    }
    (buckets + 1) << HALF_MAGNITUDE
}

/// A histogram's non-zero counters only.
#[derive(Clone, Default)]
pub(super) struct Sparse {
    /// (counter index, count), index ascending, every count > 0.
    counts: Vec<(u32, u64)>,
    total: u64,
    /// The V2 bytes it was decoded from, while nothing was recorded into it: serializing
    /// sends them on unchanged.
    bytes: Option<Box<[u8]>>,
}

impl Sparse {
    /// Adds `count` at counter `index`; false (and nothing added) when that would take it
    /// past [`MAX_SPARSE`] counters or [`MAX_COUNTED`] values.
    #[inline]
    pub(super) fn record_n(&mut self, index: usize, count: u64) -> bool {
        if self.total.saturating_add(count) > MAX_COUNTED {
            return false;
        }
        let index = index as u32;
        // Repeated durations (a no-op scenario, a steady sleep) hit the last counter.
        let at = match self.counts.last() {
            Some(&(last, _)) if last == index => Ok(self.counts.len() - 1),
            Some(&(last, _)) if last < index => Err(self.counts.len()),
            _ => self.counts.binary_search_by_key(&index, |&(i, _)| i),
        };
        match at {
            Ok(k) => self.counts[k].1 = self.counts[k].1.saturating_add(count),
            Err(_) if self.counts.len() == MAX_SPARSE => return false,
            Err(k) => self.counts.insert(k, (index, count)),
        }
        self.total = self.total.saturating_add(count);
        self.bytes = None;
        true
    }

    /// Its V2 bytes: the ones it came in, or HDR's encoding of its counters (zig-zag
    /// LEB128 numbers, a negative one a run of empty counters), declaring as the highest
    /// trackable value the top of its highest counter.
    pub(super) fn to_v2(&self) -> Vec<u8> {
        if let Some(b) = &self.bytes {
            return b.to_vec();
        }
        let mut payload = Vec::with_capacity(self.counts.len() * 3);
        let mut next = 0u64;
        for &(i, c) in &self.counts {
            let gap = u64::from(i) - next;
            if gap > 0 {
                varint_write(&mut payload, zig_zag(-(gap as i64)));
            }
            varint_write(&mut payload, zig_zag(c.min(i64::MAX as u64) as i64));
            next = u64::from(i) + 1;
        }
        let high = self
            .counts
            .last()
            .map_or(0, |&(i, _)| highest_equivalent(value_for(i as usize)))
            .max(super::START);
        let mut out = Vec::with_capacity(HEADER + payload.len());
        out.extend_from_slice(&V2_COOKIE.to_be_bytes());
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(&0u32.to_be_bytes());
        out.extend_from_slice(&u32::from(super::SIGFIG).to_be_bytes());
        out.extend_from_slice(&super::LOW.to_be_bytes());
        out.extend_from_slice(&high.to_be_bytes());
        out.extend_from_slice(&1f64.to_bits().to_be_bytes());
        out.append(&mut payload);
        out
    }

    /// Decodes V2 `bytes` whose header [`super::check_header`] accepted, counters up to
    /// `limit`. The bytes back when they hold more than [`MAX_SPARSE`] non-zero counters
    /// (the dense form suits them better); an error where HDR's own deserializer would fail.
    pub(super) fn decode(bytes: Vec<u8>, limit: usize) -> Result<Result<Sparse, Vec<u8>>, String> {
        if bytes.len() < HEADER
            || bytes[8..12] != [0; 4]
            || bytes[32..40] != 1f64.to_bits().to_be_bytes()
        {
            return Err("histogram with a normalizing offset or a ratio is not supported".into());
        }
        let mut counts = Vec::new();
        let mut total = 0u64;
        let mut index = 0usize;
        let mut at = HEADER;
        while at < bytes.len() {
            let (encoded, read) = varint(&bytes[at..])?;
            at += read;
            // Zig-zag: a negative number is a run of zero counters, a positive one a count.
            let number = ((encoded >> 1) as i64) ^ -((encoded & 1) as i64);
            if number < 0 {
                index = usize::try_from(number.unsigned_abs())
                    .ok()
                    .and_then(|zeros| index.checked_add(zeros))
                    .ok_or("histogram skips past any size")?;
                continue;
            }
            if number > 0 {
                if index >= limit {
                    return Err(format!(
                        "histogram counter {index} past its {limit} counters"
                    ));
                }
                if counts.len() == MAX_SPARSE {
                    return Ok(Err(bytes));
                }
                let count = number as u64;
                counts.push((index as u32, count));
                total = total.saturating_add(count);
            }
            index += 1;
        }
        Ok(Ok(Sparse {
            counts,
            total,
            bytes: Some(bytes.into_boxed_slice()),
        }))
    }

    pub(super) fn len(&self) -> u64 {
        self.total
    }

    /// (lowest value, count) of every non-zero counter, values ascending.
    pub(super) fn entries(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.counts.iter().map(|&(i, c)| (value_for(i as usize), c))
    }

    /// What HDR's `value_at_quantiles` reports for ascending `quantiles` (µs; 0 when empty).
    pub(super) fn value_at_quantiles<const N: usize>(&self, quantiles: [f64; N]) -> [u64; N] {
        let mut out = [0u64; N];
        if self.total == 0 {
            return out;
        }
        let mut seen = 0u64;
        let mut next = self.counts.iter();
        let mut at = None;
        for (o, q) in out.iter_mut().zip(quantiles) {
            let target = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
            while seen < target {
                let Some(&(i, c)) = next.next() else {
                    break;
                };
                seen = seen.saturating_add(c);
                at = Some(i);
            }
            let Some(i) = at else {
                break;
            };
            let value = value_for(i as usize);
            *o = if q == 0.0 {
                value
            } else {
                highest_equivalent(value)
            };
        }
        out
    }
}

/// The V2 format's cookie (uncompressed).
pub(super) const V2_COOKIE: u32 = 0x1c84_9313;

fn zig_zag(n: i64) -> u64 {
    ((n << 1) ^ (n >> 63)) as u64
}

/// Writes `value` as HDR's variable-length integer (see [`varint`]).
fn varint_write(out: &mut Vec<u8>, mut value: u64) {
    for _ in 0..8 {
        if value < 0x80 {
            out.push(value as u8);
            return;
        }
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// HDR's variable-length integer (LEB128 over at most 9 bytes, the 9th whole): the number
/// and the bytes it took.
fn varint(bytes: &[u8]) -> Result<(u64, usize), String> {
    let mut value = 0u64;
    for (k, &b) in bytes.iter().enumerate().take(9) {
        if k == 8 {
            return Ok((value | (u64::from(b) << 56), 9));
        }
        value |= u64::from(b & 0x7f) << (7 * k);
        if b & 0x80 == 0 {
            return Ok((value, k + 1));
        }
    }
    Err("histogram payload ends inside a number".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hdrhistogram::Histogram;

    fn hdr(high: u64) -> Histogram<u64> {
        Histogram::new_with_bounds(1, high, 3).unwrap()
    }

    #[test]
    fn layout_is_hdrs() {
        let h = hdr(3_600_000_000);
        let counters = h.distinct_values();
        for index in 0..counters {
            let v = value_for(index);
            assert_eq!(h.lowest_equivalent(v), v, "index {index}");
            assert_eq!(
                highest_equivalent(v),
                h.highest_equivalent(v),
                "index {index}"
            );
            if index + 1 < counters {
                assert_eq!(
                    value_for(index + 1),
                    h.next_non_equivalent(v),
                    "index {index}"
                );
            }
        }
        for v in [
            0,
            1,
            2047,
            2048,
            2049,
            999_999,
            1_000_000,
            3_600_000_000,
            u64::MAX / 4,
        ] {
            assert_eq!(highest_equivalent(v), h.highest_equivalent(v), "value {v}");
        }
        for high in [
            2,
            2047,
            2048,
            100_000,
            1_000_000,
            3_600_000_000,
            7_200_000_000,
        ] {
            assert_eq!(
                counters_for(high),
                hdr(high).distinct_values(),
                "high {high}"
            );
        }
    }

    #[test]
    fn varints_end_where_they_should() {
        for v in [0, 1, 127, 128, 1 << 20, 1 << 56, u64::MAX] {
            let mut out = Vec::new();
            varint_write(&mut out, v);
            assert_eq!(varint(&out).unwrap(), (v, out.len()), "{v}");
        }
        assert_eq!(zig_zag(-3), 5);
        assert_eq!(varint(&[0x05]).unwrap(), (5, 1));
        assert_eq!(varint(&[0x80, 0x01]).unwrap(), (128, 2));
        assert_eq!(varint(&[0xff; 9]).unwrap(), (u64::MAX, 9));
        assert!(varint(&[0x80]).is_err());
    }
}
