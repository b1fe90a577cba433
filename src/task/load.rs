//! From a rendered task text to a validated `TaskSpec`: format detection, the v1 and v2
//! layouts, Rally's defaults, and each plugin's own checks.

use std::path::Path;

use super::check::{PluginError, list};
use super::error::{ErrorSite, Path as KeyPath, TaskError};
use super::node::{Node, Value};
use super::{SubtaskSpec, TaskSpec, WorkloadSpec};
use crate::context::ContextSpec;
use crate::hook::HookSpec;
use crate::runner::RunnerSpec;
use crate::scenario::ScenarioSpec;
use crate::sla::SlaChecker;

/// Parse and validate a rendered task text. `file` is only used in messages.
pub fn parse_task(file: &Path, text: &str) -> Result<TaskSpec, TaskError> {
    let site = ErrorSite {
        file: file.to_path_buf(),
    };
    let root = KeyPath::root();
    let doc = Node::parse(text).map_err(|e| TaskError {
        file: file.to_path_buf(),
        mark: Some(e.mark),
        message: if e.path.is_empty() {
            format!("invalid YAML/JSON: {}", e.message)
        } else {
            e.message
        },
        path: e.path,
    })?;
    if text.trim().is_empty() {
        return Err(site.unlocated(&root, "the task file is empty"));
    }
    if doc.as_map().is_none() {
        return Err(site.at(
            &doc,
            &root,
            format!(
                "a task must be a mapping (format v2: version, title, subtasks; format v1: \
                 scenario names), got {}",
                doc.type_name()
            ),
        ));
    }
    let loader = Loader { site: &site };
    let version = match doc.get("version") {
        None => 1,
        Some(v) => match &v.value {
            Value::Int(1) => 1,
            Value::Int(2) => 2,
            Value::Str(s) if s == "1" => 1,
            Value::Str(s) if s == "2" => 2,
            _ => {
                return Err(site.at(
                    v,
                    &root.key("version"),
                    format!(
                        "unsupported task format version {}; allowed: 1, 2",
                        super::check::describe(v)
                    ),
                ));
            }
        },
    };
    let mut task = if version == 2 {
        loader.v2(&doc)?
    } else {
        loader.v1(&doc)?
    };
    task.version = version;
    task.rendered = text.to_string();
    Ok(task)
}

struct Loader<'a> {
    site: &'a ErrorSite,
}

/// The keys of a workload and where they came from (v1 and v2 spell some differently).
struct WorkloadParts<'a> {
    scenario_name: String,
    scenario_name_node: &'a Node,
    scenario_args: Option<&'a Node>,
    runner: Option<(String, &'a Node)>,
    contexts: Option<&'a Node>,
    sla: Option<&'a Node>,
    hooks: Option<&'a Node>,
    description: String,
}

impl Loader<'_> {
    fn err(&self, node: &Node, path: &KeyPath, message: impl Into<String>) -> TaskError {
        self.site.at(node, path, message)
    }

    /// An error about the key that holds `value` (unknown name), reported where the key is.
    fn at_key(&self, value: &Node, path: &KeyPath, message: impl Into<String>) -> TaskError {
        let mut e = self.site.at(value, path, message);
        e.mark = value.key_mark.or(e.mark);
        e
    }

    /// Report a plugin's error at the deepest node its sub-path reaches.
    fn plugin_err(&self, section: &Node, path: &KeyPath, e: PluginError) -> TaskError {
        let node = section.locate(&e.subpath);
        let unknown_key = e.message.starts_with("unknown ");
        let mut err = self.site.at(node, &path.join(&e.subpath), e.message);
        if unknown_key && let Some(k) = node.key_mark {
            err.mark = Some(k);
        }
        err
    }

    fn keys(&self, node: &Node, path: &KeyPath, allowed: &[&str]) -> Result<(), TaskError> {
        let Some(entries) = node.as_map() else {
            return Err(self.err(
                node,
                path,
                format!("must be a mapping, got {}", node.type_name()),
            ));
        };
        for (key, value) in entries {
            if !allowed.contains(&key.as_str()) {
                return Err(self.at_key(
                    value,
                    &path.key(key),
                    format!("unknown key '{key}'; allowed keys: {}", list(allowed)),
                ));
            }
        }
        Ok(())
    }

    fn required<'n>(
        &self,
        node: &'n Node,
        path: &KeyPath,
        key: &str,
    ) -> Result<&'n Node, TaskError> {
        node.get(key).ok_or_else(|| {
            self.err(
                node,
                &path.key(key),
                format!("'{key}' is a required property, but it is missing"),
            )
        })
    }

    fn string(
        &self,
        node: &Node,
        path: &KeyPath,
        key: &str,
        max_len: usize,
    ) -> Result<Option<String>, TaskError> {
        let Some(v) = node.get(key) else {
            return Ok(None);
        };
        let Some(s) = v.as_str() else {
            return Err(self.err(
                v,
                &path.key(key),
                format!("must be a string, got {}", v.type_name()),
            ));
        };
        if s.chars().count() > max_len {
            return Err(self.err(
                v,
                &path.key(key),
                format!(
                    "must be at most {max_len} characters long, got {}",
                    s.chars().count()
                ),
            ));
        }
        Ok(Some(s.to_string()))
    }

    fn tags(&self, node: &Node, path: &KeyPath) -> Result<Vec<String>, TaskError> {
        let Some(v) = node.get("tags") else {
            return Ok(Vec::new());
        };
        let path = path.key("tags");
        let Some(items) = v.as_seq() else {
            return Err(self.err(
                v,
                &path,
                format!("must be a list of strings, got {}", v.type_name()),
            ));
        };
        items
            .iter()
            .enumerate()
            .map(|(i, t)| match t.as_str() {
                Some(s) if s.chars().count() <= 255 => Ok(s.to_string()),
                Some(_) => Err(self.err(t, &path.index(i), "a tag must be at most 255 characters")),
                None => Err(self.err(
                    t,
                    &path.index(i),
                    format!("a tag must be a string, got {}", t.type_name()),
                )),
            })
            .collect()
    }

    /// `{"name": {...}}`: an object with exactly one property whose value is an object.
    fn single_entity<'n>(
        &self,
        node: &'n Node,
        path: &KeyPath,
        what: &str,
    ) -> Result<(String, &'n Node), TaskError> {
        match node.as_map() {
            Some([(name, value)]) => Ok((name.clone(), value)),
            Some(entries) => Err(self.err(
                node,
                path,
                format!(
                    "must name exactly one {what} plugin, like {{\"NAME\": {{...}}}}; got {} keys",
                    entries.len()
                ),
            )),
            None => Err(self.err(
                node,
                path,
                format!(
                    "must be a mapping with one {what} plugin, like {{\"NAME\": {{...}}}}; got {}",
                    node.type_name()
                ),
            )),
        }
    }

    fn v2(&self, doc: &Node) -> Result<TaskSpec, TaskError> {
        let root = KeyPath::root();
        self.keys(
            doc,
            &root,
            &["version", "title", "description", "tags", "subtasks"],
        )?;
        let title_node = self.required(doc, &root, "title")?;
        if title_node.as_str().is_none() {
            return Err(self.err(
                title_node,
                &root.key("title"),
                format!("must be a string, got {}", title_node.type_name()),
            ));
        }
        let title = self.string(doc, &root, "title", 254)?.unwrap_or_default();
        let description = self
            .string(doc, &root, "description", usize::MAX)?
            .unwrap_or_default();
        let tags = self.tags(doc, &root)?;
        let subtasks_node = self.required(doc, &root, "subtasks")?;
        let path = root.key("subtasks");
        let Some(items) = subtasks_node.as_seq() else {
            return Err(self.err(
                subtasks_node,
                &path,
                format!(
                    "must be a list of subtasks, got {}",
                    subtasks_node.type_name()
                ),
            ));
        };
        if items.is_empty() {
            return Err(self.err(subtasks_node, &path, "must hold at least one subtask"));
        }
        let subtasks = items
            .iter()
            .enumerate()
            .map(|(i, s)| self.v2_subtask(s, &path.index(i)))
            .collect::<Result<_, _>>()?;
        Ok(TaskSpec {
            file: self.site.file.clone(),
            title,
            description,
            tags,
            version: 2,
            subtasks,
            rendered: String::new(),
        })
    }

    fn v2_subtask(&self, node: &Node, path: &KeyPath) -> Result<SubtaskSpec, TaskError> {
        const COMPLEX: &[&str] = &[
            "title",
            "group",
            "description",
            "tags",
            "run_in_parallel",
            "workloads",
        ];
        const SIMPLE: &[&str] = &[
            "title",
            "group",
            "description",
            "tags",
            "scenario",
            "runner",
            "sla",
            "hooks",
            "contexts",
        ];
        if node.as_map().is_none() {
            return Err(self.err(
                node,
                path,
                format!("a subtask must be a mapping, got {}", node.type_name()),
            ));
        }
        let complex = node.get("workloads").is_some();
        self.keys(node, path, if complex { COMPLEX } else { SIMPLE })?;
        let title_node = self.required(node, path, "title")?;
        if title_node.as_str().is_none() {
            return Err(self.err(
                title_node,
                &path.key("title"),
                format!("must be a string, got {}", title_node.type_name()),
            ));
        }
        let title = self
            .string(node, path, "title", if complex { usize::MAX } else { 128 })?
            .unwrap_or_default();
        let description = self
            .string(node, path, "description", usize::MAX)?
            .unwrap_or_default();
        let tags = self.tags(node, path)?;
        if let Some(v) = node.get("run_in_parallel")
            && v.as_bool().is_none()
        {
            return Err(self.err(
                v,
                &path.key("run_in_parallel"),
                format!("must be a boolean, got {}", v.type_name()),
            ));
        }
        let workloads = if complex {
            let wpath = path.key("workloads");
            let wnode = node.get("workloads").unwrap_or(node);
            let Some(items) = wnode.as_seq() else {
                return Err(self.err(
                    wnode,
                    &wpath,
                    format!("must be a list of workloads, got {}", wnode.type_name()),
                ));
            };
            if items.is_empty() {
                return Err(self.err(wnode, &wpath, "must hold at least one workload"));
            }
            items
                .iter()
                .enumerate()
                .map(|(i, w)| {
                    let p = wpath.index(i);
                    self.keys(
                        w,
                        &p,
                        &[
                            "scenario",
                            "description",
                            "runner",
                            "sla",
                            "hooks",
                            "contexts",
                        ],
                    )?;
                    self.v2_workload(w, &p, i)
                })
                .collect::<Result<_, _>>()?
        } else {
            vec![self.v2_workload(node, path, 0)?]
        };
        Ok(SubtaskSpec {
            title,
            description,
            tags,
            workloads,
        })
    }

    fn v2_workload(
        &self,
        node: &Node,
        path: &KeyPath,
        position: usize,
    ) -> Result<WorkloadSpec, TaskError> {
        let scenario_node = self.required(node, path, "scenario")?;
        let (scenario_name, args) =
            self.single_entity(scenario_node, &path.key("scenario"), "scenario")?;
        let runner = match node.get("runner") {
            Some(r) => {
                let (name, cfg) = self.single_entity(r, &path.key("runner"), "runner")?;
                Some((name, cfg))
            }
            None => None,
        };
        let description = self
            .string(node, path, "description", usize::MAX)?
            .unwrap_or_default();
        self.workload(
            WorkloadParts {
                scenario_name,
                scenario_name_node: scenario_node,
                scenario_args: Some(args),
                runner,
                contexts: node.get("contexts"),
                sla: node.get("sla"),
                hooks: node.get("hooks"),
                description,
            },
            path,
            position,
            "contexts",
            2,
        )
    }

    fn v1(&self, doc: &Node) -> Result<TaskSpec, TaskError> {
        let root = KeyPath::root();
        let mut subtasks = Vec::new();
        for (name, workloads) in doc.as_map().unwrap_or_default() {
            if name == "version" {
                continue;
            }
            let path = root.key(name);
            let Some(items) = workloads.as_seq() else {
                return Err(self.err(
                    workloads,
                    &path,
                    format!(
                        "format v1 expects a list of workloads under each scenario name, got {} \
                         (a v2 task needs 'version: 2')",
                        workloads.type_name()
                    ),
                ));
            };
            let mut specs = Vec::new();
            for (i, w) in items.iter().enumerate() {
                let p = path.index(i);
                self.keys(
                    w,
                    &p,
                    &["args", "runner", "context", "sla", "hooks", "description"],
                )?;
                let runner = match w.get("runner") {
                    Some(r) => {
                        let rp = p.key("runner");
                        if r.as_map().is_none() {
                            return Err(self.err(
                                r,
                                &rp,
                                format!("must be a mapping with a 'type', got {}", r.type_name()),
                            ));
                        }
                        let type_node = r.get("type").ok_or_else(|| {
                            self.err(r, &rp.key("type"), "'type' is a required property, but it is missing (the runner's name, e.g. 'constant')")
                        })?;
                        let Some(t) = type_node.as_str() else {
                            return Err(self.err(
                                type_node,
                                &rp.key("type"),
                                "must be a string naming a runner",
                            ));
                        };
                        Some((t.to_string(), r))
                    }
                    None => None,
                };
                let description = self
                    .string(w, &p, "description", usize::MAX)?
                    .unwrap_or_default();
                specs.push(self.workload(
                    WorkloadParts {
                        scenario_name: name.clone(),
                        scenario_name_node: workloads,
                        scenario_args: w.get("args"),
                        runner,
                        contexts: w.get("context"),
                        sla: w.get("sla"),
                        hooks: w.get("hooks"),
                        description,
                    },
                    &p,
                    i,
                    "context",
                    1,
                )?);
            }
            subtasks.push(SubtaskSpec {
                title: name.clone(),
                description: String::new(),
                tags: Vec::new(),
                workloads: specs,
            });
        }
        if subtasks.is_empty() {
            return Err(self.err(doc, &root, "the task has no workloads: format v1 lists scenario names at the top, format v2 needs 'version: 2', 'title' and 'subtasks'"));
        }
        Ok(TaskSpec {
            file: self.site.file.clone(),
            title: "Task (adopted from task format v1)".into(),
            description: String::new(),
            tags: Vec::new(),
            version: 1,
            subtasks,
            rendered: String::new(),
        })
    }

    /// Validate one workload's plugins, whatever the format.
    fn workload(
        &self,
        parts: WorkloadParts<'_>,
        path: &KeyPath,
        position: usize,
        contexts_key: &str,
        version: u8,
    ) -> Result<WorkloadSpec, TaskError> {
        let empty = Node {
            mark: parts.scenario_name_node.mark,
            key_mark: parts.scenario_name_node.key_mark,
            value: Value::Map(Vec::new()),
        };
        let args = parts.scenario_args.unwrap_or(&empty);
        let (scenario_path, args_path) = if version == 2 {
            let p = path.key("scenario");
            (p.clone(), p.key(&parts.scenario_name))
        } else {
            (KeyPath::root().key(&parts.scenario_name), path.key("args"))
        };
        let scenario = ScenarioSpec::from_config(&parts.scenario_name, args).map_err(|e| {
            if e.subpath.is_empty()
                && args.as_map().is_some()
                && crate::scenario::is_unknown(&parts.scenario_name)
            {
                let named = if version == 2 {
                    args
                } else {
                    parts.scenario_name_node
                };
                self.at_key(named, &scenario_path, e.message)
            } else {
                self.plugin_err(args, &args_path, e)
            }
        })?;

        let runner = match &parts.runner {
            None => RunnerSpec::default_serial(),
            Some((name, cfg)) => {
                let rpath = if version == 2 {
                    path.key("runner").key(name)
                } else {
                    path.key("runner")
                };
                RunnerSpec::from_config(name, cfg, version == 1).map_err(|e| {
                    if e.subpath.is_empty() && crate::runner::is_unknown(name) {
                        match cfg.get("type") {
                            Some(t) if version == 1 => {
                                self.err(t, &path.key("runner").key("type"), e.message)
                            }
                            _ => self.at_key(cfg, &path.key("runner"), e.message),
                        }
                    } else {
                        self.plugin_err(cfg, &rpath, e)
                    }
                })?
            }
        };

        let contexts = match parts.contexts {
            None => Vec::new(),
            Some(node) => {
                let cpath = path.key(contexts_key);
                let Some(entries) = node.as_map() else {
                    return Err(self.err(
                        node,
                        &cpath,
                        format!(
                            "must be a mapping of context names to their configuration, got {}",
                            node.type_name()
                        ),
                    ));
                };
                entries
                    .iter()
                    .map(|(name, cfg)| {
                        ContextSpec::from_config(name, cfg).map_err(|e| {
                            if e.subpath.is_empty() && crate::context::is_unknown(name) {
                                self.at_key(cfg, &cpath.key(name), e.message)
                            } else {
                                self.plugin_err(cfg, &cpath.key(name), e)
                            }
                        })
                    })
                    .collect::<Result<_, _>>()?
            }
        };

        let sla = match parts.sla {
            // Rally's default since 0.10: a workload without an SLA must not fail any iteration.
            None => {
                let mut m = serde_json::Map::new();
                m.insert("failure_rate".into(), serde_json::json!({"max": 0}));
                m
            }
            Some(node) => {
                let spath = path.key("sla");
                let serde_json::Value::Object(map) = node.to_json() else {
                    return Err(self.err(
                        node,
                        &spath,
                        format!(
                            "must be a mapping of SLA criteria to their limits, got {}",
                            node.type_name()
                        ),
                    ));
                };
                if let Err(e) = SlaChecker::from_config(&map) {
                    return Err(self.plugin_err(
                        node,
                        &spath,
                        PluginError::new(e.subpath, e.message),
                    ));
                }
                map
            }
        };

        let hooks = match parts.hooks {
            None => Vec::new(),
            Some(node) => {
                let hpath = path.key("hooks");
                let Some(items) = node.as_seq() else {
                    return Err(self.err(
                        node,
                        &hpath,
                        format!("must be a list of hooks, got {}", node.type_name()),
                    ));
                };
                items
                    .iter()
                    .enumerate()
                    .map(|(i, h)| {
                        let p = hpath.index(i);
                        HookSpec::from_config(h, version == 1)
                            .map_err(|e| self.plugin_err(h, &p, e))
                    })
                    .collect::<Result<_, _>>()?
            }
        };

        Ok(WorkloadSpec {
            position,
            description: if parts.description.is_empty() {
                scenario.kind.summary().to_string()
            } else {
                parts.description
            },
            scenario,
            runner,
            contexts,
            sla,
            hooks,
        })
    }
}
