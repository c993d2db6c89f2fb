//! `wasi:keyvalue@0.2.0-draft` for Wharf guests.
//!
//! What this crate owns:
//! - the host side of the standard `store`, `atomics` and `batch` interfaces (not
//!   `watcher`), linked with [`add_to_linker`]: a guest opens *named stores*; only the
//!   stores granted to its component ([`KvCtx::new`]) can be opened, and every store is
//!   isolated per app ([`Namespace`]); key, value and batch sizes are bounded by
//!   [`KvLimits`]; backend failures reach the guest as `error::other`, never as a trap;
//! - the [`KvBackend`] trait the host layer stores data through, with two
//!   implementations:
//!   - [`SqliteKv`]: the embedded, persistent default (one SQLite file per node);
//!   - [`RedisKv`]: a shared Redis server, for apps served by many nodes.

#![deny(missing_docs)]

mod host;
mod redis_kv;
mod sqlite;

pub use host::{KvCtx, KvView, add_to_linker};
pub use redis_kv::RedisKv;
pub use sqlite::SqliteKv;

/// Which app and store a key belongs to; keys of different apps or stores never meet.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Namespace {
    /// The app that owns the store.
    pub app: String,
    /// The store's name, as the guest passed it to `store.open`.
    pub store: String,
}

impl Namespace {
    /// A namespace for `store` of `app`.
    pub fn new(app: impl Into<String>, store: impl Into<String>) -> Namespace {
        Namespace {
            app: app.into(),
            store: store.into(),
        }
    }
}

/// A key-value backend failure.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    /// The backend failed (I/O, connection, database error); the message says which
    /// backend and why.
    #[error("{0}")]
    Backend(String),
    /// `increment` found a value that is not a `u64` written in decimal.
    #[error("cannot increment key {key:?}: its value is not an unsigned 64-bit integer in decimal")]
    NotANumber {
        /// The key whose value is not a number.
        key: String,
    },
    /// `increment` would overflow a `u64`.
    #[error(
        "cannot increment key {key:?} by {delta}: the result would overflow an unsigned 64-bit integer"
    )]
    Overflow {
        /// The key being incremented.
        key: String,
        /// The requested increment.
        delta: u64,
    },
}

/// Where guests' keys and values are stored.
///
/// Every operation is scoped to a [`Namespace`]; implementations must keep namespaces
/// apart whatever characters the app, store and key names contain. Keys are compared
/// (and listed) in lexicographic byte order of their UTF-8 encoding.
#[async_trait::async_trait]
pub trait KvBackend: Send + Sync + 'static {
    /// The value of `key`, or `None` when it does not exist.
    async fn get(&self, ns: &Namespace, key: &str) -> Result<Option<Vec<u8>>, KvError>;
    /// Sets `key` to `value`, replacing any previous value.
    async fn set(&self, ns: &Namespace, key: &str, value: &[u8]) -> Result<(), KvError>;
    /// Deletes `key`; deleting a missing key is not an error.
    async fn delete(&self, ns: &Namespace, key: &str) -> Result<(), KvError>;
    /// Whether `key` exists.
    async fn exists(&self, ns: &Namespace, key: &str) -> Result<bool, KvError>;
    /// Keys in lexicographic order starting after `cursor` (an opaque position the
    /// backend returned), at most `page` of them; returns the keys and the next cursor
    /// (None when done).
    ///
    /// Both backends in this crate use the index into the sorted listing as the cursor,
    /// so keys added or removed while a listing is paged through may make it skip or
    /// repeat keys (the draft interface promises no snapshot). A `page` of 0 is
    /// treated as 1.
    async fn list_keys(
        &self,
        ns: &Namespace,
        cursor: Option<u64>,
        page: usize,
    ) -> Result<(Vec<String>, Option<u64>), KvError>;
    /// Atomically adds `delta` to the key's value read as a `u64` in decimal ASCII text
    /// (like Redis `INCRBY`, so that guests can read it with `get`); a missing key
    /// counts as 0; a value that is not a `u64` in decimal is
    /// [`KvError::NotANumber`] naming the key, and overflow is [`KvError::Overflow`].
    /// Returns the new value, which is also what is stored (canonical decimal).
    async fn increment(&self, ns: &Namespace, key: &str, delta: u64) -> Result<u64, KvError>;
    /// The values of `keys`, in order: `Some((key, value))` for each key that exists,
    /// `None` for each that does not.
    async fn get_many(
        &self,
        ns: &Namespace,
        keys: &[String],
    ) -> Result<Vec<Option<(String, Vec<u8>)>>, KvError>;
    /// Sets every key to its value, atomically; when a key appears twice the last value
    /// wins.
    async fn set_many(&self, ns: &Namespace, items: &[(String, Vec<u8>)]) -> Result<(), KvError>;
    /// Deletes every key, atomically; missing keys are ignored.
    async fn delete_many(&self, ns: &Namespace, keys: &[String]) -> Result<(), KvError>;
}

/// Size limits the host layer enforces on guests' requests.
#[derive(Clone, Debug)]
pub struct KvLimits {
    /// The longest key in bytes (UTF-8). Default 256.
    pub max_key_bytes: usize,
    /// The largest value in bytes. Default 1 MiB.
    pub max_value_bytes: usize,
    /// The most keys in one batch call (`get-many`, `set-many`, `delete-many`).
    /// Default 1000.
    pub max_batch: usize,
}

impl Default for KvLimits {
    fn default() -> KvLimits {
        KvLimits {
            max_key_bytes: 256,
            max_value_bytes: 1024 * 1024,
            max_batch: 1000,
        }
    }
}

/// Parses a stored counter the way both backends must: one or more ASCII digits
/// (leading zeros allowed) whose value fits a `u64`.
pub(crate) fn parse_counter(value: &[u8]) -> Option<u64> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_plain_decimal_u64() {
        assert_eq!(parse_counter(b"0"), Some(0));
        assert_eq!(parse_counter(b"007"), Some(7));
        assert_eq!(parse_counter(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_counter(b"18446744073709551616"), None);
        assert_eq!(parse_counter(b""), None);
        assert_eq!(parse_counter(b"+7"), None);
        assert_eq!(parse_counter(b"-7"), None);
        assert_eq!(parse_counter(b" 7"), None);
        assert_eq!(parse_counter(b"abc"), None);
    }
}
