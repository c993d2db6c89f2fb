//! `wharf serve` end to end: the real server on ephemeral loopback ports, driven over
//! HTTP and through the `wharf deploy`/`wharf apps` client.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::*;

/// A running `wharf serve` with its own state directory; killed on drop.
pub struct Server {
    pub child: Child,
    pub data: String,
    pub admin: String,
    pub state: PathBuf,
    pub env: Env,
    _state_dir: Option<tempfile::TempDir>,
}

impl Server {
    pub fn start(extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("state");
        let mut s = Server::start_in(&state, extra);
        s._state_dir = Some(dir);
        s
    }

    pub fn start_with_env(extra: &[&str], vars: &[(&str, &str)]) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("state");
        let mut s = Server::start_full(&state, extra, vars);
        s._state_dir = Some(dir);
        s
    }

    pub fn start_in(state: &Path, extra: &[&str]) -> Server {
        Server::start_full(state, extra, &[])
    }

    fn start_full(state: &Path, extra: &[&str], vars: &[(&str, &str)]) -> Server {
        let env = Env::isolated();
        let mut cmd = env.cmd();
        cmd.envs(vars.iter().copied());
        cmd.args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--state-dir",
        ])
        .arg(state)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn wharf serve");
        let stdout = child.stdout.take().expect("stdout");
        // Drain stderr (request logs) so that a full pipe can never stall the server;
        // keep it in a file for post-mortems.
        let mut err_pipe = child.stderr.take().expect("stderr");
        let log_path = state.with_extension("stderr.log");
        let _ = std::fs::create_dir_all(state.parent().expect("parent"));
        let mut log = std::fs::File::create(&log_path).expect("log file");
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut err_pipe, &mut log);
        });
        let mut lines = BufReader::new(stdout).lines();
        let (mut data, mut admin) = (String::new(), String::new());
        while data.is_empty() || admin.is_empty() {
            let line = match lines.next() {
                Some(Ok(l)) => l,
                _ => {
                    let _ = child.wait();
                    let err = std::fs::read_to_string(&log_path).unwrap_or_default();
                    panic!("wharf serve exited early: {err}");
                }
            };
            if let Some(rest) = line.strip_prefix("wharf serve: data plane on http://") {
                data = rest.trim().to_string();
            } else if let Some(rest) = line.strip_prefix("wharf serve: admin API on http://") {
                admin = rest.split_whitespace().next().expect("addr").to_string();
            }
        }
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Server {
            child,
            data,
            admin,
            state: state.to_path_buf(),
            env,
            _state_dir: None,
        }
    }

    pub fn token(&self) -> String {
        std::fs::read_to_string(self.state.join("admin-token"))
            .expect("token")
            .trim()
            .to_string()
    }

    pub fn get(&self, path: &str) -> Resp {
        http(&self.data, "GET", path, &[], b"")
    }

    pub fn admin(&self, method: &str, path: &str, body: &[u8]) -> Resp {
        let auth = format!("Bearer {}", self.token());
        http(&self.admin, method, path, &[("authorization", &auth)], body)
    }

    /// Runs a `wharf` client command against this server.
    pub fn wharf(&self, args: &[&str]) -> std::process::Output {
        let mut full: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        full.push("--server".into());
        full.push(format!("http://{}", self.admin));
        full.push("--token-file".into());
        full.push(self.state.join("admin-token").display().to_string());
        let refs: Vec<&str> = full.iter().map(String::as_str).collect();
        self.env.wharf(&refs)
    }

    pub fn stop(mut self) -> std::process::ExitStatus {
        let pid = self.child.id() as i32;
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "server did not stop after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

use std::process::Command;

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// A minimal HTTP/1.1 client (one request per connection) so that tests see exactly
/// what goes over the wire.
pub fn http(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).expect("write");
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> Resp {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head: {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| {
            l.split_once(':')
                .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_string()))
        })
        .collect();
    let rest = &raw[split + 4..];
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    Resp {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(pos) = data.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&data[..pos]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = pos + 2;
        out.extend_from_slice(&data[start..(start + size).min(data.len())]);
        data = &data[(start + size + 2).min(data.len())..];
    }
    out
}

/// Writes an app directory: wharf.toml plus the test component as `app.wasm`.
pub fn app_dir(
    name: &str,
    version: &str,
    routes: &[(&str, &str)],
    extra: &str,
) -> tempfile::TempDir {
    let d = tempfile::tempdir().expect("tempdir");
    std::fs::copy(guests::HTTP_COMPONENT, d.path().join("app.wasm")).expect("copy component");
    let mut toml = format!("[app]\nname = \"{name}\"\nversion = \"{version}\"\n");
    for (id, route) in routes {
        toml.push_str(&format!(
            "\n[[component]]\nid = \"{id}\"\nsource = \"app.wasm\"\nroute = \"{route}\"\n{extra}\n"
        ));
    }
    std::fs::write(d.path().join("wharf.toml"), toml).expect("write manifest");
    d
}

pub fn deploy(server: &Server, dir: &Path) {
    let o = server.wharf(&["deploy", dir.to_str().expect("utf8")]);
    assert_eq!(code(&o), 0, "deploy failed: {}", stderr(&o));
}

#[test]
fn deploy_serve_update_delete_via_cli() {
    let s = Server::start(&[]);
    let v1 = app_dir(
        "shop",
        "1.0.0",
        &[("web", "/shop/...")],
        "[component.environment]\nGREETING = \"shop v1\"\nVERSION = \"1\"",
    );
    let o = s.wharf(&["deploy", v1.path().to_str().expect("utf8")]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("Created `shop` 1.0.0 (revision 1)"),
        "{}",
        stderr(&o)
    );
    assert!(stdout(&o).contains("/shop/..."), "{}", stdout(&o));

    let r = s.get("/shop/hello");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "hello from shop v1\n");
    assert_eq!(r.header("x-version"), Some("1"));
    assert_eq!(r.header("x-path"), Some("/shop/hello"));
    assert_eq!(s.get("/shop").status, 200);

    // Update in place.
    let v2 = app_dir(
        "shop",
        "2.0.0",
        &[("web", "/shop/...")],
        "[component.environment]\nGREETING = \"shop v2\"\nVERSION = \"2\"",
    );
    let o = s.wharf(&["deploy", v2.path().to_str().expect("utf8")]);
    assert!(
        stderr(&o).contains("Updated `shop` 2.0.0 (revision 2)"),
        "{}",
        stderr(&o)
    );
    assert_eq!(s.get("/shop/hello").text(), "hello from shop v2\n");

    // List and show, as a table and as JSON.
    let o = s.wharf(&["apps"]);
    assert!(
        stdout(&o).contains("shop") && stdout(&o).contains("2.0.0"),
        "{}",
        stdout(&o)
    );
    let o = s.wharf(&["apps", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["apps"][0]["name"], "shop");
    assert_eq!(v["apps"][0]["revision"], 2);
    assert_eq!(v["apps"][0]["components"][0]["route"], "/shop/...");
    let o = s.wharf(&["apps", "show", "shop", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["version"], "2.0.0");

    // Delete.
    let o = s.wharf(&["apps", "rm", "shop"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let r = s.get("/shop/hello");
    assert_eq!(r.status, 404);
    assert_eq!(r.header("x-wharf-error"), Some("no-route"));
    let o = s.wharf(&["apps", "show", "shop"]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("not deployed"), "{}", stderr(&o));
}

#[test]
fn auth_is_required_and_failures_change_nothing() {
    let s = Server::start(&[]);
    let dir = app_dir("a", "1", &[("web", "/a/...")], "");
    let tarball = bundle(dir.path());
    for auth in [
        None,
        Some("Bearer wrong-token-wrong-token"),
        Some("Basic abc"),
    ] {
        let headers: Vec<(&str, &str)> =
            auth.map(|a| vec![("authorization", a)]).unwrap_or_default();
        let r = http(&s.admin, "PUT", "/v1/apps/a", &headers, &tarball);
        assert_eq!(r.status, 401, "{}", r.text());
        assert_eq!(r.header("www-authenticate"), Some("Bearer"));
        let r = http(&s.admin, "GET", "/v1/apps", &headers, b"");
        assert_eq!(r.status, 401);
    }
    assert_eq!(
        s.get("/a/hello").status,
        404,
        "an unauthorized deploy must change nothing"
    );
    let r = s.admin("GET", "/v1/apps", b"");
    assert_eq!(r.json()["apps"].as_array().expect("apps").len(), 0);
    // Health and metrics are open.
    assert_eq!(http(&s.admin, "GET", "/healthz", &[], b"").status, 200);
    assert_eq!(http(&s.admin, "GET", "/readyz", &[], b"").status, 200);
    // The token file is private.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(s.state.join("admin-token"))
        .expect("meta")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
}

pub fn bundle(dir: &Path) -> Vec<u8> {
    bundle_files(dir, &["wharf.toml", "app.wasm"])
}

/// A tar of the named files of `dir`, made by the system's tar (so symlinks stay links).
pub fn bundle_files(dir: &Path, files: &[&str]) -> Vec<u8> {
    let out = Command::new("tar")
        .args(["-c", "-C", dir.to_str().expect("utf8")])
        .args(files)
        .output()
        .expect("tar");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Same as [`bundle_files`]; named for tests that smuggle odd entries in.
pub fn bundle_with(dir: &Path, files: &[&str]) -> Vec<u8> {
    bundle_files(dir, files)
}

#[test]
fn route_conflicts_and_bad_bundles_are_refused() {
    let s = Server::start(&[]);
    deploy(
        &s,
        app_dir("shop", "1", &[("api", "/api/users")], "").path(),
    );
    let other = app_dir("other", "1", &[("web", "/api/...")], "");
    let r = s.admin("PUT", "/v1/apps/other", &bundle(other.path()));
    assert_eq!(r.status, 409, "{}", r.text());
    let msg = r.json()["error"]["message"]
        .as_str()
        .expect("msg")
        .to_string();
    assert!(
        msg.contains("/api/...")
            && msg.contains("/api/users")
            && msg.contains("`shop`")
            && msg.contains("`web`"),
        "{msg}"
    );
    // The same app may move its own routes.
    deploy(&s, app_dir("shop", "2", &[("api", "/api/...")], "").path());

    // POST refuses an existing app.
    let again = app_dir("shop", "3", &[("api", "/api/...")], "");
    let r = s.admin("POST", "/v1/apps", &bundle(again.path()));
    assert_eq!(r.status, 409, "{}", r.text());

    // Not a tar, a broken manifest, a name mismatch, a core module, a missing source.
    let r = s.admin("PUT", "/v1/apps/x", b"definitely not a tarball, no sir");
    assert_eq!(r.status, 400, "{}", r.text());
    let bad = app_dir("x", "1", &[("web", "/x")], "");
    std::fs::write(
        bad.path().join("wharf.toml"),
        "[app]\nname = \"x\"\nversion = \"1\"\nsurprise = 1\n",
    )
    .expect("write");
    let r = s.admin("PUT", "/v1/apps/x", &bundle(bad.path()));
    assert_eq!(r.status, 400);
    assert!(r.text().contains("surprise"), "{}", r.text());
    let named = app_dir("y", "1", &[("web", "/y")], "");
    let r = s.admin("PUT", "/v1/apps/x", &bundle(named.path()));
    assert_eq!(r.status, 400);
    assert!(r.text().contains("names app `y`"), "{}", r.text());
    let core = app_dir("core", "1", &[("web", "/core")], "");
    std::fs::copy(guests::P1_HELLO, core.path().join("app.wasm")).expect("copy");
    let r = s.admin("PUT", "/v1/apps/core", &bundle(core.path()));
    assert_eq!(r.status, 400);
    assert!(r.text().contains("core module"), "{}", r.text());
    let cmd = app_dir("cmd", "1", &[("web", "/cmd")], "");
    std::fs::copy(guests::P2_HELLO, cmd.path().join("app.wasm")).expect("copy");
    let r = s.admin("PUT", "/v1/apps/cmd", &bundle(cmd.path()));
    assert_eq!(r.status, 400);
    assert!(
        r.text().contains("wasi:http/incoming-handler"),
        "{}",
        r.text()
    );

    // The original app still serves, untouched.
    assert_eq!(s.get("/api/hello").status, 200);
    let r = s.admin("GET", "/v1/apps", b"");
    assert_eq!(r.json()["apps"].as_array().expect("apps").len(), 1);
    // Metrics counted the refusals.
    let m = http(&s.admin, "GET", "/metrics", &[], b"").text();
    assert!(
        m.contains("wharf_deploys_total{reason=\"conflict\"}"),
        "{m}"
    );
    assert!(m.contains("wharf_deploys_total{reason=\"invalid\"}"), "{m}");
}

#[test]
fn hostile_guests_fail_alone() {
    let s = Server::start(&[]);
    deploy(
        &s,
        app_dir(
            "bad",
            "1",
            &[("web", "/bad/...")],
            "[component.limits]\ntimeout = \"500ms\"\nmemory = \"32MiB\"\nmax_body = \"1KiB\"",
        )
        .path(),
    );
    deploy(&s, app_dir("good", "1", &[("web", "/good/...")], "").path());

    // An infinite loop is stopped at its deadline while the other app keeps answering.
    let spin = std::thread::spawn({
        let addr = s.data.clone();
        move || {
            let t = Instant::now();
            let r = http(&addr, "GET", "/bad/spin", &[], b"");
            (r, t.elapsed())
        }
    });
    std::thread::sleep(Duration::from_millis(100));
    for _ in 0..5 {
        let r = s.get("/good/hello");
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let (r, took) = spin.join().expect("join");
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.header("x-wharf-error"), Some("timeout"));
    assert!(r.text().contains("deadline"), "{}", r.text());
    assert!(took < Duration::from_secs(10), "{took:?}");

    // A guest sleeping in a host call is stopped too.
    let r = s.get("/bad/sleep?ms=60000");
    assert_eq!(r.status, 503, "{}", r.text());

    let r = s.get("/bad/membomb");
    assert_eq!(r.status, 500, "{}", r.text());
    assert_eq!(r.header("x-wharf-error"), Some("memory"));
    assert!(r.text().contains("memory cap of 32 MiB"), "{}", r.text());

    let r = s.get("/bad/trap");
    assert_eq!(r.status, 500, "{}", r.text());
    assert_eq!(r.header("x-wharf-error"), Some("trap"));

    // Body caps: declared and streamed.
    let r = http(&s.data, "POST", "/bad/echo", &[], &[b'x'; 2000]);
    assert_eq!(r.status, 413, "{}", r.text());
    let r = http(&s.data, "POST", "/bad/echo", &[], b"small body");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "small body");
    assert_eq!(r.header("x-body-len"), Some("10"));

    assert_eq!(s.get("/nothing/here").status, 404);
    assert_eq!(s.get("/good/hello").status, 200);

    // Metrics carry the counts, not just the names (a leaking gauge must fail here).
    let metrics = || http(&s.admin, "GET", "/metrics", &[], b"").text();
    let value = |m: &str, series: &str| -> Option<f64> {
        m.lines().find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
    };
    let m = metrics();
    for (series, want) in [
        (
            "wharf_guest_failures_total{app=\"bad\",kind=\"timeout\"}",
            2.0,
        ),
        (
            "wharf_guest_failures_total{app=\"bad\",kind=\"memory\"}",
            1.0,
        ),
        ("wharf_guest_failures_total{app=\"bad\",kind=\"trap\"}", 1.0),
        (
            "wharf_guest_failures_total{app=\"bad\",kind=\"body-too-large\"}",
            1.0,
        ),
        (
            "wharf_http_requests_total{app=\"good\",status=\"200\"}",
            6.0,
        ),
        ("wharf_http_requests_total{app=\"bad\",status=\"200\"}", 1.0),
        ("wharf_refused_requests_total{reason=\"no-route\"}", 1.0),
        ("wharf_apps", 2.0),
    ] {
        assert_eq!(value(&m, series), Some(want), "{series} in:\n{m}");
    }
    assert!(
        m.contains("wharf_http_request_duration_seconds_bucket"),
        "{m}"
    );
    assert!(
        m.contains("wharf_instantiate_duration_seconds_bucket"),
        "{m}"
    );
    // Every instance is gone once its request is over: the gauge returns to 0 (polled
    // with a bound, since the last store is dropped just after its answer).
    let t = Instant::now();
    loop {
        let m = metrics();
        let bad = value(&m, "wharf_active_instances{app=\"bad\"}");
        let good = value(&m, "wharf_active_instances{app=\"good\"}");
        if bad == Some(0.0) && good == Some(0.0) {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "active instances stuck at bad={bad:?} good={good:?}:\n{m}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn guest_output_is_captured_per_app() {
    let s = Server::start(&[]);
    deploy(
        &s,
        app_dir("logger", "1", &[("web", "/log/...")], "").path(),
    );
    assert_eq!(s.get("/log/log").status, 200);
    let r = s.admin("GET", "/v1/apps/logger/logs?tail=10", b"");
    assert_eq!(r.status, 200);
    let v = r.json();
    let lines: Vec<(String, String)> = v["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .map(|l| {
            (
                l["stream"].as_str().unwrap_or("").to_string(),
                l["line"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert!(
        lines.contains(&("stdout".into(), "log line to stdout".into())),
        "{lines:?}"
    );
    assert!(
        lines.contains(&("stderr".into(), "log line to stderr".into())),
        "{lines:?}"
    );
    let o = s.wharf(&["apps", "logs", "logger"]);
    assert!(
        stdout(&o).contains("stdout: log line to stdout"),
        "{}",
        stdout(&o)
    );
    assert_eq!(s.admin("GET", "/v1/apps/nope/logs", b"").status, 404);
}

#[test]
fn restart_restores_apps() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let s = Server::start_in(&state, &[]);
    deploy(
        &s,
        app_dir(
            "keep",
            "3.1",
            &[("web", "/keep/...")],
            "[component.environment]\nGREETING = \"kept\"",
        )
        .path(),
    );
    assert_eq!(s.get("/keep/hello").text(), "hello from kept\n");
    let status = s.stop();
    assert!(status.success(), "SIGTERM must exit 0: {status:?}");

    let s = Server::start_in(&state, &[]);
    let r = s.get("/keep/hello");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "hello from kept\n");
    let v = s.admin("GET", "/v1/apps/keep", b"").json();
    assert_eq!(v["version"], "3.1");
    assert_eq!(v["revision"], 1);
}

#[test]
fn updates_under_load_drop_nothing() {
    let s = Server::start(&[]);
    deploy(
        &s,
        app_dir(
            "live",
            "0",
            &[("web", "/live/...")],
            "[component.environment]\nVERSION = \"0\"",
        )
        .path(),
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let loaders: Vec<_> = (0..4)
        .map(|_| {
            let addr = s.data.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let (mut ok, mut bad) = (0u32, Vec::new());
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let r = http(&addr, "GET", "/live/hello", &[], b"");
                    if r.status == 200 {
                        ok += 1
                    } else {
                        bad.push((r.status, r.text()))
                    }
                }
                (ok, bad)
            })
        })
        .collect();
    for i in 1..=20 {
        let d = app_dir(
            "live",
            &i.to_string(),
            &[("web", "/live/...")],
            &format!("[component.environment]\nVERSION = \"{i}\""),
        );
        deploy(&s, d.path());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    for l in loaders {
        let (ok, bad) = l.join().expect("join");
        assert!(bad.is_empty(), "non-2xx during updates: {bad:?}");
        total += ok;
    }
    assert!(total > 20, "the load loop made only {total} requests");
    assert_eq!(s.get("/live/hello").header("x-version"), Some("20"));
}

#[test]
fn graceful_shutdown_finishes_in_flight_requests() {
    let s = Server::start(&[]);
    deploy(&s, app_dir("slow", "1", &[("web", "/slow/...")], "").path());
    let addr = s.data.clone();
    let slow = std::thread::spawn(move || http(&addr, "GET", "/slow/sleep?ms=700", &[], b""));
    std::thread::sleep(Duration::from_millis(200));
    let status = s.stop();
    assert!(status.success(), "{status:?}");
    let r = slow.join().expect("join");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "slept\n");
}

#[test]
fn in_flight_and_concurrency_caps_answer_503() {
    let s = Server::start(&["--max-in-flight", "2"]);
    deploy(
        &s,
        app_dir(
            "cap",
            "1",
            &[("web", "/cap/...")],
            "[component.limits]\nmax_concurrency = 1",
        )
        .path(),
    );
    let addr = s.data.clone();
    let first = std::thread::spawn(move || http(&addr, "GET", "/cap/sleep?ms=800", &[], b""));
    std::thread::sleep(Duration::from_millis(200));
    let r = s.get("/cap/hello");
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.header("x-wharf-error"), Some("concurrency"));
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(first.join().expect("join").status, 200);
    assert_eq!(s.get("/cap/hello").status, 200);

    // The server-wide in-flight cap: two slow requests to another app fill it, and a
    // third request (to any app) is refused with `busy` until they finish.
    deploy(&s, app_dir("wide", "1", &[("web", "/wide/...")], "").path());
    let slow: Vec<_> = (0..2)
        .map(|_| {
            let addr = s.data.clone();
            std::thread::spawn(move || http(&addr, "GET", "/wide/sleep?ms=1500", &[], b""))
        })
        .collect();
    let t = Instant::now();
    loop {
        let m = http(&s.admin, "GET", "/metrics", &[], b"").text();
        if m.lines()
            .any(|l| l == "wharf_active_instances{app=\"wide\"} 2")
        {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the slow requests never ran:\n{m}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let r = s.get("/cap/hello");
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.header("x-wharf-error"), Some("busy"));
    for h in slow {
        assert_eq!(h.join().expect("join").status, 200);
    }
    assert_eq!(s.get("/cap/hello").status, 200);
}

#[test]
fn port_in_use_is_a_clear_error() {
    let s = Server::start(&[]);
    let env = Env::isolated();
    let dir = tempfile::tempdir().expect("tempdir");
    let o = env.wharf(&[
        "serve",
        "--listen",
        &s.data,
        "--admin-listen",
        "127.0.0.1:0",
        "--state-dir",
        dir.path().to_str().expect("utf8"),
    ]);
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).contains("cannot listen on") && stderr(&o).contains("--listen"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn second_server_on_the_same_state_dir_is_refused() {
    let s = Server::start(&[]);
    let env = Env::isolated();
    let o = env.wharf(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--state-dir",
        s.state.to_str().expect("utf8"),
    ]);
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).contains("another wharf serve is using the state directory"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn kill_9_during_deploys_leaves_a_whole_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let v1 = app_dir(
        "crash",
        "1",
        &[("web", "/crash/...")],
        "[component.environment]\nVERSION = \"1\"",
    );
    for round in 0..4u64 {
        let mut s = Server::start_in(&state, &[]);
        if round == 0 {
            deploy(&s, v1.path());
        }
        // Start a stream of deploys (each a new version), then kill -9 mid-way.
        let versions: Vec<tempfile::TempDir> = (0..6)
            .map(|i| {
                let v = format!("{}", 100 * (round + 1) + i);
                app_dir(
                    "crash",
                    &v,
                    &[("web", "/crash/...")],
                    &format!("[component.environment]\nVERSION = \"{v}\""),
                )
            })
            .collect();
        let admin = s.admin.clone();
        let token = s.token();
        let names: Vec<String> = (0..6)
            .map(|i| format!("{}", 100 * (round + 1) + i))
            .collect();
        let bundles: Vec<Vec<u8>> = versions.iter().map(|d| bundle(d.path())).collect();
        // The deployer reports which versions the server acknowledged, and whether the
        // kill cut its stream short (so a deploy was in flight or still to come).
        let deployer = std::thread::spawn(move || {
            let mut acked = Vec::new();
            for (b, name) in bundles.iter().zip(&names) {
                let auth = format!("Bearer {token}");
                // The connection dies with the server; that is the point.
                let r = std::panic::catch_unwind(|| {
                    http(
                        &admin,
                        "PUT",
                        "/v1/apps/crash",
                        &[("authorization", &auth)],
                        b,
                    )
                });
                match r {
                    Ok(resp) if resp.status == 200 || resp.status == 201 => {
                        acked.push(name.clone())
                    }
                    Ok(resp) => panic!("deploy of {name} refused: {} {}", resp.status, resp.text()),
                    Err(_) => return (acked, true),
                }
            }
            (acked, false)
        });
        // Kill once the first deploy of this round has been acknowledged, so the kill
        // lands while later deploys are in flight.
        let t = Instant::now();
        loop {
            let r = s.get("/crash/hello");
            if r.header("x-version") == Some(&*format!("{}", 100 * (round + 1))) {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "round {round}: first deploy never landed"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(15 * round));
        s.child.kill().expect("kill -9");
        let _ = s.child.wait();
        let (acked, interrupted) = deployer.join().expect("deployer");
        assert!(
            interrupted,
            "round {round}: every deploy finished before the kill"
        );
        let last_acked = acked
            .last()
            .cloned()
            .expect("the first deploy was acknowledged");
        drop(s);

        // After a restart the app is whole: its version is the last acknowledged one or
        // the one in flight after it (never an older one: acknowledged deploys are
        // durable), it serves, and the admin API agrees.
        let s = Server::start_in(&state, &[]);
        let info = s.admin("GET", "/v1/apps/crash", b"");
        assert_eq!(info.status, 200, "round {round}: {}", info.text());
        let version = info.json()["version"]
            .as_str()
            .expect("version")
            .to_string();
        let in_flight = format!("{}", last_acked.parse::<u64>().expect("number") + 1);
        assert!(
            version == last_acked || version == in_flight,
            "round {round}: version {version} after acknowledged {acked:?}"
        );
        let r = s.get("/crash/hello");
        assert_eq!(r.status, 200, "round {round}: {}", r.text());
        assert_eq!(
            r.header("x-version"),
            Some(version.as_str()),
            "round {round}"
        );
        drop(s);
    }
}

#[test]
fn the_shipped_example_deploys_and_answers() {
    let s = Server::start(&[]);
    let d = tempfile::tempdir().expect("tempdir");
    std::fs::copy(
        Path::new(guests::EXAMPLE_HTTP_HELLO_DIR).join("wharf.toml"),
        d.path().join("wharf.toml"),
    )
    .expect("copy manifest");
    std::fs::copy(guests::EXAMPLE_HTTP_HELLO, d.path().join("http_hello.wasm")).expect("copy wasm");
    deploy(&s, d.path());
    let r = s.get("/hello?name=Ada");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.text(),
        "Hello, Ada! (served by Wharf from /hello?name=Ada)\n"
    );
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
}

#[test]
fn route_parameters_reach_the_guest_and_cannot_be_spoofed() {
    let s = Server::start(&[]);
    deploy(
        &s,
        app_dir(
            "users",
            "1",
            &[("one", "/users/:id/hello"), ("all", "/files/...")],
            "",
        )
        .path(),
    );
    let r = http(
        &s.data,
        "GET",
        "/users/42/hello",
        &[("wharf-param-id", "spoofed"), ("wharf-evil", "x")],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-wharf-param-id"), Some("42"));
    assert_eq!(r.header("x-wharf-matched-route"), Some("/users/:id/hello"));
    assert_eq!(r.header("x-wharf-evil"), None);
    let r = s.get("/files/a/b/hello");
    assert_eq!(r.header("x-wharf-path-info"), Some("/a/b/hello"));
    assert_eq!(r.header("x-wharf-matched-route"), Some("/files/..."));
}
