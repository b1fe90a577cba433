//! Hooks: actions fired at chosen iterations or seconds of a workload, e.g. to inject a fault
//! while the load runs. Rally's `sys_call` action with its `event` and `periodic` triggers.
//!
//! Each firing runs in its own task, so a slow command never delays the load; results are
//! collected when the workload ends.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::chunk::Output;
use crate::clock::unix_now;
use crate::runner::IterationListener;
use crate::task::check::{self, Checked, PluginError, list};
use crate::task::node::Node;

pub const ACTIONS: &[&str] = &["sys_call"];
pub const TRIGGERS: &[&str] = &["event", "periodic"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    Iteration,
    Time,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Trigger {
    Event {
        unit: Unit,
        at: Vec<u64>,
    },
    Periodic {
        unit: Unit,
        step: u64,
        start: u64,
        end: Option<u64>,
    },
}

impl Trigger {
    pub fn unit(&self) -> Unit {
        match self {
            Trigger::Event { unit, .. } | Trigger::Periodic { unit, .. } => *unit,
        }
    }

    /// Whether an event of this trigger's unit with value `v` fires it.
    pub fn fires(&self, v: u64) -> bool {
        match self {
            Trigger::Event { at, .. } => at.contains(&v),
            Trigger::Periodic {
                step, start, end, ..
            } => v >= *start && end.is_none_or(|e| v <= e) && (v - start).is_multiple_of(*step),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct HookSpec {
    pub description: String,
    /// The command line of `sys_call`, split shell-style.
    pub argv: Vec<String>,
    pub command: String,
    pub trigger: Trigger,
    /// The hook as configured, in Rally's v2 shape.
    pub config: serde_json::Value,
}

impl HookSpec {
    /// v2: `{description, action: {sys_call: CMD}, trigger: {NAME: ARGS}}`;
    /// v1: `{name: sys_call, description, args: CMD, trigger: {name: NAME, args: ARGS}}`.
    pub fn from_config(node: &Node, v1: bool) -> Checked<HookSpec> {
        let (action_name, action_args, trigger_name, trigger_args, trigger_path) = if v1 {
            check::mapping(node, &["name", "description", "args", "trigger"])?;
            let name = check::required(
                check::string(node, "name")?,
                "name",
                "the hook action, e.g. 'sys_call'",
            )?;
            let args = check::required(node.get("args"), "args", "the action's arguments")?;
            let trigger = check::required(node.get("trigger"), "trigger", "when the hook fires")?;
            check::mapping(trigger, &["name", "args"]).map_err(|e| prefix("trigger", e))?;
            let tname = check::required(
                check::string(trigger, "name")?,
                "trigger.name",
                "'event' or 'periodic'",
            )?;
            let targs = check::required(
                trigger.get("args"),
                "trigger.args",
                "the trigger's arguments",
            )?;
            (name, args, tname, targs, "trigger.args")
        } else {
            check::mapping(node, &["description", "action", "trigger"])?;
            let action = check::required(node.get("action"), "action", "{sys_call: COMMAND}")?;
            let (name, args) = single(action, "action")?;
            let trigger = check::required(
                node.get("trigger"),
                "trigger",
                "{event: {...}} or {periodic: {...}}",
            )?;
            let (tname, targs) = single(trigger, "trigger")?;
            (name, args, tname, targs, "trigger")
        };
        if action_name != "sys_call" {
            return Err(PluginError::new(
                "action",
                format!(
                    "unknown hook action '{action_name}'; available: {}",
                    list(ACTIONS)
                ),
            ));
        }
        let Some(command) = action_args.as_str() else {
            return Err(PluginError::new(
                "action.sys_call",
                "must be a command line string",
            ));
        };
        let argv = shlex::split(command)
            .filter(|a| !a.is_empty())
            .ok_or_else(|| {
                PluginError::new(
                    "action.sys_call",
                    format!("cannot split the command line {command:?}"),
                )
            })?;
        let trigger_path = if v1 {
            trigger_path.to_string()
        } else {
            format!("{trigger_path}.{trigger_name}")
        };
        let trigger =
            trigger_from(&trigger_name, trigger_args).map_err(|e| prefix(&trigger_path, e))?;
        let description = check::string(node, "description")?.unwrap_or_default();
        let config = serde_json::json!({
            "description": description,
            "action": {"sys_call": command},
            "trigger": {trigger_name.clone(): trigger_args.to_json()},
        });
        Ok(HookSpec {
            description,
            argv,
            command: command.to_string(),
            trigger,
            config,
        })
    }
}

fn prefix(path: &str, e: PluginError) -> PluginError {
    PluginError::new(
        if e.subpath.is_empty() {
            path.to_string()
        } else {
            format!("{path}.{}", e.subpath)
        },
        e.message,
    )
}

fn single<'a>(node: &'a Node, key: &str) -> Checked<(String, &'a Node)> {
    match node.as_map() {
        Some([(name, value)]) => Ok((name.clone(), value)),
        _ => Err(PluginError::new(
            key,
            "must be a mapping with exactly one plugin name",
        )),
    }
}

fn trigger_from(name: &str, args: &Node) -> Checked<Trigger> {
    let unit = |args: &Node| -> Checked<Unit> {
        match check::required(
            check::string(args, "unit")?,
            "unit",
            "'iteration' or 'time'",
        )?
        .as_str()
        {
            "iteration" => Ok(Unit::Iteration),
            "time" => Ok(Unit::Time),
            other => Err(PluginError::new(
                "unit",
                format!("must be 'iteration' or 'time', got '{other}'"),
            )),
        }
    };
    match name {
        "event" => {
            check::mapping(args, &["unit", "at"])?;
            let unit = unit(args)?;
            let min = if unit == Unit::Iteration { 1 } else { 0 };
            let at_node = check::required(args.get("at"), "at", "a list of iterations or seconds")?;
            let Some(items) = at_node.as_seq().filter(|i| !i.is_empty()) else {
                return Err(PluginError::new(
                    "at",
                    "must be a non-empty list of integers",
                ));
            };
            let mut at = Vec::new();
            for (i, item) in items.iter().enumerate() {
                match item.as_i64() {
                    Some(v) if v >= min => {
                        if at.contains(&(v as u64)) {
                            return Err(PluginError::new(
                                format!("at[{i}]"),
                                format!("{v} is listed twice; values must be unique"),
                            ));
                        }
                        at.push(v as u64);
                    }
                    _ => {
                        return Err(PluginError::new(
                            format!("at[{i}]"),
                            format!("must be an integer >= {min}, got {}", check::describe(item)),
                        ));
                    }
                }
            }
            Ok(Trigger::Event { unit, at })
        }
        "periodic" => {
            check::mapping(args, &["unit", "step", "start", "end"])?;
            let unit = unit(args)?;
            let min = if unit == Unit::Iteration { 1 } else { 0 };
            let step = check::required(
                check::int_at_least(args, "step", 1)?,
                "step",
                "an integer >= 1",
            )? as u64;
            let start = check::int_at_least(args, "start", min)?.map_or(min as u64, |v| v as u64);
            let end = check::int_at_least(args, "end", min)?.map(|v| v as u64);
            Ok(Trigger::Periodic {
                unit,
                step,
                start,
                end,
            })
        }
        other => Err(PluginError::new(
            "",
            format!("unknown trigger '{other}'; available: {}", list(TRIGGERS)),
        )),
    }
}

/// Rally's hook result entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HookRun {
    pub status: String,
    pub started_at: f64,
    pub finished_at: f64,
    pub triggered_by: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<serde_json::Value>,
    pub output: Output,
}

/// All firings of one configured hook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HookResult {
    pub config: serde_json::Value,
    pub results: Vec<HookRun>,
    pub summary: std::collections::BTreeMap<String, u64>,
}

struct Firing {
    hook: usize,
    unit: Unit,
    value: u64,
}

/// Runs a workload's hooks while its runner runs.
pub struct HookExecutor {
    hooks: Arc<Vec<HookSpec>>,
    fire_tx: mpsc::UnboundedSender<Firing>,
    worker: tokio::task::JoinHandle<Vec<(usize, HookRun)>>,
    /// Cancelled when the load is over (at `ended`): the time clock fires up to the first
    /// whole second at or after that, then stops.
    load_over: CancellationToken,
    ended: Arc<std::sync::Mutex<Option<tokio::time::Instant>>>,
}

impl HookExecutor {
    /// Start the executor; the time unit's clock starts now (when the load starts).
    pub fn start(hooks: Vec<HookSpec>) -> HookExecutor {
        let hooks = Arc::new(hooks);
        let (fire_tx, mut fire_rx) = mpsc::unbounded_channel::<Firing>();
        let load_over = CancellationToken::new();
        // The clock's origin: now, when the load starts, not when its task first runs.
        let start = tokio::time::Instant::now();
        let ended: Arc<std::sync::Mutex<Option<tokio::time::Instant>>> = Default::default();
        // Cancelled once no more firings come: the clock's last tick, or, without a clock,
        // the load's end itself.
        let has_clock = hooks.iter().any(|h| h.trigger.unit() == Unit::Time);
        let closed = if has_clock {
            CancellationToken::new()
        } else {
            load_over.clone()
        };
        if has_clock {
            let (hooks, tx, over, done, ended) = (
                hooks.clone(),
                fire_tx.clone(),
                load_over.clone(),
                closed.clone(),
                ended.clone(),
            );
            tokio::spawn(async move {
                // As Rally's hook executor: its clock runs until the workload's results are
                // collected, so the first whole second at or after the load's end still
                // fires (a 2.5 s load fires at 0, 1, 2 and 3).
                let _done = done.drop_guard();
                let mut tick = tokio::time::interval_at(start, Duration::from_secs(1));
                for second in 0u64.. {
                    tick.tick().await;
                    let due = start + Duration::from_secs(second);
                    for (i, h) in hooks.iter().enumerate() {
                        if h.trigger.unit() == Unit::Time && h.trigger.fires(second) {
                            let _ = tx.send(Firing {
                                hook: i,
                                unit: Unit::Time,
                                value: second,
                            });
                        }
                    }
                    // Judged by the tick's own time, not by when this task got to run: a
                    // load that ended before the clock's first tick still gets its second.
                    let end = *ended.lock().unwrap_or_else(|p| p.into_inner());
                    if over.is_cancelled() && end.is_none_or(|end| due >= end) {
                        break;
                    }
                }
            });
        }
        let runner_hooks = hooks.clone();
        let worker = tokio::spawn(async move {
            let mut running = tokio::task::JoinSet::new();
            let mut fire = |f: Firing| {
                let hook = runner_hooks[f.hook].clone();
                running.spawn(async move { (f.hook, sys_call(&hook, f.unit, f.value).await) });
            };
            // Runners may still hold listeners when the workload ends: stop on `closed`,
            // after taking what they already sent.
            loop {
                tokio::select! {
                    biased;
                    f = fire_rx.recv() => match f {
                        Some(f) => fire(f),
                        None => break,
                    },
                    _ = closed.cancelled() => {
                        while let Ok(f) = fire_rx.try_recv() {
                            fire(f);
                        }
                        break;
                    }
                }
            }
            let mut runs = Vec::new();
            while let Some(r) = running.join_next().await {
                if let Ok(r) = r {
                    runs.push(r);
                }
            }
            runs
        });
        HookExecutor {
            hooks,
            fire_tx,
            worker,
            load_over,
            ended,
        }
    }

    /// The listener a runner calls at each iteration start, if any hook counts iterations.
    pub fn iteration_listener(&self) -> Option<IterationListener> {
        if !self
            .hooks
            .iter()
            .any(|h| h.trigger.unit() == Unit::Iteration)
        {
            return None;
        }
        let (hooks, tx) = (self.hooks.clone(), self.fire_tx.clone());
        Some(Arc::new(move |n: u64| {
            for (i, h) in hooks.iter().enumerate() {
                if h.trigger.unit() == Unit::Iteration && h.trigger.fires(n) {
                    let _ = tx.send(Firing {
                        hook: i,
                        unit: Unit::Iteration,
                        value: n,
                    });
                }
            }
        }))
    }

    /// Say the load is over (the clock fires its next whole second, then stops), wait for
    /// running actions, and return each hook's results.
    pub async fn finish(self) -> Vec<HookResult> {
        *self.ended.lock().unwrap_or_else(|p| p.into_inner()) = Some(tokio::time::Instant::now());
        self.load_over.cancel();
        let mut runs = self.worker.await.unwrap_or_default();
        runs.sort_by(|a, b| a.1.started_at.total_cmp(&b.1.started_at));
        self.hooks
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let results: Vec<HookRun> = runs
                    .iter()
                    .filter(|(k, _)| *k == i)
                    .map(|(_, r)| r.clone())
                    .collect();
                let mut summary = std::collections::BTreeMap::new();
                for r in &results {
                    *summary.entry(r.status.clone()).or_insert(0) += 1;
                }
                HookResult {
                    config: h.config.clone(),
                    results,
                    summary,
                }
            })
            .collect()
    }
}

/// A command that could not be started, as Python's `subprocess.Popen` raises it: the
/// exception's class and `str()` (`FileNotFoundError`, `[Errno 2] No such file or directory:
/// 'nope'`).
fn spawn_error(program: &str, e: &std::io::Error) -> (&'static str, String) {
    let errno = e.raw_os_error().unwrap_or(0);
    let (etype, text) = match e.kind() {
        std::io::ErrorKind::NotFound => ("FileNotFoundError", "No such file or directory"),
        std::io::ErrorKind::PermissionDenied => ("PermissionError", "Permission denied"),
        _ => ("OSError", ""),
    };
    let text = if text.is_empty() {
        e.to_string()
    } else {
        text.to_string()
    };
    (etype, format!("[Errno {errno}] {text}: '{program}'"))
}

/// Run the command without a shell and record it as Rally's `sys_call` does.
async fn sys_call(hook: &HookSpec, unit: Unit, value: u64) -> HookRun {
    let started_at = unix_now();
    let triggered_by = serde_json::json!({"event_type": unit, "value": value});
    let out = tokio::process::Command::new(&hook.argv[0])
        .args(&hook.argv[1..])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await;
    let finished_at = unix_now();
    let (rc, stdout, stderr) = match out {
        Ok(o) => (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        ),
        Err(e) => {
            // Rally's Popen raises, and its hook records the exception: no output.
            let (etype, msg) = spawn_error(&hook.argv[0], &e);
            return HookRun {
                status: "failed".to_string(),
                started_at,
                finished_at,
                triggered_by,
                error: Some(serde_json::json!({
                    "etype": etype,
                    "msg": msg,
                    "details": format!("Traceback (most recent call last):\n{etype}: {msg}"),
                })),
                output: Output::default(),
            };
        }
    };
    let mut output = Output::default();
    match serde_json::from_str::<serde_json::Value>(&stdout) {
        Ok(v)
            if v.get("additive").is_some_and(|a| a.is_array())
                || v.get("complete").is_some_and(|c| c.is_array()) =>
        {
            output.additive = v["additive"].as_array().cloned().unwrap_or_default();
            output.complete = v["complete"].as_array().cloned().unwrap_or_default();
        }
        _ => {
            let or_empty = |s: &str| {
                if s.is_empty() {
                    "(empty)".to_string()
                } else {
                    s.to_string()
                }
            };
            output.complete.push(serde_json::json!({
                "title": "System call",
                "chart_plugin": "TextArea",
                "description": format!("Args: {}", hook.command),
                "data": [format!("RetCode: {rc}"), format!("StdOut: {}", or_empty(&stdout)), format!("StdErr: {}", or_empty(&stderr))],
            }));
        }
    }
    let error = (rc != 0).then(|| {
        serde_json::json!({
            "etype": "n/a",
            "msg": format!("Subprocess returned {rc}"),
            "details": if stderr.is_empty() { format!("stdout: {stdout}") } else { stderr.clone() },
        })
    });
    HookRun {
        status: if rc == 0 { "success" } else { "failed" }.to_string(),
        started_at,
        finished_at,
        triggered_by,
        error,
        output,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(yaml: &str) -> Checked<HookSpec> {
        HookSpec::from_config(&Node::parse(yaml).unwrap(), false)
    }

    #[test]
    fn triggers() {
        let p = Trigger::Periodic {
            unit: Unit::Iteration,
            step: 2,
            start: 3,
            end: Some(9),
        };
        let fired: Vec<u64> = (0..12).filter(|v| p.fires(*v)).collect();
        assert_eq!(fired, vec![3, 5, 7, 9]);
        let e = Trigger::Event {
            unit: Unit::Time,
            at: vec![0, 4],
        };
        assert!(e.fires(0) && e.fires(4) && !e.fires(1));
    }

    #[test]
    fn config_forms_and_errors() {
        let h = v2("{description: d, action: {sys_call: \"echo 'a b'\"}, trigger: {event: {unit: iteration, at: [2, 5]}}}").unwrap();
        assert_eq!(h.argv, vec!["echo", "a b"]);
        let v1 = HookSpec::from_config(&Node::parse("{name: sys_call, args: 'true', trigger: {name: periodic, args: {unit: time, step: 2}}}").unwrap(), true).unwrap();
        assert_eq!(
            v1.trigger,
            Trigger::Periodic {
                unit: Unit::Time,
                step: 2,
                start: 0,
                end: None
            }
        );
        assert_eq!(
            v2("{action: {sys_call: x}, trigger: {event: {unit: iteration, at: [0]}}}")
                .unwrap_err()
                .subpath,
            "trigger.event.at[0]"
        );
        assert_eq!(
            v2("{action: {sys_call: x}, trigger: {event: {unit: day, at: [1]}}}")
                .unwrap_err()
                .subpath,
            "trigger.event.unit"
        );
        assert_eq!(
            v2("{action: {shell: x}, trigger: {event: {unit: time, at: [1]}}}")
                .unwrap_err()
                .subpath,
            "action"
        );
        assert_eq!(
            v2("{action: {sys_call: x}, trigger: {periodic: {unit: time}}}")
                .unwrap_err()
                .subpath,
            "trigger.periodic.step"
        );
    }

    #[tokio::test]
    async fn sys_call_records_exit_code_and_output() {
        let ok =
            v2("{action: {sys_call: 'echo hi'}, trigger: {event: {unit: iteration, at: [1]}}}")
                .unwrap();
        let bad = v2("{action: {sys_call: 'sh -c \"echo oops >&2; exit 3\"'}, trigger: {event: {unit: iteration, at: [2]}}}").unwrap();
        let exec = HookExecutor::start(vec![ok, bad]);
        let listener = exec.iteration_listener().unwrap();
        for n in 1..=3 {
            listener(n);
        }
        let results = exec.finish().await;
        assert_eq!(results[0].results.len(), 1);
        assert_eq!(results[0].results[0].status, "success");
        assert_eq!(
            results[0].results[0].output.complete[0]["data"][1],
            "StdOut: hi\n"
        );
        let failed = &results[1].results[0];
        assert_eq!(failed.status, "failed");
        assert_eq!(
            failed.error.as_ref().unwrap()["msg"],
            "Subprocess returned 3"
        );
        assert_eq!(failed.error.as_ref().unwrap()["details"], "oops\n");
        assert_eq!(failed.triggered_by["value"], 2);
    }

    /// A command that does not exist is Python's FileNotFoundError, as Rally records it.
    #[tokio::test]
    async fn a_missing_executable_is_rallys_file_not_found_error() {
        let hook = v2(
            "{action: {sys_call: '/nonexistent/tool --flag'}, trigger: {event: {unit: iteration, at: [1]}}}",
        )
        .unwrap();
        let exec = HookExecutor::start(vec![hook]);
        exec.iteration_listener().unwrap()(1);
        let results = exec.finish().await;
        let run = &results[0].results[0];
        assert_eq!(run.status, "failed");
        let error = run.error.as_ref().unwrap();
        assert_eq!(error["etype"], "FileNotFoundError");
        assert_eq!(
            error["msg"],
            "[Errno 2] No such file or directory: '/nonexistent/tool'"
        );
        assert_eq!(run.output, Output::default(), "no output");
    }

    /// Rally's clock keeps ticking until the results are collected: the first whole second
    /// at or after the load's end still fires.
    #[tokio::test(start_paused = true)]
    async fn time_hooks_fire_through_the_second_after_the_load() {
        let fired = |load: f64, trigger: &'static str| async move {
            let hook = v2(&format!(
                "{{action: {{sys_call: 'true'}}, trigger: {trigger}}}"
            ))
            .unwrap();
            let exec = HookExecutor::start(vec![hook]);
            tokio::time::sleep(Duration::from_secs_f64(load)).await;
            let results = exec.finish().await;
            results[0]
                .results
                .iter()
                .map(|r| r.triggered_by["value"].as_u64().unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            fired(0.4, "{event: {unit: time, at: [1, 2]}}").await,
            vec![1]
        );
        assert_eq!(
            fired(2.5, "{periodic: {unit: time, step: 1}}").await,
            vec![0, 1, 2, 3]
        );
    }

    /// A load over before the clock's task first ran still gets the first whole second
    /// after it (the clock's origin is the executor's start, not the task's first poll).
    #[tokio::test(start_paused = true)]
    async fn a_load_over_before_the_clock_ran_still_gets_its_second() {
        let hook =
            v2("{action: {sys_call: 'true'}, trigger: {event: {unit: time, at: [1, 2]}}}").unwrap();
        let exec = HookExecutor::start(vec![hook]);
        tokio::time::advance(Duration::from_millis(50)).await;
        let results = exec.finish().await;
        let fired: Vec<u64> = results[0]
            .results
            .iter()
            .map(|r| r.triggered_by["value"].as_u64().unwrap())
            .collect();
        assert_eq!(fired, vec![1]);
    }
}
