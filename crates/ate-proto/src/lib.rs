//! The wire contract of ate's control API (`ateapi.Control`), generated from `proto/` at
//! build time, plus conversions between wire messages and model types and the one mapping
//! from error kinds to gRPC codes.

pub mod convert;
pub mod status;

#[allow(missing_debug_implementations, clippy::all)]
pub mod ateapi {
    tonic::include_proto!("ateapi");
}

/// The encoded file descriptor set, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("ateapi_descriptor");
