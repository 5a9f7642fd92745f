//! What the control plane itself does with snapshot storage: check that a snapshot landed,
//! find an actor's newest durable snapshot, apply retention, delete an actor's snapshots.

use std::collections::HashMap;
use std::sync::Mutex;

use ate_model::{ActorRef, SnapshotInfo, parse_snapshot_uri};
use ate_snapshots::{SnapshotError, SnapshotStore};

/// Opened snapshot stores by location.
#[derive(Default)]
pub(crate) struct SnapshotStores(Mutex<HashMap<String, SnapshotStore>>);

fn bad_uri(uri: &str) -> SnapshotError {
    SnapshotError::InvalidName {
        what: "snapshot uri",
        name: uri.into(),
    }
}

impl SnapshotStores {
    fn open(&self, location: &str) -> Result<SnapshotStore, SnapshotError> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = map.get(location) {
            return Ok(s.clone());
        }
        let s = SnapshotStore::open(location)?;
        map.insert(location.into(), s.clone());
        Ok(s)
    }

    /// Whether the snapshot a URI names is complete in its store (its manifest is
    /// written last).
    pub(crate) async fn exists(&self, uri: &str) -> Result<bool, SnapshotError> {
        let (location, owner, id) = parse_snapshot_uri(uri).ok_or_else(|| bad_uri(uri))?;
        match self.open(&location)?.manifest(&owner, &id).await {
            Ok(_) => Ok(true),
            Err(SnapshotError::NotFound { .. } | SnapshotError::Incomplete { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The newest snapshot of `latest` that is durable in a store: the snapshot itself,
    /// or for a paused one whose upload has not landed, the one before it.
    pub(crate) async fn durable(
        &self,
        latest: Option<&SnapshotInfo>,
    ) -> Result<Option<String>, SnapshotError> {
        Ok(match latest {
            None => None,
            Some(SnapshotInfo::External { uri_prefix }) => Some(uri_prefix.clone()),
            Some(SnapshotInfo::Local {
                prefix, fallback, ..
            }) => {
                if self.exists(prefix).await? {
                    Some(prefix.clone())
                } else {
                    (!fallback.is_empty()).then(|| fallback.clone())
                }
            }
        })
    }

    /// Keeps the actor's `keep` newest snapshots in the store of `latest`, and every
    /// snapshot in `protect`.
    pub(crate) async fn retain(
        &self,
        actor: &ActorRef,
        latest: &str,
        keep: u32,
        protect: &[&str],
    ) -> Result<Vec<String>, SnapshotError> {
        let (location, _, _) = parse_snapshot_uri(latest).ok_or_else(|| bad_uri(latest))?;
        let ids: Vec<&str> = protect
            .iter()
            .filter_map(|u| u.rsplit('/').next())
            .collect();
        self.open(&location)?
            .retain(actor, keep as usize, &ids)
            .await
    }

    /// Deletes every snapshot of the actor in the stores its snapshot URIs name.
    pub(crate) async fn delete_actor(
        &self,
        actor: &ActorRef,
        uris: &[&str],
    ) -> Result<usize, SnapshotError> {
        let mut locations: Vec<String> = uris
            .iter()
            .filter_map(|u| parse_snapshot_uri(u).map(|(l, _, _)| l))
            .collect();
        locations.sort();
        locations.dedup();
        let mut n = 0;
        for l in locations {
            n += self.open(&l)?.delete_actor(actor).await?;
        }
        Ok(n)
    }
}
