//! The client commands.

use ate_model::{LabelSelector, NamespacedName};
use ate_proto::ateapi as pb;
use ate_proto::ateapi::admin_client::AdminClient;
use ate_proto::ateapi::control_client::ControlClient;
use ate_proto::convert::{
    actor_from_pb, actor_ref, node_from_pb, pool_from_pb, pool_to_pb, template_from_pb,
    template_to_pb, worker_from_pb,
};

use crate::manifest::{self, Manifest};
use crate::output::{Format, Printable, render, render_one};
use crate::{
    AtespaceArgs, CliError, ClientCommand, CreateCommand, Global, LifecycleArgs, LogsArgs,
    NodeArgs, Resource, UpdateCommand, connect,
};

type Client = ControlClient<crate::client::Authed>;

fn usage(msg: &str) -> CliError {
    CliError::Usage(msg.to_string())
}

/// The upstream's rules for `-a` and `-A` on actor commands.
fn list_scope(a: &AtespaceArgs, name: Option<&str>) -> Result<String, CliError> {
    match (&a.atespace, a.all_atespaces, name) {
        (Some(_), true, _) => Err(usage(
            "--atespace and -A/--all-atespaces are mutually exclusive",
        )),
        (_, true, Some(_)) => Err(usage(
            "-A/--all-atespaces cannot be used when getting a specific actor; pass --atespace",
        )),
        (None, false, Some(_)) => Err(usage(
            "--atespace is required when getting a specific actor",
        )),
        (None, false, None) => Err(usage(
            "specify --atespace <name> to list one atespace, or -A/--all-atespaces for all",
        )),
        (Some(ns), false, _) => Ok(ns.clone()),
        (None, true, None) => Ok(String::new()),
    }
}

fn required_atespace(a: Option<String>) -> Result<String, CliError> {
    a.ok_or_else(|| usage("--atespace (-a) is required"))
}

fn ns_name(text: &str, what: &str) -> Result<NamespacedName, CliError> {
    let (ns, name) = text.split_once('/').ok_or_else(|| {
        CliError::Usage(format!(
            "malformed {what}: {text:?} (expected <namespace>/<name>)"
        ))
    })?;
    Ok(NamespacedName::new(ns, name))
}

fn selector(text: &str) -> Result<Option<pb::Selector>, CliError> {
    let sel =
        LabelSelector::parse("--selector", text).map_err(|e| CliError::Usage(e.to_string()))?;
    Ok((!sel.is_empty()).then(|| pb::Selector {
        match_labels: sel.match_labels.into_iter().collect(),
    }))
}

fn pick<T: Printable>(
    items: Vec<T>,
    name: Option<&str>,
    kind: &str,
    key: impl Fn(&T) -> String,
    format: Format,
) -> Result<String, CliError> {
    match name {
        None => render(&items, format),
        Some(n) => {
            let item = items
                .into_iter()
                .find(|i| key(i) == n)
                .ok_or_else(|| CliError::Rpc {
                    action: format!("get {kind}"),
                    code: tonic::Code::NotFound,
                    message: format!("{kind} {n} not found"),
                })?;
            render_one(&item, format)
        }
    }
}

pub async fn run(global: &Global, cmd: ClientCommand) -> Result<String, CliError> {
    // Check flag misuse before connecting, so it is reported even without a server.
    if let ClientCommand::Get {
        resource: Resource::Actors,
        name,
        atespace,
        ..
    } = &cmd
    {
        list_scope(atespace, name.as_deref())?;
    }
    let clients = connect(global).await?;
    let mut c = clients.control;
    match cmd {
        ClientCommand::Get {
            resource,
            name,
            atespace,
            field_selector,
            output,
        } => {
            get(
                &mut c,
                &mut clients.admin.clone(),
                resource,
                name,
                &atespace,
                field_selector.unwrap_or_default(),
                output.output,
            )
            .await
        }
        ClientCommand::Create { what } => create(&mut c, what).await,
        ClientCommand::Update { what } => update(&mut c, what).await,
        ClientCommand::Delete {
            resource,
            name,
            atespace,
        } => delete(&mut c, resource, name, atespace).await,
        ClientCommand::Apply { files } => apply(&mut c, &files).await,
        ClientCommand::Resume(a) => lifecycle(&mut c, "resume", a).await,
        ClientCommand::Suspend(a) => lifecycle(&mut c, "suspend", a).await,
        ClientCommand::Pause(a) => lifecycle(&mut c, "pause", a).await,
        ClientCommand::Logs(a) => logs(&mut c, a).await,
        ClientCommand::Drain(a) => drain(&mut c, a).await,
        ClientCommand::Uncordon(a) => uncordon(&mut c, a).await,
    }
}

/// `node/NAME drained (N actors suspended)`, or an error naming each actor that could
/// not be suspended (the node stays cordoned; draining again retries them).
async fn drain(c: &mut Client, a: NodeArgs) -> Result<String, CliError> {
    let resp = c
        .drain_node(pb::DrainNodeRequest {
            name: a.name.clone(),
        })
        .await
        .map_err(CliError::rpc("drain node"))?
        .into_inner();
    if !resp.failed.is_empty() {
        return Err(CliError::DrainIncomplete {
            node: a.name,
            suspended: resp.suspended.len(),
            failed: resp.failed,
        });
    }
    let n = resp.suspended.len();
    let noun = if n == 1 { "actor" } else { "actors" };
    Ok(format!("node/{} drained ({n} {noun} suspended)\n", a.name))
}

async fn uncordon(c: &mut Client, a: NodeArgs) -> Result<String, CliError> {
    c.uncordon_node(pb::UncordonNodeRequest {
        name: a.name.clone(),
    })
    .await
    .map_err(CliError::rpc("uncordon node"))?;
    Ok(format!("node/{} uncordoned\n", a.name))
}

/// Streams log lines to stdout as they arrive (with `-f`, until interrupted).
async fn logs(c: &mut Client, a: LogsArgs) -> Result<String, CliError> {
    use std::io::Write;
    let atespace = required_atespace(a.atespace)?;
    let r = pb::GetActorLogsRequest {
        actor_ref: Some(actor_ref(&ate_model::ActorRef::new(atespace, a.id))),
        follow: a.follow,
    };
    let mut stream = c
        .get_actor_logs(r)
        .await
        .map_err(CliError::rpc("get logs"))?
        .into_inner();
    let mut out = std::io::stdout().lock();
    while let Some(entry) = stream.message().await.map_err(CliError::rpc("get logs"))? {
        let line = if a.timestamps {
            format!(
                "{} {} {}\n",
                crate::output::rfc3339_ms(entry.time_ms),
                entry.stream,
                entry.text
            )
        } else {
            format!("{}\n", entry.text)
        };
        if out
            .write_all(line.as_bytes())
            .and_then(|_| out.flush())
            .is_err()
        {
            break;
        }
    }
    Ok(String::new())
}

/// `-A` lists the users' atespaces: the system atespace (golden actors) shows only when
/// asked for by name (`-a ate-golden`), whatever the field selector says.
fn hide_system_actors(scope: &str, field_selector: String) -> String {
    if !scope.is_empty() {
        return field_selector;
    }
    let hide = format!("atespace!={}", ate_model::names::GOLDEN_ATESPACE);
    if field_selector.trim().is_empty() {
        hide
    } else {
        format!("{field_selector},{hide}")
    }
}

async fn get(
    c: &mut Client,
    admin: &mut AdminClient<crate::client::Authed>,
    resource: Resource,
    name: Option<String>,
    atespace: &AtespaceArgs,
    field_selector: String,
    format: Format,
) -> Result<String, CliError> {
    let name = name.as_deref();
    match resource {
        Resource::Actors => {
            let scope = list_scope(atespace, name)?;
            if let Some(id) = name {
                let r = pb::GetActorRequest {
                    actor_ref: Some(actor_ref(&ate_model::ActorRef::new(scope, id))),
                };
                let a = c.get_actor(r).await.map_err(CliError::rpc("get actor"))?;
                let a = a.into_inner().actor.unwrap_or_default();
                return render_one(&actor_from_pb(&a), format);
            }
            let field_selector = hide_system_actors(&scope, field_selector);
            let mut actors = Vec::new();
            let mut page_token = String::new();
            loop {
                let r = pb::ListActorsRequest {
                    page_size: 1000,
                    page_token,
                    atespace: scope.clone(),
                    field_selector: field_selector.clone(),
                };
                let resp = c
                    .list_actors(r)
                    .await
                    .map_err(CliError::rpc("list actors"))?;
                let resp = resp.into_inner();
                actors.extend(resp.actors.iter().map(actor_from_pb));
                if resp.next_page_token.is_empty() {
                    break;
                }
                page_token = resp.next_page_token;
            }
            render(&actors, format)
        }
        Resource::Atespaces => {
            if let Some(n) = name {
                let r = pb::GetAtespaceRequest { name: n.into() };
                let a = c
                    .get_atespace(r)
                    .await
                    .map_err(CliError::rpc("get atespace"))?;
                let a = ate_model::Atespace {
                    name: a.into_inner().atespace.unwrap_or_default().name,
                    version: 0,
                };
                return render_one(&a, format);
            }
            let resp = c
                .list_atespaces(pb::ListAtespacesRequest {})
                .await
                .map_err(CliError::rpc("list atespaces"))?;
            let items: Vec<_> = resp
                .into_inner()
                .atespaces
                .into_iter()
                .map(|a| ate_model::Atespace {
                    name: a.name,
                    version: 0,
                })
                .collect();
            render(&items, format)
        }
        Resource::Templates => {
            if let Some(n) = name {
                let id = ns_name(n, "template name")?;
                let r = pb::GetActorTemplateRequest {
                    namespace: id.namespace,
                    name: id.name,
                };
                let t = c
                    .get_actor_template(r)
                    .await
                    .map_err(CliError::rpc("get template"))?;
                let t = template_from_pb(t.get_ref()).map_err(CliError::output)?;
                return render_one(&t, format);
            }
            let resp = c
                .list_actor_templates(pb::ListActorTemplatesRequest::default())
                .await
                .map_err(CliError::rpc("list templates"))?;
            let items = resp
                .get_ref()
                .templates
                .iter()
                .map(template_from_pb)
                .collect::<Result<Vec<_>, _>>()
                .map_err(CliError::output)?;
            render(&items, format)
        }
        Resource::Pools => {
            if let Some(n) = name {
                let id = ns_name(n, "pool name")?;
                let r = pb::GetWorkerPoolRequest {
                    namespace: id.namespace,
                    name: id.name,
                };
                let p = c
                    .get_worker_pool(r)
                    .await
                    .map_err(CliError::rpc("get pool"))?;
                return render_one(&pool_from_pb(p.get_ref()), format);
            }
            let resp = c
                .list_worker_pools(pb::ListWorkerPoolsRequest::default())
                .await
                .map_err(CliError::rpc("list pools"))?;
            let items: Vec<_> = resp.get_ref().pools.iter().map(pool_from_pb).collect();
            render(&items, format)
        }
        Resource::Workers => {
            let resp = c
                .list_workers(pb::ListWorkersRequest { field_selector })
                .await
                .map_err(CliError::rpc("list workers"))?;
            let items: Vec<_> = resp.get_ref().workers.iter().map(worker_from_pb).collect();
            pick(items, name, "worker", |w| w.name.clone(), format)
        }
        Resource::Nodes => {
            let resp = c
                .list_nodes(pb::ListNodesRequest {})
                .await
                .map_err(CliError::rpc("list nodes"))?;
            let items: Vec<_> = resp.get_ref().nodes.iter().map(node_from_pb).collect();
            pick(items, name, "node", |n| n.name.clone(), format)
        }
        Resource::Auditevents => crate::admin::list_audit(admin, field_selector, format).await,
    }
}

async fn create(c: &mut Client, what: CreateCommand) -> Result<String, CliError> {
    match what {
        CreateCommand::Atespace { name, output } => {
            let a = c
                .create_atespace(pb::CreateAtespaceRequest { name })
                .await
                .map_err(CliError::rpc("create atespace"))?;
            let a = ate_model::Atespace {
                name: a.into_inner().atespace.unwrap_or_default().name,
                version: 0,
            };
            render_one(&a, output.output)
        }
        CreateCommand::Actor {
            id,
            template,
            atespace,
            selector: sel,
            output,
        } => {
            let atespace = required_atespace(atespace)?;
            let t = ns_name(&template, "--template")?;
            let r = pb::CreateActorRequest {
                actor_ref: Some(actor_ref(&ate_model::ActorRef::new(atespace, id))),
                actor_template_namespace: t.namespace,
                actor_template_name: t.name,
                worker_selector: selector(sel.as_deref().unwrap_or(""))?,
            };
            let a = c
                .create_actor(r)
                .await
                .map_err(CliError::rpc("create actor"))?;
            let a = a.into_inner().actor.unwrap_or_default();
            render_one(&actor_from_pb(&a), output.output)
        }
    }
}

async fn update(c: &mut Client, what: UpdateCommand) -> Result<String, CliError> {
    let UpdateCommand::Actor {
        id,
        atespace,
        selector: sel,
        output,
    } = what;
    let atespace = required_atespace(atespace)?;
    let r = pb::UpdateActorRequest {
        actor_ref: Some(actor_ref(&ate_model::ActorRef::new(atespace, id))),
        worker_selector: selector(&sel)?,
    };
    let resp = c
        .update_actor(r)
        .await
        .map_err(CliError::rpc("update actor"))?;
    let a = resp.into_inner().actor.unwrap_or_default();
    render_one(&actor_from_pb(&a), output.output)
}

async fn delete(
    c: &mut Client,
    resource: Resource,
    name: String,
    atespace: Option<String>,
) -> Result<String, CliError> {
    match resource {
        Resource::Actors => {
            let atespace = required_atespace(atespace)?;
            let r = pb::DeleteActorRequest {
                actor_ref: Some(actor_ref(&ate_model::ActorRef::new(atespace, &name))),
            };
            c.delete_actor(r)
                .await
                .map_err(CliError::rpc("delete actor"))?;
            Ok(format!("actor \"{name}\" deleted\n"))
        }
        Resource::Atespaces => {
            let r = pb::DeleteAtespaceRequest { name: name.clone() };
            c.delete_atespace(r)
                .await
                .map_err(CliError::rpc("delete atespace"))?;
            Ok(format!("atespace \"{name}\" deleted\n"))
        }
        Resource::Templates => {
            let id = ns_name(&name, "template name")?;
            let r = pb::DeleteActorTemplateRequest {
                namespace: id.namespace,
                name: id.name,
            };
            c.delete_actor_template(r)
                .await
                .map_err(CliError::rpc("delete template"))?;
            Ok(format!("actortemplate \"{name}\" deleted\n"))
        }
        Resource::Pools => {
            let id = ns_name(&name, "pool name")?;
            let r = pb::DeleteWorkerPoolRequest {
                namespace: id.namespace,
                name: id.name,
            };
            c.delete_worker_pool(r)
                .await
                .map_err(CliError::rpc("delete pool"))?;
            Ok(format!("workerpool \"{name}\" deleted\n"))
        }
        Resource::Workers | Resource::Nodes => Err(usage(
            "workers and nodes are managed by the system and cannot be deleted directly",
        )),
        Resource::Auditevents => Err(usage("the audit trail cannot be deleted")),
    }
}

async fn apply(c: &mut Client, files: &[String]) -> Result<String, CliError> {
    // Parse and validate everything first: a bad document anywhere applies nothing.
    let mut all = Vec::new();
    for f in files {
        let mut docs = manifest::parse(f, &manifest::read_source(f)?)?;
        if f != "-" {
            let base = std::path::Path::new(f)
                .parent()
                .unwrap_or(std::path::Path::new(""));
            manifest::resolve_module_paths(&mut docs, base);
        }
        all.extend(docs);
    }
    let mut out = String::new();
    for m in all {
        let outcome = match &m {
            Manifest::Atespace(name) => {
                let r = pb::CreateAtespaceRequest { name: name.clone() };
                match c.create_atespace(r).await {
                    Ok(_) => "created".to_string(),
                    Err(s) if s.code() == tonic::Code::AlreadyExists => "unchanged".to_string(),
                    Err(s) => return Err(CliError::rpc(format!("apply {}", m.describe()))(s)),
                }
            }
            Manifest::ActorTemplate(t) => {
                let r = pb::ApplyActorTemplateRequest {
                    template: Some(template_to_pb(t)),
                };
                let resp = c
                    .apply_actor_template(r)
                    .await
                    .map_err(CliError::rpc(format!("apply {}", m.describe())))?;
                if resp.get_ref().created {
                    "created"
                } else {
                    "unchanged"
                }
                .to_string()
            }
            Manifest::WorkerPool(p) => {
                let r = pb::ApplyWorkerPoolRequest {
                    pool: Some(pool_to_pb(p)),
                };
                let resp = c
                    .apply_worker_pool(r)
                    .await
                    .map_err(CliError::rpc(format!("apply {}", m.describe())))?;
                resp.into_inner().outcome
            }
        };
        out.push_str(&format!("{} {outcome}\n", m.describe()));
    }
    Ok(out)
}

async fn lifecycle(c: &mut Client, verb: &str, a: LifecycleArgs) -> Result<String, CliError> {
    let atespace = required_atespace(a.atespace)?;
    let r = Some(actor_ref(&ate_model::ActorRef::new(atespace, a.id)));
    let action = format!("{verb} actor");
    let actor = match verb {
        "resume" => {
            c.resume_actor(pb::ResumeActorRequest {
                actor_ref: r,
                boot: a.boot,
            })
            .await
            .map_err(CliError::rpc(action))?
            .into_inner()
            .actor
        }
        "suspend" => {
            c.suspend_actor(pb::SuspendActorRequest { actor_ref: r })
                .await
                .map_err(CliError::rpc(action))?
                .into_inner()
                .actor
        }
        _ => {
            c.pause_actor(pb::PauseActorRequest { actor_ref: r })
                .await
                .map_err(CliError::rpc(action))?
                .into_inner()
                .actor
        }
    };
    render_one(&actor_from_pb(&actor.unwrap_or_default()), a.output.output)
}
