//! The agent's side of a session as a pure state machine: what the controller said, the
//! timers and the runner's news go in as [`Event`]s; what to do comes out as [`Action`]s, in
//! order, which the session loop ([`super::session`]) carries out on the link, the runner and
//! the chunk cache. No sockets, tasks or sleeps here, and time is passed in
//! (`tokio::time::Instant`), so that liveness, leases and reports are tested in paused time.
//!
//! The agent protects the service under test on its own: the controller is judged silent at
//! `last heard + liveness`, and also when anything happens after that moment (a process
//! frozen past the timeout wakes to a backlog of frames and ticks that must not hide it: by
//! then the controller has declared this agent lost and given its leases away). Either way
//! the load stops and the session ends (the agent dials again).

use std::time::Duration;

use tokio::time::Instant;

use crate::distributed::agent::AgentExit;
use crate::distributed::plan::Lease;
use crate::distributed::protocol::{ToAgent, ToController, WorkloadOrder};

/// Why an agent stops its load when it finds, on waking, that it was not heard from for
/// longer than the liveness timeout.
pub const RESUMED: &str =
    "resumed after hearing nothing from the controller for longer than the liveness timeout";
/// Why an agent stops its load when the controller is silent at the liveness deadline.
pub const SILENT: &str = "nothing heard from the controller within the liveness timeout";
/// Why an agent stops its load when its session ends for any other reason.
pub const BROKE: &str = "the connection to the controller broke";
/// A request for work left unanswered this long is made again (the controller had nothing
/// then; lost agents' work may have turned up since).
const ASK_AGAIN: Duration = Duration::from_millis(200);

/// The session's clocks, from the welcome.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timing {
    pub heartbeat: Duration,
    pub liveness: Duration,
    pub sla_interval: Duration,
}

impl Timing {
    /// From the controller's welcome (defaults for anything else), with floors so that a
    /// zero cannot spin the agent.
    pub fn of(welcome: &ToAgent) -> Timing {
        let (heartbeat, liveness, sla_interval) = match welcome {
            ToAgent::Welcome {
                heartbeat_ms,
                liveness_ms,
                sla_interval_ms,
                ..
            } => (*heartbeat_ms, *liveness_ms, *sla_interval_ms),
            _ => (1000, 3000, 1000),
        };
        Timing {
            heartbeat: Duration::from_millis(heartbeat.max(50)),
            liveness: Duration::from_millis(liveness.max(100)),
            sla_interval: Duration::from_millis(sla_interval.max(50)),
        }
    }
}

/// Wall-clock and monotonic time of an event: the monotonic one judges liveness, the wall
/// clock stamps pings and pongs (the controller estimates clock offsets from them).
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub at: Instant,
    pub unix: f64,
}

impl Now {
    /// Both clocks now.
    pub fn read() -> Now {
        Now {
            at: Instant::now(),
            unix: crate::clock::unix_now(),
        }
    }
}

/// What happens to a session.
#[derive(Debug)]
pub enum Event {
    /// A control message from the controller.
    Message(ToAgent),
    /// The controller asks for these chunks on the results channel.
    Pull(Vec<u64>),
    /// The link broke.
    Closed,
    /// The liveness deadline ([`Core::deadline`]) has come.
    Silence,
    /// Time for a heartbeat.
    Heartbeat,
    /// Time for the periodic report.
    ReportDue,
    /// The runner has returned (its chunks are cached), or all the work handed out so far has
    /// run and is cached: the controller should hear now rather than at the next report.
    Finished,
    /// The running workload's queue of numbers dropped below its low-water mark; `pace` is
    /// this agent's iterations per second so far.
    Low { pace: f64 },
    /// The workload asked for could not be set up here.
    StartFailed { workload: u32, error: String },
    /// It was set up and runs.
    Started { workload: u32, low_water: u64 },
    /// A report was sent; `done` when it was the workload's last.
    Reported { done: bool },
    /// Ctrl-C or SIGTERM.
    Interrupted,
}

/// What the session loop is to do, in order.
#[derive(Debug, PartialEq)]
pub enum Action {
    /// Send on the control channel. When `vital`, a failure ends the session (heartbeats:
    /// a link that cannot carry them is broken); otherwise it is ignored.
    Send { message: ToController, vital: bool },
    /// Send the running workload's report (built from its account), vital as for `Send`.
    Report { vital: bool },
    /// Build this workload's runner and start it; answer with `Started` or `StartFailed`.
    Start(Box<WorkloadOrder>),
    /// Stop starting iterations of the running workload; `why` for the log (none: quietly,
    /// as the controller asked).
    Stop { why: Option<String> },
    /// The controller was heard: the runner's lifeline moves forward by the liveness timeout.
    Heard,
    /// Numbers for the running workload.
    Lease(Lease),
    /// The running workload's share of the concurrency and its low-water mark.
    Share { share: u64, low_water: u64 },
    /// No more leases for the running workload: finish what is queued.
    End,
    /// Send these chunks from the cache on the results channel.
    Serve(Vec<u64>),
    /// These chunks are stored by the controller: delete them from the cache.
    Forget(Vec<u64>),
    /// The session is over: `Some` ends the agent, `None` dials the controller again.
    Exit(Option<AgentExit>),
}

/// The workload running on this agent, as the session sees it.
#[derive(Debug)]
struct Workload {
    id: u32,
    /// Its load was stopped (by the controller or by the agent).
    stopped: bool,
    /// When work was last asked for and not yet given.
    asked: Option<Instant>,
    /// Size of the last lease asked for: leases grow from the low-water mark by doubling
    /// until they cover about half a second of this agent's pace.
    last_want: u64,
    low_water: u64,
}

/// One session's protocol state.
#[derive(Debug)]
pub struct Core {
    timing: Timing,
    last_heard: Instant,
    last_report: Instant,
    running: Option<Workload>,
    out: Vec<Action>,
}

impl Core {
    /// A session whose welcome was just heard.
    pub fn new(timing: Timing, now: Instant) -> Core {
        Core {
            timing,
            last_heard: now,
            last_report: now,
            running: None,
            out: Vec::new(),
        }
    }

    pub fn timing(&self) -> Timing {
        self.timing
    }

    /// When the controller will have been silent for the liveness timeout.
    pub fn deadline(&self) -> Instant {
        self.last_heard + self.timing.liveness
    }

    /// When the last report went.
    pub fn last_report(&self) -> Instant {
        self.last_report
    }

    /// Whether a workload runs and no request for work is outstanding (the loop then
    /// watches its queue for the low-water mark).
    pub fn wants_work(&self) -> bool {
        self.running.as_ref().is_some_and(|r| r.asked.is_none())
    }

    /// Whether a workload runs (its completion and reports matter).
    pub fn running(&self) -> bool {
        self.running.is_some()
    }

    /// Takes one event; returns what to do about it, in order.
    pub fn on(&mut self, event: Event, now: Now) -> Vec<Action> {
        self.handle(event, now);
        if let Some(r) = &mut self.running
            && r.asked
                .is_some_and(|t| now.at.saturating_duration_since(t) > ASK_AGAIN)
        {
            r.asked = None;
        }
        std::mem::take(&mut self.out)
    }

    fn silent_past_liveness(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.last_heard) > self.timing.liveness
    }

    fn handle(&mut self, event: Event, now: Now) {
        match event {
            Event::Finished => {
                if self.silent_past_liveness(now.at) {
                    // The runner ended because its lifeline ran out (see `Feed::heard`): not a
                    // finished share, a freeze.
                    return self.give_up(RESUMED);
                }
                self.last_report = now.at;
                self.report(true);
            }
            Event::Message(_) | Event::Pull(_) if self.silent_past_liveness(now.at) => {
                // Judged before the frame counts: frames queued while this process was
                // frozen arrive all at once when it resumes.
                self.give_up(RESUMED)
            }
            Event::Message(message) => {
                self.heard(now.at);
                self.on_message(message, now);
            }
            Event::Pull(ids) => {
                self.heard(now.at);
                self.out.push(Action::Serve(ids));
            }
            Event::Closed => self.give_up(BROKE),
            Event::Silence => {
                // Silence is judged at its deadline, not at the next heartbeat.
                if now.at >= self.deadline() {
                    self.give_up(SILENT);
                }
            }
            Event::Heartbeat => {
                if self.silent_past_liveness(now.at) {
                    return self.give_up(SILENT);
                }
                self.send(ToController::Ping { sent: now.unix }, true);
            }
            Event::ReportDue => {
                if self.silent_past_liveness(now.at) {
                    return self.give_up(RESUMED);
                }
                self.last_report = now.at;
                self.report(true);
            }
            Event::Low { pace } => self.need_work(pace, now.at),
            Event::StartFailed { workload, error } => {
                self.send(ToController::Failed { workload, error }, false)
            }
            Event::Started {
                workload,
                low_water,
            } => {
                self.running = Some(Workload {
                    id: workload,
                    stopped: false,
                    asked: None,
                    last_want: 0,
                    low_water: low_water.max(1),
                });
            }
            Event::Reported { done } => {
                if done {
                    self.running = None;
                }
            }
            Event::Interrupted => {
                self.stop_load("interrupted");
                self.report(false);
                self.send(ToController::Bye, false);
                self.out.push(Action::Exit(Some(AgentExit::Interrupted)));
            }
        }
    }

    fn on_message(&mut self, message: ToAgent, now: Now) {
        match message {
            ToAgent::Workload(order) => {
                if let Some(r) = &mut self.running {
                    // A new workload means the controller is done with the old one.
                    r.stopped = true;
                    self.out.push(Action::Stop { why: None });
                }
                self.out.push(Action::Start(order));
            }
            ToAgent::Lease { workload, lease } => {
                if let Some(r) = self.workload(workload) {
                    r.asked = None;
                    self.out.push(Action::Lease(lease));
                }
            }
            ToAgent::Share {
                workload,
                share,
                low_water,
            } => {
                if let Some(r) = self.workload(workload) {
                    r.low_water = low_water.max(1);
                    let low_water = r.low_water;
                    self.out.push(Action::Share {
                        share: share.max(1),
                        low_water,
                    });
                }
            }
            ToAgent::Stop { workload } => {
                if let Some(r) = self.workload(workload) {
                    r.stopped = true;
                    self.out.push(Action::Stop { why: None });
                }
            }
            ToAgent::End { workload } => {
                if self.workload(workload).is_some() {
                    self.out.push(Action::End);
                }
            }
            ToAgent::Stored { ids } => self.out.push(Action::Forget(ids)),
            ToAgent::Ping { sent } => self.send(
                ToController::Pong {
                    echo: sent,
                    at: now.unix,
                },
                false,
            ),
            ToAgent::Pong { .. } | ToAgent::Welcome { .. } => {}
            ToAgent::Shutdown => {
                self.stop_load("the controller shut the run down");
                self.out.push(Action::Exit(Some(AgentExit::Shutdown)));
            }
        }
    }

    /// The running workload, if it is `id`.
    fn workload(&mut self, id: u32) -> Option<&mut Workload> {
        self.running.as_mut().filter(|r| r.id == id)
    }

    fn heard(&mut self, now: Instant) {
        self.last_heard = now;
        if self.running.is_some() {
            self.out.push(Action::Heard);
        }
    }

    fn send(&mut self, message: ToController, vital: bool) {
        self.out.push(Action::Send { message, vital });
    }

    fn report(&mut self, vital: bool) {
        if self.running.is_some() {
            self.out.push(Action::Report { vital });
        }
    }

    fn need_work(&mut self, pace: f64, now: Instant) {
        let Some(r) = &mut self.running else {
            return;
        };
        r.asked = Some(now);
        let want = (r.last_want * 2)
            .max(r.low_water)
            .min(((pace * 0.5) as u64).max(r.low_water));
        r.last_want = want;
        let workload = r.id;
        self.send(ToController::NeedWork { workload, want }, false);
    }

    /// Stops the load, said in the log; said again on waking from a freeze even when the
    /// runner has already ended by itself (its lifeline ran out).
    fn stop_load(&mut self, why: &str) {
        if let Some(r) = &mut self.running
            && (!r.stopped || why == RESUMED)
        {
            r.stopped = true;
            self.out.push(Action::Stop {
                why: Some(why.to_string()),
            });
        }
    }

    /// Ends the session (the agent dials again), its load stopped for `why`.
    fn give_up(&mut self, why: &str) {
        self.stop_load(why);
        self.stop_load(BROKE);
        self.out.push(Action::Exit(None));
    }
}

#[cfg(test)]
#[path = "core_tests.rs"]
mod tests;
