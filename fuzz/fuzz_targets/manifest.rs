//! `ate apply -f` manifests (YAML, several documents, or JSON): parsing never panics or
//! hangs, and every resource it returns passes its own validation.
#![no_main]

use ate_cli::manifest::{Manifest, parse};
use ate_model::names::validate_user_atespace;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(docs) = parse("fuzz.yaml", text) else {
        return;
    };
    assert!(!docs.is_empty(), "a parse with no documents must fail");
    for doc in &docs {
        match doc {
            Manifest::Atespace(name) => validate_user_atespace("name", name)
                .unwrap_or_else(|e| panic!("accepted atespace {name:?}: {e}")),
            Manifest::ActorTemplate(t) => t
                .validate()
                .unwrap_or_else(|e| panic!("accepted template {t:?}: {e}")),
            Manifest::WorkerPool(p) => p
                .validate()
                .unwrap_or_else(|e| panic!("accepted pool {p:?}: {e}")),
        }
        let _ = doc.describe();
    }
});
