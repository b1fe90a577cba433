//! Exports of stored tasks: JUnit XML for CI, CSV of every iteration, and Rally's JSON results
//! format (`format_version` 1.2). CSV and JSON stream the iterations chunk by chunk.

use std::io::Write;

use serde_json::{Value, json};

use crate::chunk::{ActionSpan, Chunk, IterationRecord};
use crate::store::{Store, StoreError, StoredTask, StoredWorkload};

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot write: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot write CSV: {0}")]
    Csv(#[from] csv::Error),
}

/// `class` and `name` of a scenario, as Rally's JUnit exporter splits `Dummy.dummy`.
fn split_scenario(name: &str) -> (&str, &str) {
    name.split_once('.').unwrap_or(("", name))
}

/// One `<testsuite>` per task, one `<testcase>` per workload; a failed SLA is a `<failure>`
/// listing the failed criteria.
pub fn junit(tasks: &[StoredTask]) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<testsuites>\n");
    for t in tasks {
        let failures = t
            .workloads
            .iter()
            .filter(|w| !w.report.as_ref().is_some_and(|r| r.pass_sla))
            .count();
        out.push_str(&format!(
            "  <testsuite id=\"{}\" name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"0\" time=\"{:.2}\" timestamp=\"{}\">\n",
            super::html::esc(&t.row.uuid),
            super::html::esc(&t.row.title),
            t.workloads.len(),
            (t.updated_at - t.row.created_at).max(0.0),
            iso_time(t.row.created_at)
        ));
        for w in &t.workloads {
            let (class, name) = split_scenario(&w.scenario);
            let time = w.report.as_ref().map_or(0.0, |r| r.full_duration);
            out.push_str(&format!(
                "    <testcase classname=\"{}\" name=\"{}\" id=\"{}\" time=\"{time:.2}\" timestamp=\"{}\">\n",
                super::html::esc(class),
                super::html::esc(name),
                super::html::esc(&w.uuid),
                iso_time(w.created_at)
            ));
            match &w.report {
                Some(r) if !r.pass_sla => {
                    let details: Vec<String> = r
                        .sla
                        .iter()
                        .filter(|c| !c.success)
                        .map(|c| c.detail.clone())
                        .collect();
                    out.push_str(&format!(
                        "      <failure message=\"{}\">{}</failure>\n",
                        super::html::esc(&details.join("; ")),
                        super::html::esc(&details.join("\n"))
                    ));
                }
                Some(_) => {}
                None => out.push_str(&format!(
                    "      <failure message=\"workload did not finish ({})\"/>\n",
                    super::html::esc(&w.status)
                )),
            }
            out.push_str("    </testcase>\n");
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

/// `2026-11-28T04:32:51` (UTC), the timestamp format of Rally's exports.
pub fn iso_time(unix: f64) -> String {
    let secs = unix.max(0.0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Summed duration per action name within one iteration (all depths).
fn action_durations(names: &[String], actions: &[ActionSpan]) -> Vec<Option<f64>> {
    let mut sums = vec![None; names.len()];
    for a in actions {
        if let Some(slot) = sums.get_mut(a.name as usize) {
            *slot = Some(slot.unwrap_or(0.0) + a.duration());
        }
    }
    sums
}

/// One row per iteration: task, workload, iteration, agent, timings, lateness (`rps`), the
/// connections it opened (and how their TLS sessions began), error,
/// and a column per atomic action (its summed duration in that iteration).
pub fn csv(store: &Store, task: &StoredTask, out: impl Write) -> Result<(), ExportError> {
    let mut actions: Vec<String> = Vec::new();
    for w in &task.workloads {
        for n in &w.action_names {
            if !actions.contains(n) {
                actions.push(n.clone());
            }
        }
    }
    let mut writer = csv::Writer::from_writer(out);
    let mut header: Vec<String> = [
        "task",
        "workload",
        "subtask",
        "position",
        "scenario",
        "iteration",
        "agent",
        "timestamp",
        "duration",
        "idle_duration",
        "lateness",
        "new_connections",
        "tls_full_handshakes",
        "tls_resumed",
        "error_type",
        "error_message",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    header.extend(actions.iter().map(|a| format!("action:{a}")));
    writer.write_record(&header)?;
    for w in &task.workloads {
        let columns: Vec<usize> = w
            .action_names
            .iter()
            .map(|n| actions.iter().position(|a| a == n).unwrap_or(0))
            .collect();
        let mut failure = None;
        store.for_each_chunk(&w.uuid, |chunk| {
            if failure.is_some() {
                return;
            }
            for r in &chunk.records {
                let mut row = vec![
                    task.row.uuid.clone(),
                    w.uuid.clone(),
                    w.subtask.clone(),
                    w.position.to_string(),
                    w.scenario.clone(),
                    r.iteration.to_string(),
                    chunk.source.to_string(),
                    format!("{:.6}", r.timestamp),
                    format!("{:.6}", r.duration),
                    format!("{:.6}", r.idle_duration),
                    format!("{:.6}", r.lateness),
                    (u16::from(r.dials.plain)
                        + u16::from(r.dials.tls_full)
                        + u16::from(r.dials.tls_resumed))
                    .to_string(),
                    r.dials.tls_full.to_string(),
                    r.dials.tls_resumed.to_string(),
                    r.error
                        .as_ref()
                        .map(|e| e.etype.clone())
                        .unwrap_or_default(),
                    r.error
                        .as_ref()
                        .map(|e| e.message.clone())
                        .unwrap_or_default(),
                ];
                let mut cells = vec![String::new(); actions.len()];
                for (i, d) in action_durations(&w.action_names, chunk.actions_of(r))
                    .into_iter()
                    .enumerate()
                {
                    if let (Some(d), Some(&col)) = (d, columns.get(i)) {
                        cells[col] = format!("{d:.6}");
                    }
                }
                row.extend(cells);
                if let Err(e) = writer.write_record(&row) {
                    failure = Some(e);
                    return;
                }
            }
        })?;
        if let Some(e) = failure {
            return Err(e.into());
        }
    }
    writer.flush()?;
    Ok(())
}

/// Rally's nested `atomic_actions` list from our flat pre-order spans.
pub fn atomic_tree(names: &[String], actions: &[ActionSpan]) -> Value {
    fn build(names: &[String], actions: &[ActionSpan], i: &mut usize, depth: u8) -> Vec<Value> {
        let mut level = Vec::new();
        while *i < actions.len() && actions[*i].depth >= depth {
            let a = actions[*i];
            if a.depth > depth {
                // A deeper action without a parent at this depth: adopt it at this level.
                let children = build(names, actions, i, a.depth);
                level.extend(children);
                continue;
            }
            *i += 1;
            let children = build(names, actions, i, depth + 1);
            let mut node = json!({
                "name": names.get(a.name as usize).cloned().unwrap_or_default(),
                "started_at": a.started_at,
                "finished_at": a.finished_at,
                "children": children,
            });
            if a.failed {
                node["failed"] = json!(true);
            }
            level.push(node);
        }
        level
    }
    let mut i = 0;
    Value::Array(build(names, actions, &mut i, 0))
}

/// One iteration in Rally's result shape.
pub fn rally_record(names: &[String], chunk: &Chunk, r: &IterationRecord) -> Value {
    let output = r.output.as_deref().map_or_else(
        || json!({"additive": [], "complete": []}),
        |o| json!({"additive": o.additive, "complete": o.complete}),
    );
    json!({
        "timestamp": r.timestamp,
        "duration": r.duration,
        "idle_duration": r.idle_duration,
        "error": r.error.as_ref().map_or_else(Vec::new, |e| vec![e.etype.clone(), e.message.clone(), e.details.clone()]),
        "output": output,
        "atomic_actions": atomic_tree(names, chunk.actions_of(r)),
    })
}

/// Our statistics table in the shape of Rally's `MainStatsTable.to_dict()`.
fn rally_stats(table: &crate::stats::StatsTable) -> Value {
    fn row(r: &crate::stats::StatsRow) -> Value {
        let round =
            |v: Option<f64>| v.map_or(json!("n/a"), |v| json!((v * 1000.0).round() / 1000.0));
        // Our names carry Rally's "(xN)" display suffix; Rally keeps it apart.
        let (name, per_iteration) = match r.name.rsplit_once(" (x") {
            Some((n, count)) => (
                n.to_string(),
                count.trim_end_matches(')').parse::<u64>().unwrap_or(1),
            ),
            None => (r.name.clone(), 1),
        };
        json!({
            "name": name,
            "display_name": r.name,
            "count_per_iteration": per_iteration,
            "data": {
                "iteration_count": r.count,
                "min": round(r.min), "median": round(r.median), "90%ile": round(r.p90), "95%ile": round(r.p95),
                "max": round(r.max), "avg": round(r.avg),
                "success": r.success.map_or_else(|| "n/a".to_string(), |s| format!("{s:.1}%")),
            },
            "children": r.children.iter().map(row).collect::<Vec<_>>(),
        })
    }
    json!({"atomics": table.atomics.iter().map(row).collect::<Vec<_>>(), "total": row(&table.total)})
}

fn workload_json(w: &StoredWorkload) -> serde_json::Map<String, Value> {
    let r = w.report.as_ref();
    let mut m = serde_json::Map::new();
    m.insert("uuid".into(), json!(w.uuid));
    m.insert("description".into(), json!(w.description));
    m.insert("runner".into(), json!({ w.runner_type.clone(): w.runner }));
    m.insert("runner_type".into(), json!(w.runner_type));
    m.insert(
        "hooks".into(),
        json!(r.map_or_else(Vec::new, |r| r.hooks.iter().map(|h| json!(h)).collect())),
    );
    m.insert("scenario".into(), json!({ w.scenario.clone(): w.args }));
    m.insert(
        "min_duration".into(),
        json!(r.and_then(|r| r.stats.total.min)),
    );
    m.insert(
        "max_duration".into(),
        json!(r.and_then(|r| r.stats.total.max)),
    );
    m.insert("start_time".into(), json!(r.and_then(|r| r.start_time)));
    m.insert(
        "load_duration".into(),
        json!(r.map_or(0.0, |r| r.load_duration)),
    );
    m.insert(
        "full_duration".into(),
        json!(r.map_or(0.0, |r| r.full_duration)),
    );
    m.insert(
        "statistics".into(),
        // `statistics` is open in Rally's schema: `connections` (ours) imports into Rally.
        match r.and_then(|r| r.connections) {
            Some(c) => json!({"durations": r.map(|r| rally_stats(&r.stats)), "connections": c}),
            None => json!({"durations": r.map(|r| rally_stats(&r.stats))}),
        },
    );
    m.insert(
        "failed_iteration_count".into(),
        json!(r.map_or(0, |r| r.failures)),
    );
    m.insert(
        "total_iteration_count".into(),
        json!(r.map_or(0, |r| r.iterations)),
    );
    m.insert("created_at".into(), json!(iso_time(w.created_at)));
    m.insert("updated_at".into(), json!(iso_time(w.updated_at)));
    m.insert("contexts".into(), w.contexts.clone());
    m.insert("contexts_results".into(), json!([]));
    m.insert("position".into(), json!(w.position));
    m.insert("pass_sla".into(), json!(r.is_some_and(|r| r.pass_sla)));
    m.insert("sla_results".into(), json!({"sla": r.map_or_else(Vec::new, |r| r.sla.iter().map(|c| json!({"criterion": c.criterion, "success": c.success, "detail": c.detail})).collect())}));
    m.insert("sla".into(), w.sla.clone());
    m
}

/// Rally's results JSON (`{"info": …, "tasks": […]}`, `format_version` 1.2), streamed: each
/// workload's `data` is written chunk by chunk.
pub fn rally_json(
    store: &Store,
    tasks: &[StoredTask],
    mut out: impl Write,
) -> Result<(), ExportError> {
    let info = json!({"rally_version": concat!("rally-tui ", env!("CARGO_PKG_VERSION")), "generated_at": iso_time(crate::clock::unix_now()), "format_version": "1.2"});
    write!(out, "{{\"info\": {info}, \"tasks\": [")?;
    for (ti, t) in tasks.iter().enumerate() {
        if ti > 0 {
            write!(out, ", ")?;
        }
        let head = json!({
            "uuid": t.row.uuid, "title": t.row.title, "description": t.description, "status": t.row.status,
            "tags": t.row.tags, "env_uuid": "", "env_name": "rally-tui", "created_at": iso_time(t.row.created_at),
            "updated_at": iso_time(t.updated_at), "pass_sla": t.row.pass_sla.unwrap_or(false),
        });
        let head = head.to_string();
        write!(out, "{}, \"subtasks\": [", &head[..head.len() - 1])?;
        let mut subtasks: Vec<(&str, &StoredWorkload, Vec<&StoredWorkload>)> = Vec::new();
        for w in &t.workloads {
            match subtasks.iter_mut().find(|(u, _, _)| *u == w.subtask_uuid) {
                Some(s) => s.2.push(w),
                None => subtasks.push((&w.subtask_uuid, w, vec![w])),
            }
        }
        for (si, (uuid, first, workloads)) in subtasks.iter().enumerate() {
            if si > 0 {
                write!(out, ", ")?;
            }
            let pass = workloads
                .iter()
                .all(|w| w.report.as_ref().is_some_and(|r| r.pass_sla));
            write!(
                out,
                "{{\"uuid\": {}, \"title\": {}, \"description\": {}, \"status\": {}, \"created_at\": {}, \"updated_at\": {}, \"sla\": {{}}, \"pass_sla\": {pass}, \"workloads\": [",
                json!(uuid),
                json!(first.subtask),
                json!(first.subtask_description),
                json!(t.row.status),
                json!(iso_time(t.row.created_at)),
                json!(iso_time(t.updated_at))
            )?;
            for (wi, w) in workloads.iter().enumerate() {
                if wi > 0 {
                    write!(out, ", ")?;
                }
                let head = Value::Object(workload_json(w)).to_string();
                write!(out, "{}, \"data\": [", &head[..head.len() - 1])?;
                let mut first = true;
                let mut failure = None;
                store.for_each_chunk(&w.uuid, |chunk| {
                    for r in &chunk.records {
                        if failure.is_some() {
                            return;
                        }
                        let sep = if first { "" } else { ", " };
                        first = false;
                        if let Err(e) =
                            write!(out, "{sep}{}", rally_record(&w.action_names, &chunk, r))
                        {
                            failure = Some(e);
                        }
                    }
                })?;
                if let Some(e) = failure {
                    return Err(e.into());
                }
                write!(out, "]}}")?;
            }
            write!(out, "]}}")?;
        }
        write!(out, "]}}")?;
    }
    writeln!(out, "]}}")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(name: u16, depth: u8) -> ActionSpan {
        ActionSpan {
            name,
            depth,
            failed: depth == 1,
            started_at: 1.0,
            finished_at: 2.0,
        }
    }

    #[test]
    fn atomic_tree_nests_like_rally() {
        let names = vec!["foo".to_string(), "bar".to_string(), "baz".to_string()];
        let tree = atomic_tree(&names, &[span(0, 0), span(1, 1), span(2, 2), span(2, 0)]);
        assert_eq!(tree[0]["name"], "foo");
        assert_eq!(tree[0]["children"][0]["name"], "bar");
        assert_eq!(tree[0]["children"][0]["failed"], true);
        assert_eq!(tree[0]["children"][0]["children"][0]["name"], "baz");
        assert_eq!(tree[1]["name"], "baz");
        assert!(tree[1].get("failed").is_none());
    }

    #[test]
    fn iso_dates() {
        assert_eq!(iso_time(0.0), "1970-01-01T00:00:00");
        assert_eq!(iso_time(1_795_840_371.0), "2026-11-28T04:32:51");
        assert_eq!(iso_time(951_782_400.0), "2000-02-29T00:00:00");
    }
}
