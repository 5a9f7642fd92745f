//! Actors' logs on this node: the last lines each actor wrote, kept across suspend and
//! resume on this node, and live followers. Lines belong to one incarnation of an actor's
//! name (its uid): a node that starts a new incarnation drops the old one's lines, and a
//! reader sees only the lines of the incarnation it names, so an actor deleted and created
//! again, even in a deleted and recreated atespace, never shows its namesake's output.
//!
//! The book is bounded whatever the number of actors that ever ran here. An actor holds at
//! most [`BYTES_PER_ACTOR`] (its last [`LINES_PER_ACTOR`] lines, fewer if they are long, and
//! a partial line per stream). An actor hosted here keeps its lines; one that left the node
//! (suspended or paused after its checkpoint, evicted, stopped, its program exited and its
//! worker freed, or a start that failed) keeps them among the last [`DEPARTED_ACTORS`]
//! departures, so `ate logs` still shows a suspended or crashed actor's last lines, and takes
//! them back if it starts here again; the oldest departure is forgotten first. So the lines
//! held are at most (hosted actors + [`DEPARTED_ACTORS`]) × [`BYTES_PER_ACTOR`]. A follower
//! whose reader went away is dropped within [`FOLLOWER_PRUNE`], with or without new lines.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ate_model::ActorRef;
use ate_seam::{LogLine, LogStream};
use ate_wasm::{LogSink, OutputStream};
use tokio::sync::mpsc;

/// Lines kept per actor.
pub const LINES_PER_ACTOR: usize = 1000;
/// Bytes kept per actor, its lines (text and their records) and partial lines together:
/// 1000 lines of 16 KiB would be 16 MiB an actor, too much to keep for every actor a node
/// ever hosted; 256 KiB is still the last 1000 lines of ordinary output.
pub const BYTES_PER_ACTOR: usize = 256 * 1024;
/// Actors that left the node whose lines are still kept: enough that the actors a busy
/// node suspended or lost lately can still be read, at most 64 MiB of lines.
pub const DEPARTED_ACTORS: usize = 256;
/// A line longer than this is cut, so a guest printing without newlines cannot grow
/// the buffer without bound.
const MAX_LINE: usize = 16 * 1024;
/// What complete lines may take of an actor's bytes: the rest is room for a partial line
/// on each stream.
const LINE_BYTES: usize = BYTES_PER_ACTOR - 2 * MAX_LINE;
/// Lines a follower may fall behind by before it is dropped.
const FOLLOW_BUFFER: usize = 1024;
/// How often followers whose reader went away are looked for, while there are followers:
/// without it a follower of an actor that writes nothing more is held until it does.
const FOLLOWER_PRUNE: Duration = Duration::from_secs(1);

/// Where an actor is, as the book knows it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Presence {
    /// Neither hosted nor departed: only followed (it holds no lines).
    #[default]
    Absent,
    /// Begun here and not left.
    Hosted,
    /// Left the node; the number orders departures.
    Departed(u64),
}

#[derive(Default)]
struct ActorLog {
    /// The incarnation whose lines these are.
    uid: Option<String>,
    presence: Presence,
    lines: VecDeque<LogLine>,
    /// What `lines` take ([`line_bytes`]).
    bytes: usize,
    partial: [Vec<u8>; 2],
    /// Followers and the incarnation each follows: one may wait for an incarnation that
    /// has not started here yet.
    followers: Vec<(Option<String>, mpsc::Sender<LogLine>)>,
}

impl ActorLog {
    fn clear_lines(&mut self) {
        self.lines = VecDeque::new();
        self.bytes = 0;
        self.partial = Default::default();
    }
}

#[derive(Default)]
struct Book {
    actors: HashMap<String, ActorLog>,
    /// Actors that left, by departure, oldest first.
    departures: BTreeMap<u64, String>,
    next_departure: u64,
    /// The task dropping followers whose reader went away, while there are followers.
    pruner: Option<tokio::task::JoinHandle<()>>,
}

/// Every actor's log on this node.
#[derive(Clone, Default)]
pub struct LogBook {
    book: Arc<Mutex<Book>>,
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

/// What a kept line counts against its actor's bytes: its text and its record.
fn line_bytes(line: &LogLine) -> usize {
    std::mem::size_of::<LogLine>() + line.stream.len() + line.text.len()
}

fn lock(book: &Mutex<Book>) -> MutexGuard<'_, Book> {
    book.lock().unwrap_or_else(|p| p.into_inner())
}

impl LogBook {
    fn lock(&self) -> MutexGuard<'_, Book> {
        lock(&self.book)
    }

    /// A new run of `actor` starts here: lines of another incarnation are dropped, with
    /// their followers; the same incarnation coming back takes its lines back.
    pub fn begin(&self, actor: &ActorRef, uid: Option<&str>) {
        let mut book = self.lock();
        let book = &mut *book;
        let log = book.actors.entry(actor.to_string()).or_default();
        if let Presence::Departed(n) = log.presence {
            book.departures.remove(&n);
        }
        log.presence = Presence::Hosted;
        if log.uid.as_deref() != uid {
            log.uid = uid.map(str::to_string);
            log.clear_lines();
            log.followers.retain(|(u, _)| u.as_deref() == uid);
        }
    }

    /// [`Self::begin`] for a start that may fail: unless the actor [arrived](Arrival::arrived),
    /// it leaves again (its start failed or was given up half way), so what it printed
    /// joins the departed rather than being held as a hosted actor's for ever.
    pub fn arriving(&self, actor: &ActorRef, uid: Option<&str>) -> Arrival {
        self.begin(actor, uid);
        Arrival {
            book: self.clone(),
            actor: Some(actor.clone()),
        }
    }

    /// `actor` left the node: its lines join the departed, the oldest departure beyond
    /// [`DEPARTED_ACTORS`] is forgotten. Leaving twice is leaving once.
    pub fn leave(&self, actor: &ActorRef) {
        let mut book = self.lock();
        let key = actor.to_string();
        match book.actors.get(&key).map(|l| l.presence) {
            Some(Presence::Hosted | Presence::Absent) => book.depart(key),
            Some(Presence::Departed(_)) | None => {}
        }
    }

    /// Where a guest of `actor` writes its output (the incarnation last begun).
    pub fn sink(&self, actor: &ActorRef) -> LogSink {
        let book = self.clone();
        let key = actor.to_string();
        Arc::new(move |stream, bytes| book.write(&key, stream, bytes))
    }

    fn write(&self, key: &str, stream: OutputStream, bytes: &[u8]) {
        let mut book = self.lock();
        // Output of an actor not hosted here (a program's last words after it left, after
        // it was forgotten) is kept as a departure's, so it stays within the bound.
        if book
            .actors
            .get(key)
            .is_none_or(|l| l.presence == Presence::Absent)
        {
            book.depart(key.to_string());
        }
        let Some(log) = book.actors.get_mut(key) else {
            return;
        };
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
        let mut book = self.lock();
        let key = actor.to_string();
        let backlog: Vec<LogLine> = match book.actors.get(&key) {
            Some(log) if log.uid.as_deref() == uid => log.lines.iter().cloned().collect(),
            _ => Vec::new(),
        };
        let room = if follow { FOLLOW_BUFFER } else { 1 };
        let (tx, rx) = mpsc::channel(backlog.len() + room);
        for line in backlog {
            // The channel has room for the whole backlog.
            let _ = tx.try_send(line);
        }
        if follow {
            // Only a follower makes an entry for an actor the book does not know; it goes
            // with the follower (see `prune`).
            book.actors
                .entry(key)
                .or_default()
                .followers
                .push((uid.map(str::to_string), tx));
            self.start_pruner(&mut book);
        }
        rx
    }

    /// Starts the follower pruner unless it runs (or there is no runtime to run it: then
    /// a follower is dropped at the next line, as a full or closed one always is).
    fn start_pruner(&self, book: &mut Book) {
        if book.pruner.as_ref().is_some_and(|p| !p.is_finished()) {
            return;
        }
        book.pruner = tokio::runtime::Handle::try_current()
            .ok()
            .map(|rt| rt.spawn(prune_followers(Arc::downgrade(&self.book))));
    }

    /// Actors the book holds anything for (lines or followers).
    #[cfg(test)]
    pub(crate) fn actors_held(&self) -> usize {
        self.lock().actors.len()
    }

    /// Followers the book holds, of every actor.
    #[cfg(test)]
    pub(crate) fn followers_held(&self) -> usize {
        self.lock().followers()
    }
}

/// An actor starting on this node ([`LogBook::arriving`]); dropped before it
/// [arrived](Self::arrived), it tells the book the actor left.
#[must_use = "an arrival dropped at once is a departure"]
#[derive(Debug)]
pub struct Arrival {
    book: LogBook,
    actor: Option<ActorRef>,
}

impl Arrival {
    /// The actor took its worker: it stays until the node stops it.
    pub fn arrived(mut self) {
        self.actor = None;
    }
}

impl Drop for Arrival {
    fn drop(&mut self) {
        if let Some(actor) = self.actor.take() {
            self.book.leave(&actor);
        }
    }
}

impl Book {
    /// Makes `key` the latest departure and forgets the oldest beyond the bound.
    fn depart(&mut self, key: String) {
        let n = self.next_departure;
        self.next_departure += 1;
        let log = self.actors.entry(key.clone()).or_default();
        if let Presence::Departed(old) = log.presence {
            self.departures.remove(&old);
        }
        log.presence = Presence::Departed(n);
        self.departures.insert(n, key);
        while self.departures.len() > DEPARTED_ACTORS {
            let Some((_, oldest)) = self.departures.pop_first() else {
                break;
            };
            self.forget(&oldest);
        }
    }

    /// Drops a departed actor's lines; its followers, if any, keep waiting for it.
    fn forget(&mut self, key: &str) {
        let Some(log) = self.actors.get_mut(key) else {
            return;
        };
        if log.followers.is_empty() {
            self.actors.remove(key);
        } else {
            log.clear_lines();
            log.presence = Presence::Absent;
        }
    }

    /// Drops followers whose reader went away, and entries left holding nothing.
    fn prune(&mut self) {
        self.actors.retain(|_, log| {
            log.followers.retain(|(_, f)| !f.is_closed());
            log.presence != Presence::Absent || !log.followers.is_empty()
        });
    }

    fn followers(&self) -> usize {
        self.actors.values().map(|l| l.followers.len()).sum()
    }
}

/// Prunes the book's followers every [`FOLLOWER_PRUNE`] until it has none (or is gone).
async fn prune_followers(book: Weak<Mutex<Book>>) {
    loop {
        tokio::time::sleep(FOLLOWER_PRUNE).await;
        let Some(book) = book.upgrade() else { return };
        let mut book = lock(&book);
        book.prune();
        if book.followers() == 0 {
            // Under the lock: a follow after this starts a new pruner.
            book.pruner = None;
            return;
        }
    }
}

fn push(log: &mut ActorLog, line: LogLine) {
    let uid = log.uid.clone();
    log.followers
        .retain(|(u, f)| *u != uid || f.try_send(line.clone()).is_ok());
    log.bytes += line_bytes(&line);
    log.lines.push_back(line);
    // Oldest first; the newest line always stays (a cut line is far below the budget).
    while log.lines.len() > LINES_PER_ACTOR || (log.bytes > LINE_BYTES && log.lines.len() > 1) {
        let Some(old) = log.lines.pop_front() else {
            break;
        };
        log.bytes -= line_bytes(&old);
    }
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

    fn line(book: &LogBook, actor: &ActorRef, text: &str) {
        book.sink(actor)(OutputStream::Stdout, format!("{text}\n").as_bytes());
    }

    #[tokio::test]
    async fn a_departed_actor_keeps_its_lines_until_enough_others_leave() {
        let book = LogBook::default();
        let gone = ActorRef::new("a", "gone");
        book.begin(&gone, Some("g"));
        line(&book, &gone, "last words");
        book.leave(&gone);
        // An actor that leaves and comes back takes its lines back, and is hosted again:
        // no number of departures after that forgets it.
        let back = ActorRef::new("a", "back");
        book.begin(&back, Some("b"));
        line(&book, &back, "before");
        book.leave(&back);
        book.begin(&back, Some("b"));
        line(&book, &back, "after");

        for i in 0..DEPARTED_ACTORS - 1 {
            let other = ActorRef::new("a", format!("other-{i}"));
            book.begin(&other, Some("o"));
            line(&book, &other, "hello");
            book.leave(&other);
        }
        assert_eq!(
            texts(book.read(&gone, Some("g"), false)).await,
            ["last words"],
            "kept while fewer than DEPARTED_ACTORS left after it"
        );
        let one_more = ActorRef::new("a", "one-more");
        book.begin(&one_more, Some("o"));
        book.leave(&one_more);
        assert!(texts(book.read(&gone, Some("g"), false)).await.is_empty());
        // The departed bound, and the one hosted actor.
        assert_eq!(book.actors_held(), DEPARTED_ACTORS + 1);
        assert_eq!(
            texts(book.read(&back, Some("b"), false)).await,
            ["before", "after"]
        );
        // Reading an actor the book does not know leaves nothing behind.
        assert!(
            texts(book.read(&ActorRef::new("a", "never"), None, false))
                .await
                .is_empty()
        );
        assert_eq!(book.actors_held(), DEPARTED_ACTORS + 1);

        // Output of an actor no longer hosted (a program's last words after it was
        // forgotten) counts as a departure's too.
        for i in 0..DEPARTED_ACTORS {
            line(&book, &ActorRef::new("a", format!("late-{i}")), "late");
        }
        assert_eq!(book.actors_held(), DEPARTED_ACTORS + 1);
    }

    #[tokio::test]
    async fn a_start_that_fails_leaves_and_one_that_arrives_stays() {
        let book = LogBook::default();
        let failed = ActorRef::new("a", "failed");
        let arriving = book.arriving(&failed, Some("f"));
        line(&book, &failed, "cannot start");
        drop(arriving);
        let started = ActorRef::new("a", "started");
        book.arriving(&started, Some("s")).arrived();
        line(&book, &started, "up");
        for i in 0..DEPARTED_ACTORS {
            let other = ActorRef::new("a", format!("other-{i}"));
            book.begin(&other, None);
            book.leave(&other);
        }
        // The failed start was a departure, forgotten with the oldest; the started actor
        // is hosted and keeps its lines.
        assert!(texts(book.read(&failed, Some("f"), false)).await.is_empty());
        assert_eq!(texts(book.read(&started, Some("s"), false)).await, ["up"]);
        assert_eq!(book.actors_held(), DEPARTED_ACTORS + 1);
    }

    #[tokio::test]
    async fn an_actor_keeps_at_most_its_bytes() {
        let book = LogBook::default();
        let actor = ActorRef::new("a", "x");
        book.begin(&actor, None);
        let sink = book.sink(&actor);
        for i in 0..100 {
            sink(
                OutputStream::Stdout,
                format!("{i:04}{}\n", "y".repeat(10_000)).as_bytes(),
            );
        }
        // A guest printing without newlines: cut into lines, bounded just the same.
        sink(OutputStream::Stderr, &vec![b'z'; 1 << 20]);
        let kept = texts(book.read(&actor, None, false)).await;
        let bytes: usize = kept.iter().map(String::len).sum();
        assert!(bytes <= BYTES_PER_ACTOR, "{bytes} bytes kept");
        assert!(bytes > BYTES_PER_ACTOR / 2, "only {bytes} bytes kept");
        assert!(kept.len() < LINES_PER_ACTOR);
        // The oldest went first: what is left is the newest, in order.
        assert!(
            kept.iter().all(|l| l.len() == MAX_LINE),
            "only cut lines remain"
        );
        let log = book.lock();
        let log = &log.actors["a/x"];
        assert_eq!(log.bytes, log.lines.iter().map(line_bytes).sum::<usize>());
        assert!(log.bytes + log.partial.iter().map(Vec::len).sum::<usize>() <= BYTES_PER_ACTOR);
    }

    #[tokio::test]
    async fn a_follower_is_dropped_when_its_reader_goes_without_a_new_line() {
        let book = LogBook::default();
        let actor = ActorRef::new("a", "x");
        book.begin(&actor, Some("one"));
        line(&book, &actor, "only line");
        let kept = book.read(&actor, Some("one"), true);
        // A follower of an actor the book does not know yet.
        let waiting = book.read(&ActorRef::new("a", "later"), None, true);
        assert_eq!((book.followers_held(), book.actors_held()), (2, 2));

        drop(kept);
        drop(waiting);
        let deadline = tokio::time::Instant::now() + 5 * FOLLOWER_PRUNE;
        while book.followers_held() > 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "followers still held long after their readers went"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The waiting follower's entry went with it; the hosted actor's lines stay.
        assert_eq!(book.actors_held(), 1);
        assert_eq!(
            texts(book.read(&actor, Some("one"), false)).await,
            ["only line"]
        );
        // With nothing to follow the pruner stops, and a new follow starts it again.
        while book.lock().pruner.is_some() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the pruner keeps running"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        drop(book.read(&actor, Some("one"), true));
        assert!(book.lock().pruner.is_some());
    }
}
