//! Interoperability with the real OpenStack Rally: our JSON export (format 1.2) is imported by
//! `rally task import`, and Rally's own export of a real `rally task start` run is imported by us;
//! both sides must then agree on iteration counts, failures and SLA verdicts.
//!
//! Needs a virtualenv with Rally installed: `target/rally-venv` (`.ci/run` creates it with
//! `pip install rally==5.1.1`) or the one `$RALLY_VENV` names. Every Rally command here runs with
//! its own config file, SQLite database and `HOME` inside a temp dir owned by the test.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::support;

/// One workload whose SLA fails (iterations 2, 4 and 6 raise) and one with atomic actions
/// whose SLA passes.
const TASK: &str = "---
version: 2
title: interop
subtasks:
  - title: failing
    scenario:
      Dummy.failure: {sleep: 0.01, from_iteration: 2, to_iteration: 6, each: 2}
    runner:
      constant: {times: 10, concurrency: 2}
    sla:
      failure_rate: {max: 0}
      max_seconds_per_iteration: 10
  - title: atomics
    scenario:
      Dummy.dummy_timed_atomic_actions: {number_of_actions: 2, sleep_factor: 0.01}
    runner:
      constant: {times: 6, concurrency: 2}
    sla:
      failure_rate: {max: 0}
      max_avg_duration_per_atomic: {action_0: 5, action_1: 5}
";

/// `(iterations, failed)` per workload for `TASK`.
const COUNTS: [(u64, u64); 2] = [(10, 3), (6, 0)];

/// A real Rally with a private database and an empty environment called `local`.
struct RealRally {
    bin: PathBuf,
    dir: tempfile::TempDir,
}

impl RealRally {
    fn new() -> RealRally {
        // scripts/test.sh installs Rally into target/rally-venv; RALLY_VENV may point elsewhere.
        let venv = std::env::var_os("RALLY_VENV")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/rally-venv"));
        let bin = Path::new(&venv).join("bin").join("rally");
        assert!(
            bin.is_file(),
            "{} is missing: scripts/test.sh (the README's test command) installs OpenStack Rally \
             5.1.1 there (scripts/rally-venv.sh), or set RALLY_VENV to a venv with it",
            bin.display()
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let conf = format!(
            "[database]\nconnection = sqlite:///{}/rally.sqlite\n",
            dir.path().display()
        );
        support::write(dir.path(), "rally.conf", &conf);
        support::write(dir.path(), "spec.json", "{}\n");
        let rally = RealRally { bin, dir };
        rally.ok(&["db", "create"]);
        rally.ok(&[
            "env",
            "create",
            "--name",
            "local",
            "--spec",
            "spec.json",
            "--no-use",
        ]);
        rally
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(&self.bin)
            .arg("--config-file")
            .arg(self.path("rally.conf"))
            .args(args)
            .current_dir(self.dir.path())
            // Rally keeps its "current env/task" in ~/.rally/globals: keep it in the temp dir.
            .env("HOME", self.dir.path())
            .env_remove("RALLY_ENV")
            .env_remove("RALLY_DEPLOYMENT")
            .env_remove("RALLY_TASK")
            .env_remove("RALLY_PLUGIN_PATHS")
            .stdin(Stdio::null())
            .output()
            .expect("rally runs")
    }

    /// Run and insist on exit code 0.
    fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "rally {args:?} failed\nstdout:\n{}\nstderr:\n{}",
            support::stdout(&out),
            support::stderr(&out)
        );
        out
    }

    /// The UUID of the only task in this Rally's database.
    fn only_task(&self) -> String {
        let out = self.ok(&["task", "list", "--uuids-only", "--env", "local"]);
        let text = support::stdout(&out);
        let uuids: Vec<&str> = text.split_whitespace().collect();
        assert_eq!(uuids.len(), 1, "rally task list: {text}");
        uuids[0].to_string()
    }

    /// `rally task export --type json` of a task, parsed.
    fn export_json(&self, uuid: &str) -> Value {
        let to = self.path(&format!("export-{uuid}.json"));
        self.ok(&[
            "task",
            "export",
            "--uuid",
            uuid,
            "--type",
            "json",
            "--to",
            to.to_str().unwrap(),
        ]);
        serde_json::from_slice(&std::fs::read(&to).expect("rally wrote the export"))
            .expect("rally's export is JSON")
    }
}

fn ours(db: &Path, args: &[&str]) -> Output {
    let mut all = vec!["--db", db.to_str().expect("utf-8")];
    all.extend_from_slice(args);
    support::run(&all)
}

/// One SLA row, comparable across both tools: `(scenario, pos, criterion, status, detail)`.
/// Our `benchmark` is `TITLE [POS] SCENARIO`, Rally's is the scenario name.
type Verdict = (String, u64, String, String, String);

fn verdicts(rows: &[u8]) -> Vec<Verdict> {
    let rows: Value = serde_json::from_slice(rows).unwrap_or_else(|e| {
        panic!(
            "sla-check --json is not JSON ({e}): {}",
            String::from_utf8_lossy(rows)
        )
    });
    rows.as_array()
        .expect("a JSON array of rows")
        .iter()
        .map(|r| {
            let s = |k: &str| {
                r[k].as_str()
                    .unwrap_or_else(|| panic!("{k} in {r}"))
                    .to_string()
            };
            let scenario = s("benchmark");
            (
                scenario,
                r["pos"].as_u64().expect("pos"),
                s("criterion"),
                s("status"),
                s("detail"),
            )
        })
        .collect()
}

fn failed(v: &[Verdict]) -> usize {
    v.iter().filter(|r| r.3 == "FAIL").count()
}

/// `(total_iteration_count, failed_iteration_count, pass_sla)` per workload of an export.
fn workloads(export: &Value) -> Vec<(u64, u64, bool)> {
    let tasks = export["tasks"].as_array().expect("tasks");
    assert_eq!(tasks.len(), 1, "one task in the export");
    tasks[0]["subtasks"]
        .as_array()
        .expect("subtasks")
        .iter()
        .flat_map(|s| s["workloads"].as_array().expect("workloads").iter())
        .map(|w| {
            (
                w["total_iteration_count"]
                    .as_u64()
                    .expect("total_iteration_count"),
                w["failed_iteration_count"]
                    .as_u64()
                    .expect("failed_iteration_count"),
                w["pass_sla"].as_bool().expect("pass_sla"),
            )
        })
        .collect()
}

/// The expected SLA verdicts for `TASK`, without details.
fn expected_verdicts() -> Vec<(&'static str, &'static str, &'static str)> {
    vec![
        ("Dummy.failure", "failure_rate", "FAIL"),
        ("Dummy.failure", "max_seconds_per_iteration", "PASS"),
        ("Dummy.dummy_timed_atomic_actions", "failure_rate", "PASS"),
        (
            "Dummy.dummy_timed_atomic_actions",
            "max_avg_duration_per_atomic",
            "PASS",
        ),
    ]
}

fn short(v: &[Verdict]) -> Vec<(&str, &str, &str)> {
    v.iter()
        .map(|r| (r.0.as_str(), r.2.as_str(), r.3.as_str()))
        .collect()
}

#[test]
fn real_rally_imports_our_export_and_agrees_on_the_sla() {
    let rally = RealRally::new();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tasks.db");
    let task = support::write(dir.path(), "task.yaml", TASK);

    let out = ours(&db, &["run", task.to_str().unwrap(), "--no-tui"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}{}",
        support::stdout(&out),
        support::stderr(&out)
    );
    let export = dir.path().join("ours.json");
    let out = ours(
        &db,
        &[
            "task",
            "export",
            "last",
            "--type",
            "json",
            "--to",
            export.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", support::stderr(&out));
    let our_export: Value = serde_json::from_slice(&std::fs::read(&export).unwrap()).unwrap();
    let check = ours(&db, &["task", "sla-check", "last", "--json"]);
    let our_rows = verdicts(&check.stdout);
    assert_eq!(
        check.status.code(),
        Some(failed(&our_rows) as i32),
        "Rally's exit code, the number of failed criteria: {}",
        support::stdout(&check)
    );
    assert_eq!(short(&our_rows), expected_verdicts());

    // Real Rally accepts the file (it validates every iteration record against its schema).
    rally.ok(&[
        "task",
        "import",
        "--file",
        export.to_str().unwrap(),
        "--env",
        "local",
    ]);
    let uuid = rally.only_task();

    // Rally's sla-check: exit code = number of failed criteria; same rows as ours.
    let check = rally.run(&["task", "sla-check", "--uuid", &uuid, "--json"]);
    let rally_rows = verdicts(&check.stdout);
    assert_eq!(
        check.status.code(),
        Some(failed(&rally_rows) as i32),
        "{}",
        support::stderr(&check)
    );
    assert_eq!(rally_rows, our_rows, "rally sla-check vs ours");

    // Rally recomputes counts and statistics from our iteration records on import.
    let rally_export = rally.export_json(&uuid);
    assert_eq!(
        workloads(&rally_export),
        workloads(&our_export),
        "rally's re-export vs ours"
    );
    assert_eq!(
        workloads(&rally_export),
        vec![
            (COUNTS[0].0, COUNTS[0].1, false),
            (COUNTS[1].0, COUNTS[1].1, true)
        ]
    );
    assert_eq!(rally_export["tasks"][0]["pass_sla"], false);
    let atomics = &rally_export["tasks"][0]["subtasks"][1]["workloads"][0]["statistics"]["durations"]
        ["atomics"];
    let names: Vec<(&str, u64)> = atomics
        .as_array()
        .expect("atomics")
        .iter()
        .map(|a| {
            (
                a["name"].as_str().unwrap(),
                a["data"]["iteration_count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(names, vec![("action_0", 6), ("action_1", 6)], "{atomics}");

    // And Rally's HTML report (charts over every iteration) builds from our data.
    let html = rally.path("report.html");
    rally.ok(&[
        "task",
        "export",
        "--uuid",
        &uuid,
        "--type",
        "html",
        "--to",
        html.to_str().unwrap(),
    ]);
    assert!(std::fs::metadata(&html).unwrap().len() > 1000);
}

#[test]
fn we_import_a_real_rally_run_and_agree_on_counts_and_sla() {
    let rally = RealRally::new();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tasks.db");
    let task = support::write(dir.path(), "task.yaml", TASK);

    // Rally: 2 = at least one workload failed its SLA.
    let out = rally.run(&["task", "start", task.to_str().unwrap(), "--env", "local"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "rally task start\nstdout:\n{}\nstderr:\n{}",
        support::stdout(&out),
        support::stderr(&out)
    );
    let uuid = rally.only_task();
    let check = rally.run(&["task", "sla-check", "--uuid", &uuid, "--json"]);
    let rally_rows = verdicts(&check.stdout);
    assert_eq!(
        check.status.code(),
        Some(failed(&rally_rows) as i32),
        "{}",
        support::stderr(&check)
    );
    assert_eq!(short(&rally_rows), expected_verdicts());
    let rally_export = rally.export_json(&uuid);
    assert_eq!(rally_export["info"]["format_version"], "1.2");
    assert_eq!(
        workloads(&rally_export),
        vec![
            (COUNTS[0].0, COUNTS[0].1, false),
            (COUNTS[1].0, COUNTS[1].1, true)
        ]
    );
    let file = dir.path().join("rally.json");
    std::fs::write(&file, serde_json::to_vec(&rally_export).unwrap()).unwrap();

    let out = ours(&db, &["task", "import", file.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        support::stdout(&out),
        support::stderr(&out)
    );
    let show = ours(&db, &["task", "show", "last"]);
    let text = support::stdout(&show);
    assert_eq!(support::workload_counts(&text), COUNTS.to_vec(), "{text}");
    assert!(
        text.contains("action_0") && text.contains("action_1"),
        "{text}"
    );
    assert!(text.contains("DummyScenarioException"), "{text}");

    let check = ours(&db, &["task", "sla-check", "last", "--json"]);
    assert_eq!(
        check.status.code(),
        Some(failed(&rally_rows) as i32),
        "{}",
        support::stdout(&check)
    );
    assert_eq!(
        verdicts(&check.stdout),
        rally_rows,
        "our sla-check vs rally's"
    );
}

/// `(display_name, iteration_count, children)` of an export's first workload's atomics.
type Row = (String, u64, Vec<(String, u64)>);

fn atomic_rows(export: &Value) -> Vec<Row> {
    export["tasks"][0]["subtasks"][0]["workloads"][0]["statistics"]["durations"]["atomics"]
        .as_array()
        .expect("atomics")
        .iter()
        .map(|a| {
            let count = |a: &Value| a["data"]["iteration_count"].as_u64().unwrap_or(0);
            let name = |a: &Value| a["display_name"].as_str().unwrap_or("").to_string();
            let children = a["children"]
                .as_array()
                .map(|c| c.iter().map(|c| (name(c), count(c))).collect())
                .unwrap_or_default();
            (name(a), count(a), children)
        })
        .collect()
}

/// `Dummy.dummy_random_fail_in_atomic` on 1,000 iterations: Rally rebuilds our Response
/// Times rows exactly from our records (rows per name and count per iteration, `(x2)`), and
/// a real Rally run of the same workload gives the same rows with counts within chance.
#[test]
fn random_fail_in_atomic_has_rallys_rows() {
    let rally = RealRally::new();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tasks.db");
    let task = support::write(
        dir.path(),
        "task.yaml",
        "---\nversion: 2\ntitle: atoms\nsubtasks:\n  - title: roulette\n    scenario:\n      \
         Dummy.dummy_random_fail_in_atomic: {exception_probability: 0.5}\n    runner:\n      \
         constant: {times: 1000, concurrency: 2}\n    sla: {}\n",
    );
    let out = ours(&db, &["run", task.to_str().unwrap(), "--no-tui"]);
    assert_eq!(out.status.code(), Some(0), "{}", support::stdout(&out));
    let export = dir.path().join("ours.json");
    ours(
        &db,
        &[
            "task",
            "export",
            "last",
            "--type",
            "json",
            "--to",
            export.to_str().unwrap(),
        ],
    );
    let our_export: Value = serde_json::from_slice(&std::fs::read(&export).unwrap()).unwrap();
    let mine = atomic_rows(&our_export);
    rally.ok(&[
        "task",
        "import",
        "--file",
        export.to_str().unwrap(),
        "--env",
        "local",
    ]);
    let imported = rally.export_json(&rally.only_task());
    assert_eq!(
        atomic_rows(&imported),
        mine,
        "Rally's rows from our records"
    );

    rally.ok(&["task", "start", task.to_str().unwrap(), "--env", "local"]);
    let out = rally.ok(&["task", "list", "--uuids-only", "--env", "local"]);
    let uuids: Vec<String> = support::stdout(&out)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let theirs = atomic_rows(&rally.export_json(uuids.last().expect("rally's run")));
    let names = |rows: &[Row]| {
        let mut n: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
        n.sort();
        n
    };
    assert_eq!(names(&mine), names(&theirs), "{mine:?}\n{theirs:?}");
    let sorted = |rows: &[Row]| {
        let mut r = rows.to_vec();
        r.sort();
        r
    };
    for (a, b) in sorted(&mine).iter().zip(&sorted(&theirs)) {
        let (a, b) = (a.1 as i64, b.1 as i64);
        // Binomial counts from 1,000 iterations: a few standard deviations (~14) apart at most.
        assert!((a - b).abs() < 80, "{mine:?}\n{theirs:?}");
    }
}
