//! App bundles: a tar archive (optionally gzip-compressed) holding `wharf.toml` at its
//! root and the `.wasm` files it names. Read with bounds, because the upload is hostile
//! until proven otherwise (a 3 MB gzip can unpack to gigabytes):
//!
//! - every byte read from the *decompressed* stream is counted against `max` plus a
//!   fixed allowance for tar metadata ([`MAX_METADATA`]): past it the read stops with
//!   [`BundleError::TooLarge`], whatever the headers claim;
//! - a file's size is checked against the budget left *before* anything is allocated
//!   or read for it, using the size the archive will actually use (PAX `size` overrides
//!   included);
//! - GNU long-name/long-link entries over [`MAX_NAME`] bytes and PAX headers over
//!   [`MAX_PAX`] bytes are refused from their header, before their data is read;
//! - at most [`MAX_ENTRIES`] entries, regular files only, normalized relative paths,
//!   no path twice (`./a.wasm` and `a.wasm`), no path that is both a file and a
//!   directory.
//!
//! Parsing is CPU work: callers run it on a blocking thread (the deploy pipeline does).

use std::cell::Cell;
use std::collections::BTreeMap;
use std::io::Read;
use std::rc::Rc;

/// Largest unpacked bundle accepted by default.
pub const DEFAULT_MAX_BUNDLE: u64 = 256 << 20;
/// Most entries (files and directories; extension headers not counted) in a bundle.
pub const MAX_ENTRIES: usize = 1000;
/// Longest path (GNU long name or long link, or PAX `path`) in bytes.
pub const MAX_NAME: u64 = 4096;
/// Largest PAX extension header in bytes.
pub const MAX_PAX: u64 = 64 << 10;
/// Bytes of tar metadata (headers, padding, long names, PAX records, end blocks) the
/// decompressed stream may hold on top of `max` file bytes.
pub const MAX_METADATA: u64 = 8 << 20;

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
    /// A path (or a PAX header) longer than the limit.
    #[error("a bundle entry's {what} is {len} bytes; at most {max} are accepted")]
    TooLong {
        /// `path`, `link name` or `PAX header`.
        what: &'static str,
        /// Its length.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// The same path twice after normalization, or a path that is both a file and a
    /// directory.
    #[error(
        "bundle entry `{0}` appears more than once (after normalizing `./` and `//`), or as both a file and a directory"
    )]
    Duplicate(String),
    /// No manifest.
    #[error("the bundle has no `wharf.toml` at its root")]
    NoManifest,
}

/// The decompressed stream, counted: it fails (and says so in `over`) once more than
/// `left` bytes have been read from it.
struct Counted<R> {
    inner: R,
    left: u64,
    over: Rc<Cell<bool>>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.left == 0 {
            // At the budget: fine if the stream ends here, over it if it does not.
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => {
                    self.over.set(true);
                    Err(std::io::Error::other(
                        "the bundle is larger than its budget",
                    ))
                }
            };
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        self.left -= n as u64;
        Ok(n)
    }
}

/// Reads an extension entry's data (long name, PAX) after checking its header size.
fn read_small<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    what: &'static str,
    max: u64,
) -> Result<Vec<u8>, std::io::Error> {
    let len = entry.size();
    if len > max {
        return Err(std::io::Error::other(TooLongMarker { what, len, max }));
    }
    let mut v = Vec::with_capacity(len as usize);
    entry.take(len).read_to_end(&mut v)?;
    Ok(v)
}

#[derive(Debug)]
struct TooLongMarker {
    what: &'static str,
    len: u64,
    max: u64,
}

impl std::fmt::Display for TooLongMarker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} of {} bytes", self.what, self.len)
    }
}

impl std::error::Error for TooLongMarker {}

impl Bundle {
    /// Reads a bundle from tar or tar.gz bytes; `max_size` bounds the sum of the file
    /// sizes, and the decompressed stream to `max_size` + [`MAX_METADATA`].
    pub fn read(bytes: &[u8], max_size: u64) -> Result<Bundle, BundleError> {
        let over = Rc::new(Cell::new(false));
        let gz = bytes.starts_with(&[0x1f, 0x8b]);
        let inner: Box<dyn Read + '_> = if gz {
            Box::new(flate2::read::GzDecoder::new(bytes))
        } else {
            Box::new(bytes)
        };
        let stream = Counted {
            inner,
            left: max_size.saturating_add(MAX_METADATA),
            over: over.clone(),
        };
        let mut archive = tar::Archive::new(stream);
        let result = read_entries(&mut archive, max_size);
        match result {
            Err(BundleError::Unreadable(_)) if over.get() => Err(BundleError::TooLarge(max_size)),
            other => other,
        }
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

/// The entries, raw (extension headers handled here, with bounds, rather than by the
/// tar crate, which reads them whole whatever their size).
fn read_entries<R: Read>(
    archive: &mut tar::Archive<R>,
    max_size: u64,
) -> Result<Bundle, BundleError> {
    let unreadable =
        |e: std::io::Error| match e.get_ref().and_then(|i| i.downcast_ref::<TooLongMarker>()) {
            Some(m) => BundleError::TooLong {
                what: m.what,
                len: m.len,
                max: m.max,
            },
            None => BundleError::Unreadable(e.to_string()),
        };
    let entries = archive.entries().map_err(unreadable)?.raw(true);
    let mut bundle = Bundle::default();
    let mut total: u64 = 0;
    let mut count = 0usize;
    // Extensions describing the next entry.
    let mut long_name: Option<Vec<u8>> = None;
    let mut long_link = false;
    let mut pax: Option<Vec<u8>> = None;
    for entry in entries {
        let mut entry = entry.map_err(unreadable)?;
        let kind = entry.header().entry_type();
        if kind.is_gnu_longname() || kind.is_gnu_longlink() || kind.is_pax_local_extensions() {
            let (slot_taken, what, max) = if kind.is_gnu_longname() {
                (long_name.is_some(), "path", MAX_NAME)
            } else if kind.is_gnu_longlink() {
                (long_link, "link name", MAX_NAME)
            } else {
                (pax.is_some(), "PAX header", MAX_PAX)
            };
            if slot_taken {
                return Err(BundleError::Unreadable(format!(
                    "two {what} extensions describe the same entry"
                )));
            }
            let data = read_small(&mut entry, what, max).map_err(unreadable)?;
            if kind.is_gnu_longname() {
                long_name = Some(data);
            } else if kind.is_gnu_longlink() {
                long_link = true;
            } else {
                pax = Some(data);
            }
            continue;
        }
        if kind.is_pax_global_extensions() {
            // Global defaults (mtime, uid, ...): nothing a bundle needs; read, bounded.
            read_small(&mut entry, "PAX header", MAX_PAX).map_err(unreadable)?;
            continue;
        }
        count += 1;
        if count > MAX_ENTRIES {
            return Err(BundleError::TooManyEntries);
        }
        // This entry's path and size: the extensions before it override its header.
        let mut raw_path = match long_name.take() {
            Some(mut n) => {
                // GNU long names are NUL-terminated.
                while n.last() == Some(&0) {
                    n.pop();
                }
                n
            }
            None => entry.path_bytes().into_owned(),
        };
        long_link = false;
        let header_size = entry.size();
        if let Some(p) = pax.take() {
            for ext in tar::PaxExtensions::new(&p) {
                let ext = ext.map_err(unreadable)?;
                match ext.key() {
                    Ok("path") => {
                        raw_path = ext.value_bytes().to_vec();
                        if raw_path.len() as u64 > MAX_NAME {
                            return Err(BundleError::TooLong {
                                what: "path",
                                len: raw_path.len() as u64,
                                max: MAX_NAME,
                            });
                        }
                    }
                    Ok("size") => {
                        // The tar crate reads raw entries by their header size; a
                        // different PAX size would make this reader and others see
                        // different files. A bundle never needs one (they are for
                        // files over 8 GiB), so refuse it, checked against the budget
                        // first for the error that matters.
                        let pax_size = ext
                            .value()
                            .ok()
                            .and_then(|v| v.trim().parse::<u64>().ok())
                            .ok_or_else(|| {
                                BundleError::Unreadable("a PAX `size` is not a number".into())
                            })?;
                        if pax_size > max_size.saturating_sub(total) {
                            return Err(BundleError::TooLarge(max_size));
                        }
                        if pax_size != header_size {
                            return Err(BundleError::Unreadable(format!(
                                "a PAX `size` of {pax_size} overrides the header's {header_size}"
                            )));
                        }
                    }
                    _ => {}
                }
            }
        }
        let raw = String::from_utf8_lossy(&raw_path).into_owned();
        if kind.is_dir() {
            continue;
        }
        if !kind.is_file() {
            // Symlinks, hard links, devices, sparse files and the like never enter the
            // registry.
            return Err(BundleError::UnsafePath(raw));
        }
        let path = normalize(&raw).ok_or_else(|| BundleError::UnsafePath(raw.clone()))?;
        // Checked before anything is allocated for it.
        if header_size > max_size.saturating_sub(total) {
            return Err(BundleError::TooLarge(max_size));
        }
        total += header_size;
        if bundle.files.contains_key(&path) {
            return Err(BundleError::Duplicate(path));
        }
        let mut data = Vec::with_capacity(header_size as usize);
        (&mut entry)
            .take(header_size)
            .read_to_end(&mut data)
            .map_err(unreadable)?;
        if data.len() as u64 != header_size {
            return Err(BundleError::Unreadable(format!(
                "entry `{path}` is truncated"
            )));
        }
        bundle.files.insert(path, data);
    }
    if long_name.is_some() || long_link || pax.is_some() {
        return Err(BundleError::Unreadable(
            "extension headers at the end describe no entry".into(),
        ));
    }
    // A path that is also a directory of another (`a` and `a/b`) cannot be mounted.
    for path in bundle.files.keys() {
        let dir = format!("{path}/");
        if bundle
            .files
            .range(dir.clone()..)
            .next()
            .is_some_and(|(p, _)| p.starts_with(&dir))
        {
            return Err(BundleError::Duplicate(path.clone()));
        }
    }
    if !bundle.files.contains_key("wharf.toml") {
        return Err(BundleError::NoManifest);
    }
    Ok(bundle)
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
