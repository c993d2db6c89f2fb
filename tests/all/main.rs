//! Integration tests: they drive the real `wharf` binary with guest programs built from
//! source in `test-programs/`. One test binary, one module per area.

mod cache;
mod capabilities;
mod compile;
mod errors;
mod hardening;
mod invoke;
mod limits;
mod plugins;
mod run;
mod serve;
mod text_bound;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

pub use wharf_test_programs as guests;

/// A cache directory shared by the tests that do not test the cache itself, so each
/// guest is compiled once per test run (and concurrent runs share it, as users' do).
fn shared_home() -> &'static Path {
    static HOME: OnceLock<tempfile::TempDir> = OnceLock::new();
    HOME.get_or_init(|| tempfile::tempdir().expect("tempdir"))
        .path()
}

/// An isolated environment for `wharf`: its own cache and config (artifact key) dirs.
pub struct Env {
    home: PathBuf,
    _own: Option<tempfile::TempDir>,
}

impl Env {
    /// Shares the cache with other tests.
    pub fn shared() -> Env {
        Env {
            home: shared_home().to_path_buf(),
            _own: None,
        }
    }

    /// A fresh, empty cache and config.
    pub fn isolated() -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        Env {
            home: dir.path().to_path_buf(),
            _own: Some(dir),
        }
    }

    pub fn cache_dir(&self) -> PathBuf {
        self.home.join("cache").join("wharf")
    }

    pub fn config_dir(&self) -> PathBuf {
        self.home.join("config")
    }

    pub fn home(&self) -> &Path {
        &self.home
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_wharf"));
        c.env("HOME", &self.home)
            .env("XDG_CACHE_HOME", self.home.join("cache"))
            .env("XDG_CONFIG_HOME", self.home.join("config"))
            .env_remove("WHARF_CACHE_DIR")
            .env_remove("WHARF_ARTIFACT_KEY")
            .env_remove("WHARF_LOG")
            .stdin(Stdio::null());
        c
    }

    /// Runs `wharf ARGS` and returns its output.
    pub fn wharf(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("run wharf")
    }

    /// Runs `wharf ARGS` with `input` on stdin.
    pub fn wharf_stdin(&self, args: &[&str], input: &[u8]) -> Output {
        use std::io::Write;
        let mut child = self
            .cmd()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn wharf");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input)
            .expect("write stdin");
        child.wait_with_output().expect("wait wharf")
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn code(o: &Output) -> i32 {
    o.status.code().expect("wharf exited by a signal")
}

/// Asserts the exit code and that stderr mentions every fragment.
#[track_caller]
pub fn assert_fails(o: &Output, expected_code: i32, fragments: &[&str]) {
    let err = stderr(o);
    assert_eq!(code(o), expected_code, "exit code; stderr:\n{err}");
    for f in fragments {
        assert!(err.contains(f), "stderr lacks `{f}`:\n{err}");
    }
}

/// Reads a `--stats-json` file.
pub fn read_stats(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).expect("stats json written");
    serde_json::from_str(&text).expect("stats json parses")
}
