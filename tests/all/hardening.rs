//! Hardening (issue 9) tests of the operator side, against the real binary: what a
//! cloned app repository or a careless install could expose.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use crate::Env;
use crate::serve::Server;

/// An existing state directory others could enter (0755, as older versions left it)
/// is made private when the server starts.
#[test]
fn an_existing_world_readable_state_dir_is_made_private() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    std::fs::create_dir(&state).expect("mkdir");
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let s = Server::start_in(&state, &[]);
    let mode = std::fs::metadata(&state)
        .expect("stat")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o700);
    drop(s);
}

/// A token file other users can read is refused at start, naming the fix.
#[test]
fn a_readable_admin_token_file_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = dir.path().join("token");
    std::fs::write(&token, "0123456789abcdef0123456789abcdef\n").expect("write");
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let env = Env::isolated();
    let mut child = env
        .cmd()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--state-dir",
        ])
        .arg(dir.path().join("state"))
        .arg("--admin-token-file")
        .arg(&token)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let t = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if t.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("the server started with a world-readable token file");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err)
        .expect("read stderr");
    assert!(!status.success());
    assert!(err.contains("chmod 600"), "{err}");
}
