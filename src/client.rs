//! A small client for the admin API, used by `wharf deploy` and `wharf apps`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};

/// Where the admin API is and how to authenticate.
#[derive(clap::Args, Clone, Debug)]
pub struct ServerArgs {
    /// Admin API address of the server.
    #[arg(
        long,
        value_name = "URL",
        env = "WHARF_SERVER",
        default_value = "http://127.0.0.1:9090",
        global = true
    )]
    pub server: String,
    /// File holding the admin token [default: $WHARF_TOKEN, else the admin-token file in
    /// the default state directory, which is where a local `wharf serve` writes it].
    #[arg(long, value_name = "FILE", global = true)]
    pub token_file: Option<PathBuf>,
}

impl ServerArgs {
    fn token(&self) -> Result<String> {
        if let Some(f) = &self.token_file {
            return Ok(std::fs::read_to_string(f)
                .with_context(|| format!("cannot read token file `{}`", f.display()))?
                .trim()
                .to_string());
        }
        if let Ok(t) = std::env::var("WHARF_TOKEN")
            && !t.trim().is_empty()
        {
            return Ok(t.trim().to_string());
        }
        let default = crate::commands::serve::default_state_dir()
            .map(|d| d.join("admin-token"))
            .context("no admin token: pass --token-file or set WHARF_TOKEN")?;
        Ok(std::fs::read_to_string(&default)
            .with_context(|| {
                format!(
                    "no admin token: `{}` is not readable; pass --token-file (the server's \
                     STATE_DIR/admin-token) or set WHARF_TOKEN",
                    default.display()
                )
            })?
            .trim()
            .to_string())
    }

    /// Sends a JSON body to `path` on the admin API.
    pub fn request_json(
        &self,
        method: Method,
        path: &str,
        body: Vec<u8>,
    ) -> Result<(StatusCode, Bytes)> {
        self.send(method, path, Some(body), "application/json")
    }

    /// Sends a request to `path` on the admin API; returns the status and body.
    pub fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Bytes)> {
        self.send(method, path, body, "application/x-tar")
    }

    fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        content_type: &'static str,
    ) -> Result<(StatusCode, Bytes)> {
        let token = self.token()?;
        let url = format!("{}{path}", self.server.trim_end_matches('/'));
        let uri: http::Uri = url
            .parse()
            .with_context(|| format!("`{url}` is not a URL"))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async move {
            let client =
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .build_http::<Full<Bytes>>();
            let mut req = Request::builder()
                .method(method)
                .uri(uri)
                .header(http::header::AUTHORIZATION, format!("Bearer {token}"));
            if body.is_some() {
                req = req.header(http::header::CONTENT_TYPE, content_type);
            }
            let req = req.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
            let resp = client.request(req).await.with_context(|| {
                format!(
                    "cannot reach the wharf server at {} (--server)",
                    self.server
                )
            })?;
            let status = resp.status();
            let bytes = resp.into_body().collect().await?.to_bytes();
            Ok((status, bytes))
        })
    }
}

/// The message of an admin API error body, or the raw body.
pub fn error_message(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string())
}
