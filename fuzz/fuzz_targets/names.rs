//! Name validation: whatever a validator accepts satisfies its documented rules, and it
//! accepts everything that does (the rules are restated here from the doc comments of
//! ate_model::names, independently of the code), and its errors name the field.
#![no_main]

use ate_model::names::{
    MAX_LABEL_LEN, MAX_SUBDOMAIN_LEN, RESERVED_PREFIX, validate_label, validate_label_value,
    validate_qualified_name, validate_subdomain, validate_user_atespace,
};
use ate_model::{ActorRef, ModelError, NamespacedName};
use libfuzzer_sys::fuzz_target;

/// DNS-1123 label: 1-63 characters of `[a-z0-9-]`, alphanumeric at both ends.
fn is_label(s: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    (1..=MAX_LABEL_LEN).contains(&s.len())
        && s.chars().all(|c| alnum(c) || c == '-')
        && s.starts_with(alnum)
        && s.ends_with(alnum)
}

/// DNS-1123 subdomain: dot-separated labels, at most 253 characters in all.
fn is_subdomain(s: &str) -> bool {
    (1..=MAX_SUBDOMAIN_LEN).contains(&s.len()) && s.split('.').all(is_label)
}

/// Name part of a qualified name and a non-empty label value: 1-63 characters of
/// `[A-Za-z0-9_.-]`, alphanumeric at both ends.
fn is_name_part(s: &str) -> bool {
    let alnum = |c: char| c.is_ascii_alphanumeric();
    (1..=MAX_LABEL_LEN).contains(&s.len())
        && s.chars().all(|c| alnum(c) || matches!(c, '_' | '.' | '-'))
        && s.starts_with(alnum)
        && s.ends_with(alnum)
}

/// Qualified name: `[prefix/]name`, the prefix a subdomain.
fn is_qualified(s: &str) -> bool {
    match s.split_once('/') {
        Some((prefix, name)) => is_subdomain(prefix) && is_name_part(name),
        None => is_name_part(s),
    }
}

fn check(what: &str, value: &str, got: Result<(), ModelError>, want: bool) {
    match got {
        Ok(()) => assert!(want, "{what} accepted {value:?}"),
        Err(e) => {
            assert!(!want, "{what} refused {value:?}: {e}");
            assert!(
                e.field().starts_with("f"),
                "{what}: error names {:?}",
                e.field()
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    check("label", s, validate_label("f", s), is_label(s));
    check("subdomain", s, validate_subdomain("f", s), is_subdomain(s));
    check(
        "user atespace",
        s,
        validate_user_atespace("f", s),
        is_label(s) && !s.starts_with(RESERVED_PREFIX),
    );
    check(
        "qualified name",
        s,
        validate_qualified_name("f", s),
        is_qualified(s),
    );
    check(
        "label value",
        s,
        validate_label_value("f", s),
        s.is_empty() || is_name_part(s),
    );
    // References: `atespace/id` and `namespace/name`.
    let (a, b) = s.split_once('/').unwrap_or((s, ""));
    check(
        "actor ref",
        s,
        ActorRef::new(a, b).validate("f"),
        is_label(a) && is_label(b),
    );
    check(
        "namespaced name",
        s,
        NamespacedName::new(a, b).validate("f"),
        is_label(a) && is_subdomain(b),
    );
});
