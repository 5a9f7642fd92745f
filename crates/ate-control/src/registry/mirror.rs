//! Every live node's assertions, from the store into this replica's dataspace, and the
//! reaper that retracts nodes whose lease nobody renews. Only records whose value names the
//! node that holds them, under the id that value gives, are shown (what the sessions write
//! is checked already; this keeps out what a replica of an older version may have written).

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use ate_dataspace::Owner;
use ate_model::{Kind, NodeAssertion};
use ate_seam::carry::{self, RawAssertion};
use ate_store::typed::decode;
use ate_store::{ListOptions, StoreError, WatchEvent};

use super::{REAP_EVERY, Registry, delete_assertions, node_lease, trust};

/// How long a reaper holds a node's lease while it deletes what the node left.
const REAP_LEASE: Duration = Duration::from_secs(10);

/// Assertions held in the dataspace, by store key. Two nodes may assert the same
/// `(type, id)` for a moment (a route while an actor moves): the latest write shows.
struct Mirror {
    owner: Owner,
    by_key: HashMap<String, NodeAssertion>,
    /// Store keys asserting each `(type, id)`, oldest first.
    slots: HashMap<(String, String), Vec<String>>,
}

impl Mirror {
    fn new(registry: &Registry) -> Self {
        Self {
            owner: registry.dataspace().owner("node-registry"),
            by_key: HashMap::new(),
            slots: HashMap::new(),
        }
    }

    fn apply(&mut self, a: NodeAssertion) {
        let key = a.key();
        if self.by_key.get(&key) == Some(&a) {
            return;
        }
        let raw = RawAssertion {
            type_tag: a.type_tag.clone(),
            id: a.id.clone(),
            value_json: a.value.clone(),
        };
        if let Err(why) = trust::inspect(&raw, &a.node, &a.incarnation) {
            tracing::warn!(node = %a.node, %key, %why, "not mirroring a node assertion its node may not make");
            self.remove(&key);
            return;
        }
        let slot = (a.type_tag.clone(), a.id.clone());
        let keys = self.slots.entry(slot).or_default();
        keys.retain(|k| *k != key);
        keys.push(key.clone());
        self.by_key.insert(key, a);
        if let Err(e) = carry::assert_raw(&self.owner, &raw) {
            tracing::warn!(type_tag = %raw.type_tag, id = %raw.id, error = %e, "cannot mirror a node assertion");
        }
    }

    fn remove(&mut self, key: &str) {
        let Some(a) = self.by_key.remove(key) else {
            return;
        };
        let slot = (a.type_tag.clone(), a.id.clone());
        let Some(keys) = self.slots.get_mut(&slot) else {
            return;
        };
        keys.retain(|k| k != key);
        let shown = keys.last().and_then(|k| self.by_key.get(k)).cloned();
        let result = match shown {
            Some(other) => carry::assert_raw(
                &self.owner,
                &RawAssertion {
                    type_tag: other.type_tag,
                    id: other.id,
                    value_json: other.value,
                },
            ),
            None => {
                self.slots.remove(&slot);
                carry::retract_raw(&self.owner, &a.type_tag, &a.id)
            }
        };
        if let Err(e) = result {
            tracing::warn!(type_tag = %a.type_tag, id = %a.id, error = %e, "cannot mirror a node retraction");
        }
    }

    /// Brings the mirror to exactly `now`, touching only what changed.
    fn reset(&mut self, now: Vec<NodeAssertion>) {
        let keep: BTreeSet<String> = now.iter().map(NodeAssertion::key).collect();
        let gone: Vec<String> = self
            .by_key
            .keys()
            .filter(|k| !keep.contains(*k))
            .cloned()
            .collect();
        for k in gone {
            self.remove(&k);
        }
        for a in now {
            self.apply(a);
        }
    }

    fn nodes(&self) -> BTreeSet<String> {
        self.by_key.values().map(|a| a.node.clone()).collect()
    }
}

/// Mirrors until the task is aborted; reconnects to the store's watch when it breaks.
pub(super) async fn run(registry: Registry) {
    let mut mirror = Mirror::new(&registry);
    let mut reap = tokio::time::interval(REAP_EVERY);
    reap.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let store = registry.store().clone();
        let mut watch = match store.watch(Kind::NodeAssertion).await {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch node assertions; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        match store
            .list_all::<NodeAssertion>(&ListOptions::default())
            .await
        {
            Ok(now) => {
                mirror.reset(now);
                registry.inner.synced.send_replace(true);
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot list node assertions; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        }
        loop {
            tokio::select! {
                event = watch.recv() => match event {
                    Some(WatchEvent::Created(r) | WatchEvent::Updated(r)) => {
                        match decode::<NodeAssertion>(&r) {
                            Ok(a) => mirror.apply(a),
                            Err(e) => tracing::warn!(key = %r.key, error = %e, "skipping a corrupt node assertion"),
                        }
                    }
                    Some(WatchEvent::Deleted { key }) => mirror.remove(&key),
                    Some(WatchEvent::Resync) | None => break,
                },
                _ = reap.tick() => reap_expired(&registry, &mirror.nodes()).await,
            }
        }
    }
}

/// Takes over the lease of every mirrored node that no replica renews, and deletes what
/// the node left. Taking the lease over is what declares the node lost: its generation
/// moves on, so the node is fenced if it ever comes back.
async fn reap_expired(registry: &Registry, nodes: &BTreeSet<String>) {
    let store = registry.store();
    let reaper = format!("reaper/{}", registry.inner.replica);
    for node in nodes {
        if registry.local().contains(node) {
            continue;
        }
        let key = node_lease(node);
        match store.acquire_lease(&key, &reaper, REAP_LEASE).await {
            Ok(_) => {}
            Err(StoreError::LeaseHeld { .. }) => continue,
            Err(e) => {
                tracing::warn!(node = %node, error = %e, "cannot check the node's lease");
                continue;
            }
        }
        match delete_assertions(store, node, |_| true).await {
            Ok(n) => tracing::warn!(node = %node, retracted = n, "node lost: its lease expired"),
            Err(e) => tracing::warn!(node = %node, error = %e, "cannot retract a lost node"),
        }
        if let Err(e) = store.release_lease(&key, &reaper).await {
            tracing::warn!(node = %node, error = %e, "cannot release a reaped node's lease");
        }
    }
}
