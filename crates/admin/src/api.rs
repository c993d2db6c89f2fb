//! The admin API's request and response bodies, defined once for the server (which
//! serializes them) and for clients such as the `wharf` CLI (which deserialize them).
//!
//! | endpoint | request | reply |
//! | --- | --- | --- |
//! | `GET /v1/apps` | | [`AppList`] |
//! | `POST /v1/apps`, `PUT /v1/apps/{name}` | a bundle (tar or tar.gz) | [`AppInfo`] (201 created, 200 replaced) |
//! | `GET /v1/apps/{name}` | | [`AppInfo`] |
//! | `DELETE /v1/apps/{name}[?purge=true]` | | [`Removed`] |
//! | `GET /v1/apps/{name}/exports` | | [`Exports`] |
//! | `POST /v1/apps/{name}/invoke/{export}` | [`InvokeRequest`] | [`InvokeReply`] |
//! | `GET /v1/apps/{name}/logs?tail=N` | | [`LogsReply`] |
//! | any error | | [`ErrorBody`] |
//!
//! Field names are the JSON keys on the wire. Objects that the server has always written
//! with their keys in alphabetical order declare their fields in that order, so that the
//! bytes stay the same.

use serde::{Deserialize, Deserializer, Serialize};

pub use wharf_runtime::{AppInfo, ComponentInfo};

/// The reply of `GET /v1/apps`: every deployed app, sorted by name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppList {
    /// The apps.
    pub apps: Vec<AppInfo>,
}

/// The reply of `DELETE /v1/apps/{name}[?purge=true]`: the app as it was when
/// removed (`null` when purging the data of an app that is not deployed).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removed {
    /// The removed app.
    pub removed: Option<AppInfo>,
    /// With `?purge=true`: what was deleted with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purged: Option<Purged>,
}

/// What `?purge=true` deleted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Purged {
    /// Key-value keys deleted, over all the app's stores.
    pub keys: u64,
}

/// The reply of `GET /v1/apps/{name}/exports`: the exports of the app's plugin
/// components.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exports {
    /// The app's name.
    pub app: String,
    /// One entry per plugin component, in manifest order.
    pub components: Vec<ComponentExports>,
}

/// One plugin component's exports in [`Exports`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentExports {
    /// The component's id (pass it as `?component=` to pick it when invoking).
    pub component: String,
    /// Each export's WIT signature, e.g. `add(a: s32, b: s32) -> s32`.
    pub exports: Vec<String>,
}

/// The body of `POST /v1/apps/{name}/invoke/{export}`: the export's arguments.
///
/// An empty body means no arguments (`[]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum InvokeRequest {
    /// `{"wave": ["3", "4"]}`: one WAVE text per parameter, parsed against the
    /// parameter's WIT type. A JSON value that is not a string stands for its JSON text
    /// (`3` is read as `"3"`).
    Wave {
        /// The WAVE texts, in parameter order.
        #[serde(deserialize_with = "wave_texts")]
        wave: Vec<String>,
    },
    /// `{"args": [3, 4]}` (positional) or `{"args": {"a": 3, "b": 4}}` (by parameter
    /// name): JSON values mapped to the parameters' WIT types (see `wharf_plugin::json`).
    Args {
        /// An array or an object.
        args: serde_json::Value,
    },
    /// Any other JSON: a bare array or object, read as `{"args": ...}`.
    Bare(serde_json::Value),
}

impl Default for InvokeRequest {
    /// No arguments.
    fn default() -> Self {
        InvokeRequest::Bare(serde_json::Value::Array(Vec::new()))
    }
}

fn wave_texts<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let values = Vec::<serde_json::Value>::deserialize(d)?;
    Ok(values
        .into_iter()
        .map(|v| match v {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        })
        .collect())
}

/// The reply of a successful invoke.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InvokeReply {
    /// The results as JSON: the single result itself, or an array when the export
    /// returns none or several.
    pub result: serde_json::Value,
    /// Each result as WAVE text.
    pub wave: Vec<String>,
}

/// The reply of `GET /v1/apps/{name}/logs`: the latest captured lines.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogsReply {
    /// The app's name.
    pub app: String,
    /// How many lines were evicted from the buffer since the app started.
    pub dropped: u64,
    /// The lines, oldest first.
    pub lines: Vec<LogLine>,
}

/// One captured line of guest output in [`LogsReply`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// The component that wrote it.
    pub component: String,
    /// The text (lossy UTF-8), without the newline.
    pub line: String,
    /// `stdout` or `stderr`, or a `wasi:logging` level (`trace` ... `critical`).
    pub stream: String,
    /// Unix time in milliseconds.
    pub ts_ms: u64,
}

impl From<wharf_host_logging::LogLine> for LogLine {
    fn from(l: wharf_host_logging::LogLine) -> Self {
        LogLine {
            component: l.component,
            line: l.line,
            stream: l.stream.to_string(),
            ts_ms: l.ts_ms,
        }
    }
}

/// The body of every error reply: `{"error": {"kind": ..., "message": ...}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The inside of an [`ErrorBody`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// A short machine-readable name: `unauthorized` (401), `not-found` (404),
    /// `bad-request` and `bad-arguments` (400), `invalid` (400: bundle or manifest),
    /// `refused` (403: the verification policy), `conflict` (409), `too-large` (413),
    /// `timeout` (503), `memory`, `trap` and `internal` (500).
    pub kind: String,
    /// What happened and what to do, for people. A 500's message never carries the
    /// server's internals (those go to its log).
    pub message: String,
}

impl ErrorBody {
    /// An error body.
    pub fn new(kind: &str, message: &str) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                kind: kind.to_string(),
                message: message.to_string(),
            },
        }
    }
}
