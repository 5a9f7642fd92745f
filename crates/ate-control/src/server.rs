//! Serving the control API on a listener, with health and reflection.

use ate_proto::ateapi::control_server::ControlServer;
use std::future::Future;
use tokio::net::TcpListener;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::TcpListenerStream;

use tonic::service::Routes;

use crate::{AdminService, ControlService, Registry};

/// Largest response message, in bytes (a full worker listing can be large).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Largest request message, in bytes: requests carry names, selectors and template specs,
/// never bulk data, so anything larger is refused (`OutOfRange`) before it is decoded.
pub const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot build the reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("grpc server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Accepted connections with Nagle's algorithm off: a unary gRPC reply is small and must not
/// wait for the peer's delayed ACK (40 ms per call otherwise).
fn incoming(
    listener: TcpListener,
) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    TcpListenerStream::new(listener).map(|conn| {
        let conn = conn?;
        conn.set_nodelay(true)?;
        Ok(conn)
    })
}

/// The gRPC services of a control-plane replica: `ateapi.Control`, `ateapi.Admin`,
/// `grpc.health.v1.Health`,
/// server reflection and, in the split deployment, the node registry. Other roles in the
/// same process add theirs before serving.
pub async fn control_routes(
    control: ControlService,
    registry: Option<&Registry>,
) -> Result<Routes, ServeError> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<ControlServer<ControlService>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(ate_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let admin = AdminService::new(control.clone())
        .server()
        .max_decoding_message_size(MAX_REQUEST_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let control = ControlServer::new(control)
        .max_decoding_message_size(MAX_REQUEST_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let routes = Routes::new(health_service)
        .add_service(reflection)
        .add_service(control)
        .add_service(admin);
    Ok(match registry {
        Some(r) => routes.add_service(r.service()),
        None => routes,
    })
}

/// Serves `routes` on `listener` until `shutdown` resolves; in-flight calls finish first.
pub async fn serve_routes(
    listener: TcpListener,
    routes: Routes,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    serve_incoming(incoming(listener), routes, shutdown).await
}

/// Serves `routes` on connections from `incoming` (plain TCP, or TLS streams whose peer
/// certificates the services then see) until `shutdown` resolves: the one server set-up of
/// every gRPC listener of ate.
pub async fn serve_incoming<IO>(
    incoming: impl tokio_stream::Stream<Item = std::io::Result<IO>> + Send + 'static,
    routes: Routes,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError>
where
    IO: tokio::io::AsyncRead
        + tokio::io::AsyncWrite
        + tonic::transport::server::Connected
        + Unpin
        + Send
        + 'static,
{
    tonic::transport::Server::builder()
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await?;
    Ok(())
}

/// Serves the control API alone (see [`control_routes`]) on `listener` until `shutdown`
/// resolves.
pub async fn serve(
    listener: TcpListener,
    control: ControlService,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    serve_routes(listener, control_routes(control, None).await?, shutdown).await
}
