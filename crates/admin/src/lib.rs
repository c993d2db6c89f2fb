//! Wharf's admin REST API, on its own listener (loopback by default), JSON in and out.
//!
//! | method and path | what |
//! | --- | --- |
//! | `GET /healthz` | 200 while the process runs |
//! | `GET /readyz` | 200 once every stored app has been restored, else 503 |
//! | `GET /metrics` | Prometheus text format |
//! | `GET /v1/apps` | list apps with routes and versions |
//! | `POST /v1/apps` | deploy a new app from a bundle (tar or tar.gz); 409 if it exists |
//! | `PUT /v1/apps/{name}` | deploy or replace app `name` |
//! | `GET /v1/apps/{name}` | show one app |
//! | `DELETE /v1/apps/{name}[?purge=true]` | remove an app (and delete its key-value data and logs) |
//! | `GET /v1/apps/{name}/logs?tail=N` | the app's captured guest output |
//! | `GET /v1/apps/{name}/exports` | the exports of the app's plugin components, with WIT signatures |
//! | `POST /v1/apps/{name}/invoke/{export}` | call a plugin export: JSON arguments in, JSON result out |
//!
//! Plugin invocation lives on the admin listener, not the data plane, on purpose: a
//! plugin's exports are an internal API (any function of the component, with typed
//! values), not a public HTTP route, so they get the admin token and the admin network
//! boundary; public HTTP belongs to `wasi:http` components with routes.
//!
//! Everything under `/v1` needs `Authorization: Bearer <token>`; a missing or wrong
//! token gets 401 and changes nothing. Health, readiness and metrics are open, as
//! probes and Prometheus scrapers expect; bind the admin listener to a private address.
//! Errors are `{"error": {"kind": ..., "message": ...}}` with the status code that
//! fits: 400 invalid bundle or manifest, 403 refused by the verification policy, 404
//! unknown app, 409 route conflict or existing app, 413 bundle too large, 500 server
//! fault.
//!
//! The request and reply bodies are the types in [`api`], shared with clients.
#![deny(missing_docs)]

pub mod api;

use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use tokio::net::TcpListener;
use wharf_http::server::{ConnLimits, Connections};
use wharf_runtime::{DeployError, DeployMode, Runtime};

use crate::api::{
    AppList, ComponentExports, ErrorBody, Exports, InvokeReply, InvokeRequest, LogsReply, Purged,
    Removed,
};

/// The admin bearer token.
#[derive(Clone)]
pub struct AdminToken(String);

impl AdminToken {
    /// Reads the token from `path`, or creates one there (64 hex chars from the OS's
    /// random source, mode 0600) when the file does not exist.
    pub fn load_or_create(path: &Path) -> anyhow::Result<AdminToken> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        match std::fs::read_to_string(path) {
            Ok(t) => {
                use std::os::unix::fs::MetadataExt;
                // Like ssh with a private key: a token others can read is not a secret.
                let mode = std::fs::metadata(path)
                    .map_err(|e| {
                        anyhow::anyhow!("cannot read admin token file `{}`: {e}", path.display())
                    })?
                    .mode();
                anyhow::ensure!(
                    mode & 0o077 == 0,
                    "admin token file `{}` can be read by other users (mode {:o}); run `chmod 600 {}`",
                    path.display(),
                    mode & 0o777,
                    path.display()
                );
                let t = t.trim().to_string();
                anyhow::ensure!(
                    t.len() >= 16,
                    "admin token file `{}` holds fewer than 16 characters; put a longer secret in it, or delete it to have one generated",
                    path.display()
                );
                return Ok(AdminToken(t));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => anyhow::bail!("cannot read admin token file `{}`: {e}", path.display()),
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw).map_err(|e| anyhow::anyhow!("getrandom: {e}"))?;
        let token = hex::encode(raw);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| {
                anyhow::anyhow!("cannot create admin token file `{}`: {e}", path.display())
            })?;
        f.write_all(token.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        Ok(AdminToken(token))
    }

    /// Wraps a known token.
    pub fn new(token: String) -> AdminToken {
        AdminToken(token)
    }

    fn verify(&self, header: Option<&http::HeaderValue>) -> bool {
        let Some(given) = header
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "))
        else {
            return false;
        };
        // Constant time in the token's length.
        let (a, b) = (given.trim().as_bytes(), self.0.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

/// The admin API server.
pub struct Admin {
    host: Arc<Runtime>,
    token: AdminToken,
    ready: AtomicBool,
    limits: ConnLimits,
}

type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, Infallible>;

impl Admin {
    /// An admin API over `host`, with the default connection cap (64) and timeouts.
    pub fn new(host: Arc<Runtime>, token: AdminToken) -> Arc<Admin> {
        Admin::with_limits(host, token, ConnLimits::admin())
    }

    /// An admin API over `host` whose listener has these connection cap and timeouts.
    pub fn with_limits(host: Arc<Runtime>, token: AdminToken, limits: ConnLimits) -> Arc<Admin> {
        Arc::new(Admin {
            host,
            token,
            ready: AtomicBool::new(false),
            limits,
        })
    }

    /// Marks the server ready (`/readyz` answers 200).
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::SeqCst);
    }

    /// Serves until `shutdown` resolves.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        // Capped, with header-read and idle timeouts, like the data plane's listener.
        let conns = Connections::new(self.limits);
        tokio::pin!(shutdown);
        loop {
            let stream = tokio::select! {
                _ = &mut shutdown => break,
                a = listener.accept() => match a {
                    Ok((s, _)) => s,
                    Err(e) => {
                        tracing::warn!("admin accept failed: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let this = self.clone();
            conns.serve(
                stream,
                move |req| {
                    let this = this.clone();
                    async move { this.handle(req).await }
                },
                || tracing::warn!("admin API: connection refused, at its connection cap"),
            );
        }
        drop(listener);
        conns.shutdown(std::time::Duration::from_secs(5)).await;
    }

    /// Answers one admin request.
    pub async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let path = req.uri().path().to_string();
        let method = req.method().clone();
        match (&method, path.as_str()) {
            (&Method::GET, "/healthz") => return text(StatusCode::OK, "ok\n"),
            (&Method::GET, "/readyz") => {
                return if self.ready.load(Ordering::SeqCst) {
                    text(StatusCode::OK, "ready\n")
                } else {
                    text(StatusCode::SERVICE_UNAVAILABLE, "restoring apps\n")
                };
            }
            (&Method::GET, "/metrics") => {
                let mut r = text(StatusCode::OK, &self.host.metrics.encode());
                r.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static(
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    ),
                );
                return r;
            }
            _ => {}
        }
        if !path.starts_with("/v1/") && path != "/v1" {
            return error(
                StatusCode::NOT_FOUND,
                "not-found",
                &format!("no admin endpoint `{path}`; see /v1/apps"),
            );
        }
        if !self
            .token
            .verify(req.headers().get(http::header::AUTHORIZATION))
        {
            let mut r = error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing or wrong bearer token; send `Authorization: Bearer <token>` with the token from the server's state dir (admin-token)",
            );
            r.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer"),
            );
            return r;
        }
        let segs: Vec<&str> = path.trim_end_matches('/').split('/').skip(2).collect();
        match (&method, segs.as_slice()) {
            (&Method::GET, ["apps"]) => {
                let apps = self.host.apps().iter().map(|a| a.info()).collect();
                json_response_sorted(StatusCode::OK, &AppList { apps })
            }
            (&Method::POST, ["apps"]) => self.deploy(req, None, DeployMode::Create).await,
            (&Method::PUT, ["apps", name]) => {
                let name = name.to_string();
                self.deploy(req, Some(name), DeployMode::Upsert).await
            }
            (&Method::GET, ["apps", name]) => match self.host.app(name) {
                Some(app) => json_response(StatusCode::OK, &app.info()),
                None => error(
                    StatusCode::NOT_FOUND,
                    "not-found",
                    &format!("app `{name}` is not deployed"),
                ),
            },
            (&Method::DELETE, ["apps", name]) => {
                let purge = req
                    .uri()
                    .query()
                    .is_some_and(|q| q.split('&').any(|kv| kv == "purge=true" || kv == "purge"));
                let reply = if purge {
                    self.host
                        .remove_and_purge(name)
                        .await
                        .map(|(removed, keys)| Removed {
                            removed,
                            purged: Some(Purged { keys }),
                        })
                } else {
                    self.host.remove(name).await.map(|info| Removed {
                        removed: Some(info),
                        purged: None,
                    })
                };
                match reply {
                    Ok(r) => json_response_sorted(StatusCode::OK, &r),
                    Err(e) => deploy_error(e),
                }
            }
            (&Method::GET, ["apps", name, "exports"]) => match self.host.app(name) {
                None => error(
                    StatusCode::NOT_FOUND,
                    "not-found",
                    &format!("app `{name}` is not deployed"),
                ),
                Some(app) => {
                    let components = app
                        .plugins()
                        .map(|(id, pool)| ComponentExports {
                            component: id.to_string(),
                            exports: pool
                                .plugin()
                                .exports()
                                .iter()
                                .map(|e| e.signature.clone())
                                .collect(),
                        })
                        .collect();
                    let reply = Exports {
                        app: name.to_string(),
                        components,
                    };
                    json_response(StatusCode::OK, &reply)
                }
            },
            (&Method::POST, ["apps", name, "invoke", export]) => {
                let (name, export) = (name.to_string(), export.to_string());
                self.invoke(req, &name, &export).await
            }
            (&Method::GET, ["apps", name, "logs"]) => {
                if self.host.app(name).is_none() {
                    return error(
                        StatusCode::NOT_FOUND,
                        "not-found",
                        &format!("app `{name}` is not deployed"),
                    );
                }
                let tail = req
                    .uri()
                    .query()
                    .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("tail=")))
                    .and_then(|v| v.parse::<usize>().ok())
                    .unwrap_or(100);
                let (lines, dropped) = self.host.logs_for(name).tail(tail);
                let reply = LogsReply {
                    app: name.to_string(),
                    dropped,
                    lines: lines.into_iter().map(Into::into).collect(),
                };
                json_response(StatusCode::OK, &reply)
            }
            _ => error(
                StatusCode::NOT_FOUND,
                "not-found",
                &format!("no admin endpoint `{method} {path}`; see the admin API in the docs"),
            ),
        }
    }

    /// Calls a plugin export. The body is an [`InvokeRequest`]: `{"args": [...]}`
    /// (positional) or `{"args": {"param": ...}}` (by name), mapped to the export's WIT
    /// types (see `wharf_plugin::json`), or `{"wave": ["3", "4"]}` with one WAVE text per
    /// parameter, or a bare array. The answer is an [`InvokeReply`].
    async fn invoke(&self, req: Request<Incoming>, name: &str, export: &str) -> Response<Body> {
        use wharf_engine::wasmtime::component::{Val, wasm_wave};
        use wharf_plugin::PluginError;
        let Some(app) = self.host.app(name) else {
            return error(
                StatusCode::NOT_FOUND,
                "not-found",
                &format!("app `{name}` is not deployed"),
            );
        };
        let wanted = req
            .uri()
            .query()
            .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("component=")))
            .map(str::to_string);
        let pools: Vec<(&str, &std::sync::Arc<wharf_plugin::PluginPool>)> = app
            .plugins()
            .filter(|(id, _)| wanted.as_deref().is_none_or(|w| w == *id))
            .collect();
        // The component that has this export (a `?component=` picks among several).
        let Some((pool, info)) = pools
            .iter()
            .find_map(|(_, p)| p.plugin().export(export).ok().map(|i| (*p, i.clone())))
        else {
            return error(
                StatusCode::NOT_FOUND,
                "not-found",
                &format!(
                    "app `{name}` has no plugin export `{export}`{}; see GET /v1/apps/{name}/exports",
                    wanted
                        .map(|w| format!(" in component `{w}`"))
                        .unwrap_or_default()
                ),
            );
        };
        let body = match Limited::new(req.into_body(), 16 << 20).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "bad-request",
                    &format!("reading the body failed: {e}"),
                );
            }
        };
        let request: InvokeRequest = if body.is_empty() {
            InvokeRequest::default()
        } else {
            // Any JSON is a request (a bare value is the arguments), so only a body that
            // is not JSON fails here.
            match serde_json::from_slice(&body) {
                Ok(v) => v,
                Err(e) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "bad-request",
                        &format!("the body is not JSON: {e}"),
                    );
                }
            }
        };
        let args: Result<Vec<Val>, String> = match &request {
            InvokeRequest::Wave { wave: texts } => {
                if texts.len() != info.params.len() {
                    Err(format!(
                        "`{}` takes {} argument(s), {} given",
                        info.signature,
                        info.params.len(),
                        texts.len()
                    ))
                } else {
                    info.params
                        .iter()
                        .zip(texts)
                        .enumerate()
                        .map(|(i, ((p, ty), t))| {
                            wasm_wave::from_str::<Val>(ty, t).map_err(|e| {
                                format!(
                                    "wave[{i}] (`{p}`): expected {}: {e}",
                                    wharf_plugin::json::wit_type_name(ty)
                                )
                            })
                        })
                        .collect()
                }
            }
            InvokeRequest::Args { args } | InvokeRequest::Bare(args) => {
                wharf_plugin::json::json_to_args(&info.params, args).map_err(|e| e.to_string())
            }
        };
        let args = match args {
            Ok(a) => a,
            Err(msg) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "bad-arguments",
                    &format!("{msg} (signature: {})", info.signature),
                );
            }
        };
        match pool.call(&info.name, &args).await {
            Ok(results) => {
                let mut json_results: Vec<serde_json::Value> = results
                    .iter()
                    .map(wharf_plugin::json::val_to_json)
                    .collect();
                let wave = results
                    .iter()
                    .map(|r| wasm_wave::to_string(r).unwrap_or_else(|e| format!("<{e}>")))
                    .collect();
                let result = if json_results.len() == 1 {
                    json_results.swap_remove(0)
                } else {
                    serde_json::Value::Array(json_results)
                };
                json_response(StatusCode::OK, &InvokeReply { result, wave })
            }
            Err(e) => {
                let (status, kind) = match &e {
                    PluginError::Args(_) | PluginError::NoSuchExport { .. } => {
                        (StatusCode::BAD_REQUEST, "bad-arguments")
                    }
                    PluginError::Timeout(_) => (StatusCode::SERVICE_UNAVAILABLE, "timeout"),
                    PluginError::MemoryCap(_) => (StatusCode::INTERNAL_SERVER_ERROR, "memory"),
                    PluginError::Trap(_) => (StatusCode::INTERNAL_SERVER_ERROR, "trap"),
                    _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
                };
                error(status, kind, &format!("{name}/{export}: {e}"))
            }
        }
    }

    async fn deploy(
        &self,
        req: Request<Incoming>,
        name: Option<String>,
        mode: DeployMode,
    ) -> Response<Body> {
        let max = self.host.config().max_bundle;
        let body = match Limited::new(req.into_body(), max as usize).collect().await {
            Ok(b) => b.to_bytes().to_vec(),
            Err(e) => {
                if e.is::<http_body_util::LengthLimitError>() {
                    return error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "too-large",
                        &format!(
                            "the bundle is larger than {max} bytes; raise the server's --max-bundle-size"
                        ),
                    );
                }
                return error(
                    StatusCode::BAD_REQUEST,
                    "bad-request",
                    &format!("reading the upload failed: {e}"),
                );
            }
        };
        let existed = name.as_deref().is_some_and(|n| self.host.app(n).is_some());
        match self.host.deploy(body, name, mode).await {
            Ok(info) => {
                let status = if existed {
                    StatusCode::OK
                } else {
                    StatusCode::CREATED
                };
                json_response(status, &info)
            }
            Err(e) => deploy_error(e),
        }
    }
}

fn deploy_error(e: DeployError) -> Response<Body> {
    let (status, kind) = match &e {
        DeployError::Bundle(wharf_runtime::BundleError::TooLarge(_)) => {
            (StatusCode::PAYLOAD_TOO_LARGE, "too-large")
        }
        DeployError::Bundle(_) | DeployError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid"),
        DeployError::Refused(_) => (StatusCode::FORBIDDEN, "refused"),
        DeployError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
        DeployError::NotFound(_) => (StatusCode::NOT_FOUND, "not-found"),
        DeployError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    };
    if status.is_server_error() {
        // The detail (paths, storage errors) stays in the server's log.
        tracing::error!("admin: {e}");
        return error(
            status,
            kind,
            "the server failed to complete this request; its log has the cause",
        );
    }
    error(status, kind, &e.to_string())
}

fn text(status: StatusCode, body: &str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())).boxed_unsync());
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn json_response<T: serde::Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    let body = serde_json::to_vec_pretty(value).unwrap_or_else(|_| b"{}".to_vec());
    let mut r = Response::new(Full::new(Bytes::from(body)).boxed_unsync());
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

/// Like [`json_response`], with every object's keys in alphabetical order: the app list
/// and the remove reply have always been written that way.
fn json_response_sorted<T: serde::Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    match serde_json::to_value(value) {
        Ok(v) => json_response(status, &v),
        Err(_) => json_response(status, value),
    }
}

fn error(status: StatusCode, kind: &str, message: &str) -> Response<Body> {
    json_response(status, &ErrorBody::new(kind, message))
}
