//! The RunnerAgent (`rally-tui agent`): runs its share of each workload with the ordinary
//! local runner, keeps every result chunk in its on-disk cache until the controller has
//! stored it, and reports a mergeable SLA state every interval.
//!
//! The agent protects the service under test on its own: if it hears nothing from the
//! controller for the liveness timeout, or the connection breaks, it stops starting
//! iterations (keeping its chunks) and goes back to dialling, so a dead controller never
//! leaves load running.
//!
//! [`core`] is the session's protocol as a pure state machine; [`session`] is the loop that
//! feeds it the link's messages and the timers and carries out what it decides;
//! [`workload`] builds and runs a workload's share and keeps its account; [`pulls`] serves
//! the controller's pulls from the chunk cache.

pub mod core;
mod pulls;
mod session;
mod workload;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use self::session::Session;
use super::protocol::Register;
use super::wire::link::{Link, LinkError};
use crate::chunk::cache::ChunkCache;
use crate::transport::bounds;
use crate::transport::token::{Token, hex};

#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// `tcp://HOST:PORT` of the controller's control socket.
    pub connect: String,
    pub name: String,
    pub cache_dir: PathBuf,
    /// Give up when no controller answers for this long (None: keep trying).
    pub give_up_after: Option<Duration>,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Cache(#[from] crate::chunk::cache::CacheError),
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error("no controller answered at {0} in time")]
    GaveUp(String),
}

/// How an agent's run ended.
#[derive(Debug, PartialEq, Eq)]
pub enum AgentExit {
    /// The controller said the run is over.
    Shutdown,
    /// Ctrl-C or SIGTERM.
    Interrupted,
}

/// Runs the agent until the controller shuts it down or `interrupt` fires.
pub async fn run_agent(
    options: AgentOptions,
    token: Token,
    interrupt: CancellationToken,
) -> Result<AgentExit, AgentError> {
    let cache = ChunkCache::open(&options.cache_dir)?;
    for bad in cache.corrupt() {
        tracing::warn!("chunk cache: {bad:?}");
    }
    let cache = Arc::new(Mutex::new(cache));
    let boot = hex(&crate::transport::seal::new_nonce()[..6]);
    let mut attempt = 0u32;
    let mut backoff = Duration::from_millis(100);
    let mut last_contact = Instant::now();
    loop {
        attempt += 1;
        let register = registration(&options, &boot, &cache);
        let identity = format!("{}/{boot}/{attempt}", options.name);
        let link = tokio::select! {
            link = Link::connect(&options.connect, &identity, &token, &register) => link,
            _ = interrupt.cancelled() => return Ok(AgentExit::Interrupted),
        };
        match link {
            Ok(link) => {
                backoff = Duration::from_millis(100);
                tracing::info!("registered with the controller at {}", options.connect);
                let exit = Session::new(link, cache.clone(), &interrupt).serve().await;
                last_contact = Instant::now();
                if let Some(exit) = exit {
                    return Ok(exit);
                }
                tracing::warn!("lost the controller; reconnecting");
            }
            Err(e) if e.is_permanent() => return Err(e.into()),
            Err(e) => {
                // Not there yet is routine; an answer that breaks the protocol or its bounds
                // is not (a hostile or confused peer at the controller's address).
                if matches!(e, LinkError::Handshake(_)) {
                    tracing::warn!("{e}");
                } else if attempt == 1 || attempt.is_multiple_of(10) {
                    // Said at once, then every tenth attempt: the agent may well have been
                    // started before its controller.
                    tracing::warn!("{e}; trying again");
                } else {
                    tracing::info!("{e}");
                }
                if let Some(limit) = options.give_up_after
                    && last_contact.elapsed() > limit
                {
                    return Err(AgentError::GaveUp(options.connect.clone()));
                }
            }
        }
        // Jittered exponential backoff, 0.1 s doubling to 5 s.
        let jitter = Duration::from_millis(fastrand::u64(0..=backoff.as_millis() as u64 / 2));
        tokio::select! {
            _ = tokio::time::sleep(backoff + jitter) => {}
            _ = interrupt.cancelled() => return Ok(AgentExit::Interrupted),
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

fn registration(options: &AgentOptions, boot: &str, cache: &Mutex<ChunkCache>) -> Register {
    // The registration travels before the controller knows this agent, where messages are
    // small (transport::bounds): list what fits, oldest first; the rest stays cached.
    let mut cached = Vec::new();
    let mut bytes = 0;
    let mut left_out = 0;
    let cache = lock(cache);
    for meta in cache.held() {
        let size = serde_json::to_vec(meta).map_or(usize::MAX, |v| v.len() + 1);
        if bytes + size <= bounds::REGISTRATION_CACHED_BYTES {
            bytes += size;
            cached.push(meta.clone());
        } else {
            left_out += 1;
        }
    }
    if left_out > 0 {
        tracing::warn!(
            "{left_out} cached chunks do not fit in the registration; they stay in the cache \
             (the controller is told of {} of them)",
            cached.len()
        );
    }
    Register {
        name: options.name.clone(),
        host: hostname(),
        cores: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
        pid: std::process::id(),
        boot: boot.to_string(),
        cache: cache.id().to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        cached,
    }
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
