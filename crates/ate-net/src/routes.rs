//! The router's table of running actors, fed by the routes nodes assert in the dataspace.
//! Lookups never leave the process: a request for a running actor costs one map read.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use ate_dataspace::{Dataspace, DataspaceError, Event, Filter, Id};
use ate_model::ActorRef;
use ate_seam::Route;
use tokio::sync::Notify;

type Map = HashMap<ActorRef, Arc<Route>>;

#[derive(Debug, Default)]
struct Table {
    routes: RwLock<Map>,
    /// Requests waiting for one actor's route to appear.
    waiters: Mutex<HashMap<ActorRef, Arc<Notify>>>,
    /// Woken whenever a route goes: an actor left its worker, which may be free now.
    left: Notify,
}

/// Where each running actor is served. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    table: Arc<Table>,
}

/// The actor an assertion identifier (`atespace/id`) names.
fn actor_of(id: &Id) -> Option<ActorRef> {
    match id {
        Id::Str(s) => s.split_once('/').map(|(a, i)| ActorRef::new(a, i)),
        Id::Int(_) => None,
    }
}

impl RouteTable {
    /// A table that follows the routes asserted in `dataspace` until the returned task is
    /// aborted (or the dataspace goes away).
    pub fn follow(
        dataspace: &Dataspace,
    ) -> Result<(Self, tokio::task::JoinHandle<()>), DataspaceError> {
        let mut sub = dataspace.subscribe::<Route>(Filter::All)?;
        let table = Self::default();
        let me = table.clone();
        let task = tokio::spawn(async move {
            // After a lag, the full state is rebuilt here and swapped in at `Synced`, so
            // lookups keep working from the old table meanwhile.
            let mut fresh: Option<Map> = None;
            while let Some(event) = sub.recv().await {
                match event {
                    Event::Asserted { value, .. } => {
                        let route = Arc::new(value);
                        if let Some(f) = fresh.as_mut() {
                            f.insert(route.actor.clone(), route.clone());
                        }
                        me.insert(route);
                    }
                    Event::Retracted { id } => {
                        if let Some(actor) = actor_of(&id) {
                            if let Some(f) = fresh.as_mut() {
                                f.remove(&actor);
                            }
                            me.write().remove(&actor);
                            me.table.left.notify_waiters();
                        }
                    }
                    Event::Lagged => {
                        tracing::warn!("route table fell behind; resynchronising");
                        fresh = Some(Map::new());
                    }
                    Event::Synced => {
                        if let Some(f) = fresh.take() {
                            *me.write() = f;
                        }
                    }
                }
                metrics::gauge!(crate::metrics::ROUTES).set(me.len() as f64);
            }
        });
        Ok((table, task))
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Map> {
        self.table.routes.write().unwrap_or_else(|p| p.into_inner())
    }

    fn insert(&self, route: Arc<Route>) {
        let actor = route.actor.clone();
        self.write().insert(actor.clone(), route);
        let waiters = self.table.waiters.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = waiters.get(&actor) {
            n.notify_waiters();
        }
    }

    /// The route of a running actor.
    pub fn get(&self, actor: &ActorRef) -> Option<Arc<Route>> {
        self.table
            .routes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(actor)
            .cloned()
    }

    /// Running actors known to this table.
    pub fn len(&self) -> usize {
        self.table
            .routes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits up to `wait` for any actor to leave its worker (a route retracted).
    pub async fn wait_for_departure(&self, wait: Duration) {
        let _ = tokio::time::timeout(wait, self.table.left.notified()).await;
    }

    /// Waits up to `wait` for the actor's route to appear.
    pub async fn wait_for(&self, actor: &ActorRef, wait: Duration) -> Option<Arc<Route>> {
        let notify = {
            let mut waiters = self.table.waiters.lock().unwrap_or_else(|p| p.into_inner());
            waiters.entry(actor.clone()).or_default().clone()
        };
        let found = tokio::time::timeout(wait, async {
            loop {
                let notified = notify.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if let Some(r) = self.get(actor) {
                    return r;
                }
                notified.await;
            }
        })
        .await
        .ok();
        let mut waiters = self.table.waiters.lock().unwrap_or_else(|p| p.into_inner());
        // The map's own reference and ours: nobody else waits any more.
        if Arc::strong_count(&notify) <= 2 {
            waiters.remove(actor);
        }
        found
    }
}
