//! Runs are stored in SQLite as they go; `task` commands read them back (SPEC §8).

use std::process::Stdio;
use std::time::Duration;

use crate::support::{self, KillOnDrop};

fn rally_db(db: &std::path::Path, args: &[&str]) -> std::process::Output {
    let mut all = vec!["--db", db.to_str().expect("utf-8")];
    all.extend_from_slice(args);
    support::run(&all)
}

#[test]
fn a_run_is_stored_and_the_task_commands_read_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tasks.db");
    let task = support::write(
        dir.path(),
        "task.yaml",
        "version: 2\ntitle: stored\ntags: [nightly]\nsubtasks:\n\
         - title: ok\n  scenario: {Dummy.dummy_timed_atomic_actions: {number_of_actions: 2, sleep_factor: 0}}\n  runner: {constant: {times: 2500, concurrency: 3}}\n\
         - title: failing\n  scenario: {Dummy.failure: {sleep: 0, from_iteration: 1, to_iteration: 2}}\n  runner: {serial: {times: 4}}\n",
    );
    let out = rally_db(&db, &["run", task.to_str().unwrap(), "--no-tui"]);
    assert_eq!(out.status.code(), Some(2), "{}", support::stdout(&out));
    assert!(support::stdout(&out).contains("Stored as task "));
    let run = support::stdout(&out);

    // Per-runner-instance figures, percentiles included, are in the database.
    let conn = rusqlite::Connection::open(&db).unwrap();
    let (source, iterations, failures, p95): (String, i64, i64, Option<f64>) = conn
        .query_row(
            "SELECT source, iterations, failures, p95 FROM workload_sources ORDER BY rowid LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!((source.as_str(), iterations, failures), ("local", 2500, 0));
    assert!(p95.is_some_and(|p| p >= 0.0));
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 3, "migrated to the latest schema");
    drop(conn);

    let out = rally_db(&db, &["task", "list", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["status"], "finished");
    assert_eq!(list[0]["pass_sla"], false);
    assert_eq!(list[0]["tags"][0], "nightly");
    let uuid = list[0]["uuid"].as_str().unwrap().to_string();
    assert_eq!(
        rally_db(&db, &["task", "list", "--tag", "other"]).stdout,
        b"There are no tasks.\n"
    );

    let show = support::stdout(&rally_db(&db, &["task", "show", &uuid[..8]]));
    assert_eq!(
        support::workload_counts(&show),
        vec![(2500, 0), (4, 2)],
        "{show}"
    );
    assert!(show.contains("action_1"), "{show}");
    // The lines Rally's own tests look for, in `run` and `task show` alike.
    for text in [&run, &show] {
        assert!(
            text.contains(&format!("Task {uuid} has 2 error(s)")),
            "{text}"
        );
        assert_eq!(
            text.matches(" error(s)").count(),
            1,
            "only the workload with errors: {text}"
        );
    }
    assert!(
        run.contains("At least one workload did not pass SLA criteria."),
        "{run}"
    );

    // Rally's exit code: the number of failed criteria (here one).
    let check = rally_db(&db, &["task", "sla-check", "last"]);
    assert_eq!(check.status.code(), Some(1));
    assert!(
        support::stdout(&check).contains("Failure rate criteria 0.00% <= 50.00% <= 0.00% - Failed")
    );
    // Re-checked against other criteria, from the stored iterations.
    let check = rally_db(
        &db,
        &[
            "task",
            "sla-check",
            "last",
            "--json",
            "--sla",
            "{failure_rate: {max: 60}}",
        ],
    );
    assert_eq!(check.status.code(), Some(0), "{}", support::stderr(&check));
    let rows: serde_json::Value = serde_json::from_slice(&check.stdout).unwrap();
    assert_eq!(
        rows[1]["detail"],
        "Failure rate criteria 0.00% <= 50.00% <= 60.00% - Passed"
    );
    assert_eq!(
        rows[0]["detail"],
        "Failure rate criteria 0.00% <= 0.00% <= 60.00% - Passed"
    );

    let csv_path = dir.path().join("it.csv");
    assert!(
        rally_db(
            &db,
            &[
                "task",
                "export",
                "last",
                "--type",
                "csv",
                "--to",
                csv_path.to_str().unwrap()
            ]
        )
        .status
        .success()
    );
    let csv = std::fs::read_to_string(&csv_path).unwrap();
    assert_eq!(csv.lines().count(), 1 + 2500 + 4);
    assert!(
        csv.lines()
            .next()
            .unwrap()
            .contains("action:action_0,action:action_1")
    );
    assert_eq!(
        csv.lines()
            .filter(|l| l.contains("DummyScenarioException"))
            .count(),
        2
    );

    let json = rally_db(&db, &["task", "export", "last", "--type", "json"]);
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).expect("valid JSON");
    assert_eq!(doc["info"]["format_version"], "1.2");
    let subtasks = doc["tasks"][0]["subtasks"].as_array().unwrap();
    assert_eq!(subtasks.len(), 2);
    let data = subtasks[0]["workloads"][0]["data"].as_array().unwrap();
    assert_eq!(data.len(), 2500);
    assert_eq!(data[0]["atomic_actions"][1]["name"], "action_1");
    assert_eq!(
        subtasks[1]["workloads"][0]["data"][0]["error"][0],
        "DummyScenarioException"
    );

    let junit = support::stdout(&rally_db(
        &db,
        &["task", "export", "last", "--type", "junit-xml"],
    ));
    assert_eq!(junit.matches("<testcase ").count(), 2);
    assert_eq!(junit.matches("<failure ").count(), 1);
    assert!(junit.contains("classname=\"Dummy\" name=\"failure\""));

    assert_eq!(
        rally_db(&db, &["task", "show", "nope"]).status.code(),
        Some(1)
    );
    assert!(rally_db(&db, &["task", "delete", &uuid]).status.success());
    assert_eq!(
        rally_db(&db, &["task", "sla-check", &uuid]).status.code(),
        Some(1)
    );
}

#[test]
fn a_run_whose_process_died_is_shown_as_crashed() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tasks.db");
    let task = support::write(
        dir.path(),
        "t.yaml",
        "---\nDummy.dummy:\n  - args: {sleep: 0.05}\n    runner: {type: constant_for_duration, duration: 60, concurrency: 2}\n",
    );
    let child = support::rally(&[
        "--db",
        db.to_str().unwrap(),
        "run",
        task.to_str().unwrap(),
        "--no-tui",
    ])
    .stdout(Stdio::null())
    .spawn()
    .unwrap();
    let mut child = KillOnDrop(child);
    // Wait until the task is stored as running, then kill the process outright.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let out = rally_db(&db, &["task", "list", "--json"]);
        if serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .is_ok_and(|v| v[0]["status"] == "running")
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the task never showed as running"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    let out = rally_db(&db, &["task", "list", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["status"], "crashed");
}

/// A reader that goes away (`rally-tui task show last --iterations | head -1`) ends the
/// command quietly with exit 0, as with `rally` and coreutils: no panic, no error.
#[test]
fn a_closed_pipe_ends_show_list_and_export_quietly() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tasks.db");
    let task = support::write(
        dir.path(),
        "task.yaml",
        "version: 2\ntitle: many\nsubtasks:\n- title: d\n  scenario: {Dummy.dummy: {sleep: 0}}\n  \
         runner: {constant: {times: 20000, concurrency: 4}}\n",
    );
    let db_arg = db.to_str().unwrap();
    let o = support::run(&["--db", db_arg, "run", task.to_str().unwrap(), "--no-tui"]);
    assert!(o.status.success(), "{}", support::stderr(&o));
    for args in [
        &["task", "show", "last", "--iterations"][..],
        &["task", "export", "last", "--type", "csv"],
        &["task", "export", "last", "--type", "json"],
        &["task", "list"],
    ] {
        let mut all = vec!["--db", db_arg];
        all.extend_from_slice(args);
        let mut child = support::rally(&all)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("rally-tui starts");
        let mut first = String::new();
        std::io::BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut first)
            .expect("a first line");
        // The reader is gone now: the rest of the output meets a closed pipe.
        let out = child.wait_with_output().expect("it ends");
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {said}");
        assert!(!said.contains("panicked"), "{args:?}: {said}");
    }
}

/// A task without SLA criteria: `sla-check` has nothing to check and exits 2, as Rally's.
#[test]
fn sla_check_without_criteria_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tasks.db");
    let task = support::write(
        dir.path(),
        "task.yaml",
        "version: 2\ntitle: none\nsubtasks:\n\
         - title: ok\n  scenario: {Dummy.dummy: {}}\n  runner: {constant: {times: 3}}\n  sla: {}\n",
    );
    let out = rally_db(&db, &["run", task.to_str().unwrap(), "--no-tui"]);
    assert_eq!(out.status.code(), Some(0), "{}", support::stdout(&out));
    let check = rally_db(&db, &["task", "sla-check", "last", "--json"]);
    assert_eq!(check.status.code(), Some(2), "{}", support::stdout(&check));
    assert_eq!(support::stdout(&check).trim(), "[]");
}

/// `run --tag` (repeatable) tags the task as `rally task start --tag` does, and
/// `task list --tag` finds it; a subtask's description reaches the Rally JSON export.
#[test]
fn run_tags_and_subtask_descriptions_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tasks.db");
    let task = support::write(
        dir.path(),
        "task.yaml",
        "version: 2\ntitle: tagged\ntags: [file]\nsubtasks:\n\
         - title: ok\n  description: the first subtask\n  scenario: {Dummy.dummy: {}}\n  runner: {constant: {times: 2}}\n",
    );
    let out = rally_db(
        &db,
        &[
            "run",
            task.to_str().unwrap(),
            "--no-tui",
            "--tag",
            "nightly",
            "--tag",
            "ci",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", support::stdout(&out));
    for tag in ["file", "nightly", "ci"] {
        let list = rally_db(&db, &["task", "list", "--tag", tag, "--json"]);
        let rows: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
        assert_eq!(
            rows.as_array().map(Vec::len),
            Some(1),
            "--tag {tag}: {rows}"
        );
    }
    let export = rally_db(&db, &["task", "export", "last", "--type", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&export.stdout).unwrap();
    let t = &json["tasks"][0];
    assert_eq!(t["tags"], serde_json::json!(["file", "nightly", "ci"]));
    assert_eq!(t["subtasks"][0]["description"], "the first subtask");
}
