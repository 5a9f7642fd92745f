//! The end-of-run checks besides the histories'. Invariant: a finding is reported only if
//! it still holds after everything was healed and given time to settle (each check is
//! read again until its limit), so work still finishing is never counted as a violation.

use std::time::{Duration, Instant};

use ate_model::NodeAssertion;

use super::ATESPACE;
use super::cluster::Cluster;
use super::history::{self, Op, Violation, at, now_us};
use super::workload::ask;

/// How long each actor has to answer once everything is healed and settled.
const ANSWER_LIMIT: Duration = Duration::from_secs(60);
/// How long an actor may stay in a transitional status, or a worker binding disagree with
/// its actor, after the workload stopped: the recovery sweep runs every half lease (1.5 s).
const CONSISTENT_LIMIT: Duration = Duration::from_secs(20);

/// Asks every actor until it answers (within [`ANSWER_LIMIT`]): the requests, by actor; an
/// actor that never answers is a violation.
pub async fn answer_again(
    cluster: &Cluster,
    histories: &[Vec<Op>],
    start: u64,
) -> (Vec<Vec<Op>>, Vec<Violation>) {
    let asks = cluster.actors.iter().map(|a| {
        let (router, request) = (cluster.router_addr, crate::bench::router::get_request(a));
        async move {
            let (began, mut conn, mut ops) = (Instant::now(), None, Vec::new());
            loop {
                let op = ask(router, &request, &mut conn).await;
                let done = op.count().is_some();
                ops.push(op);
                if done || began.elapsed() > ANSWER_LIMIT {
                    return ops;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    });
    let finals = all_of(asks).await;
    let mut found = Vec::new();
    let now = cluster.api.actors().await.unwrap_or_default();
    let workers = cluster.api.workers().await.unwrap_or_default();
    for ((actor, history), ops) in cluster.actors.iter().zip(histories).zip(&finals) {
        if ops.last().and_then(Op::count).is_none() {
            let last_answer = history.iter().rev().find(|o| o.count().is_some());
            let mut evidence: Vec<String> = last_answer
                .map(|o| {
                    format!(
                        "last answered {} at {}",
                        o.count().unwrap_or(0),
                        at(o.recv_us, start)
                    )
                })
                .into_iter()
                .collect();
            evidence.extend(ops.iter().rev().take(3).map(|o| history::answer(o, start)));
            evidence.extend(now.iter().filter(|a| a.actor_id == actor.id).map(|pb| {
                let a = ate_proto::convert::actor_from_pb(pb);
                format!(
                    "now {} (version {}) on {}, conditions: {}",
                    a.status.as_str(),
                    pb.version,
                    a.worker
                        .as_ref()
                        .map(|w| format!("{}/{}", w.node_name, w.name))
                        .unwrap_or_else(|| "<none>".into()),
                    a.conditions
                        .iter()
                        .map(|c| format!(
                            "{} {} at {}",
                            c.kind,
                            c.reason,
                            at(c.time_ms * 1000, start)
                        ))
                        .collect::<Vec<_>>()
                        .join("; ")
                )
            }));
            evidence.extend(
                workers
                    .iter()
                    .filter(|w| w.actor_atespace == actor.atespace && w.actor_id == actor.id)
                    .map(worker_line),
            );
            found.push(Violation {
                actor: actor.to_string(),
                at_us: last_answer.map_or(start, |o| o.recv_us),
                what: format!(
                    "never answered in the {} s after everything was healed",
                    ANSWER_LIMIT.as_secs()
                ),
                evidence,
            });
        }
    }
    (finals, found)
}

/// Runs the askers concurrently; their requests in order (none for one that panicked, so
/// there is one entry per actor whatever happens).
async fn all_of<F>(askers: impl Iterator<Item = F>) -> Vec<Vec<Op>>
where
    F: Future<Output = Vec<Op>> + Send + 'static,
{
    let handles: Vec<_> = askers.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap_or_default());
    }
    out
}

/// The store's view once everything settled: no actor in a transitional status, no actor
/// bound to two workers, every running actor's worker bound to it, and no worker bound to
/// an actor that does not record it. Each is re-read until [`CONSISTENT_LIMIT`] so that
/// work still finishing is not counted; what remains then is a violation.
pub async fn consistent(cluster: &Cluster) -> Vec<Violation> {
    let began = Instant::now();
    loop {
        let found = match (cluster.api.actors().await, cluster.api.workers().await) {
            (Ok(actors), Ok(workers)) => {
                let mut found = inconsistencies(&actors, &workers);
                found.extend(stale_routes(&cluster.store_url, &actors).await);
                found
            }
            (Err(e), _) | (_, Err(e)) => vec![Violation {
                actor: ATESPACE.to_string(),
                at_us: now_us(),
                what: "the control API did not answer after everything was healed".into(),
                evidence: vec![format!("{e:#}")],
            }],
        };
        if found.is_empty() || began.elapsed() > CONSISTENT_LIMIT {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// How long the final check waits for the store when it reads the node assertions.
const STORE_PATIENCE: Duration = Duration::from_secs(10);

/// Routes the nodes asserted, as the store holds them (and every replica mirrors them to
/// the routers), that lead to an actor's old place: one not RUNNING, or RUNNING on
/// another node. A router that holds such a route forwards the actor's requests there.
async fn stale_routes(url: &str, actors: &[ate_proto::ateapi::Actor]) -> Vec<Violation> {
    let listed = async {
        let store = crate::stores::open(url, STORE_PATIENCE).await?;
        let page = store
            .list::<NodeAssertion>(&ate_store::ListOptions::default())
            .await?;
        anyhow::Ok(page.items)
    };
    let records = match listed.await {
        Ok(r) => r,
        Err(e) => {
            return vec![Violation {
                actor: ATESPACE.to_string(),
                at_us: now_us(),
                what: "the store's node assertions could not be read".into(),
                evidence: vec![format!("{e:#}")],
            }];
        }
    };
    let mut found = Vec::new();
    let route = <ate_seam::Route as ate_dataspace::Assertion>::TYPE;
    for r in records.iter().filter(|r| r.type_tag == route) {
        let Some(pb) = actors
            .iter()
            .find(|a| format!("{}/{}", a.atespace, a.actor_id) == r.id)
        else {
            continue;
        };
        let a = ate_proto::convert::actor_from_pb(pb);
        let node = a.worker.as_ref().map(|w| w.node_name.as_str());
        if a.status.as_str() == "RUNNING" && node == Some(r.node.as_str()) {
            continue;
        }
        found.push(Violation {
            actor: a.actor_ref().to_string(),
            at_us: now_us(),
            what: format!(
                "a route to node {} is still asserted while the actor is {} on {}: routers forward its requests there",
                r.node,
                a.status.as_str(),
                node.unwrap_or("no node")
            ),
            evidence: vec![format!(
                "NodeAssertion {} (node incarnation {}, version {}): {}",
                r.key(),
                r.incarnation,
                r.version,
                r.value
            )],
        });
    }
    found
}

fn inconsistencies(
    actors: &[ate_proto::ateapi::Actor],
    workers: &[ate_proto::ateapi::Worker],
) -> Vec<Violation> {
    let mut found = Vec::new();
    for pb in actors {
        let a = ate_proto::convert::actor_from_pb(pb);
        let status = a.status.as_str();
        let name = a.actor_ref().to_string();
        let bound: Vec<_> = workers
            .iter()
            .filter(|w| w.actor_atespace == a.atespace && w.actor_id == a.id)
            .collect();
        let mut evidence = vec![format!(
            "actor {status}, version {}, worker {}",
            pb.version,
            a.worker
                .as_ref()
                .map(|w| format!("{}/{} on {}", w.pool, w.name, w.node_name))
                .unwrap_or_else(|| "<none>".into())
        )];
        evidence.extend(bound.iter().map(|w| worker_line(w)));
        let what = if ["RESUMING", "SUSPENDING", "PAUSING"].contains(&status) {
            Some(format!("left in {status}"))
        } else if bound.len() > 1 {
            Some(format!("bound to {} workers", bound.len()))
        } else if status == "RUNNING"
            && !a.worker.as_ref().is_some_and(|p| {
                bound
                    .iter()
                    .any(|w| w.worker_pod == p.name && w.worker_pool == p.pool)
            })
        {
            Some("RUNNING on a worker that is not bound to it".into())
        } else if status != "RUNNING" && !bound.is_empty() {
            Some(format!("{status} yet a worker is still bound to it"))
        } else {
            None
        };
        if let Some(what) = what {
            found.push(Violation {
                actor: name,
                at_us: now_us(),
                what,
                evidence,
            });
        }
    }
    found
}

pub fn worker_line(w: &ate_proto::ateapi::Worker) -> String {
    format!(
        "worker {}/{} on {} (incarnation {}) bound to {}/{}",
        w.worker_pool, w.worker_pod, w.node_name, w.node_incarnation, w.actor_atespace, w.actor_id
    )
}
