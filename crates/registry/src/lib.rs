#![deny(missing_docs)]
//! The registry of deployed apps and their blobs.
//!
//! This crate owns two things: the record of which apps are deployed (name, version,
//! revision, manifest text and the list of component blobs), and the blobs themselves
//! (the `.wasm` bytes of each component, content-addressed by their SHA-256). Both sit
//! behind the [`Registry`] trait so that another backend (NATS JetStream) can be added
//! later; [`SqliteRegistry`] is the embedded default:
//!
//! ```text
//! <state_dir>/registry.db                      SQLite, WAL mode, synchronous=FULL
//! <state_dir>/blobs/<first 2 hex>/<sha256 hex> one file per blob, never modified in place
//! ```
//!
//! The API is synchronous (the server calls it from `tokio::task::spawn_blocking`) and
//! every implementation is `Send + Sync`.
//!
//! # Crash safety
//!
//! A crash (`kill -9`, power loss) at any moment leaves every app either at its old
//! version or at its new version, whole. The argument:
//!
//! 1. Blobs are written *before* the deploy transaction, each atomically: the bytes go to
//!    a temporary file in the blob's own directory, which is fsynced, renamed over the
//!    final name, and the directory is fsynced. A blob file under its final name is
//!    therefore always complete, and durable before anything can refer to it. A crash
//!    mid-write leaves at most a temporary file, which [`Registry::gc`] removes later.
//! 2. The deploy itself is a single SQLite transaction (one row per app) and is the
//!    only commit point. It checks, inside the transaction, that every blob it refers
//!    to exists; with `synchronous=FULL` the commit is durable when `deploy` returns,
//!    and SQLite's WAL guarantees that a crash before that point rolls it back whole.
//! 3. Blobs are never modified in place, and [`Registry::gc`] only deletes blobs that
//!    no committed row refers to *and* that are older than a grace period, while holding
//!    the database write lock, so it can neither race a commit nor delete the blobs of a
//!    deploy that has written them but not committed yet.
//!
//! So every committed row refers only to complete, durable blobs, and every state the
//! database can be found in after a crash is a committed one.

mod blobs;
mod sqlite;

use std::path::PathBuf;
use std::time::Duration;

pub use sqlite::SqliteRegistry;

/// The result type of every registry operation.
pub type Result<T> = std::result::Result<T, RegistryError>;

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The named app is not deployed.
    #[error("app `{0}` is not deployed")]
    NotFound(String),
    /// A blob (named by its sha256) is not stored.
    #[error("blob {0} is missing from the registry")]
    MissingBlob(String),
    /// An optimistic-concurrency check failed: the app's current revision is not the
    /// one the caller expected. `None` on either side means "not deployed".
    #[error(
        "app `{name}` changed while this deploy ran (expected revision {expected:?}, found {found:?}); retry the deploy"
    )]
    Conflict {
        /// The app's name.
        name: String,
        /// The revision the caller expected (`None`: the caller expected the app not to
        /// exist, i.e. it passed `Some(0)`).
        expected: Option<u64>,
        /// The revision actually found (`None`: the app is not deployed).
        found: Option<u64>,
    },
    /// An I/O or SQLite error, or corrupt stored data, with context saying what was
    /// being done.
    #[error("registry storage error: {0:#}")]
    Storage(anyhow::Error),
}

/// One component's compiled bytes, as stored in the registry.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ComponentBlob {
    /// The component's id within its app (from the manifest).
    pub id: String,
    /// SHA-256 of the bytes, 64 lowercase hex characters; the blob's address.
    pub sha256: String,
    /// Size of the bytes.
    pub size: u64,
}

/// A deployed app, as recorded by the registry.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AppRecord {
    /// The app's name (unique in the registry).
    pub name: String,
    /// The version string from the manifest.
    pub version: String,
    /// 1 for the first deploy of this name, +1 on every replace. Removing the app
    /// forgets it: a later deploy of the same name starts again at 1.
    pub revision: u64,
    /// The `wharf.toml` text as deployed.
    pub manifest: String,
    /// The app's component blobs.
    pub components: Vec<ComponentBlob>,
    /// When this revision was deployed, in Unix milliseconds.
    pub deployed_at_ms: u64,
}

/// What a caller deploys; the registry adds the revision and timestamp.
#[derive(Clone, Debug)]
pub struct NewApp {
    /// The app's name.
    pub name: String,
    /// The version string from the manifest.
    pub version: String,
    /// The `wharf.toml` text.
    pub manifest: String,
    /// The component blobs, which must already be stored with [`Registry::put_blob`].
    pub components: Vec<ComponentBlob>,
}

/// The registry of deployed apps and their content-addressed blobs.
pub trait Registry: Send + Sync {
    /// Stores bytes content-addressed and returns their sha256 (lowercase hex).
    ///
    /// Idempotent. Atomic: the bytes are written to a temporary file in the blob's
    /// directory, fsynced, renamed into place, and the directory is fsynced. Verifies
    /// nothing about the bytes themselves.
    fn put_blob(&self, bytes: &[u8]) -> Result<String>;

    /// Path of a stored blob (for mmap or reading); [`RegistryError::MissingBlob`] if
    /// it is absent.
    fn blob_path(&self, sha256: &str) -> Result<PathBuf>;

    /// Reads a blob and verifies its sha256: [`RegistryError::MissingBlob`] if absent,
    /// a [`RegistryError::Storage`] error naming the blob if its content no longer
    /// hashes to its name (corruption).
    fn get_blob(&self, sha256: &str) -> Result<Vec<u8>>;

    /// Deploys or replaces an app in one transaction and returns the new record
    /// (revision = previous + 1, or 1).
    ///
    /// All component blobs must already be stored, else [`RegistryError::MissingBlob`]
    /// and nothing changes. `expected_revision`: `None` = don't care; `Some(0)` = the
    /// app must not exist yet; `Some(n)` = its current revision must be `n`; else
    /// [`RegistryError::Conflict`] and nothing changes.
    fn deploy(&self, app: NewApp, expected_revision: Option<u64>) -> Result<AppRecord>;

    /// The named app, if deployed.
    fn get(&self, name: &str) -> Result<Option<AppRecord>>;

    /// All apps, sorted by name.
    fn list(&self) -> Result<Vec<AppRecord>>;

    /// Removes an app and returns its last record; [`RegistryError::NotFound`] if it is
    /// not deployed. Its blobs stay until [`Registry::gc`].
    fn remove(&self, name: &str) -> Result<AppRecord>;

    /// Deletes blob files referenced by no app and older than `min_age`, and leftover
    /// temporary files older than `min_age`; returns the number of files removed.
    ///
    /// The age limit protects a deploy in progress, which stores its blobs before its
    /// transaction: `min_age` must exceed the longest time between a deploy's
    /// `put_blob` calls and its `deploy` call. (Storing a blob that already exists
    /// refreshes its age.)
    fn gc(&self, min_age: Duration) -> Result<usize>;
}

/// Wraps an error into [`RegistryError::Storage`] with a description of what was being
/// done. SQLite errors that have a likely cause the operator can fix (the database is
/// locked by another process, unwritable, not a database, corrupt) also get a hint.
pub(crate) fn storage_error(err: impl Into<anyhow::Error>, what: String) -> RegistryError {
    let err: anyhow::Error = err.into();
    let hint = err
        .downcast_ref::<rusqlite::Error>()
        .and_then(|e| e.sqlite_error_code())
        .and_then(|code| {
            use rusqlite::ErrorCode as C;
            match code {
                C::DatabaseBusy | C::DatabaseLocked => {
                    Some("is another wharf server using this state dir?")
                }
                C::CannotOpen | C::ReadOnly | C::PermissionDenied => {
                    Some("check that the state dir exists and is writable by this user")
                }
                C::NotADatabase => Some(
                    "the file is not a wharf registry database; move it aside or use another state dir",
                ),
                C::DatabaseCorrupt => Some(
                    "the database is corrupt; restore it from a backup or move it aside and redeploy",
                ),
                C::DiskFull => Some("free some disk space and retry"),
                _ => None,
            }
        });
    match hint {
        // The hint reads best after the cause, so the message is flattened here.
        Some(hint) => RegistryError::Storage(anyhow::anyhow!("{what}: {err:#}; {hint}")),
        None => RegistryError::Storage(err.context(what)),
    }
}

/// `.or_storage(|| "what was being done")` on any fallible result.
pub(crate) trait OrStorage<T> {
    /// Maps the error with [`storage_error`]; `what` is only evaluated on failure.
    fn or_storage(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: Into<anyhow::Error>> OrStorage<T> for std::result::Result<T, E> {
    fn or_storage(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| storage_error(e, what()))
    }
}
