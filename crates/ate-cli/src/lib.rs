//! The `ate` client commands, kubectl style: `get`, `create`, `update`, `delete`, `apply`,
//! `resume`, `suspend`, `pause`, `logs`, `drain`, `uncordon`. Data goes to stdout; errors
//! go to stderr as `Error: failed to <verb> <kind>: rpc error: code = <Code> desc =
//! <message>` with a non-zero exit.

mod admin;
mod client;
mod commands;
pub mod config;
pub mod manifest;
pub mod output;
pub mod table;

use clap::{Args, Subcommand, ValueEnum};

pub use admin::{AdminCommand, run_admin};
pub use client::{Clients, DEFAULT_ENDPOINT, Target, connect};
pub use output::Format;

/// What the client commands can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Misuse of flags or arguments, caught before any call.
    #[error("{0}")]
    Usage(String),
    #[error("failed to connect to ate at {endpoint}: {reason}")]
    Connect { endpoint: String, reason: String },
    /// A call the server refused, formatted as gRPC clients print it.
    #[error("failed to {action}: rpc error: code = {code:?} desc = {message}")]
    Rpc {
        action: String,
        code: tonic::Code,
        message: String,
    },
    #[error(transparent)]
    Manifest(#[from] manifest::ManifestError),
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("cannot format output: {0}")]
    Output(String),
    /// A drain that cordoned the node but could not suspend every actor on it.
    #[error(
        "node/{node} cordoned, but {count} of its actors could not be suspended ({suspended} suspended): {list}; drain again to retry",
        count = .failed.len(),
        list = .failed.join("; ")
    )]
    DrainIncomplete {
        node: String,
        suspended: usize,
        failed: Vec<String>,
    },
}

impl CliError {
    pub(crate) fn output(e: impl std::fmt::Display) -> Self {
        CliError::Output(e.to_string())
    }

    pub(crate) fn rpc(action: impl Into<String>) -> impl FnOnce(tonic::Status) -> Self {
        let action = action.into();
        move |s| CliError::Rpc {
            action,
            code: s.code(),
            message: server_message(s.message()),
        }
    }
}

/// Longest server message the CLI prints: a message is a sentence or two, and a server
/// (or whatever answers in its place) must not flood the terminal.
const MAX_SERVER_MESSAGE: usize = 4096;

/// A server's message as the CLI prints it: clipped, with terminal controls escaped, so a
/// hostile answer cannot rewrite the screen.
fn server_message(message: &str) -> String {
    table::escape_controls(&ate_model::clip(message, MAX_SERVER_MESSAGE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_messages_are_clipped_and_escaped() {
        let err = CliError::rpc("get actor")(tonic::Status::not_found(format!(
            "actor \x1b]0;owned\x07 {}",
            "x".repeat(10 * MAX_SERVER_MESSAGE)
        )));
        let shown = err.to_string();
        assert!(
            !shown.chars().any(table::is_terminal_control),
            "{shown:.80}"
        );
        assert!(shown.len() < 2 * MAX_SERVER_MESSAGE, "{}", shown.len());
        assert!(shown.contains("NotFound"), "{shown:.80}");
    }
}

/// Options every client command shares. Unset ones come from the config file
/// (`$ATE_CONFIG`, else `~/.config/ate/config.json`), which `ate up` writes.
#[derive(Debug, Clone, Default, Args)]
pub struct Global {
    /// Control API address [default: the config file's, else http://127.0.0.1:7420].
    #[arg(long, global = true, env = "ATE_ENDPOINT")]
    pub endpoint: Option<String>,
    /// Bearer token to present [default: the config file's].
    #[arg(long, global = true, env = "ATE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// CA bundle that signed a TLS control API's certificate (`ca.crt` of `ate admin
    /// issue-cert`); the connection is TLS when given [default: the config file's].
    #[arg(long, global = true, env = "ATE_CA_CERT")]
    pub ca_cert: Option<std::path::PathBuf>,
}

/// The kinds `get` and `delete` take, with kubectl-style singular and plural names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Resource {
    #[value(alias = "atespace")]
    Atespaces,
    #[value(alias = "actor")]
    Actors,
    #[value(alias = "template", alias = "actortemplates", alias = "actortemplate")]
    Templates,
    #[value(alias = "pool", alias = "workerpools", alias = "workerpool")]
    Pools,
    #[value(alias = "worker")]
    Workers,
    #[value(alias = "node")]
    Nodes,
    /// The audit trail of mutating calls (admins only), newest first.
    #[value(alias = "audit", alias = "auditevent")]
    Auditevents,
}

/// Selecting actors by atespace.
#[derive(Debug, Clone, Default, Args)]
pub struct AtespaceArgs {
    /// The atespace.
    #[arg(short = 'a', long)]
    pub atespace: Option<String>,
    /// All atespaces (lists only).
    #[arg(short = 'A', long = "all-atespaces")]
    pub all_atespaces: bool,
}

#[derive(Debug, Clone, Args)]
pub struct OutputArgs {
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

#[derive(Debug, Clone, Subcommand)]
pub enum ClientCommand {
    /// Show one object or list objects of a kind.
    Get {
        #[arg(value_enum)]
        resource: Resource,
        /// Name (actors: ID; templates and pools: NS/NAME).
        name: Option<String>,
        #[command(flatten)]
        atespace: AtespaceArgs,
        /// Kubernetes-style field selector, e.g. `status=RUNNING` or `pool=cpu,actor_id=`.
        #[arg(long = "field-selector")]
        field_selector: Option<String>,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Create an atespace or an actor.
    Create {
        #[command(subcommand)]
        what: CreateCommand,
    },
    /// Change an actor's worker selector.
    Update {
        #[command(subcommand)]
        what: UpdateCommand,
    },
    /// Delete an object.
    Delete {
        #[arg(value_enum)]
        resource: Resource,
        name: String,
        #[arg(short = 'a', long)]
        atespace: Option<String>,
    },
    /// Create or update objects from YAML manifests (several documents per file).
    Apply {
        /// Manifest file, or `-` for standard input.
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<String>,
    },
    /// Resume an actor onto a worker.
    Resume(LifecycleArgs),
    /// Suspend an actor to a durable snapshot.
    Suspend(LifecycleArgs),
    /// Pause an actor, keeping its snapshot on the node.
    Pause(LifecycleArgs),
    /// Print an actor's logs (its guest's stdout and stderr).
    Logs(LogsArgs),
    /// Take a node out of placement and suspend the actors on it, e.g. before maintenance.
    Drain(NodeArgs),
    /// Put a drained node back into placement.
    Uncordon(NodeArgs),
}

/// A node, for `drain` and `uncordon`.
#[derive(Debug, Clone, Args)]
pub struct NodeArgs {
    /// Always `node`.
    #[arg(value_parser = ["node", "nodes"])]
    pub kind: String,
    /// The node's name, as `ate get nodes` shows it.
    pub name: String,
}

#[derive(Debug, Clone, Args)]
pub struct LogsArgs {
    /// Always `actor`.
    #[arg(value_parser = ["actor", "actors"])]
    pub kind: String,
    pub id: String,
    #[arg(short = 'a', long)]
    pub atespace: Option<String>,
    /// Keep printing new lines as they are written.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Prefix each line with its time and stream.
    #[arg(long)]
    pub timestamps: bool,
}

#[derive(Debug, Clone, Args)]
pub struct LifecycleArgs {
    /// Always `actor`.
    #[arg(value_parser = ["actor", "actors"])]
    pub kind: String,
    pub id: String,
    #[arg(short = 'a', long)]
    pub atespace: Option<String>,
    /// Cold boot instead of restoring the golden snapshot (resume only).
    #[arg(long)]
    pub boot: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Clone, Subcommand)]
pub enum CreateCommand {
    /// Create an atespace.
    Atespace {
        name: String,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Create an actor from a template, SUSPENDED until first resumed.
    Actor {
        id: String,
        /// The template, as NAMESPACE/NAME.
        #[arg(short = 't', long)]
        template: String,
        #[arg(short = 'a', long)]
        atespace: Option<String>,
        /// Worker selector, `k=v,k2=v2`.
        #[arg(long)]
        selector: Option<String>,
        #[command(flatten)]
        output: OutputArgs,
    },
}

#[derive(Debug, Clone, Subcommand)]
pub enum UpdateCommand {
    /// Replace an actor's worker selector (takes effect on the next resume).
    Actor {
        id: String,
        #[arg(short = 'a', long)]
        atespace: Option<String>,
        /// Worker selector, `k=v,k2=v2`; empty clears it.
        #[arg(long)]
        selector: String,
        #[command(flatten)]
        output: OutputArgs,
    },
}

/// Runs a client command, returning what to print on stdout.
pub async fn run(global: &Global, cmd: ClientCommand) -> Result<String, CliError> {
    commands::run(global, cmd).await
}
