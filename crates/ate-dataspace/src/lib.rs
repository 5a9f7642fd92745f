//! The dataspace: a registry of typed assertions `(type, identifier, value)` with an owner.
//! Components assert facts (a route, a live node, a hot snapshot); others subscribe and get
//! the current state, a `Synced` marker, then every change in one total order. Ownership is
//! a handle: dropping an [`Owner`] (or the task holding it ending, by return or panic)
//! retracts everything it asserted, so failure needs no signalling of its own. A subscriber
//! that falls behind is never silently shorted: it gets `Lagged` and a fresh snapshot.

mod id;
mod view;

use std::any::{Any, TypeId};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Notify;

pub use id::{Filter, Id};
pub use view::View;

/// A type that can be asserted. `TYPE` is a stable tag naming it across processes (for
/// example `ate.route.v1`), so assertions can be carried over a stream or a store.
pub trait Assertion: Clone + Send + Sync + Serialize + DeserializeOwned + 'static {
    const TYPE: &'static str;
}

/// Why a write was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DataspaceError {
    #[error("{type_tag} {id} is asserted by {holder}, not by {caller}")]
    NotOwner {
        type_tag: &'static str,
        id: Id,
        holder: String,
        caller: String,
    },
    #[error("{type_tag} {id} is not asserted")]
    NotAsserted { type_tag: &'static str, id: Id },
    #[error("type tag {type_tag} is already used by another type")]
    TagClash { type_tag: &'static str },
}

/// What a subscriber sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<T> {
    Asserted {
        id: Id,
        value: T,
    },
    Retracted {
        id: Id,
    },
    /// Everything asserted before the subscription (or the resync) has been delivered.
    Synced,
    /// The subscriber fell behind and updates were dropped: discard the view; a full
    /// snapshot and `Synced` follow.
    Lagged,
}

/// Default number of undelivered events a subscriber may have before it is resynced.
pub const DEFAULT_CAPACITY: usize = 4096;

type Value = Arc<dyn Any + Send + Sync>;

enum Raw {
    Asserted(Id, Value),
    Retracted(Id),
    Synced,
    Lagged,
}

struct Entry {
    owner: u64,
    value: Value,
}

struct Sub {
    tag: &'static str,
    filter: Filter,
    queue: VecDeque<Raw>,
    lagged: bool,
    notify: Arc<Notify>,
}

struct TypeState {
    rust_type: TypeId,
    entries: BTreeMap<Id, Entry>,
    /// Subscriptions to one identifier, found without looking at any other.
    exact: HashMap<Id, Vec<u64>>,
    /// Subscriptions to everything or to a glob.
    broad: Vec<u64>,
}

/// An owner's name (for error messages) and what it holds (retracted when it drops).
struct OwnerRecord {
    name: String,
    held: HashSet<(&'static str, Id)>,
}

#[derive(Default)]
struct State {
    types: HashMap<&'static str, TypeState>,
    subs: HashMap<u64, Sub>,
    owners: HashMap<u64, OwnerRecord>,
    next: u64,
}

impl State {
    fn next_id(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    fn type_state<T: Assertion>(&mut self) -> Result<&mut TypeState, DataspaceError> {
        let ts = self.types.entry(T::TYPE).or_insert_with(|| TypeState {
            rust_type: TypeId::of::<T>(),
            entries: BTreeMap::new(),
            exact: HashMap::new(),
            broad: Vec::new(),
        });
        if ts.rust_type != TypeId::of::<T>() {
            return Err(DataspaceError::TagClash { type_tag: T::TYPE });
        }
        Ok(ts)
    }

    fn owner_name(&self, owner: u64) -> String {
        self.owners
            .get(&owner)
            .map(|o| o.name.clone())
            .unwrap_or_else(|| format!("owner {owner}"))
    }

    /// Queues an event for every subscription of `tag` that matches `id`.
    fn deliver(&mut self, tag: &'static str, id: &Id, make: impl Fn() -> Raw, capacity: usize) {
        let Some(ts) = self.types.get(tag) else {
            return;
        };
        let exact = ts.exact.get(id).into_iter().flatten();
        for sid in exact.chain(ts.broad.iter()) {
            let Some(sub) = self.subs.get_mut(sid) else {
                continue;
            };
            if !sub.filter.matches(id) || sub.lagged {
                continue;
            }
            if sub.queue.len() >= capacity {
                sub.lagged = true;
                sub.queue.clear();
            } else {
                sub.queue.push_back(make());
            }
            sub.notify.notify_one();
        }
    }

    fn snapshot(&self, tag: &'static str, filter: &Filter, into: &mut VecDeque<Raw>) {
        if let Some(ts) = self.types.get(tag) {
            let matching = ts.entries.iter().filter(|(id, _)| filter.matches(id));
            for (id, e) in matching {
                into.push_back(Raw::Asserted(id.clone(), e.value.clone()));
            }
        }
        into.push_back(Raw::Synced);
    }

    fn retract(&mut self, tag: &'static str, id: &Id, capacity: usize) {
        if let Some(ts) = self.types.get_mut(tag)
            && ts.entries.remove(id).is_some()
        {
            self.deliver(tag, id, || Raw::Retracted(id.clone()), capacity);
        }
    }
}

/// A dataspace. Cheap to clone; clones share the registry.
#[derive(Clone)]
pub struct Dataspace {
    state: Arc<Mutex<State>>,
    capacity: usize,
}

impl std::fmt::Debug for Dataspace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dataspace")
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl Default for Dataspace {
    fn default() -> Self {
        Self::new()
    }
}

impl Dataspace {
    pub fn new() -> Self {
        Self::with_capacity(DEFAULT_CAPACITY)
    }

    /// A dataspace whose subscribers are resynced after `capacity` undelivered events.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            state: Arc::new(Mutex::new(State::default())),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-written (every
        // mutation completes before any code that could panic), so poison is ignored.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new owner. Everything it asserts is retracted when it is dropped.
    pub fn owner(&self, name: impl Into<String>) -> Owner {
        let mut st = self.lock();
        let id = st.next_id();
        st.owners.insert(
            id,
            OwnerRecord {
                name: name.into(),
                held: HashSet::new(),
            },
        );
        Owner {
            ds: self.clone(),
            id,
        }
    }

    /// Subscribes to assertions of `T` matching `filter`: first the current state, then
    /// `Synced`, then every change.
    pub fn subscribe<T: Assertion>(
        &self,
        filter: Filter,
    ) -> Result<Subscription<T>, DataspaceError> {
        let mut st = self.lock();
        st.type_state::<T>()?;
        let sid = st.next_id();
        let mut queue = VecDeque::new();
        st.snapshot(T::TYPE, &filter, &mut queue);
        let notify = Arc::new(Notify::new());
        let ts = st.type_state::<T>()?;
        match &filter {
            Filter::Exact(id) => ts.exact.entry(id.clone()).or_default().push(sid),
            _ => ts.broad.push(sid),
        }
        st.subs.insert(
            sid,
            Sub {
                tag: T::TYPE,
                filter,
                queue,
                lagged: false,
                notify: notify.clone(),
            },
        );
        Ok(Subscription {
            ds: self.clone(),
            id: sid,
            notify,
            _type: PhantomData,
        })
    }

    /// The current value of one assertion.
    pub fn get<T: Assertion>(&self, id: &Id) -> Option<T> {
        let st = self.lock();
        let e = st.types.get(T::TYPE)?.entries.get(id)?;
        e.value.downcast_ref::<T>().cloned()
    }

    /// Every current assertion of `T` matching `filter`, in identifier order.
    pub fn list<T: Assertion>(&self, filter: &Filter) -> Vec<(Id, T)> {
        let st = self.lock();
        let Some(ts) = st.types.get(T::TYPE) else {
            return Vec::new();
        };
        ts.entries
            .iter()
            .filter(|(id, _)| filter.matches(id))
            .filter_map(|(id, e)| e.value.downcast_ref::<T>().map(|v| (id.clone(), v.clone())))
            .collect()
    }

    /// Live subscriptions (dropped ones are removed at once).
    pub fn subscriber_count(&self) -> usize {
        self.lock().subs.len()
    }

    /// Live owners.
    pub fn owner_count(&self) -> usize {
        self.lock().owners.len()
    }
}

/// The right to assert. Dropping it retracts everything it asserted.
#[derive(Debug)]
pub struct Owner {
    ds: Dataspace,
    id: u64,
}

impl Owner {
    /// Asserts (or replaces) `value` under `id`. Refused if another owner holds `id`.
    pub fn assert<T: Assertion>(&self, id: impl Into<Id>, value: T) -> Result<(), DataspaceError> {
        let id = id.into();
        let capacity = self.ds.capacity;
        let mut st = self.ds.lock();
        let owner = self.id;
        let ts = st.type_state::<T>()?;
        if let Some(e) = ts.entries.get(&id)
            && e.owner != owner
        {
            let holder = e.owner;
            return Err(DataspaceError::NotOwner {
                type_tag: T::TYPE,
                id,
                holder: st.owner_name(holder),
                caller: st.owner_name(owner),
            });
        }
        let value: Value = Arc::new(value);
        ts.entries.insert(
            id.clone(),
            Entry {
                owner,
                value: value.clone(),
            },
        );
        if let Some(o) = st.owners.get_mut(&owner) {
            o.held.insert((T::TYPE, id.clone()));
        }
        st.deliver(
            T::TYPE,
            &id,
            || Raw::Asserted(id.clone(), value.clone()),
            capacity,
        );
        Ok(())
    }

    /// Retracts the assertion under `id`. Refused if it is absent or another owner's.
    pub fn retract<T: Assertion>(&self, id: impl Into<Id>) -> Result<(), DataspaceError> {
        let id = id.into();
        let capacity = self.ds.capacity;
        let mut st = self.ds.lock();
        let ts = st.type_state::<T>()?;
        match ts.entries.get(&id) {
            None => Err(DataspaceError::NotAsserted {
                type_tag: T::TYPE,
                id,
            }),
            Some(e) if e.owner != self.id => {
                let holder = e.owner;
                Err(DataspaceError::NotOwner {
                    type_tag: T::TYPE,
                    id,
                    holder: st.owner_name(holder),
                    caller: st.owner_name(self.id),
                })
            }
            Some(_) => {
                if let Some(o) = st.owners.get_mut(&self.id) {
                    o.held.remove(&(T::TYPE, id.clone()));
                }
                st.retract(T::TYPE, &id, capacity);
                Ok(())
            }
        }
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        let capacity = self.ds.capacity;
        let mut st = self.ds.lock();
        let Some(record) = st.owners.remove(&self.id) else {
            return;
        };
        let mut held: Vec<_> = record.held.into_iter().collect();
        held.sort();
        for (tag, id) in held {
            st.retract(tag, &id, capacity);
        }
    }
}

/// A live subscription. Dropping it unsubscribes.
#[derive(Debug)]
pub struct Subscription<T> {
    ds: Dataspace,
    id: u64,
    notify: Arc<Notify>,
    _type: PhantomData<fn() -> T>,
}

impl<T: Assertion> Subscription<T> {
    /// The next event, waiting for one. Never returns `None` while the dataspace lives.
    pub async fn recv(&mut self) -> Option<Event<T>> {
        loop {
            if let Some(e) = self.try_recv() {
                return Some(e);
            }
            self.notify.notified().await;
        }
    }

    /// The next event if one is queued.
    pub fn try_recv(&mut self) -> Option<Event<T>> {
        let mut st = self.ds.lock();
        loop {
            let sub = st.subs.get_mut(&self.id)?;
            if sub.lagged {
                // Resync under the same lock as writers: no gap between the snapshot and
                // the live updates that follow it.
                let (tag, filter) = (sub.tag, sub.filter.clone());
                let mut queue = VecDeque::from([Raw::Lagged]);
                st.snapshot(tag, &filter, &mut queue);
                let sub = st.subs.get_mut(&self.id)?;
                sub.queue = queue;
                sub.lagged = false;
            }
            let sub = st.subs.get_mut(&self.id)?;
            let raw = sub.queue.pop_front()?;
            let event = match raw {
                Raw::Asserted(id, v) => match v.downcast_ref::<T>() {
                    Some(value) => Event::Asserted {
                        id,
                        value: value.clone(),
                    },
                    None => continue,
                },
                Raw::Retracted(id) => Event::Retracted { id },
                Raw::Synced => Event::Synced,
                Raw::Lagged => Event::Lagged,
            };
            return Some(event);
        }
    }
}

impl<T> Drop for Subscription<T> {
    fn drop(&mut self) {
        let mut st = self.ds.lock();
        let Some(sub) = st.subs.remove(&self.id) else {
            return;
        };
        if let Some(ts) = st.types.get_mut(sub.tag) {
            match &sub.filter {
                Filter::Exact(id) => {
                    if let Some(list) = ts.exact.get_mut(id) {
                        list.retain(|s| *s != self.id);
                        if list.is_empty() {
                            ts.exact.remove(id);
                        }
                    }
                }
                _ => ts.broad.retain(|s| *s != self.id),
            }
        }
    }
}
