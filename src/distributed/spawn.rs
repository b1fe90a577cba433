//! Local agents: the embedded default when no `--listen` or cluster is given, the controller
//! starts N `rally-tui agent` processes on loopback and ends them afterwards.
//!
//! Each child gets the token on its stdin (never on a command line, where `ps` shows it) and
//! treats the end of its stdin as the end of the run, so a controller that dies, even by
//! `kill -9`, takes its agents with it: the kernel closes the pipe.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};

use crate::transport::token::Token;

pub struct LocalAgents {
    children: Vec<(String, Child)>,
    /// Holds each child's stdin open: dropping it tells the agent to leave.
    lifelines: Vec<tokio::process::ChildStdin>,
    pub cache_root: PathBuf,
}

impl LocalAgents {
    /// Starts `count` agents named `local-1`.. dialling `tcp://127.0.0.1:PORT`, with caches
    /// and logs under `cache_root`.
    pub async fn spawn(
        count: usize,
        port: u16,
        token: &Token,
        cache_root: &Path,
    ) -> std::io::Result<LocalAgents> {
        let exe = std::env::current_exe()?;
        std::fs::create_dir_all(cache_root)?;
        let mut children = Vec::new();
        let mut lifelines = Vec::new();
        for i in 1..=count {
            let name = format!("local-{i}");
            let dir = cache_root.join(&name);
            let log = std::fs::File::create(cache_root.join(format!("{name}.log")))?;
            let mut child = Command::new(&exe)
                .arg("agent")
                .arg("--connect")
                .arg(format!("tcp://127.0.0.1:{port}"))
                .arg("--name")
                .arg(&name)
                .arg("--cache-dir")
                .arg(&dir)
                .arg("--token-stdin")
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::from(log))
                .kill_on_drop(true)
                // Not in our process group: a terminal hangup or a Ctrl-C reaches the
                // controller, which then stops its agents in order (they still end with
                // their stdin if it dies).
                .process_group(0)
                .spawn()?;
            let mut stdin = child
                .stdin
                .take()
                .ok_or_else(|| std::io::Error::other("agent stdin not piped"))?;
            stdin
                .write_all(format!("{}\n", token.to_env_value()).as_bytes())
                .await?;
            stdin.flush().await?;
            lifelines.push(stdin);
            children.push((name, child));
        }
        Ok(LocalAgents {
            children,
            lifelines,
            cache_root: cache_root.to_path_buf(),
        })
    }

    /// Ends every agent: close their stdin, give them `grace` to leave, then kill the rest.
    /// Returns the names of agents that had to be killed.
    pub async fn end(mut self, grace: Duration) -> Vec<String> {
        self.lifelines.clear();
        let deadline = tokio::time::Instant::now() + grace;
        let mut killed = Vec::new();
        for (name, child) in &mut self.children {
            match tokio::time::timeout_at(deadline, child.wait()).await {
                Ok(_) => {}
                Err(_) => {
                    let _ = child.kill().await;
                    killed.push(name.clone());
                }
            }
        }
        killed
    }

    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().filter_map(|(_, c)| c.id()).collect()
    }
}
