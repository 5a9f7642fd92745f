//! `ate apply -f` manifests: YAML documents with `apiVersion: ate.dev/v1alpha1` and kinds
//! `Atespace`, `ActorTemplate` and `WorkerPool`, several per file. Every document is parsed
//! and validated before anything is applied, so a bad file changes nothing.

use ate_model::names::validate_user_atespace;
use ate_model::{ActorTemplate, ModelError, PoolSpec, TemplateSpec, WorkerPool};
use serde::Deserialize;

/// The API version manifests carry.
pub const API_VERSION: &str = "ate.dev/v1alpha1";
/// Namespace of templates and pools whose manifest names none.
pub const DEFAULT_NAMESPACE: &str = "default";
/// Largest manifest `ate apply -f` reads (4 MiB, thousands of documents): a bigger file
/// is refused before it is read whole or parsed.
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;

/// One parsed, validated manifest document.
#[derive(Debug, Clone, PartialEq)]
pub enum Manifest {
    Atespace(String),
    ActorTemplate(Box<ActorTemplate>),
    WorkerPool(Box<WorkerPool>),
}

impl Manifest {
    /// `kind "name"`, as apply reports it.
    pub fn describe(&self) -> String {
        match self {
            Manifest::Atespace(n) => format!("atespace \"{n}\""),
            Manifest::ActorTemplate(t) => format!("actortemplate \"{}\"", t.id()),
            Manifest::WorkerPool(p) => format!("workerpool \"{}\"", p.id()),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Document {
    api_version: Option<String>,
    kind: Option<String>,
    #[serde(default)]
    metadata: Metadata,
    #[serde(default)]
    spec: Option<serde_yaml_ng::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Metadata {
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    labels: Option<serde_yaml_ng::Value>,
}

/// Why a manifest file was refused: which document and which field.
#[derive(Debug, thiserror::Error)]
#[error("{source_name}: document {index}: {message}")]
pub struct ManifestError {
    pub source_name: String,
    pub index: usize,
    pub message: String,
}

/// Reads the manifest at `path` (`-`: standard input) as text, refusing one over
/// [`MAX_MANIFEST_BYTES`]; errors name the file.
pub fn read_source(path: &str) -> Result<String, crate::CliError> {
    let read = if path == "-" {
        read_limited(std::io::stdin().lock())
    } else {
        std::fs::File::open(path).and_then(|f| {
            // A file says its size: refuse it before reading anything.
            let size = f.metadata()?.len();
            if size > MAX_MANIFEST_BYTES {
                return Err(too_big(Some(size)));
            }
            read_limited(f)
        })
    };
    read.map_err(|e| crate::CliError::Read {
        path: path.to_string(),
        reason: e.to_string(),
    })
}

/// Reads at most [`MAX_MANIFEST_BYTES`] (and one byte more, to tell that there is more).
fn read_limited(reader: impl std::io::Read) -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = Vec::new();
    reader
        .take(MAX_MANIFEST_BYTES + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(too_big(None));
    }
    String::from_utf8(bytes)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not valid utf-8 text"))
}

fn too_big(size: Option<u64>) -> std::io::Error {
    let size = size.map_or(String::new(), |s| format!("{s} bytes, "));
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("{size}larger than the limit of {MAX_MANIFEST_BYTES} bytes for a manifest"),
    )
}

/// Parses every document of `text`; `source_name` (a path or `-`) is used in errors.
pub fn parse(source_name: &str, text: &str) -> Result<Vec<Manifest>, ManifestError> {
    let mut out = Vec::new();
    for (i, de) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let index = i + 1;
        let err = |message: String| ManifestError {
            source_name: source_name.to_string(),
            index,
            message,
        };
        let value = serde_yaml_ng::Value::deserialize(de).map_err(|e| err(e.to_string()))?;
        if value.is_null() {
            continue;
        }
        let doc: Document = serde_yaml_ng::from_value(value).map_err(|e| err(e.to_string()))?;
        out.push(document(doc).map_err(err)?);
    }
    if out.is_empty() {
        return Err(ManifestError {
            source_name: source_name.to_string(),
            index: 0,
            message: "no documents found".into(),
        });
    }
    Ok(out)
}

fn document(doc: Document) -> Result<Manifest, String> {
    match doc.api_version.as_deref() {
        Some(API_VERSION) => {}
        Some(other) => {
            return Err(format!(
                "apiVersion {other:?} is not supported (use {API_VERSION})"
            ));
        }
        None => return Err(format!("apiVersion is required (use {API_VERSION})")),
    }
    let kind = doc.kind.ok_or("kind is required")?;
    let name = doc.metadata.name;
    let namespace = doc
        .metadata
        .namespace
        .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string());
    if doc.metadata.labels.is_some() {
        return Err("metadata.labels is not supported; put pool labels in spec.labels".into());
    }
    let spec = doc.spec.unwrap_or(serde_yaml_ng::Value::Null);
    let model = |e: ModelError| format!("{kind} {namespace}/{name}: {e}");
    match kind.as_str() {
        "Atespace" => {
            validate_user_atespace("metadata.name", &name).map_err(|e| e.to_string())?;
            Ok(Manifest::Atespace(name))
        }
        "ActorTemplate" => {
            let spec: TemplateSpec = typed_spec(spec)?;
            let t = ActorTemplate {
                namespace: namespace.clone(),
                name: name.clone(),
                spec,
                ..Default::default()
            };
            t.validate().map_err(model)?;
            Ok(Manifest::ActorTemplate(Box::new(t)))
        }
        "WorkerPool" => {
            let spec: PoolSpec = typed_spec(spec)?;
            let p = WorkerPool {
                namespace: namespace.clone(),
                name: name.clone(),
                spec,
                ..Default::default()
            };
            p.validate().map_err(model)?;
            Ok(Manifest::WorkerPool(Box::new(p)))
        }
        other => Err(format!(
            "kind {other:?} is not supported (use Atespace, ActorTemplate or WorkerPool)"
        )),
    }
}

/// Makes a template's relative module path absolute against the manifest's directory, so
/// `module: counter.wat` next to the manifest works wherever `ate apply` runs from (the
/// node reads the path as given). URLs and absolute paths are left alone.
pub fn resolve_module_paths(manifests: &mut [Manifest], base: &std::path::Path) {
    for m in manifests {
        let Manifest::ActorTemplate(t) = m else {
            continue;
        };
        let module = &t.spec.module;
        if module.is_empty() || module.contains("://") || module.starts_with('/') {
            continue;
        }
        let joined = base.join(module);
        let resolved = std::fs::canonicalize(&joined)
            .or_else(|_| std::path::absolute(&joined))
            .unwrap_or(joined);
        t.spec.module = resolved.display().to_string();
    }
}

fn typed_spec<T: serde::de::DeserializeOwned>(spec: serde_yaml_ng::Value) -> Result<T, String> {
    if spec.is_null() {
        return Err("spec is required".into());
    }
    serde_path_to_error::deserialize(spec).map_err(|e| {
        let path = e.path().to_string();
        if path == "." || path.is_empty() {
            format!("spec: {}", e.inner())
        } else {
            format!("spec.{path}: {}", e.inner())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    const GOOD: &str = r#"
apiVersion: ate.dev/v1alpha1
kind: Atespace
metadata:
  name: team-a
---
apiVersion: ate.dev/v1alpha1
kind: ActorTemplate
metadata:
  namespace: demo
  name: counter
spec:
  sandboxClass: wasm
  module: counter.wasm
  idleTimeout: 30s
  routeTimeout: 2m
  workerSelector:
    matchLabels:
      tier: gold
---
apiVersion: ate.dev/v1alpha1
kind: WorkerPool
metadata:
  name: cpu
spec:
  replicas: 3
  sandboxClass: wasm
  labels:
    tier: gold
"#;

    #[test]
    fn parses_several_documents() {
        let m = parse("f.yaml", GOOD).unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(m[0], Manifest::Atespace("team-a".into()));
        let Manifest::ActorTemplate(t) = &m[1] else {
            panic!("{m:?}")
        };
        assert_eq!(t.id().to_string(), "demo/counter");
        assert_eq!(t.spec.idle_timeout.to_string(), "30s");
        assert_eq!(t.spec.route_timeout.0, std::time::Duration::from_secs(120));
        let Manifest::WorkerPool(p) = &m[2] else {
            panic!("{m:?}")
        };
        assert_eq!((p.namespace.as_str(), p.spec.replicas), ("default", 3));
    }

    #[test]
    fn errors_name_the_document_and_field() {
        let cases = [
            (
                "kind: Atespace\nmetadata: {name: a}\n",
                "apiVersion is required",
            ),
            (
                "apiVersion: ate.dev/v1alpha1\nkind: Gadget\nmetadata: {name: a}\n",
                "Gadget",
            ),
            (
                "apiVersion: ate.dev/v1alpha1\nkind: ActorTemplate\nmetadata: {name: t}\nspec: {sandboxClass: wasm, modul: x}\n",
                "modul",
            ),
            (
                "apiVersion: ate.dev/v1alpha1\nkind: ActorTemplate\nmetadata: {name: t}\nspec: {sandboxClass: gvisor, module: x}\n",
                "spec.sandboxClass",
            ),
            (
                "apiVersion: ate.dev/v1alpha1\nkind: WorkerPool\nmetadata: {name: p}\nspec: {sandboxClass: wasm, replicas: -1}\n",
                "replicas",
            ),
            (
                "apiVersion: ate.dev/v1alpha1\nkind: Atespace\nmetadata: {name: ate-x}\n",
                "reserved",
            ),
            ("{{{", "document 1"),
        ];
        for (text, needle) in cases {
            let err = parse("f.yaml", text).unwrap_err().to_string();
            assert!(err.contains(needle), "{needle:?} not in {err:?}");
        }
        let two = format!(
            "{GOOD}---\napiVersion: ate.dev/v1alpha1\nkind: Atespace\nmetadata: {{name: Bad}}\n"
        );
        let err = parse("f.yaml", &two).unwrap_err();
        assert_eq!(err.index, 4, "{err}");
    }

    #[test]
    fn files_over_the_size_limit_are_refused_naming_the_file() {
        let path = std::env::temp_dir().join(format!("ate-manifest-{}.yaml", std::process::id()));
        // Valid YAML all the same: a document padded with a comment.
        let mut text = format!("{GOOD}#").into_bytes();
        text.resize(MAX_MANIFEST_BYTES as usize + 1, b'x');
        std::fs::write(&path, &text).unwrap();
        let shown = path.display().to_string();
        let err = read_source(&shown).unwrap_err().to_string();
        text.truncate(MAX_MANIFEST_BYTES as usize);
        std::fs::write(&path, &text).unwrap();
        let at_limit = read_source(&shown);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            err,
            format!(
                "cannot read {shown}: 4194305 bytes, larger than the limit of 4194304 bytes for a manifest"
            )
        );
        assert_eq!(parse(&shown, &at_limit.unwrap()).unwrap().len(), 3);
        // A stream has no size to check first: it is cut one byte past the limit.
        let err = read_limited(std::io::repeat(b' ').take(MAX_MANIFEST_BYTES * 2)).unwrap_err();
        assert!(
            err.to_string().starts_with("larger than the limit"),
            "{err}"
        );
    }
}
