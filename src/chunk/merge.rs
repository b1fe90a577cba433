//! Merging the chunk streams of many agents into one time-ordered, duplicate-free stream.
//!
//! The result store wants records in timestamp order on one clock, so that reports, charts
//! and `performance_degradation` read them in the order they happened. In a distributed run
//! every agent sends its own chunks, on its own clock, whenever the controller asks for them.
//! Three steps turn that into what the store wants:
//!
//! 1. [`shift_clock`] moves a chunk from the agent's clock to the controller's, using the
//!    offset the controller estimated from heartbeats.
//! 2. [`retain_new`] drops iterations already stored. A lost agent's unfinished share is re-run
//!    by the others; if the agent comes back with cached chunks, some of its iterations
//!    duplicate ones already stored. An [`IterationSet`] remembers every stored iteration in
//!    one bit each.
//! 3. [`ChunkMerger`] is a reorder buffer: it holds chunks until no live source can still send
//!    an older one (each source's *watermark*), then releases them oldest first.
//!
//! Memory wins over perfect order: a source that stalls would otherwise hold everything back,
//! so when the buffer holds more than its bound the merger releases its oldest chunks anyway.
//! Those *forced* releases are counted ([`ChunkMerger::forced`]), because they may leave the
//! stored order slightly out of order; so are releases that actually went out of order
//! ([`ChunkMerger::out_of_order`]), whatever the cause.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::sync::Arc;

use super::{ActionSpan, Chunk};

/// A set of iteration numbers, one bit per number up to the largest inserted.
///
/// Iteration numbers are dense (1..=times), so a bitset is the smallest exact set: 10^8
/// iterations cost 12.5 MB. The memory is `max / 8` bytes for the largest number inserted,
/// so callers should reject numbers beyond the workload's size before inserting them: a
/// corrupt number near `u64::MAX` would ask for an impossible allocation.
#[derive(Debug, Clone, Default)]
pub struct IterationSet {
    words: Vec<u64>,
    len: usize,
}

impl IterationSet {
    pub fn new() -> IterationSet {
        IterationSet::default()
    }

    /// A set that holds numbers up to `max` without growing.
    pub fn with_max(max: u64) -> IterationSet {
        let (word, _) = Self::position(max);
        IterationSet {
            words: Vec::with_capacity(word + 1),
            len: 0,
        }
    }

    /// Add `n`; true if it was not in the set yet.
    pub fn insert(&mut self, n: u64) -> bool {
        let (word, mask) = Self::position(n);
        if word >= self.words.len() {
            self.words.resize(word + 1, 0);
        }
        let slot = &mut self.words[word];
        if *slot & mask != 0 {
            return false;
        }
        *slot |= mask;
        self.len += 1;
        true
    }

    pub fn contains(&self, n: u64) -> bool {
        let (word, mask) = Self::position(n);
        self.words.get(word).is_some_and(|w| w & mask != 0)
    }

    /// How many numbers are in the set.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Word index and bit mask of `n`. Bit 0 stands for iteration 0, which never occurs
    /// (iterations are 1-based) but keeps the arithmetic trivial.
    fn position(n: u64) -> (usize, u64) {
        let word = usize::try_from(n / 64).unwrap_or(usize::MAX - 1);
        (word, 1 << (n % 64))
    }
}

/// Drop the records of `chunk` whose iteration is already in `seen`, or appears earlier in
/// the same chunk, and add the kept ones to `seen`. Returns how many were dropped.
///
/// The chunk's `actions` are rebuilt to hold only the kept records' spans, and every kept
/// record's range is rebased onto them. A range outside `actions` (a malformed chunk) leaves
/// its record with no actions rather than panicking.
pub fn retain_new(chunk: &mut Chunk, seen: &mut IterationSet) -> usize {
    let before = chunk.records.len();
    chunk.records.retain(|r| seen.insert(r.iteration));
    let dropped = before - chunk.records.len();
    if dropped > 0 {
        rebuild_actions(chunk);
    }
    dropped
}

/// Compact `chunk.actions` to the spans its records point at, in record order.
fn rebuild_actions(chunk: &mut Chunk) {
    let old = std::mem::take(&mut chunk.actions);
    let mut actions: Vec<ActionSpan> = Vec::with_capacity(old.len());
    for record in &mut chunk.records {
        let range = record.actions.start as usize..record.actions.end as usize;
        let spans = old.get(range).unwrap_or_default();
        let start = to_u32(actions.len());
        actions.extend_from_slice(spans);
        record.actions = start..to_u32(actions.len());
    }
    chunk.actions = actions;
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Move `chunk` from an agent's clock to the controller's: subtract `offset` (agent clock
/// minus controller clock, seconds) from every record timestamp and every action's start and
/// finish, then sort the records by timestamp.
///
/// A non-finite `offset` (a failed estimate) is ignored rather than turning every timestamp
/// into NaN or infinity.
pub fn shift_clock(chunk: &mut Chunk, offset: f64) {
    if offset.is_finite() && offset != 0.0 {
        for record in &mut chunk.records {
            record.timestamp -= offset;
        }
        for span in &mut chunk.actions {
            span.started_at -= offset;
            span.finished_at -= offset;
        }
    }
    chunk.sort_by_timestamp();
}

/// A source of chunks registered with a [`ChunkMerger`]. Ids are never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SourceId(usize);

#[derive(Debug)]
struct Source {
    name: Arc<str>,
    /// Every chunk this source pushes later has all timestamps >= this.
    watermark: f64,
    live: bool,
}

/// A buffered chunk, ordered by its smallest timestamp, then by arrival.
#[derive(Debug)]
struct Pending {
    key: f64,
    seq: u64,
    chunk: Chunk,
    tag: u64,
}

impl Pending {
    fn order(&self, other: &Pending) -> Ordering {
        self.key
            .total_cmp(&other.key)
            .then(self.seq.cmp(&other.seq))
    }
}

impl PartialEq for Pending {
    fn eq(&self, other: &Pending) -> bool {
        self.order(other) == Ordering::Equal
    }
}

impl Eq for Pending {}

impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Pending) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Pending {
    fn cmp(&self, other: &Pending) -> Ordering {
        self.order(other)
    }
}

/// The smallest timestamp of a chunk, ignoring NaN; +inf if it has no usable timestamp.
///
/// Taking the minimum rather than the first record makes the key right even for a chunk that
/// was not sorted. A chunk whose timestamps are all NaN sorts last and is released only by
/// the memory bound, by a source set with no live source left, or by [`ChunkMerger::drain`].
fn first_timestamp(chunk: &Chunk) -> f64 {
    chunk
        .records
        .iter()
        .map(|r| r.timestamp)
        .filter(|t| !t.is_nan())
        .fold(f64::INFINITY, f64::min)
}

/// A bounded reorder buffer releasing chunks from many sources in order of their first
/// timestamp.
///
/// A chunk is ready when its first timestamp is below the minimum watermark over live
/// sources: no live source can push anything older. With no live source left, every
/// buffered chunk is ready. When the buffer holds more than `max_buffered_records` records,
/// [`pop_ready`](Self::pop_ready) releases the oldest chunks regardless of watermarks until
/// it is back within the bound; a release that the watermarks would not have allowed counts
/// as forced.
///
/// Pushes from a removed source are still accepted (their data matters more than their
/// order) but no longer hold anything back, so they may be released out of order.
#[derive(Debug)]
pub struct ChunkMerger {
    max_buffered_records: usize,
    sources: Vec<Source>,
    heap: BinaryHeap<Reverse<Pending>>,
    buffered_records: usize,
    seq: u64,
    forced: u64,
    out_of_order: u64,
    /// First timestamp of the latest released chunk.
    last_released: f64,
    /// [`watermark`](Self::watermark), kept while no source that held it moves (`None`: work it
    /// out again). Each release asks for it, and a controller has thousands of sources.
    min_watermark: Option<f64>,
}

impl ChunkMerger {
    pub fn new(max_buffered_records: usize) -> ChunkMerger {
        ChunkMerger {
            max_buffered_records,
            sources: Vec::new(),
            heap: BinaryHeap::new(),
            buffered_records: 0,
            seq: 0,
            forced: 0,
            out_of_order: 0,
            last_released: f64::NEG_INFINITY,
            min_watermark: None,
        }
    }

    /// Register a source. Until it calls [`advance`](Self::advance), it holds back every
    /// chunk (its watermark is -inf).
    pub fn add_source(&mut self, name: impl Into<Arc<str>>) -> SourceId {
        self.sources.push(Source {
            name: name.into(),
            watermark: f64::NEG_INFINITY,
            live: true,
        });
        if self.min_watermark.is_some() {
            self.min_watermark = Some(f64::NEG_INFINITY);
        }
        SourceId(self.sources.len() - 1)
    }

    /// A lost or finished source: it no longer holds back the watermark.
    pub fn remove_source(&mut self, id: SourceId) {
        if let Some(source) = self.sources.get_mut(id.0) {
            if source.live && self.min_watermark.is_some_and(|m| source.watermark <= m) {
                self.min_watermark = None;
            }
            source.live = false;
        }
    }

    /// The name a source was registered with.
    pub fn source_name(&self, id: SourceId) -> Option<&Arc<str>> {
        self.sources.get(id.0).map(|s| &s.name)
    }

    /// Buffer a chunk (already on the controller's clock). Empty chunks are ignored. `source`
    /// is not checked: a chunk from an unknown or removed source is buffered all the same.
    pub fn push(&mut self, source: SourceId, chunk: Chunk) {
        self.push_tagged(source, chunk, 0);
    }

    /// Like [`push`](Self::push), with a tag that comes back with the chunk from
    /// [`pop_ready_tagged`](Self::pop_ready_tagged) (the controller tags chunks with the
    /// agent's chunk id, to confirm each one once it is released).
    pub fn push_tagged(&mut self, _source: SourceId, chunk: Chunk, tag: u64) {
        if chunk.is_empty() {
            return;
        }
        self.buffered_records += chunk.len();
        self.seq += 1;
        self.heap.push(Reverse(Pending {
            key: first_timestamp(&chunk),
            seq: self.seq,
            chunk,
            tag,
        }));
    }

    /// `source` promises that every chunk it pushes from now on has all timestamps >=
    /// `watermark`. Regressions, NaN, and unknown or removed sources are ignored.
    pub fn advance(&mut self, source: SourceId, watermark: f64) {
        if let Some(s) = self.sources.get_mut(source.0)
            && s.live
            && watermark > s.watermark
        {
            if self.min_watermark.is_some_and(|m| s.watermark <= m) {
                self.min_watermark = None;
            }
            s.watermark = watermark;
        }
    }

    /// The minimum watermark over live sources; +inf when there is none.
    pub fn watermark(&self) -> f64 {
        if let Some(m) = self.min_watermark {
            return m;
        }
        self.sources
            .iter()
            .filter(|s| s.live)
            .map(|s| s.watermark)
            .fold(f64::INFINITY, f64::min)
    }

    /// The oldest buffered chunk, if the watermarks allow it or the buffer is over its bound.
    pub fn pop_ready(&mut self) -> Option<Chunk> {
        self.pop_ready_tagged().map(|(chunk, _)| chunk)
    }

    /// [`pop_ready`](Self::pop_ready), with the chunk's tag.
    pub fn pop_ready_tagged(&mut self) -> Option<(Chunk, u64)> {
        let key = self.heap.peek()?.0.key;
        if self.min_watermark.is_none() {
            self.min_watermark = Some(self.watermark());
        }
        if self.is_ready(key) {
            return self.pop();
        }
        if self.buffered_records > self.max_buffered_records {
            self.forced += 1;
            return self.pop();
        }
        None
    }

    /// Everything still buffered, oldest first (end of the workload).
    pub fn drain(&mut self) -> impl Iterator<Item = Chunk> + '_ {
        std::iter::from_fn(move || self.pop().map(|(chunk, _)| chunk))
    }

    /// [`drain`](Self::drain), with each chunk's tag.
    pub fn drain_tagged(&mut self) -> impl Iterator<Item = (Chunk, u64)> + '_ {
        std::iter::from_fn(move || self.pop())
    }

    /// Records currently buffered.
    pub fn buffered_records(&self) -> usize {
        self.buffered_records
    }

    /// Chunks currently buffered.
    pub fn buffered_chunks(&self) -> usize {
        self.heap.len()
    }

    /// Releases the memory bound made before the watermarks allowed them.
    pub fn forced(&self) -> u64 {
        self.forced
    }

    /// Released chunks whose first timestamp was older than the previous release's: forced
    /// releases that really did break the order, and late chunks from removed sources or from
    /// sources that broke their watermark promise.
    pub fn out_of_order(&self) -> u64 {
        self.out_of_order
    }

    fn is_ready(&self, key: f64) -> bool {
        let watermark = self.watermark();
        watermark == f64::INFINITY || key < watermark
    }

    fn pop(&mut self) -> Option<(Chunk, u64)> {
        let Reverse(pending) = self.heap.pop()?;
        self.buffered_records -= pending.chunk.len();
        if pending.key < self.last_released {
            self.out_of_order += 1;
        } else {
            self.last_released = pending.key;
        }
        Some((pending.chunk, pending.tag))
    }
}

#[cfg(test)]
mod tests {
    use std::ops::Range;

    use proptest::prelude::*;

    use super::super::IterationRecord;
    use super::*;

    fn record(iteration: u64, timestamp: f64, actions: Range<u32>) -> IterationRecord {
        IterationRecord {
            iteration,
            timestamp,
            duration: 0.1,
            idle_duration: 0.0,
            lateness: 0.0,
            error: None,
            output: None,
            actions,
            dials: Default::default(),
        }
    }

    fn span(name: u16, started_at: f64) -> ActionSpan {
        ActionSpan {
            name,
            depth: 0,
            failed: false,
            started_at,
            finished_at: started_at + 0.5,
        }
    }

    /// A chunk whose iteration `n` has `n % 3` actions named `n * 10 + k`.
    fn chunk_of(iterations: &[u64], timestamps: &[f64]) -> Chunk {
        let mut chunk = Chunk::new("agent".into());
        for (&n, &t) in iterations.iter().zip(timestamps) {
            let start = chunk.actions.len() as u32;
            for k in 0..n % 3 {
                chunk.actions.push(span((n * 10 + k) as u16, t));
            }
            chunk
                .records
                .push(record(n, t, start..chunk.actions.len() as u32));
        }
        chunk
    }

    fn names(chunk: &Chunk, record: &IterationRecord) -> Vec<u16> {
        chunk.actions_of(record).iter().map(|s| s.name).collect()
    }

    fn expected_names(n: u64) -> Vec<u16> {
        (0..n % 3).map(|k| (n * 10 + k) as u16).collect()
    }

    fn timed(t: f64) -> Chunk {
        chunk_of(&[1], &[t])
    }

    #[test]
    fn iteration_set_grows_and_counts() {
        let mut set = IterationSet::new();
        assert!(set.is_empty());
        assert!(!set.contains(1_000_000));
        assert!(set.insert(1));
        assert!(set.insert(1_000_000));
        assert!(!set.insert(1));
        assert!(set.contains(1) && set.contains(1_000_000));
        assert!(!set.contains(2) && !set.contains(999_999));
        assert_eq!(set.len(), 2);
        assert!(set.words.len() <= 1_000_000 / 64 + 1);
    }

    #[test]
    fn retain_new_drops_seen_and_repeated() {
        let mut seen = IterationSet::new();
        seen.insert(2);
        seen.insert(5);
        let mut chunk = chunk_of(&[1, 2, 3, 4, 3, 5, 7], &[1., 2., 3., 4., 5., 6., 7.]);
        assert_eq!(retain_new(&mut chunk, &mut seen), 3);
        let kept: Vec<u64> = chunk.records.iter().map(|r| r.iteration).collect();
        assert_eq!(kept, vec![1, 3, 4, 7]);
        for r in &chunk.records {
            assert_eq!(names(&chunk, r), expected_names(r.iteration));
        }
        let total: usize = chunk.records.iter().map(|r| r.actions.len()).sum();
        assert_eq!(chunk.actions.len(), total);
        assert_eq!(seen.len(), 6);
        // Everything is now seen.
        let mut again = chunk.clone();
        assert_eq!(retain_new(&mut again, &mut seen), 4);
        assert!(again.is_empty() && again.actions.is_empty());
    }

    #[test]
    fn retain_new_survives_bad_ranges() {
        let mut chunk = chunk_of(&[1, 2], &[1., 2.]);
        chunk.records[1].actions = 7..9;
        chunk.records.push(record(1, 3., 0..1));
        assert_eq!(retain_new(&mut chunk, &mut IterationSet::new()), 1);
        assert!(chunk.actions_of(&chunk.records[1]).is_empty());
    }

    #[test]
    fn shift_clock_moves_records_and_actions_then_sorts() {
        let mut chunk = chunk_of(&[5, 4], &[102.0, 101.0]);
        shift_clock(&mut chunk, 100.0);
        let ts: Vec<f64> = chunk.records.iter().map(|r| r.timestamp).collect();
        assert_eq!(ts, vec![1.0, 2.0]);
        // Sorting moved records, not actions: ranges still point at their own spans.
        for r in &chunk.records {
            assert_eq!(names(&chunk, r), expected_names(r.iteration));
            for s in chunk.actions_of(r) {
                assert_eq!(s.started_at, r.timestamp);
                assert_eq!(s.finished_at, r.timestamp + 0.5);
            }
        }
        let before = chunk.clone();
        shift_clock(&mut chunk, f64::NAN);
        assert_eq!(chunk, before);
        shift_clock(&mut chunk, -0.5);
        assert_eq!(chunk.records[0].timestamp, 1.5);
    }

    #[test]
    fn merger_waits_for_every_live_source() {
        let mut m = ChunkMerger::new(1000);
        let a = m.add_source("a");
        let b = m.add_source("b");
        assert_eq!(m.source_name(b).map(|s| &**s), Some("b"));
        m.push(a, timed(1.0));
        m.push(b, timed(2.0));
        m.push(a, Chunk::new("a".into()));
        assert_eq!(m.buffered_chunks(), 2);
        assert!(m.pop_ready().is_none());
        m.advance(a, 10.0);
        assert!(m.pop_ready().is_none(), "b has not advanced");
        m.advance(b, 1.5);
        assert_eq!(m.pop_ready().map(|c| c.records[0].timestamp), Some(1.0));
        assert!(m.pop_ready().is_none());
        m.advance(b, 1.0); // regression: ignored
        m.advance(b, f64::NAN); // ignored
        assert_eq!(m.watermark(), 1.5);
        m.push(b, timed(1.5));
        m.advance(b, 3.0);
        let out: Vec<f64> = std::iter::from_fn(|| m.pop_ready())
            .map(|c| c.records[0].timestamp)
            .collect();
        assert_eq!(out, vec![1.5, 2.0]);
        assert_eq!(m.forced(), 0);
        assert_eq!(m.buffered_records(), 0);
    }

    #[test]
    fn remove_source_unblocks() {
        let mut m = ChunkMerger::new(1000);
        let a = m.add_source("a");
        let lost = m.add_source("lost");
        m.push(a, timed(1.0));
        m.push(a, timed(f64::NAN));
        m.advance(a, 5.0);
        assert!(m.pop_ready().is_none());
        m.remove_source(lost);
        m.advance(lost, 100.0); // ignored: removed
        assert_eq!(m.watermark(), 5.0);
        assert!(m.pop_ready().is_some());
        assert!(
            m.pop_ready().is_none(),
            "NaN sorts last, after the watermark"
        );
        m.remove_source(a);
        assert!(
            m.pop_ready().is_some(),
            "no live source: everything is ready"
        );
        assert_eq!(m.forced(), 0);
    }

    #[test]
    fn bound_forces_oldest_out() {
        let mut m = ChunkMerger::new(2);
        let a = m.add_source("a");
        m.push(a, chunk_of(&[1, 2], &[3.0, 3.5]));
        assert!(m.pop_ready().is_none());
        m.push(a, chunk_of(&[3], &[1.0]));
        assert_eq!(m.pop_ready().map(|c| c.records[0].iteration), Some(3));
        assert!(m.pop_ready().is_none());
        assert_eq!(m.forced(), 1);
        assert_eq!(m.buffered_records(), 2);
        m.push(a, timed(0.5));
        assert!(m.pop_ready().is_some());
        assert_eq!(m.out_of_order(), 1);
        let rest: Vec<Chunk> = m.drain().collect();
        assert_eq!(rest.len(), 1);
        assert_eq!(m.buffered_records(), 0);
    }

    /// Per source: chunks as (gap to this chunk's start, record offsets from that start),
    /// and how much less than the truth each watermark promises.
    type SourcePlan = Vec<(f64, Vec<f64>, f64)>;

    fn source_plan() -> impl Strategy<Value = SourcePlan> {
        prop::collection::vec(
            (
                0.0..3.0f64,
                prop::collection::vec(0.0..5.0f64, 1..12),
                prop_oneof![Just(0.0), 0.0..4.0f64],
            ),
            0..15,
        )
    }

    /// Turn a plan into chunks with their first timestamps and the watermark each source
    /// reports after pushing it (the next chunk's start, minus the slack; +inf after the last).
    fn build(plan: &SourcePlan, source: usize) -> Vec<(Chunk, f64)> {
        let mut starts = Vec::new();
        let mut t = 0.0;
        for (gap, _, _) in plan {
            t += gap;
            starts.push(t);
        }
        plan.iter()
            .enumerate()
            .map(|(i, (_, offsets, slack))| {
                let mut ts: Vec<f64> = offsets.iter().map(|o| starts[i] + o).collect();
                ts[0] = starts[i];
                ts.sort_by(f64::total_cmp);
                let first = (source * 1000 + i * 20) as u64 + 1;
                let iterations: Vec<u64> = (first..first + ts.len() as u64).collect();
                let mut chunk = chunk_of(&iterations, &ts);
                chunk.source = format!("s{source}").into();
                let next = starts.get(i + 1).map_or(f64::INFINITY, |s| s - slack);
                (chunk, next)
            })
            .collect()
    }

    type Queue = std::vec::IntoIter<(Chunk, f64)>;

    /// Source `s` pushes its next chunk and advances (or, when it has none left, promises
    /// nothing more), then everything ready is collected.
    fn step(
        m: &mut ChunkMerger,
        id: SourceId,
        queue: &mut Queue,
        max: usize,
        out: &mut Vec<Chunk>,
    ) {
        let Some((chunk, watermark)) = queue.next() else {
            m.advance(id, f64::INFINITY);
            return;
        };
        let len = chunk.len();
        m.push(id, chunk);
        m.advance(id, watermark);
        assert!(m.buffered_records() <= max.saturating_add(len));
        out.extend(std::iter::from_fn(|| m.pop_ready()));
        assert!(m.buffered_records() <= max);
    }

    fn run(plans: &[SourcePlan; 3], schedule: &[usize], max: usize) -> (ChunkMerger, Vec<Chunk>) {
        let mut m = ChunkMerger::new(max);
        let ids: Vec<SourceId> = (0..3).map(|i| m.add_source(format!("s{i}"))).collect();
        let mut queues: Vec<Queue> = plans
            .iter()
            .enumerate()
            .map(|(i, p)| build(p, i).into_iter())
            .collect();
        let mut out = Vec::new();
        for &s in schedule {
            step(&mut m, ids[s], &mut queues[s], max, &mut out);
        }
        for (&id, queue) in ids.iter().zip(&mut queues) {
            while queue.len() > 0 {
                step(&mut m, id, queue, max, &mut out);
            }
            step(&mut m, id, queue, max, &mut out);
        }
        out.extend(std::iter::from_fn(|| m.pop_ready()));
        assert_eq!(
            m.buffered_records(),
            0,
            "every source finished: all released"
        );
        (m, out)
    }

    fn check_output(m: &ChunkMerger, out: &[Chunk], plans: &[SourcePlan; 3]) {
        let pushed: usize = plans.iter().flatten().map(|(_, o, _)| o.len()).sum();
        assert_eq!(out.iter().map(Chunk::len).sum::<usize>(), pushed);
        for chunk in out {
            for r in &chunk.records {
                assert_eq!(names(chunk, r), expected_names(r.iteration));
            }
        }
        let firsts: Vec<f64> = out.iter().map(first_timestamp).collect();
        let ordered = firsts.windows(2).all(|w| w[0] <= w[1]);
        if m.forced() == 0 {
            assert!(ordered, "out of order without forced release: {firsts:?}");
            assert_eq!(m.out_of_order(), 0);
        }
        assert_eq!(ordered, m.out_of_order() == 0);
    }

    proptest! {
        #[test]
        fn merger_orders_within_bound(
            plans in [source_plan(), source_plan(), source_plan()],
            schedule in prop::collection::vec(0..3usize, 0..60),
            max in 0..120usize,
        ) {
            let (m, out) = run(&plans, &schedule, max);
            check_output(&m, &out, &plans);
        }

        #[test]
        fn merger_unbounded_never_forces(
            plans in [source_plan(), source_plan(), source_plan()],
            schedule in prop::collection::vec(0..3usize, 0..60),
        ) {
            let (m, out) = run(&plans, &schedule, usize::MAX);
            prop_assert_eq!(m.forced(), 0);
            check_output(&m, &out, &plans);
        }

        #[test]
        fn drain_returns_everything_in_order(
            plans in [source_plan(), source_plan(), source_plan()],
        ) {
            let mut m = ChunkMerger::new(usize::MAX);
            let id = m.add_source("x");
            let mut pushed = 0;
            for (i, plan) in plans.iter().enumerate() {
                for (chunk, _) in build(plan, i) {
                    pushed += chunk.len();
                    m.push(id, chunk);
                }
            }
            prop_assert!(m.pop_ready().is_none());
            let out: Vec<Chunk> = m.drain().collect();
            prop_assert_eq!(out.iter().map(Chunk::len).sum::<usize>(), pushed);
            let firsts: Vec<f64> = out.iter().map(first_timestamp).collect();
            prop_assert!(firsts.windows(2).all(|w| w[0] <= w[1]));
            prop_assert_eq!(m.buffered_records(), 0);
        }

        #[test]
        fn retain_new_matches_a_model(
            iterations in prop::collection::vec(1..60u64, 0..40),
            stored in prop::collection::vec(1..60u64, 0..20),
        ) {
            let ts: Vec<f64> = (0..iterations.len()).map(|i| i as f64).collect();
            let mut chunk = chunk_of(&iterations, &ts);
            let mut seen = IterationSet::new();
            let mut model = std::collections::HashSet::new();
            for &n in &stored {
                seen.insert(n);
                model.insert(n);
            }
            let expected: Vec<u64> = iterations.iter().copied().filter(|&n| model.insert(n)).collect();
            let dropped = retain_new(&mut chunk, &mut seen);
            prop_assert_eq!(dropped, iterations.len() - expected.len());
            let kept: Vec<u64> = chunk.records.iter().map(|r| r.iteration).collect();
            prop_assert_eq!(&kept, &expected);
            for r in &chunk.records {
                prop_assert_eq!(names(&chunk, r), expected_names(r.iteration));
            }
            prop_assert_eq!(seen.len(), model.len());
        }
    }
}
