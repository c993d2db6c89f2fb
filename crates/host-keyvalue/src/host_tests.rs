//! The host layer called directly through the generated traits (no guest).

use std::sync::Arc;

use super::*;
use crate::KvQuota;
use atomics::Host as _;
use batch::Host as _;
use store::{Host as _, HostBucket as _};

/// A backend whose every call fails, to check that failures reach the guest as
/// `error::other` and never trap.
struct BrokenBackend;

fn broken<T>() -> Result<T, KvError> {
    Err(KvError::Backend("disk on fire".into()))
}

#[async_trait::async_trait]
impl KvBackend for BrokenBackend {
    async fn get(&self, _: &Namespace, _: &str) -> Result<Option<Vec<u8>>, KvError> {
        broken()
    }
    async fn set(&self, _: &Namespace, _: &str, _: &[u8], _: &KvQuota) -> Result<(), KvError> {
        broken()
    }
    async fn delete(&self, _: &Namespace, _: &str) -> Result<(), KvError> {
        broken()
    }
    async fn exists(&self, _: &Namespace, _: &str) -> Result<bool, KvError> {
        broken()
    }
    async fn list_keys(
        &self,
        _: &Namespace,
        _: Option<&str>,
        _: usize,
    ) -> Result<(Vec<String>, Option<String>), KvError> {
        broken()
    }
    async fn increment(&self, _: &Namespace, _: &str, _: u64, _: &KvQuota) -> Result<u64, KvError> {
        broken()
    }
    async fn get_many(
        &self,
        _: &Namespace,
        _: &[String],
        _: u64,
    ) -> Result<Vec<Option<(String, Vec<u8>)>>, KvError> {
        broken()
    }
    async fn set_many(
        &self,
        _: &Namespace,
        _: &[(String, Vec<u8>)],
        _: &KvQuota,
    ) -> Result<(), KvError> {
        broken()
    }
    async fn delete_many(&self, _: &Namespace, _: &[String]) -> Result<(), KvError> {
        broken()
    }
    async fn usage(&self, _: &str) -> Result<crate::KvUsage, KvError> {
        broken()
    }
    async fn purge(&self, _: &str) -> Result<u64, KvError> {
        broken()
    }
}

/// A guest's state: its ctx and resource table.
struct Guest {
    ctx: KvCtx,
    table: ResourceTable,
}

impl Guest {
    fn new(backend: Arc<dyn KvBackend>, app: &str, stores: &[&str], limits: KvLimits) -> Guest {
        let stores: Vec<String> = stores.iter().map(|s| s.to_string()).collect();
        Guest {
            ctx: KvCtx::new(backend, app, &stores, limits),
            table: ResourceTable::new(),
        }
    }

    fn view(&mut self) -> KvView<'_> {
        KvView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }

    /// Opens `store`, panicking with the guest-visible error if it fails.
    async fn open(&mut self, store: &str) -> Resource<Bucket> {
        let mut view = self.view();
        match view.open(store.to_string()).await {
            Ok(bucket) => bucket,
            Err(e) => panic!("open {store:?}: {:?}", guest_error(&mut view, e)),
        }
    }
}

/// What the guest would see for `err`: its `store.error`, or `Err` for a trap.
fn guest_error(view: &mut KvView<'_>, err: Error) -> Result<store::Error, String> {
    view.convert_error(err).map_err(|e| format!("trap: {e}"))
}

/// Asserts that `result` is `error::other` and returns its message.
fn expect_other<T: std::fmt::Debug>(view: &mut KvView<'_>, result: Result<T, Error>) -> String {
    match result {
        Ok(v) => panic!("expected error::other, got Ok({v:?})"),
        Err(e) => match guest_error(view, e) {
            Ok(store::Error::Other(message)) => message,
            other => panic!("expected error::other, got {other:?}"),
        },
    }
}

fn borrow(bucket: &Resource<Bucket>) -> Resource<Bucket> {
    Resource::new_borrow(bucket.rep())
}

fn sqlite() -> (tempfile::TempDir, Arc<dyn KvBackend>) {
    let dir = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(e) => panic!("tempdir: {e}"),
    };
    let kv = match crate::SqliteKv::open(&dir.path().join("kv.sqlite")) {
        Ok(kv) => kv,
        Err(e) => panic!("open sqlite: {e}"),
    };
    (dir, Arc::new(kv))
}

#[tokio::test]
async fn ungranted_store_is_access_denied() {
    let (_dir, kv) = sqlite();
    let mut guest = Guest::new(kv, "shop", &["cart", "sessions"], KvLimits::default());
    let mut view = guest.view();
    for name in ["orders", "", "Cart", "cart "] {
        let Err(err) = view.open(name.to_string()).await else {
            panic!("store {name:?} was not granted but opened");
        };
        assert!(
            matches!(guest_error(&mut view, err), Ok(store::Error::AccessDenied)),
            "store {name:?}"
        );
    }
    // Nothing was left in the table by the refusals.
    assert!(view.table.is_empty());
    // Granted stores open.
    guest.open("cart").await;
    guest.open("sessions").await;
}

#[tokio::test]
async fn buckets_are_bound_to_the_app_and_store() {
    let (_dir, kv) = sqlite();
    let mut shop = Guest::new(
        Arc::clone(&kv),
        "shop",
        &["cart", "other"],
        KvLimits::default(),
    );
    let mut blog = Guest::new(Arc::clone(&kv), "blog", &["cart"], KvLimits::default());

    let cart = shop.open("cart").await;
    let other = shop.open("other").await;
    let blog_cart = blog.open("cart").await;

    let mut view = shop.view();
    assert!(
        view.set(borrow(&cart), "k".into(), b"shop".to_vec())
            .await
            .is_ok()
    );
    assert!(matches!(
        view.get(borrow(&other), "k".into()).await,
        Ok(None)
    ));
    let mut view = blog.view();
    assert!(matches!(
        view.get(borrow(&blog_cart), "k".into()).await,
        Ok(None)
    ));

    // The backend holds it under the shop's namespace.
    assert_eq!(
        kv.get(&Namespace::new("shop", "cart"), "k")
            .await
            .ok()
            .flatten(),
        Some(b"shop".to_vec())
    );

    // Round trip through every call of a granted bucket.
    let mut view = shop.view();
    assert!(matches!(
        view.exists(borrow(&cart), "k".into()).await,
        Ok(true)
    ));
    assert!(matches!(
        view.increment(borrow(&cart), "n".into(), 2).await,
        Ok(2)
    ));
    assert!(
        view.set_many(
            borrow(&cart),
            vec![("a".into(), vec![1]), ("b".into(), vec![])]
        )
        .await
        .is_ok()
    );
    match view
        .get_many(borrow(&cart), vec!["a".into(), "zz".into(), "b".into()])
        .await
    {
        Ok(got) => assert_eq!(
            got,
            vec![
                Some(("a".into(), vec![1])),
                None,
                Some(("b".into(), vec![]))
            ]
        ),
        Err(e) => panic!("get-many: {:?}", guest_error(&mut view, e)),
    }
    assert!(
        view.delete_many(borrow(&cart), vec!["a".into()])
            .await
            .is_ok()
    );
    assert!(view.delete(borrow(&cart), "b".into()).await.is_ok());
    match view.list_keys(borrow(&cart), None).await {
        Ok(r) => {
            assert_eq!(r.keys, vec!["k".to_string(), "n".to_string()]);
            assert_eq!(r.cursor, None);
        }
        Err(e) => panic!("list-keys: {:?}", guest_error(&mut view, e)),
    }

    // Dropping the bucket removes it from the table.
    assert!(store::HostBucket::drop(&mut view, cart).await.is_ok());
    assert!(store::HostBucket::drop(&mut view, other).await.is_ok());
    assert!(view.table.is_empty());
}

#[tokio::test]
async fn list_keys_pages_by_100_and_returns_the_cursor() {
    let (_dir, kv) = sqlite();
    let mut guest = Guest::new(kv, "app", &["s"], KvLimits::default());
    let bucket = guest.open("s").await;
    let mut view = guest.view();
    let items: Vec<(String, Vec<u8>)> = (0..250).map(|i| (format!("k{i:03}"), vec![])).collect();
    assert!(view.set_many(borrow(&bucket), items).await.is_ok());

    let mut cursor = None;
    let mut pages = Vec::new();
    loop {
        let r = match view.list_keys(borrow(&bucket), cursor).await {
            Ok(r) => r,
            Err(e) => panic!("list-keys: {:?}", guest_error(&mut view, e)),
        };
        pages.push(r.keys);
        cursor = r.cursor;
        if cursor.is_none() {
            break;
        }
        assert!(pages.len() < 10, "list-keys does not terminate");
    }
    let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
    assert_eq!(sizes, vec![100, 100, 50]);
    let all: Vec<String> = pages.concat();
    let want: Vec<String> = (0..250).map(|i| format!("k{i:03}")).collect();
    assert_eq!(all, want);
}

#[tokio::test]
async fn keys_values_and_batches_are_bounded() {
    let (_dir, kv) = sqlite();
    let limits = KvLimits {
        max_key_bytes: 8,
        max_value_bytes: 16,
        max_batch: 3,
        ..KvLimits::default()
    };
    let mut guest = Guest::new(kv, "app", &["s"], limits);
    let b = guest.open("s").await;
    let mut view = guest.view();
    let long_key = "é".repeat(5); // 10 bytes, 5 chars
    let key_msg = "key is 10 bytes; the limit is 8";

    // At the limit: fine.
    assert!(
        view.set(borrow(&b), "k".repeat(8), vec![7; 16])
            .await
            .is_ok()
    );
    assert!(
        view.set_many(
            borrow(&b),
            vec![
                ("a".into(), vec![]),
                ("b".into(), vec![]),
                ("c".into(), vec![])
            ]
        )
        .await
        .is_ok()
    );

    let r = view_get(&mut view, &b, &long_key).await;
    assert_eq!(expect_other(&mut view, r), key_msg);
    let r = view.set(borrow(&b), long_key.clone(), vec![]).await;
    assert_eq!(expect_other(&mut view, r), key_msg);
    let r = view.set(borrow(&b), "k".into(), vec![0; 17]).await;
    assert_eq!(
        expect_other(&mut view, r),
        "value is 17 bytes; the limit is 16"
    );
    let r = view.delete(borrow(&b), long_key.clone()).await;
    assert_eq!(expect_other(&mut view, r), key_msg);
    let r = view.exists(borrow(&b), long_key.clone()).await;
    assert_eq!(expect_other(&mut view, r), key_msg);
    let r = view.increment(borrow(&b), long_key.clone(), 1).await;
    assert_eq!(expect_other(&mut view, r), key_msg);

    let four: Vec<String> = ["a", "b", "c", "d"].map(String::from).to_vec();
    let batch_msg = "batch has 4 keys; the limit is 3";
    let r = view.get_many(borrow(&b), four.clone()).await;
    assert_eq!(expect_other(&mut view, r), batch_msg);
    let r = view.delete_many(borrow(&b), four.clone()).await;
    assert_eq!(expect_other(&mut view, r), batch_msg);
    let r = view
        .set_many(
            borrow(&b),
            four.iter().map(|k| (k.clone(), vec![])).collect(),
        )
        .await;
    assert_eq!(expect_other(&mut view, r), batch_msg);
    let r = view
        .get_many(borrow(&b), vec!["a".into(), long_key.clone()])
        .await;
    assert_eq!(expect_other(&mut view, r), key_msg);
    let r = view
        .delete_many(borrow(&b), vec!["a".into(), long_key.clone()])
        .await;
    assert_eq!(expect_other(&mut view, r), key_msg);
    let r = view
        .set_many(
            borrow(&b),
            vec![("x".into(), vec![]), ("y".into(), vec![0; 17])],
        )
        .await;
    assert_eq!(
        expect_other(&mut view, r),
        "value is 17 bytes; the limit is 16"
    );

    // Refused calls changed nothing.
    assert!(matches!(view.get(borrow(&b), "k".repeat(8)).await, Ok(Some(v)) if v == vec![7; 16]));
    assert!(matches!(
        view.exists(borrow(&b), "x".into()).await,
        Ok(false)
    ));
    assert!(matches!(
        view.exists(borrow(&b), "a".into()).await,
        Ok(true)
    ));
}

async fn view_get(
    view: &mut KvView<'_>,
    b: &Resource<Bucket>,
    key: &str,
) -> Result<Option<Vec<u8>>, Error> {
    view.get(borrow(b), key.to_string()).await
}

#[test]
fn default_limits() {
    let l = KvLimits::default();
    assert_eq!(l.max_key_bytes, 256);
    assert_eq!(l.max_value_bytes, 1 << 20);
    assert_eq!(l.max_batch, 1000);
}

#[tokio::test]
async fn default_key_limit_message_names_256() {
    let (_dir, kv) = sqlite();
    let mut guest = Guest::new(kv, "app", &["s"], KvLimits::default());
    let b = guest.open("s").await;
    let mut view = guest.view();
    assert!(matches!(
        view_get(&mut view, &b, &"k".repeat(256)).await,
        Ok(None)
    ));
    let r = view_get(&mut view, &b, &"k".repeat(257)).await;
    assert_eq!(
        expect_other(&mut view, r),
        "key is 257 bytes; the limit is 256"
    );
}

#[tokio::test]
async fn backend_failures_are_error_other_not_traps() {
    let mut guest = Guest::new(Arc::new(BrokenBackend), "app", &["s"], KvLimits::default());
    let b = guest.open("s").await;
    let mut view = guest.view();
    let k = || "k".to_string();
    let mut messages = Vec::new();
    let r = view.get(borrow(&b), k()).await;
    messages.push(expect_other(&mut view, r));
    let r = view.set(borrow(&b), k(), vec![]).await;
    messages.push(expect_other(&mut view, r));
    let r = view.delete(borrow(&b), k()).await;
    messages.push(expect_other(&mut view, r));
    let r = view.exists(borrow(&b), k()).await;
    messages.push(expect_other(&mut view, r));
    let r = view.list_keys(borrow(&b), None).await;
    messages.push(expect_other(&mut view, r.map(|r| r.keys)));
    let r = view.increment(borrow(&b), k(), 1).await;
    messages.push(expect_other(&mut view, r));
    let r = view.get_many(borrow(&b), vec![k()]).await;
    messages.push(expect_other(&mut view, r));
    let r = view.set_many(borrow(&b), vec![(k(), vec![])]).await;
    messages.push(expect_other(&mut view, r));
    let r = view.delete_many(borrow(&b), vec![k()]).await;
    messages.push(expect_other(&mut view, r));
    assert_eq!(messages, vec!["disk on fire".to_string(); 9]);
}

#[tokio::test]
async fn increment_of_a_non_number_names_the_key() {
    let (_dir, kv) = sqlite();
    let mut guest = Guest::new(kv, "app", &["s"], KvLimits::default());
    let b = guest.open("s").await;
    let mut view = guest.view();
    assert!(
        view.set(borrow(&b), "hits".into(), b"lots".to_vec())
            .await
            .is_ok()
    );
    let r = view.increment(borrow(&b), "hits".into(), 1).await;
    let m = expect_other(&mut view, r);
    assert!(m.contains("\"hits\""), "{m}");
}

#[tokio::test]
async fn a_stale_bucket_handle_traps() {
    let (_dir, kv) = sqlite();
    let mut guest = Guest::new(kv, "app", &["s"], KvLimits::default());
    let b = guest.open("s").await;
    let rep = b.rep();
    let mut view = guest.view();
    assert!(store::HostBucket::drop(&mut view, b).await.is_ok());
    let Err(e) = view.get(Resource::new_borrow(rep), "k".into()).await else {
        panic!("a dropped bucket was usable");
    };
    assert!(guest_error(&mut view, e).is_err());
}

#[test]
fn add_to_linker_defines_the_three_interfaces() {
    struct Data {
        ctx: KvCtx,
        table: ResourceTable,
    }
    let engine = wasmtime::Engine::default();
    let mut linker = Linker::<Data>::new(&engine);
    let added = add_to_linker(&mut linker, |d: &mut Data| KvView {
        ctx: &mut d.ctx,
        table: &mut d.table,
    });
    assert!(added.is_ok(), "{added:?}");
    // A second time collides: the names really were defined.
    let again = add_to_linker(&mut linker, |d: &mut Data| KvView {
        ctx: &mut d.ctx,
        table: &mut d.table,
    });
    assert!(again.is_err());
}

#[tokio::test]
async fn get_many_of_one_large_key_repeated_is_capped() {
    // The case: one large value asked for 1,000 times would make the host
    // allocate 1,000 copies. The default cap is 16 MiB per call.
    let (_dir, kv) = sqlite();
    let mut guest = Guest::new(kv, "app", &["s"], KvLimits::default());
    let b = guest.open("s").await;
    let mut view = guest.view();
    assert!(
        view.set(borrow(&b), "big".into(), vec![1; 64 * 1024])
            .await
            .is_ok()
    );
    let keys = vec!["big".to_string(); 1000];
    let r = view.get_many(borrow(&b), keys).await;
    let msg = expect_other(&mut view, r);
    assert!(
        msg.contains("65536000 bytes") && msg.contains("cap of 16777216 bytes"),
        "{msg}"
    );
    // 256 of them fit exactly.
    let r = view
        .get_many(borrow(&b), vec!["big".to_string(); 256])
        .await;
    assert!(matches!(r, Ok(v) if v.len() == 256));
}

#[tokio::test]
async fn app_quota_is_enforced_and_named() {
    let (_dir, kv) = sqlite();
    let limits = KvLimits {
        quota: KvQuota {
            max_keys: 2,
            max_bytes: 1 << 20,
        },
        ..KvLimits::default()
    };
    let mut guest = Guest::new(kv, "app", &["s", "t"], limits);
    let s = guest.open("s").await;
    let t = guest.open("t").await;
    let mut view = guest.view();
    assert!(view.set(borrow(&s), "a".into(), vec![]).await.is_ok());
    assert!(view.increment(borrow(&t), "b".into(), 1).await.is_ok());
    let r = view.set(borrow(&t), "c".into(), vec![]).await;
    let msg = expect_other(&mut view, r);
    assert!(msg.contains("quota of 2 keys"), "{msg}");
    let r = view.increment(borrow(&s), "c".into(), 1).await;
    assert!(expect_other(&mut view, r).contains("quota of 2 keys"));
    let r = view
        .set_many(borrow(&s), vec![("c".into(), vec![]), ("d".into(), vec![])])
        .await;
    assert!(expect_other(&mut view, r).contains("quota of 2 keys"));
    assert!(matches!(
        view.exists(borrow(&s), "c".into()).await,
        Ok(false)
    ));
}

#[tokio::test]
async fn list_keys_cursors_are_keysets_bound_to_their_bucket() {
    let (_dir, kv) = sqlite();
    let limits = KvLimits {
        max_cursors: 2,
        ..KvLimits::default()
    };
    let mut guest = Guest::new(kv, "app", &["s", "t"], limits);
    let s = guest.open("s").await;
    let t = guest.open("t").await;
    let mut view = guest.view();
    let items: Vec<(String, Vec<u8>)> = (0..150).map(|i| (format!("k{i:03}"), vec![])).collect();
    assert!(view.set_many(borrow(&s), items.clone()).await.is_ok());
    assert!(view.set_many(borrow(&t), items).await.is_ok());
    let first = match view.list_keys(borrow(&s), None).await {
        Ok(r) => r,
        Err(e) => panic!("list-keys: {:?}", guest_error(&mut view, e)),
    };
    let Some(cursor) = first.cursor else {
        panic!("no cursor")
    };
    // Keys deleted before the cursor do not shift the next page (OFFSET would).
    assert!(
        view.delete_many(borrow(&s), vec!["k000".into(), "k001".into()])
            .await
            .is_ok()
    );
    match view.list_keys(borrow(&s), Some(cursor)).await {
        Ok(r) => {
            assert_eq!(r.keys.first().map(String::as_str), Some("k100"));
            assert_eq!(r.keys.len(), 50);
        }
        Err(e) => panic!("page 2: {:?}", guest_error(&mut view, e)),
    }
    // Another bucket's, an unknown and a forgotten cursor are errors, never traps.
    let r = view.list_keys(borrow(&t), Some(cursor)).await;
    assert!(expect_other(&mut view, r).contains("unknown cursor"));
    let r = view.list_keys(borrow(&s), Some(u64::MAX)).await;
    assert!(expect_other(&mut view, r).contains("unknown cursor"));
    for _ in 0..2 {
        assert!(view.list_keys(borrow(&t), None).await.is_ok());
    }
    let r = view.list_keys(borrow(&s), Some(cursor)).await;
    assert!(expect_other(&mut view, r).contains("unknown cursor"));
}

#[tokio::test]
async fn hostile_sizes_and_numbers_are_errors_not_panics() {
    let (_dir, kv) = sqlite();
    let mut guest = Guest::new(kv, "app", &["s"], KvLimits::default());
    let b = guest.open("s").await;
    let mut view = guest.view();
    // A key of exactly 256 bytes of 2-byte characters, and one byte more.
    assert!(view.set(borrow(&b), "é".repeat(128), vec![]).await.is_ok());
    let r = view
        .set(borrow(&b), format!("{}x", "é".repeat(128)), vec![])
        .await;
    assert_eq!(
        expect_other(&mut view, r),
        "key is 257 bytes; the limit is 256"
    );
    // u64::MAX deltas overflow into an error naming the key.
    assert!(matches!(
        view.increment(borrow(&b), "n".into(), u64::MAX).await,
        Ok(u64::MAX)
    ));
    let r = view.increment(borrow(&b), "n".into(), u64::MAX).await;
    assert!(expect_other(&mut view, r).contains("would overflow"));
    // Empty batches and keys.
    assert!(matches!(view.get_many(borrow(&b), vec![]).await, Ok(v) if v.is_empty()));
    assert!(view.set(borrow(&b), String::new(), vec![]).await.is_ok());
}
