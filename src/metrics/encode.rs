//! [`RunMetrics`] as metric families, through the `prometheus-client` crate.
//!
//! The values are absolute totals read from events, not increments made where things
//! happen, so the crate's own `Counter` and `Histogram` (which only count up from the
//! observations they see) do not fit; a [`Collector`] hands the current values to the
//! crate's encoders at each scrape instead. The crate writes both formats: OpenMetrics
//! (`encoding::text`) and, since 0.26, the classic Prometheus text format 0.0.4
//! (`encoding::prometheus_text`), so neither is written or converted by hand here.

use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use super::state::{RunMetrics, RunState, WorkloadMetrics};
use crate::events::DurationBuckets;
use crate::events::InstanceState;

/// Every family's name starts with this.
pub const PREFIX: &str = "rally_tui";

/// Which text format a scrape gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    OpenMetrics,
    /// The Prometheus text format, version 0.0.4.
    Text,
}

impl Format {
    /// By the request's `Accept` header: OpenMetrics when it names
    /// `application/openmetrics-text` (what Prometheus asks for first), else 0.0.4 text.
    pub fn from_accept(accept: Option<&str>) -> Format {
        match accept {
            Some(a)
                if a.split(',').any(|r| {
                    r.split(';')
                        .next()
                        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/openmetrics-text"))
                        // `q=0` is a refusal.
                        && !r.split(';').skip(1).any(|p| {
                            p.trim()
                                .strip_prefix("q=")
                                .and_then(|q| q.trim().parse::<f64>().ok())
                                .is_some_and(|q| q == 0.0)
                        })
                }) =>
            {
                Format::OpenMetrics
            }
            _ => Format::Text,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Text => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        }
    }
}

/// The shared values, as the exporter task updates them and scrapes read them.
pub type Shared = Arc<Mutex<RunMetrics>>;

/// The registry a scrape encodes: one collector over the shared values.
pub fn registry(shared: Shared) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(RunCollector(shared)));
    registry
}

/// Encodes `registry` in `format`.
pub fn render(registry: &Registry, format: Format) -> Result<String, std::fmt::Error> {
    let mut out = String::new();
    match format {
        Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, registry)?,
        Format::Text => prometheus_client::encoding::prometheus_text::encode(&mut out, registry)?,
    }
    Ok(out)
}

#[derive(Debug)]
struct RunCollector(Shared);

type Labels = Vec<(&'static str, String)>;

/// A workload's labels: task, workload (0-based index in run order), subtask (its title),
/// scenario, runner (its type).
fn workload_labels(task: &str, w: &WorkloadMetrics) -> Labels {
    vec![
        ("task", task.to_string()),
        ("workload", w.info.index.to_string()),
        ("subtask", w.info.subtask.clone()),
        ("scenario", w.info.scenario.clone()),
        ("runner", w.info.runner.clone()),
    ]
}

fn with(labels: &Labels, more: &[(&'static str, &str)]) -> Labels {
    let mut out = labels.clone();
    out.extend(more.iter().map(|(k, v)| (*k, v.to_string())));
    out
}

/// One family: its descriptor, then each of its series.
fn family<T>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    kind: MetricType,
    series: &[(Labels, T)],
    write: impl Fn(&mut MetricEncoder, &T) -> std::fmt::Result,
) -> std::fmt::Result {
    let name = format!("{PREFIX}_{name}");
    let mut family = encoder.encode_descriptor(&name, help, unit, kind)?;
    for (labels, value) in series {
        let mut metric = family.encode_family(labels)?;
        write(&mut metric, value)?;
    }
    Ok(())
}

fn counter(m: &mut MetricEncoder, v: &u64) -> std::fmt::Result {
    m.encode_counter::<NoLabelSet, u64, u64>(v, None)
}

fn gauge(m: &mut MetricEncoder, v: &f64) -> std::fmt::Result {
    m.encode_gauge(v)
}

/// The crate's encoder takes per-bucket counts and adds them up itself; ours are
/// cumulative (as they travel in the event), with `+Inf` implied by the count.
fn histogram(m: &mut MetricEncoder, h: &DurationBuckets) -> std::fmt::Result {
    let mut buckets = Vec::with_capacity(h.buckets.len() + 1);
    let mut below = 0;
    for &(le, cumulative) in &h.buckets {
        buckets.push((le, cumulative.saturating_sub(below)));
        below = below.max(cumulative);
    }
    buckets.push((f64::INFINITY, h.count.saturating_sub(below)));
    m.encode_histogram::<NoLabelSet>(h.sum, h.count, &buckets, None)
}

/// An empty histogram still has every bucket (all zero), so that a series exists from
/// the workload's start.
fn or_empty(h: &DurationBuckets) -> DurationBuckets {
    if h.buckets.is_empty() {
        DurationBuckets {
            count: 0,
            sum: 0.0,
            buckets: crate::events::DURATION_BUCKETS
                .iter()
                .map(|&b| (b, 0))
                .collect(),
        }
    } else {
        h.clone()
    }
}

const AGENT_STATES: [InstanceState; 5] = [
    InstanceState::Connecting,
    InstanceState::Running,
    InstanceState::Stopping,
    InstanceState::Done,
    InstanceState::Lost,
];

impl Collector for RunCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        // A poisoned lock only means an update panicked half way: the values are still
        // numbers worth showing.
        let run = match self.0.lock() {
            Ok(run) => run.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        encode_run(&run, &mut encoder)
    }
}

fn encode_run(run: &RunMetrics, e: &mut DescriptorEncoder) -> std::fmt::Result {
    let task = run.task.as_str();
    let states: Vec<(Labels, f64)> = RunState::ALL
        .iter()
        .map(|s| {
            (
                vec![
                    ("task", task.to_string()),
                    ("state", s.as_str().to_string()),
                ],
                f64::from(u8::from(*s == run.state)),
            )
        })
        .collect();
    family(
        e,
        "run_state",
        "The run's state: 1 for the current one, 0 for the others",
        None,
        MetricType::Gauge,
        &states,
        gauge,
    )?;

    let ws = &run.workloads;
    let labelled: Vec<(Labels, &WorkloadMetrics)> =
        ws.iter().map(|w| (workload_labels(task, w), w)).collect();
    let each = |f: &dyn Fn(&WorkloadMetrics) -> u64| -> Vec<(Labels, u64)> {
        labelled.iter().map(|(l, w)| (l.clone(), f(w))).collect()
    };
    let each_f = |f: &dyn Fn(&WorkloadMetrics) -> f64| -> Vec<(Labels, f64)> {
        labelled.iter().map(|(l, w)| (l.clone(), f(w))).collect()
    };
    family(
        e,
        "iterations_started",
        "Iterations started (finished plus in flight; in flight is known for rps runners only)",
        None,
        MetricType::Counter,
        &each(&|w| w.started),
        counter,
    )?;
    family(
        e,
        "iterations_finished",
        "Iterations finished, failed ones included",
        None,
        MetricType::Counter,
        &each(&|w| w.finished),
        counter,
    )?;
    family(
        e,
        "iterations_failed",
        "Iterations that failed",
        None,
        MetricType::Counter,
        &each(&|w| w.failed),
        counter,
    )?;
    let by_type: Vec<(Labels, u64)> = labelled
        .iter()
        .flat_map(|(l, w)| {
            w.failures_by_type()
                .into_iter()
                .map(|(t, n)| (with(l, &[("error_type", &t)]), n))
                .collect::<Vec<_>>()
        })
        .collect();
    family(
        e,
        "failures",
        "Failed iterations by error type (the stored results'; never the message)",
        None,
        MetricType::Counter,
        &by_type,
        counter,
    )?;
    family(
        e,
        "iterations_per_second",
        "Iterations finished per second over the last interval",
        None,
        MetricType::Gauge,
        &each_f(&|w| w.rate),
        gauge,
    )?;
    let in_flight: Vec<(Labels, f64)> = labelled
        .iter()
        .filter_map(|(l, w)| w.in_flight.map(|n| (l.clone(), n as f64)))
        .collect();
    family(
        e,
        "iterations_in_flight",
        "Iterations running now (rps runners; the others keep every slot busy)",
        None,
        MetricType::Gauge,
        &in_flight,
        gauge,
    )?;
    let durations: Vec<(Labels, DurationBuckets)> = labelled
        .iter()
        .map(|(l, w)| (l.clone(), or_empty(&w.duration)))
        .collect();
    family(
        e,
        "iteration_duration",
        "Iteration durations (the stored results')",
        Some(&Unit::Seconds),
        MetricType::Histogram,
        &durations,
        histogram,
    )?;
    let actions: Vec<(Labels, DurationBuckets)> = labelled
        .iter()
        .flat_map(|(l, w)| {
            w.actions
                .iter()
                .map(|(a, h)| (with(l, &[("action", a)]), or_empty(h)))
                .collect::<Vec<_>>()
        })
        .collect();
    family(
        e,
        "atomic_action_duration",
        "Top-level atomic actions' durations (the stored results')",
        Some(&Unit::Seconds),
        MetricType::Histogram,
        &actions,
        histogram,
    )?;
    let sla = |f: &dyn Fn(&super::state::SlaGauge) -> f64| -> Vec<(Labels, f64)> {
        labelled
            .iter()
            .flat_map(|(l, w)| {
                w.sla
                    .iter()
                    .map(|g| {
                        (
                            with(l, &[("criterion", &g.criterion), ("part", &g.part)]),
                            f(g),
                        )
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    family(
        e,
        "sla_value",
        "Each SLA criterion's current value on the merged data (its unit is the criterion's)",
        None,
        MetricType::Gauge,
        &sla(&|g| g.value),
        gauge,
    )?;
    family(
        e,
        "sla_limit",
        "Each SLA criterion's limit",
        None,
        MetricType::Gauge,
        &sla(&|g| g.limit),
        gauge,
    )?;
    family(
        e,
        "sla_passing",
        "1 while the SLA criterion passes on the data so far, 0 once it fails",
        None,
        MetricType::Gauge,
        &sla(&|g| f64::from(u8::from(g.success))),
        gauge,
    )?;
    let agents_by_state: Vec<(Labels, f64)> = labelled
        .iter()
        .filter_map(|(l, w)| w.agent_states.as_ref().map(|s| (l, s)))
        .flat_map(|(l, s)| {
            AGENT_STATES
                .iter()
                .map(|st| {
                    let n = s.get(st.as_str()).copied().unwrap_or(0);
                    (with(l, &[("state", st.as_str())]), n as f64)
                })
                .collect::<Vec<_>>()
        })
        .collect();
    family(
        e,
        "agents",
        "A distributed workload's agents by state",
        None,
        MetricType::Gauge,
        &agents_by_state,
        gauge,
    )?;

    // Per agent ("local" for a local run), at most AGENT_SERIES of them plus "other".
    let per_agent: Vec<(Labels, super::state::AgentValues)> = labelled
        .iter()
        .flat_map(|(l, w)| {
            w.agent_series()
                .into_iter()
                .map(|(name, v)| (with(l, &[("agent", name)]), v))
                .collect::<Vec<_>>()
        })
        .collect();
    let agent = |f: &dyn Fn(&super::state::AgentValues) -> u64| -> Vec<(Labels, u64)> {
        per_agent.iter().map(|(l, v)| (l.clone(), f(v))).collect()
    };
    let agent_f = |f: &dyn Fn(&super::state::AgentValues) -> f64| -> Vec<(Labels, f64)> {
        per_agent.iter().map(|(l, v)| (l.clone(), f(v))).collect()
    };
    family(
        e,
        "agent_iterations_started",
        "Iterations an agent started (finished plus in flight; in flight known for rps runners)",
        None,
        MetricType::Counter,
        &agent(&|v| v.started),
        counter,
    )?;
    family(
        e,
        "agent_iterations_finished",
        "Iterations an agent finished, as it reported them",
        None,
        MetricType::Counter,
        &agent(&|v| v.finished),
        counter,
    )?;
    family(
        e,
        "agent_iterations_failed",
        "Iterations that failed on an agent, as it reported them",
        None,
        MetricType::Counter,
        &agent(&|v| v.failed),
        counter,
    )?;
    let agent_types: Vec<(Labels, u64)> = per_agent
        .iter()
        .flat_map(|(l, v)| {
            v.failures_by_type
                .iter()
                .map(|(t, n)| (with(l, &[("error_type", t)]), *n))
                .collect::<Vec<_>>()
        })
        .collect();
    family(
        e,
        "agent_failures",
        "An agent's failed iterations by error type (the stored results')",
        None,
        MetricType::Counter,
        &agent_types,
        counter,
    )?;
    family(
        e,
        "agent_iterations_per_second",
        "An agent's iterations per second over its last report interval",
        None,
        MetricType::Gauge,
        &agent_f(&|v| v.rate),
        gauge,
    )?;
    family(
        e,
        "agent_iterations_in_flight",
        "Iterations running now on an agent (rps runners; 0 where unknown)",
        None,
        MetricType::Gauge,
        &agent_f(&|v| v.in_flight as f64),
        gauge,
    )?;
    let agent_durations: Vec<(Labels, DurationBuckets)> = per_agent
        .iter()
        .map(|(l, v)| (l.clone(), or_empty(&v.duration)))
        .collect();
    family(
        e,
        "agent_iteration_duration",
        "An agent's iteration durations (the stored results')",
        Some(&Unit::Seconds),
        MetricType::Histogram,
        &agent_durations,
        histogram,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Event, Figures, Progress, WorkloadInfo};

    fn shared() -> Shared {
        let mut run = RunMetrics::default();
        run.apply(&Event::TaskStarted {
            uuid: "u-1".into(),
            title: "t".into(),
            workloads: vec![WorkloadInfo {
                index: 0,
                count: 1,
                subtask: "say \"hi\"".into(),
                position: 0,
                scenario: "Dummy.dummy".into(),
                runner: "constant (times 10, concurrency 2)".into(),
                total: Some(10),
                expected_duration: None,
                target_rate: None,
                max_concurrency: None,
            }],
        });
        let f = Figures {
            iterations: 4,
            failures: 1,
            rate: 2.0,
            ..Figures::default()
        };
        run.apply(&Event::Progress(Progress {
            workload: 0,
            elapsed: 1.0,
            total: Some(10),
            all: f.clone(),
            sources: vec![("local".into(), f)],
            in_flight: None,
            stored: None,
        }));
        Arc::new(Mutex::new(run))
    }

    #[test]
    fn accept_header_picks_the_format() {
        assert_eq!(Format::from_accept(None), Format::Text);
        assert_eq!(Format::from_accept(Some("*/*")), Format::Text);
        // What Prometheus 2.x sends.
        let prom = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::from_accept(Some(prom)), Format::OpenMetrics);
        assert_eq!(
            Format::from_accept(Some("Application/OpenMetrics-Text; q=0")),
            Format::Text
        );
    }

    #[test]
    fn both_formats_carry_the_families() {
        let registry = registry(shared());
        let om = render(&registry, Format::OpenMetrics).unwrap();
        assert!(om.ends_with("# EOF\n"), "{om}");
        assert!(om.contains("# TYPE rally_tui_iterations_finished counter"));
        assert!(om.contains(
            "rally_tui_iterations_finished_total{task=\"u-1\",workload=\"0\",subtask=\"say \\\"hi\\\"\",scenario=\"Dummy.dummy\",runner=\"constant\"} 4"
        ), "{om}");
        assert!(om.contains("# UNIT rally_tui_iteration_duration_seconds seconds"));
        // The crate writes `le` first.
        assert!(om.contains("rally_tui_iteration_duration_seconds_bucket{le=\"+Inf\",task=\"u-1\",workload=\"0\",subtask=\"say \\\"hi\\\"\",scenario=\"Dummy.dummy\",runner=\"constant\"} 0"), "{om}");
        assert!(om.contains("rally_tui_run_state{task=\"u-1\",state=\"running\"} 1"));
        assert!(om.contains("agent=\"local\""));
        let text = render(&registry, Format::Text).unwrap();
        assert!(!text.contains("# EOF"));
        assert!(
            text.contains("# TYPE rally_tui_iterations_finished_total counter"),
            "{text}"
        );
        assert!(text.contains("rally_tui_iterations_failed_total{"));
    }

    #[test]
    fn histograms_are_written_cumulative_with_inf() {
        let mut m = crate::stats::Metric::default();
        for v in [0.002, 0.2, 0.2, 700.0] {
            m.add(v, true);
        }
        let shared = shared();
        if let Ok(mut run) = shared.lock() {
            run.workloads[0].duration = DurationBuckets::from_metric(&m);
        }
        let om = render(&registry(shared), Format::OpenMetrics).unwrap();
        let bucket = |le: &str| {
            om.lines()
                .find(|l| {
                    l.starts_with("rally_tui_iteration_duration_seconds_bucket")
                        && l.contains(&format!("le=\"{le}\""))
                })
                .and_then(|l| l.rsplit(' ').next())
                .map(str::to_string)
        };
        assert_eq!(bucket("0.001").as_deref(), Some("0"));
        assert_eq!(bucket("0.0025").as_deref(), Some("1"));
        assert_eq!(bucket("0.25").as_deref(), Some("3"));
        assert_eq!(bucket("300.0").as_deref(), Some("3"));
        assert_eq!(bucket("+Inf").as_deref(), Some("4"));
    }
}
