//! The database schema and its migrations. `PRAGMA user_version` records how far a file has
//! been migrated; each step runs in a transaction, so a file is never half-migrated.

use rusqlite::{Connection, TransactionBehavior};

use super::StoreError;

/// Each entry takes the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: tasks, their subtasks and workloads, and every iteration in chunks.
    r#"
    CREATE TABLE tasks (
        uuid TEXT PRIMARY KEY,
        title TEXT NOT NULL,
        description TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL,
        pass_sla INTEGER,
        input_task TEXT NOT NULL DEFAULT '',
        format_version INTEGER NOT NULL DEFAULT 2,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        task_duration REAL NOT NULL DEFAULT 0,
        pid INTEGER,
        hostname TEXT
    );
    CREATE TABLE tags (
        task_uuid TEXT NOT NULL REFERENCES tasks(uuid) ON DELETE CASCADE,
        tag TEXT NOT NULL
    );
    CREATE INDEX tags_by_task ON tags(task_uuid);
    CREATE TABLE subtasks (
        uuid TEXT PRIMARY KEY,
        task_uuid TEXT NOT NULL REFERENCES tasks(uuid) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        title TEXT NOT NULL,
        description TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL,
        pass_sla INTEGER
    );
    CREATE INDEX subtasks_by_task ON subtasks(task_uuid);
    CREATE TABLE workloads (
        uuid TEXT PRIMARY KEY,
        task_uuid TEXT NOT NULL REFERENCES tasks(uuid) ON DELETE CASCADE,
        subtask_uuid TEXT NOT NULL REFERENCES subtasks(uuid) ON DELETE CASCADE,
        idx INTEGER NOT NULL,
        position INTEGER NOT NULL,
        scenario TEXT NOT NULL,
        description TEXT NOT NULL DEFAULT '',
        args TEXT NOT NULL,
        runner_type TEXT NOT NULL,
        runner TEXT NOT NULL,
        contexts TEXT NOT NULL,
        sla TEXT NOT NULL,
        hooks_config TEXT NOT NULL,
        action_names TEXT NOT NULL,
        status TEXT NOT NULL,
        start_time REAL,
        load_duration REAL NOT NULL DEFAULT 0,
        full_duration REAL NOT NULL DEFAULT 0,
        total_iteration_count INTEGER NOT NULL DEFAULT 0,
        failed_iteration_count INTEGER NOT NULL DEFAULT 0,
        pass_sla INTEGER,
        -- The finished workload as the engine reported it (statistics, SLA rows, hooks,
        -- errors, per-agent figures), as JSON.
        report TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE INDEX workloads_by_task ON workloads(task_uuid, idx);
    CREATE TABLE workload_sources (
        workload_uuid TEXT NOT NULL REFERENCES workloads(uuid) ON DELETE CASCADE,
        source TEXT NOT NULL,
        iterations INTEGER NOT NULL,
        failures INTEGER NOT NULL
    );
    CREATE INDEX sources_by_workload ON workload_sources(workload_uuid);
    CREATE TABLE workload_data (
        workload_uuid TEXT NOT NULL REFERENCES workloads(uuid) ON DELETE CASCADE,
        chunk_order INTEGER NOT NULL,
        source TEXT NOT NULL,
        iteration_count INTEGER NOT NULL,
        failed_iteration_count INTEGER NOT NULL,
        started_at REAL NOT NULL,
        finished_at REAL NOT NULL,
        -- The chunk in the binary format of chunk::codec (versioned, checksummed).
        chunk BLOB NOT NULL,
        PRIMARY KEY (workload_uuid, chunk_order)
    );
    "#,
    // 2: each runner instance's duration percentiles.
    r#"
    ALTER TABLE workload_sources ADD COLUMN p50 REAL;
    ALTER TABLE workload_sources ADD COLUMN p95 REAL;
    ALTER TABLE workload_sources ADD COLUMN p99 REAL;
    "#,
    // 3: agents lost during a distributed workload.
    r#"
    ALTER TABLE workload_sources ADD COLUMN lost INTEGER NOT NULL DEFAULT 0;
    "#,
];

pub const LATEST: i64 = MIGRATIONS.len() as i64;

pub fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    // Several processes may open a new file at once (a run and a `task list`): each step
    // takes the write lock first and reads the version under it, so only one migrates.
    loop {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let current: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if current > LATEST {
            return Err(StoreError::TooNew {
                found: current,
                known: LATEST,
            });
        }
        let Some(step) = MIGRATIONS.get(current as usize) else {
            return Ok(());
        };
        tx.execute_batch(step)?;
        tx.pragma_update(None, "user_version", current + 1)?;
        tx.commit()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_old_file_is_migrated_step_by_step() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        migrate(&mut conn).unwrap();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, LATEST);
        let columns: Vec<String> = conn
            .prepare("SELECT name FROM pragma_table_info('workload_sources')")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert!(columns.iter().any(|c| c == "p95"), "{columns:?}");
        // Migrating again is a no-op.
        migrate(&mut conn).unwrap();
    }

    #[test]
    fn a_newer_file_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", LATEST + 1)
            .unwrap();
        assert!(matches!(migrate(&mut conn), Err(StoreError::TooNew { .. })));
    }
}
