//! The router's metric names (Prometheus conventions). Whoever installs a `metrics`
//! recorder (the `ate` binary) exports them; without one they cost next to nothing.

/// Requests answered, by `status` code.
pub const REQUESTS: &str = "ate_router_requests_total";
/// Seconds from the first request for a stopped actor to the actor being routable, by
/// `outcome`.
pub const ACTIVATION_SECONDS: &str = "ate_router_activation_seconds";
/// Activations started by the router, by `outcome`.
pub const ACTIVATIONS: &str = "ate_router_activations_total";
/// Requests waiting for an activation.
pub const QUEUE_DEPTH: &str = "ate_router_queue_depth";
/// Running actors in the route table.
pub const ROUTES: &str = "ate_router_routes";

/// Histogram buckets for activation latency, in seconds: 250 µs to 30 s.
pub const ACTIVATION_BUCKETS: &[f64] = &[
    0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    30.0,
];
