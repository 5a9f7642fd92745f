//! The relational layout and selector-to-SQL translation shared by the SQL backends. Tables
//! and columns derive from the model's field registry:
//!
//! - `t_<kind>(key, version, body, f_<field>...)`: one column per single-valued field;
//! - `m_<kind>(field, value, key)`: multi-valued fields and labels (`labels` = `k=v`).
//!
//! Values are always bound parameters; only registry field names (validated by the caller)
//! reach the SQL text.

use ate_model::fields::{IndexValues, LABELS_INDEX};
use ate_model::{FieldSelector, Kind, LabelSelector, ModelError, Op};

use crate::ListOptions;

/// Placeholder and type syntax of a SQL engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// The n-th (1-based) bound parameter.
    pub fn param(self, n: usize) -> String {
        match self {
            Dialect::Sqlite => format!("?{n}"),
            Dialect::Postgres => format!("${n}"),
        }
    }

    /// The columns a record is read from (`key, version, body` as text).
    pub fn record_columns(self) -> &'static str {
        match self {
            Dialect::Sqlite => "t.key, t.version, t.body",
            Dialect::Postgres => "t.key, t.version, t.body::text",
        }
    }
}

pub fn table(kind: Kind) -> String {
    format!("t_{}", kind.plural())
}

pub fn multi_table(kind: Kind) -> String {
    format!("m_{}", kind.plural())
}

pub fn column(field: &str) -> String {
    format!("f_{field}")
}

/// The single-valued fields of a kind: those stored as columns.
pub fn single_fields(kind: Kind) -> Vec<&'static str> {
    kind.fields()
        .into_iter()
        .filter(|f| !f.multi)
        .map(|f| f.name)
        .collect()
}

/// The values of the single-valued fields, in `single_fields` order.
pub fn single_values(kind: Kind, index: &IndexValues) -> Vec<String> {
    single_fields(kind)
        .iter()
        .map(|f| {
            index
                .iter()
                .find(|(name, _)| name == f)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        })
        .collect()
}

/// `UPDATE` of a record's field columns: parameter 1 is the key, then `single_values`.
/// `None` for kinds without single-valued fields.
pub fn update_columns(dialect: Dialect, kind: Kind) -> Option<String> {
    let sets: Vec<String> = single_fields(kind)
        .iter()
        .enumerate()
        .map(|(i, f)| format!("{} = {}", column(f), dialect.param(i + 2)))
        .collect();
    (!sets.is_empty()).then(|| {
        format!(
            "UPDATE {} SET {} WHERE key = {}",
            table(kind),
            sets.join(", "),
            dialect.param(1)
        )
    })
}

/// Whether `field` is stored in the side table (multi-valued fields and labels).
pub fn is_multi(kind: Kind, field: &str) -> bool {
    field == LABELS_INDEX || kind.fields().iter().any(|f| f.name == field && f.multi)
}

/// A `WHERE` clause (without the keyword), the `FROM` it applies to, and its parameters.
#[derive(Debug)]
pub struct Filter {
    dialect: Dialect,
    /// The kind's table aliased `t`, or the side table driving a join when a multi-valued
    /// field is selected by value (that index is the most selective).
    pub from: String,
    pub clauses: Vec<String>,
    pub params: Vec<String>,
}

impl Filter {
    /// Binds a value and returns its placeholder.
    pub fn bind(&mut self, v: &str) -> String {
        self.params.push(v.to_string());
        self.dialect.param(self.params.len())
    }

    pub fn sql(&self) -> String {
        if self.clauses.is_empty() {
            "TRUE".into()
        } else {
            self.clauses.join(" AND ")
        }
    }
}

/// Builds the filter for a kind's table (aliased `t`).
pub fn filter(
    dialect: Dialect,
    kind: Kind,
    fields: &FieldSelector,
    labels: &LabelSelector,
) -> Filter {
    let m = multi_table(kind);
    let mut f = Filter {
        dialect,
        from: format!("{} t", table(kind)),
        clauses: Vec::new(),
        params: Vec::new(),
    };
    let driver = fields
        .requirements
        .iter()
        .position(|r| is_multi(kind, &r.field) && r.op == Op::Eq && !r.value.is_empty());
    if let Some(i) = driver {
        let r = &fields.requirements[i];
        // SQLite's CROSS JOIN fixes the join order; PostgreSQL plans it from statistics.
        let join = match dialect {
            Dialect::Sqlite => "CROSS JOIN",
            Dialect::Postgres => "JOIN",
        };
        f.from = format!("{m} d {join} {} t ON t.key = d.key", table(kind));
        let (pf, pv) = (f.bind(&r.field), f.bind(&r.value));
        f.clauses.push(format!("d.field = {pf} AND d.value = {pv}"));
    }
    for (i, r) in fields.requirements.iter().enumerate() {
        if Some(i) == driver {
            continue;
        }
        if is_multi(kind, &r.field) {
            let pf = f.bind(&r.field);
            let clause = match (r.op, r.value.is_empty()) {
                (Op::Eq, false) => {
                    let pv = f.bind(&r.value);
                    format!("t.key IN (SELECT key FROM {m} WHERE field = {pf} AND value = {pv})")
                }
                (Op::Eq, true) => format!(
                    "NOT EXISTS (SELECT 1 FROM {m} x WHERE x.key = t.key AND x.field = {pf})"
                ),
                (Op::NotEq, false) => {
                    let pv = f.bind(&r.value);
                    format!(
                        "NOT EXISTS (SELECT 1 FROM {m} x WHERE x.key = t.key AND x.field = {pf} AND x.value = {pv})"
                    )
                }
                (Op::NotEq, true) => {
                    format!("EXISTS (SELECT 1 FROM {m} x WHERE x.key = t.key AND x.field = {pf})")
                }
            };
            f.clauses.push(clause);
        } else {
            let p = f.bind(&r.value);
            let op = if r.op == Op::Eq { "=" } else { "<>" };
            f.clauses.push(format!("t.{} {op} {p}", column(&r.field)));
        }
    }
    for (k, v) in &labels.match_labels {
        let pf = f.bind(LABELS_INDEX);
        let pv = f.bind(&format!("{k}={v}"));
        f.clauses.push(format!(
            "t.key IN (SELECT key FROM {m} WHERE field = {pf} AND value = {pv})"
        ));
    }
    f
}

/// `SELECT` of one page in key order, fetching one record more than the page size to tell
/// whether another page follows.
pub fn page(
    dialect: Dialect,
    kind: Kind,
    opts: &ListOptions,
) -> Result<(String, Vec<String>), ModelError> {
    let after = opts.after_key()?;
    let limit = opts.page_size() + 1;
    let mut f = filter(dialect, kind, &opts.field_selector, &opts.label_selector);
    if let Some(after) = after.as_deref() {
        let p = f.bind(after);
        f.clauses.push(format!("t.key > {p}"));
    }
    let sql = format!(
        "SELECT {} FROM {} WHERE {} ORDER BY t.key LIMIT {limit}",
        dialect.record_columns(),
        f.from,
        f.sql()
    );
    Ok((sql, f.params))
}

/// `SELECT` of one free worker matching `selector`. With `lock`, the row is locked for the
/// claim and rows other claims hold are skipped (`FOR UPDATE SKIP LOCKED`).
pub fn free_worker(
    dialect: Dialect,
    selector: &FieldSelector,
    lock: bool,
) -> (String, Vec<String>) {
    let mut f = filter(dialect, Kind::Worker, selector, &LabelSelector::default());
    f.clauses.push(format!("t.{} = ''", column("actor_id")));
    let suffix = if lock {
        " FOR UPDATE OF t SKIP LOCKED"
    } else {
        ""
    };
    let sql = format!(
        "SELECT {} FROM {} WHERE {} LIMIT 1{suffix}",
        dialect.record_columns(),
        f.from,
        f.sql()
    );
    (sql, f.params)
}

/// `SELECT` of the worker already bound to an actor (parameters: actor id, atespace).
pub fn bound_worker(dialect: Dialect) -> String {
    format!(
        "SELECT {} FROM {} t WHERE t.{} = {} AND t.{} = {} LIMIT 1",
        dialect.record_columns(),
        table(Kind::Worker),
        column("actor_id"),
        dialect.param(1),
        column("actor_atespace"),
        dialect.param(2),
    )
}
