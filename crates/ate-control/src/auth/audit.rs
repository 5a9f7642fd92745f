//! The audit trail: one [`AuditEvent`] per mutating call, written after the call with its
//! outcome (denied calls included), and read back by admins.

use std::sync::Arc;
use std::time::Duration;

use ate_model::{AuditEvent, Kind, security::outcome};
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

fn unique() -> String {
    let mut bytes = [0u8; 6];
    if getrandom::fill(&mut bytes).is_err() {
        // The time and a process-wide counter still keep keys apart within this process.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        bytes.copy_from_slice(&n.to_be_bytes()[2..]);
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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
    let event = AuditEvent {
        id: AuditEvent::key_for(time_ms, &unique()),
        time_ms,
        subject,
        role,
        method: call.method.to_string(),
        atespace: call.atespace.clone(),
        target: call.target.clone(),
        result: result.to_string(),
        code,
        message,
        version: 0,
    };
    tracing::info!(
        target: "ate::audit",
        subject = %event.subject,
        method = %event.method,
        atespace = %event.atespace,
        target_name = %event.target,
        result = %event.result,
        "audit"
    );
    if let Err(e) = store.create(event).await {
        tracing::error!(error = %e, method = call.method, "cannot write audit event");
    }
}

/// The subject and role an event records for `caller`; `anonymous` when authentication failed.
pub fn who(caller: Option<&Caller>) -> (String, String) {
    match caller {
        Some(c) => (c.subject(), c.role()),
        None => ("anonymous".into(), String::new()),
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
