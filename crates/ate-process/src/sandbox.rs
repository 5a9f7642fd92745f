//! A running container: connections into its network namespace, checkpoint and
//! snapshots, exits (published by `watch`) and teardown.
//!
//! Invariant of snapshots: a program that keeps running is frozen for the whole of a
//! snapshot (the CRIU dump and the packing of its durable dirs), so its memory and its
//! files are of one instant, and it is thawed afterwards whatever happened meanwhile.

use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::netns::{self, Netns};
use crate::runc::{self, Runc};
use crate::{ProcessError, pack_dirs};

/// The last lines a program printed, kept for error messages.
pub(crate) type Tail = Arc<Mutex<VecDeque<String>>>;

/// A running actor container. Dropping it kills the container (best effort, without
/// waiting); `stop` does the same and waits for the cleanup.
#[derive(Debug)]
pub struct Sandbox {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) name: String,
    pub(crate) port: u16,
    pub(crate) runc: Runc,
    pub(crate) netns: Netns,
    pub(crate) bundle: PathBuf,
    pub(crate) cgroup: String,
    pub(crate) memory_limit: u64,
    /// The durable dirs: (path inside the sandbox, dir on the host).
    pub(crate) durable: Vec<(String, PathBuf)>,
    pub(crate) tail: Tail,
    /// Set while we stop or checkpoint the container: its exit is then ours, not news.
    pub(crate) quiet: AtomicBool,
    /// The exit message of the init process, whether or not it was published.
    pub(crate) last_exit: Mutex<Option<String>>,
    /// Published exits: `Some(message)` once the program exited by itself.
    pub(crate) exit_tx: watch::Sender<Option<String>>,
    /// Number of output streams that reached end of file.
    pub(crate) logs_done: watch::Sender<u8>,
    pub(crate) proxy_stop: watch::Sender<bool>,
    pub(crate) init: Mutex<Option<Arc<OwnedFd>>>,
    /// Teardown finished (or `Drop` did the synchronous part and handed off the rest).
    pub(crate) cleaned: AtomicBool,
    pub(crate) teardown_lock: tokio::sync::Mutex<()>,
}

impl Sandbox {
    /// A fresh TCP connection to the program's port inside its network namespace. The
    /// node sends one HTTP request per connection and closes it, so no connection is
    /// open when the container is checkpointed.
    pub async fn connect(&self) -> std::io::Result<TcpStream> {
        netns::connect_in(&self.inner.netns, self.inner.port).await
    }

    /// The container id (also the name of its network namespace).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The last lines the program printed (stdout and stderr interleaved).
    pub fn recent_output(&self) -> Vec<String> {
        tail_lines(&self.inner.tail)
    }

    /// CRIU dump of the whole container (memory, fds, listening sockets, tmpfs) into the
    /// directory `images`. With `leave_running = false` the container is gone afterwards
    /// (and this sandbox is stopped); otherwise it continues unaffected. The container
    /// is frozen for the dump and thawed after it (also when the dump fails). It must be
    /// idle: an open TCP connection inside it makes the dump fail. To save the durable
    /// dirs of a program that goes on running, use `snapshot`, which packs them within
    /// the same freeze.
    pub async fn checkpoint(&self, images: &Path, leave_running: bool) -> Result<(), ProcessError> {
        self.can_dump()?;
        let frozen = Frozen::freeze(&self.inner).await?;
        let result = self.dump(images, leave_running).await;
        if result.is_ok() && !leave_running {
            // CRIU killed the program and runc deleted the container: nothing to thaw.
            frozen.gone();
            self.teardown().await;
            return Ok(());
        }
        frozen.thaw(result).await
    }

    /// A consistent snapshot of the running program: with `images`, a CRIU dump of the
    /// container into that directory (leaving it running, as `checkpoint`), and its
    /// durable dirs packed as `pack_dirs` does into the directory `packed` (the snapshot
    /// files it returns, as paths), all within one freeze, so that memory and files are
    /// of the same instant. The images and the packed dirs together may take at most
    /// `max_bytes`: past it the snapshot stops with `ProcessError::TooLarge` (packing
    /// stops as soon as it passes the limit). The program is thawed afterwards whether
    /// the snapshot succeeded or not; a failure to thaw is `ProcessError::Thaw`. A Data
    /// snapshot (no images) of a program that has already exited packs its dirs as they
    /// are: nothing can change them any more.
    pub async fn snapshot(
        &self,
        images: Option<&Path>,
        packed: &Path,
        max_bytes: u64,
    ) -> Result<Vec<(String, PathBuf)>, ProcessError> {
        if images.is_some() {
            self.can_dump()?;
        }
        let frozen = match Frozen::freeze(&self.inner).await {
            Ok(frozen) => Some(frozen),
            Err(e) if images.is_none() && program_gone(&self.inner) => {
                tracing::info!(container = %self.inner.name, error = %e,
                    "packing the durable dirs of an exited program");
                None
            }
            Err(e) => return Err(e),
        };
        let (started, was_frozen) = (Instant::now(), frozen.is_some());
        let result = self.dump_and_pack(images, packed, max_bytes).await;
        let outcome = match frozen {
            Some(frozen) => frozen.thaw(result).await,
            None => result,
        };
        tracing::info!(container = %self.inner.name, full = images.is_some(), frozen = was_frozen,
            ok = outcome.is_ok(), ms = started.elapsed().as_millis() as u64, "snapshot taken");
        outcome
    }

    fn can_dump(&self) -> Result<(), ProcessError> {
        let inner = &self.inner;
        if inner.runc.criu.is_none() {
            return Err(ProcessError::Unsupported(
                "checkpoint needs a working CRIU (criu check failed or no criu given)".into(),
            ));
        }
        if inner.cleaned.load(Ordering::SeqCst) {
            return Err(ProcessError::Criu {
                op: "checkpoint",
                reason: format!("container {} is not running", inner.name),
            });
        }
        Ok(())
    }

    async fn dump_and_pack(
        &self,
        images: Option<&Path>,
        packed: &Path,
        max_bytes: u64,
    ) -> Result<Vec<(String, PathBuf)>, ProcessError> {
        let mut used = 0;
        if let Some(images) = images {
            self.dump(images, true).await?;
            used = files_size(images)?;
            if used > max_bytes {
                return Err(ProcessError::TooLarge {
                    size: used,
                    limit: max_bytes,
                });
            }
        }
        let dirs = self.inner.durable.clone();
        let out = packed.to_path_buf();
        tokio::task::spawn_blocking(move || {
            pack_dirs(&dirs, &out, max_bytes - used).map_err(|e| match e {
                ProcessError::TooLarge { size, .. } => ProcessError::TooLarge {
                    size: size + used,
                    limit: max_bytes,
                },
                other => other,
            })
        })
        .await
        .map_err(|e| {
            ProcessError::io(
                "packing the durable dirs of container",
                &self.inner.name,
                std::io::Error::other(e),
            )
        })?
    }

    /// `runc checkpoint` of the (frozen) container. Without `leave_running`, a
    /// successful dump leaves the sandbox quiet for the caller's teardown.
    async fn dump(&self, images: &Path, leave_running: bool) -> Result<(), ProcessError> {
        let inner = &self.inner;
        std::fs::create_dir_all(images)
            .map_err(|e| ProcessError::io("creating image dir", images, e))?;
        let work = inner.bundle.join("criu-dump");
        std::fs::create_dir_all(&work).map_err(|e| ProcessError::io("creating", &work, e))?;
        let started = Instant::now();
        inner.quiet.store(true, Ordering::SeqCst);
        let images_s = images.to_string_lossy();
        let work_s = work.to_string_lossy();
        let mut args = vec![
            "checkpoint",
            "--image-path",
            &images_s,
            "--work-path",
            &work_s,
        ];
        if leave_running {
            args.push("--leave-running");
        }
        args.push(&inner.name);
        match inner.runc.run("checkpoint", &args).await {
            Ok(_) => {
                tracing::info!(container = %inner.name, ms = started.elapsed().as_millis() as u64,
                    leave_running, "checkpointed");
                if leave_running {
                    self.unquiet();
                }
                Ok(())
            }
            Err(e) => {
                let reason = format!("{e}; criu log: {}", runc::criu_log_tail(&work, "dump.log"));
                self.unquiet();
                Err(ProcessError::Criu {
                    op: "checkpoint",
                    reason,
                })
            }
        }
    }

    /// Kills and deletes the container, its network namespace and bundle. Idempotent.
    pub async fn stop(&self) {
        self.teardown().await;
    }

    /// Resolves when the program exits by itself (crash, out-of-memory kill, exit) with
    /// a short message such as "exited with status 3" or "killed by signal 9". Never
    /// resolves for our own stop or checkpoint. Any number of callers may wait.
    pub async fn exited(&self) -> String {
        let mut rx = self.inner.exit_tx.subscribe();
        // The watch guard must be gone before the pending branch awaits (the future is Send).
        let seen = rx
            .wait_for(Option::is_some)
            .await
            .map(|v| v.clone().unwrap_or_default());
        match seen {
            Ok(message) => message,
            Err(_) => std::future::pending().await,
        }
    }

    /// Publishes an exit that happened while we were quiet but turned out not to be ours
    /// (a failed checkpoint).
    fn unquiet(&self) {
        self.inner.quiet.store(false, Ordering::SeqCst);
        let last = self.inner.last_exit.lock().ok().and_then(|g| g.clone());
        if let Some(msg) = last {
            self.inner.exit_tx.send_replace(Some(msg));
        }
    }

    pub(crate) async fn teardown(&self) {
        teardown(&self.inner).await;
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let inner = &self.inner;
        if inner.cleaned.swap(true, Ordering::SeqCst) {
            return;
        }
        // Synchronous part first: killing the init kills the whole pid namespace, even
        // if the process exits right after this.
        inner.quiet.store(true, Ordering::SeqCst);
        let _ = inner.proxy_stop.send(true);
        kill_init(inner);
        netns::remove(&inner.netns.path);
        let (runc, name, bundle) = (inner.runc.clone(), inner.name.clone(), inner.bundle.clone());
        let _ = std::thread::Builder::new()
            .name("ate-runc-delete".into())
            .spawn(move || {
                let mut cmd = std::process::Command::new(&runc.bin);
                cmd.arg("--root")
                    .arg(&runc.root)
                    .args(["delete", "--force", &name]);
                let _ = cmd
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .status();
                let _ = std::fs::remove_dir_all(&bundle);
            });
    }
}

/// A container frozen for a snapshot (`runc pause`: the cgroup freezer, so every process
/// of the container stops at once and none runs until `thaw`). Dropping one unthawed
/// (the snapshot's future was cancelled) resumes it from a thread of its own: a
/// snapshot never leaves a program frozen behind it.
struct Frozen<'a> {
    inner: &'a Inner,
    armed: bool,
}

impl<'a> Frozen<'a> {
    async fn freeze(inner: &'a Inner) -> Result<Frozen<'a>, ProcessError> {
        // Armed before `runc pause` runs: a snapshot cancelled during it still thaws.
        let mut frozen = Frozen { inner, armed: true };
        match inner.runc.run("pause", &["pause", &inner.name]).await {
            Ok(_) => Ok(frozen),
            Err(e) => {
                // A freeze that failed halfway, or a container an earlier failed thaw
                // left frozen, must not stay so: resume it, best effort (this fails
                // harmlessly for a container that was never frozen or has exited).
                let _ = inner.runc.run("resume", &["resume", &inner.name]).await;
                frozen.armed = false;
                Err(ProcessError::Freeze {
                    container: inner.name.clone(),
                    reason: e.to_string(),
                })
            }
        }
    }

    /// The container no longer exists (a dump that did not leave it running).
    fn gone(mut self) {
        self.armed = false;
    }

    /// Resumes the container and returns `outcome`, the result of what was done while
    /// it was frozen, unless the thaw fails: then a `Thaw` error that also tells the
    /// outcome.
    async fn thaw<T>(mut self, outcome: Result<T, ProcessError>) -> Result<T, ProcessError> {
        let name = &self.inner.name;
        let resumed = self.inner.runc.run("resume", &["resume", name]).await;
        // Disarmed only now: a snapshot cancelled during `runc resume` still thaws.
        self.armed = false;
        match resumed {
            Ok(_) => outcome,
            Err(e) => {
                let then = match &outcome {
                    Ok(_) => "the snapshot itself succeeded".to_string(),
                    Err(failed) => format!("the snapshot had failed: {failed}"),
                };
                tracing::error!(container = %name, error = %e, "cannot thaw after a snapshot");
                Err(ProcessError::Thaw {
                    container: name.clone(),
                    reason: format!("{e}; {then}"),
                })
            }
        }
    }
}

impl Drop for Frozen<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (runc, name) = (self.inner.runc.clone(), self.inner.name.clone());
        tracing::warn!(container = %name, "snapshot abandoned while frozen: thawing");
        let _ = std::thread::Builder::new()
            .name("ate-runc-resume".into())
            .spawn(move || {
                let status = std::process::Command::new(&runc.bin)
                    .arg("--root")
                    .arg(&runc.root)
                    .args(["resume", &name])
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .status();
                if !status.is_ok_and(|s| s.success()) {
                    tracing::error!(container = %name, "cannot thaw an abandoned snapshot");
                }
            });
    }
}

/// The total size of the regular files in `dir` (a CRIU image dir, which is flat).
fn files_size(dir: &Path) -> Result<u64, ProcessError> {
    let io = |e| ProcessError::io("reading", dir, e);
    let mut total = 0u64;
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let meta = entry.map_err(io)?.metadata().map_err(io)?;
        if meta.is_file() {
            total = total.saturating_add(meta.len());
        }
    }
    Ok(total)
}

/// Whether the program has exited: its container was removed, or its init (and with it
/// every process of its pid namespace) is dead.
fn program_gone(inner: &Inner) -> bool {
    if inner.cleaned.load(Ordering::SeqCst) {
        return true;
    }
    let Some(pidfd) = inner.init.lock().ok().and_then(|g| g.clone()) else {
        return false;
    };
    let mut fds = [rustix::event::PollFd::new(
        &*pidfd,
        rustix::event::PollFlags::IN,
    )];
    rustix::event::poll(&mut fds, Some(&rustix::time::Timespec::default())).is_ok_and(|n| n > 0)
}

/// SIGKILLs the container's init (and so its whole pid namespace) through its pidfd.
fn kill_init(inner: &Inner) {
    if let Some(pidfd) = inner.init.lock().ok().and_then(|g| g.clone()) {
        let _ = rustix::process::pidfd_send_signal(&*pidfd, rustix::process::Signal::KILL);
    }
}

/// Kills and removes everything of the container once; concurrent callers wait for the
/// first to finish. The processes die before the first await, so a teardown cancelled
/// midway (runtime shutdown) leaves at most state that `Drop` or a sweep removes.
pub(crate) async fn teardown(inner: &Inner) {
    let _guard = inner.teardown_lock.lock().await;
    if inner.cleaned.load(Ordering::SeqCst) {
        return;
    }
    inner.quiet.store(true, Ordering::SeqCst);
    let _ = inner.proxy_stop.send(true);
    kill_init(inner);
    inner.runc.destroy(&inner.name).await;
    netns::remove(&inner.netns.path);
    if let Err(e) = std::fs::remove_dir_all(&inner.bundle)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(container = %inner.name, error = %e, "removing bundle failed");
    }
    inner.cleaned.store(true, Ordering::SeqCst);
    tracing::debug!(container = %inner.name, "container removed");
}

pub(crate) fn tail_lines(tail: &Tail) -> Vec<String> {
    tail.lock()
        .map(|t| t.iter().cloned().collect())
        .unwrap_or_default()
}
