//! The workload's consumer: takes its result chunks and the agents' live statuses, keeps the
//! statistics and the SLA state, and publishes the live figures (progress, agents, SLA,
//! statistics) every interval and the workload's report at its end.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::{Abort, EngineOptions, Record};
use crate::chunk::Chunk;
use crate::distributed::controller::WorkloadOutcome;
use crate::events::{
    AgentRow, AgentsSnapshot, DistributedSummary, DurationBuckets, Event, Figures, LiveStatistics,
    Progress, SlaSnapshot, SourceDetail, SourceFigures, StatisticsDetail, StopCause, WorkloadInfo,
    WorkloadReport,
};
use crate::runner::InstanceStatus;
use crate::sla::running::RunningMerge;
use crate::sla::{self, CriterionStatus, IterationSample, SlaChecker};
use crate::stats::ErrorCount;
use crate::stats::{Metric, WorkloadStats};

/// How often the merged agents' SLA state is checked while reports come in.
const SLA_CHECK: Duration = Duration::from_millis(20);

/// How often, at most, agents' state changes are published between intervals.
const AGENTS_AT_ONCE: Duration = Duration::from_millis(100);

/// How often the iteration count is published between intervals (SPEC §14: progress
/// redraws at least 4 times a second).
const COUNT_INTERVAL: Duration = Duration::from_millis(200);

/// Figures over one publishing interval.
struct Interval {
    metric: Metric,
}

impl Interval {
    pub(super) fn new() -> Interval {
        Interval {
            metric: Metric::default(),
        }
    }

    fn figures(&mut self, seconds: f64, total: &Metric, failures: u64) -> Figures {
        let m = &self.metric;
        let f = Figures {
            iterations: total.count,
            failures,
            rate: if seconds > 0.0 {
                m.count as f64 / seconds
            } else {
                0.0
            },
            p50: m.quantile(0.5),
            p95: m.quantile(0.95),
            p99: m.quantile(0.99),
            max: (m.count > 0).then_some(m.max),
            p95_total: total.quantile(0.95),
        };
        self.metric = Metric::default();
        f
    }
}

/// One runner instance's stored figures.
struct SourceStats {
    name: Arc<str>,
    metric: Metric,
    failures: u64,
    /// Its most common errors, as the workload's are counted.
    errors: Vec<ErrorCount>,
    /// Its failures by error type, for `--metrics-listen`: bounded like `errors`.
    by_type: Vec<(String, u64)>,
}

/// Counts a failure of type `etype`: the first [`crate::stats::ERROR_KINDS`] types by
/// name, later new ones under `other`, so that a scenario raising ever new types cannot
/// grow the list (or the metrics' label values) without bound.
fn count_type(by_type: &mut Vec<(String, u64)>, etype: &str) {
    if let Some((_, n)) = by_type.iter_mut().find(|(t, _)| t == etype) {
        *n += 1;
    } else if by_type.len() < crate::stats::ERROR_KINDS {
        by_type.push((etype.to_string(), 1));
    } else if let Some((_, n)) = by_type.iter_mut().find(|(t, _)| t == OTHER_TYPE) {
        *n += 1;
    } else {
        by_type.push((OTHER_TYPE.to_string(), 1));
    }
}

/// The error type that [`count_type`] counts new types under once it has enough.
pub const OTHER_TYPE: &str = "other";

/// Consumes a workload's chunks: statistics, SLA, and what the front ends see.
pub(super) struct Consumer {
    index: usize,
    abort_on_sla: bool,
    interval: Duration,
    stats: WorkloadStats,
    names: Arc<[String]>,
    sla: Result<SlaChecker, String>,
    pub(super) aborted_on_sla: bool,
    recent: Interval,
    pub(super) hooks: Vec<crate::hook::HookResult>,
    total: Option<u64>,
    /// Stored figures per runner instance (agent), from the chunks.
    per_source: Vec<SourceStats>,
    /// Where each source is in `per_source` (every chunk looks its source up; thousands of
    /// agents are thousands of sources).
    per_source_index: std::collections::HashMap<Arc<str>, usize>,
    /// The agents' latest live reports (distributed workloads only).
    instances: Vec<InstanceStatus>,
    /// Where each agent is in `instances`, by name (a report is found in O(1)).
    instance_index: std::collections::HashMap<String, usize>,
    /// The agents' SLA states merged, moved on by each report (see [`RunningMerge`]).
    running_sla: RunningMerge,
    pub(super) distributed: Option<WorkloadOutcome>,
    /// Counts chunks consumed, when nothing stores them.
    pub(super) committed: Option<watch::Sender<u64>>,
    /// The local `rps` runner's count of iterations running now.
    pub(super) in_flight: Option<Arc<std::sync::atomic::AtomicU64>>,
    /// [`EngineOptions::detail`].
    detail: bool,
}

impl Consumer {
    pub(super) fn new(
        options: &EngineOptions,
        info: &WorkloadInfo,
        names: Arc<[String]>,
        sla: &serde_json::Map<String, serde_json::Value>,
    ) -> Consumer {
        Consumer {
            index: info.index,
            abort_on_sla: options.abort_on_sla_failure,
            interval: options.interval,
            stats: WorkloadStats::new(names.clone()),
            names,
            sla: SlaChecker::from_config(sla).map_err(|e| e.to_string()),
            aborted_on_sla: false,
            recent: Interval::new(),
            hooks: Vec::new(),
            total: info.total,
            per_source: Vec::new(),
            per_source_index: std::collections::HashMap::new(),
            instances: Vec::new(),
            instance_index: std::collections::HashMap::new(),
            running_sla: RunningMerge::default(),
            distributed: None,
            committed: None,
            in_flight: None,
            detail: options.detail,
        }
    }

    pub(super) async fn consume(
        &mut self,
        mut rx: mpsc::Receiver<Chunk>,
        mut live: mpsc::UnboundedReceiver<Vec<InstanceStatus>>,
        stop: &CancellationToken,
        abandon: &CancellationToken,
        recorder: Option<&mpsc::Sender<Record>>,
        publish: impl Fn(Event),
    ) {
        let started = Instant::now();
        let mut tick = tokio::time::interval_at((started + self.interval).into(), self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_tick = started;
        let mut live_open = true;
        let mut sla_dirty = false;
        let mut sla_check = tokio::time::interval(SLA_CHECK);
        sla_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut count_tick = tokio::time::interval(COUNT_INTERVAL);
        count_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut counted = (u64::MAX, u64::MAX);
        // Agents' state changes, published at most every AGENTS_AT_ONCE: with a thousand
        // agents starting, one snapshot per status would be a million rows.
        let mut agents_changed = false;
        let mut agents_tick = tokio::time::interval(AGENTS_AT_ONCE);
        agents_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                update = live.recv(), if live_open => match update {
                    Some(instances) => {
                        agents_changed |= self.upsert(instances);
                        sla_dirty = true;
                    }
                    None => live_open = false,
                },
                // The merged agents' state is the live verdict (chunks reach the controller
                // later than the agents' SLA reports). It is a running merge that each
                // report moves on (see `upsert`); its verdict is checked at most every
                // SLA_CHECK.
                _ = sla_check.tick(), if sla_dirty => {
                    sla_dirty = false;
                    let failing = self.merged_sla().is_some_and(|m| m.as_ref().is_ok_and(|m| !m.success()));
                    if failing && self.abort_on_sla && !self.aborted_on_sla {
                        self.abort(stop, recorder, &publish).await;
                    }
                }
                chunk = rx.recv() => match chunk {
                    Some(chunk) => {
                        if self.ingest(&chunk) && self.abort_on_sla && !self.aborted_on_sla {
                            self.abort(stop, recorder, &publish).await;
                        }
                        if let Some(r) = recorder {
                            let _ = r.send(Record::Chunk { index: self.index, chunk }).await;
                        }
                        if let Some(c) = &self.committed {
                            c.send_modify(|n| *n += 1);
                        }
                    }
                    None => break,
                },
                _ = agents_tick.tick(), if agents_changed => {
                    agents_changed = false;
                    publish(Event::Agents(AgentsSnapshot {
                        workload: self.index,
                        agents: self.instances.iter().map(AgentRow::from_instance).collect(),
                    }));
                }
                // Leaving now: what already arrived is counted and stored; the rest is not
                // waited for.
                () = abandon.cancelled() => {
                    while let Ok(chunk) = rx.try_recv() {
                        self.ingest(&chunk);
                        if let Some(r) = recorder {
                            let _ = r.send(Record::Chunk { index: self.index, chunk }).await;
                        }
                    }
                    break;
                }
                _ = count_tick.tick() => {
                    let (iterations, failures) = self.count();
                    if (iterations, failures) != counted {
                        counted = (iterations, failures);
                        publish(Event::Count {
                            workload: self.index,
                            elapsed: started.elapsed().as_secs_f64(),
                            iterations,
                            failures,
                        });
                    }
                }
                _ = tick.tick() => {
                    let now = Instant::now();
                    self.publish_snapshot(now.duration_since(last_tick).as_secs_f64(), now.duration_since(started).as_secs_f64(), &publish);
                    last_tick = now;
                }
            }
        }
        let now = Instant::now();
        self.publish_snapshot(
            now.duration_since(last_tick).as_secs_f64(),
            now.duration_since(started).as_secs_f64(),
            &publish,
        );
    }

    async fn abort(
        &mut self,
        stop: &CancellationToken,
        recorder: Option<&mpsc::Sender<Record>>,
        publish: &impl Fn(Event),
    ) {
        self.aborted_on_sla = true;
        stop.cancel();
        publish(Event::Stopping {
            reason: StopCause::SlaFailure,
        });
        if let Some(r) = recorder {
            let _ = r
                .send(Record::Stopping {
                    status: "soft_aborting",
                })
                .await;
        }
    }

    /// Take in agents' latest statuses (some or all of them).
    /// Takes the agents' latest statuses; true when one of them changed state (lost,
    /// stopping, done) or is new, which the screens should learn at once rather than at
    /// the next interval.
    fn upsert(&mut self, statuses: Vec<InstanceStatus>) -> bool {
        let mut changed = false;
        for status in statuses {
            match self.instance_index.get(&status.name) {
                Some(&k) => {
                    let known = &mut self.instances[k];
                    changed |= known.state != status.state;
                    match (&known.sla, &status.sla) {
                        // The same report again (every interval re-sends them all).
                        (Some(old), Some(new)) if Arc::ptr_eq(old, new) => {}
                        (old, Some(new)) => self.running_sla.update(old.as_deref(), new),
                        (Some(_), None) => self.running_sla.mark_stale(),
                        (None, None) => {}
                    }
                    *known = status;
                }
                None => {
                    changed = true;
                    if let Some(new) = &status.sla {
                        self.running_sla.update(None, new);
                    }
                    self.instance_index
                        .insert(status.name.clone(), self.instances.len());
                    self.instances.push(status);
                }
            }
        }
        changed
    }

    /// The agents' SLA states merged, when agents report them.
    fn merged_sla(&mut self) -> Option<&Result<SlaChecker, String>> {
        self.running_sla
            .get(self.instances.iter().filter_map(|i| i.sla.as_deref()))
    }

    /// A source's p95 over its stored results.
    fn source_p95_total(&self, name: &str) -> Option<f64> {
        let &i = self.per_source_index.get(name)?;
        self.per_source.get(i)?.metric.quantile(0.95)
    }

    fn source_metric(&mut self, source: &Arc<str>) -> usize {
        match self.per_source_index.get(source) {
            Some(&i) => i,
            None => {
                self.per_source_index
                    .insert(source.clone(), self.per_source.len());
                self.per_source.push(SourceStats {
                    name: source.clone(),
                    metric: Metric::default(),
                    failures: 0,
                    errors: Vec::new(),
                    by_type: Vec::new(),
                });
                self.per_source.len() - 1
            }
        }
    }

    /// Account for a chunk; true when an SLA criterion failed on the data so far.
    fn ingest(&mut self, chunk: &Chunk) -> bool {
        let mut sla_failed = false;
        let source = self.source_metric(&chunk.source);
        for record in &chunk.records {
            let s = &mut self.per_source[source];
            s.metric.add(record.duration, record.error.is_none());
            if let Some(e) = &record.error {
                s.failures += 1;
                crate::stats::count_error(&mut s.errors, &e.etype, &e.message);
                count_type(&mut s.by_type, &e.etype);
            }
        }
        let mut tops: Vec<(&str, f64)> = Vec::with_capacity(8);
        for record in &chunk.records {
            let actions = chunk.actions_of(record);
            self.stats.add(record, actions);
            self.recent
                .metric
                .add(record.duration, record.error.is_none());
            if let Ok(checker) = &mut self.sla {
                tops.clear();
                for a in actions.iter().filter(|a| a.depth == 0) {
                    tops.push((
                        self.names.get(a.name as usize).map_or("", String::as_str),
                        a.duration(),
                    ));
                }
                let sample = IterationSample {
                    duration: record.duration,
                    failed: record.error.is_some(),
                    top_level_actions: &tops,
                };
                sla_failed |= !checker.add(&sample);
            }
        }
        sla_failed
    }

    fn sla_rows(&self) -> Vec<CriterionStatus> {
        match &self.sla {
            Ok(checker) => checker.results(),
            Err(e) => vec![sla::something_went_wrong(e)],
        }
    }

    /// Iterations and failures so far: the stored records', or the agents' own reports
    /// where those are ahead (results reach the controller after the reports).
    fn count(&self) -> (u64, u64) {
        let reported = self
            .instances
            .iter()
            .fold((0, 0), |(i, f), s| (i + s.iterations, f + s.failures));
        (
            self.stats.iterations.max(reported.0),
            self.stats.failures.max(reported.1),
        )
    }

    fn publish_snapshot(&mut self, seconds: f64, elapsed: f64, publish: &impl Fn(Event)) {
        self.publish_figures(seconds, elapsed, publish);
        let mut errors = self.stats.errors.clone();
        errors.sort_by_key(|e| std::cmp::Reverse(e.count));
        let by_source = self
            .per_source
            .iter()
            .filter(|s| !s.errors.is_empty())
            .map(|s| {
                let mut errors = s.errors.clone();
                errors.sort_by_key(|e| std::cmp::Reverse(e.count));
                (s.name.to_string(), errors)
            })
            .collect();
        let detail = self.detail.then(|| Box::new(self.detail()));
        publish(Event::Statistics(Box::new(LiveStatistics {
            workload: self.index,
            table: self.stats.table(),
            errors,
            by_source,
            detail,
        })));
    }

    /// Histogram buckets and failures by type from the stored results, with the agents'
    /// in-flight counts where the runner keeps them (`rps`).
    fn detail(&self) -> StatisticsDetail {
        use std::collections::HashMap;
        let reported: HashMap<&str, u64> = self
            .instances
            .iter()
            .map(|i| (i.name.as_str(), i.in_flight))
            .collect();
        let local_in_flight = self
            .in_flight
            .as_ref()
            .map(|n| n.load(std::sync::atomic::Ordering::Relaxed));
        StatisticsDetail {
            duration: DurationBuckets::from_metric(&self.stats.duration),
            actions: self
                .stats
                .top_level_actions()
                .map(|(name, m)| (name, DurationBuckets::from_metric(m)))
                .collect(),
            sources: self
                .per_source
                .iter()
                .map(|s| SourceDetail {
                    name: s.name.to_string(),
                    duration: DurationBuckets::from_metric(&s.metric),
                    failures_by_type: s.by_type.clone(),
                    in_flight: local_in_flight.and_then(|local| {
                        if self.instances.is_empty() {
                            Some(local)
                        } else {
                            reported.get(&*s.name).copied()
                        }
                    }),
                })
                .collect(),
        }
    }

    fn publish_figures(&mut self, seconds: f64, elapsed: f64, publish: &impl Fn(Event)) {
        let all = self
            .recent
            .figures(seconds, &self.stats.duration, self.stats.failures);
        if self.instances.is_empty() {
            publish(Event::Progress(Progress {
                workload: self.index,
                elapsed,
                total: self.total,
                all: all.clone(),
                sources: vec![("local".into(), all)],
                in_flight: self
                    .in_flight
                    .as_ref()
                    .map(|n| n.load(std::sync::atomic::Ordering::Relaxed)),
                stored: None,
            }));
            let rows = self.sla_rows();
            publish(Event::Sla(SlaSnapshot {
                workload: self.index,
                total: rows.clone(),
                sources: vec![("local".into(), rows)],
            }));
            return;
        }
        let sources: Vec<(String, Figures)> = self
            .instances
            .iter()
            .map(|i| {
                let mut f = Figures::from_instance(i);
                f.p95_total = self.source_p95_total(&i.name);
                (i.name.clone(), f)
            })
            .collect();
        // The p95s over everything come from the stored results, which trail the agents'
        // reports (and so the counts) by one fetch.
        let mut all = Figures::merged(&self.instances);
        all.p95_total = self.stats.duration.quantile(0.95);
        publish(Event::Agents(AgentsSnapshot {
            workload: self.index,
            agents: self.instances.iter().map(AgentRow::from_instance).collect(),
        }));
        publish(Event::Progress(Progress {
            workload: self.index,
            elapsed,
            total: self.total,
            all,
            sources,
            // The agents' own counts, for an `rps` workload.
            in_flight: self
                .in_flight
                .as_ref()
                .map(|_| self.instances.iter().map(|i| i.in_flight).sum()),
            stored: Some(self.stats.iterations),
        }));
        let total = match self.merged_sla() {
            Some(Ok(merged)) => merged.results(),
            Some(Err(e)) => vec![sla::something_went_wrong(e)],
            None => self.sla_rows(),
        };
        publish(Event::Sla(SlaSnapshot {
            workload: self.index,
            total,
            sources: self
                .instances
                .iter()
                .map(|i| {
                    (
                        i.name.clone(),
                        i.sla
                            .as_deref()
                            .map(SlaChecker::results)
                            .unwrap_or_default(),
                    )
                })
                .collect(),
        }));
    }

    /// Per runner instance, from the stored chunks; agents that ran nothing or were lost are
    /// listed too.
    fn sources(&self) -> Vec<SourceFigures> {
        let mut out: Vec<SourceFigures> = self
            .per_source
            .iter()
            .map(|s| SourceFigures::from_metric(&s.name, &s.metric, s.failures))
            .collect();
        if let Some(d) = &self.distributed {
            for name in &d.agents {
                if !out.iter().any(|s| &s.name == name) {
                    out.push(SourceFigures::from_metric(name, &Metric::default(), 0));
                }
            }
            for s in &mut out {
                s.lost = d.lost.contains(&s.name);
            }
        }
        out
    }

    pub(super) fn report(
        self,
        info: WorkloadInfo,
        full_duration: f64,
        abort: Option<Abort>,
        context_error: Option<String>,
        runner_error: Option<String>,
    ) -> WorkloadReport {
        let mut sla = self.sla_rows();
        match abort {
            Some(Abort::Sla) => sla.push(sla::aborted_on_sla()),
            Some(Abort::User) => sla.push(sla::aborted_manually()),
            None => {}
        }
        // Both are Rally's `something_went_wrong` row; only the runner's (agents lost
        // beyond recovery) makes the run a failure rather than a failed SLA.
        if let Some(f) = context_error.as_ref().or(runner_error.as_ref()) {
            sla.push(sla::something_went_wrong(f));
        }
        let pass_sla = sla.iter().all(|r| r.success);
        let sources = self.sources();
        let mut errors = self.stats.errors.clone();
        errors.sort_by_key(|e| std::cmp::Reverse(e.count));
        let connections = (self.stats.connections.opened() > 0).then_some(self.stats.connections);
        WorkloadReport {
            errors,
            connections,
            runner_error,
            info,
            stats: self.stats.table(),
            pass_sla,
            iterations: self.stats.iterations,
            failures: self.stats.failures,
            load_duration: self.stats.load_duration(),
            full_duration,
            start_time: (self.stats.iterations > 0).then_some(self.stats.first_timestamp),
            hooks: self.hooks,
            sources,
            sla,
            distributed: self.distributed.map(|d| DistributedSummary {
                agents: d.agents,
                lost: d.lost,
                reissued: d.reissued,
                duplicates: d.duplicates,
                missing: d.missing,
                returned: d.returned,
                reshares: d.reshares,
            }),
        }
    }
}

#[cfg(test)]
mod tests;
