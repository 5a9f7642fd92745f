//! A node daemon's registration with the control plane over the network: one `Register`
//! stream to one control-plane replica at a time, carrying the node's dataspace assertions
//! and a heartbeat. The replica holds the node's liveness lease while heartbeats arrive;
//! when the stream breaks the node moves to the next replica and presents the lease
//! generation it held, so a node that was declared lost in between is told so (fenced)
//! instead of carrying on beside the actors recovered from it.
//!
//! The node fences itself before anyone can take over: the replica renews the lease for
//! the liveness timeout plus [`fencing_margin`] at each heartbeat it receives, so the lease
//! cannot expire before `send time of the last confirmed heartbeat + timeout + margin`,
//! while the node stops at `that send time + timeout - margin`, on a timer set for that
//! deadline whatever the stream is doing (connecting, stuck, or quiet).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use ate_dataspace::{Dataspace, Filter};
use ate_proto::atenode::{
    self as pb, node_message::Message as Out, registry_client::RegistryClient,
    registry_message::Message as In,
};
use ate_tls::PeerIdentity;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;

use crate::carry::{self, NODE_TYPES, RawEvent};
use crate::{Dialer, MAX_MESSAGE_BYTES, NodeRegistration};

/// How much earlier than the control plane could declare it lost a node stops its actors,
/// and how much longer than the liveness timeout the control plane waits: room for the
/// heartbeat's transit and for clocks that run at slightly different rates.
pub fn fencing_margin(liveness_timeout: Duration) -> Duration {
    liveness_timeout / 5
}

/// The moment a node whose registration was last confirmed for a heartbeat sent at `sent`
/// must have stopped its actors.
fn fence_deadline(sent: Instant, liveness_timeout: Duration) -> Instant {
    sent + liveness_timeout.saturating_sub(fencing_margin(liveness_timeout))
}

/// Heartbeats a node remembers sending unanswered. Three go out per liveness timeout, so
/// more than this unanswered means the node is fenced long before.
const MAX_UNANSWERED: usize = 64;

/// How a node registers.
#[derive(Debug, Clone)]
pub struct RegistrationConfig {
    /// Control-plane replicas (`host:port` or `http://host:port`), tried in turn.
    pub controls: Vec<String>,
    /// How long the control plane waits for a heartbeat before it declares the node lost.
    pub liveness_timeout: Duration,
    /// How the node reaches the control plane: with TLS, the replica must present the
    /// control plane's certificate and the node presents its own, whose name must be the
    /// node's.
    pub dialer: Dialer,
}

/// A node's registration, kept alive in the background until dropped.
#[derive(Debug)]
pub struct Registration {
    task: JoinHandle<()>,
    fenced: watch::Receiver<Option<String>>,
}

impl Registration {
    /// Starts registering the node whose assertions live in `dataspace` (its
    /// [`NodeRegistration`] names it and its incarnation).
    pub fn start(dataspace: Dataspace, config: RegistrationConfig) -> Self {
        let (fenced_tx, fenced) = watch::channel(None);
        let task = tokio::spawn(run(dataspace, config, fenced_tx));
        Self { task, fenced }
    }

    /// Resolves when the node must stop every actor and register again as a new
    /// incarnation; the reason says why.
    pub async fn fenced(&mut self) -> String {
        loop {
            if let Some(reason) = self.fenced.borrow_and_update().clone() {
                return reason;
            }
            if self.fenced.changed().await.is_err() {
                return "registration stopped".into();
            }
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How one stream ended.
enum Ended {
    /// The stream broke: try the next replica.
    Broken(String),
    /// The node must start over.
    Fenced(String),
}

async fn run(
    dataspace: Dataspace,
    config: RegistrationConfig,
    fenced: watch::Sender<Option<String>>,
) {
    let Some(me) = own_registration(&dataspace).await else {
        let _ = fenced.send(Some("the node never asserted its registration".into()));
        return;
    };
    let held = Mutex::new(Held {
        generation: 0,
        confirmed: Instant::now(),
    });
    let mut backoff = Duration::from_millis(100);
    let mut next = 0usize;
    loop {
        if config.controls.is_empty() {
            let _ = fenced.send(Some("no control plane to register with".into()));
            return;
        }
        let endpoint = config.controls[next % config.controls.len()].clone();
        next += 1;
        let ended = {
            let stream = stream_once(&dataspace, &config, &me, &endpoint, &held);
            tokio::pin!(stream);
            // While no registration is held nothing can be fenced; once one is, the node
            // stops at its deadline even if connecting or the stream hangs.
            loop {
                let deadline = lock(&held).deadline(config.liveness_timeout);
                tokio::select! {
                    ended = &mut stream => break ended,
                    () = sleep_until_some(deadline) => {
                        let now_due = lock(&held).deadline(config.liveness_timeout);
                        if now_due.is_some_and(|d| d <= Instant::now()) {
                            break Ended::Fenced(unconfirmed(config.liveness_timeout));
                        }
                    }
                }
            }
        };
        match ended {
            Ended::Fenced(reason) => {
                tracing::warn!(node = %me.name, %reason, "node fenced");
                let _ = fenced.send(Some(reason));
                return;
            }
            Ended::Broken(reason) => {
                tracing::warn!(node = %me.name, control = %endpoint, %reason, "registration stream ended; trying the next control plane");
            }
        }
        let deadline = lock(&held).deadline(config.liveness_timeout);
        if let Some(deadline) = deadline
            && Instant::now() + backoff >= deadline
        {
            tokio::time::sleep_until(deadline).await;
            let _ = fenced.send(Some(unconfirmed(config.liveness_timeout)));
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

/// The registration a node holds: the lease generation, and when the last heartbeat (or
/// hello) the control plane confirmed was sent.
#[derive(Debug)]
struct Held {
    generation: u64,
    confirmed: Instant,
}

impl Held {
    /// When the node must have stopped, once it holds a registration.
    fn deadline(&self, liveness_timeout: Duration) -> Option<Instant> {
        (self.generation != 0).then(|| fence_deadline(self.confirmed, liveness_timeout))
    }
}

fn lock(held: &Mutex<Held>) -> std::sync::MutexGuard<'_, Held> {
    held.lock().unwrap_or_else(|p| p.into_inner())
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

fn unconfirmed(liveness_timeout: Duration) -> String {
    format!(
        "no control plane confirmed the registration in time (liveness timeout {liveness_timeout:?}, margin {:?})",
        fencing_margin(liveness_timeout)
    )
}

async fn own_registration(dataspace: &Dataspace) -> Option<NodeRegistration> {
    let mut sub = dataspace.subscribe::<NodeRegistration>(Filter::All).ok()?;
    loop {
        match sub.recv().await? {
            ate_dataspace::Event::Asserted { value, .. } => return Some(value),
            _ => continue,
        }
    }
}

fn hello(me: &NodeRegistration, generation: u64, timeout: Duration) -> pb::NodeMessage {
    pb::NodeMessage {
        message: Some(Out::Hello(pb::Hello {
            node: me.name.clone(),
            incarnation: me.incarnation.clone(),
            generation,
            liveness_timeout_ms: timeout.as_millis() as u64,
        })),
    }
}

fn carried(event: RawEvent) -> Option<pb::NodeMessage> {
    let message = match event {
        RawEvent::Asserted(a) => Out::Asserted(pb::Asserted {
            r#type: a.type_tag,
            id: a.id,
            value_json: a.value_json,
        }),
        RawEvent::Retracted { type_tag, id } => Out::Retracted(pb::Retracted {
            r#type: type_tag,
            id,
        }),
        RawEvent::Synced => return None,
    };
    Some(pb::NodeMessage {
        message: Some(message),
    })
}

async fn stream_once(
    dataspace: &Dataspace,
    config: &RegistrationConfig,
    me: &NodeRegistration,
    endpoint: &str,
    held: &Mutex<Held>,
) -> Ended {
    let deadline = config.liveness_timeout;
    let channel = match config
        .dialer
        .connect(endpoint, &PeerIdentity::Control)
        .await
    {
        Ok(c) => c,
        Err(e) => return Ended::Broken(e.to_string()),
    };
    let (tx, rx) = mpsc::channel::<pb::NodeMessage>(256);
    let hello_sent = Instant::now();
    let generation = lock(held).generation;
    if tx.send(hello(me, generation, deadline)).await.is_err() {
        return Ended::Broken("stream closed".into());
    }
    let mut client = RegistryClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let mut inbound = match client.register(ReceiverStream::new(rx)).await {
        Ok(r) => r.into_inner(),
        Err(status) => return Ended::Broken(refused(&status)),
    };
    // The answer to hello.
    match tokio::time::timeout(deadline, inbound.message()).await {
        Ok(Ok(Some(pb::RegistryMessage {
            message: Some(In::Accepted(a)),
        }))) => {
            if generation != 0 && a.generation != generation {
                return Ended::Fenced(format!(
                    "the registration lease changed hands (generation {} to {})",
                    generation, a.generation
                ));
            }
            *lock(held) = Held {
                generation: a.generation,
                confirmed: hello_sent,
            };
        }
        Ok(Ok(Some(pb::RegistryMessage {
            message: Some(In::Fenced(f)),
        }))) => return Ended::Fenced(f.reason),
        Ok(Ok(_)) => return Ended::Broken("the control plane closed the stream".into()),
        Ok(Err(status)) => return Ended::Broken(refused(&status)),
        Err(_) => return Ended::Broken("no answer to hello".into()),
    }
    let generation = lock(held).generation;
    tracing::info!(node = %me.name, control = %endpoint, generation, "node registered");
    let (mut events, _follow) = match carry::follow(dataspace, &NODE_TYPES) {
        Ok(f) => f,
        Err(e) => return Ended::Fenced(format!("cannot follow the node's assertions: {e}")),
    };
    let mut beat = tokio::time::interval(deadline / 3);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Send times of heartbeats not yet confirmed, oldest first: the replica answers each
    // in turn, and an answer vouches for the lease only from the heartbeat it answers.
    let mut unanswered: VecDeque<Instant> = VecDeque::new();
    loop {
        tokio::select! {
            event = events.recv() => {
                let Some(event) = event else {
                    return Ended::Fenced("the node's dataspace closed".into());
                };
                if let Some(m) = carried(event)
                    && tx.send(m).await.is_err()
                {
                    return Ended::Broken("stream closed".into());
                }
            }
            _ = beat.tick() => {
                // Heartbeats queue behind the node's assertions; a bounded record of them
                // is enough, the oldest being what counts.
                if unanswered.len() < MAX_UNANSWERED {
                    unanswered.push_back(Instant::now());
                }
                let m = pb::NodeMessage { message: Some(Out::Heartbeat(pb::Done {})) };
                if tx.send(m).await.is_err() {
                    return Ended::Broken("stream closed".into());
                }
            }
            answer = inbound.message() => match answer {
                Ok(Some(pb::RegistryMessage { message: Some(In::Accepted(a)) })) => {
                    if a.generation != generation {
                        return Ended::Fenced(format!(
                            "the registration lease changed hands (generation {} to {})",
                            generation, a.generation
                        ));
                    }
                    if let Some(sent) = unanswered.pop_front() {
                        lock(held).confirmed = sent;
                    }
                }
                Ok(Some(pb::RegistryMessage { message: Some(In::Fenced(f)) })) => {
                    return Ended::Fenced(f.reason);
                }
                Ok(Some(_)) => {}
                Ok(None) => return Ended::Broken("the control plane closed the stream".into()),
                Err(status) => return Ended::Broken(ate_tls::error_chain(&status)),
            },
        }
    }
}

/// Why the control plane would not take the registration: its own words when it refused
/// (a certificate for another node, none at all), the transport's when the TLS handshake
/// failed on the first call (TLS 1.3 reports a refused client certificate only then).
fn refused(status: &tonic::Status) -> String {
    match status.code() {
        tonic::Code::Unauthenticated | tonic::Code::PermissionDenied => format!(
            "registration refused ({:?}): {}",
            status.code(),
            status.message()
        ),
        _ => format!("registration refused: {}", ate_tls::error_chain(status)),
    }
}
