//! The admin port: Prometheus metrics at `/metrics` and a liveness answer at `/healthz`,
//! apart from the router's port so scrapes never queue behind actor traffic. It takes the
//! router's header limits and never reads a request body.

use std::future::Future;
use std::sync::Arc;

use ate_seam::{Body, full_body};
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::limits::{bound_heads, oversized_head};
use crate::proxy::answer;

/// Renders the metrics text on each scrape.
pub type RenderMetrics = Arc<dyn Fn() -> String + Send + Sync>;

/// Prometheus text exposition format, version 0.0.4.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

fn respond<B>(req: &Request<B>, render: &RenderMetrics) -> Response<Body> {
    if let Some(refused) = oversized_head(req) {
        return refused;
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return answer(StatusCode::METHOD_NOT_ALLOWED, "use GET");
    }
    match req.uri().path() {
        "/metrics" => {
            let mut r = Response::new(full_body(render()));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(PROMETHEUS_TEXT),
            );
            r
        }
        "/healthz" => answer(StatusCode::OK, "ok"),
        other => answer(
            StatusCode::NOT_FOUND,
            format!("no {other} here: try /metrics"),
        ),
    }
}

/// Serves the admin endpoints on `listener` until `shutdown` resolves.
pub async fn serve_admin(
    listener: TcpListener,
    render: RenderMetrics,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    bound_heads(&mut builder);
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "admin port cannot accept a connection");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => return,
        };
        let render = render.clone();
        let service = service_fn(move |req: Request<hyper::body::Incoming>| {
            let r = respond(&req, &render);
            async move { Ok::<_, std::convert::Infallible>(r) }
        });
        let conn = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
}
