//! A small client for the admin API, used by `wharf deploy`, `wharf apps` and `wharf
//! call`. Replies are the types of `wharf_admin::api`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use serde::de::DeserializeOwned;
use wharf_admin::api::ErrorBody;

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
    pub async fn request_json(
        &self,
        method: Method,
        path: &str,
        body: Vec<u8>,
    ) -> Result<(StatusCode, Bytes)> {
        self.send(method, path, Some(body), "application/json")
            .await
    }

    /// Sends a request to `path` on the admin API; returns the status and body.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Bytes)> {
        self.send(method, path, body, "application/x-tar").await
    }

    async fn send(
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
    }
}

/// A successful reply's body as the `wharf_admin::api` type `T`.
pub fn parse_reply<T: DeserializeOwned>(body: &[u8]) -> Result<T> {
    serde_json::from_slice(body)
        .context("the server's reply is not what this wharf expects (is it the same version?)")
}

/// The message of an admin API error body ([`ErrorBody`]), or the raw body.
pub fn error_message(body: &[u8]) -> String {
    serde_json::from_slice::<ErrorBody>(body)
        .map(|b| b.error.message)
        .unwrap_or_else(|_| String::from_utf8_lossy(body).trim().to_string())
}
