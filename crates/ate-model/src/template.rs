//! Templates: what an actor runs, how it is limited and where its snapshots go.

use serde::{Deserialize, Serialize};

use crate::fields::{Field, Indexed, Kind};
use crate::labels::LabelSelector;
use crate::resources::NamespacedName;
use crate::{Duration, ModelError};

/// How much of an actor a snapshot holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SnapshotScope {
    /// Memory and files.
    #[default]
    Full,
    /// Only the durable dirs; the workload cold-starts on restore.
    Data,
}

/// Where and how an actor's snapshots are taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SnapshotsConfig {
    /// Snapshot store location (`file://…`, `s3://…`, `gs://…`); empty means the node's
    /// default store.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub location: String,
    #[serde(default)]
    pub on_pause: SnapshotScope,
    #[serde(default)]
    pub on_commit: SnapshotScope,
    /// How many of an actor's snapshots to keep; older ones are deleted after a suspend.
    #[serde(default = "SnapshotsConfig::default_keep")]
    pub keep: u32,
}

impl SnapshotsConfig {
    /// Three: the latest, and two to fall back to.
    pub fn default_keep() -> u32 {
        3
    }
}

impl Default for SnapshotsConfig {
    fn default() -> Self {
        Self {
            location: String::new(),
            on_pause: SnapshotScope::default(),
            on_commit: SnapshotScope::default(),
            keep: Self::default_keep(),
        }
    }
}

/// An environment variable given to the workload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvVar {
    pub name: String,
    #[serde(default)]
    pub value: String,
}

/// An HTTP readiness probe: the workload is ready once `GET path` on `port` answers 2xx.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReadinessProbe {
    #[serde(default = "default_probe_path")]
    pub path: String,
    #[serde(default)]
    pub port: u16,
}

fn default_probe_path() -> String {
    "/readyz".into()
}

/// The sandbox classes ate knows.
pub const SANDBOX_CLASSES: &[&str] = &["wasm", "process"];

/// What an actor runs. Immutable once created: make a new template for a new version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TemplateSpec {
    pub sandbox_class: String,
    /// The workload: a wasm module (path or URL) for `wasm`, a program for `process`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub module: String,
    /// Hex sha256 of the module. Required for a URL module, so a node never runs bytes
    /// nobody vouched for; checked for a path module when given.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub module_sha256: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness: Option<ReadinessProbe>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub durable_dirs: Vec<String>,
    #[serde(default)]
    pub snapshots: SnapshotsConfig,
    #[serde(default, skip_serializing_if = "LabelSelector::is_empty")]
    pub worker_selector: LabelSelector,
    /// Idle time after which a running actor is suspended (`0s` disables).
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: Duration,
    /// Longest wait for the response head of one request through the router (`0s`, the
    /// default, waits as long as the actor takes: long model turns must not be cut).
    #[serde(default, skip_serializing_if = "Duration::is_zero")]
    pub route_timeout: Duration,
    /// Hosts the workload may call out to: `host`, `host:port` or `*.domain`. Empty denies
    /// every outbound call.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<String>,
    #[serde(default)]
    pub limits: Limits,
}

fn default_idle_timeout() -> Duration {
    TemplateSpec::default_idle_timeout()
}

impl Default for TemplateSpec {
    fn default() -> Self {
        Self {
            sandbox_class: String::new(),
            module: String::new(),
            command: Vec::new(),
            env: Vec::new(),
            readiness: None,
            durable_dirs: Vec::new(),
            snapshots: SnapshotsConfig::default(),
            worker_selector: LabelSelector::default(),
            idle_timeout: Self::default_idle_timeout(),
            route_timeout: Duration::default(),
            module_sha256: String::new(),
            egress: Vec::new(),
            limits: Limits::default(),
        }
    }
}

impl TemplateSpec {
    /// Five minutes: long enough for a conversation's pauses, short enough to free workers.
    pub fn default_idle_timeout() -> Duration {
        Duration::from_secs(300)
    }
}

/// Resource limits for one actor, so a runaway guest cannot hold its worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Limits {
    /// Most 64 KiB pages of linear memory a `wasm` guest may grow to.
    #[serde(default = "Limits::default_memory_pages")]
    pub memory_pages: u32,
    /// Guest compute time allowed per request; time spent waiting in host calls (an
    /// outbound request to a model) does not count.
    #[serde(default = "Limits::default_request_budget")]
    pub request_budget: Duration,
}

/// Most snapshots per actor a template may keep.
pub const MAX_SNAPSHOTS_KEPT: u32 = 100;

/// The wasm page limit: 4 GiB of 64 KiB pages.
pub const MAX_MEMORY_PAGES: u32 = 65_536;

impl Limits {
    /// 64 MiB: room for an agent's conversation state, small enough to snapshot fast.
    pub fn default_memory_pages() -> u32 {
        1024
    }

    /// Ten seconds of guest compute per request.
    pub fn default_request_budget() -> Duration {
        Duration::from_secs(10)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_pages: Self::default_memory_pages(),
            request_budget: Self::default_request_budget(),
        }
    }
}

/// Progress of a template's golden snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TemplateStatus {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub phase: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub golden_actor: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub golden_snapshot: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// What an actor runs, addressed by `(namespace, name)`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActorTemplate {
    pub namespace: String,
    pub name: String,
    #[serde(default)]
    pub version: u64,
    pub spec: TemplateSpec,
    #[serde(default)]
    pub status: TemplateStatus,
}

impl ActorTemplate {
    pub fn id(&self) -> NamespacedName {
        NamespacedName::new(&self.namespace, &self.name)
    }

    pub fn validate(&self) -> Result<(), ModelError> {
        self.id().validate("metadata")?;
        let s = &self.spec;
        validate_sandbox_class("spec.sandboxClass", &s.sandbox_class)?;
        if s.sandbox_class == "wasm" && s.module.is_empty() {
            return Err(ModelError::required("spec.module"));
        }
        validate_module(s)?;
        for (i, e) in s.egress.iter().enumerate() {
            validate_egress(&format!("spec.egress[{i}]"), e)?;
        }
        if s.limits.memory_pages == 0 || s.limits.memory_pages > MAX_MEMORY_PAGES {
            return Err(ModelError::invalid(
                "spec.limits.memoryPages",
                s.limits.memory_pages.to_string(),
                format!("must be between 1 and {MAX_MEMORY_PAGES}"),
            ));
        }
        if s.limits.request_budget.0.is_zero() {
            return Err(ModelError::invalid(
                "spec.limits.requestBudget",
                s.limits.request_budget.to_string(),
                "must be more than zero",
            ));
        }
        if s.sandbox_class == "process" && s.command.is_empty() {
            return Err(ModelError::required("spec.command"));
        }
        for (i, e) in s.env.iter().enumerate() {
            if e.name.is_empty() || e.name.contains('=') || e.name.chars().any(char::is_control) {
                return Err(ModelError::invalid(
                    format!("spec.env[{i}].name"),
                    &e.name,
                    "must be non-empty, without '=' or control characters",
                ));
            }
        }
        if let Some(p) = s.readiness.as_ref().filter(|p| !p.path.starts_with('/')) {
            return Err(ModelError::invalid(
                "spec.readiness.path",
                &p.path,
                "must start with '/'",
            ));
        }
        for (i, d) in s.durable_dirs.iter().enumerate() {
            if !d.starts_with('/') || d.split('/').any(|c| c == "..") {
                return Err(ModelError::invalid(
                    format!("spec.durableDirs[{i}]"),
                    d,
                    "must be an absolute path without '..'",
                ));
            }
        }
        if s.snapshots.on_pause == SnapshotScope::Data
            && s.snapshots.on_commit == SnapshotScope::Full
        {
            return Err(ModelError::invalid(
                "spec.snapshots.onCommit",
                "Full",
                "must not be wider than onPause (Data)",
            ));
        }
        if s.snapshots.keep == 0 || s.snapshots.keep > MAX_SNAPSHOTS_KEPT {
            return Err(ModelError::invalid(
                "spec.snapshots.keep",
                s.snapshots.keep.to_string(),
                format!("must be between 1 and {MAX_SNAPSHOTS_KEPT}"),
            ));
        }
        s.worker_selector.validate("spec.workerSelector")
    }
}

pub(crate) fn validate_sandbox_class(field: &str, class: &str) -> Result<(), ModelError> {
    if class.is_empty() {
        return Err(ModelError::required(field));
    }
    if !SANDBOX_CLASSES.contains(&class) {
        return Err(ModelError::invalid(
            field,
            class,
            format!("supported classes: {}", SANDBOX_CLASSES.join(", ")),
        ));
    }
    Ok(())
}

impl Indexed for ActorTemplate {
    const KIND: Kind = Kind::ActorTemplate;
    const FIELDS: &'static [Field<Self>] = &[
        Field {
            name: "namespace",
            multi: false,
            get: |t| vec![t.namespace.clone()],
        },
        Field {
            name: "sandbox_class",
            multi: false,
            get: |t| vec![t.spec.sandbox_class.clone()],
        },
    ];
}

fn is_url(module: &str) -> bool {
    module.starts_with("http://") || module.starts_with("https://")
}

fn validate_module(s: &TemplateSpec) -> Result<(), ModelError> {
    let sha = &s.module_sha256;
    if sha.is_empty() {
        if is_url(&s.module) {
            return Err(ModelError::invalid(
                "spec.moduleSha256",
                "",
                "is required when spec.module is a URL",
            ));
        }
        return Ok(());
    }
    if sha.len() != 64
        || !sha
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(ModelError::invalid(
            "spec.moduleSha256",
            sha,
            "must be 64 lowercase hex digits",
        ));
    }
    Ok(())
}

/// Checks one egress rule: `host`, `host:port`, `*.domain` or an IP address, with an
/// optional port.
pub fn validate_egress(field: &str, rule: &str) -> Result<(), ModelError> {
    let bad = |why: &str| ModelError::invalid(field, rule, why.to_string());
    let (host, port) = match rule.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, Some(p)),
        _ => (rule, None),
    };
    if let Some(p) = port
        && p.parse::<u16>().map_or(true, |p| p == 0)
    {
        return Err(bad("port must be a number between 1 and 65535"));
    }
    let name = host.strip_prefix("*.").unwrap_or(host);
    if name.parse::<std::net::Ipv4Addr>().is_ok() && !host.starts_with("*.") {
        return Ok(());
    }
    crate::names::validate_subdomain(field, &name.to_ascii_lowercase()).map_err(|_| {
        bad("must be a host name, `*.domain` or an IPv4 address, with an optional :port")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wasm(module: &str) -> ActorTemplate {
        ActorTemplate {
            namespace: "demo".into(),
            name: "t".into(),
            spec: TemplateSpec {
                sandbox_class: "wasm".into(),
                module: module.into(),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn egress_rules_are_checked_and_name_the_field() {
        for ok in [
            "api.example.com",
            "api.example.com:443",
            "*.example.com",
            "127.0.0.1:8080",
        ] {
            validate_egress("spec.egress[0]", ok).unwrap();
        }
        for bad in ["", "http://x", "a b", "host:0", "host:99999", "*.", "x/y"] {
            let e = validate_egress("spec.egress[0]", bad).unwrap_err();
            assert_eq!(e.field(), "spec.egress[0]", "{bad}");
        }
        let mut t = wasm("/m.wasm");
        t.spec.egress = vec!["ok.dev".into(), "bad host".into()];
        assert_eq!(t.validate().unwrap_err().field(), "spec.egress[1]");
    }

    #[test]
    fn url_modules_need_a_checksum_and_limits_are_bounded() {
        assert_eq!(
            wasm("https://x.dev/m.wasm").validate().unwrap_err().field(),
            "spec.moduleSha256"
        );
        let mut t = wasm("https://x.dev/m.wasm");
        t.spec.module_sha256 = "AB".repeat(32);
        assert_eq!(t.validate().unwrap_err().field(), "spec.moduleSha256");
        t.spec.module_sha256 = "ab".repeat(32);
        t.validate().unwrap();
        t.spec.limits.memory_pages = 0;
        assert_eq!(t.validate().unwrap_err().field(), "spec.limits.memoryPages");
        t.spec.limits = Limits {
            request_budget: Duration::from_secs(0),
            ..Limits::default()
        };
        assert_eq!(
            t.validate().unwrap_err().field(),
            "spec.limits.requestBudget"
        );
    }
}
