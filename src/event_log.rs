//! `run --events FILE`: every engine event as one JSON object per line, for other tools to
//! follow live (`tail -f`).
//!
//! Schema version 1: each line is the event's own fields (as [`Event`] serializes them)
//! with three more in front: `"v": 1`, `"time"` (Unix seconds when it was written) and
//! `"type"` (`task_started`, `workload_started`, `progress`, `count`, `sla`, `agents`,
//! `statistics`, `stopping`, `workload_finished`, `task_finished`, `log`). A reader that
//! fell behind the engine gets `{"v": 1, "type": "lagged", "missed": N}` instead of the
//! events it missed. The notices of a distributed run's start (agents registering) come
//! first, as `log` lines, before `task_started`. New fields may appear in version 1; a
//! change of meaning bumps `v`.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::events::{Event, Level};

/// The schema's version, the `v` of every line.
pub const VERSION: u64 = 1;

/// One event as its line (without the newline).
pub fn line(event: &Event, time: f64) -> String {
    let mut out = Map::new();
    out.insert("v".into(), json!(VERSION));
    out.insert("time".into(), json!(time));
    match serde_json::to_value(event) {
        Ok(Value::Object(fields)) => {
            // `type` first after v and time, then the event's own fields.
            if let Some(t) = fields.get("type") {
                out.insert("type".into(), t.clone());
            }
            out.extend(fields.into_iter().filter(|(k, _)| k != "type"));
        }
        Ok(other) => {
            out.insert("type".into(), json!("unknown"));
            out.insert("value".into(), other);
        }
        Err(e) => {
            out.insert("type".into(), json!("unserializable"));
            out.insert("error".into(), json!(e.to_string()));
        }
    }
    Value::Object(out).to_string()
}

/// Lines waiting for the writer thread; past this the log reports `lagged` rather than
/// hold the engine's events in memory for a reader that does not keep up.
const QUEUED_LINES: usize = 4096;
/// Bytes waiting for the writer thread, for the same reason: 4,096 `statistics` lines of a
/// large run would be far more than 4,096 short ones.
const QUEUED_BYTES: usize = 64 << 20;
/// How long the last lines (the task's end) wait for a reader that does not keep up,
/// before the process goes on without them, saying how many were lost.
const FINAL_WAIT: Duration = Duration::from_secs(5);

/// The writer's bounds ([`write_events`] uses the constants; tests shorten them).
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub lines: usize,
    pub bytes: usize,
    pub final_wait: Duration,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            lines: QUEUED_LINES,
            bytes: QUEUED_BYTES,
            final_wait: FINAL_WAIT,
        }
    }
}

/// Where the log's own warnings (a failed write, lines lost at the end) go: standard error;
/// or, while the TUI owns the screen, the engine's stream as a `log` event (text on stderr
/// would be drawn over the TUI), kept to be printed once the TUI has left ([`Self::kept`]).
#[derive(Clone, Default)]
pub struct Warnings {
    screen: Option<(broadcast::Sender<Event>, Kept)>,
}

/// The warnings said on the TUI's screen.
type Kept = Arc<std::sync::Mutex<Vec<String>>>;

impl Warnings {
    pub fn stderr() -> Warnings {
        Warnings::default()
    }

    /// For a run whose TUI draws `events`.
    pub fn screen(events: broadcast::Sender<Event>) -> Warnings {
        Warnings {
            screen: Some((events, Default::default())),
        }
    }

    pub fn say(&self, message: String) {
        let Some((events, kept)) = &self.screen else {
            eprintln!("warning: {message}");
            return;
        };
        kept.lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(message.clone());
        let _ = events.send(Event::Log {
            level: Level::Warning,
            message,
        });
    }

    /// What was said on the screen so far, for the terminal once the TUI has left.
    pub fn kept(&self) -> Vec<String> {
        self.screen.as_ref().map_or_else(Vec::new, |(_, kept)| {
            kept.lock().unwrap_or_else(|p| p.into_inner()).clone()
        })
    }
}

/// Write `early` (what happened before the engine started: agents registering), then the
/// engine's events until it goes away or the task finishes; each line is flushed, so a
/// follower sees it at once. A write error ends the log (said once, to `warnings`), never
/// the run.
///
/// The writes happen on a thread of their own: a pipe whose reader is slow (or a full disk)
/// blocks that thread, not a runtime worker that the load or the controller needs, and not
/// the process's exit (a runtime waits for its blocking tasks; nothing waits for this
/// thread once the last lines had [`FINAL_WAIT`]). A reader that falls more than
/// [`QUEUED_LINES`] or [`QUEUED_BYTES`] behind gets a `lagged` line for what it missed.
pub async fn write_events(
    early: Vec<Event>,
    events: broadcast::Receiver<Event>,
    out: impl Write + Send + 'static,
    warnings: Warnings,
) {
    write_events_within(early, events, out, warnings, Bounds::default()).await;
}

/// [`write_events`] within `bounds`.
pub async fn write_events_within(
    early: Vec<Event>,
    mut events: broadcast::Receiver<Event>,
    out: impl Write + Send + 'static,
    warnings: Warnings,
    bounds: Bounds,
) {
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64())
    };
    let (lines, queue) = mpsc::channel::<String>(bounds.lines.max(1));
    let backlog = Arc::new(Backlog::default());
    let (done, finished) = oneshot::channel::<()>();
    let writer_backlog = backlog.clone();
    let writer_warnings = warnings.clone();
    let spawned = std::thread::Builder::new()
        .name("events-writer".into())
        .spawn(move || {
            write_lines(queue, out, &writer_backlog, &writer_warnings);
            let _ = done.send(());
        });
    if let Err(e) = spawned {
        warnings.say(format!("--events: cannot start its writer: {e}"));
        return;
    }
    let mut queued = Queued {
        lines,
        backlog,
        most_bytes: bounds.bytes,
        missed: 0,
    };
    for event in &early {
        if !queued.push(line(event, now()), now()) {
            return;
        }
    }
    loop {
        match events.recv().await {
            Ok(event) => {
                if matches!(event, Event::TaskFinished { .. }) {
                    let mut last = Vec::new();
                    if queued.missed > 0 {
                        last.push(queued.lagged(now()));
                    }
                    last.push(line(&event, now()));
                    queued
                        .finish(last, finished, bounds.final_wait, &warnings)
                        .await;
                    return;
                }
                if !queued.push(line(&event, now()), now()) {
                    break;
                }
            }
            Err(broadcast::error::RecvError::Lagged(n)) => queued.missed += n,
            Err(broadcast::error::RecvError::Closed) => break,
        }
    }
    // The stream closed without the task's end (or the writer stopped): what is queued
    // gets the same bounded wait.
    queued
        .finish(Vec::new(), finished, bounds.final_wait, &warnings)
        .await;
}

/// Lines and bytes queued and not yet written: the sender adds, the writer takes off what
/// it wrote.
#[derive(Default)]
struct Backlog {
    lines: AtomicUsize,
    bytes: AtomicUsize,
}

impl Backlog {
    fn add(&self, len: usize) {
        self.lines.fetch_add(1, Ordering::AcqRel);
        self.bytes.fetch_add(len, Ordering::AcqRel);
    }

    fn written(&self, len: usize) {
        self.lines.fetch_sub(1, Ordering::AcqRel);
        self.bytes.fetch_sub(len, Ordering::AcqRel);
    }
}

/// The writer thread's queue, and what a slow reader missed since the last line that got in.
struct Queued {
    lines: mpsc::Sender<String>,
    backlog: Arc<Backlog>,
    most_bytes: usize,
    missed: u64,
}

impl Queued {
    /// Queues `text` (after a `lagged` line, if events were missed); false once the writer
    /// has stopped.
    fn push(&mut self, text: String, time: f64) -> bool {
        if self.missed > 0 {
            match self.try_send(self.lagged(time)) {
                Some(true) => self.missed = 0,
                Some(false) => {
                    self.missed += 1;
                    return true;
                }
                None => return false,
            }
        }
        match self.try_send(text) {
            Some(true) => true,
            Some(false) => {
                self.missed += 1;
                true
            }
            None => false,
        }
    }

    /// `Some(true)` queued, `Some(false)` no room (lines or bytes), `None` writer gone.
    fn try_send(&self, text: String) -> Option<bool> {
        let len = text.len() + 1;
        if self.backlog.bytes.load(Ordering::Acquire) + len > self.most_bytes {
            return if self.lines.is_closed() {
                None
            } else {
                Some(false)
            };
        }
        // Counted before it is queued, so the writer never takes off more than was added.
        self.backlog.add(len);
        match self.lines.try_send(text) {
            Ok(()) => Some(true),
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.backlog.written(len);
                Some(false)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.backlog.written(len);
                None
            }
        }
    }

    /// The line that says how many events a slow reader missed.
    fn lagged(&self, time: f64) -> String {
        json!({"v": VERSION, "time": time, "type": "lagged", "missed": self.missed}).to_string()
    }

    /// The task's end (and what was missed before it) is not dropped for a slow reader:
    /// it waits for room, and the writer for the queue to drain, for `wait` at most; then
    /// the lines still not written are counted in a warning and left behind.
    async fn finish(
        self,
        last: Vec<String>,
        finished: oneshot::Receiver<()>,
        wait: Duration,
        warnings: &Warnings,
    ) {
        let deadline = tokio::time::Instant::now() + wait;
        let mut unsent = last.len();
        for text in last {
            let len = text.len() + 1;
            // Waits for room, not for bytes: the end is a few short lines.
            let Ok(permit) = tokio::time::timeout_at(deadline, self.lines.reserve()).await else {
                break;
            };
            let Ok(permit) = permit else {
                // The writer stopped, and said why.
                return;
            };
            self.backlog.add(len);
            permit.send(text);
            unsent -= 1;
        }
        // Without its sender the writer ends after the queued lines.
        drop(self.lines);
        if unsent == 0 && tokio::time::timeout_at(deadline, finished).await.is_ok() {
            return;
        }
        let lost = self.backlog.lines.load(Ordering::Acquire) + unsent;
        warnings.say(format!(
            "--events: the reader did not keep up: the last {lost} lines were not written"
        ));
    }
}

/// The writer thread: each line written and flushed; the first error ends it.
fn write_lines(
    mut queue: mpsc::Receiver<String>,
    mut out: impl Write,
    backlog: &Backlog,
    warnings: &Warnings,
) {
    while let Some(text) = queue.blocking_recv() {
        let len = text.len() + 1;
        let written = writeln!(out, "{text}").and_then(|()| out.flush());
        backlog.written(len);
        if let Err(e) = written {
            warnings.say(format!("--events: cannot write any more: {e}"));
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::TaskStatus;

    /// Output that blocks its first write until the test lets it go: a reader that does
    /// not keep up.
    struct Stalled {
        gate: Option<std::sync::mpsc::Receiver<()>>,
        out: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    }

    impl Write for Stalled {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if let Some(gate) = self.gate.take() {
                let _ = gate.recv();
            }
            self.out.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A stream of `n` log events (`message(i)`), then the task's end when `end`; the sender
    /// is returned so the stream stays open (or is dropped by the caller to close it).
    fn logged(
        capacity: usize,
        n: u64,
        message: impl Fn(u64) -> String,
        end: bool,
    ) -> (broadcast::Sender<Event>, broadcast::Receiver<Event>) {
        let (tx, rx) = broadcast::channel(capacity);
        for i in 0..n {
            tx.send(Event::Log {
                level: Level::Info,
                message: message(i),
            })
            .unwrap();
        }
        if end {
            tx.send(Event::TaskFinished {
                uuid: "u".into(),
                status: TaskStatus::Finished,
                pass_sla: true,
            })
            .unwrap();
        }
        (tx, rx)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stalled_reader_blocks_no_worker_and_misses_are_counted() {
        let events = 6000;
        let (_tx, rx) = logged(8192, events, |i| format!("event {i}"), true);
        let (open, gate) = std::sync::mpsc::channel();
        let out = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let writer = Stalled {
            gate: Some(gate),
            out: out.clone(),
        };
        let log = tokio::spawn(write_events(Vec::new(), rx, writer, Warnings::stderr()));
        // The engine's side goes on while the output is stuck: this worker is free.
        tokio::task::yield_now().await;
        open.send(()).unwrap();
        log.await.unwrap();
        let text = String::from_utf8(out.lock().unwrap().clone()).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.last().unwrap()["type"], "task_finished");
        // Every event is either written or counted as missed.
        let written = lines.iter().filter(|l| l["type"] == "log").count() as u64;
        let missed: u64 = lines
            .iter()
            .filter(|l| l["type"] == "lagged")
            .map(|l| l["missed"].as_u64().unwrap())
            .sum();
        assert_eq!(written + missed, events);
    }

    /// A reader that never drains holds the end back by the final wait only (the writer is
    /// a thread of its own, which nothing waits for), and the lost lines are counted in a
    /// warning (here on the event stream, as in TUI mode).
    #[tokio::test(start_paused = true)]
    async fn a_reader_that_never_drains_delays_the_end_by_the_final_wait_only() {
        let (_tx, rx) = logged(64, 20, |i| format!("event {i}"), true);
        let (open, gate) = std::sync::mpsc::channel();
        let writer = Stalled {
            gate: Some(gate),
            out: Default::default(),
        };
        let (events, mut said) = broadcast::channel(4);
        let warnings = Warnings::screen(events);
        let bounds = Bounds {
            lines: 4,
            bytes: 1 << 20,
            final_wait: Duration::from_secs(5),
        };
        let started = tokio::time::Instant::now();
        write_events_within(Vec::new(), rx, writer, warnings.clone(), bounds).await;
        assert!(started.elapsed() >= bounds.final_wait);
        let Ok(Event::Log { level, message }) = said.try_recv() else {
            panic!("no warning");
        };
        assert_eq!(level, Level::Warning);
        let lost: usize = message
            .split_whitespace()
            .find_map(|w| w.parse().ok())
            .unwrap_or(0);
        // The end (task_finished and the lagged count) at least, and what stays queued.
        assert!((2..=bounds.lines + 3).contains(&lost), "{message}");
        assert!(message.contains("not written"), "{message}");
        assert_eq!(warnings.kept(), [message], "kept for after the TUI");
        open.send(()).unwrap();
    }

    /// A stream that closes without the task's end (a crash) waits for a stuck reader no
    /// longer than the end does.
    #[tokio::test(start_paused = true)]
    async fn a_closed_stream_waits_for_a_stuck_reader_no_longer() {
        let (tx, rx) = logged(64, 3, |i| format!("event {i}"), false);
        drop(tx);
        let (open, gate) = std::sync::mpsc::channel();
        let writer = Stalled {
            gate: Some(gate),
            out: Default::default(),
        };
        let (events, _said) = broadcast::channel(4);
        let warnings = Warnings::screen(events);
        let bounds = Bounds::default();
        let started = tokio::time::Instant::now();
        write_events_within(Vec::new(), rx, writer, warnings.clone(), bounds).await;
        assert!(started.elapsed() >= bounds.final_wait);
        assert_eq!(
            warnings.kept(),
            ["--events: the reader did not keep up: the last 3 lines were not written"]
        );
        open.send(()).unwrap();
    }

    /// The queue is bounded by bytes as well as lines: large lines for a stalled reader are
    /// missed (and counted) rather than held in memory.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_queue_is_bounded_by_bytes() {
        let events = 100;
        let (tx, rx) = logged(
            256,
            events,
            |i| format!("{i:04} {}", "x".repeat(1000)),
            true,
        );
        let (open, gate) = std::sync::mpsc::channel();
        let out = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let writer = Stalled {
            gate: Some(gate),
            out: out.clone(),
        };
        let bounds = Bounds {
            lines: 4096,
            bytes: 10_000,
            final_wait: Duration::from_secs(30),
        };
        let log = tokio::spawn(write_events_within(
            Vec::new(),
            rx,
            writer,
            Warnings::stderr(),
            bounds,
        ));
        // Every event taken from the stream while the reader is stuck.
        while !tx.is_empty() {
            tokio::task::yield_now().await;
        }
        open.send(()).unwrap();
        log.await.unwrap();
        let text = String::from_utf8(out.lock().unwrap().clone()).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let written = lines.iter().filter(|l| l["type"] == "log").count() as u64;
        let missed: u64 = lines
            .iter()
            .filter(|l| l["type"] == "lagged")
            .map(|l| l["missed"].as_u64().unwrap())
            .sum();
        assert_eq!(written + missed, events);
        // About 10 kB of 1 kB lines were queued while the reader was stuck.
        assert!(written <= 12, "{written} written");
        assert_eq!(lines.last().unwrap()["type"], "task_finished");
    }

    #[test]
    fn lines_carry_version_time_and_type_first() {
        let l = line(
            &Event::TaskFinished {
                uuid: "u".into(),
                status: TaskStatus::Finished,
                pass_sla: true,
            },
            12.5,
        );
        assert_eq!(
            l,
            r#"{"v":1,"time":12.5,"type":"task_finished","uuid":"u","status":"finished","pass_sla":true}"#
        );
        let l = line(
            &Event::Log {
                level: Level::Warning,
                message: "agent x lost".into(),
            },
            1.0,
        );
        let v: Value = serde_json::from_str(&l).unwrap();
        assert_eq!(v["type"], "log");
        assert_eq!(v["message"], "agent x lost");
    }
}
