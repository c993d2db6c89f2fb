//! The manifest as written, before validation.
//!
//! Required keys are `Option`s here so that a missing key gets a message naming
//! its full path instead of serde's bare "missing field"; unknown keys are left
//! to serde, whose message lists the allowed ones.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

/// Read first, leniently, so that a manifest written for a newer version is
/// reported as such rather than as a pile of unknown keys.
#[derive(Deserialize)]
pub(crate) struct VersionProbe {
    pub manifest_version: Option<toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawManifest {
    // Checked by `VersionProbe`; declared so that it is not an unknown key.
    #[serde(rename = "manifest_version")]
    pub _manifest_version: Option<toml::Value>,
    pub app: Option<RawApp>,
    #[serde(default)]
    pub variables: BTreeMap<String, RawVariable>,
    #[serde(default)]
    pub component: Vec<RawComponent>,
    #[serde(default)]
    pub trigger: RawTriggers,
}

/// The `[trigger]` table: one array per trigger kind. Unknown kinds are refused by
/// serde with the list of known ones.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTriggers {
    #[serde(default)]
    pub http: Vec<RawHttpTrigger>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHttpTrigger {
    pub route: Option<String>,
    pub component: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawVariable {
    pub default: Option<String>,
    pub required: Option<bool>,
    pub secret: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFileMount {
    pub source: Option<String>,
    pub dest: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawExecutor {
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawApp {
    pub name: Option<String>,
    pub version: Option<String>,
    pub description: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawComponent {
    pub id: Option<String>,
    pub source: Option<String>,
    pub route: Option<String>,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    #[serde(default)]
    pub key_value_stores: Vec<String>,
    #[serde(default)]
    pub allowed_outbound_hosts: Vec<String>,
    #[serde(default)]
    pub files: Vec<RawFileMount>,
    pub executor: Option<RawExecutor>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimits {
    pub memory: Option<RawSize>,
    pub timeout: Option<RawDuration>,
    // Wider than the final u32 so that negative and huge values reach our
    // range check and its message instead of a type error.
    pub max_concurrency: Option<i64>,
    pub max_body: Option<RawSize>,
}

/// A byte size as written: `"64MiB"` or a bare number of bytes.
pub(crate) enum RawSize {
    Text(String),
    Bytes(i128),
}

impl fmt::Display for RawSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RawSize::Text(text) => write!(f, "{text:?}"),
            RawSize::Bytes(n) => write!(f, "{n}"),
        }
    }
}

impl<'de> Deserialize<'de> for RawSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;
        impl Visitor<'_> for SizeVisitor {
            type Value = RawSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a byte size such as \"64MiB\" or a whole number of bytes")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawSize, E> {
                Ok(RawSize::Text(v.to_owned()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawSize, E> {
                Ok(RawSize::Bytes(v.into()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawSize, E> {
                Ok(RawSize::Bytes(v.into()))
            }
        }
        deserializer.deserialize_any(SizeVisitor)
    }
}

/// A duration string; a custom type only so a wrong type says what is expected.
pub(crate) struct RawDuration(pub String);

impl<'de> Deserialize<'de> for RawDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;
        impl Visitor<'_> for DurationVisitor {
            type Value = RawDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string such as \"5s\", \"500ms\" or \"2m\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawDuration, E> {
                Ok(RawDuration(v.to_owned()))
            }
        }
        deserializer.deserialize_any(DurationVisitor)
    }
}
