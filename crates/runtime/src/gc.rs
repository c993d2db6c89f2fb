//! Garbage collection of what the runtime derives from bundles in the state directory:
//! extracted mounts (`STATE/mounts/<bundle sha>/`) and compiled artifacts
//! (`STATE/cache/`). Run after each deploy and removal, with the registry's blob GC.
//!
//! Only what is provably unreferenced is deleted:
//! - "referenced" is the union of the registry's records (every stored app, including
//!   one that failed to restore) and the live apps (which may still run a version the
//!   registry no longer has), read under the runtime's lock, so no deploy or apply is
//!   between preparing and committing meanwhile;
//! - a mount directory is deleted only when two collections at least
//!   [`MOUNT_GC_GRACE`] apart both found it unreferenced (the first one leaves a
//!   `.unreferenced` marker, which a later collection that finds it referenced again
//!   removes), so requests still running on a replaced version keep their files;
//! - a cached artifact (`aot-*/<kind>-<source sha>.cwasm`, or an `index/` entry naming a
//!   source sha) is deleted when its source sha is unreferenced and the file is older
//!   than [`CACHE_GC_GRACE`]; a deleted artifact only costs a recompilation (and an
//!   open `.cwasm` stays readable on Unix until closed);
//! - stale temporary files (`.*.tmp*`) older than the grace periods are deleted;
//! - anything whose name this module did not create is left alone.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::{BUNDLE_BLOB_ID, Runtime};

/// How long a mount directory must have been unreferenced before it is deleted.
pub const MOUNT_GC_GRACE: Duration = Duration::from_secs(600);
/// How old an unreferenced cached artifact must be before it is deleted.
pub const CACHE_GC_GRACE: Duration = Duration::from_secs(24 * 3600);

const MARKER: &str = ".unreferenced";

/// What the collection found referenced: bundle shas (mounts) and Wasm source shas
/// (artifacts).
#[derive(Debug, Default)]
pub(crate) struct Referenced {
    pub bundles: HashSet<String>,
    pub sources: HashSet<String>,
}

/// What one collection removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Removed {
    pub mounts: usize,
    pub artifacts: usize,
}

/// Collects, holding the runtime's lock while reading what is referenced and while
/// deleting (so no deploy extracts or compiles meanwhile).
pub(crate) async fn collect(rt: &Arc<Runtime>) -> anyhow::Result<Removed> {
    let _guard = rt.lock.lock().await;
    let snapshot = rt.registry.snapshot().await?;
    let mut refs = Referenced::default();
    for rec in &snapshot.apps {
        for b in &rec.components {
            if b.id == BUNDLE_BLOB_ID {
                refs.bundles.insert(b.sha256.clone());
            } else {
                refs.sources.insert(b.sha256.clone());
            }
        }
    }
    let mounts = rt.config.state_dir.join("mounts");
    for app in rt.apps().iter() {
        for c in &app.components {
            refs.sources.insert(c.sha256.clone());
            for (host, _) in &c.grants.mounts {
                if let Ok(rel) = host.strip_prefix(&mounts)
                    && let Some(first) = rel.components().next()
                {
                    refs.bundles
                        .insert(first.as_os_str().to_string_lossy().into_owned());
                }
            }
        }
    }
    let state = rt.config.state_dir.clone();
    let removed = tokio::task::spawn_blocking(move || sweep(&state, &refs, SystemTime::now()))
        .await
        .map_err(|e| anyhow::anyhow!("state garbage collection task failed: {e}"))?;
    Ok(removed)
}

fn is_sha(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn older_than(path: &Path, grace: Duration, now: SystemTime) -> bool {
    std::fs::symlink_metadata(path)
        .and_then(|m| m.modified())
        .is_ok_and(|t| now.duration_since(t).is_ok_and(|age| age >= grace))
}

fn entries(dir: &Path) -> Vec<(String, PathBuf)> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    rd.filter_map(|e| {
        let e = e.ok()?;
        Some((e.file_name().to_str()?.to_string(), e.path()))
    })
    .collect()
}

/// The sweep itself (no lock, no registry): exposed to the unit tests with a chosen
/// clock.
pub(crate) fn sweep(state: &Path, refs: &Referenced, now: SystemTime) -> Removed {
    let mut removed = Removed::default();
    for (name, path) in entries(&state.join("mounts")) {
        if !is_sha(&name) || !path.is_dir() {
            continue;
        }
        let marker = path.join(MARKER);
        if refs.bundles.contains(&name) {
            let _ = std::fs::remove_file(&marker);
        } else if marker.exists() {
            if older_than(&marker, MOUNT_GC_GRACE, now) {
                match std::fs::remove_dir_all(&path) {
                    Ok(()) => removed.mounts += 1,
                    Err(e) => tracing::warn!("could not remove `{}`: {e}", path.display()),
                }
            }
        } else if let Err(e) = std::fs::write(&marker, b"") {
            tracing::warn!("could not mark `{}`: {e}", path.display());
        }
    }
    let cache = state.join("cache");
    let mut remove = |p: &Path| match std::fs::remove_file(p) {
        Ok(()) => removed.artifacts += 1,
        Err(e) => tracing::warn!("could not remove `{}`: {e}", p.display()),
    };
    for (dir_name, dir) in entries(&cache) {
        if dir_name.starts_with("aot-") && dir.is_dir() {
            for (name, path) in entries(&dir) {
                let stale = if name.starts_with('.') && name.contains(".tmp") {
                    true
                } else if let Some(stem) = name.strip_suffix(".cwasm")
                    && let Some((_, sha)) = stem.split_once('-')
                    && is_sha(sha)
                {
                    !refs.sources.contains(sha)
                } else {
                    false
                };
                if stale && older_than(&path, CACHE_GC_GRACE, now) {
                    remove(&path);
                }
            }
        } else if dir_name == "index" && dir.is_dir() {
            for (name, path) in entries(&dir) {
                let stale = if name.starts_with('.') && name.contains(".tmp") {
                    true
                } else if is_sha(&name) {
                    // [kind byte][32-byte sha]: see wharf_engine::artifact.
                    match std::fs::read(&path) {
                        Ok(entry) if entry.len() == 33 => {
                            let sha: String =
                                entry[1..].iter().map(|b| format!("{b:02x}")).collect();
                            !refs.sources.contains(&sha)
                        }
                        _ => false,
                    }
                } else {
                    false
                };
                if stale && older_than(&path, CACHE_GC_GRACE, now) {
                    remove(&path);
                }
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweeps_only_what_is_unreferenced_and_old_enough() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path();
        let (live, dead) = ("a".repeat(64), "b".repeat(64));
        for sha in [&live, &dead] {
            std::fs::create_dir_all(state.join("mounts").join(sha).join("@tree/static"))
                .expect("mkdir");
        }
        std::fs::create_dir_all(state.join("mounts/not-a-sha")).expect("mkdir");
        let aot = state.join("cache/aot-0011223344556677");
        std::fs::create_dir_all(&aot).expect("mkdir");
        let (src_live, src_dead) = ("c".repeat(64), "d".repeat(64));
        for s in [&src_live, &src_dead] {
            std::fs::write(aot.join(format!("module-{s}.cwasm")), b"x").expect("write");
        }
        std::fs::write(aot.join("other.bin"), b"x").expect("write");
        let refs = Referenced {
            bundles: [live.clone()].into(),
            sources: [src_live.clone()].into(),
        };
        let now = SystemTime::now();
        // First pass: the dead mount dir is only marked; artifacts are too young.
        assert_eq!(sweep(state, &refs, now), Removed::default());
        assert!(state.join("mounts").join(&dead).join(MARKER).exists());
        assert!(!state.join("mounts").join(&live).join(MARKER).exists());
        // Within the grace period: still there.
        assert_eq!(
            sweep(state, &refs, now + MOUNT_GC_GRACE / 2),
            Removed::default()
        );
        // After it: the dead mount dir and the dead artifact go, nothing else.
        let later = now + CACHE_GC_GRACE + Duration::from_secs(1);
        assert_eq!(
            sweep(state, &refs, later),
            Removed {
                mounts: 1,
                artifacts: 1
            }
        );
        assert!(!state.join("mounts").join(&dead).exists());
        assert!(
            state
                .join("mounts")
                .join(&live)
                .join("@tree/static")
                .exists()
        );
        assert!(state.join("mounts/not-a-sha").exists());
        assert!(aot.join(format!("module-{src_live}.cwasm")).exists());
        assert!(!aot.join(format!("module-{src_dead}.cwasm")).exists());
        assert!(aot.join("other.bin").exists());

        // A marked directory that is referenced again loses its mark.
        std::fs::create_dir_all(state.join("mounts").join(&dead)).expect("mkdir");
        let none = Referenced::default();
        sweep(state, &none, later);
        assert!(state.join("mounts").join(&dead).join(MARKER).exists());
        let again = Referenced {
            bundles: [dead.clone()].into(),
            sources: HashSet::new(),
        };
        sweep(state, &again, later + MOUNT_GC_GRACE * 2);
        assert!(!state.join("mounts").join(&dead).join(MARKER).exists());
        assert!(state.join("mounts").join(&dead).exists());
    }
}
