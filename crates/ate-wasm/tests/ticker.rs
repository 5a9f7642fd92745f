//! The demo ticker (`demo/ticker/ticker.wat`): a server-sent-events stream whose shape comes
//! from the environment, with the guest sleeping between events through `poll_oneoff`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ate_wasm::*;

mod common;
use common::config;

const TICKER: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../demo/ticker/ticker.wat"
));

/// Each response part as it reached the sink, with when it did.
type Timed = Vec<(Instant, ResponsePart)>;

struct Run {
    parts: Timed,
    log: String,
    elapsed: Duration,
}

/// Boots the ticker with `env` and sends one request; the sink reports the client gone once
/// it has seen `client_leaves_after` chunks.
fn stream(env: &[(&str, &str)], client_leaves_after: Option<usize>) -> Run {
    let engine = WasmEngine::new().expect("engine");
    let module = engine
        .compile(TICKER.as_bytes(), None)
        .expect("the ticker compiles");
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut cfg = config(log.clone());
    cfg.env = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut guest = Guest::boot(&engine, module, &cfg).expect("the ticker boots");
    let parts: Arc<Mutex<Timed>> = Arc::default();
    let sink = parts.clone();
    let start = Instant::now();
    guest
        .handle(
            b"GET /events HTTP/1.1\r\naccept: text/event-stream\r\n\r\n",
            Box::new(move |p| {
                let mut parts = sink.lock().expect("parts lock");
                parts.push((Instant::now(), p));
                let chunks = parts.len() - 1;
                client_leaves_after.is_none_or(|n| chunks < n)
            }),
        )
        .expect("the ticker handles the request");
    let elapsed = start.elapsed();
    let parts = std::mem::take(&mut *parts.lock().expect("parts lock"));
    let log = String::from_utf8(log.lock().expect("log lock").clone()).expect("utf-8 log");
    Run {
        parts,
        log,
        elapsed,
    }
}

/// Asserts the SSE head and returns the chunks as text, with their arrival times.
fn events(run: &Run) -> Vec<(Instant, String)> {
    let Some((_, ResponsePart::Head { status, headers })) = run.parts.first() else {
        panic!("no head first: {:?}", run.parts);
    };
    assert_eq!(*status, 200);
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(header("content-type"), Some("text/event-stream"));
    assert_eq!(header("cache-control"), Some("no-cache"));
    run.parts[1..]
        .iter()
        .map(|(at, p)| match p {
            ResponsePart::Chunk(c) => (*at, String::from_utf8(c.to_vec()).expect("utf-8 chunk")),
            ResponsePart::Head { .. } => panic!("two heads"),
        })
        .collect()
}

fn ticks(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("data: tick {i}\n\n")).collect()
}

#[test]
fn ticks_stream_as_server_sent_events_spaced_by_the_interval() {
    let run = stream(&[("TICK_COUNT", "3"), ("TICK_INTERVAL_MS", "100")], None);
    let events = events(&run);
    let texts: Vec<String> = events.iter().map(|(_, t)| t.clone()).collect();
    assert_eq!(texts, ticks(3));
    let spread = events[2].0 - events[0].0;
    assert!(spread >= Duration::from_millis(200), "{spread:?}");
    assert_eq!(run.log, "ticker: 3 ticks every 100 ms\n");
}

#[test]
fn the_first_tick_is_sent_before_any_sleep() {
    let run = stream(&[("TICK_COUNT", "2"), ("TICK_INTERVAL_MS", "300")], None);
    let events = events(&run);
    let (head_at, first_at) = (run.parts[0].0, events[0].0);
    assert!(
        first_at - head_at < Duration::from_millis(250),
        "waited first"
    );
    assert!(events[1].0 - first_at >= Duration::from_millis(300));
}

#[test]
fn defaults_apply_when_the_environment_is_silent() {
    let run = stream(&[("TICK_INTERVAL_MS", "1")], None);
    let texts: Vec<String> = events(&run).into_iter().map(|(_, t)| t).collect();
    assert_eq!(texts, ticks(10));
    assert_eq!(run.log, "ticker: 10 ticks every 1 ms\n");

    // Without either variable the interval is a second: the second tick waits for it.
    let run = stream(&[], Some(2));
    let events = events(&run);
    assert_eq!(events.len(), 2);
    assert!(events[1].0 - events[0].0 >= Duration::from_millis(1000));
    assert_eq!(run.log, "ticker: 10 ticks every 1000 ms\n");
}

#[test]
fn values_that_are_not_plain_decimals_mean_the_default_and_zero_means_none() {
    for bad in ["", "x3", "3x", "-3", "+3", " 3", "1234567890"] {
        let run = stream(&[("TICK_COUNT", bad), ("TICK_INTERVAL_MS", "0")], None);
        assert_eq!(events(&run).len(), 10, "TICK_COUNT={bad:?}");
    }
    let run = stream(&[("TICK_COUNT", "0")], None);
    assert!(events(&run).is_empty());
    let run = stream(&[("TICK_COUNT", "007"), ("TICK_INTERVAL_MS", "0")], None);
    assert_eq!(events(&run).len(), 7);
}

#[test]
fn the_stream_stops_when_the_client_is_gone() {
    let run = stream(
        &[("TICK_COUNT", "1000"), ("TICK_INTERVAL_MS", "100")],
        Some(2),
    );
    let texts: Vec<String> = events(&run).into_iter().map(|(_, t)| t).collect();
    assert_eq!(texts, ticks(2), "nothing after the client left");
    // One sleep (before tick 2), none after the refused write.
    assert!(run.elapsed < Duration::from_secs(5), "{:?}", run.elapsed);
}
