//! The SQLite registry used as the server uses it: through the async `Registry` trait,
//! from several tasks, across reopens, through its change log and watches, and across a
//! real `kill -9`.

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest, Sha256};
use wharf_registry::{
    AppRecord, Change, ChangeKind, ComponentBlob, NewApp, Registry, RegistryError, RegistryOptions,
    SqliteRegistry, Watch,
};

/// The failure bound for anything a watch should deliver promptly.
const PROMPTLY: Duration = Duration::from_secs(5);

fn open(dir: &Path) -> SqliteRegistry {
    SqliteRegistry::open(dir).expect("open registry")
}

/// Stores `bytes` and describes them as component `id`.
async fn stored(reg: &dyn Registry, id: &str, bytes: &[u8]) -> ComponentBlob {
    let sha256 = reg.put_blob(Arc::from(bytes)).await.expect("put_blob");
    ComponentBlob {
        id: id.to_owned(),
        sha256,
        size: bytes.len() as u64,
    }
}

fn new_app(name: &str, version: &str, components: Vec<ComponentBlob>) -> NewApp {
    NewApp {
        name: name.to_owned(),
        version: version.to_owned(),
        manifest: format!("name = \"{name}\"\nversion = \"{version}\"\n"),
        components,
    }
}

/// Deploys `name` at `version` with one fresh component.
async fn deploy(reg: &dyn Registry, name: &str, version: &str) -> AppRecord {
    let blob = stored(reg, "main", format!("{name} {version}").as_bytes()).await;
    reg.deploy(new_app(name, version, vec![blob]), None)
        .await
        .expect("deploy")
}

/// Where a blob's file lives in a state dir.
fn blob_file(state: &Path, sha: &str) -> PathBuf {
    state.join("blobs").join(&sha[..2]).join(sha)
}

/// The next item of a watch, failing the test if none arrives within [`PROMPTLY`].
async fn next_change(watch: &mut Watch) -> Option<wharf_registry::Result<Change>> {
    tokio::time::timeout(PROMPTLY, watch.next())
        .await
        .expect("the watch delivered nothing within 5 s")
}

/// The next change of a watch, which must be there and not an error.
async fn expect_change(watch: &mut Watch) -> Change {
    next_change(watch)
        .await
        .expect("the watch ended early")
        .expect("the watch yielded an error")
}

/// (seq, "deployed name revision" | "removed name revision") for compact assertions.
fn describe(change: &Change) -> (u64, String) {
    let what = match &change.kind {
        ChangeKind::Deployed(r) => format!("deployed {} {}", r.name, r.revision),
        ChangeKind::Removed { name, revision } => format!("removed {name} {revision}"),
    };
    (change.seq, what)
}

fn set_age(path: &Path, age: Duration) {
    File::open(path)
        .and_then(|f| f.set_modified(SystemTime::now() - age))
        .expect("set mtime");
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[tokio::test]
async fn put_blob_is_idempotent_and_fans_out_by_two_hex_digits() {
    let dir = tempfile::tempdir().unwrap();
    let reg = open(dir.path());
    let bytes: &[u8] = b"\0asm\x01\0\0\0 hello";
    let sha = reg.put_blob(Arc::from(bytes)).await.unwrap();
    assert_eq!(sha, sha256_hex(bytes));
    assert_eq!(sha.len(), 64);

    let path = reg.fetch_blob(&sha).await.unwrap();
    assert_eq!(
        path,
        dir.path().join("blobs").join(&sha[..2]).join(&sha),
        "layout is <state>/blobs/<first 2 hex>/<sha>"
    );
    assert_eq!(fs::read(&path).unwrap(), bytes);

    // Again: same answer, same single file, no temp files left behind.
    assert_eq!(reg.put_blob(Arc::from(bytes)).await.unwrap(), sha);
    let names: Vec<_> = fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from(&sha)]);
    assert_eq!(reg.get_blob(&sha).await.unwrap(), bytes);

    // The empty blob is a blob like any other.
    let empty = reg.put_blob(Arc::from(&b""[..])).await.unwrap();
    assert_eq!(reg.get_blob(&empty).await.unwrap(), b"");
}

#[tokio::test]
async fn get_blob_detects_a_corrupted_file_and_put_blob_repairs_it() {
    let dir = tempfile::tempdir().unwrap();
    let reg = open(dir.path());
    let bytes = vec![7u8; 10_000];
    let sha = reg.put_blob(Arc::from(bytes.as_slice())).await.unwrap();
    let path = reg.fetch_blob(&sha).await.unwrap();

    // Same size, one bit flipped: only the hash can tell.
    let mut corrupt = bytes.clone();
    corrupt[5000] ^= 1;
    fs::write(&path, &corrupt).unwrap();
    let err = reg.get_blob(&sha).await.unwrap_err();
    assert!(matches!(err, RegistryError::Storage(_)), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&sha) && msg.contains("corrupt"), "{msg}");

    // Storing the bytes again (a redeploy) rewrites the damaged copy.
    assert_eq!(
        reg.put_blob(Arc::from(bytes.as_slice())).await.unwrap(),
        sha
    );
    assert_eq!(reg.get_blob(&sha).await.unwrap(), bytes);

    // A truncated copy too.
    fs::write(&path, &bytes[..10]).unwrap();
    assert!(reg.get_blob(&sha).await.is_err());
    reg.put_blob(Arc::from(bytes.as_slice())).await.unwrap();
    assert_eq!(reg.get_blob(&sha).await.unwrap(), bytes);
}

#[tokio::test]
async fn fetch_blob_verifies_the_content_once_and_reports_corrupt_and_missing_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let reg = open(dir.path());
    let bytes = vec![9u8; 70_000];
    let sha = reg.put_blob(Arc::from(bytes.as_slice())).await.unwrap();
    let path = blob_file(dir.path(), &sha);

    // Corrupted on disk before this process ever fetched it: same size, one byte off.
    let mut corrupt = bytes.clone();
    corrupt[65_000] ^= 0x80;
    fs::write(&path, &corrupt).unwrap();
    let err = reg.fetch_blob(&sha).await.unwrap_err();
    assert!(matches!(err, RegistryError::Storage(_)), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains(&sha) && msg.contains("corrupt") && msg.contains("redeploy"),
        "{msg}"
    );
    // Not remembered as verified: it fails again.
    assert!(matches!(
        reg.fetch_blob(&sha).await,
        Err(RegistryError::Storage(_))
    ));

    // Repaired by storing it again; now it verifies and returns the local file.
    reg.put_blob(Arc::from(bytes.as_slice())).await.unwrap();
    assert_eq!(reg.fetch_blob(&sha).await.unwrap(), path);
    assert_eq!(fs::read(&path).unwrap(), bytes);

    // Missing: MissingBlob naming it, also for a digest that was verified before and
    // whose file has since disappeared.
    let absent = sha256_hex(b"never stored");
    assert!(
        matches!(reg.fetch_blob(&absent).await, Err(RegistryError::MissingBlob(s)) if s == absent)
    );
    fs::remove_file(&path).unwrap();
    assert!(matches!(reg.fetch_blob(&sha).await, Err(RegistryError::MissingBlob(s)) if s == sha));
}

#[tokio::test]
async fn missing_blobs_are_reported_as_missing() {
    let dir = tempfile::tempdir().unwrap();
    let reg = open(dir.path());
    let absent = sha256_hex(b"never stored");
    assert!(
        matches!(reg.fetch_blob(&absent).await, Err(RegistryError::MissingBlob(s)) if s == absent)
    );
    assert!(
        matches!(reg.get_blob(&absent).await, Err(RegistryError::MissingBlob(s)) if s == absent)
    );
}

#[tokio::test]
async fn invalid_digests_are_rejected_before_touching_the_file_system() {
    let dir = tempfile::tempdir().unwrap();
    let reg = open(dir.path());
    let upper = sha256_hex(b"x").to_uppercase();
    let bad = [
        "../../etc/passwd",
        "",
        "ab",
        "/etc/passwd",
        upper.as_str(),
        "zz00000000000000000000000000000000000000000000000000000000000000",
        "../00000000000000000000000000000000000000000000000000000000000000",
        "00000000000000000000000000000000000000000000000000000000000000000",
    ];
    for sha in bad {
        for result in [
            reg.fetch_blob(sha).await.map(|_| ()),
            reg.get_blob(sha).await.map(|_| ()),
        ] {
            match result {
                Err(RegistryError::Storage(e)) => {
                    assert!(e.to_string().contains("not a blob digest"), "{e:#}")
                }
                other => panic!("{sha:?} accepted: {other:?}"),
            }
        }
        let app = new_app(
            "evil",
            "1",
            vec![ComponentBlob {
                id: "main".into(),
                sha256: sha.into(),
                size: 0,
            }],
        );
        assert!(
            matches!(reg.deploy(app, None).await, Err(RegistryError::Storage(_))),
            "{sha:?}"
        );
    }
    assert!(reg.list().await.unwrap().is_empty());
    assert_eq!(reg.snapshot().await.unwrap().seq, 0, "no change recorded");
}

#[tokio::test]
async fn deploy_and_replace_increment_the_revision() {
    let dir = tempfile::tempdir().unwrap();
    let reg = open(dir.path());
    let before = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;

    let c1 = stored(&reg, "main", b"one").await;
    let first = reg
        .deploy(new_app("hello", "1.0.0", vec![c1.clone()]), None)
        .await
        .unwrap();
    assert_eq!(first.revision, 1);
    assert_eq!(first.version, "1.0.0");
    assert_eq!(first.components, vec![c1]);
    assert!(first.deployed_at_ms >= before);
    assert_eq!(reg.get("hello").await.unwrap(), Some(first.clone()));

    let c2 = stored(&reg, "main", b"two").await;
    let c3 = stored(&reg, "worker", b"three").await;
    let second = reg
        .deploy(
            new_app("hello", "1.1.0", vec![c2.clone(), c3.clone()]),
            None,
        )
        .await
        .unwrap();
    assert_eq!(second.revision, 2);
    assert_eq!(second.components, vec![c2, c3]);
    assert_eq!(second.manifest, "name = \"hello\"\nversion = \"1.1.0\"\n");
    assert_eq!(reg.get("hello").await.unwrap(), Some(second));

    // Redeploying the very same content is still a new revision.
    let third = deploy(&reg, "hello", "1.1.0").await;
    assert_eq!(third.revision, 3);
    assert_eq!(reg.get("nope").await.unwrap(), None);
}

#[tokio::test]
async fn expected_revision_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let reg = open(dir.path());
    let c = stored(&reg, "main", b"code").await;
    let app = |v: &str| new_app("app", v, vec![c.clone()]);

    // Some(n > 0) for an app that does not exist.
    match reg.deploy(app("x"), Some(1)).await {
        Err(RegistryError::Conflict {
            name,
            expected,
            found,
        }) => assert_eq!((name.as_str(), expected, found), ("app", Some(1), None)),
        other => panic!("{other:?}"),
    }
    // Some(0): must not exist yet.
    assert_eq!(reg.deploy(app("1"), Some(0)).await.unwrap().revision, 1);
    let err = reg.deploy(app("x"), Some(0)).await.unwrap_err();
    assert!(
        matches!(
            err,
            RegistryError::Conflict {
                expected: None,
                found: Some(1),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("retry the deploy"), "{err}");
    // Some(n): must be at n.
    assert_eq!(reg.deploy(app("2"), Some(1)).await.unwrap().revision, 2);
    assert!(matches!(
        reg.deploy(app("x"), Some(1)).await,
        Err(RegistryError::Conflict {
            expected: Some(1),
            found: Some(2),
            ..
        })
    ));
    assert!(matches!(
        reg.deploy(app("x"), Some(3)).await,
        Err(RegistryError::Conflict {
            expected: Some(3),
            found: Some(2),
            ..
        })
    ));
    // None: don't care.
    assert_eq!(reg.deploy(app("3"), None).await.unwrap().revision, 3);
    // The failed attempts changed nothing.
    let now = reg.get("app").await.unwrap().unwrap();
    assert_eq!((now.version.as_str(), now.revision), ("3", 3));
}

#[tokio::test]
async fn compare_and_set_on_deploy_and_remove() {
    let dir = tempfile::tempdir().unwrap();
    let reg = open(dir.path());
    let c = stored(&reg, "main", b"cas").await;
    let app = |v: &str| new_app("app", v, vec![c.clone()]);
    let first = reg.deploy(app("1"), Some(0)).await.unwrap();
    assert_eq!(first.revision, 1);

    // Some(0) on an existing app.
    match reg.deploy(app("x"), Some(0)).await {
        Err(RegistryError::Conflict {
            name,
            expected,
            found,
        }) => assert_eq!((name.as_str(), expected, found), ("app", None, Some(1))),
        other => panic!("Some(0) on an existing app must conflict: {other:?}"),
    }
    // Some(current) succeeds with revision + 1; afterwards that revision is stale.
    assert_eq!(reg.deploy(app("2"), Some(1)).await.unwrap().revision, 2);
    match reg.deploy(app("x"), Some(1)).await {
        Err(RegistryError::Conflict {
            expected, found, ..
        }) => assert_eq!((expected, found), (Some(1), Some(2))),
        other => panic!("a stale revision must conflict: {other:?}"),
    }
    assert_eq!(reg.deploy(app("3"), Some(2)).await.unwrap().revision, 3);

    // Remove with a stale revision: Conflict, and the app is still there.
    match reg.remove("app", Some(2)).await {
        Err(RegistryError::Conflict {
            name,
            expected,
            found,
        }) => assert_eq!((name.as_str(), expected, found), ("app", Some(2), Some(3))),
        other => panic!("a stale remove must conflict: {other:?}"),
    }
    assert!(matches!(
        reg.remove("app", Some(0)).await,
        Err(RegistryError::Conflict {
            expected: None,
            found: Some(3),
            ..
        })
    ));
    let still = reg
        .get("app")
        .await
        .unwrap()
        .expect("app survives a failed remove");
    assert_eq!((still.version.as_str(), still.revision), ("3", 3));
    // Failed attempts recorded no change: 3 deploys so far.
    assert_eq!(reg.snapshot().await.unwrap().seq, 3);

    // With the current revision it goes; an absent app is NotFound whatever is expected.
    assert_eq!(reg.remove("app", Some(3)).await.unwrap(), still);
    assert!(matches!(
        reg.remove("app", Some(3)).await,
        Err(RegistryError::NotFound(n)) if n == "app"
    ));
    assert_eq!(reg.get("app").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_deploys_with_the_same_expected_revision_let_exactly_one_win() {
    let dir = tempfile::tempdir().unwrap();
    let reg = open(dir.path());
    let first = deploy(&reg, "app", "0").await;
    assert_eq!(first.revision, 1);
    let tasks = 8;
    let blobs = {
        let mut blobs = Vec::new();
        for t in 0..tasks {
            blobs.push(stored(&reg, "main", format!("racer {t}").as_bytes()).await);
        }
        blobs
    };
    let start = Arc::new(tokio::sync::Barrier::new(tasks));
    let handles: Vec<_> = blobs
        .into_iter()
        .enumerate()
        .map(|(t, blob)| {
            let reg = reg.clone();
            let start = Arc::clone(&start);
            tokio::spawn(async move {
                start.wait().await;
                reg.deploy(new_app("app", &format!("racer {t}"), vec![blob]), Some(1))
                    .await
            })
        })
        .collect();
    let mut winners = Vec::new();
    let mut conflicts = 0;
    for h in handles {
        match h.await.unwrap() {
            Ok(record) => winners.push(record),
            Err(RegistryError::Conflict {
                expected, found, ..
            }) => {
                assert_eq!((expected, found), (Some(1), Some(2)));
                conflicts += 1;
            }
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one deploy wins: {winners:?}");
    assert_eq!(conflicts, tasks - 1);
    assert_eq!(winners[0].revision, 2);
    assert_eq!(reg.get("app").await.unwrap().as_ref(), Some(&winners[0]));
    // One change per successful deploy.
    assert_eq!(reg.snapshot().await.unwrap().seq, 2);
}

#[tokio::test]
async fn a_missing_blob_fails_the_deploy_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let reg = open(dir.path());
    let before = deploy(&reg, "app", "1").await;

    let present = stored(&reg, "main", b"present").await;
    let absent = ComponentBlob {
        id: "worker".into(),
        sha256: sha256_hex(b"absent"),
        size: 6,
    };
    for expected in [None, Some(1)] {
        let err = reg
            .deploy(
                new_app("app", "2", vec![present.clone(), absent.clone()]),
                expected,
            )
            .await
            .unwrap_err();
        assert!(
            matches!(&err, RegistryError::MissingBlob(s) if *s == absent.sha256),
            "{err:?}"
        );
    }
    assert_eq!(reg.get("app").await.unwrap(), Some(before));

    // And for a new app: it does not appear.
    assert!(matches!(
        reg.deploy(new_app("other", "1", vec![absent]), Some(0))
            .await,
        Err(RegistryError::MissingBlob(_))
    ));
    assert_eq!(reg.get("other").await.unwrap(), None);
    assert_eq!(
        reg.snapshot().await.unwrap().seq,
        1,
        "only the first deploy"
    );
}

#[tokio::test]
async fn a_wrong_declared_size_fails_the_deploy() {
    let dir = tempfile::tempdir().unwrap();
    let reg = open(dir.path());
    let mut c = stored(&reg, "main", b"12345").await;
    c.size = 4;
    let err = reg
        .deploy(new_app("app", "1", vec![c]), None)
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Storage(_)), "{err:?}");
    assert!(err.to_string().contains("declares 4 bytes"), "{err}");
    assert_eq!(reg.get("app").await.unwrap(), None);
}

#[tokio::test]
async fn remove_forgets_the_app_and_its_revision() {
    let dir = tempfile::tempdir().unwrap();
    let reg = open(dir.path());
    deploy(&reg, "app", "1").await;
    let second = deploy(&reg, "app", "2").await;
    let keep = deploy(&reg, "keep", "1").await;

    assert_eq!(reg.remove("app", None).await.unwrap(), second);
    assert_eq!(reg.get("app").await.unwrap(), None);
    assert!(matches!(reg.remove("app", None).await, Err(RegistryError::NotFound(n)) if n == "app"));
    assert!(
        matches!(reg.remove("never", None).await, Err(RegistryError::NotFound(n)) if n == "never")
    );
    assert_eq!(
        RegistryError::NotFound("never".into()).to_string(),
        "app `never` is not deployed"
    );
    // Blobs stay until gc.
    for c in &second.components {
        reg.get_blob(&c.sha256).await.unwrap();
    }
    // A later deploy of the name starts again at 1.
    assert_eq!(deploy(&reg, "app", "3").await.revision, 1);
    assert_eq!(reg.get("keep").await.unwrap(), Some(keep));
}

#[tokio::test]
async fn list_is_sorted_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let reg = open(dir.path());
    assert!(reg.list().await.unwrap().is_empty());
    for name in ["zeta", "alpha", "Beta", "mid", "alpha-2", "émile"] {
        deploy(&reg, name, "1").await;
    }
    deploy(&reg, "mid", "2").await;
    let list = reg.list().await.unwrap();
    let names: Vec<_> = list.iter().map(|r| r.name.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    assert_eq!(names, ["Beta", "alpha", "alpha-2", "mid", "zeta", "émile"]);
    assert_eq!(list[3].revision, 2);
    let snapshot = reg.snapshot().await.unwrap();
    assert_eq!(snapshot.apps, list);
    assert_eq!(snapshot.seq, 7);
}

#[tokio::test]
async fn gc_removes_only_unreferenced_old_blobs_and_old_temp_files() {
    let dir = tempfile::tempdir().unwrap();
    let reg = open(dir.path());
    let hour = Duration::from_secs(3600);
    let min_age = Duration::from_secs(60);

    let referenced = deploy(&reg, "app", "1").await.components[0].sha256.clone();
    let removed_app = deploy(&reg, "gone", "1").await.components[0].sha256.clone();
    reg.remove("gone", None).await.unwrap();
    let put = |bytes: &'static [u8]| reg.put_blob(Arc::from(bytes));
    let old_garbage = put(b"old garbage").await.unwrap();
    let young_garbage = put(b"young garbage").await.unwrap();
    let restored = put(b"stored again").await.unwrap();
    for sha in [&referenced, &removed_app, &old_garbage, &restored] {
        set_age(&reg.fetch_blob(sha).await.unwrap(), hour);
    }
    // Storing existing bytes again (a deploy in progress) makes them young again.
    put(b"stored again").await.unwrap();

    let fan = reg
        .fetch_blob(&referenced)
        .await
        .unwrap()
        .parent()
        .unwrap()
        .to_owned();
    let old_tmp = fan.join(".tmp-leftover-of-a-crash");
    let young_tmp = fan.join(".tmp-being-written");
    let stranger = fan.join("README");
    for f in [&old_tmp, &young_tmp, &stranger] {
        fs::write(f, b"x").unwrap();
    }
    set_age(&old_tmp, hour);
    set_age(&stranger, hour);

    assert_eq!(
        reg.gc(min_age).await.unwrap(),
        3,
        "removed_app, old_garbage, old_tmp"
    );
    for sha in [&referenced, &young_garbage, &restored] {
        reg.get_blob(sha).await.unwrap();
    }
    for sha in [&removed_app, &old_garbage] {
        // Also after they were fetched (and verified) before gc.
        assert!(matches!(
            reg.fetch_blob(sha).await,
            Err(RegistryError::MissingBlob(_))
        ));
    }
    assert!(!old_tmp.exists());
    assert!(young_tmp.exists() && stranger.exists());
    assert_eq!(reg.gc(min_age).await.unwrap(), 0);

    // With no grace period, everything unreferenced goes; never a referenced blob or a
    // file that is not ours.
    assert_eq!(
        reg.gc(Duration::ZERO).await.unwrap(),
        3,
        "young_garbage, restored, young_tmp"
    );
    reg.get_blob(&referenced).await.unwrap();
    assert!(stranger.exists());
    let app = reg.get("app").await.unwrap().unwrap();
    assert_eq!(app.components[0].sha256, referenced);
}

#[tokio::test]
async fn state_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = {
        let reg = open(dir.path());
        deploy(&reg, "a", "1").await;
        let a = deploy(&reg, "a", "2").await;
        let b = deploy(&reg, "b", "1").await;
        deploy(&reg, "c", "1").await;
        reg.remove("c", None).await.unwrap();
        (a, b)
    };
    let reg = open(dir.path());
    assert_eq!(reg.state_dir(), dir.path());
    assert_eq!(reg.list().await.unwrap(), vec![a.clone(), b]);
    assert_eq!(
        reg.get_blob(&a.components[0].sha256).await.unwrap(),
        b"a 2".to_vec()
    );
    assert_eq!(deploy(&reg, "a", "3").await.revision, 3);
}

// --- The change log and watches --------------------------------------------------------

#[tokio::test]
async fn watch_from_zero_replays_the_history_in_order_then_delivers_live_changes() {
    let dir = tempfile::tempdir().unwrap();
    let reg = open(dir.path());
    let a1 = deploy(&reg, "a", "1").await;
    let b1 = deploy(&reg, "b", "1").await;
    let a2 = deploy(&reg, "a", "2").await;
    let b_last = reg.remove("b", None).await.unwrap();
    assert_eq!(b_last, b1);

    let mut watch = reg.watch(0).await.unwrap();
    let mut history = Vec::new();
    for _ in 0..4 {
        history.push(expect_change(&mut watch).await);
    }
    assert_eq!(
        history.iter().map(describe).collect::<Vec<_>>(),
        [
            (1, "deployed a 1".to_owned()),
            (2, "deployed b 1".to_owned()),
            (3, "deployed a 2".to_owned()),
            (4, "removed b 1".to_owned()),
        ]
    );
    // The full records, not just the names.
    assert_eq!(history[0].kind, ChangeKind::Deployed(a1));
    assert_eq!(history[1].kind, ChangeKind::Deployed(b1));
    assert_eq!(history[2].kind, ChangeKind::Deployed(a2.clone()));
    // Nothing more yet.
    assert!(
        tokio::time::timeout(Duration::from_millis(100), watch.next())
            .await
            .is_err(),
        "no fifth change exists yet"
    );

    // A change committed after the watch started, from another task.
    let writer = reg.clone();
    let live = tokio::spawn(async move { deploy(&writer, "a", "3").await });
    let change = expect_change(&mut watch).await;
    let a3 = live.await.unwrap();
    assert_eq!(change.seq, 5);
    assert_eq!(change.kind, ChangeKind::Deployed(a3));
    // And a live removal, delivered with its last revision.
    reg.remove("a", Some(3)).await.unwrap();
    assert_eq!(
        describe(&expect_change(&mut watch).await),
        (6, "removed a 3".to_owned())
    );
}

#[tokio::test]
async fn snapshot_seq_and_watch_see_exactly_the_later_changes() {
    let dir = tempfile::tempdir().unwrap();
    let reg = open(dir.path());
    let empty = reg.snapshot().await.unwrap();
    assert_eq!((empty.apps.len(), empty.seq), (0, 0));

    deploy(&reg, "early", "1").await;
    deploy(&reg, "early", "2").await;
    let snapshot = reg.snapshot().await.unwrap();
    assert_eq!(snapshot.seq, 2);
    assert_eq!(snapshot.apps.len(), 1);
    assert_eq!(snapshot.apps[0].revision, 2);

    // Changes between the snapshot and the watch are delivered too (from the log).
    let late1 = deploy(&reg, "late", "1").await;
    let mut watch = reg.watch(snapshot.seq).await.unwrap();
    let late2 = deploy(&reg, "late", "2").await;
    let first = expect_change(&mut watch).await;
    assert_eq!(first.seq, 3, "nothing at or before the snapshot's seq");
    assert_eq!(first.kind, ChangeKind::Deployed(late1));
    let second = expect_change(&mut watch).await;
    assert_eq!(second.seq, 4);
    assert_eq!(second.kind, ChangeKind::Deployed(late2));

    // Applying the changes to the snapshot gives the current state.
    let mut apps = snapshot.apps.clone();
    for change in [first, second] {
        if let ChangeKind::Deployed(record) = change.kind {
            apps.retain(|a| a.name != record.name);
            apps.push(record);
        }
    }
    apps.sort_by(|x, y| x.name.cmp(&y.name));
    let now = reg.snapshot().await.unwrap();
    assert_eq!((apps, 4), (now.apps, now.seq));

    // A watch from the current seq sees nothing old.
    let mut watch = reg.watch(now.seq).await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(100), watch.next())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn history_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let reg = open(dir.path());
        deploy(&reg, "a", "1").await;
        deploy(&reg, "b", "1").await;
        reg.remove("a", Some(1)).await.unwrap();
    }
    let reg = open(dir.path());
    assert_eq!(reg.snapshot().await.unwrap().seq, 3);
    let mut watch = reg.watch(0).await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(describe(&expect_change(&mut watch).await));
    }
    assert_eq!(
        seen,
        [
            (1, "deployed a 1".to_owned()),
            (2, "deployed b 1".to_owned()),
            (3, "removed a 1".to_owned()),
        ]
    );
    // Numbering continues after the reopen.
    deploy(&reg, "c", "1").await;
    assert_eq!(
        describe(&expect_change(&mut watch).await),
        (4, "deployed c 1".to_owned())
    );
}

#[tokio::test]
async fn watching_from_a_pruned_seq_yields_history_compacted() {
    let dir = tempfile::tempdir().unwrap();
    let reg = SqliteRegistry::open_with(dir.path(), RegistryOptions { history: 3 }).unwrap();
    for v in 1..=5 {
        deploy(&reg, "app", &v.to_string()).await;
    }
    // Seqs 1 and 2 are gone, 3..=5 kept.
    assert_eq!(reg.snapshot().await.unwrap().seq, 5);
    for after in [0, 1] {
        let mut watch = reg.watch(after).await.unwrap();
        match next_change(&mut watch).await {
            Some(Err(RegistryError::HistoryCompacted { after: a, oldest })) => {
                assert_eq!((a, oldest), (after, 3))
            }
            other => panic!("watch({after}) must start with HistoryCompacted: {other:?}"),
        }
        assert!(next_change(&mut watch).await.is_none(), "the watch ends");
    }
    let msg = RegistryError::HistoryCompacted {
        after: 1,
        oldest: 3,
    }
    .to_string();
    assert!(msg.contains("re-read the snapshot"), "{msg}");

    // From the last pruned seq on, the kept history is complete.
    let mut watch = reg.watch(2).await.unwrap();
    let seqs = [
        expect_change(&mut watch).await.seq,
        expect_change(&mut watch).await.seq,
        expect_change(&mut watch).await.seq,
    ];
    assert_eq!(seqs, [3, 4, 5]);

    // Pruning happens with every commit, and persists.
    reg.remove("app", None).await.unwrap();
    drop(watch);
    drop(reg);
    let conn = rusqlite::Connection::open(dir.path().join("registry.db")).unwrap();
    let kept: Vec<i64> = conn
        .prepare("SELECT seq FROM changes ORDER BY seq")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(kept, [4, 5, 6]);
}

#[tokio::test]
async fn a_watch_ends_when_the_registry_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let reg = open(dir.path());
    let clone = reg.clone();
    deploy(&reg, "a", "1").await;
    let mut watch = reg.watch(0).await.unwrap();
    assert_eq!(expect_change(&mut watch).await.seq, 1);

    // Dropping one clone does not end it: the registry lives on in the other.
    drop(reg);
    deploy(&clone, "a", "2").await;
    assert_eq!(expect_change(&mut watch).await.seq, 2);

    // Dropping the last one does, promptly, while the watch is waiting.
    let waiting = tokio::spawn(async move { next_change(&mut watch).await.map(|r| r.is_ok()) });
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(clone);
    assert_eq!(waiting.await.unwrap(), None);

    // And a watch that was never polled ends as well.
    let reg = open(dir.path());
    let mut idle = reg.watch(2).await.unwrap();
    drop(reg);
    assert!(next_change(&mut idle).await.is_none());
    // The state dir can be opened again (nothing holds the old registry).
    assert_eq!(open(dir.path()).snapshot().await.unwrap().seq, 2);
}

#[tokio::test]
async fn a_version_1_database_is_migrated_with_an_empty_history() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    // A registry as the previous wharf left it: schema version 1, one app, no log.
    let blob = b"old app";
    let sha = sha256_hex(blob);
    fs::create_dir_all(blob_file(state, &sha).parent().unwrap()).unwrap();
    fs::write(blob_file(state, &sha), blob).unwrap();
    {
        let conn = rusqlite::Connection::open(state.join("registry.db")).unwrap();
        conn.execute_batch(
            "CREATE TABLE apps (
                name           TEXT    NOT NULL PRIMARY KEY,
                version        TEXT    NOT NULL,
                revision       INTEGER NOT NULL CHECK (revision >= 1),
                manifest       TEXT    NOT NULL,
                components     TEXT    NOT NULL,
                deployed_at_ms INTEGER NOT NULL
            ) STRICT;
            PRAGMA user_version = 1;",
        )
        .unwrap();
        let components = serde_json::to_string(&[ComponentBlob {
            id: "main".into(),
            sha256: sha.clone(),
            size: blob.len() as u64,
        }])
        .unwrap();
        conn.execute(
            "INSERT INTO apps VALUES ('old', '1', 4, 'name = \"old\"', ?1, 1000)",
            [components],
        )
        .unwrap();
    }
    let reg = open(state);
    let snapshot = reg.snapshot().await.unwrap();
    assert_eq!(snapshot.seq, 0);
    assert_eq!(snapshot.apps.len(), 1);
    assert_eq!(
        (snapshot.apps[0].name.as_str(), snapshot.apps[0].revision),
        ("old", 4)
    );
    let mut watch = reg.watch(snapshot.seq).await.unwrap();
    deploy(&reg, "old", "2").await;
    assert_eq!(
        describe(&expect_change(&mut watch).await),
        (1, "deployed old 5".to_owned())
    );
}

#[test]
fn open_creates_a_private_state_dir_with_the_current_schema() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("nested").join("state");
    let reg = open(&state);
    assert!(state.join("registry.db").is_file());
    assert!(state.join("blobs").is_dir());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&state).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }
    drop(reg);

    let conn = rusqlite::Connection::open(state.join("registry.db")).unwrap();
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, 2);
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");

    // A database from a newer wharf is refused, with the fix.
    conn.pragma_update(None, "user_version", 3).unwrap();
    drop(conn);
    let err = SqliteRegistry::open(&state).err().expect("must refuse");
    let msg = err.to_string();
    assert!(
        msg.contains("schema version 3") && msg.contains("upgrade wharf"),
        "{msg}"
    );
}
#[test]
fn open_explains_bad_state_dirs() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    fs::write(&file, b"").unwrap();
    let msg = SqliteRegistry::open(&file).err().unwrap().to_string();
    assert!(msg.contains("not a directory"), "{msg}");

    let state = dir.path().join("state");
    fs::create_dir(&state).unwrap();
    fs::write(state.join("registry.db"), vec![b'x'; 4096]).unwrap();
    let msg = SqliteRegistry::open(&state).err().unwrap().to_string();
    assert!(
        msg.contains("registry.db") && msg.contains("not a wharf registry database"),
        "{msg}"
    );
}

#[test]
fn a_locked_database_names_the_likely_cause() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()));
    // Another process holding the write lock for longer than the busy timeout.
    let other = rusqlite::Connection::open(dir.path().join("registry.db")).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let started = Instant::now();
    let msg = SqliteRegistry::open(dir.path()).err().unwrap().to_string();
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "waited for the lock"
    );
    assert!(
        msg.contains("cannot open registry database")
            && msg.contains("registry.db")
            && msg.contains("is another wharf server using this state dir?"),
        "{msg}"
    );
    other.execute_batch("ROLLBACK").unwrap();
    open(dir.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_deploys_from_threads_and_connections_never_lose_an_update() {
    let dir = tempfile::tempdir().unwrap();
    // Two registries on one dir stand for two processes; tasks (on several worker
    // threads) share each.
    let regs = [open(dir.path()), open(dir.path())];
    let threads = 6;
    let per_thread = 10;
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let reg = regs[t % 2].clone();
            tokio::spawn(async move {
                let mut conflicts = 0;
                for i in 0..per_thread {
                    let blob = stored(&reg, "main", format!("{t}/{i}").as_bytes()).await;
                    loop {
                        let current = reg.get("app").await.unwrap().map_or(0, |r| r.revision);
                        let app = new_app("app", &format!("{t}/{i}"), vec![blob.clone()]);
                        match reg.deploy(app, Some(current)).await {
                            Ok(record) => {
                                assert_eq!(record.revision, current + 1);
                                break;
                            }
                            Err(RegistryError::Conflict { .. }) => conflicts += 1,
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
                conflicts
            })
        })
        .collect();
    for h in handles {
        h.await.unwrap();
    }
    let app = regs[0].get("app").await.unwrap().unwrap();
    assert_eq!(app.revision, (threads * per_thread) as u64);
    // One change per revision, across both "processes", with no gaps.
    let snapshot = regs[1].snapshot().await.unwrap();
    assert_eq!(snapshot.seq, (threads * per_thread) as u64);
    let mut watch = regs[1].watch(0).await.unwrap();
    for revision in 1..=snapshot.seq {
        let change = expect_change(&mut watch).await;
        assert_eq!(change.seq, revision);
        match change.kind {
            ChangeKind::Deployed(r) => assert_eq!(r.revision, revision),
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn registry_is_usable_as_a_shared_trait_object() {
    fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}
    assert_send_sync::<SqliteRegistry>();
    let dir = tempfile::tempdir().unwrap();
    let reg: Arc<dyn Registry> = Arc::new(open(dir.path()));
    let mut watch = reg.watch(0).await.unwrap();
    let r2 = Arc::clone(&reg);
    tokio::spawn(async move { deploy(&*r2, "x", "1").await })
        .await
        .unwrap();
    assert_eq!(reg.get("x").await.unwrap().unwrap().revision, 1);
    assert_eq!(
        describe(&expect_change(&mut watch).await),
        (1, "deployed x 1".to_owned())
    );
}

// --- The crash test -------------------------------------------------------------------

/// Set in the child process: the state dir to hammer with deploys until killed.
const CRASHER_ENV: &str = "WHARF_REGISTRY_TEST_CRASHER_DIR";
const CRASH_TEST: &str = "kill_9_during_deploys_leaves_every_app_whole";

/// A version of app "a" whose record can be checked for wholeness on its own: the
/// manifest lists the version and every component's digest and size, and each blob
/// starts with a header naming the version and component.
async fn crash_app(reg: &dyn Registry, version: u64) -> NewApp {
    let mut components = Vec::new();
    for k in 0..3 {
        let mut noise = [0u8; 4];
        getrandom::fill(&mut noise).expect("random bytes");
        // Sizes vary so that writes take varying time: up to ~200 KiB.
        let len = 1024 + (u32::from_le_bytes(noise) % 200_000) as usize;
        let mut bytes = format!("a version {version} component c{k}\n").into_bytes();
        let mut body = vec![0u8; len];
        getrandom::fill(&mut body).expect("random bytes");
        bytes.extend_from_slice(&body);
        components.push(stored(reg, &format!("c{k}"), &bytes).await);
    }
    NewApp {
        name: "a".into(),
        version: version.to_string(),
        manifest: crash_manifest(&version.to_string(), &components),
        components,
    }
}

fn crash_manifest(version: &str, components: &[ComponentBlob]) -> String {
    let mut m = format!("name = \"a\"\nversion = \"{version}\"\n");
    for c in components {
        m.push_str(&format!("# {} {} {}\n", c.id, c.sha256, c.size));
    }
    m
}

/// The child: deploy new versions of "a" back to back, each with fresh blobs, and now
/// and then gc everything unreferenced, until killed (or, as a safety net should the
/// parent die, for at most a minute).
async fn crasher(state: &Path) {
    let reg = open(state);
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let current = reg.get("a").await.expect("get").map_or(0, |r| r.revision);
        // Version = revision, so the checker can tell a row mixing two deploys.
        let app = crash_app(&reg, current + 1).await;
        reg.deploy(app, Some(current)).await.expect("deploy");
        if current.is_multiple_of(5) {
            reg.gc(Duration::ZERO).await.expect("gc");
        }
    }
}

/// Checks that "a" is whole, and the change log agrees with it, and returns its revision.
async fn check_whole(reg: &SqliteRegistry) -> u64 {
    let a = reg.get("a").await.expect("get").expect("app a must exist");
    assert_eq!(
        a.version,
        a.revision.to_string(),
        "version and revision from one deploy"
    );
    assert_eq!(a.components.len(), 3);
    assert_eq!(a.manifest, crash_manifest(&a.version, &a.components));
    for c in &a.components {
        let bytes = reg
            .get_blob(&c.sha256)
            .await
            .expect("blob present and intact");
        assert_eq!(bytes.len() as u64, c.size);
        let header = format!("a version {} component {}\n", a.version, c.id);
        assert!(bytes.starts_with(header.as_bytes()));
        assert_eq!(
            fs::metadata(reg.fetch_blob(&c.sha256).await.expect("blob path"))
                .expect("blob metadata")
                .len(),
            c.size
        );
    }
    assert_eq!(reg.list().await.expect("list"), vec![a.clone()]);
    // The last recorded change is exactly this deploy: committed with it, or not at all.
    let snapshot = reg.snapshot().await.expect("snapshot");
    assert_eq!(snapshot.apps, vec![a.clone()]);
    let mut watch = reg.watch(snapshot.seq - 1).await.expect("watch");
    let last = expect_change(&mut watch).await;
    assert_eq!(last.seq, snapshot.seq);
    assert_eq!(last.kind, ChangeKind::Deployed(a.clone()));
    a.revision
}

fn temp_files(state: &Path) -> usize {
    let list = |dir: &Path| {
        fs::read_dir(dir)
            .and_then(|entries| entries.collect::<std::io::Result<Vec<_>>>())
            .expect("list directory")
    };
    list(&state.join("blobs"))
        .iter()
        .flat_map(|fan| list(&fan.path()))
        .filter(|f| f.file_name().to_string_lossy().starts_with(".tmp-"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_deploys_leaves_every_app_whole() {
    if let Some(state) = std::env::var_os(CRASHER_ENV) {
        crasher(Path::new(&state)).await;
        return;
    }

    let dir = tempfile::tempdir().unwrap();
    let state: PathBuf = dir.path().join("state");
    {
        let reg = open(&state);
        let first = crash_app(&reg, 1).await;
        reg.deploy(first, Some(0)).await.unwrap();
    }
    let exe = std::env::current_exe().unwrap();
    let mut revision = 1;
    for delay_ms in [170, 240, 300, 360, 430] {
        let mut child = Command::new(&exe)
            .args(["--exact", CRASH_TEST, "--nocapture", "--test-threads=1"])
            .env(CRASHER_ENV, &state)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        let exited = child.try_wait().unwrap();
        child.kill().unwrap(); // SIGKILL on Unix
        let status = child.wait().unwrap();
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        assert!(
            exited.is_none(),
            "the crasher must still be running when killed, but exited ({status}):\n{stderr}"
        );
        #[cfg(unix)]
        {
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(status.signal(), Some(9), "{status}");
        }

        let reg = open(&state);
        let found = check_whole(&reg).await;
        assert!(
            found >= revision,
            "revision went back from {revision} to {found}"
        );
        eprintln!(
            "killed after {delay_ms} ms at revision {found}; {} temp file(s) left by the crash",
            temp_files(&state)
        );
        // And the registry keeps working: deploy, then gc the crash's leftovers.
        let next = reg
            .deploy(crash_app(&reg, found + 1).await, Some(found))
            .await
            .unwrap();
        assert_eq!(next.revision, found + 1);
        reg.gc(Duration::ZERO).await.unwrap();
        assert_eq!(temp_files(&state), 0);
        revision = check_whole(&reg).await;
        assert_eq!(revision, found + 1);
    }
    // 5 parent deploys + at least some from the crashers, or nothing was tested.
    assert!(revision > 1 + 5, "the crashers never committed a deploy");
}
