//! What the end-to-end tests share: the binary, temp files, child processes, a real nginx.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rally-tui"))
}

/// A `rally-tui` command. Its task database is one file of this test binary's under
/// Cargo's target tmp dir (never the user's); tests that inspect storage pass `--db`.
pub fn rally(args: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.args(args).stdin(Stdio::null()).env(
        "RALLY_TUI_DB",
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e-shared.db"),
    );
    c
}

/// A program the tests run for real (nginx, tmux, sshd, ...): its path, or a panic that says
/// how to get it. Never a silent skip: a missing tool is a failed test. `candidates` are
/// absolute paths or names looked up on PATH, tried in order.
pub fn tool(candidates: &[&str], package: &str) -> PathBuf {
    for c in candidates {
        let p = Path::new(c);
        if p.is_absolute() {
            if p.is_file() {
                return p.to_path_buf();
            }
        } else if let Some(found) = std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|d| d.join(c))
                .find(|f| f.is_file())
        }) {
            return found;
        }
    }
    panic!(
        "{} is missing: scripts/test.sh (the README's test command) installs it, \
         or `apt-get install {package}`",
        candidates.join(" or ")
    )
}

/// Run to completion and capture everything.
pub fn run(args: &[&str]) -> Output {
    rally(args).output().expect("rally-tui runs")
}

/// Writes `body` as `task.yaml` in `dir` and runs it headless to the end, with `extra`
/// arguments after `--no-tui`: its exit code, stdout and stderr.
pub fn run_task(dir: &Path, body: &str, extra: &[&str]) -> (Option<i32>, String, String) {
    let task = write(dir, "task.yaml", body);
    let mut args = vec!["run", task.to_str().expect("utf-8 path"), "--no-tui"];
    args.extend_from_slice(extra);
    let out = run(&args);
    (out.status.code(), stdout(&out), stderr(&out))
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Write `text` to `dir/name` and return the path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write test file");
    p
}

/// A port nobody listens on right now (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `(iterations, failed)` for each workload, from the headless summary lines
/// `TITLE [POS] SCENARIO: N iterations, M failed`.
pub fn workload_counts(out: &str) -> Vec<(u64, u64)> {
    out.lines()
        .filter(|l| l.ends_with(" failed") && l.contains(" iterations, "))
        .filter_map(|l| {
            let tail = l.rsplit(": ").next()?;
            let mut words = tail.split_whitespace();
            let n = words.next()?.parse().ok()?;
            let f = words.nth(1)?.parse().ok()?;
            Some((n, f))
        })
        .collect()
}

/// A child process that is killed when the test ends, pass or fail.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A real nginx on 127.0.0.1, owned by one test: its own port, prefix and config.
pub struct Nginx {
    pub port: u16,
    dir: tempfile::TempDir,
    _child: KillOnDrop,
}

/// How a test's nginx is set up: [`Nginx::with`], then [`NginxConf::start`].
#[derive(Default)]
pub struct NginxConf {
    tls: Option<(PathBuf, PathBuf)>,
    http2: bool,
    server: String,
    keepalive_requests: Option<u64>,
    access_log: bool,
}

impl NginxConf {
    /// TLS with this certificate and key (PEM files).
    pub fn tls(mut self, cert: &Path, key: &Path) -> NginxConf {
        self.tls = Some((cert.to_path_buf(), key.to_path_buf()));
        self
    }

    /// HTTP/2: over TLS with ALPN, or h2c (prior knowledge) without TLS.
    pub fn http2(mut self) -> NginxConf {
        self.http2 = true;
        self
    }

    /// Demand a client certificate signed by `client_ca`.
    pub fn client_ca(mut self, client_ca: &Path) -> NginxConf {
        self.server += &format!(
            "    ssl_verify_client on;\n    ssl_client_certificate {};\n",
            client_ca.display()
        );
        self
    }

    /// Close each connection after this many requests (a GOAWAY with HTTP/2).
    pub fn keepalive_requests(mut self, n: u64) -> NginxConf {
        self.keepalive_requests = Some(n);
        self
    }

    /// Log every request: see [`Nginx::access_log`].
    pub fn access_log(mut self) -> NginxConf {
        self.access_log = true;
        self
    }

    pub fn start(self) -> Nginx {
        let mut listen = String::new();
        let mut tls_conf = String::new();
        if let Some((cert, key)) = &self.tls {
            listen += " ssl";
            tls_conf = format!(
                // nginx 1.22 leaves TLS 1.3 off unless told; clients resume with its
                // tickets, which is the path real services take.
                "    ssl_certificate {};\n    ssl_certificate_key {};\n    ssl_protocols TLSv1.2 TLSv1.3;\n",
                cert.display(),
                key.display()
            );
        }
        if self.http2 {
            listen += " http2";
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().join("html");
        std::fs::create_dir_all(root.join("logs")).expect("dirs");
        std::fs::write(root.join("index.html"), "hello\n").expect("index");
        std::fs::write(root.join("small"), "x".repeat(100)).expect("small");
        std::fs::write(root.join("private"), "secret\n").expect("private");
        std::fs::write(dir.path().join("htpasswd"), "load:{PLAIN}s3cret\n").expect("htpasswd");
        let log = if self.access_log {
            format!(
                "  log_format probe '$server_protocol $ssl_session_reused $connection $connection_requests $status';\n  \
                 access_log {}/access.log probe;\n",
                dir.path().display()
            )
        } else {
            "  access_log off;\n".to_string()
        };
        for attempt in 0..5 {
            let port = free_port();
            let conf = format!(
                "daemon off;\nmaster_process off;\nworker_processes 1;\npid {dir}/nginx.pid;\nerror_log {dir}/error.log;\n\
                 events {{ worker_connections 1024; }}\n\
                 http {{\n{log}  client_body_temp_path {dir}/body;\n  proxy_temp_path {dir}/proxy;\n\
                   fastcgi_temp_path {dir}/fastcgi;\n  uwsgi_temp_path {dir}/uwsgi;\n  scgi_temp_path {dir}/scgi;\n\
                   keepalive_requests {keepalive};\n\
                   server {{\n    listen 127.0.0.1:{port}{listen};\n{tls_conf}{server}    root {root};\n\
                     location = /redirect {{ return 301 /small; }}\n\
                     location = /private {{ auth_basic rally; auth_basic_user_file {dir}/htpasswd; }}\n\
                   }}\n}}\n",
                dir = dir.path().display(),
                root = root.display(),
                server = self.server,
                keepalive = self.keepalive_requests.unwrap_or(1_000_000),
            );
            let conf_path = dir.path().join("nginx.conf");
            std::fs::write(&conf_path, conf).expect("nginx.conf");
            let child = Command::new(nginx_binary())
                .args([
                    "-c",
                    conf_path.to_str().expect("utf-8 path"),
                    "-p",
                    dir.path().to_str().expect("utf-8 path"),
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("nginx starts");
            let child = KillOnDrop(child);
            if wait_for_port(port, Duration::from_secs(5)) {
                return Nginx {
                    port,
                    dir,
                    _child: child,
                };
            }
            eprintln!("nginx did not come up on port {port} (attempt {attempt})");
        }
        panic!("nginx would not start");
    }
}

/// One request as nginx logged it ([`NginxConf::access_log`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Logged {
    /// `HTTP/1.1` or `HTTP/2.0`.
    pub protocol: String,
    /// The TLS session was resumed (`$ssl_session_reused` = `r`).
    pub resumed: bool,
    /// nginx's connection serial number.
    pub connection: u64,
    pub status: u16,
}

impl Nginx {
    /// Serves `/` and `/small` (200, 100 bytes), `/missing` (404), `/redirect` (301 to
    /// `/small`) and `/private` (HTTP Basic: user `load`, password `s3cret`).
    pub fn start() -> Nginx {
        Nginx::with().start()
    }

    /// The same, set up otherwise.
    pub fn with() -> NginxConf {
        NginxConf::default()
    }

    /// The same over TLS, with this certificate and key (PEM files).
    pub fn start_tls(cert: &Path, key: &Path) -> Nginx {
        Nginx::with().tls(cert, key).start()
    }

    /// Over TLS, demanding a client certificate signed by `client_ca`.
    pub fn start_mtls(cert: &Path, key: &Path, client_ca: &Path) -> Nginx {
        Nginx::with().tls(cert, key).client_ca(client_ca).start()
    }

    /// The requests logged so far (nginx writes each line as the request ends).
    pub fn access_log(&self) -> Vec<Logged> {
        let text = std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default();
        text.lines()
            .map(|line| {
                let f: Vec<&str> = line.split(' ').collect();
                assert_eq!(f.len(), 5, "access log line: {line}");
                Logged {
                    protocol: f[0].to_string(),
                    resumed: f[1] == "r",
                    connection: f[2].parse().expect("connection number"),
                    status: f[4].parse().expect("status"),
                }
            })
            .collect()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

fn nginx_binary() -> PathBuf {
    tool(&["/usr/sbin/nginx", "nginx"], "nginx-light")
}

/// Wait until something accepts connections on the port.
pub fn wait_for_port(port: u16, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// A port `P` such that `P` and `P + 1` are both free right now (bound, then released): for
/// a controller's `--listen tcp://127.0.0.1:P`, whose results channel takes `P + 1`.
pub fn free_port_pair() -> u16 {
    for _ in 0..200 {
        let Ok(first) = TcpListener::bind("127.0.0.1:0") else {
            continue;
        };
        let Ok(port) = first.local_addr().map(|a| a.port()) else {
            continue;
        };
        if port < u16::MAX && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
    panic!("no two consecutive free ports");
}

/// Whether some socket listens on the TCP port, from /proc/net/tcp{,6}: it looks without
/// connecting, so the listener never sees a stray connection.
pub fn listening(port: u16) -> bool {
    let suffix = format!(":{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|table| {
        std::fs::read_to_string(table).is_ok_and(|text| {
            text.lines().skip(1).any(|line| {
                let cols: Vec<&str> = line.split_whitespace().collect();
                // sl local_address rem_address st ...; st 0A is LISTEN.
                cols.len() > 3 && cols[1].ends_with(&suffix) && cols[3] == "0A"
            })
        })
    })
}

// ---------------------------------------------------------------------------------------
// Processes that print as they run, and one test's scratch directory

/// A guard against hangs, not a timing assertion: no process here should take this long.
pub const HANG: Duration = Duration::from_secs(90);

/// The token the hand-started agents and their controller share (>= 16 bytes).
pub const TOKEN: &str = "e2e-distributed-token-5f0c2a9d41b7";

pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------------------
// Processes

/// A child process whose stdout and stderr are collected as they come.
pub struct Proc {
    pub name: String,
    pub child: KillOnDrop,
    out: Arc<Mutex<String>>,
    err: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
    status: Option<ExitStatus>,
}

fn pump(from: impl Read + Send + 'static, into: Arc<Mutex<String>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(from);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => lock(&into).push_str(&String::from_utf8_lossy(&line)),
            }
        }
    })
}

impl Proc {
    pub fn spawn(name: &str, mut command: Command) -> Proc {
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command.spawn().expect("rally-tui starts");
        let out = Arc::new(Mutex::new(String::new()));
        let err = Arc::new(Mutex::new(String::new()));
        let readers = vec![
            pump(child.stdout.take().expect("piped stdout"), out.clone()),
            pump(child.stderr.take().expect("piped stderr"), err.clone()),
        ];
        Proc {
            name: name.to_string(),
            child: KillOnDrop(child),
            out,
            err,
            readers,
            status: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.0.id()
    }

    pub fn stdout(&self) -> String {
        lock(&self.out).clone()
    }

    pub fn stderr(&self) -> String {
        lock(&self.err).clone()
    }

    /// Everything it printed, for failure messages.
    pub fn text(&self) -> String {
        format!(
            "--- {} stdout:\n{}\n--- {} stderr:\n{}",
            self.name,
            self.stdout(),
            self.name,
            self.stderr()
        )
    }

    /// Has it exited (reaped now if so)?
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.0.try_wait().expect("try_wait");
        }
        self.status
    }

    /// Waits until the headless progress lines count at least `n` iterations of the current
    /// workload (merged from every agent's report); false as [`Proc::wait_for_stdout`].
    pub fn wait_for_iterations(&mut self, n: u64) -> bool {
        self.wait_for_stdout(|o| progress_iterations(o).is_some_and(|done| done >= n))
    }

    /// Waits until its stdout satisfies `check`; false if it exits first or the hang guard
    /// fires.
    pub fn wait_for_stdout(&mut self, check: impl Fn(&str) -> bool) -> bool {
        let deadline = Instant::now() + HANG;
        while Instant::now() < deadline {
            if check(&self.stdout()) {
                return true;
            }
            if self.exited().is_some() {
                self.drain();
                return check(&self.stdout());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    /// Lets the readers reach the end of the pipes (bounded: a grandchild could hold them).
    pub fn drain(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && self.readers.iter().any(|r| !r.is_finished()) {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for it to exit (panics, with its output, after the hang guard).
    pub fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + HANG;
        loop {
            if let Some(status) = self.exited() {
                self.drain();
                return status;
            }
            if Instant::now() > deadline {
                panic!(
                    "{} did not exit within {HANG:?}\n{}",
                    self.name,
                    self.text()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `kill -SIG pid`.
    pub fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .args([signal, &self.pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "kill {signal} {}", self.pid());
    }

    /// SIGKILL, and reap it; returns when the signal was sent.
    pub fn kill9(&mut self) -> Instant {
        self.child.0.kill().expect("SIGKILL");
        let sent = Instant::now();
        self.status = Some(self.child.0.wait().expect("reaped"));
        self.drain();
        sent
    }
}

/// The iterations done so far, as the last headless progress line says
/// (`[    2.0s] 1234/3000 iterations | …`).
pub fn progress_iterations(out: &str) -> Option<u64> {
    out.lines().rev().find_map(|line| {
        let rest = line.strip_prefix('[')?.split_once("s] ")?.1;
        let (done, rest) = rest.split_once(' ')?;
        rest.starts_with("iterations |").then_some(())?;
        done.split('/').next()?.parse().ok()
    })
}

/// `rally-tui --db DB ARGS…`.
pub fn rally_db(db: &Path, args: &[&str]) -> Command {
    let mut all = vec!["--db", db.to_str().expect("utf-8 path")];
    all.extend_from_slice(args);
    rally(&all)
}

/// One test's directory: the task file and the task database.
pub struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn db(&self) -> PathBuf {
        self.path().join("tasks.db")
    }

    pub fn task(&self, body: &str) -> String {
        write(self.path(), "task.yaml", body)
            .to_str()
            .expect("utf-8 path")
            .to_string()
    }

    /// The token in a 0600 file, for the controller's `--token-file`.
    pub fn token_file(&self) -> String {
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.path().join("token");
        if path.is_file() {
            return path.to_str().expect("utf-8 path").to_string();
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .expect("token file");
        f.write_all(TOKEN.as_bytes()).expect("token written");
        path.to_str().expect("utf-8 path").to_string()
    }

    /// `run TASK --no-tui ARGS…` to the end.
    pub fn run(&self, body: &str, args: &[&str]) -> (ExitStatus, String) {
        let task = self.task(body);
        let mut all = vec!["run", task.as_str(), "--no-tui"];
        all.extend_from_slice(args);
        let mut p = Proc::spawn("controller", rally_db(&self.db(), &all));
        let status = p.wait();
        (status, p.text())
    }

    /// `rally-tui task ARGS…` on this test's database.
    pub fn task_command(&self, args: &[&str]) -> std::process::Output {
        let mut all = vec!["task"];
        all.extend_from_slice(args);
        rally_db(&self.db(), &all)
            .output()
            .expect("rally-tui task runs")
    }

    /// A controller waiting with `--listen` for `agents` hand-started agents; returns it
    /// with its control port once both its ports listen.
    pub fn listen(&self, body: &str, agents: u32, args: &[&str]) -> (Proc, u16) {
        self.listen_on("127.0.0.1", body, agents, args)
    }

    /// The same on another local address (e.g. a veth end of a test's network namespace).
    pub fn listen_on(&self, host: &str, body: &str, agents: u32, args: &[&str]) -> (Proc, u16) {
        for _ in 0..5 {
            let port = free_port_pair();
            if let Some(p) = self.listen_at(host, port, body, agents, args) {
                return (p, port);
            }
        }
        panic!("the controller never listened");
    }

    /// A controller listening on `host:port` (results on `port + 1`), once both listen;
    /// `None` if it exits first (the port was taken).
    pub fn listen_at(
        &self,
        host: &str,
        port: u16,
        body: &str,
        agents: u32,
        args: &[&str],
    ) -> Option<Proc> {
        let task = self.task(body);
        let token = self.token_file();
        let agents = agents.to_string();
        {
            let endpoint = format!("tcp://{host}:{port}");
            let mut all = vec![
                "run",
                task.as_str(),
                "--no-tui",
                "--agents",
                agents.as_str(),
                "--listen",
                endpoint.as_str(),
                "--token-file",
                token.as_str(),
                "--agent-wait",
                "60",
            ];
            all.extend_from_slice(args);
            let mut p = Proc::spawn("controller", rally_db(&self.db(), &all));
            let deadline = Instant::now() + HANG;
            while Instant::now() < deadline {
                if listening(port) && listening(port + 1) {
                    return Some(p);
                }
                if p.exited().is_some() {
                    // Someone took one of the ports meanwhile.
                    p.drain();
                    eprintln!("controller did not listen on {port}:\n{}", p.text());
                    return None;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        panic!("the controller never listened on {port}");
    }

    /// A hand-started agent dialling `port` with `token` in its environment, its cache in
    /// `cache/NAME`.
    pub fn agent(&self, port: u16, name: &str, token: &str) -> Proc {
        self.agent_with_cache(port, name, token, name)
    }

    /// The same, with its cache in `cache/CACHE` (two agents under one name need two).
    pub fn agent_with_cache(&self, port: u16, name: &str, token: &str, cache: &str) -> Proc {
        let mut c = self.agent_command(Command::new(bin()), "127.0.0.1", port, name, cache);
        c.env("RALLY_TUI_TOKEN", token);
        Proc::spawn(name, c)
    }

    /// `program … agent --connect tcp://HOST:PORT --name NAME --cache-dir cache/CACHE`:
    /// `program` is the binary, or a wrapper that ends by running it (`ip netns exec NS`).
    pub fn agent_command(
        &self,
        mut program: Command,
        host: &str,
        port: u16,
        name: &str,
        cache: &str,
    ) -> Command {
        let cache = self.path().join("cache").join(cache);
        program
            .args([
                "agent",
                "--connect",
                &format!("tcp://{host}:{port}"),
                "--name",
                name,
                "--cache-dir",
                cache.to_str().expect("utf-8 path"),
            ])
            .stdin(Stdio::null())
            .env(
                "RALLY_TUI_DB",
                Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e-shared.db"),
            );
        program
    }
}

/// A real HTTP proxy (Debian's tinyproxy) on 127.0.0.1, owned by one test, asking for
/// `load`/`s3cret` (Basic). Its log lists each request it forwarded and each tunnel.
pub struct Tinyproxy {
    pub port: u16,
    dir: tempfile::TempDir,
    _child: KillOnDrop,
}

impl Tinyproxy {
    pub fn start() -> Tinyproxy {
        let binary = tool(&["/usr/bin/tinyproxy", "tinyproxy"], "tinyproxy-bin");
        let dir = tempfile::tempdir().expect("temp dir");
        for attempt in 0..5 {
            let port = free_port();
            let conf = format!(
                "Port {port}\nListen 127.0.0.1\nTimeout 60\nLogFile \"{log}\"\nLogLevel Connect\n\
                 MaxClients 200\nAllow 127.0.0.1\nBasicAuth load s3cret\n",
                log = dir.path().join("proxy.log").display()
            );
            let conf_path = dir.path().join("tinyproxy.conf");
            std::fs::write(&conf_path, conf).expect("tinyproxy.conf");
            let child = Command::new(&binary)
                .args(["-d", "-c", conf_path.to_str().expect("utf-8 path")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("tinyproxy starts");
            let child = KillOnDrop(child);
            if wait_for_port(port, Duration::from_secs(5)) {
                return Tinyproxy {
                    port,
                    dir,
                    _child: child,
                };
            }
            eprintln!("tinyproxy did not come up on port {port} (attempt {attempt})");
        }
        panic!("tinyproxy would not start");
    }

    /// The proxy's URL, with its credentials.
    pub fn url(&self) -> String {
        format!("http://load:s3cret@127.0.0.1:{}", self.port)
    }

    /// The request lines it received (`GET http://…/small HTTP/1.1`, `CONNECT host:port
    /// HTTP/1.1`), in order.
    pub fn requests(&self) -> Vec<String> {
        let log = std::fs::read_to_string(self.dir.path().join("proxy.log")).unwrap_or_default();
        log.lines()
            .filter_map(|l| l.split_once("): "))
            .filter(|(head, _)| head.contains("Request (file descriptor"))
            .map(|(_, rest)| rest.to_string())
            .collect()
    }
}
