//! The headless front end (`--no-tui`): one progress line per interval, then Rally's
//! `task detailed` tables for each workload, for CI logs.

use std::io::Write;

use tokio::sync::broadcast;

use crate::events::{Event, Progress, WorkloadReport};
use crate::sla::CriterionStatus;
use crate::stats::{StatsRow, StatsTable};

/// Print events until the task finishes (or the engine goes away).
pub async fn print_events(mut events: broadcast::Receiver<Event>, mut out: impl Write) {
    let mut sla_ok: Option<bool> = None;
    let mut task = String::new();
    // (alive, all) of the current distributed workload's agents.
    let mut agents: Option<(usize, usize)> = None;
    // Whether any agent is still running its load (set by the agents snapshots).
    let mut agents_running = true;
    loop {
        let event = match events.recv().await {
            Ok(e) => e,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                let _ = writeln!(out, "(missed {n} events)");
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => break,
        };
        let text = match &event {
            Event::TaskStarted {
                uuid,
                title,
                workloads,
            } => {
                task.clone_from(uuid);
                format!(
                    "Task {uuid}: {title} ({} workload{})\n",
                    workloads.len(),
                    if workloads.len() == 1 { "" } else { "s" }
                )
            }
            Event::WorkloadStarted(info) => {
                sla_ok = None;
                agents = None;
                agents_running = true;
                format!(
                    "\n=== Workload {}/{}: {} [{}] {} — {}\n",
                    info.index + 1,
                    info.count,
                    info.subtask,
                    info.position,
                    info.scenario,
                    info.runner
                )
            }
            Event::Progress(p) => {
                let line = progress_line(p, sla_ok, agents);
                match p.storing(agents_running) {
                    // The load is over; what remains is fetching its results.
                    Some((stored, run)) => {
                        format!("{} | storing results {stored}/{run}\n", line.trim_end())
                    }
                    None => line,
                }
            }
            Event::Agents(a) => {
                let alive = a
                    .agents
                    .iter()
                    .filter(|r| r.state != crate::events::InstanceState::Lost)
                    .count();
                agents = Some((alive, a.agents.len()));
                agents_running = a.agents.iter().any(|r| {
                    !matches!(
                        r.state,
                        crate::events::InstanceState::Done | crate::events::InstanceState::Lost
                    )
                });
                continue;
            }
            Event::Sla(s) => {
                sla_ok = Some(s.total.iter().all(|c| c.success));
                continue;
            }
            // The tables come once, at the workload's end.
            Event::Statistics(_) | Event::Count { .. } => continue,
            Event::Stopping { reason } => {
                format!("Stopping: {reason}; no new iterations start, in-flight ones finish\n")
            }
            Event::WorkloadFinished(report) => workload_summary(&task, report),
            Event::TaskFinished {
                uuid,
                status,
                pass_sla,
            } => {
                let text = task_verdict(uuid, *status, *pass_sla);
                let _ = out.write_all(text.as_bytes());
                let _ = out.flush();
                break;
            }
            Event::Log { level, message } => format!("{level}: {message}\n"),
        };
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }
}

/// `Task ID finished: SLA passed`, the last line of a run's summary.
pub fn task_verdict(uuid: &str, status: crate::events::TaskStatus, pass_sla: bool) -> String {
    let mut out = format!(
        "\nTask {uuid} {}: SLA {}\n",
        status.as_str(),
        if pass_sla { "passed" } else { "failed" }
    );
    if !pass_sla {
        // Rally's last words when an SLA failed.
        out.push_str("At least one workload did not pass SLA criteria.\n");
    }
    out
}

fn secs(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.3}s"))
}

/// `[   3.0s] 1234/5000 iterations | 412.3/s | p95 0.105s | failures 0 (0.0%) | SLA ok`
pub fn progress_line(p: &Progress, sla_ok: Option<bool>, agents: Option<(usize, usize)>) -> String {
    let a = &p.all;
    let done = match p.total {
        Some(t) => format!("{}/{t}", a.iterations),
        None => a.iterations.to_string(),
    };
    let pct = if a.iterations > 0 {
        a.failures as f64 * 100.0 / a.iterations as f64
    } else {
        0.0
    };
    let sla = match sla_ok {
        Some(true) => "SLA ok",
        Some(false) => "SLA FAILING",
        None => "SLA -",
    };
    let agents = match agents {
        Some((alive, all)) => format!("agents {alive}/{all} alive"),
        None => "local".to_string(),
    };
    // The workload's p95 so far; the last interval's only when no total is known, and said.
    let p95 = match (a.p95_total, a.p95) {
        (None, Some(v)) => format!("p95 (interval) {}", secs(Some(v))),
        (total, _) => format!("p95 {}", secs(total)),
    };
    format!(
        "[{:>7.1}s] {done} iterations | {:.1}/s | {p95} | failures {} ({pct:.1}%) | {sla} | {agents}\n",
        p.elapsed, a.rate, a.failures,
    )
}

fn cell(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".into(), |v| format!("{v:.3}"))
}

/// An ASCII table with a title row, like the prettytable output Rally prints.
pub fn ascii_table(title: &str, header: &[&str], rows: &[Vec<String>]) -> String {
    let cols = header.len();
    let mut width: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate().take(cols) {
            width[i] = width[i].max(c.chars().count());
        }
    }
    let inner: usize = width.iter().map(|w| w + 3).sum::<usize>() - 1;
    let rule = |fill: char| {
        let mut s = String::from("+");
        for w in &width {
            s.push_str(&fill.to_string().repeat(w + 2));
            s.push('+');
        }
        s.push('\n');
        s
    };
    let mut out = String::new();
    if !title.is_empty() {
        out.push_str(&format!("+{}+\n", "-".repeat(inner)));
        out.push_str(&format!("|{:^inner$}|\n", title));
    }
    out.push_str(&rule('-'));
    let line = |cells: &[String]| {
        let mut s = String::from("|");
        for (i, w) in width.iter().enumerate() {
            let c = cells.get(i).map_or("", String::as_str);
            s.push_str(&format!(" {c:<w$} |"));
        }
        s.push('\n');
        s
    };
    out.push_str(&line(
        &header.iter().map(|h| h.to_string()).collect::<Vec<_>>(),
    ));
    out.push_str(&rule('-'));
    for r in rows {
        out.push_str(&line(r));
    }
    out.push_str(&rule('-'));
    out
}

fn stats_rows(row: &StatsRow, depth: usize, out: &mut Vec<Vec<String>>) {
    let name = if depth == 0 {
        row.name.clone()
    } else {
        format!("{} -> {}", " ".repeat((depth - 1) * 2), row.name)
    };
    out.push(vec![
        name,
        cell(row.min),
        cell(row.median),
        cell(row.p90),
        cell(row.p95),
        cell(row.max),
        cell(row.avg),
        row.success
            .map_or_else(|| "n/a".into(), |s| format!("{s:.1}%")),
        row.count.to_string(),
    ]);
    for c in &row.children {
        stats_rows(c, depth + 1, out);
    }
}

/// Rally's "Response Times (sec)" table.
pub fn response_times(table: &StatsTable) -> String {
    let mut rows = Vec::new();
    for a in &table.atomics {
        stats_rows(a, 0, &mut rows);
    }
    stats_rows(&table.total, 0, &mut rows);
    ascii_table(
        "Response Times (sec)",
        &[
            "Action",
            "Min (sec)",
            "Median (sec)",
            "90%ile (sec)",
            "95%ile (sec)",
            "Max (sec)",
            "Avg (sec)",
            "Success",
            "Count",
        ],
        &rows,
    )
}

/// The SLA table: criterion, detail, PASS/FAIL.
pub fn sla_table(rows: &[CriterionStatus]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|c| {
            vec![
                c.criterion.clone(),
                c.detail.replace('\n', " "),
                if c.success { "PASS" } else { "FAIL" }.to_string(),
            ]
        })
        .collect();
    ascii_table("", &["Criterion", "Detail", "Status"], &rows)
}

/// What `rally task detailed` shows for one workload.
/// Per-agent figures of a distributed workload, and what happened to lost agents' work.
fn agents_table(r: &WorkloadReport, d: &crate::events::DistributedSummary) -> String {
    let rows: Vec<Vec<String>> = r
        .sources
        .iter()
        .map(|s| {
            vec![
                s.name.clone(),
                if s.lost { "lost" } else { "done" }.to_string(),
                s.iterations.to_string(),
                s.failures.to_string(),
                cell(s.p50),
                cell(s.p95),
                cell(s.p99),
            ]
        })
        .collect();
    let mut out = ascii_table(
        &format!("Agents ({})", d.agents.len()),
        &[
            "Agent",
            "State",
            "Iterations",
            "Failures",
            "p50 (sec)",
            "p95 (sec)",
            "p99 (sec)",
        ],
        &rows,
    );
    if !d.lost.is_empty() {
        // A duration workload re-runs nothing (the others carry its concurrency instead):
        // "0 … were run by the others" would read as work left undone.
        let rerun = match d.reissued {
            0 => String::new(),
            n => format!("; {n} of their unfinished iterations were run by the others"),
        };
        out.push_str(&format!("Lost agents: {}{rerun}\n", d.lost.join(", ")));
    }
    for back in &d.returned {
        out.push_str(&format!("Back after being lost: {back}\n"));
    }
    for moved in &d.reshares {
        out.push_str(&format!("Shares moved: {moved}\n"));
    }
    if d.duplicates > 0 {
        out.push_str(&format!(
            "{} duplicate results (iterations already stored) were dropped\n",
            d.duplicates
        ));
    }
    for m in &d.missing {
        out.push_str(&format!("Missing results: {m}\n"));
    }
    out
}

/// `Connections: 50 opened (10 TLS full handshakes, 40 resumed); 99,950 iterations reused one`.
fn connections_line(c: &crate::stats::ConnectionCounts) -> String {
    let mut kinds = Vec::new();
    if c.plain > 0 {
        kinds.push(format!("{} plain TCP", c.plain));
    }
    if c.tls_full > 0 {
        kinds.push(format!("{} TLS full handshakes", c.tls_full));
    }
    if c.tls_resumed > 0 {
        kinds.push(format!("{} TLS resumed", c.tls_resumed));
    }
    format!(
        "Connections: {} opened ({}); {} iterations reused their slot's connection\n",
        c.opened(),
        kinds.join(", "),
        c.reused
    )
}

/// What `rally task detailed` shows of one workload; `task` is the task's id, for Rally's
/// `Task <id> has <N> error(s)` line.
pub fn workload_summary(task: &str, r: &WorkloadReport) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "\n{} [{}] {}: {} iterations, {} failed\n",
        r.info.subtask, r.info.position, r.info.scenario, r.iterations, r.failures
    ));
    out.push_str(&response_times(&r.stats));
    let rate = if r.load_duration > 0.0 {
        r.iterations as f64 / r.load_duration
    } else {
        0.0
    };
    out.push_str(&format!(
        "Load duration: {:.6} s ({rate:.1} iterations/s)\nFull duration: {:.6} s\n",
        r.load_duration, r.full_duration
    ));
    if let Some(d) = &r.distributed {
        out.push_str(&agents_table(r, d));
    }
    if let Some(c) = &r.connections {
        out.push_str(&connections_line(c));
    }
    if let [only] = r.errors.as_slice()
        && r.iterations > 1
        && only.count == r.iterations
    {
        // Said once, in words, before the table repeats it with its count.
        out.push_str(&format!(
            "Every iteration failed the same way: {}: {}\n",
            only.etype, only.message
        ));
    }
    if r.failures > 0 {
        // Rally's header over its error list, which scripts grep for.
        out.push_str(&format!("Task {task} has {} error(s)\n", r.failures));
    }
    if !r.errors.is_empty() {
        out.push_str("Errors:\n");
        for e in &r.errors {
            out.push_str(&format!("  {:>8} × {}: {}\n", e.count, e.etype, e.message));
        }
    }
    for h in &r.hooks {
        let summary: Vec<String> = h.summary.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        out.push_str(&format!(
            "Hook {}: {}\n",
            h.config["action"]["sys_call"].as_str().unwrap_or("?"),
            if summary.is_empty() {
                "never fired".to_string()
            } else {
                summary.join(", ")
            }
        ));
    }
    if !r.sla.is_empty() {
        out.push_str("SLA:\n");
        out.push_str(&sla_table(&r.sla));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The progress line's p95 is the workload's; the interval's only under its own name.
    #[test]
    fn progress_line_says_which_p95() {
        let mut p = Progress {
            workload: 0,
            elapsed: 1.0,
            total: Some(10),
            all: crate::events::Figures {
                iterations: 5,
                p95: Some(0.1),
                p95_total: Some(0.5),
                ..Default::default()
            },
            sources: Vec::new(),
            in_flight: None,
            stored: None,
        };
        let line = progress_line(&p, None, None);
        assert!(line.contains("| p95 0.500s"), "{line}");
        p.all.p95_total = None;
        let line = progress_line(&p, None, None);
        assert!(line.contains("| p95 (interval) 0.100s"), "{line}");
    }

    #[test]
    fn table_layout() {
        let t = ascii_table("T", &["a", "bb"], &[vec!["xxx".into(), "y".into()]]);
        let lines: Vec<&str> = t.lines().collect();
        assert!(
            lines
                .iter()
                .all(|l| l.chars().count() == lines[0].chars().count()),
            "{t}"
        );
        assert!(t.contains("| xxx | y  |"));
    }

    #[test]
    fn storing_is_said_only_when_no_agent_runs_and_results_are_behind() {
        let mut p = Progress {
            workload: 0,
            elapsed: 9.0,
            total: None,
            all: crate::events::Figures {
                iterations: 2000,
                ..Default::default()
            },
            sources: Vec::new(),
            in_flight: None,
            stored: Some(1500),
        };
        assert_eq!(p.storing(true), None);
        assert_eq!(p.storing(false), Some((1500, 2000)));
        p.stored = Some(2000);
        assert_eq!(p.storing(false), None);
        p.stored = None;
        assert_eq!(p.storing(false), None, "a local run never waits on agents");
    }
}
