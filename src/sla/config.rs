//! JSON-schema-like validation helpers for criterion configs.
//!
//! Rally validates SLA configs with `jsonschema`; we mirror its type rules
//! (booleans are not numbers, integers are numbers) but produce messages that
//! say what is wrong *and* what is allowed, with the offending key as subpath.
//! One deliberate strictness: for `"integer"` fields a float literal such as
//! `3.0` is rejected (draft-04 semantics) and the message says how to write it.

use serde_json::{Map, Value};

use super::error::SlaConfigError;

/// Short human description of a JSON value for error messages.
pub(crate) fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => n.to_string(),
        Value::String(s) => {
            let short: String = s.chars().take(40).collect();
            let ellipsis = if short.len() < s.len() { "..." } else { "" };
            format!("string {short:?}{ellipsis}")
        }
        Value::Array(_) => "an array".to_owned(),
        Value::Object(_) => "an object".to_owned(),
    }
}

/// A JSON number satisfying `ok`; `expected` completes "must be ...".
pub(crate) fn number(
    value: &Value,
    subpath: &str,
    ok: impl Fn(f64) -> bool,
    expected: &str,
) -> Result<f64, SlaConfigError> {
    if let Value::Number(n) = value
        && let Some(x) = n.as_f64()
        && ok(x)
    {
        return Ok(x);
    }
    Err(SlaConfigError::new(
        subpath,
        format!("must be {expected}, got {}", describe(value)),
    ))
}

/// A JSON integer (no decimal point) `>= min`.
pub(crate) fn integer_at_least(
    value: &Value,
    subpath: &str,
    min: u64,
) -> Result<u64, SlaConfigError> {
    if let Value::Number(n) = value {
        if let Some(x) = n.as_u64()
            && x >= min
        {
            return Ok(x);
        }
        if n.is_f64()
            && let Some(x) = n.as_f64()
            && x.fract() == 0.0
            && x >= min as f64
        {
            return Err(SlaConfigError::new(
                subpath,
                format!(
                    "must be an integer >= {min}, got {n} (a number with a decimal point is \
                     not an integer here; write {x:.0})"
                ),
            ));
        }
    }
    Err(SlaConfigError::new(
        subpath,
        format!("must be an integer >= {min}, got {}", describe(value)),
    ))
}

/// The value as a JSON object; `expected` completes "must be ...".
pub(crate) fn object<'a>(
    value: &'a Value,
    expected: &str,
) -> Result<&'a Map<String, Value>, SlaConfigError> {
    value.as_object().ok_or_else(|| {
        SlaConfigError::new("", format!("must be {expected}, got {}", describe(value)))
    })
}

/// `'a', 'b'`: names as the task loader's messages list them.
pub(crate) fn quoted(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("'{n}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Rejects keys outside `allowed` (JSON schema `additionalProperties: false`).
pub(crate) fn check_keys(map: &Map<String, Value>, allowed: &[&str]) -> Result<(), SlaConfigError> {
    match map.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(key) => Err(SlaConfigError::new(
            key.as_str(),
            format!("unknown key '{key}'; allowed keys: {}", quoted(allowed)),
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn booleans_are_not_numbers() {
        let err = number(&json!(true), "max", |_| true, "a number").unwrap_err();
        assert_eq!(err.message, "must be a number, got boolean true");
        assert_eq!(err.subpath, "max");
    }

    #[test]
    fn integers_are_numbers() {
        assert_eq!(number(&json!(3), "", |_| true, "a number"), Ok(3.0));
    }

    #[test]
    fn float_literal_is_not_an_integer() {
        let err = integer_at_least(&json!(3.0), "min_iterations", 3).unwrap_err();
        assert!(err.message.contains("write 3"), "{}", err.message);
        assert!(integer_at_least(&json!(-1), "max", 0).is_err());
        assert!(integer_at_least(&json!(2), "x", 3).is_err());
        assert_eq!(integer_at_least(&json!(3), "x", 3), Ok(3));
    }

    #[test]
    fn unknown_key_lists_allowed() {
        let m = json!({"min": 1, "mx": 2});
        let err = check_keys(m.as_object().unwrap(), &["min", "max"]).unwrap_err();
        assert_eq!(err.subpath, "mx");
        assert_eq!(err.message, "unknown key 'mx'; allowed keys: 'min', 'max'");
    }
}
