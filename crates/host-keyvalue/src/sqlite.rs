//! The embedded, persistent backend: one SQLite file.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::{KvBackend, KvError, Namespace, parse_counter};

/// The embedded default backend: every app's stores in one SQLite file, table
/// `kv(app, store, key, value BLOB, PRIMARY KEY(app, store, key))`.
///
/// The database runs in WAL mode with `synchronous=NORMAL` (a committed write survives
/// a process crash; a power loss may lose the last transactions but never corrupts the
/// file). Calls run on tokio's blocking pool over one connection.
pub struct SqliteKv {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    conn: Mutex<Connection>,
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
        let conn = Connection::open(path).map_err(|e| fail("open", e))?;
        // Another process (e.g. a second server on the same data directory) may hold
        // the write lock briefly.
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(|e| fail("set busy timeout", e))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| fail("enable WAL", e))?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(|e| fail("set synchronous=NORMAL", e))?;
        conn.execute_batch(SCHEMA)
            .map_err(|e| fail("create table kv", e))?;
        Ok(SqliteKv {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                conn: Mutex::new(conn),
            }),
        })
    }

    /// Runs `f` with the connection on the blocking pool.
    async fn with_conn<R, F>(&self, f: F) -> Result<R, KvError>
    where
        R: Send + 'static,
        F: FnOnce(&Inner, &mut Connection) -> Result<R, KvError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let mut conn = inner.conn.lock().unwrap_or_else(PoisonError::into_inner);
            f(&inner, &mut conn)
        })
        .await
        .map_err(|e| self.inner.err("blocking task failed", e))?
    }
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

    async fn set(&self, ns: &Namespace, key: &str, value: &[u8]) -> Result<(), KvError> {
        let (ns, key, value) = (ns.clone(), key.to_owned(), value.to_vec());
        self.with_conn(move |inner, conn| {
            conn.prepare_cached(
                "INSERT INTO kv (app, store, key, value) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (app, store, key) DO UPDATE SET value = excluded.value",
            )
            .and_then(|mut st| st.execute(params![ns.app, ns.store, key, value]))
            .map(drop)
            .map_err(|e| inner.err("set", e))
        })
        .await
    }

    async fn delete(&self, ns: &Namespace, key: &str) -> Result<(), KvError> {
        let (ns, key) = (ns.clone(), key.to_owned());
        self.with_conn(move |inner, conn| {
            conn.prepare_cached("DELETE FROM kv WHERE app = ?1 AND store = ?2 AND key = ?3")
                .and_then(|mut st| st.execute(params![ns.app, ns.store, key]))
                .map(drop)
                .map_err(|e| inner.err("delete", e))
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
        cursor: Option<u64>,
        page: usize,
    ) -> Result<(Vec<String>, Option<u64>), KvError> {
        let ns = ns.clone();
        let page = page.max(1);
        let start = cursor.unwrap_or(0);
        self.with_conn(move |inner, conn| {
            // One row more than the page tells whether another page follows.
            let limit = i64::try_from(page).unwrap_or(i64::MAX - 1) + 1;
            let offset = i64::try_from(start).unwrap_or(i64::MAX);
            let mut keys = conn
                .prepare_cached(
                    "SELECT key FROM kv WHERE app = ?1 AND store = ?2
                     ORDER BY key LIMIT ?3 OFFSET ?4",
                )
                .and_then(|mut st| {
                    st.query_map(params![ns.app, ns.store, limit, offset], |r| r.get(0))?
                        .collect::<Result<Vec<String>, _>>()
                })
                .map_err(|e| inner.err("list keys", e))?;
            let next = if keys.len() > page {
                keys.truncate(page);
                Some(start.saturating_add(page as u64))
            } else {
                None
            };
            Ok((keys, next))
        })
        .await
    }

    async fn increment(&self, ns: &Namespace, key: &str, delta: u64) -> Result<u64, KvError> {
        let (ns, key) = (ns.clone(), key.to_owned());
        self.with_conn(move |inner, conn| {
            // IMMEDIATE takes the write lock up front, so another process cannot change
            // the value between our read and our write.
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
            tx.execute(
                "INSERT INTO kv (app, store, key, value) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (app, store, key) DO UPDATE SET value = excluded.value",
                params![ns.app, ns.store, key, new.to_string().into_bytes()],
            )
            .map_err(|e| inner.err("increment: write", e))?;
            tx.commit().map_err(|e| inner.err("increment: commit", e))?;
            Ok(new)
        })
        .await
    }

    async fn get_many(
        &self,
        ns: &Namespace,
        keys: &[String],
    ) -> Result<Vec<Option<(String, Vec<u8>)>>, KvError> {
        let (ns, keys) = (ns.clone(), keys.to_vec());
        self.with_conn(move |inner, conn| {
            // One read transaction, so the values are a consistent snapshot.
            let tx = conn
                .transaction()
                .map_err(|e| inner.err("get many: begin", e))?;
            let mut out = Vec::with_capacity(keys.len());
            {
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

    async fn set_many(&self, ns: &Namespace, items: &[(String, Vec<u8>)]) -> Result<(), KvError> {
        let (ns, items) = (ns.clone(), items.to_vec());
        self.with_conn(move |inner, conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|e| inner.err("set many: begin", e))?;
            {
                let mut st = tx
                    .prepare_cached(
                        "INSERT INTO kv (app, store, key, value) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (app, store, key) DO UPDATE SET value = excluded.value",
                    )
                    .map_err(|e| inner.err("set many", e))?;
                for (key, value) in &items {
                    st.execute(params![ns.app, ns.store, key, value])
                        .map_err(|e| inner.err("set many", e))?;
                }
            }
            tx.commit().map_err(|e| inner.err("set many: commit", e))
        })
        .await
    }

    async fn delete_many(&self, ns: &Namespace, keys: &[String]) -> Result<(), KvError> {
        let (ns, keys) = (ns.clone(), keys.to_vec());
        self.with_conn(move |inner, conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|e| inner.err("delete many: begin", e))?;
            {
                let mut st = tx
                    .prepare_cached("DELETE FROM kv WHERE app = ?1 AND store = ?2 AND key = ?3")
                    .map_err(|e| inner.err("delete many", e))?;
                for key in &keys {
                    st.execute(params![ns.app, ns.store, key])
                        .map_err(|e| inner.err("delete many", e))?;
                }
            }
            tx.commit().map_err(|e| inner.err("delete many: commit", e))
        })
        .await
    }
}
