//! The errors of the process sandbox class, shaped so the node can map each to an actor
//! status: a program that never got ready, one that died, a runc or CRIU failure, or a
//! host that cannot run process sandboxes at all.

use std::path::PathBuf;
use std::time::Duration;

/// Why a process sandbox could not be started, restored, checkpointed or unpacked.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The host cannot run process sandboxes (no runc, not root, no network namespaces).
    #[error("process sandboxes are unsupported here: {0}")]
    Unsupported(String),
    /// The launch itself is unusable (bad container name, relative mount path, ...).
    #[error("invalid launch: {0}")]
    InvalidLaunch(String),
    /// The program did not pass its readiness probe in time.
    #[error("not ready after {}: {reason}{}", secs(*after), tail_text(tail))]
    NotReady {
        after: Duration,
        reason: String,
        tail: Vec<String>,
    },
    /// The program exited (or was killed) before it became ready.
    #[error("{message} before becoming ready{}", tail_text(tail))]
    Exited { message: String, tail: Vec<String> },
    /// A runc command failed; `stderr` holds the last lines it printed.
    #[error("runc {op} failed: {stderr}")]
    Runc { op: &'static str, stderr: String },
    /// CRIU could not dump or restore the container; `reason` holds runc's error and the
    /// tail of CRIU's own log.
    #[error("criu {op} failed: {reason}")]
    Criu { op: &'static str, reason: String },
    /// The container could not be frozen for a snapshot; it goes on running, untouched.
    #[error("container {container}: cannot freeze for a snapshot: {reason}")]
    Freeze { container: String, reason: String },
    /// The container was frozen for a snapshot and could not be thawed: the program
    /// stays stopped. `reason` also says how the snapshot itself went.
    #[error("container {container}: cannot thaw after a snapshot: {reason}")]
    Thaw { container: String, reason: String },
    /// A template rootfs could not be used.
    #[error("invalid rootfs {}: {reason}", path.display())]
    InvalidRootfs { path: PathBuf, reason: String },
    /// A snapshot would be bigger than the template allows: `size` bytes (the CRIU images
    /// and the durable dirs packed so far, counted when packing passed the limit).
    #[error("snapshot too large: {size} bytes, over spec.snapshots.maxBytes of {limit}")]
    TooLarge { size: u64, limit: u64 },
    /// A snapshot file of durable dirs is damaged, tampered with or malicious.
    #[error("snapshot file {file}: {reason}")]
    Snapshot { file: String, reason: String },
    /// A filesystem or process operation failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl ProcessError {
    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ProcessError::Io {
            what,
            path: path.into(),
            source,
        }
    }
}

/// Formats a duration as people write it in messages: `30s`, `2.5s`, `800ms`.
pub(crate) fn secs(d: Duration) -> String {
    if d.subsec_millis() == 0 && d.as_secs() > 0 {
        format!("{}s", d.as_secs())
    } else if d.as_secs() > 0 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format!("{}ms", d.as_millis())
    }
}

fn tail_text(tail: &[String]) -> String {
    if tail.is_empty() {
        String::new()
    } else {
        format!("; last output: {}", tail.join(" | "))
    }
}
