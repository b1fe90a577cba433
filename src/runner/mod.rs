//! Runners: how many iterations run, how many at once, and when.
//!
//! `constant`, `constant_for_duration` and `serial` are closed models (a fixed number of
//! slots, each starting its next iteration when the last one ends); `rps` is an open model
//! (iterations start on a schedule whatever the target's latency). Iterations run as tokio
//! tasks in this process; results leave each runner as [`Chunk`](crate::chunk::Chunk)s.

mod closed;
pub mod feed;
mod open;
pub mod schedule;
mod slot;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::chunk::{Chunk, ChunkLimits};
use crate::clock::Clock;
use crate::scenario::Scenario;
use crate::task::check::{self, Checked, PluginError, list};
use crate::task::node::Node;

pub use schedule::Rate;

/// The runners we know, for messages.
pub const RUNNERS: &[&str] = &[
    "constant",
    "constant_for_duration",
    "rps",
    "serial",
    "distributed",
];

pub fn is_unknown(name: &str) -> bool {
    !RUNNERS.contains(&name)
}

/// A validated runner configuration.
#[derive(Debug, Clone, PartialEq)]
pub enum RunnerSpec {
    Constant {
        times: u64,
        concurrency: u64,
        timeout: Option<f64>,
    },
    ConstantForDuration {
        duration: f64,
        concurrency: u64,
        timeout: Option<f64>,
    },
    Rps {
        times: u64,
        rate: Rate,
        timeout: Option<f64>,
        max_concurrency: u64,
    },
    Serial {
        times: u64,
    },
    /// The inner runner's work shared among `agents` agent processes (SPEC §6).
    Distributed {
        agents: u64,
        inner: Box<RunnerSpec>,
    },
}

/// Rally's `check_constant` message, kept word for word.
const CONCURRENCY_ABOVE_TIMES: &str = "Parameter 'concurrency' means a number of parallel executions of iterations. Parameter 'times' means total number of iteration executions. It is redundant (and restricted) to have number of parallel iterations bigger then total number of iterations.";

/// A runner's `timeout`: 0 means none (Rally's `if timeout:`); a negative one, which
/// Rally's schema allows, has expired before any iteration starts, so every iteration
/// times out, as in Rally.
fn timeout(cfg: &Node, rule: &str, ok: impl Fn(f64) -> bool) -> Checked<Option<f64>> {
    Ok(check::number(cfg, "timeout", rule, ok)?.filter(|t| *t != 0.0))
}

impl RunnerSpec {
    /// What Rally runs when a workload names no runner: one iteration.
    pub fn default_serial() -> RunnerSpec {
        RunnerSpec::Serial { times: 1 }
    }

    /// Check a runner section. In format v1 the section also holds `type`.
    pub fn from_config(name: &str, cfg: &Node, v1: bool) -> Checked<RunnerSpec> {
        let with_type = |keys: &[&'static str]| -> Vec<&'static str> {
            let mut k = keys.to_vec();
            if v1 {
                k.push("type");
            }
            k
        };
        let count = |key: &str| -> Checked<Option<u64>> {
            Ok(check::int_at_least(cfg, key, 1)?.map(|v| v as u64))
        };
        match name {
            "constant" => {
                check::mapping(
                    cfg,
                    &with_type(&["times", "concurrency", "timeout", "max_cpu_count"]),
                )?;
                let times = count("times")?.unwrap_or(1);
                let concurrency = count("concurrency")?.unwrap_or(1);
                count("max_cpu_count")?;
                if concurrency > times {
                    return Err(PluginError::new(
                        "concurrency",
                        format!(
                            "{CONCURRENCY_ABOVE_TIMES} (concurrency {concurrency} > times {times})"
                        ),
                    ));
                }
                Ok(RunnerSpec::Constant {
                    times,
                    concurrency,
                    timeout: timeout(cfg, "a number of seconds", f64::is_finite)?,
                })
            }
            "constant_for_duration" => {
                check::mapping(cfg, &with_type(&["duration", "concurrency", "timeout"]))?;
                let duration = check::required(
                    check::number(cfg, "duration", "a number of seconds >= 0", |d| d >= 0.0)?,
                    "duration",
                    "seconds to keep starting iterations",
                )?;
                Ok(RunnerSpec::ConstantForDuration {
                    duration,
                    concurrency: count("concurrency")?.unwrap_or(1),
                    timeout: Some(
                        timeout(cfg, "a number of seconds >= 1", |t| t >= 1.0)?.unwrap_or(600.0),
                    ),
                })
            }
            "rps" => {
                check::mapping(
                    cfg,
                    &with_type(&[
                        "times",
                        "rps",
                        "timeout",
                        "max_concurrency",
                        "max_cpu_count",
                    ]),
                )?;
                let times = check::required(
                    count("times")?,
                    "times",
                    "the number of iterations, an integer >= 1",
                )?;
                let rate_node = check::required(
                    cfg.get("rps"),
                    "rps",
                    "a rate > 0 or a ramp {start, end, step, duration}",
                )?;
                let rate = Rate::from_config(rate_node).map_err(|e| {
                    PluginError::new(
                        if e.subpath.is_empty() {
                            "rps".to_string()
                        } else {
                            format!("rps.{}", e.subpath)
                        },
                        e.message,
                    )
                })?;
                count("max_cpu_count")?;
                Ok(RunnerSpec::Rps {
                    times,
                    rate,
                    timeout: timeout(cfg, "a number of seconds", f64::is_finite)?,
                    max_concurrency: count("max_concurrency")?.unwrap_or(times),
                })
            }
            "serial" => {
                // Rally's serial schema allows other keys, so that `constant` can be renamed
                // to `serial` and nothing else; they are ignored.
                if cfg.as_map().is_none() {
                    return Err(PluginError::new(
                        "",
                        format!("must be a mapping, got {}", cfg.type_name()),
                    ));
                }
                Ok(RunnerSpec::Serial {
                    times: count("times")?.unwrap_or(1),
                })
            }
            "distributed" => Self::distributed_from_config(cfg, v1),
            _ => Err(PluginError::new(
                "",
                format!("unknown runner '{name}'; available: {}", list(RUNNERS)),
            )),
        }
    }

    /// `distributed: {agents: N, runner: {constant: {...}}}` (in format v1 the inner runner
    /// names itself with `type`, like the outer one).
    fn distributed_from_config(cfg: &Node, v1: bool) -> Checked<RunnerSpec> {
        let mut keys = vec!["agents", "runner"];
        if v1 {
            keys.push("type");
        }
        check::mapping(cfg, &keys)?;
        let agents = check::int_at_least(cfg, "agents", 1)?.unwrap_or(2) as u64;
        let runner = check::required(
            cfg.get("runner"),
            "runner",
            "the runner each agent shares, e.g. {constant: {times: 100}}",
        )?;
        let prefix = |e: PluginError, name: &str| {
            let at = if v1 {
                "runner".to_string()
            } else {
                format!("runner.{name}")
            };
            PluginError::new(
                if e.subpath.is_empty() {
                    at
                } else {
                    format!("{at}.{}", e.subpath)
                },
                e.message,
            )
        };
        let (name, inner_cfg) = if v1 {
            let name = runner.get("type").and_then(Node::as_str).ok_or_else(|| {
                PluginError::new("runner.type", "the inner runner's type is required")
            })?;
            (name.to_string(), runner.clone())
        } else {
            match runner.as_map() {
                Some([(name, body)]) => (name.clone(), body.clone()),
                _ => {
                    return Err(PluginError::new(
                        "runner",
                        "must name exactly one runner, e.g. {constant: {times: 100}}",
                    ));
                }
            }
        };
        if name == "distributed" {
            return Err(PluginError::new(
                "runner",
                "a distributed runner cannot contain another one",
            ));
        }
        let inner = RunnerSpec::from_config(&name, &inner_cfg, v1).map_err(|e| prefix(e, &name))?;
        Ok(RunnerSpec::Distributed {
            agents,
            inner: Box::new(inner),
        })
    }

    /// Shares every workload among `agents` agents (`run --agents N`); a runner that is
    /// already distributed keeps its own count.
    pub fn distribute(self, agents: u64) -> RunnerSpec {
        match self {
            RunnerSpec::Distributed { .. } => self,
            inner => RunnerSpec::Distributed {
                agents,
                inner: Box::new(inner),
            },
        }
    }

    /// The runner that does the work: this one, or the one a distributed runner shares.
    pub fn inner(&self) -> &RunnerSpec {
        match self {
            RunnerSpec::Distributed { inner, .. } => inner.inner(),
            other => other,
        }
    }

    /// Agents this runner needs (0: it runs in this process).
    pub fn agents(&self) -> u64 {
        match self {
            RunnerSpec::Distributed { agents, .. } => *agents,
            _ => 0,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            RunnerSpec::Constant { .. } => "constant",
            RunnerSpec::ConstantForDuration { .. } => "constant_for_duration",
            RunnerSpec::Rps { .. } => "rps",
            RunnerSpec::Serial { .. } => "serial",
            // Stored and exported as the runner it shares, which Rally knows.
            RunnerSpec::Distributed { inner, .. } => inner.name(),
        }
    }

    /// How many iterations will run, when that is known in advance.
    pub fn total_iterations(&self) -> Option<u64> {
        match self {
            RunnerSpec::Constant { times, .. }
            | RunnerSpec::Rps { times, .. }
            | RunnerSpec::Serial { times } => Some(*times),
            RunnerSpec::ConstantForDuration { .. } => None,
            RunnerSpec::Distributed { inner, .. } => inner.total_iterations(),
        }
    }

    /// The configuration in Rally's v2 shape (`{"constant": {...}}` body), for the record.
    pub fn config_json(&self) -> serde_json::Value {
        use serde_json::json;
        let v = match self {
            RunnerSpec::Constant {
                times,
                concurrency,
                timeout,
            } => json!({"times": times, "concurrency": concurrency, "timeout": timeout}),
            RunnerSpec::ConstantForDuration {
                duration,
                concurrency,
                timeout,
            } => json!({"duration": duration, "concurrency": concurrency, "timeout": timeout}),
            RunnerSpec::Rps {
                times,
                rate,
                timeout,
                max_concurrency,
            } => {
                json!({"times": times, "rps": rate.config_json(), "timeout": timeout, "max_concurrency": max_concurrency})
            }
            RunnerSpec::Serial { times } => json!({"times": times}),
            RunnerSpec::Distributed { inner, .. } => inner.config_json(),
        };
        without_nulls(v)
    }

    /// Seconds the load should take, when the configuration says: a set duration, or when
    /// an `rps` schedule starts its last iteration.
    pub fn expected_duration(&self) -> Option<f64> {
        match self {
            RunnerSpec::ConstantForDuration { duration, .. } => Some(*duration),
            RunnerSpec::Rps { times, rate, .. } if rate.slowest().is_some() => {
                Some(rate.start_of(*times).as_secs_f64())
            }
            RunnerSpec::Distributed { inner, .. } => inner.expected_duration(),
            _ => None,
        }
    }

    /// An `rps` runner's `max_concurrency`.
    pub fn max_concurrency(&self) -> Option<u64> {
        match self {
            RunnerSpec::Rps {
                max_concurrency, ..
            } => Some(*max_concurrency),
            RunnerSpec::Distributed { inner, .. } => inner.max_concurrency(),
            _ => None,
        }
    }

    /// An `rps` runner's schedule.
    pub fn target_rate(&self) -> Option<&Rate> {
        match self {
            RunnerSpec::Rps { rate, .. } => Some(rate),
            RunnerSpec::Distributed { inner, .. } => inner.target_rate(),
            _ => None,
        }
    }

    /// A one-line description for headers, as a person writes it: `constant (times 20,
    /// concurrency 5)`, `rps (times 400, rps 5→40/s, +5/s every 0.5 s, max_concurrency 200)`.
    pub fn describe(&self) -> String {
        let rate = match self {
            RunnerSpec::Rps { rate, .. } => Some(rate.describe()),
            RunnerSpec::Distributed { inner, .. } => match &**inner {
                RunnerSpec::Rps { rate, .. } => Some(rate.describe()),
                _ => None,
            },
            _ => None,
        };
        let body = self
            .config_json()
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| match (k.as_str(), &rate) {
                        ("rps", Some(rate)) => format!("rps {rate}"),
                        _ => format!("{k} {v}"),
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        match self {
            RunnerSpec::Distributed { agents, .. } => {
                format!("{} ({body}) on {agents} agents", self.name())
            }
            _ => format!("{} ({body})", self.name()),
        }
    }
}

/// A runner config without the options left unset (`timeout: null` is not a valid config).
pub fn without_nulls(mut config: serde_json::Value) -> serde_json::Value {
    if let Some(m) = config.as_object_mut() {
        m.retain(|_, v| !v.is_null());
    }
    config
}

/// Called at the start of every iteration with its number (Rally's iteration event), for
/// hooks. Runners call it only when it is set.
pub type IterationListener = Arc<dyn Fn(u64) + Send + Sync>;

/// Everything a runner needs for one workload.
#[derive(Clone)]
pub struct RunJob {
    pub scenario: Arc<Scenario>,
    /// Which runner instance this is: "local", or an agent's name.
    pub source: Arc<str>,
    pub chunks: mpsc::Sender<Chunk>,
    /// Cancelled to stop starting iterations; iterations in flight finish.
    pub stop: CancellationToken,
    pub on_iteration: Option<IterationListener>,
    pub limits: ChunkLimits,
    pub clock: Clock,
    /// Where iteration numbers come from on an agent (the controller's leases); `None` when
    /// the runner counts them itself.
    pub feed: Option<Arc<feed::Feed>>,
    /// Where a runner with several instances (agents) reports their live state, every SLA
    /// interval; local runners leave it alone.
    pub live: Option<mpsc::UnboundedSender<Vec<InstanceStatus>>>,
    /// How many of the chunks sent on `chunks` are safely stored (committed to the database).
    pub committed: Option<tokio::sync::watch::Receiver<u64>>,
    /// Iterations running now, kept by the `rps` runner (whose slots are not all busy), so
    /// the screens can show them against `max_concurrency`.
    pub in_flight: Arc<std::sync::atomic::AtomicU64>,
}

use crate::events::InstanceState;

/// A runner instance's live account, as its agent last reported it.
#[derive(Debug, Clone)]
pub struct InstanceStatus {
    pub name: String,
    pub host: String,
    pub state: InstanceState,
    pub iterations: u64,
    pub failures: u64,
    /// Durations finished over the last `recent_seconds`. Shared with the controller's copy
    /// of the agent's report (a status is made per report and per interval for every agent;
    /// copying histograms there was most of a large controller's work).
    pub recent: std::sync::Arc<crate::sla::histogram::DurationHistogram>,
    /// `recent`'s p50, p95, p99 and maximum in seconds (`None` when it is empty), worked out
    /// once per report rather than by every screen for every agent every interval.
    pub quantiles: Option<[f64; 4]>,
    pub recent_seconds: f64,
    /// Mergeable SLA state over all its finished iterations (shared, as `recent`).
    pub sla: Option<std::sync::Arc<crate::sla::SlaChecker>>,
    /// Seconds since anything was heard from it.
    pub heartbeat_age: Option<f64>,
    /// Its clock minus the controller's, seconds.
    pub clock_offset: Option<f64>,
    /// Iterations it is running now (an `rps` runner's count; 0 otherwise).
    pub in_flight: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error("the result consumer went away")]
    ConsumerGone,
    #[error("{0}")]
    Distributed(String),
}

pub type RunFuture<'a> = Pin<Box<dyn Future<Output = Result<(), RunnerError>> + Send + 'a>>;

/// How the engine drives any runner, local or distributed.
pub trait Runner: Send + Sync {
    /// Run the workload to completion or until `job.stop` is cancelled, sending every
    /// result as a chunk before returning.
    fn run(&self, job: RunJob) -> RunFuture<'_>;
}

/// The runners that run iterations in this process.
pub struct LocalRunner {
    pub spec: RunnerSpec,
}

impl Runner for LocalRunner {
    fn run(&self, job: RunJob) -> RunFuture<'_> {
        Box::pin(async move {
            match &self.spec {
                RunnerSpec::Constant {
                    times,
                    concurrency,
                    timeout,
                } => closed::run(job, closed::Plan::Times(*times), *concurrency, *timeout).await,
                RunnerSpec::Serial { times } => {
                    closed::run(job, closed::Plan::Times(*times), 1, None).await
                }
                RunnerSpec::ConstantForDuration {
                    duration,
                    concurrency,
                    timeout,
                } => {
                    closed::run(
                        job,
                        closed::Plan::Duration(*duration),
                        *concurrency,
                        *timeout,
                    )
                    .await
                }
                RunnerSpec::Rps {
                    times,
                    rate,
                    timeout,
                    max_concurrency,
                } => open::run(job, *times, rate.clone(), *max_concurrency, *timeout).await,
                // The engine hands these to the DistributedRunner; here, run the inner one.
                RunnerSpec::Distributed { inner, .. } => {
                    LocalRunner {
                        spec: (**inner).clone(),
                    }
                    .run(job)
                    .await
                }
            }
        })
    }
}

#[cfg(test)]
mod tests;
