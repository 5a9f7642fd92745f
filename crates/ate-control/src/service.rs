//! The `ateapi.Control` trait implementation: a thin dispatch onto the handlers in
//! [`crate::actors`], [`crate::catalog`] and [`crate::drain`].

use std::sync::Arc;

use ate_proto::ateapi as pb;
use ate_proto::ateapi::control_server::Control;
use ate_seam::NodeDirectory;

use crate::auth::audit::Call;
use crate::auth::{Authenticator, Caller, is_reserved};
use crate::lifecycle::{Lifecycle, LifecycleConfig};
use ate_auth::{Access, Scope};
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
    /// `None` only where no authentication is wanted (the service alone, in tests).
    pub(crate) auth: Option<Authenticator>,
    /// Refusals of unauthenticated calls, counted before they are audited.
    pub(crate) refusals: Arc<crate::auth::audit::Refusals>,
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
            auth: None,
            refusals: Arc::default(),
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

/// The `atespace/name` an actor call names, for scoping and the audit trail.
fn actor_of(r: Option<&pb::ActorRef>) -> (String, String) {
    let (ns, name) = r
        .map(|a| (a.atespace.as_str(), a.name.as_str()))
        .unwrap_or_default();
    (ns.to_string(), format!("{ns}/{name}"))
}

fn named(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// Cluster-wide changes (templates, pools, nodes) need an administrator of every atespace.
const CLUSTER_ADMIN: (Scope<'static>, Access) = (Scope::Cluster, Access::Admin);

/// What changing an actor in atespace `ns` needs. The system's actors (golden snapshots)
/// are everyone's: changing them takes an administrator of every atespace.
fn actor_change_needs(ns: &str) -> (Scope<'_>, Access) {
    if is_reserved(ns) {
        CLUSTER_ADMIN
    } else {
        (Scope::Atespace(ns), Access::Write)
    }
}

impl ControlService {
    /// Runs an actor-changing call: admitted for `access` in the actor's atespace, audited.
    async fn actor_change<Q, T>(
        &self,
        r: &Request<Q>,
        method: &'static str,
        actor: Option<&pb::ActorRef>,
        run: impl AsyncFnOnce(&Self) -> Result<T, Status>,
    ) -> Reply<T> {
        let (ns, target) = actor_of(actor);
        let call = Call::new(method, &ns, target);
        let (scope, access) = actor_change_needs(&ns);
        let caller = self.admit_change(r, &call, scope, access).await?;
        let result = run(self).await;
        self.audited(&caller, &call, result).await
    }

    /// Runs a cluster-wide change: admitted for cluster administrators, audited.
    async fn cluster_change<Q, T>(
        &self,
        r: &Request<Q>,
        call: Call,
        run: impl AsyncFnOnce(&Self) -> Result<T, Status>,
    ) -> Reply<T> {
        let (scope, access) = CLUSTER_ADMIN;
        let caller = self.admit_change(r, &call, scope, access).await?;
        let result = run(self).await;
        self.audited(&caller, &call, result).await
    }
}

#[tonic::async_trait]
impl Control for ControlService {
    async fn get_actor(&self, r: Request<pb::GetActorRequest>) -> Reply<pb::GetActorResponse> {
        let (ns, _) = actor_of(r.get_ref().actor_ref.as_ref());
        self.admit(&r, "GetActor", Scope::Atespace(&ns), Access::Read)
            .await?;
        ok(self.get_actor_impl(r.get_ref()).await)
    }

    async fn create_actor(
        &self,
        r: Request<pb::CreateActorRequest>,
    ) -> Reply<pb::CreateActorResponse> {
        let q = r.get_ref();
        self.actor_change(&r, "CreateActor", q.actor_ref.as_ref(), async |s| {
            s.create_actor_impl(q).await
        })
        .await
    }

    async fn update_actor(
        &self,
        r: Request<pb::UpdateActorRequest>,
    ) -> Reply<pb::UpdateActorResponse> {
        let q = r.get_ref();
        self.actor_change(&r, "UpdateActor", q.actor_ref.as_ref(), async |s| {
            s.update_actor_impl(q).await
        })
        .await
    }

    async fn suspend_actor(
        &self,
        r: Request<pb::SuspendActorRequest>,
    ) -> Reply<pb::SuspendActorResponse> {
        let a = r.get_ref().actor_ref.as_ref();
        self.actor_change(&r, "SuspendActor", a, async |s| {
            s.suspend_impl(a)
                .await
                .map(|a| pb::SuspendActorResponse { actor: Some(a) })
        })
        .await
    }

    async fn pause_actor(
        &self,
        r: Request<pb::PauseActorRequest>,
    ) -> Reply<pb::PauseActorResponse> {
        let a = r.get_ref().actor_ref.as_ref();
        self.actor_change(&r, "PauseActor", a, async |s| {
            s.pause_impl(a)
                .await
                .map(|a| pb::PauseActorResponse { actor: Some(a) })
        })
        .await
    }

    async fn resume_actor(
        &self,
        r: Request<pb::ResumeActorRequest>,
    ) -> Reply<pb::ResumeActorResponse> {
        let q = r.get_ref();
        let (ns, target) = actor_of(q.actor_ref.as_ref());
        let call = Call::new("ResumeActor", &ns, target);
        let (scope, access) = actor_change_needs(&ns);
        let caller = self.admit_change(&r, &call, scope, access).await?;
        let result = self.resume_impl(q.actor_ref.as_ref(), q.boot).await;
        // A router resumes for whatever traffic arrives: a name nobody created, or an actor
        // that is running already, changed nothing, and recording it would let anyone on
        // the internet write to the store at the rate they send requests.
        let unchanged = match &result {
            Ok((_, changed)) => !changed,
            Err(status) => status.code() == tonic::Code::NotFound,
        };
        let result = result.map(|(reply, _)| reply);
        if unchanged && matches!(caller, Caller::Component(_)) {
            return ok(result);
        }
        self.audited(&caller, &call, result).await
    }

    async fn delete_actor(
        &self,
        r: Request<pb::DeleteActorRequest>,
    ) -> Reply<pb::DeleteActorResponse> {
        let q = r.get_ref();
        self.actor_change(&r, "DeleteActor", q.actor_ref.as_ref(), async |s| {
            s.delete_actor_impl(q).await
        })
        .await
    }

    async fn list_workers(
        &self,
        r: Request<pb::ListWorkersRequest>,
    ) -> Reply<pb::ListWorkersResponse> {
        self.admit(&r, "ListWorkers", Scope::Cluster, Access::Admin)
            .await?;
        ok(self.list_workers_impl(r.get_ref()).await)
    }

    async fn list_actors(
        &self,
        r: Request<pb::ListActorsRequest>,
    ) -> Reply<pb::ListActorsResponse> {
        let q = r.get_ref();
        let caller = if q.atespace.is_empty() {
            self.admit(&r, "ListActors", Scope::Cluster, Access::Read)
                .await?
        } else {
            self.admit(&r, "ListActors", Scope::Atespace(&q.atespace), Access::Read)
                .await?
        };
        ok(self
            .list_actors_impl(q, caller.visible_atespaces().as_deref())
            .await)
    }

    async fn create_atespace(
        &self,
        r: Request<pb::CreateAtespaceRequest>,
    ) -> Reply<pb::CreateAtespaceResponse> {
        let name = &r.get_ref().name;
        let call = Call::new("CreateAtespace", name, name.clone());
        let caller = self
            .admit_change(&r, &call, Scope::Atespace(name), Access::Admin)
            .await?;
        let result = self.create_atespace_impl(name).await;
        self.audited(&caller, &call, result).await
    }

    async fn get_atespace(
        &self,
        r: Request<pb::GetAtespaceRequest>,
    ) -> Reply<pb::GetAtespaceResponse> {
        let name = &r.get_ref().name;
        self.admit(&r, "GetAtespace", Scope::Atespace(name), Access::Read)
            .await?;
        ok(self.get_atespace_impl(name).await)
    }

    async fn list_atespaces(
        &self,
        r: Request<pb::ListAtespacesRequest>,
    ) -> Reply<pb::ListAtespacesResponse> {
        let caller = self
            .admit(&r, "ListAtespaces", Scope::Cluster, Access::Read)
            .await?;
        let mut all = self.list_atespaces_impl().await?;
        if let Some(visible) = caller.visible_atespaces() {
            all.atespaces.retain(|a| visible.contains(&a.name));
        }
        ok(Ok(all))
    }

    async fn delete_atespace(
        &self,
        r: Request<pb::DeleteAtespaceRequest>,
    ) -> Reply<pb::DeleteAtespaceResponse> {
        let name = &r.get_ref().name;
        let call = Call::new("DeleteAtespace", name, name.clone());
        let caller = self
            .admit_change(&r, &call, Scope::Atespace(name), Access::Admin)
            .await?;
        let result = self.delete_atespace_impl(name).await;
        self.audited(&caller, &call, result).await
    }

    async fn apply_actor_template(
        &self,
        r: Request<pb::ApplyActorTemplateRequest>,
    ) -> Reply<pb::ApplyActorTemplateResponse> {
        let q = r.get_ref();
        let t = q.template.as_ref();
        let target = t.map(|t| named(&t.namespace, &t.name)).unwrap_or_default();
        self.cluster_change(&r, Call::cluster("ApplyActorTemplate", target), async |s| {
            s.apply_template_impl(q).await
        })
        .await
    }

    async fn get_actor_template(
        &self,
        r: Request<pb::GetActorTemplateRequest>,
    ) -> Reply<pb::ActorTemplate> {
        let caller = self
            .admit(&r, "GetActorTemplate", Scope::Cluster, Access::Read)
            .await?;
        let r = r.get_ref();
        ok(self.get_template_impl(&caller, &r.namespace, &r.name).await)
    }

    async fn list_actor_templates(
        &self,
        r: Request<pb::ListActorTemplatesRequest>,
    ) -> Reply<pb::ListActorTemplatesResponse> {
        let caller = self
            .admit(&r, "ListActorTemplates", Scope::Cluster, Access::Read)
            .await?;
        ok(self
            .list_templates_impl(&caller, &r.get_ref().namespace)
            .await)
    }

    async fn delete_actor_template(
        &self,
        r: Request<pb::DeleteActorTemplateRequest>,
    ) -> Reply<pb::DeleteActorTemplateResponse> {
        let q = r.get_ref();
        let call = Call::cluster("DeleteActorTemplate", named(&q.namespace, &q.name));
        self.cluster_change(&r, call, async |s| {
            s.delete_template_impl(&q.namespace, &q.name).await
        })
        .await
    }

    async fn apply_worker_pool(
        &self,
        r: Request<pb::ApplyWorkerPoolRequest>,
    ) -> Reply<pb::ApplyWorkerPoolResponse> {
        let q = r.get_ref();
        let p = q.pool.as_ref();
        let target = p.map(|p| named(&p.namespace, &p.name)).unwrap_or_default();
        self.cluster_change(&r, Call::cluster("ApplyWorkerPool", target), async |s| {
            s.apply_pool_impl(q).await
        })
        .await
    }

    async fn get_worker_pool(&self, r: Request<pb::GetWorkerPoolRequest>) -> Reply<pb::WorkerPool> {
        self.admit(&r, "GetWorkerPool", Scope::Cluster, Access::Read)
            .await?;
        let r = r.get_ref();
        ok(self.get_pool_impl(&r.namespace, &r.name).await)
    }

    async fn list_worker_pools(
        &self,
        r: Request<pb::ListWorkerPoolsRequest>,
    ) -> Reply<pb::ListWorkerPoolsResponse> {
        self.admit(&r, "ListWorkerPools", Scope::Cluster, Access::Read)
            .await?;
        ok(self.list_pools_impl(&r.get_ref().namespace).await)
    }

    async fn delete_worker_pool(
        &self,
        r: Request<pb::DeleteWorkerPoolRequest>,
    ) -> Reply<pb::DeleteWorkerPoolResponse> {
        let q = r.get_ref();
        let call = Call::cluster("DeleteWorkerPool", named(&q.namespace, &q.name));
        self.cluster_change(&r, call, async |s| {
            s.delete_pool_impl(&q.namespace, &q.name).await
        })
        .await
    }

    async fn list_nodes(&self, r: Request<pb::ListNodesRequest>) -> Reply<pb::ListNodesResponse> {
        self.admit(&r, "ListNodes", Scope::Cluster, Access::Admin)
            .await?;
        ok(self.list_nodes_impl().await)
    }

    async fn drain_node(&self, r: Request<pb::DrainNodeRequest>) -> Reply<pb::DrainNodeResponse> {
        let name = &r.get_ref().name;
        self.cluster_change(&r, Call::cluster("DrainNode", name.clone()), async |s| {
            s.drain_node_impl(name).await
        })
        .await
    }

    async fn uncordon_node(
        &self,
        r: Request<pb::UncordonNodeRequest>,
    ) -> Reply<pb::UncordonNodeResponse> {
        let name = &r.get_ref().name;
        self.cluster_change(&r, Call::cluster("UncordonNode", name.clone()), async |s| {
            s.uncordon_node_impl(name).await
        })
        .await
    }

    type GetActorLogsStream = crate::logs::LogEntries;

    async fn get_actor_logs(
        &self,
        r: Request<pb::GetActorLogsRequest>,
    ) -> Reply<Self::GetActorLogsStream> {
        let (ns, _) = actor_of(r.get_ref().actor_ref.as_ref());
        self.admit(&r, "GetActorLogs", Scope::Atespace(&ns), Access::Read)
            .await?;
        ok(self.actor_logs_impl(r.get_ref()).await)
    }
}
