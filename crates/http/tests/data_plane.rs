//! The HTTP trigger in-process: a real runtime (SQLite registry in a temporary state
//! dir), a real listener on a loopback port, real guests built from this repo. Routing,
//! caps, the status and `x-wharf-error` of every failure kind, and where guest output
//! goes. The binary-driven tests in `tests/all/serve.rs` cover the same server end to
//! end.

use std::sync::Arc;
use std::time::Duration;

use wharf_runtime::DeployError;
use wharf_test_programs as guests;

mod common;
use common::{Server, request};

async fn server() -> Server {
    Server::start().await
}

/// Deploys the test HTTP component as `name` with these `[[component]]` lines.
async fn deploy(s: &Server, name: &str, component: &str) -> Result<(), DeployError> {
    s.deploy_http(name, component).await.map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_pattern_with_params_and_404s_the_rest() {
    let s = server().await;
    deploy(
        &s,
        "shop",
        "route = \"/shop/...\"\nenvironment = { GREETING = \"shop\" }",
    )
    .await
    .expect("shop");
    deploy(
        &s,
        "api",
        "route = \"/api/:version/...\"\nenvironment = { GREETING = \"api\" }",
    )
    .await
    .expect("api");
    let r = request(&s, "GET", "/api/v1/hello", b"").await;
    assert_eq!((r.status, r.body.as_str()), (200, "hello from api\n"));
    assert_eq!(r.header("x-wharf-matched-route"), Some("/api/:version/..."));
    assert_eq!(r.header("x-wharf-param-version"), Some("v1"));
    let r = request(&s, "GET", "/shop/x/hello", b"").await;
    assert_eq!((r.status, r.body.as_str()), (200, "hello from shop\n"));
    let r = request(&s, "GET", "/elsewhere/hello", b"").await;
    assert_eq!(
        (r.status, r.header("x-wharf-error")),
        (404, Some("no-route"))
    );

    // A removed app stops being routed at once.
    s.runtime.remove("shop").await.expect("remove");
    let r = request(&s, "GET", "/shop/x/hello", b"").await;
    assert_eq!(
        (r.status, r.header("x-wharf-error")),
        (404, Some("no-route"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overlapping_route_of_another_app_is_refused_naming_both() {
    let s = server().await;
    deploy(&s, "a", "route = \"/shop/...\"").await.expect("a");
    match deploy(&s, "b", "route = \"/shop/...\"").await {
        Err(DeployError::Conflict(m)) => {
            assert!(m.contains("app `a`") && m.contains("/shop/..."), "{m}")
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert!(s.runtime.app("b").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_failure_kind_gets_its_status_and_reason() {
    let s = server().await;
    deploy(
        &s,
        "bad",
        "route = \"/bad/...\"\nlimits = { memory = \"16MiB\", timeout = \"300ms\", max_body = \"1KiB\" }",
    )
    .await
    .expect("deploy");
    for (path, body, status, kind) in [
        ("/bad/trap", &b""[..], 500, "trap"),
        ("/bad/membomb", &b""[..], 500, "memory"),
        ("/bad/spin", &b""[..], 503, "timeout"),
        ("/bad/echo", &[b'x'; 4096][..], 413, "body-too-large"),
    ] {
        let r = request(&s, "POST", path, body).await;
        assert_eq!(
            (r.status, r.header("x-wharf-error")),
            (status, Some(kind)),
            "{path}: {}",
            r.body
        );
        assert!(r.body.starts_with("wharf: "), "{path}: {}", r.body);
    }
    // And the app still answers afterwards.
    let r = request(&s, "POST", "/bad/echo", b"abc").await;
    assert_eq!((r.status, r.body.as_str()), (200, "abc"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_concurrency_cap_answers_503_while_a_request_runs() {
    let s = server().await;
    deploy(
        &s,
        "slow",
        "route = \"/slow/...\"\nlimits = { max_concurrency = 1 }",
    )
    .await
    .expect("deploy");
    let s = Arc::new(s);
    let s2 = s.clone();
    let first = tokio::spawn(async move { request(&s2, "GET", "/slow/sleep?ms=1500", b"").await });
    // Wait until the first request holds the only permit (observed, not slept for).
    let comp_sem = s.runtime.app("slow").expect("live").components[0]
        .concurrency
        .clone();
    let t = std::time::Instant::now();
    while comp_sem.available_permits() > 0 {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "first request never started"
        );
        tokio::task::yield_now().await;
    }
    let r = request(&s, "GET", "/slow/hello", b"").await;
    assert_eq!(
        (r.status, r.header("x-wharf-error")),
        (503, Some("concurrency"))
    );
    assert_eq!(r.header("retry-after"), Some("1"));
    let r = first.await.expect("first");
    assert_eq!(r.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_stdout_stderr_and_wasi_logging_land_in_the_app_log() {
    let s = server().await;
    deploy(&s, "talk", "route = \"/talk/...\"")
        .await
        .expect("deploy");
    assert_eq!(request(&s, "GET", "/talk/log", b"").await.status, 200);
    assert_eq!(request(&s, "GET", "/talk/logging", b"").await.status, 200);
    let (lines, _) = s.runtime.logs_for("talk").tail(100);
    let got: Vec<(&str, &str)> = lines.iter().map(|l| (l.stream, l.line.as_str())).collect();
    for want in [
        ("stdout", "log line to stdout"),
        ("stderr", "log line to stderr"),
        ("info", "[test] an info message"),
        ("error", "an error message"),
    ] {
        assert!(got.contains(&want), "missing {want:?} in {got:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wagi_modules_run_through_the_same_builder() {
    let s = server().await;
    s.deploy(
        "[app]\nname = \"cgi\"\nversion = \"1\"\n\n[[component]]\nid = \"cgi\"\nsource = \"cgi.wasm\"\nroute = \"/cgi/...\"\nexecutor = { type = \"wagi\" }\nenvironment = { GREETING = \"granted\" }\nlimits = { timeout = \"300ms\" }\n",
        &[("cgi.wasm", guests::P1_WAGI)],
    )
    .await
    .expect("deploy");
    let r = request(&s, "POST", "/cgi/x?status=201", b"payload").await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.header("x-wagi"), Some("yes"));
    assert!(r.body.contains("GREETING=granted"), "{}", r.body);
    assert!(r.body.contains("PATH_INFO=/x"), "{}", r.body);
    assert!(r.body.ends_with("body=payload"), "{}", r.body);
    // A spinning module is stopped at its deadline like a component.
    let r = request(&s, "GET", "/cgi/x?spin", b"").await;
    assert_eq!(r.header("x-wharf-error"), Some("timeout"));
}
