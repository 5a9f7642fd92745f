use std::collections::BTreeMap;

use crate::{Event, Id};

/// A subscriber's picture of the assertions it follows, kept correct by applying every
/// event: `Lagged` clears it, the snapshot that follows refills it.
#[derive(Debug, Clone, PartialEq)]
pub struct View<T> {
    pub entries: BTreeMap<Id, T>,
    /// True once the state up to a `Synced` marker has been applied.
    pub synced: bool,
}

impl<T> Default for View<T> {
    fn default() -> Self {
        Self {
            entries: BTreeMap::new(),
            synced: false,
        }
    }
}

impl<T> View<T> {
    pub fn apply(&mut self, event: Event<T>) {
        match event {
            Event::Asserted { id, value } => {
                self.entries.insert(id, value);
            }
            Event::Retracted { id } => {
                self.entries.remove(&id);
            }
            Event::Synced => self.synced = true,
            Event::Lagged => {
                self.entries.clear();
                self.synced = false;
            }
        }
    }
}
