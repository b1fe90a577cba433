//! Task history in an embedded SQLite file: tasks, subtasks, workloads with their results,
//! and every iteration record, stored in chunks as they arrive.
//!
//! Chunks are stored as blobs in the chunk codec's format (as Rally stores its
//! `workload_data` chunks as JSON), which keeps writes far above two million records per
//! second; readers stream them back one chunk at a time, so no command ever holds a whole
//! task's iterations in memory.

mod record;
mod schema;
pub mod writer;

pub use record::Record;

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};

use crate::chunk::{Chunk, codec};
use crate::clock::unix_now;
use crate::events::{TaskStatus, WorkloadInfo, WorkloadReport};
use crate::task::{SubtaskSpec, TaskSpec, WorkloadSpec};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("cannot create the database directory {path}: {source}")]
    Directory {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the database was written by a newer rally-tui (schema {found}, this build knows {known})"
    )]
    TooNew { found: i64, known: i64 },
    #[error("no task matches '{0}'")]
    NoSuchTask(String),
    #[error("'{id}' matches {count} tasks; give more of the uuid")]
    Ambiguous { id: String, count: usize },
    #[error("stored data of workload {workload} is damaged: {detail}")]
    Damaged { workload: String, detail: String },
}

/// Where the database lives: `--db`, else `RALLY_TUI_DB`, else
/// `$XDG_DATA_HOME/rally-tui/tasks.db` (`~/.local/share/rally-tui/tasks.db`).
pub fn default_path() -> PathBuf {
    if let Some(p) = std::env::var_os("RALLY_TUI_DB").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let data = std::env::var_os("XDG_DATA_HOME")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    data.join("rally-tui").join("tasks.db")
}

/// One row of `task list`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TaskRow {
    pub uuid: String,
    pub title: String,
    pub status: String,
    pub pass_sla: Option<bool>,
    pub created_at: f64,
    pub task_duration: f64,
    pub tags: Vec<String>,
}

/// A stored task with its workloads, for `show`, `sla-check`, reports and exports.
#[derive(Debug, Clone)]
pub struct StoredTask {
    pub row: TaskRow,
    pub description: String,
    pub input_task: String,
    pub updated_at: f64,
    pub workloads: Vec<StoredWorkload>,
}

#[derive(Debug, Clone)]
pub struct StoredWorkload {
    pub uuid: String,
    pub subtask: String,
    pub subtask_uuid: String,
    pub subtask_description: String,
    pub position: usize,
    pub scenario: String,
    pub description: String,
    pub args: serde_json::Value,
    pub runner_type: String,
    pub runner: serde_json::Value,
    pub contexts: serde_json::Value,
    pub sla: serde_json::Value,
    pub hooks_config: serde_json::Value,
    pub action_names: Vec<String>,
    pub status: String,
    pub created_at: f64,
    pub updated_at: f64,
    /// The engine's report, when the workload finished.
    pub report: Option<WorkloadReport>,
}

pub struct Store {
    conn: Connection,
}

/// A task row to insert (from a run starting, or from an import).
pub struct NewTask<'a> {
    pub uuid: &'a str,
    pub title: &'a str,
    pub description: &'a str,
    pub tags: &'a [String],
    pub input_task: &'a str,
    pub format_version: u8,
    pub created_at: f64,
    pub status: &'a str,
    /// The process running it, for crash detection; `None` for imported tasks.
    pub pid: Option<u32>,
}

/// A workload row to insert, with its subtask.
pub struct NewWorkload<'a> {
    pub task: &'a str,
    pub subtask_uuid: &'a str,
    pub subtask_index: usize,
    pub subtask_title: &'a str,
    pub subtask_description: &'a str,
    /// 0-based over the whole task.
    pub index: usize,
    pub position: usize,
    pub scenario: &'a str,
    pub description: &'a str,
    pub args: &'a serde_json::Value,
    pub runner_type: &'a str,
    pub runner: &'a serde_json::Value,
    pub contexts: &'a serde_json::Value,
    pub sla: &'a serde_json::Value,
    pub hooks: &'a serde_json::Value,
    pub action_names: &'a [String],
    pub created_at: f64,
}

fn json(text: String) -> serde_json::Value {
    serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)
}

impl Store {
    /// Open (creating and migrating as needed) and mark tasks whose process died as crashed.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Directory {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(30))?;
        // Chunks are ~100 KB blobs: large pages keep their overflow chains short. (Only
        // takes effect when the file is created.)
        conn.pragma_update(None, "page_size", 65536)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        schema::migrate(&mut conn)?;
        let store = Store { conn };
        store.mark_crashed()?;
        Ok(store)
    }

    /// A task left `running` by a process of this host that no longer exists has crashed.
    fn mark_crashed(&self) -> Result<(), StoreError> {
        let host = hostname();
        let mut stmt = self.conn.prepare("SELECT uuid, pid FROM tasks WHERE status IN ('init', 'running', 'aborting', 'soft_aborting') AND hostname = ?1")?;
        let dead: Vec<String> = stmt
            .query_map([&host], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, Option<i64>>(1)?))
            })?
            .filter_map(Result::ok)
            .filter(|(_, pid)| pid.is_none_or(|p| !Path::new(&format!("/proc/{p}")).exists()))
            .map(|(uuid, _)| uuid)
            .collect();
        for uuid in dead {
            self.conn.execute(
                "UPDATE tasks SET status = 'crashed', updated_at = ?2 WHERE uuid = ?1",
                params![uuid, unix_now()],
            )?;
            self.conn.execute("UPDATE workloads SET status = 'crashed' WHERE task_uuid = ?1 AND status = 'running'", [&uuid])?;
        }
        Ok(())
    }

    /// Record a task that starts running in this process.
    pub fn begin_task(&self, uuid: &str, spec: &TaskSpec) -> Result<(), StoreError> {
        self.insert_task(&NewTask {
            uuid,
            title: &spec.title,
            description: &spec.description,
            tags: &spec.tags,
            input_task: &spec.rendered,
            format_version: spec.version,
            created_at: unix_now(),
            status: "running",
            pid: Some(std::process::id()),
        })
    }

    pub fn insert_task(&self, t: &NewTask<'_>) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO tasks (uuid, title, description, status, input_task, format_version, created_at, updated_at, pid, hostname)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8, ?9)",
            params![t.uuid, t.title, t.description, t.status, t.input_task, t.format_version, t.created_at, t.pid, hostname()],
        )?;
        for tag in t.tags {
            self.conn.execute(
                "INSERT INTO tags (task_uuid, tag) VALUES (?1, ?2)",
                params![t.uuid, tag],
            )?;
        }
        Ok(())
    }

    /// Record a workload as running; returns its uuid.
    #[allow(clippy::too_many_arguments)]
    pub fn begin_workload(
        &self,
        task: &str,
        subtask_uuid: &str,
        subtask_index: usize,
        subtask: &SubtaskSpec,
        info: &WorkloadInfo,
        w: &WorkloadSpec,
        action_names: &[String],
    ) -> Result<String, StoreError> {
        let hooks: Vec<&serde_json::Value> = w.hooks.iter().map(|h| &h.config).collect();
        let contexts: serde_json::Map<String, serde_json::Value> = w
            .contexts
            .iter()
            .map(|c| (c.name.clone(), c.config.clone()))
            .collect();
        self.insert_workload(&NewWorkload {
            task,
            subtask_uuid,
            subtask_index,
            subtask_title: &subtask.title,
            subtask_description: &subtask.description,
            index: info.index,
            position: w.position,
            scenario: &w.scenario.name,
            description: &w.description,
            args: &w.scenario.args,
            runner_type: w.runner.name(),
            runner: &w.runner.config_json(),
            contexts: &serde_json::Value::Object(contexts),
            sla: &serde_json::Value::Object(w.sla.clone()),
            hooks: &serde_json::json!(hooks),
            action_names,
            created_at: unix_now(),
        })
    }

    pub fn insert_workload(&self, w: &NewWorkload<'_>) -> Result<String, StoreError> {
        self.conn.execute(
            "INSERT OR IGNORE INTO subtasks (uuid, task_uuid, position, title, description, status) VALUES (?1, ?2, ?3, ?4, ?5, 'running')",
            params![w.subtask_uuid, w.task, w.subtask_index as i64, w.subtask_title, w.subtask_description],
        )?;
        let uuid = uuid::Uuid::new_v4().to_string();
        self.conn.execute(
            "INSERT INTO workloads (uuid, task_uuid, subtask_uuid, idx, position, scenario, description, args, runner_type, runner, contexts, sla, hooks_config, action_names, status, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, 'running', ?15, ?15)",
            params![
                uuid, w.task, w.subtask_uuid, w.index as i64, w.position as i64, w.scenario, w.description,
                w.args.to_string(), w.runner_type, w.runner.to_string(), w.contexts.to_string(), w.sla.to_string(),
                w.hooks.to_string(), serde_json::to_string(w.action_names).unwrap_or_default(), w.created_at
            ],
        )?;
        Ok(uuid)
    }

    /// Store chunks in one transaction; `order` numbers them within their workload.
    pub fn add_chunks<'a>(
        &mut self,
        chunks: impl IntoIterator<Item = (&'a str, u64, &'a Chunk)>,
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO workload_data (workload_uuid, chunk_order, source, iteration_count, failed_iteration_count, started_at, finished_at, chunk)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            for (workload, order, chunk) in chunks {
                let failed = chunk.records.iter().filter(|r| r.error.is_some()).count();
                let started = chunk
                    .records
                    .iter()
                    .map(|r| r.timestamp)
                    .fold(f64::INFINITY, f64::min);
                let finished = chunk
                    .records
                    .iter()
                    .map(|r| r.timestamp + r.duration)
                    .fold(f64::NEG_INFINITY, f64::max);
                stmt.execute(params![
                    workload,
                    order as i64,
                    &*chunk.source,
                    chunk.len() as i64,
                    failed as i64,
                    if started.is_finite() { started } else { 0.0 },
                    if finished.is_finite() { finished } else { 0.0 },
                    codec::encode(chunk)
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    pub fn finish_workload(
        &self,
        uuid: &str,
        report: &WorkloadReport,
        status: &str,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE workloads SET status = ?2, start_time = ?3, load_duration = ?4, full_duration = ?5, total_iteration_count = ?6,
                    failed_iteration_count = ?7, pass_sla = ?8, report = ?9, updated_at = ?10 WHERE uuid = ?1",
            params![uuid, status, report.start_time, report.load_duration, report.full_duration, report.iterations as i64,
                    report.failures as i64, report.pass_sla, serde_json::to_string(report).unwrap_or_default(), unix_now()],
        )?;
        for s in &report.sources {
            self.conn.execute(
                "INSERT INTO workload_sources (workload_uuid, source, iterations, failures, p50, p95, p99, lost)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![uuid, s.name, s.iterations as i64, s.failures as i64, s.p50, s.p95, s.p99, s.lost],
            )?;
        }
        Ok(())
    }

    /// Rally's transitional statuses while a task stops (`aborting`, `soft_aborting`).
    pub fn set_task_status(&self, uuid: &str, status: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE tasks SET status = ?2, updated_at = ?3 WHERE uuid = ?1",
            params![uuid, status, unix_now()],
        )?;
        Ok(())
    }

    pub fn finish_task(
        &self,
        uuid: &str,
        status: TaskStatus,
        pass_sla: bool,
    ) -> Result<(), StoreError> {
        let now = unix_now();
        self.conn.execute(
            "UPDATE tasks SET status = ?2, pass_sla = ?3, updated_at = ?4,
                    task_duration = (SELECT COALESCE(SUM(load_duration), 0) FROM workloads WHERE task_uuid = ?1) WHERE uuid = ?1",
            params![uuid, status.as_str(), pass_sla, now],
        )?;
        self.conn.execute(
            "UPDATE subtasks SET status = ?2, pass_sla = (SELECT MIN(COALESCE(pass_sla, 0)) FROM workloads w WHERE w.subtask_uuid = subtasks.uuid) WHERE task_uuid = ?1",
            params![uuid, status.as_str()],
        )?;
        Ok(())
    }

    /// A task id as users type it: a uuid, a unique prefix of one, or `last`.
    pub fn resolve(&self, id: &str) -> Result<String, StoreError> {
        if id == "last" {
            return self
                .conn
                .query_row(
                    "SELECT uuid FROM tasks ORDER BY created_at DESC, rowid DESC LIMIT 1",
                    [],
                    |r| r.get(0),
                )
                .optional()?
                .ok_or_else(|| StoreError::NoSuchTask(id.into()));
        }
        let pattern = format!("{}%", id.replace(['%', '_'], ""));
        let mut stmt = self
            .conn
            .prepare("SELECT uuid FROM tasks WHERE uuid LIKE ?1 LIMIT 2")?;
        let found: Vec<String> = stmt
            .query_map([&pattern], |r| r.get(0))?
            .filter_map(Result::ok)
            .collect();
        match found.len() {
            0 => Err(StoreError::NoSuchTask(id.into())),
            1 => Ok(found[0].clone()),
            _ => {
                let count: i64 = self.conn.query_row(
                    "SELECT COUNT(*) FROM tasks WHERE uuid LIKE ?1",
                    [&pattern],
                    |r| r.get(0),
                )?;
                Err(StoreError::Ambiguous {
                    id: id.into(),
                    count: count as usize,
                })
            }
        }
    }

    fn tags(&self, uuid: &str) -> Result<Vec<String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT tag FROM tags WHERE task_uuid = ?1 ORDER BY rowid")?;
        let tags = stmt
            .query_map([uuid], |r| r.get(0))?
            .filter_map(Result::ok)
            .collect();
        Ok(tags)
    }

    /// Tasks, newest last (as Rally lists them), filtered by status and tag.
    pub fn list(
        &self,
        status: Option<&str>,
        tag: Option<&str>,
    ) -> Result<Vec<TaskRow>, StoreError> {
        let mut stmt = self.conn.prepare("SELECT uuid, title, status, pass_sla, created_at, task_duration FROM tasks ORDER BY created_at, rowid")?;
        let rows: Vec<TaskRow> = stmt
            .query_map([], |r| {
                Ok(TaskRow {
                    uuid: r.get(0)?,
                    title: r.get(1)?,
                    status: r.get(2)?,
                    pass_sla: r.get(3)?,
                    created_at: r.get(4)?,
                    task_duration: r.get(5)?,
                    tags: Vec::new(),
                })
            })?
            .filter_map(Result::ok)
            .collect();
        let mut out = Vec::new();
        for mut row in rows {
            row.tags = self.tags(&row.uuid)?;
            if status.is_some_and(|s| s != row.status)
                || tag.is_some_and(|t| !row.tags.iter().any(|x| x == t))
            {
                continue;
            }
            out.push(row);
        }
        Ok(out)
    }

    pub fn task(&self, uuid: &str) -> Result<StoredTask, StoreError> {
        let (row, description, input_task, updated_at) = self
            .conn
            .query_row(
                "SELECT uuid, title, status, pass_sla, created_at, task_duration, description, input_task, updated_at FROM tasks WHERE uuid = ?1",
                [uuid],
                |r| {
                    Ok((
                        TaskRow { uuid: r.get(0)?, title: r.get(1)?, status: r.get(2)?, pass_sla: r.get(3)?, created_at: r.get(4)?, task_duration: r.get(5)?, tags: Vec::new() },
                        r.get::<_, String>(6)?,
                        r.get::<_, String>(7)?,
                        r.get::<_, f64>(8)?,
                    ))
                },
            )
            .optional()?
            .ok_or_else(|| StoreError::NoSuchTask(uuid.into()))?;
        let mut row = row;
        row.tags = self.tags(uuid)?;
        let mut stmt = self.conn.prepare(
            "SELECT w.uuid, s.title, s.uuid, w.position, w.scenario, w.description, w.args, w.runner_type, w.runner, w.contexts, w.sla,
                    w.hooks_config, w.action_names, w.status, w.created_at, w.updated_at, w.report, s.description
             FROM workloads w JOIN subtasks s ON s.uuid = w.subtask_uuid WHERE w.task_uuid = ?1 ORDER BY w.idx",
        )?;
        let workloads = stmt
            .query_map([uuid], |r| {
                Ok(StoredWorkload {
                    uuid: r.get(0)?,
                    subtask: r.get(1)?,
                    subtask_uuid: r.get(2)?,
                    subtask_description: r.get(17)?,
                    position: r.get::<_, i64>(3)? as usize,
                    scenario: r.get(4)?,
                    description: r.get(5)?,
                    args: json(r.get(6)?),
                    runner_type: r.get(7)?,
                    runner: json(r.get(8)?),
                    contexts: json(r.get(9)?),
                    sla: json(r.get(10)?),
                    hooks_config: json(r.get(11)?),
                    action_names: serde_json::from_str(&r.get::<_, String>(12)?)
                        .unwrap_or_default(),
                    status: r.get(13)?,
                    created_at: r.get(14)?,
                    updated_at: r.get(15)?,
                    report: r
                        .get::<_, Option<String>>(16)?
                        .and_then(|t| serde_json::from_str(&t).ok()),
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(StoredTask {
            row,
            description,
            input_task,
            updated_at,
            workloads,
        })
    }

    /// Call `f` with each stored chunk of a workload, in the order they were stored.
    pub fn for_each_chunk(
        &self,
        workload: &str,
        mut f: impl FnMut(Chunk),
    ) -> Result<(), StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT chunk FROM workload_data WHERE workload_uuid = ?1 ORDER BY chunk_order",
        )?;
        let mut rows = stmt.query([workload])?;
        while let Some(row) = rows.next()? {
            let blob: Vec<u8> = row.get(0)?;
            let chunk = codec::decode(&blob).map_err(|e| StoreError::Damaged {
                workload: workload.into(),
                detail: e.to_string(),
            })?;
            f(chunk);
        }
        Ok(())
    }

    pub fn delete(&self, uuid: &str) -> Result<(), StoreError> {
        self.conn
            .execute("DELETE FROM tasks WHERE uuid = ?1", [uuid])?;
        Ok(())
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}
