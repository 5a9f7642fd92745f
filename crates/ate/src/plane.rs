//! The control plane's background work over a set of nodes, the same whether the nodes
//! live in this process (`ate up`) or on other machines (`ate serve --roles api`): the
//! lifecycle that the API and the router resume through, the fleet that gives nodes their
//! workers, the recovery sweep, golden snapshots, idle suspension and the reaction to
//! programs that exited by themselves.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ate_control::{
    ExitHandle, Fleet, FleetHandle, Golden, GoldenHandle, IdleHandle, Lifecycle, LifecycleConfig,
    RecoveryHandle,
};
use ate_seam::NodeDirectory;
use ate_store::Store;

/// The running control-plane loops. Dropping it stops them.
pub struct ControlPlane {
    pub lifecycle: Lifecycle,
    pub nodes: Arc<dyn NodeDirectory>,
    _fleet: FleetHandle,
    _golden: GoldenHandle,
    _recovery: RecoveryHandle,
    _idle: IdleHandle,
    _exits: ExitHandle,
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
        config: LifecycleConfig,
    ) -> anyhow::Result<Self> {
        let sweep_every = (config.lease_ttl / 2).max(Duration::from_millis(500));
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
            lifecycle,
            nodes,
        })
    }
}
