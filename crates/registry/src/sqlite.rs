//! The embedded backend: SQLite for the app records, [`BlobStore`] for the blobs.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::anyhow;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use tokio::sync::{mpsc, watch};

use crate::blobs::{BlobStore, fsync_dir, validate_sha256};
use crate::{
    AppRecord, Change, ChangeKind, ComponentBlob, NewApp, OrStorage, Registry, RegistryError,
    Result, Snapshot, Watch,
};

/// The database file inside the state dir.
const DB_FILE: &str = "registry.db";
/// The blobs directory inside the state dir.
const BLOBS_DIR: &str = "blobs";
/// How long an operation waits for another process's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How many changes the registry keeps by default (see [`RegistryOptions::history`]).
pub const DEFAULT_HISTORY: u64 = 10_000;
/// How many changes a watch reads from the database at a time.
const WATCH_BATCH: u32 = 256;
/// How many read changes a watch buffers for a slow consumer.
const WATCH_BUFFER: usize = 64;

/// Schema migrations; `MIGRATIONS[i]` takes the database from `PRAGMA user_version` `i`
/// to `i + 1`. Append only: a released entry must never change.
const MIGRATIONS: &[&str] = &[
    // Version 1. One row per deployed app, so a deploy or removal is a single-row write.
    // `components` is the JSON of `Vec<ComponentBlob>`: it is only ever read and written
    // whole with its row, and gc reads all of them. STRICT makes SQLite enforce the types.
    "CREATE TABLE apps (
        name           TEXT    NOT NULL PRIMARY KEY,
        version        TEXT    NOT NULL,
        revision       INTEGER NOT NULL CHECK (revision >= 1),
        manifest       TEXT    NOT NULL,
        components     TEXT    NOT NULL,
        deployed_at_ms INTEGER NOT NULL
    ) STRICT;",
    // Version 2. The change log: one row per deploy or removal, written in the same
    // transaction as the `apps` row it describes. `change` is the JSON of `ChangeKind`.
    // AUTOINCREMENT: a seq is never reused, even after the newest rows are pruned.
    // A database migrated from version 1 starts with no history (snapshot seq 0).
    "CREATE TABLE changes (
        seq    INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
        change TEXT    NOT NULL
    ) STRICT;",
];

/// Tuning of a [`SqliteRegistry`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryOptions {
    /// How many of the most recent changes to keep in the change log (at least 1 is
    /// always kept); older ones are pruned in the transaction that appends a new one.
    /// A watch from before the kept history gets [`RegistryError::HistoryCompacted`].
    /// Default: [`DEFAULT_HISTORY`] (10,000).
    pub history: u64,
}

impl Default for RegistryOptions {
    fn default() -> RegistryOptions {
        RegistryOptions {
            history: DEFAULT_HISTORY,
        }
    }
}

/// The registry kept in a state directory: `registry.db` (SQLite, WAL mode,
/// `synchronous=FULL`) and `blobs/<first 2 hex>/<sha256 hex>`.
///
/// A cheap handle: clones share one connection, blob store and set of watchers. The
/// registry is closed (and every [`Watch`] on it ends) when the last clone is dropped.
///
/// A state dir is meant for one server process at a time. Several processes may still
/// open it safely (every write is a SQLite transaction that waits up to 5 s for
/// another's lock), but watches see another process's changes only once this process
/// commits one of its own.
#[derive(Clone)]
pub struct SqliteRegistry {
    inner: Arc<Inner>,
}

/// What the clones of a [`SqliteRegistry`] share.
struct Inner {
    state_dir: PathBuf,
    db_path: PathBuf,
    /// One connection, serialized: the operations are short, and run on blocking threads.
    conn: Mutex<Connection>,
    blobs: BlobStore,
    /// How many changes to keep (at least 1).
    history: u64,
    /// The highest seq committed by this process. Only a wake-up for the watches, which
    /// read the changes themselves; dropped with `Inner`, which ends them.
    committed: watch::Sender<u64>,
}

impl SqliteRegistry {
    /// Opens or creates the registry in `state_dir` with the default
    /// [`RegistryOptions`]; see [`SqliteRegistry::open_with`].
    pub fn open(state_dir: &Path) -> Result<SqliteRegistry> {
        SqliteRegistry::open_with(state_dir, RegistryOptions::default())
    }

    /// Opens or creates the registry in `state_dir`, creating the directory (mode 0700)
    /// if absent, and migrates the database schema to the current version.
    ///
    /// Blocking (file I/O, and up to 5 s waiting for another process's lock): call it at
    /// startup or from a blocking thread.
    pub fn open_with(state_dir: &Path, options: RegistryOptions) -> Result<SqliteRegistry> {
        create_state_dir(state_dir)?;
        let blobs = BlobStore::open(state_dir.join(BLOBS_DIR))?;
        let db_path = state_dir.join(DB_FILE);
        let what = || format!("cannot open registry database `{}`", db_path.display());

        let mut conn = Connection::open(&db_path).or_storage(what)?;
        // First, so that the statements below wait for a concurrent opener too.
        conn.busy_timeout(BUSY_TIMEOUT).or_storage(what)?;
        // WAL: readers never block the writer, and a commit is one append + fsync.
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .or_storage(what)?;
        if !mode.eq_ignore_ascii_case("wal") {
            // Still crash safe (rollback journal), just slower; WAL needs shared memory,
            // which some network file systems lack.
            tracing::warn!(
                db = %db_path.display(),
                journal_mode = %mode,
                "registry database could not switch to WAL mode; is the state dir on a network file system?"
            );
        }
        // FULL: a commit is durable (fsynced) when it returns, not just consistent.
        conn.pragma_update(None, "synchronous", "FULL")
            .or_storage(what)?;
        migrate(&mut conn, &db_path)?;
        let seq = last_seq(&conn).or_storage(what)?;

        Ok(SqliteRegistry {
            inner: Arc::new(Inner {
                state_dir: state_dir.to_owned(),
                db_path,
                conn: Mutex::new(conn),
                blobs,
                history: options.history.max(1),
                committed: watch::Sender::new(seq),
            }),
        })
    }

    /// The state directory this registry lives in.
    pub fn state_dir(&self) -> &Path {
        &self.inner.state_dir
    }

    /// Runs `f` on a blocking thread with the shared state.
    async fn blocking<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T> + Send + 'static,
    {
        run_blocking(Arc::clone(&self.inner), f).await
    }
}

/// Runs `f(&inner)` on a blocking thread. A panic in `f` is resumed in the caller.
async fn run_blocking<T, F>(inner: Arc<Inner>, f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce(&Inner) -> Result<T> + Send + 'static,
{
    match tokio::task::spawn_blocking(move || f(&inner)).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(RegistryError::Storage(anyhow!(
            "a registry operation was cancelled because the Tokio runtime is shutting down: {e}"
        ))),
    }
}

impl Inner {
    /// The connection. A panic while it was held cannot have left a half-done write:
    /// an unfinished [`rusqlite::Transaction`] rolls back when dropped, also during
    /// unwinding. So a poisoned lock is safe to take over.
    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wakes the watches after the commit of change `seq`.
    fn notify(&self, seq: u64) {
        self.committed.send_if_modified(|last| {
            let newer = seq > *last;
            if newer {
                *last = seq;
            }
            newer
        });
    }
}

/// Creates the state dir (0700: it holds every deployed app) if it does not exist.
fn create_state_dir(dir: &Path) -> Result<()> {
    match fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => return Ok(()),
        Ok(_) => {
            return Err(RegistryError::Storage(anyhow!(
                "state dir `{}` exists but is not a directory; move it aside or choose another state dir",
                dir.display()
            )));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(e).or_storage(|| format!("cannot inspect state dir `{}`", dir.display()));
        }
    }
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).or_storage(|| {
        format!(
            "cannot create state dir `{}`; check that its parent exists and is writable by this user",
            dir.display()
        )
    })?;
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        fsync_dir(parent).or_storage(|| format!("cannot sync directory `{}`", parent.display()))?;
    }
    Ok(())
}

/// Brings the schema to `MIGRATIONS.len()`, in one transaction with the version bump so
/// that a crash mid-migration leaves the old schema, and `IMMEDIATE` so that two
/// processes opening a new state dir at once do not both migrate.
fn migrate(conn: &mut Connection, db_path: &Path) -> Result<()> {
    // Failing here usually means another process holds the lock, so this says "open".
    let what = || format!("cannot open registry database `{}`", db_path.display());
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .or_storage(what)?;
    let version: i64 = tx
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .or_storage(what)?;
    let known = MIGRATIONS.len();
    let version = usize::try_from(version)
        .ok()
        .filter(|v| *v <= known)
        .ok_or_else(|| {
            RegistryError::Storage(anyhow!(
                "registry database `{}` has schema version {version}, but this wharf only \
                 understands versions up to {known}; upgrade wharf or use another state dir",
                db_path.display()
            ))
        })?;
    if version == known {
        return Ok(());
    }
    for (from, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        tx.execute_batch(sql).or_storage(|| {
            format!(
                "cannot migrate registry database `{}` from schema version {from} to {}",
                db_path.display(),
                from + 1
            )
        })?;
    }
    // `known` is a small constant, so the cast cannot truncate.
    tx.pragma_update(None, "user_version", known as i64)
        .or_storage(what)?;
    tx.commit().or_storage(what)?;
    tracing::info!(db = %db_path.display(), from = version, to = known, "migrated registry schema");
    Ok(())
}

/// The highest seq in the change log, 0 if it is empty (a new database, or one
/// migrated from version 1). At least one change is always kept, so this is also the
/// highest seq ever assigned.
fn last_seq(conn: &Connection) -> rusqlite::Result<u64> {
    let seq: i64 = conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM changes", [], |row| {
        row.get(0)
    })?;
    Ok(u64::try_from(seq).unwrap_or(0))
}

/// Appends `kind` to the change log inside the caller's write transaction, prunes all
/// but the last `history` changes, and returns the new change's seq.
fn record_change(tx: &Transaction<'_>, kind: &ChangeKind, history: u64) -> Result<u64> {
    let what = || "cannot append to the registry change log".to_owned();
    let json = serde_json::to_string(kind).or_storage(what)?;
    tx.execute("INSERT INTO changes (change) VALUES (?1)", params![json])
        .or_storage(what)?;
    let seq = u64::try_from(tx.last_insert_rowid()).map_err(|_| {
        RegistryError::Storage(anyhow!("the registry change log returned a negative seq"))
    })?;
    if let Some(cutoff) = seq.checked_sub(history).filter(|c| *c > 0) {
        tx.execute(
            "DELETE FROM changes WHERE seq <= ?1",
            params![to_sql_int(cutoff, "seq")?],
        )
        .or_storage(|| "cannot prune the registry change log".to_owned())?;
    }
    Ok(seq)
}

/// Up to `limit` changes with seq > `after`, oldest first, read in one transaction;
/// [`RegistryError::HistoryCompacted`] if some of them have been pruned.
fn changes_after(conn: &mut Connection, after: u64, limit: u32) -> Result<Vec<Change>> {
    let what = || format!("cannot read the registry change log after seq {after}");
    let tx = conn.transaction().or_storage(what)?;
    let after_sql = to_sql_int(after, "seq")?;
    let oldest: Option<i64> = tx
        .query_row("SELECT MIN(seq) FROM changes", [], |row| row.get(0))
        .or_storage(what)?;
    if let Some(oldest) = oldest.and_then(|o| u64::try_from(o).ok()) {
        // Seqs are contiguous (AUTOINCREMENT in a transaction that either commits
        // whole or not at all), so a first kept seq beyond `after + 1` means pruned ones.
        if oldest > after.saturating_add(1) {
            return Err(RegistryError::HistoryCompacted { after, oldest });
        }
    }
    let mut stmt = tx
        .prepare("SELECT seq, change FROM changes WHERE seq > ?1 ORDER BY seq LIMIT ?2")
        .or_storage(what)?;
    let rows = stmt
        .query_map(params![after_sql, limit], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
        })
        .or_storage(what)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .or_storage(what)?;
    rows.into_iter()
        .map(|(seq, json)| {
            let kind: ChangeKind = serde_json::from_str(&json).map_err(|e| {
                RegistryError::Storage(anyhow!(
                    "the registry change log entry {seq} is corrupt ({e}); take a new snapshot \
                     and watch from its sequence number"
                ))
            })?;
            let seq = u64::try_from(seq).map_err(|_| {
                RegistryError::Storage(anyhow!("the registry change log has a negative seq {seq}"))
            })?;
            Ok(Change { seq, kind })
        })
        .collect()
}

/// Reads every app, sorted by name (BINARY collation orders by UTF-8 bytes, the same
/// order as Rust's `str`).
fn load_all(conn: &Connection) -> Result<Vec<AppRecord>> {
    let what = || "cannot list the deployed apps".to_owned();
    let mut stmt = conn
        .prepare(&format!("SELECT {COLUMNS} FROM apps ORDER BY name"))
        .or_storage(what)?;
    let rows = stmt
        .query_map([], Row::read)
        .or_storage(what)?
        .collect::<rusqlite::Result<Vec<Row>>>()
        .or_storage(what)?;
    rows.into_iter().map(Row::into_record).collect()
}

/// The task behind a [`Watch`]: delivers the changes after `last` into `tx`, reading
/// them from the database whenever `committed` says there may be new ones.
///
/// It holds the registry only weakly (and a strong reference only while reading), so it
/// ends when the registry is dropped (`committed` closes) or the [`Watch`] is (`tx`
/// closes), and after delivering an error.
async fn run_watch(
    registry: Weak<Inner>,
    mut committed: watch::Receiver<u64>,
    mut last: u64,
    tx: mpsc::Sender<Result<Change>>,
) {
    loop {
        // Mark the current value seen *before* reading, so that a commit after the read
        // wakes us again.
        committed.borrow_and_update();
        let Some(inner) = registry.upgrade() else {
            return;
        };
        let read = run_blocking(inner, move |inner| {
            changes_after(&mut inner.conn(), last, WATCH_BATCH)
        })
        .await;
        match read {
            Ok(changes) => {
                let more = changes.len() >= WATCH_BATCH as usize;
                for change in changes {
                    last = change.seq;
                    if tx.send(Ok(change)).await.is_err() {
                        return;
                    }
                }
                if more {
                    continue;
                }
            }
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        }
        tokio::select! {
            changed = committed.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            () = tx.closed() => return,
        }
    }
}

/// The columns of `apps`, in the order [`Row::read`] expects.
const COLUMNS: &str = "name, version, revision, manifest, components, deployed_at_ms";

/// A row of `apps` as SQLite stores it, before conversion.
struct Row {
    name: String,
    version: String,
    revision: i64,
    manifest: String,
    components: String,
    deployed_at_ms: i64,
}

impl Row {
    fn read(row: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
        Ok(Row {
            name: row.get(0)?,
            version: row.get(1)?,
            revision: row.get(2)?,
            manifest: row.get(3)?,
            components: row.get(4)?,
            deployed_at_ms: row.get(5)?,
        })
    }

    fn into_record(self) -> Result<AppRecord> {
        let corrupt = |what: &str| {
            RegistryError::Storage(anyhow!(
                "the registry record of app `{}` is corrupt: {what}",
                self.name
            ))
        };
        let components: Vec<ComponentBlob> = serde_json::from_str(&self.components)
            .map_err(|e| corrupt(&format!("its component list is not valid: {e}")))?;
        let revision = u64::try_from(self.revision)
            .map_err(|_| corrupt(&format!("revision {} is negative", self.revision)))?;
        let deployed_at_ms = u64::try_from(self.deployed_at_ms)
            .map_err(|_| corrupt(&format!("timestamp {} is negative", self.deployed_at_ms)))?;
        Ok(AppRecord {
            name: self.name,
            version: self.version,
            revision,
            manifest: self.manifest,
            components,
            deployed_at_ms,
        })
    }
}

/// Loads one app's record.
fn load(conn: &Connection, name: &str) -> Result<Option<AppRecord>> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM apps WHERE name = ?1"),
        params![name],
        Row::read,
    )
    .optional()
    .or_storage(|| format!("cannot read the record of app `{name}`"))?
    .map(Row::into_record)
    .transpose()
}

/// Now, in Unix milliseconds (0 if the clock is before 1970).
fn now_ms() -> u64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX)
}

/// u64 → SQLite INTEGER, which is signed.
fn to_sql_int(value: u64, what: &str) -> Result<i64> {
    i64::try_from(value)
        .map_err(|_| RegistryError::Storage(anyhow!("{what} {value} is too large to store")))
}

#[async_trait::async_trait]
impl Registry for SqliteRegistry {
    async fn put_blob(&self, bytes: Arc<[u8]>) -> Result<String> {
        self.blocking(move |inner| inner.blobs.put(&bytes)).await
    }

    async fn fetch_blob(&self, sha256: &str) -> Result<PathBuf> {
        let sha256 = sha256.to_owned();
        self.blocking(move |inner| inner.blobs.fetch(&sha256)).await
    }

    async fn get_blob(&self, sha256: &str) -> Result<Vec<u8>> {
        let sha256 = sha256.to_owned();
        self.blocking(move |inner| inner.blobs.get(&sha256)).await
    }

    async fn deploy(&self, app: NewApp, expected_revision: Option<u64>) -> Result<AppRecord> {
        self.blocking(move |inner| inner.deploy(app, expected_revision))
            .await
    }

    async fn get(&self, name: &str) -> Result<Option<AppRecord>> {
        let name = name.to_owned();
        self.blocking(move |inner| load(&inner.conn(), &name)).await
    }

    async fn snapshot(&self) -> Result<Snapshot> {
        self.blocking(|inner| {
            let what = || "cannot read a snapshot of the registry".to_owned();
            let mut conn = inner.conn();
            // One read transaction: the apps and the seq are from the same commit.
            let tx = conn.transaction().or_storage(what)?;
            let apps = load_all(&tx)?;
            let seq = last_seq(&tx).or_storage(what)?;
            Ok(Snapshot { apps, seq })
        })
        .await
    }

    async fn remove(&self, name: &str, expected_revision: Option<u64>) -> Result<AppRecord> {
        let name = name.to_owned();
        self.blocking(move |inner| inner.remove(&name, expected_revision))
            .await
    }

    async fn watch(&self, after: u64) -> Result<Watch> {
        let (tx, rx) = mpsc::channel(WATCH_BUFFER);
        tokio::spawn(run_watch(
            Arc::downgrade(&self.inner),
            self.inner.committed.subscribe(),
            after,
            tx,
        ));
        Ok(Watch::from_receiver(rx))
    }

    async fn gc(&self, min_age: Duration) -> Result<usize> {
        self.blocking(move |inner| inner.gc(min_age)).await
    }
}

/// The blocking bodies of the writes.
impl Inner {
    fn deploy(&self, app: NewApp, expected_revision: Option<u64>) -> Result<AppRecord> {
        let name = app.name.clone();
        for component in &app.components {
            validate_sha256(&component.sha256)?;
        }
        let components_json = serde_json::to_string(&app.components)
            .or_storage(|| format!("cannot encode the component list of app `{name}`"))?;

        let mut conn = self.conn();
        // IMMEDIATE takes the write lock up front, so the revision read below cannot be
        // overtaken by another process's commit before ours.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .or_storage(|| format!("cannot start the deploy transaction of app `{name}`"))?;

        let found = current_revision(&tx, &name)?;
        check_expected(&name, expected_revision, found)?;

        // Checked inside the transaction: gc deletes blobs only while holding the write
        // lock, so a blob seen here stays until the commit makes it referenced.
        for component in &app.components {
            self.blobs.check_present(component)?;
        }

        let revision = match found {
            None => 1,
            Some(r) => r.checked_add(1).ok_or_else(|| {
                RegistryError::Storage(anyhow!("app `{name}` has run out of revision numbers"))
            })?,
        };
        let deployed_at_ms = now_ms();
        tx.execute(
            &format!(
                "INSERT INTO apps ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (name) DO UPDATE SET
                    version = excluded.version,
                    revision = excluded.revision,
                    manifest = excluded.manifest,
                    components = excluded.components,
                    deployed_at_ms = excluded.deployed_at_ms"
            ),
            params![
                name,
                app.version,
                to_sql_int(revision, "revision")?,
                app.manifest,
                components_json,
                to_sql_int(deployed_at_ms, "timestamp")?,
            ],
        )
        .or_storage(|| format!("cannot write the record of app `{name}`"))?;
        let record = AppRecord {
            name,
            version: app.version,
            revision,
            manifest: app.manifest,
            components: app.components,
            deployed_at_ms,
        };
        let seq = record_change(&tx, &ChangeKind::Deployed(record.clone()), self.history)?;
        // The commit point: before it, a crash leaves the previous revision and no
        // change; after it, this one and its change (see the crate docs).
        tx.commit()
            .or_storage(|| format!("cannot commit the deploy of app `{}`", record.name))?;
        drop(conn);
        self.notify(seq);
        tracing::info!(app = %record.name, revision, version = %record.version, seq, "deployed app");
        Ok(record)
    }

    fn remove(&self, name: &str, expected_revision: Option<u64>) -> Result<AppRecord> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .or_storage(|| format!("cannot start the removal transaction of app `{name}`"))?;
        let record = load(&tx, name)?.ok_or_else(|| RegistryError::NotFound(name.to_owned()))?;
        check_expected(name, expected_revision, Some(record.revision))?;
        tx.execute("DELETE FROM apps WHERE name = ?1", params![name])
            .or_storage(|| format!("cannot delete the record of app `{name}`"))?;
        let kind = ChangeKind::Removed {
            name: name.to_owned(),
            revision: record.revision,
        };
        let seq = record_change(&tx, &kind, self.history)?;
        tx.commit()
            .or_storage(|| format!("cannot commit the removal of app `{name}`"))?;
        drop(conn);
        self.notify(seq);
        tracing::info!(app = %name, revision = record.revision, seq, "removed app");
        Ok(record)
    }

    fn gc(&self, min_age: Duration) -> Result<usize> {
        let what = || "cannot collect the blobs referenced by deployed apps".to_owned();
        let mut conn = self.conn();
        // Held (IMMEDIATE = write lock) while deleting, so that no deploy, in this or
        // another process, can commit a reference to a blob between our reading the
        // references and deleting the blob. Nothing is written; it is rolled back.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .or_storage(|| "cannot start the gc transaction".to_owned())?;
        let mut referenced = HashSet::new();
        {
            let mut stmt = tx
                .prepare("SELECT name, components FROM apps")
                .or_storage(what)?;
            let rows = stmt
                .query_map([], |row| {
                    Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
                })
                .or_storage(what)?;
            for row in rows {
                let (name, components) = row.or_storage(what)?;
                let components: Vec<ComponentBlob> =
                    serde_json::from_str(&components).map_err(|e| {
                        // Refuse to guess: deleting blobs of an app whose list cannot be
                        // read could destroy it.
                        RegistryError::Storage(anyhow!(
                            "the registry record of app `{name}` is corrupt: its component \
                             list is not valid ({e}); gc stopped without deleting anything"
                        ))
                    })?;
                referenced.extend(components.into_iter().map(|c| c.sha256));
            }
        }
        let removed = self.blobs.gc(&referenced, min_age)?;
        drop(tx);
        tracing::info!(
            db = %self.db_path.display(),
            removed,
            referenced = referenced.len(),
            "registry gc done"
        );
        Ok(removed)
    }
}

/// The current revision of app `name` inside a transaction, `None` if not deployed.
fn current_revision(tx: &Transaction<'_>, name: &str) -> Result<Option<u64>> {
    let found: Option<i64> = tx
        .query_row(
            "SELECT revision FROM apps WHERE name = ?1",
            params![name],
            |row| row.get(0),
        )
        .optional()
        .or_storage(|| format!("cannot read the revision of app `{name}`"))?;
    found
        .map(|r| {
            u64::try_from(r).map_err(|_| {
                RegistryError::Storage(anyhow!(
                    "the registry record of app `{name}` is corrupt: revision {r} is negative"
                ))
            })
        })
        .transpose()
}

/// The compare-and-set check: `expected` `None` = don't care, `Some(0)` = must not
/// exist, `Some(n)` = must be at revision `n`.
fn check_expected(name: &str, expected: Option<u64>, found: Option<u64>) -> Result<()> {
    let Some(expected) = expected else {
        return Ok(());
    };
    // Some(0) means "must not exist", which `Conflict` spells as `None`, like `found`.
    let expected = (expected != 0).then_some(expected);
    if expected == found {
        Ok(())
    } else {
        Err(RegistryError::Conflict {
            name: name.to_owned(),
            expected,
            found,
        })
    }
}
