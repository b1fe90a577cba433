//! `rally-tui agent`: a RunnerAgent that connects to a controller and runs the share of each
//! workload it is given, and `agent --list` / `--clear`, which look at what its chunk cache
//! holds.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tokio_util::sync::CancellationToken;

use super::{db_path, exit, load_runtime, wait_for_signal};
use crate::chunk::cache::ChunkCache;
use crate::distributed::agent::{AgentExit, AgentOptions, hostname, run_agent};
use crate::transport::token::Token;

#[derive(Args)]
pub struct AgentArgs {
    /// The controller's address, tcp://HOST:PORT.
    #[arg(long, value_name = "ADDR", required_unless_present_any = ["list", "clear"])]
    pub connect: Option<String>,
    /// List the chunks waiting in the cache (e.g. left by a run whose controller crashed),
    /// by task and workload, and exit. Needs --cache-dir or --name.
    #[arg(long, conflicts_with_all = ["connect", "clear"])]
    pub list: bool,
    /// Delete the chunks waiting in the cache (all, or those of --run) and exit. Needs
    /// --cache-dir or --name.
    #[arg(long, conflicts_with = "connect")]
    pub clear: bool,
    /// With --clear: only the chunks of this task (its uuid).
    #[arg(long, value_name = "TASK", requires = "clear")]
    pub run: Option<String>,
    /// This agent's name (default: the host name and process id).
    #[arg(long)]
    pub name: Option<String>,
    /// Where result chunks wait until the controller has stored them.
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// File holding the shared token (mode 0600); else RALLY_TUI_TOKEN.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Read the token from the first line of stdin, and leave when stdin closes (how a
    /// controller starts agents: their lifetime is tied to its pipe or SSH session).
    #[arg(long)]
    pub token_stdin: bool,
    /// Exit when no controller has answered for this many seconds (default: keep trying).
    #[arg(long, value_name = "SECONDS")]
    pub give_up_after: Option<f64>,
}

/// `rally-tui agent`: runs a RunnerAgent until the controller shuts it down (exit 0), or
/// until Ctrl-C, SIGTERM or the end of its stdin lifeline (exit 3); with `--list` or
/// `--clear`, looks at its cache instead. `db` places the default cache directory.
pub fn agent(args: AgentArgs, db: Option<PathBuf>) -> anyhow::Result<u8> {
    if args.list || args.clear {
        let Some(dir) = args.cache_dir.clone().or_else(|| {
            args.name
                .as_ref()
                .map(|n| db_path(db.clone()).with_file_name("agent-cache").join(n))
        }) else {
            eprintln!("error: --list and --clear need --cache-dir DIR (or the agent's --name)");
            return Ok(exit::USAGE);
        };
        return leftovers(&dir, args.clear, args.run.as_deref());
    }
    if let Some(s) = args.give_up_after
        && !(s.is_finite() && (0.0..1e6).contains(&s))
    {
        eprintln!("error: --give-up-after must be a number of seconds >= 0, got {s}");
        return Ok(exit::USAGE);
    }
    let token = if args.token_stdin {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("cannot read the token from stdin")?;
        Token::from_bytes(line.into_bytes(), " on stdin")
    } else {
        Token::load(args.token_file.as_deref())
    };
    let token = match token {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(exit::USAGE);
        }
    };
    let name = args
        .name
        .unwrap_or_else(|| format!("{}-{}", hostname(), std::process::id()));
    let cache_dir = args
        .cache_dir
        .unwrap_or_else(|| db_path(db).with_file_name("agent-cache").join(&name));
    let options = AgentOptions {
        // clap requires it unless --list or --clear, which returned above.
        connect: args.connect.unwrap_or_default(),
        name,
        cache_dir,
        give_up_after: args.give_up_after.map(Duration::from_secs_f64),
    };
    let runtime = load_runtime()?;
    runtime.block_on(async move {
        let interrupt = CancellationToken::new();
        let on_signal = interrupt.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            on_signal.cancel();
        });
        if args.token_stdin {
            // The rest of stdin is the lifeline: its end (the controller or the SSH session
            // went away) ends the agent.
            let on_eof = interrupt.clone();
            std::thread::spawn(move || {
                use std::io::Read;
                let mut buf = [0u8; 256];
                while let Ok(n) = std::io::stdin().read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                }
                tracing::warn!("stdin closed: leaving");
                on_eof.cancel();
            });
        }
        match run_agent(options, token, interrupt).await {
            Ok(AgentExit::Shutdown) => Ok(exit::OK),
            Ok(AgentExit::Interrupted) => Ok(exit::STOPPED),
            Err(e) => {
                eprintln!("error: {e}");
                Ok(exit::FAILURE)
            }
        }
    })
}

/// `agent --list` / `agent --clear`: what an agent's cache holds, by task and workload (the
/// chunks of a run whose controller died stay there until a controller of that run stores
/// them or someone clears them).
fn leftovers(dir: &Path, clear: bool, run: Option<&str>) -> anyhow::Result<u8> {
    if !dir.is_dir() {
        eprintln!("error: {} is not a chunk cache directory", dir.display());
        return Ok(exit::USAGE);
    }
    let mut cache = match ChunkCache::open(dir) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(exit::FAILURE);
        }
    };
    /// What the cache holds of one task's workload.
    struct Held {
        chunks: u64,
        iterations: u64,
        failed: u64,
        bytes: u64,
        first: f64,
        last: f64,
    }
    let mut groups: BTreeMap<(String, u32), Held> = BTreeMap::new();
    let mut ids = Vec::new();
    for m in cache.held() {
        if run.is_some_and(|r| r != m.key.run) {
            continue;
        }
        ids.push(m.id);
        let g = groups
            .entry((m.key.run.clone(), m.key.workload))
            .or_insert(Held {
                chunks: 0,
                iterations: 0,
                failed: 0,
                bytes: 0,
                first: f64::MAX,
                last: 0.0,
            });
        g.chunks += 1;
        g.iterations += u64::from(m.records);
        g.failed += u64::from(m.failures);
        g.bytes += m.bytes;
        if m.records > 0 {
            g.first = g.first.min(m.first_timestamp);
            g.last = g.last.max(m.last_timestamp);
        }
    }
    let rows: Vec<Vec<String>> = groups
        .iter()
        .map(|((task, workload), g)| {
            vec![
                task.clone(),
                workload.to_string(),
                g.chunks.to_string(),
                g.iterations.to_string(),
                g.failed.to_string(),
                g.bytes.to_string(),
                if g.iterations > 0 {
                    format!(
                        "{} .. {}",
                        crate::report::export::iso_time(g.first),
                        crate::report::export::iso_time(g.last)
                    )
                } else {
                    String::new()
                },
            ]
        })
        .collect();
    if clear {
        for id in &ids {
            cache.remove(*id)?;
        }
        println!(
            "Deleted {} chunk{} ({} iterations) from {}",
            ids.len(),
            if ids.len() == 1 { "" } else { "s" },
            groups.values().map(|g| g.iterations).sum::<u64>(),
            dir.display()
        );
        return Ok(exit::OK);
    }
    if rows.is_empty() {
        println!("{} holds no chunks", dir.display());
        return Ok(exit::OK);
    }
    print!(
        "{}",
        crate::headless::ascii_table(
            &format!("Chunks waiting in {}", dir.display()),
            &[
                "Task",
                "Workload",
                "Chunks",
                "Iterations",
                "Failed",
                "Bytes",
                "Time span"
            ],
            &rows
        )
    );
    Ok(exit::OK)
}
