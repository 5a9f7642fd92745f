//! Templates and worker pools for the workflows, from memory. Each kind is listed once and
//! then followed by a store watch: any change to the kind drops the copy, and the next
//! use lists it afresh. A copy is kept only if no change was reported while it was being
//! listed, so it is never older than the last event the watch delivered. A template the
//! copy lacks is read from the store (it may have been created a moment ago), so the copy
//! never refuses what the store would allow. Both kinds are small (an operator's
//! catalogue), unlike actors, which are never cached.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use ate_model::{ActorTemplate, NamespacedName, WorkerPool};
use ate_store::{ListOptions, Object, Store, StoreError};

/// One kind's copy and whether a watch keeps it honest.
#[derive(Debug)]
struct Followed<T> {
    state: Mutex<State<T>>,
    /// Grows with every change the watch reports; a listing that saw it move is not kept.
    changes: AtomicU64,
}

#[derive(Debug)]
struct State<T> {
    items: Option<Arc<HashMap<String, T>>>,
    watching: bool,
}

impl<T: Object + Clone + 'static> Followed<T> {
    fn new() -> Self {
        Self {
            state: Mutex::new(State {
                items: None,
                watching: false,
            }),
            changes: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Drops the copy: something changed.
    fn invalidate(&self) {
        self.changes.fetch_add(1, Ordering::AcqRel);
        self.lock().items = None;
    }

    /// Starts the watch if none runs. Without one nothing is kept, so a store whose
    /// watch fails is simply read every time.
    async fn follow(self: &Arc<Self>, store: &Arc<dyn Store>) -> bool {
        if self.lock().watching {
            return true;
        }
        let mut watch = match store.watch(T::KIND).await {
            Ok(w) => w,
            Err(e) => {
                tracing::debug!(kind = %T::KIND, error = %e, "no watch; reading the store each time");
                return false;
            }
        };
        {
            let mut state = self.lock();
            if state.watching {
                return true; // another caller started one meanwhile; ours just ends
            }
            state.watching = true;
        }
        let me: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            while watch.recv().await.is_some() {
                let Some(me) = me.upgrade() else { return };
                me.invalidate();
            }
            if let Some(me) = me.upgrade() {
                me.invalidate();
                me.lock().watching = false;
            }
        });
        true
    }

    /// Every record of the kind, from the copy if there is one.
    async fn all(
        self: &Arc<Self>,
        store: &Arc<dyn Store>,
    ) -> Result<Arc<HashMap<String, T>>, StoreError> {
        let followed = self.follow(store).await;
        if let Some(items) = self.lock().items.clone() {
            return Ok(items);
        }
        let seen = self.changes.load(Ordering::Acquire);
        let items: HashMap<String, T> = store
            .list_all::<T>(&ListOptions::default())
            .await?
            .into_iter()
            .map(|x| (x.key(), x))
            .collect();
        let items = Arc::new(items);
        if followed && self.changes.load(Ordering::Acquire) == seen {
            self.lock().items = Some(items.clone());
        }
        Ok(items)
    }
}

/// The copies the workflows read.
#[derive(Debug)]
pub(crate) struct Specs {
    templates: Arc<Followed<ActorTemplate>>,
    pools: Arc<Followed<WorkerPool>>,
}

impl Default for Specs {
    fn default() -> Self {
        Self {
            templates: Arc::new(Followed::new()),
            pools: Arc::new(Followed::new()),
        }
    }
}

impl Specs {
    /// The template, from the copy or else the store; `NotFound` only if the store says so.
    pub async fn template(
        &self,
        store: &Arc<dyn Store>,
        id: &NamespacedName,
    ) -> Result<ActorTemplate, StoreError> {
        let key = id.key();
        if let Some(t) = self.templates.all(store).await?.get(&key) {
            return Ok(t.clone());
        }
        store.get::<ActorTemplate>(&key).await
    }

    /// Every pool.
    pub async fn pools(&self, store: &Arc<dyn Store>) -> Result<Vec<WorkerPool>, StoreError> {
        Ok(self.pools.all(store).await?.values().cloned().collect())
    }
}
