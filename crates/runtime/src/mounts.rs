//! Read-only file mounts: the bundle files components mount, extracted once per bundle
//! into the state directory.
//!
//! Layout: `STATE/mounts/<bundle sha>/@tree/<path in the bundle>`. Only the files under
//! some component's mounted `source` directory are written, once for the whole bundle
//! (not one copy per mount: two components mounting `static` share it), and each mount
//! is the `@tree/<source>` subdirectory (a preopen, so the guest cannot reach above
//! it). The tree is written to a temporary directory and renamed, so a crash leaves
//! none or all of it; the bundle sha covers the manifest, so an existing tree is
//! always the right one. `@tree` cannot clash with the layout before it
//! (`<bundle sha>/<component id>/<index>`), since component ids are `[a-z0-9-]`.
//! Unreferenced bundle directories are removed by [`crate::gc`].

use std::path::{Path, PathBuf};

use wharf_manifest::Manifest;

use crate::DeployError;
use crate::bundle::Bundle;

/// The directory under `STATE/mounts/<bundle sha>/` holding the extracted files.
pub(crate) const TREE: &str = "@tree";

/// The bundle's mount directory.
pub(crate) fn bundle_dir(state_dir: &Path, bundle_sha: &str) -> PathBuf {
    state_dir.join("mounts").join(bundle_sha)
}

/// Where component `id`'s mounts will be (host dir, guest path), once [`extract`] has
/// run; checks that each source is a directory in the bundle. Writes nothing.
pub(crate) fn plan(
    state_dir: &Path,
    manifest: &Manifest,
    id: &str,
    bundle_sha: &str,
    bundle: &Bundle,
) -> Result<Vec<(PathBuf, String)>, DeployError> {
    let spec = manifest
        .component(id)
        .ok_or_else(|| DeployError::Invalid(format!("no component `{id}`")))?;
    let tree = bundle_dir(state_dir, bundle_sha).join(TREE);
    let mut out = Vec::new();
    for (i, m) in spec.files.iter().enumerate() {
        let prefix = format!("{}/", m.source);
        if !bundle.files.keys().any(|p| p.starts_with(&prefix)) {
            return Err(DeployError::Invalid(format!(
                "component `{id}`: files[{i}].source `{}` is not a directory in the bundle",
                m.source
            )));
        }
        out.push((tree.join(&m.source), m.dest.clone()));
    }
    Ok(out)
}

/// Writes every bundle file under some component's mounted source directory into
/// `STATE/mounts/<bundle sha>/@tree/`, unless that tree exists already.
pub(crate) fn extract(
    state_dir: &Path,
    manifest: &Manifest,
    bundle_sha: &str,
    bundle: &Bundle,
) -> Result<(), DeployError> {
    let prefixes: Vec<String> = manifest
        .components
        .iter()
        .flat_map(|c| c.files.iter().map(|m| format!("{}/", m.source)))
        .collect();
    if prefixes.is_empty() {
        return Ok(());
    }
    let parent = bundle_dir(state_dir, bundle_sha);
    let dir = parent.join(TREE);
    if dir.exists() {
        return Ok(());
    }
    let io = |e: std::io::Error| {
        DeployError::Internal(anyhow::anyhow!(
            "extracting the mounted files of bundle {bundle_sha}: {e}"
        ))
    };
    std::fs::create_dir_all(&parent).map_err(io)?;
    let tmp = parent.join(format!(".tree.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let written = (|| {
        for (path, data) in &bundle.files {
            if !prefixes.iter().any(|p| path.starts_with(p.as_str())) {
                continue;
            }
            // Bundle paths are normalized (no `..`, not absolute, no file that is also
            // a directory) by Bundle::read.
            let target = tmp.join(path);
            if let Some(p) = target.parent() {
                std::fs::create_dir_all(p)?;
            }
            std::fs::write(&target, data)?;
        }
        Ok(())
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(io(e));
    }
    if let Err(e) = std::fs::rename(&tmp, &dir) {
        let _ = std::fs::remove_dir_all(&tmp);
        // Another deploy of the same bundle may have won the race.
        if !dir.exists() {
            return Err(io(e));
        }
    }
    Ok(())
}
