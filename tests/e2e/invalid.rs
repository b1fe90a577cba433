//! Malformed task files: each one must be refused with exit 64, one precise message, and no load.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::support;

/// One malformed file and what `rally-tui` must say about it.
struct Case {
    file: &'static str,
    /// `LINE:COL` where the parser or validator knows it.
    at: Option<(u32, u32)>,
    /// Key path of the bad key; empty when the file is broken before it has keys.
    key: &'static str,
    /// A piece of the message that says what is wrong or what is allowed.
    says: &'static str,
}

const fn case(
    file: &'static str,
    at: Option<(u32, u32)>,
    key: &'static str,
    says: &'static str,
) -> Case {
    Case {
        file,
        at,
        key,
        says,
    }
}

#[rustfmt::skip]
const CASES: &[Case] = &[
    // Syntax and document shape.
    case("yaml-syntax-error.yaml", Some((6, 5)), "", "invalid YAML/JSON: invalid indentation in flow construct"),
    case("json-unclosed-brace.json", Some((7, 1)), "", "did not find expected ',' or '}'"),
    case("json-missing-comma.json", Some((4, 3)), "", "did not find expected ',' or '}'"),
    case("json-trailing-comma-after-document.json", Some((5, 2)), "", "invalid YAML/JSON"),
    case("duplicate-key.yaml", Some((8, 7)), "subtasks[0].runner.constant", "duplicate key 'constant'"),
    case("duplicate-key.json", Some((4, 3)), "title", "duplicate key 'title'"),
    case("top-level-list.yaml", Some((1, 1)), "", "a task must be a mapping (format v2: version, title, subtasks; format v1: scenario names), got a list"),
    case("empty-file.yaml", None, "", "the task file is empty"),
    case("version-3.yaml", Some((1, 10)), "version", "unsupported task format version 3; allowed: 1, 2"),
    case("version-2-float.json", Some((2, 14)), "version", "version 2.0; allowed: 1, 2"),
    // Templates.
    case("template-missing-variable.yaml", None, "", "Please specify template task argument: times"),
    case("template-syntax-error.yaml", Some((6, 37)), "", "expected end of variable block"),
    // Format v2 layout.
    case("v2-missing-title.yaml", Some((1, 1)), "title", "'title' is a required property"),
    case("v2-missing-subtasks.json", Some((1, 1)), "subtasks", "'subtasks' is a required property"),
    case("v2-unknown-top-level-key.yaml", Some((3, 1)), "runner", "allowed keys: 'version', 'title', 'description', 'tags', 'subtasks'"),
    case("v2-subtasks-not-a-list.yaml", Some((4, 3)), "subtasks", "must be a list of subtasks, got a mapping"),
    case("v2-subtasks-empty.json", Some((1, 42)), "subtasks", "must hold at least one subtask"),
    case("v2-subtask-unknown-key.yaml", Some((7, 5)), "subtasks[0].concurrency", "allowed keys: 'title', 'group', 'description', 'tags', 'run_in_parallel', 'workloads'"),
    case("v2-workloads-empty.yaml", Some((5, 16)), "subtasks[0].workloads", "must hold at least one workload"),
    case("v2-workload-unknown-key.json", Some((8, 43)), "subtasks[0].workloads[0].context", "allowed keys: 'scenario', 'description', 'runner', 'sla', 'hooks', 'contexts'"),
    // Scenarios.
    case("v2-scenario-unknown.yaml", Some((5, 16)), "subtasks[0].scenario", "unknown scenario 'Dummy.dumy'; available: 'Dummy.dummy'"),
    case("v2-scenario-two-keys.yaml", Some((6, 7)), "subtasks[0].scenario", "must name exactly one scenario plugin"),
    case("v2-scenario-args-not-mapping.yaml", Some((5, 29)), "subtasks[0].scenario.Dummy.dummy", "scenario arguments must be a mapping, got a list"),
    case("v2-scenario-unknown-argument.yaml", Some((6, 33)), "subtasks[0].scenario.Dummy.failure.foo", "allowed keys: 'sleep', 'from_iteration', 'to_iteration', 'each'"),
    case("v2-scenario-sleep-string.json", Some((5, 58)), "subtasks[0].scenario.Dummy.dummy.sleep", "must be a number >= 0, got 'abc'"),
    case("v2-scenario-sleep-negative.yaml", Some((6, 28)), "subtasks[0].scenario.Dummy.dummy.sleep", "must be a number >= 0, got -1"),
    case("v2-check-request-missing-status-code.yaml", Some((7, 9)), "subtasks[0].scenario.HttpRequests.check_request.status_code", "is required (the expected HTTP status)"),
    case("v2-http-request-ftp-url.yaml", Some((6, 27)), "subtasks[0].scenario.Http.request.url", "it must start with http://"),
    // Runners.
    case("v2-runner-unknown.yaml", Some((6, 14)), "subtasks[0].runner", "unknown runner 'constnat'; available: 'constant', 'constant_for_duration', 'rps', 'serial'"),
    case("v2-runner-times-zero.yaml", Some((6, 32)), "subtasks[0].runner.constant.times", "must be an integer >= 1, got 0"),
    case("v2-runner-times-string.json", Some((8, 40)), "subtasks[0].runner.constant.times", "must be an integer >= 1, got '10'"),
    case("v2-runner-times-float.yaml", Some((6, 30)), "subtasks[0].runner.serial.times", "must be an integer >= 1, got 1.5"),
    case("v2-runner-concurrency-boolean.yaml", Some((9, 22)), "subtasks[0].runner.constant.concurrency", "must be an integer >= 1, got true"),
    case("v2-runner-concurrency-over-times.yaml", Some((6, 48)), "subtasks[0].runner.constant.concurrency", "Parameter 'concurrency' means a number of parallel executions"),
    case("v2-runner-duration-missing.yaml", Some((6, 37)), "subtasks[0].runner.constant_for_duration.duration", "is required (seconds"),
    case("v2-runner-rps-zero.yaml", Some((6, 36)), "subtasks[0].runner.rps.rps", "must be a number > 0 or a ramp {start, end, step, duration}, got 0"),
    case("v2-runner-rps-ramp-end-below-start.json", Some((8, 66)), "subtasks[0].runner.rps.rps.end", "rps end value must not be less than rps start value"),
    case("v2-runner-rps-unknown-key.yaml", Some((7, 32)), "subtasks[0].runner.rps.foo", "allowed keys: 'times', 'rps', 'timeout', 'max_concurrency', 'max_cpu_count'"),
    // SLA.
    case("v2-sla-unknown-criterion.yaml", Some((8, 7)), "subtasks[0].sla.max_failures", "available: 'failure_rate', 'max_seconds_per_iteration'"),
    case("v2-sla-failure-rate-max-200.json", Some((8, 39)), "subtasks[0].sla.failure_rate.max", "must be a number between 0 and 100, got 200"),
    case("v2-sla-failure-rate-unknown-key.yaml", Some((7, 22)), "subtasks[0].sla.failure_rate.maximum", "allowed keys: 'min', 'max'"),
    case("v2-sla-outliers-min-iterations-2.yaml", Some((7, 42)), "subtasks[0].sla.outliers.min_iterations", "must be an integer >= 3, got 2"),
    case("v2-sla-max-percentile-bad-key.yaml", Some((7, 41)), "subtasks[0].sla.max_percentile.p101", "a percentile in (0, 100]"),
    case("v2-sla-max-percentile-not-p.yaml", Some((7, 29)), "subtasks[0].sla.max_percentile.x95", "keys must be \"p\" followed by a percentile"),
    // Contexts and hooks.
    case("v2-context-unknown.yaml", Some((7, 7)), "subtasks[0].contexts.users", "unknown context 'users'; available: 'dummy_context'"),
    case("v2-context-fail-setup-not-boolean.json", Some((8, 52)), "subtasks[0].contexts.dummy_context.fail_setup", "must be a boolean, got 'yes please'"),
    case("v2-hook-action-unknown.yaml", Some((7, 9)), "subtasks[0].hooks[0].action", "unknown hook action 'shell'; available: 'sys_call'"),
    case("v2-hook-event-iteration-at-zero.yaml", Some((9, 41)), "subtasks[0].hooks[0].trigger.event.at[0]", "must be an integer >= 1, got 0"),
    case("v2-hook-trigger-unit-unknown.yaml", Some((9, 28)), "subtasks[0].hooks[0].trigger.periodic.unit", "must be 'iteration' or 'time', got 'minute'"),
    // Format v1.
    case("v1-workloads-not-a-list.yaml", Some((2, 3)), "Dummy.dummy", "format v1 expects a list of workloads under each scenario name"),
    case("v1-runner-without-type.json", Some((3, 38)), "Dummy.dummy[0].runner.type", "'type' is a required property"),
    case("v1-workload-unknown-key.yaml", Some((3, 5)), "Dummy.dummy[0].contexts", "allowed keys: 'args', 'runner', 'context', 'sla', 'hooks', 'description'"),
    case("v1-runner-times-zero.json", Some((3, 46)), "Dummy.dummy[0].runner.times", "must be an integer >= 1, got 0"),
    case("v1-scenario-unknown.yaml", Some((2, 1)), "Dummy.sleep", "unknown scenario 'Dummy.sleep'; available: 'Dummy.dummy'"),
];

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/invalid")
}

/// What is wrong with one command's output for one case, if anything.
fn check(case: &Case, path: &str, command: &str, out: &std::process::Output) -> Vec<String> {
    let stderr = support::stderr(out);
    let stdout = support::stdout(out);
    let mut head = format!("error: {path}");
    if let Some((line, col)) = case.at {
        head += &format!(":{line}:{col}");
    }
    head += ": ";
    if !case.key.is_empty() {
        head += &format!("{}: ", case.key);
    }
    let mut problems = Vec::new();
    if out.status.code() != Some(64) {
        problems.push(format!("exit {:?}, expected 64", out.status.code()));
    }
    if stderr.contains("panicked") {
        problems.push("panicked".into());
    }
    if !stderr.starts_with(&head) {
        problems.push(format!("stderr does not start with {head:?}"));
    }
    if !stderr.contains(case.says) {
        problems.push(format!("stderr lacks {:?}", case.says));
    }
    if stderr.trim_end().lines().count() != 1 {
        problems.push("stderr is not exactly one line".into());
    }
    if command == "run" && !stdout.is_empty() {
        problems.push(format!("stdout is not empty (load started?): {stdout:?}"));
    }
    problems
        .into_iter()
        .map(|p| {
            format!(
                "{} ({command}): {p}\n    stderr: {}",
                case.file,
                stderr.trim_end()
            )
        })
        .collect()
}

/// SPEC §3/§9: a malformed task names the file, the position, the key path and what is
/// allowed, exits 64 and starts no load. Every file in `invalid/` is checked by both `validate`
/// and `run`, and all mismatches are reported together so one run shows everything.
#[test]
fn malformed_task_files_are_refused_with_a_precise_message() {
    let dir = dir();
    let mut failures = Vec::new();

    let on_disk: BTreeSet<String> = std::fs::read_dir(&dir)
        .expect("tests/e2e/invalid exists")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let listed: BTreeSet<String> = CASES.iter().map(|c| c.file.to_string()).collect();
    assert_eq!(listed.len(), CASES.len(), "a file is listed twice in CASES");
    for f in on_disk.difference(&listed) {
        failures.push(format!("{f}: in tests/e2e/invalid but not in CASES"));
    }
    for f in listed.difference(&on_disk) {
        failures.push(format!("{f}: in CASES but not in tests/e2e/invalid"));
    }

    for case in CASES.iter().filter(|c| on_disk.contains(c.file)) {
        let path = dir.join(case.file);
        let path = path.to_str().expect("utf-8 path");
        let validate = support::run(&["validate", path]);
        failures.extend(check(case, path, "validate", &validate));
        let run = support::run(&["run", path, "--no-tui"]);
        failures.extend(check(case, path, "run", &run));
    }

    assert!(
        failures.is_empty(),
        "{} problem(s) with malformed task files:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
