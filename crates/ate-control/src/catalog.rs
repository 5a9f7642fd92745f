//! Templates, pools and nodes: the declared shape of the system. A template's `env` values
//! are shown to admins of every atespace only (they may change templates anyway); every
//! other reader gets the names with [`REDACTED`] for the values, since values are often
//! credentials.

use ate_auth::{Access, Scope};
use ate_model::PoolStatus;
use ate_model::names::{GOLDEN_ATESPACE, validate_label, validate_subdomain};
use ate_model::{ActorTemplate, FieldSelector, NamespacedName, Node, TemplateStatus, WorkerPool};
use ate_proto::ateapi as pb;
use ate_proto::convert::{node_to_pb, pool_from_pb, pool_to_pb, template_from_pb, template_to_pb};
use ate_proto::status::invalid;
use ate_store::{ListOptions, Object, StoreError};
use tonic::Status;

use crate::errors;
use crate::golden::golden_actor;
use crate::{Caller, ControlService, LifecycleError};

/// What a template's `env` value reads as for a caller who may not see it.
pub const REDACTED: &str = "<redacted>";

/// The template as `caller` may see it: `env` values replaced by [`REDACTED`] unless the
/// caller administers every atespace (the callers who may apply templates).
fn visible_to(caller: &Caller, mut t: pb::ActorTemplate) -> pb::ActorTemplate {
    if caller.authorize(Scope::Cluster, Access::Admin).is_err()
        && let Some(spec) = t.spec.as_mut()
    {
        for var in &mut spec.env {
            var.value = REDACTED.to_string();
        }
    }
    t
}

fn object_id(namespace: &str, name: &str) -> Result<NamespacedName, Status> {
    validate_label("namespace", namespace).map_err(invalid)?;
    validate_subdomain("name", name).map_err(invalid)?;
    Ok(NamespacedName::new(namespace, name))
}

fn by_namespace(namespace: &str) -> Result<ListOptions, Status> {
    let mut sel = FieldSelector::default();
    if !namespace.is_empty() {
        validate_label("namespace", namespace).map_err(invalid)?;
        sel = sel.and_eq("namespace", namespace);
    }
    Ok(ListOptions::with_fields(sel))
}

/// How many times an apply retries after losing a race with another writer.
const APPLY_ATTEMPTS: usize = 5;

impl ControlService {
    pub(crate) async fn apply_template_impl(
        &self,
        r: &pb::ApplyActorTemplateRequest,
    ) -> Result<pb::ApplyActorTemplateResponse, Status> {
        let wire = r
            .template
            .as_ref()
            .ok_or_else(|| Status::invalid_argument("template is required"))?;
        let mut t = template_from_pb(wire).map_err(invalid)?;
        t.validate().map_err(invalid)?;
        // Status is the server's to set.
        t.status = TemplateStatus::default();
        match self.store.create(t.clone()).await {
            Ok(created) => {
                tracing::info!(template = %created.id(), "template created");
                Ok(pb::ApplyActorTemplateResponse {
                    template: Some(template_to_pb(&created)),
                    created: true,
                })
            }
            Err(StoreError::AlreadyExists { .. }) => {
                let existing: ActorTemplate =
                    self.store.get(&t.key()).await.map_err(errors::store)?;
                if existing.spec != t.spec {
                    return Err(Status::failed_precondition(format!(
                        "template {} already exists with a different spec; templates are \
                         immutable, apply the new spec under a new name",
                        t.id()
                    )));
                }
                Ok(pb::ApplyActorTemplateResponse {
                    template: Some(template_to_pb(&existing)),
                    created: false,
                })
            }
            Err(e) => Err(errors::store(e)),
        }
    }

    /// One template, as `caller` may see it (see [`REDACTED`]).
    pub(crate) async fn get_template_impl(
        &self,
        caller: &Caller,
        namespace: &str,
        name: &str,
    ) -> Result<pb::ActorTemplate, Status> {
        let id = object_id(namespace, name)?;
        let t: ActorTemplate = self.store.get(&id.key()).await.map_err(errors::store)?;
        Ok(visible_to(caller, template_to_pb(&t)))
    }

    /// The templates of a namespace (all when empty), as `caller` may see them.
    pub(crate) async fn list_templates_impl(
        &self,
        caller: &Caller,
        namespace: &str,
    ) -> Result<pb::ListActorTemplatesResponse, Status> {
        let all = self
            .store
            .list_all::<ActorTemplate>(&by_namespace(namespace)?)
            .await
            .map_err(errors::store)?;
        Ok(pb::ListActorTemplatesResponse {
            templates: all
                .iter()
                .map(|t| visible_to(caller, template_to_pb(t)))
                .collect(),
        })
    }

    pub(crate) async fn delete_template_impl(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<pb::DeleteActorTemplateResponse, Status> {
        let id = object_id(namespace, name)?;
        let users = ListOptions {
            field_selector: FieldSelector::eq([("template", id.key().as_str())])
                .and_not_eq("atespace", GOLDEN_ATESPACE),
            limit: 1,
            ..Default::default()
        };
        let page = self
            .store
            .list::<ate_model::Actor>(&users)
            .await
            .map_err(errors::store)?;
        if let Some(a) = page.items.first() {
            return Err(Status::failed_precondition(format!(
                "template {id} is used by actors (e.g. {}); delete them first",
                a.actor_ref()
            )));
        }
        // The golden actor (and its snapshots) goes with the template.
        match self.lifecycle.delete(&golden_actor(&id)).await {
            Ok(()) | Err(LifecycleError::Store(StoreError::NotFound { .. })) => {}
            Err(e) => return Err(errors::lifecycle(e)),
        }
        self.store
            .delete::<ActorTemplate>(&id.key(), None)
            .await
            .map_err(errors::store)?;
        tracing::info!(template = %id, "template deleted");
        Ok(pb::DeleteActorTemplateResponse {})
    }

    pub(crate) async fn apply_pool_impl(
        &self,
        r: &pb::ApplyWorkerPoolRequest,
    ) -> Result<pb::ApplyWorkerPoolResponse, Status> {
        let wire = r
            .pool
            .as_ref()
            .ok_or_else(|| Status::invalid_argument("pool is required"))?;
        let mut desired = pool_from_pb(wire);
        desired.validate().map_err(invalid)?;
        desired.status = PoolStatus::default();
        for _ in 0..APPLY_ATTEMPTS {
            let existing = match self.store.get::<WorkerPool>(&desired.key()).await {
                Ok(p) => p,
                Err(StoreError::NotFound { .. }) => {
                    match self.store.create(desired.clone()).await {
                        Ok(p) => return Ok(pool_reply(&p, "created")),
                        Err(StoreError::AlreadyExists { .. }) => continue,
                        Err(e) => return Err(errors::store(e)),
                    }
                }
                Err(e) => return Err(errors::store(e)),
            };
            if existing.spec == desired.spec {
                return Ok(pool_reply(&existing, "unchanged"));
            }
            let mut next = existing.clone();
            next.spec = desired.spec.clone();
            match self.store.update(next).await {
                Ok(p) => {
                    tracing::info!(pool = %p.id(), replicas = p.spec.replicas, "pool configured");
                    return Ok(pool_reply(&p, "configured"));
                }
                Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => continue,
                Err(e) => return Err(errors::store(e)),
            }
        }
        Err(Status::aborted(format!(
            "pool {} changed concurrently, please retry",
            desired.id()
        )))
    }

    pub(crate) async fn get_pool_impl(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<pb::WorkerPool, Status> {
        let id = object_id(namespace, name)?;
        let p: WorkerPool = self.store.get(&id.key()).await.map_err(errors::store)?;
        Ok(pool_to_pb(&p))
    }

    pub(crate) async fn list_pools_impl(
        &self,
        namespace: &str,
    ) -> Result<pb::ListWorkerPoolsResponse, Status> {
        let all = self
            .store
            .list_all::<WorkerPool>(&by_namespace(namespace)?)
            .await
            .map_err(errors::store)?;
        Ok(pb::ListWorkerPoolsResponse {
            pools: all.iter().map(pool_to_pb).collect(),
        })
    }

    pub(crate) async fn delete_pool_impl(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<pb::DeleteWorkerPoolResponse, Status> {
        let id = object_id(namespace, name)?;
        self.store
            .delete::<WorkerPool>(&id.key(), None)
            .await
            .map_err(errors::store)?;
        tracing::info!(pool = %id, "pool deleted");
        Ok(pb::DeleteWorkerPoolResponse {})
    }

    pub(crate) async fn list_nodes_impl(&self) -> Result<pb::ListNodesResponse, Status> {
        let nodes = self
            .store
            .list_all::<Node>(&ListOptions::default())
            .await
            .map_err(errors::store)?;
        Ok(pb::ListNodesResponse {
            nodes: nodes.iter().map(node_to_pb).collect(),
        })
    }
}

fn pool_reply(p: &WorkerPool, outcome: &str) -> pb::ApplyWorkerPoolResponse {
    pb::ApplyWorkerPoolResponse {
        pool: Some(pool_to_pb(p)),
        outcome: outcome.into(),
    }
}
