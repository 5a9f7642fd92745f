//! Golden snapshots: each template gets an actor in the system atespace `ate-golden`
//! that is booted once, suspended as soon as it is ready, and whose snapshot new actors of
//! the template start from, so they skip the cold boot. A failed bake is retried with
//! exponential backoff and its error shown in the template's status; the lifecycle
//! workflows roll a failed bake back, so it never keeps a worker.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ate_model::names::GOLDEN_ATESPACE;
use ate_model::{
    Actor, ActorRef, ActorStatus, ActorTemplate, FieldSelector, Kind, NamespacedName,
    TemplateStatus,
};
use ate_store::{ListOptions, Store, StoreError};
use tokio::task::JoinHandle;

use crate::lifecycle::{Lifecycle, LifecycleError};

/// Template phase until its golden snapshot exists.
pub const PHASE_PENDING: &str = "Pending";
/// Template phase once new actors start from its golden snapshot.
pub const PHASE_READY: &str = "Ready";

/// First retry delay after a failed bake; doubled per failure up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The golden actor of a template: `<namespace>-<name>` with dots as dashes, shortened
/// with a hash suffix when it would not fit a 63-character label.
pub fn golden_actor(template: &NamespacedName) -> ActorRef {
    let full = format!("{}-{}", template.namespace, template.name).replace('.', "-");
    let id = if full.len() <= 63 {
        full
    } else {
        // FNV-1a: stable across releases, unlike the std hasher.
        let hash = full.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        format!("{}-{:08x}", full[..54].trim_end_matches('-'), hash as u32)
    };
    ActorRef::new(GOLDEN_ATESPACE, id)
}

#[derive(Debug, Clone, Copy)]
struct Retry {
    failures: u32,
    next: Instant,
}

/// Bakes golden snapshots for templates that lack one.
#[derive(Clone)]
pub struct Golden {
    store: Arc<dyn Store>,
    lifecycle: Lifecycle,
}

impl std::fmt::Debug for Golden {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Golden").finish_non_exhaustive()
    }
}

impl Golden {
    pub fn new(store: Arc<dyn Store>, lifecycle: Lifecycle) -> Self {
        Self { store, lifecycle }
    }

    /// Boots the template's golden actor, suspends it once ready and records the snapshot
    /// on the template. Returns the updated template.
    pub async fn bake(&self, t: &ActorTemplate) -> Result<ActorTemplate, LifecycleError> {
        let gref = golden_actor(&t.id());
        let golden = Actor {
            atespace: gref.atespace.clone(),
            id: gref.id.clone(),
            uid: crate::new_actor_uid(),
            template: t.id(),
            status: ActorStatus::Suspended,
            ..Default::default()
        };
        match self.store.create(golden).await {
            Ok(_) | Err(StoreError::AlreadyExists { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        self.lifecycle.resume(&gref, true).await?;
        let parked = match self.lifecycle.suspend(&gref).await {
            Ok(a) => a,
            Err(e) => {
                // Free the worker now rather than hold it until the retry.
                self.lifecycle
                    .discard(&gref, &format!("golden snapshot failed: {e}"))
                    .await?;
                return Err(e);
            }
        };
        let uri = parked
            .latest_snapshot
            .as_ref()
            .map(|s| s.uri().to_string())
            .unwrap_or_default();
        let status = TemplateStatus {
            phase: PHASE_READY.into(),
            golden_actor: gref.to_string(),
            golden_snapshot: uri,
            message: String::new(),
        };
        let t = self.set_status(&t.id(), status).await?;
        tracing::info!(template = %t.id(), snapshot = %t.status.golden_snapshot, "golden snapshot ready");
        Ok(t)
    }

    async fn set_status(
        &self,
        id: &NamespacedName,
        status: TemplateStatus,
    ) -> Result<ActorTemplate, StoreError> {
        loop {
            let mut t: ActorTemplate = self.store.get(&id.key()).await?;
            if t.status == status {
                return Ok(t);
            }
            t.status = status.clone();
            match self.store.update(t).await {
                Err(StoreError::Conflict { .. }) => continue,
                other => return other,
            }
        }
    }

    /// One pass: bakes what is due, and deletes golden actors whose template is gone.
    async fn pass(&self, retries: &mut HashMap<String, Retry>) -> Result<(), StoreError> {
        let templates = self
            .store
            .list_all::<ActorTemplate>(&ListOptions::default())
            .await?;
        for t in &templates {
            let key = t.id().key();
            if t.status.phase == PHASE_READY {
                retries.remove(&key);
                continue;
            }
            if retries.get(&key).is_some_and(|r| r.next > Instant::now()) {
                continue;
            }
            if t.status.phase.is_empty() {
                let pending = TemplateStatus {
                    phase: PHASE_PENDING.into(),
                    message: "baking the golden snapshot".into(),
                    ..Default::default()
                };
                self.set_status(&t.id(), pending).await?;
            }
            if let Err(e) = self.bake(t).await {
                let failures = retries.get(&key).map_or(0, |r| r.failures) + 1;
                let delay = (FIRST_BACKOFF * 2u32.saturating_pow(failures - 1)).min(MAX_BACKOFF);
                tracing::warn!(template = %key, failures, error = %e, "golden snapshot failed");
                let pending = TemplateStatus {
                    phase: PHASE_PENDING.into(),
                    message: format!(
                        "attempt {failures} failed: {e}; retrying in {}s",
                        delay.as_secs()
                    ),
                    ..Default::default()
                };
                retries.insert(
                    key,
                    Retry {
                        failures,
                        next: Instant::now() + delay,
                    },
                );
                self.set_status(&t.id(), pending).await?;
            }
        }
        let goldens = ListOptions::with_fields(FieldSelector::eq([("atespace", GOLDEN_ATESPACE)]));
        for a in self.store.list_all::<Actor>(&goldens).await? {
            if !templates.iter().any(|t| t.id() == a.template) {
                match self.lifecycle.delete(&a.actor_ref()).await {
                    Ok(()) => {
                        tracing::info!(actor = %a.actor_ref(), "golden actor of a deleted template removed")
                    }
                    Err(e) => {
                        tracing::debug!(actor = %a.actor_ref(), error = %e, "golden actor not removed yet")
                    }
                }
            }
        }
        Ok(())
    }

    /// Bakes until the handle is dropped: on template changes, and every second for
    /// retries that fall due.
    pub fn start(self) -> GoldenHandle {
        GoldenHandle(tokio::spawn(async move {
            let mut retries = HashMap::new();
            let mut changes = self.store.watch(Kind::ActorTemplate).await.ok();
            loop {
                if let Err(e) = self.pass(&mut retries).await {
                    tracing::warn!(error = %e, "golden snapshot pass failed; retrying");
                }
                let tick = tokio::time::sleep(FIRST_BACKOFF);
                match changes.as_mut() {
                    Some(w) => tokio::select! {
                        ev = w.recv() => if ev.is_none() {
                            changes = self.store.watch(Kind::ActorTemplate).await.ok();
                        },
                        _ = tick => {}
                    },
                    None => tick.await,
                }
            }
        }))
    }
}

/// The running golden-snapshot loop; dropping it stops the loop.
#[derive(Debug)]
pub struct GoldenHandle(JoinHandle<()>);

impl Drop for GoldenHandle {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_actor_ids_are_labels() {
        let short = golden_actor(&NamespacedName::new("demo", "counter.v2"));
        assert_eq!(short.to_string(), "ate-golden/demo-counter-v2");
        let long = golden_actor(&NamespacedName::new("team", "x".repeat(80)));
        assert!(long.id.len() <= 63, "{}", long.id);
        long.validate("golden").unwrap();
        let other = golden_actor(&NamespacedName::new("team", "x".repeat(81)));
        assert_ne!(long, other, "the hash keeps long names apart");
    }
}
