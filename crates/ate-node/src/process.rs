//! The `process` sandbox class on a node: a Linux program per actor, in its own runc
//! container and network namespace ([`ate_process`]). A Data snapshot holds the actor's
//! durable dirs; a Full snapshot adds the CRIU images of the whole container (memory, file
//! descriptors, listening sockets, its tmpfs). Requests reach the program over a fresh
//! connection each, many at once; a checkpoint or stop waits for those in flight.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ate_model::{ActorRef, SnapshotScope};
use ate_process::{Launch, LogStream as ProcessStream, Probe, ProcessError, ProcessHost};
use ate_seam::{
    Body, BodyError, Checkpoint, CheckpointRequest, InvokeError, SeamError, SnapshotRef, WorkerId,
    Workload,
};
use ate_snapshots::{CachedSnapshot, SnapshotFile};
use http_body_util::BodyExt;

use crate::executor::{NodeService, blocking_failed};
use crate::slots::{HostedRef, InFlight, Sandbox, Slots};
use crate::workload;

/// Prefix of the snapshot files that hold CRIU images (the rest are durable dirs).
const IMAGE_PREFIX: &str = "criu.";

/// A process actor on a worker.
#[derive(Debug)]
pub(crate) struct ProcessHosted {
    sandbox: Arc<ate_process::Sandbox>,
    /// Where this worker keeps what the actor needs on the node.
    dir: PathBuf,
    /// Dropped when the actor leaves the worker, which ends its exit watch.
    _gone: tokio::sync::oneshot::Sender<()>,
    gone: Option<tokio::sync::oneshot::Receiver<()>>,
}

impl ProcessHosted {
    /// What the exit watch needs: the sandbox, and a signal that the actor left.
    pub fn exits(
        &mut self,
    ) -> (
        Arc<ate_process::Sandbox>,
        tokio::sync::oneshot::Receiver<()>,
    ) {
        let gone = self.gone.take().unwrap_or_else(|| {
            // Taken once at install; a second watch ends at once.
            tokio::sync::oneshot::channel().1
        });
        (self.sandbox.clone(), gone)
    }

    pub async fn stop(&self) {
        self.sandbox.stop().await;
    }
}

fn process_error(actor: &ActorRef, e: ProcessError) -> SeamError {
    match e {
        ProcessError::InvalidRootfs { .. } => SeamError::InvalidWorkload {
            field: "spec.rootfs".into(),
            reason: e.to_string(),
        },
        ProcessError::Unsupported(_) => SeamError::Internal(e.to_string()),
        other => SeamError::unavailable(actor, other.to_string()),
    }
}

fn invalid(field: &str, reason: impl ToString) -> SeamError {
    SeamError::InvalidWorkload {
        field: field.into(),
        reason: reason.to_string(),
    }
}

/// A name for the worker that is a valid container id and directory name.
fn slug(worker: &WorkerId) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    worker.hash(&mut h);
    let readable: String = format!("{}-{}-{}", worker.namespace, worker.pool, worker.name)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(48)
        .collect();
    format!("{readable}-{:08x}", h.finish() as u32)
}

/// `NAME=value` lines of an env file (blank lines and `#` comments skipped).
fn read_env_file(path: &str) -> Result<Vec<(String, String)>, SeamError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| invalid("spec.envFile", format!("cannot read {path}: {e}")))?;
    let mut vars = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name, value)) = line.split_once('=') else {
            return Err(invalid(
                "spec.envFile",
                format!("{path} line {}: not NAME=value", n + 1),
            ));
        };
        vars.push((name.trim().to_string(), value.to_string()));
    }
    Ok(vars)
}

/// Recreates `dir` empty.
fn fresh_dir(dir: &Path) -> Result<(), SeamError> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(SeamError::Internal(format!("{}: {e}", dir.display()))),
    }
    std::fs::create_dir_all(dir).map_err(|e| SeamError::Internal(format!("{}: {e}", dir.display())))
}

impl NodeService {
    fn process_host(&self) -> Result<&Arc<ProcessHost>, SeamError> {
        self.process
            .as_ref()
            .ok_or_else(|| SeamError::UnsupportedClass {
                node: self.config.name.clone(),
                class: "process".into(),
            })
    }

    /// Starts the actor's program on `worker`: cold, or from a snapshot (its durable dirs,
    /// and its CRIU images for a Full one). Returns once the readiness probe passes.
    pub(crate) async fn process_start(
        &self,
        worker: &WorkerId,
        actor: &ActorRef,
        w: &Workload,
        snapshot: Option<CachedSnapshot>,
    ) -> Result<Sandbox, SeamError> {
        let host = self.process_host()?.clone();
        let spec = &w.spec;
        let slug = slug(worker);
        let dir = self.config.data_dir.join("process").join(&slug);
        let durable: Vec<(String, PathBuf)> = spec
            .durable_dirs
            .iter()
            .enumerate()
            .map(|(i, d)| (d.clone(), dir.join("durable").join(i.to_string())))
            .collect();
        let mut files = Vec::new();
        let identity = serde_json::json!({"atespace": actor.atespace, "id": actor.id});
        let actor_file = dir.join("actor.json");
        {
            let (dir, durable, actor_file) = (dir.clone(), durable.clone(), actor_file.clone());
            let fresh = snapshot.is_none();
            tokio::task::spawn_blocking(move || {
                std::fs::create_dir_all(&dir)
                    .map_err(|e| SeamError::Internal(format!("{}: {e}", dir.display())))?;
                if fresh {
                    for (_, d) in &durable {
                        fresh_dir(d)?;
                    }
                }
                std::fs::write(&actor_file, format!("{identity}\n"))
                    .map_err(|e| SeamError::Internal(format!("{}: {e}", actor_file.display())))
            })
            .await
            .map_err(blocking_failed)??;
        }
        files.push(("/ate/actor".to_string(), actor_file));
        if !spec.module.is_empty() {
            let module = workload::module_file(w, &self.config.data_dir.join("modules")).await?;
            files.push(("/ate/module".to_string(), module));
        }
        let mut env = Vec::new();
        if !spec.env_file.is_empty() {
            env.extend(read_env_file(&spec.env_file)?);
        }
        for e in &spec.env {
            env.retain(|(n, _)| *n != e.name);
            env.push((e.name.clone(), e.value.clone()));
        }
        env.push(("ATE_ACTOR_ID".into(), actor.id.clone()));
        env.push(("ATE_ATESPACE".into(), actor.atespace.clone()));
        let rootfs = if spec.rootfs.is_empty() {
            None
        } else {
            let (path, cache) = (
                PathBuf::from(&spec.rootfs),
                self.config.data_dir.join("rootfs"),
            );
            let prepared =
                tokio::task::spawn_blocking(move || ate_process::prepare_rootfs(&path, &cache))
                    .await
                    .map_err(blocking_failed)?
                    .map_err(|e| invalid("spec.rootfs", e))?;
            Some(prepared)
        };
        let probe = spec.probe();
        let launch = Launch {
            name: format!("ate-{slug}"),
            command: spec.command.iter().chain(&spec.args).cloned().collect(),
            env,
            working_dir: spec.working_dir.clone(),
            port: spec.port,
            readiness: Probe {
                http_path: (!probe.tcp).then(|| probe.path.clone()),
                port: if probe.port == 0 {
                    spec.port
                } else {
                    probe.port
                },
                timeout: probe.timeout.0,
            },
            durable_dirs: durable.clone(),
            files,
            memory_limit_bytes: u64::from(spec.limits.memory_mib) << 20,
            rootfs,
            hidden: self.config.private_dirs.clone(),
            egress: spec.egress.clone(),
            log: self.process_log(actor),
        };
        let sandbox = match snapshot {
            None => host.start(launch).await,
            Some(cached) => {
                let images = dir.join("images");
                let full = cached.manifest.scope == SnapshotScope::Full;
                let durable = durable.clone();
                let images_at = images.clone();
                tokio::task::spawn_blocking(move || unpack(&cached, &durable, &images_at))
                    .await
                    .map_err(blocking_failed)??;
                if full {
                    if !host.can_checkpoint() {
                        return Err(SeamError::Snapshot(format!(
                            "node {} cannot restore a full snapshot: criu is not usable here",
                            self.config.name
                        )));
                    }
                    host.restore(launch, &images).await
                } else {
                    host.start(launch).await
                }
            }
        }
        .map_err(|e| process_error(actor, e))?;
        let (gone_tx, gone_rx) = tokio::sync::oneshot::channel();
        Ok(Sandbox::Process(ProcessHosted {
            sandbox: Arc::new(sandbox),
            dir,
            _gone: gone_tx,
            gone: Some(gone_rx),
        }))
    }

    fn process_log(&self, actor: &ActorRef) -> ate_process::LogSink {
        let sink = self.logs.sink(actor);
        Arc::new(move |stream: ProcessStream, line: String| {
            let stream = match stream {
                ProcessStream::Stdout => ate_wasm::OutputStream::Stdout,
                ProcessStream::Stderr => ate_wasm::OutputStream::Stderr,
            };
            sink(stream, format!("{line}\n").as_bytes());
        })
    }

    /// Saves the actor once the requests in flight are done: its durable dirs, and for a
    /// Full snapshot the CRIU images of its container. A sealing checkpoint leaves the
    /// program stopped.
    pub(crate) async fn process_save(
        &self,
        req: &CheckpointRequest,
        hosted: HostedRef,
    ) -> Result<Checkpoint, SeamError> {
        let host = self.process_host()?.clone();
        let mut guard = hosted.write_owned().await;
        guard.parked = req.seal;
        let Sandbox::Process(p) = &guard.sandbox else {
            return Err(SeamError::Internal("not a process actor".into()));
        };
        let images = if req.scope == SnapshotScope::Full {
            if !host.can_checkpoint() {
                return Err(SeamError::Snapshot(format!(
                    "node {} cannot take a full snapshot: criu is not usable here",
                    self.config.name
                )));
            }
            let images = p.dir.join("checkpoint");
            let at = images.clone();
            tokio::task::spawn_blocking(move || fresh_dir(&at))
                .await
                .map_err(blocking_failed)??;
            Some(images)
        } else {
            None
        };
        // The durable dirs are packed to files here, never into memory; the snapshot
        // hands them (and the CRIU images) over to the cache, and what a failure leaves
        // is removed below.
        let packed = p.dir.join("packed");
        let at = packed.clone();
        tokio::task::spawn_blocking(move || fresh_dir(&at))
            .await
            .map_err(blocking_failed)??;
        let max_bytes = req.workload.spec.snapshots.max_bytes();
        let written = self
            .process_write(req, p, images.as_deref(), &packed, max_bytes)
            .await;
        let leftovers = [Some(packed), images]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>();
        tokio::task::spawn_blocking(move || {
            for dir in leftovers {
                let _ = std::fs::remove_dir_all(dir);
            }
        })
        .await
        .map_err(blocking_failed)?;
        let (store, bytes) = written?;
        if req.seal {
            p.sandbox.stop().await;
        }
        drop(guard);
        Ok(Checkpoint {
            snapshot: SnapshotRef {
                location: store.location().to_string(),
                owner: req.actor.clone(),
                id: req.id.clone(),
                scope: req.scope,
            },
            bytes,
        })
    }

    /// Takes the snapshot (one freeze over the CRIU dump into `images` and the packing of
    /// the durable dirs into `packed`, within `max_bytes`) and writes it.
    async fn process_write(
        &self,
        req: &CheckpointRequest,
        p: &ProcessHosted,
        images: Option<&Path>,
        packed: &Path,
        max_bytes: u64,
    ) -> Result<(ate_snapshots::SnapshotStore, u64), SeamError> {
        let dirs = p
            .sandbox
            .snapshot(images, packed, max_bytes)
            .await
            .map_err(|e| match e {
                ProcessError::TooLarge { size, limit } => SeamError::SnapshotTooLarge {
                    actor: req.actor.to_string(),
                    size,
                    limit,
                },
                ProcessError::Snapshot { .. } | ProcessError::Io { .. } => {
                    SeamError::Snapshot(e.to_string())
                }
                other => process_error(&req.actor, other),
            })?;
        let mut files = Vec::new();
        if let Some(images) = images.map(Path::to_path_buf) {
            files.extend(
                tokio::task::spawn_blocking(move || image_files(&images))
                    .await
                    .map_err(blocking_failed)??,
            );
        }
        files.extend(
            dirs.into_iter()
                .map(|(name, path)| SnapshotFile::path(name, path)),
        );
        let runtime = format!("ate/{} {}", env!("CARGO_PKG_VERSION"), "process/runc");
        self.write_snapshot(req, "process", req.scope, &runtime, files)
            .await
    }

    /// Passes one request to the program over a connection of its own, streaming both
    /// bodies. The shared lock and the in-flight mark last until the response ends.
    pub(crate) async fn process_invoke(
        &self,
        worker: &WorkerId,
        actor: &ActorRef,
        hosted: HostedRef,
        in_flight: InFlight,
        request: http::Request<Body>,
    ) -> Result<http::Response<Body>, InvokeError> {
        let guard = hosted.read_owned().await;
        let Sandbox::Process(p) = &guard.sandbox else {
            return Err(SeamError::Internal("not a process actor".into()).into());
        };
        if guard.parked {
            return Err(InvokeError::refused(
                Slots::not_hosted(worker, actor),
                request,
            ));
        }
        let stream = p.sandbox.connect().await.map_err(|e| {
            SeamError::unavailable(actor, format!("cannot reach the actor's program: {e}"))
        })?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| SeamError::unavailable(actor, format!("actor connection: {e}")))?;
        tokio::spawn(async move {
            // Holds the actor (no checkpoint) and counts the request until it is answered.
            let _held = (guard, in_flight);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "actor connection ended with an error");
            }
        });
        let (mut parts, body) = request.into_parts();
        let target = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        parts.uri = target
            .parse()
            .unwrap_or_else(|_| http::Uri::from_static("/"));
        parts.headers.insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
        let response = sender
            .send_request(http::Request::from_parts(parts, body))
            .await
            .map_err(|e| {
                tracing::warn!(actor = %actor, error = %e, "request to the actor's program failed");
                SeamError::unavailable(actor, format!("the actor's program did not answer: {e}"))
            })?;
        Ok(response.map(|b| b.map_err(|e| -> BodyError { Box::new(e) }).boxed()))
    }
}

/// Restores the durable dirs of a cached snapshot, and lays out its CRIU images (if any)
/// in `images`.
fn unpack(
    cached: &CachedSnapshot,
    durable: &[(String, PathBuf)],
    images: &Path,
) -> Result<(), SeamError> {
    let snapshot_error = |e: ate_snapshots::SnapshotError| SeamError::Snapshot(e.to_string());
    let mut data = Vec::new();
    fresh_dir(images)?;
    for f in &cached.manifest.files {
        let path = cached.file(&f.name).map_err(snapshot_error)?;
        match f.name.strip_prefix(IMAGE_PREFIX) {
            // `criu.`, `criu..` and `criu...` are valid snapshot file names, but would
            // name the image dir itself or its parent.
            Some(image @ ("" | "." | "..")) => {
                return Err(SeamError::Snapshot(format!(
                    "snapshot file {}: {image:?} is not an image name",
                    f.name
                )));
            }
            Some(image) => {
                let to = images.join(image);
                std::fs::hard_link(&path, &to)
                    .or_else(|_| std::fs::copy(&path, &to).map(drop))
                    .map_err(|e| SeamError::Snapshot(format!("{}: {e}", to.display())))?;
            }
            None => data.push((f.name.clone(), path)),
        }
    }
    ate_process::unpack_dirs(&data, durable).map_err(|e| SeamError::Snapshot(e.to_string()))
}

/// The files of a CRIU image dir, as snapshot files (read where they are, not loaded).
fn image_files(dir: &Path) -> Result<Vec<SnapshotFile>, SeamError> {
    let io = |e: std::io::Error| SeamError::Snapshot(format!("{}: {e}", dir.display()));
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        if !entry.file_type().map_err(io)?.is_file() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        files.push(SnapshotFile::path(
            format!("{IMAGE_PREFIX}{name}"),
            entry.path(),
        ));
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ate_snapshots::{Manifest, describe_files};

    #[test]
    fn image_names_that_name_a_dir_are_refused() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("snapshot");
        std::fs::create_dir_all(&dir).expect("snapshot dir");
        let images = tmp.path().join("work/images");
        for name in ["criu.", "criu..", "criu..."] {
            std::fs::write(dir.join(name), "image").expect("file");
            let files = vec![(name.to_string(), bytes::Bytes::from_static(b"image"))];
            let actor = ActorRef::new("team-a", "c1");
            let manifest = Manifest::new(
                &actor,
                "0001-a",
                "process",
                SnapshotScope::Full,
                "t",
                describe_files(&files).expect("valid names"),
            );
            let cached = CachedSnapshot {
                manifest,
                dir: dir.clone(),
            };
            let err = unpack(&cached, &[], &images).expect_err(name);
            assert!(err.to_string().contains("is not an image name"), "{err}");
        }
    }
}
