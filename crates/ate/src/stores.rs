//! Picking a store backend by URL. This is the only place that names concrete backends.

use std::sync::Arc;

use anyhow::{Context, bail};
use ate_store::Store;
use ate_store_sqlite::SqliteStore;

/// Store URL schemes this build understands.
pub const SCHEMES: &[&str] = &["sqlite"];

/// Opens the store a URL names: `sqlite://PATH` (relative or absolute).
pub fn open(url: &str) -> anyhow::Result<Arc<dyn Store>> {
    let (scheme, rest) = url.split_once("://").with_context(|| {
        format!(
            "invalid store URL {url:?}: expected SCHEME://..., e.g. sqlite:///var/lib/ate/ate.db"
        )
    })?;
    match scheme {
        "sqlite" => {
            if rest.is_empty() {
                bail!("invalid store URL {url:?}: sqlite:// needs a file path");
            }
            let store =
                SqliteStore::open(rest).with_context(|| format!("cannot open store {url}"))?;
            Ok(Arc::new(store))
        }
        other => bail!(
            "store scheme {other:?} is not supported by this build (supported: {})",
            SCHEMES.join(", ")
        ),
    }
}
