//! The in-process seam: nodes and the control plane share one dataspace and call each other
//! directly.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use ate_dataspace::{Dataspace, Owner};

use crate::{NodeDirectory, NodeExecutor, NodeRegistration, SeamError};

type Executors = Arc<Mutex<HashMap<String, Arc<dyn NodeExecutor>>>>;

/// Nodes living in this process. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct LocalSeam {
    dataspace: Dataspace,
    executors: Executors,
}

fn lock(e: &Executors) -> MutexGuard<'_, HashMap<String, Arc<dyn NodeExecutor>>> {
    // Every mutation is one map insert or remove, so a poisoned lock holds a whole map.
    e.lock().unwrap_or_else(|p| p.into_inner())
}

impl LocalSeam {
    pub fn new(dataspace: Dataspace) -> Self {
        Self {
            dataspace,
            executors: Executors::default(),
        }
    }

    /// Registers a node. It stays registered, and its registration asserted, until the
    /// returned membership is dropped.
    pub fn join(
        &self,
        registration: NodeRegistration,
        executor: Arc<dyn NodeExecutor>,
    ) -> Result<NodeMembership, SeamError> {
        let name = registration.name.clone();
        {
            let mut map = lock(&self.executors);
            if map.contains_key(&name) {
                return Err(SeamError::NodeExists { node: name });
            }
            map.insert(name.clone(), executor);
        }
        let owner = self.dataspace.owner(format!("node/{name}"));
        if let Err(e) = owner.assert(name.as_str(), registration) {
            lock(&self.executors).remove(&name);
            return Err(SeamError::Internal(e.to_string()));
        }
        tracing::info!(node = %name, "node joined");
        Ok(NodeMembership {
            name,
            owner,
            executors: self.executors.clone(),
        })
    }
}

impl NodeDirectory for LocalSeam {
    fn dataspace(&self) -> &Dataspace {
        &self.dataspace
    }

    fn executor(&self, node: &str) -> Result<Arc<dyn NodeExecutor>, SeamError> {
        lock(&self.executors)
            .get(node)
            .cloned()
            .ok_or_else(|| SeamError::NodeUnavailable { node: node.into() })
    }
}

/// A node's place in the seam. The node asserts its adverts through [`Self::owner`], so
/// dropping the membership (the node stopping, or its task dying) retracts them together
/// with the registration.
#[derive(Debug)]
pub struct NodeMembership {
    name: String,
    owner: Owner,
    executors: Executors,
}

impl NodeMembership {
    pub fn node(&self) -> &str {
        &self.name
    }

    pub fn owner(&self) -> &Owner {
        &self.owner
    }
}

impl Drop for NodeMembership {
    fn drop(&mut self) {
        lock(&self.executors).remove(&self.name);
        tracing::info!(node = %self.name, "node left");
    }
}
