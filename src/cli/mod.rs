//! What the `rally-tui` binary needs beyond its clap definitions: the exit codes, the
//! tracing and runtime set-up every command shares, signals, and the `run` command's
//! validated [`run_config::RunConfig`] and its wiring ([`run`]), and the `agent` command
//! ([`agent`]).
//!
//! The binary (`src/main.rs`) parses the command line and dispatches; everything here is
//! library code, so the argument checks are unit-tested without starting a process.

pub mod agent;
pub mod run;
pub mod run_config;
pub mod verdict;

use std::path::PathBuf;

use anyhow::Context;

/// Exit codes (SPEC §9).
pub mod exit {
    pub const OK: u8 = 0;
    pub const FAILURE: u8 = 1;
    pub const SLA_FAILED: u8 = 2;
    pub const STOPPED: u8 = 3;
    /// Invalid task file or arguments (EX_USAGE); no load was started.
    pub const USAGE: u8 = 64;
}

/// Warnings and errors (RUST_LOG refines) go to `writer`: stderr, or the TUI's log file.
pub fn init_tracing<W>(writer: W)
where
    W: for<'a> tracing_subscriber::fmt::MakeWriter<'a> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(writer)
        .with_ansi(false)
        .init();
}

/// The runtime that runs the load (`run` and `agent`). With more than one CPU to use, a
/// worker per CPU. With one (a pinned process, a one-CPU container), the single-threaded
/// scheduler: a multi-threaded runtime with one worker only adds cost, since it times every
/// batch of task polls to tune itself (two clock reads and a `powf` per batch, about 7% of an
/// HTTP load's user CPU, measured with perf).
pub fn load_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut builder = if cpus > 1 {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    builder
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Waits for SIGINT (Ctrl-C) or SIGTERM; says which.
pub async fn wait_for_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => "SIGINT",
                    _ = term.recv() => "SIGTERM",
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}

/// The task database: `--db`, else the default ($RALLY_TUI_DB, else under $XDG_DATA_HOME).
pub fn db_path(db: Option<PathBuf>) -> PathBuf {
    db.unwrap_or_else(crate::store::default_path)
}
