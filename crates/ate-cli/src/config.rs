//! The client's config file: where the control API is and the token to present, so that
//! commands need no flags after `ate up` (which writes it) or after an operator saves a
//! token there. Flags and environment variables override it.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::CliError;

/// Overrides the config file's location.
pub const CONFIG_ENV: &str = "ATE_CONFIG";

/// Largest config file read; a token and two paths fit many times over.
const MAX_CONFIG_BYTES: u64 = 64 * 1024;

/// What the config file holds. Every field is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CliConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// CA bundle that signs the control API's certificate, for `https://` endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<PathBuf>,
}

/// `$ATE_CONFIG`, else `$XDG_CONFIG_HOME/ate/config.json`, else `~/.config/ate/config.json`.
pub fn path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(CONFIG_ENV) {
        return Some(PathBuf::from(p));
    }
    if let Some(d) = std::env::var_os("XDG_CONFIG_HOME") {
        return Some(PathBuf::from(d).join("ate/config.json"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config/ate/config.json"))
}

fn read_error(path: &Path, reason: impl std::fmt::Display) -> CliError {
    CliError::Read {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

impl CliConfig {
    /// Reads the config at `path`; a missing file is an empty config.
    pub fn load(path: &Path) -> Result<Self, CliError> {
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(read_error(path, e)),
        };
        if meta.len() > MAX_CONFIG_BYTES {
            return Err(read_error(
                path,
                format!("larger than {MAX_CONFIG_BYTES} bytes"),
            ));
        }
        let text = std::fs::read(path).map_err(|e| read_error(path, e))?;
        serde_json::from_slice(&text).map_err(|e| read_error(path, e))
    }

    /// Writes the config to `path` readable by its owner only (it holds a token), replacing
    /// any previous file atomically.
    pub fn save(&self, path: &Path) -> Result<(), CliError> {
        let fail = |e: std::io::Error| read_error(path, format!("cannot write: {e}"));
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(fail)?;
        }
        let body = serde_json::to_vec_pretty(self).map_err(CliError::output)?;
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp).map_err(fail)?;
        file.write_all(&body)
            .and_then(|()| file.write_all(b"\n"))
            .and_then(|()| file.sync_all())
            .map_err(fail)?;
        std::fs::rename(&tmp, path).map_err(fail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_then_load_round_trips_with_owner_only_permissions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nested/config.json");
        let config = CliConfig {
            endpoint: Some("http://127.0.0.1:7420".into()),
            token: Some("a.b.c".into()),
            ca_cert: None,
        };
        config.save(&path).expect("save");
        assert_eq!(CliConfig::load(&path).expect("load"), config);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn missing_file_is_empty_and_bad_json_names_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.json");
        assert_eq!(CliConfig::load(&path).expect("load"), CliConfig::default());
        std::fs::write(&path, "{\"endpoint\": 3}").expect("write");
        let err = CliConfig::load(&path).expect_err("bad json").to_string();
        assert!(err.contains("config.json"), "{err}");
        std::fs::write(&path, "{\"tokn\": \"x\"}").expect("write");
        let err = CliConfig::load(&path)
            .expect_err("unknown field")
            .to_string();
        assert!(err.contains("tokn"), "{err}");
    }
}
