//! Invoking runc. Every call uses the node's own `--root` (so `list` and sweeps only see
//! this node's containers) and, when CRIU is available, `--criu <path>` because the
//! working CRIU build is usually not in PATH.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::Command;

use crate::ProcessError;

/// How to run runc for one node.
#[derive(Debug, Clone)]
pub(crate) struct Runc {
    pub(crate) bin: PathBuf,
    pub(crate) root: PathBuf,
    pub(crate) criu: Option<PathBuf>,
}

impl Runc {
    /// A runc command with the global flags set; stdin is /dev/null.
    pub(crate) fn command(&self) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--root").arg(&self.root);
        if let Some(criu) = &self.criu {
            cmd.arg("--criu").arg(criu);
        }
        cmd.stdin(Stdio::null()).kill_on_drop(true);
        cmd
    }

    /// Runs `runc <args>` to completion and returns its stdout; a failure carries the
    /// tail of its stderr.
    pub(crate) async fn run(
        &self,
        op: &'static str,
        args: &[&str],
    ) -> Result<String, ProcessError> {
        let out = self
            .command()
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .await
            .map_err(|e| ProcessError::io("running", &self.bin, e))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(ProcessError::Runc {
                op,
                stderr: tail(&String::from_utf8_lossy(&out.stderr), 6),
            })
        }
    }

    /// Kills every process of `name` and deletes it; a missing container is fine.
    pub(crate) async fn destroy(&self, name: &str) {
        let _ = self.run("kill", &["kill", "--all", name, "KILL"]).await;
        if let Err(e) = self.run("delete", &["delete", "--force", name]).await {
            let text = e.to_string();
            if !text.contains("does not exist") && !text.contains("not exist") {
                tracing::warn!(container = name, error = %text, "runc delete failed");
            }
        }
    }

    /// Blocking `destroy` for every container under the root, for sweeps at node start
    /// (which may run inside or outside a tokio runtime). Returns the names removed.
    pub(crate) fn destroy_all_blocking(&self) -> Vec<String> {
        let run = |args: &[&str]| {
            std::process::Command::new(&self.bin)
                .arg("--root")
                .arg(&self.root)
                .args(args)
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .output()
        };
        let names: Vec<String> = match run(&["list", "--quiet"]) {
            Ok(out) => String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "runc list failed during sweep");
                Vec::new()
            }
        };
        for name in &names {
            let _ = run(&["kill", "--all", name, "KILL"]);
            match run(&["delete", "--force", name]) {
                Ok(out) if out.status.success() => {}
                _ => tracing::warn!(container = %name, "runc delete failed during sweep"),
            }
        }
        names
    }

    /// The init pid of a running container, from `runc state`.
    pub(crate) async fn init_pid(&self, name: &str) -> Result<i32, ProcessError> {
        let out = self.run("state", &["state", name]).await?;
        let v: serde_json::Value = serde_json::from_str(&out).map_err(|e| ProcessError::Runc {
            op: "state",
            stderr: format!("unparsable state: {e}"),
        })?;
        v.get("pid")
            .and_then(|p| p.as_i64())
            .and_then(|p| i32::try_from(p).ok())
            .filter(|p| *p > 0)
            .ok_or_else(|| ProcessError::Runc {
                op: "state",
                stderr: format!("no init pid for {name}"),
            })
    }
}

/// The last `n` non-empty lines of `text`, joined with " | ", with runc's logrus lines
/// (`time=... level=error msg="..."`) reduced to their message.
pub(crate) fn tail(text: &str, n: usize) -> String {
    let lines: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(logrus_msg)
        .collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

fn logrus_msg(line: &str) -> String {
    let Some(start) = line.find("msg=\"").filter(|_| line.starts_with("time=")) else {
        return line.to_string();
    };
    let msg = &line[start + 5..];
    let msg = msg.strip_suffix('"').unwrap_or(msg);
    msg.replace("\\\"", "\"").replace("\\n", "; ")
}

/// The last error lines of a CRIU log (`dump.log` / `restore.log`) in `work`.
pub(crate) fn criu_log_tail(work: &Path, file: &str) -> String {
    let Ok(text) = std::fs::read_to_string(work.join(file)) else {
        return String::new();
    };
    let errors: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("Error") || l.contains("error") || l.contains("fail"))
        // Harmless on every restore here: CRIU cannot raise its own fd limit.
        .filter(|l| !l.contains("RLIMIT_NOFILE"))
        .collect();
    let pick = if errors.is_empty() {
        text.lines().collect()
    } else {
        errors
    };
    pick[pick.len().saturating_sub(5)..].join(" | ")
}
