//! The `ateapi.Control` trait implementation: a thin dispatch onto the handlers in
//! [`crate::actors`], [`crate::catalog`] and [`crate::drain`].

use std::sync::Arc;

use ate_proto::ateapi as pb;
use ate_proto::ateapi::control_server::Control;
use ate_seam::NodeDirectory;

use crate::lifecycle::{Lifecycle, LifecycleConfig};
use ate_store::Store;
use tonic::{Request, Response, Status};

type Reply<T> = Result<Response<T>, Status>;

/// The control service over one store, and the nodes it can reach (none for an API-only
/// control plane).
#[derive(Clone)]
pub struct ControlService {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) nodes: Option<Arc<dyn NodeDirectory>>,
    pub(crate) lifecycle: Lifecycle,
}

impl std::fmt::Debug for ControlService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlService").finish_non_exhaustive()
    }
}

impl ControlService {
    pub fn new(store: Arc<dyn Store>) -> Self {
        let lifecycle = Lifecycle::new(store.clone(), None, LifecycleConfig::default());
        Self {
            store,
            nodes: None,
            lifecycle,
        }
    }

    /// The same service, driving the nodes in `nodes` with default lifecycle settings.
    pub fn with_nodes(self, nodes: Arc<dyn NodeDirectory>) -> Self {
        let lifecycle = Lifecycle::new(
            self.store.clone(),
            Some(nodes.clone()),
            LifecycleConfig::default(),
        );
        Self {
            nodes: Some(nodes),
            lifecycle,
            ..self
        }
    }

    /// The same service, running workflows through `lifecycle` (built over the same store
    /// and nodes).
    pub fn with_lifecycle(self, lifecycle: Lifecycle) -> Self {
        Self {
            nodes: lifecycle.node_directory(),
            lifecycle,
            ..self
        }
    }

    pub fn lifecycle(&self) -> &Lifecycle {
        &self.lifecycle
    }
}

fn ok<T>(r: Result<T, Status>) -> Reply<T> {
    r.map(Response::new)
}

#[tonic::async_trait]
impl Control for ControlService {
    async fn get_actor(&self, r: Request<pb::GetActorRequest>) -> Reply<pb::Actor> {
        ok(self.get_actor_impl(r.get_ref()).await)
    }

    async fn create_actor(&self, r: Request<pb::CreateActorRequest>) -> Reply<pb::Actor> {
        ok(self.create_actor_impl(r.get_ref()).await)
    }

    async fn update_actor(
        &self,
        r: Request<pb::UpdateActorRequest>,
    ) -> Reply<pb::UpdateActorResponse> {
        ok(self.update_actor_impl(r.get_ref()).await)
    }

    async fn suspend_actor(
        &self,
        r: Request<pb::SuspendActorRequest>,
    ) -> Reply<pb::SuspendActorResponse> {
        ok(self
            .suspend_impl(r.get_ref().actor_ref.as_ref())
            .await
            .map(|a| pb::SuspendActorResponse { actor: Some(a) }))
    }

    async fn pause_actor(
        &self,
        r: Request<pb::PauseActorRequest>,
    ) -> Reply<pb::PauseActorResponse> {
        ok(self
            .pause_impl(r.get_ref().actor_ref.as_ref())
            .await
            .map(|a| pb::PauseActorResponse { actor: Some(a) }))
    }

    async fn resume_actor(
        &self,
        r: Request<pb::ResumeActorRequest>,
    ) -> Reply<pb::ResumeActorResponse> {
        let r = r.get_ref();
        ok(self
            .resume_impl(r.actor_ref.as_ref(), r.boot)
            .await
            .map(|a| pb::ResumeActorResponse { actor: Some(a) }))
    }

    async fn delete_actor(
        &self,
        r: Request<pb::DeleteActorRequest>,
    ) -> Reply<pb::DeleteActorResponse> {
        ok(self.delete_actor_impl(r.get_ref()).await)
    }

    async fn list_workers(
        &self,
        r: Request<pb::ListWorkersRequest>,
    ) -> Reply<pb::ListWorkersResponse> {
        ok(self.list_workers_impl(r.get_ref()).await)
    }

    async fn list_actors(
        &self,
        r: Request<pb::ListActorsRequest>,
    ) -> Reply<pb::ListActorsResponse> {
        ok(self.list_actors_impl(r.get_ref()).await)
    }

    async fn create_atespace(&self, r: Request<pb::CreateAtespaceRequest>) -> Reply<pb::Atespace> {
        ok(self.create_atespace_impl(&r.get_ref().name).await)
    }

    async fn get_atespace(&self, r: Request<pb::GetAtespaceRequest>) -> Reply<pb::Atespace> {
        ok(self.get_atespace_impl(&r.get_ref().name).await)
    }

    async fn list_atespaces(
        &self,
        _r: Request<pb::ListAtespacesRequest>,
    ) -> Reply<pb::ListAtespacesResponse> {
        ok(self.list_atespaces_impl().await)
    }

    async fn delete_atespace(
        &self,
        r: Request<pb::DeleteAtespaceRequest>,
    ) -> Reply<pb::DeleteAtespaceResponse> {
        ok(self.delete_atespace_impl(&r.get_ref().name).await)
    }

    async fn apply_actor_template(
        &self,
        r: Request<pb::ApplyActorTemplateRequest>,
    ) -> Reply<pb::ApplyActorTemplateResponse> {
        ok(self.apply_template_impl(r.get_ref()).await)
    }

    async fn get_actor_template(
        &self,
        r: Request<pb::GetActorTemplateRequest>,
    ) -> Reply<pb::ActorTemplate> {
        let r = r.get_ref();
        ok(self.get_template_impl(&r.namespace, &r.name).await)
    }

    async fn list_actor_templates(
        &self,
        r: Request<pb::ListActorTemplatesRequest>,
    ) -> Reply<pb::ListActorTemplatesResponse> {
        ok(self.list_templates_impl(&r.get_ref().namespace).await)
    }

    async fn delete_actor_template(
        &self,
        r: Request<pb::DeleteActorTemplateRequest>,
    ) -> Reply<pb::DeleteActorTemplateResponse> {
        let r = r.get_ref();
        ok(self.delete_template_impl(&r.namespace, &r.name).await)
    }

    async fn apply_worker_pool(
        &self,
        r: Request<pb::ApplyWorkerPoolRequest>,
    ) -> Reply<pb::ApplyWorkerPoolResponse> {
        ok(self.apply_pool_impl(r.get_ref()).await)
    }

    async fn get_worker_pool(&self, r: Request<pb::GetWorkerPoolRequest>) -> Reply<pb::WorkerPool> {
        let r = r.get_ref();
        ok(self.get_pool_impl(&r.namespace, &r.name).await)
    }

    async fn list_worker_pools(
        &self,
        r: Request<pb::ListWorkerPoolsRequest>,
    ) -> Reply<pb::ListWorkerPoolsResponse> {
        ok(self.list_pools_impl(&r.get_ref().namespace).await)
    }

    async fn delete_worker_pool(
        &self,
        r: Request<pb::DeleteWorkerPoolRequest>,
    ) -> Reply<pb::DeleteWorkerPoolResponse> {
        let r = r.get_ref();
        ok(self.delete_pool_impl(&r.namespace, &r.name).await)
    }

    async fn list_nodes(&self, _r: Request<pb::ListNodesRequest>) -> Reply<pb::ListNodesResponse> {
        ok(self.list_nodes_impl().await)
    }

    async fn drain_node(&self, r: Request<pb::DrainNodeRequest>) -> Reply<pb::DrainNodeResponse> {
        ok(self.drain_node_impl(&r.get_ref().name).await)
    }

    async fn uncordon_node(
        &self,
        r: Request<pb::UncordonNodeRequest>,
    ) -> Reply<pb::UncordonNodeResponse> {
        ok(self.uncordon_node_impl(&r.get_ref().name).await)
    }

    type GetActorLogsStream = crate::logs::LogEntries;

    async fn get_actor_logs(
        &self,
        r: Request<pb::GetActorLogsRequest>,
    ) -> Reply<Self::GetActorLogsStream> {
        ok(self.actor_logs_impl(r.get_ref()).await)
    }
}
