//! The control plane's background work over a set of nodes, the same whether the nodes
//! live in this process (`ate up`) or on other machines (`ate serve --roles api`): the
//! lifecycle that the API and the router resume through, the fleet that gives nodes their
//! workers, the recovery sweep, golden snapshots, idle suspension and the reaction to
//! programs that exited by themselves.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ate_control::auth::audit::{PruningHandle, start_pruning};
use ate_control::{
    Authenticator, ControlService, ExitHandle, Fleet, FleetHandle, Golden, GoldenHandle,
    IdleHandle, Lifecycle, LifecycleConfig, RecoveryHandle,
};
use ate_seam::NodeDirectory;
use ate_store::Store;

/// What a control plane is tuned by.
#[derive(Debug, Clone, Default)]
pub struct PlaneConfig {
    pub lifecycle: LifecycleConfig,
    /// How long audit events are kept (`None`: forever). Every mutating call writes one, so
    /// a busy cluster needs a bound.
    pub audit_retention: Option<Duration>,
}

/// The running control-plane loops. Dropping it stops them.
pub struct ControlPlane {
    pub lifecycle: Lifecycle,
    pub nodes: Arc<dyn NodeDirectory>,
    /// Checks the bearer tokens of API calls (and, in process, of router traffic).
    pub auth: Authenticator,
    store: Arc<dyn Store>,
    _fleet: FleetHandle,
    _golden: GoldenHandle,
    _recovery: RecoveryHandle,
    _idle: IdleHandle,
    _exits: ExitHandle,
    _audit_pruning: Option<PruningHandle>,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("nodes", &self.nodes)
            .finish_non_exhaustive()
    }
}

impl ControlPlane {
    /// Starts the loops over `nodes`, whose dataspace must already show the live nodes:
    /// the first fleet pass recovers the actors of every node it does not see.
    pub async fn start(
        store: &Arc<dyn Store>,
        nodes: Arc<dyn NodeDirectory>,
        config: PlaneConfig,
    ) -> anyhow::Result<Self> {
        let PlaneConfig {
            lifecycle: config,
            audit_retention,
        } = config;
        let sweep_every = (config.lease_ttl / 2).max(Duration::from_millis(500));
        let auth = Authenticator::start(store.clone())
            .await
            .context("cannot load the token signing keys")?;
        let lifecycle = Lifecycle::new(store.clone(), Some(nodes.clone()), config);
        let fleet = Fleet::new(store.clone(), nodes.clone()).with_lifecycle(lifecycle.clone());
        // Workers of nodes that are gone are replaced, and their actors recovered, before
        // anything is scheduled.
        fleet
            .reconcile()
            .await
            .context("cannot place the workers")?;
        Ok(Self {
            _idle: lifecycle
                .start_idle_suspension()
                .context("cannot start idle suspension")?,
            _exits: lifecycle
                .start_exit_reaction()
                .context("cannot start the reaction to exited programs")?,
            _recovery: lifecycle.start_recovery(sweep_every),
            _golden: Golden::new(store.clone(), lifecycle.clone()).start(),
            _fleet: fleet.start(),
            _audit_pruning: audit_retention.map(|keep| start_pruning(store.clone(), keep)),
            lifecycle,
            nodes,
            auth,
            store: store.clone(),
        })
    }

    /// The Control (and Admin) service of this plane: its lifecycle, tokens required.
    pub fn control_service(&self) -> ControlService {
        ControlService::new(self.store.clone())
            .with_lifecycle(self.lifecycle.clone())
            .with_auth(self.auth.clone())
    }

    /// Mints an admin token over every atespace for `subject`, as `ate up` does for the local
    /// user and `ate serve --roles api` for the first operator.
    pub async fn admin_token(&self, subject: &str) -> anyhow::Result<String> {
        let request = ate_proto::ateapi::CreateTokenRequest {
            subject: subject.to_string(),
            atespaces: vec![ate_auth::ALL_ATESPACES.to_string()],
            role: ate_auth::Role::Admin.to_string(),
            ttl_seconds: BOOTSTRAP_TOKEN_TTL.as_secs() as i64,
        };
        let (_, reply) = ate_control::mint_token(&self.store, &request)
            .await
            .map_err(|s| anyhow::anyhow!("cannot mint an admin token: {}", s.message()))?;
        Ok(reply.token)
    }
}

/// Lifetime of the admin token `ate up` and `ate serve` write at start.
pub const BOOTSTRAP_TOKEN_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

/// Where `ate serve --roles api` leaves an admin token for the first operator.
pub const BOOTSTRAP_TOKEN_FILE: &str = "admin.token";

/// Writes an admin token to `DATA_DIR/admin.token` (owner-only) unless the file exists, so
/// the first operator of a split deployment can mint the others' tokens with it.
pub async fn write_bootstrap_token(
    plane: &ControlPlane,
    data_dir: &std::path::Path,
) -> anyhow::Result<()> {
    use std::io::Write;
    let path = data_dir.join(BOOTSTRAP_TOKEN_FILE);
    if path.exists() {
        return Ok(());
    }
    let token = plane.admin_token("bootstrap-admin").await?;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    writeln!(file, "{token}").with_context(|| format!("cannot write {}", path.display()))?;
    tracing::info!(path = %path.display(), "bootstrap admin token written");
    Ok(())
}
