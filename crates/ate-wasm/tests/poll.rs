//! WASI `poll_oneoff` on a real engine: guests sleep on clock subscriptions, the sleep is not
//! guest compute, and hostile arguments give an errno or a trap, never a host panic.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ate_wasm::*;

mod common;
use common::quiet;

const MS: u64 = 1_000_000;
const ERRNO_INVAL: u32 = 28;
const ERRNO_BADF: u16 = 8;
const ERRNO_NOTSUP: u16 = 58;

fn clock(userdata: u64, id: u32, timeout_ns: u64, abstime: bool) -> [u8; 48] {
    let mut s = [0u8; 48];
    s[0..8].copy_from_slice(&userdata.to_le_bytes());
    s[16..20].copy_from_slice(&id.to_le_bytes());
    s[24..32].copy_from_slice(&timeout_ns.to_le_bytes());
    s[40..42].copy_from_slice(&u16::from(abstime).to_le_bytes());
    s
}

fn fd(userdata: u64, tag: u8, fd: u32) -> [u8; 48] {
    let mut s = [0u8; 48];
    s[0..8].copy_from_slice(&userdata.to_le_bytes());
    s[8] = tag;
    s[16..20].copy_from_slice(&fd.to_le_bytes());
    s
}

/// Where the poll guest keeps things: subscriptions at `SUBS`; the errno, the event count and
/// the events back to back from `RESULT`, which is also what it answers with.
const SUBS: u32 = 1024;
const RESULT: u32 = 4088;
const EVENTS: u32 = RESULT + 8;

/// The arguments the guest passes to `poll_oneoff`, so tests can make them wrong.
struct Args {
    subs: u32,
    events: u32,
    n: u32,
    nevents: u32,
}

impl Args {
    fn for_subs(subs: &[[u8; 48]]) -> Self {
        Args {
            subs: SUBS,
            events: EVENTS,
            n: subs.len() as u32,
            nevents: RESULT + 4,
        }
    }
}

/// A guest that calls `poll_oneoff` once with `subs` (in a data segment) and `args`, then
/// answers with the errno, the event count and the room for `subs.len()` events. With
/// `then_spin` it loops forever after the poll instead.
fn poll_guest(subs: &[[u8; 48]], args: &Args, then_spin: bool) -> String {
    let data: String = subs.concat().iter().map(|b| format!("\\{b:02x}")).collect();
    let spin = if then_spin {
        "(loop $forever (br $forever))"
    } else {
        ""
    };
    format!(
        r#"(module
  (import "wasi_snapshot_preview1" "poll_oneoff"
    (func $poll (param i32 i32 i32 i32) (result i32)))
  (import "ate" "response_write" (func $write (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const {SUBS}) "{data}")
  (func (export "ate_alloc") (param i32) (result i32) i32.const 16384)
  ;; A wasm call after the poll: its entry checks the epoch deadline, so a sleep that had
  ;; been counted as compute would interrupt the guest here.
  (func $after_poll)
  (func (export "ate_handle") (param i32 i32) (result i32)
    (i32.store (i32.const {RESULT})
      (call $poll (i32.const {s}) (i32.const {e}) (i32.const {n}) (i32.const {ne})))
    (call $after_poll)
    {spin}
    (drop (call $write (i32.const {RESULT}) (i32.const {len})))
    i32.const 0))"#,
        s = args.subs as i32,
        e = args.events as i32,
        n = args.n as i32,
        ne = args.nevents as i32,
        len = 8 + 32 * subs.len(),
    )
}

#[derive(Debug, PartialEq, Eq)]
struct Event {
    userdata: u64,
    error: u16,
    kind: u8,
}

#[derive(Debug)]
struct Outcome {
    errno: u32,
    events: Vec<Event>,
    elapsed: Duration,
}

fn run(wat: &str, cfg: &GuestConfig) -> Result<Outcome, WasmError> {
    let engine = WasmEngine::new().expect("engine");
    let module = engine
        .compile(wat.as_bytes(), None)
        .expect("the poll guest compiles");
    let mut guest = Guest::boot(&engine, module, cfg).expect("the poll guest boots");
    run_on(&mut guest)
}

fn run_on(guest: &mut Guest) -> Result<Outcome, WasmError> {
    let body = Arc::new(Mutex::new(Vec::new()));
    let sink = body.clone();
    let start = Instant::now();
    guest.handle(
        b"GET / HTTP/1.1\r\n\r\n",
        Box::new(move |p| {
            if let ResponsePart::Chunk(c) = p {
                sink.lock().expect("body lock").extend_from_slice(&c);
            }
            true
        }),
    )?;
    let elapsed = start.elapsed();
    let b = body.lock().expect("body lock").clone();
    let u32_at = |at: usize| u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"));
    let count = u32_at(4) as usize;
    let events = (0..count)
        .map(|i| {
            let e = &b[8 + 32 * i..8 + 32 * (i + 1)];
            Event {
                userdata: u64::from_le_bytes(e[0..8].try_into().expect("8 bytes")),
                error: u16::from_le_bytes([e[8], e[9]]),
                kind: e[10],
            }
        })
        .collect();
    Ok(Outcome {
        errno: u32_at(0),
        events,
        elapsed,
    })
}

fn clock_event(userdata: u64) -> Event {
    Event {
        userdata,
        error: 0,
        kind: 0,
    }
}

#[test]
fn a_relative_sleep_lasts_at_least_its_timeout_and_reports_the_clock() {
    let subs = [clock(0xfeed_f00d_0000_0001, 1, 200 * MS, false)];
    let out = run(&poll_guest(&subs, &Args::for_subs(&subs), false), &quiet()).unwrap();
    assert_eq!(out.errno, 0);
    assert_eq!(out.events, [clock_event(0xfeed_f00d_0000_0001)]);
    assert!(out.elapsed >= Duration::from_millis(200), "{out:?}");
    assert!(out.elapsed < Duration::from_secs(10), "{out:?}");
}

#[test]
fn an_absolute_realtime_deadline_waits_until_then_and_a_past_one_not_at_all() {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let deadline = now + Duration::from_millis(300);
    let start = Instant::now();
    let subs = [clock(5, 0, deadline.as_nanos() as u64, true)];
    let out = run(&poll_guest(&subs, &Args::for_subs(&subs), false), &quiet()).unwrap();
    assert_eq!((out.errno, &out.events[..]), (0, &[clock_event(5)][..]));
    // Measured from before the module was compiled: the guest woke at the deadline or later
    // (minus a little for the two clocks' granularity).
    assert!(
        start.elapsed() >= Duration::from_millis(290),
        "{:?}",
        start.elapsed()
    );

    let subs = [clock(6, 1, 1, true)];
    let out = run(&poll_guest(&subs, &Args::for_subs(&subs), false), &quiet()).unwrap();
    assert_eq!((out.errno, &out.events[..]), (0, &[clock_event(6)][..]));
    assert!(out.elapsed < Duration::from_secs(5), "{out:?}");
}

#[test]
fn the_earliest_clock_wakes_the_guest_and_only_expired_clocks_are_reported() {
    let subs = [
        clock(1, 1, 100 * MS, false),
        clock(2, 1, 60_000 * MS, false),
        clock(3, 0, 100 * MS, false),
    ];
    let out = run(&poll_guest(&subs, &Args::for_subs(&subs), false), &quiet()).unwrap();
    assert_eq!(out.errno, 0);
    assert_eq!(out.events, [clock_event(1), clock_event(3)]);
    assert!(out.elapsed >= Duration::from_millis(100), "{out:?}");
    assert!(out.elapsed < Duration::from_secs(30), "{out:?}");
}

#[test]
fn sleeping_does_not_count_against_the_request_budget() {
    let mut cfg = quiet();
    cfg.limits.request_budget = ate_model::Duration(Duration::from_millis(100));
    let subs = [clock(1, 1, 400 * MS, false)];
    let engine = WasmEngine::new().unwrap();
    let module = engine
        .compile(
            poll_guest(&subs, &Args::for_subs(&subs), false).as_bytes(),
            None,
        )
        .unwrap();
    let mut guest = Guest::boot(&engine, module, &cfg).unwrap();
    for _ in 0..2 {
        let out = run_on(&mut guest).unwrap();
        assert_eq!((out.errno, &out.events[..]), (0, &[clock_event(1)][..]));
        assert!(out.elapsed >= Duration::from_millis(400), "{out:?}");
    }

    // The budget is re-armed after the sleep, not switched off: a guest that sleeps and then
    // spins is still stopped.
    let spinning = run(&poll_guest(&subs, &Args::for_subs(&subs), true), &cfg).unwrap_err();
    assert_eq!(
        spinning,
        WasmError::BudgetExceeded {
            budget: Duration::from_millis(100)
        }
    );
}

#[test]
fn fd_subscriptions_are_reported_at_once_as_unsupported() {
    let subs = [fd(7, 1, 0), clock(8, 1, 60_000 * MS, false), fd(9, 2, 42)];
    let out = run(&poll_guest(&subs, &Args::for_subs(&subs), false), &quiet()).unwrap();
    assert_eq!(out.errno, 0);
    assert_eq!(
        out.events,
        [
            Event {
                userdata: 7,
                error: ERRNO_NOTSUP,
                kind: 1
            },
            Event {
                userdata: 9,
                error: ERRNO_BADF,
                kind: 2
            },
        ]
    );
    assert!(out.elapsed < Duration::from_secs(5), "{out:?}");
}

#[test]
fn bad_arguments_give_an_errno() {
    let one = [clock(1, 1, MS, false)];
    let none = Args {
        n: 0,
        ..Args::for_subs(&one)
    };
    for (subs, args) in [
        (&one[..], none),
        (&[clock(1, 2, MS, false)][..], Args::for_subs(&one)),
        (&[fd(1, 9, 1)][..], Args::for_subs(&one)),
    ] {
        let out = run(&poll_guest(subs, &args, false), &quiet()).unwrap();
        assert_eq!(out.errno, ERRNO_INVAL, "{out:?}");
    }
}

#[test]
fn bad_pointers_trap_before_any_sleep() {
    let subs = [clock(1, 1, 60_000 * MS, false)];
    let cases = [
        Args {
            subs: 65_536 - 47,
            ..Args::for_subs(&subs)
        },
        Args {
            subs: u32::MAX,
            ..Args::for_subs(&subs)
        },
        Args {
            events: 65_536 - 31,
            ..Args::for_subs(&subs)
        },
        Args {
            nevents: 65_536 - 3,
            ..Args::for_subs(&subs)
        },
        // Counts whose byte size overflows 32 bits, or that run past the memory.
        Args {
            n: u32::MAX,
            ..Args::for_subs(&subs)
        },
        Args {
            n: 0x7fff_ffff,
            ..Args::for_subs(&subs)
        },
        Args {
            n: 1366,
            ..Args::for_subs(&subs)
        },
    ];
    for args in cases {
        let start = Instant::now();
        let err = run(&poll_guest(&subs, &args, false), &quiet()).unwrap_err();
        let WasmError::Trap(msg) = &err else {
            panic!("not a trap: {err:?}");
        };
        assert!(msg.contains("out-of-bounds"), "{msg}");
        assert!(start.elapsed() < Duration::from_secs(30), "the guest slept");
    }
}
