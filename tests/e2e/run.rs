//! `rally-tui run` end to end: exit codes, stopping, timeouts, HTTP, hooks, contexts and
//! template arguments, each against the real binary (and a real nginx where HTTP is involved).

use std::io::BufRead;
use std::net::TcpListener;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::{self, KillOnDrop, Nginx};

fn task(dir: &std::path::Path, body: &str) -> String {
    support::write(dir, "task.yaml", body)
        .to_str()
        .expect("utf-8")
        .to_string()
}

#[test]
fn help_and_version() {
    let out = support::run(&["--help"]);
    assert!(out.status.success());
    assert!(support::stdout(&out).contains("run"));
    let out = support::run(&["--version"]);
    assert!(support::stdout(&out).starts_with("rally-tui "));
    let out = support::run(&["run", "--no-such-flag"]);
    assert_eq!(out.status.code(), Some(64));
}

/// Arguments that cannot work are refused with 64 and a message naming them, before any
/// load, and a bad task leaves the last run's `--events` file as it was.
#[test]
fn unusable_arguments_are_refused_before_any_load() {
    let dir = tempfile::tempdir().unwrap();
    let t = task(
        dir.path(),
        "version: 2\ntitle: t\nsubtasks:\n- title: a\n  scenario: {Dummy.dummy: {}}\n  runner: {constant: {times: 2}}\n",
    );
    let refused = |args: &[&str], says: &str| {
        let out = support::run(args);
        let err = support::stderr(&out);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(!support::stdout(&out).contains("=== Workload"), "{args:?}");
    };
    // A timer period of zero would panic the runtime.
    refused(
        &["run", &t, "--no-tui", "--sla-interval", "1e-10"],
        "--sla-interval must be at least 0.01 seconds",
    );
    refused(
        &["run", &t, "--no-tui", "--liveness", "0.001"],
        "--liveness must be at least 0.1 seconds",
    );
    // Agents started elsewhere would wait for nothing while the load ran here.
    let token = support::write(dir.path(), "token", "0123456789abcdef0123456789abcdef\n");
    refused(
        &[
            "run",
            &t,
            "--no-tui",
            "--listen",
            "tcp://127.0.0.1:1",
            "--token-file",
            token.to_str().unwrap(),
        ],
        "--listen tcp://127.0.0.1:1 waits for agents, but no workload runs on agents",
    );
    refused(
        &[
            "run",
            &t,
            "--no-tui",
            "--token-file",
            token.to_str().unwrap(),
        ],
        "--listen",
    );
    refused(
        &[
            "agent",
            "--connect",
            "tcp://127.0.0.1:1",
            "--give-up-after=-1",
        ],
        "--give-up-after must be a number of seconds >= 0, got -1",
    );
    // A bad task: the events of the last run stay.
    let events = support::write(dir.path(), "last.jsonl", "{\"v\":1}\n");
    let bad = support::write(dir.path(), "bad.yaml", "version: 3\n");
    refused(
        &[
            "run",
            bad.to_str().unwrap(),
            "--no-tui",
            "--events",
            events.to_str().unwrap(),
        ],
        "unsupported task format version 3",
    );
    assert_eq!(std::fs::read_to_string(&events).unwrap(), "{\"v\":1}\n");
}

#[test]
fn a_failed_sla_exits_2_and_shows_the_sla_table() {
    let dir = tempfile::tempdir().unwrap();
    let t = task(
        dir.path(),
        "---\nDummy.failure:\n  - args: {sleep: 0, from_iteration: 2, to_iteration: 3}\n    runner: {type: constant, times: 10, concurrency: 2}\n",
    );
    let out = support::run(&["run", &t, "--no-tui"]);
    let text = support::stdout(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert_eq!(support::workload_counts(&text), vec![(10, 2)]);
    assert!(
        text.contains("Failure rate criteria 0.00% <= 20.00% <= 0.00% - Failed"),
        "{text}"
    );
    assert!(
        text.contains(
            "DummyScenarioException: Dummy scenario expected exception: 'Expected failure'"
        ),
        "{text}"
    );
    assert!(
        text.contains("Task (adopted from task format v1)"),
        "{text}"
    );
}

#[test]
fn abort_on_sla_failure_stops_the_load_and_skips_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let t = task(
        dir.path(),
        "version: 2\ntitle: abort\nsubtasks:\n\
         - title: fails early\n  scenario: {Dummy.failure: {sleep: 0.001, from_iteration: 10, to_iteration: 10}}\n  runner: {constant: {times: 100000, concurrency: 2}}\n\
         - title: never runs\n  scenario: {Dummy.dummy: {}}\n",
    );
    let out = support::run(&["run", &t, "--no-tui", "--abort-on-sla-failure"]);
    let text = support::stdout(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    let counts = support::workload_counts(&text);
    assert_eq!(counts.len(), 1, "the second workload is skipped: {text}");
    assert!(counts[0].0 < 100000 && counts[0].1 == 1, "{counts:?}");
    assert!(
        text.contains("Task was aborted due to SLA failure(s)."),
        "{text}"
    );
    assert!(text.contains("aborted"), "{text}");
}

#[test]
fn ctrl_c_stops_new_iterations_and_exits_3() {
    let dir = tempfile::tempdir().unwrap();
    let t = task(
        dir.path(),
        "version: 2\ntitle: stop\nsubtasks:\n\
         - title: long\n  scenario: {Dummy.dummy: {sleep: 0.05}}\n  runner: {constant_for_duration: {duration: 120, concurrency: 4}}\n\
         - title: skipped\n  scenario: {Dummy.dummy: {}}\n",
    );
    let mut child = KillOnDrop(
        support::rally(&["run", &t, "--no-tui"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let mut lines = std::io::BufReader::new(stdout).lines();
    // Wait for the first progress line: the load is running.
    let mut seen = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if line.contains(" iterations | ") {
            break;
        }
    }
    let stopped_at = Instant::now();
    let kill = std::process::Command::new("kill")
        .args(["-INT", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.0.wait().unwrap();
    let text = format!("{seen}{}", rest.join("\n"));
    assert_eq!(status.code(), Some(3), "{text}");
    assert!(
        stopped_at.elapsed() < Duration::from_secs(10),
        "stopping took {:?}",
        stopped_at.elapsed()
    );
    assert!(
        text.contains("Task was aborted due to abort signal."),
        "{text}"
    );
    assert_eq!(support::workload_counts(&text).len(), 1, "{text}");
}

#[test]
fn a_timeout_interrupts_the_iteration_as_rally_records_it() {
    let dir = tempfile::tempdir().unwrap();
    let t = task(
        dir.path(),
        "version: 2\ntitle: t\nsubtasks:\n- title: slow\n  scenario: {Dummy.dummy: {sleep: 30}}\n  runner: {constant: {times: 4, concurrency: 4, timeout: 0.2}}\n  sla: {max_seconds_per_iteration: 1.0}\n",
    );
    let started = Instant::now();
    let out = support::run(&["run", &t, "--no-tui"]);
    let text = support::stdout(&out);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the timeout did not cut the sleep"
    );
    assert_eq!(support::workload_counts(&text), vec![(4, 4)], "{text}");
    assert!(
        text.contains("ThreadTimeoutException: Iteration interrupted due to timeout."),
        "{text}"
    );
    // The timed-out action is marked failed, so the action rows show 0% success.
    assert!(text.contains("| foo "), "{text}");
    assert_eq!(
        out.status.code(),
        Some(0),
        "only max_seconds_per_iteration, which passes: {text}"
    );
}

#[test]
fn http_request_against_nginx() {
    let nginx = Nginx::start();
    let dir = tempfile::tempdir().unwrap();
    let refused = support::free_port();
    // A server that accepts connections and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let body = format!(
        "version: 2\ntitle: http\nsubtasks:\n\
         - title: ok\n  scenario: {{Http.request: {{url: '{ok}', headers: {{X-Test: yes}}}}}}\n  runner: {{constant: {{times: 500, concurrency: 4}}}}\n\
         - title: missing\n  scenario: {{Http.request: {{url: '{missing}'}}}}\n  runner: {{constant: {{times: 20, concurrency: 2}}}}\n\
         - title: refused\n  scenario: {{Http.request: {{url: 'http://127.0.0.1:{refused}/'}}}}\n  runner: {{constant: {{times: 5, concurrency: 1}}}}\n\
         - title: silent\n  scenario: {{Http.request: {{url: 'http://127.0.0.1:{silent_port}/', timeout: 0.2}}}}\n  runner: {{constant: {{times: 2, concurrency: 2}}}}\n\
         - title: expected 404\n  scenario: {{Http.request: {{url: '{missing}', status_code: 404, method: HEAD}}}}\n  runner: {{rps: {{times: 20, rps: 200}}}}\n",
        ok = nginx.url("/small"),
        missing = nginx.url("/missing"),
    );
    let t = task(dir.path(), &body);
    let out = support::run(&["run", &t, "--no-tui"]);
    let text = support::stdout(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert_eq!(
        support::workload_counts(&text),
        vec![(500, 0), (20, 20), (5, 5), (2, 2), (20, 0)],
        "{text}"
    );
    assert!(
        text.contains("UnexpectedStatus: Expected HTTP status 200 actual 404"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "ConnectionError: Failed to establish a new connection to 127.0.0.1:{refused}"
        )),
        "{text}"
    );
    assert!(text.contains("Timeout: no response within 200ms"), "{text}");
    drop(silent);
}

/// With one usable CPU the binary runs tokio's single-threaded scheduler (main.rs,
/// `load_runtime`): HTTP load with its deadlines, and a controller with local agents, must
/// work there as they do on many CPUs.
#[test]
fn one_cpu_runs_the_single_threaded_scheduler() {
    let nginx = Nginx::start();
    let dir = tempfile::tempdir().unwrap();
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let body = format!(
        "version: 2\ntitle: one cpu\nsubtasks:\n\
         - title: ok\n  scenario: {{Http.request: {{url: '{ok}'}}}}\n  runner: {{constant: {{times: 300, concurrency: 4}}}}\n\
         - title: silent\n  scenario: {{Http.request: {{url: 'http://127.0.0.1:{silent_port}/', timeout: 0.2}}}}\n  runner: {{constant: {{times: 2, concurrency: 2}}}}\n\
         - title: dummy\n  scenario: {{Dummy.dummy: {{sleep: 0}}}}\n  runner: {{constant_for_duration: {{duration: 0.3, concurrency: 2}}}}\n",
        ok = nginx.url("/small"),
    );
    let t = task(dir.path(), &body);
    let db = dir.path().join("one-cpu.db");
    for extra in [&[][..], &["--agents", "2"][..]] {
        let out = std::process::Command::new("taskset")
            .args(["-c", "0"])
            .arg(support::bin())
            .args(["--db", db.to_str().unwrap(), "run", &t, "--no-tui"])
            .args(extra)
            .stdin(Stdio::null())
            .output()
            .expect("taskset (util-linux) runs");
        let text = support::stdout(&out);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {text}");
        let counts = support::workload_counts(&text);
        assert_eq!(counts[..2], [(300, 0), (2, 2)], "{extra:?}: {text}");
        assert!(counts[2].0 > 0 && counts[2].1 == 0, "{extra:?}: {text}");
        assert!(text.contains("Timeout: no response within 200ms"), "{text}");
    }
    drop(silent);
}

#[test]
fn check_request_follows_redirects_like_requests() {
    let nginx = Nginx::start();
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        "version: 2\ntitle: redirects\nsubtasks:\n\
         - title: followed\n  scenario: {{HttpRequests.check_request: {{url: '{r}', method: GET, status_code: 200}}}}\n  runner: {{constant: {{times: 10, concurrency: 2}}}}\n\
         - title: not followed\n  scenario: {{HttpRequests.check_request: {{url: '{r}', method: GET, status_code: 301, allow_redirects: false}}}}\n  runner: {{constant: {{times: 10, concurrency: 2}}}}\n\
         - title: mismatch\n  scenario: {{HttpRequests.check_request: {{url: '{m}', method: GET, status_code: 200}}}}\n  runner: {{serial: {{times: 3}}}}\n",
        r = nginx.url("/redirect"),
        m = nginx.url("/missing"),
    );
    let t = task(dir.path(), &body);
    let out = support::run(&["run", &t, "--no-tui"]);
    let text = support::stdout(&out);
    assert_eq!(
        support::workload_counts(&text),
        vec![(10, 0), (10, 0), (3, 3)],
        "{text}"
    );
    assert!(
        text.contains("ValueError: Expected HTTP request code is `200` actual `404`"),
        "{text}"
    );
    assert!(text.contains("requests.check_request"), "{text}");
}

#[test]
fn sys_call_hooks_fire_on_iterations_and_time() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("marker");
    let body = format!(
        "version: 2\ntitle: hooks\nsubtasks:\n- title: h\n  scenario: {{Dummy.dummy: {{sleep: 0.01}}}}\n  runner: {{constant: {{times: 150, concurrency: 1}}}}\n  hooks:\n\
         \x20   - description: fault at iteration 5\n      action: {{sys_call: 'touch {m}'}}\n      trigger: {{event: {{unit: iteration, at: [5]}}}}\n\
         \x20   - action: {{sys_call: 'sh -c \"exit 7\"'}}\n      trigger: {{periodic: {{unit: iteration, step: 50}}}}\n\
         \x20   - action: {{sys_call: 'true'}}\n      trigger: {{event: {{unit: time, at: [0]}}}}\n",
        m = marker.display()
    );
    let t = task(dir.path(), &body);
    let out = support::run(&["run", &t, "--no-tui"]);
    let text = support::stdout(&out);
    assert!(out.status.success(), "{text}{}", support::stderr(&out));
    assert!(marker.exists(), "the event hook ran its command");
    assert!(
        text.contains(&format!("Hook touch {}: success: 1", marker.display())),
        "{text}"
    );
    assert!(text.contains("Hook sh -c \"exit 7\": failed: 3"), "{text}");
    assert!(text.contains("Hook true: success: 1"), "{text}");
}

#[test]
fn a_failing_context_setup_fails_its_workload_and_the_task_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let t = task(
        dir.path(),
        "version: 2\ntitle: ctx\nsubtasks:\n\
         - title: broken\n  scenario: {Dummy.dummy: {}}\n  runner: {constant: {times: 3}}\n  contexts: {dummy_context: {fail_setup: true}}\n\
         - title: fine\n  scenario: {Dummy.dummy: {}}\n  runner: {constant: {times: 3}}\n  contexts: {dummy_context: {fail_cleanup: true}}\n",
    );
    let out = support::run(&["run", &t, "--no-tui"]);
    let text = support::stdout(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert_eq!(
        support::workload_counts(&text),
        vec![(0, 0), (3, 0)],
        "{text}"
    );
    // Rally's detail: the exception's message alone.
    assert!(
        text.contains("| something_went_wrong | Unexpected error: Oops...setup is failed "),
        "{text}"
    );
    assert!(
        text.contains("setup of context 'dummy_context' failed: Oops...setup is failed"),
        "{text}"
    );
    assert!(
        text.contains("cleanup of context 'dummy_context' failed: Oops...cleanup is failed"),
        "{text}"
    );
}

#[test]
fn task_args_override_the_args_file() {
    let dir = tempfile::tempdir().unwrap();
    let t = task(
        dir.path(),
        "---\nDummy.dummy:\n  - runner: {type: serial, times: {{ times }}}\n    sla: {}\n",
    );
    let args_file = support::write(dir.path(), "args.yaml", "times: 3\n");
    let out = support::run(&[
        "run",
        &t,
        "--no-tui",
        "--task-args-file",
        args_file.to_str().unwrap(),
    ]);
    assert_eq!(
        support::workload_counts(&support::stdout(&out)),
        vec![(3, 0)]
    );
    let out = support::run(&[
        "run",
        &t,
        "--no-tui",
        "--task-args-file",
        args_file.to_str().unwrap(),
        "--task-args",
        "times=5",
    ]);
    assert_eq!(
        support::workload_counts(&support::stdout(&out)),
        vec![(5, 0)]
    );
}

/// `auth: [user, password]`, as python-requests takes it: HTTP Basic, for both HTTP scenarios.
#[test]
fn basic_auth_against_nginx() {
    let nginx = Nginx::start();
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        "version: 2\ntitle: auth\nsubtasks:\n\
         - title: right\n  scenario: {{Http.request: {{url: '{url}', auth: [load, s3cret]}}}}\n  runner: {{constant: {{times: 50, concurrency: 2}}}}\n\
         - title: requests\n  scenario: {{HttpRequests.check_request: {{url: '{url}', method: GET, status_code: 200, auth: [load, s3cret]}}}}\n  runner: {{constant: {{times: 10, concurrency: 1}}}}\n\
         - title: wrong\n  scenario: {{Http.request: {{url: '{url}', auth: [load, nope]}}}}\n  runner: {{constant: {{times: 5, concurrency: 1}}}}\n\
         - title: none\n  scenario: {{Http.request: {{url: '{url}', status_code: 401}}}}\n  runner: {{constant: {{times: 5, concurrency: 1}}}}\n",
        url = nginx.url("/private"),
    );
    let t = task(dir.path(), &body);
    let out = support::run(&["run", &t, "--no-tui"]);
    let text = support::stdout(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert_eq!(
        support::workload_counts(&text),
        vec![(50, 0), (10, 0), (5, 5), (5, 0)],
        "{text}"
    );
    assert!(text.contains("actual 401"), "{text}");
}

/// A second SIGINT leaves without waiting for in-flight iterations (here 20 s sleeps):
/// exit 3 at once, the iterations that finished stored, the task stored as aborted.
#[test]
fn a_second_sigint_leaves_at_once_and_stores_the_task_as_aborted() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tasks.db");
    let t = task(
        dir.path(),
        "version: 2\ntitle: leave\nsubtasks:\n\
         - title: slow\n  scenario: {Dummy.dummy: {sleep: 20}}\n  runner: {constant: {times: 100, concurrency: 2}}\n",
    );
    let mut child = KillOnDrop(
        support::rally(&["--db", db.to_str().unwrap(), "run", &t, "--no-tui"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let mut lines = std::io::BufReader::new(stdout).lines();
    for line in lines.by_ref() {
        if line.unwrap().contains(" iterations | ") {
            break;
        }
    }
    let int = || {
        let ok = std::process::Command::new("kill")
            .args(["-INT", &child.0.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    };
    int();
    // The second signal once the first has been taken: the engine says it is stopping.
    let mut rest: Vec<String> = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let stopping = line.starts_with("Stopping:");
        rest.push(line);
        if stopping {
            break;
        }
    }
    let second = Instant::now();
    int();
    rest.extend(lines.map_while(Result::ok));
    let status = child.0.wait().unwrap();
    let text = rest.join("\n");
    assert_eq!(status.code(), Some(3), "{text}");
    assert!(
        second.elapsed() < Duration::from_secs(5),
        "leaving took {:?}",
        second.elapsed()
    );
    let list = support::run(&["--db", db.to_str().unwrap(), "task", "list", "--json"]);
    let rows: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(rows[0]["status"], "aborted", "{rows}\n{text}");
    assert!(text.contains("Stopping: stopped by SIGINT"), "{text}");
}

/// What Rally accepts, accepted: a negative runner timeout (every iteration times out), a
/// `check_random_request` entry without `method` (the iterations that pick it fail with
/// Rally's TypeError), and Jinja2's `%` string formatting.
#[test]
fn what_rally_accepts_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let t = task(
        dir.path(),
        "version: 2\ntitle: \"{{ '%d-%s' % (3, 'x') }} {{ '%05.1f' % 2.5 }} {{ '%s%%' % 50 }}\"\nsubtasks:\n\
         - title: negative timeout\n  scenario: {Dummy.dummy: {}}\n  runner: {constant: {times: 3, timeout: -1}}\n\
         - title: no method\n  scenario: {HttpRequests.check_random_request: {status_code: 200, requests: [{url: 'http://127.0.0.1:1/'}]}}\n  runner: {constant: {times: 2}}\n",
    );
    let out = support::run(&["run", &t, "--no-tui"]);
    let text = support::stdout(&out);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{text}\n{}",
        support::stderr(&out)
    );
    assert!(text.contains(": 3-x 002.5 50% (2 workloads)"), "{text}");
    assert_eq!(
        support::workload_counts(&text),
        vec![(3, 3), (2, 2)],
        "{text}"
    );
    assert!(
        text.contains("3 × ThreadTimeoutException: Iteration interrupted due to timeout."),
        "{text}"
    );
    assert!(
        text.contains("2 × TypeError: RequestScenario._check_request() missing 1 required positional argument: 'method'"),
        "{text}"
    );
}

/// Rally's words and clocks, through the real binary: `Dummy.dummy_output`'s texts, a
/// `sys_call` whose executable is missing (Rally's FileNotFoundError, no output), and a time
/// hook `at: [1, 2]` on a load of a fraction of a second (fires once, at 1).
#[test]
fn dummy_output_missing_executables_and_time_hooks_as_rally() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tasks.db");
    let t = task(
        dir.path(),
        "version: 2\ntitle: rally words\nsubtasks:\n\
         - title: output\n  scenario: {Dummy.dummy_output: {}}\n  runner: {constant: {times: 3}}\n\
         \x20 hooks:\n\
         \x20   - action: {sys_call: '/nonexistent/tool --flag'}\n      trigger: {event: {unit: iteration, at: [1]}}\n\
         \x20   - action: {sys_call: 'true'}\n      trigger: {event: {unit: time, at: [1, 2]}}\n",
    );
    let db_arg = db.to_str().unwrap();
    let out = support::run(&["--db", db_arg, "run", &t, "--no-tui"]);
    assert_eq!(out.status.code(), Some(0), "{}", support::stdout(&out));
    let export = support::run(&["--db", db_arg, "task", "export", "last", "--type", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&export.stdout).unwrap();
    let w = &json["tasks"][0]["subtasks"][0]["workloads"][0];
    let output = &w["data"][0]["output"];
    assert_eq!(
        output["additive"][0]["description"],
        "This is a description text for Additive StatsTable"
    );
    assert_eq!(output["complete"][4]["data"]["cols"][0], "mu column");
    let missing = &w["hooks"][0]["results"][0];
    assert_eq!(missing["status"], "failed", "{missing}");
    assert_eq!(missing["error"]["etype"], "FileNotFoundError", "{missing}");
    assert_eq!(
        missing["error"]["msg"],
        "[Errno 2] No such file or directory: '/nonexistent/tool'"
    );
    let timed: Vec<u64> = w["hooks"][1]["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["triggered_by"]["value"].as_u64().unwrap())
        .collect();
    assert_eq!(timed, vec![1], "{}", w["hooks"][1]);
}

/// `--events FILE`: every line a JSON object of schema version 1 with a known type; the
/// workloads' totals in it match what was stored; agents' registrations are in it.
#[test]
fn the_event_stream_is_versioned_json_lines_that_agree_with_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tasks.db");
    let events = dir.path().join("events.jsonl");
    let t = task(
        dir.path(),
        "version: 2\ntitle: events\nsubtasks:\n\
         - title: some fail\n  scenario: {Dummy.failure: {sleep: 0, from_iteration: 1, to_iteration: 40, each: 4}}\n  runner: {constant: {times: 400, concurrency: 4}}\n  sla: {failure_rate: {max: 50}}\n\
         - title: fine\n  scenario: {Dummy.dummy: {}}\n  runner: {constant: {times: 300, concurrency: 2}}\n",
    );
    let db_arg = db.to_str().unwrap();
    let out = support::run(&[
        "--db",
        db_arg,
        "run",
        &t,
        "--no-tui",
        "--agents",
        "2",
        "--events",
        events.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", support::stdout(&out));
    let text = std::fs::read_to_string(&events).unwrap();
    let known = [
        "task_started",
        "workload_started",
        "progress",
        "count",
        "sla",
        "agents",
        "statistics",
        "stopping",
        "workload_finished",
        "task_finished",
        "log",
    ];
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    for l in &lines {
        assert_eq!(l["v"], 1, "{l}");
        assert!(l["time"].as_f64().is_some(), "{l}");
        assert!(known.contains(&l["type"].as_str().unwrap_or("")), "{l}");
    }
    // The agents' registrations (before the engine starts) come first, as log lines.
    let first = lines.iter().find(|l| l["type"] != "log").unwrap();
    assert_eq!(first["type"], "task_started");
    assert_eq!(lines.last().unwrap()["type"], "task_finished");
    assert!(
        lines
            .iter()
            .any(|l| l["type"] == "agents" && l["agents"].as_array().is_some_and(|a| a.len() == 2)),
        "per-agent snapshots"
    );
    assert!(
        lines.iter().any(|l| l["type"] == "log"
            && l["message"]
                .as_str()
                .is_some_and(|m| m.contains("registered"))),
        "agents' registrations"
    );
    let finished: Vec<(u64, u64)> = lines
        .iter()
        .filter(|l| l["type"] == "workload_finished")
        .map(|l| {
            (
                l["iterations"].as_u64().unwrap(),
                l["failures"].as_u64().unwrap(),
            )
        })
        .collect();
    let show = support::stdout(&support::run(&["--db", db_arg, "task", "show", "last"]));
    assert_eq!(finished, support::workload_counts(&show));
    assert_eq!(finished, vec![(400, 10), (300, 0)]);
}
