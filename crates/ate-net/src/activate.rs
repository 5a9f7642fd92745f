//! Turning "no route" into "running": one resume per actor however many requests arrive at
//! once, with the requests held in a bounded queue until it is done. A resume that finds
//! no worker to take (every one has a request in flight, so none could be evicted) is
//! parked: it tries again when an actor leaves a worker or a short poll passes, one parked
//! activation at a time in arrival order, until its requests' wait runs out.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ate_model::ActorRef;
use ate_seam::Route;
use tokio::sync::{Semaphore, watch};

use crate::routes::RouteTable;

/// Why an actor could not be made to run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActivateError {
    /// No such actor (or atespace).
    #[error("{0}")]
    NotFound(String),
    /// No free worker can take it now.
    #[error("{0}")]
    NoCapacity(String),
    /// Another operation holds the actor (a suspend under way): worth trying again.
    #[error("{0}")]
    Busy(String),
    /// The actor's guest or its node cannot answer now.
    #[error("{0}")]
    Unavailable(String),
    /// The control plane refused the router itself (no or a bad token or certificate): the
    /// router is misconfigured, not the actor, so its clients get a gateway error.
    #[error("{0}")]
    Refused(String),
    /// Anything else.
    #[error("{0}")]
    Failed(String),
}

/// Resumes actors: the control plane, in process or across the network. Resuming a
/// running actor is a cheap no-op, and concurrent resumes of one actor (from several
/// routers) share one workflow: the control plane serialises them under the actor's lease.
#[async_trait::async_trait]
pub trait Activator: Send + Sync + std::fmt::Debug {
    /// Makes the actor run. Returns its route when the activator knows it, so the router
    /// forwards at once instead of waiting for the route to reach its table.
    async fn activate(&self, actor: &ActorRef) -> Result<Option<Route>, ActivateError>;
}

/// Why a queued request got no actor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Wait {
    /// The actor's queue, or the router's, is full.
    Overflow,
    /// As many actors as the router allows are starting already.
    TooManyActivations,
    /// The activation outlived the request's wait.
    TimedOut,
    /// No worker freed up within the request's wait.
    NoWorker,
    Failed(ActivateError),
}

/// What an activation ended with: the actor's route if the activator named it.
type Outcome = Option<Result<Option<Arc<Route>>, ActivateError>>;

/// One activation in progress and the requests waiting for it.
#[derive(Debug)]
struct Flight {
    waiting: AtomicUsize,
    /// The activation is waiting for a worker to free up.
    parked: AtomicBool,
    done: watch::Receiver<Outcome>,
}

/// Counts a request in an actor's queue while it lives.
struct Queued<'a> {
    flight: Arc<Flight>,
    depth: &'a AtomicUsize,
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.flight.waiting.fetch_sub(1, Ordering::AcqRel);
        let d = self.depth.fetch_sub(1, Ordering::AcqRel) - 1;
        metrics::gauge!(crate::metrics::QUEUE_DEPTH).set(d as f64);
    }
}

/// How many requests may wait for one actor and over all actors, and for how long (which
/// is also how long an activation keeps retrying a busy actor or waiting for a worker).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub queue_len: usize,
    pub queue_total: usize,
    /// Most activations under way at once: each costs the control plane store writes, so
    /// requests for many names at once (random ones, say) are turned away past this.
    pub activations: usize,
    pub wait: Duration,
}

/// How long an actor the control plane said does not exist is answered 404 without asking
/// again: long enough that requests for names nobody created cost the store one read per
/// name and second, short enough that an actor created a moment ago is soon reached.
const UNKNOWN_FOR: Duration = Duration::from_secs(1);
/// Most unknown names remembered; past this the oldest half is forgotten.
const MAX_UNKNOWN: usize = 16_384;

/// Actors recently found not to exist, with when that was learnt and what was said.
#[derive(Debug, Default)]
struct Unknown(Mutex<HashMap<ActorRef, (Instant, String)>>);

impl Unknown {
    fn get(&self, actor: &ActorRef) -> Option<String> {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.get(actor)
            .filter(|(at, _)| at.elapsed() < UNKNOWN_FOR)
            .map(|(_, why)| why.clone())
    }

    fn insert(&self, actor: ActorRef, why: String) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_UNKNOWN {
            map.retain(|_, (at, _)| at.elapsed() < UNKNOWN_FOR);
            if map.len() >= MAX_UNKNOWN {
                let mut ages: Vec<Instant> = map.values().map(|(at, _)| *at).collect();
                ages.sort_unstable();
                let cut = ages[ages.len() / 2];
                map.retain(|_, (at, _)| *at > cut);
            }
        }
        map.insert(actor, (Instant::now(), why));
    }

    fn forget(&self, actor: &ActorRef) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(actor);
    }
}

/// The activations under way in one router.
#[derive(Debug)]
pub(crate) struct Activations {
    activator: Arc<dyn Activator>,
    routes: RouteTable,
    limits: Limits,
    flights: Arc<Mutex<HashMap<ActorRef, Arc<Flight>>>>,
    /// Requests waiting, over all actors.
    depth: AtomicUsize,
    /// The turn of parked activations to try again: one at a time, first come first
    /// served, so a crowd of them does not hammer the control plane on every departure.
    turn: Arc<Semaphore>,
    unknown: Arc<Unknown>,
}

/// How long a resumed actor's route may take to appear before the router asks again.
const ROUTE_GRACE: Duration = Duration::from_secs(2);

/// First and longest pause between resume attempts while the actor is busy.
const BUSY_BACKOFF: (Duration, Duration) = (Duration::from_millis(20), Duration::from_millis(500));

/// Longest a parked activation waits for a departure before it looks again anyway: a
/// worker also frees up when a request ends (its actor becomes evictable), which the
/// router of another process, or the node, sees and this router does not.
const PARK_POLL: Duration = Duration::from_millis(25);

impl Activations {
    pub fn new(activator: Arc<dyn Activator>, routes: RouteTable, limits: Limits) -> Self {
        Self {
            activator,
            routes,
            limits,
            flights: Arc::default(),
            depth: AtomicUsize::new(0),
            turn: Arc::new(Semaphore::new(1)),
            unknown: Arc::default(),
        }
    }

    /// Requests waiting for an activation now.
    pub fn queued(&self) -> usize {
        self.depth.load(Ordering::Acquire)
    }

    /// Waits, until `deadline`, for the actor to be running: joins the activation under
    /// way or starts one. The route, if the activation learnt it before the route table.
    pub async fn wait(
        &self,
        actor: &ActorRef,
        deadline: Instant,
    ) -> Result<Option<Arc<Route>>, Wait> {
        let (flight, started) = {
            let mut flights = self.flights.lock().unwrap_or_else(|p| p.into_inner());
            match flights.get(actor) {
                Some(f) => (f.clone(), false),
                // An activation finished between the caller's look at the routes and now.
                None if self.routes.get(actor).is_some() => {
                    self.unknown.forget(actor);
                    return Ok(None);
                }
                None => {
                    if let Some(why) = self.unknown.get(actor) {
                        return Err(Wait::Failed(ActivateError::NotFound(why)));
                    }
                    if flights.len() >= self.limits.activations {
                        return Err(Wait::TooManyActivations);
                    }
                    let (tx, rx) = watch::channel(None);
                    let f = Arc::new(Flight {
                        waiting: AtomicUsize::new(0),
                        parked: AtomicBool::new(false),
                        done: rx,
                    });
                    flights.insert(actor.clone(), f.clone());
                    self.launch(actor.clone(), f.clone(), tx);
                    (f, true)
                }
            }
        };
        if flight.waiting.fetch_add(1, Ordering::AcqRel) >= self.limits.queue_len {
            flight.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(Wait::Overflow);
        }
        let d = self.depth.fetch_add(1, Ordering::AcqRel) + 1;
        if d > self.limits.queue_total {
            self.depth.fetch_sub(1, Ordering::AcqRel);
            flight.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(Wait::Overflow);
        }
        metrics::gauge!(crate::metrics::QUEUE_DEPTH).set(d as f64);
        let _queued = Queued {
            flight: flight.clone(),
            depth: &self.depth,
        };
        if started {
            tracing::debug!(actor = %actor, "activating");
        }
        let mut done = flight.done.clone();
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, done.wait_for(Option::is_some)).await {
            Ok(Ok(outcome)) => match outcome.as_ref() {
                Some(Ok(route)) => Ok(route.clone()),
                Some(Err(e)) => Err(Wait::Failed(e.clone())),
                None => Err(Wait::TimedOut),
            },
            Ok(Err(_)) => Err(Wait::Failed(ActivateError::Failed(
                "activation ended without an outcome".into(),
            ))),
            Err(_) if flight.parked.load(Ordering::Acquire) => Err(Wait::NoWorker),
            Err(_) => Err(Wait::TimedOut),
        }
    }

    /// Runs one activation as its own task, so no waiter hanging up can cut it short.
    fn launch(&self, actor: ActorRef, flight: Arc<Flight>, tx: watch::Sender<Outcome>) {
        let activator = self.activator.clone();
        let routes = self.routes.clone();
        let flights = self.flights.clone();
        let wait = self.limits.wait;
        let turn = self.turn.clone();
        let unknown = self.unknown.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let parking = Parking {
                flag: &flight.parked,
                turn: &turn,
            };
            let outcome = activate(&*activator, &routes, &actor, started + wait, &parking).await;
            let label = match &outcome {
                Ok(_) => "ok",
                Err(ActivateError::NotFound(_)) => "not_found",
                Err(ActivateError::NoCapacity(_)) => "no_capacity",
                Err(ActivateError::Busy(_)) => "busy",
                Err(ActivateError::Unavailable(_)) => "unavailable",
                Err(ActivateError::Refused(_)) => "refused",
                Err(ActivateError::Failed(_)) => "error",
            };
            metrics::histogram!(crate::metrics::ACTIVATION_SECONDS, "outcome" => label)
                .record(started.elapsed().as_secs_f64());
            metrics::counter!(crate::metrics::ACTIVATIONS, "outcome" => label).increment(1);
            if let Err(e) = &outcome {
                tracing::info!(actor = %actor, error = %e, "activation failed");
            }
            if let Err(ActivateError::NotFound(why)) = &outcome {
                unknown.insert(actor.clone(), why.clone());
            }
            // Later requests start afresh; then the waiters learn the outcome.
            {
                let mut map = flights.lock().unwrap_or_else(|p| p.into_inner());
                if map.get(&actor).is_some_and(|f| Arc::ptr_eq(f, &flight)) {
                    map.remove(&actor);
                }
            }
            let _ = tx.send(Some(outcome));
        });
    }
}

/// What a parked activation shares with its waiters and the other parked ones.
struct Parking<'a> {
    flag: &'a AtomicBool,
    turn: &'a Semaphore,
}

/// Resumes the actor and waits for its route, retrying while another operation holds it
/// (an idle suspend finishing, say) or no worker can be had, until `deadline`.
async fn activate(
    activator: &dyn Activator,
    routes: &RouteTable,
    actor: &ActorRef,
    deadline: Instant,
    parking: &Parking<'_>,
) -> Result<Option<Arc<Route>>, ActivateError> {
    let mut pause = BUSY_BACKOFF.0;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let attempt = async {
            if parking.flag.load(Ordering::Acquire) {
                // Closed only if the router is gone; then there is nobody to answer.
                let _turn = parking.turn.acquire().await;
                activator.activate(actor).await
            } else {
                activator.activate(actor).await
            }
        };
        match attempt.await {
            Ok(Some(route)) => return Ok(Some(Arc::new(route))),
            Ok(None) => {
                // A node publishes the route before it reports the actor ready; over a
                // network it may lag a little. If it does not come, the actor may have
                // started to leave since: ask again.
                if routes
                    .wait_for(actor, left.min(ROUTE_GRACE))
                    .await
                    .is_some()
                {
                    return Ok(None);
                }
                if deadline <= Instant::now() {
                    return Err(ActivateError::Unavailable(format!(
                        "actor {actor} is running but no route to it appeared"
                    )));
                }
            }
            Err(ActivateError::Busy(reason)) => {
                if left <= pause {
                    return Err(ActivateError::Busy(reason));
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(BUSY_BACKOFF.1);
            }
            Err(ActivateError::NoCapacity(reason)) => {
                if left.is_zero() {
                    return Err(ActivateError::NoCapacity(reason));
                }
                if !parking.flag.swap(true, Ordering::AcqRel) {
                    tracing::debug!(actor = %actor, reason = %reason, "no worker; parked");
                }
                routes.wait_for_departure(left.min(PARK_POLL)).await;
            }
            Err(e) => return Err(e),
        }
    }
}
