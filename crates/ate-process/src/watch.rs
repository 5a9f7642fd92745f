//! The two things that watch a running container from the node: its output (line by
//! line into the log sink, keeping a tail for error messages) and its init process (to
//! learn about exits we did not cause).
//!
//! The node process is a child subreaper (set by `ProcessHost::detect`), so once runc
//! has detached, each container's init process is re-parented to the node. That lets
//! the exit watch read the real exit status through a pidfd (`waitid(P_PIDFD)`) and
//! rules out pid reuse: the pid stays a zombie until the watch reaps it.

use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rustix::process::{Pid, PidfdFlags, WaitId, WaitIdOptions};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::watch;

use crate::sandbox::{Inner, Tail, teardown};
use crate::{LogSink, LogStream, ProcessError};

pub(crate) const TAIL_LINES: usize = 20;
const MAX_LINE: usize = 16 * 1024;
/// Exit polling: fast while a program is young (a crash at startup fails the probe at
/// once), then every 100 ms.
const FAST_WATCH: Duration = Duration::from_secs(3);
const FAST_TICK: Duration = Duration::from_millis(5);
const SLOW_TICK: Duration = Duration::from_millis(100);

/// Forwards one output stream to the sink, line by line, keeping the tail.
pub(crate) fn pump(
    reader: impl AsyncRead + Unpin + Send + 'static,
    stream: LogStream,
    sink: LogSink,
    tail: Tail,
    done: watch::Sender<u8>,
) {
    tokio::spawn(async move {
        let mut r = BufReader::new(reader);
        let mut line: Vec<u8> = Vec::new();
        let emit = |line: &mut Vec<u8>| {
            let text = String::from_utf8_lossy(line)
                .trim_end_matches('\r')
                .to_string();
            line.clear();
            if let Ok(mut t) = tail.lock() {
                if t.len() == TAIL_LINES {
                    t.pop_front();
                }
                t.push_back(text.clone());
            }
            sink(stream, text);
        };
        while let Ok(buf) = r.fill_buf().await {
            if buf.is_empty() {
                break;
            }
            match buf.iter().position(|b| *b == b'\n') {
                Some(i) => {
                    line.extend_from_slice(&buf[..i]);
                    r.consume(i + 1);
                    emit(&mut line);
                }
                None => {
                    let n = buf.len();
                    line.extend_from_slice(buf);
                    r.consume(n);
                    if line.len() >= MAX_LINE {
                        emit(&mut line);
                    }
                }
            }
        }
        if !line.is_empty() {
            emit(&mut line);
        }
        done.send_modify(|n| *n += 1);
    });
}

/// Watches the container's init process and publishes its exit unless we caused it.
pub(crate) fn watch_exit(inner: Arc<Inner>, pid: i32) -> Result<(), ProcessError> {
    let pid_t = Pid::from_raw(pid).ok_or_else(|| ProcessError::Runc {
        op: "state",
        stderr: format!("invalid init pid {pid}"),
    })?;
    let pidfd = rustix::process::pidfd_open(pid_t, PidfdFlags::empty())
        .map_err(|e| ProcessError::io("watching init pid of", &inner.bundle, e.into()))?;
    let pidfd = Arc::new(pidfd);
    if let Ok(mut g) = inner.init.lock() {
        *g = Some(pidfd.clone());
    }
    tokio::spawn(async move {
        // Polled, not registered with tokio's reactor: tokio's AsyncFd constructors are
        // unsafe or deprecated, and one `poll` syscall per tick is cheap.
        let started = Instant::now();
        loop {
            let mut fds = [rustix::event::PollFd::new(
                &*pidfd,
                rustix::event::PollFlags::IN,
            )];
            let ready = rustix::event::poll(&mut fds, Some(&rustix::time::Timespec::default()))
                .map_or(true, |n| n > 0);
            if ready {
                break;
            }
            let tick = if started.elapsed() < FAST_WATCH {
                FAST_TICK
            } else {
                SLOW_TICK
            };
            tokio::time::sleep(tick).await;
        }
        let status = rustix::process::waitid(
            WaitId::PidFd(pidfd.as_fd()),
            WaitIdOptions::EXITED | WaitIdOptions::NOHANG,
        );
        let mut message = match status {
            Ok(Some(s)) => match (s.exit_status(), s.terminating_signal()) {
                (Some(code), _) if s.exited() => format!("exited with status {code}"),
                (_, Some(sig)) => format!("killed by signal {sig}"),
                _ => "exited".to_string(),
            },
            _ => "exited".to_string(),
        };
        if oom_killed(&inner.cgroup) {
            message = format!(
                "{message} (out of memory: limit {} bytes)",
                inner.memory_limit
            );
        }
        if let Ok(mut g) = inner.last_exit.lock() {
            *g = Some(message.clone());
        }
        if inner.quiet.load(Ordering::SeqCst) {
            return;
        }
        tracing::info!(container = %inner.name, reason = %message, "program exited");
        inner.exit_tx.send_replace(Some(message));
        teardown(&inner).await;
    });
    Ok(())
}

/// Whether the memory cgroup of the container saw an OOM kill (cgroup v1 or v2).
fn oom_killed(cgroup: &str) -> bool {
    let rel = cgroup.trim_start_matches('/');
    let candidates = [
        (
            format!("/sys/fs/cgroup/memory/{rel}/memory.oom_control"),
            "oom_kill ",
        ),
        (format!("/sys/fs/cgroup/{rel}/memory.events"), "oom_kill "),
    ];
    candidates.iter().any(|(path, key)| {
        std::fs::read_to_string(path).is_ok_and(|text| {
            text.lines().any(|l| {
                l.strip_prefix(key)
                    .and_then(|n| n.trim().parse::<u64>().ok())
                    .is_some_and(|n| n > 0)
            })
        })
    })
}
