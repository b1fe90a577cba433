//! `rally-tui task …`: the stored history.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Subcommand, ValueEnum};

use rally_tui::headless;
use rally_tui::report::export;
use rally_tui::sla::{IterationSample, SlaChecker};
use rally_tui::store::{Store, StoreError, StoredTask};
use rally_tui::task::node::Node;

use crate::exit;

/// `println!` that returns the error instead of panicking: a reader that goes away
/// (`task show last --iterations | head -1`) ends the command quietly (see `dispatch`).
macro_rules! outln {
    ($($arg:tt)*) => {
        writeln!(std::io::stdout().lock(), $($arg)*)?
    };
}

/// `print!`, the same way.
macro_rules! out {
    ($($arg:tt)*) => {
        write!(std::io::stdout().lock(), $($arg)*)?
    };
}

#[derive(Subcommand)]
pub enum TaskCommand {
    /// List stored tasks.
    List {
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        tag: Option<String>,
        /// One JSON document instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print a task's results again, as `run` printed them.
    Show {
        /// Task uuid, a unique prefix of one, or `last`.
        id: String,
        /// Also list every iteration.
        #[arg(long)]
        iterations: bool,
    },
    /// Check a task's SLA: its stored verdicts, or its stored iterations against other criteria.
    SlaCheck {
        id: String,
        #[arg(long)]
        json: bool,
        /// Criteria to check instead of the task's own (YAML or JSON mapping, Rally's `sla` section).
        #[arg(long)]
        sla: Option<String>,
    },
    /// Write a self-contained HTML report of one or more tasks.
    Report {
        #[arg(required = true)]
        ids: Vec<String>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Export a task as Rally JSON, JUnit XML or CSV.
    Export {
        id: String,
        #[arg(long = "type", value_enum)]
        kind: ExportKind,
        /// Output file; standard output when absent.
        #[arg(long)]
        to: Option<PathBuf>,
    },
    /// Load tasks from Rally's JSON results format (what `rally task export --type json` writes).
    Import { file: PathBuf },
    /// Delete stored tasks.
    Delete {
        #[arg(required = true)]
        ids: Vec<String>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ExportKind {
    Json,
    JunitXml,
    Csv,
}

pub fn dispatch(command: TaskCommand, db: &Path) -> anyhow::Result<u8> {
    let store = Store::open(db)
        .with_context(|| format!("cannot open the task database {}", db.display()))?;
    let result = match command {
        TaskCommand::List { status, tag, json } => {
            list(&store, status.as_deref(), tag.as_deref(), json)
        }
        TaskCommand::Show { id, iterations } => show(&store, &id, iterations),
        TaskCommand::SlaCheck { id, json, sla } => sla_check(&store, &id, json, sla.as_deref()),
        TaskCommand::Report { ids, out } => report(&store, &ids, &out),
        TaskCommand::Export { id, kind, to } => export_task(&store, &id, kind, to.as_deref()),
        TaskCommand::Import { file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let mut store = store;
            match rally_tui::report::import::import(&mut store, &text) {
                Ok(uuids) => {
                    for u in uuids {
                        outln!("Imported task {u}");
                    }
                    Ok(exit::OK)
                }
                Err(e) => {
                    eprintln!("error: {}: {e}", file.display());
                    Ok(exit::FAILURE)
                }
            }
        }
        TaskCommand::Delete { ids } => {
            for id in &ids {
                let uuid = store.resolve(id)?;
                store.delete(&uuid)?;
                outln!("Deleted task {uuid}");
            }
            Ok(exit::OK)
        }
    };
    match result {
        Err(e)
            if matches!(
                e.downcast_ref::<StoreError>(),
                Some(StoreError::NoSuchTask(_) | StoreError::Ambiguous { .. })
            ) =>
        {
            eprintln!("error: {e}");
            Ok(exit::FAILURE)
        }
        // The reader of our standard output went away (`| head`): what it wanted it has,
        // as with `rally` and coreutils.
        Err(e) if broken_pipe(&e) => Ok(exit::OK),
        other => other,
    }
}

fn broken_pipe(e: &anyhow::Error) -> bool {
    let closed = |io: &std::io::Error| io.kind() == std::io::ErrorKind::BrokenPipe;
    e.chain().any(|cause| {
        cause.downcast_ref::<std::io::Error>().is_some_and(closed)
            // The CSV writer keeps its I/O error inside its own.
            || cause
                .downcast_ref::<csv::Error>()
                .is_some_and(|c| matches!(c.kind(), csv::ErrorKind::Io(io) if closed(io)))
    })
}

fn load(store: &Store, id: &str) -> anyhow::Result<StoredTask> {
    let uuid = store.resolve(id)?;
    Ok(store.task(&uuid)?)
}

fn list(store: &Store, status: Option<&str>, tag: Option<&str>, json: bool) -> anyhow::Result<u8> {
    let rows = store.list(status, tag)?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(exit::OK);
    }
    if rows.is_empty() {
        outln!("There are no tasks.");
        return Ok(exit::OK);
    }
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.uuid.clone(),
                r.title.clone(),
                export::iso_time(r.created_at).replace('T', " "),
                format!("{:.3}", r.task_duration),
                r.status.clone(),
                match r.pass_sla {
                    Some(true) => "PASS".into(),
                    Some(false) => "FAIL".into(),
                    None => "-".into(),
                },
                r.tags.join(", "),
            ]
        })
        .collect();
    out!(
        "{}",
        headless::ascii_table(
            "",
            &[
                "UUID",
                "Title",
                "Created at",
                "Load duration",
                "Status",
                "SLA",
                "Tag(s)"
            ],
            &table
        )
    );
    Ok(exit::OK)
}

fn show(store: &Store, id: &str, iterations: bool) -> anyhow::Result<u8> {
    let task = load(store, id)?;
    outln!(
        "Task {}: {} ({}, SLA {})",
        task.row.uuid,
        task.row.title,
        task.row.status,
        match task.row.pass_sla {
            Some(true) => "passed",
            Some(false) => "failed",
            None => "not checked",
        }
    );
    for w in &task.workloads {
        match &w.report {
            Some(r) => out!("{}", headless::workload_summary(&task.row.uuid, r)),
            None => {
                // No report (the run crashed or was killed): say what is stored all the same,
                // so that `show` and `export` agree.
                let (mut stored, mut failed) = (0u64, 0u64);
                store.for_each_chunk(&w.uuid, |chunk| {
                    stored += chunk.records.len() as u64;
                    failed += chunk.records.iter().filter(|r| r.failed()).count() as u64;
                })?;
                if stored == 0 {
                    outln!(
                        "\n{} [{}] {}: {} (no results)",
                        w.subtask,
                        w.position,
                        w.scenario,
                        w.status
                    );
                } else {
                    outln!(
                        "\n{} [{}] {}: {} ({stored} iterations stored, {failed} failed; no \
                         summary was made: see `task export` or `task show --iterations`)",
                        w.subtask,
                        w.position,
                        w.scenario,
                        w.status
                    );
                }
            }
        }
        if iterations {
            let mut rows = Vec::new();
            store.for_each_chunk(&w.uuid, |chunk| {
                for r in &chunk.records {
                    rows.push(vec![
                        r.iteration.to_string(),
                        export::iso_time(r.timestamp),
                        format!("{:.3}", r.duration),
                        chunk.source.to_string(),
                        r.error
                            .as_ref()
                            .map_or_else(String::new, |e| format!("{}: {}", e.etype, e.message)),
                    ]);
                }
            })?;
            rows.sort_by_key(|r| r[0].parse::<u64>().unwrap_or(0));
            out!(
                "{}",
                headless::ascii_table(
                    "Iterations",
                    &["Iteration", "Started", "Duration (sec)", "Agent", "Error"],
                    &rows
                )
            );
        }
    }
    Ok(exit::OK)
}

fn sla_check(store: &Store, id: &str, json: bool, sla: Option<&str>) -> anyhow::Result<u8> {
    let task = load(store, id)?;
    let criteria = match sla {
        None => None,
        Some(text) => {
            let node = Node::parse(text).map_err(|e| {
                anyhow::anyhow!(
                    "--sla: invalid YAML/JSON at {}:{}: {}",
                    e.mark.line,
                    e.mark.col,
                    e.message
                )
            })?;
            let serde_json::Value::Object(map) = node.to_json() else {
                eprintln!(
                    "error: --sla must be a mapping of criteria, e.g. '{{failure_rate: {{max: 0}}}}'"
                );
                return Ok(exit::USAGE);
            };
            match SlaChecker::from_config(&map) {
                Ok(_) => Some(map),
                Err(e) => {
                    eprintln!("error: --sla: {e}");
                    return Ok(exit::USAGE);
                }
            }
        }
    };
    let mut rows = Vec::new();
    for w in &task.workloads {
        // Rally's `benchmark` is the scenario's name alone.
        let benchmark = w.scenario.clone();
        let mut results = match &criteria {
            None => w.report.as_ref().map(|r| r.sla.clone()).unwrap_or_default(),
            Some(map) => {
                let mut checker =
                    SlaChecker::from_config(map).map_err(|e| anyhow::anyhow!("{e}"))?;
                let mut tops: Vec<(String, f64)> = Vec::new();
                store.for_each_chunk(&w.uuid, |chunk| {
                    for r in &chunk.records {
                        tops.clear();
                        for a in chunk.actions_of(r).iter().filter(|a| a.depth == 0) {
                            tops.push((
                                w.action_names
                                    .get(a.name as usize)
                                    .cloned()
                                    .unwrap_or_default(),
                                a.duration(),
                            ));
                        }
                        let borrowed: Vec<(&str, f64)> =
                            tops.iter().map(|(n, d)| (n.as_str(), *d)).collect();
                        checker.add(&IterationSample {
                            duration: r.duration,
                            failed: r.error.is_some(),
                            top_level_actions: &borrowed,
                        });
                    }
                })?;
                checker.results()
            }
        };
        // Within a workload Rally sorts the criteria by name.
        results.sort_by(|a, b| a.criterion.cmp(&b.criterion));
        for c in results {
            rows.push((benchmark.clone(), w.position, c));
        }
    }
    let failed = rows.iter().filter(|(_, _, c)| !c.success).count();
    if json {
        // Rally's list, its keys in Rally's order (`criterion`, `detail`, then the added
        // `status`, `benchmark`, `pos`), on one line as its `json.dumps` writes it.
        let out: Vec<serde_json::Value> = rows
            .iter()
            .map(|(b, pos, c)| serde_json::json!({"criterion": c.criterion, "detail": c.detail, "status": if c.success { "PASS" } else { "FAIL" }, "benchmark": b, "pos": pos}))
            .collect();
        outln!("{}", serde_json::to_string(&out)?);
    } else {
        let table: Vec<Vec<String>> = rows
            .iter()
            .map(|(b, pos, c)| {
                vec![
                    b.clone(),
                    pos.to_string(),
                    c.criterion.clone(),
                    if c.success { "PASS" } else { "FAIL" }.into(),
                    c.detail.replace('\n', " "),
                ]
            })
            .collect();
        out!(
            "{}",
            headless::ascii_table(
                "",
                &["Benchmark", "Pos", "Criterion", "Status", "Detail"],
                &table
            )
        );
    }
    // Rally's codes: 2 when there is nothing to check, else the number of failed criteria
    // (kept below 256, where a shell would see it wrap to 0).
    Ok(if rows.is_empty() {
        2
    } else {
        failed.min(255) as u8
    })
}

fn report(store: &Store, ids: &[String], out: &Path) -> anyhow::Result<u8> {
    let tasks = ids
        .iter()
        .map(|id| load(store, id))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let reports = tasks
        .iter()
        .map(|t| rally_tui::report::build(store, t))
        .collect::<Result<Vec<_>, _>>()?;
    let html = rally_tui::report::html::render(&reports);
    std::fs::write(out, html).with_context(|| format!("cannot write {}", out.display()))?;
    outln!(
        "Report of {} task{} written to {}",
        tasks.len(),
        if tasks.len() == 1 { "" } else { "s" },
        out.display()
    );
    Ok(exit::OK)
}

fn export_task(store: &Store, id: &str, kind: ExportKind, to: Option<&Path>) -> anyhow::Result<u8> {
    let task = load(store, id)?;
    let mut sink: Box<dyn Write> = match to {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    match kind {
        ExportKind::Json => export::rally_json(store, std::slice::from_ref(&task), &mut sink)?,
        ExportKind::JunitXml => {
            sink.write_all(export::junit(std::slice::from_ref(&task)).as_bytes())?
        }
        ExportKind::Csv => export::csv(store, &task, &mut sink)?,
    }
    sink.flush()?;
    Ok(exit::OK)
}
