#![deny(missing_docs)]
//! The registry of deployed apps and their blobs.
//!
//! This crate owns three things: the record of which apps are deployed (name, version,
//! revision, manifest text and the list of component blobs), the blobs themselves (the
//! `.wasm` bytes of each component, content-addressed by their SHA-256), and the change
//! log of deploys and removals that lets many nodes follow one registry (take a
//! [`Registry::snapshot`], then [`Registry::watch`] from its sequence number). All of it
//! sits behind the async [`Registry`] trait so that another backend (NATS JetStream) can
//! be added later; [`SqliteRegistry`] is the embedded default:
//!
//! ```text
//! <state_dir>/registry.db                      SQLite, WAL mode, synchronous=FULL:
//!                                              tables `apps` and `changes`
//! <state_dir>/blobs/<first 2 hex>/<sha256 hex> one file per blob, never modified in place
//! ```
//!
//! The API is async and every implementation is `Send + Sync + 'static`. The SQLite
//! backend runs its blocking work (SQLite, file I/O, hashing) on
//! [`tokio::task::spawn_blocking`], so it must be called from within a Tokio runtime.
//! [`SqliteRegistry`] is a cheap handle (an `Arc` inside): clone it freely.
//!
//! # Change log
//!
//! Every deploy and removal appends one [`Change`] to the `changes` table, numbered by
//! a sequence number (`seq`) that starts at 1 and only grows. [`Registry::snapshot`]
//! reads every app together with the highest `seq` in one transaction, and
//! [`Registry::watch`]`(seq)` yields exactly the changes after it: first the recorded
//! ones, then new ones as this process commits them. So a node that applies a snapshot
//! and then every change of the watch is never missing one and never applies one twice.
//!
//! Only the most recent changes are kept ([`DEFAULT_HISTORY`], 10,000, unless
//! [`RegistryOptions::history`] says otherwise); older ones are pruned in the same
//! transaction that appends a new one. A watch from before the retained history starts
//! with [`RegistryError::HistoryCompacted`]: take a new snapshot and watch from it.
//!
//! Live delivery in the SQLite backend: after each commit, the registry bumps a
//! [`tokio::sync::watch`] channel; each watch then reads the rows after the last one it
//! delivered from the database. A wake-up that is coalesced or missed therefore loses
//! nothing. A SQLite state dir is meant to be used by one server process at a time:
//! changes committed by *another* process are recorded and delivered, but only once this
//! process commits one of its own (or on a new watch).
//!
//! # Crash safety
//!
//! A crash (`kill -9`, power loss) at any moment leaves every app either at its old
//! version or at its new version, whole, and the change log agreeing with it. The
//! argument:
//!
//! 1. Blobs are written *before* the deploy transaction, each atomically: the bytes go to
//!    a temporary file in the blob's own directory, which is fsynced, renamed over the
//!    final name, and the directory is fsynced. A blob file under its final name is
//!    therefore always complete, and durable before anything can refer to it. A crash
//!    mid-write leaves at most a temporary file, which [`Registry::gc`] removes later.
//! 2. The deploy (or removal) itself is a single SQLite transaction, which writes the
//!    app's row *and* its change-log row (and prunes old history), and is the only
//!    commit point. It checks, inside the transaction, that every blob it refers to
//!    exists, and the compare-and-set on the expected revision is done under the write
//!    lock taken when the transaction begins. With `synchronous=FULL` the commit is
//!    durable when `deploy` returns, and SQLite's WAL guarantees that a crash before that
//!    point rolls it back whole: a change is in the log if and only if it happened.
//!    Watchers are only woken after the commit, and read what they deliver from the
//!    committed log, so no watcher ever sees a change that a crash could undo.
//! 3. Blobs are never modified in place, and [`Registry::gc`] only deletes blobs that
//!    no committed row refers to *and* that are older than a grace period, while holding
//!    the database write lock, so it can neither race a commit nor delete the blobs of a
//!    deploy that has written them but not committed yet.
//!
//! So every committed row refers only to complete, durable blobs, and every state the
//! database can be found in after a crash is a committed one.
//!
//! A blob is verified (hashed) the first time [`Registry::fetch_blob`] hands it out in a
//! process; later fetches trust the verified file, which is never modified in place.
//! [`Registry::get_blob`] always verifies.

mod blobs;
mod sqlite;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use sqlite::{DEFAULT_HISTORY, RegistryOptions, SqliteRegistry};

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
    /// A watch asked for changes after `after`, but the registry no longer keeps them:
    /// its oldest retained change is `oldest`.
    #[error(
        "the registry no longer has the changes after sequence number {after} (its oldest retained change is {oldest}); re-read the snapshot and watch from its sequence number"
    )]
    HistoryCompacted {
        /// The sequence number the watch was asked to continue after.
        after: u64,
        /// The oldest sequence number still in the history.
        oldest: u64,
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

/// Every deployed app, and the change sequence number this listing is consistent with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// All apps, sorted by name.
    pub apps: Vec<AppRecord>,
    /// The sequence number of the last change reflected in `apps` (0 if none was ever
    /// recorded); [`Registry::watch`] from it continues with exactly the later changes.
    pub seq: u64,
}

/// One entry of the change log.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Change {
    /// The change's sequence number: unique, and increasing in commit order.
    pub seq: u64,
    /// What changed.
    pub kind: ChangeKind,
}

/// What a [`Change`] did.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ChangeKind {
    /// An app was deployed or replaced; this is its new record.
    Deployed(AppRecord),
    /// An app was removed; `revision` was its last revision.
    Removed {
        /// The app's name.
        name: String,
        /// The revision it had when removed.
        revision: u64,
    },
}

/// A stream of changes, from [`Registry::watch`].
///
/// [`Watch::next`] yields changes oldest first. It returns `None` when the registry
/// (every clone of it) has been dropped. An `Err` item ends the watch (the next call
/// returns `None`): after [`RegistryError::HistoryCompacted`] or a storage error, take a
/// new [`Registry::snapshot`] and watch from its sequence number.
#[derive(Debug)]
pub struct Watch {
    rx: tokio::sync::mpsc::Receiver<Result<Change>>,
}

impl Watch {
    /// A watch fed by a channel, for backends: send changes oldest first, an `Err` at
    /// most as the last item, and drop the sender when the registry goes away.
    pub fn from_receiver(rx: tokio::sync::mpsc::Receiver<Result<Change>>) -> Watch {
        Watch { rx }
    }

    /// The next change; `None` once the registry is dropped or after an `Err` item.
    /// Cancel safe: dropping the future loses no change.
    pub async fn next(&mut self) -> Option<Result<Change>> {
        self.rx.recv().await
    }
}

/// The registry of deployed apps, their content-addressed blobs, and the log of their
/// changes.
#[async_trait::async_trait]
pub trait Registry: Send + Sync + 'static {
    /// Stores bytes content-addressed and returns their sha256 (lowercase hex).
    ///
    /// Idempotent. Atomic: the bytes are written to a temporary file in the blob's
    /// directory, fsynced, renamed into place, and the directory is fsynced. Verifies
    /// nothing about the bytes themselves.
    async fn put_blob(&self, bytes: Arc<[u8]>) -> Result<String>;

    /// Makes the blob available in this node's local blob cache and returns the path of
    /// the local file (for mmap or reading), after verifying that its content hashes to
    /// `sha256`.
    ///
    /// [`RegistryError::MissingBlob`] if absent; a [`RegistryError::Storage`] error
    /// naming the blob if its content does not hash to its name. For SQLite the local
    /// cache is the blob store itself: the content is hashed the first time this process
    /// fetches the blob and remembered, so repeated fetches only check that the file is
    /// still there.
    async fn fetch_blob(&self, sha256: &str) -> Result<PathBuf>;

    /// Reads a blob and verifies its sha256: [`RegistryError::MissingBlob`] if absent,
    /// a [`RegistryError::Storage`] error naming the blob if its content no longer
    /// hashes to its name (corruption).
    async fn get_blob(&self, sha256: &str) -> Result<Vec<u8>>;

    /// Deploys or replaces an app in one transaction, records a
    /// [`ChangeKind::Deployed`] in the change log in that same transaction, and returns
    /// the new record (revision = previous + 1, or 1).
    ///
    /// All component blobs must already be stored, else [`RegistryError::MissingBlob`]
    /// and nothing changes. `expected_revision` (compare-and-set): `None` = don't care;
    /// `Some(0)` = the app must not exist yet; `Some(n)` = its current revision must be
    /// `n`; else [`RegistryError::Conflict`] and nothing changes.
    async fn deploy(&self, app: NewApp, expected_revision: Option<u64>) -> Result<AppRecord>;

    /// The named app, if deployed.
    async fn get(&self, name: &str) -> Result<Option<AppRecord>>;

    /// Every app (sorted by name) plus the change sequence number the listing is
    /// consistent with, read in one transaction, so that [`Registry::watch`]`(seq)`
    /// continues with exactly the changes after it.
    async fn snapshot(&self) -> Result<Snapshot>;

    /// All apps, sorted by name: [`Registry::snapshot`] without the sequence number.
    async fn list(&self) -> Result<Vec<AppRecord>> {
        Ok(self.snapshot().await?.apps)
    }

    /// Removes an app, records a [`ChangeKind::Removed`] in the same transaction, and
    /// returns the app's last record. Its blobs stay until [`Registry::gc`].
    ///
    /// [`RegistryError::NotFound`] if it is not deployed. `expected_revision`
    /// (compare-and-set, like [`Registry::deploy`]): `None` = don't care; `Some(n)` = its
    /// current revision must be `n`, else [`RegistryError::Conflict`] and nothing changes.
    async fn remove(&self, name: &str, expected_revision: Option<u64>) -> Result<AppRecord>;

    /// The changes with sequence number > `after`, oldest first: first the recorded
    /// history, then live changes as they are committed (by this process; a SQLite
    /// state dir is used by one process at a time).
    ///
    /// If `after` is older than the retained history, the first item is
    /// `Err(`[`RegistryError::HistoryCompacted`]`)` and the watch ends: take a new
    /// [`Registry::snapshot`] and watch from its sequence number. See [`Watch`] for when
    /// the stream ends.
    async fn watch(&self, after: u64) -> Result<Watch>;

    /// Deletes blob files referenced by no app and older than `min_age`, and leftover
    /// temporary files older than `min_age`; returns the number of files removed.
    ///
    /// The age limit protects a deploy in progress, which stores its blobs before its
    /// transaction: `min_age` must exceed the longest time between a deploy's
    /// `put_blob` calls and its `deploy` call. (Storing a blob that already exists
    /// refreshes its age.)
    async fn gc(&self, min_age: Duration) -> Result<usize>;
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
