//! Offline input: files, directories (read recursively) and standard input of multi-document
//! YAML.

use std::{
    io::Read,
    path::{Path, PathBuf},
};

use serde::Deserialize;

use crate::objects::{ObjectError, Objects};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: document {index} is not valid YAML: {source}")]
    Yaml {
        path: PathBuf,
        index: usize,
        source: serde_yaml_ng::Error,
    },
    #[error("{path}: {source}")]
    Object { path: PathBuf, source: ObjectError },
}

/// Reads every path (`-` is standard input) into one set of objects.
pub fn load(paths: &[PathBuf]) -> Result<Objects, LoadError> {
    let mut objects = Objects::offline();
    for path in paths {
        if path.as_os_str() == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|source| LoadError::Read {
                    path: path.clone(),
                    source,
                })?;
            add_text(&mut objects, &text, path)?;
        } else {
            load_path(&mut objects, path)?;
        }
    }
    Ok(objects)
}

fn load_path(objects: &mut Objects, path: &Path) -> Result<(), LoadError> {
    let read_err = |source| LoadError::Read {
        path: path.to_owned(),
        source,
    };
    if path.is_dir() {
        let mut entries = std::fs::read_dir(path)
            .map_err(read_err)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(read_err)?;
        entries.sort();
        for entry in entries {
            let yaml = matches!(
                entry.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml")
            );
            if entry.is_dir() || yaml {
                load_path(objects, &entry)?;
            }
        }
        return Ok(());
    }
    let text = std::fs::read_to_string(path).map_err(read_err)?;
    add_text(objects, &text, path)
}

/// Adds every document of a multi-document YAML text. Documents that are not Kubernetes
/// objects (a kustomization.yaml, an empty document) are skipped.
pub fn add_text(objects: &mut Objects, text: &str, path: &Path) -> Result<(), LoadError> {
    for (index, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let value = serde_json::Value::deserialize(document).map_err(|source| LoadError::Yaml {
            path: path.to_owned(),
            index,
            source,
        })?;
        if !is_object(&value) {
            continue;
        }
        objects.add(value).map_err(|source| LoadError::Object {
            path: path.to_owned(),
            source,
        })?;
    }
    Ok(())
}

/// A Kubernetes object has an apiVersion and a kind; a Kustomization has them too but is not
/// served by the API.
fn is_object(value: &serde_json::Value) -> bool {
    let text = |key: &str| value.get(key).and_then(|v| v.as_str());
    match (text("apiVersion"), text("kind")) {
        (Some(api), Some(kind)) => {
            !(kind == "Kustomization" || kind == "Component") || !api.starts_with("kustomize.")
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_document_yaml_lists_and_kustomizations() {
        let mut objects = Objects::offline();
        let text = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [a.yaml]\n---\n---\napiVersion: v1\nkind: List\nitems:\n  - {apiVersion: v1, kind: Namespace, metadata: {name: a}}\n  - {apiVersion: v1, kind: Namespace, metadata: {name: b}}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: a}\nspec: {ports: [{port: 2049}]}\n";
        add_text(&mut objects, text, Path::new("t.yaml")).unwrap();
        assert_eq!(objects.namespaces.len(), 2);
        assert_eq!(objects.services.len(), 1);
    }

    #[test]
    fn a_malformed_object_names_the_file_and_the_object() {
        let mut objects = Objects::offline();
        let text = "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: 7}\n";
        let err = add_text(&mut objects, text, Path::new("bad.yaml")).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("bad.yaml") && msg.contains("Service \"s\""),
            "{msg}"
        );
    }
}
