//! The demo agent (C, built for wasm32-wasi by scripts/build-demo-agent.sh): conversation
//! and key-value state survive a snapshot moved to another engine, the actor identity comes
//! from the host, and its model call goes through the egress allowlist.

use ate_model::ActorRef;
use ate_wasm::*;

mod common;
use common::{quiet, request, upstream_recording};

const AGENT: &[u8] = include_bytes!("../../../demo/agent/agent.wasm");

#[test]
fn conversation_and_kv_survive_a_restore_on_another_engine() {
    let engine = WasmEngine::new().unwrap();
    let module = engine.compile(AGENT, None).unwrap();
    let mut agent = Guest::boot(&engine, module.clone(), &quiet()).unwrap();
    assert_eq!(
        request(&mut agent, "POST", "/messages", "hello there").unwrap(),
        (200, "{\"count\":1}".into())
    );
    request(&mut agent, "POST", "/messages", "how are you").unwrap();
    request(&mut agent, "PUT", "/kv/city", "Lisbon").unwrap();
    let image = agent.checkpoint().unwrap();
    request(&mut agent, "POST", "/messages", "after the snapshot").unwrap();

    let other = WasmEngine::new().unwrap();
    let module2 = other.compile(AGENT, Some(&module.sha256)).unwrap();
    let mut cfg = quiet();
    cfg.actor = ActorRef::new("team-b", "agent-7");
    let image2 = MemoryImage::from_files(&image.to_files().unwrap()).unwrap();
    let mut restored = Guest::restore(&other, module2, &cfg, &image2).unwrap();
    assert_eq!(restored.checkpoint().unwrap(), image);
    assert_eq!(
        request(&mut restored, "GET", "/messages", "").unwrap(),
        (200, "hello there\nhow are you\n".into())
    );
    assert_eq!(
        request(&mut restored, "GET", "/kv/city", "").unwrap(),
        (200, "Lisbon".into())
    );
    assert_eq!(
        request(&mut restored, "GET", "/kv/nope", "").unwrap().0,
        404
    );
    // Identity is asked of the host per request: the restoring actor, not the snapshot's.
    assert_eq!(
        request(&mut restored, "GET", "/whoami", "").unwrap().1,
        "team-b/agent-7"
    );
    // The heap keeps working after the restore.
    for i in 0..200 {
        request(
            &mut restored,
            "POST",
            "/messages",
            &format!("message {i} {}", "x".repeat(500)),
        )
        .unwrap();
    }
    assert_eq!(
        request(&mut restored, "POST", "/messages", "last")
            .unwrap()
            .1,
        "{\"count\":203}"
    );
}

#[test]
fn the_model_call_goes_through_the_egress_allowlist() {
    let (port, seen) = upstream_recording("They greeted each other.");
    let engine = WasmEngine::new().unwrap();
    let module = engine.compile(AGENT, None).unwrap();
    let mut cfg = quiet();
    cfg.env = vec![(
        "MODEL_URL".into(),
        format!("http://127.0.0.1:{port}/v1/summarize"),
    )];

    let mut denied = Guest::boot(&engine, module.clone(), &cfg).unwrap();
    request(&mut denied, "POST", "/messages", "hi").unwrap();
    let (status, body) = request(&mut denied, "GET", "/summary", "").unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        body,
        "1 messages, 1 words; last: hi (local summary: egress denied)"
    );
    assert!(seen.lock().unwrap().is_empty(), "nothing left the sandbox");

    cfg.egress = EgressPolicy::new(&[format!("127.0.0.1:{port}")]);
    let mut allowed = Guest::boot(&engine, module, &cfg).unwrap();
    request(&mut allowed, "POST", "/messages", "hi").unwrap();
    request(&mut allowed, "POST", "/messages", "hello back").unwrap();
    assert_eq!(
        request(&mut allowed, "GET", "/summary", "").unwrap(),
        (200, "They greeted each other.".into())
    );
    assert_eq!(
        seen.lock().unwrap().as_slice(),
        ["Summarize this conversation:\nhi\nhello back\n"]
    );
}
