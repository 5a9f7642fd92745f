//! A guest's complete state between requests: its linear memory and every mutable global.
//! Stored as two snapshot files: `memory.bin` (the raw memory) and `state.json` (globals,
//! page count, the module it belongs to).

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::WasmError;

pub const MEMORY_FILE: &str = "memory.bin";
pub const STATE_FILE: &str = "state.json";

/// The value of one mutable global, by its export name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GlobalValue {
    pub name: String,
    /// `i32`, `i64`, `f32` or `f64`.
    pub ty: String,
    /// The value's bits (floats by their IEEE representation).
    pub bits: u64,
}

/// What `state.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GuestState {
    pub module_sha256: String,
    pub memory_bytes: u64,
    pub globals: Vec<GlobalValue>,
}

impl GuestState {
    /// Parses `state.json`.
    pub fn parse(bytes: &[u8]) -> Result<Self, WasmError> {
        serde_json::from_slice(bytes).map_err(|e| WasmError::Snapshot(format!("{STATE_FILE}: {e}")))
    }
}

/// A captured guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryImage {
    pub state: GuestState,
    pub memory: Bytes,
}

impl MemoryImage {
    /// The snapshot files for this image.
    pub fn to_files(&self) -> Result<Vec<(String, Bytes)>, WasmError> {
        let state =
            serde_json::to_vec(&self.state).map_err(|e| WasmError::Snapshot(e.to_string()))?;
        Ok(vec![
            (STATE_FILE.to_string(), Bytes::from(state)),
            (MEMORY_FILE.to_string(), self.memory.clone()),
        ])
    }

    /// Rebuilds an image from snapshot files, checking that they agree with each other.
    pub fn from_files(files: &[(String, Bytes)]) -> Result<Self, WasmError> {
        let get = |name: &str| {
            files
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, b)| b.clone())
                .ok_or_else(|| WasmError::Snapshot(format!("snapshot has no {name}")))
        };
        let state = GuestState::parse(&get(STATE_FILE)?)?;
        let memory = get(MEMORY_FILE)?;
        if memory.len() as u64 != state.memory_bytes || memory.len() % crate::PAGE != 0 {
            return Err(WasmError::Snapshot(format!(
                "{MEMORY_FILE} holds {} bytes, state says {}",
                memory.len(),
                state.memory_bytes
            )));
        }
        Ok(Self { state, memory })
    }
}
