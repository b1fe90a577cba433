//! Many simulated agents in one process, to measure the controller with thousands of agents
//! on one machine (benches/distributed.sh; SPEC §10: 1,000 and 5,000 agents).
//!
//! Not a product mode: each "simulated" agent is the library's real agent
//! ([`rally_tui::distributed::agent::run_agent`]) with its own chunk cache, its own two
//! ZeroMQ connections, its own sealed session and its own registration, so the controller sees
//! exactly what N `rally-tui agent` processes would send it. Only the process is shared: N
//! agent processes would need N runtimes and N times the memory, which this 2-core machine
//! does not have for 5,000 of them.
//!
//! Registration is paced (`--pace` agents per second, default 200): the controller keeps at
//! most 32 unauthenticated connections per address (`transport::bounds::WAITING_PER_ADDRESS`)
//! and all of these come from 127.0.0.1; each agent opens two connections and needs a few
//! milliseconds to authenticate, so an unpaced burst of thousands would be evicted (and
//! retried with back-off) rather than admitted. The caps themselves are left as they are.
//!
//! Several of these processes can share one controller (`--first`: the first agent's number,
//! so that K processes of N/K agents each have distinct names `simFIRST`..): one process holds
//! 4 descriptors per agent (2 sockets, its cache's lock and directory), and a usual hard limit
//! of 20,000 open files per process stops one process short of 5,000 agents. Each process
//! raises its soft limit to the hard limit, as the product's binary does.
//!
//!   sim_agents --connect tcp://127.0.0.1:PORT --token-file FILE --agents N --cache-dir DIR
//!              [--first NUMBER] [--pace PER_SECOND] [--give-up-after SECONDS] [--threads N]
//!
//! `--threads 0` runs every agent on the calling thread (tokio's current-thread runtime: no
//! hand-over between the thread that drives the timers and sockets and a worker).
//!
//! Exits when every agent has ended (the controller shut them down, or they gave up).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use rally_tui::distributed::agent::{AgentExit, AgentOptions, run_agent};
use rally_tui::transport::token::Token;
use tokio_util::sync::CancellationToken;

/// What the command line says.
struct Args {
    connect: String,
    token_file: PathBuf,
    agents: usize,
    first: usize,
    cache_dir: PathBuf,
    pace: f64,
    give_up_after: f64,
    threads: usize,
}

fn parse() -> Result<Args, String> {
    let mut connect = None;
    let mut token_file = None;
    let mut agents = None;
    let mut first = 1;
    let mut cache_dir = None;
    let mut pace = 200.0;
    let mut give_up_after = 10.0;
    let mut threads = 2;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        // `cargo bench` passes --bench to every bench target.
        if flag == "--bench" {
            continue;
        }
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let number = |v: &str| v.parse::<f64>().map_err(|e| format!("{flag} {v}: {e}"));
        match flag.as_str() {
            "--connect" => connect = Some(value),
            "--token-file" => token_file = Some(PathBuf::from(value)),
            "--agents" => agents = Some(number(&value)? as usize),
            "--first" => first = number(&value)? as usize,
            "--cache-dir" => cache_dir = Some(PathBuf::from(value)),
            "--pace" => pace = number(&value)?.max(1.0),
            "--give-up-after" => give_up_after = number(&value)?,
            "--threads" => threads = number(&value)? as usize,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(Args {
        connect: connect.ok_or("--connect is required")?,
        token_file: token_file.ok_or("--token-file is required")?,
        agents: agents.ok_or("--agents is required")?,
        first,
        cache_dir: cache_dir.ok_or("--cache-dir is required")?,
        pace,
        give_up_after,
        threads,
    })
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("sim_agents: {e}");
            return ExitCode::from(64);
        }
    };
    let token = match Token::load(Some(&args.token_file)) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("sim_agents: {e}");
            return ExitCode::from(64);
        }
    };
    raise_open_files_limit();
    let runtime = if args.threads == 0 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sim_agents: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let failed = runtime.block_on(run(args, token));
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Raises the open-files soft limit to the hard limit (4 descriptors per simulated agent);
/// when that is not allowed the limit stays and the agents past it fail with EMFILE.
fn raise_open_files_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, limit) {
            eprintln!("sim_agents: cannot raise the open-files limit: {e}");
        }
    }
}

/// Starts the agents at the pace asked for and waits for all of them; returns how many
/// ended with an error.
async fn run(args: Args, token: Token) -> usize {
    let interrupt = CancellationToken::new();
    let on_signal = interrupt.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        on_signal.cancel();
    });
    let mut tasks = tokio::task::JoinSet::new();
    let gap = Duration::from_secs_f64(1.0 / args.pace);
    let mut next = tokio::time::Instant::now();
    for i in args.first..args.first + args.agents {
        let options = AgentOptions {
            connect: args.connect.clone(),
            name: format!("sim{i}"),
            cache_dir: args.cache_dir.join(format!("sim{i}")),
            give_up_after: Some(Duration::from_secs_f64(args.give_up_after)),
        };
        tasks.spawn(run_agent(options, token.clone(), interrupt.clone()));
        next += gap;
        tokio::time::sleep_until(next).await;
    }
    let mut failed = 0;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(AgentExit::Shutdown | AgentExit::Interrupted)) => {}
            Ok(Err(e)) => {
                failed += 1;
                if failed <= 5 {
                    eprintln!("sim_agents: an agent ended with: {e}");
                }
            }
            Err(e) => {
                failed += 1;
                eprintln!("sim_agents: an agent task failed: {e}");
            }
        }
    }
    if failed > 0 {
        eprintln!("sim_agents: {failed} of {} agents failed", args.agents);
    }
    failed
}
