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
    /// Largest snapshot of an actor, in bytes before compression (all its files): a
    /// checkpoint over it fails and the actor keeps running, with a `SnapshotTooLarge`
    /// condition; a restore of a bigger snapshot is refused before it is read. 0 (or
    /// absent) means [`DEFAULT_SNAPSHOT_MAX_BYTES`]. Use [`SnapshotsConfig::max_bytes`].
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_bytes: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The size limit of a template that sets none (4 GiB). A checkpoint is staged on the
/// node's disk, kept in its cache and uploaded before the actor's worker is free again, so
/// one runaway actor must not fill a node's disk or hold its worker for the minutes a
/// huge upload takes. 4 GiB holds a default actor's memory many times over (64 MiB for
/// wasm, 512 MiB for process) plus its files; a template with bigger actors (a wasm guest
/// near its 4 GiB memory maximum, a process with a large `memoryMib` or big durable dirs)
/// raises `spec.snapshots.maxBytes`.
pub const DEFAULT_SNAPSHOT_MAX_BYTES: u64 = 4 << 30;

/// Largest `spec.snapshots.maxBytes` a template may set (1 TiB): beyond the disk of any
/// node that would have to stage, cache and restore such a snapshot, so a bigger value is
/// a typo rather than a plan.
pub const MAX_SNAPSHOT_MAX_BYTES: u64 = 1 << 40;

impl SnapshotsConfig {
    /// Three: the latest, and two to fall back to.
    pub fn default_keep() -> u32 {
        3
    }

    /// The size limit in force: `maxBytes`, or [`DEFAULT_SNAPSHOT_MAX_BYTES`] when unset.
    pub fn max_bytes(&self) -> u64 {
        match self.max_bytes {
            0 => DEFAULT_SNAPSHOT_MAX_BYTES,
            n => n,
        }
    }
}

impl Default for SnapshotsConfig {
    fn default() -> Self {
        Self {
            location: String::new(),
            on_pause: SnapshotScope::default(),
            on_commit: SnapshotScope::default(),
            keep: Self::default_keep(),
            max_bytes: 0,
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

/// How a node tells that a workload is ready for requests after a boot or restore: `GET
/// path` on `port` answering 2xx, or (with `tcp`) a connection to `port` being accepted,
/// within `timeout`. A `process` program listens on its own port, so the node has to wait
/// for it; a template without a probe is probed by TCP on `spec.port` (see
/// [`TemplateSpec::probe`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReadinessProbe {
    #[serde(default = "default_probe_path")]
    pub path: String,
    /// The port to probe; 0 means `spec.port`.
    #[serde(default)]
    pub port: u16,
    /// A TCP connect is enough: for programs that speak no HTTP on a ready path.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tcp: bool,
    /// Longest wait for readiness before the start counts as failed.
    #[serde(default = "ReadinessProbe::default_timeout")]
    pub timeout: Duration,
}

fn default_probe_path() -> String {
    "/".into()
}

/// Longest readiness timeout a template may ask for: a start that takes longer holds a
/// worker and the actor's lease for too long.
pub const MAX_READINESS_TIMEOUT: Duration = Duration::from_secs(600);

impl ReadinessProbe {
    /// Thirty seconds: enough for an interpreter to load its program, short enough that a
    /// program that never listens frees its worker soon.
    pub fn default_timeout() -> Duration {
        Duration::from_secs(30)
    }

    /// A TCP connect to `spec.port`, with the default timeout: what a `process` template
    /// without a probe gets.
    pub fn tcp_default() -> Self {
        Self {
            tcp: true,
            ..Self::default()
        }
    }
}

impl Default for ReadinessProbe {
    fn default() -> Self {
        Self {
            path: default_probe_path(),
            port: 0,
            tcp: false,
            timeout: Self::default_timeout(),
        }
    }
}

/// Whether a running actor may be suspended to make room for another when every worker
/// of its pools is taken.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Eviction {
    /// May be chosen as a victim while nothing is in flight to it, least recently used
    /// first.
    #[default]
    Idle,
    /// Never chosen; it leaves its worker only by its idle timeout or an explicit call.
    Never,
}

impl Eviction {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// The wire and manifest spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Eviction::Idle => "Idle",
            Eviction::Never => "Never",
        }
    }

    /// Parses the wire spelling; empty is the default.
    pub fn parse(field: &str, s: &str) -> Result<Self, ModelError> {
        match s {
            "" | "Idle" => Ok(Eviction::Idle),
            "Never" => Ok(Eviction::Never),
            other => Err(ModelError::invalid(field, other, "must be Idle or Never")),
        }
    }
}

/// The sandbox classes ate knows.
pub const SANDBOX_CLASSES: &[&str] = &["wasm", "process"];

/// What an actor runs. Immutable once created: make a new template for a new version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TemplateSpec {
    pub sandbox_class: String,
    /// The workload: a wasm module (path or URL) for `wasm`. Optional for `process`: a
    /// program file (path or URL, checked against `moduleSha256` as for wasm) that the node
    /// places read-only at `/ate/module`, so a template can ship a script without a rootfs
    /// of its own.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub module: String,
    /// Hex sha256 of the module. Required for a URL module, so a node never runs bytes
    /// nobody vouched for; checked for a path module when given.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub module_sha256: String,
    /// The program and its leading arguments (`process`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Appended to `command`, so a template can keep an image's entrypoint and vary only
    /// its arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Absolute path, on the node, of a file of `NAME=value` lines read at each start of a
    /// `process` actor: secret values stay on the node instead of in the template (which
    /// every API reader sees). Entries of `env` win over it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub env_file: String,
    /// The program's working directory (absolute; empty = `/`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub working_dir: String,
    /// The port a `process` program listens on inside its own network namespace, given to
    /// it as `PORT`; the node forwards requests there.
    #[serde(
        default = "TemplateSpec::default_port",
        skip_serializing_if = "TemplateSpec::is_default_port"
    )]
    pub port: u16,
    /// The root filesystem of a `process` actor: an absolute path, on the node, of a
    /// directory or of a tarball (`.tar`, `.tar.gz`, `.tgz`, `.tar.zst`); empty = the
    /// host filesystem, read-only. A path without one of those suffixes is taken as a
    /// directory (the node cannot tell before it looks).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub rootfs: String,
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
    /// Whether the actor may be suspended to make room for another (`Idle`, the default)
    /// or keeps its worker until its idle timeout (`Never`).
    #[serde(default, skip_serializing_if = "Eviction::is_default")]
    pub eviction: Eviction,
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
            args: Vec::new(),
            env: Vec::new(),
            env_file: String::new(),
            working_dir: String::new(),
            port: Self::default_port(),
            rootfs: String::new(),
            readiness: None,
            durable_dirs: Vec::new(),
            snapshots: SnapshotsConfig::default(),
            worker_selector: LabelSelector::default(),
            idle_timeout: Self::default_idle_timeout(),
            eviction: Eviction::default(),
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

    /// 8080: the port most HTTP programs listen on when `PORT` says nothing else.
    pub fn default_port() -> u16 {
        8080
    }

    fn is_default_port(port: &u16) -> bool {
        *port == Self::default_port()
    }

    /// The probe a node runs to tell that the workload is ready: the template's, with its
    /// port 0 made `port`; for a `process` template without one, a TCP connect to `port`
    /// with the default timeout.
    pub fn probe(&self) -> ReadinessProbe {
        let mut p = match &self.readiness {
            Some(p) => p.clone(),
            None if self.sandbox_class == "process" => ReadinessProbe::tcp_default(),
            None => ReadinessProbe::default(),
        };
        if p.port == 0 {
            p.port = self.port;
        }
        p
    }

    /// Node capabilities an actor of this template needs beyond its sandbox class: a
    /// `process` actor whose pauses or commits keep memory ([`SnapshotScope::Full`], the
    /// default) needs CRIU ([`CAPABILITY_CRIU`]). A process template that only keeps its
    /// durable dirs says so with `onPause: Data, onCommit: Data`, and runs on any node.
    pub fn required_capabilities(&self) -> Vec<&'static str> {
        let full = self.snapshots.on_pause == SnapshotScope::Full
            || self.snapshots.on_commit == SnapshotScope::Full;
        if self.sandbox_class == "process" && full {
            vec![CAPABILITY_CRIU]
        } else {
            Vec::new()
        }
    }
}

/// The node capability of checkpointing and restoring a process tree with CRIU: what a
/// `process` actor needs for Full snapshots. Nodes advertise it in their registration;
/// workers carry it in `capabilities`, the field the scheduler selects on.
pub const CAPABILITY_CRIU: &str = "criu";

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
    /// The cgroup memory limit of a `process` actor, in MiB: past it the kernel kills the
    /// program (and the node reports it exited).
    #[serde(default = "Limits::default_memory_mib")]
    pub memory_mib: u32,
}

/// The bounds of `limits.memoryMib`: below 16 MiB hardly a runtime starts; 256 GiB is
/// more than any one actor should hold.
pub const MEMORY_MIB_RANGE: std::ops::RangeInclusive<u32> = 16..=262_144;

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

    /// 512 MiB: room for an interpreter and an agent's working set.
    pub fn default_memory_mib() -> u32 {
        512
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_pages: Self::default_memory_pages(),
            request_budget: Self::default_request_budget(),
            memory_mib: Self::default_memory_mib(),
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
        if !MEMORY_MIB_RANGE.contains(&s.limits.memory_mib) {
            return Err(ModelError::invalid(
                "spec.limits.memoryMib",
                s.limits.memory_mib.to_string(),
                format!(
                    "must be between {} and {}",
                    MEMORY_MIB_RANGE.start(),
                    MEMORY_MIB_RANGE.end()
                ),
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
        if s.port == 0 {
            return Err(ModelError::invalid(
                "spec.port",
                "0",
                "must be between 1 and 65535",
            ));
        }
        for (field, path) in [
            ("spec.workingDir", &s.working_dir),
            ("spec.envFile", &s.env_file),
            ("spec.rootfs", &s.rootfs),
        ] {
            if !path.is_empty() {
                validate_absolute(field, path)?;
            }
        }
        if let Some(p) = &s.readiness {
            if !p.path.starts_with('/') {
                return Err(ModelError::invalid(
                    "spec.readiness.path",
                    &p.path,
                    "must start with '/'",
                ));
            }
            if p.timeout.is_zero() || p.timeout > MAX_READINESS_TIMEOUT {
                return Err(ModelError::invalid(
                    "spec.readiness.timeout",
                    p.timeout.to_string(),
                    format!("must be more than zero and at most {MAX_READINESS_TIMEOUT}"),
                ));
            }
        }
        validate_durable_dirs(&s.durable_dirs)?;
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
        if s.snapshots.max_bytes > MAX_SNAPSHOT_MAX_BYTES {
            return Err(ModelError::invalid(
                "spec.snapshots.maxBytes",
                s.snapshots.max_bytes.to_string(),
                format!("must be at most {MAX_SNAPSHOT_MAX_BYTES} (1 TiB); 0 means the default"),
            ));
        }
        s.worker_selector.validate("spec.workerSelector")
    }
}

/// Checks that `path` is absolute and has no `..` component: the node resolves these
/// paths on its own filesystem, so a relative or escaping one could name anything.
fn validate_absolute(field: &str, path: &str) -> Result<(), ModelError> {
    if !path.starts_with('/') || path.split('/').any(|c| c == "..") {
        return Err(ModelError::invalid(
            field,
            path,
            "must be an absolute path without '..'",
        ));
    }
    Ok(())
}

/// Paths a durable dir must not be, nor be under: the sandbox mounts its own filesystems
/// there, and saving or restoring them as data would be meaningless or harmful. `/` is
/// refused too (it would hold everything).
const RESERVED_DIRS: &[&str] = &["proc", "sys", "dev", "tmp"];

/// The components of an absolute path, without empty and `.` ones: `/data//x/.` is
/// `["data", "x"]`.
fn components(path: &str) -> Vec<&str> {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect()
}

/// Durable dirs are absolute, not `/` nor a system dir or under one, and not nested in
/// each other (one dir's data would be saved twice, and restored in an undefined order).
fn validate_durable_dirs(dirs: &[String]) -> Result<(), ModelError> {
    for (i, d) in dirs.iter().enumerate() {
        let field = format!("spec.durableDirs[{i}]");
        validate_absolute(&field, d)?;
        let parts = components(d);
        match parts.first() {
            None => return Err(ModelError::invalid(field, d, "must not be '/'")),
            Some(top) if RESERVED_DIRS.contains(top) => {
                return Err(ModelError::invalid(
                    field,
                    d,
                    "must not be /proc, /sys, /dev, /tmp or under them",
                ));
            }
            Some(_) => {}
        }
        for (j, other) in dirs[..i].iter().enumerate() {
            let theirs = components(other);
            let n = parts.len().min(theirs.len());
            if parts[..n] == theirs[..n] {
                return Err(ModelError::invalid(
                    field,
                    d,
                    format!("must not be, contain or lie in spec.durableDirs[{j}] ({other})"),
                ));
            }
        }
    }
    Ok(())
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

    fn process() -> ActorTemplate {
        ActorTemplate {
            namespace: "demo".into(),
            name: "p".into(),
            spec: TemplateSpec {
                sandbox_class: "process".into(),
                command: vec!["/usr/bin/python3".into(), "-m".into(), "http.server".into()],
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn old_templates_parse_unchanged_and_new_fields_default() {
        let old = r#"{"sandboxClass":"wasm","module":"/m.wasm","readiness":{"path":"/readyz","port":9000},
            "limits":{"memoryPages":16,"requestBudget":"2s"}}"#;
        let s: TemplateSpec = serde_json::from_str(old).unwrap();
        assert_eq!(s.module, "/m.wasm");
        assert!(s.args.is_empty() && s.env_file.is_empty() && s.working_dir.is_empty());
        assert!(s.rootfs.is_empty());
        assert_eq!(s.port, 8080);
        assert_eq!(s.limits.memory_pages, 16);
        assert_eq!(s.limits.memory_mib, 512);
        let p = s.readiness.clone().unwrap();
        assert_eq!((p.path.as_str(), p.port, p.tcp), ("/readyz", 9000, false));
        assert_eq!(p.timeout, Duration::from_secs(30));
        // Serializing leaves out what is at its default, so a wasm template reads as before.
        let back = serde_json::to_value(&s).unwrap();
        assert!(back.get("port").is_none() && back.get("args").is_none());
        assert!(back["readiness"].get("tcp").is_none());
        assert_eq!(serde_json::from_value::<TemplateSpec>(back).unwrap(), s);

        let text = r#"{"sandboxClass":"process","command":["/bin/app"],"args":["--verbose"],
            "envFile":"/etc/ate/app.env","workingDir":"/srv","port":3000,
            "rootfs":"/var/lib/images/app.tar.zst","readiness":{"tcp":true,"timeout":"1m"},
            "limits":{"memoryMib":2048}}"#;
        let s: TemplateSpec = serde_json::from_str(text).unwrap();
        assert_eq!(s.args, ["--verbose"]);
        assert_eq!(s.env_file, "/etc/ate/app.env");
        assert_eq!(s.working_dir, "/srv");
        assert_eq!(s.port, 3000);
        assert_eq!(s.rootfs, "/var/lib/images/app.tar.zst");
        assert_eq!(s.limits.memory_mib, 2048);
        assert_eq!(s.limits.memory_pages, Limits::default_memory_pages());
        let p = s.probe();
        assert_eq!((p.path.as_str(), p.port, p.tcp), ("/", 3000, true));
        assert_eq!(p.timeout, Duration::from_secs(60));
        assert!(
            serde_json::from_str::<TemplateSpec>(r#"{"sandboxClass":"process","image":"x"}"#)
                .is_err()
        );
    }

    #[test]
    fn the_effective_probe() {
        let mut t = process();
        assert_eq!(
            t.spec.probe(),
            ReadinessProbe {
                port: 8080,
                ..ReadinessProbe::tcp_default()
            }
        );
        t.spec.port = 3000;
        t.spec.readiness = Some(ReadinessProbe {
            path: "/healthz".into(),
            ..Default::default()
        });
        let p = t.spec.probe();
        assert_eq!((p.path.as_str(), p.port, p.tcp), ("/healthz", 3000, false));
        t.spec.readiness = Some(ReadinessProbe {
            port: 9000,
            ..Default::default()
        });
        assert_eq!(t.spec.probe().port, 9000);
    }

    #[test]
    fn process_fields_are_checked_and_name_the_field() {
        process().validate().unwrap();
        type Change = Box<dyn Fn(&mut TemplateSpec)>;
        let cases: Vec<(&str, Change)> = vec![
            ("spec.command", Box::new(|s| s.command.clear())),
            ("spec.port", Box::new(|s| s.port = 0)),
            (
                "spec.workingDir",
                Box::new(|s| s.working_dir = "srv".into()),
            ),
            (
                "spec.envFile",
                Box::new(|s| s.env_file = "/etc/../x.env".into()),
            ),
            (
                "spec.rootfs",
                Box::new(|s| s.rootfs = "images/app.tar".into()),
            ),
            (
                "spec.readiness.timeout",
                Box::new(|s| {
                    s.readiness = Some(ReadinessProbe {
                        timeout: Duration::from_secs(0),
                        ..Default::default()
                    })
                }),
            ),
            (
                "spec.readiness.timeout",
                Box::new(|s| {
                    s.readiness = Some(ReadinessProbe {
                        timeout: Duration::from_secs(601),
                        ..Default::default()
                    })
                }),
            ),
            (
                "spec.readiness.path",
                Box::new(|s| {
                    s.readiness = Some(ReadinessProbe {
                        path: "healthz".into(),
                        ..Default::default()
                    })
                }),
            ),
            (
                "spec.limits.memoryMib",
                Box::new(|s| s.limits.memory_mib = 15),
            ),
            (
                "spec.limits.memoryMib",
                Box::new(|s| s.limits.memory_mib = 262_145),
            ),
            (
                "spec.durableDirs[0]",
                Box::new(|s| s.durable_dirs = vec!["/".into()]),
            ),
            (
                "spec.durableDirs[0]",
                Box::new(|s| s.durable_dirs = vec!["//.".into()]),
            ),
            (
                "spec.durableDirs[0]",
                Box::new(|s| s.durable_dirs = vec!["/proc".into()]),
            ),
            (
                "spec.durableDirs[0]",
                Box::new(|s| s.durable_dirs = vec!["/tmp/x".into()]),
            ),
            (
                "spec.durableDirs[0]",
                Box::new(|s| s.durable_dirs = vec!["/dev/shm".into()]),
            ),
            (
                "spec.durableDirs[0]",
                Box::new(|s| s.durable_dirs = vec!["/sys/".into()]),
            ),
            (
                "spec.durableDirs[1]",
                Box::new(|s| s.durable_dirs = vec!["/data".into(), "/data/cache".into()]),
            ),
            (
                "spec.durableDirs[1]",
                Box::new(|s| s.durable_dirs = vec!["/data/cache".into(), "/data/".into()]),
            ),
            (
                "spec.durableDirs[1]",
                Box::new(|s| s.durable_dirs = vec!["/data".into(), "/data".into()]),
            ),
        ];
        for (field, change) in cases {
            let mut t = process();
            change(&mut t.spec);
            let e = t.validate().unwrap_err();
            assert_eq!(e.field(), field, "{e}");
        }
        let mut t = process();
        t.spec.working_dir = "/srv".into();
        t.spec.env_file = "/etc/ate/app.env".into();
        t.spec.rootfs = "/var/lib/images/app".into();
        t.spec.port = 65535;
        t.spec.durable_dirs = vec!["/data".into(), "/database".into(), "/home/agent".into()];
        t.spec.limits.memory_mib = 16;
        t.spec.readiness = Some(ReadinessProbe {
            timeout: MAX_READINESS_TIMEOUT,
            ..Default::default()
        });
        t.validate().unwrap();
    }

    #[test]
    fn snapshot_max_bytes_defaults_parses_and_is_bounded() {
        let s: TemplateSpec =
            serde_json::from_str(r#"{"sandboxClass":"wasm","module":"/m.wasm"}"#).unwrap();
        assert_eq!(s.snapshots.max_bytes, 0);
        assert_eq!(s.snapshots.max_bytes(), DEFAULT_SNAPSHOT_MAX_BYTES);
        assert!(
            !serde_json::to_string(&s).unwrap().contains("maxBytes"),
            "an unset limit is not written, so older readers take the spec"
        );
        let s: TemplateSpec = serde_json::from_str(
            r#"{"sandboxClass":"wasm","module":"/m.wasm","snapshots":{"maxBytes":1048576}}"#,
        )
        .unwrap();
        assert_eq!(s.snapshots.max_bytes(), 1 << 20);
        let mut t = wasm("/m.wasm");
        t.spec.snapshots.max_bytes = MAX_SNAPSHOT_MAX_BYTES;
        t.validate().unwrap();
        t.spec.snapshots.max_bytes = MAX_SNAPSHOT_MAX_BYTES + 1;
        let e = t.validate().unwrap_err();
        assert_eq!(e.field(), "spec.snapshots.maxBytes", "{e}");
        assert!(e.to_string().contains("at most"), "{e}");
        let negative = serde_json::from_str::<TemplateSpec>(
            r#"{"sandboxClass":"wasm","module":"/m.wasm","snapshots":{"maxBytes":-1}}"#,
        );
        assert!(negative.is_err());
    }

    #[test]
    fn only_full_snapshots_of_process_actors_need_criu() {
        let mut t = process();
        assert_eq!(t.spec.required_capabilities(), [CAPABILITY_CRIU]);
        t.spec.snapshots.on_commit = SnapshotScope::Data;
        assert_eq!(t.spec.required_capabilities(), [CAPABILITY_CRIU]);
        t.spec.snapshots.on_pause = SnapshotScope::Data;
        assert!(t.spec.required_capabilities().is_empty());
        let w = wasm("/m.wasm");
        assert!(w.spec.required_capabilities().is_empty());
    }
}
