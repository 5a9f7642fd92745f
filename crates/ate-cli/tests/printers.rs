//! Every printer (table, wide, JSON, YAML; lists and single objects) over arbitrary
//! server-returned strings: none panics, a table keeps one line per row, its columns
//! aligned and no control character of a value, and JSON and YAML give back every value
//! exactly.

use ate_cli::output::{Format, Printable, render, render_one, rfc3339_ms};
use ate_cli::table::{
    CLIP_MARKER, MAX_CELL_CHARS, MAX_CELL_WIDTH, cell_text, escape_controls, is_terminal_control,
    text_width,
};
use ate_model::{
    Actor, ActorCondition, ActorRef, ActorStatus, ActorTemplate, Assignment, Atespace, AuditEvent,
    LabelSelector, Labels, NamespacedName, Node, PoolSpec, SnapshotInfo, Worker, WorkerPlacement,
    WorkerPool,
};
use proptest::prelude::*;

/// Characters that have broken terminals or tables: controls, escapes, line breaks, wide
/// and combining characters, bidirectional overrides, and what YAML and JSON quote.
const TRICKY: &str = concat!(
    "aZ0 -/=,\\\"':#{[&*!|>%@`",
    "\n\r\t\0\u{7}\u{8}\u{1b}\u{7f}\u{85}\u{9b}",
    "\u{a0}\u{200b}\u{200d}\u{200f}\u{2028}\u{2029}\u{202e}\u{2066}\u{2069}\u{feff}",
    "\u{301}\u{20dd}éßΩ日본Ａ🦀👍\u{1f3fd}\u{e0100}\u{10ffff}",
);

/// A value as a server might return it: arbitrary, built from [`TRICKY`], or long, past
/// [`MAX_CELL_WIDTH`] and [`MAX_CELL_CHARS`]. Values of megabytes are left to
/// `a_megabyte_value_prints_in_every_format`: YAML takes seconds over each.
fn value() -> impl Strategy<Value = String> {
    let tricky = || proptest::sample::select(TRICKY.chars().collect::<Vec<_>>());
    prop_oneof![
        2 => any::<String>(),
        2 => proptest::collection::vec(tricky(), 0..48).prop_map(String::from_iter),
        1 => (proptest::collection::vec(tricky(), 1..4), 0..2 * MAX_CELL_CHARS)
            .prop_map(|(unit, n)| String::from_iter(unit).repeat(n)),
    ]
}

/// A value of only printable ASCII and short enough to print whole.
fn ascii_value() -> impl Strategy<Value = String> {
    proptest::string::string_regex(r"[ -~]{0,40}").expect("regex")
}

/// Gives out `values` one after the other, around again when they run out.
struct Values<'a> {
    values: &'a [String],
    next: usize,
}

impl Values<'_> {
    fn s(&mut self) -> String {
        let v = self.values[self.next % self.values.len()].clone();
        self.next += 1;
        v
    }

    fn labels(&mut self) -> Labels {
        (0..self.next % 3).map(|_| (self.s(), self.s())).collect()
    }

    fn list(&mut self) -> Vec<String> {
        (0..self.next % 3).map(|_| self.s()).collect()
    }
}

fn actor(v: &mut Values) -> Actor {
    Actor {
        atespace: v.s(),
        id: v.s(),
        uid: Some(v.s()),
        lease_generation: v.next as u64,
        version: v.next as u64,
        template: NamespacedName::new(v.s(), v.s()),
        status: ActorStatus::ALL[v.next % ActorStatus::ALL.len()],
        worker_selector: LabelSelector::new(v.labels()),
        worker: Some(WorkerPlacement {
            namespace: v.s(),
            pool: v.s(),
            name: v.s(),
            node_name: v.s(),
            address: v.s(),
        }),
        in_progress_snapshot: v.s(),
        latest_snapshot: Some(SnapshotInfo::External { uri_prefix: v.s() }),
        conditions: vec![ActorCondition {
            kind: v.s(),
            reason: v.s(),
            message: v.s(),
            time_ms: 0,
        }],
    }
}

fn template(v: &mut Values) -> ActorTemplate {
    let mut t = ActorTemplate {
        namespace: v.s(),
        name: v.s(),
        ..Default::default()
    };
    t.spec.sandbox_class = v.s();
    t.spec.command = v.list();
    t.status.phase = v.s();
    t.status.golden_snapshot = v.s();
    t.status.message = v.s();
    t
}

fn pool(v: &mut Values) -> WorkerPool {
    WorkerPool {
        namespace: v.s(),
        name: v.s(),
        spec: PoolSpec {
            replicas: 3,
            sandbox_class: v.s(),
            labels: v.labels(),
            node_selector: v.labels(),
        },
        ..Default::default()
    }
}

fn worker(v: &mut Values) -> Worker {
    let assigned = v.next.is_multiple_of(2);
    Worker {
        namespace: v.s(),
        pool: v.s(),
        name: v.s(),
        node_name: v.s(),
        address: v.s(),
        sandbox_class: v.s(),
        labels: v.labels(),
        assignment: assigned.then(|| Assignment {
            actor: ActorRef::new(v.s(), v.s()),
            template: NamespacedName::new(v.s(), v.s()),
            lease_generation: 0,
        }),
        cached_snapshots: v.list(),
        capabilities: v.list(),
        ..Default::default()
    }
}

fn node(v: &mut Values) -> Node {
    Node {
        name: v.s(),
        address: v.s(),
        labels: v.labels(),
        sandbox_classes: v.list(),
        capacity: 4,
        status: v.s(),
        cordoned: v.next.is_multiple_of(2),
        capabilities: v.list(),
        ..Default::default()
    }
}

fn audit_event(v: &mut Values) -> AuditEvent {
    AuditEvent {
        id: v.s(),
        time_ms: u64::MAX - v.next as u64,
        subject: v.s(),
        role: v.s(),
        method: v.s(),
        atespace: v.s(),
        target: v.s(),
        result: v.s(),
        code: v.s(),
        message: v.s(),
        version: 1,
    }
}

fn atespace(v: &mut Values) -> Atespace {
    Atespace {
        name: v.s(),
        version: 0,
    }
}

/// `n` objects of a kind made from `values`.
fn objects<T>(values: &[String], n: usize, make: fn(&mut Values) -> T) -> Vec<T> {
    let mut v = Values { values, next: 0 };
    (0..n).map(|_| make(&mut v)).collect()
}

/// Checks every printer on `items`, as a list and each on its own.
fn check_every_printer<T: Printable>(items: &[T]) {
    for format in [Format::Table, Format::Wide] {
        check_table(
            items,
            format == Format::Wide,
            &render(items, format).expect("table"),
        );
        for item in items {
            let one = render_one(item, format).expect("table");
            check_table(std::slice::from_ref(item), format == Format::Wide, &one);
        }
    }
    let whole = serde_json::json!({ T::LIST_KEY: items });
    check_json(&render(items, Format::Json).expect("json"), &whole);
    let whole_yaml =
        serde_yaml_ng::to_value(std::collections::BTreeMap::from([(T::LIST_KEY, items)]))
            .expect("value");
    check_yaml(&render(items, Format::Yaml).expect("yaml"), &whole_yaml);
    for item in items {
        let one = serde_json::to_value(item).expect("value");
        check_json(&render_one(item, Format::Json).expect("json"), &one);
        let one = serde_yaml_ng::to_value(item).expect("value");
        check_yaml(&render_one(item, Format::Yaml).expect("yaml"), &one);
    }
}

/// JSON reads back as `expected` and shows nothing a terminal acts on but line breaks.
fn check_json(text: &str, expected: &serde_json::Value) {
    let bad = text.chars().find(|&c| c != '\n' && is_terminal_control(c));
    assert_eq!(bad, None, "a terminal control in {text:?}");
    let read: serde_json::Value = serde_json::from_str(text).expect("json reads back");
    assert_eq!(&read, expected, "{text:?}");
}

/// YAML reads back as `expected` and shows no control character but line breaks.
fn check_yaml(text: &str, expected: &serde_yaml_ng::Value) {
    let bad = text.chars().find(|&c| c != '\n' && c.is_control());
    assert_eq!(bad, None, "a control character in {text:?}");
    let read: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).expect("yaml reads back");
    assert_eq!(&read, expected, "{text:?}");
}

/// The table of `items` as `render` sorts it: one line for the headers and each row, each
/// cell at its column's start, every cell escaped and clipped.
fn check_table<T: Printable>(items: &[T], wide: bool, out: &str) {
    assert!(!out.contains('\u{1b}'), "ESC in {out:?}");
    let bad = out.chars().find(|&c| c != '\n' && is_terminal_control(c));
    assert_eq!(bad, None, "a terminal control in {out:?}");

    let mut sorted: Vec<&T> = items.iter().collect();
    sorted.sort_by_key(|i| i.sort_key());
    let headers: Vec<String> = T::headers(wide).into_iter().map(String::from).collect();
    let rows: Vec<Vec<String>> = std::iter::once(headers)
        .chain(sorted.iter().map(|i| i.cells(wide)))
        .map(|cells| cells.iter().map(|c| cell_text(c)).collect())
        .collect();
    let lines: Vec<&str> = out.split_terminator('\n').collect();
    assert_eq!(lines.len(), rows.len(), "one line a row: {out:?}");
    assert!(out.ends_with('\n'));

    let columns = rows[0].len();
    let mut starts = vec![0; columns];
    for i in 1..columns {
        let widest = rows
            .iter()
            .map(|r| text_width(&r[i - 1]))
            .max()
            .unwrap_or(0);
        starts[i] = starts[i - 1] + widest + 3;
    }
    for (line, cells) in lines.iter().zip(&rows) {
        let mut expected = String::new();
        for (cell, start) in cells.iter().zip(&starts) {
            let at = text_width(&expected);
            expected.push_str(&" ".repeat(start - at));
            expected.push_str(cell);
        }
        // Trailing blanks are trimmed: the padding, and a blank last cell's own.
        assert_eq!(
            *line,
            expected.trim_end_matches(' '),
            "columns at {starts:?}"
        );
    }
    for (raw, cell) in sorted
        .iter()
        .flat_map(|i| i.cells(wide))
        .zip(rows[1..].iter().flatten())
    {
        check_cell(&raw, cell);
    }
}

/// `shown` is `raw` escaped, whole or clipped to the limits with the marker.
fn check_cell(raw: &str, shown: &str) {
    assert!(text_width(shown) <= MAX_CELL_WIDTH, "{shown:?}");
    assert!(shown.chars().count() <= MAX_CELL_CHARS, "{shown:?}");
    if raw.is_empty() {
        return;
    }
    // Past this many characters a value is clipped whatever they are: no need to escape
    // the rest of a value of megabytes.
    let head: String = raw.chars().take(MAX_CELL_CHARS + 1).collect();
    let escaped = escape_controls(&head);
    if shown != escaped {
        let kept = shown.strip_suffix(CLIP_MARKER).expect("clipped");
        assert!(escaped.starts_with(kept), "{kept:?} of {head:?}");
        assert!(
            text_width(&escaped) > MAX_CELL_WIDTH || escaped.chars().count() > MAX_CELL_CHARS,
            "{head:?} fits, yet was clipped"
        );
    }
}

/// The tables as printed before cells were escaped and clipped: what a value of
/// printable ASCII must still print as.
fn ascii_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<String>> = std::iter::once(headers.iter().map(|h| h.to_string()).collect())
        .chain(rows.iter().map(|r| {
            r.iter()
                .map(|c| {
                    if c.is_empty() {
                        "<none>".into()
                    } else {
                        c.clone()
                    }
                })
                .collect()
        }))
        .collect();
    let mut widths = vec![0; headers.len()];
    for row in &rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.len());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (i, c) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(c);
            } else {
                line.push_str(&format!("{c:<width$}   ", width = widths[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

proptest! {
    // Each case prints every kind in every format, some values thousands of characters
    // long: few cases keep the run to seconds.
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn every_printer_takes_any_value(
        values in proptest::collection::vec(value(), 1..24),
        n in 1..4usize,
    ) {
        check_every_printer(&objects(&values, n, atespace));
        check_every_printer(&objects(&values, n, actor));
        check_every_printer(&objects(&values, n, template));
        check_every_printer(&objects(&values, n, pool));
        check_every_printer(&objects(&values, n, worker));
        check_every_printer(&objects(&values, n, node));
        check_every_printer(&objects(&values, n, audit_event));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn printable_ascii_prints_as_it_always_did(
        values in proptest::collection::vec(ascii_value(), 1..24),
        n in 0..5usize,
    ) {
        let items = objects(&values, n, audit_event);
        for wide in [false, true] {
            let mut sorted: Vec<&AuditEvent> = items.iter().collect();
            sorted.sort_by_key(|i| i.sort_key());
            let rows: Vec<Vec<String>> = sorted.iter().map(|i| i.cells(wide)).collect();
            let format = if wide { Format::Wide } else { Format::Table };
            prop_assert_eq!(
                render(&items, format).expect("table"),
                ascii_table(&AuditEvent::headers(wide), &rows)
            );
        }
    }

    #[test]
    fn any_time_formats(ms in any::<i64>()) {
        let t = rfc3339_ms(ms);
        prop_assert!(t.ends_with('Z') && t.is_ascii(), "{}", t);
    }
}

#[test]
fn a_megabyte_value_prints_in_every_format() {
    // Past the widest a format width may be (u16::MAX), as a name sent to the server and
    // listed back in the audit trail.
    let mut values = vec!["n".repeat(1 << 20), "\u{1b}[2J\n".repeat(20_000)];
    values.extend(["anonymous", "CreateActor", "team-a", "DENIED"].map(String::from));
    check_every_printer(&objects(&values, 2, audit_event));
}
