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

/// Write `early` (what happened before the engine started: agents registering), then the
/// engine's events until it goes away or the task finishes; each line is flushed, so a
/// follower sees it at once. A write error ends the log (said once on stderr), never the
/// run.
pub async fn write_events(
    early: Vec<Event>,
    mut events: broadcast::Receiver<Event>,
    mut out: impl Write,
) {
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64())
    };
    for event in &early {
        if let Err(e) = writeln!(out, "{}", line(event, now())) {
            eprintln!("warning: --events: cannot write: {e}");
            return;
        }
    }
    loop {
        let text = match events.recv().await {
            Ok(event) => {
                let last = matches!(event, Event::TaskFinished { .. });
                let text = line(&event, now());
                if last {
                    let _ = writeln!(out, "{text}").and_then(|()| out.flush());
                    return;
                }
                text
            }
            Err(broadcast::error::RecvError::Lagged(n)) => {
                json!({"v": VERSION, "time": now(), "type": "lagged", "missed": n}).to_string()
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
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
