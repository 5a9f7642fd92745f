//! Token and audit commands: `ate admin create-token`, `revoke-token`, `rotate-key`,
//! `whoami`, and `ate get auditevents`.

use ate_model::AuditEvent;
use ate_proto::ateapi as pb;
use ate_proto::ateapi::admin_client::AdminClient;
use ate_proto::convert::audit_event_from_pb;
use clap::{Args, Subcommand};

use crate::client::Authed;
use crate::output::{Format, Printable, render};
use crate::{CliError, Global, connect};

/// Administration through the control API.
#[derive(Debug, Clone, Subcommand)]
pub enum AdminCommand {
    /// Mint a bearer token (needs an admin token over the atespaces it grants).
    CreateToken(CreateTokenArgs),
    /// Make one token stop verifying before it expires (an admin's over its atespaces, or
    /// your own).
    RevokeToken {
        /// The token, or `-` to read it from standard input (kept out of shell history).
        #[arg(value_name = "TOKEN")]
        revoked: String,
    },
    /// Sign new tokens with a new key; --retire-previous invalidates every older token.
    RotateKey {
        #[arg(long)]
        retire_previous: bool,
    },
    /// Show who the configured token says you are.
    Whoami,
}

#[derive(Debug, Clone, Args)]
pub struct CreateTokenArgs {
    /// Who the token is for; recorded in the audit trail.
    #[arg(long)]
    pub subject: String,
    /// Atespaces it may act in, comma-separated, or `*` for all.
    #[arg(long, value_delimiter = ',', required = true)]
    pub atespaces: Vec<String>,
    /// viewer (read), editor (read and change actors), admin (also atespaces, tokens and,
    /// over `*`, templates, pools and nodes).
    #[arg(long, default_value = "editor")]
    pub role: String,
    /// Lifetime, e.g. `1h`, `30d` [default: 30d].
    #[arg(long)]
    pub ttl: Option<ate_model::Duration>,
}

/// Runs an admin command, returning what to print.
pub async fn run_admin(global: &Global, cmd: AdminCommand) -> Result<String, CliError> {
    let mut c = connect(global).await?.admin;
    match cmd {
        AdminCommand::CreateToken(a) => {
            let r = pb::CreateTokenRequest {
                subject: a.subject,
                atespaces: a.atespaces,
                role: a.role,
                ttl_seconds: a.ttl.map(|d| d.0.as_secs().max(1) as i64).unwrap_or(0),
            };
            let t = c
                .create_token(r)
                .await
                .map_err(CliError::rpc("create token"))?
                .into_inner();
            Ok(format!("{}\n", t.token))
        }
        AdminCommand::RevokeToken { revoked } => {
            let token = if revoked == "-" {
                std::io::read_to_string(std::io::stdin()).map_err(|e| CliError::Read {
                    path: "standard input".into(),
                    reason: e.to_string(),
                })?
            } else {
                revoked
            };
            let r = c
                .revoke_token(pb::RevokeTokenRequest {
                    token: token.trim().to_string(),
                })
                .await
                .map_err(CliError::rpc("revoke token"))?
                .into_inner();
            Ok(format!(
                "token {} of {} revoked (it would have expired {})\n",
                r.jti,
                r.subject,
                crate::output::rfc3339_ms(r.expires_at_unix.saturating_mul(1000))
            ))
        }
        AdminCommand::RotateKey { retire_previous } => {
            let r = c
                .rotate_signing_key(pb::RotateSigningKeyRequest { retire_previous })
                .await
                .map_err(CliError::rpc("rotate signing key"))?
                .into_inner();
            let mut out = format!("signing key {} is active\n", r.kid);
            for kid in r.retired {
                out.push_str(&format!("signing key {kid} retired\n"));
            }
            Ok(out)
        }
        AdminCommand::Whoami => {
            let w = c
                .who_am_i(pb::WhoAmIRequest {})
                .await
                .map_err(CliError::rpc("who am i"))?
                .into_inner();
            let mut out = format!("subject: {}\n", w.subject);
            if !w.role.is_empty() {
                out.push_str(&format!(
                    "role: {}\natespaces: {}\nexpires: {}\n",
                    w.role,
                    w.atespaces.join(","),
                    crate::output::rfc3339_ms(w.expires_at_unix.saturating_mul(1000))
                ));
            }
            Ok(out)
        }
    }
}

/// Every audit event matching `field_selector`, newest first.
pub(crate) async fn list_audit(
    c: &mut AdminClient<Authed>,
    field_selector: String,
    format: Format,
) -> Result<String, CliError> {
    let mut events = Vec::new();
    let mut continue_token = String::new();
    loop {
        let r = pb::ListAuditEventsRequest {
            field_selector: field_selector.clone(),
            limit: 0,
            continue_token,
        };
        let page = c
            .list_audit_events(r)
            .await
            .map_err(CliError::rpc("list audit events"))?
            .into_inner();
        events.extend(page.events.iter().map(audit_event_from_pb));
        if page.continue_token.is_empty() {
            break;
        }
        continue_token = page.continue_token;
    }
    render(&events, format)
}

impl Printable for AuditEvent {
    const LIST_KEY: &'static str = "auditEvents";
    fn headers(wide: bool) -> Vec<&'static str> {
        let mut h = vec!["TIME", "SUBJECT", "METHOD", "ATESPACE", "TARGET", "RESULT"];
        if wide {
            h.extend(["ROLE", "CODE", "MESSAGE"]);
        }
        h
    }
    fn cells(&self, wide: bool) -> Vec<String> {
        let mut c = vec![
            crate::output::rfc3339_ms(self.time_ms as i64),
            self.subject.clone(),
            self.method.clone(),
            self.atespace.clone(),
            self.target.clone(),
            self.result.clone(),
        ];
        if wide {
            c.extend([self.role.clone(), self.code.clone(), self.message.clone()]);
        }
        c
    }
    fn sort_key(&self) -> Vec<String> {
        // Ids sort newest first.
        vec![self.id.clone()]
    }
}
