//! Connecting to the control API: the endpoint and token from flags, environment or the
//! config file, in that order.

use ate_proto::ateapi::admin_client::AdminClient;
use ate_proto::ateapi::control_client::ControlClient;
use ate_proto::bearer::Bearer;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use crate::config::{self, CliConfig};
use crate::{CliError, Global};

/// Where `ate up` listens by default.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:7420";

/// Largest response the client accepts (full worker listings can be large).
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// A channel that presents the caller's token on every call.
pub type Authed = InterceptedService<Channel, Bearer>;

/// The clients of one connection.
#[derive(Debug, Clone)]
pub struct Clients {
    pub control: ControlClient<Authed>,
    pub admin: AdminClient<Authed>,
}

/// Where to connect and as whom, once flags, environment and config file are merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub endpoint: String,
    pub token: Option<String>,
    /// The CA bundle to verify a TLS control API with (`control.ate`); TLS when given.
    pub ca_cert: Option<std::path::PathBuf>,
}

impl Target {
    /// Merges `global` (flags and environment) over the config file.
    pub fn resolve(global: &Global) -> Result<Self, CliError> {
        let file = match config::path() {
            Some(p) => CliConfig::load(&p)?,
            None => CliConfig::default(),
        };
        Ok(Self {
            endpoint: global
                .endpoint
                .clone()
                .or(file.endpoint)
                .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string()),
            // An empty ATE_TOKEN counts as unset.
            token: global
                .token
                .clone()
                .filter(|t| !t.trim().is_empty())
                .or(file.token),
            ca_cert: global.ca_cert.clone().or(file.ca_cert),
        })
    }
}

/// Connects to the control API; the endpoint may omit the `http://` scheme.
pub async fn connect(global: &Global) -> Result<Clients, CliError> {
    let target = Target::resolve(global)?;
    let endpoint = target.endpoint.as_str();
    let url = if endpoint.contains("://") {
        endpoint.to_string()
    } else {
        format!("http://{endpoint}")
    };
    let fail = |reason: String| CliError::Connect {
        endpoint: endpoint.to_string(),
        reason,
    };
    let bearer =
        Bearer::new(target.token.as_deref()).map_err(|e| CliError::Usage(e.to_string()))?;
    let connecting = match &target.ca_cert {
        None => {
            if url.starts_with("https://") {
                return Err(CliError::Usage(
                    "--ca-cert: an https endpoint needs the CA bundle that signed it".into(),
                ));
            }
            endpoint_for(&url, &fail)?.connect().await
        }
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| CliError::Read {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
            let config = ate_tls::client_config_for_ca(&pem)
                .map_err(|e| CliError::Usage(format!("--ca-cert: {e}")))?;
            let connector = ate_tls::TlsConnector::new(config, &ate_tls::PeerIdentity::Control)
                .map_err(|e| fail(e.to_string()))?;
            endpoint_for(&ate_tls::connector_uri(&url), &fail)?
                .connect_with_connector(connector)
                .await
        }
    };
    let channel = connecting.map_err(|e| fail(ate_tls::error_chain(&e)))?;
    Ok(Clients {
        control: ControlClient::with_interceptor(channel.clone(), bearer.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES),
        admin: AdminClient::with_interceptor(channel, bearer)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES),
    })
}

fn endpoint_for(url: &str, fail: &impl Fn(String) -> CliError) -> Result<Endpoint, CliError> {
    Ok(Endpoint::from_shared(url.to_string())
        .map_err(|e| fail(e.to_string()))?
        .connect_timeout(std::time::Duration::from_secs(5))
        .tcp_nodelay(true))
}
