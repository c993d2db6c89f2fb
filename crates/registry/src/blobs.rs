//! The content-addressed blob files: `<blobs dir>/<first 2 hex>/<sha256 hex>`.
//!
//! Files under their final name are only ever created by an atomic rename of a fully
//! written and fsynced temporary file, and are never modified in place; this is what
//! lets a database row refer to a blob by name and trust it to be whole.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::anyhow;
use sha2::{Digest, Sha256};

use crate::{ComponentBlob, OrStorage, RegistryError, Result};

/// Prefix of the temporary files a blob is written to before being renamed into place.
/// Blob names are hex, so they can never start with it.
const TMP_PREFIX: &str = ".tmp-";

/// The blob files of one registry.
pub(crate) struct BlobStore {
    dir: PathBuf,
    /// Within one process, `put_blob` (shared) and `gc` (exclusive) exclude each other,
    /// so gc can never delete a file that `put_blob` has just found present and
    /// reported as stored (it refreshes the file's age, but gc may already have judged
    /// it old).
    gc_lock: RwLock<()>,
    /// Digests whose file this process has hashed and found intact, so that
    /// [`BlobStore::fetch`] hashes each blob once. Sound because a file under its final
    /// name is never modified in place (only replaced whole by [`BlobStore::put`] with the
    /// same content, or deleted by [`BlobStore::gc`], which forgets it here).
    verified: Mutex<HashSet<String>>,
}

/// Rejects anything but 64 lowercase hex characters. Digests come from callers and are
/// used to build paths, so this is what keeps e.g. `../../etc/passwd` out of the blobs
/// directory.
pub(crate) fn validate_sha256(sha256: &str) -> Result<()> {
    let valid = sha256.len() == 64
        && sha256
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if valid {
        Ok(())
    } else {
        // Quote at most a prefix: the string is arbitrary caller input.
        let shown: String = sha256.chars().take(80).collect();
        Err(RegistryError::Storage(anyhow!(
            "{shown:?} is not a blob digest (expected 64 lowercase hex characters)"
        )))
    }
}

/// The sha256 of `bytes`, as lowercase hex.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl BlobStore {
    /// Uses (creating if needed) `dir` as the blobs directory.
    pub(crate) fn open(dir: PathBuf) -> Result<BlobStore> {
        match fs::create_dir(&dir) {
            Ok(()) => {
                // Make the new directory's entry durable before anything relies on it.
                if let Some(parent) = dir.parent() {
                    fsync_dir(parent).or_storage(|| {
                        format!("cannot sync the state dir `{}`", parent.display())
                    })?;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => {}
            Err(e) => {
                return Err(e).or_storage(|| {
                    format!(
                        "cannot create the blobs directory `{}`; check that the state dir is writable by this user",
                        dir.display()
                    )
                });
            }
        }
        Ok(BlobStore {
            dir,
            gc_lock: RwLock::new(()),
            verified: Mutex::new(HashSet::new()),
        })
    }

    /// Where the blob `sha256` (already validated) lives.
    fn path_of(&self, sha256: &str) -> PathBuf {
        self.dir.join(&sha256[..2]).join(sha256)
    }

    /// See [`crate::Registry::put_blob`].
    pub(crate) fn put(&self, bytes: &[u8]) -> Result<String> {
        let sha256 = sha256_hex(bytes);
        let _shared = self.gc_lock.read().unwrap_or_else(PoisonError::into_inner);
        let fan_dir = self.dir.join(&sha256[..2]);
        let path = fan_dir.join(&sha256);

        // Already stored? Compare the contents rather than trusting the name, so that
        // storing the bytes again (i.e. redeploying) repairs a corrupted copy.
        match File::open(&path) {
            Ok(file) => {
                let same = same_contents(&file, bytes)
                    .or_storage(|| format!("cannot read blob file `{}`", path.display()))?;
                if same {
                    // Refresh the age so that gc's grace period counts from this call:
                    // the caller is about to reference the blob in a deploy.
                    file.set_modified(SystemTime::now()).or_storage(|| {
                        format!("cannot update the mtime of blob file `{}`", path.display())
                    })?;
                    return Ok(sha256);
                }
                tracing::warn!(blob = %sha256, path = %path.display(), "stored blob is corrupt; rewriting it");
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e).or_storage(|| format!("cannot open blob file `{}`", path.display()));
            }
        }

        match fs::create_dir(&fan_dir) {
            // A new directory entry must be durable before the blob in it is.
            Ok(()) => fsync_dir(&self.dir)
                .or_storage(|| format!("cannot sync directory `{}`", self.dir.display()))?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(e)
                    .or_storage(|| format!("cannot create directory `{}`", fan_dir.display()));
            }
        }

        let tmp = fan_dir.join(format!("{TMP_PREFIX}{}", random_suffix()?));
        if let Err(e) = write_synced(&tmp, bytes) {
            // Best effort: gc would remove it later anyway.
            let _ = fs::remove_file(&tmp);
            return Err(e).or_storage(|| format!("cannot write blob file `{}`", tmp.display()));
        }
        if let Err(e) = fs::rename(&tmp, &path) {
            let _ = fs::remove_file(&tmp);
            return Err(e).or_storage(|| {
                format!("cannot rename `{}` to `{}`", tmp.display(), path.display())
            });
        }
        // The rename is only durable once the directory is synced.
        fsync_dir(&fan_dir)
            .or_storage(|| format!("cannot sync directory `{}`", fan_dir.display()))?;
        Ok(sha256)
    }

    /// Path of a stored blob, without verifying its content; `MissingBlob` if absent.
    pub(crate) fn path(&self, sha256: &str) -> Result<PathBuf> {
        validate_sha256(sha256)?;
        let path = self.path_of(sha256);
        match fs::metadata(&path) {
            Ok(meta) if meta.is_file() => Ok(path),
            Ok(_) => Err(RegistryError::MissingBlob(sha256.to_owned())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(RegistryError::MissingBlob(sha256.to_owned()))
            }
            Err(e) => {
                Err(e).or_storage(|| format!("cannot inspect blob file `{}`", path.display()))
            }
        }
    }

    /// See [`crate::Registry::get_blob`].
    pub(crate) fn get(&self, sha256: &str) -> Result<Vec<u8>> {
        validate_sha256(sha256)?;
        let path = self.path_of(sha256);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(RegistryError::MissingBlob(sha256.to_owned()));
            }
            Err(e) => {
                return Err(e).or_storage(|| format!("cannot read blob file `{}`", path.display()));
            }
        };
        check_digest(sha256, &path, &sha256_hex(&bytes))?;
        self.verified().insert(sha256.to_owned());
        Ok(bytes)
    }

    /// See [`crate::Registry::fetch_blob`]: the blob's path, its content hashed the
    /// first time this process fetches it.
    pub(crate) fn fetch(&self, sha256: &str) -> Result<PathBuf> {
        let path = self.path(sha256)?;
        if self.verified().contains(sha256) {
            return Ok(path);
        }
        let actual = match File::open(&path).and_then(hash_file) {
            Ok(actual) => actual,
            // Removed by gc since `path` looked.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(RegistryError::MissingBlob(sha256.to_owned()));
            }
            Err(e) => {
                return Err(e).or_storage(|| format!("cannot read blob file `{}`", path.display()));
            }
        };
        check_digest(sha256, &path, &actual)?;
        self.verified().insert(sha256.to_owned());
        Ok(path)
    }

    /// The set of verified digests. A panic while it was held cannot have left it
    /// inconsistent (single insert/remove calls), so a poisoned lock is taken over.
    fn verified(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.verified.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Checks that a deploy's component blob is stored with the declared size. Called
    /// inside the deploy transaction (see the crate docs on why).
    pub(crate) fn check_present(&self, component: &ComponentBlob) -> Result<()> {
        let path = self.path(&component.sha256)?;
        let size = fs::metadata(&path)
            .map(|m| m.len())
            .map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => RegistryError::MissingBlob(component.sha256.clone()),
                _ => crate::storage_error(
                    e,
                    format!("cannot inspect blob file `{}`", path.display()),
                ),
            })?;
        if size != component.size {
            return Err(RegistryError::Storage(anyhow!(
                "component `{}` declares {} bytes but its blob {} has {size}",
                component.id,
                component.size,
                component.sha256
            )));
        }
        Ok(())
    }

    /// Deletes blob files not in `referenced` and temporary files, if older than
    /// `min_age`; returns how many files were removed. The caller must hold the
    /// database write lock so that no deploy can commit a reference meanwhile.
    pub(crate) fn gc(&self, referenced: &HashSet<String>, min_age: Duration) -> Result<usize> {
        let _exclusive = self.gc_lock.write().unwrap_or_else(PoisonError::into_inner);
        let now = SystemTime::now();
        let mut removed = 0;
        let fan_dirs = fs::read_dir(&self.dir)
            .or_storage(|| format!("cannot list blobs directory `{}`", self.dir.display()))?;
        for fan_dir in fan_dirs {
            let fan_dir = fan_dir
                .or_storage(|| format!("cannot list blobs directory `{}`", self.dir.display()))?;
            let fan_name = fan_dir.file_name();
            let Some(fan_name) = fan_name.to_str() else {
                continue;
            };
            // Leave anything that is not one of our two-hex-digit directories alone.
            if fan_name.len() != 2 || !fan_dir.path().is_dir() {
                continue;
            }
            let fan_path = fan_dir.path();
            let entries = fs::read_dir(&fan_path)
                .or_storage(|| format!("cannot list directory `{}`", fan_path.display()))?;
            for entry in entries {
                let entry = entry
                    .or_storage(|| format!("cannot list directory `{}`", fan_path.display()))?;
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                let is_tmp = name.starts_with(TMP_PREFIX);
                let is_garbage_blob = validate_sha256(name).is_ok()
                    && name.starts_with(fan_name)
                    && !referenced.contains(name);
                if !is_tmp && !is_garbage_blob {
                    continue;
                }
                let path = entry.path();
                let modified = match entry.metadata().and_then(|m| m.modified()) {
                    Ok(modified) => modified,
                    // Deleted meanwhile (e.g. a concurrent rename of a temp file).
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => {
                        return Err(e)
                            .or_storage(|| format!("cannot inspect `{}`", path.display()));
                    }
                };
                // A timestamp in the future counts as new.
                let age = now.duration_since(modified).unwrap_or(Duration::ZERO);
                if age < min_age {
                    continue;
                }
                match fs::remove_file(&path) {
                    Ok(()) => {
                        tracing::debug!(path = %path.display(), "gc removed file");
                        if !is_tmp {
                            self.verified().remove(name);
                        }
                        removed += 1;
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(e).or_storage(|| format!("cannot remove `{}`", path.display()));
                    }
                }
            }
        }
        // Deleting is not fsynced: if a deletion is lost in a crash, the file is simply
        // garbage again and the next gc removes it.
        Ok(removed)
    }
}

/// A [`RegistryError::Storage`] naming the blob and the fix unless `actual` (the hash
/// of the content of `path`) is `sha256`.
fn check_digest(sha256: &str, path: &Path, actual: &str) -> Result<()> {
    if actual == sha256 {
        return Ok(());
    }
    Err(RegistryError::Storage(anyhow!(
        "blob {sha256} is corrupt: the content of `{}` hashes to {actual}; \
         redeploy an app that uses it to store it again",
        path.display()
    )))
}

/// The sha256 of a file's content (lowercase hex), read in chunks so that a large blob
/// is not held in memory.
fn hash_file(mut file: File) -> io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match file.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Ok(hex::encode(hasher.finalize()));
        }
        hasher.update(&buf[..n]);
    }
}

/// Whether `file` holds exactly `bytes`, compared in chunks so that a large blob is not
/// read into memory a second time.
fn same_contents(mut file: &File, mut bytes: &[u8]) -> io::Result<bool> {
    if file.metadata()?.len() != bytes.len() as u64 {
        return Ok(false);
    }
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match file.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Ok(bytes.is_empty());
        }
        if n > bytes.len() || buf[..n] != bytes[..n] {
            return Ok(false);
        }
        bytes = &bytes[n..];
    }
}

/// Creates `path` (which must not exist) with `bytes`, and fsyncs it.
fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = File::options().write(true).create_new(true).open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// A random name part for temporary files, so concurrent writers (threads or
/// processes) of the same blob never share one.
fn random_suffix() -> Result<String> {
    let mut buf = [0u8; 12];
    getrandom::fill(&mut buf).map_err(|e| {
        RegistryError::Storage(anyhow!("cannot get random bytes for a temp file name: {e}"))
    })?;
    Ok(hex::encode(buf))
}

/// Makes the entries of directory `dir` (creations, renames) durable.
#[cfg(unix)]
pub(crate) fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Directories cannot be opened and synced portably outside Unix; there the file
/// system's own ordering is relied on.
#[cfg(not(unix))]
pub(crate) fn fsync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}
