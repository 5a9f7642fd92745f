//! Selectors turned into SQL over the indexed columns and the side table. Values are always
//! bound parameters; only registry field names (already validated) reach the SQL text.

use ate_model::fields::LABELS_INDEX;
use ate_model::{FieldSelector, Kind, LabelSelector, ModelError, Op};
use ate_store::ListOptions;

use crate::schema::{column, is_multi, multi_table, table};

/// A `WHERE` clause (without the keyword) and its parameters.
#[derive(Debug, Default)]
pub struct Filter {
    /// The `FROM` part: the kind's table, or the side table driving a join when a
    /// multi-valued field is selected by value (that index is the most selective).
    pub from: String,
    pub clauses: Vec<String>,
    pub params: Vec<String>,
}

impl Filter {
    fn bind(&mut self, v: &str) -> usize {
        self.params.push(v.to_string());
        self.params.len()
    }

    pub fn sql(&self) -> String {
        if self.clauses.is_empty() {
            "1".into()
        } else {
            self.clauses.join(" AND ")
        }
    }
}

/// Builds the filter for a kind's table (aliased `t`).
pub fn filter(kind: Kind, fields: &FieldSelector, labels: &LabelSelector) -> Filter {
    let m = multi_table(kind);
    let mut f = Filter {
        from: format!("{} t", table(kind)),
        ..Default::default()
    };
    let driver = fields
        .requirements
        .iter()
        .position(|r| is_multi(kind, &r.field) && r.op == Op::Eq && !r.value.is_empty());
    if let Some(i) = driver {
        let r = &fields.requirements[i];
        f.from = format!("{m} d CROSS JOIN {} t ON t.key = d.key", table(kind));
        let (pf, pv) = (f.bind(&r.field), f.bind(&r.value));
        f.clauses
            .push(format!("d.field = ?{pf} AND d.value = ?{pv}"));
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
                    format!("t.key IN (SELECT key FROM {m} WHERE field = ?{pf} AND value = ?{pv})")
                }
                (Op::Eq, true) => {
                    format!(
                        "NOT EXISTS (SELECT 1 FROM {m} x WHERE x.key = t.key AND x.field = ?{pf})"
                    )
                }
                (Op::NotEq, false) => {
                    let pv = f.bind(&r.value);
                    format!(
                        "NOT EXISTS (SELECT 1 FROM {m} x WHERE x.key = t.key AND x.field = ?{pf} AND x.value = ?{pv})"
                    )
                }
                (Op::NotEq, true) => {
                    format!("EXISTS (SELECT 1 FROM {m} x WHERE x.key = t.key AND x.field = ?{pf})")
                }
            };
            f.clauses.push(clause);
        } else {
            let p = f.bind(&r.value);
            let op = if r.op == Op::Eq { "=" } else { "!=" };
            f.clauses.push(format!("t.{} {op} ?{p}", column(&r.field)));
        }
    }
    for (k, v) in &labels.match_labels {
        let pf = f.bind(LABELS_INDEX);
        let pv = f.bind(&format!("{k}={v}"));
        f.clauses.push(format!(
            "t.key IN (SELECT key FROM {m} WHERE field = ?{pf} AND value = ?{pv})"
        ));
    }
    f
}

/// `SELECT` of one page in key order, fetching one record more than the page size to tell
/// whether another page follows.
pub fn page(kind: Kind, opts: &ListOptions) -> Result<(String, Vec<String>), ModelError> {
    let after = opts.after_key()?;
    let limit = opts.page_size() + 1;
    let mut f = filter(kind, &opts.field_selector, &opts.label_selector);
    if let Some(after) = after.as_deref() {
        let p = f.bind(after);
        f.clauses.push(format!("t.key > ?{p}"));
    }
    let sql = format!(
        "SELECT t.key, t.version, t.body FROM {} WHERE {} ORDER BY t.key LIMIT {limit}",
        f.from,
        f.sql()
    );
    Ok((sql, f.params))
}

/// `SELECT` of one free worker matching the selector.
pub fn free_worker(selector: &FieldSelector) -> (String, Vec<String>) {
    let mut f = filter(Kind::Worker, selector, &LabelSelector::default());
    f.clauses.push(format!("t.{} = ''", column("actor_id")));
    let sql = format!(
        "SELECT t.key, t.version, t.body FROM {} WHERE {} LIMIT 1",
        f.from,
        f.sql()
    );
    (sql, f.params)
}

/// `SELECT` of the worker already bound to an actor, if any.
pub fn bound_worker() -> String {
    format!(
        "SELECT t.key, t.version, t.body FROM {} t WHERE t.{} = ?1 AND t.{} = ?2 LIMIT 1",
        table(Kind::Worker),
        column("actor_id"),
        column("actor_atespace")
    )
}
