//! Which nodes hold a snapshot in their cache, by snapshot key: an index over the nodes'
//! `NodeCacheAdvert`s, kept by a dataspace subscription, so the scheduler's locality tier
//! is one map lookup rather than a scan of every advert. Until the subscription has
//! delivered the current state (at start, and after it fell behind) lookups scan the
//! adverts as before, so the index is never less complete than the dataspace.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use ate_dataspace::{Dataspace, Event, Filter, Id};
use ate_seam::NodeCacheAdvert;

#[derive(Debug, Default)]
struct Index {
    by_key: HashMap<String, BTreeSet<String>>,
    /// Per assertion: the node it speaks for and the keys it listed.
    by_id: HashMap<Id, (String, Vec<String>)>,
    /// The current state has been delivered and nothing was missed since.
    synced: bool,
}

impl Index {
    fn forget(&mut self, id: &Id) {
        let Some((node, keys)) = self.by_id.remove(id) else {
            return;
        };
        for key in keys {
            if let Some(nodes) = self.by_key.get_mut(&key) {
                nodes.remove(&node);
                if nodes.is_empty() {
                    self.by_key.remove(&key);
                }
            }
        }
    }

    fn record(&mut self, id: Id, advert: NodeCacheAdvert) {
        self.forget(&id);
        for key in &advert.snapshots {
            self.by_key
                .entry(key.clone())
                .or_default()
                .insert(advert.node.clone());
        }
        self.by_id.insert(id, (advert.node, advert.snapshots));
    }
}

/// The index, started on first use.
#[derive(Debug, Default)]
pub(crate) struct Holders {
    index: Mutex<Option<Arc<RwLock<Index>>>>,
}

impl Holders {
    /// Nodes whose cache advertises `key`.
    pub fn of(&self, ds: &Dataspace, key: &str) -> Vec<String> {
        let index = self.start(ds);
        if let Some(index) = index {
            let index = index.read().unwrap_or_else(|p| p.into_inner());
            if index.synced {
                return index
                    .by_key
                    .get(key)
                    .map(|n| n.iter().cloned().collect())
                    .unwrap_or_default();
            }
        }
        ds.list::<NodeCacheAdvert>(&Filter::All)
            .into_iter()
            .filter(|(_, a)| a.snapshots.iter().any(|s| s == key))
            .map(|(_, a)| a.node)
            .collect()
    }

    /// The index, subscribing on first use; `None` if the subscription cannot be made.
    fn start(&self, ds: &Dataspace) -> Option<Arc<RwLock<Index>>> {
        let mut slot = self.index.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(index) = slot.as_ref() {
            return Some(index.clone());
        }
        let mut sub = ds.subscribe::<NodeCacheAdvert>(Filter::All).ok()?;
        let index = Arc::new(RwLock::new(Index::default()));
        let weak = Arc::downgrade(&index);
        tokio::spawn(async move {
            while let Some(event) = sub.recv().await {
                let Some(index) = weak.upgrade() else { return };
                let mut index = index.write().unwrap_or_else(|p| p.into_inner());
                match event {
                    Event::Asserted { id, value } => index.record(id, value),
                    Event::Retracted { id } => index.forget(&id),
                    Event::Lagged => *index = Index::default(),
                    Event::Synced => index.synced = true,
                }
            }
            // The dataspace is gone: lookups go back to scanning it.
            if let Some(index) = weak.upgrade() {
                index.write().unwrap_or_else(|p| p.into_inner()).synced = false;
            }
        });
        *slot = Some(index.clone());
        Some(index)
    }
}
