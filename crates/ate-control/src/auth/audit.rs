//! The audit trail: one [`AuditEvent`] per mutating call, written after the call with its
//! outcome (denied calls included), and read back by admins.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ate_model::{AuditEvent, Kind, clip, security::outcome};
use ate_store::{ListOptions, Store, StoreError, encode_token, now_ms};
use tokio::task::JoinHandle;
use tonic::Status;

use super::Caller;

/// What a mutating call acts on, as its audit event names it.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: &'static str,
    pub atespace: String,
    pub target: String,
}

impl Call {
    pub fn new(method: &'static str, atespace: &str, target: impl Into<String>) -> Self {
        Self {
            method,
            atespace: atespace.to_string(),
            target: target.into(),
        }
    }

    /// A cluster-wide call (templates, pools, nodes, keys).
    pub fn cluster(method: &'static str, target: impl Into<String>) -> Self {
        Self::new(method, "", target)
    }
}

/// Longest subject, target part or message an event keeps: a refused call costs a bounded
/// write whatever its request carried.
pub const MAX_FIELD: usize = 256;
/// What an event records in place of a name that is not one (too long, odd characters).
pub const INVALID_NAME: &str = "<invalid>";

/// `name` if it has the shape of an ate name (label, subdomain or node name), else
/// [`INVALID_NAME`].
fn name_or_marker(name: &str) -> String {
    let shaped = name.len() <= ate_model::names::MAX_SUBDOMAIN_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if shaped {
        name.to_string()
    } else {
        INVALID_NAME.to_string()
    }
}

/// Records `call` by `caller` with its outcome. A failure to write is logged, not returned:
/// the call already happened, and the log line keeps the event.
pub async fn record(
    store: &Arc<dyn Store>,
    subject: String,
    role: String,
    call: &Call,
    result: Result<(), &Status>,
) {
    write(store, event(subject, role, call, result, None)).await;
}

/// The event of `call` with its outcome, every field validated or clipped; `repeats` when it
/// stands for that many refusals.
fn event(
    subject: String,
    role: String,
    call: &Call,
    result: Result<(), &Status>,
    repeats: Option<(u64, Duration)>,
) -> AuditEvent {
    let time_ms = now_ms();
    let (result, code, message) = match result {
        Ok(()) => (outcome::OK, "OK".to_string(), String::new()),
        Err(s) => {
            let denied = matches!(
                s.code(),
                tonic::Code::PermissionDenied | tonic::Code::Unauthenticated
            );
            (
                if denied {
                    outcome::DENIED
                } else {
                    outcome::FAILED
                },
                format!("{:?}", s.code()),
                s.message().to_string(),
            )
        }
    };
    let message = match repeats {
        Some((n, within)) => format!(
            "{n} calls refused in {} s, the last: {message}",
            within.as_secs().max(1)
        ),
        None => message,
    };
    AuditEvent {
        id: AuditEvent::key_for(time_ms, &crate::random_hex::<6>()),
        time_ms,
        subject: clip(&subject, MAX_FIELD),
        role: clip(&role, MAX_FIELD),
        method: call.method.to_string(),
        atespace: if call.atespace.is_empty() {
            String::new()
        } else {
            name_or_marker(&call.atespace)
        },
        target: call
            .target
            .splitn(2, '/')
            .map(name_or_marker)
            .collect::<Vec<_>>()
            .join("/"),
        result: result.to_string(),
        code,
        message: clip(&message, MAX_FIELD),
        version: 0,
    }
}

async fn write(store: &Arc<dyn Store>, event: AuditEvent) {
    tracing::info!(
        target: "ate::audit",
        subject = %event.subject,
        method = %event.method,
        atespace = %event.atespace,
        target_name = %event.target,
        result = %event.result,
        "audit"
    );
    let method = event.method.clone();
    if let Err(e) = store.create(event).await {
        tracing::error!(error = %e, %method, "cannot write audit event");
    }
}

/// The subject of calls whose caller could not be authenticated.
pub const ANONYMOUS: &str = "anonymous";

/// `status` with the peer it was given to in front of its message.
fn from_peer(peer: &str, status: &Status) -> Status {
    Status::new(status.code(), format!("from {peer}: {}", status.message()))
}

/// How long refusals of unauthenticated calls from one peer are counted into one event.
pub const REFUSALS_WINDOW: Duration = Duration::from_secs(10);
/// Peers counted apart; past this, refusals from further peers share one count, so a crowd
/// of addresses cannot grow the table.
const MAX_PEERS: usize = 4096;
/// The peer under which refusals beyond [`MAX_PEERS`] are counted.
const OTHER_PEERS: &str = "other peers";

/// Refusals of unauthenticated calls, counted per peer: the first from a peer is written at
/// once, the rest of the window as one event with their count when it ends. An anonymous
/// client then costs at most two writes per window however fast it calls.
#[derive(Debug, Default)]
pub struct Refusals {
    counting: Mutex<HashMap<String, Counted>>,
}

#[derive(Debug)]
struct Counted {
    count: u64,
    last: Option<(Call, Status)>,
}

impl Refusals {
    /// Records the refusal of an unauthenticated `call` from `peer`.
    pub async fn record(
        self: &Arc<Self>,
        store: &Arc<dyn Store>,
        peer: &str,
        call: &Call,
        status: &Status,
    ) {
        let first = {
            let mut counting = self.counting.lock().unwrap_or_else(|p| p.into_inner());
            let peer = if counting.len() < MAX_PEERS || counting.contains_key(peer) {
                peer
            } else {
                OTHER_PEERS
            };
            match counting.get_mut(peer) {
                Some(c) => {
                    c.count += 1;
                    c.last = Some((call.clone(), status.clone()));
                    false
                }
                None => {
                    counting.insert(
                        peer.to_string(),
                        Counted {
                            count: 0,
                            last: None,
                        },
                    );
                    let (me, store, peer) = (self.clone(), store.clone(), peer.to_string());
                    tokio::spawn(async move {
                        tokio::time::sleep(REFUSALS_WINDOW).await;
                        me.flush(&store, &peer).await;
                    });
                    true
                }
            }
        };
        if first {
            let status = from_peer(peer, status);
            write(
                store,
                event(ANONYMOUS.into(), String::new(), call, Err(&status), None),
            )
            .await;
        }
    }

    /// Ends the window of `peer`: one event for the refusals counted in it, if any.
    async fn flush(&self, store: &Arc<dyn Store>, peer: &str) {
        let counted = self
            .counting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(peer);
        if let Some(Counted {
            count,
            last: Some((call, status)),
        }) = counted
        {
            let status = from_peer(peer, &status);
            let repeats = Some((count, REFUSALS_WINDOW));
            write(
                store,
                event(
                    ANONYMOUS.into(),
                    String::new(),
                    &call,
                    Err(&status),
                    repeats,
                ),
            )
            .await;
        }
    }
}

/// The subject and role an event records for `caller`; `anonymous` when authentication failed.
pub fn who(caller: Option<&Caller>) -> (String, String) {
    match caller {
        Some(c) => (c.subject(), c.role()),
        None => (ANONYMOUS.into(), String::new()),
    }
}

/// Events deleted per store call when pruning.
const PRUNE_PAGE: usize = 500;

/// Deletes the events recorded at or before `cutoff_ms` and returns how many went. Keys sort
/// newest first, so the old events are one contiguous range: every page starts right after
/// the cutoff's key, and pruning reads nothing it keeps. Replicas pruning at once only
/// find each other's deletions gone.
pub async fn prune(store: &Arc<dyn Store>, cutoff_ms: u64) -> Result<usize, StoreError> {
    let after = encode_token(&AuditEvent::key_for(cutoff_ms, ""));
    let mut removed = 0;
    loop {
        let opts = ListOptions {
            limit: PRUNE_PAGE,
            continue_token: Some(after.clone()),
            ..Default::default()
        };
        let page = store.list_records(Kind::AuditEvent, &opts).await?;
        if page.items.is_empty() {
            return Ok(removed);
        }
        for record in &page.items {
            match store
                .delete_record(Kind::AuditEvent, &record.key, None)
                .await
            {
                Ok(()) => removed += 1,
                Err(StoreError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// The running audit pruning loop; dropping it stops the loop.
#[derive(Debug)]
pub struct PruningHandle(JoinHandle<()>);

impl Drop for PruningHandle {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Keeps `retention` of audit events: prunes older ones at start and then every tenth of
/// the retention (at least a second apart, at most an hour).
pub fn start_pruning(store: Arc<dyn Store>, retention: Duration) -> PruningHandle {
    let every = (retention / 10).clamp(Duration::from_secs(1), Duration::from_secs(3600));
    PruningHandle(tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let cutoff =
                now_ms().saturating_sub(u64::try_from(retention.as_millis()).unwrap_or(u64::MAX));
            match prune(&store, cutoff).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(removed = n, ?retention, "old audit events pruned"),
                Err(e) => tracing::warn!(error = %e, "audit pruning failed; retrying"),
            }
        }
    }))
}
