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

use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

use crate::events::Event;

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

/// Write `early` (what happened before the engine started: agents registering), then the
/// engine's events until it goes away or the task finishes; each line is flushed, so a
/// follower sees it at once. A write error ends the log (said once on stderr), never the
/// run.
///
/// The writes happen on a thread of their own: a pipe whose reader is slow (or a full disk)
/// blocks that thread, not a runtime worker that the load or the controller needs. A reader
/// that falls more than [`QUEUED_LINES`] behind gets a `lagged` line for what it missed.
pub async fn write_events(
    early: Vec<Event>,
    mut events: broadcast::Receiver<Event>,
    out: impl Write + Send + 'static,
) {
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64())
    };
    let (lines, queue) = std::sync::mpsc::sync_channel::<String>(QUEUED_LINES);
    let writer = tokio::task::spawn_blocking(move || write_lines(queue, out));
    let mut queued = Queued { lines, missed: 0 };
    for event in &early {
        if !queued.push(line(event, now()), now()) {
            return;
        }
    }
    loop {
        match events.recv().await {
            Ok(event) => {
                if matches!(event, Event::TaskFinished { .. }) {
                    // The end (and what was missed before it) is not dropped for a slow
                    // reader: wait for room.
                    let mut last = Vec::new();
                    if queued.missed > 0 {
                        last.push(queued.lagged(now()));
                    }
                    last.push(line(&event, now()));
                    let lines = queued.lines;
                    let _ = tokio::task::spawn_blocking(move || {
                        last.into_iter().try_for_each(|text| lines.send(text))
                    })
                    .await;
                    return writer.await.unwrap_or(());
                }
                if !queued.push(line(&event, now()), now()) {
                    break;
                }
            }
            Err(broadcast::error::RecvError::Lagged(n)) => queued.missed += n,
            Err(broadcast::error::RecvError::Closed) => break,
        }
    }
    // Without its sender the writer ends after the queued lines.
    drop(queued);
    let _ = writer.await;
}

/// The writer thread's queue, and what a slow reader missed since the last line that got in.
struct Queued {
    lines: std::sync::mpsc::SyncSender<String>,
    missed: u64,
}

impl Queued {
    /// Queues `text` (after a `lagged` line, if events were missed); false once the writer
    /// has stopped.
    fn push(&mut self, text: String, time: f64) -> bool {
        use std::sync::mpsc::TrySendError;
        if self.missed > 0 {
            match self.lines.try_send(self.lagged(time)) {
                Ok(()) => self.missed = 0,
                Err(TrySendError::Full(_)) => {
                    self.missed += 1;
                    return true;
                }
                Err(TrySendError::Disconnected(_)) => return false,
            }
        }
        match self.lines.try_send(text) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.missed += 1;
                true
            }
            Err(TrySendError::Disconnected(_)) => false,
        }
    }
}

impl Queued {
    /// The line that says how many events a slow reader missed.
    fn lagged(&self, time: f64) -> String {
        json!({"v": VERSION, "time": time, "type": "lagged", "missed": self.missed}).to_string()
    }
}

/// The writer thread: each line written and flushed; the first error ends it.
fn write_lines(queue: std::sync::mpsc::Receiver<String>, mut out: impl Write) {
    for text in queue {
        if let Err(e) = writeln!(out, "{text}").and_then(|()| out.flush()) {
            eprintln!("warning: --events: cannot write any more: {e}");
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stalled_reader_blocks_no_worker_and_misses_are_counted() {
        let (tx, rx) = broadcast::channel(8192);
        let events = 6000;
        for i in 0..events {
            tx.send(Event::Log {
                level: "info".into(),
                message: format!("event {i}"),
            })
            .unwrap();
        }
        tx.send(Event::TaskFinished {
            uuid: "u".into(),
            status: TaskStatus::Finished,
            pass_sla: true,
        })
        .unwrap();
        let (open, gate) = std::sync::mpsc::channel();
        let out = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let writer = Stalled {
            gate: Some(gate),
            out: out.clone(),
        };
        let log = tokio::spawn(write_events(Vec::new(), rx, writer));
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
                level: "warn".into(),
                message: "agent x lost".into(),
            },
            1.0,
        );
        let v: Value = serde_json::from_str(&l).unwrap();
        assert_eq!(v["type"], "log");
        assert_eq!(v["message"], "agent x lost");
    }
}
