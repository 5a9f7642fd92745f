//! One wasmtime engine per node, with its epoch ticker and a cache of compiled modules, so
//! that starting a guest of a known module is an instantiation of microseconds.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::{Config, Engine, InstancePre, Linker, Module};

use crate::WasmError;
use crate::host::{self, HostState};
use crate::instrument::export_mutable_globals;

/// How often the epoch advances: the granularity of request budgets.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The runtime recorded in snapshot manifests.
pub const RUNTIME: &str = "wasmtime/48";

/// A module compiled, instrumented and linked, ready to instantiate.
pub struct CompiledModule {
    pub sha256: String,
    pub(crate) pre: InstancePre<HostState>,
    /// Export names of every mutable global, in index order: what a snapshot saves.
    pub(crate) mutable_globals: Vec<String>,
}

impl std::fmt::Debug for CompiledModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledModule")
            .field("sha256", &self.sha256)
            .field("mutable_globals", &self.mutable_globals)
            .finish()
    }
}

/// The engine of one node.
pub struct WasmEngine {
    engine: Engine,
    linker: Linker<HostState>,
    modules: Mutex<HashMap<String, Arc<CompiledModule>>>,
    stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for WasmEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmEngine").finish_non_exhaustive()
    }
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl WasmEngine {
    pub fn new() -> Result<Self, WasmError> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        let engine = Engine::new(&config).map_err(|e| WasmError::Internal(e.to_string()))?;
        let mut linker = Linker::new(&engine);
        host::define(&mut linker).map_err(|e| WasmError::Internal(e.to_string()))?;
        let stop = Arc::new(AtomicBool::new(false));
        let (ticking, flag) = (engine.clone(), stop.clone());
        std::thread::Builder::new()
            .name("ate-wasm-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    ticking.increment_epoch();
                }
            })
            .map_err(|e| WasmError::Internal(e.to_string()))?;
        Ok(Self {
            engine,
            linker,
            modules: Mutex::new(HashMap::new()),
            stop,
        })
    }

    pub(crate) fn engine(&self) -> &Engine {
        &self.engine
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<CompiledModule>>> {
        self.modules.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The compiled module for `bytes` (a binary module or WAT text), compiling it on first
    /// use. `expected_sha256`, when given, must match the bytes.
    pub fn compile(
        &self,
        bytes: &[u8],
        expected_sha256: Option<&str>,
    ) -> Result<Arc<CompiledModule>, WasmError> {
        let sha = sha256_hex(bytes);
        if let Some(want) = expected_sha256.filter(|w| !w.is_empty())
            && want != sha
        {
            return Err(WasmError::ChecksumMismatch {
                expected: want.to_string(),
                actual: sha,
            });
        }
        if let Some(m) = self.lock().get(&sha) {
            return Ok(m.clone());
        }
        let binary =
            wat::parse_bytes(bytes).map_err(|e| WasmError::InvalidModule(e.to_string()))?;
        let instrumented = export_mutable_globals(&binary)?;
        let module = Module::new(&self.engine, &instrumented.bytes)
            .map_err(|e| WasmError::InvalidModule(format!("{e:#}")))?;
        for (name, what) in [
            ("memory", "its linear memory"),
            ("ate_alloc", "ate_alloc"),
            ("ate_handle", "ate_handle"),
        ] {
            if module.get_export(name).is_none() {
                return Err(WasmError::InvalidModule(format!(
                    "module must export {what} as `{name}` (see docs/sandboxes.md)"
                )));
            }
        }
        let mut linker = self.linker.clone();
        linker
            .define_unknown_imports_as_traps(&module)
            .map_err(|e| WasmError::InvalidModule(format!("{e:#}")))?;
        let pre = linker
            .instantiate_pre(&module)
            .map_err(|e| WasmError::InvalidModule(format!("{e:#}")))?;
        let compiled = Arc::new(CompiledModule {
            sha256: sha.clone(),
            pre,
            mutable_globals: instrumented.mutable_globals,
        });
        tracing::debug!(sha256 = %sha, "compiled wasm module");
        self.lock().insert(sha, compiled.clone());
        Ok(compiled)
    }

    /// Modules compiled so far.
    pub fn cached_modules(&self) -> usize {
        self.lock().len()
    }
}

impl Drop for WasmEngine {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
