//! `GetActorLogs`: an actor's log lines gathered from every live node (an actor that moved
//! has lines on several), oldest first, then followed live.

use std::pin::Pin;

use ate_dataspace::Filter;
use ate_model::Actor;
use ate_proto::ateapi as pb;
use ate_seam::{LogLine, NodeRegistration};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tonic::Status;

use crate::ControlService;
use crate::actors::actor_ref;
use crate::errors;

/// Longest wait for one node's log backlog.
const BACKLOG_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The stream `GetActorLogs` answers with.
pub type LogEntries = Pin<Box<dyn Stream<Item = Result<pb::LogEntry, Status>> + Send>>;

fn entry(node: &str, l: LogLine) -> pb::LogEntry {
    pb::LogEntry {
        time_ms: l.time_ms as i64,
        stream: l.stream,
        text: l.text,
        node_name: node.to_string(),
    }
}

impl ControlService {
    pub(crate) async fn actor_logs_impl(
        &self,
        r: &pb::GetActorLogsRequest,
    ) -> Result<LogEntries, Status> {
        let aref = actor_ref(r.actor_ref.as_ref())?;
        let actor: Actor = self.store.get(&aref.key()).await.map_err(errors::store)?;
        let (tx, rx) = mpsc::channel::<Result<pb::LogEntry, Status>>(1024);
        let mut backlog = Vec::new();
        let mut live = Vec::new();
        if let Some(nodes) = &self.nodes {
            for (_, reg) in nodes.dataspace().list::<NodeRegistration>(&Filter::All) {
                let Ok(exec) = nodes.executor(&reg.name) else {
                    continue;
                };
                let mut lines = match exec.logs(&aref, actor.uid.as_deref(), r.follow).await {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::warn!(node = %reg.name, actor = %aref, error = %e, "cannot read logs");
                        continue;
                    }
                };
                if r.follow {
                    // A remote node's backlog arrives on the stream before its new lines.
                    while let Ok(l) = lines.try_recv() {
                        backlog.push((l.time_ms, reg.name.clone(), l));
                    }
                    live.push((reg.name, lines));
                    continue;
                }
                // Without follow a node sends its backlog and ends the stream; a node that
                // does not within the bound is left out rather than holding the answer.
                let drained = tokio::time::timeout(BACKLOG_WAIT, async {
                    while let Some(l) = lines.recv().await {
                        backlog.push((l.time_ms, reg.name.clone(), l));
                    }
                })
                .await;
                if drained.is_err() {
                    tracing::warn!(node = %reg.name, actor = %aref, "node sent no complete log backlog in time");
                }
            }
        }
        backlog.sort_by_key(|(t, _, _)| *t);
        tokio::spawn(async move {
            for (_, node, l) in backlog {
                if tx.send(Ok(entry(&node, l))).await.is_err() {
                    return;
                }
            }
            let mut tasks = Vec::new();
            for (node, mut lines) in live {
                let tx = tx.clone();
                tasks.push(tokio::spawn(async move {
                    while let Some(l) = lines.recv().await {
                        if tx.send(Ok(entry(&node, l))).await.is_err() {
                            return;
                        }
                    }
                }));
            }
            drop(tx);
            for t in tasks {
                let _ = t.await;
            }
        });
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }
}
