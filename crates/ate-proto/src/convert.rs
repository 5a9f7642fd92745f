//! Conversions between wire messages and model types, both ways: the server turns requests
//! into model values and model values into responses; the CLI turns responses back into
//! model values to print them.

use ate_model as m;

use crate::ateapi as pb;

/// Field-selector-free helpers for optional sub-messages.
fn selector_to_pb(s: &m::LabelSelector) -> Option<pb::Selector> {
    (!s.is_empty()).then(|| pb::Selector {
        match_labels: s.match_labels.clone().into_iter().collect(),
    })
}

pub fn selector_from_pb(s: Option<&pb::Selector>) -> m::LabelSelector {
    m::LabelSelector::new(
        s.map(|s| s.match_labels.clone().into_iter().collect())
            .unwrap_or_default(),
    )
}

fn labels(map: &std::collections::HashMap<String, String>) -> m::Labels {
    map.clone().into_iter().collect()
}

fn pb_labels(l: &m::Labels) -> std::collections::HashMap<String, String> {
    l.clone().into_iter().collect()
}

pub fn actor_ref(r: &m::ActorRef) -> pb::ActorRef {
    pb::ActorRef {
        atespace: r.atespace.clone(),
        name: r.id.clone(),
    }
}

pub fn actor_ref_from_pb(r: Option<&pb::ActorRef>) -> m::ActorRef {
    r.map(|r| m::ActorRef::new(&r.atespace, &r.name))
        .unwrap_or_default()
}

fn snapshot_to_pb(s: &m::SnapshotInfo) -> pb::SnapshotInfo {
    match s {
        m::SnapshotInfo::External { uri_prefix } => pb::SnapshotInfo {
            r#type: pb::SnapshotType::External as i32,
            data: Some(pb::snapshot_info::Data::External(
                pb::ExternalSnapshotInfo {
                    snapshot_uri_prefix: uri_prefix.clone(),
                },
            )),
        },
        m::SnapshotInfo::Local {
            prefix,
            nodes,
            fallback,
        } => pb::SnapshotInfo {
            r#type: pb::SnapshotType::Local as i32,
            data: Some(pb::snapshot_info::Data::Local(pb::LocalSnapshotInfo {
                snapshot_prefix: prefix.clone(),
                node_vms_with_local_snapshots: nodes.clone(),
                durable_fallback: fallback.clone(),
            })),
        },
    }
}

fn snapshot_from_pb(s: &pb::SnapshotInfo) -> Option<m::SnapshotInfo> {
    match s.data.as_ref()? {
        pb::snapshot_info::Data::External(e) => Some(m::SnapshotInfo::External {
            uri_prefix: e.snapshot_uri_prefix.clone(),
        }),
        pb::snapshot_info::Data::Local(l) => Some(m::SnapshotInfo::Local {
            prefix: l.snapshot_prefix.clone(),
            nodes: l.node_vms_with_local_snapshots.clone(),
            fallback: l.durable_fallback.clone(),
        }),
    }
}

pub fn actor_to_pb(a: &m::Actor) -> pb::Actor {
    let w = a.worker.clone().unwrap_or_default();
    pb::Actor {
        actor_id: a.id.clone(),
        version: a.version as i64,
        actor_template_namespace: a.template.namespace.clone(),
        actor_template_name: a.template.name.clone(),
        status: a.status as i32,
        ateom_pod_namespace: w.namespace,
        ateom_pod_name: w.name,
        ateom_pod_ip: w.address,
        in_progress_snapshot: a.in_progress_snapshot.clone(),
        ateom_pod_uid: String::new(),
        latest_snapshot_info: a.latest_snapshot.as_ref().map(snapshot_to_pb),
        worker_selector: selector_to_pb(&a.worker_selector),
        worker_pool_name: w.pool,
        atespace: a.atespace.clone(),
        node_name: w.node_name,
        conditions: a
            .conditions
            .iter()
            .map(|c| pb::ActorCondition {
                r#type: c.kind.clone(),
                reason: c.reason.clone(),
                message: c.message.clone(),
                time_ms: c.time_ms,
            })
            .collect(),
        uid: a.uid.clone().unwrap_or_default(),
    }
}

pub fn actor_from_pb(a: &pb::Actor) -> m::Actor {
    let worker = (!a.ateom_pod_name.is_empty()).then(|| m::WorkerPlacement {
        namespace: a.ateom_pod_namespace.clone(),
        pool: a.worker_pool_name.clone(),
        name: a.ateom_pod_name.clone(),
        node_name: a.node_name.clone(),
        address: a.ateom_pod_ip.clone(),
    });
    m::Actor {
        atespace: a.atespace.clone(),
        id: a.actor_id.clone(),
        uid: (!a.uid.is_empty()).then(|| a.uid.clone()),
        // A fence of the control plane's workflows, never on the wire.
        lease_generation: 0,
        version: a.version.max(0) as u64,
        template: m::NamespacedName::new(&a.actor_template_namespace, &a.actor_template_name),
        status: m::ActorStatus::from_wire(a.status).unwrap_or_default(),
        worker_selector: selector_from_pb(a.worker_selector.as_ref()),
        worker,
        in_progress_snapshot: a.in_progress_snapshot.clone(),
        latest_snapshot: a.latest_snapshot_info.as_ref().and_then(snapshot_from_pb),
        conditions: a
            .conditions
            .iter()
            .map(|c| m::ActorCondition {
                kind: c.r#type.clone(),
                reason: c.reason.clone(),
                message: c.message.clone(),
                time_ms: c.time_ms,
            })
            .collect(),
    }
}

pub fn worker_to_pb(w: &m::Worker) -> pb::Worker {
    let a = w.assignment.clone().unwrap_or_default();
    pb::Worker {
        worker_namespace: w.namespace.clone(),
        worker_pool: w.pool.clone(),
        worker_pod: w.name.clone(),
        actor_namespace: a.template.namespace,
        actor_template: a.template.name,
        actor_id: a.actor.id,
        ip: w.address.clone(),
        version: w.version as i64,
        worker_pod_uid: String::new(),
        node_name: w.node_name.clone(),
        actor_atespace: a.actor.atespace,
        sandbox_class: w.sandbox_class.clone(),
        cached_snapshots: w.cached_snapshots.clone(),
        labels: pb_labels(&w.labels),
        node_incarnation: w.node_incarnation.clone(),
        capabilities: w.capabilities.clone(),
    }
}

pub fn worker_from_pb(w: &pb::Worker) -> m::Worker {
    let assignment = (!w.actor_id.is_empty()).then(|| m::Assignment {
        actor: m::ActorRef::new(&w.actor_atespace, &w.actor_id),
        template: m::NamespacedName::new(&w.actor_namespace, &w.actor_template),
        lease_generation: 0,
    });
    m::Worker {
        namespace: w.worker_namespace.clone(),
        pool: w.worker_pool.clone(),
        name: w.worker_pod.clone(),
        version: w.version.max(0) as u64,
        node_name: w.node_name.clone(),
        node_incarnation: w.node_incarnation.clone(),
        address: w.ip.clone(),
        sandbox_class: w.sandbox_class.clone(),
        labels: labels(&w.labels),
        assignment,
        cached_snapshots: w.cached_snapshots.clone(),
        capabilities: w.capabilities.clone(),
    }
}

fn scope_to_pb(s: m::SnapshotScope) -> i32 {
    match s {
        m::SnapshotScope::Full => pb::SnapshotScope::Full as i32,
        m::SnapshotScope::Data => pb::SnapshotScope::Data as i32,
    }
}

fn scope_from_pb(n: i32) -> m::SnapshotScope {
    if n == pb::SnapshotScope::Data as i32 {
        m::SnapshotScope::Data
    } else {
        m::SnapshotScope::Full
    }
}

pub fn template_to_pb(t: &m::ActorTemplate) -> pb::ActorTemplate {
    let s = &t.spec;
    pb::ActorTemplate {
        namespace: t.namespace.clone(),
        name: t.name.clone(),
        version: t.version as i64,
        spec: Some(pb::ActorTemplateSpec {
            sandbox_class: s.sandbox_class.clone(),
            module: s.module.clone(),
            command: s.command.clone(),
            env: s
                .env
                .iter()
                .map(|e| pb::EnvVar {
                    name: e.name.clone(),
                    value: e.value.clone(),
                })
                .collect(),
            readiness: s.readiness.as_ref().map(|r| pb::ReadinessProbe {
                path: r.path.clone(),
                port: r.port.into(),
                tcp: r.tcp,
                timeout_ms: r.timeout.0.as_millis() as u64,
            }),
            durable_dirs: s.durable_dirs.clone(),
            snapshots: Some(pb::SnapshotsConfig {
                location: s.snapshots.location.clone(),
                on_pause: scope_to_pb(s.snapshots.on_pause),
                on_commit: scope_to_pb(s.snapshots.on_commit),
                keep: Some(s.snapshots.keep),
                max_bytes: s.snapshots.max_bytes,
            }),
            worker_selector: selector_to_pb(&s.worker_selector),
            idle_timeout_ms: Some(s.idle_timeout.0.as_millis() as u64),
            route_timeout_ms: s.route_timeout.0.as_millis() as u64,
            module_sha256: s.module_sha256.clone(),
            egress: s.egress.clone(),
            limits: Some(pb::Limits {
                memory_pages: s.limits.memory_pages,
                request_budget_ms: Some(s.limits.request_budget.0.as_millis() as u64),
                memory_mib: s.limits.memory_mib,
            }),
            args: s.args.clone(),
            env_file: s.env_file.clone(),
            working_dir: s.working_dir.clone(),
            port: s.port.into(),
            rootfs: s.rootfs.clone(),
            eviction: if s.eviction == m::Eviction::default() {
                String::new()
            } else {
                s.eviction.as_str().into()
            },
        }),
        status: Some(pb::ActorTemplateStatus {
            phase: t.status.phase.clone(),
            golden_actor: t.status.golden_actor.clone(),
            golden_snapshot: t.status.golden_snapshot.clone(),
            message: t.status.message.clone(),
        }),
    }
}

/// A wire port as the model's, naming the field if it does not fit.
fn port_from_pb(field: &str, port: u32) -> Result<u16, m::ModelError> {
    u16::try_from(port)
        .map_err(|_| m::ModelError::invalid(field, port.to_string(), "must be at most 65535"))
}

fn millis(ms: u64) -> m::Duration {
    m::Duration(std::time::Duration::from_millis(ms))
}

/// Converts a wire template. Fails only on values the model cannot hold (a port above
/// 65535), naming the field. Zeros the wire uses for "unset" become the model's defaults.
pub fn template_from_pb(t: &pb::ActorTemplate) -> Result<m::ActorTemplate, m::ModelError> {
    let s = t.spec.clone().unwrap_or_default();
    let readiness = s
        .readiness
        .as_ref()
        .map(|r| {
            Ok::<_, m::ModelError>(m::ReadinessProbe {
                path: r.path.clone(),
                port: port_from_pb("spec.readiness.port", r.port)?,
                tcp: r.tcp,
                timeout: match r.timeout_ms {
                    0 => m::ReadinessProbe::default_timeout(),
                    ms => millis(ms),
                },
            })
        })
        .transpose()?;
    let port = match port_from_pb("spec.port", s.port)? {
        0 => m::TemplateSpec::default_port(),
        p => p,
    };
    let snapshots = s.snapshots.clone().unwrap_or_default();
    let limits = s.limits.unwrap_or_default();
    let status = t.status.clone().unwrap_or_default();
    Ok(m::ActorTemplate {
        namespace: t.namespace.clone(),
        name: t.name.clone(),
        version: t.version.max(0) as u64,
        spec: m::TemplateSpec {
            sandbox_class: s.sandbox_class,
            module: s.module,
            command: s.command,
            args: s.args,
            env_file: s.env_file,
            working_dir: s.working_dir,
            port,
            rootfs: s.rootfs,
            env: s
                .env
                .into_iter()
                .map(|e| m::EnvVar {
                    name: e.name,
                    value: e.value,
                })
                .collect(),
            readiness,
            durable_dirs: s.durable_dirs,
            snapshots: m::SnapshotsConfig {
                location: snapshots.location,
                on_pause: scope_from_pb(snapshots.on_pause),
                on_commit: scope_from_pb(snapshots.on_commit),
                keep: snapshots
                    .keep
                    .unwrap_or_else(m::SnapshotsConfig::default_keep),
                max_bytes: snapshots.max_bytes,
            },
            worker_selector: selector_from_pb(s.worker_selector.as_ref()),
            idle_timeout: s
                .idle_timeout_ms
                .map(|ms| m::Duration(std::time::Duration::from_millis(ms)))
                .unwrap_or_else(m::TemplateSpec::default_idle_timeout),
            eviction: m::Eviction::parse("spec.eviction", &s.eviction)?,
            route_timeout: m::Duration(std::time::Duration::from_millis(s.route_timeout_ms)),
            module_sha256: s.module_sha256,
            egress: s.egress,
            limits: m::Limits {
                memory_pages: match limits.memory_pages {
                    0 => m::Limits::default_memory_pages(),
                    n => n,
                },
                request_budget: limits
                    .request_budget_ms
                    .map(millis)
                    .unwrap_or_else(m::Limits::default_request_budget),
                memory_mib: match limits.memory_mib {
                    0 => m::Limits::default_memory_mib(),
                    n => n,
                },
            },
        },
        status: m::TemplateStatus {
            phase: status.phase,
            golden_actor: status.golden_actor,
            golden_snapshot: status.golden_snapshot,
            message: status.message,
        },
    })
}

pub fn pool_to_pb(p: &m::WorkerPool) -> pb::WorkerPool {
    pb::WorkerPool {
        namespace: p.namespace.clone(),
        name: p.name.clone(),
        version: p.version as i64,
        spec: Some(pb::WorkerPoolSpec {
            replicas: p.spec.replicas,
            sandbox_class: p.spec.sandbox_class.clone(),
            labels: pb_labels(&p.spec.labels),
            node_selector: pb_labels(&p.spec.node_selector),
        }),
        status: Some(pb::WorkerPoolStatus {
            replicas: p.status.replicas,
        }),
    }
}

pub fn pool_from_pb(p: &pb::WorkerPool) -> m::WorkerPool {
    let s = p.spec.clone().unwrap_or_default();
    m::WorkerPool {
        namespace: p.namespace.clone(),
        name: p.name.clone(),
        version: p.version.max(0) as u64,
        spec: m::PoolSpec {
            replicas: s.replicas,
            sandbox_class: s.sandbox_class,
            labels: labels(&s.labels),
            node_selector: labels(&s.node_selector),
        },
        status: m::PoolStatus {
            replicas: p.status.as_ref().map(|s| s.replicas).unwrap_or_default(),
        },
    }
}

pub fn node_to_pb(n: &m::Node) -> pb::Node {
    pb::Node {
        name: n.name.clone(),
        version: n.version as i64,
        address: n.address.clone(),
        labels: pb_labels(&n.labels),
        sandbox_classes: n.sandbox_classes.clone(),
        capacity: n.capacity,
        status: n.status.clone(),
        incarnation: n.incarnation.clone(),
        cordoned: n.cordoned,
        capabilities: n.capabilities.clone(),
    }
}

pub fn node_from_pb(n: &pb::Node) -> m::Node {
    m::Node {
        name: n.name.clone(),
        version: n.version.max(0) as u64,
        address: n.address.clone(),
        labels: labels(&n.labels),
        sandbox_classes: n.sandbox_classes.clone(),
        capacity: n.capacity,
        status: n.status.clone(),
        incarnation: n.incarnation.clone(),
        cordoned: n.cordoned,
        capabilities: n.capabilities.clone(),
    }
}

pub fn audit_event_to_pb(e: &m::AuditEvent) -> pb::AuditEvent {
    pb::AuditEvent {
        id: e.id.clone(),
        time_unix_ms: e.time_ms as i64,
        subject: e.subject.clone(),
        role: e.role.clone(),
        method: e.method.clone(),
        atespace: e.atespace.clone(),
        target: e.target.clone(),
        result: e.result.clone(),
        code: e.code.clone(),
        message: e.message.clone(),
    }
}

pub fn audit_event_from_pb(e: &pb::AuditEvent) -> m::AuditEvent {
    m::AuditEvent {
        id: e.id.clone(),
        time_ms: e.time_unix_ms.max(0) as u64,
        subject: e.subject.clone(),
        role: e.role.clone(),
        method: e.method.clone(),
        atespace: e.atespace.clone(),
        target: e.target.clone(),
        result: e.result.clone(),
        code: e.code.clone(),
        message: e.message.clone(),
        version: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_round_trips() {
        let t = m::ActorTemplate {
            namespace: "demo".into(),
            name: "counter".into(),
            version: 3,
            spec: m::TemplateSpec {
                sandbox_class: "wasm".into(),
                module: "counter.wasm".into(),
                env: vec![m::EnvVar {
                    name: "A".into(),
                    value: "1".into(),
                }],
                readiness: Some(m::ReadinessProbe {
                    path: "/readyz".into(),
                    port: 8080,
                    tcp: true,
                    timeout: m::Duration::from_secs(45),
                }),
                durable_dirs: vec!["/data".into()],
                snapshots: m::SnapshotsConfig {
                    location: "file:///tmp/s".into(),
                    on_pause: m::SnapshotScope::Full,
                    on_commit: m::SnapshotScope::Data,
                    keep: 5,
                    max_bytes: 3 << 30,
                },
                worker_selector: m::LabelSelector::parse("s", "tier=gold").unwrap(),
                idle_timeout: m::Duration::from_secs(0),
                route_timeout: m::Duration::from_secs(90),
                module_sha256: "ab".repeat(32),
                egress: vec!["api.example.com:443".into(), "*.models.dev".into()],
                limits: m::Limits {
                    memory_pages: 17,
                    request_budget: m::Duration::from_secs(3),
                    memory_mib: 1024,
                },
                args: vec!["--port".into(), "3000".into()],
                env_file: "/etc/ate/app.env".into(),
                working_dir: "/srv".into(),
                port: 3000,
                rootfs: "/var/lib/images/app.tgz".into(),
                eviction: m::Eviction::Never,
                ..Default::default()
            },
            status: m::TemplateStatus {
                phase: "Ready".into(),
                ..Default::default()
            },
        };
        assert_eq!(template_from_pb(&template_to_pb(&t)).unwrap(), t);
    }

    #[test]
    fn an_unknown_eviction_names_the_field() {
        let wire = pb::ActorTemplate {
            spec: Some(pb::ActorTemplateSpec {
                eviction: "Sometimes".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let e = template_from_pb(&wire).unwrap_err().to_string();
        assert!(e.contains("spec.eviction"), "{e}");
    }

    #[test]
    fn template_zeros_on_the_wire_read_as_defaults() {
        let wire = pb::ActorTemplate {
            namespace: "demo".into(),
            name: "p".into(),
            spec: Some(pb::ActorTemplateSpec {
                sandbox_class: "process".into(),
                command: vec!["/bin/app".into()],
                readiness: Some(pb::ReadinessProbe {
                    path: "/".into(),
                    ..Default::default()
                }),
                limits: Some(pb::Limits::default()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let t = template_from_pb(&wire).unwrap();
        assert_eq!(t.spec.port, 8080);
        assert_eq!(t.spec.limits.memory_mib, 512);
        assert_eq!(
            t.spec.readiness.as_ref().map(|r| r.timeout),
            Some(m::ReadinessProbe::default_timeout())
        );
        let mut bad = wire.clone();
        bad.spec.as_mut().unwrap().port = 70_000;
        assert_eq!(template_from_pb(&bad).unwrap_err().field(), "spec.port");
    }

    #[test]
    fn actor_and_worker_round_trip() {
        let a = m::Actor {
            atespace: "team-a".into(),
            id: "x".into(),
            uid: Some("0f3c".into()),
            lease_generation: 0,
            version: 7,
            template: m::NamespacedName::new("demo", "counter"),
            status: m::ActorStatus::Running,
            worker_selector: m::LabelSelector::parse("s", "tier=gold").unwrap(),
            worker: Some(m::WorkerPlacement {
                namespace: "default".into(),
                pool: "cpu".into(),
                name: "cpu-0".into(),
                node_name: "n1".into(),
                address: "127.0.0.1:9000".into(),
            }),
            in_progress_snapshot: String::new(),
            latest_snapshot: Some(m::SnapshotInfo::Local {
                prefix: "file:///s/team-a/x/2".into(),
                nodes: vec!["n1".into()],
                fallback: "file:///s/team-a/x/1".into(),
            }),
            conditions: vec![m::ActorCondition {
                kind: m::STATE_LOST.into(),
                reason: "NodeLost".into(),
                message: "node n1 was lost".into(),
                time_ms: 5,
            }],
        };
        assert_eq!(actor_from_pb(&actor_to_pb(&a)), a);
        let w = m::Worker {
            namespace: "default".into(),
            pool: "cpu".into(),
            name: "cpu-0".into(),
            version: 2,
            node_name: "n1".into(),
            assignment: Some(m::Assignment {
                actor: a.actor_ref(),
                template: a.template.clone(),
                lease_generation: 0,
            }),
            cached_snapshots: vec!["s1".into()],
            node_incarnation: "i1".into(),
            capabilities: vec!["criu".into()],
            ..Default::default()
        };
        assert_eq!(worker_from_pb(&worker_to_pb(&w)), w);
    }

    #[test]
    fn node_round_trips_with_its_cordon() {
        let n = m::Node {
            name: "n1".into(),
            version: 3,
            address: "127.0.0.1:7411".into(),
            sandbox_classes: vec!["wasm".into()],
            capacity: 8,
            status: "Ready".into(),
            incarnation: "i1".into(),
            cordoned: true,
            capabilities: vec!["criu".into()],
            ..Default::default()
        };
        assert_eq!(node_from_pb(&node_to_pb(&n)), n);
        let open = m::Node {
            cordoned: false,
            ..n
        };
        assert_eq!(node_from_pb(&node_to_pb(&open)), open);
    }
}
