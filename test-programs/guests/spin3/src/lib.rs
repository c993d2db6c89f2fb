//! A `spin-sdk` 7 HTTP component (WASI 0.3: it exports `wasi:http/handler@0.3.0`),
//! written the way the SDK's users write one. It dispatches on the last path segment:
//! - `hello`: 200 "Hello, Spin";
//! - `echo`: echoes the request body;
//! - `env?name=N`: the value of environment variable N (404 when unset);
//! - `fetch?url=U`: an outbound GET through `wasi:http/client@0.3.0`; the upstream's
//!   status and body, or 502 with the error;
//! - `spin`: loops forever (a hostile guest);
//! - anything else: 200 "ok".
use http_body_util::BodyExt;
use spin_sdk::http::{FullBody, IntoResponse, Request, StatusCode};
use spin_sdk::http_service;

fn param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

#[http_service]
async fn handle(req: Request) -> anyhow::Result<impl IntoResponse> {
    let (status, body) = route(req).await?;
    Ok((status, FullBody::new(bytes::Bytes::from(body))))
}

async fn route(req: Request) -> anyhow::Result<(StatusCode, Vec<u8>)> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let last = path.rsplit('/').next().unwrap_or("").to_string();
    Ok(match last.as_str() {
        "hello" => (StatusCode::OK, b"Hello, Spin".to_vec()),
        "echo" => {
            let body = req
                .into_body()
                .collect()
                .await
                .map_err(|e| anyhow::anyhow!("reading the body: {e:?}"))?
                .to_bytes();
            (StatusCode::OK, body.to_vec())
        }
        "env" => match std::env::var(param(&query, "name").unwrap_or("")) {
            Ok(v) => (StatusCode::OK, v.into_bytes()),
            Err(_) => (StatusCode::NOT_FOUND, b"unset".to_vec()),
        },
        "fetch" => match spin_sdk::http::get(param(&query, "url").unwrap_or("")).await {
            Ok(resp) => {
                let status = resp.status();
                let body = resp
                    .into_body()
                    .collect()
                    .await
                    .map_err(|e| anyhow::anyhow!("reading the upstream body: {e:?}"))?
                    .to_bytes();
                (status, body.to_vec())
            }
            Err(e) => (StatusCode::BAD_GATEWAY, format!("{e:?}").into_bytes()),
        },
        "spin" => {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        _ => (StatusCode::OK, b"ok".to_vec()),
    })
}
