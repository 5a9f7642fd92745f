//! `ate admin init-ca` and `ate admin issue-cert`: the component CA of a split deployment
//! and the certificates `ate serve --tls-dir` reads (see docs/security.md). They work on
//! files only: nothing here talks to a running process, which picks re-issued files up by
//! itself.

use std::path::PathBuf;

use anyhow::bail;
use ate_tls::{CaInit, CertificateAuthority, PeerIdentity, TlsError};
use clap::{Args, Subcommand, ValueEnum};

/// The CA commands of `ate admin`.
#[derive(Debug, Subcommand)]
pub enum TlsAdminCommand {
    /// Create the component CA in a directory, or rotate it (--rotate).
    InitCa(InitCaArgs),
    /// Issue the certificate of a control plane, node or router from the CA.
    IssueCert(IssueCertArgs),
}

#[derive(Debug, Args)]
pub struct InitCaArgs {
    /// Directory of the CA: ca.key (0600), ca.crt and trust.crt (the trust bundle).
    #[arg(long)]
    pub dir: PathBuf,
    /// Replace the existing CA with a new one; the previous stays in trust.crt so
    /// certificates of either verify until every component is re-issued.
    #[arg(long)]
    pub rotate: bool,
}

/// Which component a certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CertRole {
    Control,
    Node,
    Router,
}

#[derive(Debug, Args)]
pub struct IssueCertArgs {
    /// Directory of the CA (as made by init-ca).
    #[arg(long)]
    pub ca: PathBuf,
    /// The component the certificate is for.
    #[arg(long, value_enum)]
    pub role: CertRole,
    /// The node's name (role node only): the certificate is NAME.node.ate.
    #[arg(long)]
    pub name: Option<String>,
    /// Directory to write tls.crt, tls.key (0600) and ca.crt (the trust bundle) into; the
    /// one `ate serve --tls-dir` reads.
    #[arg(long)]
    pub out: PathBuf,
    /// How long the certificate is valid.
    #[arg(long, default_value = "90d")]
    pub ttl: ate_model::Duration,
}

/// Runs a CA command; what it did, for stdout.
pub fn run(command: TlsAdminCommand) -> anyhow::Result<String> {
    match command {
        TlsAdminCommand::InitCa(args) => init_ca(&args),
        TlsAdminCommand::IssueCert(args) => issue_cert(&args),
    }
}

fn init_ca(args: &InitCaArgs) -> anyhow::Result<String> {
    let dir = args.dir.display();
    match ate_tls::init_ca(&args.dir, args.rotate) {
        Ok(CaInit::Created) => Ok(format!(
            "created a ca in {dir} (ca.key, ca.crt, trust.crt)\n"
        )),
        Ok(CaInit::Rotated) => Ok(format!(
            "rotated the ca in {dir}: trust.crt holds the new ca and the previous one\n\
             next: copy {dir}/trust.crt to every component's ca.crt, then re-issue their certificates\n"
        )),
        Err(TlsError::CaExists { .. }) => {
            bail!("--dir: a ca already exists in {dir}; pass --rotate to replace it")
        }
        Err(TlsError::NoCa { .. }) => {
            bail!("--rotate: no ca in {dir} to rotate; run without --rotate to create one")
        }
        Err(e) => bail!("--dir: {e}"),
    }
}

fn issue_cert(args: &IssueCertArgs) -> anyhow::Result<String> {
    let who = match (args.role, &args.name) {
        (CertRole::Node, None) => bail!("--name: role node needs the node's name"),
        (CertRole::Node, Some(name)) => {
            ate_model::names::validate_label("--name", name)?;
            PeerIdentity::node(name).map_err(|e| anyhow::anyhow!("--name: {e}"))?
        }
        (_, Some(_)) => bail!("--name: only role node takes a name"),
        (CertRole::Control, None) => PeerIdentity::Control,
        (CertRole::Router, None) => PeerIdentity::Router,
    };
    if args.ttl.is_zero() {
        bail!("--ttl: must be more than zero");
    }
    let ca = match CertificateAuthority::load(&args.ca) {
        Ok(ca) => ca,
        Err(TlsError::NoCa { .. }) => bail!(
            "--ca: no ca in {} (create one with ate admin init-ca --dir {0})",
            args.ca.display()
        ),
        Err(e) => bail!("--ca: {e}"),
    };
    let issued = ca
        .issue(&who, args.ttl.0)
        .map_err(|e| anyhow::anyhow!("--ca: {e}"))?;
    issued
        .write(&args.out)
        .map_err(|e| anyhow::anyhow!("--out: {e}"))?;
    let out = args.out.display();
    Ok(format!(
        "issued {out}/tls.crt for {who}, valid for {} (key {out}/tls.key, trust bundle {out}/ca.crt)\n",
        args.ttl
    ))
}
