//! One link's life: the loop that turns the link's messages, the timers and the runner's news
//! into [`Event`]s for the session's [`Core`], and carries out the [`Action`]s it returns on
//! the link, the running workload and the chunk cache, until the core ends the session.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::AgentExit;
use super::core::{Action, Core, Event, Now, Timing};
use super::pulls::{forget, serve_pulls};
use super::workload::{self, Running};
use crate::chunk::cache::ChunkCache;
use crate::distributed::protocol::{Pull, ToController};
use crate::distributed::wire::link::{Inbound, Link, LinkError, LinkSender};

/// At most one prompt report (when all work handed out is cached) per this long: the SLA
/// state travels in each.
const PROMPT_REPORTS: Duration = Duration::from_millis(10);

pub(super) struct Session<'a> {
    link: Link,
    cache: Arc<Mutex<ChunkCache>>,
    interrupt: &'a CancellationToken,
    core: Core,
    running: Option<Running>,
    pulls: mpsc::Sender<Vec<u64>>,
    puller: tokio::task::JoinHandle<()>,
}

impl<'a> Session<'a> {
    pub fn new(
        link: Link,
        cache: Arc<Mutex<ChunkCache>>,
        interrupt: &'a CancellationToken,
    ) -> Session<'a> {
        let core = Core::new(Timing::of(&link.welcome), Instant::now());
        let (pulls, pull_rx) = mpsc::channel(64);
        let puller = tokio::spawn(serve_pulls(link.sender.clone(), cache.clone(), pull_rx));
        Session {
            link,
            cache,
            interrupt,
            core,
            running: None,
            pulls,
            puller,
        }
    }

    /// `Some(exit)` when the agent should exit, `None` to reconnect.
    pub async fn serve(mut self) -> Option<AgentExit> {
        let sender = self.link.sender.clone();
        let timing = self.core.timing();
        let mut ping = tokio::time::interval(timing.heartbeat);
        let mut report = tokio::time::interval(timing.sla_interval);
        report.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let exit = loop {
            let need_work = async {
                match &self.running {
                    Some(r) if self.core.wants_work() => r.controls.feed.wait_low().await,
                    _ => std::future::pending().await,
                }
            };
            let last_report = self.core.last_report();
            let finished = async {
                match &self.running {
                    Some(r) => tokio::select! {
                        () = r.finished.notified() => {}
                        () = r.announce.notified() => {
                            tokio::time::sleep_until(last_report + PROMPT_REPORTS).await;
                        }
                    },
                    None => std::future::pending().await,
                }
            };
            let event = tokio::select! {
                () = finished => Event::Finished,
                inbound = self.link.inbox.recv() => match inbound {
                    None | Some(Inbound::Closed(_)) => Event::Closed,
                    Some(Inbound::Dropped(why)) => {
                        tracing::warn!("dropped a frame from the controller: {why}");
                        continue;
                    }
                    Some(Inbound::Pull(Pull::Chunks { ids })) => Event::Pull(ids),
                    Some(Inbound::Control(message)) => Event::Message(message),
                },
                () = tokio::time::sleep_until(self.core.deadline()) => Event::Silence,
                _ = ping.tick() => Event::Heartbeat,
                _ = report.tick() => Event::ReportDue,
                () = need_work => Event::Low {
                    pace: self.running.as_ref().map_or(0.0, Running::pace),
                },
                _ = self.interrupt.cancelled() => Event::Interrupted,
            };
            if let Some(exit) = self.handle(event, &sender).await {
                break exit;
            }
        };
        self.puller.abort();
        exit
    }

    /// Hands `event` to the core and carries out what it decides, with the events that
    /// doing so brings (a workload started or not, a report sent, a vital send failed)
    /// handled before the rest. `Some` when the session is over.
    async fn handle(&mut self, event: Event, sender: &LinkSender) -> Option<Option<AgentExit>> {
        let mut actions: VecDeque<Action> = self.core.on(event, Now::read()).into();
        while let Some(action) = actions.pop_front() {
            let next = match action {
                Action::Send { message, vital } => {
                    let failed = sender.send(&message).await.is_err();
                    (failed && vital).then_some(Event::Closed)
                }
                Action::Report { vital } => match self.send_report(sender).await {
                    Ok(done) => Some(Event::Reported { done }),
                    Err(_) => vital.then_some(Event::Closed),
                },
                Action::Start(order) => {
                    let (workload, low_water) = (order.workload, order.low_water);
                    let liveness = self.core.timing().liveness;
                    match workload::start(*order, &self.cache, liveness) {
                        Ok(running) => {
                            self.running = Some(running);
                            Some(Event::Started {
                                workload,
                                low_water,
                            })
                        }
                        Err(error) => Some(Event::StartFailed { workload, error }),
                    }
                }
                Action::Serve(ids) => {
                    let _ = self.pulls.try_send(ids);
                    None
                }
                Action::Forget(ids) => {
                    forget(&self.cache, ids);
                    None
                }
                Action::Exit(exit) => return Some(exit),
                other => {
                    if let Some(r) = &self.running {
                        r.controls.apply(&other);
                    }
                    None
                }
            };
            if let Some(event) = next {
                for action in self.core.on(event, Now::read()).into_iter().rev() {
                    actions.push_front(action);
                }
            }
        }
        None
    }

    /// Sends the running workload's report; true when it was its last (the workload is
    /// then forgotten).
    async fn send_report(&mut self, sender: &LinkSender) -> Result<bool, LinkError> {
        let Some(r) = &self.running else {
            return Ok(false);
        };
        let report = r.report();
        let done = report.done;
        sender.send(&ToController::Report(Box::new(report))).await?;
        if done {
            self.running = None;
        }
        Ok(done)
    }
}
