//! Atespace and actor handlers.

use ate_model::names::{validate_label, validate_subdomain, validate_user_atespace};
use ate_model::{
    Actor, ActorRef, ActorStatus, ActorTemplate, Atespace, FieldSelector, Kind, NamespacedName,
    Worker,
};
use ate_proto::ateapi as pb;
use ate_proto::convert::{actor_ref_from_pb, actor_to_pb, selector_from_pb, worker_to_pb};
use ate_proto::status::invalid;
use ate_store::{ListOptions, MAX_PAGE, StoreError};
use tonic::Status;

use crate::errors::{self, field_selector};
use crate::{ControlService, Lifecycle, LifecycleError};

/// Validates an actor reference from a request: both parts are DNS-1123 labels.
pub(crate) fn actor_ref(r: Option<&pb::ActorRef>) -> Result<ActorRef, Status> {
    let r = actor_ref_from_pb(r);
    r.validate("actor_ref").map_err(invalid)?;
    Ok(r)
}

impl ControlService {
    pub(crate) async fn create_atespace_impl(
        &self,
        name: &str,
    ) -> Result<pb::CreateAtespaceResponse, Status> {
        validate_user_atespace("name", name).map_err(invalid)?;
        let a = self
            .store
            .create(Atespace {
                name: name.into(),
                version: 0,
            })
            .await
            .map_err(errors::store)?;
        tracing::info!(atespace = %a.name, "atespace created");
        Ok(pb::CreateAtespaceResponse {
            atespace: Some(pb::Atespace { name: a.name }),
        })
    }

    pub(crate) async fn get_atespace_impl(
        &self,
        name: &str,
    ) -> Result<pb::GetAtespaceResponse, Status> {
        validate_label("name", name).map_err(invalid)?;
        let a: Atespace = self.store.get(name).await.map_err(errors::store)?;
        Ok(pb::GetAtespaceResponse {
            atespace: Some(pb::Atespace { name: a.name }),
        })
    }

    pub(crate) async fn list_atespaces_impl(&self) -> Result<pb::ListAtespacesResponse, Status> {
        let all = self
            .store
            .list_all::<Atespace>(&ListOptions::default())
            .await
            .map_err(errors::store)?;
        Ok(pb::ListAtespacesResponse {
            atespaces: all
                .into_iter()
                .map(|a| pb::Atespace { name: a.name })
                .collect(),
        })
    }

    pub(crate) async fn delete_atespace_impl(
        &self,
        name: &str,
    ) -> Result<pb::DeleteAtespaceResponse, Status> {
        validate_user_atespace("name", name).map_err(invalid)?;
        self.store
            .delete::<Atespace>(name, None)
            .await
            .map_err(errors::store)?;
        tracing::info!(atespace = %name, "atespace deleted");
        Ok(pb::DeleteAtespaceResponse {})
    }

    pub(crate) async fn create_actor_impl(
        &self,
        r: &pb::CreateActorRequest,
    ) -> Result<pb::CreateActorResponse, Status> {
        let aref = actor_ref(r.actor_ref.as_ref())?;
        validate_user_atespace("actor_ref.atespace", &aref.atespace).map_err(invalid)?;
        validate_label("actor_template_namespace", &r.actor_template_namespace).map_err(invalid)?;
        validate_subdomain("actor_template_name", &r.actor_template_name).map_err(invalid)?;
        let selector = selector_from_pb(r.worker_selector.as_ref());
        selector.validate("worker_selector").map_err(invalid)?;
        let template = NamespacedName::new(&r.actor_template_namespace, &r.actor_template_name);
        match self.store.get::<ActorTemplate>(&template.key()).await {
            Ok(_) => {}
            Err(StoreError::NotFound { .. }) => {
                return Err(Status::failed_precondition(format!(
                    "template {template} not found"
                )));
            }
            Err(e) => return Err(errors::store(e)),
        }
        let actor = Actor {
            atespace: aref.atespace,
            id: aref.id,
            uid: crate::new_actor_uid(),
            template,
            status: ActorStatus::Suspended,
            worker_selector: selector,
            ..Default::default()
        };
        let created = self.store.create(actor).await.map_err(errors::store)?;
        tracing::info!(actor = %created.actor_ref(), template = %created.template, "actor created");
        Ok(pb::CreateActorResponse {
            actor: Some(actor_to_pb(&created)),
        })
    }

    pub(crate) async fn get_actor_impl(
        &self,
        r: &pb::GetActorRequest,
    ) -> Result<pb::GetActorResponse, Status> {
        let aref = actor_ref(r.actor_ref.as_ref())?;
        let a: Actor = self.store.get(&aref.key()).await.map_err(errors::store)?;
        Ok(pb::GetActorResponse {
            actor: Some(actor_to_pb(&a)),
        })
    }

    pub(crate) async fn update_actor_impl(
        &self,
        r: &pb::UpdateActorRequest,
    ) -> Result<pb::UpdateActorResponse, Status> {
        let aref = actor_ref(r.actor_ref.as_ref())?;
        let selector = selector_from_pb(r.worker_selector.as_ref());
        selector.validate("worker_selector").map_err(invalid)?;
        let mut a: Actor = self.store.get(&aref.key()).await.map_err(errors::store)?;
        a.worker_selector = selector;
        let a = self.store.update(a).await.map_err(errors::store)?;
        Ok(pb::UpdateActorResponse {
            actor: Some(actor_to_pb(&a)),
        })
    }

    pub(crate) async fn delete_actor_impl(
        &self,
        r: &pb::DeleteActorRequest,
    ) -> Result<pb::DeleteActorResponse, Status> {
        let aref = actor_ref(r.actor_ref.as_ref())?;
        self.run_workflow(move |l| async move { l.delete(&aref).await })
            .await?;
        Ok(pb::DeleteActorResponse {})
    }

    /// Resumes the actor: the reply (with its route timeout, so a router can forward at
    /// once), and whether anything changed (it was not running).
    pub(crate) async fn resume_impl(
        &self,
        r: Option<&pb::ActorRef>,
        boot: bool,
    ) -> Result<(pb::ResumeActorResponse, bool), Status> {
        let aref = actor_ref(r)?;
        let (a, changed, route) = self
            .run_workflow(move |l| async move {
                let (a, changed) = l.resume_reporting(&aref, boot).await?;
                let route = l.route_of(&a).await?;
                Ok((a, changed, route))
            })
            .await?;
        let reply = pb::ResumeActorResponse {
            actor: Some(actor_to_pb(&a)),
            route_timeout_ms: route.map_or(0, |r| r.timeout_ms),
        };
        Ok((reply, changed))
    }

    pub(crate) async fn suspend_impl(&self, r: Option<&pb::ActorRef>) -> Result<pb::Actor, Status> {
        let aref = actor_ref(r)?;
        let a = self
            .run_workflow(move |l| async move { l.suspend(&aref).await })
            .await?;
        Ok(actor_to_pb(&a))
    }

    pub(crate) async fn pause_impl(&self, r: Option<&pb::ActorRef>) -> Result<pb::Actor, Status> {
        let aref = actor_ref(r)?;
        let a = self
            .run_workflow(move |l| async move { l.pause(&aref).await })
            .await?;
        Ok(actor_to_pb(&a))
    }

    /// Runs a workflow as its own task: a client that hangs up does not cut it off
    /// between two steps.
    async fn run_workflow<T, F, Fut>(&self, workflow: F) -> Result<T, Status>
    where
        T: Send + 'static,
        F: FnOnce(Lifecycle) -> Fut,
        Fut: std::future::Future<Output = Result<T, LifecycleError>> + Send + 'static,
    {
        tokio::spawn(workflow(self.lifecycle.clone()))
            .await
            .map_err(|e| Status::internal(format!("workflow task failed: {e}")))?
            .map_err(errors::lifecycle)
    }

    /// One page of actors; with `visible`, only those in the named atespaces (a scoped
    /// token listing across atespaces), pushed down to the store when it is one atespace.
    pub(crate) async fn list_actors_impl(
        &self,
        r: &pb::ListActorsRequest,
        visible: Option<&[String]>,
    ) -> Result<pb::ListActorsResponse, Status> {
        if !(0..=MAX_PAGE as i32).contains(&r.page_size) {
            return Err(Status::invalid_argument(format!(
                "page_size must be between 0 and {MAX_PAGE} (got {})",
                r.page_size
            )));
        }
        let mut selector = field_selector(&r.field_selector, Kind::Actor)?;
        if !r.atespace.is_empty() {
            validate_label("atespace", &r.atespace).map_err(invalid)?;
            selector = selector.and_eq("atespace", &r.atespace);
        } else if let Some([only]) = visible {
            selector = selector.and_eq("atespace", only);
        } else if let Some(several) = visible {
            return self.list_covered(r, selector, several).await;
        }
        let opts = ListOptions {
            field_selector: selector,
            limit: r.page_size as usize,
            continue_token: (!r.page_token.is_empty()).then(|| r.page_token.clone()),
            ..Default::default()
        };
        let page = self
            .store
            .list::<Actor>(&opts)
            .await
            .map_err(errors::store)?;
        Ok(pb::ListActorsResponse {
            actors: page
                .items
                .iter()
                .filter(|a| visible.is_none_or(|v| v.contains(&a.atespace)))
                .map(actor_to_pb)
                .collect(),
            next_page_token: page.continue_token.unwrap_or_default(),
        })
    }

    /// Lists the actors of several atespaces, one atespace at a time in name order, each
    /// through its index: the store never reads, and a page token never names, an actor
    /// outside them. A token is the key of the last actor returned.
    async fn list_covered(
        &self,
        r: &pb::ListActorsRequest,
        selector: FieldSelector,
        atespaces: &[String],
    ) -> Result<pb::ListActorsResponse, Status> {
        let mut spaces: Vec<&str> = atespaces.iter().map(String::as_str).collect();
        spaces.sort_unstable();
        spaces.dedup();
        let mut after = None;
        if !r.page_token.is_empty() {
            let key = ate_store::decode_token(&r.page_token).map_err(invalid)?;
            let ns = key.split('/').next().unwrap_or_default().to_string();
            let Some(at) = spaces.iter().position(|s| *s == ns) else {
                return Err(Status::invalid_argument(
                    "page_token: not a token this server issued for this caller",
                ));
            };
            spaces.drain(..at);
            after = Some(r.page_token.clone());
        }
        let limit = if r.page_size == 0 {
            MAX_PAGE
        } else {
            r.page_size as usize
        };
        let mut actors = Vec::new();
        for ns in spaces {
            let opts = ListOptions {
                field_selector: selector.clone().and_eq("atespace", ns),
                limit: limit - actors.len(),
                continue_token: after.take(),
                ..Default::default()
            };
            let page = self
                .store
                .list::<Actor>(&opts)
                .await
                .map_err(errors::store)?;
            actors.extend(page.items);
            if actors.len() >= limit {
                break;
            }
        }
        let next_page_token = if actors.len() >= limit {
            actors
                .last()
                .map(|a| ate_store::encode_token(&a.actor_ref().key()))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(pb::ListActorsResponse {
            actors: actors.iter().map(actor_to_pb).collect(),
            next_page_token,
        })
    }

    pub(crate) async fn list_workers_impl(
        &self,
        r: &pb::ListWorkersRequest,
    ) -> Result<pb::ListWorkersResponse, Status> {
        let selector: FieldSelector = field_selector(&r.field_selector, Kind::Worker)?;
        let workers = self
            .store
            .list_all::<Worker>(&ListOptions::with_fields(selector))
            .await
            .map_err(errors::store)?;
        Ok(pb::ListWorkersResponse {
            workers: workers.iter().map(worker_to_pb).collect(),
        })
    }
}
