//! Talking to a host through the system `ssh` client, so the user's keys, agent,
//! `~/.ssh/config`, jump hosts and known hosts all apply, with `BatchMode=yes` so nothing
//! ever waits for a password or a host-key prompt.
//!
//! Every remote command is a POSIX `sh -c` script whose words are quoted here: the user's
//! login shell (which may not be POSIX) only ever sees one quoted argument. Secrets never
//! appear in a command: the token travels on ssh's standard input.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use sha2::Digest;
use tokio::io::AsyncReadExt;
use tokio::process::Command;

use super::file::HostSpec;

/// Options that always apply. `BatchMode` comes first: ssh keeps the first value it gets
/// for an option, so no `ssh_options` entry can turn prompting back on.
const FIRST_OPTIONS: &[&str] = &["BatchMode=yes"];
/// Defaults a host's `ssh_options` (or the user's config) can override: give up on a dead
/// host in seconds, and notice a broken connection while the run goes on.
const DEFAULT_OPTIONS: &[&str] = &[
    "ConnectTimeout=15",
    "ServerAliveInterval=5",
    "ServerAliveCountMax=3",
];
/// ssh's own exit status for its failures (connection, authentication...).
pub const SSH_FAILED: i32 = 255;

/// An `ssh` command that runs `script` with `sh` on the host.
pub fn command(host: &HostSpec, script: &str) -> Command {
    let mut c = Command::new("ssh");
    c.args(ssh_args(host, script));
    c
}

/// The arguments of [`command`], for tests and messages.
pub fn ssh_args(host: &HostSpec, script: &str) -> Vec<String> {
    let mut args = Vec::new();
    for o in FIRST_OPTIONS
        .iter()
        .map(|s| s.to_string())
        .chain(host.ssh_options.iter().cloned())
        .chain(DEFAULT_OPTIONS.iter().map(|s| s.to_string()))
    {
        args.push("-o".to_string());
        args.push(o);
    }
    if let Some(p) = host.port {
        args.push("-p".into());
        args.push(p.to_string());
    }
    if let Some(i) = &host.identity_file {
        args.push("-i".into());
        args.push(i.display().to_string());
    }
    if let Some(u) = &host.user {
        args.push("-l".into());
        args.push(u.clone());
    }
    args.push("--".into());
    args.push(host.host.clone());
    args.push(format!("sh -c {}", quote(script)));
    args
}

/// One shell word.
pub fn quote(word: &str) -> String {
    match shlex::try_quote(word) {
        Ok(q) => q.into_owned(),
        // Only a NUL byte is refused, and the cluster file rejects those; drop it anyway
        // rather than build a broken command.
        Err(_) => quote(&word.replace('\0', "")),
    }
}

/// A remote path as a shell word: a leading `~/` becomes `"$HOME"/`, the rest is quoted.
pub fn path_word(path: &str) -> String {
    if path == "~" {
        return "\"$HOME\"".into();
    }
    match path.strip_prefix("~/") {
        Some("") => "\"$HOME\"/".into(),
        Some(rest) => format!("\"$HOME\"/{}", quote(rest)),
        None => quote(path),
    }
}

/// What a one-shot ssh command left.
#[derive(Debug)]
pub struct Outcome {
    /// The remote command's exit status, or [`SSH_FAILED`] when ssh itself failed; `None`
    /// when killed by a signal or timed out.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }

    /// Why it failed, in ssh's (or the remote command's) own words.
    pub fn reason(&self) -> String {
        let text = stderr_reason(&self.stderr);
        match (text.is_empty(), self.code) {
            (false, _) => text,
            (true, Some(SSH_FAILED)) => "ssh failed (exit status 255) without a message".into(),
            (true, Some(c)) => format!("exit status {c}"),
            (true, None) => "no answer (timed out or killed)".into(),
        }
    }
}

/// The lines of an ssh session's stderr that explain a failure: ssh's notes about adding
/// a host key are left out; at most the last few lines.
pub fn stderr_reason(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("Warning: Permanently added"))
        .collect();
    let start = lines.len().saturating_sub(4);
    lines[start..].join(" / ")
}

/// Runs `script` on the host, feeding it `input` (a local file) on stdin, and waits at most
/// `limit`.
pub async fn run(
    host: &HostSpec,
    script: &str,
    input: Option<&Path>,
    limit: Duration,
) -> std::io::Result<Outcome> {
    let mut child = command(host, script)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot run ssh: {e}")))?;
    let feed = match (input, child.stdin.take()) {
        (Some(path), Some(mut stdin)) => {
            let path = path.to_path_buf();
            Some(tokio::spawn(async move {
                let mut file = tokio::fs::File::open(&path).await?;
                tokio::io::copy(&mut file, &mut stdin).await?;
                drop(stdin);
                Ok::<_, std::io::Error>(())
            }))
        }
        _ => None,
    };
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let collect = async {
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        let read_out = async {
            if let Some(o) = out.as_mut() {
                let _ = o.read_to_end(&mut stdout).await;
            }
        };
        let read_err = async {
            if let Some(e) = err.as_mut() {
                let _ = e.read_to_end(&mut stderr).await;
            }
        };
        tokio::join!(read_out, read_err);
        let status = child.wait().await;
        (status, stdout, stderr)
    };
    let outcome = match tokio::time::timeout(limit, collect).await {
        Ok((status, stdout, stderr)) => Outcome {
            code: status?.code(),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        },
        Err(_) => Outcome {
            code: None,
            stdout: String::new(),
            stderr: format!("no answer within {}s", limit.as_secs()),
        },
    };
    if let Some(feed) = feed
        && outcome.ok()
        && let Ok(Err(e)) = feed.await
    {
        return Err(std::io::Error::new(
            e.kind(),
            format!("cannot send the binary: {e}"),
        ));
    }
    Ok(outcome)
}

/// This controller's executable, as copied to hosts with `copy_binary`.
#[derive(Debug, Clone)]
pub struct LocalBinary {
    pub path: PathBuf,
    pub version: &'static str,
    /// SHA-256 of the file, hex.
    pub sha256: String,
    pub size: u64,
}

impl LocalBinary {
    /// Hashes the running executable (blocking: call it off the async threads).
    pub fn current() -> std::io::Result<LocalBinary> {
        let path = std::env::current_exe()?;
        let mut file = std::fs::File::open(&path)?;
        let mut hasher = sha2::Sha256::new();
        let size = std::io::copy(&mut file, &mut hasher)?;
        let sha256 = crate::transport::token::hex(&hasher.finalize());
        Ok(LocalBinary {
            path,
            version: env!("CARGO_PKG_VERSION"),
            sha256,
            size,
        })
    }

    /// Where it lives on a host: one directory per version and content, so a host keeps
    /// what it has until the binary changes, and two builds never mix.
    pub fn remote_path(&self, cache_dir: &str) -> String {
        format!(
            "{}/bin/{}-{}/rally-tui",
            cache_dir.trim_end_matches('/'),
            self.version,
            &self.sha256[..16.min(self.sha256.len())]
        )
    }
}

/// `uname -sm` of a host against this binary's platform: `Err` says why it cannot run it.
pub fn same_platform(uname: &str) -> Result<(), String> {
    let mut words = uname.split_whitespace();
    let (Some(os), Some(machine)) = (words.next(), words.next()) else {
        return Err(format!(
            "cannot tell the host's platform from `uname -sm`: '{uname}'"
        ));
    };
    let os = match os {
        "Darwin" => "macos".to_string(),
        other => other.to_ascii_lowercase(),
    };
    let arch = match machine {
        "amd64" | "x86_64" => "x86_64",
        "arm64" | "aarch64" => "aarch64",
        "i386" | "i486" | "i586" | "i686" => "x86",
        m if m.starts_with("armv") => "arm",
        m => m,
    };
    if os == std::env::consts::OS && arch == std::env::consts::ARCH {
        Ok(())
    } else {
        Err(format!(
            "the host is {} {machine}, this rally-tui is built for {} {}: build one for the \
             host and give its remote_path instead of copy_binary",
            words_or(uname, 0),
            std::env::consts::OS,
            std::env::consts::ARCH
        ))
    }
}

fn words_or(text: &str, i: usize) -> &str {
    text.split_whitespace().nth(i).unwrap_or(text)
}

/// Makes sure the host has this binary under its cache dir: checks the platform, and
/// copies the file only when that version and hash are not there yet (written under a
/// temporary name and renamed, so a half-copied file is never taken for a whole one).
/// Returns the remote path, and whether it was copied now.
pub async fn ensure_binary(
    host: &HostSpec,
    binary: &LocalBinary,
) -> Result<(String, bool), String> {
    let target = binary.remote_path(&host.cache_dir);
    let word = path_word(&target);
    let probe = format!("uname -sm; if [ -x {word} ]; then echo present; else echo absent; fi");
    let out = run(host, &probe, None, Duration::from_secs(60))
        .await
        .map_err(|e| e.to_string())?;
    if !out.ok() {
        return Err(out.reason());
    }
    let mut lines = out.stdout.lines().map(str::trim);
    let uname = lines.next().unwrap_or("");
    same_platform(uname)?;
    if lines.next() == Some("present") {
        return Ok((target, false));
    }
    let dir = target.rsplit_once('/').map_or(".", |(d, _)| d);
    let dir = path_word(dir);
    let copy = format!(
        "umask 022 && mkdir -p {dir} && t={dir}/.rally-tui.$$ && cat > \"$t\" && chmod 755 \"$t\" \
         && mv -f \"$t\" {word} || {{ rm -f \"$t\"; exit 1; }}"
    );
    let out = run(
        host,
        &copy,
        Some(&binary.path),
        Duration::from_secs(30 + binary.size / 1_000_000),
    )
    .await
    .map_err(|e| e.to_string())?;
    if !out.ok() {
        return Err(format!("copying rally-tui failed: {}", out.reason()));
    }
    Ok((target, true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::file::{Binary, ClusterFile};

    fn host(yaml: &str) -> HostSpec {
        let text = format!("listen: tcp://127.0.0.1:1\nhosts:\n  - {yaml}\n");
        ClusterFile::parse(Path::new("c.yaml"), &text)
            .unwrap()
            .hosts
            .remove(0)
    }

    #[test]
    fn ssh_arguments() {
        let h = host(
            "{host: h.example, user: me, port: 2222, ssh_options: [BatchMode=no, 'ProxyJump bastion']}",
        );
        let args = ssh_args(&h, "echo 'hi there'");
        assert_eq!(
            args,
            [
                "-o",
                "BatchMode=yes",
                "-o",
                "BatchMode=no",
                "-o",
                "ProxyJump bastion",
                "-o",
                "ConnectTimeout=15",
                "-o",
                "ServerAliveInterval=5",
                "-o",
                "ServerAliveCountMax=3",
                "-p",
                "2222",
                "-l",
                "me",
                "--",
                "h.example",
                "sh -c \"echo 'hi there'\"",
            ]
        );
        assert_eq!(h.binary, Binary::Remote("rally-tui".into()));
    }

    #[test]
    fn remote_paths_expand_home_only() {
        assert_eq!(path_word("~/.cache/x y"), "\"$HOME\"/'.cache/x y'");
        assert_eq!(path_word("/opt/rally-tui"), "/opt/rally-tui");
        assert_eq!(path_word("/a b/$x"), "'/a b/$x'");
        assert_eq!(path_word("~"), "\"$HOME\"");
    }

    #[test]
    fn quoted_scripts_survive_a_shell() {
        let script = "printf '%s\\n' \"$HOME\" 'it'\"'\"'s'";
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("sh -c {}", quote(script)))
            .env("HOME", "/h")
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "/h\nit's\n");
    }

    #[test]
    fn platforms() {
        let here = format!(
            "{} {}",
            match std::env::consts::OS {
                "linux" => "Linux",
                "macos" => "Darwin",
                o => o,
            },
            std::env::consts::ARCH
        );
        assert_eq!(same_platform(&here), Ok(()));
        let e = same_platform("SunOS sparc64").unwrap_err();
        assert!(e.contains("the host is SunOS sparc64"), "{e}");
        assert!(same_platform("").is_err());
    }

    #[test]
    fn reasons_skip_host_key_notes() {
        let o = Outcome {
            code: Some(255),
            stdout: String::new(),
            stderr: "Warning: Permanently added 'h' (ED25519) to the list of known hosts.\r\n\
                     me@h: Permission denied (publickey).\n"
                .into(),
        };
        assert_eq!(o.reason(), "me@h: Permission denied (publickey).");
        let o = Outcome {
            code: Some(255),
            stdout: String::new(),
            stderr: String::new(),
        };
        assert!(o.reason().contains("255"));
    }

    #[test]
    fn binary_paths_are_per_version_and_hash() {
        let b = LocalBinary {
            path: PathBuf::from("/x"),
            version: "1.2.3",
            sha256: "ab".repeat(32),
            size: 1,
        };
        assert_eq!(
            b.remote_path("~/.cache/rally-tui/"),
            "~/.cache/rally-tui/bin/1.2.3-abababababababab/rally-tui"
        );
    }
}
