//! The validated manifest and the rules that produce it from [`crate::raw`].

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::Serialize;

use crate::error::ManifestError;
use crate::raw::{RawApp, RawComponent, RawLimits, RawManifest, RawSize, VersionProbe};
use crate::route::Route;
use crate::size::{format_size, parse_size};

/// The only `manifest_version` this crate reads.
pub const SUPPORTED_MANIFEST_VERSION: u32 = 1;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const MEMORY_RANGE: (u64, u64) = (MIB, 4 * GIB);
const MAX_BODY_LIMIT: u64 = GIB;
const MAX_TIMEOUT: Duration = Duration::from_secs(3600);
const CONCURRENCY_RANGE: (i64, i64) = (1, 100_000);

/// A validated, normalized `wharf.toml`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Manifest {
    /// Always [`SUPPORTED_MANIFEST_VERSION`] once parsed.
    pub manifest_version: u32,
    /// The `[app]` table.
    pub app: AppMeta,
    /// The `[[component]]` tables, in file order; ids are unique and overlapping
    /// routes differ in specificity.
    pub components: Vec<ComponentSpec>,
    /// The `[variables]` table: names the app's components can read through
    /// `wasi:config`, with their defaults; values come from the server at deploy.
    pub variables: BTreeMap<String, VariableSpec>,
}

/// One entry of `[variables]`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct VariableSpec {
    /// Used when the server has no value for it.
    pub default: Option<String>,
    /// A deploy without a value for it fails.
    pub required: bool,
    /// Never shown in API responses or logs.
    pub secret: bool,
}

/// A read-only directory (or file) from the bundle, mounted into the guest.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FileMount {
    /// Relative path inside the bundle (a directory or a file).
    pub source: String,
    /// Absolute path where the guest sees it, e.g. `/static`.
    pub dest: String,
}

/// How a component is invoked for a request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Executor {
    /// A `wasi:http/proxy` component (WASI 0.2), the default.
    #[default]
    WasiHttp,
    /// A wasip1 core module run CGI-style: request in environment variables and
    /// stdin, response (headers, blank line, body) on stdout.
    Wagi,
    /// A component whose exports are called with typed values through the admin API;
    /// it has no route.
    Plugin,
}

/// The `[app]` table.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AppMeta {
    /// The app name (see the naming rule in the crate docs).
    pub name: String,
    /// The app's own version string; opaque to Wharf.
    pub version: String,
    /// Trimmed; `None` when absent or blank.
    pub description: Option<String>,
}

/// One `[[component]]` table.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ComponentSpec {
    /// Unique within the app.
    pub id: String,
    /// Relative path of the `.wasm` file inside the bundle, with `.` segments
    /// removed (`./web.wasm` becomes `web.wasm`).
    pub source: String,
    /// The HTTP route the component serves; `None` for plugins (executor `plugin`).
    pub route: Option<Route>,
    /// Resource limits; `None` means the server default.
    pub limits: ComponentLimits,
    /// Environment variables passed to the component.
    pub environment: BTreeMap<String, String>,
    /// Key-value stores (`wasi:keyvalue`) it may open, by name.
    pub key_value_stores: Vec<String>,
    /// Outbound HTTP destinations (`scheme://host[:port]`, wildcards allowed); checked
    /// in detail by the server.
    pub allowed_outbound_hosts: Vec<String>,
    /// Read-only mounts from the bundle.
    pub files: Vec<FileMount>,
    /// How it is invoked.
    pub executor: Executor,
}

/// `[component.limits]`; every field is optional.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ComponentLimits {
    /// Linear memory cap in bytes, 1MiB..=4GiB.
    pub memory: Option<u64>,
    /// Per-request wall-clock limit, greater than zero and at most one hour.
    pub timeout: Option<Duration>,
    /// Concurrent requests, 1..=100000.
    pub max_concurrency: Option<u32>,
    /// Request-body cap in bytes, at most 1GiB.
    pub max_body: Option<u64>,
}

impl Manifest {
    /// The component with this id, if any.
    pub fn component(&self, id: &str) -> Option<&ComponentSpec> {
        self.components.iter().find(|c| c.id == id)
    }
}

/// Parses, validates and normalizes a `wharf.toml`.
///
/// Checks run in file order and the first problem is returned.
pub fn parse_manifest(text: &str) -> Result<Manifest, ManifestError> {
    let probe: VersionProbe = toml::from_str(text)?;
    check_version(probe.manifest_version)?;
    let raw: RawManifest = toml::from_str(text)?;

    let app = validate_app(raw.app)?;
    if raw.component.is_empty() {
        return Err(ManifestError::NoComponents);
    }
    let mut components = Vec::with_capacity(raw.component.len());
    let mut seen_ids = HashMap::new();
    for (index, raw_component) in raw.component.into_iter().enumerate() {
        let component = validate_component(index, raw_component)?;
        if let Some(&first) = seen_ids.get(&component.id) {
            return Err(ManifestError::DuplicateComponentId {
                id: component.id,
                first,
                second: index,
            });
        }
        seen_ids.insert(component.id.clone(), index);
        components.push(component);
    }
    apply_http_triggers(raw.trigger.http, &mut components)?;
    for (index, c) in components.iter().enumerate() {
        if c.route.is_none() && c.executor != Executor::Plugin {
            return Err(missing(
                format!("component[{index}].route"),
                "add route = \"/...\" (or a narrower route such as \"/api/...\") to this [[component]], or a [[trigger.http]] with route and component = its id",
            ));
        }
    }
    check_overlaps(&components)?;
    let variables = validate_variables(raw.variables)?;

    Ok(Manifest {
        manifest_version: SUPPORTED_MANIFEST_VERSION,
        app,
        components,
        variables,
    })
}

fn check_version(found: Option<toml::Value>) -> Result<(), ManifestError> {
    match found {
        None => Ok(()),
        Some(toml::Value::Integer(v)) if v == i64::from(SUPPORTED_MANIFEST_VERSION) => Ok(()),
        Some(other) => Err(ManifestError::UnsupportedVersion {
            found: other.to_string(),
            supported: SUPPORTED_MANIFEST_VERSION,
        }),
    }
}

fn validate_app(raw: Option<RawApp>) -> Result<AppMeta, ManifestError> {
    let Some(raw) = raw else {
        return Err(missing(
            "app",
            "add an [app] table with name = \"my-app\" and version = \"1.0.0\"",
        ));
    };
    let name = raw
        .name
        .ok_or_else(|| missing("app.name", "add name = \"my-app\" to [app]"))?;
    check_name("app.name", &name)?;
    let version = raw
        .version
        .ok_or_else(|| missing("app.version", "add version = \"1.0.0\" to [app]"))?;
    check_version_string("app.version", &version)?;
    let description = raw
        .description
        .map(|d| d.trim().to_owned())
        .filter(|d| !d.is_empty());
    Ok(AppMeta {
        name,
        version,
        description,
    })
}

fn validate_component(index: usize, raw: RawComponent) -> Result<ComponentSpec, ManifestError> {
    let field = |key: &str| format!("component[{index}].{key}");

    let id = raw
        .id
        .ok_or_else(|| missing(field("id"), "add id = \"web\" to this [[component]]"))?;
    check_name(&field("id"), &id)?;

    let source = raw.source.ok_or_else(|| {
        missing(
            field("source"),
            "add source = \"web.wasm\" (a path inside the bundle) to this [[component]]",
        )
    })?;
    let source = normalize_source(&source).map_err(|reason| ManifestError::InvalidSource {
        field: field("source"),
        value: source.clone(),
        reason,
    })?;

    let limits = validate_limits(&field("limits"), raw.limits)?;

    for name in raw.environment.keys() {
        if let Some(reason) = env_name_problem(name) {
            return Err(ManifestError::InvalidEnvName {
                field: field("environment"),
                name: name.clone(),
                reason,
            });
        }
    }

    for (i, store) in raw.key_value_stores.iter().enumerate() {
        if let Some(reason) = store_name_problem(store) {
            return Err(ManifestError::Invalid {
                field: format!("{}[{i}]", field("key_value_stores")),
                reason: format!(
                    "{store:?} is not a store name: {reason}; use 1-64 of a-z, 0-9, '-' and '_' (e.g. \"default\")"
                ),
            });
        }
    }
    for (i, host) in raw.allowed_outbound_hosts.iter().enumerate() {
        if !host.contains("://") {
            return Err(ManifestError::Invalid {
                field: format!("{}[{i}]", field("allowed_outbound_hosts")),
                reason: format!(
                    "{host:?} has no scheme; write scheme://host[:port], e.g. \"https://api.example.com\" or \"http://127.0.0.1:8080\""
                ),
            });
        }
    }
    let mut files = Vec::new();
    for (i, raw_mount) in raw.files.into_iter().enumerate() {
        let f = format!("{}[{i}]", field("files"));
        let source = raw_mount.source.ok_or_else(|| {
            missing(
                format!("{f}.source"),
                "add source = \"static\" (a directory in the bundle)",
            )
        })?;
        let source = normalize_mount_source(&source).map_err(|reason| ManifestError::Invalid {
            field: format!("{f}.source"),
            reason: format!("{source:?} {reason}"),
        })?;
        let dest = raw_mount.dest.ok_or_else(|| {
            missing(
                format!("{f}.dest"),
                "add dest = \"/static\" (where the guest sees it)",
            )
        })?;
        let dest = normalize_dest(&dest).map_err(|reason| ManifestError::Invalid {
            field: format!("{f}.dest"),
            reason: format!("{dest:?} {reason}"),
        })?;
        if files.iter().any(|m: &FileMount| m.dest == dest) {
            return Err(ManifestError::Invalid {
                field: format!("{f}.dest"),
                reason: format!("{dest:?} is already the destination of another mount"),
            });
        }
        files.push(FileMount { source, dest });
    }
    let executor = match raw.executor.and_then(|e| e.kind).as_deref() {
        None | Some("wasi-http") => Executor::WasiHttp,
        Some("wagi") => Executor::Wagi,
        Some("plugin") => Executor::Plugin,
        Some(other) => {
            return Err(ManifestError::Invalid {
                field: field("executor.type"),
                reason: format!(
                    "{other:?} is not an executor; use \"wasi-http\" (a wasi:http/proxy component, the default), \"wagi\" (a wasip1 module, CGI style) or \"plugin\" (a component whose exports are called through the admin API)"
                ),
            });
        }
    };
    // Plugins are called by export name, never routed; everything else needs a route.
    let route = if executor == Executor::Plugin {
        if raw.route.is_some() {
            return Err(ManifestError::Invalid {
                field: field("route"),
                reason: "a plugin component is called through the admin API (POST /v1/apps/APP/invoke/EXPORT), not routed; remove the route".into(),
            });
        }
        None
    } else {
        // A route may also come from a [[trigger.http]] entry; a component left with
        // none is reported once all triggers are read.
        match raw.route {
            Some(route) => {
                Some(
                    Route::parse(&route).map_err(|source| ManifestError::InvalidRoute {
                        field: field("route"),
                        source,
                    })?,
                )
            }
            None => None,
        }
    };

    Ok(ComponentSpec {
        id,
        source,
        route,
        limits,
        environment: raw.environment,
        key_value_stores: raw.key_value_stores,
        allowed_outbound_hosts: raw.allowed_outbound_hosts,
        files,
        executor,
    })
}

/// Applies `[[trigger.http]]` entries: each gives one routed component its route (the
/// same as `route` in its `[[component]]` table, which old manifests use).
fn apply_http_triggers(
    triggers: Vec<crate::raw::RawHttpTrigger>,
    components: &mut [ComponentSpec],
) -> Result<(), ManifestError> {
    for (i, t) in triggers.into_iter().enumerate() {
        let f = |name: &str| format!("trigger.http[{i}].{name}");
        let id = t.component.ok_or_else(|| {
            missing(
                f("component"),
                "add component = \"<id>\" naming the [[component]] this route serves",
            )
        })?;
        let route = t
            .route
            .ok_or_else(|| missing(f("route"), "add route = \"/...\""))?;
        let route = Route::parse(&route).map_err(|source| ManifestError::InvalidRoute {
            field: f("route"),
            source,
        })?;
        let ids: Vec<String> = components.iter().map(|c| c.id.clone()).collect();
        let Some(c) = components.iter_mut().find(|c| c.id == id) else {
            return Err(ManifestError::Invalid {
                field: f("component"),
                reason: format!(
                    "{id:?} is not a component of this app; its components are {}",
                    ids.join(", ")
                ),
            });
        };
        if c.executor == Executor::Plugin {
            return Err(ManifestError::Invalid {
                field: f("component"),
                reason: format!(
                    "{id:?} is a plugin, which is called through the admin API, not routed; remove this trigger"
                ),
            });
        }
        if let Some(existing) = &c.route {
            return Err(ManifestError::Invalid {
                field: f("component"),
                reason: format!(
                    "component {id:?} already has route \"{existing}\"; a component has one HTTP route, given either in its [[component]] table or in one [[trigger.http]]"
                ),
            });
        }
        c.route = Some(route);
    }
    Ok(())
}

fn store_name_problem(name: &str) -> Option<String> {
    if name.is_empty() || name.len() > 64 {
        return Some(format!("it is {} characters long", name.len()));
    }
    name.chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '_'))
        .map(|c| format!("it contains {c:?}"))
}

/// A bundle path for a mount: relative, no `..`, `.` segments removed.
fn normalize_mount_source(source: &str) -> Result<String, String> {
    if source.starts_with('/') || source.contains('\\') {
        return Err("must be a relative path inside the bundle".into());
    }
    let mut parts = Vec::new();
    for seg in source.split('/') {
        match seg {
            "" | "." => {}
            ".." => return Err("must stay inside the bundle ('..' is not allowed)".into()),
            s => parts.push(s),
        }
    }
    if parts.is_empty() {
        return Err("names no path; use a directory such as \"static\"".into());
    }
    Ok(parts.join("/"))
}

/// A guest path for a mount: absolute, no `..`, not the root.
fn normalize_dest(dest: &str) -> Result<String, String> {
    if !dest.starts_with('/') {
        return Err("must be an absolute guest path such as \"/static\"".into());
    }
    let mut parts = Vec::new();
    for seg in dest.split('/') {
        match seg {
            "" | "." => {}
            ".." => return Err("must not contain '..'".into()),
            s => parts.push(s),
        }
    }
    if parts.is_empty() {
        return Err("must not be the root; mount at a directory such as \"/static\"".into());
    }
    Ok(format!("/{}", parts.join("/")))
}

fn validate_variables(
    raw: BTreeMap<String, crate::raw::RawVariable>,
) -> Result<BTreeMap<String, VariableSpec>, ManifestError> {
    let mut out = BTreeMap::new();
    for (name, v) in raw {
        let field = format!("variables.{name}");
        let ok_name = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !ok_name {
            return Err(ManifestError::Invalid {
                field,
                reason: format!(
                    "{name:?} is not a variable name; use lowercase letters, digits and '_', starting with a letter (e.g. \"api_key\")"
                ),
            });
        }
        let required = v.required.unwrap_or(false);
        if required && v.default.is_some() {
            return Err(ManifestError::Invalid {
                field,
                reason: "a required variable cannot have a default; drop one of the two".into(),
            });
        }
        out.insert(
            name,
            VariableSpec {
                default: v.default,
                required,
                secret: v.secret.unwrap_or(false),
            },
        );
    }
    Ok(out)
}

fn validate_limits(prefix: &str, raw: RawLimits) -> Result<ComponentLimits, ManifestError> {
    let invalid = |key: &str, value: String, reason: String| ManifestError::InvalidLimit {
        field: format!("{prefix}.{key}"),
        value,
        reason,
    };
    let size_in = |key: &str, raw: RawSize, min: u64, max: u64| {
        let shown = raw.to_string();
        let bytes = match raw {
            RawSize::Text(text) => parse_size(&text),
            RawSize::Bytes(n) if n < 0 => Err("a size cannot be negative".to_owned()),
            RawSize::Bytes(n) => u64::try_from(n).map_err(|_| "it is too large".to_owned()),
        }
        .map_err(|reason| invalid(key, shown.clone(), reason))?;
        if bytes < min || bytes > max {
            let range = if min == 0 {
                format!("at most {}", format_size(max))
            } else {
                format!("between {} and {}", format_size(min), format_size(max))
            };
            return Err(invalid(
                key,
                shown,
                format!("it is {}, but must be {range}", format_size(bytes)),
            ));
        }
        Ok(bytes)
    };

    let memory = raw
        .memory
        .map(|m| size_in("memory", m, MEMORY_RANGE.0, MEMORY_RANGE.1))
        .transpose()?;
    let max_body = raw
        .max_body
        .map(|m| size_in("max_body", m, 0, MAX_BODY_LIMIT))
        .transpose()?;

    let timeout = raw
        .timeout
        .map(|t| {
            let shown = format!("{:?}", t.0);
            let duration = humantime::parse_duration(&t.0).map_err(|e| {
                invalid(
                    "timeout",
                    shown.clone(),
                    format!("{e}; write a duration such as \"5s\", \"500ms\" or \"2m\""),
                )
            })?;
            if duration.is_zero() || duration > MAX_TIMEOUT {
                return Err(invalid(
                    "timeout",
                    shown,
                    "it must be greater than zero and at most 1h".to_owned(),
                ));
            }
            Ok(duration)
        })
        .transpose()?;

    let max_concurrency = raw
        .max_concurrency
        .map(|n| {
            let (min, max) = CONCURRENCY_RANGE;
            if !(min..=max).contains(&n) {
                return Err(invalid(
                    "max_concurrency",
                    n.to_string(),
                    format!("it must be between {min} and {max}"),
                ));
            }
            u32::try_from(n)
                .map_err(|_| invalid("max_concurrency", n.to_string(), "out of range".to_owned()))
        })
        .transpose()?;

    Ok(ComponentLimits {
        memory,
        timeout,
        max_concurrency,
        max_body,
    })
}

/// Routes within one app may overlap only when one is more specific than the other
/// (e.g. `/api/users/:id` inside `/api/...`, or a `/...` catch-all beside `/api/...`):
/// the router then picks the most specific, as Spin does. Overlapping routes of equal
/// specificity (`/:x/b` and `/a/:y`, or the same route twice) are ambiguous and refused.
fn check_overlaps(components: &[ComponentSpec]) -> Result<(), ManifestError> {
    for (second, b) in components.iter().enumerate() {
        for (first, a) in components[..second].iter().enumerate() {
            let (Some(ar), Some(br)) = (&a.route, &b.route) else {
                continue;
            };
            if ar.overlaps(br) && ar.specificity() == br.specificity() {
                return Err(ManifestError::OverlappingRoutes {
                    first,
                    first_id: a.id.clone(),
                    first_route: ar.to_string(),
                    second,
                    second_id: b.id.clone(),
                    second_route: br.to_string(),
                });
            }
        }
    }
    Ok(())
}

fn missing(field: impl Into<String>, fix: &'static str) -> ManifestError {
    ManifestError::Missing {
        field: field.into(),
        fix,
    }
}

/// App names and component ids end up in URLs, hostnames and file names, hence
/// the DNS-label-like rule.
fn check_name(field: &str, value: &str) -> Result<(), ManifestError> {
    let reason = if value.is_empty() {
        Some("it is empty".to_owned())
    } else if value.chars().count() > 63 {
        Some(format!("it is {} characters long", value.chars().count()))
    } else if let Some((i, c)) = value
        .chars()
        .enumerate()
        .find(|&(_, c)| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
    {
        Some(if c.is_ascii_uppercase() {
            format!(
                "it contains the uppercase letter {c:?} at position {}",
                i + 1
            )
        } else {
            format!("it contains {c:?} at position {}", i + 1)
        })
    } else if !value.starts_with(|c: char| c.is_ascii_lowercase()) {
        Some("it does not start with a letter".to_owned())
    } else if value.ends_with('-') {
        Some("it ends with '-'".to_owned())
    } else {
        None
    };
    match reason {
        None => Ok(()),
        Some(reason) => Err(ManifestError::InvalidName {
            field: field.to_owned(),
            value: value.to_owned(),
            reason,
        }),
    }
}

fn check_version_string(field: &str, value: &str) -> Result<(), ManifestError> {
    let reason = if value.is_empty() {
        Some("it is empty".to_owned())
    } else if value.len() > 64 {
        Some(format!("it is {} bytes long", value.len()))
    } else if let Some(c) = value.chars().find(|c| c.is_whitespace()) {
        Some(format!("it contains whitespace ({c:?})"))
    } else {
        value
            .chars()
            .find(|c| !c.is_ascii_graphic())
            .map(|c| format!("it contains {c:?}, which is not printable ASCII"))
    };
    match reason {
        None => Ok(()),
        Some(reason) => Err(ManifestError::InvalidVersion {
            field: field.to_owned(),
            value: value.to_owned(),
            reason,
        }),
    }
}

/// Returns the path with `.` segments dropped, or why it is unsafe. The bundle
/// is untrusted input, so anything that could name a file outside it is refused
/// rather than resolved.
fn normalize_source(source: &str) -> Result<String, String> {
    if source.is_empty() {
        return Err("it is empty".into());
    }
    if source.starts_with('/') {
        return Err("absolute paths are not allowed".into());
    }
    if source.contains('\\') {
        return Err("backslashes are not allowed; separate directories with '/'".into());
    }
    let bytes = source.as_bytes();
    if bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':' {
        return Err("drive letters are not allowed".into());
    }
    if source.chars().any(char::is_control) {
        return Err("control characters are not allowed".into());
    }
    let mut kept = Vec::new();
    for segment in source.split('/') {
        match segment {
            "" => return Err("it contains an empty segment ('//' or a trailing '/')".into()),
            "." => {}
            ".." => {
                return Err(
                    "'..' segments are not allowed; the path must stay inside the bundle".into(),
                );
            }
            other => kept.push(other),
        }
    }
    let file = kept.last().copied().unwrap_or("");
    if file.len() <= ".wasm".len() || !file.ends_with(".wasm") {
        return Err("it must name a file ending in .wasm".into());
    }
    Ok(kept.join("/"))
}

fn env_name_problem(name: &str) -> Option<String> {
    let Some(first) = name.chars().next() else {
        return Some("it is empty".into());
    };
    if first.is_ascii_digit() {
        return Some("it starts with a digit".into());
    }
    name.chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || c == '_'))
        .map(|c| format!("it contains {c:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [app]
        name = "shop"
        version = "1.0.0"

        [[component]]
        id = "web"
        source = "web.wasm"
        route = "/..."
    "#;

    fn error(text: &str) -> String {
        match parse_manifest(text) {
            Ok(m) => panic!("expected an error, got {m:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn minimal_manifest_gets_defaults() {
        let m = parse_manifest(MINIMAL).unwrap();
        assert_eq!(m.manifest_version, 1);
        assert_eq!(m.app.description, None);
        let web = m.component("web").unwrap();
        assert_eq!(web.limits, ComponentLimits::default());
        assert!(web.environment.is_empty());
        assert!(m.component("api").is_none());
    }

    #[test]
    fn component_lookup_finds_by_id() {
        let text = format!(
            "{MINIMAL}\n[[component]]\nid = \"api\"\nsource = \"./bin/./api.wasm\"\nroute = \"/\"\n"
        );
        let text = text.replace("route = \"/...\"", "route = \"/web/...\"");
        let m = parse_manifest(&text).unwrap();
        assert_eq!(m.component("api").unwrap().source, "bin/api.wasm");
        assert_eq!(
            m.component("web").unwrap().route.as_ref().unwrap().as_str(),
            "/web/..."
        );
    }

    #[test]
    fn description_is_trimmed_and_blank_means_none() {
        let with = |d: &str| {
            MINIMAL.replace(
                "version = \"1.0.0\"",
                &format!("version = \"1.0.0\"\ndescription = {d:?}"),
            )
        };
        assert_eq!(
            parse_manifest(&with("  My shop \n"))
                .unwrap()
                .app
                .description
                .as_deref(),
            Some("My shop")
        );
        assert_eq!(parse_manifest(&with("   ")).unwrap().app.description, None);
    }

    #[test]
    fn version_is_checked_before_unknown_keys() {
        let text = format!("manifest_version = 2\nfuture_key = true\n{MINIMAL}");
        let message = error(&text);
        assert!(
            message.starts_with("manifest_version: 2 is not supported"),
            "{message}"
        );
        assert!(message.contains("manifest_version = 1"), "{message}");
        assert!(
            error(&format!("manifest_version = \"1\"\n{MINIMAL}"))
                .contains("\"1\" is not supported")
        );
        assert!(parse_manifest(&format!("manifest_version = 1\n{MINIMAL}")).is_ok());
    }

    #[test]
    fn missing_required_keys_name_the_field() {
        assert!(error("").starts_with("app: missing"));
        assert!(error("[app]\nversion = \"1\"").starts_with("app.name: missing"));
        assert!(error("[app]\nname = \"a\"").starts_with("app.version: missing"));
        for (key, line) in [
            ("id", "id = \"web\""),
            ("source", "source = \"web.wasm\""),
            ("route", "route = \"/...\""),
        ] {
            let message = error(&MINIMAL.replace(line, ""));
            assert!(
                message.starts_with(&format!("component[0].{key}: missing")),
                "{message}"
            );
        }
    }

    #[test]
    fn toml_errors_keep_position_and_allowed_keys() {
        let message = error(&MINIMAL.replace("[app]", "[app]\nnmae = \"x\""));
        assert!(message.contains("line 3"), "{message}");
        assert!(message.contains("unknown field `nmae`"), "{message}");
        assert!(
            message.contains("`name`, `version`, `description`"),
            "{message}"
        );
        let syntax = error("[app\nname = 1");
        assert!(
            syntax.starts_with("invalid wharf.toml: TOML parse error at line 1"),
            "{syntax}"
        );
    }

    #[test]
    fn names_follow_the_label_rule() {
        for good in ["a", "shop", "my-shop-2", &"a".repeat(63)] {
            check_name("app.name", good).unwrap();
        }
        let cases = [
            ("", "empty"),
            (&"a".repeat(64), "64 characters"),
            ("Shop", "uppercase letter 'S' at position 1"),
            ("my_shop", "'_' at position 3"),
            ("2shop", "does not start with a letter"),
            ("-shop", "does not start with a letter"),
            ("shop-", "ends with '-'"),
            ("caf\u{e9}", "position 4"),
        ];
        for (bad, reason) in cases {
            let message = check_name("app.name", bad).unwrap_err().to_string();
            assert!(message.starts_with("app.name: "), "{message}");
            assert!(message.contains(reason), "{bad}: {message}");
        }
    }

    #[test]
    fn versions_are_printable_ascii_without_spaces() {
        for good in ["1", "1.2.0", "v2.0.0-rc.1+build.5", &"9".repeat(64)] {
            check_version_string("app.version", good).unwrap();
        }
        for (bad, reason) in [
            ("", "empty"),
            (&"9".repeat(65), "65 bytes"),
            ("1.0 beta", "whitespace"),
            ("1.0\u{7f}", "not printable"),
            ("1.0\u{e9}", "not printable"),
        ] {
            let message = check_version_string("app.version", bad)
                .unwrap_err()
                .to_string();
            assert!(message.contains(reason), "{bad:?}: {message}");
        }
    }

    #[test]
    fn sources_are_normalized_or_refused() {
        assert_eq!(normalize_source("web.wasm").unwrap(), "web.wasm");
        assert_eq!(normalize_source("./a/./b.wasm").unwrap(), "a/b.wasm");
        assert_eq!(normalize_source("a..b/c.wasm").unwrap(), "a..b/c.wasm");
        for (bad, reason) in [
            ("", "empty"),
            ("/web.wasm", "absolute"),
            ("../web.wasm", "'..'"),
            ("a/../../web.wasm", "'..'"),
            ("a\\web.wasm", "backslashes"),
            ("C:web.wasm", "drive letters"),
            ("a//web.wasm", "empty segment"),
            ("web.wasm/", "empty segment"),
            ("web.wat", ".wasm"),
            (".wasm", ".wasm"),
            ("dir/.", ".wasm"),
            ("web\n.wasm", "control"),
        ] {
            let reason_found = normalize_source(bad).unwrap_err();
            assert!(reason_found.contains(reason), "{bad:?}: {reason_found}");
        }
    }

    #[test]
    fn env_names() {
        for good in ["A", "_", "api_key", "PATH2", "_X_1"] {
            assert_eq!(env_name_problem(good), None, "{good}");
        }
        assert!(env_name_problem("").unwrap().contains("empty"));
        assert!(env_name_problem("1ABC").unwrap().contains("digit"));
        assert!(env_name_problem("MY-VAR").unwrap().contains("'-'"));
        assert!(env_name_problem("MY VAR").unwrap().contains("' '"));
    }

    fn with_limits(limits: &str) -> String {
        format!("{MINIMAL}\n[component.limits]\n{limits}\n")
    }

    #[test]
    fn limits_are_parsed_and_bounded() {
        let m = parse_manifest(&with_limits(
            "memory = \"1MiB\"\ntimeout = \"1h\"\nmax_concurrency = 100000\nmax_body = 0",
        ))
        .unwrap();
        assert_eq!(
            m.components[0].limits,
            ComponentLimits {
                memory: Some(MIB),
                timeout: Some(MAX_TIMEOUT),
                max_concurrency: Some(100_000),
                max_body: Some(0),
            }
        );
        let m = parse_manifest(&with_limits(
            "memory = 4294967296\nmax_body = \"1GiB\"\ntimeout = \"250ms\"",
        ))
        .unwrap();
        assert_eq!(m.components[0].limits.memory, Some(4 * GIB));
        assert_eq!(m.components[0].limits.max_body, Some(GIB));
        assert_eq!(
            m.components[0].limits.timeout,
            Some(Duration::from_millis(250))
        );

        let cases = [
            ("memory = \"lots\"", "component[0].limits.memory: \"lots\""),
            (
                "memory = \"1023KiB\"",
                "it is 1023KiB, but must be between 1MiB and 4GiB",
            ),
            ("memory = \"5GiB\"", "between 1MiB and 4GiB"),
            ("memory = -1", "negative"),
            (
                "max_body = \"2GiB\"",
                "component[0].limits.max_body: \"2GiB\" is not a valid limit: it is 2GiB, but must be at most 1GiB",
            ),
            ("timeout = \"0s\"", "greater than zero"),
            ("timeout = \"61m\"", "at most 1h"),
            (
                "timeout = \"soon\"",
                "component[0].limits.timeout: \"soon\"",
            ),
            ("timeout = 5", "expected a duration string such as \"5s\""),
            (
                "max_concurrency = 0",
                "component[0].limits.max_concurrency: 0",
            ),
            ("max_concurrency = -5", "between 1 and 100000"),
            ("max_concurrency = 100001", "between 1 and 100000"),
            ("memory = true", "expected a byte size"),
        ];
        for (limits, expected) in cases {
            let message = error(&with_limits(limits));
            assert!(message.contains(expected), "{limits}: {message}");
        }
    }

    #[test]
    fn overlap_error_names_both_components() {
        let text = format!(
            "{MINIMAL}\n[[component]]\nid = \"api\"\nsource = \"api.wasm\"\nroute = \"/...\"\n"
        );
        let message = error(&text);
        assert!(message.starts_with("component[1].route: "), "{message}");
        for part in [
            "`/...`",
            "\"api\"",
            "component[0]",
            "\"web\"",
            "just as specific",
        ] {
            assert!(message.contains(part), "{part}: {message}");
        }
    }

    #[test]
    fn nested_routes_of_different_specificity_are_allowed() {
        let text = format!(
            "{MINIMAL}\n[[component]]\nid = \"api\"\nsource = \"api.wasm\"\nroute = \"/api/...\"\n[[component]]\nid = \"user\"\nsource = \"u.wasm\"\nroute = \"/api/users/:id\"\n"
        );
        let m = parse_manifest(&text).unwrap();
        assert_eq!(m.components.len(), 3);
        // Equal specificity stays ambiguous even when the routes differ.
        let text = text
            .replace("/api/users/:id", "/api/:x/b")
            .replace("route = \"/api/...\"", "route = \"/api/a/:y\"");
        assert!(error(&text).contains("just as specific"));
    }

    #[test]
    fn duplicate_ids_name_both_indexes() {
        let text = format!(
            "{MINIMAL}\n[[component]]\nid = \"x\"\nsource = \"x.wasm\"\nroute = \"/x\"\n[[component]]\nid = \"x\"\nsource = \"y.wasm\"\nroute = \"/y\"\n"
        );
        let text = text.replacen("route = \"/...\"", "route = \"/web\"", 1);
        assert_eq!(
            error(&text),
            "component[2].id: \"x\" is already the id of component[1]; give every component a unique id"
        );
    }
}
