//! Capabilities granted per component in wharf.toml — and denied when not granted:
//! variables (`wasi:config`), logging (`wasi:logging`), read-only files, key-value
//! (`wasi:keyvalue`), outbound HTTP, and WAGI modules.

use std::path::Path;

use crate::serve::{Server, app_dir, bundle_with, deploy, http};
use crate::*;

#[test]
fn variables_from_defaults_environment_and_secrets_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secrets = dir.path().join("secrets.toml");
    std::fs::write(
        &secrets,
        "token = \"from-file-for-all\"\n[vars]\napi_key = \"s3cret\"\n",
    )
    .expect("write");
    let s = Server::start_with_env(
        &["--secrets-file", secrets.to_str().expect("utf8")],
        &[("WHARF_VAR_VARS__REGION", "eu-west")],
    );
    let app = app_dir("vars", "1", &[("web", "/vars/...")], "");
    let manifest = std::fs::read_to_string(app.path().join("wharf.toml")).expect("read");
    std::fs::write(
        app.path().join("wharf.toml"),
        format!("[variables]\napi_key = {{ required = true, secret = true }}\nregion = {{ required = true }}\ngreeting = {{ default = \"hi\" }}\ntoken = {{ default = \"d\" }}\nunset = {{}}\n\n{manifest}"),
    )
    .expect("write");
    deploy(&s, app.path());
    for (key, want) in [
        ("api_key", "s3cret"),
        ("region", "eu-west"),
        ("greeting", "hi"),
        ("token", "from-file-for-all"),
    ] {
        let r = s.get(&format!("/vars/config?key={key}"));
        assert_eq!((r.status, r.text()), (200, want.to_string()), "{key}");
    }
    assert_eq!(s.get("/vars/config?key=unset").status, 404);
    assert_eq!(s.get("/vars/config?key=nope").status, 404);

    // A required variable without a value fails the deploy, naming it.
    let other = app_dir("other", "1", &[("web", "/other/...")], "");
    let manifest = std::fs::read_to_string(other.path().join("wharf.toml")).expect("read");
    std::fs::write(
        other.path().join("wharf.toml"),
        format!("[variables]\ndb_password = {{ required = true }}\n\n{manifest}"),
    )
    .expect("write");
    let o = s.wharf(&["deploy", other.path().to_str().expect("utf8")]);
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).contains("variable `db_password` of app `other` is required"),
        "{}",
        stderr(&o)
    );
    assert!(
        stderr(&o).contains("WHARF_VAR_OTHER__DB_PASSWORD"),
        "{}",
        stderr(&o)
    );
    assert_eq!(s.get("/other/hello").status, 404);
}

#[test]
fn wasi_logging_goes_to_the_app_log_with_levels() {
    let s = Server::start(&[]);
    deploy(&s, app_dir("logs", "1", &[("web", "/l/...")], "").path());
    assert_eq!(s.get("/l/logging").status, 200);
    let v = s.admin("GET", "/v1/apps/logs/logs", b"").json();
    let lines: Vec<(String, String)> = v["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .map(|l| {
            (
                l["stream"].as_str().unwrap_or("").into(),
                l["line"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    assert!(
        lines.contains(&("info".into(), "[test] an info message".into())),
        "{lines:?}"
    );
    assert!(
        lines.contains(&("error".into(), "an error message".into())),
        "{lines:?}"
    );
}

#[test]
fn read_only_files_from_the_bundle() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let s = Server::start_in(&state, &[]);
    let app = app_dir(
        "site",
        "1",
        &[("web", "/site/...")],
        "files = [{ source = \"static\", dest = \"/static\" }]",
    );
    std::fs::create_dir_all(app.path().join("static/css")).expect("mkdir");
    std::fs::write(app.path().join("static/index.html"), "<h1>hi</h1>").expect("write");
    std::fs::write(app.path().join("static/css/site.css"), "body{}").expect("write");
    deploy(&s, app.path());
    let r = s.get("/site/file?path=/static/index.html");
    assert_eq!((r.status, r.text()), (200, "<h1>hi</h1>".to_string()));
    assert_eq!(
        s.get("/site/file?path=/static/css/site.css").text(),
        "body{}"
    );
    // Escapes and the host's file system are out of reach.
    for path in [
        "/static/../../etc/passwd",
        "/etc/passwd",
        "/static/../wharf.toml",
        "../app.wasm",
    ] {
        let r = s.get(&format!("/site/file?path={path}"));
        assert_eq!(r.status, 404, "{path}: {}", r.text());
    }
    // An app without the grant sees nothing.
    deploy(&s, app_dir("bare", "1", &[("web", "/bare/...")], "").path());
    assert_eq!(s.get("/bare/file?path=/static/index.html").status, 404);

    // Mounts survive a restart, and are extracted again from the stored bundle when the
    // extracted copy is gone.
    assert!(s.stop().success());
    std::fs::remove_dir_all(state.join("mounts")).expect("remove extracted mounts");
    let s = Server::start_in(&state, &[]);
    assert_eq!(
        s.get("/site/file?path=/static/index.html").text(),
        "<h1>hi</h1>"
    );
}

#[test]
fn symlinks_in_mounted_directories_are_refused() {
    let s = Server::start(&[]);
    let app = app_dir(
        "links",
        "1",
        &[("web", "/links/...")],
        "files = [{ source = \"static\", dest = \"/static\" }]",
    );
    std::fs::create_dir_all(app.path().join("static")).expect("mkdir");
    std::os::unix::fs::symlink("/etc/passwd", app.path().join("static/passwd")).expect("symlink");
    let o = s.wharf(&["deploy", app.path().to_str().expect("utf8")]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("symbolic link"), "{}", stderr(&o));
    // A hand-made bundle with a symlink entry is refused by the server too.
    let tarball = bundle_with(app.path(), &["wharf.toml", "app.wasm", "static/passwd"]);
    let r = s.admin("PUT", "/v1/apps/links", &tarball);
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("unsafe path"), "{}", r.text());
}

/// Hardening class 12: a mount root that is itself a symbolic link (a cloned repository
/// with `static -> ~/.ssh`) used to be followed and uploaded.
#[test]
fn a_symlinked_mount_root_is_refused_before_anything_is_uploaded() {
    let s = Server::start(&[]);
    let app = app_dir(
        "rootlink",
        "1",
        &[("web", "/rootlink/...")],
        "files = [{ source = \"static\", dest = \"/static\" }]",
    );
    let secret = tempfile::tempdir().expect("tempdir");
    std::fs::write(secret.path().join("id_rsa"), "PRIVATE KEY").expect("write");
    std::os::unix::fs::symlink(secret.path(), app.path().join("static")).expect("symlink");
    let o = s.wharf(&["deploy", app.path().to_str().expect("utf8")]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("goes through the symbolic link"),
        "{}",
        stderr(&o)
    );
    // Nothing reached the server.
    assert_eq!(s.admin("GET", "/v1/apps/rootlink", b"").status, 404);
}

fn wagi_app(name: &str, route: &str, extra: &str) -> tempfile::TempDir {
    let d = tempfile::tempdir().expect("tempdir");
    std::fs::copy(guests::P1_WAGI, d.path().join("cgi.wasm")).expect("copy");
    std::fs::write(
        d.path().join("wharf.toml"),
        format!("[app]\nname = \"{name}\"\nversion = \"1\"\n\n[[component]]\nid = \"cgi\"\nsource = \"cgi.wasm\"\nroute = \"{route}\"\nexecutor = {{ type = \"wagi\" }}\n{extra}\n"),
    )
    .expect("write");
    d
}

#[test]
fn wagi_modules_serve_http_cgi_style() {
    let s = Server::start(&[]);
    let app = wagi_app(
        "cgi",
        "/cgi/...",
        "[component.environment]\nGREETING = \"howdy\"\n[component.limits]\ntimeout = \"500ms\"",
    );
    deploy(&s, app.path());
    let r = http(
        &s.data,
        "POST",
        "/cgi/run/me?status=201&x=1",
        &[("x-custom", "yes"), ("authorization", "Bearer hide-me")],
        b"payload",
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.header("x-wagi"), Some("yes"));
    let body = r.text();
    for line in [
        "REQUEST_METHOD=POST",
        "PATH_INFO=/run/me",
        "QUERY_STRING=status=201&x=1",
        "SCRIPT_NAME=/cgi",
        "X_MATCHED_ROUTE=/cgi/...",
        "CONTENT_LENGTH=7",
        "HTTP_X_CUSTOM=yes",
        "HTTP_AUTHORIZATION=\n",
        "GREETING=howdy",
        "body=payload",
    ] {
        assert!(body.contains(line), "missing `{line}` in:\n{body}");
    }
    let r = s.get("/cgi/x?spin");
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.header("x-wharf-error"), Some("timeout"));

    // A component declared as WAGI, and a module without the executor, are refused.
    let wrong = wagi_app("wrong", "/wrong", "");
    std::fs::copy(guests::HTTP_COMPONENT, wrong.path().join("cgi.wasm")).expect("copy");
    let r = s.admin(
        "PUT",
        "/v1/apps/wrong",
        &crate::serve::bundle_files(wrong.path(), &["wharf.toml", "cgi.wasm"]),
    );
    assert_eq!(r.status, 400);
    assert!(
        r.text().contains("runs wasip1 core modules"),
        "{}",
        r.text()
    );
}

#[test]
fn wagi_modules_get_read_only_mounts() {
    let s = Server::start(&[]);
    let app = wagi_app(
        "cgifiles",
        "/cf/...",
        "files = [{ source = \"data\", dest = \"/data\" }]",
    );
    std::fs::create_dir_all(app.path().join("data")).expect("mkdir");
    std::fs::write(app.path().join("data/a.txt"), "from the bundle").expect("write");
    deploy(&s, app.path());
    let r = s.get("/cf/x?file=/data/a.txt");
    assert_eq!((r.status, r.text()), (200, "from the bundle".to_string()));
    let r = s.get("/cf/x?file=/etc/hostname");
    assert_eq!(r.status, 404, "{}", r.text());
}

/// A real `redis-server` on a free loopback port, stopped on drop.
pub struct Redis {
    child: std::process::Child,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Redis {
    pub fn start() -> Redis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let dir = tempfile::tempdir().expect("tempdir");
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir"])
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server must be installed (apt-get install redis-server; .ci/run installs it)");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Redis {
            child,
            url: format!("redis://127.0.0.1:{port}"),
            _dir: dir,
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn kv_checks(s: &Server) {
    deploy(
        s,
        app_dir(
            "kva",
            "1",
            &[("web", "/kva/...")],
            "key_value_stores = [\"default\", \"carts\"]",
        )
        .path(),
    );
    deploy(
        s,
        app_dir(
            "kvb",
            "1",
            &[("web", "/kvb/...")],
            "key_value_stores = [\"default\"]",
        )
        .path(),
    );
    let get = |p: &str| {
        let r = s.get(p);
        (r.status, r.text())
    };
    assert_eq!(
        get("/kva/kv?op=set&store=default&key=greeting&value=hello"),
        (200, "stored".into())
    );
    assert_eq!(
        get("/kva/kv?op=get&store=default&key=greeting"),
        (200, "hello".into())
    );
    assert_eq!(
        get("/kva/kv?op=get&store=carts&key=greeting"),
        (200, "<none>".into()),
        "stores are separate"
    );
    assert_eq!(
        get("/kvb/kv?op=get&store=default&key=greeting"),
        (200, "<none>".into()),
        "apps are isolated"
    );
    assert_eq!(get("/kva/kv?op=incr&store=carts&key=n"), (200, "1".into()));
    assert_eq!(get("/kva/kv?op=incr&store=carts&key=n"), (200, "2".into()));
    assert_eq!(
        get("/kva/kv?op=set&store=default&key=other&value=x"),
        (200, "stored".into())
    );
    assert_eq!(
        get("/kva/kv?op=keys&store=default"),
        (200, "greeting,other".into())
    );
    assert_eq!(
        get("/kva/kv?op=del&store=default&key=other"),
        (200, "deleted".into())
    );
    assert_eq!(
        get("/kva/kv?op=keys&store=default"),
        (200, "greeting".into())
    );
    // Not granted: access denied, as the standard error.
    let (status, body) = get("/kvb/kv?op=get&store=carts&key=n");
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("AccessDenied"), "{body}");
    // Size limits are errors the guest sees, naming the limit.
    let long_key = "k".repeat(300);
    let (status, body) = get(&format!(
        "/kva/kv?op=set&store=default&key={long_key}&value=v"
    ));
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("limit"), "{body}");
}

/// `apps rm` keeps an app's key-value data (a later app of the same name sees it);
/// `apps rm --purge` deletes it, in every store, and leaves other apps' data alone.
/// Run after [`kv_checks`].
fn purge_checks(s: &Server) {
    let kva = || {
        app_dir(
            "kva",
            "2",
            &[("web", "/kva/...")],
            "key_value_stores = [\"default\", \"carts\"]",
        )
    };
    let o = s.wharf(&["apps", "rm", "kva"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        out.contains("data is kept") && out.contains("--purge"),
        "{out}"
    );
    deploy(s, kva().path());
    assert_eq!(
        s.get("/kva/kv?op=get&store=default&key=greeting").text(),
        "hello",
        "`rm` without --purge keeps the data"
    );
    assert_eq!(
        get_text(s, "/kvb/kv?op=set&store=default&key=mine&value=b"),
        "stored"
    );
    let o = s.wharf(&["apps", "rm", "kva", "--purge", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["removed"]["name"], "kva");
    // `greeting` in `default`, `n` in `carts`.
    assert_eq!(v["purged"]["keys"], 2, "{v}");
    assert_eq!(
        s.get("/kva/kv?op=get&store=default&key=greeting").status,
        404
    );
    deploy(s, kva().path());
    assert_eq!(
        s.get("/kva/kv?op=get&store=default&key=greeting").text(),
        "<none>",
        "purged"
    );
    assert_eq!(s.get("/kva/kv?op=get&store=carts&key=n").text(), "<none>");
    assert_eq!(
        get_text(s, "/kvb/kv?op=get&store=default&key=mine"),
        "b",
        "another app's data is untouched"
    );
    // Purging a name that is not deployed works: the data of an app removed earlier.
    assert_eq!(
        get_text(s, "/kva/kv?op=set&store=default&key=again&value=1"),
        "stored"
    );
    let o = s.wharf(&["apps", "rm", "kva"]);
    assert!(o.status.success());
    let o = s.wharf(&["apps", "rm", "kva", "--purge"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        out.contains("not deployed") && out.contains("1 key-value key"),
        "{out}"
    );
}

fn get_text(s: &Server, path: &str) -> String {
    s.get(path).text()
}

#[test]
fn key_value_embedded_backend_grants_isolation_and_persistence() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let s = Server::start_in(&state, &[]);
    kv_checks(&s);
    assert!(s.stop().success());
    let s = Server::start_in(&state, &[]);
    assert_eq!(
        s.get("/kva/kv?op=get&store=default&key=greeting").text(),
        "hello",
        "data survives a restart"
    );
    assert_eq!(s.get("/kva/kv?op=get&store=carts&key=n").text(), "2");
    purge_checks(&s);
}

#[test]
fn key_value_redis_backend() {
    let redis = Redis::start();
    let s = Server::start(&["--key-value", &redis.url]);
    kv_checks(&s);
    // The data is in Redis: a second server on another state dir sees it.
    let s2 = Server::start(&["--key-value", &redis.url]);
    deploy(
        &s2,
        app_dir(
            "kva",
            "1",
            &[("web", "/kva/...")],
            "key_value_stores = [\"default\", \"carts\"]",
        )
        .path(),
    );
    assert_eq!(s2.get("/kva/kv?op=get&store=carts&key=n").text(), "2");
    deploy(
        &s2,
        app_dir(
            "kvb",
            "1",
            &[("web", "/kvb/...")],
            "key_value_stores = [\"default\"]",
        )
        .path(),
    );
    purge_checks(&s2);
    // The purge went to the shared Redis: the first server's app, which had stayed
    // deployed there, sees nothing either; `kvb`'s data was never touched.
    assert_eq!(
        s.get("/kva/kv?op=get&store=default&key=greeting").text(),
        "<none>"
    );
}

#[test]
fn key_value_backend_unreachable_is_a_clear_startup_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let env = Env::isolated();
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("redis://127.0.0.1:{port}");
    let o = env.wharf(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--state-dir",
        dir.path().to_str().expect("utf8"),
        "--key-value",
        &url,
    ]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains(&url), "{}", stderr(&o));
}

/// A tiny HTTP server answering every request with `body`.
fn upstream(body: &'static str) -> (String, std::thread::JoinHandle<()>) {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr").to_string();
    let h = std::thread::spawn(move || {
        for stream in l.incoming().take(20) {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (addr, h)
}

#[test]
fn outbound_http_only_to_allowed_hosts() {
    let (addr, _h) = upstream("upstream says hi");
    let port = addr.rsplit(':').next().expect("port").to_string();
    // By default no manifest can reach a private address, not even listed as a literal.
    let strict = Server::start(&[]);
    let allowed = app_dir(
        "allowed",
        "1",
        &[("web", "/ok/...")],
        &format!("allowed_outbound_hosts = [\"http://{addr}\"]"),
    );
    deploy(&strict, allowed.path());
    let r = strict.get(&format!("/ok/fetch?url=http://{addr}/x"));
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.text().contains("DestinationIpProhibited"), "{}", r.text());
    drop(strict);

    // The operator's --allow-private-outbound lets listed literals through.
    let s = Server::start(&["--allow-private-outbound"]);
    deploy(
        &s,
        app_dir(
            "allowed",
            "1",
            &[("web", "/ok/...")],
            &format!("allowed_outbound_hosts = [\"http://{addr}\"]"),
        )
        .path(),
    );
    deploy(
        &s,
        app_dir("nogrant", "1", &[("web", "/no/...")], "").path(),
    );
    deploy(
        &s,
        app_dir(
            "wild",
            "1",
            &[("web", "/wild/...")],
            &format!("allowed_outbound_hosts = [\"http://*:{port}\"]"),
        )
        .path(),
    );

    let r = s.get(&format!("/ok/fetch?url=http://{addr}/x"));
    assert_eq!((r.status, r.text()), (200, "upstream says hi".to_string()));

    let r = s.get(&format!("/no/fetch?url=http://{addr}/x"));
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.text().contains("HttpRequestDenied"), "{}", r.text());

    // A wildcard never reaches loopback: `localhost` resolves to 127.0.0.1, which is
    // refused after resolution because no entry names it explicitly.
    let r = s.get(&format!("/wild/fetch?url=http://localhost:{port}/x"));
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.text().contains("DestinationIpProhibited"), "{}", r.text());

    // A bad allowed_outbound_hosts entry fails the deploy with the field named.
    let bad = app_dir(
        "badhosts",
        "1",
        &[("web", "/bad/...")],
        "allowed_outbound_hosts = [\"ftp://files.example.com\"]",
    );
    let o = s.wharf(&["deploy", bad.path().to_str().expect("utf8")]);
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).contains("allowed_outbound_hosts")
            && stderr(&o).contains("ftp://files.example.com"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn guestbook_example_uses_every_capability() {
    use std::io::{Read, Write};
    // A local "quote service" for the outbound call.
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr").to_string();
    std::thread::spawn(move || {
        for stream in l.incoming().take(5) {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).unwrap_or(0);
            let asked_quote = String::from_utf8_lossy(&buf[..n]).starts_with("GET /quote ");
            let body = if asked_quote {
                "Ship it."
            } else {
                "wrong path"
            };
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let d = tempfile::tempdir().expect("tempdir");
    let src = Path::new(guests::EXAMPLE_GUESTBOOK_DIR);
    let manifest = std::fs::read_to_string(src.join("wharf.toml"))
        .expect("manifest")
        .replace("127.0.0.1:8081", &addr);
    std::fs::write(d.path().join("wharf.toml"), manifest).expect("write");
    std::fs::copy(guests::EXAMPLE_GUESTBOOK, d.path().join("guestbook.wasm")).expect("copy");
    std::fs::create_dir(d.path().join("static")).expect("mkdir");
    std::fs::copy(
        src.join("static/index.html"),
        d.path().join("static/index.html"),
    )
    .expect("copy");

    let s = Server::start_with_env(
        &["--allow-private-outbound"],
        &[("WHARF_VAR_GUESTBOOK__TITLE", "Visitors of the test")],
    );
    deploy(&s, d.path());
    let r = s.get("/guestbook/");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("<h1>Guestbook</h1>"), "{}", r.text());
    let r = http(&s.data, "POST", "/guestbook/sign?name=Ada", &[], b"");
    assert_eq!(
        (r.status, r.text()),
        (201, "thanks, Ada: you are visitor 1\n".to_string())
    );
    let r = http(&s.data, "POST", "/guestbook/sign?name=Grace", &[], b"");
    assert_eq!(r.text(), "thanks, Grace: you are visitor 2\n");
    assert_eq!(
        s.get("/guestbook/entries").text(),
        "Visitors of the test\nAda\nGrace\n"
    );
    let r = s.get("/guestbook/quote");
    assert_eq!((r.status, r.text()), (200, "Ship it.".to_string()));
}
