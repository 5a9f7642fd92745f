//! One node's registration stream on this replica: the hello and its lease, the node's
//! assertions written through to the store, heartbeats renewing the lease, and the
//! clean-up when the stream ends.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use ate_dataspace::Assertion;
use ate_model::NodeAssertion;
use ate_model::names::validate_label;
use ate_proto::atenode::{self as pb, node_message::Message as In};
use ate_seam::NodeRegistration;
use ate_seam::carry::{self, RawAssertion};
use ate_store::{Store, StoreError};
use tokio::sync::mpsc;
use tonic::{Status, Streaming};

use super::{LIVENESS_BOUNDS, Registry, delete_assertions, node_lease, stopped};

type Out = mpsc::Sender<Result<pb::RegistryMessage, Status>>;

/// How long a node has to say hello.
const HELLO_WITHIN: Duration = Duration::from_secs(10);
/// How often writes the store refused are tried again.
const RETRY_EVERY: Duration = Duration::from_millis(500);

fn reply(message: pb::registry_message::Message) -> Result<pb::RegistryMessage, Status> {
    Ok(pb::RegistryMessage {
        message: Some(message),
    })
}

fn fenced(reason: String) -> Result<pb::RegistryMessage, Status> {
    reply(pb::registry_message::Message::Fenced(pb::Fenced { reason }))
}

fn accepted(generation: u64) -> Result<pb::RegistryMessage, Status> {
    reply(pb::registry_message::Message::Accepted(pb::Accepted {
        generation,
    }))
}

/// Runs one registration stream to its end. `certified` is the node name the caller's
/// certificate carries, when the registry checks certificates: the hello must name it.
pub(super) async fn run(
    registry: Registry,
    mut inbound: Streaming<pb::NodeMessage>,
    out: Out,
    certified: Option<String>,
) {
    let hello = match tokio::time::timeout(HELLO_WITHIN, inbound.message()).await {
        Ok(Ok(Some(pb::NodeMessage {
            message: Some(In::Hello(h)),
        }))) => h,
        Ok(Ok(_)) => {
            let _ = out
                .send(Err(Status::invalid_argument(
                    "hello: a registration starts with hello",
                )))
                .await;
            return;
        }
        Ok(Err(_)) | Err(_) => return,
    };
    if let Some(name) = certified
        && name != hello.node
    {
        tracing::warn!(node = %hello.node, certificate = %name, "registration refused: the certificate is another node's");
        let _ = out
            .send(Err(Status::permission_denied(format!(
                "hello: node {} cannot register with the certificate of node {name}",
                hello.node
            ))))
            .await;
        return;
    }
    let mut session = match Session::open(&registry, hello).await {
        Ok(s) => s,
        Err(refusal) => {
            let _ = out.send(refusal).await;
            return;
        }
    };
    let node = session.node.clone();
    let outcome = session.serve(&registry, &mut inbound, &out).await;
    registry.local().remove(&node);
    match outcome {
        Outcome::Stopping => {
            let _ = out
                .send(Err(Status::unavailable("control plane shutting down")))
                .await;
        }
        Outcome::Fenced(reason) => {
            let _ = out.send(fenced(reason.clone())).await;
            session.retract(&registry, &reason).await;
        }
        Outcome::Ended(reason) => session.retract(&registry, &reason).await,
    }
}

enum Outcome {
    /// The replica is going away: leave the lease and records to the node's next replica.
    Stopping,
    /// The node was declared lost.
    Fenced(String),
    /// The stream ended or went quiet.
    Ended(String),
}

/// What the session wants stored for one record key.
enum Want {
    Present(NodeAssertion),
    Absent,
}

struct Session {
    store: Arc<dyn Store>,
    node: String,
    incarnation: String,
    ttl: Duration,
    generation: u64,
    /// Writes not yet in the store (it refused or was away), by record key.
    pending: BTreeMap<String, Want>,
    /// The version this session last wrote, by record key.
    written: HashMap<String, u64>,
}

impl Session {
    /// Opens the session, or says why not: an error status, or `fenced` for a node that
    /// was declared lost since it last held its lease.
    async fn open(
        registry: &Registry,
        hello: pb::Hello,
    ) -> Result<Self, Result<pb::RegistryMessage, Status>> {
        validate_label("node", &hello.node)
            .map_err(|e| Err(Status::invalid_argument(e.to_string())))?;
        if hello.incarnation.is_empty() {
            return Err(Err(Status::invalid_argument(
                "incarnation: must not be empty",
            )));
        }
        let ttl = Duration::from_millis(hello.liveness_timeout_ms);
        if ttl < LIVENESS_BOUNDS.0 || ttl > LIVENESS_BOUNDS.1 {
            return Err(Err(Status::invalid_argument(format!(
                "liveness_timeout_ms: must be between {} and {}",
                LIVENESS_BOUNDS.0.as_millis(),
                LIVENESS_BOUNDS.1.as_millis()
            ))));
        }
        let store = registry.store().clone();
        let key = node_lease(&hello.node);
        let lease = match store.acquire_lease(&key, &hello.incarnation, ttl).await {
            Ok(l) => l,
            Err(StoreError::LeaseHeld { .. }) => {
                return Err(Err(Status::aborted(format!(
                    "node {} is registered by another incarnation or being recovered; retry",
                    hello.node
                ))));
            }
            Err(e) => return Err(Err(Status::unavailable(format!("store: {e}")))),
        };
        let session = Self {
            store,
            node: hello.node.clone(),
            incarnation: hello.incarnation.clone(),
            ttl,
            generation: lease.generation,
            pending: BTreeMap::new(),
            written: HashMap::new(),
        };
        if hello.generation != 0 && hello.generation != lease.generation {
            // The lease changed hands since the node last held it: it was declared lost.
            let reason = format!(
                "node {} was declared lost (lease generation {} is now {})",
                hello.node, hello.generation, lease.generation
            );
            session.retract(registry, &reason).await;
            return Err(fenced(reason));
        }
        // Whatever an earlier incarnation left behind is stale now.
        let mine = session.incarnation.clone();
        if let Err(e) =
            delete_assertions(&session.store, &session.node, |a| a.incarnation != mine).await
        {
            tracing::warn!(node = %session.node, error = %e, "cannot delete a former incarnation's assertions");
        }
        registry.local().insert(hello.node.clone());
        tracing::info!(node = %hello.node, incarnation = %hello.incarnation, generation = lease.generation, "node registered");
        Ok(session)
    }

    async fn serve(
        &mut self,
        registry: &Registry,
        inbound: &mut Streaming<pb::NodeMessage>,
        out: &Out,
    ) -> Outcome {
        if out.send(accepted(self.generation)).await.is_err() {
            return Outcome::Ended("the node went away".into());
        }
        let mut stopping = registry.inner.stopping.subscribe();
        let mut retry = tokio::time::interval(RETRY_EVERY);
        let mut quiet = Box::pin(tokio::time::sleep(self.ttl));
        loop {
            tokio::select! {
                message = inbound.message() => match message {
                    Ok(Some(pb::NodeMessage { message: Some(m) })) => match m {
                        In::Heartbeat(_) => {
                            quiet.as_mut().reset(tokio::time::Instant::now() + self.ttl);
                            match self.renew().await {
                                Ok(Some(generation)) => {
                                    if out.send(accepted(generation)).await.is_err() {
                                        return Outcome::Ended("the node went away".into());
                                    }
                                }
                                Ok(None) => {}
                                Err(reason) => return Outcome::Fenced(reason),
                            }
                        }
                        In::Asserted(a) => {
                            let raw = RawAssertion { type_tag: a.r#type, id: a.id, value_json: a.value_json };
                            if let Err(e) = self.check(&raw) {
                                return Outcome::Ended(format!("invalid assertion: {e}"));
                            }
                            let record = NodeAssertion {
                                node: self.node.clone(),
                                type_tag: raw.type_tag,
                                id: raw.id,
                                value: raw.value_json,
                                incarnation: self.incarnation.clone(),
                                version: 0,
                            };
                            self.pending.insert(record.key(), Want::Present(record));
                            self.flush().await;
                        }
                        In::Retracted(r) => {
                            let key = NodeAssertion {
                                node: self.node.clone(),
                                type_tag: r.r#type,
                                id: r.id,
                                ..Default::default()
                            }
                            .key();
                            self.pending.insert(key, Want::Absent);
                            self.flush().await;
                        }
                        In::Hello(_) => return Outcome::Ended("hello sent twice".into()),
                    },
                    Ok(Some(_)) => {}
                    Ok(None) => return Outcome::Ended("the node closed its stream".into()),
                    Err(status) => return Outcome::Ended(format!("stream broke: {status}")),
                },
                _ = &mut quiet => {
                    return Outcome::Ended(format!("no heartbeat for {:?}", self.ttl));
                }
                _ = retry.tick(), if !self.pending.is_empty() => self.flush().await,
                _ = stopped(&mut stopping) => return Outcome::Stopping,
            }
        }
    }

    fn check(&self, raw: &RawAssertion) -> Result<(), String> {
        carry::validate(raw).map_err(|e| e.to_string())?;
        if raw.type_tag == NodeRegistration::TYPE {
            let reg: NodeRegistration =
                serde_json::from_str(&raw.value_json).map_err(|e| e.to_string())?;
            if reg.name != self.node || reg.incarnation != self.incarnation {
                return Err(format!(
                    "registration of {}/{} on the stream of {}/{}",
                    reg.name, reg.incarnation, self.node, self.incarnation
                ));
            }
        }
        Ok(())
    }

    /// Renews the lease: the generation to confirm, `None` if the store cannot say now,
    /// or why the node is fenced.
    async fn renew(&self) -> Result<Option<u64>, String> {
        let key = node_lease(&self.node);
        match self
            .store
            .acquire_lease(&key, &self.incarnation, self.ttl)
            .await
        {
            Ok(l) if l.generation == self.generation => Ok(Some(l.generation)),
            Ok(l) => Err(format!(
                "node {} was declared lost (lease generation {} is now {})",
                self.node, self.generation, l.generation
            )),
            Err(StoreError::LeaseHeld { .. }) => Err(format!(
                "node {} was declared lost (its lease is held by another)",
                self.node
            )),
            Err(e) => {
                tracing::warn!(node = %self.node, error = %e, "cannot renew the node's lease");
                Ok(None)
            }
        }
    }

    /// Writes what is pending, in key order, stopping at the first store failure.
    async fn flush(&mut self) {
        while let Some((key, want)) = self.pending.pop_first() {
            let result = match &want {
                Want::Present(a) => self.put(a).await,
                Want::Absent => self.delete(&key).await,
            };
            if let Err(e) = result {
                tracing::warn!(node = %self.node, %key, error = %e, "cannot store a node assertion; will retry");
                self.pending.insert(key, want);
                return;
            }
        }
    }

    async fn put(&mut self, a: &NodeAssertion) -> Result<(), StoreError> {
        let key = a.key();
        for _ in 0..5 {
            let version = match self.written.get(&key) {
                Some(v) => Some(*v),
                None => match self.store.get::<NodeAssertion>(&key).await {
                    Ok(have) => Some(have.version),
                    Err(StoreError::NotFound { .. }) => None,
                    Err(e) => return Err(e),
                },
            };
            let result = match version {
                Some(version) => {
                    self.store
                        .update(NodeAssertion {
                            version,
                            ..a.clone()
                        })
                        .await
                }
                None => self.store.create(a.clone()).await,
            };
            match result {
                Ok(stored) => {
                    self.written.insert(key, stored.version);
                    return Ok(());
                }
                Err(
                    StoreError::Conflict { .. }
                    | StoreError::NotFound { .. }
                    | StoreError::AlreadyExists { .. },
                ) => {
                    self.written.remove(&key);
                }
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Internal(format!(
            "{key} kept changing under the write"
        )))
    }

    async fn delete(&mut self, key: &str) -> Result<(), StoreError> {
        self.written.remove(key);
        match self.store.delete::<NodeAssertion>(key, None).await {
            Ok(()) | Err(StoreError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Retracts the node: gives its lease up first, so the node cannot carry on through
    /// another replica without being told it was lost, then deletes its records. If the
    /// store is away, the lease expires and a reaper finishes the job.
    async fn retract(&self, registry: &Registry, reason: &str) {
        let key = node_lease(&self.node);
        match self.store.release_lease(&key, &self.incarnation).await {
            Ok(()) | Err(StoreError::LeaseNotHeld { .. }) => {}
            Err(e) => {
                tracing::warn!(node = %self.node, error = %e, "cannot release the node's lease; it will expire");
                return;
            }
        }
        match delete_assertions(registry.store(), &self.node, |a| {
            a.incarnation == self.incarnation
        })
        .await
        {
            Ok(n) => tracing::warn!(node = %self.node, %reason, retracted = n, "node left"),
            Err(e) => {
                tracing::warn!(node = %self.node, error = %e, "cannot delete the node's assertions; a reaper will")
            }
        }
    }
}
