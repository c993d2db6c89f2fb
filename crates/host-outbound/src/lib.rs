//! Outbound HTTP for Wharf guests (`wasi:http/outgoing-handler`).
//!
//! What this crate owns:
//! - [`AllowedHosts`]: the parsed `allowed_outbound_hosts` list of a component
//!   (`scheme://host[:port]` entries with `*` wildcards) and the matching of a request's
//!   scheme, host and port against it, reporting through [`Grant`] whether the host was
//!   named exactly or reached through a wildcard;
//! - [`OutboundHooks`]: a [`wasmtime_wasi_http::WasiHttpHooks`] implementation, one per
//!   store (that is, per incoming request), which enforces an [`OutboundPolicy`] and sends
//!   the request with its own HTTP/1.1 client (TCP, optional TLS with the webpki roots);
//! - [`is_non_public`]: the check applied to every resolved address.
//!
//! # Threat model
//!
//! The guest is untrusted code; the operator who writes the manifest is trusted. A guest
//! may try to:
//! - reach hosts its manifest does not list: every request is matched against
//!   [`AllowedHosts`] before anything else happens, and refused with
//!   `error-code.http-request-denied`;
//! - reach the node's own network (loopback, private ranges, link-local cloud metadata
//!   endpoints such as `169.254.169.254`, ...), with an IP literal or with a name whose
//!   DNS records point inside ("DNS smuggling"), whether the name is listed exactly
//!   (`http://localhost:8080`) or reached through a wildcard: the host is resolved by the
//!   host process and *every* address is vetted. An address for which [`is_non_public`]
//!   holds is dropped unless the request names it as an IP literal that the manifest
//!   lists exactly *and* the server allows private destinations at all
//!   ([`OutboundPolicy::allow_private`], default false); a name never reaches one. The
//!   request fails with `error-code.destination-ip-prohibited` when nothing is left, and
//!   otherwise connects only to the vetted addresses;
//! - starve the node's blocking threads with slow DNS: at most
//!   [`MAX_CONCURRENT_LOOKUPS`] lookups run at once, and waiting counts against the
//!   connect timeout;
//! - win a race between the check and the connection (DNS rebinding): the client connects
//!   to the vetted socket addresses themselves and never resolves the name again;
//! - exhaust the node: requests per incoming request, the size of each response body and
//!   the time to connect and to receive the response head are bounded
//!   ([`OutboundPolicy`]); guest-supplied `request-options` timeouts can shorten these
//!   bounds but never lengthen them;
//! - talk to a different virtual host than the one it was allowed (domain fronting): the
//!   `Host` header is always rewritten from the request URI that was checked, and TLS uses
//!   that same host name for SNI and certificate verification.
//!
//! Out of scope: what an allowed host does with the request.

#![deny(missing_docs)]

mod allowed;
mod body;
mod hooks;
mod ip;
mod tls;

pub use allowed::{AllowedHosts, Grant};
pub use hooks::{
    MAX_CONCURRENT_LOOKUPS, NetFuture, Network, OutboundHooks, OutboundPolicy, SystemNetwork,
};
pub use ip::is_non_public;
