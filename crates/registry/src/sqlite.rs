//! The embedded backend: SQLite for the app records, [`BlobStore`] for the blobs.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::anyhow;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::blobs::{BlobStore, fsync_dir, validate_sha256};
use crate::{AppRecord, ComponentBlob, NewApp, OrStorage, Registry, RegistryError, Result};

/// The database file inside the state dir.
const DB_FILE: &str = "registry.db";
/// The blobs directory inside the state dir.
const BLOBS_DIR: &str = "blobs";
/// How long an operation waits for another process's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

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
];

/// The registry kept in a state directory: `registry.db` (SQLite, WAL mode,
/// `synchronous=FULL`) and `blobs/<first 2 hex>/<sha256 hex>`.
///
/// Several processes may open the same state dir: every write is a SQLite transaction
/// that waits up to 5 s for another's lock.
pub struct SqliteRegistry {
    state_dir: PathBuf,
    db_path: PathBuf,
    /// One connection, serialized: the operations are short, and the server calls them
    /// from blocking threads.
    conn: Mutex<Connection>,
    blobs: BlobStore,
}

impl SqliteRegistry {
    /// Opens or creates the registry in `state_dir`, creating the directory (mode 0700)
    /// if absent, and migrates the database schema to the current version.
    pub fn open(state_dir: &Path) -> Result<SqliteRegistry> {
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

        Ok(SqliteRegistry {
            state_dir: state_dir.to_owned(),
            db_path,
            conn: Mutex::new(conn),
            blobs,
        })
    }

    /// The state directory this registry lives in.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// The connection. A panic while it was held cannot have left a half-done write:
    /// an unfinished [`rusqlite::Transaction`] rolls back when dropped, also during
    /// unwinding. So a poisoned lock is safe to take over.
    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
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

impl Registry for SqliteRegistry {
    fn put_blob(&self, bytes: &[u8]) -> Result<String> {
        self.blobs.put(bytes)
    }

    fn blob_path(&self, sha256: &str) -> Result<PathBuf> {
        self.blobs.path(sha256)
    }

    fn get_blob(&self, sha256: &str) -> Result<Vec<u8>> {
        self.blobs.get(sha256)
    }

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

        let found: Option<i64> = tx
            .query_row(
                "SELECT revision FROM apps WHERE name = ?1",
                params![name],
                |row| row.get(0),
            )
            .optional()
            .or_storage(|| format!("cannot read the revision of app `{name}`"))?;
        let found = found
            .map(|r| {
                u64::try_from(r).map_err(|_| {
                    RegistryError::Storage(anyhow!(
                        "the registry record of app `{name}` is corrupt: revision {r} is negative"
                    ))
                })
            })
            .transpose()?;
        if let Some(expected) = expected_revision {
            // Some(0) means "must not exist", which `Conflict` spells as `None`, like `found`.
            let expected = (expected != 0).then_some(expected);
            if expected != found {
                return Err(RegistryError::Conflict {
                    name,
                    expected,
                    found,
                });
            }
        }

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
        // The commit point: before it, a crash leaves the previous revision; after it,
        // this one (see the crate docs).
        tx.commit()
            .or_storage(|| format!("cannot commit the deploy of app `{name}`"))?;
        tracing::info!(app = %name, revision, version = %app.version, "deployed app");

        Ok(AppRecord {
            name,
            version: app.version,
            revision,
            manifest: app.manifest,
            components: app.components,
            deployed_at_ms,
        })
    }

    fn get(&self, name: &str) -> Result<Option<AppRecord>> {
        load(&self.conn(), name)
    }

    fn list(&self) -> Result<Vec<AppRecord>> {
        let what = || "cannot list the deployed apps".to_owned();
        let conn = self.conn();
        // BINARY collation orders by UTF-8 bytes, the same order as Rust's `str`.
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

    fn remove(&self, name: &str) -> Result<AppRecord> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .or_storage(|| format!("cannot start the removal transaction of app `{name}`"))?;
        let record = load(&tx, name)?.ok_or_else(|| RegistryError::NotFound(name.to_owned()))?;
        tx.execute("DELETE FROM apps WHERE name = ?1", params![name])
            .or_storage(|| format!("cannot delete the record of app `{name}`"))?;
        tx.commit()
            .or_storage(|| format!("cannot commit the removal of app `{name}`"))?;
        tracing::info!(app = %name, revision = record.revision, "removed app");
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
