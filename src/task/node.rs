//! A YAML/JSON document as a tree whose every node remembers where it stood in the file.
//!
//! Rally reads task files with `yaml.safe_load`, so JSON and YAML are one format to it. We parse
//! both with a real YAML parser (saphyr) and keep the line and column of every node, because a
//! user with a 300-line task file wants to be told *where* the bad key is, not only which.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

/// Where a node starts in the rendered task text (1-based line and column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Mark {
    pub line: usize,
    pub col: usize,
}

impl Mark {
    fn from_span(span: &Span) -> Mark {
        Mark {
            line: span.start.line(),
            col: span.start.col() + 1,
        }
    }
}

/// A value with its location.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub mark: Mark,
    /// Where the key of this value stands, for values in a mapping: an unknown or duplicate
    /// key is reported there.
    pub key_mark: Option<Mark>,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Keys keep their order: Rally reports SLA criteria in the order the file lists them.
    Map(Vec<(String, Node)>),
}

/// A syntax error from the parser, with its position.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct SyntaxError {
    pub mark: Mark,
    /// Key path of the offending node where known (`subtasks[0].runner`), else empty.
    pub path: String,
    pub message: String,
}

impl Node {
    /// Parse one YAML (or JSON) document.
    pub fn parse(text: &str) -> Result<Node, SyntaxError> {
        Builder::default().build(text)
    }

    /// The name of this node's type, as a user would say it.
    pub fn type_name(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    pub fn as_map(&self) -> Option<&[(String, Node)]> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.value {
            Value::Seq(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A number in JSON-schema's sense: integers and floats, never booleans.
    pub fn as_f64(&self) -> Option<f64> {
        match self.value {
            Value::Int(i) => Some(i as f64),
            Value::Float(f) => Some(f),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self.value {
            Value::Int(i) => Some(i),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self.value {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// The value of `key` if this node is a mapping that has it.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// Follow a dotted sub-path (`max`, `rps.start`, `requests[1].url`) as far as it goes and
    /// return the deepest node found: the best place to point a user at.
    pub fn locate(&self, subpath: &str) -> &Node {
        let mut node = self;
        for part in subpath.split('.').filter(|p| !p.is_empty()) {
            let (key, indexes) = match part.find('[') {
                Some(i) => (&part[..i], &part[i..]),
                None => (part, ""),
            };
            if !key.is_empty() {
                match node.get(key) {
                    Some(n) => node = n,
                    None => return node,
                }
            }
            for index in indexes
                .split(['[', ']'])
                .filter(|s| !s.is_empty())
                .filter_map(|s| s.parse::<usize>().ok())
            {
                match node.as_seq().and_then(|s| s.get(index)) {
                    Some(n) => node = n,
                    None => return node,
                }
            }
        }
        node
    }

    /// The same value without locations, for scenario arguments and storage.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::Str(s) => J::String(s.clone()),
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(entries) => J::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

/// Resolve a plain scalar the way PyYAML's `safe_load` does (YAML 1.1 core types), since that
/// is what Rally users' files were written against: `yes`/`no` are booleans, `~` is null.
fn resolve_plain(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" => {
            return Value::Bool(true);
        }
        "false" | "False" | "FALSE" | "no" | "No" | "NO" | "off" | "Off" | "OFF" => {
            return Value::Bool(false);
        }
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Value::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return Value::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Value::Float(f64::NAN),
        _ => {}
    }
    let clean: String = text.chars().filter(|&c| c != '_').collect();
    let (sign, digits) = match clean.strip_prefix('-') {
        Some(rest) => (-1i64, rest),
        None => (1, clean.strip_prefix('+').unwrap_or(&clean)),
    };
    let first_is_digit = digits.chars().next().is_some_and(|c| c.is_ascii_digit());
    if first_is_digit {
        if let Some(hex) = digits.strip_prefix("0x") {
            if let Ok(v) = i64::from_str_radix(hex, 16) {
                return Value::Int(sign * v);
            }
        } else if let Some(oct) = digits.strip_prefix("0o") {
            if let Ok(v) = i64::from_str_radix(oct, 8) {
                return Value::Int(sign * v);
            }
        } else if digits.chars().all(|c| c.is_ascii_digit())
            && let Ok(v) = digits.parse::<i64>()
        {
            return Value::Int(sign * v);
        }
    }
    let looks_numeric = clean
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'))
        && clean.chars().any(|c| c.is_ascii_digit());
    if looks_numeric && let Ok(f) = clean.parse::<f64>() {
        return Value::Float(f);
    }
    Value::Str(text.to_string())
}

/// Builds the tree from the parser's event stream; aliases are resolved by copying the
/// anchored node, and YAML 1.1 merge keys (`<<: *defaults`) are applied as PyYAML does.
#[derive(Default)]
struct Builder {
    anchors: HashMap<usize, Node>,
}

enum Frame {
    Seq(Mark, usize, Vec<Node>),
    /// Entries, the key waiting for its value, and entries from merge keys (`<<`), which
    /// yield to explicit keys wherever those stand.
    Map(
        Mark,
        usize,
        Vec<(String, Node)>,
        Option<(String, Mark)>,
        Vec<(String, Node)>,
    ),
}

impl Builder {
    fn build(mut self, text: &str) -> Result<Node, SyntaxError> {
        let mut stack: Vec<Frame> = Vec::new();
        let mut root: Option<Node> = None;
        let mut documents = 0;
        for event in Parser::new_from_str(text) {
            let (event, span) = event.map_err(|e| SyntaxError {
                mark: Mark {
                    line: e.marker().line(),
                    col: e.marker().col() + 1,
                },
                path: String::new(),
                message: e.info().to_string(),
            })?;
            let mark = Mark::from_span(&span);
            let completed = match event {
                Event::DocumentStart(_) => {
                    documents += 1;
                    if documents > 1 {
                        return Err(SyntaxError {
                            mark,
                            path: String::new(),
                            message: "a task file holds one YAML document, found a second one"
                                .into(),
                        });
                    }
                    None
                }
                Event::Scalar(text, style, anchor, _tag) => {
                    let value = if style == ScalarStyle::Plain {
                        resolve_plain(&text)
                    } else {
                        Value::Str(text.into_owned())
                    };
                    let node = Node {
                        mark,
                        key_mark: None,
                        value,
                    };
                    if anchor > 0 {
                        self.anchors.insert(anchor, node.clone());
                    }
                    Some(node)
                }
                Event::Alias(id) => match self.anchors.get(&id) {
                    Some(node) => Some(Node {
                        mark,
                        key_mark: None,
                        value: node.value.clone(),
                    }),
                    None => {
                        return Err(SyntaxError {
                            mark,
                            path: path_of(&stack),
                            message: "alias refers to an unknown anchor".into(),
                        });
                    }
                },
                Event::SequenceStart(anchor, _) => {
                    stack.push(Frame::Seq(mark, anchor, Vec::new()));
                    None
                }
                Event::MappingStart(anchor, _) => {
                    stack.push(Frame::Map(mark, anchor, Vec::new(), None, Vec::new()));
                    None
                }
                Event::SequenceEnd | Event::MappingEnd => {
                    let node = match stack.pop() {
                        Some(Frame::Seq(m, anchor, items)) => {
                            let n = Node {
                                mark: m,
                                key_mark: None,
                                value: Value::Seq(items),
                            };
                            (anchor, n)
                        }
                        Some(Frame::Map(m, anchor, mut entries, _, merged)) => {
                            for (k, v) in merged {
                                if !entries.iter().any(|(e, _)| *e == k) {
                                    entries.push((k, v));
                                }
                            }
                            let n = Node {
                                mark: m,
                                key_mark: None,
                                value: Value::Map(entries),
                            };
                            (anchor, n)
                        }
                        None => continue,
                    };
                    if node.0 > 0 {
                        self.anchors.insert(node.0, node.1.clone());
                    }
                    Some(node.1)
                }
                _ => None,
            };
            if let Some(mut node) = completed {
                let path = path_of(&stack);
                match stack.last_mut() {
                    None => root = Some(node),
                    Some(Frame::Seq(_, _, items)) => items.push(node),
                    Some(Frame::Map(_, _, entries, pending, merged)) => match pending.take() {
                        None => {
                            let key = match node.value {
                                Value::Str(s) => s,
                                Value::Int(i) => i.to_string(),
                                Value::Float(f) => f.to_string(),
                                Value::Bool(b) => if b { "True" } else { "False" }.to_string(),
                                Value::Null => "None".to_string(),
                                Value::Seq(_) | Value::Map(_) => {
                                    return Err(SyntaxError {
                                        mark: node.mark,
                                        path,
                                        message: "a mapping key must be a plain value".into(),
                                    });
                                }
                            };
                            *pending = Some((key, node.mark));
                        }
                        Some((key, key_mark)) => {
                            node.key_mark = Some(key_mark);
                            if key == "<<" {
                                merge_into(merged, node)?;
                            } else if entries.iter().any(|(k, _)| *k == key) {
                                // `path` already ends with this key: it is the pending one.
                                return Err(SyntaxError {
                                    mark: key_mark,
                                    path,
                                    message: format!("duplicate key '{key}'"),
                                });
                            } else {
                                entries.push((key, node));
                            }
                        }
                    },
                }
            }
        }
        Ok(root.unwrap_or(Node {
            mark: Mark { line: 1, col: 1 },
            key_mark: None,
            value: Value::Null,
        }))
    }
}

/// The key path of the node being built, from the open collections.
fn path_of(stack: &[Frame]) -> String {
    let mut path = String::new();
    for frame in stack {
        match frame {
            Frame::Seq(_, _, items) => path.push_str(&format!("[{}]", items.len())),
            Frame::Map(_, _, _, Some((key, _)), _) => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
            }
            Frame::Map(..) => {}
        }
    }
    path
}

/// Collect a YAML merge key's entries; the first mapping that has a key wins.
fn merge_into(entries: &mut Vec<(String, Node)>, source: Node) -> Result<(), SyntaxError> {
    let maps = match source.value {
        Value::Map(m) => vec![m],
        Value::Seq(items) => items
            .into_iter()
            .map(|n| match n.value {
                Value::Map(m) => Ok(m),
                _ => Err(SyntaxError {
                    mark: n.mark,
                    path: String::new(),
                    message: "a merge key ('<<') takes a mapping or a list of mappings".into(),
                }),
            })
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(SyntaxError {
                mark: source.mark,
                path: String::new(),
                message: "a merge key ('<<') takes a mapping or a list of mappings".into(),
            });
        }
    };
    for map in maps {
        for (k, v) in map {
            if !entries.iter().any(|(e, _)| *e == k) {
                entries.push((k, v));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_and_json_give_the_same_tree() {
        let y = Node::parse("a: 1\nb: [true, 2.5, x]\n").unwrap();
        let j = Node::parse(r#"{"a": 1, "b": [true, 2.5, "x"]}"#).unwrap();
        assert_eq!(y.to_json(), j.to_json());
    }

    #[test]
    fn marks_point_at_the_value() {
        let n = Node::parse("top:\n  inner:\n    times: 0\n").unwrap();
        let times = n.locate("top.inner.times");
        assert_eq!(times.mark, Mark { line: 3, col: 12 });
        assert_eq!(times.as_i64(), Some(0));
    }

    #[test]
    fn locate_follows_indexes() {
        let n = Node::parse("a:\n  - x: 1\n  - x: 2\n").unwrap();
        assert_eq!(n.locate("a[1].x").as_i64(), Some(2));
        assert_eq!(n.locate("a[1].missing").mark.line, 3);
    }

    #[test]
    fn scalars_resolve_like_safe_load() {
        let n = Node::parse("[yes, No, ~, 0x10, 1e3, '5', 1_000, -2, .inf, abc]").unwrap();
        let v: Vec<_> = n
            .as_seq()
            .unwrap()
            .iter()
            .map(|n| n.value.clone())
            .collect();
        assert_eq!(v[0], Value::Bool(true));
        assert_eq!(v[1], Value::Bool(false));
        assert_eq!(v[2], Value::Null);
        assert_eq!(v[3], Value::Int(16));
        assert_eq!(v[4], Value::Float(1000.0));
        assert_eq!(v[5], Value::Str("5".into()));
        assert_eq!(v[6], Value::Int(1000));
        assert_eq!(v[7], Value::Int(-2));
        assert_eq!(v[8], Value::Float(f64::INFINITY));
        assert_eq!(v[9], Value::Str("abc".into()));
    }

    #[test]
    fn anchors_aliases_and_merge_keys() {
        let n = Node::parse("base: &b {x: 1, y: 2}\nother:\n  <<: *b\n  y: 3\ncopy: *b\n").unwrap();
        assert_eq!(n.locate("other.x").as_i64(), Some(1));
        assert_eq!(n.locate("other.y").as_i64(), Some(3));
        assert_eq!(n.locate("copy.y").as_i64(), Some(2));
    }

    #[test]
    fn syntax_errors_have_positions() {
        let e = Node::parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(e.mark.line >= 1, "{e:?}");
        let e = Node::parse("{\"a\": 1,, }").unwrap_err();
        assert_eq!(e.mark.line, 1);
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let e = Node::parse("a: 1\na: 2\n").unwrap_err();
        assert_eq!(e.mark.line, 2);
        assert_eq!(e.path, "a");
        let e = Node::parse("x:\n  - {}\n  - {b: 1, b: 2}\n").unwrap_err();
        assert_eq!(e.path, "x[1].b");
        assert!(e.message.contains("duplicate key 'b'"));
    }
}
