//! CPU lanes against the real server: a guest that runs past its first slice runs only
//! while it holds a lane; apps take turns at the lanes, so a neighbour's CPU-bound
//! request is not drowned by a hostile app's many spinning guests; a guest blocked in a
//! host call holds no lane. The test runtime has two worker threads, so one lane.

mod common;

use std::time::Duration;

use common::{Server, wait_for};

/// One test at a time: each measures an ordering under CPU contention it creates.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn get(s: &Server, path: &str) -> (u16, String) {
    http_get(s.addr, path).await
}

/// A plain HTTP/1.1 GET on a new connection: the status and the body.
async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut c = tokio::net::TcpStream::connect(addr).await.expect("connect");
    c.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut buf = Vec::new();
    c.read_to_end(&mut buf).await.expect("read");
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

/// The value of `metric{app="app"}` in the server's metrics (0 when absent).
fn metric(s: &Server, metric: &str, app: &str) -> f64 {
    let text = s.runtime.metrics.encode();
    let prefix = format!("{metric}{{app=\"{app}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_neighbours_cpu_bound_request_finishes_while_a_hostile_app_spins() {
    let _serial = SERIAL.lock().await;
    let s = Server::start().await;
    assert_eq!(s.runtime.cpu_lanes().lanes(), 1, "two workers, one lane");
    s.deploy_http(
        "bad",
        "route = \"/bad/...\"\nlimits = { timeout = \"1s\", max_concurrency = 16 }",
    )
    .await
    .expect("deploy bad");
    s.deploy_http(
        "good",
        "route = \"/good/...\"\nlimits = { timeout = \"10s\" }",
    )
    .await
    .expect("deploy good");

    // Sixteen guests of `bad` spin until their 1 s deadline.
    let spinners: Vec<_> = (0..16)
        .map(|_| {
            let addr = s.addr;
            tokio::spawn(async move {
                let r = http_get(addr, "/bad/spin").await;
                (r, std::time::Instant::now())
            })
        })
        .collect();
    // They are gated: with one lane, fifteen of them wait their turn.
    assert!(
        wait_for(Duration::from_secs(2), || metric(
            &s,
            "wharf_cpu_wait_seconds_total",
            "bad"
        ) > 0.0)
        .await,
        "the spinners never waited for a lane"
    );
    assert!(s.runtime.cpu_lanes().busy() <= 1);

    // `good` needs about 80 ms of CPU. Taking turns with `bad` (one app against one),
    // it gets half the lane and answers in about 200 ms, well before the spinners'
    // deadline; were the lane shared per guest instead (1 turn in 17), it would need
    // about 1.4 s.
    let good_start = std::time::Instant::now();
    let (status, body) = get(&s, "/good/sleep?work=150&ms=0").await;
    let good_done = std::time::Instant::now();
    eprintln!("good's request took {:?}", good_done - good_start);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("slept"), "{body}");

    for t in spinners {
        let ((status, body), at) = t.await.expect("join");
        assert_eq!(status, 503, "a spinner: {body}");
        assert!(body.contains("deadline"), "a spinner: {body}");
        assert!(
            at > good_done,
            "a spinner of `bad` answered before `good`'s request"
        );
    }
    // Every lane came back, timeouts included.
    assert!(wait_for(Duration::from_secs(2), || s.runtime.cpu_lanes().busy() == 0).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_blocked_in_a_host_call_holds_no_lane() {
    let _serial = SERIAL.lock().await;
    let s = Server::start().await;
    s.deploy_http(
        "sleeper",
        "route = \"/sleeper/...\"\nlimits = { timeout = \"10s\" }",
    )
    .await
    .expect("deploy sleeper");
    s.deploy_http(
        "worker",
        "route = \"/worker/...\"\nlimits = { timeout = \"10s\" }",
    )
    .await
    .expect("deploy worker");

    // Computes for about 50 ms (so it is gated and takes the lane), then sleeps 3 s in a
    // host call.
    let addr = s.addr;
    let sleeper =
        tokio::spawn(async move { http_get(addr, "/sleeper/sleep?work=50&ms=3000").await });
    assert!(
        wait_for(Duration::from_secs(2), || metric(
            &s,
            "wharf_active_instances",
            "sleeper"
        ) == 1.0)
        .await
    );
    // Another app's CPU-bound request (gated too) gets the lane while the sleeper
    // sleeps: it answers while the sleeper is still running.
    let (status, body) = get(&s, "/worker/sleep?work=300&ms=0").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("slept"), "{body}");
    assert_eq!(
        metric(&s, "wharf_active_instances", "sleeper"),
        1.0,
        "the sleeper finished first: its lane was held through its sleep"
    );
    assert!(
        wait_for(Duration::from_secs(1), || s.runtime.cpu_lanes().busy() == 0).await,
        "a lane is held while the sleeper sleeps"
    );
    assert_eq!(metric(&s, "wharf_active_instances", "sleeper"), 1.0);
    let (status, _) = sleeper.await.expect("join");
    assert_eq!(status, 200);
}
