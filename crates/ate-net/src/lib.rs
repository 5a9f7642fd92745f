//! ate's network edge: the HTTP router that turns a request for a suspended actor into
//! "resume, then forward", and the DNS responder that gives every actor a name.
//!
//! The router never asks the control plane where an actor runs: nodes assert a
//! [`ate_seam::Route`] for every actor taking requests, and the router follows those
//! assertions. Only a request for an actor without a route costs a call, through an
//! [`Activator`], and concurrent requests for one actor share it.

mod activate;
mod admin;
pub mod dns;
mod gate;
mod headers;
mod limits;
pub mod metrics;
mod names;
mod proxy;
mod routes;
mod server;

pub use activate::{ActivateError, Activator};
pub use admin::{RenderMetrics, serve_admin};
pub use gate::TokenGate;
pub use limits::{
    HEADER_READ_TIMEOUT, MAX_HEADER_BYTES, MAX_HEADERS, MAX_REQUEST_BODY_BYTES, MAX_URI_BYTES,
};
pub use names::{ActorNames, DEFAULT_DOMAIN, NameError, PATH_PREFIX, parse_path};
pub use routes::RouteTable;
pub use server::{DEFAULT_MAX_ACTIVATIONS, Router, RouterConfig, RouterError, RouterHandle};
