//! The TaskEngine: runs a task's workloads in order, consumes their result chunks, checks the
//! SLA live, and publishes one stream of events for the front ends.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::chunk::{Chunk, ChunkLimits};
use crate::clock::Clock;
use crate::distributed::controller::{Assignment, Controller, DistributedRunner};
use crate::events::{Event, Level, StopCause, TaskStatus, WorkloadInfo, WorkloadReport};
use crate::hook::HookExecutor;
use crate::runner::{LocalRunner, RunJob, Runner, RunnerSpec};
use crate::scenario::Scenario;
pub use crate::store::Record;
use crate::task::{SubtaskSpec, TaskSpec, WorkloadSpec};

mod consumer;

use consumer::Consumer;
pub use consumer::OTHER_TYPE;

#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Stop everything the first time any SLA criterion fails (Rally's flag).
    pub abort_on_sla_failure: bool,
    pub limits: ChunkLimits,
    /// How often progress and SLA snapshots are published.
    pub interval: Duration,
    /// Publish [`crate::events::StatisticsDetail`] (histogram buckets per workload, action
    /// and agent; failures by type) with each `Statistics` event, for `--metrics-listen`.
    /// Off by default: it costs a pass over every agent's histogram each interval.
    pub detail: bool,
}

impl Default for EngineOptions {
    fn default() -> EngineOptions {
        EngineOptions {
            abort_on_sla_failure: false,
            limits: ChunkLimits::default(),
            interval: Duration::from_secs(1),
            detail: false,
        }
    }
}

/// Why the remaining workloads were skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Abort {
    Sla,
    User,
}

/// How the whole task ended.
#[derive(Debug, Clone)]
pub struct TaskOutcome {
    pub uuid: String,
    pub status: TaskStatus,
    pub pass_sla: bool,
    pub abort: Option<Abort>,
    pub workloads: Vec<WorkloadReport>,
}

/// Why a stop was asked for, said by whoever cancels the engine's stopper before it does
/// (a signal, the user); the first to say wins, and nobody saying means the user.
#[derive(Debug, Clone, Default)]
pub struct StopReason(Arc<std::sync::Mutex<Option<StopCause>>>);

impl StopReason {
    pub fn set(&self, cause: StopCause) {
        let mut r = self.0.lock().unwrap_or_else(|p| p.into_inner());
        r.get_or_insert(cause);
    }

    pub fn get(&self) -> Option<StopCause> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub struct TaskEngine {
    stop_reason: StopReason,
    spec: TaskSpec,
    options: EngineOptions,
    events: broadcast::Sender<Event>,
    stop: CancellationToken,
    /// Cancelled to leave at once (a second Ctrl-C): in-flight iterations are abandoned,
    /// what arrived is stored and the task is recorded as aborted.
    abandon: CancellationToken,
    uuid: String,
    recorder: Option<mpsc::Sender<Record>>,
    /// Runs distributed workloads on agents; without it they run in this process.
    controller: Option<Arc<Controller>>,
}

impl TaskEngine {
    pub fn new(spec: TaskSpec, options: EngineOptions) -> TaskEngine {
        let (events, _) = broadcast::channel(4096);
        TaskEngine {
            stop_reason: StopReason::default(),
            spec,
            options,
            events,
            stop: CancellationToken::new(),
            abandon: CancellationToken::new(),
            uuid: uuid::Uuid::new_v4().to_string(),
            recorder: None,
            controller: None,
        }
    }

    /// Run workloads with a distributed runner on the controller's agents.
    pub fn with_controller(mut self, controller: Arc<Controller>) -> TaskEngine {
        self.controller = Some(controller);
        self
    }

    /// Send everything the task produces to `recorder` (the store's writer) as it happens.
    pub fn with_recorder(mut self, recorder: mpsc::Sender<Record>) -> TaskEngine {
        self.recorder = Some(recorder);
        self
    }

    async fn record(&self, record: Record) {
        if let Some(r) = &self.recorder {
            // A writer that has gone away has already reported why.
            let _ = r.send(record).await;
        }
    }

    pub fn uuid(&self) -> &str {
        &self.uuid
    }

    /// The event stream's sender, for other parts of the run (the controller's notices).
    pub fn events(&self) -> broadcast::Sender<Event> {
        self.events.clone()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Cancel it to stop the task as a user would: no new iterations anywhere, in-flight
    /// ones finish and are recorded, remaining workloads are skipped.
    pub fn stopper(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Cancelling it leaves at once: no waiting for in-flight iterations (which are
    /// abandoned); it stops the load too.
    pub fn abandoner(&self) -> CancellationToken {
        self.abandon.clone()
    }

    /// Where whoever cancels the stopper says why (a signal, the user).
    pub fn stop_reason(&self) -> StopReason {
        self.stop_reason.clone()
    }

    fn publish(&self, event: Event) {
        // No subscriber is fine: events are for whoever watches.
        let _ = self.events.send(event);
    }

    fn infos(&self) -> Vec<WorkloadInfo> {
        let count = self.spec.workloads().count();
        self.spec
            .workloads()
            .enumerate()
            .map(|(index, (s, w))| WorkloadInfo {
                index,
                count,
                subtask: s.title.clone(),
                position: w.position,
                scenario: w.scenario.name.clone(),
                runner: w.runner.describe(),
                total: w.runner.total_iterations(),
                expected_duration: w.runner.expected_duration(),
                target_rate: w.runner.target_rate().cloned(),
                max_concurrency: w.runner.max_concurrency(),
            })
            .collect()
    }

    pub async fn run(&self) -> TaskOutcome {
        let infos = self.infos();
        self.record(Record::TaskStarted {
            uuid: self.uuid.clone(),
            spec: Box::new(self.spec.clone()),
        })
        .await;
        self.publish(Event::TaskStarted {
            uuid: self.uuid.clone(),
            title: self.spec.title.clone(),
            workloads: infos.clone(),
        });
        let abandon_watch = {
            let (abandon, stop) = (self.abandon.clone(), self.stop.clone());
            tokio::spawn(async move {
                abandon.cancelled().await;
                stop.cancel();
            })
        };
        // A user's stop shows as `aborting` in the store while in-flight iterations finish.
        let stop_watch = {
            let (stop, recorder, events, reason) = (
                self.stop.clone(),
                self.recorder.clone(),
                self.events.clone(),
                self.stop_reason.clone(),
            );
            tokio::spawn(async move {
                stop.cancelled().await;
                let _ = events.send(Event::Stopping {
                    reason: reason.get().unwrap_or(StopCause::User),
                });
                if let Some(r) = recorder {
                    let _ = r.send(Record::Stopping { status: "aborting" }).await;
                }
            })
        };
        let mut reports = Vec::new();
        let mut abort = None;
        let subtask_of = self
            .spec
            .subtasks
            .iter()
            .enumerate()
            .flat_map(|(i, s)| s.workloads.iter().map(move |_| i));
        for (((subtask, workload), info), subtask_index) in
            self.spec.workloads().zip(infos).zip(subtask_of)
        {
            if abort.is_some() || self.stop.is_cancelled() {
                abort.get_or_insert(Abort::User);
                break;
            }
            let (report, this_abort) = self
                .run_workload(info, subtask_index, subtask, workload)
                .await;
            abort = abort.or(this_abort);
            self.publish(Event::WorkloadFinished(Box::new(report.clone())));
            self.record(Record::WorkloadFinished(Box::new(report.clone())))
                .await;
            reports.push(report);
        }
        let pass_sla = reports.iter().all(|r| r.pass_sla);
        let status = if abort.is_some() {
            TaskStatus::Aborted
        } else {
            TaskStatus::Finished
        };
        stop_watch.abort();
        abandon_watch.abort();
        self.record(Record::TaskFinished { status, pass_sla }).await;
        self.publish(Event::TaskFinished {
            uuid: self.uuid.clone(),
            status,
            pass_sla,
        });
        TaskOutcome {
            uuid: self.uuid.clone(),
            status,
            pass_sla,
            abort,
            workloads: reports,
        }
    }

    async fn run_workload(
        &self,
        info: WorkloadInfo,
        subtask_index: usize,
        subtask: &SubtaskSpec,
        w: &WorkloadSpec,
    ) -> (WorkloadReport, Option<Abort>) {
        let started = Instant::now();
        self.publish(Event::WorkloadStarted(info.clone()));
        let scenario = Arc::new(Scenario::new(w.scenario.kind.clone()));
        let (committed_tx, committed) = watch::channel(0u64);
        // Without storage a chunk counts as kept once the consumer has it.
        let (to_writer, to_consumer) = match self.recorder {
            Some(_) => (Some(committed_tx), None),
            None => (None, Some(committed_tx)),
        };
        self.record(Record::WorkloadStarted {
            info: info.clone(),
            subtask_index,
            subtask: Box::new(subtask.clone()),
            workload: Box::new(w.clone()),
            action_names: scenario.action_names.clone(),
            committed: to_writer,
        })
        .await;
        let mut consumer =
            Consumer::new(&self.options, &info, scenario.action_names.clone(), &w.sla);
        consumer.committed = to_consumer;

        // Contexts: set up in order; a failure cleans up what was set up and fails the
        // workload, and the task goes on with the next one.
        let mut contexts = w.contexts.clone();
        contexts.sort_by_key(|c| c.order());
        let mut set_up = Vec::new();
        let mut failure = None;
        for c in &contexts {
            let setup = c.setup();
            if let Some(e) = setup.error {
                // Rally's SLA row carries the exception's message alone; which context
                // failed goes to the log.
                self.publish(Event::Log {
                    level: Level::Error,
                    message: format!("setup of context '{}' failed: {e}", c.name),
                });
                failure = Some(e.to_string());
                break;
            }
            set_up.push(c);
        }

        let mut abort = None;
        let mut runner_error = None;
        if failure.is_none() {
            let hooks = HookExecutor::start(w.hooks.clone());
            let workload_stop = self.stop.child_token();
            let (tx, rx) = mpsc::channel::<Chunk>(256);
            let (live_tx, live_rx) = mpsc::unbounded_channel();
            let job = RunJob {
                scenario: scenario.clone(),
                source: Arc::from("local"),
                chunks: tx,
                stop: workload_stop.clone(),
                on_iteration: hooks.iteration_listener(),
                limits: self.options.limits,
                clock: Clock::new(),
                feed: None,
                live: Some(live_tx),
                committed: Some(committed.clone()),
                in_flight: Default::default(),
            };
            // Only an `rps` runner keeps it; others' slots are all busy by definition.
            consumer.in_flight = w
                .runner
                .max_concurrency()
                .is_some()
                .then(|| job.in_flight.clone());
            let distributed = match (&w.runner, &self.controller) {
                (RunnerSpec::Distributed { agents, inner }, Some(controller)) => {
                    Some(DistributedRunner {
                        controller: controller.clone(),
                        assignment: Assignment {
                            run: self.uuid.clone(),
                            workload: info.index as u32,
                            scenario: w.scenario.name.clone(),
                            args: w.scenario.args.clone(),
                            inner: (**inner).clone(),
                            agents: *agents as usize,
                            sla: w.sla.clone(),
                        },
                        outcome: Default::default(),
                    })
                }
                _ => None,
            };
            let local = LocalRunner {
                spec: w.runner.clone(),
            };
            let runner: &dyn Runner = match &distributed {
                Some(d) => d,
                None => &local,
            };
            // Abandoning drops the runner's future (and with it the iterations in flight)
            // and ends the consumer with what it has.
            let run = async {
                tokio::select! {
                    r = runner.run(job) => r,
                    () = self.abandon.cancelled() => Ok(()),
                }
            };
            let consume = consumer.consume(
                rx,
                live_rx,
                &workload_stop,
                &self.abandon,
                self.recorder.as_ref(),
                |e| self.publish(e),
            );
            let (run_result, ()) = tokio::join!(run, consume);
            if let Err(e) = run_result {
                runner_error = Some(e.to_string());
            }
            if let Some(outcome) = distributed.and_then(|d| d.outcome.into_inner().ok().flatten()) {
                consumer.distributed = Some(outcome);
            }
            consumer.hooks = hooks.finish().await;
            abort = if consumer.aborted_on_sla {
                Some(Abort::Sla)
            } else if self.stop.is_cancelled() {
                Some(Abort::User)
            } else {
                None
            };
        }
        for c in set_up.iter().rev() {
            if let Some(e) = c.cleanup().error {
                self.publish(Event::Log {
                    level: Level::Warning,
                    message: format!("cleanup of context '{}' failed: {e}", c.name),
                });
            }
        }
        let report = consumer.report(
            info,
            started.elapsed().as_secs_f64(),
            abort,
            failure,
            runner_error,
        );
        (report, abort)
    }
}
