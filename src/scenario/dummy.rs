//! Rally's `Dummy.*` scenarios: synthetic sleeps, failures, atomic actions and output, with
//! Rally's names, defaults and error messages.

use std::time::Duration;

use serde_json::json;

use super::{Iteration, SlotState};
use crate::chunk::{ActionId, IterationError, Output};
use crate::task::check::{self, Checked, PluginError};
use crate::task::node::{Node, Value};

/// Rally's exception class for the Dummy scenarios' expected failures.
const DUMMY_EXCEPTION: &str = "DummyScenarioException";

fn dummy_error(message: &str) -> IterationError {
    IterationError::new(
        DUMMY_EXCEPTION,
        format!("Dummy scenario expected exception: '{message}'"),
    )
}

#[derive(Debug, Clone, PartialEq)]
pub enum DummyScenario {
    Dummy {
        sleep: f64,
    },
    Failure {
        sleep: f64,
        from: i64,
        to: i64,
        each: i64,
    },
    Exception {
        sleep: f64,
        message: String,
    },
    ExceptionProbability {
        probability: f64,
        shown: String,
    },
    Output {
        random_range: i64,
    },
    RandomFailInAtomic {
        probability: f64,
    },
    RandomAction {
        actions: u16,
        sleep_min: f64,
        sleep_max: f64,
    },
    TimedAtomicActions {
        actions: u16,
        sleep_factor: f64,
    },
}

fn non_negative(node: &Node, key: &str, default: f64) -> Checked<f64> {
    Ok(check::number(node, key, "a number >= 0", |v| v >= 0.0)?.unwrap_or(default))
}

/// A probability as Python's `str()` would print the value the user wrote.
fn python_number(node: &Node) -> String {
    match node.value {
        Value::Int(i) => i.to_string(),
        Value::Float(f) if f.fract() == 0.0 && f.abs() < 1e16 => format!("{f:.1}"),
        Value::Float(f) => f.to_string(),
        _ => String::new(),
    }
}

fn probability(node: &Node, key: &str) -> Checked<(f64, String)> {
    let p = check::number(node, key, "a number between 0 and 1", |v| {
        (0.0..=1.0).contains(&v)
    })?;
    Ok(match p {
        Some(p) => (p, node.get(key).map(python_number).unwrap_or_default()),
        None => (0.5, "0.5".into()),
    })
}

fn action_count(node: &Node, key: &str) -> Checked<u16> {
    let n = check::int_at_least(node, key, 1)?.unwrap_or(5);
    u16::try_from(n)
        .ok()
        .filter(|&n| n <= 1000)
        .ok_or_else(|| PluginError::new(key, format!("must be an integer from 1 to 1000, got {n}")))
}

impl DummyScenario {
    /// `Ok(None)` when `name` is not a Dummy scenario.
    pub fn from_config(name: &str, args: &Node) -> Checked<Option<DummyScenario>> {
        let keys = |allowed: &[&str]| check::mapping(args, allowed).map(|_| ());
        let scenario = match name {
            // Dummy.dummy takes **kwargs: extra arguments are accepted and ignored.
            "Dummy.dummy" => DummyScenario::Dummy {
                sleep: non_negative(args, "sleep", 0.0)?,
            },
            "Dummy.failure" => {
                keys(&["sleep", "from_iteration", "to_iteration", "each"])?;
                let int =
                    |key| -> Checked<i64> { Ok(check::int_at_least(args, key, 0)?.unwrap_or(0)) };
                DummyScenario::Failure {
                    sleep: non_negative(args, "sleep", 0.1)?,
                    from: int("from_iteration")?,
                    to: int("to_iteration")?,
                    each: check::int_at_least(args, "each", 0)?.unwrap_or(1),
                }
            }
            "Dummy.dummy_exception" => {
                keys(&["size_of_message", "sleep", "message"])?;
                let size = check::int_at_least(args, "size_of_message", 1)?.unwrap_or(1);
                if size > 1_000_000 {
                    return Err(PluginError::new(
                        "size_of_message",
                        "must be at most 1000000",
                    ));
                }
                let message = check::string(args, "message")?.unwrap_or_default();
                DummyScenario::Exception {
                    sleep: non_negative(args, "sleep", 1.0)?,
                    message: if message.is_empty() {
                        "M".repeat(size as usize)
                    } else {
                        message
                    },
                }
            }
            "Dummy.dummy_exception_probability" => {
                keys(&["exception_probability"])?;
                let (probability, shown) = probability(args, "exception_probability")?;
                DummyScenario::ExceptionProbability { probability, shown }
            }
            "Dummy.dummy_output" => {
                keys(&["random_range"])?;
                DummyScenario::Output {
                    random_range: check::int_at_least(args, "random_range", 1)?.unwrap_or(25),
                }
            }
            "Dummy.dummy_random_fail_in_atomic" => {
                keys(&["exception_probability"])?;
                DummyScenario::RandomFailInAtomic {
                    probability: probability(args, "exception_probability")?.0,
                }
            }
            "Dummy.dummy_random_action" => {
                keys(&["actions_num", "sleep_min", "sleep_max"])?;
                let sleep_min = non_negative(args, "sleep_min", 0.0)?;
                let sleep_max = non_negative(args, "sleep_max", 0.0)?;
                if sleep_max < sleep_min {
                    return Err(PluginError::new(
                        "sleep_max",
                        format!("must be >= sleep_min ({sleep_min}), got {sleep_max}"),
                    ));
                }
                DummyScenario::RandomAction {
                    actions: action_count(args, "actions_num")?,
                    sleep_min,
                    sleep_max,
                }
            }
            "Dummy.dummy_timed_atomic_actions" => {
                keys(&["number_of_actions", "sleep_factor"])?;
                DummyScenario::TimedAtomicActions {
                    actions: action_count(args, "number_of_actions")?,
                    sleep_factor: non_negative(args, "sleep_factor", 1.0)?,
                }
            }
            _ => return Ok(None),
        };
        Ok(Some(scenario))
    }

    pub fn summary(&self) -> &'static str {
        match self {
            DummyScenario::Dummy { .. } => {
                "Do nothing and sleep for the given number of seconds (0 by default)."
            }
            DummyScenario::Failure { .. } => "Raise errors in some iterations.",
            DummyScenario::Exception { .. } => "Throws an exception.",
            DummyScenario::ExceptionProbability { .. } => {
                "Throws an exception with given probability."
            }
            DummyScenario::Output { .. } => "Generate dummy output.",
            DummyScenario::RandomFailInAtomic { .. } => {
                "Dummy.dummy_random_fail_in_atomic in dummy actions."
            }
            DummyScenario::RandomAction { .. } => "Sleep random time in dummy actions.",
            DummyScenario::TimedAtomicActions { .. } => {
                "Run some sleepy atomic actions for SLA atomic action tests."
            }
        }
    }

    pub fn action_names(&self) -> Vec<String> {
        match self {
            DummyScenario::Dummy { .. } => vec!["foo".into(), "bar".into()],
            DummyScenario::RandomFailInAtomic { .. } => {
                vec!["dummy_fail_test".into(), "dummy_fail_inner_test".into()]
            }
            DummyScenario::RandomAction { actions, .. }
            | DummyScenario::TimedAtomicActions { actions, .. } => {
                (0..*actions).map(|i| format!("action_{i}")).collect()
            }
            _ => Vec::new(),
        }
    }

    pub fn may_wait(&self) -> bool {
        match self {
            DummyScenario::Dummy { sleep } => *sleep > 0.0,
            DummyScenario::ExceptionProbability { .. }
            | DummyScenario::Output { .. }
            | DummyScenario::RandomFailInAtomic { .. } => false,
            _ => true,
        }
    }

    pub async fn run(
        &self,
        slot: &mut SlotState,
        it: &mut Iteration<'_>,
    ) -> Result<(), IterationError> {
        match self {
            DummyScenario::Dummy { sleep } => {
                let outer = it.actions.start(0);
                let inner = it.actions.start(1);
                pause(*sleep).await;
                it.actions.finish(inner, false);
                it.actions.finish(outer, false);
                Ok(())
            }
            DummyScenario::Failure {
                sleep,
                from,
                to,
                each,
            } => {
                pause(*sleep).await;
                let n = it.number as i64;
                if *from <= n && n <= *to && *each != 0 && n % each == 0 {
                    return Err(dummy_error("Expected failure"));
                }
                Ok(())
            }
            DummyScenario::Exception { sleep, message } => {
                pause(*sleep).await;
                Err(dummy_error(message))
            }
            DummyScenario::ExceptionProbability { probability, shown } => {
                if slot.rng.f64() < *probability {
                    return Err(dummy_error(&format!(
                        "Dummy Scenario Exception: Probability: {shown}"
                    )));
                }
                Ok(())
            }
            DummyScenario::Output { random_range } => {
                it.output = Some(Box::new(sample_output(&mut slot.rng, *random_range)));
                Ok(())
            }
            DummyScenario::RandomFailInAtomic { probability } => {
                let p = if *probability == 1.0 {
                    1.0
                } else {
                    probability / 4.0
                };
                // As Rally: the outer action may fail before the inner one starts; else
                // the inner one runs and may fail (and with it the outer).
                let error = || IterationError::new("KeyError", "'Dummy test exception'");
                for _ in 0..2 {
                    let outer = it.actions.start(0);
                    if slot.rng.f64() < p {
                        it.actions.finish(outer, true);
                        return Err(error());
                    }
                    let inner = it.actions.start(1);
                    let failed = slot.rng.f64() < p;
                    it.actions.finish(inner, failed);
                    it.actions.finish(outer, failed);
                    if failed {
                        return Err(error());
                    }
                }
                Ok(())
            }
            DummyScenario::RandomAction {
                actions,
                sleep_min,
                sleep_max,
            } => {
                for i in 0..*actions {
                    let a = it.actions.start(i as ActionId);
                    let s = sleep_min + slot.rng.f64() * (sleep_max - sleep_min);
                    pause(s).await;
                    it.actions.finish(a, false);
                }
                Ok(())
            }
            DummyScenario::TimedAtomicActions {
                actions,
                sleep_factor,
            } => {
                for i in 0..*actions {
                    let a = it.actions.start(i as ActionId);
                    pause(f64::from(i) * sleep_factor).await;
                    it.actions.finish(a, false);
                }
                Ok(())
            }
        }
    }
}

/// Sleep, cancellably (a timeout drops this future); no timer at all for zero.
async fn pause(seconds: f64) {
    if seconds > 0.0 {
        tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    }
}

/// Rally's `Arbitrary Text`, which repeats it twice in each of four lines.
const LOREM: &str = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore magna aliqua.";

/// The charts `Dummy.dummy_output` adds each iteration, as Rally's do, word for word
/// (rally/plugins/task/scenarios/dummy/dummy.py); only the random values differ.
fn sample_output(rng: &mut fastrand::Rng, range: i64) -> Output {
    let mut r = || rng.i64(1..=range);
    let pairs = |names: &[&str], r: &mut dyn FnMut() -> i64| -> Vec<serde_json::Value> {
        names.iter().map(|n| json!([n, r()])).collect()
    };
    let series = |names: &[&str],
                  xs: std::ops::Range<i64>,
                  r: &mut dyn FnMut() -> i64|
     -> Vec<serde_json::Value> {
        names
            .iter()
            .map(|n| json!([n, xs.clone().map(|x| json!([x, r()])).collect::<Vec<_>>()]))
            .collect()
    };
    let additive = vec![
        json!({"title": "Additive StatsTable", "description": "This is a description text for Additive StatsTable",
               "chart_plugin": "StatsTable",
               "data": pairs(&["foo stat", "bar stat", "spam stat"], &mut r)}),
        json!({"title": "Additive StackedArea (no description)", "chart_plugin": "StackedArea",
               "data": pairs(&["foo 1", "foo 2", "foo 3", "foo 4", "foo 5", "foo 6"], &mut r),
               "label": "Measure this in Foo units"}),
        json!({"title": "Additive Lines", "description": "This is a description text for Additive Lines",
               "chart_plugin": "Lines",
               "data": pairs(&["bar 1", "bar 2", "bar 3"], &mut r),
               "label": "Measure this in Bar units"}),
        json!({"title": "Additive Pie", "description": "This is a description text for Additive Pie", "chart_plugin": "Pie",
               "data": pairs(&["spam 1", "spam 2", "spam 3"], &mut r)}),
    ];
    let table_rows: Vec<serde_json::Value> = ["iota", "nu", "rho", "phi", "psi"]
        .iter()
        .map(|name| json!([format!("{name} row"), r(), r(), r(), r()]))
        .collect();
    let complete = vec![
        json!({"title": "Complete Lines", "description": "This is a description text for Complete Lines",
               "chart_plugin": "Lines",
               "data": series(&["Foo", "Bar", "Spam"], 1..8, &mut r),
               "label": "Measure this is some units",
               "axis_label": "This is a custom X-axis label"}),
        json!({"title": "Complete StackedArea", "description": "This is a description text for Complete StackedArea",
               "chart_plugin": "StackedArea",
               "data": series(&["alpha", "beta", "gamma"], 0..50, &mut r),
               "label": "Yet another measurement units",
               "axis_label": "This is a custom X-axis label"}),
        json!({"title": "Arbitrary Text", "chart_plugin": "TextArea",
               "data": vec![LOREM.repeat(2); 4]}),
        json!({"title": "Complete Pie (no description)", "chart_plugin": "Pie",
               "data": pairs(&["delta", "epsilon", "zeta", "theta", "lambda", "omega"], &mut r)}),
        json!({"title": "Complete Table", "description": "This is a description text for Complete Table", "chart_plugin": "Table",
               "data": {"cols": ["mu column", "xi column", "pi column", "tau column", "chi column"],
                        "rows": table_rows}}),
    ];
    Output { additive, complete }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use crate::scenario::ActionRecorder;

    fn spec(name: &str, args: &str) -> Checked<Option<DummyScenario>> {
        DummyScenario::from_config(name, &Node::parse(args).unwrap())
    }

    async fn run(s: &DummyScenario, n: u64) -> (Result<(), IterationError>, Vec<(u16, u8, bool)>) {
        let mut slot = SlotState::new(7);
        let mut rec = ActionRecorder::new(Clock::new());
        let mut it = Iteration {
            number: n,
            actions: &mut rec,
            output: None,
            idle: 0.0,
            started: std::time::Instant::now(),
        };
        let r = s.run(&mut slot, &mut it).await;
        (
            r,
            rec.spans
                .iter()
                .map(|a| (a.name, a.depth, a.failed))
                .collect(),
        )
    }

    #[tokio::test]
    async fn dummy_nests_bar_in_foo() {
        let s = spec("Dummy.dummy", "{sleep: 0, extra: 1}")
            .unwrap()
            .unwrap();
        let (r, actions) = run(&s, 1).await;
        assert!(r.is_ok());
        assert_eq!(actions, vec![(0, 0, false), (1, 1, false)]);
    }

    #[tokio::test]
    async fn failure_fails_the_chosen_iterations() {
        let s = spec(
            "Dummy.failure",
            "{sleep: 0, from_iteration: 5, to_iteration: 10, each: 2}",
        )
        .unwrap()
        .unwrap();
        let mut failed = Vec::new();
        for n in 1..=20 {
            if let (Err(e), _) = run(&s, n).await {
                assert_eq!(e.etype, "DummyScenarioException");
                assert_eq!(
                    e.message,
                    "Dummy scenario expected exception: 'Expected failure'"
                );
                failed.push(n);
            }
        }
        assert_eq!(failed, vec![6, 8, 10]);
    }

    #[tokio::test]
    async fn exception_messages() {
        let s = spec("Dummy.dummy_exception", "{size_of_message: 5, sleep: 0}")
            .unwrap()
            .unwrap();
        let (r, _) = run(&s, 1).await;
        assert_eq!(
            r.unwrap_err().message,
            "Dummy scenario expected exception: 'MMMMM'"
        );
        let s = spec(
            "Dummy.dummy_exception_probability",
            "{exception_probability: 1}",
        )
        .unwrap()
        .unwrap();
        let (r, _) = run(&s, 1).await;
        assert_eq!(
            r.unwrap_err().message,
            "Dummy scenario expected exception: 'Dummy Scenario Exception: Probability: 1'"
        );
    }

    #[tokio::test]
    async fn random_fail_in_atomic_marks_failed_actions() {
        let s = spec(
            "Dummy.dummy_random_fail_in_atomic",
            "{exception_probability: 1}",
        )
        .unwrap()
        .unwrap();
        let (r, actions) = run(&s, 1).await;
        let e = r.unwrap_err();
        assert_eq!(
            (e.etype.as_str(), e.message.as_str()),
            ("KeyError", "'Dummy test exception'")
        );
        // Rally's outer action fails before the inner one starts.
        assert_eq!(actions, vec![(0, 0, true)]);
    }

    #[test]
    fn bad_arguments_are_rejected() {
        assert!(spec("Dummy.failure", "{sleep: -1}").is_err());
        assert_eq!(
            spec("Dummy.failure", "{nope: 1}").unwrap_err().subpath,
            "nope"
        );
        assert!(spec("Dummy.dummy_exception", "{size_of_message: 0}").is_err());
        assert!(
            spec(
                "Dummy.dummy_exception_probability",
                "{exception_probability: 2}"
            )
            .is_err()
        );
        assert!(spec("Dummy.dummy_random_action", "{sleep_min: 2, sleep_max: 1}").is_err());
        assert!(spec("Nope.nope", "{}").unwrap().is_none());
    }

    #[tokio::test]
    async fn output_has_rallys_charts() {
        let s = spec("Dummy.dummy_output", "{}").unwrap().unwrap();
        let mut slot = SlotState::new(1);
        let mut rec = ActionRecorder::new(Clock::new());
        let mut it = Iteration {
            number: 1,
            actions: &mut rec,
            output: None,
            idle: 0.0,
            started: std::time::Instant::now(),
        };
        s.run(&mut slot, &mut it).await.unwrap();
        let out = it.output.unwrap();
        assert_eq!(out.additive.len(), 4);
        assert_eq!(out.complete.len(), 5);
        assert_eq!(out.complete[4]["chart_plugin"], "Table");
        // Rally's texts, word for word (dummy.py).
        assert_eq!(
            out.additive[0]["description"],
            "This is a description text for Additive StatsTable"
        );
        assert_eq!(out.complete[1]["label"], "Yet another measurement units");
        assert_eq!(
            out.complete[1]["axis_label"],
            "This is a custom X-axis label"
        );
        let text = out.complete[2]["data"].as_array().unwrap();
        assert_eq!(text.len(), 4);
        assert!(text[0].as_str().unwrap().ends_with("magna aliqua.Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore magna aliqua."));
        assert_eq!(out.complete[4]["data"]["cols"][0], "mu column");
        assert_eq!(out.complete[4]["data"]["rows"][0][0], "iota row");
        assert_eq!(out.complete[4]["data"]["rows"][4][0], "psi row");
    }
}
