//! `wasi:keyvalue@0.2.0-draft` for Wharf guests.
//!
//! What this crate owns:
//! - the host side of the standard `store`, `atomics` and `batch` interfaces (not
//!   `watcher`), linked with [`add_to_linker`]: a guest opens *named stores*; only the
//!   stores granted to its component ([`KvCtx::new`]) can be opened, and every store is
//!   isolated per app ([`Namespace`]); key, value and batch sizes, the bytes one
//!   `get-many` returns and each app's keys and bytes ([`KvQuota`]) are bounded by
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
pub use redis_kv::{RedisKv, redact_url};
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

/// An app's quota: the most keys and bytes (keys plus values, in bytes) it may hold
/// across all its stores. A write that would take the app over either is refused
/// ([`KvError::QuotaExceeded`]) and changes nothing; writes that do not grow the usage
/// (overwriting with a smaller value, deleting) always pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvQuota {
    /// The most keys. Default 100,000.
    pub max_keys: u64,
    /// The most bytes of keys and values. Default 256 MiB.
    pub max_bytes: u64,
}

impl KvQuota {
    /// No quota at all.
    pub const UNLIMITED: KvQuota = KvQuota {
        max_keys: u64::MAX,
        max_bytes: u64::MAX,
    };
}

impl Default for KvQuota {
    fn default() -> KvQuota {
        KvQuota {
            max_keys: 100_000,
            max_bytes: 256 * 1024 * 1024,
        }
    }
}

/// What an app holds: the count its quota is checked against.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KvUsage {
    /// Keys, in all its stores.
    pub keys: u64,
    /// Bytes of keys and values.
    pub bytes: u64,
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
    /// The write would take the app over its quota (`what` is "keys" or "bytes").
    #[error(
        "the app's key-value quota of {limit} {what} would be exceeded (it holds {used}); delete keys or ask the operator for a larger quota"
    )]
    QuotaExceeded {
        /// "keys" or "bytes".
        what: &'static str,
        /// The quota.
        limit: u64,
        /// What the app holds now.
        used: u64,
    },
    /// A `get-many` whose values add up to more than the cap.
    #[error(
        "get-many: the values add up to {total} bytes, over the cap of {limit} bytes per batch call; ask for fewer keys at a time"
    )]
    BatchTooLarge {
        /// The cap.
        limit: u64,
        /// The sum of the values' sizes.
        total: u64,
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
    /// Sets `key` to `value`, replacing any previous value, unless that takes the app
    /// over `quota`.
    async fn set(
        &self,
        ns: &Namespace,
        key: &str,
        value: &[u8],
        quota: &KvQuota,
    ) -> Result<(), KvError>;
    /// Deletes `key`; deleting a missing key is not an error.
    async fn delete(&self, ns: &Namespace, key: &str) -> Result<(), KvError>;
    /// Whether `key` exists.
    async fn exists(&self, ns: &Namespace, key: &str) -> Result<bool, KvError>;
    /// Keys in lexicographic order strictly after `after` (from the first key when
    /// `None`), at most `page` of them; returns the keys and, when more follow, the
    /// cursor for the next page (the last key returned).
    ///
    /// Keyset pagination: a page costs O(log N + page) whatever its position, and keys
    /// added or removed while a listing is paged through never make it skip or repeat
    /// the keys that stay (the draft interface promises no snapshot). A `page` of 0 is
    /// treated as 1.
    async fn list_keys(
        &self,
        ns: &Namespace,
        after: Option<&str>,
        page: usize,
    ) -> Result<(Vec<String>, Option<String>), KvError>;
    /// Atomically adds `delta` to the key's value read as a `u64` in decimal ASCII text
    /// (like Redis `INCRBY`, so that guests can read it with `get`); a missing key
    /// counts as 0; a value that is not a `u64` in decimal is
    /// [`KvError::NotANumber`] naming the key, and overflow is [`KvError::Overflow`].
    /// Returns the new value, which is also what is stored (canonical decimal). Refused
    /// when it takes the app over `quota`.
    async fn increment(
        &self,
        ns: &Namespace,
        key: &str,
        delta: u64,
        quota: &KvQuota,
    ) -> Result<u64, KvError>;
    /// The values of `keys`, in order: `Some((key, value))` for each key that exists,
    /// `None` for each that does not. When the values (a key repeated counts each time)
    /// add up to more than `max_bytes`, fails with [`KvError::BatchTooLarge`] before
    /// reading them.
    async fn get_many(
        &self,
        ns: &Namespace,
        keys: &[String],
        max_bytes: u64,
    ) -> Result<Vec<Option<(String, Vec<u8>)>>, KvError>;
    /// Sets every key to its value, atomically; when a key appears twice the last value
    /// wins. Refused, changing nothing, when it takes the app over `quota`.
    async fn set_many(
        &self,
        ns: &Namespace,
        items: &[(String, Vec<u8>)],
        quota: &KvQuota,
    ) -> Result<(), KvError>;
    /// Deletes every key, atomically; missing keys are ignored.
    async fn delete_many(&self, ns: &Namespace, keys: &[String]) -> Result<(), KvError>;
    /// What `app` holds in all its stores.
    async fn usage(&self, app: &str) -> Result<KvUsage, KvError>;
    /// Deletes everything `app` holds, in all its stores, and its usage count; returns
    /// how many keys were deleted. Used by `wharf apps rm --purge`.
    async fn purge(&self, app: &str) -> Result<u64, KvError>;
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
    /// The most bytes of values one `get-many` returns (a key asked for twice counts
    /// twice). Default 16 MiB.
    pub max_batch_bytes: u64,
    /// The app's quota, over all its stores. Default [`KvQuota::default`].
    pub quota: KvQuota,
    /// The most `list-keys` cursors one store keeps (the oldest is forgotten first).
    /// Default 64.
    pub max_cursors: usize,
}

impl Default for KvLimits {
    fn default() -> KvLimits {
        KvLimits {
            max_key_bytes: 256,
            max_value_bytes: 1024 * 1024,
            max_batch: 1000,
            max_batch_bytes: 16 * 1024 * 1024,
            quota: KvQuota::default(),
            max_cursors: 64,
        }
    }
}

/// The size a key and its value count for against a quota.
pub(crate) fn entry_bytes(key: &str, value_len: usize) -> u64 {
    u64::try_from(key.len())
        .unwrap_or(u64::MAX)
        .saturating_add(u64::try_from(value_len).unwrap_or(u64::MAX))
}

/// Checks a write's change in usage against `quota`: growth past a quota is refused.
pub(crate) fn check_quota(
    quota: &KvQuota,
    used: KvUsage,
    keys_delta: i64,
    bytes_delta: i64,
) -> Result<KvUsage, KvError> {
    let apply = |used: u64, delta: i64| {
        if delta >= 0 {
            used.saturating_add(delta.unsigned_abs())
        } else {
            used.saturating_sub(delta.unsigned_abs())
        }
    };
    let next = KvUsage {
        keys: apply(used.keys, keys_delta),
        bytes: apply(used.bytes, bytes_delta),
    };
    if keys_delta > 0 && next.keys > quota.max_keys {
        return Err(KvError::QuotaExceeded {
            what: "keys",
            limit: quota.max_keys,
            used: used.keys,
        });
    }
    if bytes_delta > 0 && next.bytes > quota.max_bytes {
        return Err(KvError::QuotaExceeded {
            what: "bytes",
            limit: quota.max_bytes,
            used: used.bytes,
        });
    }
    Ok(next)
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
