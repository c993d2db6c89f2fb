//! App bundles: a tar archive (optionally gzip-compressed) holding `wharf.toml` at its
//! root and the `.wasm` files it names. Read with bounds: total unpacked size, entry
//! count, regular files only, normalized relative paths.

use std::collections::BTreeMap;
use std::io::Read;

/// Largest unpacked bundle accepted by default.
pub const DEFAULT_MAX_BUNDLE: u64 = 256 << 20;
const MAX_ENTRIES: usize = 1000;

/// An unpacked bundle: path → bytes.
#[derive(Debug, Default)]
pub struct Bundle {
    /// Files by normalized relative path (`/`-separated, no `.` or `..`).
    pub files: BTreeMap<String, Vec<u8>>,
}

/// Why a bundle was refused.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// Not a tar archive, or a damaged one.
    #[error(
        "the bundle is not a readable tar archive ({0}); send `tar -c wharf.toml *.wasm` (optionally gzipped)"
    )]
    Unreadable(String),
    /// Too big.
    #[error("the bundle unpacks to more than {0} bytes; raise the server's --max-bundle-size")]
    TooLarge(u64),
    /// Too many entries.
    #[error("the bundle has more than {MAX_ENTRIES} entries")]
    TooManyEntries,
    /// A path that escapes or is absolute.
    #[error("bundle entry `{0}` has an unsafe path (absolute, or with `..`)")]
    UnsafePath(String),
    /// No manifest.
    #[error("the bundle has no `wharf.toml` at its root")]
    NoManifest,
}

impl Bundle {
    /// Reads a bundle from tar or tar.gz bytes.
    pub fn read(bytes: &[u8], max_size: u64) -> Result<Bundle, BundleError> {
        let gz = bytes.starts_with(&[0x1f, 0x8b]);
        let reader: Box<dyn Read + '_> = if gz {
            Box::new(flate2::read::GzDecoder::new(bytes))
        } else {
            Box::new(bytes)
        };
        let mut archive = tar::Archive::new(reader);
        let entries = archive
            .entries()
            .map_err(|e| BundleError::Unreadable(e.to_string()))?;
        let mut bundle = Bundle::default();
        let mut total: u64 = 0;
        for (i, entry) in entries.enumerate() {
            if i >= MAX_ENTRIES {
                return Err(BundleError::TooManyEntries);
            }
            let mut entry = entry.map_err(|e| BundleError::Unreadable(e.to_string()))?;
            let kind = entry.header().entry_type();
            if kind.is_dir() {
                continue;
            }
            let raw = entry
                .path()
                .map_err(|e| BundleError::Unreadable(e.to_string()))?
                .to_string_lossy()
                .into_owned();
            if !kind.is_file() {
                // Symlinks, devices and the like never enter the registry.
                return Err(BundleError::UnsafePath(raw));
            }
            let path = normalize(&raw).ok_or_else(|| BundleError::UnsafePath(raw.clone()))?;
            let size = entry.header().size().unwrap_or(0);
            total = total.saturating_add(size);
            if total > max_size {
                return Err(BundleError::TooLarge(max_size));
            }
            let mut data = Vec::with_capacity(size.min(max_size) as usize);
            (&mut entry)
                .take(max_size.saturating_add(1))
                .read_to_end(&mut data)
                .map_err(|e| BundleError::Unreadable(e.to_string()))?;
            if data.len() as u64 > max_size {
                return Err(BundleError::TooLarge(max_size));
            }
            bundle.files.insert(path, data);
        }
        if !bundle.files.contains_key("wharf.toml") {
            return Err(BundleError::NoManifest);
        }
        Ok(bundle)
    }

    /// The manifest text.
    pub fn manifest(&self) -> Result<String, String> {
        let bytes = self
            .files
            .get("wharf.toml")
            .ok_or("the bundle has no `wharf.toml`")?;
        String::from_utf8(bytes.clone()).map_err(|_| "`wharf.toml` is not UTF-8 text".to_string())
    }

    /// Builds a bundle archive (uncompressed tar) from files.
    pub fn pack(files: &BTreeMap<String, Vec<u8>>) -> std::io::Result<Vec<u8>> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, data) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_entry_type(tar::EntryType::Regular);
            header.set_cksum();
            builder.append_data(&mut header, path, data.as_slice())?;
        }
        builder.into_inner()
    }
}

/// `./a/b.wasm` → `a/b.wasm`; `None` for absolute paths and `..`.
fn normalize(path: &str) -> Option<String> {
    if path.starts_with('/') || path.contains('\\') {
        return None;
    }
    let mut parts = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => return None,
            s => parts.push(s),
        }
    }
    if parts.is_empty() {
        return None;
    }
    Some(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_limits() {
        let mut files = BTreeMap::new();
        files.insert("wharf.toml".to_string(), b"x".to_vec());
        files.insert("lib/app.wasm".to_string(), vec![0u8; 100]);
        let tarball = Bundle::pack(&files).expect("pack");
        let b = Bundle::read(&tarball, 1 << 20).expect("read");
        assert_eq!(b.files, files);
        assert!(matches!(
            Bundle::read(&tarball, 50),
            Err(BundleError::TooLarge(50))
        ));
        assert!(Bundle::read(b"not a tar at all, clearly", 1 << 20).is_err());
        let mut only = BTreeMap::new();
        only.insert("app.wasm".to_string(), vec![1]);
        assert!(matches!(
            Bundle::read(&Bundle::pack(&only).expect("pack"), 1 << 20),
            Err(BundleError::NoManifest)
        ));
    }

    #[test]
    fn normalizes_paths() {
        assert_eq!(normalize("./a/b.wasm").as_deref(), Some("a/b.wasm"));
        assert_eq!(normalize("a//b").as_deref(), Some("a/b"));
        assert_eq!(normalize("../x"), None);
        assert_eq!(normalize("/etc/passwd"), None);
        assert_eq!(normalize("a/../../b"), None);
    }
}
