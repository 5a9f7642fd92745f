//! The wire contracts of ate, generated from `proto/` at build time: its control API
//! (`ateapi.Control`) and the node seam (`atenode`); plus conversions between wire messages
//! and model types and the one mapping from error kinds to gRPC codes.

pub mod bearer;
pub mod convert;
pub mod status;

#[allow(missing_debug_implementations, clippy::all)]
pub mod ateapi {
    tonic::include_proto!("ateapi");
}

/// The node service and the node registry: the seam between the control plane and node
/// daemons over the network.
#[allow(missing_debug_implementations, clippy::all)]
pub mod atenode {
    tonic::include_proto!("atenode");
}

/// The encoded file descriptor set, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("ateapi_descriptor");
