//! Name validation in the Kubernetes flavours ate uses: DNS-1123 labels for atespaces, actor
//! ids and namespaces, DNS-1123 subdomains for templates and pools, qualified names and
//! label values for labels.

use crate::ModelError;

/// Longest DNS-1123 label (atespace, actor id, namespace).
pub const MAX_LABEL_LEN: usize = 63;
/// Longest DNS-1123 subdomain (template and pool names).
pub const MAX_SUBDOMAIN_LEN: usize = 253;
/// Prefix reserved for atespaces the system owns.
pub const RESERVED_PREFIX: &str = "ate-";
/// The system atespace that holds the golden actors of templates.
pub const GOLDEN_ATESPACE: &str = "ate-golden";

fn is_label_char(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-'
}

fn label_shape(s: &str) -> Result<(), String> {
    let b = s.as_bytes();
    if b.len() > MAX_LABEL_LEN {
        return Err(format!("must be at most {MAX_LABEL_LEN} characters"));
    }
    if let Some(bad) = s
        .chars()
        .find(|c| !c.is_ascii() || !is_label_char(*c as u8))
    {
        return Err(format!(
            "must consist of lower case alphanumeric characters or '-' (found {bad:?})"
        ));
    }
    if b.first() == Some(&b'-') || b.last() == Some(&b'-') {
        return Err("must start and end with an alphanumeric character".into());
    }
    Ok(())
}

/// Checks a DNS-1123 label: 1-63 characters of `[a-z0-9-]`, alphanumeric at both ends.
pub fn validate_label(field: &str, value: &str) -> Result<(), ModelError> {
    if value.is_empty() {
        return Err(ModelError::required(field));
    }
    label_shape(value).map_err(|reason| ModelError::invalid(field, value, reason))
}

/// Checks a DNS-1123 subdomain: dot-separated labels, at most 253 characters in all.
pub fn validate_subdomain(field: &str, value: &str) -> Result<(), ModelError> {
    if value.is_empty() {
        return Err(ModelError::required(field));
    }
    if value.len() > MAX_SUBDOMAIN_LEN {
        return Err(ModelError::invalid(
            field,
            value,
            format!("must be at most {MAX_SUBDOMAIN_LEN} characters"),
        ));
    }
    for part in value.split('.') {
        if part.is_empty() {
            return Err(ModelError::invalid(
                field,
                value,
                "must not contain empty labels",
            ));
        }
        label_shape(part).map_err(|reason| ModelError::invalid(field, value, reason))?;
    }
    Ok(())
}

/// Checks an atespace name a user may create: a DNS-1123 label not starting with `ate-`.
pub fn validate_user_atespace(field: &str, value: &str) -> Result<(), ModelError> {
    validate_label(field, value)?;
    if value.starts_with(RESERVED_PREFIX) {
        return Err(ModelError::invalid(
            field,
            value,
            format!("names starting with {RESERVED_PREFIX:?} are reserved for the system"),
        ));
    }
    Ok(())
}

fn name_part_ok(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_LABEL_LEN
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// Checks a Kubernetes qualified name (a label key): `[prefix/]name`, where the prefix is a
/// DNS subdomain and the name 1-63 characters of `[A-Za-z0-9_.-]`, alphanumeric at both ends.
pub fn validate_qualified_name(field: &str, value: &str) -> Result<(), ModelError> {
    if value.is_empty() {
        return Err(ModelError::required(field));
    }
    let (prefix, name) = match value.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, value),
    };
    if let Some(prefix) = prefix {
        validate_subdomain(field, prefix).map_err(|_| {
            ModelError::invalid(field, value, "prefix must be a DNS-1123 subdomain")
        })?;
    }
    if !name_part_ok(name) {
        return Err(ModelError::invalid(
            field,
            value,
            "name part must be 1-63 characters of [A-Za-z0-9_.-], alphanumeric at both ends",
        ));
    }
    Ok(())
}

/// Checks a Kubernetes label value: empty, or as the name part of a qualified name.
pub fn validate_label_value(field: &str, value: &str) -> Result<(), ModelError> {
    if value.is_empty() || name_part_ok(value) {
        Ok(())
    } else {
        Err(ModelError::invalid(
            field,
            value,
            "must be empty or 1-63 characters of [A-Za-z0-9_.-], alphanumeric at both ends",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        for ok in ["a", "team-a", "0", "a0-b1", &"x".repeat(63)] {
            assert!(validate_label("f", ok).is_ok(), "{ok}");
        }
        for bad in ["-a", "a-", "A", "a_b", "a.b", "é", &"x".repeat(64)] {
            let err = validate_label("atespace", bad).unwrap_err();
            assert_eq!(err.field(), "atespace", "{bad}");
        }
        assert_eq!(
            validate_label("actor_ref.name", "")
                .unwrap_err()
                .to_string(),
            "actor_ref.name is required"
        );
    }

    #[test]
    fn subdomains() {
        for ok in ["a", "a.b", "my-template.v2", "x1.y2.z3"] {
            assert!(validate_subdomain("f", ok).is_ok(), "{ok}");
        }
        for bad in ["a..b", ".a", "a.", "A.b", "a_b", &"a".repeat(254)] {
            assert!(validate_subdomain("f", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn reserved_atespaces() {
        let err = validate_user_atespace("name", "ate-golden").unwrap_err();
        assert!(err.to_string().contains("reserved"), "{err}");
        assert!(validate_user_atespace("name", "atex").is_ok());
    }

    #[test]
    fn qualified_names_and_values() {
        for ok in ["app", "ate.dev/pool", "A_b.c-d", "k8s.io/x"] {
            assert!(validate_qualified_name("k", ok).is_ok(), "{ok}");
        }
        for bad in ["", "/x", "a/", "-a", "a b", "Bad_/x", &"a".repeat(64)] {
            assert!(validate_qualified_name("k", bad).is_err(), "{bad}");
        }
        for ok in ["", "v1", "a.b_c-d"] {
            assert!(validate_label_value("v", ok).is_ok(), "{ok}");
        }
        for bad in ["-v", "v ", "a/b", &"a".repeat(64)] {
            assert!(validate_label_value("v", bad).is_err(), "{bad}");
        }
    }
}
