//! The manifest error type. Every message starts with the field path
//! (`app.name`, `component[1].limits.memory`, ...) and ends with the fix.

use crate::route::RouteError;

/// Why a `wharf.toml` was rejected.
///
/// Component indexes in field paths count `[[component]]` tables from 0 in file order.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The text is not valid TOML, has a value of the wrong type, or has a key
    /// the schema does not know. The message is toml's, with line and column.
    #[error("invalid wharf.toml: {0}")]
    Toml(#[from] toml::de::Error),

    /// `manifest_version` is not one this crate understands.
    #[error(
        "manifest_version: {found} is not supported; this Wharf supports manifest_version = {supported} (or leave the key out)"
    )]
    UnsupportedVersion {
        /// The value found, as written in TOML.
        found: String,
        /// The version this crate supports.
        supported: u32,
    },

    /// A required key is absent.
    #[error("{field}: missing; {fix}")]
    Missing {
        /// Path of the missing key.
        field: String,
        /// What to add.
        fix: &'static str,
    },

    /// No `[[component]]` tables.
    #[error(
        "component: the manifest declares no components; add at least one [[component]] table with id, source and route"
    )]
    NoComponents,

    /// An app name or component id breaks the naming rule.
    #[error(
        "{field}: {value:?} is not a valid name: {reason}; use 1-63 lowercase letters, digits and '-', starting with a letter and not ending with '-' (e.g. \"my-app\")"
    )]
    InvalidName {
        /// Path of the offending key.
        field: String,
        /// The rejected value.
        value: String,
        /// What is wrong with it.
        reason: String,
    },

    /// `app.version` breaks the version rule.
    #[error(
        "{field}: {value:?} is not a valid version: {reason}; use 1-64 printable ASCII characters without spaces (e.g. \"1.2.0\")"
    )]
    InvalidVersion {
        /// Path of the offending key.
        field: String,
        /// The rejected value.
        value: String,
        /// What is wrong with it.
        reason: String,
    },

    /// Two components share an id.
    #[error(
        "component[{second}].id: {id:?} is already the id of component[{first}]; give every component a unique id"
    )]
    DuplicateComponentId {
        /// The repeated id.
        id: String,
        /// Index of the first component with this id.
        first: usize,
        /// Index of the later component with this id.
        second: usize,
    },

    /// A component source is not a safe relative `.wasm` path.
    #[error(
        "{field}: {value:?} is not a valid source: {reason}; use a relative path to a .wasm file inside the bundle (e.g. \"web.wasm\" or \"bin/web.wasm\")"
    )]
    InvalidSource {
        /// Path of the offending key.
        field: String,
        /// The rejected value.
        value: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A route pattern does not parse.
    #[error("{field}: {source}")]
    InvalidRoute {
        /// Path of the offending key.
        field: String,
        /// Why the pattern was rejected; its message shows a valid route.
        source: RouteError,
    },

    /// Two components' routes can match the same request path with equal specificity.
    #[error(
        "component[{second}].route: `{second_route}` (component {second_id:?}) overlaps `{first_route}` (component[{first}], {first_id:?}) and is just as specific, so some requests could go to either; make one route more specific (e.g. `/api/users/:id` inside `/api/...`) or make them disjoint"
    )]
    OverlappingRoutes {
        /// Index of the earlier component.
        first: usize,
        /// Id of the earlier component.
        first_id: String,
        /// Route of the earlier component.
        first_route: String,
        /// Index of the later component.
        second: usize,
        /// Id of the later component.
        second_id: String,
        /// Route of the later component.
        second_route: String,
    },

    /// A value under `[component.limits]` is malformed or out of range.
    #[error("{field}: {value} is not a valid limit: {reason}")]
    InvalidLimit {
        /// Path of the offending key.
        field: String,
        /// The rejected value, as written (strings quoted).
        value: String,
        /// What is wrong and the accepted range.
        reason: String,
    },

    /// An `[component.environment]` key is not a valid variable name.
    #[error(
        "{field}: {name:?} is not a valid environment variable name: {reason}; use letters, digits and '_', not starting with a digit (e.g. \"API_KEY\")"
    )]
    InvalidEnvName {
        /// Path of the environment table.
        field: String,
        /// The rejected key.
        name: String,
        /// What is wrong with it.
        reason: String,
    },

    /// Any other field with a value that breaks its rule.
    #[error("{field}: {reason}")]
    Invalid {
        /// Path of the offending key.
        field: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
}
