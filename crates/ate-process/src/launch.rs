//! What the node asks for when it starts or restores an actor: the program, its
//! environment, its mounts, limits, egress rules and where its output goes.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::ProcessError;

/// Which of the program's output streams a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    Stdout,
    Stderr,
}

/// Receives the program's output, one call per line (without the newline). Called from
/// tokio tasks, so it must not block.
pub type LogSink = Arc<dyn Fn(LogStream, String) + Send + Sync>;

/// How the driver decides that a program is ready to take requests.
#[derive(Debug, Clone)]
pub struct Probe {
    /// `None`: a TCP connect suffices. `Some(path)`: `GET path` must answer 2xx.
    pub http_path: Option<String>,
    /// The port probed inside the sandbox's network namespace.
    pub port: u16,
    /// How long the program may take to become ready.
    pub timeout: Duration,
}

/// One actor's program and everything its sandbox needs.
#[derive(Clone)]
pub struct Launch {
    /// Container id, unique on the node: `[a-z0-9][a-z0-9-]*` (the node derives it from
    /// the worker). Also names the network namespace and the bundle directory.
    pub name: String,
    /// argv (command ++ args); argv[0] is resolved inside the sandbox's PATH.
    pub command: Vec<String>,
    /// The environment besides what the driver adds (`PORT`, proxy variables, a PATH).
    pub env: Vec<(String, String)>,
    /// Working directory inside the sandbox; empty means `/`.
    pub working_dir: String,
    /// The port the program listens on inside its own network namespace.
    pub port: u16,
    pub readiness: Probe,
    /// (path inside the sandbox, host dir) bound read-write: the actor's durable state.
    pub durable_dirs: Vec<(String, PathBuf)>,
    /// (path inside the sandbox, host file) bound read-only, e.g. the module.
    pub files: Vec<(String, PathBuf)>,
    /// cgroup memory limit in bytes; 0 means none.
    pub memory_limit_bytes: u64,
    /// A prepared root directory (see `prepare_rootfs`); `None` gives the host view.
    pub rootfs: Option<PathBuf>,
    /// Host directories the host view hides behind an empty read-only tmpfs: the node's
    /// own data (other actors' snapshots and dirs, the store file of `ate up`).
    pub hidden: Vec<PathBuf>,
    /// Egress allowlist rules (see `ate_model::EgressPolicy`); empty denies all.
    pub egress: Vec<String>,
    pub log: LogSink,
}

impl fmt::Debug for Launch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Launch")
            .field("name", &self.name)
            .field("command", &self.command)
            .field("working_dir", &self.working_dir)
            .field("port", &self.port)
            .field("readiness", &self.readiness)
            .field("durable_dirs", &self.durable_dirs)
            .field("files", &self.files)
            .field("memory_limit_bytes", &self.memory_limit_bytes)
            .field("rootfs", &self.rootfs)
            .field("egress", &self.egress)
            .finish_non_exhaustive()
    }
}

impl Launch {
    /// Refuses launches that would make runc or the host paths misbehave, before any
    /// state is created.
    pub(crate) fn validate(&self) -> Result<(), ProcessError> {
        let bad = |why: String| Err(ProcessError::InvalidLaunch(why));
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 100
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !self.name.starts_with('-');
        if !name_ok {
            return bad(format!(
                "name {:?} must match [a-z0-9][a-z0-9-]* (at most 100 characters)",
                self.name
            ));
        }
        if self.command.is_empty() || self.command[0].is_empty() {
            return bad("command is empty".into());
        }
        if !self.working_dir.is_empty() && !self.working_dir.starts_with('/') {
            return bad(format!(
                "working_dir {:?} must be absolute",
                self.working_dir
            ));
        }
        for (inside, host) in self.durable_dirs.iter().chain(&self.files) {
            if !inside.starts_with('/') || inside == "/" || inside.split('/').any(|c| c == "..") {
                return bad(format!(
                    "mount path {inside:?} must be absolute, not / and without .."
                ));
            }
            if !host.is_absolute() {
                return bad(format!("host path {} must be absolute", host.display()));
            }
        }
        if let Some((k, _)) = self
            .env
            .iter()
            .find(|(k, _)| k.is_empty() || k.contains('='))
        {
            return bad(format!("environment variable name {k:?} is invalid"));
        }
        Ok(())
    }
}
