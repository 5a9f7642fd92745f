//! Connecting to the control API.

use ate_proto::ateapi::control_client::ControlClient;
use tonic::transport::{Channel, Endpoint};

use crate::CliError;

/// Where `ate up` listens by default.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:7420";

/// Largest response the client accepts (full worker listings can be large).
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Connects to the control API; `endpoint` may omit the `http://` scheme.
pub async fn connect(endpoint: &str) -> Result<ControlClient<Channel>, CliError> {
    let url = if endpoint.contains("://") {
        endpoint.to_string()
    } else {
        format!("http://{endpoint}")
    };
    let fail = |reason: String| CliError::Connect {
        endpoint: endpoint.to_string(),
        reason,
    };
    let channel = Endpoint::from_shared(url)
        .map_err(|e| fail(e.to_string()))?
        .connect_timeout(std::time::Duration::from_secs(5))
        .tcp_nodelay(true)
        .connect()
        .await
        .map_err(|e| {
            let mut reason = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                reason = format!("{reason}: {s}");
                src = s.source();
            }
            fail(reason)
        })?;
    Ok(ControlClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES))
}
