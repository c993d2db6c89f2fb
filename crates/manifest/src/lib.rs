#![deny(missing_docs)]
//! The `wharf.toml` app manifest: its versioned schema, parsing, normalization
//! and validation (with errors that name the field and the fix), and the HTTP
//! route patterns components are mounted at. The server uses
//! [`parse_manifest`] to validate deploys; the router uses [`Route`] to match
//! requests.
//!
//! # Manifest format
//!
//! A complete manifest using every key (this is `testdata/full.toml`, which the
//! tests check parses):
//!
#![doc = concat!("```toml\n", include_str!("../testdata/full.toml"), "```")]
//!
//! * `manifest_version` — optional, defaults to 1. Any other value is rejected
//!   before anything else is checked, so a manifest written for a newer Wharf
//!   says so instead of listing unknown keys.
//! * `[app]` — required. `name` follows the naming rule below; `version` is
//!   1-64 printable ASCII characters without whitespace and is opaque to Wharf.
//! * `[[component]]` — at least one. `id` follows the naming rule and is unique
//!   within the app. `source` is a relative path inside the bundle ending in
//!   `.wasm`: absolute paths, `..` segments, backslashes, drive letters and
//!   empty segments are refused; `.` segments are dropped. `route` is a route
//!   pattern (below); no two components' routes may overlap.
//! * `[component.limits]` — optional: `memory` (1MiB..=4GiB), `timeout` (a
//!   [humantime](https://docs.rs/humantime) duration, greater than zero and at
//!   most 1h), `max_concurrency` (1..=100000), `max_body` (0..=1GiB).
//! * `[component.environment]` — optional string values; names match
//!   `[A-Za-z_][A-Za-z0-9_]*`.
//!
//! **Naming rule** (app name, component id): 1-63 characters of `[a-z0-9-]`,
//! starting with a letter and not ending with `-`.
//!
//! **Byte sizes** ([`parse_size`]): a number, optionally with a fraction that
//! gives a whole number of bytes, then an optional case-insensitive unit: `B`,
//! `KiB`/`KB`/`k`, `MiB`/`MB`/`m`, `GiB`/`GB`/`g`, all powers of 1024. A bare
//! TOML integer is a number of bytes.
//!
//! Unknown keys anywhere are errors; the message (toml's, with line and column)
//! lists the allowed keys.
//!
//! # Routes
//!
//! A pattern starts with `/` and is made of `/`-separated segments:
//!
//! * a literal: ASCII letters, digits and ``-._~!$&'()*+,;=:@%`` (`%` must start
//!   a two-hex-digit escape), not starting with `:`; compared case-sensitively
//!   and without percent-decoding;
//! * a parameter `:name` (`[a-zA-Z_][a-zA-Z0-9_]*`, unique within the route),
//!   which captures one non-empty segment;
//! * `...`, only as the last segment: the path so far and anything below it.
//!
//! `/` alone matches only the root; `/...` matches every path. Empty segments,
//! a trailing `/`, `.`/`..` segments, `?`, `#` and `*` are errors. When
//! matching, one trailing slash on the request path is ignored.
//!
//! Two routes overlap when some path matches both. Within an app that is an
//! error. Across apps the router picks the matching route with the greatest
//! [`Route::specificity`]: `/api/users` beats `/api/:id` beats `/api/...`
//! beats `/...`.
//!
//! ```
//! use wharf_manifest::{parse_manifest, Route};
//!
//! let manifest = parse_manifest(r#"
//!     [app]
//!     name = "shop"
//!     version = "1.0.0"
//!
//!     [[component]]
//!     id = "api"
//!     source = "api.wasm"
//!     route = "/api/:version/..."
//! "#).expect("valid manifest");
//!
//! let api = manifest.component("api").expect("declared above");
//! let route = api.route.as_ref().expect("an HTTP component has a route");
//! let hit = route.matches("/api/v2/users/7").expect("route matches");
//! assert_eq!(hit.params, [("version".to_string(), "v2".to_string())]);
//! assert_eq!((hit.matched.as_str(), hit.rest.as_str()), ("/api/v2", "/users/7"));
//!
//! let err = parse_manifest("[app]\nname = \"Shop\"\nversion = \"1\"").unwrap_err();
//! assert!(err.to_string().starts_with("app.name: \"Shop\" is not a valid name"));
//! assert!(Route::parse("/api/").is_err());
//! ```

mod error;
mod manifest;
mod raw;
mod route;
mod size;

pub use error::ManifestError;
pub use manifest::{
    AppMeta, ComponentLimits, ComponentSpec, Executor, FileMount, Manifest,
    SUPPORTED_MANIFEST_VERSION, VariableSpec, parse_manifest,
};
pub use route::{Route, RouteError, RouteMatch};
pub use size::parse_size;
