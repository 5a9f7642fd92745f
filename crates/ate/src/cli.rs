//! The command line: server commands (`up`, `serve`), `bench`, and the client commands of
//! `ate-cli`.

use std::io::Write;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::{bench, serve, up};

#[derive(Debug, Parser)]
#[command(
    name = "ate",
    version,
    about = "ate: an agent substrate",
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: ate_cli::Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run everything on this machine with the embedded defaults.
    Up(Box<up::UpArgs>),
    /// Run chosen roles with explicit settings.
    Serve(Box<serve::ServeArgs>),
    /// Measure ate on this machine.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Administration: tokens and signing keys (through the control API), the component CA.
    #[command(subcommand)]
    Admin(AdminCommand),
    #[command(flatten)]
    Client(ate_cli::ClientCommand),
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    #[command(flatten)]
    Api(ate_cli::AdminCommand),
    #[command(flatten)]
    Tls(crate::tls_admin::TlsAdminCommand),
}

/// Where `ate up` keeps its data unless told otherwise: `$ATE_DATA_DIR`, else
/// `$XDG_DATA_HOME/ate`, else `~/.local/share/ate`.
pub fn default_data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("ATE_DATA_DIR") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_DATA_HOME") {
        return PathBuf::from(d).join("ate");
    }
    if let Some(h) = std::env::var_os("HOME") {
        return PathBuf::from(h).join(".local/share/ate");
    }
    PathBuf::from(".ate")
}

fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Up(args) => {
            init_tracing("info");
            up::up(*args).await
        }
        Command::Serve(args) => {
            init_tracing("info");
            serve::serve(*args).await
        }
        Command::Bench(cmd) => {
            init_tracing("warn");
            bench::run(cmd).await
        }
        Command::Admin(AdminCommand::Tls(cmd)) => {
            init_tracing("warn");
            print(&crate::tls_admin::run(cmd)?)
        }
        Command::Admin(AdminCommand::Api(cmd)) => {
            init_tracing("warn");
            print(&ate_cli::run_admin(&cli.global, cmd).await?)
        }
        Command::Client(cmd) => {
            init_tracing("warn");
            print(&ate_cli::run(&cli.global, cmd).await?)
        }
    }
}

fn print(out: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.as_bytes())?;
    stdout.flush()?;
    Ok(())
}
