//! Label selectors (`matchLabels`): equality on a small set of labels, as the upstream's
//! `Selector` message and Kubernetes' `LabelSelector.matchLabels`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ModelError;
use crate::names::{validate_label_value, validate_qualified_name};

/// At most this many entries in one selector, as the upstream allows.
pub const MAX_SELECTOR_ENTRIES: usize = 10;

/// Labels carried by pools, nodes and workers.
pub type Labels = BTreeMap<String, String>;

/// Selects objects whose labels contain every entry of `match_labels`. An empty selector
/// selects everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelector {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: Labels,
}

impl LabelSelector {
    pub fn new(match_labels: Labels) -> Self {
        Self { match_labels }
    }

    pub fn is_empty(&self) -> bool {
        self.match_labels.is_empty()
    }

    /// Parses the CLI form `k=v,k2=v2` and validates it.
    pub fn parse(field: &str, text: &str) -> Result<Self, ModelError> {
        let mut match_labels = Labels::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| ModelError::invalid(field, part, "expected key=value"))?;
            match_labels.insert(k.trim().to_string(), v.trim().to_string());
        }
        let sel = Self { match_labels };
        sel.validate(field)?;
        Ok(sel)
    }

    pub fn validate(&self, field: &str) -> Result<(), ModelError> {
        if self.match_labels.len() > MAX_SELECTOR_ENTRIES {
            return Err(ModelError::invalid(
                field,
                format!("{} entries", self.match_labels.len()),
                format!("at most {MAX_SELECTOR_ENTRIES} entries are allowed"),
            ));
        }
        for (k, v) in &self.match_labels {
            validate_qualified_name(&format!("{field}.matchLabels key"), k)?;
            validate_label_value(&format!("{field}.matchLabels[{k}]"), v)?;
        }
        Ok(())
    }

    pub fn matches(&self, labels: &Labels) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
    }
}

impl std::fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .match_labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// Validates a label map carried by an object (pool labels, node labels).
pub fn validate_labels(field: &str, labels: &Labels) -> Result<(), ModelError> {
    for (k, v) in labels {
        validate_qualified_name(&format!("{field} key"), k)?;
        validate_label_value(&format!("{field}[{k}]"), v)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_match() {
        let sel = LabelSelector::parse("selector", "tier=gold, zone=a").unwrap();
        let mut labels = Labels::new();
        labels.insert("tier".into(), "gold".into());
        assert!(!sel.matches(&labels));
        labels.insert("zone".into(), "a".into());
        assert!(sel.matches(&labels));
        assert!(LabelSelector::default().matches(&Labels::new()));
        assert_eq!(sel.to_string(), "tier=gold,zone=a");
    }

    #[test]
    fn rejects_bad_selectors() {
        assert!(LabelSelector::parse("selector", "novalue").is_err());
        let err = LabelSelector::parse("selector", "bad key=x").unwrap_err();
        assert!(err.field().starts_with("selector"), "{err}");
        let many: Vec<String> = (0..11).map(|i| format!("k{i}=v")).collect();
        let err = LabelSelector::parse("worker_selector", &many.join(",")).unwrap_err();
        assert!(err.to_string().contains("at most 10"), "{err}");
    }
}
