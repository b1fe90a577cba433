//! Getting the agents of a run: start the controller, then either spawn local agents (the
//! embedded default) or wait for agents started elsewhere to dial in.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::controller::{Controller, ControllerError, ControllerOptions};
use super::spawn::LocalAgents;
use crate::cluster::{ClusterAgents, ClusterError, ClusterFile};
use crate::events::Notice;
use crate::transport::token::Token;

/// Where the agents come from.
pub enum Source {
    /// Spawn this many local agent processes, with caches and logs under the directory.
    Local { cache_root: PathBuf },
    /// Wait for agents started by hand to register.
    Listen,
    /// Start the cluster file's agents over SSH (src/cluster); it says how many must come.
    Cluster(Box<ClusterFile>),
}

pub struct Pool {
    pub controller: Arc<Controller>,
    local: Option<LocalAgents>,
    cluster: Option<ClusterAgents>,
}

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error(transparent)]
    Controller(#[from] ControllerError),
    #[error("cannot start local agents: {0}")]
    Spawn(#[from] std::io::Error),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
}

impl Pool {
    /// Starts the controller and has `agents` agents registered within `wait`.
    pub async fn start(
        agents: usize,
        source: Source,
        options: ControllerOptions,
        token: Token,
        wait: Duration,
        notices: mpsc::UnboundedSender<Notice>,
    ) -> Result<Pool, PoolError> {
        let controller =
            Arc::new(Controller::start(options, token.clone(), notices.clone()).await?);
        let (mut local, mut cluster) = (None, None);
        match source {
            Source::Local { cache_root } => {
                local = Some(
                    LocalAgents::spawn(agents, controller.control_port, &token, &cache_root)
                        .await?,
                )
            }
            Source::Listen => {}
            Source::Cluster(file) => {
                cluster = Some(
                    ClusterAgents::launch(&file, controller.control_port, &token, notices).await?,
                )
            }
        }
        let pool = Pool {
            controller,
            local,
            cluster,
        };
        let ready = match &pool.cluster {
            Some(c) => c
                .wait_ready(|| pool.controller.registered(), wait)
                .await
                .map_err(Into::into),
            None => pool
                .controller
                .wait_for(agents, wait)
                .await
                .map_err(Into::into),
        };
        if let Err(e) = ready {
            pool.end().await;
            return Err(e);
        }
        Ok(pool)
    }

    /// Tells every agent the run is over and, for local agents, waits for them to exit
    /// (killing any that do not within a few seconds). Returns the names of killed agents.
    pub async fn end(self) -> Vec<String> {
        self.controller.shutdown().await;
        let mut killed = match self.local {
            Some(local) => {
                let root = local.cache_root.clone();
                let killed = local.end(Duration::from_secs(5)).await;
                remove_empty_caches(&root);
                killed
            }
            None => Vec::new(),
        };
        if let Some(cluster) = self.cluster {
            killed.extend(cluster.end().await);
        }
        killed
    }

    pub fn local_pids(&self) -> Vec<u32> {
        self.local
            .as_ref()
            .map(LocalAgents::pids)
            .unwrap_or_default()
    }
}

/// Local agents' caches are empty after a clean run: then the whole directory goes, logs
/// included. Anything left (chunks that were never stored, or logs of agents that had
/// something to say) is kept for inspection.
fn remove_empty_caches(root: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    let mut keep = false;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            let chunks = std::fs::read_dir(&path)
                .map(|d| {
                    d.flatten()
                        .filter(|e| e.path().extension().is_some_and(|x| x == "rtck"))
                        .count()
                })
                .unwrap_or(1);
            if chunks == 0 {
                let _ = std::fs::remove_dir_all(&path);
            } else {
                keep = true;
            }
        } else if entry.metadata().is_ok_and(|m| m.len() > 0) {
            keep = true;
        }
    }
    if !keep {
        let _ = std::fs::remove_dir_all(root);
    }
}
