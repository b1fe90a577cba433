//! The `rally-tui` command line.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use rally_tui::cli::agent::AgentArgs;
use rally_tui::cli::run_config::{RunArgs, RunConfig, TaskArgs};
use rally_tui::cli::{db_path, exit, init_tracing};
use rally_tui::cluster::ClusterFile;

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
        Command::Agent(args) => rally_tui::cli::agent::agent(args, cli.db),
        Command::Task(command) => tasks::dispatch(command, &db_path(cli.db)),
        Command::Cluster(ClusterCommand::Check { file }) => cluster_check(&file),
    }
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
