//! Programs that stop by themselves. A process actor's program can crash, be killed for
//! memory or just exit; the node then stops taking requests for it, writes the reason into
//! the actor's log, and asserts [`ActorExited`] until the control plane stops the actor
//! there (it returns the actor to its last durable snapshot and frees the worker).

use std::sync::{Arc, Weak};
use std::time::{SystemTime, UNIX_EPOCH};

use ate_model::ActorRef;
use ate_seam::{ActorExited, WorkerId, actor_key};
use tokio::sync::{mpsc, oneshot};

use crate::executor::NodeService;

/// A program that stopped by itself.
#[derive(Debug)]
pub(crate) struct Exit {
    worker: WorkerId,
    actor: ActorRef,
    message: String,
}

/// Where exit watches report, and what the node asserted.
#[derive(Debug)]
pub(crate) struct Exits {
    tx: mpsc::UnboundedSender<Exit>,
    rx: std::sync::Mutex<Option<mpsc::UnboundedReceiver<Exit>>>,
    /// Actors asserted exited, with the worker they exited on.
    asserted: std::sync::Mutex<std::collections::HashMap<ActorRef, WorkerId>>,
}

impl Default for Exits {
    fn default() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Self {
            tx,
            rx: std::sync::Mutex::new(Some(rx)),
            asserted: Default::default(),
        }
    }
}

impl NodeService {
    /// Watches the program of `actor` on `worker` until it exits (reported) or the actor
    /// leaves the worker (`gone`).
    pub(crate) fn watch_exit(
        &self,
        worker: &WorkerId,
        actor: &ActorRef,
        (sandbox, gone): (Arc<ate_process::Sandbox>, oneshot::Receiver<()>),
    ) {
        let tx = self.exits.tx.clone();
        let (worker, actor) = (worker.clone(), actor.clone());
        tokio::spawn(async move {
            tokio::select! {
                message = sandbox.exited() => {
                    let _ = tx.send(Exit { worker, actor, message });
                }
                _ = gone => {}
            }
        });
    }

    /// Takes the actor out of service and tells the control plane.
    fn report_exit(&self, exit: Exit) {
        let Exit {
            worker,
            actor,
            message,
        } = exit;
        let Some(activity) = self.slots.seal(&worker, &actor, true) else {
            return;
        };
        self.withdraw(&worker, &actor, &activity);
        tracing::warn!(node = %self.config.name, worker = %worker, actor = %actor, reason = %message, "actor program stopped by itself");
        let sink = self.logs.sink(&actor);
        sink(
            ate_wasm::OutputStream::Stderr,
            format!("[ate] the program {message}\n").as_bytes(),
        );
        let time_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let record = ActorExited {
            actor: actor.clone(),
            node: self.config.name.clone(),
            worker: worker.clone(),
            message,
            time_ms,
        };
        self.with_owner(|o| {
            if let Err(e) = o.assert(actor_key(&actor), record) {
                tracing::warn!(actor = %actor, error = %e, "cannot report the actor's exit");
            }
        });
        self.exits
            .asserted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(actor, worker);
    }

    /// The actor left `worker`: its exit, if reported from there, is dealt with.
    pub(crate) fn clear_exit(&self, worker: &WorkerId, actor: &ActorRef) {
        let mut asserted = self
            .exits
            .asserted
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if asserted.get(actor) != Some(worker) {
            return;
        }
        asserted.remove(actor);
        drop(asserted);
        self.with_owner(|o| {
            let _ = o.retract::<ActorExited>(actor_key(actor));
        });
    }

    /// Reports exits until the node goes away.
    pub(crate) async fn report_exits(node: Weak<NodeService>) {
        let rx = match node.upgrade() {
            Some(n) => n.exits.rx.lock().unwrap_or_else(|p| p.into_inner()).take(),
            None => None,
        };
        let Some(mut rx) = rx else { return };
        while let Some(exit) = rx.recv().await {
            let Some(node) = node.upgrade() else { return };
            node.report_exit(exit);
        }
    }
}
