//! Printers for every kind: a table (normal or wide), JSON or YAML of the model objects.

use ate_model::{Actor, ActorTemplate, Atespace, Node, Worker, WorkerPool};
use serde::Serialize;
use std::fmt::Write;

use crate::CliError;
use crate::table::Table;

/// `-o` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    #[default]
    Table,
    Wide,
    Json,
    Yaml,
}

/// Something the CLI can print as a table row.
pub trait Printable: Serialize {
    /// Plural key used for lists in JSON and YAML (`{"actors": [...]}`).
    const LIST_KEY: &'static str;
    fn headers(wide: bool) -> Vec<&'static str>;
    fn cells(&self, wide: bool) -> Vec<String>;
    /// Sort key for tables.
    fn sort_key(&self) -> Vec<String>;
}

/// Renders items in the requested format. Tables are sorted; JSON and YAML keep the
/// server's order.
pub fn render<T: Printable>(items: &[T], format: Format) -> Result<String, CliError> {
    match format {
        Format::Table | Format::Wide => {
            let wide = format == Format::Wide;
            let mut refs: Vec<&T> = items.iter().collect();
            refs.sort_by_cached_key(|i| i.sort_key());
            let mut table = Table::new(&T::headers(wide));
            for item in refs {
                table.row(item.cells(wide));
            }
            Ok(table.render())
        }
        Format::Json => {
            let value = serde_json::json!({ T::LIST_KEY: items });
            let s = serde_json::to_string_pretty(&value).map_err(CliError::output)?;
            Ok(escape_json_controls(s) + "\n")
        }
        Format::Yaml => {
            let mut map = std::collections::BTreeMap::new();
            map.insert(T::LIST_KEY, items);
            serde_yaml_ng::to_string(&map).map_err(CliError::output)
        }
    }
}

/// Renders one object: a one-row table, or the object itself in JSON or YAML.
pub fn render_one<T: Printable>(item: &T, format: Format) -> Result<String, CliError> {
    match format {
        Format::Json => serde_json::to_string_pretty(item)
            .map(|s| escape_json_controls(s) + "\n")
            .map_err(CliError::output),
        Format::Yaml => serde_yaml_ng::to_string(item).map_err(CliError::output),
        _ => render(std::slice::from_ref(item), format),
    }
}

/// JSON with the characters a terminal acts on written as `\uXXXX` escapes, which JSON
/// reads back as the same characters. serde_json escapes only what JSON requires (`"`,
/// `\` and the C0 controls), leaving DEL, the C1 controls (U+009B starts a control
/// sequence as ESC [ does) and the bidirectional controls as they are. Outside strings
/// JSON is ASCII, so every such character is inside a string, where an escape is valid.
/// YAML needs no such pass: its emitter escapes every C0 and C1 control itself.
fn escape_json_controls(json: String) -> String {
    let unsafe_char = |c: char| c != '\n' && crate::table::is_terminal_control(c);
    if !json.contains(unsafe_char) {
        return json;
    }
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if unsafe_char(c) {
            // Every such character is in the Basic Multilingual Plane: one escape each.
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    out
}

impl Printable for Atespace {
    const LIST_KEY: &'static str = "atespaces";
    fn headers(_: bool) -> Vec<&'static str> {
        vec!["NAME"]
    }
    fn cells(&self, _: bool) -> Vec<String> {
        vec![self.name.clone()]
    }
    fn sort_key(&self) -> Vec<String> {
        vec![self.name.clone()]
    }
}

impl Printable for Actor {
    const LIST_KEY: &'static str = "actors";
    fn headers(wide: bool) -> Vec<&'static str> {
        let mut h = vec![
            "ATESPACE",
            "TEMPLATE NS",
            "TEMPLATE",
            "ID",
            "STATUS",
            "WORKER",
            "ADDRESS",
            "VERSION",
        ];
        if wide {
            h.extend(["NODE", "SELECTOR", "SNAPSHOT", "CONDITION"]);
        }
        h
    }
    fn cells(&self, wide: bool) -> Vec<String> {
        let w = self.worker.clone().unwrap_or_default();
        let worker = if w.name.is_empty() {
            String::new()
        } else {
            format!("{}/{}", w.pool, w.name)
        };
        let mut c = vec![
            self.atespace.clone(),
            self.template.namespace.clone(),
            self.template.name.clone(),
            self.id.clone(),
            self.status.to_string(),
            worker,
            w.address.clone(),
            self.version.to_string(),
        ];
        if wide {
            c.push(w.node_name);
            c.push(self.worker_selector.to_string());
            c.push(
                self.latest_snapshot
                    .as_ref()
                    .map(|s| s.uri().to_string())
                    .unwrap_or_default(),
            );
            c.push(
                self.conditions
                    .last()
                    .map(|c| format!("{}({})", c.kind, c.reason))
                    .unwrap_or_default(),
            );
        }
        c
    }
    fn sort_key(&self) -> Vec<String> {
        vec![
            self.atespace.clone(),
            self.template.namespace.clone(),
            self.template.name.clone(),
            self.id.clone(),
        ]
    }
}

impl Printable for ActorTemplate {
    const LIST_KEY: &'static str = "templates";
    fn headers(wide: bool) -> Vec<&'static str> {
        let mut h = vec!["NAMESPACE", "NAME", "CLASS", "PHASE"];
        if wide {
            h.extend(["IDLE TIMEOUT", "GOLDEN SNAPSHOT", "MESSAGE"]);
        }
        h
    }
    fn cells(&self, wide: bool) -> Vec<String> {
        let mut c = vec![
            self.namespace.clone(),
            self.name.clone(),
            self.spec.sandbox_class.clone(),
            self.status.phase.clone(),
        ];
        if wide {
            c.push(self.spec.idle_timeout.to_string());
            c.push(self.status.golden_snapshot.clone());
            c.push(self.status.message.clone());
        }
        c
    }
    fn sort_key(&self) -> Vec<String> {
        vec![self.namespace.clone(), self.name.clone()]
    }
}

fn labels_text(l: &ate_model::Labels) -> String {
    l.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

impl Printable for WorkerPool {
    const LIST_KEY: &'static str = "pools";
    fn headers(wide: bool) -> Vec<&'static str> {
        let mut h = vec!["NAMESPACE", "NAME", "CLASS", "DESIRED", "REPLICAS"];
        if wide {
            h.extend(["LABELS", "NODE SELECTOR"]);
        }
        h
    }
    fn cells(&self, wide: bool) -> Vec<String> {
        let mut c = vec![
            self.namespace.clone(),
            self.name.clone(),
            self.spec.sandbox_class.clone(),
            self.spec.replicas.to_string(),
            self.status.replicas.to_string(),
        ];
        if wide {
            c.push(labels_text(&self.spec.labels));
            c.push(labels_text(&self.spec.node_selector));
        }
        c
    }
    fn sort_key(&self) -> Vec<String> {
        vec![self.namespace.clone(), self.name.clone()]
    }
}

impl Printable for Worker {
    const LIST_KEY: &'static str = "workers";
    fn headers(wide: bool) -> Vec<&'static str> {
        let mut h = vec!["NAMESPACE", "POOL", "WORKER", "NODE", "STATUS", "ACTOR"];
        if wide {
            h.extend(["ADDRESS", "CLASS", "CAPABILITIES", "CACHED SNAPSHOTS"]);
        }
        h
    }
    fn cells(&self, wide: bool) -> Vec<String> {
        let (status, actor) = match &self.assignment {
            Some(a) => ("ASSIGNED".to_string(), a.actor.to_string()),
            None => ("FREE".to_string(), String::new()),
        };
        let mut c = vec![
            self.namespace.clone(),
            self.pool.clone(),
            self.name.clone(),
            self.node_name.clone(),
            status,
            actor,
        ];
        if wide {
            c.push(self.address.clone());
            c.push(self.sandbox_class.clone());
            c.push(self.capabilities.join(","));
            c.push(self.cached_snapshots.join(","));
        }
        c
    }
    fn sort_key(&self) -> Vec<String> {
        vec![self.namespace.clone(), self.pool.clone(), self.name.clone()]
    }
}

impl Printable for Node {
    const LIST_KEY: &'static str = "nodes";
    fn headers(wide: bool) -> Vec<&'static str> {
        let mut h = vec!["NAME", "STATUS", "ADDRESS", "CLASSES", "CAPACITY"];
        if wide {
            h.extend(["CAPABILITIES", "LABELS"]);
        }
        h
    }
    fn cells(&self, wide: bool) -> Vec<String> {
        // As kubectl shows a cordoned node.
        let status = if self.cordoned {
            format!("{},SchedulingDisabled", self.status)
        } else {
            self.status.clone()
        };
        let mut c = vec![
            self.name.clone(),
            status,
            self.address.clone(),
            self.sandbox_classes.join(","),
            self.capacity.to_string(),
        ];
        if wide {
            // What the node can do beyond its classes (`criu`: Full snapshots of process
            // actors), so an operator can see why a template finds no node.
            c.push(self.capabilities.join(","));
            c.push(labels_text(&self.labels));
        }
        c
    }
    fn sort_key(&self) -> Vec<String> {
        vec![self.name.clone()]
    }
}

/// `2026-11-23T10:04:05.123Z` for milliseconds since the Unix epoch (UTC, proleptic
/// Gregorian), without pulling in a date library for one format.
pub fn rfc3339_ms(ms: i64) -> String {
    let (secs, milli) = (ms.div_euclid(1000), ms.rem_euclid(1000));
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{milli:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod node_tests {
    use super::*;

    #[test]
    fn a_cordoned_node_shows_scheduling_disabled() {
        let mut n = Node {
            name: "local".into(),
            status: "Ready".into(),
            ..Default::default()
        };
        assert_eq!(n.cells(false)[1], "Ready");
        n.cordoned = true;
        assert_eq!(n.cells(false)[1], "Ready,SchedulingDisabled");
    }

    #[test]
    fn wide_output_shows_capabilities() {
        let n = Node {
            name: "n1".into(),
            capabilities: vec!["criu".into()],
            ..Default::default()
        };
        let headers = Node::headers(true);
        let at = headers
            .iter()
            .position(|h| *h == "CAPABILITIES")
            .expect("column");
        assert_eq!(n.cells(true)[at], "criu");
        assert_eq!(n.cells(true).len(), headers.len());
        assert!(!Node::headers(false).contains(&"CAPABILITIES"));
        let w = Worker {
            capabilities: vec!["criu".into()],
            ..Default::default()
        };
        let headers = Worker::headers(true);
        let at = headers
            .iter()
            .position(|h| *h == "CAPABILITIES")
            .expect("column");
        assert_eq!(w.cells(true)[at], "criu");
        assert_eq!(w.cells(true).len(), headers.len());
    }
}

#[cfg(test)]
mod time_tests {
    #[test]
    fn formats_utc_milliseconds() {
        assert_eq!(super::rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            super::rfc3339_ms(1_795_435_445_123),
            "2026-11-23T12:04:05.123Z"
        );
        assert_eq!(
            super::rfc3339_ms(951_782_400_000),
            "2000-02-29T00:00:00.000Z"
        );
    }
}
