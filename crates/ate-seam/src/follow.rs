//! What a process away from the control plane knows of nodes: a router follows the live
//! nodes' registrations and routes from any control-plane replica into a local dataspace,
//! and reaches the nodes over the network ([`RemoteNodes`]).
//!
//! What a follower knows is only as good as its last word from a replica: replicas send a
//! heartbeat every [`WATCH_HEARTBEAT`], and a follower that has heard no replica for a node's
//! liveness timeout minus the fencing margin drops that node's registration (so a router
//! stops forwarding to it) until a replica vouches for it again. By then the node, if it was
//! cut off too, has fenced itself; if it was declared lost, its actors may run elsewhere.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ate_dataspace::Assertion;
use tokio::time::Instant;

use ate_dataspace::{Dataspace, Id, Owner};
use ate_proto::atenode::{self as pb, registry_client::RegistryClient, watch_event::Event};
use ate_tls::PeerIdentity;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::carry::{self, RawAssertion};
use crate::{
    Dialer, MAX_MESSAGE_BYTES, NodeDirectory, NodeExecutor, NodeRegistration, RemoteExecutor,
    SeamError,
};

/// How often a replica tells its followers it is there.
pub const WATCH_HEARTBEAT: Duration = Duration::from_secs(1);

/// How long a follower waits for any word (a change or a heartbeat) from its replica before
/// it moves to the next: a few missed heartbeats.
const WATCH_SILENCE: Duration = Duration::from_secs(3);

/// Nodes reached over the network, found by their registrations in a dataspace (mirrored
/// from the registry, or followed from a control plane). One channel per node address,
/// reused across calls and replaced when the node comes back elsewhere.
#[derive(Debug, Clone)]
pub struct RemoteNodes {
    dataspace: Dataspace,
    dialer: Dialer,
    executors: Arc<Mutex<Executors>>,
}

/// An executor per node name, with the address it was made for.
type Executors = HashMap<String, (String, Arc<dyn NodeExecutor>)>;

impl RemoteNodes {
    /// Nodes reached over plaintext.
    pub fn new(dataspace: Dataspace) -> Self {
        Self {
            dataspace,
            dialer: Dialer::plaintext(),
            executors: Arc::default(),
        }
    }

    /// The same nodes, reached through `dialer` (with TLS, each must present its own
    /// node certificate).
    pub fn with_dialer(mut self, dialer: Dialer) -> Self {
        self.dialer = dialer;
        self
    }

    fn executors(&self) -> MutexGuard<'_, Executors> {
        // Every mutation is one insert.
        self.executors.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl NodeDirectory for RemoteNodes {
    fn dataspace(&self) -> &Dataspace {
        &self.dataspace
    }

    fn executor(&self, node: &str) -> Result<Arc<dyn NodeExecutor>, SeamError> {
        let unavailable = || SeamError::NodeUnavailable { node: node.into() };
        let registration = self
            .dataspace
            .get::<NodeRegistration>(&Id::from(node))
            .ok_or_else(unavailable)?;
        if registration.address.is_empty() {
            return Err(unavailable());
        }
        let mut executors = self.executors();
        if let Some((address, executor)) = executors.get(node)
            && *address == registration.address
        {
            return Ok(executor.clone());
        }
        let executor: Arc<dyn NodeExecutor> = Arc::new(RemoteExecutor::dial_lazy(
            &self.dialer,
            &registration.address,
            node,
        )?);
        executors.insert(
            node.to_string(),
            (registration.address.clone(), executor.clone()),
        );
        Ok(executor)
    }
}

/// Follows assertions of `types` from the control plane into a fresh dataspace, failing
/// over between `controls` in turn. What is known stays while no replica answers; a
/// reconnect replaces it with the replica's view, changing only what differs. Plaintext;
/// see [`follow_control_with`].
pub fn follow_control(controls: Vec<String>, types: &[&str]) -> (Dataspace, ControlFollower) {
    follow_control_with(controls, types, Dialer::plaintext())
}

/// [`follow_control`], reaching the replicas through `dialer` (with TLS, they must present
/// the control plane's certificate, and this process's own must be a router's or a
/// control plane's to be let in).
pub fn follow_control_with(
    controls: Vec<String>,
    types: &[&str],
    dialer: Dialer,
) -> (Dataspace, ControlFollower) {
    let dataspace = Dataspace::new();
    let owner = dataspace.owner("control-plane");
    let types: Vec<String> = types.iter().map(|t| t.to_string()).collect();
    let (synced_tx, synced) = watch::channel(false);
    let task = tokio::spawn(run(controls, types, dialer, owner, synced_tx));
    (dataspace, ControlFollower { task, synced })
}

/// Keeps a [`follow_control`] going; dropping it stops it.
#[derive(Debug)]
pub struct ControlFollower {
    task: JoinHandle<()>,
    synced: watch::Receiver<bool>,
}

impl ControlFollower {
    /// Waits until a replica's whole view has arrived once.
    pub async fn synced(&mut self) {
        let _ = self.synced.wait_for(|s| *s).await.map(drop);
    }
}

impl Drop for ControlFollower {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Key = (String, String);

/// What a follower holds: the assertions in its dataspace, and when it last heard a replica.
struct Followed {
    owner: Owner,
    held: BTreeMap<Key, String>,
    heard: Instant,
}

impl Followed {
    /// When the first held node registration goes unconfirmed for too long.
    fn next_expiry(&self) -> Option<Instant> {
        self.held
            .iter()
            .filter_map(|(k, v)| unconfirmed_after(k, v))
            .min()
            .map(|bound| self.heard + bound)
    }

    /// Drops every node registration no replica has confirmed within its bound.
    fn expire(&mut self) {
        let now = Instant::now();
        let due: Vec<Key> = self
            .held
            .iter()
            .filter(|(k, v)| unconfirmed_after(k, v).is_some_and(|b| self.heard + b <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            tracing::warn!(node = %key.1, "no control plane confirmed the node in time; not forwarding to it");
            take(&self.owner, &mut self.held, &key);
        }
    }
}

/// How long a node registration stays trusted without a word from any replica: the node's
/// liveness timeout less the fencing margin. `None` for other assertions, and for a node
/// that announces no timeout.
fn unconfirmed_after(key: &Key, value_json: &str) -> Option<Duration> {
    if key.0 != NodeRegistration::TYPE {
        return None;
    }
    let reg: NodeRegistration = serde_json::from_str(value_json).ok()?;
    let timeout = Duration::from_millis(reg.liveness_timeout_ms?);
    Some(timeout.saturating_sub(crate::fencing_margin(timeout)))
}

fn lock(f: &Mutex<Followed>) -> MutexGuard<'_, Followed> {
    f.lock().unwrap_or_else(|p| p.into_inner())
}

/// Sleeps until `at`, or forever without it.
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn run(
    controls: Vec<String>,
    types: Vec<String>,
    dialer: Dialer,
    owner: Owner,
    synced: watch::Sender<bool>,
) {
    let followed = Mutex::new(Followed {
        owner,
        held: BTreeMap::new(),
        heard: Instant::now(),
    });
    let mut next = 0usize;
    let mut backoff = Duration::from_millis(100);
    loop {
        if controls.is_empty() {
            return;
        }
        let endpoint = &controls[next % controls.len()];
        next += 1;
        let once = watch_once(&dialer, endpoint, &types, &followed, &synced);
        tokio::pin!(once);
        // Nodes go unconfirmed on time whatever the watch is doing (connecting, stuck).
        let ended = loop {
            let expiry = lock(&followed).next_expiry();
            tokio::select! {
                ended = &mut once => break ended,
                () = sleep_until_some(expiry) => lock(&followed).expire(),
            }
        };
        match ended {
            Ok(()) => backoff = Duration::from_millis(100),
            Err(reason) => {
                tracing::warn!(control = %endpoint, %reason, "cannot follow the control plane; trying the next");
            }
        }
        let pause = tokio::time::sleep(backoff);
        tokio::pin!(pause);
        loop {
            let expiry = lock(&followed).next_expiry();
            tokio::select! {
                () = &mut pause => break,
                () = sleep_until_some(expiry) => lock(&followed).expire(),
            }
        }
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

async fn watch_once(
    dialer: &Dialer,
    endpoint: &str,
    types: &[String],
    followed: &Mutex<Followed>,
    synced: &watch::Sender<bool>,
) -> Result<(), String> {
    let channel = dialer
        .connect(endpoint, &PeerIdentity::Control)
        .await
        .map_err(|e| e.to_string())?;
    let mut stream = RegistryClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
        .watch(pb::WatchRequest {
            types: types.to_vec(),
        })
        .await
        .map_err(|s| ate_tls::error_chain(&s))?
        .into_inner();
    // The replica's view until it says it is complete; then only differences are applied.
    let mut fresh: Option<BTreeMap<Key, String>> = Some(BTreeMap::new());
    loop {
        let message = tokio::time::timeout(WATCH_SILENCE, stream.message())
            .await
            .map_err(|_| format!("no word from the control plane for {WATCH_SILENCE:?}"))?;
        let event = match message {
            Ok(Some(pb::WatchEvent { event: Some(e) })) => e,
            Ok(Some(_)) => continue,
            Ok(None) => return Err("the control plane closed the watch".into()),
            Err(status) => return Err(ate_tls::error_chain(&status)),
        };
        let mut f = lock(followed);
        // Only a replica that has sent its whole view vouches for what is held.
        if fresh.is_none() {
            f.heard = Instant::now();
        }
        let Followed { owner, held, .. } = &mut *f;
        match event {
            Event::Asserted(a) => {
                let key = (a.r#type, a.id);
                match fresh.as_mut() {
                    Some(view) => {
                        view.insert(key, a.value_json);
                    }
                    None => put(owner, held, key, a.value_json),
                }
            }
            Event::Retracted(r) => {
                let key = (r.r#type, r.id);
                match fresh.as_mut() {
                    Some(view) => {
                        view.remove(&key);
                    }
                    None => take(owner, held, &key),
                }
            }
            Event::Synced(_) => {
                if let Some(view) = fresh.take() {
                    let gone: Vec<Key> = held
                        .keys()
                        .filter(|k| !view.contains_key(*k))
                        .cloned()
                        .collect();
                    for k in gone {
                        take(owner, held, &k);
                    }
                    for (k, v) in view {
                        put(owner, held, k, v);
                    }
                    f.heard = Instant::now();
                    synced.send_replace(true);
                }
            }
            Event::Reset(_) => fresh = Some(BTreeMap::new()),
            Event::Heartbeat(_) => {}
        }
    }
}

fn put(owner: &Owner, held: &mut BTreeMap<Key, String>, key: Key, value_json: String) {
    if held.get(&key) == Some(&value_json) {
        return;
    }
    let raw = RawAssertion {
        type_tag: key.0.clone(),
        id: key.1.clone(),
        value_json,
    };
    match carry::assert_raw(owner, &raw) {
        Ok(()) => {
            held.insert(key, raw.value_json);
        }
        Err(e) => {
            tracing::warn!(type_tag = %raw.type_tag, id = %raw.id, error = %e, "cannot apply a followed assertion")
        }
    }
}

fn take(owner: &Owner, held: &mut BTreeMap<Key, String>, key: &Key) {
    if held.remove(key).is_some()
        && let Err(e) = carry::retract_raw(owner, &key.0, &key.1)
    {
        tracing::warn!(type_tag = %key.0, id = %key.1, error = %e, "cannot retract a followed assertion");
    }
}
