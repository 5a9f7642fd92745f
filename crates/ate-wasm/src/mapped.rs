//! Restoring guest memory by mapping the snapshot file instead of copying it. The saved
//! memory is mapped private (copy-on-write) over the instance's linear memory: restore costs
//! one system call whatever the size, and each page is read from the file (usually the
//! page cache) only when the guest first touches it. On hosts where page faults are
//! expensive this turns a 64 MiB restore from tens of milliseconds into tens of
//! microseconds; the guest pays for the pages it actually uses.
//!
//! This is the only module of ate that uses `unsafe`: one `mmap` call, justified below.
#![allow(unsafe_code)]

use std::fs::File;
use std::sync::Arc;

use rustix::mm::{MapFlags, ProtFlags};

use crate::WasmError;

/// A snapshot's memory file, held open so the mapping outlives the cache evicting the file.
#[derive(Debug, Clone)]
pub struct MappedMemory {
    file: Arc<File>,
    len: usize,
}

impl MappedMemory {
    /// Opens `path` (a `memory.bin` the node verified when it entered the cache).
    pub fn open(path: &std::path::Path) -> Result<Self, WasmError> {
        let file = File::open(path)
            .map_err(|e| WasmError::Snapshot(format!("{}: {e}", path.display())))?;
        let len = file
            .metadata()
            .map_err(|e| WasmError::Snapshot(format!("{}: {e}", path.display())))?
            .len() as usize;
        if !len.is_multiple_of(crate::PAGE) {
            return Err(WasmError::Snapshot(format!(
                "{} is {len} bytes, not whole wasm pages",
                path.display()
            )));
        }
        Ok(Self {
            file: Arc::new(file),
            len,
        })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Maps the file over `[base, base + len)`, which must be the start of a linear memory
    /// at least `len` bytes long.
    pub(crate) fn map_over(&self, base: *mut u8, accessible: usize) -> Result<(), WasmError> {
        if self.len > accessible {
            return Err(WasmError::Snapshot(format!(
                "memory file of {} bytes does not fit a memory of {accessible}",
                self.len
            )));
        }
        if self.len == 0 {
            return Ok(());
        }
        // SAFETY: `base` is the start of the instance's linear memory and `self.len` bytes
        // of it are accessible (checked above; the caller grew the memory first). Wasmtime
        // reserves linear memory with its own page-aligned mmap, and `len` is a multiple of
        // the wasm page size, so the range covers whole host pages inside that reservation.
        // MAP_FIXED replaces those pages atomically with private copy-on-write pages of the
        // file: the range stays mapped read-write and the same size, so wasmtime's view of
        // the memory (base, length, protections) is unchanged, and when wasmtime unmaps its
        // reservation the file pages go with it. No Rust reference into the memory is alive
        // across this call: the caller holds the store mutably and has no slice borrowed.
        // The file is never written in place (the cache writes new files and renames), so
        // untouched pages cannot change under the guest.
        let mapped = unsafe {
            rustix::mm::mmap(
                base.cast(),
                self.len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::PRIVATE | MapFlags::FIXED,
                &*self.file,
                0,
            )
        }
        .map_err(|e| WasmError::Snapshot(format!("cannot map the memory file: {e}")))?;
        if mapped.cast::<u8>() != base {
            return Err(WasmError::Internal(
                "mmap placed the memory elsewhere".into(),
            ));
        }
        Ok(())
    }
}
