//! Field selectors (Kubernetes syntax) and the per-kind field registry they are checked
//! against. The registry is the single place a queryable field is declared: stores derive
//! their columns and indexes from it, so adding a field never changes the `Store` trait.

use std::fmt;

use crate::ModelError;

/// The field name used in errors about a field selector.
pub const FIELD_SELECTOR: &str = "field_selector";

/// The kinds of record ate stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Atespace,
    Actor,
    ActorTemplate,
    WorkerPool,
    Node,
    Worker,
    NodeAssertion,
    SigningKey,
    AuditEvent,
    RevokedToken,
}

impl Kind {
    pub const ALL: [Kind; 10] = [
        Kind::Atespace,
        Kind::Actor,
        Kind::ActorTemplate,
        Kind::WorkerPool,
        Kind::Node,
        Kind::Worker,
        Kind::NodeAssertion,
        Kind::SigningKey,
        Kind::AuditEvent,
        Kind::RevokedToken,
    ];

    /// Plural lower-case name, used for tables, keys and messages.
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Atespace => "atespaces",
            Kind::Actor => "actors",
            Kind::ActorTemplate => "templates",
            Kind::WorkerPool => "pools",
            Kind::Node => "nodes",
            Kind::Worker => "workers",
            Kind::NodeAssertion => "nodeassertions",
            Kind::SigningKey => "signingkeys",
            Kind::AuditEvent => "auditevents",
            Kind::RevokedToken => "revokedtokens",
        }
    }

    /// The queryable fields of this kind, in registry order.
    pub fn fields(self) -> Vec<FieldSpec> {
        use crate::actor::Actor;
        use crate::resources::*;
        use crate::security::*;
        use crate::template::ActorTemplate;
        match self {
            Kind::Atespace => specs::<Atespace>(),
            Kind::Actor => specs::<Actor>(),
            Kind::ActorTemplate => specs::<ActorTemplate>(),
            Kind::WorkerPool => specs::<WorkerPool>(),
            Kind::Node => specs::<Node>(),
            Kind::Worker => specs::<Worker>(),
            Kind::NodeAssertion => specs::<NodeAssertion>(),
            Kind::SigningKey => specs::<SigningKeyRecord>(),
            Kind::AuditEvent => specs::<AuditEvent>(),
            Kind::RevokedToken => specs::<RevokedToken>(),
        }
    }

    /// The kind whose record must exist for one of this kind to be created, and the field
    /// naming it: an actor needs its atespace. Stores check it in the same transaction as
    /// the create, and refuse to delete a parent that still has children.
    pub fn parent(self) -> Option<(Kind, &'static str)> {
        match self {
            Kind::Actor => Some((Kind::Atespace, "atespace")),
            _ => None,
        }
    }

    /// The kinds that name this one as their parent.
    pub fn children(self) -> impl Iterator<Item = (Kind, &'static str)> {
        Kind::ALL
            .into_iter()
            .filter_map(move |k| k.parent().filter(|(p, _)| *p == self).map(|(_, f)| (k, f)))
    }

    /// Field combinations that queries use together and that stores should index as one
    /// compound index: the scheduler's claims select free workers (`actor_id=`) by pool or
    /// node and look up the worker an actor already holds (atespace and id); actors are
    /// listed by atespace and status.
    pub fn compound_indexes(self) -> &'static [&'static [&'static str]] {
        match self {
            Kind::Worker => &[
                &["pool", "actor_id"],
                &["node_name", "actor_id"],
                &["actor_atespace", "actor_id"],
            ],
            Kind::Actor => &[&["atespace", "status"]],
            _ => &[],
        }
    }

    /// Whether records of this kind hold secrets: the private token-signing keys, and
    /// templates, whose `env` values are credentials as often as not. This is the one place
    /// that says so. Stores never put the body of such a record in a change notification
    /// (which anyone allowed to listen on the channel reads, whatever they may read
    /// otherwise): a watcher of a secret kind is told the key and reads the record itself.
    pub fn is_secret(self) -> bool {
        matches!(self, Kind::SigningKey | Kind::ActorTemplate)
    }

    /// Whether records of this kind carry labels that label selectors can match.
    pub fn has_labels(self) -> bool {
        matches!(self, Kind::WorkerPool | Kind::Node | Kind::Worker)
    }

    /// Index values of a stored JSON body, for stores that rebuild an index after a field
    /// was added to the registry.
    pub fn index_values_from_json(self, body: &[u8]) -> Result<IndexValues, serde_json::Error> {
        use crate::actor::Actor;
        use crate::resources::*;
        use crate::security::*;
        use crate::template::ActorTemplate;
        Ok(match self {
            Kind::Atespace => serde_json::from_slice::<Atespace>(body)?.index_values(),
            Kind::Actor => serde_json::from_slice::<Actor>(body)?.index_values(),
            Kind::ActorTemplate => serde_json::from_slice::<ActorTemplate>(body)?.index_values(),
            Kind::WorkerPool => serde_json::from_slice::<WorkerPool>(body)?.index_values(),
            Kind::Node => serde_json::from_slice::<Node>(body)?.index_values(),
            Kind::Worker => serde_json::from_slice::<Worker>(body)?.index_values(),
            Kind::NodeAssertion => serde_json::from_slice::<NodeAssertion>(body)?.index_values(),
            Kind::SigningKey => serde_json::from_slice::<SigningKeyRecord>(body)?.index_values(),
            Kind::AuditEvent => serde_json::from_slice::<AuditEvent>(body)?.index_values(),
            Kind::RevokedToken => serde_json::from_slice::<RevokedToken>(body)?.index_values(),
        })
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.plural())
    }
}

/// A queryable field, without its accessor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldSpec {
    pub name: &'static str,
    /// A multi-valued field (e.g. a worker's cached snapshots) matches `f=v` when any of its
    /// values is `v`, and `f=` when it has none.
    pub multi: bool,
}

/// One registry entry: a field name and how to read it from a record.
pub struct Field<T> {
    pub name: &'static str,
    pub multi: bool,
    pub get: fn(&T) -> Vec<String>,
}

impl<T> fmt::Debug for Field<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Field")
            .field("name", &self.name)
            .field("multi", &self.multi)
            .finish()
    }
}

/// The pseudo-field under which stores index labels as `key=value` strings, so that label
/// selectors are answered from the same index as field selectors.
pub const LABELS_INDEX: &str = "labels";

/// The values a record contributes to its kind's indexes: `(field, value)` pairs, several
/// for a multi-valued field, plus `(LABELS_INDEX, "k=v")` for each label.
pub type IndexValues = Vec<(&'static str, String)>;

/// A record type with a registry.
pub trait Indexed: Sized + 'static {
    const KIND: Kind;
    const FIELDS: &'static [Field<Self>];

    /// The labels a label selector matches against, for kinds that have them.
    fn labels(&self) -> Option<&crate::Labels> {
        None
    }

    fn index_values(&self) -> IndexValues {
        let mut out = IndexValues::new();
        for f in Self::FIELDS {
            for v in (f.get)(self) {
                out.push((f.name, v));
            }
        }
        if let Some(labels) = self.labels() {
            for (k, v) in labels {
                out.push((LABELS_INDEX, format!("{k}={v}")));
            }
        }
        out
    }
}

fn specs<T: Indexed>() -> Vec<FieldSpec> {
    T::FIELDS
        .iter()
        .map(|f| FieldSpec {
            name: f.name,
            multi: f.multi,
        })
        .collect()
}

/// `=`/`==` or `!=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Eq,
    NotEq,
}

/// One `field op value` term.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Requirement {
    pub field: String,
    pub op: Op,
    pub value: String,
}

/// A conjunction of requirements, as Kubernetes' `fieldSelector`: `a=b,c!=d`, with `==` as
/// a synonym of `=`, and an empty value allowed (`actor_id=` selects free workers).
/// `\` escapes `,`, `=`, `!` and `\` in values.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct FieldSelector {
    pub requirements: Vec<Requirement>,
}

/// Longest field selector accepted (4 KiB): far more than any query of a registry field
/// needs, and small enough that parsing and index lookups stay cheap for any input.
pub const MAX_SELECTOR_BYTES: usize = 4096;

impl FieldSelector {
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Builds a selector of equality terms.
    pub fn eq<'a>(terms: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self {
            requirements: terms
                .into_iter()
                .map(|(f, v)| Requirement {
                    field: f.to_string(),
                    op: Op::Eq,
                    value: v.to_string(),
                })
                .collect(),
        }
    }

    /// Adds an equality term.
    pub fn and_eq(mut self, field: &str, value: &str) -> Self {
        self.requirements.push(Requirement {
            field: field.to_string(),
            op: Op::Eq,
            value: value.to_string(),
        });
        self
    }

    /// Adds `field!=value`.
    pub fn and_not_eq(mut self, field: &str, value: &str) -> Self {
        self.requirements.push(Requirement {
            field: field.to_string(),
            op: Op::NotEq,
            value: value.to_string(),
        });
        self
    }

    pub fn parse(text: &str) -> Result<Self, ModelError> {
        if text.len() > MAX_SELECTOR_BYTES {
            return Err(ModelError::invalid(
                FIELD_SELECTOR,
                format!("{}...", &text[..text.floor_char_boundary(32)]),
                format!(
                    "{} bytes, over the limit of {MAX_SELECTOR_BYTES}",
                    text.len()
                ),
            ));
        }
        let mut requirements = Vec::new();
        for term in split_unescaped(text, ',') {
            if term.trim().is_empty() {
                if text.trim().is_empty() {
                    continue;
                }
                return Err(ModelError::invalid(FIELD_SELECTOR, text, "empty term"));
            }
            requirements.push(parse_term(text, &term)?);
        }
        Ok(Self { requirements })
    }

    /// Checks every field against the kind's registry.
    pub fn validate(&self, kind: Kind) -> Result<(), ModelError> {
        let fields = kind.fields();
        for r in &self.requirements {
            if !fields.iter().any(|f| f.name == r.field) {
                let names: Vec<&str> = fields.iter().map(|f| f.name).collect();
                let supported = if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                };
                return Err(ModelError::invalid(
                    FIELD_SELECTOR,
                    &r.field,
                    format!("unknown field for {kind}; supported fields: {supported}"),
                ));
            }
        }
        Ok(())
    }

    /// Evaluates the selector in memory. Stores answer selectors from indexes; this is the
    /// reference semantics they are tested against.
    pub fn matches<T: Indexed>(&self, obj: &T) -> bool {
        self.requirements.iter().all(|r| {
            let Some(f) = T::FIELDS.iter().find(|f| f.name == r.field) else {
                return false;
            };
            let values = (f.get)(obj);
            let hit = if f.multi && r.value.is_empty() {
                values.is_empty()
            } else {
                values.contains(&r.value)
            };
            hit == (r.op == Op::Eq)
        })
    }
}

fn split_unescaped(text: &str, sep: char) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            current.push(c);
            if let Some(n) = chars.next() {
                current.push(n);
            }
        } else if c == sep {
            parts.push(std::mem::take(&mut current));
        } else {
            current.push(c);
        }
    }
    parts.push(current);
    parts
}

fn parse_term(whole: &str, term: &str) -> Result<Requirement, ModelError> {
    let bytes = term.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'!' if bytes.get(i + 1) == Some(&b'=') => {
                return requirement(whole, &term[..i], Op::NotEq, &term[i + 2..]);
            }
            b'=' => {
                let skip = if bytes.get(i + 1) == Some(&b'=') {
                    2
                } else {
                    1
                };
                return requirement(whole, &term[..i], Op::Eq, &term[i + skip..]);
            }
            _ => i += 1,
        }
    }
    Err(ModelError::invalid(
        FIELD_SELECTOR,
        whole,
        format!("term {:?} has no operator (use =, == or !=)", term.trim()),
    ))
}

fn requirement(whole: &str, field: &str, op: Op, raw: &str) -> Result<Requirement, ModelError> {
    let field = field.trim();
    if field.is_empty()
        || !field
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
    {
        return Err(ModelError::invalid(
            FIELD_SELECTOR,
            whole,
            format!("invalid field name {field:?}"),
        ));
    }
    let raw = raw.trim();
    let mut value = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(n @ ('\\' | ',' | '=' | '!')) => value.push(n),
                _ => {
                    return Err(ModelError::invalid(
                        FIELD_SELECTOR,
                        whole,
                        "invalid escape: only \\\\, \\,, \\= and \\! are allowed",
                    ));
                }
            },
            '=' | '!' => {
                return Err(ModelError::invalid(
                    FIELD_SELECTOR,
                    whole,
                    format!("unescaped {c:?} in the value of {field:?}"),
                ));
            }
            c => value.push(c),
        }
    }
    Ok(Requirement {
        field: field.to_string(),
        op,
        value,
    })
}

fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        if matches!(c, '\\' | ',' | '=' | '!') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            let op = match r.op {
                Op::Eq => "=",
                Op::NotEq => "!=",
            };
            write!(f, "{}{}{}", r.field, op, escape(&r.value))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn secret_kinds_are_signing_keys_and_templates() {
        let secret: Vec<Kind> = Kind::ALL.into_iter().filter(|k| k.is_secret()).collect();
        assert_eq!(secret, [Kind::ActorTemplate, Kind::SigningKey]);
    }

    fn req(field: &str, op: Op, value: &str) -> Requirement {
        Requirement {
            field: field.into(),
            op,
            value: value.into(),
        }
    }

    #[test]
    fn selectors_over_the_size_limit_are_refused_naming_the_field() {
        let term = "status=RUNNING,";
        let long = term.repeat(MAX_SELECTOR_BYTES / term.len() + 1);
        let err = FieldSelector::parse(&long).unwrap_err().to_string();
        assert!(err.contains("field_selector"), "{err}");
        assert!(err.contains("over the limit of 4096"), "{err}");
        assert!(
            err.len() < 200,
            "the message does not echo the input: {err}"
        );
        let fits = &long[..long[..MAX_SELECTOR_BYTES].rfind(',').unwrap()];
        assert!(FieldSelector::parse(fits).is_ok());
    }

    #[test]
    fn parses_kubernetes_syntax() {
        let s = FieldSelector::parse("pool=cpu, actor_id=,node_name!=n1,status==RUNNING").unwrap();
        assert_eq!(
            s.requirements,
            vec![
                req("pool", Op::Eq, "cpu"),
                req("actor_id", Op::Eq, ""),
                req("node_name", Op::NotEq, "n1"),
                req("status", Op::Eq, "RUNNING"),
            ]
        );
        assert!(FieldSelector::parse("").unwrap().is_empty());
        assert!(FieldSelector::parse("  ").unwrap().is_empty());
        let esc = FieldSelector::parse(r"cached_snapshot=a\,b\=c").unwrap();
        assert_eq!(esc.requirements[0].value, "a,b=c");
    }

    #[test]
    fn rejects_malformed_selectors() {
        for bad in ["pool", "=x", "a=b,,c=d", "a=b=c", "a b=c", r"a=\x", "a=b,"] {
            let err = FieldSelector::parse(bad).unwrap_err();
            assert_eq!(err.field(), FIELD_SELECTOR, "{bad}: {err}");
        }
    }

    #[test]
    fn unknown_fields_list_supported_ones() {
        let s = FieldSelector::parse("colour=red").unwrap();
        let err = s.validate(Kind::Worker).unwrap_err().to_string();
        assert!(err.contains("colour"), "{err}");
        assert!(
            err.contains("pool") && err.contains("cached_snapshot"),
            "{err}"
        );
        FieldSelector::parse("pool=a,actor_id=")
            .unwrap()
            .validate(Kind::Worker)
            .unwrap();
    }

    fn value_strategy() -> impl Strategy<Value = String> {
        proptest::string::string_regex(r"[a-zA-Z0-9_./:,=!\\ -]{0,12}").unwrap()
    }

    proptest! {
        #[test]
        fn display_then_parse_round_trips(
            terms in proptest::collection::vec(
                ("[a-z_][a-z0-9_.]{0,10}", any::<bool>(), value_strategy()), 1..5)
        ) {
            let sel = FieldSelector {
                requirements: terms
                    .into_iter()
                    .map(|(f, ne, v)| req(&f, if ne { Op::NotEq } else { Op::Eq }, v.trim()))
                    .collect(),
            };
            let text = sel.to_string();
            prop_assert_eq!(FieldSelector::parse(&text).unwrap(), sel);
        }

        #[test]
        fn parser_never_panics(text in "\\PC{0,40}") {
            let _ = FieldSelector::parse(&text);
        }
    }
}
