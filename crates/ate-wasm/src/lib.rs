//! The `wasm` sandbox class. A workload is a core WebAssembly module speaking a small HTTP
//! ABI (`docs/sandboxes.md`): the host writes a request into guest memory and calls
//! `ate_handle`; the guest streams its response back through `ate.response_*` imports.
//! Guests get a WASI preview 1 subset (clocks, random, stdout/stderr as logs), outbound
//! HTTP only to allowed hosts, a memory page limit and a compute budget per request.
//! Between requests a guest's whole state (linear memory plus every mutable global,
//! exported by rewriting the module at load) can be captured and restored byte for byte
//! into a fresh instance, on this node or another.

mod egress;
mod engine;
mod guest;
mod host;
mod image;
mod instrument;
mod mapped;

pub use egress::{EgressError, EgressPolicy, fetch};
pub use engine::{CompiledModule, EPOCH_TICK, RUNTIME, WasmEngine, sha256_hex};
pub use guest::{Guest, GuestConfig};
pub use host::{LogSink, OutputStream, ResponsePart, ResponseSink};
pub use image::{GlobalValue, GuestState, MEMORY_FILE, MemoryImage, STATE_FILE};
pub use instrument::{GLOBAL_EXPORT_PREFIX, Instrumented, export_mutable_globals};
pub use mapped::MappedMemory;

/// A wasm page.
pub const PAGE: usize = 65_536;

/// Everything the wasm sandbox can fail with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WasmError {
    #[error("invalid wasm module: {0}")]
    InvalidModule(String),
    #[error("module checksum mismatch: expected {expected}, got {actual}")]
    ChecksumMismatch { expected: String, actual: String },
    #[error("cannot instantiate the module: {0}")]
    Instantiate(String),
    #[error("guest exceeded its request budget of {budget:?}")]
    BudgetExceeded { budget: std::time::Duration },
    #[error("guest trapped: {0}")]
    Trap(String),
    #[error("guest is unusable after a trap and must be replaced")]
    Poisoned,
    #[error("snapshot does not fit this guest: {0}")]
    Snapshot(String),
    #[error("wasm runtime: {0}")]
    Internal(String),
}
