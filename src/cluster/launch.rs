//! Starting a cluster's agents over SSH, waiting for enough of them, and tearing them down.
//!
//! Each agent is one `ssh HOST sh -c '... exec rally-tui agent ... --token-stdin'` session.
//! The token is the first line ssh sends on the session's stdin, and the rest of that stdin
//! is the agent's lifeline: the agent leaves when it ends. So closing our end (the run is
//! over), a controller that dies (the kernel closes the pipe), or a broken connection (sshd
//! closes the channel) all end the agent; nothing is left running on a host.

use std::collections::VecDeque;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use zeroize::Zeroizing;

use super::file::{Binary, ClusterFile, HostSpec};
use super::ssh::{self, LocalBinary, SSH_FAILED, path_word, quote};
use crate::events::{Level, Notice};
use crate::transport::token::Token;

/// What the remote script prints once the binary is found, just before it becomes the agent.
const READY: &str = "rally-tui-agent-starting";
/// SSH sessions a host is asked to open at once: sshd drops connections beyond its
/// `MaxStartups` (10 by default) while they authenticate.
const OPENING_PER_HOST: usize = 4;
/// How long agents get to leave after their stdin closes before their ssh is killed.
const GRACE: Duration = Duration::from_secs(5);
/// Lines of an agent's stderr kept to explain a failure.
const TAIL: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot hash this rally-tui to copy it: {0}")]
    Binary(std::io::Error),
    #[error(
        "cluster: {registered} of {total} agents registered, {min} needed (min_agents), and \
         {failed} failed to start:\n{details}"
    )]
    Failed {
        registered: usize,
        total: usize,
        min: usize,
        failed: usize,
        details: String,
    },
    #[error(
        "cluster: {registered} of {total} agents registered within {waited:?}, {min} needed \
         (min_agents){}{details}",
        if details.is_empty() { "" } else { ":\n" }
    )]
    TooFew {
        registered: usize,
        total: usize,
        min: usize,
        waited: Duration,
        details: String,
    },
}

/// Where one agent is.
#[derive(Debug, Clone, PartialEq)]
enum Phase {
    Waiting,
    Connecting,
    /// The session is up and the binary found; registration is the controller's news.
    Started,
    Failed(String),
}

struct Slot {
    name: String,
    host: Arc<HostSpec>,
    phase: Arc<Mutex<Phase>>,
    stderr: Arc<Mutex<VecDeque<String>>>,
    task: tokio::task::JoinHandle<Ending>,
}

/// How an agent's session ended.
struct Ending {
    /// Its ssh had to be killed.
    killed: bool,
    /// The agent may outlive its session (ssh was killed, or lost the connection): look.
    check: bool,
}

/// The agents of a cluster, from launch to teardown.
pub struct ClusterAgents {
    slots: Vec<Slot>,
    min_agents: usize,
    end: CancellationToken,
    notices: mpsc::UnboundedSender<Notice>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn say(notices: &mpsc::UnboundedSender<Notice>, level: Level, message: String) {
    let _ = notices.send(Notice { level, message });
}

impl ClusterAgents {
    /// Starts every host's agents, dialling `file.connect` (with `control_port` when it
    /// names no port). Copies the binary first where asked. Returns at once: sessions open
    /// in the background, and [`wait_ready`](Self::wait_ready) says when enough have come.
    pub async fn launch(
        file: &ClusterFile,
        control_port: u16,
        token: &Token,
        notices: mpsc::UnboundedSender<Notice>,
    ) -> Result<ClusterAgents, ClusterError> {
        let connect = file.connect_addr(control_port);
        let binary = if file.hosts.iter().any(|h| h.binary == Binary::Copy) {
            let b = tokio::task::spawn_blocking(LocalBinary::current)
                .await
                .map_err(|e| ClusterError::Binary(std::io::Error::other(e)))?
                .map_err(ClusterError::Binary)?;
            Some(Arc::new(b))
        } else {
            None
        };
        let line = Arc::new(Zeroizing::new(format!("{}\n", token.to_env_value())));
        let end = CancellationToken::new();
        let mut slots = Vec::new();
        for host in &file.hosts {
            let host = Arc::new(host.clone());
            say(
                &notices,
                Level::Info,
                format!(
                    "host {}: starting {} agent{} over ssh ({})",
                    host.name,
                    host.count,
                    if host.count == 1 { "" } else { "s" },
                    host.target()
                ),
            );
            // The binary is resolved (and copied) once per host; its agents wait for it.
            let (path_tx, path_rx) = tokio::sync::watch::channel(None);
            tokio::spawn(resolve_binary(
                host.clone(),
                binary.clone(),
                path_tx,
                notices.clone(),
            ));
            let gate = Arc::new(Semaphore::new(OPENING_PER_HOST));
            for name in host.agent_names() {
                let phase = Arc::new(Mutex::new(Phase::Waiting));
                let stderr = Arc::new(Mutex::new(VecDeque::new()));
                let agent = Agent {
                    name: name.clone(),
                    host: host.clone(),
                    connect: connect.clone(),
                    line: line.clone(),
                    phase: phase.clone(),
                    stderr: stderr.clone(),
                    notices: notices.clone(),
                    end: end.clone(),
                };
                let task = tokio::spawn(agent.supervise(path_rx.clone(), gate.clone()));
                slots.push(Slot {
                    name,
                    host: host.clone(),
                    phase,
                    stderr,
                    task,
                });
            }
        }
        Ok(ClusterAgents {
            slots,
            min_agents: file.min_agents,
            end,
            notices,
        })
    }

    /// Waits until `min_agents` agents are registered with the controller (`registered`
    /// says how many are). Fails as soon as too many have failed for that to happen, or
    /// after `wait`, with each failed agent's reason in ssh's (or the agent's) own words.
    pub async fn wait_ready(
        &self,
        registered: impl Fn() -> usize,
        wait: Duration,
    ) -> Result<(), ClusterError> {
        let deadline = tokio::time::Instant::now() + wait;
        let total = self.slots.len();
        loop {
            let registered = registered();
            if registered >= self.min_agents {
                if registered < total {
                    say(
                        &self.notices,
                        Level::Info,
                        format!(
                            "{registered} of {total} agents registered: starting (min_agents {})",
                            self.min_agents
                        ),
                    );
                }
                return Ok(());
            }
            let mut failed = self.failures();
            if total - failed.len() < self.min_agents {
                // The others still connecting often fail the same way: a moment for them,
                // so the report is whole.
                let settle = tokio::time::Instant::now() + Duration::from_secs(1);
                while tokio::time::Instant::now() < settle && self.connecting() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                failed = self.failures();
                return Err(ClusterError::Failed {
                    registered,
                    total,
                    min: self.min_agents,
                    failed: failed.len(),
                    details: group(&failed),
                });
            }
            if tokio::time::Instant::now() >= deadline {
                // Agents whose sessions are up but never registered: their stderr says why
                // (usually that they cannot reach the `connect` address).
                let mut reasons = failed;
                for slot in &self.slots {
                    if *lock(&slot.phase) != Phase::Started {
                        continue;
                    }
                    let tail = lock(&slot.stderr);
                    if let Some(last) = tail.back() {
                        reasons.push((slot.host.name.clone(), slot.name.clone(), last.clone()));
                    }
                }
                return Err(ClusterError::TooFew {
                    registered,
                    total,
                    min: self.min_agents,
                    waited: wait,
                    details: group(&reasons),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether some session is still being opened.
    fn connecting(&self) -> bool {
        self.slots
            .iter()
            .any(|s| *lock(&s.phase) == Phase::Connecting)
    }

    /// `(host, agent, reason)` of every agent that failed.
    fn failures(&self) -> Vec<(String, String, String)> {
        self.slots
            .iter()
            .filter_map(|s| match &*lock(&s.phase) {
                Phase::Failed(reason) => {
                    Some((s.host.name.clone(), s.name.clone(), reason.clone()))
                }
                _ => None,
            })
            .collect()
    }

    /// Ends every session: close the agents' stdin, give them a few seconds, kill the ssh
    /// of any that stay, then look on the hosts for agents that outlived their session.
    /// Returns the names of agents whose session had to be killed; agents still running on
    /// a host are reported as warnings.
    pub async fn end(self) -> Vec<String> {
        self.end.cancel();
        let mut killed = Vec::new();
        let mut suspects: Vec<(Arc<HostSpec>, String)> = Vec::new();
        for slot in self.slots {
            match slot.task.await {
                Ok(ending) => {
                    if ending.killed {
                        killed.push(slot.name.clone());
                    }
                    if ending.check {
                        suspects.push((slot.host, slot.name));
                    }
                }
                Err(_) => suspects.push((slot.host, slot.name)),
            }
        }
        for (host, names, left) in leftovers(suspects).await {
            let message = match left {
                Ok(left) if left.is_empty() => continue,
                Ok(left) => format!(
                    "host {}: agent{} {} still running after the run (they stop their load on \
                     their own; end them with `pkill -f 'rally-tui agent'` there)",
                    host.name,
                    if left.len() == 1 { "" } else { "s" },
                    left.join(", ")
                ),
                Err(reason) => format!(
                    "host {}: cannot check that agents {} have exited: {reason}",
                    host.name,
                    names.join(", ")
                ),
            };
            tracing::warn!("{message}");
            say(&self.notices, Level::Warning, message);
        }
        killed
    }
}

/// `host: agents a-1, a-2: reason` lines, one per host and reason.
fn group(failures: &[(String, String, String)]) -> String {
    let mut lines: Vec<(String, String, Vec<String>)> = Vec::new();
    for (host, agent, reason) in failures {
        match lines.iter_mut().find(|(h, r, _)| h == host && r == reason) {
            Some((_, _, agents)) => agents.push(agent.clone()),
            None => lines.push((host.clone(), reason.clone(), vec![agent.clone()])),
        }
    }
    lines
        .iter()
        .map(|(host, reason, agents)| {
            format!(
                "  host {host}: agent{} {}: {reason}",
                if agents.len() == 1 { "" } else { "s" },
                agents.join(", ")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The binary path for a host's agents: `remote_path` as given, or this binary copied.
async fn resolve_binary(
    host: Arc<HostSpec>,
    binary: Option<Arc<LocalBinary>>,
    path: tokio::sync::watch::Sender<Option<Result<String, String>>>,
    notices: mpsc::UnboundedSender<Notice>,
) {
    let resolved = match (&host.binary, binary) {
        (Binary::Remote(p), _) => Ok(p.clone()),
        (Binary::Copy, None) => Err("no local binary to copy".to_string()),
        (Binary::Copy, Some(binary)) => {
            say(
                &notices,
                Level::Info,
                format!(
                    "host {}: checking for rally-tui {} ({}) under {}",
                    host.name,
                    binary.version,
                    &binary.sha256[..16.min(binary.sha256.len())],
                    host.cache_dir
                ),
            );
            let result = ssh::ensure_binary(&host, &binary).await;
            match &result {
                Ok((p, true)) => say(
                    &notices,
                    Level::Info,
                    format!(
                        "host {}: copied rally-tui ({:.1} MB) to {p}",
                        host.name,
                        binary.size as f64 / 1e6
                    ),
                ),
                Ok((p, false)) => say(
                    &notices,
                    Level::Info,
                    format!("host {}: rally-tui already at {p}", host.name),
                ),
                Err(_) => {}
            }
            result.map(|(p, _)| p)
        }
    };
    let _ = path.send(Some(resolved));
}

/// One agent's session, from its launch to its end.
struct Agent {
    name: String,
    host: Arc<HostSpec>,
    connect: String,
    line: Arc<Zeroizing<String>>,
    phase: Arc<Mutex<Phase>>,
    stderr: Arc<Mutex<VecDeque<String>>>,
    notices: mpsc::UnboundedSender<Notice>,
    end: CancellationToken,
}

impl Agent {
    fn set(&self, phase: Phase) {
        *lock(&self.phase) = phase;
    }

    fn fail(&self, reason: String) -> Ending {
        if !self.end.is_cancelled() {
            say(
                &self.notices,
                Level::Error,
                format!(
                    "host {}: agent {}: failed: {reason}",
                    self.host.name, self.name
                ),
            );
        }
        self.set(Phase::Failed(reason));
        Ending {
            killed: false,
            check: false,
        }
    }

    /// The remote script: find the binary (a clear message if it is missing), say so on
    /// stdout, then become the agent, so the session's end is the agent's end.
    fn script(&self, binary: &str) -> String {
        let bin = path_word(binary);
        let cache = path_word(&format!("{}/agents/{}", self.host.cache_dir, self.name));
        let env: String = self
            .host
            .env
            .iter()
            .map(|(k, v)| format!(" {}", quote(&format!("{k}={v}"))))
            .collect();
        format!(
            "command -v {bin} >/dev/null 2>&1 || {{ echo \"rally-tui not found on $(uname -n): \"{bin} >&2; exit 127; }}; \
             echo {READY}; exec env{env} {bin} agent --connect {} --name {} --cache-dir {cache} --token-stdin",
            quote(&self.connect),
            quote(&self.name),
        )
    }

    async fn supervise(
        self,
        mut binary: tokio::sync::watch::Receiver<Option<Result<String, String>>>,
        gate: Arc<Semaphore>,
    ) -> Ending {
        let not_started = Ending {
            killed: false,
            check: false,
        };
        let path = tokio::select! {
            p = binary.wait_for(Option::is_some) => match p.as_deref() {
                Ok(Some(Ok(path))) => path.clone(),
                Ok(Some(Err(reason))) => return self.fail(reason.clone()),
                _ => return self.fail("the binary check stopped".into()),
            },
            _ = self.end.cancelled() => return not_started,
        };
        let permit = tokio::select! {
            p = gate.acquire_owned() => p.ok(),
            _ = self.end.cancelled() => return not_started,
        };
        self.set(Phase::Connecting);
        say(
            &self.notices,
            Level::Info,
            format!("host {}: agent {}: connecting", self.host.name, self.name),
        );
        let mut command = ssh::command(&self.host, &self.script(&path));
        // Its own process group: a Ctrl-C at the terminal (SIGINT to the foreground group)
        // must not cut the session, or the agents would leave in the middle of a graceful
        // stop; the controller ends the sessions itself.
        #[cfg(unix)]
        command.process_group(0);
        let spawned = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn();
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => return self.fail(format!("cannot run ssh: {e}")),
        };
        // The token first; the open pipe after it is the lifeline.
        let mut lifeline = child.stdin.take();
        if let Some(stdin) = lifeline.as_mut() {
            // A session that dies before reading it fails below with ssh's reason.
            let _ = stdin.write_all(self.line.as_bytes()).await;
            let _ = stdin.flush().await;
        }
        let stderr_reader = child.stderr.take().map(|err| {
            let tail = self.stderr.clone();
            let (name, host) = (self.name.clone(), self.host.name.clone());
            tokio::spawn(async move {
                let mut lines = BufReader::new(err).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    tracing::info!(host = %host, agent = %name, "{line}");
                    let mut t = lock(&tail);
                    if t.len() == TAIL {
                        t.pop_front();
                    }
                    t.push_back(line);
                }
            })
        });
        let (ready_tx, ready) = tokio::sync::oneshot::channel();
        if let Some(out) = child.stdout.take() {
            tokio::spawn(async move {
                let mut ready_tx = Some(ready_tx);
                let mut lines = BufReader::new(out).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if line.trim() == READY
                        && let Some(tx) = ready_tx.take()
                    {
                        let _ = tx.send(());
                    }
                }
            });
        }
        // Why the session ended early, in its own words (read to the end of its stderr).
        let reason = |code: Option<i32>, tail: &Mutex<VecDeque<String>>| {
            let text =
                ssh::stderr_reason(&lock(tail).iter().cloned().collect::<Vec<_>>().join("\n"));
            match (text.is_empty(), code) {
                (false, _) => text,
                (true, Some(SSH_FAILED)) => "ssh failed (exit status 255)".to_string(),
                (true, Some(c)) => format!("the session ended with exit status {c}"),
                (true, None) => "the session was killed".to_string(),
            }
        };
        let finish_stderr = |reader: Option<tokio::task::JoinHandle<()>>| async move {
            if let Some(r) = reader {
                let _ = tokio::time::timeout(Duration::from_secs(2), r).await;
            }
        };
        tokio::select! {
            r = ready => if r.is_ok() {
                self.set(Phase::Started);
                say(&self.notices, Level::Info, format!("host {}: agent {}: started", self.host.name, self.name));
            },
            _ = self.end.cancelled() => {}
        }
        drop(permit);
        let early = tokio::select! {
            status = child.wait() => Some(status),
            _ = self.end.cancelled() => None,
        };
        if let Some(status) = early {
            finish_stderr(stderr_reader).await;
            let code = status.ok().and_then(|s| s.code());
            let why = reason(code, &self.stderr);
            // A lost connection may leave the agent behind for a moment.
            let check =
                code.is_none_or(|c| c == SSH_FAILED) && *lock(&self.phase) == Phase::Started;
            let ending = self.fail(why);
            return Ending { check, ..ending };
        }
        // The run is over: close the lifeline and let the agent leave.
        drop(lifeline);
        match tokio::time::timeout(GRACE, child.wait()).await {
            Ok(status) => {
                let code = status.ok().and_then(|s| s.code());
                Ending {
                    killed: false,
                    check: code.is_none_or(|c| c == SSH_FAILED),
                }
            }
            Err(_) => {
                let _ = child.kill().await;
                Ending {
                    killed: true,
                    check: true,
                }
            }
        }
    }
}

/// For each host with suspect agents, the names still running there (`pgrep -f` on the
/// agent's `--name`), or why that could not be checked. A few tries: an agent whose
/// session just closed needs a moment to leave.
async fn leftovers(
    suspects: Vec<(Arc<HostSpec>, String)>,
) -> Vec<(Arc<HostSpec>, Vec<String>, Result<Vec<String>, String>)> {
    let mut by_host: Vec<(Arc<HostSpec>, Vec<String>)> = Vec::new();
    for (host, name) in suspects {
        match by_host.iter_mut().find(|(h, _)| h.name == host.name) {
            Some((_, names)) => names.push(name),
            None => by_host.push((host, vec![name])),
        }
    }
    let checks = by_host.into_iter().map(|(host, names)| async move {
        let mut result = Err(String::new());
        for attempt in 0..3 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            result = still_running(&host, &names).await;
            if matches!(&result, Ok(left) if left.is_empty()) {
                break;
            }
        }
        (host, names, result)
    });
    futures::future::join_all(checks).await
}

/// Agents of `names` with a process on the host. The pattern starts with `[-]-name` so it
/// matches an agent's command line but not the checking shell's own.
pub async fn still_running(host: &HostSpec, names: &[String]) -> Result<Vec<String>, String> {
    let script: String = names
        .iter()
        .map(|n| {
            let pattern = format!("[-]-name {}( |$)", n.replace('.', "\\."));
            format!(
                "pgrep -f -- {} >/dev/null && echo {}; ",
                quote(&pattern),
                quote(n)
            )
        })
        .chain(std::iter::once("true".to_string()))
        .collect();
    let out = ssh::run(host, &script, None, Duration::from_secs(30))
        .await
        .map_err(|e| e.to_string())?;
    if !out.ok() {
        return Err(out.reason());
    }
    Ok(out
        .stdout
        .lines()
        .map(str::trim)
        .filter(|l| names.iter().any(|n| n == l))
        .map(str::to_string)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn failures_are_grouped_by_host_and_reason() {
        let f = |h: &str, a: &str, r: &str| (h.to_string(), a.to_string(), r.to_string());
        let text = group(&[
            f("a", "a-1", "Permission denied"),
            f("a", "a-2", "Permission denied"),
            f("b", "b-1", "Connection refused"),
        ]);
        assert_eq!(
            text,
            "  host a: agents a-1, a-2: Permission denied\n  host b: agent b-1: Connection refused"
        );
    }

    #[test]
    fn the_agent_script_quotes_everything_and_keeps_the_token_out() {
        let file = ClusterFile::parse(
            Path::new("c.yaml"),
            "listen: tcp://127.0.0.1:0\nhosts:\n  - {host: h, name: web, env: {X: 'a b'}, cache_dir: ~/c d}\n",
        )
        .unwrap();
        let (notices, _rx) = mpsc::unbounded_channel();
        let agent = Agent {
            name: "web-1".into(),
            host: Arc::new(file.hosts[0].clone()),
            connect: file.connect_addr(4000),
            line: Arc::new(Zeroizing::new("secret-token\n".into())),
            phase: Arc::new(Mutex::new(Phase::Waiting)),
            stderr: Arc::new(Mutex::new(VecDeque::new())),
            notices,
            end: CancellationToken::new(),
        };
        let script = agent.script("~/bin/rally-tui");
        assert!(
            script.ends_with(
                "exec env 'X=a b' \"$HOME\"/bin/rally-tui agent --connect tcp://127.0.0.1:4000 \
                 --name web-1 --cache-dir \"$HOME\"/'c d/agents/web-1' --token-stdin"
            ),
            "{script}"
        );
        assert!(!script.contains("secret"));
    }
}
