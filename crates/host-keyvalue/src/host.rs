//! The `wasi:keyvalue` host layer: `store`, `atomics` and `batch` over a [`KvBackend`].

use std::collections::VecDeque;
use std::sync::Arc;

use wharf_engine::wasmtime;
use wharf_engine::wasmtime::component::{HasData, Linker, Resource, ResourceTable};

use crate::{KvBackend, KvError, KvLimits, Namespace};

mod generated {
    wharf_engine::wasmtime::component::bindgen!({
        path: "../../wit/deps/keyvalue",
        world: "wasi:keyvalue/imports",
        imports: { default: async | trappable },
        with: {
            "wasi:keyvalue/store.bucket": crate::host::Bucket,
        },
        trappable_error_type: {
            "wasi:keyvalue/store.error" => crate::host::Error,
        },
        wasmtime_crate: wharf_engine::wasmtime,
    });
}

use generated::wasi::keyvalue::{atomics, batch, store};

/// The page size of `bucket.list-keys`.
const LIST_PAGE: usize = 100;

/// A `store.error` on its way to the guest, or a trap.
pub enum Error {
    /// `error::access-denied`.
    AccessDenied,
    /// `error::other(message)`.
    Other(String),
    /// Not a store error: the host itself failed (e.g. a bad resource handle); traps.
    Trap(wasmtime::Error),
}

impl From<KvError> for Error {
    fn from(e: KvError) -> Error {
        Error::Other(e.to_string())
    }
}

impl From<wasmtime::component::ResourceTableError> for Error {
    fn from(e: wasmtime::component::ResourceTableError) -> Error {
        Error::Trap(e.into())
    }
}

/// An open bucket: the namespace the guest's `store.open` resolved to.
pub struct Bucket {
    ns: Namespace,
}

/// Per-store (per-request) state: which app, which stores it may open, the backend.
pub struct KvCtx {
    backend: Option<Arc<dyn KvBackend>>,
    app: String,
    granted: Vec<String>,
    limits: KvLimits,
    /// `list-keys` cursors handed out: token → (namespace, last key returned). The
    /// interface's cursor is a `u64`, and keyset pagination needs a key, so the token
    /// stands for it; tokens are valid in the store (instance) that issued them.
    cursors: VecDeque<(u64, Namespace, String)>,
    next_cursor: u64,
}

impl std::fmt::Debug for KvCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvCtx")
            .field("app", &self.app)
            .field("granted", &self.granted)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl KvCtx {
    /// State for one guest instance of `app`, which may open exactly the stores named in
    /// `granted_stores`, stored in `backend`.
    pub fn new(
        backend: Arc<dyn KvBackend>,
        app: &str,
        granted_stores: &[String],
        limits: KvLimits,
    ) -> KvCtx {
        KvCtx {
            backend: Some(backend),
            app: app.to_owned(),
            granted: granted_stores.to_vec(),
            limits,
            cursors: VecDeque::new(),
            next_cursor: 1,
        }
    }

    /// State for a guest granted no store at all (and a host with no backend): every
    /// `store.open` is `access-denied`.
    pub fn none(app: &str) -> KvCtx {
        KvCtx {
            backend: None,
            app: app.to_owned(),
            granted: Vec::new(),
            limits: KvLimits::default(),
            cursors: VecDeque::new(),
            next_cursor: 1,
        }
    }

    fn check_key(&self, key: &str) -> Result<(), Error> {
        if key.len() > self.limits.max_key_bytes {
            return Err(Error::Other(format!(
                "key is {} bytes; the limit is {}",
                key.len(),
                self.limits.max_key_bytes
            )));
        }
        Ok(())
    }

    fn check_value(&self, value: &[u8]) -> Result<(), Error> {
        if value.len() > self.limits.max_value_bytes {
            return Err(Error::Other(format!(
                "value is {} bytes; the limit is {}",
                value.len(),
                self.limits.max_value_bytes
            )));
        }
        Ok(())
    }

    /// The key a `list-keys` cursor of `ns` stands for.
    fn cursor_key(&self, ns: &Namespace, token: u64) -> Result<String, Error> {
        self.cursors
            .iter()
            .find(|(t, n, _)| *t == token && n == ns)
            .map(|(_, _, key)| key.clone())
            .ok_or_else(|| {
                Error::Other(format!(
                    "list-keys: unknown cursor {token}; a cursor is valid only in the instance that received it, for the same bucket, and only the last {} are kept",
                    self.limits.max_cursors
                ))
            })
    }

    /// A token for the cursor `(ns, last)`.
    fn new_cursor(&mut self, ns: Namespace, last: String) -> u64 {
        let token = self.next_cursor;
        self.next_cursor = self.next_cursor.wrapping_add(1).max(1);
        while self.cursors.len() >= self.limits.max_cursors.max(1) {
            self.cursors.pop_front();
        }
        self.cursors.push_back((token, ns, last));
        token
    }

    fn check_batch(&self, len: usize) -> Result<(), Error> {
        if len > self.limits.max_batch {
            return Err(Error::Other(format!(
                "batch has {len} keys; the limit is {}",
                self.limits.max_batch
            )));
        }
        Ok(())
    }
}

/// What [`add_to_linker`]'s getter returns: the ctx and the store's resource table.
pub struct KvView<'a> {
    /// The guest's key-value state.
    pub ctx: &'a mut KvCtx,
    /// The store's resource table, which holds the guest's open buckets.
    pub table: &'a mut ResourceTable,
}

impl KvView<'_> {
    /// The backend and namespace of an open bucket.
    fn bucket(&self, bucket: &Resource<Bucket>) -> Result<(Arc<dyn KvBackend>, Namespace), Error> {
        let ns = self.table.get(bucket)?.ns.clone();
        // A bucket only exists after `open` found a granted store, and stores are only
        // granted with a backend; the error covers the impossible case without a panic.
        let backend = self
            .ctx
            .backend
            .clone()
            .ok_or_else(|| Error::Other("no key-value backend is configured".into()))?;
        Ok((backend, ns))
    }
}

/// Adds `wasi:keyvalue/store`, `atomics` and `batch` (`@0.2.0-draft`) to `linker`;
/// `get` finds the [`KvView`] in the store's data.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> KvView<'_>,
) -> wasmtime::Result<()> {
    store::add_to_linker::<_, HasKv>(linker, get)?;
    atomics::add_to_linker::<_, HasKv>(linker, get)?;
    batch::add_to_linker::<_, HasKv>(linker, get)?;
    Ok(())
}

/// The [`HasData`] marker whose data is a [`KvView`].
struct HasKv;

impl HasData for HasKv {
    type Data<'a> = KvView<'a>;
}

/// A guest can cause the access-denied line at will: at most 10 a second per app.
static KV_LOG_RATE: std::sync::LazyLock<wharf_host_logging::LogRate> =
    std::sync::LazyLock::new(|| wharf_host_logging::LogRate::new(10));

impl store::Host for KvView<'_> {
    async fn open(&mut self, identifier: String) -> Result<Resource<Bucket>, Error> {
        if !self.ctx.granted.contains(&identifier) {
            if let Some(suppressed) = KV_LOG_RATE.allow(&self.ctx.app) {
                tracing::info!(
                    app = %self.ctx.app,
                    store = ?identifier,
                    suppressed,
                    "key-value store not granted to this component; access denied"
                );
            }
            return Err(Error::AccessDenied);
        }
        let ns = Namespace {
            app: self.ctx.app.clone(),
            store: identifier,
        };
        Ok(self.table.push(Bucket { ns })?)
    }

    fn convert_error(&mut self, err: Error) -> wasmtime::Result<store::Error> {
        match err {
            Error::AccessDenied => Ok(store::Error::AccessDenied),
            Error::Other(message) => Ok(store::Error::Other(message)),
            Error::Trap(e) => Err(e),
        }
    }
}

impl store::HostBucket for KvView<'_> {
    async fn get(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> Result<Option<Vec<u8>>, Error> {
        self.ctx.check_key(&key)?;
        let (backend, ns) = self.bucket(&bucket)?;
        Ok(backend.get(&ns, &key).await?)
    }

    async fn set(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
    ) -> Result<(), Error> {
        self.ctx.check_key(&key)?;
        self.ctx.check_value(&value)?;
        let (backend, ns) = self.bucket(&bucket)?;
        Ok(backend
            .set(&ns, &key, &value, &self.ctx.limits.quota)
            .await?)
    }

    async fn delete(&mut self, bucket: Resource<Bucket>, key: String) -> Result<(), Error> {
        self.ctx.check_key(&key)?;
        let (backend, ns) = self.bucket(&bucket)?;
        Ok(backend.delete(&ns, &key).await?)
    }

    async fn exists(&mut self, bucket: Resource<Bucket>, key: String) -> Result<bool, Error> {
        self.ctx.check_key(&key)?;
        let (backend, ns) = self.bucket(&bucket)?;
        Ok(backend.exists(&ns, &key).await?)
    }

    async fn list_keys(
        &mut self,
        bucket: Resource<Bucket>,
        cursor: Option<u64>,
    ) -> Result<store::KeyResponse, Error> {
        let (backend, ns) = self.bucket(&bucket)?;
        let after = match cursor {
            Some(token) => Some(self.ctx.cursor_key(&ns, token)?),
            None => None,
        };
        let (keys, next) = backend.list_keys(&ns, after.as_deref(), LIST_PAGE).await?;
        let cursor = next.map(|last| self.ctx.new_cursor(ns, last));
        Ok(store::KeyResponse { keys, cursor })
    }

    async fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl atomics::Host for KvView<'_> {
    async fn increment(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        delta: u64,
    ) -> Result<u64, Error> {
        self.ctx.check_key(&key)?;
        let (backend, ns) = self.bucket(&bucket)?;
        Ok(backend
            .increment(&ns, &key, delta, &self.ctx.limits.quota)
            .await?)
    }
}

impl batch::Host for KvView<'_> {
    async fn get_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> Result<Vec<Option<(String, Vec<u8>)>>, Error> {
        self.ctx.check_batch(keys.len())?;
        for key in &keys {
            self.ctx.check_key(key)?;
        }
        let (backend, ns) = self.bucket(&bucket)?;
        Ok(backend
            .get_many(&ns, &keys, self.ctx.limits.max_batch_bytes)
            .await?)
    }

    async fn set_many(
        &mut self,
        bucket: Resource<Bucket>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> Result<(), Error> {
        self.ctx.check_batch(key_values.len())?;
        for (key, value) in &key_values {
            self.ctx.check_key(key)?;
            self.ctx.check_value(value)?;
        }
        let (backend, ns) = self.bucket(&bucket)?;
        Ok(backend
            .set_many(&ns, &key_values, &self.ctx.limits.quota)
            .await?)
    }

    async fn delete_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> Result<(), Error> {
        self.ctx.check_batch(keys.len())?;
        for key in &keys {
            self.ctx.check_key(key)?;
        }
        let (backend, ns) = self.bucket(&bucket)?;
        Ok(backend.delete_many(&ns, &keys).await?)
    }
}

#[cfg(test)]
#[path = "host_tests.rs"]
mod tests;
