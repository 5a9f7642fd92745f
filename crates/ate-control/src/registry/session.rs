//! One node's registration stream on this replica: the hello and its lease, the node's
//! assertions written through to the store, heartbeats renewing the lease, and the
//! clean-up when the stream ends. A node speaks only for itself: an assertion is written
//! only once [`trust`] accepts it, within the bounds below, and one it refuses ends the
//! stream with the reason (the node is then fenced when it comes back, and starts over as a
//! new incarnation).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ate_dataspace::Assertion;
use ate_model::NodeAssertion;
use ate_model::names::validate_label;
use ate_proto::atenode::{self as pb, node_message::Message as In};
use ate_seam::NodeRegistration;
use ate_seam::carry::{self, RawAssertion};
use ate_store::{Store, StoreError};
use tokio::sync::mpsc;
use tonic::{Status, Streaming};

use super::trust::{self, Claim, Verdict};
use super::{LIVENESS_BOUNDS, Registry, delete_assertions, node_lease, stopped};

type Out = mpsc::Sender<Result<pb::RegistryMessage, Status>>;

/// The node lease's TTL for a node with liveness timeout `timeout`: the replica waits a
/// margin beyond it, during which the node, short of confirmations, has fenced itself.
fn lease_ttl(timeout: Duration) -> Duration {
    timeout + ate_seam::fencing_margin(timeout)
}

/// How long a node has to say hello.
const HELLO_WITHIN: Duration = Duration::from_secs(10);
/// How often writes the store refused, and assertions it could not vouch for yet, are
/// tried again.
const RETRY_EVERY: Duration = Duration::from_millis(500);

/// Most assertions one node holds at a time. A node asserts its registration and its cache
/// advert, an advert per worker it hosts (kept after the worker is removed), and for each
/// actor on it a route, an idle mark and an exit at most: about 4 per worker slot. This
/// leaves room for some 16 000 busy slots (250 times the default capacity), while bounding
/// what one node certificate can make the store and every replica's mirror hold.
const MAX_NODE_ASSERTIONS: usize = 65_536;

/// Largest value one assertion may have. The largest legitimate one is a node's cache
/// advert, one `atespace/actor/id` key (about 100 bytes) per cached snapshot: 4 MiB lists
/// some 40 000. Routes, marks and worker adverts are under 2 KiB.
const MAX_ASSERTION_BYTES: usize = 4 << 20;

/// Longest assertion id. Ids are node names, worker keys (`namespace/pool/name`) and actor
/// keys (`atespace/id`): DNS labels joined by `/`, under 200 bytes.
const MAX_ID_BYTES: usize = 512;

/// Most bytes (ids and values) one node's assertions hold at a time: the count above at
/// under 1 KiB each, with a full cache advert.
const MAX_NODE_ASSERTION_BYTES: usize = 64 << 20;

/// How many of the node's liveness timeouts an assertion the store contradicts is held
/// back, unwritten, before it is refused. A node asserts what was true when it sent it:
/// the actor it routes may be stopped by the time the replica works through the stream,
/// and then the node's retraction follows right behind. The liveness timeout bounds how
/// far behind a stream can be (heartbeats queue behind the assertions; a session that
/// cannot work through them in time ends as quiet), so by twice that the retraction has
/// come if it ever will. Held back, the assertion has no effect meanwhile.
const UNBOUND_GRACE_TIMEOUTS: u32 = 2;

fn reply(message: pb::registry_message::Message) -> Result<pb::RegistryMessage, Status> {
    Ok(pb::RegistryMessage {
        message: Some(message),
    })
}

fn fenced(reason: String) -> Result<pb::RegistryMessage, Status> {
    reply(pb::registry_message::Message::Fenced(pb::Fenced { reason }))
}

/// Refuses an id over [`MAX_ID_BYTES`] before it is quoted in a message or a log line.
fn check_id(id: &str) -> Result<(), Status> {
    if id.len() > MAX_ID_BYTES {
        return Err(Status::invalid_argument(format!(
            "id: {} bytes long; an assertion id has at most {MAX_ID_BYTES}",
            id.len()
        )));
    }
    Ok(())
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
        Outcome::Left(reason) => session.retract(&registry, &reason).await,
        Outcome::Lost(reason) => {
            // The node may only be cut off from this replica and still running its actors:
            // it is declared lost only when its lease runs out, by which time it has
            // fenced itself (see `ate_seam::fencing_margin`), or it comes back in time.
            tracing::warn!(node = %node, %reason, "node stream lost; its lease decides");
        }
        Outcome::Refused(status) => {
            tracing::warn!(node = %node, code = ?status.code(), reason = %status.message(), "node assertion refused; ending its stream");
            // Retracted before the node hears of it: the node comes back at once, and must
            // find its lease given up (so it is fenced) rather than race this clean-up.
            session.retract(&registry, status.message()).await;
            let _ = out.send(Err(status)).await;
        }
    }
}

enum Outcome {
    /// The replica is going away: leave the lease and records to the node's next replica.
    Stopping,
    /// The node was declared lost.
    Fenced(String),
    /// The node closed its stream: it has stopped (its actors first), or starts over.
    Left(String),
    /// The stream broke or went quiet: the node may be cut off but alive.
    Lost(String),
    /// The node asserted something it may not: the status tells it why.
    Refused(Status),
}

/// What the session wants stored for one record key.
enum Want {
    Present(NodeAssertion),
    Absent,
}

/// What a node holds asserted on its stream (written, pending or held back), by record key,
/// with the size of each in bytes: what the bounds count.
#[derive(Debug, Default)]
struct Tally {
    sizes: HashMap<String, usize>,
    bytes: usize,
}

impl Tally {
    /// Counts an assertion of `bytes` under `key` (new, or replacing what was there), or
    /// says which bound it would break.
    fn count(&mut self, key: &str, bytes: usize) -> Result<(), Status> {
        let before = self.sizes.get(key).copied();
        let count = self.sizes.len() + usize::from(before.is_none());
        if count > MAX_NODE_ASSERTIONS {
            return Err(Status::resource_exhausted(format!(
                "assertions: a node may hold at most {MAX_NODE_ASSERTIONS} assertions"
            )));
        }
        let total = self.bytes - before.unwrap_or(0) + bytes;
        if total > MAX_NODE_ASSERTION_BYTES {
            return Err(Status::resource_exhausted(format!(
                "assertions: a node's assertions may hold at most {MAX_NODE_ASSERTION_BYTES} bytes"
            )));
        }
        self.sizes.insert(key.to_string(), bytes);
        self.bytes = total;
        Ok(())
    }

    fn forget(&mut self, key: &str) {
        if let Some(bytes) = self.sizes.remove(key) {
            self.bytes -= bytes;
        }
    }
}

/// An assertion not written because the store has not confirmed its claim yet.
struct Held {
    record: NodeAssertion,
    claim: Claim,
    /// Since when the store contradicts the claim; `None` while the store could not say.
    unbound_since: Option<Instant>,
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
    /// What the node holds asserted on this stream, against the bounds.
    live: Tally,
    /// Assertions waiting for the store to confirm them, by record key.
    held: BTreeMap<String, Held>,
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
        let lease = match store
            .acquire_lease(&key, &hello.incarnation, lease_ttl(ttl))
            .await
        {
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
            live: Tally::default(),
            held: BTreeMap::new(),
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
        // Whatever an earlier incarnation left behind is stale now. A node coming back to
        // the registration it holds (its stream broke) keeps its registration, so it is
        // never thought lost meanwhile, and sends everything else again.
        let mine = session.incarnation.clone();
        let resumed = hello.generation != 0;
        if let Err(e) = delete_assertions(&session.store, &session.node, |a| {
            a.incarnation != mine || (resumed && a.type_tag != NodeRegistration::TYPE)
        })
        .await
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
            return Outcome::Lost("the node went away".into());
        }
        let mut stopping = registry.inner.stopping.subscribe();
        let mut retry = tokio::time::interval(RETRY_EVERY);
        // A retry pass after a quiet spell is one pass, not a burst of the ticks missed.
        retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
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
                                        return Outcome::Lost("the node went away".into());
                                    }
                                }
                                Ok(None) => {}
                                Err(reason) => return Outcome::Fenced(reason),
                            }
                        }
                        In::Asserted(a) => {
                            let raw = RawAssertion { type_tag: a.r#type, id: a.id, value_json: a.value_json };
                            if let Err(status) = self.assert(raw).await {
                                return Outcome::Refused(status);
                            }
                        }
                        In::Retracted(r) => {
                            if !carry::is_carried(&r.r#type) {
                                return Outcome::Refused(Status::invalid_argument(format!(
                                    "type: unknown assertion type {:?}", r.r#type
                                )));
                            }
                            if let Err(status) = check_id(&r.id) {
                                return Outcome::Refused(status);
                            }
                            let key = NodeAssertion {
                                node: self.node.clone(),
                                type_tag: r.r#type,
                                id: r.id,
                                ..Default::default()
                            }
                            .key();
                            self.forget(&key);
                            self.pending.insert(key, Want::Absent);
                            self.flush().await;
                        }
                        In::Hello(_) => {
                            return Outcome::Refused(Status::invalid_argument("hello: sent twice"));
                        }
                    },
                    Ok(Some(_)) => {}
                    Ok(None) => return Outcome::Left("the node closed its stream".into()),
                    Err(status) => return Outcome::Lost(format!("stream broke: {status}")),
                },
                _ = &mut quiet => {
                    return Outcome::Lost(format!("no heartbeat for {:?}", self.ttl));
                }
                _ = retry.tick(), if !self.pending.is_empty() || !self.held.is_empty() => {
                    if let Err(status) = self.recheck().await {
                        return Outcome::Refused(status);
                    }
                    self.flush().await;
                }
                _ = stopped(&mut stopping) => return Outcome::Stopping,
            }
        }
    }

    /// Takes one assertion: refused at once if it is malformed, speaks for another node or
    /// goes over a bound; written once the store confirms what it claims, held back until
    /// then.
    async fn assert(&mut self, raw: RawAssertion) -> Result<(), Status> {
        check_id(&raw.id)?;
        if raw.value_json.len() > MAX_ASSERTION_BYTES {
            return Err(Status::resource_exhausted(format!(
                "value: {} {:?} is {} bytes, more than the {MAX_ASSERTION_BYTES} an assertion may hold",
                raw.type_tag,
                raw.id,
                raw.value_json.len()
            )));
        }
        let claim = trust::inspect(&raw, &self.node, &self.incarnation)
            .map_err(Status::invalid_argument)?;
        let record = NodeAssertion {
            node: self.node.clone(),
            type_tag: raw.type_tag,
            id: raw.id,
            value: raw.value_json,
            incarnation: self.incarnation.clone(),
            version: 0,
        };
        let key = record.key();
        self.live
            .count(&key, record.id.len() + record.value.len())?;
        self.held.remove(&key);
        let unbound_since = match trust::verify(&self.store, &self.node, &claim).await {
            Ok(Verdict::Holds) => {
                self.pending.insert(key, Want::Present(record));
                self.flush().await;
                return Ok(());
            }
            Ok(Verdict::Unbound(why)) => {
                tracing::debug!(node = %self.node, %key, %why, "node assertion held back: the store contradicts it");
                Some(Instant::now())
            }
            Err(e) => {
                tracing::warn!(node = %self.node, %key, error = %e, "cannot check a node assertion; will retry");
                None
            }
        };
        // Whatever an earlier value of it said is not to be shown meanwhile.
        self.pending.insert(key.clone(), Want::Absent);
        self.held.insert(
            key,
            Held {
                record,
                claim,
                unbound_since,
            },
        );
        self.flush().await;
        Ok(())
    }

    /// Forgets a retracted assertion, whether written or held.
    fn forget(&mut self, key: &str) {
        self.live.forget(key);
        self.held.remove(key);
    }

    /// Asks the store again about held assertions: those it could not check, and those it
    /// contradicted once their grace is over. Confirmed ones are queued for writing; one
    /// still contradicted after its grace is refused.
    async fn recheck(&mut self) -> Result<(), Status> {
        let grace = self.ttl * UNBOUND_GRACE_TIMEOUTS;
        let now = Instant::now();
        let due: Vec<String> = self
            .held
            .iter()
            .filter(|(_, h)| h.unbound_since.is_none_or(|t| now >= t + grace))
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            let Some(mut held) = self.held.remove(&key) else {
                continue;
            };
            match trust::verify(&self.store, &self.node, &held.claim).await {
                Ok(Verdict::Holds) => {
                    self.pending.insert(key, Want::Present(held.record));
                }
                Ok(Verdict::Unbound(why)) => {
                    if held.unbound_since.is_some() {
                        return Err(Status::invalid_argument(why));
                    }
                    held.unbound_since = Some(now);
                    self.held.insert(key, held);
                }
                Err(e) => {
                    tracing::warn!(node = %self.node, %key, error = %e, "cannot check a node assertion; will retry");
                    self.held.insert(key, held);
                    return Ok(());
                }
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
            .acquire_lease(&key, &self.incarnation, lease_ttl(self.ttl))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_holds_a_bounded_number_of_assertions() {
        let mut live = Tally::default();
        for i in 0..MAX_NODE_ASSERTIONS {
            live.count(&format!("n1/ate.route.v1/team-a/a{i}"), 200)
                .unwrap();
        }
        // A new value under a key held already is not one more.
        live.count("n1/ate.route.v1/team-a/a0", 300).unwrap();
        let refused = live.count("n1/ate.route.v1/team-a/more", 200).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert!(refused.message().starts_with("assertions:"), "{refused:?}");
        // A retraction makes room.
        live.forget("n1/ate.route.v1/team-a/a1");
        live.count("n1/ate.route.v1/team-a/more", 200).unwrap();
    }

    #[test]
    fn a_node_s_assertions_hold_bounded_bytes() {
        let mut live = Tally::default();
        live.count("n1/a", MAX_NODE_ASSERTION_BYTES - 10).unwrap();
        live.count("n1/b", 10).unwrap();
        assert!(live.count("n1/c", 1).is_err());
        // Replacing a value counts the difference only.
        live.count("n1/b", 5).unwrap();
        live.count("n1/c", 5).unwrap();
        assert_eq!(live.bytes, MAX_NODE_ASSERTION_BYTES);
    }
}
