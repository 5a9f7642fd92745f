//! The node's handle on process sandboxes: finds runc and CRIU, starts and restores
//! containers, and sweeps what an earlier run of the node left behind.
//!
//! Layout under `state_dir`: `runc/` (runc's `--root`: container state), `netns/<name>`
//! (pinned network namespaces), `bundles/<name>/` (config.json, host view root, pid
//! file, CRIU work dirs).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use ate_model::EgressPolicy;
use sha2::Digest;
use tokio::sync::watch;

use crate::bundle::{self, PROXY_PORT};
use crate::netns::{self, Netns};
use crate::runc::{self, Runc};
use crate::sandbox::{self, Inner, Sandbox, Tail};
use crate::tarsafe::hex;
use crate::{Launch, LogStream, ProcessError, probe};

/// Where the node keeps process-sandbox state and which binaries to use.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// Private to this node: two nodes on one machine need two state dirs.
    pub state_dir: PathBuf,
    /// runc binary; `None` looks it up in PATH.
    pub runc: Option<PathBuf>,
    /// CRIU binary; `None` (or a failing `criu check`) means no Full snapshots.
    pub criu: Option<PathBuf>,
}

/// One per node: runs actor programs as runc containers.
#[derive(Debug)]
pub struct ProcessHost {
    state_dir: PathBuf,
    runc: Runc,
    can_checkpoint: bool,
    cgroup_prefix: String,
}

impl ProcessHost {
    /// Finds runc and checks it runs, checks that we can create network namespaces
    /// (root), and runs `criu check` with the given CRIU binary, recording whether Full
    /// snapshots are possible. Also makes this process a child subreaper, so container
    /// init processes become its children once runc detaches (see `sandbox`). Blocking.
    pub fn detect(config: HostConfig) -> Result<ProcessHost, ProcessError> {
        if !rustix::process::geteuid().is_root() {
            return Err(ProcessError::Unsupported(
                "process sandboxes need root".into(),
            ));
        }
        let runc_bin = match config.runc {
            Some(p) => p,
            None => find_in_path("runc").ok_or_else(|| {
                ProcessError::Unsupported("runc is not installed (not found in PATH)".into())
            })?,
        };
        let version = std::process::Command::new(&runc_bin)
            .arg("--version")
            .output()
            .map_err(|e| {
                ProcessError::Unsupported(format!("cannot run {}: {e}", runc_bin.display()))
            })?;
        if !version.status.success() {
            return Err(ProcessError::Unsupported(format!(
                "{} --version failed",
                runc_bin.display()
            )));
        }
        let state_dir = config.state_dir;
        for sub in ["runc", "netns", "bundles"] {
            let dir = state_dir.join(sub);
            std::fs::create_dir_all(&dir).map_err(|e| ProcessError::io("creating", &dir, e))?;
        }
        let probe_ns = state_dir.join("netns").join(".probe");
        Netns::create(&probe_ns).map_err(|e| {
            ProcessError::Unsupported(format!("cannot create network namespaces: {e}"))
        })?;
        netns::remove(&probe_ns);
        rustix::process::set_child_subreaper(Some(rustix::process::getpid())).map_err(|e| {
            ProcessError::Unsupported(format!("cannot become a child subreaper: {e}"))
        })?;
        let criu = config.criu.filter(|c| criu_works(c));
        let digest = sha2::Sha256::digest(state_dir.to_string_lossy().as_bytes());
        let cgroup_prefix = format!("/ate-{}", hex(&digest[..4]));
        tracing::info!(runc = %runc_bin.display(), checkpoint = criu.is_some(),
            state_dir = %state_dir.display(), "process sandboxes available");
        Ok(ProcessHost {
            runc: Runc {
                bin: runc_bin,
                root: state_dir.join("runc"),
                criu: criu.clone(),
            },
            can_checkpoint: criu.is_some(),
            state_dir,
            cgroup_prefix,
        })
    }

    /// Whether CRIU passed `criu check`: Full snapshots (checkpoint/restore) work.
    pub fn can_checkpoint(&self) -> bool {
        self.can_checkpoint
    }

    /// Kills and deletes every container, network namespace and bundle left in the
    /// state dir by an earlier run of this node (one that was SIGKILLed or crashed).
    /// Call it once at node start, before starting sandboxes: it removes them all (as
    /// dropping the host does). One host per state dir. Blocking.
    pub fn sweep(&self) {
        for name in self.runc.destroy_all_blocking() {
            tracing::info!(container = %name, "swept leftover container");
        }
        let netns_dir = self.state_dir.join("netns");
        for entry in std::fs::read_dir(&netns_dir)
            .into_iter()
            .flatten()
            .flatten()
        {
            netns::remove(&entry.path());
        }
        let bundles = self.state_dir.join("bundles");
        for entry in std::fs::read_dir(&bundles).into_iter().flatten().flatten() {
            if let Err(e) = std::fs::remove_dir_all(entry.path()) {
                tracing::warn!(path = %entry.path().display(), error = %e, "sweeping bundle failed");
            }
        }
    }

    /// Cold start: creates the namespace, proxy and container, and returns once the
    /// readiness probe passes. On failure nothing is left behind and the error says why
    /// (with the program's last output lines).
    pub async fn start(&self, launch: Launch) -> Result<Sandbox, ProcessError> {
        self.launch(launch, None).await
    }

    /// Restores a checkpoint taken by `Sandbox::checkpoint` (possibly under another name,
    /// on another machine, with durable dirs and files at other host paths; the paths
    /// inside the sandbox must match), then probes it like `start`.
    pub async fn restore(&self, launch: Launch, images: &Path) -> Result<Sandbox, ProcessError> {
        if !self.can_checkpoint {
            return Err(ProcessError::Unsupported(
                "restore needs a working CRIU (criu check failed or no criu given)".into(),
            ));
        }
        self.launch(launch, Some(images)).await
    }

    async fn launch(&self, launch: Launch, images: Option<&Path>) -> Result<Sandbox, ProcessError> {
        launch.validate()?;
        let started = Instant::now();
        let name = launch.name.clone();
        if self.runc.root.join(&name).exists() {
            tracing::warn!(container = %name, "replacing a leftover container of the same name");
            self.runc.destroy(&name).await;
        }
        let bundle_dir = self.state_dir.join("bundles").join(&name);
        let netns_path = self.state_dir.join("netns").join(&name);
        let ns = Netns::create(&netns_path)
            .map_err(|e| ProcessError::io("creating network namespace", &netns_path, e))?;
        let (proxy_stop, proxy_rx) = watch::channel(false);
        // Flat (`/ate-<node>-<name>`), so runc's delete removes the whole cgroup path.
        let cgroup = format!("{}-{name}", self.cgroup_prefix);
        let tail: Tail = Arc::default();
        let inner = Arc::new(Inner {
            name: name.clone(),
            port: launch.port,
            runc: self.runc.clone(),
            netns: ns.clone(),
            bundle: bundle_dir.clone(),
            cgroup: cgroup.clone(),
            memory_limit: launch.memory_limit_bytes,
            durable: launch.durable_dirs.clone(),
            tail: tail.clone(),
            quiet: AtomicBool::new(false),
            last_exit: Mutex::new(None),
            exit_tx: watch::channel(None).0,
            logs_done: watch::channel(0).0,
            proxy_stop,
            init: Mutex::new(None),
            cleaned: AtomicBool::new(false),
            teardown_lock: tokio::sync::Mutex::new(()),
        });
        // From here on, dropping `sandbox` cleans up whatever exists.
        let sandbox = Sandbox { inner };
        let listener = netns::listen_in(&ns, PROXY_PORT)
            .await
            .map_err(|e| ProcessError::io("opening egress proxy in", &netns_path, e))?;
        crate::proxy::spawn(
            listener,
            EgressPolicy::new(&launch.egress),
            name.clone(),
            proxy_rx,
        );
        bundle::write(&bundle_dir, &launch, &netns_path, &cgroup)?;
        let pid_file = bundle_dir.join("init.pid");
        let mut cmd = self.runc.command();
        let work = bundle_dir.join("criu-restore");
        let op = match images {
            None => {
                cmd.args(["run", "--detach", "--bundle"]).arg(&bundle_dir);
                "run"
            }
            Some(images) => {
                std::fs::create_dir_all(&work)
                    .map_err(|e| ProcessError::io("creating", &work, e))?;
                cmd.args(["restore", "--detach", "--image-path"])
                    .arg(images)
                    .arg("--work-path")
                    .arg(&work)
                    .arg("--bundle")
                    .arg(&bundle_dir);
                "restore"
            }
        };
        cmd.arg("--pid-file").arg(&pid_file).arg(&name);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| ProcessError::io("running", &self.runc.bin, e))?;
        let inner = &sandbox.inner;
        if let Some(out) = child.stdout.take() {
            crate::watch::pump(
                out,
                LogStream::Stdout,
                launch.log.clone(),
                tail.clone(),
                inner.logs_done.clone(),
            );
        }
        if let Some(err) = child.stderr.take() {
            crate::watch::pump(
                err,
                LogStream::Stderr,
                launch.log.clone(),
                tail.clone(),
                inner.logs_done.clone(),
            );
        }
        let status = child
            .wait()
            .await
            .map_err(|e| ProcessError::io("waiting for", &self.runc.bin, e))?;
        if !status.success() {
            // runc printed its error into the same pipes; let the readers drain them.
            let mut done = inner.logs_done.subscribe();
            let _ = tokio::time::timeout(
                std::time::Duration::from_millis(300),
                done.wait_for(|n| *n >= 2),
            )
            .await;
            let lines = sandbox::tail_lines(&tail);
            let stderr = runc::tail(&lines.join("\n"), 6);
            sandbox.teardown().await;
            return Err(match images {
                None => ProcessError::Runc { op, stderr },
                Some(_) => ProcessError::Criu {
                    op: "restore",
                    reason: format!(
                        "{stderr}; criu log: {}",
                        runc::criu_log_tail(&work, "restore.log")
                    ),
                },
            });
        }
        let pid = match std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
        {
            Some(pid) => pid,
            None => self.runc.init_pid(&name).await?,
        };
        crate::watch::watch_exit(sandbox.inner.clone(), pid)?;
        let spawned_ms = started.elapsed().as_millis() as u64;
        if let Err(e) = probe::wait_ready(&sandbox.inner, &launch.readiness).await {
            sandbox.teardown().await;
            return Err(e);
        }
        tracing::info!(container = %name, op, spawned_ms, ready_ms = started.elapsed().as_millis() as u64,
            "process sandbox ready");
        Ok(sandbox)
    }
}

/// A node that stops normally drops its host: every container still under its state
/// dir is killed and removed, whatever happened to the `Sandbox` handles. Blocking.
impl Drop for ProcessHost {
    fn drop(&mut self) {
        self.sweep();
    }
}

/// Runs `criu check`; a failure is logged and disables Full snapshots.
fn criu_works(criu: &Path) -> bool {
    match std::process::Command::new(criu).arg("check").output() {
        Ok(out) if out.status.success() => true,
        Ok(out) => {
            let text = String::from_utf8_lossy(&out.stderr).into_owned()
                + &String::from_utf8_lossy(&out.stdout);
            tracing::warn!(criu = %criu.display(), output = %runc::tail(&text, 3),
                "criu check failed: no Full snapshots");
            false
        }
        Err(e) => {
            tracing::warn!(criu = %criu.display(), error = %e, "cannot run criu: no Full snapshots");
            false
        }
    }
}

fn find_in_path(bin: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/bin".into(), "/sbin".into()])
        .map(|d| d.join(bin))
        .find(|p| p.is_file())
}
