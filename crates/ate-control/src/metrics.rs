//! The control plane's metric names (Prometheus conventions). The `ate` binary installs
//! the recorder that exports them.

/// Resume workflows finished, by `outcome` (`ok` or the error kind).
pub const RESUMES: &str = "ate_actor_resumes_total";
/// Suspend workflows finished, by `outcome`.
pub const SUSPENDS: &str = "ate_actor_suspends_total";
/// Actors suspended because they were idle.
pub const IDLE_SUSPENDS: &str = "ate_actor_idle_suspends_total";
/// Workers in the store as of the fleet's last pass, by `state` (`free`, `busy`).
pub const WORKERS: &str = "ate_workers";
/// Running actors whose program stopped by itself, returned to their last durable snapshot.
pub const PROCESS_EXITS: &str = "ate_actor_process_exits_total";
/// Evictions tried by resumes that found no free worker, by `outcome` (`ok`: the victim
/// was suspended and its worker handed over; `in_use`: a request reached it first).
pub const EVICTIONS: &str = "ate_actor_evictions_total";
