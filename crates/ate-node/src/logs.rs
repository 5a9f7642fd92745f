//! Actors' logs on this node: the last lines each actor wrote, kept across suspend and
//! resume on this node, and live followers.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use ate_model::ActorRef;
use ate_seam::{LogLine, LogStream};
use ate_wasm::{LogSink, OutputStream};
use tokio::sync::mpsc;

/// Lines kept per actor.
pub const LINES_PER_ACTOR: usize = 1000;
/// A line longer than this is cut, so a guest printing without newlines cannot grow
/// the buffer without bound.
const MAX_LINE: usize = 16 * 1024;
/// Lines a follower may fall behind by before it is dropped.
const FOLLOW_BUFFER: usize = 1024;

#[derive(Default)]
struct ActorLog {
    lines: VecDeque<LogLine>,
    partial: [Vec<u8>; 2],
    followers: Vec<mpsc::Sender<LogLine>>,
}

/// Every actor's log on this node.
#[derive(Clone, Default)]
pub struct LogBook {
    actors: Arc<Mutex<HashMap<String, ActorLog>>>,
}

impl std::fmt::Debug for LogBook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogBook").finish_non_exhaustive()
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl LogBook {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, ActorLog>> {
        self.actors.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Where a guest of `actor` writes its output.
    pub fn sink(&self, actor: &ActorRef) -> LogSink {
        let book = self.clone();
        let key = actor.to_string();
        Arc::new(move |stream, bytes| book.write(&key, stream, bytes))
    }

    fn write(&self, key: &str, stream: OutputStream, bytes: &[u8]) {
        let mut actors = self.lock();
        let log = actors.entry(key.to_string()).or_default();
        let idx = usize::from(stream == OutputStream::Stderr);
        for &b in bytes {
            if b == b'\n' || log.partial[idx].len() >= MAX_LINE {
                let text = String::from_utf8_lossy(&log.partial[idx]).into_owned();
                log.partial[idx].clear();
                push(
                    log,
                    LogLine {
                        time_ms: now_ms(),
                        stream: stream.as_str().into(),
                        text,
                    },
                );
                if b == b'\n' {
                    continue;
                }
            }
            log.partial[idx].push(b);
        }
    }

    /// The actor's recent lines, then new ones while `follow` and the caller listens.
    pub fn read(&self, actor: &ActorRef, follow: bool) -> LogStream {
        let mut actors = self.lock();
        let log = actors.entry(actor.to_string()).or_default();
        let (tx, rx) = mpsc::channel(log.lines.len() + FOLLOW_BUFFER);
        for line in &log.lines {
            // The channel has room for the whole backlog.
            let _ = tx.try_send(line.clone());
        }
        if follow {
            log.followers.push(tx);
        }
        rx
    }
}

fn push(log: &mut ActorLog, line: LogLine) {
    log.followers.retain(|f| f.try_send(line.clone()).is_ok());
    if log.lines.len() == LINES_PER_ACTOR {
        log.lines.pop_front();
    }
    log.lines.push_back(line);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_are_split_kept_and_followed() {
        let book = LogBook::default();
        let actor = ActorRef::new("a", "x");
        let sink = book.sink(&actor);
        sink(OutputStream::Stdout, b"one\ntw");
        sink(OutputStream::Stderr, b"err\n");
        sink(OutputStream::Stdout, b"o\n");
        let mut past = book.read(&actor, false);
        let mut got = Vec::new();
        while let Some(l) = past.recv().await {
            got.push(format!("{}:{}", l.stream, l.text));
        }
        assert_eq!(got, ["stdout:one", "stderr:err", "stdout:two"]);

        let mut live = book.read(&actor, true);
        for _ in 0..3 {
            live.recv().await.unwrap();
        }
        sink(OutputStream::Stdout, b"three\n");
        assert_eq!(live.recv().await.unwrap().text, "three");
        for i in 0..LINES_PER_ACTOR + 5 {
            sink(OutputStream::Stdout, format!("{i}\n").as_bytes());
        }
        let mut past = book.read(&ActorRef::new("a", "x"), false);
        assert_eq!(past.recv().await.unwrap().text, "5");
    }
}
