//! A gRPC client of the upstream Agent Substrate control API (`ateapi.Control`), generated
//! from `proto/upstream.proto`: the upstream's services, messages and field numbers written
//! out on their own, with nothing taken from ate's proto. A test that drives ate through
//! this client therefore fails whenever ate's wire format drifts from the upstream's, which
//! a test through ate's own generated client cannot notice.

#[allow(missing_debug_implementations, clippy::all)]
pub mod ateapi {
    tonic::include_proto!("ateapi");
}
