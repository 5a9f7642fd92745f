//! The data plane of `ate up` in this process (one node, the default wasm pool, the demo
//! templates, the lifecycle) with the HTTP router in front on a free loopback port: what
//! every bench that measures through the router starts. The metrics recorder `ate up`
//! installs is installed too, so the router and lifecycle pay for their metrics as there.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use ate_net::{Router, RouterConfig, RouterHandle};
use ate_store::Store;

use crate::edge::LifecycleActivator;
use crate::local::{self, LocalDataPlane};
use crate::plane::PlaneConfig;

/// A running data plane and its router; dropping it stops both.
pub(super) struct InProcess {
    pub plane: LocalDataPlane,
    /// A clone of the serving router, for its route table.
    pub router: Router,
    pub handle: RouterHandle,
}

impl InProcess {
    pub async fn start(store: &Arc<dyn Store>, dir: &Path) -> anyhow::Result<Self> {
        crate::edge::metrics_handle()?;
        ate_control::ensure_system_atespaces(store).await?;
        let plane = local::start(store, dir, PlaneConfig::default()).await?;
        let router = Router::new(
            RouterConfig::default(),
            plane.control.nodes.clone(),
            Arc::new(LifecycleActivator(plane.control.lifecycle.clone())),
        )
        .context("cannot create the router")?;
        let handle = router
            .clone()
            .start("127.0.0.1:0".parse()?)
            .await
            .context("cannot start the router")?;
        Ok(Self {
            plane,
            router,
            handle,
        })
    }

    pub fn router_addr(&self) -> SocketAddr {
        self.handle.local_addr()
    }
}
