//! `rally-tui cluster check`: a dry run that reaches every host the way a run would and
//! says, per host, whether its agents could start: ssh works, the platform fits, the
//! binary is there (or will be copied) and is this controller's version.

use std::sync::Arc;
use std::time::Duration;

use super::file::{Binary, ClusterFile, HostSpec};
use super::ssh::{self, LocalBinary, path_word};

/// One host's verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct HostCheck {
    pub host: String,
    pub ok: bool,
    /// `uname -sm`, when the host answered.
    pub arch: String,
    /// The remote `rally-tui --version`, when there is one.
    pub version: String,
    pub message: String,
}

/// Checks every host at once.
pub async fn check_hosts(file: &ClusterFile) -> Vec<HostCheck> {
    let binary = if file.hosts.iter().any(|h| h.binary == Binary::Copy) {
        match tokio::task::spawn_blocking(LocalBinary::current).await {
            Ok(Ok(b)) => Some(Arc::new(b)),
            _ => None,
        }
    } else {
        None
    };
    let checks = file
        .hosts
        .iter()
        .map(|host| check_host(host, binary.clone()));
    futures::future::join_all(checks).await
}

fn ours() -> String {
    format!("rally-tui {}", env!("CARGO_PKG_VERSION"))
}

async fn check_host(host: &HostSpec, binary: Option<Arc<LocalBinary>>) -> HostCheck {
    let mut result = HostCheck {
        host: host.name.clone(),
        ok: false,
        arch: String::new(),
        version: String::new(),
        message: String::new(),
    };
    let path = match (&host.binary, &binary) {
        (Binary::Remote(p), _) => p.clone(),
        (Binary::Copy, Some(b)) => b.remote_path(&host.cache_dir),
        (Binary::Copy, None) => {
            result.message = "cannot read this rally-tui to copy it".into();
            return result;
        }
    };
    let bin = path_word(&path);
    let script = format!(
        "printf 'uname: %s\\n' \"$(uname -sm)\"; if command -v {bin} >/dev/null 2>&1; then \
         printf 'version: %s\\n' \"$({bin} --version 2>&1 | head -n 1)\"; else echo missing; fi"
    );
    let out = match ssh::run(host, &script, None, Duration::from_secs(60)).await {
        Ok(out) => out,
        Err(e) => {
            result.message = e.to_string();
            return result;
        }
    };
    if !out.ok() {
        result.message = out.reason();
        return result;
    }
    let mut missing = false;
    for line in out.stdout.lines().map(str::trim) {
        if let Some(u) = line.strip_prefix("uname: ") {
            result.arch = u.to_string();
        } else if let Some(v) = line.strip_prefix("version: ") {
            result.version = v.to_string();
        } else if line == "missing" {
            missing = true;
        }
    }
    (result.ok, result.message) = match (&host.binary, missing) {
        (Binary::Copy, _) => match ssh::same_platform(&result.arch) {
            Err(e) => (false, e),
            Ok(()) if missing => (true, format!("the run copies rally-tui to {path}")),
            Ok(()) => (true, format!("copied binary present at {path}")),
        },
        (Binary::Remote(_), true) => (false, format!("rally-tui not found: {path}")),
        (Binary::Remote(_), false) if result.version != ours() => (
            false,
            format!(
                "{path} is '{}', this controller is '{}'",
                result.version,
                ours()
            ),
        ),
        (Binary::Remote(_), false) => (true, format!("{path}, {} agents", host.count)),
    };
    result
}

/// The checks as an aligned table.
pub fn render(checks: &[HostCheck]) -> String {
    let rows: Vec<[String; 5]> =
        std::iter::once(["HOST", "STATUS", "ARCH", "VERSION", "MESSAGE"].map(str::to_string))
            .chain(checks.iter().map(|c| {
                [
                    c.host.clone(),
                    if c.ok { "ok" } else { "failed" }.to_string(),
                    or_dash(&c.arch),
                    or_dash(&c.version),
                    c.message.clone(),
                ]
            }))
            .collect();
    let mut widths = [0usize; 4];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i < 4 {
                line.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            } else {
                line.push_str(cell);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn or_dash(s: &str) -> String {
    if s.is_empty() { "-".into() } else { s.into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let text = render(&[
            HostCheck {
                host: "web-a".into(),
                ok: true,
                arch: "Linux x86_64".into(),
                version: "rally-tui 0.1.0".into(),
                message: "/opt/rally-tui, 4 agents".into(),
            },
            HostCheck {
                host: "b".into(),
                ok: false,
                arch: String::new(),
                version: String::new(),
                message: "me@b: Permission denied (publickey).".into(),
            },
        ]);
        assert_eq!(
            text,
            "HOST   STATUS  ARCH          VERSION          MESSAGE\n\
             web-a  ok      Linux x86_64  rally-tui 0.1.0  /opt/rally-tui, 4 agents\n\
             b      failed  -             -                me@b: Permission denied (publickey).\n"
        );
    }
}
