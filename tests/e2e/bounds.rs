//! Bounded memory against any peer (SPEC §6): a real controller with a real agent completes a
//! real run while hostile peers attack its ports, and the controller's peak RSS (VmHWM, read
//! from /proc while it runs) stays under [`RSS_BOUND_KIB`]; the agent survives a hostile
//! "controller" the same way. The attackers speak raw ZMTP 3.0 over TCP, as anyone could.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rally_tui::store::Store;

use crate::support::{HANG, Proc, Scratch, TOKEN};

/// What the README's "Security" section promises the controller stays under during these
/// attacks (its own use for a small run is ~30 MiB; the computed worst case before
/// authentication adds at most 80 MiB, the inbound budget 64 MiB).
const RSS_BOUND_KIB: u64 = 256 * 1024;

/// A run long enough for the attacks to land while it goes on: 1,500 iterations of 4 ms on
/// 2 slots, about 3 s.
const TASK: &str = "version: 2\ntitle: under attack\nsubtasks:\n\
- title: load\n  scenario: {Dummy.dummy: {sleep: 0.004}}\n  runner: {constant: {times: 1500, concurrency: 2}}\n";

fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// CPU seconds (user + system) a process has used so far.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// Samples a process's peak RSS until it exits (VmHWM only grows, so the last sample is
/// the peak).
struct PeakRss {
    peak: Arc<std::sync::atomic::AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl PeakRss {
    fn watch(pid: u32) -> PeakRss {
        let peak = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let (peak, stop) = (peak.clone(), stop.clone());
            move || {
                while !stop.load(Ordering::Relaxed) {
                    match vm_hwm_kib(pid) {
                        Some(kib) => peak.fetch_max(kib, Ordering::Relaxed),
                        None => return,
                    };
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        });
        PeakRss {
            peak,
            stop,
            thread: Some(thread),
        }
    }

    fn kib(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }
}

impl Drop for PeakRss {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------------------
// ZMTP 3.0 by hand (RFC 23): what any program on the network can send.

/// A greeting: signature, version 3.0, the NULL mechanism, as-server 0.
fn greeting() -> Vec<u8> {
    let mut g = vec![0xFF, 0, 0, 0, 0, 0, 0, 0, 0, 0x7F, 3, 0];
    let mut mechanism = b"NULL".to_vec();
    mechanism.resize(20, 0);
    g.extend(mechanism);
    g.push(0);
    g.resize(64, 0);
    g
}

/// A READY command for a DEALER.
fn ready() -> Vec<u8> {
    let mut body = vec![5];
    body.extend(b"READY");
    body.push(11);
    body.extend(b"Socket-Type");
    body.extend(6u32.to_be_bytes());
    body.extend(b"DEALER");
    let mut frame = vec![0x04, body.len() as u8];
    frame.extend(body);
    frame
}

/// A long frame header (message, not command) announcing `length` bytes.
fn long_header(length: u64) -> Vec<u8> {
    let mut h = vec![0x02];
    h.extend(length.to_be_bytes());
    h
}

/// The attacks on one port: each opens its own connection; the streaming ones keep sending
/// until `stop` or until the controller closes the connection.
fn attack(port: u16, stop: Arc<AtomicBool>) -> Vec<JoinHandle<u64>> {
    let claims: Vec<(bool, u64, bool)> = vec![
        // (complete the READY exchange first, claimed length, stream bytes behind it)
        (false, 1 << 62, false),
        (true, 1 << 62, false),
        (false, 8 << 30, true),
        (true, 8 << 30, true),
    ];
    claims
        .into_iter()
        .map(|(handshake, claim, stream)| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
                    return 0;
                };
                let _ = s.set_write_timeout(Some(Duration::from_secs(1)));
                let mut sent = 0u64;
                let mut first = greeting();
                if handshake {
                    first.extend(ready());
                }
                first.extend(long_header(claim));
                if s.write_all(&first).is_err() {
                    return sent;
                }
                if stream {
                    let block = vec![0x5Au8; 64 * 1024];
                    let started = Instant::now();
                    // At most 2 GiB or 10 s: what the original attack pushed in 6 s.
                    while !stop.load(Ordering::Relaxed)
                        && sent < (2 << 30)
                        && started.elapsed() < Duration::from_secs(10)
                    {
                        match s.write(&block) {
                            Ok(n) => sent += n as u64,
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                            Err(_) => break,
                        }
                    }
                }
                sent
            })
        })
        .collect()
}

/// The records of the last task's workloads: (iterations, failed ones, error messages' lengths).
fn stored(s: &Scratch) -> (u64, u64, Vec<usize>) {
    let store = Store::open(&s.db()).expect("store opens");
    let uuid = store.resolve("last").expect("a task is stored");
    let task = store.task(&uuid).expect("the task loads");
    let (mut n, mut failed, mut lengths) = (0, 0, Vec::new());
    for w in &task.workloads {
        store
            .for_each_chunk(&w.uuid, |chunk| {
                for r in &chunk.records {
                    n += 1;
                    if let Some(e) = &r.error {
                        failed += 1;
                        lengths.push(e.message.len());
                    }
                }
            })
            .expect("the stored chunks decode");
    }
    (n, failed, lengths)
}

fn assert_clean_run(s: &Scratch, c: &mut Proc, peak: &PeakRss, iterations: u64) {
    let status = c.wait();
    assert_eq!(status.code(), Some(0), "{}", c.text());
    assert_eq!(stored(s).0, iterations, "{}", c.text());
    eprintln!("controller peak RSS: {} KiB", peak.kib());
    assert!(
        peak.kib() > 0 && peak.kib() < RSS_BOUND_KIB,
        "peak RSS {} KiB (bound {RSS_BOUND_KIB} KiB)\n{}",
        peak.kib(),
        c.text()
    );
}

/// A controller listening for one agent, its peak RSS watched, and the agent it waits for,
/// with the workload under way.
struct UnderLoad {
    scratch: Scratch,
    controller: Proc,
    port: u16,
    peak: PeakRss,
    _agent: Proc,
}

fn under_load(task: &str) -> UnderLoad {
    let scratch = Scratch::new();
    let (mut controller, port) = scratch.listen(task, 1, &[]);
    let peak = PeakRss::watch(controller.pid());
    let agent = scratch.agent(port, "good", TOKEN);
    assert!(
        controller.wait_for_stdout(|o| o.contains("=== Workload 1/1")),
        "{}",
        controller.text()
    );
    UnderLoad {
        scratch,
        controller,
        port,
        peak,
        _agent: agent,
    }
}

#[test]
fn oversized_frame_headers_on_either_port_cost_the_controller_nothing() {
    let UnderLoad {
        scratch: s,
        controller: mut c,
        port,
        peak,
        _agent,
    } = under_load(TASK);
    let stop = Arc::new(AtomicBool::new(false));
    let mut attackers = attack(port, stop.clone());
    attackers.extend(attack(port + 1, stop.clone()));
    let sent: u64 = attackers.into_iter().map(|a| a.join().unwrap_or(0)).sum();
    eprintln!("attackers got {sent} bytes in before being cut off");
    assert_clean_run(&s, &mut c, &peak, 1500);
    let log = c.text();
    assert!(
        log.contains("exceeds the limit"),
        "the refusals are logged:\n{log}"
    );
    assert!(log.contains("127.0.0.1"), "with the peer's address:\n{log}");
}

/// Connections that never say anything, and connections that send a greeting and stall,
/// 1,000 in all, against a controller limited to 1,024 descriptors: the real agent that
/// comes after them registers and runs, and the controller does not spin.
#[test]
fn idle_and_stalled_connections_under_a_small_descriptor_limit_do_not_keep_agents_out() {
    let s = Scratch::new();
    let (mut c, port) = s.listen(TASK, 1, &[]);
    let limited = Command::new(crate::support::tool(&["prlimit"], "util-linux"))
        .args(["--pid", &c.pid().to_string(), "--nofile=1024:1024"])
        .status()
        .expect("prlimit runs");
    assert!(limited.success());
    let peak = PeakRss::watch(c.pid());
    let mut held = Vec::new();
    for i in 0..1000u32 {
        let p = if i % 2 == 0 { port } else { port + 1 };
        if let Ok(mut conn) = TcpStream::connect(("127.0.0.1", p)) {
            if i % 4 < 2 {
                let _ = conn.write_all(&greeting());
            }
            held.push(conn);
        }
    }
    // Random garbage too.
    for _ in 0..20 {
        if let Ok(mut conn) = TcpStream::connect(("127.0.0.1", port)) {
            let junk: Vec<u8> = (0..512).map(|_| fastrand::u8(..)).collect();
            let _ = conn.write_all(&junk);
        }
    }
    let cpu_before = cpu_seconds(c.pid()).expect("controller stat");
    let wall = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    let spent = cpu_seconds(c.pid()).expect("controller stat") - cpu_before;
    let share = spent / wall.elapsed().as_secs_f64();
    eprintln!("controller CPU while only attackers were connected: {share:.2} of a core");
    assert!(
        share < 0.5,
        "the controller spins under a connection flood: {share:.2} of a core\n{}",
        c.text()
    );
    let _agent = s.agent(port, "good", TOKEN);
    assert_clean_run(&s, &mut c, &peak, 1500);
    let log = c.text();
    assert!(
        log.contains("did not authenticate in time")
            || log.contains("too many unauthenticated")
            || log.contains("handshake"),
        "the evictions are logged:\n{log}"
    );
    drop(held);
}

/// An agent that holds the token but sends what no agent sends: a control message over the
/// limit, a chunk nobody asked for, a chunk over the limit. It is cut off; the run goes on.
#[test]
fn an_authenticated_peer_cannot_send_oversized_or_unasked_frames() {
    use rally_tui::distributed::protocol::{Delivery, Register, ToController};
    use rally_tui::distributed::wire::link::Link;
    use rally_tui::transport::token::Token;

    // Longer than the others (about 10 s): the insider's messages take a while to build.
    let UnderLoad {
        scratch: s,
        controller: mut c,
        port,
        peak,
        _agent,
    } = under_load(&TASK.replace("1500", "4000"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let token = Token::from_bytes(TOKEN.as_bytes().to_vec(), "test").expect("token");
        let register = Register {
            name: "insider".into(),
            host: "test".into(),
            cores: 1,
            pid: 1,
            boot: "b".into(),
            cache: format!("{:032x}", 7),
            version: env!("CARGO_PKG_VERSION").into(),
            cached: Vec::new(),
        };
        let endpoint = format!("tcp://127.0.0.1:{port}");
        let link = Link::connect(&endpoint, "insider/b/1", &token, &register)
            .await
            .expect("the right token registers");
        // Each send is given time to leave before the next is built (sealing tens of MB
        // takes seconds in a debug build, and this runtime only runs while awaited).
        let pause = || tokio::time::sleep(Duration::from_millis(300));
        // Unasked results.
        let unasked = Delivery::Chunk {
            id: 424242,
            bytes: vec![1; 1 << 20],
        };
        link.sender.deliver(&unasked).await.expect("sent");
        pause().await;
        // A control message over the limit (8 MiB).
        let failed = ToController::Failed {
            workload: 0,
            error: "x".repeat((8 << 20) + 1),
        };
        let _ = link.sender.send(&failed).await;
        pause().await;
        // A results frame over the limit (32 MiB).
        let huge = Delivery::Chunk {
            id: 1,
            bytes: vec![2; (32 << 20) + 1],
        };
        let _ = link.sender.deliver(&huge).await;
        pause().await;
        drop(link);
    });
    assert_clean_run(&s, &mut c, &peak, 4000);
    let log = c.text();
    assert!(log.contains("not asked for"), "{log}");
    assert!(log.contains("exceeds the limit"), "{log}");
}

/// The agent's side: whatever answers at the controller's address is bounded too. A fake
/// "controller" answers the agent's greeting with a frame header claiming 2^62 bytes, then,
/// on the agent's next attempt, one claiming 8 GiB with bytes streamed behind it. The agent
/// drops each connection, says why, dials again, and its memory stays small.
#[test]
fn an_agent_survives_a_hostile_controller() {
    let s = Scratch::new();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let mut agent = s.agent(port, "target", TOKEN);
    let peak = PeakRss::watch(agent.pid());
    listener.set_nonblocking(false).expect("blocking");
    let deadline = Instant::now() + HANG;
    let mut attempts = 0;
    for claim in [1u64 << 62, 8 << 30] {
        let (mut conn, _) = listener.accept().expect("the agent dials");
        attempts += 1;
        let mut theirs = [0u8; 64];
        let _ = conn.read_exact(&mut theirs);
        let mut answer = greeting();
        answer.extend(ready());
        answer.extend(long_header(claim));
        let _ = conn.write_all(&answer);
        if claim == 8 << 30 {
            let block = vec![0u8; 64 * 1024];
            let started = Instant::now();
            let _ = conn.set_write_timeout(Some(Duration::from_secs(1)));
            while started.elapsed() < Duration::from_secs(3) {
                if conn.write_all(&block).is_err() {
                    break;
                }
            }
        }
        assert!(Instant::now() < deadline);
    }
    // It dials again after both.
    listener.set_nonblocking(true).expect("non-blocking");
    let mut again = false;
    while Instant::now() < deadline && !again {
        again = listener.accept().is_ok();
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(again, "the agent did not dial again\n{}", agent.text());
    assert!(agent.exited().is_none(), "{}", agent.text());
    eprintln!(
        "agent peak RSS after {attempts} hostile answers: {} KiB",
        peak.kib()
    );
    assert!(peak.kib() < 128 * 1024, "{} KiB", peak.kib());
    let said = agent.stderr();
    assert!(said.contains("exceeds the limit"), "{said}");
}

/// Large legitimate results stay legitimate: a chunk is cut by size, so 1 MB error messages
/// go through the transport and are stored whole, as Rally stores them.
#[test]
fn megabyte_error_messages_are_delivered_and_stored_whole() {
    let s = Scratch::new();
    let body = "version: 2\ntitle: big errors\nsubtasks:\n\
- title: e\n  scenario: {Dummy.dummy_exception: {size_of_message: 1000000}}\n  runner: {constant: {times: 60, concurrency: 3}}\n";
    let (status, text) = s.run(body, &["--agents", "2"]);
    // Every iteration fails, so Rally's default SLA (failure_rate max 0) fails: exit 2.
    assert_eq!(status.code(), Some(2), "{text}");
    let (n, failed, lengths) = stored(&s);
    assert_eq!((n, failed), (60, 60), "{text}");
    // Rally's text around the million Ms, whole: nothing truncated.
    assert!(
        lengths.iter().all(|&l| l >= 1_000_000 && l == lengths[0]),
        "{lengths:?}"
    );
}
