//! The SQLite registry used as the server uses it: through the `Registry` trait, from
//! several threads, across reopens, and across a real `kill -9`.

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest, Sha256};
use wharf_registry::{AppRecord, ComponentBlob, NewApp, Registry, RegistryError, SqliteRegistry};

fn open(dir: &Path) -> SqliteRegistry {
    SqliteRegistry::open(dir).expect("open registry")
}

/// Stores `bytes` and describes them as component `id`.
fn stored(reg: &dyn Registry, id: &str, bytes: &[u8]) -> ComponentBlob {
    let sha256 = reg.put_blob(bytes).expect("put_blob");
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
fn deploy(reg: &dyn Registry, name: &str, version: &str) -> AppRecord {
    let blob = stored(reg, "main", format!("{name} {version}").as_bytes());
    reg.deploy(new_app(name, version, vec![blob]), None)
        .expect("deploy")
}

fn set_age(path: &Path, age: Duration) {
    File::open(path)
        .and_then(|f| f.set_modified(SystemTime::now() - age))
        .expect("set mtime");
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[test]
fn put_blob_is_idempotent_and_fans_out_by_two_hex_digits() {
    let dir = tempfile::tempdir().unwrap();
    let reg = open(dir.path());
    let bytes = b"\0asm\x01\0\0\0 hello";
    let sha = reg.put_blob(bytes).unwrap();
    assert_eq!(sha, sha256_hex(bytes));
    assert_eq!(sha.len(), 64);

    let path = reg.blob_path(&sha).unwrap();
    assert_eq!(
        path,
        dir.path().join("blobs").join(&sha[..2]).join(&sha),
        "layout is <state>/blobs/<first 2 hex>/<sha>"
    );
    assert_eq!(fs::read(&path).unwrap(), bytes);

    // Again: same answer, same single file, no temp files left behind.
    assert_eq!(reg.put_blob(bytes).unwrap(), sha);
    let names: Vec<_> = fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from(&sha)]);
    assert_eq!(reg.get_blob(&sha).unwrap(), bytes);

    // The empty blob is a blob like any other.
    let empty = reg.put_blob(b"").unwrap();
    assert_eq!(reg.get_blob(&empty).unwrap(), b"");
}

#[test]
fn get_blob_detects_a_corrupted_file_and_put_blob_repairs_it() {
    let dir = tempfile::tempdir().unwrap();
    let reg = open(dir.path());
    let bytes = vec![7u8; 10_000];
    let sha = reg.put_blob(&bytes).unwrap();
    let path = reg.blob_path(&sha).unwrap();

    // Same size, one bit flipped: only the hash can tell.
    let mut corrupt = bytes.clone();
    corrupt[5000] ^= 1;
    fs::write(&path, &corrupt).unwrap();
    let err = reg.get_blob(&sha).unwrap_err();
    assert!(matches!(err, RegistryError::Storage(_)), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&sha) && msg.contains("corrupt"), "{msg}");

    // Storing the bytes again (a redeploy) rewrites the damaged copy.
    assert_eq!(reg.put_blob(&bytes).unwrap(), sha);
    assert_eq!(reg.get_blob(&sha).unwrap(), bytes);

    // A truncated copy too.
    fs::write(&path, &bytes[..10]).unwrap();
    assert!(reg.get_blob(&sha).is_err());
    reg.put_blob(&bytes).unwrap();
    assert_eq!(reg.get_blob(&sha).unwrap(), bytes);
}

#[test]
fn missing_blobs_are_reported_as_missing() {
    let dir = tempfile::tempdir().unwrap();
    let reg = open(dir.path());
    let absent = sha256_hex(b"never stored");
    assert!(matches!(reg.blob_path(&absent), Err(RegistryError::MissingBlob(s)) if s == absent));
    assert!(matches!(reg.get_blob(&absent), Err(RegistryError::MissingBlob(s)) if s == absent));
}

#[test]
fn invalid_digests_are_rejected_before_touching_the_file_system() {
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
            reg.blob_path(sha).map(|_| ()),
            reg.get_blob(sha).map(|_| ()),
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
            matches!(reg.deploy(app, None), Err(RegistryError::Storage(_))),
            "{sha:?}"
        );
    }
    assert!(reg.list().unwrap().is_empty());
}

#[test]
fn deploy_and_replace_increment_the_revision() {
    let dir = tempfile::tempdir().unwrap();
    let reg = open(dir.path());
    let before = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;

    let c1 = stored(&reg, "main", b"one");
    let first = reg
        .deploy(new_app("hello", "1.0.0", vec![c1.clone()]), None)
        .unwrap();
    assert_eq!(first.revision, 1);
    assert_eq!(first.version, "1.0.0");
    assert_eq!(first.components, vec![c1]);
    assert!(first.deployed_at_ms >= before);
    assert_eq!(reg.get("hello").unwrap(), Some(first.clone()));

    let c2 = stored(&reg, "main", b"two");
    let c3 = stored(&reg, "worker", b"three");
    let second = reg
        .deploy(
            new_app("hello", "1.1.0", vec![c2.clone(), c3.clone()]),
            None,
        )
        .unwrap();
    assert_eq!(second.revision, 2);
    assert_eq!(second.components, vec![c2, c3]);
    assert_eq!(second.manifest, "name = \"hello\"\nversion = \"1.1.0\"\n");
    assert_eq!(reg.get("hello").unwrap(), Some(second));

    // Redeploying the very same content is still a new revision.
    let third = deploy(&reg, "hello", "1.1.0");
    assert_eq!(third.revision, 3);
    assert_eq!(reg.get("nope").unwrap(), None);
}

#[test]
fn expected_revision_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let reg = open(dir.path());
    let c = stored(&reg, "main", b"code");
    let app = |v: &str| new_app("app", v, vec![c.clone()]);

    // Some(n > 0) for an app that does not exist.
    match reg.deploy(app("x"), Some(1)) {
        Err(RegistryError::Conflict {
            name,
            expected,
            found,
        }) => assert_eq!((name.as_str(), expected, found), ("app", Some(1), None)),
        other => panic!("{other:?}"),
    }
    // Some(0): must not exist yet.
    assert_eq!(reg.deploy(app("1"), Some(0)).unwrap().revision, 1);
    let err = reg.deploy(app("x"), Some(0)).unwrap_err();
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
    assert_eq!(reg.deploy(app("2"), Some(1)).unwrap().revision, 2);
    assert!(matches!(
        reg.deploy(app("x"), Some(1)),
        Err(RegistryError::Conflict {
            expected: Some(1),
            found: Some(2),
            ..
        })
    ));
    assert!(matches!(
        reg.deploy(app("x"), Some(3)),
        Err(RegistryError::Conflict {
            expected: Some(3),
            found: Some(2),
            ..
        })
    ));
    // None: don't care.
    assert_eq!(reg.deploy(app("3"), None).unwrap().revision, 3);
    // The failed attempts changed nothing.
    let now = reg.get("app").unwrap().unwrap();
    assert_eq!((now.version.as_str(), now.revision), ("3", 3));
}

#[test]
fn a_missing_blob_fails_the_deploy_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let reg = open(dir.path());
    let before = deploy(&reg, "app", "1");

    let present = stored(&reg, "main", b"present");
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
            .unwrap_err();
        assert!(
            matches!(&err, RegistryError::MissingBlob(s) if *s == absent.sha256),
            "{err:?}"
        );
    }
    assert_eq!(reg.get("app").unwrap(), Some(before));

    // And for a new app: it does not appear.
    assert!(matches!(
        reg.deploy(new_app("other", "1", vec![absent]), Some(0)),
        Err(RegistryError::MissingBlob(_))
    ));
    assert_eq!(reg.get("other").unwrap(), None);
}

#[test]
fn a_wrong_declared_size_fails_the_deploy() {
    let dir = tempfile::tempdir().unwrap();
    let reg = open(dir.path());
    let mut c = stored(&reg, "main", b"12345");
    c.size = 4;
    let err = reg.deploy(new_app("app", "1", vec![c]), None).unwrap_err();
    assert!(matches!(err, RegistryError::Storage(_)), "{err:?}");
    assert!(err.to_string().contains("declares 4 bytes"), "{err}");
    assert_eq!(reg.get("app").unwrap(), None);
}

#[test]
fn remove_forgets_the_app_and_its_revision() {
    let dir = tempfile::tempdir().unwrap();
    let reg = open(dir.path());
    deploy(&reg, "app", "1");
    let second = deploy(&reg, "app", "2");
    let keep = deploy(&reg, "keep", "1");

    assert_eq!(reg.remove("app").unwrap(), second);
    assert_eq!(reg.get("app").unwrap(), None);
    assert!(matches!(reg.remove("app"), Err(RegistryError::NotFound(n)) if n == "app"));
    assert!(matches!(reg.remove("never"), Err(RegistryError::NotFound(n)) if n == "never"));
    assert_eq!(
        RegistryError::NotFound("never".into()).to_string(),
        "app `never` is not deployed"
    );
    // Blobs stay until gc.
    for c in &second.components {
        reg.get_blob(&c.sha256).unwrap();
    }
    // A later deploy of the name starts again at 1.
    assert_eq!(deploy(&reg, "app", "3").revision, 1);
    assert_eq!(reg.get("keep").unwrap(), Some(keep));
}

#[test]
fn list_is_sorted_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let reg = open(dir.path());
    assert!(reg.list().unwrap().is_empty());
    for name in ["zeta", "alpha", "Beta", "mid", "alpha-2", "émile"] {
        deploy(&reg, name, "1");
    }
    deploy(&reg, "mid", "2");
    let list = reg.list().unwrap();
    let names: Vec<_> = list.iter().map(|r| r.name.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    assert_eq!(names, ["Beta", "alpha", "alpha-2", "mid", "zeta", "émile"]);
    assert_eq!(list[3].revision, 2);
}

#[test]
fn gc_removes_only_unreferenced_old_blobs_and_old_temp_files() {
    let dir = tempfile::tempdir().unwrap();
    let reg = open(dir.path());
    let hour = Duration::from_secs(3600);
    let min_age = Duration::from_secs(60);

    let referenced = deploy(&reg, "app", "1").components[0].sha256.clone();
    let removed_app = deploy(&reg, "gone", "1").components[0].sha256.clone();
    reg.remove("gone").unwrap();
    let old_garbage = reg.put_blob(b"old garbage").unwrap();
    let young_garbage = reg.put_blob(b"young garbage").unwrap();
    let restored = reg.put_blob(b"stored again").unwrap();
    for sha in [&referenced, &removed_app, &old_garbage, &restored] {
        set_age(&reg.blob_path(sha).unwrap(), hour);
    }
    // Storing existing bytes again (a deploy in progress) makes them young again.
    reg.put_blob(b"stored again").unwrap();

    let fan = reg
        .blob_path(&referenced)
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
        reg.gc(min_age).unwrap(),
        3,
        "removed_app, old_garbage, old_tmp"
    );
    for sha in [&referenced, &young_garbage, &restored] {
        reg.get_blob(sha).unwrap();
    }
    for sha in [&removed_app, &old_garbage] {
        assert!(matches!(
            reg.blob_path(sha),
            Err(RegistryError::MissingBlob(_))
        ));
    }
    assert!(!old_tmp.exists());
    assert!(young_tmp.exists() && stranger.exists());
    assert_eq!(reg.gc(min_age).unwrap(), 0);

    // With no grace period, everything unreferenced goes; never a referenced blob or a
    // file that is not ours.
    assert_eq!(
        reg.gc(Duration::ZERO).unwrap(),
        3,
        "young_garbage, restored, young_tmp"
    );
    reg.get_blob(&referenced).unwrap();
    assert!(stranger.exists());
    let app = reg.get("app").unwrap().unwrap();
    assert_eq!(app.components[0].sha256, referenced);
}

#[test]
fn state_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = {
        let reg = open(dir.path());
        deploy(&reg, "a", "1");
        let a = deploy(&reg, "a", "2");
        let b = deploy(&reg, "b", "1");
        deploy(&reg, "c", "1");
        reg.remove("c").unwrap();
        (a, b)
    };
    let reg = open(dir.path());
    assert_eq!(reg.state_dir(), dir.path());
    assert_eq!(reg.list().unwrap(), vec![a.clone(), b]);
    assert_eq!(
        reg.get_blob(&a.components[0].sha256).unwrap(),
        b"a 2".to_vec()
    );
    assert_eq!(deploy(&reg, "a", "3").revision, 3);
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
    assert_eq!(version, 1);
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");

    // A database from a newer wharf is refused, with the fix.
    conn.pragma_update(None, "user_version", 2).unwrap();
    drop(conn);
    let err = SqliteRegistry::open(&state).err().expect("must refuse");
    let msg = err.to_string();
    assert!(
        msg.contains("schema version 2") && msg.contains("upgrade wharf"),
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

#[test]
fn concurrent_deploys_from_threads_and_connections_never_lose_an_update() {
    let dir = tempfile::tempdir().unwrap();
    // Two registries on one dir stand for two processes; threads share each.
    let regs = [Arc::new(open(dir.path())), Arc::new(open(dir.path()))];
    let threads = 6;
    let per_thread = 10;
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let reg = Arc::clone(&regs[t % 2]);
            std::thread::spawn(move || {
                let mut conflicts = 0;
                for i in 0..per_thread {
                    let blob = stored(&*reg, "main", format!("{t}/{i}").as_bytes());
                    loop {
                        let current = reg.get("app").unwrap().map_or(0, |r| r.revision);
                        let app = new_app("app", &format!("{t}/{i}"), vec![blob.clone()]);
                        match reg.deploy(app, Some(current)) {
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
        h.join().unwrap();
    }
    let app = regs[0].get("app").unwrap().unwrap();
    assert_eq!(app.revision, (threads * per_thread) as u64);
}

#[test]
fn registry_is_usable_as_a_shared_trait_object() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<SqliteRegistry>();
    let dir = tempfile::tempdir().unwrap();
    let reg: Arc<dyn Registry> = Arc::new(open(dir.path()));
    let r2 = Arc::clone(&reg);
    std::thread::spawn(move || deploy(&*r2, "x", "1"))
        .join()
        .unwrap();
    assert_eq!(reg.get("x").unwrap().unwrap().revision, 1);
}

// --- The crash test -------------------------------------------------------------------

/// Set in the child process: the state dir to hammer with deploys until killed.
const CRASHER_ENV: &str = "WHARF_REGISTRY_TEST_CRASHER_DIR";
const CRASH_TEST: &str = "kill_9_during_deploys_leaves_every_app_whole";

/// A version of app "a" whose record can be checked for wholeness on its own: the
/// manifest lists the version and every component's digest and size, and each blob
/// starts with a header naming the version and component.
fn crash_app(reg: &dyn Registry, version: u64) -> NewApp {
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
        components.push(stored(reg, &format!("c{k}"), &bytes));
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
fn crasher(state: &Path) {
    let reg = open(state);
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let current = reg.get("a").expect("get").map_or(0, |r| r.revision);
        // Version = revision, so the checker can tell a row mixing two deploys.
        let app = crash_app(&reg, current + 1);
        reg.deploy(app, Some(current)).expect("deploy");
        if current.is_multiple_of(5) {
            reg.gc(Duration::ZERO).expect("gc");
        }
    }
}

/// Checks that "a" is whole and returns its revision.
fn check_whole(reg: &SqliteRegistry) -> u64 {
    let a = reg.get("a").expect("get").expect("app a must exist");
    assert_eq!(
        a.version,
        a.revision.to_string(),
        "version and revision from one deploy"
    );
    assert_eq!(a.components.len(), 3);
    assert_eq!(a.manifest, crash_manifest(&a.version, &a.components));
    for c in &a.components {
        let bytes = reg.get_blob(&c.sha256).expect("blob present and intact");
        assert_eq!(bytes.len() as u64, c.size);
        let header = format!("a version {} component {}\n", a.version, c.id);
        assert!(bytes.starts_with(header.as_bytes()));
        assert_eq!(
            fs::metadata(reg.blob_path(&c.sha256).expect("blob path"))
                .expect("blob metadata")
                .len(),
            c.size
        );
    }
    assert_eq!(reg.list().expect("list"), vec![a.clone()]);
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

#[test]
fn kill_9_during_deploys_leaves_every_app_whole() {
    if let Some(state) = std::env::var_os(CRASHER_ENV) {
        crasher(Path::new(&state));
        return;
    }

    let dir = tempfile::tempdir().unwrap();
    let state: PathBuf = dir.path().join("state");
    {
        let reg = open(&state);
        let first = crash_app(&reg, 1);
        reg.deploy(first, Some(0)).unwrap();
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
        std::thread::sleep(Duration::from_millis(delay_ms));
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
        let found = check_whole(&reg);
        assert!(
            found >= revision,
            "revision went back from {revision} to {found}"
        );
        eprintln!(
            "killed after {delay_ms} ms at revision {found}; {} temp file(s) left by the crash",
            temp_files(&state)
        );
        // And the registry keeps working: deploy, then gc the crash's leftovers.
        let next = reg.deploy(crash_app(&reg, found + 1), Some(found)).unwrap();
        assert_eq!(next.revision, found + 1);
        reg.gc(Duration::ZERO).unwrap();
        assert_eq!(temp_files(&state), 0);
        revision = check_whole(&reg);
        assert_eq!(revision, found + 1);
    }
    // 5 parent deploys + at least some from the crashers, or nothing was tested.
    assert!(revision > 1 + 5, "the crashers never committed a deploy");
}
