//! Field selectors (`a=b,c!=d`, with `\` escapes) and label selectors (`k=v,k2=v2`, and
//! their JSON form): parsing never panics, and whatever parses prints back to text that
//! parses to the same selector.
#![no_main]

use ate_model::labels::MAX_SELECTOR_ENTRIES;
use ate_model::{FieldSelector, Kind, LabelSelector};
use libfuzzer_sys::fuzz_target;

fn label_round_trip(sel: &LabelSelector, from: &str) {
    assert!(sel.match_labels.len() <= MAX_SELECTOR_ENTRIES, "{from:?}");
    let shown = sel.to_string();
    let again = LabelSelector::parse("selector", &shown)
        .unwrap_or_else(|e| panic!("{shown:?} (from {from:?}) does not parse: {e}"));
    assert_eq!(&again, sel, "label selector round trip through {shown:?}");
    let json = serde_json::to_string(sel).expect("a selector serialises");
    let back: LabelSelector = serde_json::from_str(&json).expect("its json parses");
    assert_eq!(&back, sel, "json round trip through {json}");
    assert!(
        sel.matches(&sel.match_labels),
        "{shown:?} matches its own labels"
    );
}

fuzz_target!(|data: &[u8]| {
    if let Ok(sel) = serde_json::from_slice::<LabelSelector>(data)
        && sel.validate("selector").is_ok()
    {
        label_round_trip(&sel, &String::from_utf8_lossy(data));
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(sel) = FieldSelector::parse(text) {
        let shown = sel.to_string();
        let again = FieldSelector::parse(&shown)
            .unwrap_or_else(|e| panic!("{shown:?} (from {text:?}) does not parse: {e}"));
        assert_eq!(again, sel, "field selector round trip through {shown:?}");
        for r in &sel.requirements {
            assert!(!r.field.is_empty(), "{text:?}");
        }
        for kind in Kind::ALL {
            let _ = sel.validate(kind);
        }
    }
    if let Ok(sel) = LabelSelector::parse("selector", text) {
        label_round_trip(&sel, text);
    }
});
