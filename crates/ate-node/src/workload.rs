//! Getting a template's module onto the node: read from a path or downloaded from a URL
//! (checked against the template's sha256 and kept on disk), then compiled once (wasm) or
//! placed in the sandbox read-only (process).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ate_seam::{SeamError, Workload};
use ate_wasm::{CompiledModule, WasmEngine, WasmError};

fn invalid(field: &str, reason: impl ToString) -> SeamError {
    SeamError::InvalidWorkload {
        field: field.into(),
        reason: reason.to_string(),
    }
}

/// Compile errors name the template field they come from.
pub(crate) fn wasm_error(e: WasmError) -> SeamError {
    match e {
        WasmError::ChecksumMismatch { .. } => invalid("spec.moduleSha256", e),
        WasmError::InvalidModule(_) => invalid("spec.module", e),
        other => SeamError::Internal(other.to_string()),
    }
}

/// The module bytes of `workload`.
async fn module_bytes(workload: &Workload, modules_dir: &Path) -> Result<Vec<u8>, SeamError> {
    let spec = &workload.spec;
    let m = spec.module.as_str();
    if m.starts_with("https://") {
        return Err(invalid(
            "spec.module",
            "https:// module URLs are not supported; serve the module over http:// with moduleSha256, or use a path",
        ));
    }
    if m.starts_with("http://") {
        let sha = &spec.module_sha256;
        let cached = modules_dir.join(format!("{sha}.wasm"));
        if let Ok(bytes) = tokio::fs::read(&cached).await
            && ate_wasm::sha256_hex(&bytes) == *sha
        {
            return Ok(bytes);
        }
        let url = m.to_string();
        let bytes =
            tokio::task::spawn_blocking(move || ate_wasm::fetch(&url, Duration::from_secs(60)))
                .await
                .map_err(|e| SeamError::Internal(e.to_string()))?
                .map_err(|e| invalid("spec.module", e))?;
        if ate_wasm::sha256_hex(&bytes) == *sha {
            let _ = tokio::fs::create_dir_all(modules_dir).await;
            if let Err(e) = tokio::fs::write(&cached, &bytes).await {
                tracing::warn!(path = %cached.display(), error = %e, "cannot keep downloaded module");
            }
        }
        return Ok(bytes);
    }
    let path = m.strip_prefix("file://").unwrap_or(m);
    tokio::fs::read(path)
        .await
        .map_err(|e| invalid("spec.module", format!("cannot read {path}: {e}")))
}

/// The compiled module of `workload`, compiled on first use.
pub(crate) async fn compile(
    engine: &Arc<WasmEngine>,
    workload: &Workload,
    modules_dir: &Path,
) -> Result<Arc<CompiledModule>, SeamError> {
    let bytes = module_bytes(workload, modules_dir).await?;
    let engine = engine.clone();
    let sha = workload.spec.module_sha256.clone();
    tokio::task::spawn_blocking(move || engine.compile(&bytes, Some(&sha)))
        .await
        .map_err(|e| SeamError::Internal(e.to_string()))?
        .map_err(wasm_error)
}

/// The program file of a `process` workload on this node's disk: a path as it is (checked
/// against moduleSha256 when given), a URL downloaded once into `modules_dir`.
pub(crate) async fn module_file(
    workload: &Workload,
    modules_dir: &Path,
) -> Result<std::path::PathBuf, SeamError> {
    let spec = &workload.spec;
    let m = spec.module.as_str();
    let is_url = m.starts_with("http://") || m.starts_with("https://");
    if !is_url && spec.module_sha256.is_empty() {
        let path = std::path::PathBuf::from(m.strip_prefix("file://").unwrap_or(m));
        return match tokio::fs::metadata(&path).await {
            Ok(meta) if meta.is_file() => Ok(path),
            Ok(_) => Err(invalid(
                "spec.module",
                format!("{} is not a file", path.display()),
            )),
            Err(e) => Err(invalid(
                "spec.module",
                format!("cannot read {}: {e}", path.display()),
            )),
        };
    }
    let bytes = module_bytes(workload, modules_dir).await?;
    let sha = ate_wasm::sha256_hex(&bytes);
    if !spec.module_sha256.is_empty() && sha != spec.module_sha256 {
        return Err(invalid(
            "spec.moduleSha256",
            format!("the module's sha256 is {sha}, not {}", spec.module_sha256),
        ));
    }
    let path = modules_dir.join(format!("{sha}.program"));
    if tokio::fs::metadata(&path).await.is_err() {
        let tmp = modules_dir.join(format!("{sha}.program.tmp"));
        let write = async {
            tokio::fs::create_dir_all(modules_dir).await?;
            tokio::fs::write(&tmp, &bytes).await?;
            tokio::fs::rename(&tmp, &path).await
        };
        write
            .await
            .map_err(|e| SeamError::Internal(format!("{}: {e}", path.display())))?;
    }
    Ok(path)
}
