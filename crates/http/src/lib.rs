//! Wharf's HTTP trigger: everything between a TCP connection and a guest.
//!
//! It plugs into the runtime (`wharf-runtime`) as a [`wharf_runtime::Trigger`]: the
//! runtime tells it when the live apps change and it rebuilds its route table; it
//! vetoes deploys whose routes overlap another app's.
//!
//! - [`server`]: the listeners' connections (cap, header-read and idle timeouts,
//!   graceful shutdown; also used by the admin API), the in-flight cap,
//!   routing, per-component concurrency, body caps, and the one place failures become
//!   statuses;
//! - [`router`]: the route table and the route-overlap check;
//! - [`wasi_http`]: the `wasi:http/proxy` executor;
//! - [`wagi`]: the WAGI (CGI-style wasip1 module) executor.
#![deny(missing_docs)]

pub mod router;
pub mod server;
pub mod wagi;
pub mod wasi_http;

pub use server::{DataPlane, ServerLimits};
