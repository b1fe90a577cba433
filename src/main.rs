//! The `rally-tui` command line.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use std::time::Duration;

use rally_tui::cluster::ClusterFile;
use rally_tui::distributed::controller::ControllerOptions;
use rally_tui::distributed::pool::{Pool, Source};
use rally_tui::engine::{Abort, EngineOptions, TaskEngine};
use rally_tui::headless;
use rally_tui::task::TaskSource;
use rally_tui::transport::token::Token;
use rally_tui::tui::app::run_tui;
use rally_tui::tui::theme::Theme;

mod tasks;

/// Exit codes (SPEC §9).
pub(crate) mod exit {
    pub const OK: u8 = 0;
    pub const FAILURE: u8 = 1;
    pub const SLA_FAILED: u8 = 2;
    pub const STOPPED: u8 = 3;
    /// Invalid task file or arguments (EX_USAGE); no load was started.
    pub const USAGE: u8 = 64;
}

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
struct TaskArgs {
    /// Task file (YAML or JSON, Rally format v1 or v2, a Jinja2 template); `-` reads stdin.
    file: PathBuf,
    /// Template arguments: YAML/JSON mapping, or `key=value,key=value`. Overrides --task-args-file.
    #[arg(long)]
    task_args: Option<String>,
    /// File with template arguments (YAML or JSON mapping).
    #[arg(long)]
    task_args_file: Option<PathBuf>,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    task: TaskArgs,
    /// Mark the task with a tag (repeatable), as `rally task start --tag`; `task list --tag`
    /// finds it. Added to the task file's own `tags`.
    #[arg(long = "tag", value_name = "TAG")]
    tags: Vec<String>,
    /// Write every engine event to FILE as JSON lines (schema `"v": 1`, see the README);
    /// `-` is standard output, with --no-tui.
    #[arg(long, value_name = "FILE")]
    events: Option<PathBuf>,
    /// Serve the run's live figures at http://ADDR/metrics for Prometheus (HOST:PORT, e.g.
    /// 127.0.0.1:9464; Prometheus text or OpenMetrics, see the README). Served by this
    /// process (the controller of a distributed run), never by agents.
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<String>,
    /// Seconds /metrics stays up after the run ends, so that the last scrape sees the end.
    #[arg(long, value_name = "SECONDS", default_value_t = rally_tui::metrics::DEFAULT_LINGER)]
    metrics_linger: f64,
    /// Print progress lines and tables instead of the terminal UI (for CI).
    #[arg(long)]
    no_tui: bool,
    /// Stop all load the first time any SLA criterion fails, and skip the remaining workloads.
    #[arg(long)]
    abort_on_sla_failure: bool,
    /// TUI colour theme: a built-in name (dark, light, high-contrast) or a TOML file.
    #[arg(long, value_name = "NAME|PATH", default_value = "dark")]
    theme: String,
    /// Where the TUI writes its log (never onto the screen). Default: rally-tui.log next to
    /// the task database.
    #[arg(long, value_name = "PATH")]
    log_file: Option<PathBuf>,
    /// Run every workload on N agents (local agent processes unless --listen is given).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=10000))]
    agents: Option<u64>,
    /// Wait on ADDR (tcp://HOST:PORT; results use PORT+1) for agents started elsewhere
    /// instead of starting local ones. Needs the shared token (--token-file or RALLY_TUI_TOKEN).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Seconds to wait for the agents to register.
    #[arg(long, value_name = "SECONDS", default_value_t = 60.0)]
    agent_wait: f64,
    /// Seconds between the agents' SLA reports.
    #[arg(long, value_name = "SECONDS", default_value_t = 1.0)]
    sla_interval: f64,
    /// Seconds of silence after which an agent is lost (and agents stop on their own).
    #[arg(long, value_name = "SECONDS", default_value_t = 3.0)]
    liveness: f64,
    /// File holding the shared token (mode 0600), for --listen.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Start the agents listed in this cluster file over ssh (listen address, hosts, agents
    /// per host); a fresh token goes to each over ssh's standard input.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["listen", "token_file"])]
    cluster: Option<PathBuf>,
    /// Start the load once N of the cluster's agents have registered (default: the cluster
    /// file's min_agents, else all of them).
    #[arg(long, value_name = "N", requires = "cluster")]
    min_agents: Option<usize>,
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

impl TaskArgs {
    fn source(&self) -> TaskSource {
        TaskSource {
            file: self.file.clone(),
            args: self.task_args.clone(),
            args_file: self.task_args_file.clone(),
        }
    }
}

/// Warnings and errors (RUST_LOG refines) go to `writer`: stderr, or the TUI's log file.
fn init_tracing<W>(writer: W)
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
fn load_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
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
        Command::Run(args) => run(args, cli.db),
        Command::Agent(args) => agent(args, cli.db),
        Command::Task(command) => tasks::dispatch(command, &db_path(cli.db)),
        Command::Cluster(ClusterCommand::Check { file }) => cluster_check(&file),
    }
}

fn db_path(db: Option<PathBuf>) -> PathBuf {
    db.unwrap_or_else(rally_tui::store::default_path)
}

fn run(args: RunArgs, db: Option<PathBuf>) -> anyhow::Result<u8> {
    let theme = match Theme::load(&args.theme) {
        Ok(theme) => theme,
        Err(e) => {
            init_tracing(std::io::stderr);
            eprintln!("error: {e}");
            return Ok(exit::USAGE);
        }
    };
    let tui = !args.no_tui && std::io::stdout().is_terminal();
    // `--events`: opened before anything runs, so a bad path is an error, not a lost log.
    let events_out: Option<Box<dyn Write + Send>> = match &args.events {
        None => None,
        Some(p) if p.as_os_str() == "-" => {
            if !args.no_tui {
                init_tracing(std::io::stderr);
                eprintln!("error: --events - writes to standard output, which needs --no-tui");
                return Ok(exit::USAGE);
            }
            Some(Box::new(std::io::stdout()))
        }
        Some(p) => match std::fs::File::create(p) {
            Ok(f) => Some(Box::new(std::io::BufWriter::new(f))),
            Err(e) => {
                init_tracing(std::io::stderr);
                eprintln!("error: --events {}: {e}", p.display());
                return Ok(exit::USAGE);
            }
        },
    };
    let events_to_stdout = args.events.as_ref().is_some_and(|p| p.as_os_str() == "-");
    // `--metrics-listen`: bound before anything runs, so a bad address or a port in use is
    // an argument error, not a run without its metrics.
    if !(args.metrics_linger.is_finite() && (0.0..1e6).contains(&args.metrics_linger)) {
        init_tracing(std::io::stderr);
        eprintln!(
            "error: --metrics-linger must be a number of seconds >= 0, got {}",
            args.metrics_linger
        );
        return Ok(exit::USAGE);
    }
    let metrics_listener = match &args.metrics_listen {
        None => None,
        Some(addr) => match rally_tui::metrics::bind(addr) {
            Ok(listener) => Some(listener),
            Err(e) => {
                init_tracing(std::io::stderr);
                eprintln!("error: {e}");
                return Ok(exit::USAGE);
            }
        },
    };
    let db = db_path(db);
    // The TUI logs to a file, never onto its screen; the guard flushes it on the way out.
    let _log_guard = if tui {
        let path = args
            .log_file
            .clone()
            .unwrap_or_else(|| db.with_file_name("rally-tui.log"));
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("cannot open the log file {}", path.display()))?;
        let (writer, guard) = tracing_appender::non_blocking(file);
        init_tracing(writer);
        Some(guard)
    } else {
        init_tracing(std::io::stderr);
        None
    };
    let mut spec = match args.task.source().load() {
        Ok(spec) => spec,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(exit::USAGE);
        }
    };
    for tag in &args.tags {
        if !spec.tags.contains(tag) {
            spec.tags.push(tag.clone());
        }
    }
    // --cluster: the file says where to listen and which agents start (all workloads share
    // them unless --agents says otherwise).
    let cluster = match &args.cluster {
        None => None,
        Some(path) => {
            let mut file = match ClusterFile::load(path) {
                Ok(file) => file,
                Err(e) => {
                    eprintln!("error: {e}");
                    return Ok(exit::USAGE);
                }
            };
            if let Some(n) = args.min_agents
                && let Err(e) = file.set_min_agents(n)
            {
                eprintln!("error: {e}");
                return Ok(exit::USAGE);
            }
            Some(file)
        }
    };
    let agents = args.agents.or(cluster.as_ref().map(|c| c.agents() as u64));
    if let Some(n) = agents {
        for s in &mut spec.subtasks {
            for w in &mut s.workloads {
                w.runner = w.runner.clone().distribute(n);
            }
        }
    }
    let pool_size = spec
        .workloads()
        .map(|(_, w)| w.runner.agents())
        .max()
        .unwrap_or(0) as usize;
    for (name, v) in [
        ("--sla-interval", args.sla_interval),
        ("--liveness", args.liveness),
        ("--agent-wait", args.agent_wait),
    ] {
        if !(v.is_finite() && v > 0.0 && v < 1e6) {
            eprintln!("error: {name} must be a positive number of seconds, got {v}");
            return Ok(exit::USAGE);
        }
    }
    let token = match (&args.listen, pool_size) {
        (_, 0) => None,
        (Some(_), _) => match Token::load(args.token_file.as_deref()) {
            Ok(t) => Some(t),
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(exit::USAGE);
            }
        },
        // Local and cluster agents get a fresh token through their stdin.
        (None, _) => Some(Token::random()),
    };
    let store = rally_tui::store::Store::open(&db)
        .with_context(|| format!("cannot open the task database {}", db.display()))?;
    let (recorder, writer) = rally_tui::store::writer::spawn(store);
    let runtime = load_runtime()?;
    runtime.block_on(async move {
        let options = EngineOptions {
            abort_on_sla_failure: args.abort_on_sla_failure,
            interval: Duration::from_secs_f64(args.sla_interval),
            detail: metrics_listener.is_some(),
            ..EngineOptions::default()
        };
        // Up from here, while the agents come (the run's state says `starting`).
        let metrics = match metrics_listener.map(rally_tui::metrics::Exporter::start) {
            None => None,
            Some(Ok(exporter)) => {
                if !tui {
                    eprintln!("Metrics: http://{}/metrics", exporter.addr);
                }
                Some(exporter)
            }
            Some(Err(e)) => {
                eprintln!("error: --metrics-listen: {e}");
                return Ok(exit::USAGE);
            }
        };
        let (notices, mut notice_rx) = tokio::sync::mpsc::unbounded_channel();
        // What the headless mode printed while the agents came, for the start of `--events`.
        let mut early_notices = Vec::new();
        let pool = match token {
            None => None,
            Some(token) => {
                let source = match (&args.listen, &cluster) {
                    (_, Some(file)) => Source::Cluster(Box::new(file.clone())),
                    (Some(_), None) => Source::Listen,
                    (None, None) => Source::Local {
                        cache_root: db
                            .with_file_name("agents")
                            .join(std::process::id().to_string()),
                    },
                };
                let controller_options = ControllerOptions {
                    listen: args
                        .listen
                        .clone()
                        .or(cluster.as_ref().map(|c| c.listen.clone()))
                        .unwrap_or_else(|| "tcp://127.0.0.1:0".into()),
                    heartbeat: Duration::from_secs_f64((args.liveness / 3.0).min(1.0)),
                    liveness: Duration::from_secs_f64(args.liveness),
                    sla_interval: Duration::from_secs_f64(args.sla_interval),
                    ..ControllerOptions::default()
                };
                if !tui {
                    eprintln!(
                        "Starting {pool_size} agent{}{}",
                        if pool_size == 1 { "" } else { "s" },
                        match (&args.listen, &cluster) {
                            (_, Some(c)) => format!(
                                " on {} host{} of {} (listening on {})",
                                c.hosts.len(),
                                if c.hosts.len() == 1 { "" } else { "s" },
                                c.file.display(),
                                c.listen
                            ),
                            (Some(addr), None) => format!(": waiting for them on {addr}"),
                            (None, None) => " on this machine".into(),
                        }
                    );
                }
                let wait = Duration::from_secs_f64(args.agent_wait);
                let start =
                    Pool::start(pool_size, source, controller_options, token, wait, notices);
                // Headless: how the agents come (connecting, started, failed) as it happens.
                let started = async {
                    if tui {
                        start.await
                    } else {
                        print_notices_while(
                            start,
                            &mut notice_rx,
                            &mut early_notices,
                            events_to_stdout,
                        )
                        .await
                    }
                };
                // A signal while the agents come is a stop like any other: exit 3, not the
                // signal's default death (local agents follow: their stdin closes).
                let started = tokio::select! {
                    started = started => started,
                    _ = wait_for_signal() => {
                        eprintln!("Stopped while waiting for agents.");
                        return Ok(exit::STOPPED);
                    }
                };
                match started {
                    Ok(pool) => Some(pool),
                    Err(e) => {
                        eprintln!("error: {e}");
                        return Ok(exit::FAILURE);
                    }
                }
            }
        };
        let mut engine = TaskEngine::new(spec, options).with_recorder(recorder);
        if let Some(pool) = &pool {
            engine = engine.with_controller(pool.controller.clone());
        }
        let event_log = events_out.map(|out| {
            let early = early_notices
                .iter()
                .map(|n| rally_tui::events::Event::Log {
                    level: n.level.into(),
                    message: n.message.clone(),
                })
                .collect();
            tokio::spawn(rally_tui::event_log::write_events(
                early,
                engine.subscribe(),
                out,
            ))
        });
        let metrics_follower = metrics.as_ref().map(|m| m.follow(engine.subscribe()));
        let stopper = engine.stopper();
        let abandoner = engine.abandoner();
        let stop_reason = engine.stop_reason();
        let front = if tui {
            tokio::spawn(run_tui(
                engine.subscribe(),
                stopper.clone(),
                abandoner.clone(),
                stop_reason.clone(),
                theme,
            ))
        } else if events_to_stdout {
            // Standard output carries the event lines alone, for a program to read.
            tokio::spawn(async { Ok(()) })
        } else {
            let printer = headless::print_events(engine.subscribe(), std::io::stdout());
            tokio::spawn(async move {
                printer.await;
                Ok(())
            })
        };
        // After the front end has subscribed, so that no notice is lost.
        let events = engine.events();
        tokio::spawn(async move {
            while let Some(n) = notice_rx.recv().await {
                // The TUI's log file keeps them; the headless printer prints the event.
                if tui {
                    match n.level {
                        "error" => tracing::error!("{}", n.message),
                        "warning" => tracing::warn!("{}", n.message),
                        _ => tracing::info!("{}", n.message),
                    }
                }
                let _ = events.send(rally_tui::events::Event::Log {
                    level: n.level.into(),
                    message: n.message,
                });
            }
        });
        tokio::spawn(async move {
            let mut signals = 0;
            loop {
                let signal = wait_for_signal().await;
                signals += 1;
                if signals == 1 {
                    stop_reason.set(format!("stopped by {signal}"));
                    if !tui {
                        eprintln!("Stopping: no new iterations start; in-flight ones finish. Press Ctrl-C again to quit now.");
                    }
                    stopper.cancel();
                } else if signals == 2 {
                    // Leave now: in-flight iterations are abandoned, what arrived is stored
                    // and the task recorded as aborted.
                    if !tui {
                        eprintln!("Leaving now: in-flight iterations are abandoned. Press Ctrl-C again to exit without storing.");
                    }
                    abandoner.cancel();
                } else {
                    if tui {
                        // The terminal must not stay in raw mode behind us.
                        let _ = ratatui::try_restore();
                    }
                    std::process::exit(i32::from(exit::STOPPED));
                }
            }
        });
        let outcome = engine.run().await;
        let ended = tokio::time::Instant::now();
        if let Some(pool) = pool {
            let killed = pool.end().await;
            if !killed.is_empty() {
                let _ = writeln!(
                    std::io::stderr(),
                    "warning: agents {} did not exit and were killed",
                    killed.join(", ")
                );
            }
        }
        // The TUI stays on its final screen until the user quits.
        let front = front.await;
        drop(engine);
        if let Some(log) = event_log {
            // It ends with the task's last event (or when the engine's stream closed).
            let _ = log.await;
        }
        if let Some(follower) = metrics_follower {
            let _ = follower.await;
        }
        match front {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let _ = writeln!(std::io::stderr(), "error: the terminal UI failed: {e}");
            }
            Err(e) => {
                let _ = writeln!(std::io::stderr(), "error: the terminal UI failed: {e}");
            }
        }
        if tui {
            // The screen is gone with the UI: leave what `--no-tui` prints at the end, as k6
            // and oha leave their summaries. The terminal may have hung up: printing must not
            // turn a stored run into a panic.
            let mut summary = String::new();
            for report in &outcome.workloads {
                summary.push_str(&headless::workload_summary(&outcome.uuid, report));
            }
            summary.push_str(&headless::task_verdict(
                &outcome.uuid,
                outcome.status,
                outcome.pass_sla,
            ));
            let _ = std::io::stdout().write_all(summary.as_bytes());
        }
        // The storing and the verdict, whose early returns must not skip the linger below.
        let code = async move {
            let stored = tokio::task::spawn_blocking(move || writer.join()).await;
            match stored {
                Ok(Ok(Ok(()))) => {
                    let db_arg = if db == rally_tui::store::default_path() {
                        String::new()
                    } else {
                        format!(" --db {}", db.display())
                    };
                    let text = format!(
                        "Stored as task {id} in {}\nSee it again: rally-tui{db_arg} task show {id}\n\
                         A report:    rally-tui{db_arg} task report {id} --out report.html",
                        db.display(),
                        id = outcome.uuid,
                    );
                    // With `--events -` standard output is the event lines' alone.
                    let _ = if events_to_stdout {
                        writeln!(std::io::stderr(), "{text}")
                    } else {
                        writeln!(std::io::stdout(), "{text}")
                    };
                }
                Ok(Ok(Err(e))) => {
                    let _ = writeln!(std::io::stderr(), "error: results were not all stored: {e}");
                    return Ok(exit::FAILURE);
                }
                _ => {
                    let _ = writeln!(std::io::stderr(), "error: the storage thread failed");
                    return Ok(exit::FAILURE);
                }
            }
            // Results that ran and could not be fetched (their agent died with them and nobody
            // could run them again) make the run a failure, whatever the SLA says of the rest.
            let missing: usize = outcome
                .workloads
                .iter()
                .filter_map(|w| w.distributed.as_ref())
                .map(|d| d.missing.len())
                .sum();
            if missing > 0 && outcome.abort != Some(Abort::User) {
                let _ = writeln!(
                    std::io::stderr(),
                    "error: results are missing ({missing} report line{} above: `Missing results`)",
                    if missing == 1 { "" } else { "s" }
                );
                return Ok(exit::FAILURE);
            }
            Ok(match outcome.abort {
                Some(Abort::User) => exit::STOPPED,
                _ if !outcome.pass_sla => exit::SLA_FAILED,
                _ => exit::OK,
            })
        }
        .await;
        if let Some(metrics) = metrics {
            // The last scrapes see the end; a signal cuts the wait short.
            let linger = Duration::from_secs_f64(args.metrics_linger);
            let left = linger.saturating_sub(ended.elapsed());
            if !tui && !left.is_zero() {
                eprintln!(
                    "Metrics: serving /metrics {:.0} s more (--metrics-linger)",
                    left.as_secs_f64()
                );
            }
            metrics
                .linger(left, async {
                    wait_for_signal().await;
                })
                .await;
        }
        code
    })
}

/// Prints notices as `level: message` lines (as the headless printer does) while `work`
/// runs: the printer only starts with the engine, once the agents have come.
/// Each notice is kept in `seen` too (for `--events`), and goes to standard error when
/// standard output carries the event lines.
async fn print_notices_while<T>(
    work: impl std::future::Future<Output = T>,
    notices: &mut tokio::sync::mpsc::UnboundedReceiver<rally_tui::distributed::controller::Notice>,
    seen: &mut Vec<rally_tui::distributed::controller::Notice>,
    to_stderr: bool,
) -> T {
    let mut say = |n: rally_tui::distributed::controller::Notice| {
        if to_stderr {
            eprintln!("{}: {}", n.level, n.message);
        } else {
            println!("{}: {}", n.level, n.message);
        }
        seen.push(n);
    };
    tokio::pin!(work);
    let out = loop {
        tokio::select! {
            out = &mut work => break out,
            Some(n) = notices.recv() => say(n),
        }
    };
    while let Ok(n) = notices.try_recv() {
        say(n);
    }
    out
}

/// `rally-tui cluster check FILE`: 0 when every host is ready, 1 when one is not, 64 for
/// an invalid file.
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

/// Waits for SIGINT (Ctrl-C) or SIGTERM; says which.
async fn wait_for_signal() -> &'static str {
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
