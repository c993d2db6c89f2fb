//! Read-only file mounts: the bundle files a component mounts, extracted once per
//! bundle into the state directory.

use std::path::{Path, PathBuf};

use wharf_manifest::Manifest;

use crate::DeployError;
use crate::bundle::Bundle;

/// Writes the bundle files of each of a component's mounts into
/// `STATE/mounts/<bundle sha>/<component>/<index>/`, once (content-addressed by the
/// bundle; written to a temporary directory and renamed, so a crash leaves none or all
/// of it). Returns (host dir, guest path) pairs.
pub(crate) fn extract(
    state_dir: &Path,
    manifest: &Manifest,
    id: &str,
    bundle_sha: &str,
    bundle: &Bundle,
) -> Result<Vec<(PathBuf, String)>, DeployError> {
    let spec = manifest
        .component(id)
        .ok_or_else(|| DeployError::Invalid(format!("no component `{id}`")))?;
    let mut out = Vec::new();
    for (i, m) in spec.files.iter().enumerate() {
        let prefix = format!("{}/", m.source);
        let files: Vec<(&str, &Vec<u8>)> = bundle
            .files
            .iter()
            .filter_map(|(p, d)| p.strip_prefix(&prefix).map(|rel| (rel, d)))
            .collect();
        if files.is_empty() {
            return Err(DeployError::Invalid(format!(
                "component `{id}`: files[{i}].source `{}` is not a directory in the bundle",
                m.source
            )));
        }
        let dir = state_dir
            .join("mounts")
            .join(bundle_sha)
            .join(id)
            .join(i.to_string());
        if !dir.exists() {
            let io = |e: std::io::Error| {
                DeployError::Internal(anyhow::anyhow!("extracting files for `{id}`: {e}"))
            };
            let parent = dir
                .parent()
                .ok_or_else(|| DeployError::Internal(anyhow::anyhow!("mount dir has no parent")))?;
            std::fs::create_dir_all(parent).map_err(io)?;
            let tmp = parent.join(format!(".{i}.tmp-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&tmp);
            for (rel, data) in &files {
                // Bundle paths are normalized (no `..`, not absolute) by Bundle::read.
                let target = tmp.join(rel);
                if let Some(p) = target.parent() {
                    std::fs::create_dir_all(p).map_err(io)?;
                }
                std::fs::write(&target, data).map_err(io)?;
            }
            if let Err(e) = std::fs::rename(&tmp, &dir) {
                let _ = std::fs::remove_dir_all(&tmp);
                // Another deploy of the same bundle may have won the race.
                if !dir.exists() {
                    return Err(io(e));
                }
            }
        }
        out.push((dir, m.dest.clone()));
    }
    Ok(out)
}
