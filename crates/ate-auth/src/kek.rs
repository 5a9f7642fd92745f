//! The key-encryption key (KEK) that seals private signing keys at rest. It lives in a file
//! outside the store (mode 0600), so a copy of the store (a backup, a dump, a replica of
//! the database) yields no key that signs tokens. Sealing is ChaCha20-Poly1305 with a
//! random nonce per value and the caller's associated data (the record a value belongs to),
//! so a sealed value neither reads nor moves to another record without the KEK.
//!
//! A sealed value is text: `sealed:v1:<kek id>:<base64 of nonce, ciphertext and tag>`. The
//! KEK id (a short hash of the key) says which KEK sealed it, so a process given the wrong
//! file is told so, naming the file, instead of seeing a corrupt record.

use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

/// Bytes in a KEK (ChaCha20-Poly1305 takes a 256-bit key). A KEK file holds exactly these.
pub const KEK_LEN: usize = 32;
/// Mode of a KEK file: the owner's only.
pub const KEK_FILE_MODE: u32 = 0o600;
/// How a sealed value starts; nothing else a store holds starts so (base64 has no `:`).
pub const SEALED_PREFIX: &str = "sealed:v1:";
/// Bytes of the KEK id: enough to tell a few files apart, far too few to say anything of
/// the key.
const ID_BYTES: usize = 8;
/// Domain separation for the KEK id's hash.
const ID_DOMAIN: &[u8] = b"ate key-encryption key id\0";

/// Why a KEK could not be loaded or a value not be sealed or opened. Messages name the KEK
/// file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KekError {
    #[error("kek file {path}: {reason}")]
    File { path: String, reason: String },
    #[error(
        "kek file {path}: holds {len} bytes, a key-encryption key is {KEK_LEN} (make one with `head -c {KEK_LEN} /dev/urandom > FILE`)"
    )]
    Length { path: String, len: u64 },
    #[error(
        "sealed with key-encryption key {sealed_with}, but {file} holds key {have}: give this process the kek file that sealed it (every api replica of a store needs the same one)"
    )]
    WrongKey {
        sealed_with: String,
        file: String,
        have: String,
    },
    #[error("sealed value does not open with {file}: {reason}")]
    Corrupt { file: String, reason: String },
    #[error("key-encryption failed: {0}")]
    Crypto(String),
}

/// A key-encryption key. `Debug` shows its id and where it came from, never the key.
pub struct Kek {
    key: LessSafeKey,
    id: String,
    source: String,
}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kek")
            .field("id", &self.id)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// Whether `text` is a sealed value.
pub fn is_sealed(text: &str) -> bool {
    text.starts_with(SEALED_PREFIX)
}

/// The id of the KEK that sealed `text`, if it is a sealed value.
pub fn sealed_with(text: &str) -> Option<&str> {
    text.strip_prefix(SEALED_PREFIX)?
        .split_once(':')
        .map(|(id, _)| id)
}

impl Kek {
    /// A KEK from its bytes; `source` names where they came from in messages.
    pub fn from_bytes(bytes: &[u8], source: impl Into<String>) -> Result<Kek, KekError> {
        let source = source.into();
        if bytes.len() != KEK_LEN {
            return Err(KekError::Length {
                path: source,
                len: bytes.len() as u64,
            });
        }
        let key = UnboundKey::new(&CHACHA20_POLY1305, bytes)
            .map_err(|_| KekError::Crypto("cannot build a chacha20-poly1305 key".into()))?;
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(ID_DOMAIN);
        ctx.update(bytes);
        let id = ctx.finish().as_ref()[..ID_BYTES]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(Kek {
            key: LessSafeKey::new(key),
            id,
            source,
        })
    }

    /// A fresh random KEK (not written anywhere).
    pub fn generate(source: impl Into<String>) -> Result<Kek, KekError> {
        Kek::from_bytes(&random_key()?, source)
    }

    /// The KEK in `path`, created there (32 random bytes, mode 0600) if the file does not
    /// exist. Two processes creating it at once end up with the same one: the file appears
    /// whole, by a link that only one of them wins. A file others may read is made the
    /// owner's only where that is possible, and reported where it is not (a read-only
    /// secret mount).
    pub fn load_or_create(path: &Path) -> Result<Kek, KekError> {
        match read_key(path)? {
            Some(kek) => Ok(kek),
            None => {
                create_key_file(path)?;
                read_key(path)?.ok_or_else(|| file_err(path, "vanished after it was created"))
            }
        }
    }

    /// A short hash of the key, shown in messages and logs so that operators can tell
    /// which file sealed what.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Where the key came from (its file).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Seals `plaintext`, bound to `aad` (the record it belongs to).
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<String, KekError> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| KekError::Crypto("no randomness for a nonce".into()))?;
        let mut sealed = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut sealed,
            )
            .map_err(|_| KekError::Crypto("chacha20-poly1305 sealing failed".into()))?;
        let mut framed = nonce.to_vec();
        framed.extend_from_slice(&sealed);
        Ok(format!(
            "{SEALED_PREFIX}{}:{}",
            self.id,
            STANDARD.encode(framed)
        ))
    }

    /// Opens a value [`seal`](Kek::seal) made with this KEK and the same `aad`.
    pub fn open(&self, aad: &[u8], text: &str) -> Result<Vec<u8>, KekError> {
        let corrupt = |reason: &str| KekError::Corrupt {
            file: self.source.clone(),
            reason: reason.into(),
        };
        let (id, data) = text
            .strip_prefix(SEALED_PREFIX)
            .and_then(|rest| rest.split_once(':'))
            .ok_or_else(|| corrupt("not a sealed value"))?;
        if id != self.id {
            return Err(KekError::WrongKey {
                sealed_with: id.into(),
                file: self.source.clone(),
                have: self.id.clone(),
            });
        }
        let framed = STANDARD
            .decode(data)
            .map_err(|_| corrupt("not valid base64"))?;
        if framed.len() < NONCE_LEN + CHACHA20_POLY1305.tag_len() {
            return Err(corrupt("too short"));
        }
        let (nonce, sealed) = framed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| corrupt("bad nonce"))?;
        let mut in_out = sealed.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(aad), &mut in_out)
            .map_err(|_| corrupt("it was altered, or sealed for another record"))?;
        Ok(plain.to_vec())
    }
}

fn random_key() -> Result<[u8; KEK_LEN], KekError> {
    let mut bytes = [0u8; KEK_LEN];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| KekError::Crypto("no randomness for a key-encryption key".into()))?;
    Ok(bytes)
}

fn file_err(path: &Path, reason: impl fmt::Display) -> KekError {
    KekError::File {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// The KEK in `path`; `None` if there is no such file.
fn read_key(path: &Path) -> Result<Option<Kek>, KekError> {
    use std::os::unix::fs::PermissionsExt;
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(file_err(path, format!("cannot open: {e}"))),
    };
    let meta = file
        .metadata()
        .map_err(|e| file_err(path, format!("cannot stat: {e}")))?;
    if meta.len() != KEK_LEN as u64 {
        return Err(KekError::Length {
            path: path.display().to_string(),
            len: meta.len(),
        });
    }
    let mut bytes = Vec::with_capacity(KEK_LEN);
    file.take(KEK_LEN as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| file_err(path, format!("cannot read: {e}")))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & !KEK_FILE_MODE != 0 {
        let tightened =
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(KEK_FILE_MODE));
        match tightened {
            Ok(()) => {
                tracing::info!(path = %path.display(), from = format!("{mode:o}"), "kek file mode tightened to 600")
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), error = %e, "kek file is readable by others and cannot be made private")
            }
        }
    }
    Kek::from_bytes(&bytes, path.display().to_string()).map(Some)
}

/// Writes a new random KEK to `path`: to a private temporary file first, then linked into
/// place, so the file is never seen half-written and an existing one is never replaced.
fn create_key_file(path: &Path) -> Result<(), KekError> {
    use std::os::unix::fs::OpenOptionsExt;
    let name = path
        .file_name()
        .ok_or_else(|| file_err(path, "names no file"))?;
    let mut suffix = [0u8; 8];
    SystemRandom::new()
        .fill(&mut suffix)
        .map_err(|_| KekError::Crypto("no randomness for a file name".into()))?;
    let mut tmp_name = name.to_owned();
    tmp_name.push(format!(
        ".tmp-{}",
        suffix
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    ));
    let tmp = path.with_file_name(tmp_name);
    let written = (|| -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(KEK_FILE_MODE)
            .open(&tmp)?;
        let key = random_key().map_err(std::io::Error::other)?;
        file.write_all(&key)?;
        file.sync_all()
    })();
    let linked = written.and_then(|()| std::fs::hard_link(&tmp, path));
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            sync_dir(path);
            tracing::info!(path = %path.display(), "key-encryption key created");
            Ok(())
        }
        // Another process created it first: theirs is the one.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(file_err(path, format!("cannot create: {e}"))),
    }
}

/// Makes the new directory entry durable, so a crash right after start cannot lose the KEK
/// that keys already sealed with it need. Best effort: not every file system syncs a
/// directory.
fn sync_dir(path: &Path) {
    let dir: PathBuf = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn seals_and_opens_bound_to_the_record() {
        let kek = Kek::generate("test").unwrap();
        let sealed = kek.seal(b"signingkeys/a", b"secret").unwrap();
        assert!(is_sealed(&sealed));
        assert_eq!(sealed_with(&sealed), Some(kek.id()));
        assert!(!sealed.contains("secret"));
        assert_eq!(kek.open(b"signingkeys/a", &sealed).unwrap(), b"secret");
        // Another record's associated data, or a flipped byte, does not open.
        assert!(matches!(
            kek.open(b"signingkeys/b", &sealed),
            Err(KekError::Corrupt { .. })
        ));
        let mut tampered = sealed.clone().into_bytes();
        let last = tampered.len() - 3;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert!(kek.open(b"signingkeys/a", &tampered).is_err());
        // Nonces are random: the same value seals differently each time.
        assert_ne!(kek.seal(b"signingkeys/a", b"secret").unwrap(), sealed);
    }

    #[test]
    fn a_wrong_kek_is_named() {
        let a = Kek::generate("/etc/ate/a.kek").unwrap();
        let b = Kek::generate("/etc/ate/b.kek").unwrap();
        let sealed = a.seal(b"x", b"secret").unwrap();
        let err = b.open(b"x", &sealed).unwrap_err();
        assert!(matches!(err, KekError::WrongKey { .. }));
        let msg = err.to_string();
        assert!(
            msg.contains("/etc/ate/b.kek") && msg.contains(a.id()),
            "{msg}"
        );
    }

    #[test]
    fn file_is_created_private_once_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kek");
        let first = Kek::load_or_create(&path).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.len(), KEK_LEN as u64);
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let again = Kek::load_or_create(&path).unwrap();
        assert_eq!(first.id(), again.id());
        let sealed = first.seal(b"k", b"v").unwrap();
        assert_eq!(again.open(b"k", &sealed).unwrap(), b"v");
        // Only the key file is left: no temporary files.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        assert!(format!("{first:?}").contains(first.id()));
    }

    #[test]
    fn loose_file_is_tightened_and_bad_length_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kek");
        std::fs::write(&path, [7u8; KEK_LEN]).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        Kek::load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);

        let short = dir.path().join("short");
        std::fs::write(&short, b"0123456789").unwrap();
        let err = Kek::load_or_create(&short).unwrap_err().to_string();
        assert!(
            err.contains(&short.display().to_string()) && err.contains("10 bytes"),
            "{err}"
        );
    }

    #[test]
    fn missing_directory_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nowhere/kek");
        let err = Kek::load_or_create(&path).unwrap_err().to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
    }
}
