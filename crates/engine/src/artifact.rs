//! Ahead-of-time artifacts, and the rule that makes them safe: **only bytes this Wharf
//! wrote are ever deserialized.** Deserializing is `unsafe` in wasmtime because an
//! artifact is native code; a crafted file is arbitrary code execution.
//!
//! Two places hold artifacts:
//! - the **transparent cache** (`$XDG_CACHE_HOME/wharf`, `~/.cache/wharf`, or
//!   `--cache-dir`): raw wasmtime artifacts named by (engine compatibility key, input
//!   sha256), written with write → fsync → rename → fsync(dir), so a concurrent reader
//!   sees the whole file or none; loaded with `deserialize_file` (mmap, no copy). The
//!   cache directory is the user's own, like wasmtime's cache;
//! - **`.cwasm` files** from `wharf compile`, which travel: they carry a header with the
//!   engine compatibility key, the input's sha256 and an HMAC-SHA256 under a key kept in
//!   the user's config directory (created on first use, mode 0600). A `.cwasm` whose MAC
//!   does not verify — from `wasmtime compile`, another machine, or edited — is refused
//!   before wasmtime sees a byte of it.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// Magic bytes at the start of a Wharf `.cwasm` file.
pub const CWASM_MAGIC: &[u8; 8] = b"WHARFAOT";
const CWASM_VERSION: u8 = 1;
const HEADER_LEN: usize = 8 + 1 + 1 + 6 + 32 + 32 + 32;
const MAC_OFFSET: usize = HEADER_LEN - 32;

/// Whether an artifact holds a core module or a component.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ArtifactKind {
    /// A core module.
    Module,
    /// A component.
    Component,
}

impl ArtifactKind {
    fn tag(self) -> u8 {
        match self {
            ArtifactKind::Module => 0,
            ArtifactKind::Component => 1,
        }
    }

    /// `"module"` or `"component"`.
    pub fn name(self) -> &'static str {
        match self {
            ArtifactKind::Module => "module",
            ArtifactKind::Component => "component",
        }
    }
}

/// The sha256 of some bytes.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// The transparent on-disk artifact cache.
#[derive(Clone, Debug)]
pub struct ArtifactCache {
    dir: PathBuf,
}

impl ArtifactCache {
    /// The default cache directory: `$XDG_CACHE_HOME/wharf`, else `~/.cache/wharf`.
    pub fn default_dir() -> Option<PathBuf> {
        if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
            return Some(PathBuf::from(x).join("wharf"));
        }
        std::env::var_os("HOME")
            .filter(|v| !v.is_empty())
            .map(|h| PathBuf::from(h).join(".cache").join("wharf"))
    }

    /// A cache rooted at `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> ArtifactCache {
        ArtifactCache { dir: dir.into() }
    }

    /// The root directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The metadata index entry for a file: maps what `stat` says of an input (path,
    /// device, inode, size, modification and change times, in nanoseconds) to the
    /// sha256 of its Wasm, so that a warm run need not read and hash the input. Any
    /// write to the file changes its ctime (which users cannot set), so a stale entry
    /// cannot match. Returns `None` when the metadata is unavailable.
    fn index_path(&self, path: &Path, meta: &fs::Metadata) -> Option<PathBuf> {
        use std::os::unix::fs::MetadataExt;
        let abs = fs::canonicalize(path).ok()?;
        let mut h = Sha256::new();
        h.update(abs.as_os_str().as_encoded_bytes());
        for v in [
            meta.dev(),
            meta.ino(),
            meta.size(),
            meta.mtime() as u64,
            meta.mtime_nsec() as u64,
            meta.ctime() as u64,
            meta.ctime_nsec() as u64,
        ] {
            h.update(v.to_le_bytes());
        }
        Some(self.dir.join("index").join(hex::encode(h.finalize())))
    }

    /// Looks up the sha256 and kind recorded for this input's current metadata.
    pub fn lookup_index(
        &self,
        path: &Path,
        meta: &fs::Metadata,
    ) -> Option<(ArtifactKind, [u8; 32])> {
        let entry = fs::read(self.index_path(path, meta)?).ok()?;
        let (kind, sha) = entry.split_first()?;
        let kind = match kind {
            0 => ArtifactKind::Module,
            1 => ArtifactKind::Component,
            _ => return None,
        };
        Some((kind, sha.try_into().ok()?))
    }

    /// Records the sha256 and kind of this input for its current metadata. Best effort:
    /// an index that cannot be written only costs a re-hash next time.
    pub fn record_index(
        &self,
        path: &Path,
        meta: &fs::Metadata,
        kind: ArtifactKind,
        sha: &[u8; 32],
    ) {
        if let Some(p) = self.index_path(path, meta) {
            let mut entry = vec![kind.tag()];
            entry.extend_from_slice(sha);
            if let Err(e) = write_atomic(&p, &entry) {
                tracing::debug!("could not record cache index `{}`: {e:#}", p.display());
            }
        }
    }

    /// Where the artifact for this (engine, kind, input) lives.
    pub fn path_for(&self, compat: &[u8; 32], kind: ArtifactKind, source: &[u8; 32]) -> PathBuf {
        self.dir
            .join(format!("aot-{}", hex::encode(&compat[..8])))
            .join(format!("{}-{}.cwasm", kind.name(), hex::encode(source)))
    }
}

/// Creates a uniquely named temporary file beside `final_path` (same directory, so the
/// rename is atomic), creating the directory if needed.
pub fn temp_beside(final_path: &Path) -> Result<(PathBuf, File)> {
    let dir = final_path
        .parent()
        .context("artifact path has no parent directory")?;
    fs::create_dir_all(dir)
        .with_context(|| format!("creating cache directory `{}`", dir.display()))?;
    let name = final_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    for _ in 0..16 {
        let mut rnd = [0u8; 8];
        getrandom::fill(&mut rnd).map_err(|e| anyhow::anyhow!("getrandom: {e}"))?;
        let tmp = dir.join(format!(".{name}.{}.tmp", hex::encode(rnd)));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)
        {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(e).with_context(|| format!("creating `{}`", tmp.display()));
            }
        }
    }
    bail!("could not create a temporary file in `{}`", dir.display())
}

/// Makes a fully written temporary file durable and moves it into place: fsync the file,
/// rename over `final_path`, fsync the directory. Readers see the old file or the new
/// one, never a partial one.
pub fn commit(tmp: &Path, final_path: &Path) -> Result<()> {
    File::open(tmp)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("syncing `{}`", tmp.display()))?;
    fs::rename(tmp, final_path).with_context(|| {
        format!(
            "moving `{}` into place as `{}`",
            tmp.display(),
            final_path.display()
        )
    })?;
    if let Some(dir) = final_path.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("syncing directory `{}`", dir.display()))?;
    }
    Ok(())
}

/// Writes `bytes` to `path` atomically (temp file, fsync, rename, fsync dir).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let (tmp, mut f) = temp_beside(path)?;
    let res = f
        .write_all(bytes)
        .with_context(|| format!("writing `{}`", tmp.display()))
        .and_then(|()| commit(&tmp, path));
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}

/// The secret that signs `.cwasm` files written by this installation.
pub struct ArtifactKey([u8; 32]);

impl ArtifactKey {
    /// The default key file: `$XDG_CONFIG_HOME/wharf/artifact.key`, else
    /// `~/.config/wharf/artifact.key`.
    pub fn default_path() -> Option<PathBuf> {
        if let Some(x) = std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
            return Some(PathBuf::from(x).join("wharf").join("artifact.key"));
        }
        std::env::var_os("HOME").filter(|v| !v.is_empty()).map(|h| {
            PathBuf::from(h)
                .join(".config")
                .join("wharf")
                .join("artifact.key")
        })
    }

    /// Loads the key at `path`, creating it (32 random bytes, mode 0600) if absent.
    /// Creation is race-free: the key is written to a temporary file and hard-linked into
    /// place, so two processes starting at once agree on one key.
    pub fn load_or_create(path: &Path) -> Result<ArtifactKey> {
        match Self::load(path) {
            Ok(Some(k)) => return Ok(k),
            Ok(None) => {}
            Err(e) => return Err(e),
        }
        let dir = path.parent().context("key path has no parent directory")?;
        fs::create_dir_all(dir)
            .with_context(|| format!("creating config directory `{}`", dir.display()))?;
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| anyhow::anyhow!("getrandom: {e}"))?;
        let mut rnd = [0u8; 8];
        getrandom::fill(&mut rnd).map_err(|e| anyhow::anyhow!("getrandom: {e}"))?;
        let tmp = dir.join(format!(".artifact.key.{}.tmp", hex::encode(rnd)));
        {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .with_context(|| format!("creating `{}`", tmp.display()))?;
            f.write_all(&key)?;
            f.sync_all()?;
        }
        let linked = fs::hard_link(&tmp, path);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => Ok(ArtifactKey(key)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Self::load(path)?.with_context(|| format!("key file `{}` vanished", path.display()))
            }
            Err(e) => Err(e).with_context(|| format!("creating key file `{}`", path.display())),
        }
    }

    fn load(path: &Path) -> Result<Option<ArtifactKey>> {
        match fs::read(path) {
            Ok(bytes) => {
                let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
                    anyhow::anyhow!(
                        "artifact key `{}` is damaged (expected 32 bytes, found {}); delete it \
                         to make a new one (then recompile your .cwasm files)",
                        path.display(),
                        bytes.len()
                    )
                })?;
                Ok(Some(ArtifactKey(key)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading artifact key `{}`", path.display())),
        }
    }

    fn mac(&self, header: &[u8], payload: &[u8]) -> Hmac<Sha256> {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(header);
        mac.update(payload);
        mac
    }
}

/// Builds a signed `.cwasm` file from a raw wasmtime artifact.
pub fn seal_cwasm(
    key: &ArtifactKey,
    kind: ArtifactKind,
    compat: &[u8; 32],
    source: &[u8; 32],
    payload: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(CWASM_MAGIC);
    out.push(CWASM_VERSION);
    out.push(kind.tag());
    out.extend_from_slice(&[0u8; 6]);
    out.extend_from_slice(compat);
    out.extend_from_slice(source);
    let tag = key.mac(&out, payload).finalize().into_bytes();
    out.extend_from_slice(&tag);
    out.extend_from_slice(payload);
    out
}

/// A verified `.cwasm` file.
#[derive(Debug)]
pub struct OpenedCwasm<'a> {
    /// Module or component.
    pub kind: ArtifactKind,
    /// The sha256 of the Wasm it was compiled from.
    pub source_sha256: [u8; 32],
    /// The raw wasmtime artifact, safe to deserialize.
    pub payload: &'a [u8],
}

/// Checks a `.cwasm` file: magic, format version, engine compatibility and MAC. The
/// error string says why it was refused and what to do.
pub fn open_cwasm<'a>(
    key: &ArtifactKey,
    compat: &[u8; 32],
    bytes: &'a [u8],
) -> std::result::Result<OpenedCwasm<'a>, String> {
    if bytes.len() < HEADER_LEN || &bytes[..8] != CWASM_MAGIC {
        return Err("it is not a wharf .cwasm file".into());
    }
    if bytes[8] != CWASM_VERSION {
        return Err(format!(
            "it uses .cwasm format version {}, this wharf reads version {CWASM_VERSION}; \
             recompile it with `wharf compile`",
            bytes[8]
        ));
    }
    let kind = match bytes[9] {
        0 => ArtifactKind::Module,
        1 => ArtifactKind::Component,
        _ => return Err("its header is damaged; recompile it with `wharf compile`".into()),
    };
    let (header, payload) = bytes.split_at(HEADER_LEN);
    let mac = key.mac(&header[..MAC_OFFSET], payload);
    if mac.verify_slice(&header[MAC_OFFSET..]).is_err() {
        return Err(
            "it was not produced by this wharf installation (its signature does not verify \
             with the local artifact key), so it could contain any native code; run the \
             original .wasm, or recompile it here with `wharf compile`"
                .into(),
        );
    }
    if &header[16..48] != compat {
        return Err(
            "it was compiled for a different engine configuration (another wharf or wasmtime \
             version, or different flags: artifacts for --fuel runs must be compiled with \
             `wharf compile --fuel`); recompile it with `wharf compile`"
                .into(),
        );
    }
    let mut source_sha256 = [0u8; 32];
    source_sha256.copy_from_slice(&header[48..80]);
    Ok(OpenedCwasm {
        kind,
        source_sha256,
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_and_open_roundtrip_and_tamper() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = ArtifactKey::load_or_create(&dir.path().join("k")).expect("key");
        let compat = [7u8; 32];
        let sealed = seal_cwasm(
            &key,
            ArtifactKind::Component,
            &compat,
            &[1u8; 32],
            b"payload",
        );
        let opened = open_cwasm(&key, &compat, &sealed).expect("opens");
        assert_eq!(opened.kind, ArtifactKind::Component);
        assert_eq!(opened.payload, b"payload");

        let mut tampered = sealed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(
            open_cwasm(&key, &compat, &tampered)
                .unwrap_err()
                .contains("not produced by this wharf")
        );

        let other = ArtifactKey::load_or_create(&dir.path().join("k2")).expect("key");
        assert!(open_cwasm(&other, &compat, &sealed).is_err());
        assert!(
            open_cwasm(&key, &[8u8; 32], &sealed)
                .unwrap_err()
                .contains("different engine")
        );
        assert!(
            open_cwasm(&key, &compat, b"\x7fELF....")
                .unwrap_err()
                .contains("not a wharf")
        );
    }

    #[test]
    fn key_is_stable_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("sub").join("artifact.key");
        let a = ArtifactKey::load_or_create(&p).expect("key");
        let b = ArtifactKey::load_or_create(&p).expect("key");
        assert_eq!(a.0, b.0);
        let mode = fs::metadata(&p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        fs::write(&p, b"short").expect("write");
        assert!(
            ArtifactKey::load_or_create(&p)
                .err()
                .expect("damaged")
                .to_string()
                .contains("damaged")
        );
    }
}
