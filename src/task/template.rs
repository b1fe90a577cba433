//! Rendering a task file as a Jinja2 template, with Rally's task arguments and helpers.
//!
//! Rally renders every task file with Jinja2 before parsing it, so `{{ times | default(10) }}`
//! and `{% for %}` loops are part of the format. minijinja is the Rust Jinja2.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use minijinja::{Environment, Error as JinjaError, ErrorKind, UndefinedBehavior, Value};
use serde_json::Map;

use super::node::{Mark, Node};

/// What went wrong while preparing the template's inputs or rendering it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TemplateError {
    #[error("Please specify template task argument{}: {}", if .0.len() > 1 { "s" } else { "" }, .0.join(", "))]
    MissingArguments(Vec<String>),
    #[error("{message}")]
    Render { mark: Option<Mark>, message: String },
    #[error("{0}")]
    BadArguments(String),
}

/// Task arguments in Rally's precedence: the `--task-args-file` mapping first, then
/// `--task-args` on top of it.
pub fn collect_args(
    args: Option<&str>,
    args_file: Option<&Path>,
) -> Result<Map<String, serde_json::Value>, TemplateError> {
    let mut merged = Map::new();
    if let Some(path) = args_file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            TemplateError::BadArguments(format!(
                "cannot read --task-args-file {}: {e}",
                path.display()
            ))
        })?;
        let map = parse_mapping(&text).ok_or_else(|| {
            TemplateError::BadArguments(format!(
                "--task-args-file {} must hold a YAML or JSON mapping",
                path.display()
            ))
        })?;
        merged.extend(map);
    }
    if let Some(text) = args {
        merged.extend(parse_task_args(text)?);
    }
    Ok(merged)
}

/// `--task-args` is YAML/JSON, or, as Rally's fallback, `k1=v1,k2=v2` with string values.
pub fn parse_task_args(text: &str) -> Result<Map<String, serde_json::Value>, TemplateError> {
    if let Some(map) = parse_mapping(text) {
        return Ok(map);
    }
    let mut map = Map::new();
    for piece in text.split(',') {
        match piece.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => {
                map.insert(
                    k.trim().to_string(),
                    serde_json::Value::String(v.to_string()),
                );
            }
            _ => {
                return Err(TemplateError::BadArguments(format!(
                    "--task-args must be a YAML/JSON mapping or 'key=value,key=value', got {text:?}"
                )));
            }
        }
    }
    Ok(map)
}

fn parse_mapping(text: &str) -> Option<Map<String, serde_json::Value>> {
    match Node::parse(text).ok()?.to_json() {
        serde_json::Value::Object(m) => Some(m),
        _ => None,
    }
}

/// Python builtins count as known names in Rally's missing-argument check.
const PYTHON_BUILTINS: &[&str] = &[
    "abs",
    "all",
    "any",
    "bool",
    "dict",
    "enumerate",
    "float",
    "int",
    "len",
    "list",
    "map",
    "range",
    "reversed",
    "set",
    "sorted",
    "str",
    "sum",
    "tuple",
    "zip",
    "True",
    "False",
    "None",
    "loop",
    "namespace",
    "lipsum",
    "cycler",
    "joiner",
    "debug",
];

/// Rally's extra template globals.
const RALLY_GLOBALS: &[&str] = &["min", "max", "round", "ceil"];

/// Render `source` (read from `file`) with `args`. Includes resolve relative to the file.
pub fn render(
    source: &str,
    file: &Path,
    args: &Map<String, serde_json::Value>,
) -> Result<String, TemplateError> {
    let dir: PathBuf = file
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Lenient);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.set_loader(move |name| match std::fs::read_to_string(dir.join(name)) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(JinjaError::new(
            ErrorKind::InvalidOperation,
            format!("cannot read included template {name}: {e}"),
        )),
    });
    env.add_function("min", |a: Value, b: Value| if b < a { b } else { a });
    env.add_function("max", |a: Value, b: Value| if b > a { b } else { a });
    env.add_function("round", |x: f64| x.round_ties_even() as i64);
    env.add_function("ceil", |x: f64| x.ceil() as i64);
    env.add_filter("pyformat", |format: String, args: Value| {
        super::percent::pyformat(&format, args)
    });

    // Jinja2's `"%d" % x`, which minijinja lacks, as a filter call (see `percent`).
    let rewritten = super::percent::rewrite(source);
    let source = rewritten.as_str();
    let template = env
        .template_from_named_str("task", source)
        .map_err(|e| render_error(e, source))?;

    let mut missing: BTreeSet<String> = template
        .undeclared_variables(false)
        .into_iter()
        .filter(|name| !args.contains_key(name))
        .filter(|name| !PYTHON_BUILTINS.contains(&name.as_str()))
        .filter(|name| !RALLY_GLOBALS.contains(&name.as_str()))
        .filter(|name| !excused(source, name))
        .collect();
    if !missing.is_empty() {
        return Err(TemplateError::MissingArguments(
            std::mem::take(&mut missing).into_iter().collect(),
        ));
    }
    template
        .render(minijinja::value::Serde(args))
        .map_err(|e| render_error(e, source))
}

/// Rally excuses a variable the template defaults itself: `{% set X = X or ... %}` or
/// `X | default(`.
fn excused(source: &str, name: &str) -> bool {
    let squeezed: String = source.split_whitespace().collect();
    squeezed.contains(&format!("{{%set{name}={name}or"))
        || squeezed.contains(&format!("{name}|default("))
}

fn render_error(e: JinjaError, source: &str) -> TemplateError {
    let mut message = e
        .detail()
        .map_or_else(|| e.kind().to_string(), str::to_string);
    if let Some(cause) = std::error::Error::source(&e) {
        message = format!("{message}: {cause}");
    }
    // The byte range of the offending token gives the column; the line alone is the fallback.
    let mark = match e.range().filter(|r| r.start <= source.len()) {
        Some(range) => {
            let before = &source[..range.start];
            let line = before.matches('\n').count() + 1;
            let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            Some(Mark { line, col })
        }
        None => e.line().map(|line| Mark { line, col: 1 }),
    };
    TemplateError::Render {
        mark,
        message: format!("template error: {message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn args(v: serde_json::Value) -> Map<String, serde_json::Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn renders_arguments_and_defaults() {
        let out = render(
            "times: {{ times }}\nc: {{ c | default(3) }}",
            Path::new("t.yaml"),
            &args(json!({"times": 5})),
        )
        .unwrap();
        assert_eq!(out, "times: 5\nc: 3");
    }

    #[test]
    fn a_missing_argument_is_named() {
        let e = render("a: {{ x }} {{ y }}", Path::new("t.yaml"), &Map::new()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Please specify template task arguments: x, y"
        );
        let e = render("a: {{ x }}", Path::new("t.yaml"), &Map::new()).unwrap_err();
        assert_eq!(e.to_string(), "Please specify template task argument: x");
    }

    #[test]
    fn set_or_excuses_a_variable() {
        let out = render(
            "{% set n = n or 4 %}n: {{ n }}",
            Path::new("t.yaml"),
            &Map::new(),
        )
        .unwrap();
        assert_eq!(out, "n: 4");
    }

    #[test]
    fn rally_globals() {
        let out = render(
            "{{ min(3, 2) }} {{ max(3, 2) }} {{ round(2.5) }} {{ ceil(2.1) }}",
            Path::new("t.yaml"),
            &Map::new(),
        )
        .unwrap();
        assert_eq!(out, "2 3 2 3");
    }

    #[test]
    fn task_args_precedence_and_fallback() {
        assert_eq!(
            parse_task_args("a=1,b=x").unwrap(),
            args(json!({"a": "1", "b": "x"}))
        );
        assert_eq!(parse_task_args("{a: 1}").unwrap(), args(json!({"a": 1})));
        assert!(parse_task_args("nonsense").is_err());
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("args.yaml");
        std::fs::write(&f, "a: 1\nb: 2\n").unwrap();
        let merged = collect_args(Some("{b: 3}"), Some(&f)).unwrap();
        assert_eq!(merged, args(json!({"a": 1, "b": 3})));
    }

    #[test]
    fn syntax_errors_carry_a_line() {
        match render(
            "a: 1\nb: {{ x ",
            Path::new("t.yaml"),
            &args(json!({"x": 1})),
        ) {
            Err(TemplateError::Render { mark, .. }) => {
                assert_eq!(mark.unwrap().line, 2);
                assert!(mark.unwrap().col > 1, "{mark:?}");
            }
            other => panic!("{other:?}"),
        }
    }
}
