//! Readiness: connect (or `GET path`) into the container's namespace until it answers,
//! failing at once if the program exits first.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::sandbox::{Inner, tail_lines};
use crate::{Probe, ProcessError, netns};

const FIRST_DELAY: Duration = Duration::from_millis(5);
const MAX_DELAY: Duration = Duration::from_millis(50);
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);

/// Returns once `probe` passes; `NotReady` after its timeout, `Exited` if the program
/// ends first.
pub(crate) async fn wait_ready(inner: &Inner, probe: &Probe) -> Result<(), ProcessError> {
    let start = Instant::now();
    let mut delay = FIRST_DELAY;
    let mut exits = inner.exit_tx.subscribe();
    let mut last_error = String::from("no attempt finished");
    loop {
        let exited_now = exits.borrow().clone();
        if let Some(message) = exited_now {
            return Err(exited(inner, message).await);
        }
        let left = probe.timeout.saturating_sub(start.elapsed());
        if left.is_zero() {
            return Err(ProcessError::NotReady {
                after: probe.timeout,
                reason: last_error,
                tail: last_lines(inner),
            });
        }
        match tokio::time::timeout(left.min(ATTEMPT_TIMEOUT), attempt(inner, probe)).await {
            Ok(Ok(())) => {
                tracing::debug!(container = %inner.name, ms = start.elapsed().as_millis() as u64, "ready");
                return Ok(());
            }
            Ok(Err(e)) => last_error = e,
            Err(_) => last_error = "probe attempt timed out".into(),
        }
        let left = probe.timeout.saturating_sub(start.elapsed());
        tokio::select! {
            _ = tokio::time::sleep(delay.min(left)) => {}
            _ = exits.changed() => {}
        }
        delay = (delay * 2).min(MAX_DELAY);
    }
}

async fn attempt(inner: &Inner, probe: &Probe) -> Result<(), String> {
    let mut conn = netns::connect_in(&inner.netns, probe.port)
        .await
        .map_err(|e| format!("connect to port {}: {e}", probe.port))?;
    let Some(path) = &probe.http_path else {
        return Ok(());
    };
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    conn.write_all(req.as_bytes())
        .await
        .map_err(|e| format!("GET {path}: {e}"))?;
    let mut buf = Vec::new();
    (&mut conn)
        .take(64 * 1024)
        .read_to_end(&mut buf)
        .await
        .map_err(|e| format!("GET {path}: {e}"))?;
    let status_line = String::from_utf8_lossy(&buf)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    let status = status_line.split(' ').nth(1).unwrap_or("");
    if status_line.starts_with("HTTP/1.") && status.starts_with('2') && status.len() == 3 {
        Ok(())
    } else if status_line.is_empty() {
        Err(format!("GET {path}: no response"))
    } else {
        Err(format!("GET {path}: {status_line}"))
    }
}

/// The exit error, after giving the output readers a moment to drain the pipes.
async fn exited(inner: &Inner, message: String) -> ProcessError {
    let mut done = inner.logs_done.subscribe();
    let _ = tokio::time::timeout(Duration::from_millis(300), done.wait_for(|n| *n >= 2)).await;
    ProcessError::Exited {
        message,
        tail: last_lines(inner),
    }
}

fn last_lines(inner: &Inner) -> Vec<String> {
    let lines = tail_lines(&inner.tail);
    lines[lines.len().saturating_sub(5)..].to_vec()
}
