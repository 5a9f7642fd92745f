//! What a process away from the control plane knows of nodes: a router follows the live
//! nodes' registrations and routes from any control-plane replica into a local dataspace,
//! and reaches the nodes over the network ([`RemoteNodes`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

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

async fn run(
    controls: Vec<String>,
    types: Vec<String>,
    dialer: Dialer,
    owner: Owner,
    synced: watch::Sender<bool>,
) {
    let mut held: BTreeMap<Key, String> = BTreeMap::new();
    let mut next = 0usize;
    let mut backoff = Duration::from_millis(100);
    loop {
        if controls.is_empty() {
            return;
        }
        let endpoint = &controls[next % controls.len()];
        next += 1;
        match watch_once(&dialer, endpoint, &types, &owner, &mut held, &synced).await {
            Ok(()) => backoff = Duration::from_millis(100),
            Err(reason) => {
                tracing::warn!(control = %endpoint, %reason, "cannot follow the control plane; trying the next");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

async fn watch_once(
    dialer: &Dialer,
    endpoint: &str,
    types: &[String],
    owner: &Owner,
    held: &mut BTreeMap<Key, String>,
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
        let event = match stream.message().await {
            Ok(Some(pb::WatchEvent { event: Some(e) })) => e,
            Ok(Some(_)) => continue,
            Ok(None) => return Err("the control plane closed the watch".into()),
            Err(status) => return Err(ate_tls::error_chain(&status)),
        };
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
                    synced.send_replace(true);
                }
            }
            Event::Reset(_) => fresh = Some(BTreeMap::new()),
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
