//! The cluster file: which hosts run agents, how to reach them over SSH, and where the
//! controller listens. Validated like a task file, so a mistake is reported as
//! `FILE:LINE:COL: hosts[1].port: what is wrong` before any host is contacted.

use std::path::{Path, PathBuf};

use crate::task::check::{self, Checked, PluginError, describe};
use crate::task::node::{Node, Value};
use crate::task::{ErrorSite, KeyPath, TaskError};

/// Where a host's agents find the binary and keep their caches when the file says nothing.
pub const DEFAULT_CACHE_DIR: &str = "~/.cache/rally-tui";
/// The binary on the host's `PATH` when neither `remote_path` nor `copy_binary` is given.
pub const DEFAULT_REMOTE_PATH: &str = "rally-tui";
/// Agents on one host, and in a whole cluster (the same bound as `--agents`).
const MAX_PER_HOST: i64 = 1000;
const MAX_AGENTS: usize = 10_000;

const TOP_KEYS: &[&str] = &["listen", "connect", "min_agents", "defaults", "hosts"];
const HOST_KEYS: &[&str] = &[
    "name",
    "host",
    "user",
    "port",
    "identity_file",
    "count",
    "remote_path",
    "copy_binary",
    "ssh_options",
    "env",
    "cache_dir",
];
/// Keys that only make sense for one host, so `defaults` cannot give them.
const PER_HOST_ONLY: &[&str] = &["name", "host"];

/// A valid cluster file.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterFile {
    pub file: PathBuf,
    /// What the controller binds, `tcp://HOST:PORT` (results on PORT+1).
    pub listen: String,
    /// What agents dial: the host, and the port unless it is the one the controller gets.
    pub connect: Endpoint,
    /// Agents that must register before the load starts.
    pub min_agents: usize,
    pub hosts: Vec<HostSpec>,
}

/// `tcp://HOST[:PORT]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: Option<u16>,
}

/// One entry of `hosts`.
#[derive(Debug, Clone, PartialEq)]
pub struct HostSpec {
    /// Prefix of its agents' names (`NAME-1`, `NAME-2`...); the host unless given.
    pub name: String,
    pub host: String,
    pub user: Option<String>,
    pub port: Option<u16>,
    /// Local path, already expanded (`~`, relative to the cluster file).
    pub identity_file: Option<PathBuf>,
    pub count: usize,
    pub binary: Binary,
    /// Each passed as `ssh -o OPTION`.
    pub ssh_options: Vec<String>,
    /// Set in the agents' environment on the host.
    pub env: Vec<(String, String)>,
    /// Remote directory for copied binaries (`bin/`) and agent chunk caches (`agents/`).
    pub cache_dir: String,
}

/// Which `rally-tui` the host runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Binary {
    /// A path (or a name on the remote `PATH`) already on the host.
    Remote(String),
    /// The controller's own executable, copied under `cache_dir/bin/` first.
    Copy,
}

impl ClusterFile {
    /// Reads and validates a cluster file.
    pub fn load(path: &Path) -> Result<ClusterFile, TaskError> {
        let site = ErrorSite {
            file: path.to_path_buf(),
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            site.unlocated(
                &KeyPath::root(),
                format!("cannot read the cluster file: {e}"),
            )
        })?;
        ClusterFile::parse(path, &text)
    }

    /// Validates a cluster file's text; `path` names it in messages and anchors relative
    /// `identity_file`s.
    pub fn parse(path: &Path, text: &str) -> Result<ClusterFile, TaskError> {
        let site = ErrorSite {
            file: path.to_path_buf(),
        };
        let doc = Node::parse(text).map_err(|e| TaskError {
            file: path.to_path_buf(),
            mark: Some(e.mark),
            message: if e.path.is_empty() {
                format!("invalid YAML: {}", e.message)
            } else {
                e.message
            },
            path: e.path,
        })?;
        let base = path.parent().unwrap_or(Path::new("")).to_path_buf();
        Parser { site: &site, base }.cluster(&doc)
    }

    /// Agents the file starts, over all hosts.
    pub fn agents(&self) -> usize {
        self.hosts.iter().map(|h| h.count).sum()
    }

    /// `--min-agents` over the file's `min_agents`.
    pub fn set_min_agents(&mut self, n: usize) -> Result<(), String> {
        if n == 0 || n > self.agents() {
            return Err(format!(
                "--min-agents must be between 1 and the {} agents of {}, got {n}",
                self.agents(),
                self.file.display()
            ));
        }
        self.min_agents = n;
        Ok(())
    }

    /// The address agents dial, once the controller knows the port it got.
    pub fn connect_addr(&self, control_port: u16) -> String {
        let host = &self.connect.host;
        format!("tcp://{host}:{}", self.connect.port.unwrap_or(control_port))
    }
}

impl HostSpec {
    /// `NAME-1`, `NAME-2`...: stable across runs, so a restarted agent finds its cache.
    pub fn agent_names(&self) -> Vec<String> {
        (1..=self.count)
            .map(|i| format!("{}-{i}", self.name))
            .collect()
    }

    /// `user@host:port` as a user would recognise it in a message.
    pub fn target(&self) -> String {
        let mut t = match &self.user {
            Some(u) => format!("{u}@{}", self.host),
            None => self.host.clone(),
        };
        if let Some(p) = self.port {
            t.push_str(&format!(":{p}"));
        }
        t
    }
}

/// Splits `tcp://HOST[:PORT]`; `[v6]` hosts keep their brackets (ZeroMQ wants them).
pub fn parse_endpoint(text: &str) -> Result<Endpoint, String> {
    let usage = || format!("must be tcp://HOST:PORT, got '{text}'");
    let rest = text.strip_prefix("tcp://").ok_or_else(usage)?;
    let (host, port) = if rest.starts_with('[') {
        let end = rest.find(']').ok_or_else(usage)?;
        let (host, tail) = rest.split_at(end + 1);
        match tail {
            "" => (host, None),
            _ => (host, Some(tail.strip_prefix(':').ok_or_else(usage)?)),
        }
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        }
    };
    if host.is_empty() || host.contains(['/', ' ']) {
        return Err(usage());
    }
    let port = match port {
        None => None,
        Some(p) => Some(
            p.parse::<u16>()
                .map_err(|_| format!("port must be a number 0-65535, got '{p}' in '{text}'"))?,
        ),
    };
    Ok(Endpoint {
        host: host.to_string(),
        port,
    })
}

/// Hosts a controller binds to on every interface: agents cannot dial them.
fn is_wildcard(host: &str) -> bool {
    matches!(host, "0.0.0.0" | "*" | "[::]" | "::")
}

struct Parser<'a> {
    site: &'a ErrorSite,
    /// The cluster file's directory, for relative identity files.
    base: PathBuf,
}

impl Parser<'_> {
    /// A check's error, reported at the deepest node its sub-path reaches (an unknown key at
    /// the key itself).
    fn err(&self, section: &Node, path: &KeyPath, e: PluginError) -> TaskError {
        let node = section.locate(&e.subpath);
        let mut err = self
            .site
            .at(node, &path.join(&e.subpath), e.message.clone());
        if e.message.starts_with("unknown ") {
            err.mark = node.key_mark.or(err.mark);
        }
        err
    }

    fn cluster(&self, doc: &Node) -> Result<ClusterFile, TaskError> {
        let root = KeyPath::root();
        if doc.as_map().is_none() {
            return Err(self.site.at(
                doc,
                &root,
                format!(
                    "a cluster file must be a mapping with 'listen' and 'hosts', got {}",
                    doc.type_name()
                ),
            ));
        }
        check::mapping(doc, TOP_KEYS).map_err(|e| self.err(doc, &root, e))?;
        let in_doc = |e| self.err(doc, &root, e);
        let listen_text = check::required(
            check::string(doc, "listen").map_err(in_doc)?,
            "listen",
            "the address the controller binds, e.g. tcp://0.0.0.0:5555",
        )
        .map_err(in_doc)?;
        let listen = parse_endpoint(&listen_text)
            .and_then(|e| match e.port {
                Some(_) => Ok(e),
                None => Err(format!(
                    "must give a port: tcp://HOST:PORT, got '{listen_text}'"
                )),
            })
            .map_err(|m| in_doc(PluginError::new("listen", m)))?;
        let listen_port = listen.port.unwrap_or(0);
        let connect = match check::string(doc, "connect").map_err(in_doc)? {
            Some(text) => {
                let c =
                    parse_endpoint(&text).map_err(|m| in_doc(PluginError::new("connect", m)))?;
                if is_wildcard(&c.host) {
                    return Err(in_doc(PluginError::new(
                        "connect",
                        format!("'{}' is not an address agents can dial", c.host),
                    )));
                }
                if listen_port == 0 && c.port.is_some_and(|p| p != 0) {
                    return Err(in_doc(PluginError::new(
                        "connect",
                        "names a port, but 'listen' takes any free port (0): leave the port out \
                         and agents dial the one the controller gets",
                    )));
                }
                Endpoint {
                    host: c.host,
                    port: c
                        .port
                        .filter(|&p| p != 0)
                        .or(listen.port.filter(|&p| p != 0)),
                }
            }
            None if is_wildcard(&listen.host) => {
                return Err(in_doc(PluginError::new(
                    "connect",
                    format!(
                        "is required ('listen' binds every interface, {}): give the address \
                         agents dial, e.g. tcp://10.0.0.1:{}",
                        listen.host,
                        if listen_port == 0 { 5555 } else { listen_port }
                    ),
                )));
            }
            None => Endpoint {
                host: listen.host.clone(),
                port: listen.port.filter(|&p| p != 0),
            },
        };
        let defaults = match doc.get("defaults") {
            None => None,
            Some(d) => {
                let path = root.key("defaults");
                let allowed: Vec<&str> = HOST_KEYS
                    .iter()
                    .copied()
                    .filter(|k| !PER_HOST_ONLY.contains(k))
                    .collect();
                check::mapping(d, &allowed).map_err(|e| self.err(d, &path, e))?;
                Some(d)
            }
        };
        let hosts_node = doc.get("hosts").ok_or_else(|| {
            in_doc(PluginError::new(
                "hosts",
                "is required (a list of hosts, each with at least 'host')",
            ))
        })?;
        let hosts_path = root.key("hosts");
        let items = match hosts_node.as_seq() {
            Some(items) if !items.is_empty() => items,
            _ => {
                return Err(self.site.at(
                    hosts_node,
                    &hosts_path,
                    format!(
                        "must be a non-empty list of hosts, got {}",
                        describe(hosts_node)
                    ),
                ));
            }
        };
        let mut hosts: Vec<HostSpec> = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let path = hosts_path.index(i);
            let host = self.host(item, defaults, &path)?;
            if let Some(other) = hosts.iter().position(|h| h.name == host.name) {
                let at = item.get("name").or(item.get("host")).unwrap_or(item);
                return Err(self.site.at(
                    at,
                    &path.key(if item.get("name").is_some() {
                        "name"
                    } else {
                        "host"
                    }),
                    format!(
                        "agents named '{}' already come from hosts[{other}]; give this entry \
                         another 'name'",
                        host.name
                    ),
                ));
            }
            hosts.push(host);
        }
        let total: usize = hosts.iter().map(|h| h.count).sum();
        if total > MAX_AGENTS {
            return Err(self.site.at(
                hosts_node,
                &hosts_path,
                format!("at most {MAX_AGENTS} agents in all, the counts add up to {total}"),
            ));
        }
        let min_agents = match check::int_at_least(doc, "min_agents", 1).map_err(in_doc)? {
            None => total,
            Some(n) if n as usize <= total => n as usize,
            Some(n) => {
                return Err(in_doc(PluginError::new(
                    "min_agents",
                    format!("is {n}, but the hosts start only {total} agents"),
                )));
            }
        };
        Ok(ClusterFile {
            file: self.site.file.clone(),
            listen: format!("tcp://{}:{listen_port}", listen.host),
            connect,
            min_agents,
            hosts,
        })
    }

    /// One host; a key it does not give comes from `defaults`, and an error in it is
    /// reported where it stands.
    fn host(
        &self,
        item: &Node,
        defaults: Option<&Node>,
        path: &KeyPath,
    ) -> Result<HostSpec, TaskError> {
        check::mapping(item, HOST_KEYS).map_err(|e| self.err(item, path, e))?;
        let default_path = KeyPath::root().key("defaults");
        // Each key is read from the host entry, else from `defaults`, with its own path.
        let pick = |key: &str| -> (&Node, KeyPath) {
            match (item.get(key), defaults) {
                (None, Some(d)) if d.get(key).is_some() => (d, default_path.clone()),
                _ => (item, path.clone()),
            }
        };
        macro_rules! field {
            ($key:expr, $f:expr) => {{
                let (node, at) = pick($key);
                $f(node, $key).map_err(|e| self.err(node, &at, e))?
            }};
        }
        let host = field!("host", |n: &Node, k: &str| -> Checked<String> {
            let h = check::required(
                check::string(n, k)?,
                k,
                "the host name or address to ssh to",
            )?;
            if h.is_empty() || h.starts_with('-') || h.contains(char::is_whitespace) {
                return Err(PluginError::new(
                    k,
                    format!("must be a host name or address, got '{h}'"),
                ));
            }
            Ok(h)
        });
        let name = field!("name", |n: &Node, k: &str| -> Checked<String> {
            match check::string(n, k)? {
                Some(s) if valid_name(&s) => Ok(s),
                Some(s) => Err(PluginError::new(
                    k,
                    format!("must be letters, digits, '.', '_' or '-', got '{s}'"),
                )),
                None => Ok(host
                    .chars()
                    .map(|c| if valid_name_char(c) { c } else { '-' })
                    .collect()),
            }
        });
        let user = field!("user", |n: &Node, k: &str| -> Checked<Option<String>> {
            match check::string(n, k)? {
                Some(u) if u.is_empty() || u.starts_with('-') || u.contains(['@', ' ']) => Err(
                    PluginError::new(k, format!("must be a user name, got '{u}'")),
                ),
                u => Ok(u),
            }
        });
        let port = field!("port", |n: &Node, k: &str| -> Checked<Option<u16>> {
            match check::int_at_least(n, k, 1)? {
                Some(p) if p <= 65535 => Ok(Some(p as u16)),
                Some(p) => Err(PluginError::new(k, format!("must be 1-65535, got {p}"))),
                None => Ok(None),
            }
        });
        let identity_file = field!("identity_file", |n: &Node,
                                                     k: &str|
         -> Checked<Option<PathBuf>> {
            let Some(f) = check::string(n, k)? else {
                return Ok(None);
            };
            let path = self.local_path(&f);
            if !path.is_file() {
                return Err(PluginError::new(
                    k,
                    format!("no such key file: {}", path.display()),
                ));
            }
            Ok(Some(path))
        });
        let count = field!("count", |n: &Node, k: &str| -> Checked<usize> {
            match check::int_at_least(n, k, 1)? {
                Some(c) if c <= MAX_PER_HOST => Ok(c as usize),
                Some(c) => Err(PluginError::new(
                    k,
                    format!("must be at most {MAX_PER_HOST} agents on one host, got {c}"),
                )),
                None => Ok(1),
            }
        });
        let remote_path = field!("remote_path", remote_string);
        let copy = field!("copy_binary", |n: &Node, k: &str| check::boolean(n, k)).unwrap_or(false);
        // A host's own remote_path or copy_binary beats the other one from `defaults`; both
        // at the same level contradict each other.
        let from_host = |key: &str| item.get(key).is_some();
        let binary = match (remote_path, copy) {
            (Some(p), true) if from_host("remote_path") && !from_host("copy_binary") => {
                Binary::Remote(p)
            }
            (Some(_), true) if from_host("copy_binary") && !from_host("remote_path") => {
                Binary::Copy
            }
            (Some(_), true) => {
                let (node, at) = pick("remote_path");
                return Err(self.err(
                    node,
                    &at,
                    PluginError::new(
                        "remote_path",
                        "give either remote_path or copy_binary: true, not both",
                    ),
                ));
            }
            (Some(p), false) => Binary::Remote(p),
            (None, true) => Binary::Copy,
            (None, false) => Binary::Remote(DEFAULT_REMOTE_PATH.into()),
        };
        let ssh_options = field!("ssh_options", |n: &Node, k: &str| -> Checked<Vec<String>> {
            let Some(v) = n.get(k) else {
                return Ok(Vec::new());
            };
            let items = v.as_seq().ok_or_else(|| {
                PluginError::new(
                    k,
                    format!(
                        "must be a list of ssh -o options (Key=Value), got {}",
                        describe(v)
                    ),
                )
            })?;
            items
                .iter()
                .enumerate()
                .map(|(i, o)| match o.as_str() {
                    Some(s) if !s.trim().is_empty() && !s.contains('\0') => Ok(s.to_string()),
                    _ => Err(PluginError::new(
                        format!("{k}[{i}]"),
                        format!(
                            "must be an ssh option like 'ServerAliveInterval=10', got {}",
                            describe(o)
                        ),
                    )),
                })
                .collect()
        });
        let env = field!("env", |n: &Node,
                                 k: &str|
         -> Checked<Vec<(String, String)>> {
            let Some(v) = n.get(k) else {
                return Ok(Vec::new());
            };
            let entries = v.as_map().ok_or_else(|| {
                PluginError::new(
                    k,
                    format!("must be a mapping NAME: value, got {}", describe(v)),
                )
            })?;
            entries
                .iter()
                .map(|(name, value)| {
                    let at = format!("{k}.{name}");
                    if !valid_env_name(name) {
                        return Err(PluginError::new(
                            at,
                            format!("'{name}' is not an environment variable name"),
                        ));
                    }
                    if name == crate::transport::token::TOKEN_ENV {
                        return Err(PluginError::new(
                            at,
                            "cannot be set here: the controller gives agents a fresh token \
                             over ssh's standard input",
                        ));
                    }
                    let text = match &value.value {
                        Value::Str(s) => s.clone(),
                        Value::Int(i) => i.to_string(),
                        Value::Float(f) => f.to_string(),
                        Value::Bool(b) => b.to_string(),
                        _ => {
                            return Err(PluginError::new(
                                at,
                                format!("must be a string or a number, got {}", describe(value)),
                            ));
                        }
                    };
                    if text.contains('\0') {
                        return Err(PluginError::new(at, "must not contain a NUL character"));
                    }
                    Ok((name.clone(), text))
                })
                .collect()
        });
        let cache_dir = field!("cache_dir", remote_string)
            .unwrap_or_else(|| DEFAULT_CACHE_DIR.into())
            .trim_end_matches('/')
            .to_string();
        Ok(HostSpec {
            name,
            host,
            user,
            port,
            identity_file,
            count,
            binary,
            ssh_options,
            env,
            cache_dir: if cache_dir.is_empty() {
                "/".into()
            } else {
                cache_dir
            },
        })
    }

    /// A local path from the file: `~/` is the home directory, a relative path is relative
    /// to the cluster file (so the file works from any directory).
    fn local_path(&self, text: &str) -> PathBuf {
        if let Some(rest) = text.strip_prefix("~/")
            && let Some(home) = std::env::var_os("HOME")
        {
            return PathBuf::from(home).join(rest);
        }
        let p = PathBuf::from(text);
        if p.is_absolute() {
            p
        } else {
            self.base.join(p)
        }
    }
}

/// A path on the host: `~/` is the remote home; a `~user` form is not expanded.
fn remote_string(node: &Node, key: &str) -> Checked<Option<String>> {
    match check::string(node, key)? {
        Some(s) if s.is_empty() || s.contains(['\0', '\n']) => Err(PluginError::new(
            key,
            format!("must be a path on the host, got '{s}'"),
        )),
        Some(s) if s.starts_with('~') && s != "~" && !s.starts_with("~/") => Err(PluginError::new(
            key,
            format!("only '~/' is expanded (to the remote home), got '{s}'"),
        )),
        s => Ok(s),
    }
}

fn valid_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

fn valid_name(s: &str) -> bool {
    !s.is_empty() && !s.starts_with('-') && s.chars().all(valid_name_char)
}

fn valid_env_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ClusterFile, String> {
        ClusterFile::parse(Path::new("c.yaml"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn a_full_file() {
        let c = parse(
            "listen: tcp://0.0.0.0:5555\nconnect: tcp://10.0.0.1:5555\nmin_agents: 3\n\
             defaults: {user: load, copy_binary: true, ssh_options: [ConnectTimeout=5]}\n\
             hosts:\n  - host: a.example\n    count: 2\n    env: {RUST_LOG: info, N: 3}\n\
             \x20 - host: b.example\n    name: bee\n    port: 2222\n    user: other\n\
             \x20   remote_path: /opt/rally-tui\n    cache_dir: /var/tmp/rt/\n",
        )
        .unwrap();
        assert_eq!(c.listen, "tcp://0.0.0.0:5555");
        assert_eq!(c.connect_addr(1), "tcp://10.0.0.1:5555");
        assert_eq!((c.agents(), c.min_agents), (3, 3));
        let (a, b) = (&c.hosts[0], &c.hosts[1]);
        assert_eq!(a.name, "a.example");
        assert_eq!(a.agent_names(), ["a.example-1", "a.example-2"]);
        assert_eq!(a.user.as_deref(), Some("load"));
        assert_eq!(a.binary, Binary::Copy);
        assert_eq!(a.ssh_options, ["ConnectTimeout=5"]);
        assert_eq!(
            a.env,
            [("RUST_LOG".into(), "info".into()), ("N".into(), "3".into())]
        );
        assert_eq!(a.cache_dir, DEFAULT_CACHE_DIR);
        assert_eq!(b.target(), "other@b.example:2222");
        assert_eq!(b.binary, Binary::Remote("/opt/rally-tui".into()));
        assert_eq!(b.cache_dir, "/var/tmp/rt");
        assert_eq!(b.agent_names(), ["bee-1"]);
    }

    #[test]
    fn connect_defaults_and_any_port() {
        let c = parse("listen: tcp://127.0.0.1:0\nhosts: [{host: h}]\n").unwrap();
        assert_eq!(c.connect_addr(4242), "tcp://127.0.0.1:4242");
        assert_eq!(
            c.hosts[0].binary,
            Binary::Remote(DEFAULT_REMOTE_PATH.into())
        );
        assert_eq!(c.min_agents, 1);
        let c = parse("listen: tcp://0.0.0.0:0\nconnect: tcp://10.1.1.1\nhosts: [{host: h}]\n")
            .unwrap();
        assert_eq!(c.connect_addr(4242), "tcp://10.1.1.1:4242");
        let c = parse("listen: tcp://[::]:7000\nconnect: tcp://[fd00::1]\nhosts: [{host: h}]\n")
            .unwrap();
        assert_eq!(c.connect_addr(1), "tcp://[fd00::1]:7000");
    }

    #[test]
    fn errors_name_the_line_column_and_key() {
        let cases = [
            ("hosts: [{host: h}]\n", "c.yaml:1:1: listen: is required"),
            (
                "listen: tcp://0.0.0.0:5555\nhosts: [{host: h}]\n",
                "c.yaml:1:1: connect: is required",
            ),
            (
                "listen: tcp://127.0.0.1:1\nhosts:\n  - host: h\n    prot: 22\n",
                "c.yaml:4:5: hosts[0].prot: unknown key 'prot'",
            ),
            (
                "listen: tcp://127.0.0.1:1\nhosts:\n  - host: h\n    port: 70000\n",
                "c.yaml:4:11: hosts[0].port: must be 1-65535, got 70000",
            ),
            (
                "listen: tcp://127.0.0.1:1\nhosts:\n  - host: h\n    count: 0\n",
                "c.yaml:4:12: hosts[0].count: must be an integer >= 1, got 0",
            ),
            (
                "listen: tcp://127.0.0.1:1\nhosts:\n  - {host: h, remote_path: /x, copy_binary: yes}\n",
                "hosts[0].remote_path: give either remote_path or copy_binary",
            ),
            (
                "listen: tcp://127.0.0.1:1\nhosts:\n  - host: h\n  - host: h\n",
                "c.yaml:4:11: hosts[1].host: agents named 'h' already come from hosts[0]",
            ),
            (
                "listen: tcp://127.0.0.1:1\nmin_agents: 3\nhosts: [{host: h, count: 2}]\n",
                "c.yaml:2:13: min_agents: is 3, but the hosts start only 2 agents",
            ),
            (
                "listen: tcp://127.0.0.1:1\ndefaults: {port: x}\nhosts: [{host: h}]\n",
                "c.yaml:2:18: defaults.port: must be an integer >= 1, got 'x'",
            ),
            (
                "listen: tcp://127.0.0.1:1\ndefaults: {host: x}\nhosts: [{host: h}]\n",
                "c.yaml:2:12: defaults.host: unknown key 'host'",
            ),
            (
                "listen: tcp://127.0.0.1:1\nhosts: [{host: h, env: {RALLY_TUI_TOKEN: x}}]\n",
                "hosts[0].env.RALLY_TUI_TOKEN: cannot be set here",
            ),
            (
                "listen: tcp://127.0.0.1:1\nhosts: [{host: '-oProxyCommand=x'}]\n",
                "hosts[0].host: must be a host name or address",
            ),
            (
                "listen: tcp://127.0.0.1:1\nhosts: [{host: h, identity_file: /no/such/key}]\n",
                "hosts[0].identity_file: no such key file: /no/such/key",
            ),
            (
                "listen: tcp://127.0.0.1:0\nconnect: tcp://h:9\nhosts: [{host: h}]\n",
                "c.yaml:2:10: connect: names a port",
            ),
            (
                "listen: udp://x:1\nhosts: [{host: h}]\n",
                "listen: must be tcp://HOST:PORT",
            ),
            (
                "listen: tcp://x:1\nhosts: []\n",
                "c.yaml:2:8: hosts: must be a non-empty list",
            ),
            ("- a\n", "c.yaml:1:1: a cluster file must be a mapping"),
            ("listen: [\n", "c.yaml:2:1: invalid YAML"),
        ];
        for (text, want) in cases {
            let e = parse(text).unwrap_err();
            assert!(e.contains(want), "{text:?}\n  got:  {e}\n  want: {want}");
        }
    }

    #[test]
    fn a_hosts_own_binary_choice_beats_the_default() {
        let c = parse(
            "listen: tcp://127.0.0.1:1\ndefaults: {remote_path: /opt/rt}\n\
             hosts: [{host: a, copy_binary: true}, {host: b}]\n",
        )
        .unwrap();
        assert_eq!(c.hosts[0].binary, Binary::Copy);
        assert_eq!(c.hosts[1].binary, Binary::Remote("/opt/rt".into()));
        let e = parse(
            "listen: tcp://127.0.0.1:1\ndefaults: {remote_path: /x, copy_binary: true}\n\
             hosts: [{host: a}]\n",
        )
        .unwrap_err();
        assert!(
            e.contains("c.yaml:2:25: defaults.remote_path: give either"),
            "{e}"
        );
    }

    #[test]
    fn min_agents_override() {
        let mut c = parse("listen: tcp://127.0.0.1:1\nhosts: [{host: h, count: 4}]\n").unwrap();
        assert!(c.set_min_agents(5).is_err());
        assert!(c.set_min_agents(0).is_err());
        c.set_min_agents(2).unwrap();
        assert_eq!(c.min_agents, 2);
    }
}
