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
}
