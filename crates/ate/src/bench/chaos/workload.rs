//! The chaos run's workload and its observer. Invariant: every request a client sends is
//! recorded, answered or not, with the time it was sent and the time its outcome came back,
//! and a client never has two requests to its actor in flight, so an actor's history is a
//! sequence; the observer records every `StateLost` condition it ever sees on an actor,
//! from every write the store reports and from reads through the control API.

use std::net::SocketAddr;
use std::time::Duration;

use std::sync::{Arc, Mutex, PoisonError};

use ate_model::{Actor, ActorRef, Kind, STATE_LOST};
use ate_store::WatchEvent;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::cluster::Api;
use super::history::{Loss, Op, Outcome, now_us};
use crate::bench::router::{Conn, count_of, get_request};

/// How long a client waits for one answer: longer than the router holds a request (5 s)
/// and than a dead component's connection takes to be noticed (gRPC keepalive, 10 s), so
/// that most failures come back as an answer the client can read.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(12);
/// Pause after a failed request before the next, so a client does not spin on errors.
const RETRY_PAUSE: Duration = Duration::from_millis(100);
/// How often the observer reads every actor. A condition is kept once per kind on the
/// actor, so a second loss within one period would hide the first: losses of one actor
/// come seconds apart (a fault each), far above this.
const POLL_EVERY: Duration = Duration::from_millis(100);

/// One client per actor, asking it in a loop until stopped.
#[derive(Debug)]
pub struct Clients {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<Vec<Op>>>,
}

impl Clients {
    pub fn start(router: SocketAddr, actors: &[ActorRef], think: Duration) -> Self {
        let (stop, stopped) = watch::channel(false);
        let tasks = actors
            .iter()
            .map(|a| {
                let (request, stopped) = (get_request(a), stopped.clone());
                tokio::spawn(async move {
                    let (mut conn, mut ops) = (None, Vec::new());
                    while !*stopped.borrow() {
                        let op = ask(router, &request, &mut conn).await;
                        let pause = match op.outcome {
                            Outcome::Count(_) => think,
                            Outcome::Failed(_) => RETRY_PAUSE,
                        };
                        ops.push(op);
                        tokio::time::sleep(pause).await;
                    }
                    ops
                })
            })
            .collect();
        Self { stop, tasks }
    }

    /// Stops every client after its request in flight; their histories, by actor.
    pub async fn stop(self) -> Vec<Vec<Op>> {
        let _ = self.stop.send(true);
        let mut all = Vec::new();
        for t in self.tasks {
            all.push(t.await.unwrap_or_default());
        }
        all
    }
}

/// Sends one request on `conn` (opened if none), recording it; a connection that failed is
/// dropped, so the next request opens another.
pub async fn ask(router: SocketAddr, request: &[u8], conn: &mut Option<Conn>) -> Op {
    let sent_us = now_us();
    let exchange = async {
        let c = match conn {
            Some(c) => c,
            None => conn.insert(Conn::open(router).await?),
        };
        let reply = c.get(request).await?;
        anyhow::Ok(match count_of(&reply) {
            Ok(n) => Outcome::Count(n),
            Err(_) => Outcome::Failed(format!("status {}", reply.status)),
        })
    };
    let outcome = match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(_)) => {
            *conn = None;
            Outcome::Failed("connection".into())
        }
        Err(_) => {
            *conn = None;
            Outcome::Failed("timeout".into())
        }
    };
    Op {
        sent_us,
        recv_us: now_us(),
        outcome,
    }
}

/// Where an actor was seen, when that changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub at_us: u64,
    pub status: String,
    /// `node/worker`, or empty.
    pub worker: String,
}

/// What the observer saw, by actor.
#[derive(Debug, Default)]
pub struct Observed {
    pub losses: Vec<Vec<Loss>>,
    pub samples: Vec<Vec<Sample>>,
    pub polls: usize,
    pub failed_polls: usize,
    /// Actor writes the store's watch delivered, and the times it said some were missed.
    pub writes: usize,
    pub resyncs: usize,
}

impl Observed {
    /// Records one version of an actor, read at `at_us`.
    fn record(&mut self, actors: &[ActorRef], a: &Actor, at_us: u64) {
        let Some(i) = actors.iter().position(|r| *r == a.actor_ref()) else {
            return;
        };
        for c in a.conditions.iter().filter(|c| c.kind == STATE_LOST) {
            let loss = Loss {
                time_us: c.time_ms * 1000,
                reason: c.reason.clone(),
                message: c.message.clone(),
            };
            if !self.losses[i].contains(&loss) {
                self.losses[i].push(loss);
            }
        }
        let sample = Sample {
            at_us,
            status: a.status.as_str().to_string(),
            worker: a
                .worker
                .as_ref()
                .map(|w| format!("{}/{}", w.node_name, w.name))
                .unwrap_or_default(),
        };
        let samples = &mut self.samples[i];
        if samples
            .last()
            .is_none_or(|l| (&l.status, &l.worker) != (&sample.status, &sample.worker))
        {
            samples.push(sample);
        }
    }
}

/// How long the observer waits for the store to open its watch.
const WATCH_PATIENCE: Duration = Duration::from_secs(30);

/// Follows every actor two ways until stopped: the store's watch, which delivers every
/// write (so a `StateLost` condition replaced by the next one within moments is still
/// seen), and a read through the control API every [`POLL_EVERY`], which covers what the
/// watch may miss while the store restarts (it says so with a resync).
#[derive(Debug)]
pub struct Observer {
    stop: watch::Sender<bool>,
    seen: Arc<Mutex<Observed>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Observer {
    pub async fn start(api: Api, store_url: &str, actors: Vec<ActorRef>) -> anyhow::Result<Self> {
        let (stop, stopped) = watch::channel(false);
        let seen = Arc::new(Mutex::new(Observed {
            losses: vec![Vec::new(); actors.len()],
            samples: vec![Vec::new(); actors.len()],
            ..Default::default()
        }));
        let store = crate::stores::open(store_url, WATCH_PATIENCE).await?;
        let mut events = store.watch(Kind::Actor).await?;
        let watcher = {
            let (seen, actors, mut stopped) = (seen.clone(), actors.clone(), stopped.clone());
            tokio::spawn(async move {
                let _store = store;
                loop {
                    let event = tokio::select! {
                        e = events.recv() => e,
                        _ = stopped.changed() => return,
                    };
                    let mut seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
                    match event {
                        Some(WatchEvent::Created(r) | WatchEvent::Updated(r)) => {
                            seen.writes += 1;
                            if let Ok(a) = ate_store::typed::decode::<Actor>(&r) {
                                seen.record(&actors, &a, now_us());
                            }
                        }
                        Some(WatchEvent::Resync) => seen.resyncs += 1,
                        Some(WatchEvent::Deleted { .. }) => {}
                        None => return,
                    }
                }
            })
        };
        let poller = {
            let (seen, mut stopped) = (seen.clone(), stopped);
            tokio::spawn(async move {
                loop {
                    let done = *stopped.borrow();
                    let listed = api.actors().await;
                    let at_us = now_us();
                    {
                        let mut seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
                        seen.polls += 1;
                        match listed {
                            Ok(listed) => {
                                for pb in &listed {
                                    let a = ate_proto::convert::actor_from_pb(pb);
                                    seen.record(&actors, &a, at_us);
                                }
                            }
                            Err(_) => seen.failed_polls += 1,
                        }
                    }
                    if done {
                        return;
                    }
                    let _ = tokio::time::timeout(POLL_EVERY, stopped.changed()).await;
                }
            })
        };
        Ok(Self {
            stop,
            seen,
            tasks: vec![watcher, poller],
        })
    }

    /// One last read, then what was seen, samples in time order.
    pub async fn stop(self) -> Observed {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        let mut seen =
            std::mem::take(&mut *self.seen.lock().unwrap_or_else(PoisonError::into_inner));
        for samples in &mut seen.samples {
            samples.sort_by_key(|s| s.at_us);
        }
        seen
    }
}
