//! The backend conformance suite, run against both backends, plus each backend's own
//! tests (SQLite persistence; Redis connection failures).
//!
//! The Redis tests start a real `redis-server` on a free loopback port; they fail (never
//! skip) when it is not installed.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wharf_host_keyvalue::{KvBackend, KvError, KvQuota, KvUsage, Namespace, RedisKv, SqliteKv};

/// No quota, for the tests that are not about quotas.
const Q: KvQuota = KvQuota::UNLIMITED;

// ---------------------------------------------------------------------------------
// Helpers

fn ns(app: &str, store: &str) -> Namespace {
    Namespace {
        app: app.to_string(),
        store: store.to_string(),
    }
}

/// Unwraps a backend result, naming the operation when it failed.
#[track_caller]
fn ok<T>(what: &str, r: Result<T, KvError>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{what}: {e}"),
    }
}

fn strings(keys: &[&str]) -> Vec<String> {
    keys.iter().map(|k| k.to_string()).collect()
}

/// Every key of `ns`, paging with `page`; checks that pages are full until the last.
async fn list_all(kv: &dyn KvBackend, ns: &Namespace, page: usize) -> Vec<String> {
    let mut all = Vec::new();
    let mut cursor = None;
    for _ in 0..10_000 {
        let (keys, next) = ok("list_keys", kv.list_keys(ns, cursor.as_deref(), page).await);
        assert!(keys.len() <= page, "page of {} > {page}", keys.len());
        if next.is_some() {
            assert_eq!(keys.len(), page, "a page before the last is not full");
        }
        all.extend(keys);
        match next {
            Some(c) => cursor = Some(c),
            None => return all,
        }
    }
    panic!("list_keys never returned a None cursor");
}

// ---------------------------------------------------------------------------------
// The conformance suite

/// Everything a [`KvBackend`] must do; expects a backend with no data yet.
async fn conformance(kv: &dyn KvBackend) {
    quotas(kv).await;
    batch_bytes_cap(kv).await;
    basics(kv).await;
    binary_values(kv).await;
    listing(kv).await;
    increments(kv).await;
    batches(kv).await;
    isolation(kv).await;
    awkward_names(kv).await;
    purging(kv).await;
}

/// `purge` deletes every key of every store of one app, and its usage; other apps,
/// including one whose name starts with the purged one's, keep everything.
async fn purging(kv: &dyn KvBackend) {
    let gone = [ns("purge-me", "a"), ns("purge-me", "b:c")];
    let kept = [
        ns("purge-me-too", "a"),
        ns("purge", "me:a"),
        ns("other", "a"),
    ];
    for n in gone.iter().chain(kept.iter()) {
        ok("set", kv.set(n, "k1", b"v", &Q).await);
        ok("set", kv.set(n, "k2}", b"v", &Q).await);
    }
    assert_eq!(ok("usage", kv.usage("purge-me").await).keys, 4);
    assert_eq!(ok("purge", kv.purge("purge-me").await), 4);
    for n in &gone {
        assert_eq!(list_all(kv, n, 10).await, Vec::<String>::new(), "{n:?}");
        assert_eq!(ok("get", kv.get(n, "k1").await), None);
    }
    let usage = ok("usage", kv.usage("purge-me").await);
    assert_eq!((usage.keys, usage.bytes), (0, 0));
    for n in &kept {
        assert_eq!(list_all(kv, n, 10).await, strings(&["k1", "k2}"]), "{n:?}");
    }
    assert_eq!(ok("usage", kv.usage("purge-me-too").await).keys, 2);
    // Purging an app with no data deletes nothing.
    assert_eq!(ok("purge", kv.purge("never-deployed").await), 0);
}

/// Each app's keys and bytes are counted over all its stores and capped.
async fn quotas(kv: &dyn KvBackend) {
    let quota = KvQuota {
        max_keys: 3,
        max_bytes: 100,
    };
    let a = ns("quota-app", "s1");
    let b = ns("quota-app", "s2");
    let other = ns("quota-other", "s1");
    let usage = |app: &'static str| async move { ok("usage", kv.usage(app).await) };
    assert_eq!(usage("quota-app").await, KvUsage::default());
    ok("set", kv.set(&a, "k1", &[0; 8], &quota).await); // 10 bytes
    ok("set other store", kv.set(&b, "k2", &[0; 8], &quota).await);
    assert_eq!(usage("quota-app").await, KvUsage { keys: 2, bytes: 20 });
    // Over the bytes quota: refused, nothing written.
    match kv.set(&a, "big", &[0; 90], &quota).await {
        Err(e @ KvError::QuotaExceeded { what: "bytes", .. }) => {
            assert!(e.to_string().contains("quota of 100 bytes"), "{e}");
        }
        other => panic!("over the bytes quota: {other:?}"),
    }
    assert_eq!(ok("get", kv.get(&a, "big").await), None);
    // Overwriting counts the difference.
    ok("overwrite", kv.set(&a, "k1", &[0; 78], &quota).await); // 80 bytes
    assert_eq!(usage("quota-app").await, KvUsage { keys: 2, bytes: 90 });
    ok("shrink", kv.set(&a, "k1", &[0; 8], &quota).await);
    // Over the keys quota, by set-many (atomically) and by increment.
    ok("third key", kv.increment(&a, "n", 7, &quota).await); // "n" + "7"
    match kv
        .set_many(
            &a,
            &[("k1".into(), vec![1]), ("k4".into(), vec![1])],
            &quota,
        )
        .await
    {
        Err(e @ KvError::QuotaExceeded { what: "keys", .. }) => {
            assert!(e.to_string().contains("quota of 3 keys"), "{e}");
        }
        other => panic!("over the keys quota: {other:?}"),
    }
    assert_eq!(ok("get", kv.get(&a, "k1").await), Some(vec![0; 8]));
    match kv.increment(&b, "m", 1, &quota).await {
        Err(KvError::QuotaExceeded { what: "keys", .. }) => {}
        other => panic!("increment over the keys quota: {other:?}"),
    }
    assert_eq!(
        ok("increment existing", kv.increment(&a, "n", 2, &quota).await),
        9
    );
    // Other apps have their own count.
    ok("other app", kv.set(&other, "k1", &[0; 8], &quota).await);
    // Deleting frees the quota.
    ok("delete", kv.delete(&a, "k1").await);
    ok(
        "delete many",
        kv.delete_many(&b, &strings(&["k2", "absent"])).await,
    );
    assert_eq!(usage("quota-app").await, KvUsage { keys: 1, bytes: 2 });
    ok("room again", kv.set(&b, "k2", &[0; 8], &quota).await);
}

/// `get_many` refuses to read more than its cap (a key asked for twice counts twice).
async fn batch_bytes_cap(kv: &dyn KvBackend) {
    let n = ns("batch-cap", "s");
    ok("set", kv.set(&n, "big", &[7; 1000], &Q).await);
    let keys: Vec<String> = std::iter::repeat_n("big".to_string(), 10).collect();
    match kv.get_many(&n, &keys, 9_999).await {
        Err(
            e @ KvError::BatchTooLarge {
                limit: 9_999,
                total: 10_000,
            },
        ) => {
            assert!(e.to_string().contains("9999 bytes"), "{e}");
        }
        other => panic!("over the cap: {:?}", other.map(|v| v.len())),
    }
    let got = ok("at the cap", kv.get_many(&n, &keys, 10_000).await);
    assert_eq!(got.len(), 10);
    assert!(
        got.iter()
            .all(|v| v.as_ref().is_some_and(|(_, v)| v.len() == 1000))
    );
}

async fn basics(kv: &dyn KvBackend) {
    let n = ns("basics", "s");
    assert_eq!(ok("get missing", kv.get(&n, "k").await), None);
    assert!(!ok("exists missing", kv.exists(&n, "k").await));
    ok("set", kv.set(&n, "k", b"one", &Q).await);
    assert_eq!(ok("get", kv.get(&n, "k").await), Some(b"one".to_vec()));
    assert!(ok("exists", kv.exists(&n, "k").await));
    ok("overwrite", kv.set(&n, "k", b"two!", &Q).await);
    assert_eq!(ok("get", kv.get(&n, "k").await), Some(b"two!".to_vec()));
    assert_eq!(list_all(kv, &n, 10).await, strings(&["k"]));
    ok("delete", kv.delete(&n, "k").await);
    assert_eq!(ok("get deleted", kv.get(&n, "k").await), None);
    assert!(!ok("exists deleted", kv.exists(&n, "k").await));
    assert!(list_all(kv, &n, 10).await.is_empty());
    ok("delete missing", kv.delete(&n, "k").await);
    ok("delete never set", kv.delete(&n, "never").await);
}

async fn binary_values(kv: &dyn KvBackend) {
    let n = ns("binary", "s");
    // An empty value exists and is not "missing".
    ok("set empty", kv.set(&n, "empty", b"", &Q).await);
    assert_eq!(ok("get empty", kv.get(&n, "empty").await), Some(Vec::new()));
    assert!(ok("exists empty", kv.exists(&n, "empty").await));
    let all_bytes: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
    ok("set bytes", kv.set(&n, "bytes", &all_bytes, &Q).await);
    assert_eq!(
        ok("get bytes", kv.get(&n, "bytes").await),
        Some(all_bytes.clone())
    );
    let nul = b"\0\0a\0\xff\xfe\r\n".to_vec();
    ok("set nul", kv.set(&n, "nul", &nul, &Q).await);
    assert_eq!(ok("get nul", kv.get(&n, "nul").await), Some(nul.clone()));
    let big = vec![0xA5u8; 1 << 20];
    ok("set 1 MiB", kv.set(&n, "big", &big, &Q).await);
    assert_eq!(ok("get 1 MiB", kv.get(&n, "big").await), Some(big));
    let many = ok(
        "get_many binary",
        kv.get_many(&n, &strings(&["empty", "nul", "bytes"]), u64::MAX)
            .await,
    );
    assert_eq!(
        many,
        vec![
            Some(("empty".to_string(), Vec::new())),
            Some(("nul".to_string(), nul)),
            Some(("bytes".to_string(), all_bytes)),
        ]
    );
}

async fn listing(kv: &dyn KvBackend) {
    let empty = ns("listing", "empty");
    assert_eq!(
        ok("list empty", kv.list_keys(&empty, None, 100).await),
        (Vec::new(), None)
    );

    // 260 keys, written in a scrambled order, one by one and in batches.
    let n = ns("listing", "s");
    let count = 260usize;
    let mut want: Vec<String> = (0..count).map(|i| format!("key-{i:04}")).collect();
    let scrambled: Vec<String> = (0..count).map(|i| want[(i * 97) % count].clone()).collect();
    for key in &scrambled[..130] {
        ok("set", kv.set(&n, key, key.as_bytes(), &Q).await);
    }
    let rest: Vec<(String, Vec<u8>)> = scrambled[130..]
        .iter()
        .map(|k| (k.clone(), k.as_bytes().to_vec()))
        .collect();
    ok("set_many", kv.set_many(&n, &rest, &Q).await);

    // Pages of 100: 100, 100, 60, then done.
    let (p1, c1) = ok("page 1", kv.list_keys(&n, None, 100).await);
    assert_eq!(p1, want[..100]);
    let Some(c1) = c1 else {
        panic!("no cursor after page 1")
    };
    assert_eq!(c1, want[99], "the cursor is the last key returned");
    let (p2, c2) = ok("page 2", kv.list_keys(&n, Some(&c1), 100).await);
    assert_eq!(p2, want[100..200]);
    let Some(c2) = c2 else {
        panic!("no cursor after page 2")
    };
    let (p3, c3) = ok("page 3", kv.list_keys(&n, Some(&c2), 100).await);
    assert_eq!(p3, want[200..]);
    assert_eq!(c3, None, "the last page must end the listing");

    // Other page sizes see the same order.
    for page in [1, 7, 130, 259, 260, 261, 1000] {
        assert_eq!(list_all(kv, &n, page).await, want, "page size {page}");
    }
    // A listing that ends exactly at a page boundary returns no empty extra page.
    let (all, next) = ok("exact", kv.list_keys(&n, None, count).await);
    assert_eq!((all.len(), next), (count, None));
    // A cursor past the end is empty, not an error.
    assert_eq!(
        ok("past end", kv.list_keys(&n, Some("key-9999"), 100).await),
        (Vec::new(), None)
    );
    assert_eq!(
        ok(
            "far past end",
            kv.list_keys(&n, Some("\u{10ffff}"), 100).await
        ),
        (Vec::new(), None)
    );
    // Keyset pagination: keys removed before the cursor and added after it neither
    // shift nor repeat the rest (an OFFSET cursor would skip key-0100 here).
    let (p1, c1) = ok("page 1 again", kv.list_keys(&n, None, 100).await);
    assert_eq!(p1, want[..100]);
    let c1 = c1.expect("a cursor after page 1");
    ok(
        "delete listed",
        kv.delete_many(&n, &strings(&["key-0000", "key-0001", "key-0002"]))
            .await,
    );
    let (p2, _) = ok(
        "page 2 after deletes",
        kv.list_keys(&n, Some(&c1), 100).await,
    );
    assert_eq!(p2, want[100..200]);
    ok(
        "restore",
        kv.set_many(
            &n,
            &[
                ("key-0000".into(), b"key-0000".to_vec()),
                ("key-0001".into(), b"key-0001".to_vec()),
                ("key-0002".into(), b"key-0002".to_vec()),
            ],
            &Q,
        )
        .await,
    );

    // Deleted keys leave the listing, one by one and in batches.
    ok("delete", kv.delete(&n, "key-0000").await);
    ok(
        "delete_many",
        kv.delete_many(&n, &strings(&["key-0001", "key-0259", "absent"]))
            .await,
    );
    want.retain(|k| !["key-0000", "key-0001", "key-0259"].contains(&k.as_str()));
    assert_eq!(list_all(kv, &n, 100).await, want);

    // Lexicographic means by bytes: upper case before lower case, "a" < "ab" < "b",
    // ASCII before multi-byte UTF-8.
    let order = ns("listing", "order");
    for key in ["b", "é", "ab", "B", "a", "z", "", "a0", "🔑", "ж"] {
        ok("set", kv.set(&order, key, b"x", &Q).await);
    }
    assert_eq!(
        list_all(kv, &order, 3).await,
        strings(&["", "B", "a", "a0", "ab", "b", "z", "é", "ж", "🔑"])
    );
}

async fn increments(kv: &dyn KvBackend) {
    let n = ns("increments", "s");
    assert_eq!(
        ok("increment missing", kv.increment(&n, "c", 5, &Q).await),
        5
    );
    assert_eq!(ok("increment", kv.increment(&n, "c", 3, &Q).await), 8);
    assert_eq!(ok("increment by 0", kv.increment(&n, "c", 0, &Q).await), 8);
    // Stored as decimal text, readable with get.
    assert_eq!(
        ok("get counter", kv.get(&n, "c").await),
        Some(b"8".to_vec())
    );
    // Counters appear in listings.
    assert_eq!(ok("increment z", kv.increment(&n, "zero", 0, &Q).await), 0);
    assert_eq!(
        ok("get zero", kv.get(&n, "zero").await),
        Some(b"0".to_vec())
    );
    assert_eq!(list_all(kv, &n, 100).await, strings(&["c", "zero"]));

    // A value set as text counts.
    ok("set text", kv.set(&n, "t", b"41", &Q).await);
    assert_eq!(ok("increment text", kv.increment(&n, "t", 1, &Q).await), 42);
    ok("set padded", kv.set(&n, "p", b"007", &Q).await);
    assert_eq!(
        ok("increment padded", kv.increment(&n, "p", 1, &Q).await),
        8
    );
    assert_eq!(ok("get padded", kv.get(&n, "p").await), Some(b"8".to_vec()));

    // The whole u64 range (beyond i64).
    let big = u64::MAX - 10;
    assert_eq!(
        ok("increment big", kv.increment(&n, "big", big, &Q).await),
        big
    );
    assert_eq!(
        ok("increment big", kv.increment(&n, "big", 10, &Q).await),
        u64::MAX
    );
    assert_eq!(
        ok("get big", kv.get(&n, "big").await),
        Some(u64::MAX.to_string().into_bytes())
    );
    match kv.increment(&n, "big", 1, &Q).await {
        Err(KvError::Overflow { key, delta }) => assert_eq!((key.as_str(), delta), ("big", 1)),
        other => panic!("overflow: {other:?}"),
    }
    assert_eq!(
        ok("get big after overflow", kv.get(&n, "big").await),
        Some(u64::MAX.to_string().into_bytes())
    );
    ok(
        "set i64 max",
        kv.set(&n, "i", i64::MAX.to_string().as_bytes(), &Q).await,
    );
    assert_eq!(
        ok("increment past i64", kv.increment(&n, "i", 1, &Q).await),
        i64::MAX as u64 + 1
    );

    // Values that are not a u64 in decimal are refused, naming the key, and kept.
    for (key, value) in [
        ("word", &b"abc"[..]),
        ("negative", b"-5"),
        ("plus", b"+5"),
        ("space", b" 5"),
        ("float", b"1.5"),
        ("empty", b""),
        ("binary", b"\x00\x01"),
        ("too-big", b"18446744073709551616"),
    ] {
        ok("set", kv.set(&n, key, value, &Q).await);
        match kv.increment(&n, key, 1, &Q).await {
            Err(e @ KvError::NotANumber { .. }) => {
                let message = e.to_string();
                assert!(message.contains(&format!("{key:?}")), "{message}");
            }
            other => panic!("increment of {value:?}: {other:?}"),
        }
        assert_eq!(ok("get", kv.get(&n, key).await), Some(value.to_vec()));
    }
}

async fn batches(kv: &dyn KvBackend) {
    let n = ns("batches", "s");
    ok("empty set_many", kv.set_many(&n, &[], &Q).await);
    assert_eq!(
        ok("empty get_many", kv.get_many(&n, &[], u64::MAX).await),
        Vec::new()
    );
    ok("empty delete_many", kv.delete_many(&n, &[]).await);

    let items = vec![
        ("a".to_string(), b"1".to_vec()),
        ("b".to_string(), b"".to_vec()),
        ("c".to_string(), b"3".to_vec()),
        ("a".to_string(), b"1 again".to_vec()), // the last write of a key wins
    ];
    ok("set_many", kv.set_many(&n, &items, &Q).await);
    let got = ok(
        "get_many",
        kv.get_many(&n, &strings(&["c", "missing", "a", "b", "a"]), u64::MAX)
            .await,
    );
    assert_eq!(
        got,
        vec![
            Some(("c".to_string(), b"3".to_vec())),
            None,
            Some(("a".to_string(), b"1 again".to_vec())),
            Some(("b".to_string(), Vec::new())),
            Some(("a".to_string(), b"1 again".to_vec())),
        ]
    );
    assert_eq!(
        ok(
            "get_many all missing",
            kv.get_many(&n, &strings(&["x", "y"]), u64::MAX).await
        ),
        vec![None, None]
    );
    // Overwrites one key, adds another.
    ok(
        "set_many overwrite",
        kv.set_many(
            &n,
            &[("c".into(), b"three".to_vec()), ("d".into(), b"4".to_vec())],
            &Q,
        )
        .await,
    );
    assert_eq!(ok("get c", kv.get(&n, "c").await), Some(b"three".to_vec()));
    assert_eq!(list_all(kv, &n, 2).await, strings(&["a", "b", "c", "d"]));

    ok(
        "delete_many",
        kv.delete_many(&n, &strings(&["a", "missing", "c", "c"]))
            .await,
    );
    assert_eq!(
        ok(
            "get_many after delete",
            kv.get_many(&n, &strings(&["a", "b", "c", "d"]), u64::MAX)
                .await
        ),
        vec![
            None,
            Some(("b".to_string(), Vec::new())),
            None,
            Some(("d".to_string(), b"4".to_vec())),
        ]
    );
    assert_eq!(list_all(kv, &n, 100).await, strings(&["b", "d"]));
}

async fn isolation(kv: &dyn KvBackend) {
    let spaces = [
        ns("iso-app1", "store1"),
        ns("iso-app2", "store1"),
        ns("iso-app1", "store2"),
        ns("iso-app2", "store2"),
    ];
    for (i, n) in spaces.iter().enumerate() {
        ok(
            "set",
            kv.set(n, "shared", format!("value {i}").as_bytes(), &Q)
                .await,
        );
        ok(
            "set_many",
            kv.set_many(n, &[(format!("only-{i}"), vec![i as u8])], &Q)
                .await,
        );
        assert_eq!(
            ok(
                "increment",
                kv.increment(n, "count", i as u64 + 1, &Q).await
            ),
            i as u64 + 1
        );
    }
    for (i, n) in spaces.iter().enumerate() {
        assert_eq!(
            ok("get", kv.get(n, "shared").await),
            Some(format!("value {i}").into_bytes()),
            "{n:?}"
        );
        assert_eq!(
            ok("get counter", kv.get(n, "count").await),
            Some((i + 1).to_string().into_bytes())
        );
        let mut want = vec![
            "count".to_string(),
            format!("only-{i}"),
            "shared".to_string(),
        ];
        want.sort();
        assert_eq!(list_all(kv, n, 100).await, want, "{n:?}");
        for j in 0..spaces.len() {
            let others = format!("only-{j}");
            assert_eq!(ok("exists", kv.exists(n, &others).await), i == j);
        }
    }
    // Deleting in one namespace leaves the others alone.
    ok("delete", kv.delete(&spaces[0], "shared").await);
    ok(
        "delete_many",
        kv.delete_many(&spaces[1], &strings(&["count"])).await,
    );
    assert_eq!(ok("get", kv.get(&spaces[0], "shared").await), None);
    assert_eq!(ok("get", kv.get(&spaces[1], "count").await), None);
    for n in &spaces[1..] {
        assert!(ok("exists", kv.exists(n, "shared").await), "{n:?}");
    }
    for n in [&spaces[0], &spaces[2], &spaces[3]] {
        assert!(ok("exists", kv.exists(n, "count").await), "{n:?}");
    }
}

/// App, store and key names that a naive `app:store:key` join would confuse.
async fn awkward_names(kv: &dyn KvBackend) {
    // Each (namespace, key) pair would be the same string "a:b:c:k" when joined naively,
    // and the same with other separators or percent-decoding.
    let cases = [
        (ns("a:b", "c"), "k"),
        (ns("a", "b:c"), "k"),
        (ns("a", "b"), "c:k"),
        (ns("a:b:c", ""), "k"),
        (ns("", "a:b:c"), "k"),
        (ns("a", ""), "b:c:k"),
        (ns("a%3Ab", "c"), "k"),
        (ns("a", "b%3Ac"), "k"),
        (ns("{a", "b}"), "c:k"),
        (ns("{a:b}", "c"), "k"),
        (ns("a*", "b?"), "[c]:k"),
        (ns("a\\", "b"), "c:k"),
        (ns("ключ", "🔑"), "значение:k"),
        (ns("ключ:🔑", ""), "значение:k"),
    ];
    for (i, (n, key)) in cases.iter().enumerate() {
        ok(
            "set",
            kv.set(n, key, format!("case {i}").as_bytes(), &Q).await,
        );
    }
    for (i, (n, key)) in cases.iter().enumerate() {
        assert_eq!(
            ok("get", kv.get(n, key).await),
            Some(format!("case {i}").into_bytes()),
            "{n:?} {key:?}"
        );
        assert_eq!(list_all(kv, n, 100).await, vec![key.to_string()], "{n:?}");
    }
    // Unicode keys within one namespace.
    let n = ns("unicode", "s");
    let keys = [
        "日本語",
        "emoji 🔑",
        "ключ",
        "a:b",
        ":",
        "::",
        "%3A",
        "{x}",
        "*",
        " ",
        "",
    ];
    for (i, key) in keys.iter().enumerate() {
        ok("set", kv.set(&n, key, &[i as u8], &Q).await);
    }
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(
            ok("get", kv.get(&n, key).await),
            Some(vec![i as u8]),
            "{key:?}"
        );
    }
    let mut sorted = strings(&keys);
    sorted.sort();
    assert_eq!(list_all(kv, &n, 4).await, sorted);
}

/// Many increments racing on one counter lose nothing.
async fn concurrent_increments(kvs: Vec<Arc<dyn KvBackend>>) {
    let n = ns("race", "s");
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..16 {
        let kv = Arc::clone(&kvs[t % kvs.len()]);
        let n = n.clone();
        tasks.spawn(async move {
            for _ in 0..25 {
                ok("increment", kv.increment(&n, "hits", 2, &Q).await);
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        if let Err(e) = r {
            panic!("increment task: {e}");
        }
    }
    assert_eq!(
        ok("get", kvs[0].get(&n, "hits").await),
        Some(b"800".to_vec())
    );
}

// ---------------------------------------------------------------------------------
// SQLite

fn tempdir() -> tempfile::TempDir {
    match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("tempdir: {e}"),
    }
}

fn open_sqlite(path: &Path) -> SqliteKv {
    ok("open", SqliteKv::open(path))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_conformance() {
    let dir = tempdir();
    let kv = open_sqlite(&dir.path().join("kv.sqlite"));
    conformance(&kv).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_a_waiting_writer_does_not_block_other_apps() {
    // Another process holds the write lock, so app `a`'s write waits (up to the busy
    // timeout). With one connection behind one mutex, app `b`'s read waited with it.
    let dir = tempdir();
    let path = dir.path().join("kv.sqlite");
    let kv = Arc::new(open_sqlite(&path));
    ok("seed", kv.set(&ns("b", "s"), "k", b"v", &Q).await);
    let blocker = match rusqlite::Connection::open(&path) {
        Ok(c) => c,
        Err(e) => panic!("open: {e}"),
    };
    if let Err(e) = blocker.execute_batch("BEGIN IMMEDIATE") {
        panic!("lock: {e}");
    }
    let writer = {
        let kv = Arc::clone(&kv);
        tokio::spawn(async move { kv.set(&ns("a", "s"), "k", b"v", &Q).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let read = tokio::time::timeout(Duration::from_secs(2), kv.get(&ns("b", "s"), "k")).await;
    assert!(
        matches!(read, Ok(Ok(Some(ref v))) if v == b"v"),
        "read of app b: {read:?} after {:?}",
        started.elapsed()
    );
    if let Err(e) = blocker.execute_batch("COMMIT") {
        panic!("unlock: {e}");
    }
    match writer.await {
        Ok(r) => ok("the waiting write", r),
        Err(e) => panic!("writer: {e}"),
    }
}

#[tokio::test]
async fn sqlite_usage_of_a_database_from_before_quotas_is_counted() {
    let dir = tempdir();
    let path = dir.path().join("kv.sqlite");
    {
        let old = match rusqlite::Connection::open(&path) {
            Ok(c) => c,
            Err(e) => panic!("open: {e}"),
        };
        let made = old.execute_batch(
            "CREATE TABLE kv (app TEXT NOT NULL, store TEXT NOT NULL, key TEXT NOT NULL,
                 value BLOB NOT NULL, PRIMARY KEY (app, store, key)) WITHOUT ROWID;
             INSERT INTO kv VALUES ('shop', 's', 'ключ', x'00010203');
             INSERT INTO kv VALUES ('shop', 't', 'k', x'');
             INSERT INTO kv VALUES ('blog', 's', 'k', x'00');",
        );
        if let Err(e) = made {
            panic!("old schema: {e}");
        }
    }
    let kv = open_sqlite(&path);
    assert_eq!(
        ok("usage", kv.usage("shop").await),
        KvUsage {
            keys: 2,
            bytes: 8 + 4 + 1
        }
    );
    assert_eq!(
        ok("usage", kv.usage("blog").await),
        KvUsage { keys: 1, bytes: 2 }
    );
    let quota = KvQuota {
        max_keys: 2,
        max_bytes: 1000,
    };
    match kv.set(&ns("shop", "s"), "new", b"", &quota).await {
        Err(KvError::QuotaExceeded { what: "keys", .. }) => {}
        other => panic!("over quota: {other:?}"),
    }
    drop(kv);
    // Reopening does not count twice.
    let kv = open_sqlite(&path);
    assert_eq!(ok("usage", kv.usage("shop").await).keys, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_increments_are_atomic_across_connections() {
    let dir = tempdir();
    let path = dir.path().join("kv.sqlite");
    // Two handles on one file, as two server processes on one data directory would be.
    let handles: Vec<Arc<dyn KvBackend>> = (0..4)
        .map(|_| Arc::new(open_sqlite(&path)) as Arc<dyn KvBackend>)
        .collect();
    concurrent_increments(handles).await;
}

#[tokio::test]
async fn sqlite_data_survives_reopening() {
    let dir = tempdir();
    let path = dir.path().join("kv.sqlite");
    let n = ns("app", "store");
    {
        let kv = open_sqlite(&path);
        ok("set", kv.set(&n, "greeting", b"hello", &Q).await);
        ok("set", kv.set(&n, "gone", b"x", &Q).await);
        ok("delete", kv.delete(&n, "gone").await);
        ok("increment", kv.increment(&n, "visits", 41, &Q).await);
        ok("increment", kv.increment(&n, "visits", 1, &Q).await);
        ok(
            "set_many",
            kv.set_many(
                &ns("other", "store"),
                &[("greeting".into(), b"bye".to_vec())],
                &Q,
            )
            .await,
        );
    }
    let kv = open_sqlite(&path);
    assert_eq!(
        ok("get", kv.get(&n, "greeting").await),
        Some(b"hello".to_vec())
    );
    assert_eq!(ok("get", kv.get(&n, "gone").await), None);
    assert_eq!(ok("get", kv.get(&n, "visits").await), Some(b"42".to_vec()));
    assert_eq!(ok("increment", kv.increment(&n, "visits", 1, &Q).await), 43);
    assert_eq!(
        ok("get", kv.get(&ns("other", "store"), "greeting").await),
        Some(b"bye".to_vec())
    );
    assert_eq!(
        list_all(&kv, &n, 100).await,
        strings(&["greeting", "visits"])
    );
}

#[test]
fn sqlite_open_errors_name_the_path() {
    let dir = tempdir();
    let path = dir.path().join("no-such-dir").join("kv.sqlite");
    match SqliteKv::open(&path) {
        Ok(_) => panic!("opened a database in a missing directory"),
        Err(e) => {
            let message = e.to_string();
            assert!(message.contains(&path.display().to_string()), "{message}");
        }
    }
    // Not a database.
    let junk = dir.path().join("junk.sqlite");
    if let Err(e) = std::fs::write(&junk, vec![0x42u8; 8192]) {
        panic!("write junk: {e}");
    }
    match SqliteKv::open(&junk) {
        Ok(_) => panic!("opened a file that is not a database"),
        Err(e) => {
            let message = e.to_string();
            assert!(message.contains(&junk.display().to_string()), "{message}");
        }
    }
}

// ---------------------------------------------------------------------------------
// Redis

/// A free loopback port: bind port 0, note the port, release it.
fn free_port() -> u16 {
    let listener = match TcpListener::bind("127.0.0.1:0") {
        Ok(l) => l,
        Err(e) => panic!("bind 127.0.0.1:0: {e}"),
    };
    match listener.local_addr() {
        Ok(a) => a.port(),
        Err(e) => panic!("local_addr: {e}"),
    }
}

/// A `redis-server` of our own on a free loopback port, killed on drop.
struct RedisServer {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl RedisServer {
    fn start() -> RedisServer {
        let dir = tempdir();
        let port = free_port();
        let log = dir.path().join("redis.log");
        let spawned = Command::new("redis-server")
            .args(["--port", &port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "redis-server is not installed, and the Redis backend tests need a real \
                 one: run `apt-get install redis-server` (or put redis-server on PATH)"
            ),
            Err(e) => panic!("cannot start redis-server: {e}"),
        };
        let mut server = RedisServer { child, port, dir };
        server.wait_ready();
        server
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    /// Polls until the server answers PING, for up to 5 s.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "redis-server on port {} exited with {status}; its log:\n{}",
                    self.port,
                    self.log()
                );
            }
            if self.ping() {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "redis-server on port {} did not answer PING within 5 s; its log:\n{}",
                    self.port,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        if stream.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut reply = [0u8; 7];
        stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn connect(server: &RedisServer) -> RedisKv {
    ok("connect", RedisKv::connect(&server.url()).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_conformance() {
    let server = RedisServer::start();
    let kv = connect(&server).await;
    conformance(&kv).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_increments_are_atomic_across_connections() {
    let server = RedisServer::start();
    // Two clients, as two nodes would have.
    let a: Arc<dyn KvBackend> = Arc::new(connect(&server).await);
    let b: Arc<dyn KvBackend> = Arc::new(connect(&server).await);
    concurrent_increments(vec![a, b]).await;
}

#[tokio::test]
async fn redis_data_is_shared_between_clients() {
    let server = RedisServer::start();
    let a = connect(&server).await;
    let b = connect(&server).await;
    let n = ns("app", "store");
    ok("set", a.set(&n, "k", b"from a", &Q).await);
    assert_eq!(ok("get", b.get(&n, "k").await), Some(b"from a".to_vec()));
    assert_eq!(list_all(&b, &n, 100).await, strings(&["k"]));
}

#[tokio::test]
async fn redis_connect_to_a_closed_port_fails_fast() {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let started = Instant::now();
    let result = RedisKv::connect(&url).await;
    let took = started.elapsed();
    match result {
        Ok(_) => panic!("connected to a closed port"),
        Err(e) => {
            let message = e.to_string();
            assert!(
                message.contains(&url),
                "the error must name the URL: {message}"
            );
        }
    }
    assert!(took < Duration::from_secs(6), "took {took:?}");
}

#[tokio::test]
async fn redis_connect_to_a_silent_server_fails_fast() {
    // Accepts TCP connections (the kernel completes the handshake) but never answers.
    let listener = match TcpListener::bind("127.0.0.1:0") {
        Ok(l) => l,
        Err(e) => panic!("bind: {e}"),
    };
    let port = match listener.local_addr() {
        Ok(a) => a.port(),
        Err(e) => panic!("local_addr: {e}"),
    };
    let url = format!("redis://:hunter2@127.0.0.1:{port}/0");
    let started = Instant::now();
    let result = RedisKv::connect(&url).await;
    let took = started.elapsed();
    drop(listener);
    match result {
        Ok(_) => panic!("connected to a server that never answers"),
        Err(e) => {
            let message = e.to_string();
            assert!(
                message.contains(&format!("redis://:***@127.0.0.1:{port}/0")),
                "the error must name the URL: {message}"
            );
            assert!(
                !message.contains("hunter2"),
                "the password leaked: {message}"
            );
        }
    }
    assert!(took < Duration::from_secs(6), "took {took:?}");
}

#[tokio::test]
async fn redis_passwords_never_appear_in_errors() {
    // The unix-socket form carries its password in the query.
    for url in [
        "redis+unix:///nonexistent/wharf-test.sock?db=0&pass=hunter2",
        "redis+unix:///nonexistent/wharf-test.sock?password=hunter2",
    ] {
        match RedisKv::connect(url).await {
            Ok(_) => panic!("connected to a missing socket"),
            Err(e) => {
                let message = e.to_string();
                assert!(
                    !message.contains("hunter2"),
                    "the password leaked: {message}"
                );
                assert!(message.contains("wharf-test.sock"), "{message}");
            }
        }
    }
    let port = free_port();
    let url = format!("redis://admin:hunter2@127.0.0.1:{port}/0");
    match RedisKv::connect(&url).await {
        Ok(_) => panic!("connected to a closed port"),
        Err(e) => {
            let message = e.to_string();
            assert!(
                !message.contains("hunter2"),
                "the password leaked: {message}"
            );
            assert!(message.contains("redis://admin:***@127.0.0.1"), "{message}");
        }
    }
    assert_eq!(
        wharf_host_keyvalue::redact_url("redis+unix:///s.sock?pass=hunter2&db=1"),
        "redis+unix:///s.sock?pass=***&db=1"
    );
}

#[tokio::test]
async fn redis_invalid_url_is_an_error_naming_it() {
    match RedisKv::connect("http://example.com").await {
        Ok(_) => panic!("accepted an http URL"),
        Err(e) => assert!(e.to_string().contains("http://example.com"), "{e}"),
    }
}

#[tokio::test]
async fn redis_failures_after_connecting_are_errors_not_hangs() {
    let mut server = RedisServer::start();
    let kv = connect(&server).await;
    let n = ns("app", "store");
    ok("set", kv.set(&n, "k", b"v", &Q).await);
    let _ = server.child.kill();
    let _ = server.child.wait();
    let started = Instant::now();
    match kv.get(&n, "k").await {
        Ok(v) => panic!("get from a stopped server returned {v:?}"),
        Err(e) => {
            let message = e.to_string();
            assert!(message.contains(&server.url()), "{message}");
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
}
