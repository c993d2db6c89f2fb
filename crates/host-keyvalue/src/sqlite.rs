//! The embedded, persistent backend: one SQLite file.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use tokio::sync::Semaphore;

use crate::{
    KvBackend, KvError, KvQuota, KvUsage, Namespace, check_quota, entry_bytes, parse_counter,
};

/// How many connections (and so concurrent calls) one [`SqliteKv`] has.
const SQLITE_CONNECTIONS: usize = 4;

/// The embedded default backend: every app's stores in one SQLite file, table
/// `kv(app, store, key, value BLOB, PRIMARY KEY(app, store, key))`, and each app's usage
/// (keys, bytes) in `kv_usage(app, keys, bytes)`, kept in the same transactions.
///
/// The database runs in WAL mode with `synchronous=NORMAL` (a committed write survives
/// a process crash; a power loss may lose the last transactions but never corrupts the
/// file). Calls run on tokio's blocking pool over a pool of [`SQLITE_CONNECTIONS`]
/// connections: reads of different apps run at once (WAL readers never wait), and a
/// long read (a big `get-many`, a listing) holds one connection, not the whole store;
/// writes are serialized by SQLite's own write lock, taken up front (`BEGIN
/// IMMEDIATE`) and waited for up to 5 s.
pub struct SqliteKv {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    /// Idle connections; a call takes one under a permit of `permits`.
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
}

impl Inner {
    fn err(&self, what: &str, e: impl std::fmt::Display) -> KvError {
        KvError::Backend(format!(
            "key-value database {}: {what}: {e}",
            self.path.display()
        ))
    }
}

impl std::fmt::Debug for SqliteKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteKv")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS kv (
    app TEXT NOT NULL,
    store TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (app, store, key)
) WITHOUT ROWID;";

/// The usage table, filled from `kv` when it is created (a database from before quotas).
const USAGE_SCHEMA: &str = "CREATE TABLE kv_usage (
    app TEXT NOT NULL PRIMARY KEY,
    keys INTEGER NOT NULL,
    bytes INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO kv_usage (app, keys, bytes)
    SELECT app, count(*), sum(length(CAST(key AS BLOB)) + length(value)) FROM kv GROUP BY app;";

fn connect(path: &Path) -> Result<Connection, KvError> {
    let fail = |what: &str, e: rusqlite::Error| {
        KvError::Backend(format!(
            "cannot open key-value database {}: {what}: {e}",
            path.display()
        ))
    };
    let conn = Connection::open(path).map_err(|e| fail("open", e))?;
    // Another connection or process may hold the write lock briefly.
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(|e| fail("set busy timeout", e))?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(|e| fail("enable WAL", e))?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(|e| fail("set synchronous=NORMAL", e))?;
    Ok(conn)
}

impl SqliteKv {
    /// Opens (creating if needed) the database file at `path`. The parent directory
    /// must exist. Errors name the path.
    pub fn open(path: &Path) -> Result<SqliteKv, KvError> {
        let fail = |what: &str, e: rusqlite::Error| {
            KvError::Backend(format!(
                "cannot open key-value database {}: {what}: {e}",
                path.display()
            ))
        };
        let mut first = connect(path)?;
        first
            .execute_batch(SCHEMA)
            .map_err(|e| fail("create table kv", e))?;
        let tx = first
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| fail("begin", e))?;
        let has_usage = tx
            .query_row(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'kv_usage'",
                [],
                |_| Ok(()),
            )
            .optional()
            .map_err(|e| fail("read schema", e))?
            .is_some();
        if !has_usage {
            tx.execute_batch(USAGE_SCHEMA)
                .map_err(|e| fail("create table kv_usage", e))?;
        }
        tx.commit().map_err(|e| fail("commit schema", e))?;
        let mut idle = vec![first];
        for _ in 1..SQLITE_CONNECTIONS {
            idle.push(connect(path)?);
        }
        Ok(SqliteKv {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                idle: Mutex::new(idle),
                permits: Arc::new(Semaphore::new(SQLITE_CONNECTIONS)),
            }),
        })
    }

    /// Runs `f` with a connection of the pool on the blocking pool.
    async fn with_conn<R, F>(&self, f: F) -> Result<R, KvError>
    where
        R: Send + 'static,
        F: FnOnce(&Inner, &mut Connection) -> Result<R, KvError> + Send + 'static,
    {
        let permit = Arc::clone(&self.inner.permits)
            .acquire_owned()
            .await
            .map_err(|e| self.inner.err("connection pool", e))?;
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let taken = inner
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop();
            // A connection is only missing if a call panicked with it: open another.
            let mut conn = match taken {
                Some(conn) => conn,
                None => connect(&inner.path)?,
            };
            let result = f(&inner, &mut conn);
            inner
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(conn);
            result
        })
        .await
        .map_err(|e| self.inner.err("blocking task failed", e))?
    }
}

/// Reads the app's usage inside `tx`.
fn read_usage(tx: &Transaction<'_>, app: &str) -> rusqlite::Result<KvUsage> {
    let row: Option<(i64, i64)> = tx
        .prepare_cached("SELECT keys, bytes FROM kv_usage WHERE app = ?1")?
        .query_row(params![app], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let (keys, bytes) = row.unwrap_or((0, 0));
    Ok(KvUsage {
        keys: u64::try_from(keys).unwrap_or(0),
        bytes: u64::try_from(bytes).unwrap_or(0),
    })
}

/// Applies writes (`Some(value)`: set; `None`: delete) in `tx`, keeping the app's usage
/// and refusing growth past `quota`; the caller commits.
fn write(
    inner: &Inner,
    tx: &Transaction<'_>,
    ns: &Namespace,
    ops: &[(&str, Option<&[u8]>)],
    quota: &KvQuota,
) -> Result<(), KvError> {
    let e = |what: &'static str| move |err: rusqlite::Error| inner.err(what, err);
    let mut keys_delta: i64 = 0;
    let mut bytes_delta: i64 = 0;
    {
        let mut size = tx
            .prepare_cached(
                "SELECT length(value) FROM kv WHERE app = ?1 AND store = ?2 AND key = ?3",
            )
            .map_err(e("write"))?;
        let mut set = tx
            .prepare_cached(
                "INSERT INTO kv (app, store, key, value) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (app, store, key) DO UPDATE SET value = excluded.value",
            )
            .map_err(e("write"))?;
        let mut delete = tx
            .prepare_cached("DELETE FROM kv WHERE app = ?1 AND store = ?2 AND key = ?3")
            .map_err(e("write"))?;
        let signed = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        for &(key, value) in ops {
            let old: Option<i64> = size
                .query_row(params![ns.app, ns.store, key], |r| r.get(0))
                .optional()
                .map_err(e("write: read size"))?;
            if let Some(old) = old {
                keys_delta -= 1;
                let old = usize::try_from(old).unwrap_or(0);
                bytes_delta = bytes_delta.saturating_sub(signed(entry_bytes(key, old)));
            }
            match value {
                Some(value) => {
                    keys_delta += 1;
                    bytes_delta = bytes_delta.saturating_add(signed(entry_bytes(key, value.len())));
                    set.execute(params![ns.app, ns.store, key, value])
                        .map_err(e("write"))?;
                }
                None => {
                    delete
                        .execute(params![ns.app, ns.store, key])
                        .map_err(e("delete"))?;
                }
            }
        }
    }
    if keys_delta == 0 && bytes_delta == 0 {
        return Ok(());
    }
    let used = read_usage(tx, &ns.app).map_err(e("read usage"))?;
    let next = check_quota(quota, used, keys_delta, bytes_delta)?;
    let as_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    tx.prepare_cached(
        "INSERT INTO kv_usage (app, keys, bytes) VALUES (?1, ?2, ?3)
         ON CONFLICT (app) DO UPDATE SET keys = excluded.keys, bytes = excluded.bytes",
    )
    .and_then(|mut st| st.execute(params![ns.app, as_i64(next.keys), as_i64(next.bytes)]))
    .map_err(e("write usage"))?;
    Ok(())
}

/// Runs `ops` in one IMMEDIATE transaction (the write lock taken up front).
fn write_tx(
    inner: &Inner,
    conn: &mut Connection,
    ns: &Namespace,
    ops: &[(&str, Option<&[u8]>)],
    quota: &KvQuota,
) -> Result<(), KvError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| inner.err("begin", e))?;
    write(inner, &tx, ns, ops, quota)?;
    tx.commit().map_err(|e| inner.err("commit", e))
}

#[async_trait::async_trait]
impl KvBackend for SqliteKv {
    async fn get(&self, ns: &Namespace, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        let (ns, key) = (ns.clone(), key.to_owned());
        self.with_conn(move |inner, conn| {
            conn.prepare_cached("SELECT value FROM kv WHERE app = ?1 AND store = ?2 AND key = ?3")
                .and_then(|mut st| {
                    st.query_row(params![ns.app, ns.store, key], |r| r.get(0))
                        .optional()
                })
                .map_err(|e| inner.err("get", e))
        })
        .await
    }

    async fn set(
        &self,
        ns: &Namespace,
        key: &str,
        value: &[u8],
        quota: &KvQuota,
    ) -> Result<(), KvError> {
        let (ns, key, value, quota) = (ns.clone(), key.to_owned(), value.to_vec(), *quota);
        self.with_conn(move |inner, conn| {
            write_tx(inner, conn, &ns, &[(&key, Some(&value))], &quota)
        })
        .await
    }

    async fn delete(&self, ns: &Namespace, key: &str) -> Result<(), KvError> {
        let (ns, key) = (ns.clone(), key.to_owned());
        self.with_conn(move |inner, conn| {
            write_tx(inner, conn, &ns, &[(&key, None)], &KvQuota::UNLIMITED)
        })
        .await
    }

    async fn exists(&self, ns: &Namespace, key: &str) -> Result<bool, KvError> {
        let (ns, key) = (ns.clone(), key.to_owned());
        self.with_conn(move |inner, conn| {
            conn.prepare_cached("SELECT 1 FROM kv WHERE app = ?1 AND store = ?2 AND key = ?3")
                .and_then(|mut st| st.exists(params![ns.app, ns.store, key]))
                .map_err(|e| inner.err("exists", e))
        })
        .await
    }

    async fn list_keys(
        &self,
        ns: &Namespace,
        after: Option<&str>,
        page: usize,
    ) -> Result<(Vec<String>, Option<String>), KvError> {
        let (ns, after) = (ns.clone(), after.map(str::to_owned));
        let page = page.max(1);
        self.with_conn(move |inner, conn| {
            // One row more than the page tells whether another page follows.
            let limit = i64::try_from(page).unwrap_or(i64::MAX - 1) + 1;
            let rows = match &after {
                None => conn
                    .prepare_cached(
                        "SELECT key FROM kv WHERE app = ?1 AND store = ?2
                         ORDER BY key LIMIT ?3",
                    )
                    .and_then(|mut st| {
                        st.query_map(params![ns.app, ns.store, limit], |r| r.get(0))?
                            .collect::<Result<Vec<String>, _>>()
                    }),
                Some(after) => conn
                    .prepare_cached(
                        "SELECT key FROM kv WHERE app = ?1 AND store = ?2 AND key > ?3
                         ORDER BY key LIMIT ?4",
                    )
                    .and_then(|mut st| {
                        st.query_map(params![ns.app, ns.store, after, limit], |r| r.get(0))?
                            .collect::<Result<Vec<String>, _>>()
                    }),
            };
            let mut keys = rows.map_err(|e| inner.err("list keys", e))?;
            let next = if keys.len() > page {
                keys.truncate(page);
                keys.last().cloned()
            } else {
                None
            };
            Ok((keys, next))
        })
        .await
    }

    async fn increment(
        &self,
        ns: &Namespace,
        key: &str,
        delta: u64,
        quota: &KvQuota,
    ) -> Result<u64, KvError> {
        let (ns, key, quota) = (ns.clone(), key.to_owned(), *quota);
        self.with_conn(move |inner, conn| {
            // IMMEDIATE takes the write lock up front, so another connection cannot
            // change the value between our read and our write.
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|e| inner.err("increment: begin", e))?;
            let current: Option<Vec<u8>> = tx
                .query_row(
                    "SELECT value FROM kv WHERE app = ?1 AND store = ?2 AND key = ?3",
                    params![ns.app, ns.store, key],
                    |r| r.get(0),
                )
                .optional()
                .map_err(|e| inner.err("increment: read", e))?;
            let current = match current {
                None => 0,
                Some(bytes) => {
                    parse_counter(&bytes).ok_or_else(|| KvError::NotANumber { key: key.clone() })?
                }
            };
            let new = current
                .checked_add(delta)
                .ok_or_else(|| KvError::Overflow {
                    key: key.clone(),
                    delta,
                })?;
            let text = new.to_string().into_bytes();
            write(inner, &tx, &ns, &[(&key, Some(&text))], &quota)?;
            tx.commit().map_err(|e| inner.err("increment: commit", e))?;
            Ok(new)
        })
        .await
    }

    async fn get_many(
        &self,
        ns: &Namespace,
        keys: &[String],
        max_bytes: u64,
    ) -> Result<Vec<Option<(String, Vec<u8>)>>, KvError> {
        let (ns, keys) = (ns.clone(), keys.to_vec());
        self.with_conn(move |inner, conn| {
            // One read transaction, so the sizes and values are a consistent snapshot.
            let tx = conn
                .transaction()
                .map_err(|e| inner.err("get many: begin", e))?;
            let mut out = Vec::with_capacity(keys.len());
            {
                // The sizes first: nothing is read when the total is over the cap.
                let mut size = tx
                    .prepare_cached(
                        "SELECT length(value) FROM kv WHERE app = ?1 AND store = ?2 AND key = ?3",
                    )
                    .map_err(|e| inner.err("get many", e))?;
                let mut total: u64 = 0;
                for key in &keys {
                    let len: Option<i64> = size
                        .query_row(params![ns.app, ns.store, key], |r| r.get(0))
                        .optional()
                        .map_err(|e| inner.err("get many", e))?;
                    let len = len.map_or(0, |n| u64::try_from(n).unwrap_or(0));
                    total = total.saturating_add(len);
                }
                if total > max_bytes {
                    return Err(KvError::BatchTooLarge {
                        limit: max_bytes,
                        total,
                    });
                }
                let mut st = tx
                    .prepare_cached(
                        "SELECT value FROM kv WHERE app = ?1 AND store = ?2 AND key = ?3",
                    )
                    .map_err(|e| inner.err("get many", e))?;
                for key in keys {
                    let value: Option<Vec<u8>> = st
                        .query_row(params![ns.app, ns.store, key], |r| r.get(0))
                        .optional()
                        .map_err(|e| inner.err("get many", e))?;
                    out.push(value.map(|v| (key, v)));
                }
            }
            tx.commit().map_err(|e| inner.err("get many: end", e))?;
            Ok(out)
        })
        .await
    }

    async fn set_many(
        &self,
        ns: &Namespace,
        items: &[(String, Vec<u8>)],
        quota: &KvQuota,
    ) -> Result<(), KvError> {
        let (ns, items, quota) = (ns.clone(), items.to_vec(), *quota);
        self.with_conn(move |inner, conn| {
            let ops: Vec<(&str, Option<&[u8]>)> = items
                .iter()
                .map(|(k, v)| (k.as_str(), Some(v.as_slice())))
                .collect();
            write_tx(inner, conn, &ns, &ops, &quota)
        })
        .await
    }

    async fn delete_many(&self, ns: &Namespace, keys: &[String]) -> Result<(), KvError> {
        let (ns, keys) = (ns.clone(), keys.to_vec());
        self.with_conn(move |inner, conn| {
            let ops: Vec<(&str, Option<&[u8]>)> = keys.iter().map(|k| (k.as_str(), None)).collect();
            write_tx(inner, conn, &ns, &ops, &KvQuota::UNLIMITED)
        })
        .await
    }

    async fn usage(&self, app: &str) -> Result<KvUsage, KvError> {
        let app = app.to_owned();
        self.with_conn(move |inner, conn| {
            let tx = conn
                .transaction()
                .map_err(|e| inner.err("usage: begin", e))?;
            read_usage(&tx, &app).map_err(|e| inner.err("usage", e))
        })
        .await
    }

    async fn purge(&self, app: &str) -> Result<u64, KvError> {
        let app = app.to_owned();
        self.with_conn(move |inner, conn| {
            let tx = conn
                .transaction()
                .map_err(|e| inner.err("purge: begin", e))?;
            let keys = tx
                .execute("DELETE FROM kv WHERE app = ?1", [&app])
                .map_err(|e| inner.err("purge", e))?;
            tx.execute("DELETE FROM kv_usage WHERE app = ?1", [&app])
                .map_err(|e| inner.err("purge: usage", e))?;
            tx.commit().map_err(|e| inner.err("purge: commit", e))?;
            Ok(u64::try_from(keys).unwrap_or(u64::MAX))
        })
        .await
    }
}
