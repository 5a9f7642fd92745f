//! Real guests on a real wasmtime engine: the demo counter, a runaway loop, egress through
//! the host call against a local HTTP server, and memory limits.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ate_wasm::*;

mod common;
use common::{call, config, quiet};

const COUNTER: &str = include_str!("../../../demo/counter/counter.wat");

#[test]
fn counter_state_survives_checkpoint_and_restore_on_another_engine() {
    let engine = WasmEngine::new().unwrap();
    let module = engine.compile(COUNTER.as_bytes(), None).unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut guest = Guest::boot(&engine, module.clone(), &config(log.clone())).unwrap();
    for n in 1..=3 {
        assert_eq!(call(&mut guest, "").unwrap(), (200, n.to_string()));
    }
    assert_eq!(
        String::from_utf8(log.lock().unwrap().clone()).unwrap(),
        "counter: request 1\ncounter: request 2\ncounter: request 3\n"
    );
    let image = guest.checkpoint().unwrap();
    assert_eq!(call(&mut guest, "").unwrap().1, "4");

    // Through the snapshot files, into an instance on a second engine (another node).
    let files = image.to_files().unwrap();
    let image2 = MemoryImage::from_files(&files).unwrap();
    let other = WasmEngine::new().unwrap();
    let module2 = other
        .compile(COUNTER.as_bytes(), Some(&module.sha256))
        .unwrap();
    let mut restored = Guest::restore(&other, module2, &quiet(), &image2).unwrap();
    assert_eq!(
        restored.checkpoint().unwrap(),
        image,
        "restore is byte-identical"
    );
    assert_eq!(call(&mut restored, "").unwrap().1, "4");
    assert_eq!(call(&mut restored, "").unwrap().1, "5");
}

#[test]
fn mutable_globals_are_part_of_the_snapshot() {
    let engine = WasmEngine::new().unwrap();
    let module = engine.compile(COUNTER.as_bytes(), None).unwrap();
    let mut guest = Guest::boot(&engine, module.clone(), &quiet()).unwrap();
    call(&mut guest, "").unwrap();
    let mut image = guest.checkpoint().unwrap();
    let g = &mut image.state.globals[0];
    assert!(g.name.starts_with(GLOBAL_EXPORT_PREFIX), "{g:?}");
    assert_eq!(g.bits, 1);
    // A restore that lost the global (reset to 0) is caught by the counter's own check.
    g.bits = 0;
    let mut broken = Guest::restore(&engine, module, &quiet(), &image).unwrap();
    assert!(matches!(call(&mut broken, ""), Err(WasmError::Trap(_))));
    assert!(broken.is_poisoned());
    assert_eq!(broken.checkpoint(), Err(WasmError::Poisoned));
}

#[test]
fn snapshots_that_do_not_fit_are_refused() {
    let engine = WasmEngine::new().unwrap();
    let module = engine.compile(COUNTER.as_bytes(), None).unwrap();
    let mut guest = Guest::boot(&engine, module.clone(), &quiet()).unwrap();
    let image = guest.checkpoint().unwrap();
    let mut files = image.to_files().unwrap();
    files[1].1 = files[1].1.slice(..1000);
    assert!(matches!(
        MemoryImage::from_files(&files),
        Err(WasmError::Snapshot(_))
    ));
    assert!(matches!(
        MemoryImage::from_files(&files[..1]),
        Err(WasmError::Snapshot(_))
    ));

    let other = engine
        .compile(b"(module (memory (export \"memory\") 1) (func (export \"ate_alloc\") (param i32) (result i32) i32.const 0) (func (export \"ate_handle\") (param i32 i32) (result i32) i32.const 0))", None)
        .unwrap();
    assert!(matches!(
        Guest::restore(&engine, other, &quiet(), &image),
        Err(WasmError::Snapshot(_))
    ));
    assert!(matches!(
        engine.compile(COUNTER.as_bytes(), Some(&"0".repeat(64))),
        Err(WasmError::ChecksumMismatch { .. })
    ));
    assert!(matches!(
        engine.compile(b"(module)", None),
        Err(WasmError::InvalidModule(_))
    ));
}

const SPIN: &str = include_str!("fixtures/spin.wat");

#[test]
fn a_guest_that_loops_forever_is_stopped_by_its_budget() {
    let engine = WasmEngine::new().unwrap();
    let module = engine.compile(SPIN.as_bytes(), None).unwrap();
    let mut cfg = quiet();
    cfg.limits.request_budget = ate_model::Duration(Duration::from_millis(200));
    let mut guest = Guest::boot(&engine, module.clone(), &cfg).unwrap();
    assert_eq!(call(&mut guest, "").unwrap().0, 200);
    let image = guest.checkpoint().unwrap();
    let err = call(&mut guest, "").unwrap_err();
    assert_eq!(
        err,
        WasmError::BudgetExceeded {
            budget: Duration::from_millis(200)
        }
    );
    assert!(guest.is_poisoned());
    // The replacement from the last image answers again (and loops again on its 2nd call).
    let mut again = Guest::restore(&engine, module, &cfg, &image).unwrap();
    assert!(call(&mut again, "").is_err());
}

#[test]
fn memory_is_limited_per_template() {
    let engine = WasmEngine::new().unwrap();
    let module = engine.compile(COUNTER.as_bytes(), None).unwrap();
    let mut cfg = quiet();
    cfg.limits.memory_pages = 2;
    let mut guest = Guest::boot(&engine, module.clone(), &cfg).unwrap();
    assert_eq!(call(&mut guest, &"x".repeat(60_000)).unwrap().0, 200);
    // 200 KB needs four pages: memory.grow fails and the guest traps.
    assert!(matches!(
        call(&mut guest, &"x".repeat(200_000)),
        Err(WasmError::Trap(_))
    ));

    let big = engine
        .compile(b"(module (memory (export \"memory\") 10) (func (export \"ate_alloc\") (param i32) (result i32) i32.const 0) (func (export \"ate_handle\") (param i32 i32) (result i32) i32.const 0))", None)
        .unwrap();
    assert!(matches!(
        Guest::boot(&engine, big, &cfg),
        Err(WasmError::Instantiate(_))
    ));
}

/// A guest that sends the fixed request `outbound` through the egress host call and
/// answers with the outcome: the upstream response, or `refused <code>`.
fn egress_guest(outbound: &str) -> String {
    let escaped: String = outbound.bytes().map(|b| format!("\\{b:02x}")).collect();
    format!(
        r#"(module
  (import "ate" "http_request" (func $req (param i32 i32) (result i32)))
  (import "ate" "http_response" (func $resp (param i32 i32) (result i32)))
  (import "ate" "response_start" (func $start (param i32 i32 i32) (result i32)))
  (import "ate" "response_write" (func $write (param i32 i32) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 0) "{escaped}")
  (data (i32.const 4096) "refused -")
  (func (export "ate_alloc") (param i32) (result i32) i32.const 8192)
  (func (export "ate_handle") (param i32 i32) (result i32)
    (local $r i32)
    (local.set $r (call $req (i32.const 0) (i32.const {len})))
    (if (i32.lt_s (local.get $r) (i32.const 0))
      (then
        (i32.store8 (i32.const 4105) (i32.sub (i32.const 48) (local.get $r)))
        (drop (call $start (i32.const 502) (i32.const 0) (i32.const 0)))
        (drop (call $write (i32.const 4096) (i32.const 10)))
        (return (i32.const 0))))
    (local.set $r (call $resp (i32.const 16384) (i32.const 65536)))
    (drop (call $start (i32.const 200) (i32.const 0) (i32.const 0)))
    (drop (call $write (i32.const 16384) (local.get $r)))
    i32.const 0))"#,
        len = outbound.len()
    )
}

#[test]
fn egress_is_limited_to_the_allowlist() {
    let port = common::upstream("hello from upstream");
    let outbound = format!("GET http://127.0.0.1:{port}/v1/models HTTP/1.1\r\naccept: */*\r\n\r\n");
    let engine = WasmEngine::new().unwrap();
    let module = engine
        .compile(egress_guest(&outbound).as_bytes(), None)
        .unwrap();

    let mut denied = Guest::boot(&engine, module.clone(), &quiet()).unwrap();
    assert_eq!(call(&mut denied, "").unwrap(), (502, "refused -1".into()));

    let mut other_port = quiet();
    other_port.egress = EgressPolicy::new(&[format!("127.0.0.1:{}", port.wrapping_add(1))]);
    let mut guest = Guest::boot(&engine, module.clone(), &other_port).unwrap();
    assert_eq!(call(&mut guest, "").unwrap(), (502, "refused -1".into()));

    let mut allowed = quiet();
    allowed.egress = EgressPolicy::new(&[format!("127.0.0.1:{port}")]);
    let mut guest = Guest::boot(&engine, module, &allowed).unwrap();
    let (status, body) = call(&mut guest, "").unwrap();
    assert_eq!(status, 200);
    assert!(body.starts_with("HTTP/1.1 200 OK\r\n"), "{body}");
    assert!(body.ends_with("\r\n\r\nhello from upstream"), "{body}");
}

#[test]
fn a_mapped_restore_is_identical_and_never_writes_the_file() {
    let engine = WasmEngine::new().unwrap();
    let module = engine.compile(COUNTER.as_bytes(), None).unwrap();
    let mut guest = Guest::boot(&engine, module.clone(), &quiet()).unwrap();
    for _ in 0..3 {
        call(&mut guest, &"y".repeat(100_000)).unwrap();
    }
    let image = guest.checkpoint().unwrap();
    assert!(image.memory.len() > 65_536, "the request grew memory");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(MEMORY_FILE);
    std::fs::write(&path, &image.memory).unwrap();
    let file = MappedMemory::open(&path).unwrap();

    let mut a =
        Guest::restore_mapped(&engine, module.clone(), &quiet(), &image.state, &file).unwrap();
    assert_eq!(
        a.checkpoint().unwrap(),
        image,
        "mapped restore is byte-identical"
    );
    assert_eq!(call(&mut a, "").unwrap().1, "4");
    // A second guest from the same file starts from the snapshot, not from a's writes.
    let mut b =
        Guest::restore_mapped(&engine, module.clone(), &quiet(), &image.state, &file).unwrap();
    assert_eq!(call(&mut b, "").unwrap().1, "4");
    assert_eq!(call(&mut a, "").unwrap().1, "5");
    // The guests wrote copy-on-write pages: the file still holds the snapshot.
    assert_eq!(std::fs::read(&path).unwrap(), image.memory.to_vec());
    drop((a, b));
    // Memory that grows after a mapped restore works as usual.
    let mut c = Guest::restore_mapped(&engine, module, &quiet(), &image.state, &file).unwrap();
    assert_eq!(call(&mut c, &"z".repeat(300_000)).unwrap().1, "4");

    let mut wrong = image.state.clone();
    wrong.memory_bytes += 65_536;
    let m2 = engine.compile(COUNTER.as_bytes(), None).unwrap();
    assert!(matches!(
        Guest::restore_mapped(&engine, m2, &quiet(), &wrong, &file),
        Err(WasmError::Snapshot(_))
    ));
}
