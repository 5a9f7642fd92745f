//! The manifest that describes one snapshot. It is written last, so a snapshot without one
//! is incomplete and is never restored.

use ate_model::{ActorRef, SnapshotScope};
use serde::{Deserialize, Serialize};

use crate::SnapshotError;

/// Version of the manifest layout this code writes and reads.
pub const FORMAT: u32 = 1;

/// Largest `manifest.json` read from storage (1 MiB). A manifest lists a few files, about
/// 200 bytes each, so anything bigger is damaged or hostile and is refused before it is
/// read whole or parsed.
pub const MAX_MANIFEST_BYTES: u64 = 1 << 20;

/// One file of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileEntry {
    pub name: String,
    /// Size before compression.
    pub size: u64,
    pub compressed_size: u64,
    /// Lower-case hex SHA-256 of the uncompressed content.
    pub sha256: String,
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub format: u32,
    pub id: String,
    pub atespace: String,
    pub actor: String,
    pub sandbox_class: String,
    pub scope: SnapshotScope,
    /// The runtime that wrote it (e.g. `ate/0.1.0 wasmtime/48`): restores can refuse
    /// snapshots from an incompatible runtime.
    pub runtime: String,
    pub created_at_ms: u64,
    pub files: Vec<FileEntry>,
}

impl Manifest {
    /// A manifest for `files` of `actor`'s snapshot `id`, created now.
    pub fn new(
        actor: &ActorRef,
        id: &str,
        sandbox_class: &str,
        scope: SnapshotScope,
        runtime: &str,
        files: Vec<FileEntry>,
    ) -> Self {
        Manifest {
            format: FORMAT,
            id: id.into(),
            atespace: actor.atespace.clone(),
            actor: actor.id.clone(),
            sandbox_class: sandbox_class.into(),
            scope,
            runtime: runtime.into(),
            created_at_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
            files,
        }
    }

    /// The size of all files, uncompressed (saturating: sizes come from storage, and a
    /// damaged manifest must not overflow the sum).
    pub fn total_size(&self) -> u64 {
        self.files
            .iter()
            .fold(0u64, |total, f| total.saturating_add(f.size))
    }

    /// Parses `manifest.json` of `actor`'s snapshot `id` as read from storage, and checks
    /// it: at most [`MAX_MANIFEST_BYTES`], layout [`FORMAT`], naming this very snapshot,
    /// and every file name safe (see [`validate_file_name`]). Anything else is
    /// [`SnapshotError::Corrupt`].
    pub fn from_json(bytes: &[u8], actor: &ActorRef, id: &str) -> Result<Self, SnapshotError> {
        let corrupt = |reason: String| SnapshotError::Corrupt {
            actor: actor.to_string(),
            id: id.into(),
            reason,
        };
        if bytes.len() as u64 > MAX_MANIFEST_BYTES {
            return Err(corrupt(too_big(bytes.len() as u64)));
        }
        let m: Manifest =
            serde_json::from_slice(bytes).map_err(|e| corrupt(format!("manifest: {e}")))?;
        if m.format != FORMAT {
            return Err(corrupt(format!(
                "manifest format {} is not {FORMAT}",
                m.format
            )));
        }
        if m.id != id || m.atespace != actor.atespace || m.actor != actor.id {
            return Err(corrupt("manifest names another snapshot".into()));
        }
        for f in &m.files {
            validate_file_name(&f.name).map_err(|e| corrupt(e.to_string()))?;
        }
        Ok(m)
    }
}

/// Why a manifest of `size` bytes is refused.
pub(crate) fn too_big(size: u64) -> String {
    format!("manifest.json is {size} bytes, over the limit of {MAX_MANIFEST_BYTES}")
}

/// Entries for files in hand that are not compressed yet (a node-local checkpoint):
/// sizes and digests, `compressed_size` 0.
pub fn describe_files(files: &[(String, bytes::Bytes)]) -> Result<Vec<FileEntry>, SnapshotError> {
    files
        .iter()
        .map(|(name, data)| {
            validate_file_name(name)?;
            Ok(FileEntry {
                name: name.clone(),
                size: data.len() as u64,
                compressed_size: 0,
                sha256: crate::sha256(data),
            })
        })
        .collect()
}

/// Checks a file name inside a snapshot: one path component of `[A-Za-z0-9._-]`, not `.`
/// or `..`, so no name can escape the snapshot's directory.
pub fn validate_file_name(name: &str) -> Result<(), SnapshotError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name != "."
        && name != ".."
        && name != "manifest.json"
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(SnapshotError::InvalidName {
            what: "file name",
            name: name.into(),
        })
    }
}

/// Checks an actor reference before it names directories (`<atespace>/<id>`, in the store
/// and in the node cache): both parts DNS labels, so neither can be `..` or hold a `/`.
pub fn validate_actor(actor: &ate_model::ActorRef) -> Result<(), SnapshotError> {
    actor
        .validate("actor")
        .map_err(|e| SnapshotError::InvalidName {
            what: "actor",
            name: e.to_string(),
        })
}

/// Checks a snapshot id: 1-64 of `[a-z0-9-]`.
pub fn validate_id(id: &str) -> Result<(), SnapshotError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(SnapshotError::InvalidName {
            what: "snapshot id",
            name: id.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cannot_escape() {
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "a/b",
            "a\\b",
            "manifest.json",
            "x\0",
            &"a".repeat(129),
        ] {
            assert!(validate_file_name(bad).is_err(), "{bad:?}");
        }
        for ok in ["memory.bin", "globals.json", "data-1.tar"] {
            validate_file_name(ok).unwrap();
        }
        assert!(validate_id("0001763900000000-1a2b").is_ok());
        assert!(validate_id("../x").is_err());
        assert!(validate_id("A").is_err());
    }

    fn manifest_json(actor: &ActorRef, id: &str, files: &[&str]) -> Vec<u8> {
        let files = files
            .iter()
            .map(|n| FileEntry {
                name: n.to_string(),
                size: 1,
                compressed_size: 1,
                sha256: "00".into(),
            })
            .collect();
        let m = Manifest::new(actor, id, "wasm", SnapshotScope::Full, "test", files);
        serde_json::to_vec(&m).unwrap()
    }

    #[test]
    fn from_json_checks_what_it_reads() {
        let actor = ActorRef::new("team-a", "c1");
        let good = manifest_json(&actor, "s1", &["memory.bin"]);
        let m = Manifest::from_json(&good, &actor, "s1").unwrap();
        assert_eq!(m.files[0].name, "memory.bin");
        let corrupt = |bytes: &[u8], id: &str| {
            let err = Manifest::from_json(bytes, &actor, id).unwrap_err();
            assert!(matches!(err, SnapshotError::Corrupt { .. }), "{err}");
            err.to_string()
        };
        assert!(corrupt(&good, "s2").contains("names another snapshot"));
        assert!(corrupt(b"{", "s1").contains("manifest:"));
        let escaping = manifest_json(&actor, "s1", &["../memory.bin"]);
        assert!(corrupt(&escaping, "s1").contains("file name"));
    }

    #[test]
    fn manifests_over_the_limit_are_refused_unparsed() {
        let actor = ActorRef::new("team-a", "c1");
        let mut big = manifest_json(&actor, "s1", &["memory.bin"]);
        // Valid JSON all the same: trailing whitespace up to one byte over the limit.
        big.resize(MAX_MANIFEST_BYTES as usize + 1, b' ');
        let err = Manifest::from_json(&big, &actor, "s1")
            .unwrap_err()
            .to_string();
        assert!(err.contains("over the limit of 1048576"), "{err}");
        big.truncate(MAX_MANIFEST_BYTES as usize);
        Manifest::from_json(&big, &actor, "s1").unwrap();
    }
}
