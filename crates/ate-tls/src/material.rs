//! A component's TLS directory (`tls.crt`, `tls.key`, `ca.crt`), read at start and re-read
//! when the files change, checked at most once a second as handshakes come: rotating a
//! certificate, or the CA, is writing new files, and the process picks them up without a
//! restart. A change that cannot be loaded (a half-written pair, a bad file) keeps the last
//! good material and is tried again on the next check.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};

use crate::{CERT_FILE, KEY_FILE, PeerIdentity, TRUST_COPY_FILE, TlsError, identity_of};

/// How often, at most, the files are looked at again.
pub const RELOAD_CHECK_EVERY: Duration = Duration::from_secs(1);

/// A component's TLS material, kept current with its directory. Cheap to clone: clones
/// share one cache.
#[derive(Clone)]
pub struct TlsDir {
    inner: Arc<Reloader>,
}

impl std::fmt::Debug for TlsDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsDir")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

struct Reloader {
    dir: PathBuf,
    state: Mutex<State>,
}

struct State {
    checked: Instant,
    stamps: Stamps,
    loaded: Arc<Loaded>,
    /// The stamps of a change that could not be loaded, so it is reported once.
    refused: Option<Stamps>,
}

/// What identifies a version of each file: modification time, length and inode (files are
/// replaced by renaming, so a new version is a new inode even within one clock tick).
type Stamps = [Option<(SystemTime, u64, u64)>; 3];

/// The material of one version of the directory, ready for handshakes.
pub(crate) struct Loaded {
    pub(crate) certified: Arc<CertifiedKey>,
    pub(crate) identity: Option<PeerIdentity>,
    pub(crate) client_verifier: Arc<dyn ClientCertVerifier>,
    pub(crate) client_config: Arc<rustls::ClientConfig>,
}

impl TlsDir {
    /// Reads the directory; fails if any file is missing or unusable, so a process does
    /// not start with TLS it cannot do.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, TlsError> {
        let dir = dir.into();
        let stamps = stamps(&dir);
        let loaded = Arc::new(Loaded::read(&dir)?);
        Ok(Self {
            inner: Arc::new(Reloader {
                dir,
                state: Mutex::new(State {
                    checked: Instant::now(),
                    stamps,
                    loaded,
                    refused: None,
                }),
            }),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The identity of this process's own certificate, as it is now.
    pub fn identity(&self) -> Option<PeerIdentity> {
        self.current().identity.clone()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every mutation replaces whole fields.
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current material, re-read first if the last check is a second old and a file
    /// changed since.
    pub(crate) fn current(&self) -> Arc<Loaded> {
        let mut state = self.state();
        if state.checked.elapsed() < RELOAD_CHECK_EVERY {
            return state.loaded.clone();
        }
        state.checked = Instant::now();
        let now = stamps(&self.inner.dir);
        if now == state.stamps || state.refused.as_ref() == Some(&now) {
            return state.loaded.clone();
        }
        match Loaded::read(&self.inner.dir) {
            Ok(loaded) => {
                tracing::info!(dir = %self.inner.dir.display(), identity = ?loaded.identity, "tls files changed; using the new ones");
                state.loaded = Arc::new(loaded);
                state.stamps = now;
                state.refused = None;
            }
            Err(e) => {
                tracing::warn!(dir = %self.inner.dir.display(), error = %e, "tls files changed but cannot be used; keeping the previous ones");
                state.refused = Some(now);
            }
        }
        state.loaded.clone()
    }
}

impl Loaded {
    fn read(dir: &Path) -> Result<Self, TlsError> {
        let provider = crate::provider();
        let cert_path = dir.join(CERT_FILE);
        let chain = parse_certs(&cert_path, &read(&cert_path)?)?;
        let key_path = dir.join(KEY_FILE);
        let key = PrivateKeyDer::from_pem_slice(&read(&key_path)?)
            .map_err(|e| TlsError::invalid(&key_path, format!("not a private key: {e}")))?;
        let certified = CertifiedKey::from_der(chain, key, &provider).map_err(|e| {
            TlsError::invalid(&key_path, format!("cannot be used with {CERT_FILE}: {e}"))
        })?;
        let identity = certified.cert.first().and_then(identity_of);
        let trust_path = dir.join(TRUST_COPY_FILE);
        let roots = Arc::new(roots(&trust_path, &read(&trust_path)?)?);
        if let Some(leaf) = certified.cert.first()
            && let Err(reason) = check_chain(leaf, &roots)
        {
            tracing::warn!(dir = %dir.display(), %reason, "this process's own certificate does not verify against its trust bundle; peers will refuse it");
        }
        let client_verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider)
            .allow_unauthenticated()
            .build()
            .map_err(|e| TlsError::invalid(&trust_path, e.to_string()))?;
        let certified = Arc::new(certified);
        let client_config = crate::client::client_config(roots, Some(certified.clone()))?;
        Ok(Self {
            certified,
            identity,
            client_verifier,
            client_config,
        })
    }
}

/// Why `leaf` does not chain to `roots` now, if it does not.
fn check_chain(leaf: &CertificateDer<'_>, roots: &RootCertStore) -> Result<(), String> {
    let leaf = webpki::EndEntityCert::try_from(leaf).map_err(|e| format!("{e:?}"))?;
    leaf.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &roots.roots,
        &[],
        UnixTime::now(),
        webpki::KeyUsage::client_auth(),
        None,
        None,
    )
    .map(drop)
    .map_err(|e| format!("{e:?}"))
}

fn stamps(dir: &Path) -> Stamps {
    [CERT_FILE, KEY_FILE, TRUST_COPY_FILE].map(|f| {
        let m = std::fs::metadata(dir.join(f)).ok()?;
        Some((m.modified().ok()?, m.len(), m.ino()))
    })
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::io(path, e))
}

/// The certificates of a PEM file (at least one).
pub(crate) fn parse_certs(
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::invalid(path, format!("not a pem certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(TlsError::invalid(path, "holds no certificate"));
    }
    Ok(certs)
}

/// The trust anchors of a PEM bundle.
pub(crate) fn roots(path: &Path, pem: &[u8]) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in parse_certs(path, pem)? {
        roots
            .add(cert)
            .map_err(|e| TlsError::invalid(path, format!("not a ca certificate: {e}")))?;
    }
    Ok(roots)
}

/// Replaces `path` with `contents`, readable by anyone (certificates).
pub(crate) fn write_public(path: &Path, contents: &str) -> Result<(), TlsError> {
    write_file(path, contents, 0o644)
}

/// Replaces `path` with `contents`, readable by the owner only (keys).
pub(crate) fn write_private(path: &Path, contents: &str) -> Result<(), TlsError> {
    write_file(path, contents, 0o600)
}

/// Writes `contents` beside `path` and renames it over `path`: a reader sees the old file or
/// the new one, never half of one.
fn write_file(path: &Path, contents: &str, mode: u32) -> Result<(), TlsError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let aside = path.with_file_name(format!(".{name}.tmp"));
    match std::fs::remove_file(&aside) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(TlsError::io(&aside, e)),
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&aside)
        .map_err(|e| TlsError::io(&aside, e))?;
    // The umask may have taken bits away, never added: set the mode the file must have.
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(|e| TlsError::io(&aside, e))?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| TlsError::io(&aside, e))?;
    std::fs::rename(&aside, path).map_err(|e| TlsError::io(path, e))
}
