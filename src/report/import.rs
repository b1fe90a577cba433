//! `task import`: load Rally's JSON results format (`format_version` 1.x, as `rally task
//! export --type json` writes it, and as our own export does) into the store.
//!
//! Imported iterations get numbers in timestamp order (Rally's records carry none) and are
//! stored in chunks like a run's, so every command works on an imported task as on a run.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use crate::chunk::{ActionSpan, Chunk, IterationError, IterationRecord, Output};
use crate::events::{SourceFigures, TaskStatus, WorkloadInfo, WorkloadReport};
use crate::hook::HookResult;
use crate::sla::CriterionStatus;
use crate::stats::WorkloadStats;
use crate::store::{NewTask, NewWorkload, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("not JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{0}")]
    Format(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn format_err(what: impl Into<String>) -> ImportError {
    ImportError::Format(what.into())
}

/// Unix seconds from Rally's `%Y-%m-%dT%H:%M:%S[.f]` (UTC).
pub fn parse_time(text: &str) -> Option<f64> {
    let (date, time) = text.split_once('T').or_else(|| text.split_once(' '))?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.trim_end_matches('Z').split(':');
    let (h, min) = (
        t.next()?.parse::<i64>().ok()?,
        t.next()?.parse::<i64>().ok()?,
    );
    let sec: f64 = t.next().unwrap_or("0").split('+').next()?.parse().ok()?;
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + h * 3600 + min * 60) as f64 + sec)
}

/// Import every task of a results file; returns the new task uuids.
pub fn import(store: &mut Store, text: &str) -> Result<Vec<String>, ImportError> {
    let doc: Value = serde_json::from_str(text)?;
    if doc.is_array() {
        return Err(format_err(
            "this is Rally's old results format (a list); export the task with `rally task export --type json` (format 1.2) and import that",
        ));
    }
    let version = doc["info"]["format_version"].as_str().unwrap_or("");
    if !version.starts_with("1.") {
        return Err(format_err(format!(
            "unsupported results format version '{version}' (expected 1.x, from `rally task export --type json`)"
        )));
    }
    let tasks = doc["tasks"]
        .as_array()
        .ok_or_else(|| format_err("no 'tasks' list"))?;
    tasks
        .iter()
        .enumerate()
        .map(|(i, t)| {
            import_task(store, t).map_err(|e| match e {
                ImportError::Format(m) => format_err(format!("tasks[{i}]: {m}")),
                other => other,
            })
        })
        .collect()
}

fn import_task(store: &mut Store, t: &Value) -> Result<String, ImportError> {
    let uuid = uuid::Uuid::new_v4().to_string();
    let tags: Vec<String> = t["tags"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let created_at = t["created_at"]
        .as_str()
        .and_then(parse_time)
        .unwrap_or_else(crate::clock::unix_now);
    store.insert_task(&NewTask {
        uuid: &uuid,
        title: t["title"].as_str().unwrap_or("imported task"),
        description: t["description"].as_str().unwrap_or(""),
        tags: &tags,
        input_task: "",
        format_version: 2,
        created_at,
        status: "running",
        pid: None,
    })?;
    let subtasks = t["subtasks"]
        .as_array()
        .ok_or_else(|| format_err("no 'subtasks' list"))?;
    let count = subtasks
        .iter()
        .map(|s| s["workloads"].as_array().map_or(0, Vec::len))
        .sum();
    let mut index = 0;
    for (si, s) in subtasks.iter().enumerate() {
        let subtask_uuid = uuid::Uuid::new_v4().to_string();
        for (wi, w) in s["workloads"].as_array().into_iter().flatten().enumerate() {
            import_workload(store, &uuid, &subtask_uuid, si, s, w, index, count).map_err(|e| {
                match e {
                    ImportError::Format(m) => {
                        format_err(format!("subtasks[{si}].workloads[{wi}]: {m}"))
                    }
                    other => other,
                }
            })?;
            index += 1;
        }
    }
    let status = match t["status"].as_str() {
        Some("aborted") => TaskStatus::Aborted,
        Some("crashed") => TaskStatus::Crashed,
        _ => TaskStatus::Finished,
    };
    store.finish_task(&uuid, status, t["pass_sla"].as_bool().unwrap_or(false))?;
    Ok(uuid)
}

fn single(v: &Value, what: &str) -> Result<(String, Value), ImportError> {
    match v.as_object() {
        Some(m) if m.len() == 1 => Ok(m
            .iter()
            .next()
            .map(|(k, v)| (k.clone(), v.clone()))
            .unwrap_or_default()),
        _ => Err(format_err(format!(
            "'{what}' must be an object with one key"
        ))),
    }
}

/// Flatten Rally's nested atomic actions (or the legacy `{name: duration}` form).
fn flatten(
    actions: &Value,
    started: f64,
    names: &mut Vec<String>,
    ids: &mut HashMap<String, u16>,
    out: &mut Vec<ActionSpan>,
) {
    let mut id = |name: &str| -> u16 {
        if let Some(&i) = ids.get(name) {
            return i;
        }
        let i = names.len().min(u16::MAX as usize) as u16;
        names.push(name.to_string());
        ids.insert(name.to_string(), i);
        i
    };
    fn walk(
        nodes: &[Value],
        depth: u8,
        id: &mut dyn FnMut(&str) -> u16,
        out: &mut Vec<ActionSpan>,
    ) {
        for n in nodes {
            let name = n["name"].as_str().unwrap_or("");
            let started_at = n["started_at"].as_f64().unwrap_or(0.0);
            out.push(ActionSpan {
                name: id(name),
                depth,
                failed: n["failed"].as_bool().unwrap_or(false),
                started_at,
                finished_at: n["finished_at"].as_f64().unwrap_or(started_at),
            });
            if let Some(children) = n["children"].as_array() {
                walk(children, depth.saturating_add(1), id, out);
            }
        }
    }
    match actions {
        Value::Array(nodes) => walk(nodes, 0, &mut id, out),
        Value::Object(legacy) => {
            // Pre-0.10 results: durations only, laid end to end from the iteration start.
            let mut at = started;
            for (name, d) in legacy {
                let d = d.as_f64().unwrap_or(0.0);
                out.push(ActionSpan {
                    name: id(name),
                    depth: 0,
                    failed: false,
                    started_at: at,
                    finished_at: at + d,
                });
                at += d;
            }
        }
        _ => {}
    }
}

#[allow(clippy::too_many_arguments)]
fn import_workload(
    store: &mut Store,
    task: &str,
    subtask_uuid: &str,
    subtask_index: usize,
    s: &Value,
    w: &Value,
    index: usize,
    count: usize,
) -> Result<(), ImportError> {
    let (scenario, args) = single(&w["scenario"], "scenario")?;
    let (runner_type, runner) = single(&w["runner"], "runner")?;
    let mut data: Vec<&Value> = w["data"]
        .as_array()
        .ok_or_else(|| format_err("no 'data' list"))?
        .iter()
        .collect();
    data.sort_by(|a, b| {
        a["timestamp"]
            .as_f64()
            .unwrap_or(0.0)
            .total_cmp(&b["timestamp"].as_f64().unwrap_or(0.0))
    });

    let mut names = Vec::new();
    let mut ids = HashMap::new();
    let mut chunk = Chunk::new(Arc::from("rally"));
    let mut chunks = Vec::new();
    for (n, d) in data.iter().enumerate() {
        let timestamp = d["timestamp"]
            .as_f64()
            .ok_or_else(|| format_err(format!("data[{n}]: no timestamp")))?;
        let start = chunk.actions.len() as u32;
        flatten(
            &d["atomic_actions"],
            timestamp,
            &mut names,
            &mut ids,
            &mut chunk.actions,
        );
        let error = d["error"].as_array().filter(|e| !e.is_empty()).map(|e| {
            let part = |i: usize| e.get(i).and_then(Value::as_str).unwrap_or("").to_string();
            Box::new(IterationError {
                etype: part(0),
                message: part(1),
                details: part(2),
            })
        });
        let output = serde_json::from_value::<Output>(d["output"].clone())
            .ok()
            .filter(|o| !o.additive.is_empty() || !o.complete.is_empty())
            .map(Box::new);
        chunk.records.push(IterationRecord {
            iteration: n as u64 + 1,
            timestamp,
            duration: d["duration"].as_f64().unwrap_or(0.0),
            idle_duration: d["idle_duration"].as_f64().unwrap_or(0.0),
            lateness: 0.0,
            error,
            output,
            actions: start..chunk.actions.len() as u32,
            dials: Default::default(),
        });
        if chunk.len() >= 1000 {
            chunks.push(std::mem::replace(
                &mut chunk,
                Chunk::new(Arc::from("rally")),
            ));
        }
    }
    if !chunk.is_empty() {
        chunks.push(chunk);
    }

    let mut stats = WorkloadStats::new(names.clone().into());
    for c in &chunks {
        stats.add_chunk(c);
    }
    let uuid = store.insert_workload(&NewWorkload {
        task,
        subtask_uuid,
        subtask_index,
        subtask_title: s["title"].as_str().unwrap_or(""),
        subtask_description: s["description"].as_str().unwrap_or(""),
        index,
        position: w["position"].as_u64().unwrap_or(0) as usize,
        scenario: &scenario,
        description: w["description"].as_str().unwrap_or(""),
        args: &args,
        runner_type: &runner_type,
        runner: &runner,
        contexts: &w["contexts"],
        sla: &w["sla"],
        hooks: &Value::Array(
            w["hooks"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|h| h["config"].clone())
                .collect(),
        ),
        action_names: &names,
        created_at: w["created_at"]
            .as_str()
            .and_then(parse_time)
            .unwrap_or_else(crate::clock::unix_now),
    })?;
    store.add_chunks(
        chunks
            .iter()
            .enumerate()
            .map(|(i, c)| (uuid.as_str(), i as u64, c)),
    )?;

    let sla: Vec<CriterionStatus> = w["sla_results"]["sla"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            CriterionStatus::row(
                r["criterion"].as_str().unwrap_or(""),
                r["success"].as_bool().unwrap_or(false),
                r["detail"].as_str().unwrap_or(""),
            )
        })
        .collect();
    let mut errors = stats.errors.clone();
    errors.sort_by_key(|e| std::cmp::Reverse(e.count));
    let report = WorkloadReport {
        // Ours only: Rally's records do not say which iterations opened a connection.
        connections: serde_json::from_value(w["statistics"]["connections"].clone()).ok(),
        runner_error: None,
        info: WorkloadInfo {
            index,
            count,
            subtask: s["title"].as_str().unwrap_or("").to_string(),
            position: w["position"].as_u64().unwrap_or(0) as usize,
            scenario: scenario.clone(),
            runner: format!("{runner_type} ({runner})"),
            total: Some(stats.iterations),
            expected_duration: None,
            target_rate: None,
            max_concurrency: None,
        },
        stats: stats.table(),
        pass_sla: w["pass_sla"]
            .as_bool()
            .unwrap_or_else(|| sla.iter().all(|r| r.success)),
        sla,
        iterations: stats.iterations,
        failures: stats.failures,
        load_duration: w["load_duration"]
            .as_f64()
            .unwrap_or_else(|| stats.load_duration()),
        full_duration: w["full_duration"].as_f64().unwrap_or(0.0),
        start_time: w["start_time"]
            .as_f64()
            .or((stats.iterations > 0).then_some(stats.first_timestamp)),
        hooks: w["hooks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|h| serde_json::from_value::<HookResult>(h.clone()).ok())
            .collect(),
        sources: vec![SourceFigures::from_metric(
            "rally",
            &stats.duration,
            stats.failures,
        )],
        errors,
        distributed: None,
    };
    store.finish_workload(&uuid, &report, "finished")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rally_times() {
        assert_eq!(parse_time("2026-11-28T04:32:51"), Some(1_795_840_371.0));
        assert_eq!(parse_time("2000-02-29T00:00:00.5"), Some(951_782_400.5));
        assert_eq!(parse_time("nonsense"), None);
    }

    #[test]
    fn legacy_and_nested_actions_flatten() {
        let mut names = Vec::new();
        let mut ids = HashMap::new();
        let mut out = Vec::new();
        flatten(
            &serde_json::json!([{"name": "a", "started_at": 1.0, "finished_at": 2.0, "children": [{"name": "b", "started_at": 1.0, "finished_at": 1.5, "children": [], "failed": true}]}]),
            1.0,
            &mut names,
            &mut ids,
            &mut out,
        );
        flatten(
            &serde_json::json!({"a": 0.5, "c": 0.25}),
            10.0,
            &mut names,
            &mut ids,
            &mut out,
        );
        assert_eq!(names, vec!["a", "b", "c"]);
        assert_eq!(
            out.iter()
                .map(|a| (a.name, a.depth, a.failed))
                .collect::<Vec<_>>(),
            vec![(0, 0, false), (1, 1, true), (0, 0, false), (2, 0, false)]
        );
        assert_eq!((out[3].started_at, out[3].finished_at), (10.5, 10.75));
    }
}
