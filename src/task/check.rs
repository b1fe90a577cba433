//! Small checks that plugins use to validate their configuration against Rally's schemas.
//!
//! Each plugin validates its own section of the task and reports problems as a
//! [`PluginError`] whose `subpath` is relative to the section; the loader adds the file, the
//! position and the full key path.

use super::node::{Node, Value};

/// A problem inside one plugin's configuration.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{subpath}: {message}")]
pub struct PluginError {
    /// Dotted path below the plugin's section (`times`, `rps.start`); empty for the section.
    pub subpath: String,
    pub message: String,
}

impl PluginError {
    pub fn new(subpath: impl Into<String>, message: impl Into<String>) -> PluginError {
        PluginError {
            subpath: subpath.into(),
            message: message.into(),
        }
    }
}

pub type Checked<T> = Result<T, PluginError>;

/// Quote a list of names for a message: `'a', 'b', 'c'`.
pub fn list(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("'{n}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The section must be a mapping whose keys are all in `allowed`.
pub fn mapping<'a>(node: &'a Node, allowed: &[&str]) -> Checked<&'a [(String, Node)]> {
    let Some(entries) = node.as_map() else {
        return Err(PluginError::new(
            "",
            format!("must be a mapping, got {}", node.type_name()),
        ));
    };
    for (key, _) in entries {
        if !allowed.contains(&key.as_str()) {
            return Err(PluginError::new(
                key.clone(),
                format!("unknown key '{key}'; allowed keys: {}", list(allowed)),
            ));
        }
    }
    Ok(entries)
}

/// An optional integer `key` with a lower bound.
pub fn int_at_least(node: &Node, key: &str, min: i64) -> Checked<Option<i64>> {
    let Some(v) = node.get(key) else {
        return Ok(None);
    };
    match v.value {
        Value::Int(i) if i >= min => Ok(Some(i)),
        Value::Int(i) => Err(PluginError::new(
            key,
            format!("must be an integer >= {min}, got {i}"),
        )),
        _ => Err(PluginError::new(
            key,
            format!("must be an integer >= {min}, got {}", describe(v)),
        )),
    }
}

/// An optional number `key` that satisfies `ok`; `rule` says what is allowed ("a number > 0").
pub fn number(
    node: &Node,
    key: &str,
    rule: &str,
    ok: impl Fn(f64) -> bool,
) -> Checked<Option<f64>> {
    let Some(v) = node.get(key) else {
        return Ok(None);
    };
    match v.as_f64() {
        Some(f) if ok(f) && f.is_finite() => Ok(Some(f)),
        _ => Err(PluginError::new(
            key,
            format!("must be {rule}, got {}", describe(v)),
        )),
    }
}

/// An optional boolean `key`.
pub fn boolean(node: &Node, key: &str) -> Checked<Option<bool>> {
    let Some(v) = node.get(key) else {
        return Ok(None);
    };
    v.as_bool()
        .map(Some)
        .ok_or_else(|| PluginError::new(key, format!("must be a boolean, got {}", describe(v))))
}

/// An optional string `key`.
pub fn string(node: &Node, key: &str) -> Checked<Option<String>> {
    let Some(v) = node.get(key) else {
        return Ok(None);
    };
    v.as_str()
        .map(|s| Some(s.to_string()))
        .ok_or_else(|| PluginError::new(key, format!("must be a string, got {}", describe(v))))
}

/// A required key.
pub fn required<T>(value: Option<T>, key: &str, what: &str) -> Checked<T> {
    value.ok_or_else(|| PluginError::new(key, format!("is required ({what})")))
}

/// A value as the user wrote it, for messages: `0`, `'abc'`, `a list`.
pub fn describe(node: &Node) -> String {
    match &node.value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) if f.fract() == 0.0 && f.abs() < 1e16 => format!("{f:.1}"),
        Value::Float(f) => f.to_string(),
        Value::Str(s) => format!("'{s}'"),
        Value::Seq(_) | Value::Map(_) => node.type_name().into(),
    }
}
