//! The `rally-tui` command line.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use rally_tui::cli::run_config::{RunArgs, RunConfig, TaskArgs};
use rally_tui::cli::{exit, init_tracing, load_runtime, wait_for_signal};
use rally_tui::cluster::ClusterFile;
use rally_tui::transport::token::Token;

mod tasks;

#[derive(Parser)]
#[command(
    name = "rally-tui",
    version,
    about = "Run Rally task files from one process or many agents, with live SLA checks"
)]
struct Cli {
    /// Task database (SQLite). Default: $RALLY_TUI_DB, else $XDG_DATA_HOME/rally-tui/tasks.db.
    #[arg(long, global = true)]
    db: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a task file and print its results.
    Run(RunArgs),
    /// Check a task file without running anything.
    Validate(TaskArgs),
    /// Run a RunnerAgent: connect to a controller and run the share of each workload it gives.
    Agent(AgentArgs),
    /// Stored tasks: list, show, check SLA again, report, export, delete.
    #[command(subcommand)]
    Task(tasks::TaskCommand),
    /// SSH clusters (`run --cluster FILE`).
    #[command(subcommand)]
    Cluster(ClusterCommand),
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// Reach every host of a cluster file and check its rally-tui, without starting agents.
    Check {
        /// Cluster file (YAML).
        file: PathBuf,
    },
}

#[derive(Args)]
struct AgentArgs {
    /// The controller's address, tcp://HOST:PORT.
    #[arg(long, value_name = "ADDR", required_unless_present_any = ["list", "clear"])]
    connect: Option<String>,
    /// List the chunks waiting in the cache (e.g. left by a run whose controller crashed),
    /// by task and workload, and exit. Needs --cache-dir or --name.
    #[arg(long, conflicts_with_all = ["connect", "clear"])]
    list: bool,
    /// Delete the chunks waiting in the cache (all, or those of --run) and exit. Needs
    /// --cache-dir or --name.
    #[arg(long, conflicts_with = "connect")]
    clear: bool,
    /// With --clear: only the chunks of this task (its uuid).
    #[arg(long, value_name = "TASK", requires = "clear")]
    run: Option<String>,
    /// This agent's name (default: the host name and process id).
    #[arg(long)]
    name: Option<String>,
    /// Where result chunks wait until the controller has stored them.
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// File holding the shared token (mode 0600); else RALLY_TUI_TOKEN.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Read the token from the first line of stdin, and leave when stdin closes (how a
    /// controller starts agents: their lifetime is tied to its pipe or SSH session).
    #[arg(long)]
    token_stdin: bool,
    /// Exit when no controller has answered for this many seconds (default: keep trying).
    #[arg(long, value_name = "SECONDS")]
    give_up_after: Option<f64>,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match dispatch(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(exit::FAILURE)
        }
    }
}

/// Raise the open-files soft limit to the hard limit: the common soft limit of 1,024 is
/// what a flood of connections exhausts first, before the transport's own caps
/// (`transport::bounds`) come into play. Nothing to do, or not allowed: the limit stays.
fn raise_open_files_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        let _ = setrlimit(Resource::Nofile, limit);
    }
}

fn dispatch(cli: Cli) -> anyhow::Result<u8> {
    if !matches!(cli.command, Command::Run(_)) {
        init_tracing(std::io::stderr);
    }
    if matches!(cli.command, Command::Run(_) | Command::Agent(_)) {
        raise_open_files_limit();
    }
    match cli.command {
        Command::Validate(args) => match args.source().load() {
            Ok(spec) => {
                let workloads = spec.workloads().count();
                println!(
                    "Input Task is valid :) ({} subtask{}, {workloads} workload{}, format v{})",
                    spec.subtasks.len(),
                    if spec.subtasks.len() == 1 { "" } else { "s" },
                    if workloads == 1 { "" } else { "s" },
                    spec.version
                );
                Ok(exit::OK)
            }
            Err(e) => {
                eprintln!("error: {e}");
                Ok(exit::USAGE)
            }
        },
        Command::Run(args) => match RunConfig::from_args(args, std::io::stdout().is_terminal()) {
            Ok(config) => rally_tui::cli::run::run(config, db_path(cli.db)),
            Err(e) => {
                init_tracing(std::io::stderr);
                eprintln!("error: {e}");
                Ok(exit::USAGE)
            }
        },
        Command::Agent(args) => agent(args, cli.db),
        Command::Task(command) => tasks::dispatch(command, &db_path(cli.db)),
        Command::Cluster(ClusterCommand::Check { file }) => cluster_check(&file),
    }
}

fn db_path(db: Option<PathBuf>) -> PathBuf {
    db.unwrap_or_else(rally_tui::store::default_path)
}

fn cluster_check(path: &std::path::Path) -> anyhow::Result<u8> {
    let file = match ClusterFile::load(path) {
        Ok(file) => file,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(exit::USAGE);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let checks = runtime.block_on(rally_tui::cluster::check::check_hosts(&file));
    print!("{}", rally_tui::cluster::check::render(&checks));
    Ok(if checks.iter().all(|c| c.ok) {
        exit::OK
    } else {
        exit::FAILURE
    })
}

/// Ctrl-C or SIGTERM.
fn agent(args: AgentArgs, db: Option<PathBuf>) -> anyhow::Result<u8> {
    use rally_tui::distributed::agent::{AgentExit, AgentOptions, hostname, run_agent};
    use tokio_util::sync::CancellationToken;
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
fn leftovers(dir: &std::path::Path, clear: bool, run: Option<&str>) -> anyhow::Result<u8> {
    use rally_tui::chunk::cache::ChunkCache;
    use std::collections::BTreeMap;
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
                        rally_tui::report::export::iso_time(g.first),
                        rally_tui::report::export::iso_time(g.last)
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
        rally_tui::headless::ascii_table(
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
