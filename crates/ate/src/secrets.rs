//! Secrets at rest on this machine. The data dir (the SQLite store with every tenant's
//! records, the key-encryption key, the bootstrap admin token, the node's snapshots) is the
//! owner's only, tightened at start when an older version left it open; the token signing
//! keys in the store are sealed with the key-encryption key (KEK), which lives in a file
//! outside the store; and `ate up` keeps using the admin token it saved while it is good.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use ate_auth::{Kek, Role};
use ate_store::Store;

/// Mode of the data dir and of the directories ate keeps in it: the owner's only.
pub const DATA_DIR_MODE: u32 = 0o700;

/// The KEK's file in the data dir, unless `--kek-file` names another.
pub const DEFAULT_KEK_FILE: &str = "kek";

/// Directories in the data dir that older versions made with the umask's mode. Everything
/// in them is unreachable once the data dir is private; tightening them too keeps them
/// private if they are ever moved or mounted elsewhere.
const PRIVATE_SUBDIRS: &[&str] = &["node", "node/snapshots", "node/cache"];

/// How long before its expiry a saved admin token is replaced rather than used again: long
/// enough that a token `ate up` leaves behind does not run out under its user a day later.
pub const TOKEN_RENEW_BEFORE: Duration = Duration::from_secs(7 * 24 * 3600);

/// Creates the data dir owner-only, or makes an existing one so.
pub fn private_data_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DATA_DIR_MODE)
        .create(dir)
        .with_context(|| format!("cannot create data directory {}", dir.display()))?;
    tighten(dir)?;
    for sub in PRIVATE_SUBDIRS {
        let path = dir.join(sub);
        if path.is_dir() {
            tighten(&path)?;
        }
    }
    Ok(())
}

/// Sets [`DATA_DIR_MODE`] on `dir` if it grants anyone but its owner anything.
fn tighten(dir: &Path) -> anyhow::Result<()> {
    let mode = std::fs::metadata(dir)
        .with_context(|| format!("cannot read the mode of {}", dir.display()))?
        .permissions()
        .mode()
        & 0o777;
    if mode & !DATA_DIR_MODE != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(DATA_DIR_MODE))
            .with_context(|| format!("cannot make {} private", dir.display()))?;
        tracing::info!(path = %dir.display(), from = format!("{mode:o}"), to = format!("{DATA_DIR_MODE:o}"), "data directory mode tightened");
    }
    Ok(())
}

/// Where the KEK is: `--kek-file` (or `$ATE_KEK_FILE`), else `DATA_DIR/kek`.
pub fn kek_path(kek_file: Option<&Path>, data_dir: &Path) -> PathBuf {
    kek_file.map_or_else(|| data_dir.join(DEFAULT_KEK_FILE), Path::to_path_buf)
}

/// `store` with its signing keys sealed by the KEK in `kek_file` (created there on first
/// start): what a control plane runs on.
pub async fn seal_store(store: Arc<dyn Store>, kek_file: &Path) -> anyhow::Result<Arc<dyn Store>> {
    let kek = Kek::load_or_create(kek_file).with_context(|| {
        format!(
            "--kek-file: cannot load the key-encryption key {}",
            kek_file.display()
        )
    })?;
    ate_control::auth::keyring::sealed_store(store, kek)
        .await
        .context("cannot seal the token signing keys")
}

/// Whether `token` is one `ate up` may keep using for `subject`: it verifies against the
/// store's keys (so it is not revoked and its key not retired), is an admin over every
/// atespace, and does not expire within [`TOKEN_RENEW_BEFORE`].
pub async fn reusable_admin_token(
    auth: &ate_control::Authenticator,
    token: &str,
    subject: &str,
) -> bool {
    let claims = match auth.verify(token).await {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(error = %e, "the saved admin token is not usable; minting another");
            return false;
        }
    };
    let fresh = claims.expires_at() > SystemTime::now() + TOKEN_RENEW_BEFORE;
    claims.sub == subject && claims.role == Role::Admin && claims.covers_all() && fresh
}
