//! One request through the router: find the actor it names, make sure the actor runs,
//! deliver the request to the actor's worker and stream the answer back.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ate_model::ActorRef;
use ate_seam::{Body, InvokeError, NodeDirectory, Route, SeamError, full_body};
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Uri};

use crate::activate::{ActivateError, Activations, Wait};
use crate::headers::{set_forwarded, strip_hop_by_hop};
use crate::limits::{limit_body, oversized, too_large};
use crate::names::{ActorNames, NameError, parse_path};
use crate::routes::RouteTable;

/// Seconds a client is told to wait before retrying a 503.
const RETRY_AFTER_SECS: &str = "1";
/// Pause before trying again after a worker refused a request twice in a row (its actor
/// was leaving as the request arrived).
const REFUSED_PAUSE: Duration = Duration::from_millis(10);

/// A plain-text answer from the router itself.
pub(crate) fn answer(status: StatusCode, message: impl std::fmt::Display) -> Response<Body> {
    let mut r = Response::new(full_body(format!("{message}\n")));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn retry_later(status: StatusCode, message: impl std::fmt::Display) -> Response<Body> {
    let mut r = answer(status, message);
    r.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from_static(RETRY_AFTER_SECS),
    );
    r
}

/// What became of a delivery that produced no response.
enum Undelivered {
    /// The worker handed the request back: the actor left (or is leaving) it.
    Refused(Request<Body>),
    Failed(Response<Body>),
}

/// The request-handling half of the router.
#[derive(Debug)]
pub(crate) struct Proxy {
    pub names: ActorNames,
    pub routes: RouteTable,
    pub nodes: Arc<dyn NodeDirectory>,
    pub activations: Activations,
    /// Longest a request waits for its actor to start.
    pub wait: Duration,
    /// Largest request body forwarded.
    pub max_body: u64,
    /// Token checks for actor traffic, if any atespace wants them.
    pub gate: Option<crate::gate::TokenGate>,
}

/// The host a request was sent to: `Host`, else the HTTP/2 authority.
fn host_of<B>(req: &Request<B>) -> Option<String> {
    req.headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.as_str().to_string()))
}

impl Proxy {
    pub async fn handle(&self, req: Request<Body>, client: IpAddr) -> Response<Body> {
        let resp = match oversized(&req, self.max_body) {
            Some(refused) => refused,
            None => {
                let (req, cut) = limit_body(req, self.max_body);
                let resp = self.route(req, client).await;
                // Whatever the actor made of a body cut short, the client sent too much.
                if cut.is_cut() {
                    too_large(self.max_body)
                } else {
                    resp
                }
            }
        };
        metrics::counter!(crate::metrics::REQUESTS, "status" => resp.status().as_str().to_string())
            .increment(1);
        resp
    }

    /// The actor a request names, and the path to forward if the path named it.
    #[allow(clippy::result_large_err)]
    fn target(
        &self,
        req: &Request<Body>,
        host: Option<&str>,
    ) -> Result<(ActorRef, Option<String>), Response<Body>> {
        match host.map(|h| self.names.parse_host(h)) {
            Some(Ok(actor)) => return Ok((actor, None)),
            Some(Err(e @ NameError::Malformed { .. })) => {
                return Err(answer(StatusCode::BAD_REQUEST, e));
            }
            Some(Err(NameError::OutsideZone(_))) | None => {}
        }
        let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
        match parse_path(pq) {
            Some(Ok((actor, path))) => Ok((actor, Some(path))),
            Some(Err(e)) => Err(answer(StatusCode::BAD_REQUEST, e)),
            None => Err(answer(
                StatusCode::NOT_FOUND,
                format!(
                    "no actor named: send Host: <actor>.<atespace>.{} or request /a/<atespace>/<actor>/",
                    self.names.zone()
                ),
            )),
        }
    }

    async fn route(&self, mut req: Request<Body>, client: IpAddr) -> Response<Body> {
        let host = host_of(&req);
        let (actor, path) = match self.target(&req, host.as_deref()) {
            Ok(t) => t,
            Err(resp) => return resp,
        };
        // The system's actors (golden snapshots) serve no traffic: they are not there for
        // anyone outside.
        if actor
            .atespace
            .starts_with(ate_model::names::RESERVED_PREFIX)
        {
            return answer(StatusCode::NOT_FOUND, format!("no actor {actor}"));
        }
        if let Some(gate) = &self.gate
            && let Err(refused) = gate.admit(&actor, req.headers_mut())
        {
            return refused;
        }
        if let Some(path) = path {
            match path.parse::<Uri>() {
                Ok(uri) => *req.uri_mut() = uri,
                Err(e) => return answer(StatusCode::BAD_REQUEST, format!("bad path: {e}")),
            }
        }
        strip_hop_by_hop(req.headers_mut());
        set_forwarded(req.headers_mut(), client, host.as_deref(), "http");
        let deadline = Instant::now() + self.wait;
        let mut refusals = 0u32;
        // The route an activation returned, used once if the table has none yet.
        let mut given: Option<Arc<Route>> = None;
        loop {
            if let Some(route) = self.routes.get(&actor).or_else(|| given.take()) {
                match self.forward(&route, req).await {
                    Ok(mut resp) => {
                        strip_hop_by_hop(resp.headers_mut());
                        return resp;
                    }
                    Err(Undelivered::Failed(resp)) => return resp,
                    Err(Undelivered::Refused(back)) => {
                        req = back;
                        refusals += 1;
                        if refusals > 1 {
                            tokio::time::sleep(REFUSED_PAUSE).await;
                        }
                    }
                }
            }
            match self.activations.wait(&actor, deadline).await {
                Ok(route) => given = route,
                Err(w) => {
                    return match w {
                        Wait::Overflow => retry_later(
                            StatusCode::SERVICE_UNAVAILABLE,
                            format!("too many requests waiting for actor {actor}"),
                        ),
                        Wait::TooManyActivations => retry_later(
                            StatusCode::SERVICE_UNAVAILABLE,
                            format!("too many actors starting at once to start {actor}"),
                        ),
                        // A parked activation ends with NoCapacity only at the same deadline
                        // the waiter has: whichever is seen first, the client hears the same.
                        Wait::NoWorker | Wait::Failed(ActivateError::NoCapacity(_)) => retry_later(
                            StatusCode::SERVICE_UNAVAILABLE,
                            format!(
                                "no worker freed up for actor {actor} within {} ms",
                                self.wait.as_millis()
                            ),
                        ),
                        Wait::TimedOut => answer(
                            StatusCode::GATEWAY_TIMEOUT,
                            format!(
                                "actor {actor} did not start within {} ms",
                                self.wait.as_millis()
                            ),
                        ),
                        Wait::Failed(e) => activation_failed(&actor, e),
                    };
                }
            }
        }
    }

    async fn forward(
        &self,
        route: &Route,
        req: Request<Body>,
    ) -> Result<Response<Body>, Undelivered> {
        let Ok(exec) = self.nodes.executor(&route.node) else {
            return Err(Undelivered::Refused(req));
        };
        let call = exec.invoke(&route.worker, &route.actor, req);
        let result = if route.timeout_ms > 0 {
            match tokio::time::timeout(Duration::from_millis(route.timeout_ms), call).await {
                Ok(r) => r,
                Err(_) => {
                    return Err(Undelivered::Failed(answer(
                        StatusCode::GATEWAY_TIMEOUT,
                        format!(
                            "actor {} did not answer within its route timeout ({} ms)",
                            route.actor, route.timeout_ms
                        ),
                    )));
                }
            }
        } else {
            call.await
        };
        match result {
            Ok(resp) => Ok(resp),
            Err(InvokeError {
                request: Some(req), ..
            }) => Err(Undelivered::Refused(*req)),
            Err(InvokeError { error, .. }) => Err(Undelivered::Failed(match error {
                SeamError::GuestUnavailable { .. } => {
                    retry_later(StatusCode::SERVICE_UNAVAILABLE, error)
                }
                other => answer(StatusCode::BAD_GATEWAY, other),
            })),
        }
    }
}

fn activation_failed(actor: &ActorRef, e: ActivateError) -> Response<Body> {
    match e {
        ActivateError::NotFound(m) => answer(StatusCode::NOT_FOUND, m),
        ActivateError::NoCapacity(m) | ActivateError::Busy(m) => {
            retry_later(StatusCode::SERVICE_UNAVAILABLE, m)
        }
        ActivateError::Unavailable(m) => retry_later(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("actor {actor} unavailable: {m}"),
        ),
        ActivateError::Refused(m) => answer(
            StatusCode::BAD_GATEWAY,
            format!("this router may not resume actor {actor}: {m}"),
        ),
        ActivateError::Failed(m) => answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("error resuming actor {actor}: {m}"),
        ),
    }
}
