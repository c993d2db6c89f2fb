//! Wharf's HTTP trigger: everything between a TCP connection and a guest's
//! `wasi:http/incoming-handler`.
//!
//! - [`apphost`]: deployed apps and their components, the deploy/replace/remove
//!   pipeline, restore on start, and the atomically swapped route table;
//! - [`server`]: the data-plane listener (caps, routing, one fresh `Store` per request,
//!   deadlines, error mapping, graceful shutdown);
//! - [`host`]: per-request host state and the linker (WASI 0.2 + `wasi:http`);
//! - [`bundle`]: reading uploaded app bundles (tar, optionally gzipped);
//! - [`metrics`]: Prometheus metrics; [`logs`]: captured guest output per app.
#![deny(missing_docs)]

pub mod apphost;
pub mod bundle;
pub mod host;
pub mod logs;
pub mod metrics;
pub mod server;
pub mod wagi;

pub use apphost::{AppHost, AppInfo, DeployError, DeployMode, HostConfig};
pub use metrics::Metrics;
pub use server::{DataPlane, ServerLimits};
