//! Actors' logs on this node: the last lines each actor wrote, kept across suspend and
//! resume on this node, and live followers. Lines belong to one incarnation of an actor's
//! name (its uid): a node that starts a new incarnation drops the old one's lines, and a
//! reader sees only the lines of the incarnation it names, so an actor deleted and created
//! again, even in a deleted and recreated atespace, never shows its namesake's output.

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
    /// The incarnation whose lines these are.
    uid: Option<String>,
    lines: VecDeque<LogLine>,
    partial: [Vec<u8>; 2],
    /// Followers and the incarnation each follows: one may wait for an incarnation that
    /// has not started here yet.
    followers: Vec<(Option<String>, mpsc::Sender<LogLine>)>,
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

    /// A new run of `actor` starts here: lines of another incarnation are dropped, with
    /// their followers.
    pub fn begin(&self, actor: &ActorRef, uid: Option<&str>) {
        let mut actors = self.lock();
        let log = actors.entry(actor.to_string()).or_default();
        if log.uid.as_deref() != uid {
            log.uid = uid.map(str::to_string);
            log.lines.clear();
            log.partial = Default::default();
            log.followers.retain(|(u, _)| u.as_deref() == uid);
        }
    }

    /// Where a guest of `actor` writes its output (the incarnation last begun).
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

    /// The recent lines of incarnation `uid` of the actor, then new ones while `follow`
    /// and the caller listens.
    pub fn read(&self, actor: &ActorRef, uid: Option<&str>, follow: bool) -> LogStream {
        let mut actors = self.lock();
        let log = actors.entry(actor.to_string()).or_default();
        let backlog = if log.uid.as_deref() == uid {
            log.lines.len()
        } else {
            0
        };
        let (tx, rx) = mpsc::channel(backlog + FOLLOW_BUFFER);
        for line in log.lines.iter().take(backlog) {
            // The channel has room for the whole backlog.
            let _ = tx.try_send(line.clone());
        }
        if follow {
            log.followers.push((uid.map(str::to_string), tx));
        }
        rx
    }
}

fn push(log: &mut ActorLog, line: LogLine) {
    let uid = log.uid.clone();
    log.followers
        .retain(|(u, f)| *u != uid || f.try_send(line.clone()).is_ok());
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
        let mut past = book.read(&actor, None, false);
        let mut got = Vec::new();
        while let Some(l) = past.recv().await {
            got.push(format!("{}:{}", l.stream, l.text));
        }
        assert_eq!(got, ["stdout:one", "stderr:err", "stdout:two"]);

        let mut live = book.read(&actor, None, true);
        for _ in 0..3 {
            live.recv().await.unwrap();
        }
        sink(OutputStream::Stdout, b"three\n");
        assert_eq!(live.recv().await.unwrap().text, "three");
        for i in 0..LINES_PER_ACTOR + 5 {
            sink(OutputStream::Stdout, format!("{i}\n").as_bytes());
        }
        let mut past = book.read(&ActorRef::new("a", "x"), None, false);
        assert_eq!(past.recv().await.unwrap().text, "5");
    }

    async fn texts(mut lines: LogStream) -> Vec<String> {
        let mut got = Vec::new();
        while let Ok(l) = lines.try_recv() {
            got.push(l.text);
        }
        got
    }

    #[tokio::test]
    async fn an_incarnation_sees_only_its_own_lines() {
        let book = LogBook::default();
        let actor = ActorRef::new("a", "x");
        book.begin(&actor, Some("one"));
        book.sink(&actor)(OutputStream::Stdout, b"first life\n");
        // A follower of the next incarnation waits for it; one of the first is dropped
        // when the next begins.
        let mut next = book.read(&actor, Some("two"), true);
        let mut old = book.read(&actor, Some("one"), true);
        assert_eq!(old.recv().await.unwrap().text, "first life");
        assert!(
            texts(book.read(&actor, Some("two"), false))
                .await
                .is_empty()
        );
        assert!(texts(book.read(&actor, None, false)).await.is_empty());

        book.begin(&actor, Some("two"));
        assert!(
            texts(book.read(&actor, Some("one"), false))
                .await
                .is_empty()
        );
        book.sink(&actor)(OutputStream::Stdout, b"second life\n");
        assert_eq!(next.recv().await.unwrap().text, "second life");
        assert!(
            old.recv().await.is_none(),
            "the old incarnation's follower is dropped"
        );
        assert_eq!(
            texts(book.read(&actor, Some("two"), false)).await,
            ["second life"]
        );
        // Beginning the same incarnation again (a resume here) keeps its lines.
        book.begin(&actor, Some("two"));
        assert_eq!(
            texts(book.read(&actor, Some("two"), false)).await,
            ["second life"]
        );
    }
}
