//! JSON ↔ component-model values, for Wharf's HTTP invoke endpoint.
//!
//! A client POSTs the arguments of an export as JSON and gets its results back as JSON.
//! [`json_to_val`] turns a [`serde_json::Value`] into a wasmtime [`Val`] of a given
//! component [`Type`], checking it on the way; [`val_to_json`] turns a [`Val`] back into
//! JSON; [`json_to_args`] maps a whole argument list; [`wit_type_name`] spells a type
//! the way WIT does, for error messages.
//!
//! # Mapping
//!
//! | WIT type                 | JSON (output is always the first form)                                   |
//! |--------------------------|---------------------------------------------------------------------------|
//! | `bool`                   | `true` / `false`                                                          |
//! | `s8` … `s64`, `u8` … `u64` | a number, integral and in range for the exact type (`3.0` is accepted as `3`, but only up to 2^53); `s64` and `u64` also accept a decimal string such as `"-12"` or `"18446744073709551615"`. Output is always a number (serde_json keeps 64-bit integers exact) |
//! | `f32`, `f64`             | a number; the strings `"NaN"`, `"Infinity"` and `"-Infinity"` for non-finite values. A finite number too large for `f32` is an error |
//! | `char`                   | a string of exactly one Unicode scalar value, `"x"`                       |
//! | `string`                 | a string                                                                  |
//! | `list<T>`                | an array of `T` (`list<u8>` too: an array of numbers)                      |
//! | `list<T, N>`             | an array of exactly `N` elements                                          |
//! | `tuple<A, B>`            | an array of exactly the tuple's length, `[a, b]`                          |
//! | `record { … }`           | an object with exactly the record's fields, keyed by their WIT (kebab-case) names: `{"first-name": "Ada"}`. Input also accepts the snake_case and camelCase spellings (`first_name`, `firstName`). A missing field, an unknown field or a field given twice is an error |
//! | `option<T>`              | `null` for `none`, the value itself for `some(v)`                         |
//! | `option<option<T>>`      | `null` for `none`; `{"some": v}` for `some(v)`, where `v` is the inner option (`null` or its value). The same rule applies at every level: an option whose payload is itself an option wraps its `some` as `{"some": …}` |
//! | `result<T, E>`           | `{"ok": v}` or `{"err": e}` (exactly one key); a side without a type takes `null` (`{"ok": null}`) |
//! | `variant { … }`          | `{"tag": "case-name", "value": v}`; for a case without payload `"value"` is absent (`null` is accepted too). Input also accepts the bare string `"case-name"` for a case without payload |
//! | `enum { … }`             | the case name, `"red"`                                                    |
//! | `flags { … }`            | an array of the names of the set flags, `["read", "write"]`; any order on input (output is in declaration order); duplicate or unknown names are errors |
//! | `map<K, V>`              | an array of `[key, value]` pairs; input also accepts an object when `K` is `string` |
//! | `own<R>`, `borrow<R>`, `future<T>`, `stream<T>`, `error-context` | cannot be passed as JSON: [`json_to_val`] always fails. [`val_to_json`] renders such values as the placeholder strings `"<resource>"`, `"<future>"`, `"<stream>"`, `"<error-context>"` |
//!
//! Case names, enum names and flag names must be spelled exactly as in WIT; only record
//! fields and parameter names accept the snake_case and camelCase alternatives.
//!
//! # Errors
//!
//! Every mismatch is a [`JsonTypeError`] that says where the offending JSON is, what was
//! expected and what was found, e.g. `args[1].y: expected f64, found a string "x"`.
//! Paths start at the argument (`args[1]`, or the parameter name when arguments are given
//! as an object) and grow with `.field` for record fields, `[i]` for list, tuple and flags
//! elements, `.ok`/`.err` for results, `.value`/`.tag` for variants and `.some` for nested
//! options.

use serde_json::{Map, Number, Value};
use wharf_engine::wasmtime::component::{Type, Val};

/// A JSON value that does not fit the expected type: where it is and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: expected {expected}, found {found}")]
pub struct JsonTypeError {
    /// Where the value is, e.g. `args[1].x`.
    pub path: String,
    /// What the type wanted, usually its WIT spelling (see [`wit_type_name`]).
    pub expected: String,
    /// A short description of the JSON that was there instead.
    pub found: String,
}

impl JsonTypeError {
    fn new(path: &str, expected: impl Into<String>, found: impl Into<String>) -> Self {
        JsonTypeError {
            path: path.to_string(),
            expected: expected.into(),
            found: found.into(),
        }
    }

    /// The plain mismatch: `value` is not a `ty`.
    fn mismatch(path: &str, ty: &Type, value: &Value) -> Self {
        JsonTypeError::new(path, wit_type_name(ty), describe(value))
    }
}

/// Longest string (in characters) quoted in full in error messages.
const MAX_QUOTED_CHARS: usize = 40;

/// A JSON string literal for `s`, cut to [`MAX_QUOTED_CHARS`] characters with `…`.
fn quote(s: &str) -> String {
    match s.char_indices().nth(MAX_QUOTED_CHARS) {
        Some((cut, _)) => {
            let mut out = Value::String(s[..cut].to_string()).to_string();
            // Put the ellipsis inside the closing quote: "abc…"
            out.pop();
            out.push_str("…\"");
            out
        }
        None => Value::String(s.to_string()).to_string(),
    }
}

/// A brief description of a JSON value for the `found` part of an error.
fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("a string {}", quote(s)),
        Value::Array(items) if items.is_empty() => "an empty array".to_string(),
        Value::Array(items) => format!("an array of {}", items.len()),
        Value::Object(_) => "an object".to_string(),
    }
}

/// A description of an object by its keys, for objects with the wrong shape.
fn describe_keys(obj: &Map<String, Value>) -> String {
    if obj.is_empty() {
        return "an empty object".to_string();
    }
    // Sorted, so that messages do not depend on serde_json's `preserve_order` feature.
    let mut keys: Vec<&String> = obj.keys().collect();
    keys.sort();
    let keys: Vec<String> = keys.into_iter().map(|k| quote(k)).collect();
    let noun = if keys.len() == 1 { "key" } else { "keys" };
    format!("an object with {noun} {}", keys.join(", "))
}

/// A short WIT spelling of a type, used in `expected`: the engine's
/// [`wit_type_name`](wharf_engine::exports::wit_type_name), re-exported here.
pub use wharf_engine::exports::wit_type_name;

/// The snake_case spelling of a WIT kebab-case name.
fn snake_case(name: &str) -> String {
    name.replace('-', "_")
}

/// The camelCase spelling of a WIT kebab-case name: `first-name` → `firstName`.
fn camel_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for (i, word) in name.split('-').enumerate() {
        let mut chars = word.chars();
        if i > 0
            && let Some(first) = chars.next()
        {
            out.extend(first.to_uppercase());
            out.push_str(chars.as_str());
        } else {
            out.push_str(word);
        }
    }
    out
}

/// Whether a JSON object key names the WIT name `wit` (exactly, or in snake_case or
/// camelCase).
fn key_matches(wit: &str, key: &str) -> bool {
    wit == key || snake_case(wit) == key || camel_case(wit) == key
}

/// Assigns each key of `obj` to one of `names`. Returns, per name, the value given for
/// it; errors (as a `found` description) on an unknown key or a name given twice.
fn match_keys<'v>(
    names: &[&str],
    obj: &'v Map<String, Value>,
    what: &str,
) -> Result<Vec<Option<(&'v str, &'v Value)>>, String> {
    let mut slots: Vec<Option<(&str, &Value)>> = vec![None; names.len()];
    // In sorted key order, so that which error is reported does not depend on serde_json's
    // `preserve_order` feature.
    let mut entries: Vec<(&String, &Value)> = obj.iter().collect();
    entries.sort_by_key(|(key, _)| *key);
    for (key, value) in entries {
        let Some(index) = names.iter().position(|name| key_matches(name, key)) else {
            return Err(format!("an object with unknown {what} {}", quote(key)));
        };
        if let Some((earlier, _)) = slots[index] {
            return Err(format!(
                "an object with {what} {} given twice (as {} and {})",
                quote(names[index]),
                quote(earlier),
                quote(key)
            ));
        }
        slots[index] = Some((key.as_str(), value));
    }
    Ok(slots)
}

/// The largest integer magnitude accepted from a JSON floating-point number (2^53): any
/// integral `f64` up to it is exact.
const MAX_EXACT_FLOAT_INT: f64 = 9_007_199_254_740_992.0;

/// An integer from JSON: an integer number, an integral float within ±2^53, or (when
/// `allow_string`) a decimal string. `None` if it is none of these.
fn json_integer(value: &Value, allow_string: bool) -> Option<i128> {
    match value {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Some(i128::from(i))
            } else if let Some(u) = n.as_u64() {
                Some(i128::from(u))
            } else {
                let f = n.as_f64()?;
                if f.fract() == 0.0 && f.abs() <= MAX_EXACT_FLOAT_INT {
                    // Exact: integral and within the 53-bit mantissa.
                    Some(f as i128)
                } else {
                    None
                }
            }
        }
        Value::String(s) if allow_string => s.parse::<i128>().ok(),
        _ => None,
    }
}

fn integer<T: TryFrom<i128>>(
    ty: &Type,
    value: &Value,
    path: &str,
    allow_string: bool,
) -> Result<T, JsonTypeError> {
    json_integer(value, allow_string)
        .and_then(|i| T::try_from(i).ok())
        .ok_or_else(|| JsonTypeError::mismatch(path, ty, value))
}

/// A float from JSON: a number or one of the strings `NaN`, `Infinity`, `-Infinity`.
fn json_float(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => match s.as_str() {
            "NaN" => Some(f64::NAN),
            "Infinity" => Some(f64::INFINITY),
            "-Infinity" => Some(f64::NEG_INFINITY),
            _ => None,
        },
        _ => None,
    }
}

/// Maps `value` to a component value of type `ty`, or says why it does not fit.
///
/// `path` is the location used in errors, e.g. `args[1]` or `point` — nested locations
/// extend it like `args[1].x`, `args[0][3]`, `args[2].ok`, `args[0].some`.
pub fn json_to_val(ty: &Type, value: &Value, path: &str) -> Result<Val, JsonTypeError> {
    let mismatch = || JsonTypeError::mismatch(path, ty, value);
    Ok(match ty {
        Type::Bool => match value {
            Value::Bool(b) => Val::Bool(*b),
            _ => return Err(mismatch()),
        },
        Type::S8 => Val::S8(integer(ty, value, path, false)?),
        Type::U8 => Val::U8(integer(ty, value, path, false)?),
        Type::S16 => Val::S16(integer(ty, value, path, false)?),
        Type::U16 => Val::U16(integer(ty, value, path, false)?),
        Type::S32 => Val::S32(integer(ty, value, path, false)?),
        Type::U32 => Val::U32(integer(ty, value, path, false)?),
        Type::S64 => Val::S64(integer(ty, value, path, true)?),
        Type::U64 => Val::U64(integer(ty, value, path, true)?),
        Type::Float32 => {
            let f = json_float(value).ok_or_else(mismatch)?;
            // Rounds to the nearest f32; overflow to infinity is an error.
            let narrow = f as f32;
            if f.is_finite() && !narrow.is_finite() {
                return Err(mismatch());
            }
            Val::Float32(narrow)
        }
        Type::Float64 => Val::Float64(json_float(value).ok_or_else(mismatch)?),
        Type::Char => {
            let Value::String(s) = value else {
                return Err(mismatch());
            };
            let mut chars = s.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => Val::Char(c),
                _ => return Err(mismatch()),
            }
        }
        Type::String => match value {
            Value::String(s) => Val::String(s.clone()),
            _ => return Err(mismatch()),
        },
        Type::List(list) => {
            let Value::Array(items) = value else {
                return Err(mismatch());
            };
            Val::List(elements(&list.ty(), items, path)?)
        }
        Type::FixedLengthList(list) => {
            let Value::Array(items) = value else {
                return Err(mismatch());
            };
            if u32::try_from(items.len()).ok() != Some(list.len()) {
                return Err(mismatch());
            }
            Val::FixedLengthList(elements(&list.ty(), items, path)?)
        }
        Type::Map(map) => {
            let (key_ty, value_ty) = (map.key(), map.value());
            match value {
                Value::Array(pairs) => {
                    let mut out = Vec::with_capacity(pairs.len());
                    for (i, pair) in pairs.iter().enumerate() {
                        let pair_path = format!("{path}[{i}]");
                        match pair.as_array().map(Vec::as_slice) {
                            Some([k, v]) => out.push((
                                json_to_val(&key_ty, k, &format!("{pair_path}[0]"))?,
                                json_to_val(&value_ty, v, &format!("{pair_path}[1]"))?,
                            )),
                            _ => {
                                return Err(JsonTypeError::new(
                                    &pair_path,
                                    format!(
                                        "a [key, value] pair of {}, {}",
                                        wit_type_name(&key_ty),
                                        wit_type_name(&value_ty)
                                    ),
                                    describe(pair),
                                ));
                            }
                        }
                    }
                    Val::Map(out)
                }
                Value::Object(obj) if key_ty == Type::String => {
                    let mut out = Vec::with_capacity(obj.len());
                    for (k, v) in obj {
                        out.push((
                            Val::String(k.clone()),
                            json_to_val(&value_ty, v, &format!("{path}.{k}"))?,
                        ));
                    }
                    Val::Map(out)
                }
                _ => return Err(mismatch()),
            }
        }
        Type::Tuple(tuple) => {
            let Value::Array(items) = value else {
                return Err(mismatch());
            };
            if items.len() != tuple.types().len() {
                return Err(mismatch());
            }
            let mut out = Vec::with_capacity(items.len());
            for (i, (t, item)) in tuple.types().zip(items).enumerate() {
                out.push(json_to_val(&t, item, &format!("{path}[{i}]"))?);
            }
            Val::Tuple(out)
        }
        Type::Record(record) => {
            let Value::Object(obj) = value else {
                return Err(mismatch());
            };
            let fields: Vec<_> = record.fields().collect();
            let names: Vec<&str> = fields.iter().map(|f| f.name).collect();
            let slots = match_keys(&names, obj, "field")
                .map_err(|found| JsonTypeError::new(path, wit_type_name(ty), found))?;
            let mut out = Vec::with_capacity(fields.len());
            for (field, slot) in fields.iter().zip(slots) {
                let Some((_, field_value)) = slot else {
                    return Err(JsonTypeError::new(
                        path,
                        wit_type_name(ty),
                        format!("an object missing field {}", quote(field.name)),
                    ));
                };
                let field_path = format!("{path}.{}", field.name);
                out.push((
                    field.name.to_string(),
                    json_to_val(&field.ty, field_value, &field_path)?,
                ));
            }
            Val::Record(out)
        }
        Type::Variant(variant) => {
            let cases: Vec<_> = variant.cases().collect();
            let find = |tag: &str| cases.iter().find(|c| c.name == tag);
            match value {
                Value::String(tag) => match find(tag) {
                    Some(case) if case.ty.is_none() => Val::Variant(tag.clone(), None),
                    Some(_) => {
                        return Err(JsonTypeError::new(
                            path,
                            wit_type_name(ty),
                            format!(
                                "a string {} (that case has a value: use {{\"tag\": {}, \"value\": ...}})",
                                quote(tag),
                                quote(tag)
                            ),
                        ));
                    }
                    None => return Err(mismatch()),
                },
                Value::Object(obj) => {
                    if let Some(key) = obj.keys().find(|k| *k != "tag" && *k != "value") {
                        return Err(JsonTypeError::new(
                            path,
                            wit_type_name(ty),
                            format!("an object with unexpected key {}", quote(key)),
                        ));
                    }
                    let tag_path = format!("{path}.tag");
                    let case_expected = || format!("a case of {}", wit_type_name(ty));
                    let tag = match obj.get("tag") {
                        Some(Value::String(tag)) => tag,
                        Some(other) => {
                            return Err(JsonTypeError::new(
                                &tag_path,
                                case_expected(),
                                describe(other),
                            ));
                        }
                        None => {
                            return Err(JsonTypeError::new(
                                path,
                                wit_type_name(ty),
                                "an object without \"tag\"",
                            ));
                        }
                    };
                    let Some(case) = find(tag) else {
                        return Err(JsonTypeError::new(
                            &tag_path,
                            case_expected(),
                            describe(&Value::String(tag.clone())),
                        ));
                    };
                    let value_path = format!("{path}.value");
                    let payload = match (&case.ty, obj.get("value")) {
                        (None, None | Some(Value::Null)) => None,
                        (None, Some(other)) => {
                            return Err(JsonTypeError::new(
                                &value_path,
                                format!("no value (case {} has no payload)", quote(tag)),
                                describe(other),
                            ));
                        }
                        (Some(payload_ty), Some(v)) => {
                            Some(Box::new(json_to_val(payload_ty, v, &value_path)?))
                        }
                        (Some(_), None) => {
                            return Err(JsonTypeError::new(
                                path,
                                wit_type_name(ty),
                                format!("an object missing \"value\" for case {}", quote(tag)),
                            ));
                        }
                    };
                    Val::Variant(tag.clone(), payload)
                }
                _ => return Err(mismatch()),
            }
        }
        Type::Enum(e) => match value {
            Value::String(name) if e.names().any(|n| n == name) => Val::Enum(name.clone()),
            _ => return Err(mismatch()),
        },
        Type::Flags(flags) => {
            let Value::Array(items) = value else {
                return Err(mismatch());
            };
            let names: Vec<&str> = flags.names().collect();
            let mut set = vec![false; names.len()];
            for (i, item) in items.iter().enumerate() {
                let item_path = format!("{path}[{i}]");
                let expected = || format!("a flag of {}", wit_type_name(ty));
                let index = item
                    .as_str()
                    .and_then(|s| names.iter().position(|n| *n == s))
                    .ok_or_else(|| JsonTypeError::new(&item_path, expected(), describe(item)))?;
                if set[index] {
                    return Err(JsonTypeError::new(
                        &item_path,
                        expected(),
                        format!("a duplicate {}", quote(names[index])),
                    ));
                }
                set[index] = true;
            }
            Val::Flags(
                names
                    .iter()
                    .zip(set)
                    .filter(|(_, on)| *on)
                    .map(|(n, _)| n.to_string())
                    .collect(),
            )
        }
        Type::Option(option) => {
            let inner = option.ty();
            match value {
                Value::Null => Val::Option(None),
                _ if matches!(inner, Type::Option(_)) => {
                    // option<option<T>>: `some` is spelled {"some": v} to keep it apart
                    // from `none`.
                    let Value::Object(obj) = value else {
                        return Err(JsonTypeError::new(
                            path,
                            format!("null or {{\"some\": ...}} for {}", wit_type_name(ty)),
                            describe(value),
                        ));
                    };
                    match obj.get("some") {
                        Some(v) if obj.len() == 1 => Val::Option(Some(Box::new(json_to_val(
                            &inner,
                            v,
                            &format!("{path}.some"),
                        )?))),
                        _ => {
                            return Err(JsonTypeError::new(
                                path,
                                format!("null or {{\"some\": ...}} for {}", wit_type_name(ty)),
                                describe_keys(obj),
                            ));
                        }
                    }
                }
                _ => Val::Option(Some(Box::new(json_to_val(&inner, value, path)?))),
            }
        }
        Type::Result(result) => {
            let Value::Object(obj) = value else {
                return Err(mismatch());
            };
            let mut entries = obj.iter();
            let (Some((key, side_value)), None) = (entries.next(), entries.next()) else {
                return Err(JsonTypeError::new(
                    path,
                    wit_type_name(ty),
                    describe_keys(obj),
                ));
            };
            let side_path = format!("{path}.{key}");
            match key.as_str() {
                "ok" => Val::Result(Ok(result_side(result.ok(), side_value, &side_path)?)),
                "err" => Val::Result(Err(result_side(result.err(), side_value, &side_path)?)),
                _ => {
                    return Err(JsonTypeError::new(
                        path,
                        wit_type_name(ty),
                        describe_keys(obj),
                    ));
                }
            }
        }
        Type::Own(_) | Type::Borrow(_) | Type::Future(_) | Type::Stream(_) | Type::ErrorContext => {
            return Err(JsonTypeError::new(
                path,
                format!("{} (cannot be passed as JSON)", wit_type_name(ty)),
                describe(value),
            ));
        }
    })
}

fn elements(ty: &Type, items: &[Value], path: &str) -> Result<Vec<Val>, JsonTypeError> {
    items
        .iter()
        .enumerate()
        .map(|(i, item)| json_to_val(ty, item, &format!("{path}[{i}]")))
        .collect()
}

/// One side of a result: a typed side converts its value, an untyped side takes `null`.
fn result_side(
    ty: Option<Type>,
    value: &Value,
    path: &str,
) -> Result<Option<Box<Val>>, JsonTypeError> {
    match ty {
        Some(ty) => Ok(Some(Box::new(json_to_val(&ty, value, path)?))),
        None if value.is_null() => Ok(None),
        None => Err(JsonTypeError::new(path, "null", describe(value))),
    }
}

/// Maps a component value to JSON (see the module documentation for the mapping).
///
/// Values that have no JSON form (resources, futures, streams, error contexts) become
/// the placeholder strings `"<resource>"`, `"<future>"`, `"<stream>"` and
/// `"<error-context>"`.
pub fn val_to_json(val: &Val) -> Value {
    match val {
        Val::Bool(b) => Value::Bool(*b),
        Val::S8(i) => Value::from(*i),
        Val::U8(i) => Value::from(*i),
        Val::S16(i) => Value::from(*i),
        Val::U16(i) => Value::from(*i),
        Val::S32(i) => Value::from(*i),
        Val::U32(i) => Value::from(*i),
        Val::S64(i) => Value::from(*i),
        Val::U64(i) => Value::from(*i),
        Val::Float32(f) => {
            // Go through the shortest decimal form of the f32 so that 0.1f32 comes out
            // as 0.1 rather than 0.10000000149011612.
            let wide = if f.is_finite() {
                f.to_string().parse::<f64>().unwrap_or(f64::from(*f))
            } else {
                f64::from(*f)
            };
            float_to_json(wide)
        }
        Val::Float64(f) => float_to_json(*f),
        Val::Char(c) => Value::String(c.to_string()),
        Val::String(s) => Value::String(s.clone()),
        Val::List(items) | Val::Tuple(items) | Val::FixedLengthList(items) => {
            Value::Array(items.iter().map(val_to_json).collect())
        }
        Val::Map(pairs) => Value::Array(
            pairs
                .iter()
                .map(|(k, v)| Value::Array(vec![val_to_json(k), val_to_json(v)]))
                .collect(),
        ),
        Val::Record(fields) => Value::Object(
            fields
                .iter()
                .map(|(name, v)| (name.clone(), val_to_json(v)))
                .collect(),
        ),
        Val::Variant(tag, payload) => {
            let mut obj = Map::new();
            obj.insert("tag".to_string(), Value::String(tag.clone()));
            if let Some(payload) = payload {
                obj.insert("value".to_string(), val_to_json(payload));
            }
            Value::Object(obj)
        }
        Val::Enum(name) => Value::String(name.clone()),
        Val::Option(None) => Value::Null,
        Val::Option(Some(inner)) => match inner.as_ref() {
            Val::Option(_) => {
                let mut obj = Map::new();
                obj.insert("some".to_string(), val_to_json(inner));
                Value::Object(obj)
            }
            _ => val_to_json(inner),
        },
        Val::Result(result) => {
            let (key, side) = match result {
                Ok(side) => ("ok", side),
                Err(side) => ("err", side),
            };
            let mut obj = Map::new();
            obj.insert(
                key.to_string(),
                side.as_deref().map_or(Value::Null, val_to_json),
            );
            Value::Object(obj)
        }
        Val::Flags(names) => Value::Array(names.iter().cloned().map(Value::String).collect()),
        Val::Resource(_) => Value::String("<resource>".to_string()),
        Val::Future(_) => Value::String("<future>".to_string()),
        Val::Stream(_) => Value::String("<stream>".to_string()),
        Val::ErrorContext(_) => Value::String("<error-context>".to_string()),
    }
}

fn float_to_json(f: f64) -> Value {
    match Number::from_f64(f) {
        Some(n) => Value::Number(n),
        None if f.is_nan() => Value::String("NaN".to_string()),
        None if f > 0.0 => Value::String("Infinity".to_string()),
        None => Value::String("-Infinity".to_string()),
    }
}

/// The parameter list spelled as in WIT: `(x: f64, y: f64)`.
fn signature(params: &[(String, Type)]) -> String {
    let params: Vec<String> = params
        .iter()
        .map(|(name, ty)| format!("{name}: {}", wit_type_name(ty)))
        .collect();
    format!("({})", params.join(", "))
}

/// Maps a JSON argument list for a function with the given parameter types: either a
/// JSON array in parameter order, or a JSON object keyed by parameter name (the WIT name,
/// or its snake_case or camelCase spelling). Paths are `args[i]` for arrays and the
/// parameter name for objects. Wrong arity, missing or unknown parameter names are errors
/// naming them and the expected signature. A function without parameters also accepts
/// `null`.
pub fn json_to_args(params: &[(String, Type)], value: &Value) -> Result<Vec<Val>, JsonTypeError> {
    let expected = || {
        let count = params.len();
        let noun = if count == 1 { "argument" } else { "arguments" };
        format!("{count} {noun} {}", signature(params))
    };
    match value {
        Value::Array(items) => {
            if items.len() != params.len() {
                return Err(JsonTypeError::new("args", expected(), describe(value)));
            }
            params
                .iter()
                .zip(items)
                .enumerate()
                .map(|(i, ((_, ty), item))| json_to_val(ty, item, &format!("args[{i}]")))
                .collect()
        }
        Value::Object(obj) => {
            let names: Vec<&str> = params.iter().map(|(name, _)| name.as_str()).collect();
            let slots = match_keys(&names, obj, "parameter")
                .map_err(|found| JsonTypeError::new("args", expected(), found))?;
            params
                .iter()
                .zip(slots)
                .map(|((name, ty), slot)| match slot {
                    Some((_, arg)) => json_to_val(ty, arg, name),
                    None => Err(JsonTypeError::new(
                        "args",
                        expected(),
                        format!("an object missing parameter {}", quote(name)),
                    )),
                })
                .collect()
        }
        Value::Null if params.is_empty() => Ok(Vec::new()),
        _ => Err(JsonTypeError::new("args", expected(), describe(value))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::LazyLock;
    use wharf_engine::wasmtime::component::types::ComponentItem;
    use wharf_engine::wasmtime::component::{Component, Linker};
    use wharf_engine::wasmtime::{Engine, Store};

    /// A component that only imports functions: it exists for the parameter types.
    const TYPES_WAT: &str = r#"
(component
  (type $point' (record (field "x" float64) (field "y" float64)))
  (import "point" (type $point (eq $point')))
  (type $person' (record (field "first-name" string) (field "last-name" string) (field "age-in-years" u8)))
  (import "person" (type $person (eq $person')))
  (type $shape' (variant (case "circle" float64) (case "rect" $point) (case "maybe" (option u8)) (case "none")))
  (import "shape" (type $shape (eq $shape')))
  (type $color' (enum "red" "green" "blue"))
  (import "color" (type $color (eq $color')))
  (type $perms' (flags "read" "write" "exec"))
  (import "perms" (type $perms (eq $perms')))
  (import "thing" (type $thing (sub resource)))

  (import "prims" (func
    (param "b" bool) (param "a" s8) (param "c" u8) (param "d" s16) (param "e" u16)
    (param "f" s32) (param "g" u32) (param "h" s64) (param "i" u64)
    (param "j" float32) (param "k" float64) (param "l" char) (param "m" string)))
  (import "take-point" (func (param "p" $point) (param "q" $point) (result $point)))
  (import "take-person" (func (param "who" $person) (param "all-people" (list $person))))
  (import "take-shape" (func (param "s" $shape) (param "c" $color) (param "f" $perms)))
  (import "containers" (func
    (param "bytes" (list u8)) (param "names" (list string)) (param "pair" (tuple u8 string))
    (param "maybe" (option u32)) (param "nested" (option (option u8)))
    (param "res" (result s32 (error string))) (param "unit" (result))
    (param "err-only" (result (error string))) (param "grid" (list (list u32)))
    (param "ok-only" (result u8)) (param "triple" (option (option (option u8))))
    (param "maybe-point" (option $point))))
  (import "take-thing" (func (param "t" (own $thing)) (param "b" (borrow $thing))))
  (import "no-args" (func))
)
"#;

    static COMPONENT: LazyLock<(Engine, Component)> = LazyLock::new(|| {
        let engine = Engine::default();
        let component = Component::new(&engine, TYPES_WAT).expect("test component compiles");
        (engine, component)
    });

    /// The parameters of an imported function of [`TYPES_WAT`].
    fn params(func: &str) -> Vec<(String, Type)> {
        let (engine, component) = &*COMPONENT;
        let ty = component.component_type();
        let (_, item) = ty
            .imports(engine)
            .find(|(name, _)| *name == func)
            .expect("function is imported");
        let ComponentItem::ComponentFunc(f) = item.ty else {
            panic!("{func} is not a function");
        };
        f.params().map(|(n, t)| (n.to_string(), t)).collect()
    }

    /// The type of one parameter.
    fn param(func: &str, name: &str) -> Type {
        params(func)
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t)
            .expect("parameter exists")
    }

    /// Asserts json → val → json is the identity and returns the value.
    fn round_trip(ty: &Type, json: Value) -> Val {
        let val = json_to_val(ty, &json, "v").expect("converts");
        assert_eq!(val_to_json(&val), json, "round trip of {json}");
        val
    }

    /// The error message for a value that must not convert.
    fn error(ty: &Type, json: Value, path: &str) -> String {
        json_to_val(ty, &json, path)
            .expect_err(&format!("{json} must not convert"))
            .to_string()
    }

    #[test]
    fn primitives_round_trip() {
        let p = params("prims");
        let args = json!([
            true,
            -128,
            255,
            -32768,
            65535,
            -2147483648i64,
            4294967295u32,
            i64::MIN,
            u64::MAX,
            0.1,
            -2.5e-300,
            "é",
            "hello, 世界"
        ]);
        let vals = json_to_args(&p, &args).expect("converts");
        assert_eq!(vals[0], Val::Bool(true));
        assert_eq!(vals[1], Val::S8(-128));
        assert_eq!(vals[7], Val::S64(i64::MIN));
        assert_eq!(vals[8], Val::U64(u64::MAX));
        assert_eq!(vals[9], Val::Float32(0.1));
        assert_eq!(vals[11], Val::Char('é'));
        let back: Vec<Value> = vals.iter().map(val_to_json).collect();
        assert_eq!(Value::Array(back), args);
    }

    #[test]
    fn integer_range_checks() {
        let s8 = param("prims", "a");
        let u8_ = param("prims", "c");
        let u16_ = param("prims", "e");
        let s32 = param("prims", "f");
        let u32_ = param("prims", "g");
        let s64 = param("prims", "h");
        let u64_ = param("prims", "i");
        assert_eq!(
            error(&s8, json!(128), "n"),
            "n: expected s8, found the number 128"
        );
        assert_eq!(
            error(&s8, json!(-129), "n"),
            "n: expected s8, found the number -129"
        );
        assert_eq!(
            error(&u8_, json!(-1), "n"),
            "n: expected u8, found the number -1"
        );
        assert_eq!(
            error(&u8_, json!(256), "n"),
            "n: expected u8, found the number 256"
        );
        assert_eq!(
            error(&u16_, json!(65536), "n"),
            "n: expected u16, found the number 65536"
        );
        assert_eq!(
            error(&s32, json!(2147483648u32), "n"),
            "n: expected s32, found the number 2147483648"
        );
        assert_eq!(
            error(&u32_, json!(-1), "n"),
            "n: expected u32, found the number -1"
        );
        assert_eq!(
            error(&u32_, json!(3.5), "n"),
            "n: expected u32, found the number 3.5"
        );
        assert_eq!(
            error(&u32_, json!("5"), "n"),
            "n: expected u32, found a string \"5\""
        );
        assert_eq!(error(&s32, json!(true), "n"), "n: expected s32, found true");
        assert_eq!(error(&s32, json!(null), "n"), "n: expected s32, found null");
        assert_eq!(
            error(&u64_, json!(-1), "n"),
            "n: expected u64, found the number -1"
        );
        assert_eq!(
            error(&u64_, json!(1e300), "n"),
            "n: expected u64, found the number 1e+300"
        );
        // Integral floats are accepted up to 2^53 only.
        assert_eq!(json_to_val(&u8_, &json!(3.0), "n"), Ok(Val::U8(3)));
        assert_eq!(json_to_val(&s32, &json!(-1e3), "n"), Ok(Val::S32(-1000)));
        assert!(json_to_val(&u64_, &json!(9007199254740992.0), "n").is_ok());
        assert!(json_to_val(&u64_, &json!(18014398509481984.0), "n").is_err());
        // s64 and u64 also take decimal strings; output is always a number.
        assert_eq!(
            json_to_val(&u64_, &json!("18446744073709551615"), "n"),
            Ok(Val::U64(u64::MAX))
        );
        assert_eq!(
            error(&u64_, json!("18446744073709551616"), "n"),
            "n: expected u64, found a string \"18446744073709551616\""
        );
        assert_eq!(
            json_to_val(&s64, &json!("-9223372036854775808"), "n"),
            Ok(Val::S64(i64::MIN))
        );
        assert_eq!(
            error(&s64, json!("12abc"), "n"),
            "n: expected s64, found a string \"12abc\""
        );
        assert_eq!(val_to_json(&Val::U64(u64::MAX)), json!(u64::MAX));
        assert_eq!(val_to_json(&Val::S64(i64::MIN)), json!(i64::MIN));
    }

    #[test]
    fn floats_and_non_finite_values() {
        let f32_ = param("prims", "j");
        let f64_ = param("prims", "k");
        for ty in [&f32_, &f64_] {
            round_trip(ty, json!("Infinity"));
            round_trip(ty, json!("-Infinity"));
            round_trip(ty, json!(1.5));
            round_trip(ty, json!(-0.0));
            let nan = json_to_val(ty, &json!("NaN"), "x").expect("NaN converts");
            assert!(
                matches!(nan, Val::Float32(f) if f.is_nan())
                    || matches!(nan, Val::Float64(f) if f.is_nan())
            );
            assert_eq!(val_to_json(&nan), json!("NaN"));
            assert!(json_to_val(ty, &json!("nan"), "x").is_err());
            assert!(json_to_val(ty, &json!("1.5"), "x").is_err());
        }
        // Integers are numbers too.
        assert_eq!(json_to_val(&f64_, &json!(3), "x"), Ok(Val::Float64(3.0)));
        // f32 values come out in their shortest decimal form.
        round_trip(&f32_, json!(0.1));
        round_trip(&f32_, json!(3.4e38));
        assert_eq!(
            error(&f32_, json!(1e300), "x"),
            "x: expected f32, found the number 1e+300"
        );
        round_trip(&f64_, json!(1e300));
        assert_eq!(
            error(&f64_, json!("x"), "args[1].y"),
            "args[1].y: expected f64, found a string \"x\""
        );
    }

    #[test]
    fn chars_and_strings() {
        let char_ = param("prims", "l");
        let string = param("prims", "m");
        round_trip(&char_, json!("x"));
        round_trip(&char_, json!("🦀"));
        assert_eq!(
            error(&char_, json!("ab"), "c"),
            "c: expected char, found a string \"ab\""
        );
        assert_eq!(
            error(&char_, json!(""), "c"),
            "c: expected char, found a string \"\""
        );
        assert_eq!(
            error(&char_, json!(65), "c"),
            "c: expected char, found the number 65"
        );
        round_trip(&string, json!(""));
        round_trip(&string, json!("line\nbreak \"quoted\""));
        assert_eq!(
            error(&string, json!(["a"]), "s"),
            "s: expected string, found an array of 1"
        );
        let bool_ = param("prims", "b");
        round_trip(&bool_, json!(false));
        assert_eq!(
            error(&bool_, json!(0), "b"),
            "b: expected bool, found the number 0"
        );
    }

    #[test]
    fn found_descriptions() {
        let bool_ = param("prims", "b");
        let long = "abcdefghij".repeat(10);
        assert_eq!(
            error(&bool_, json!(long), "b"),
            format!("b: expected bool, found a string \"{}…\"", &long[..40])
        );
        assert_eq!(
            error(&bool_, json!([]), "b"),
            "b: expected bool, found an empty array"
        );
        assert_eq!(
            error(&bool_, json!([1, 2]), "b"),
            "b: expected bool, found an array of 2"
        );
        assert_eq!(
            error(&bool_, json!({"a": 1}), "b"),
            "b: expected bool, found an object"
        );
        assert_eq!(
            error(&bool_, json!(null), "b"),
            "b: expected bool, found null"
        );
        assert_eq!(
            error(&bool_, json!("a\"b"), "b"),
            "b: expected bool, found a string \"a\\\"b\""
        );
    }

    #[test]
    fn records_use_wit_names_and_accept_other_spellings() {
        let person = param("take-person", "who");
        let canonical = json!({"first-name": "Ada", "last-name": "Lovelace", "age-in-years": 36});
        let val = round_trip(&person, canonical.clone());
        // Fields come out in declaration order with their WIT names.
        assert_eq!(
            val,
            Val::Record(vec![
                ("first-name".into(), Val::String("Ada".into())),
                ("last-name".into(), Val::String("Lovelace".into())),
                ("age-in-years".into(), Val::U8(36)),
            ])
        );
        for spelling in [
            json!({"first_name": "Ada", "last_name": "Lovelace", "age_in_years": 36}),
            json!({"firstName": "Ada", "lastName": "Lovelace", "ageInYears": 36}),
            json!({"firstName": "Ada", "last_name": "Lovelace", "age-in-years": 36}),
        ] {
            let other = json_to_val(&person, &spelling, "who").expect("converts");
            assert_eq!(other, val, "{spelling}");
            assert_eq!(val_to_json(&other), canonical);
        }
        let list = param("take-person", "all-people");
        round_trip(&list, json!([canonical, canonical]));
        assert_eq!(
            error(
                &list,
                json!([canonical, {"first-name": "A", "last-name": "B", "age-in-years": 300}]),
                "args[1]"
            ),
            "args[1][1].age-in-years: expected u8, found the number 300"
        );
    }

    #[test]
    fn record_errors() {
        let point = param("take-point", "p");
        let spelled = "record { x: f64, y: f64 }";
        assert_eq!(
            error(&point, json!({"x": 1.0}), "args[0]"),
            format!("args[0]: expected {spelled}, found an object missing field \"y\"")
        );
        assert_eq!(
            error(&point, json!({"x": 1.0, "y": 2.0, "z": 3.0}), "args[0]"),
            format!("args[0]: expected {spelled}, found an object with unknown field \"z\"")
        );
        let person = param("take-person", "who");
        assert_eq!(
            error(
                &person,
                json!({"first-name": "A", "first_name": "B", "last-name": "C", "age-in-years": 1}),
                "who"
            ),
            "who: expected record { first-name: string, last-name: string, age-in-years: u8 }, \
             found an object with field \"first-name\" given twice (as \"first-name\" and \"first_name\")"
        );
        assert_eq!(
            error(&point, json!([1.0, 2.0]), "p"),
            format!("p: expected {spelled}, found an array of 2")
        );
        // The path of a wrong field, inside an argument list.
        let err = json_to_args(
            &params("take-point"),
            &json!([{"x": 1, "y": 2}, {"x": 1, "y": "x"}]),
        )
        .expect_err("must fail");
        assert_eq!(
            err.to_string(),
            "args[1].y: expected f64, found a string \"x\""
        );
        assert_eq!(
            err,
            JsonTypeError {
                path: "args[1].y".into(),
                expected: "f64".into(),
                found: "a string \"x\"".into()
            }
        );
    }

    #[test]
    fn variants() {
        let shape = param("take-shape", "s");
        let spelled =
            "variant { circle(f64), rect(record { x: f64, y: f64 }), maybe(option<u8>), none }";
        let circle = round_trip(&shape, json!({"tag": "circle", "value": 2.5}));
        assert_eq!(
            circle,
            Val::Variant("circle".into(), Some(Box::new(Val::Float64(2.5))))
        );
        round_trip(
            &shape,
            json!({"tag": "rect", "value": {"x": 1.0, "y": 2.0}}),
        );
        round_trip(&shape, json!({"tag": "maybe", "value": null}));
        round_trip(&shape, json!({"tag": "maybe", "value": 7}));
        let none = round_trip(&shape, json!({"tag": "none"}));
        assert_eq!(none, Val::Variant("none".into(), None));
        // Alternate spellings of a payload-less case.
        assert_eq!(json_to_val(&shape, &json!("none"), "s"), Ok(none.clone()));
        assert_eq!(
            json_to_val(&shape, &json!({"tag": "none", "value": null}), "s"),
            Ok(none)
        );

        assert_eq!(
            error(&shape, json!({"tag": "circle", "value": "big"}), "args[0]"),
            "args[0].value: expected f64, found a string \"big\""
        );
        assert_eq!(
            error(
                &shape,
                json!({"tag": "rect", "value": {"x": 1.0, "y": []}}),
                "args[0]"
            ),
            "args[0].value.y: expected f64, found an empty array"
        );
        assert_eq!(
            error(&shape, json!({"tag": "square", "value": 1}), "s"),
            format!("s.tag: expected a case of {spelled}, found a string \"square\"")
        );
        assert_eq!(
            error(&shape, json!({"tag": 3}), "s"),
            format!("s.tag: expected a case of {spelled}, found the number 3")
        );
        assert_eq!(
            error(&shape, json!({"value": 3}), "s"),
            format!("s: expected {spelled}, found an object without \"tag\"")
        );
        assert_eq!(
            error(&shape, json!({"tag": "circle"}), "s"),
            format!("s: expected {spelled}, found an object missing \"value\" for case \"circle\"")
        );
        assert_eq!(
            error(&shape, json!({"tag": "none", "value": 1}), "s"),
            "s.value: expected no value (case \"none\" has no payload), found the number 1"
        );
        assert_eq!(
            error(&shape, json!({"tag": "none", "payload": 1}), "s"),
            format!("s: expected {spelled}, found an object with unexpected key \"payload\"")
        );
        assert_eq!(
            error(&shape, json!("circle"), "s"),
            format!(
                "s: expected {spelled}, found a string \"circle\" (that case has a value: \
                 use {{\"tag\": \"circle\", \"value\": ...}})"
            )
        );
        assert_eq!(
            error(&shape, json!("hexagon"), "s"),
            format!("s: expected {spelled}, found a string \"hexagon\"")
        );
        assert_eq!(
            error(&shape, json!(1), "s"),
            format!("s: expected {spelled}, found the number 1")
        );
    }

    #[test]
    fn enums() {
        let color = param("take-shape", "c");
        assert_eq!(
            round_trip(&color, json!("green")),
            Val::Enum("green".into())
        );
        assert_eq!(
            error(&color, json!("purple"), "c"),
            "c: expected enum { red, green, blue }, found a string \"purple\""
        );
        assert_eq!(
            error(&color, json!("Green"), "c"),
            "c: expected enum { red, green, blue }, found a string \"Green\""
        );
        assert_eq!(
            error(&color, json!(1), "c"),
            "c: expected enum { red, green, blue }, found the number 1"
        );
    }

    #[test]
    fn flags() {
        let perms = param("take-shape", "f");
        assert_eq!(round_trip(&perms, json!([])), Val::Flags(vec![]));
        assert_eq!(
            round_trip(&perms, json!(["read", "exec"])),
            Val::Flags(vec!["read".into(), "exec".into()])
        );
        // Any order in, declaration order out.
        let val = json_to_val(&perms, &json!(["exec", "write", "read"]), "f").expect("converts");
        assert_eq!(val_to_json(&val), json!(["read", "write", "exec"]));
        assert_eq!(
            error(&perms, json!(["read", "read"]), "f"),
            "f[1]: expected a flag of flags { read, write, exec }, found a duplicate \"read\""
        );
        assert_eq!(
            error(&perms, json!(["read", "delete"]), "f"),
            "f[1]: expected a flag of flags { read, write, exec }, found a string \"delete\""
        );
        assert_eq!(
            error(&perms, json!([1]), "f"),
            "f[0]: expected a flag of flags { read, write, exec }, found the number 1"
        );
        assert_eq!(
            error(&perms, json!("read"), "f"),
            "f: expected flags { read, write, exec }, found a string \"read\""
        );
    }

    #[test]
    fn options() {
        let maybe = param("containers", "maybe");
        assert_eq!(round_trip(&maybe, json!(null)), Val::Option(None));
        assert_eq!(
            round_trip(&maybe, json!(5)),
            Val::Option(Some(Box::new(Val::U32(5))))
        );
        assert_eq!(
            error(&maybe, json!("5"), "m"),
            "m: expected u32, found a string \"5\""
        );
        let point = param("containers", "maybe-point");
        round_trip(&point, json!({"x": 0.5, "y": 1.0}));
        round_trip(&point, json!(null));

        let nested = param("containers", "nested");
        assert_eq!(round_trip(&nested, json!(null)), Val::Option(None));
        assert_eq!(
            round_trip(&nested, json!({"some": null})),
            Val::Option(Some(Box::new(Val::Option(None))))
        );
        assert_eq!(
            round_trip(&nested, json!({"some": 7})),
            Val::Option(Some(Box::new(Val::Option(Some(Box::new(Val::U8(7)))))))
        );
        assert_eq!(
            error(&nested, json!(7), "args[0]"),
            "args[0]: expected null or {\"some\": ...} for option<option<u8>>, found the number 7"
        );
        assert_eq!(
            error(&nested, json!({"some": 7, "other": 1}), "args[0]"),
            "args[0]: expected null or {\"some\": ...} for option<option<u8>>, \
             found an object with keys \"other\", \"some\""
        );
        assert_eq!(
            error(&nested, json!({"some": "x"}), "args[0]"),
            "args[0].some: expected u8, found a string \"x\""
        );

        let triple = param("containers", "triple");
        round_trip(&triple, json!(null));
        round_trip(&triple, json!({"some": null}));
        round_trip(&triple, json!({"some": {"some": null}}));
        assert_eq!(
            round_trip(&triple, json!({"some": {"some": 1}})),
            Val::Option(Some(Box::new(Val::Option(Some(Box::new(Val::Option(
                Some(Box::new(Val::U8(1)))
            )))))))
        );
        assert_eq!(
            error(&triple, json!({"some": {"some": 300}}), "t"),
            "t.some.some: expected u8, found the number 300"
        );
    }

    #[test]
    fn results() {
        let res = param("containers", "res");
        assert_eq!(
            round_trip(&res, json!({"ok": -4})),
            Val::Result(Ok(Some(Box::new(Val::S32(-4)))))
        );
        assert_eq!(
            round_trip(&res, json!({"err": "nope"})),
            Val::Result(Err(Some(Box::new(Val::String("nope".into())))))
        );
        assert_eq!(
            error(&res, json!({"err": 1}), "args[2]"),
            "args[2].err: expected string, found the number 1"
        );
        assert_eq!(
            error(&res, json!({"ok": "1"}), "args[2]"),
            "args[2].ok: expected s32, found a string \"1\""
        );
        assert_eq!(
            error(&res, json!({"ok": 1, "err": "x"}), "r"),
            "r: expected result<s32, string>, found an object with keys \"err\", \"ok\""
        );
        assert_eq!(
            error(&res, json!({}), "r"),
            "r: expected result<s32, string>, found an empty object"
        );
        assert_eq!(
            error(&res, json!({"value": 1}), "r"),
            "r: expected result<s32, string>, found an object with key \"value\""
        );
        assert_eq!(
            error(&res, json!(1), "r"),
            "r: expected result<s32, string>, found the number 1"
        );

        let unit = param("containers", "unit");
        assert_eq!(
            round_trip(&unit, json!({"ok": null})),
            Val::Result(Ok(None))
        );
        assert_eq!(
            round_trip(&unit, json!({"err": null})),
            Val::Result(Err(None))
        );
        assert_eq!(
            error(&unit, json!({"ok": 5}), "u"),
            "u.ok: expected null, found the number 5"
        );

        let err_only = param("containers", "err-only");
        round_trip(&err_only, json!({"ok": null}));
        round_trip(&err_only, json!({"err": "bad"}));
        let ok_only = param("containers", "ok-only");
        round_trip(&ok_only, json!({"ok": 1}));
        round_trip(&ok_only, json!({"err": null}));
        assert_eq!(
            error(&ok_only, json!({"err": "x"}), "o"),
            "o.err: expected null, found a string \"x\""
        );
    }

    #[test]
    fn lists_and_tuples() {
        let bytes = param("containers", "bytes");
        assert_eq!(
            round_trip(&bytes, json!([0, 1, 255])),
            Val::List(vec![Val::U8(0), Val::U8(1), Val::U8(255)])
        );
        round_trip(&bytes, json!([]));
        assert_eq!(
            error(&bytes, json!([0, 1, 2, 256]), "args[0]"),
            "args[0][3]: expected u8, found the number 256"
        );
        assert_eq!(
            error(&bytes, json!("AAEC"), "args[0]"),
            "args[0]: expected list<u8>, found a string \"AAEC\""
        );
        let names = param("containers", "names");
        round_trip(&names, json!(["a", "b"]));
        let grid = param("containers", "grid");
        round_trip(&grid, json!([[1, 2], [], [3]]));
        assert_eq!(
            error(&grid, json!([[1], [-1]]), "args[8]"),
            "args[8][1][0]: expected u32, found the number -1"
        );
        let pair = param("containers", "pair");
        assert_eq!(
            round_trip(&pair, json!([1, "one"])),
            Val::Tuple(vec![Val::U8(1), Val::String("one".into())])
        );
        assert_eq!(
            error(&pair, json!([1]), "p"),
            "p: expected tuple<u8, string>, found an array of 1"
        );
        assert_eq!(
            error(&pair, json!([1, "one", 2]), "p"),
            "p: expected tuple<u8, string>, found an array of 3"
        );
        assert_eq!(
            error(&pair, json!([1, 1]), "p"),
            "p[1]: expected string, found the number 1"
        );
        assert_eq!(
            error(&pair, json!({"0": 1}), "p"),
            "p: expected tuple<u8, string>, found an object"
        );
    }

    #[test]
    fn resources_cannot_be_passed() {
        let own = param("take-thing", "t");
        let borrow = param("take-thing", "b");
        assert_eq!(
            error(&own, json!(1), "args[0]"),
            "args[0]: expected own<resource> (cannot be passed as JSON), found the number 1"
        );
        assert_eq!(
            error(&borrow, json!(null), "b"),
            "b: expected borrow<resource> (cannot be passed as JSON), found null"
        );
    }

    #[test]
    fn wit_type_names() {
        let names: Vec<String> = params("containers")
            .iter()
            .map(|(_, t)| wit_type_name(t))
            .collect();
        assert_eq!(
            names,
            [
                "list<u8>",
                "list<string>",
                "tuple<u8, string>",
                "option<u32>",
                "option<option<u8>>",
                "result<s32, string>",
                "result",
                "result<_, string>",
                "list<list<u32>>",
                "result<u8>",
                "option<option<option<u8>>>",
                "option<record { x: f64, y: f64 }>",
            ]
        );
        let prims: Vec<String> = params("prims")
            .iter()
            .map(|(_, t)| wit_type_name(t))
            .collect();
        assert_eq!(
            prims,
            [
                "bool", "s8", "u8", "s16", "u16", "s32", "u32", "s64", "u64", "f32", "f64", "char",
                "string"
            ]
        );
        assert_eq!(
            wit_type_name(&param("take-shape", "s")),
            "variant { circle(f64), rect(record { x: f64, y: f64 }), maybe(option<u8>), none }"
        );
        assert_eq!(
            wit_type_name(&param("take-shape", "c")),
            "enum { red, green, blue }"
        );
        assert_eq!(
            wit_type_name(&param("take-shape", "f")),
            "flags { read, write, exec }"
        );
        assert_eq!(wit_type_name(&param("take-thing", "t")), "own<resource>");
        assert_eq!(wit_type_name(&param("take-thing", "b")), "borrow<resource>");
    }

    #[test]
    fn args_as_array_or_object() {
        let p = params("take-point");
        let expected = vec![
            Val::Record(vec![
                ("x".into(), Val::Float64(1.0)),
                ("y".into(), Val::Float64(2.0)),
            ]),
            Val::Record(vec![
                ("x".into(), Val::Float64(3.0)),
                ("y".into(), Val::Float64(4.0)),
            ]),
        ];
        let from_array =
            json_to_args(&p, &json!([{"x": 1, "y": 2}, {"x": 3, "y": 4}])).expect("array form");
        assert_eq!(from_array, expected);
        // Object form: any key order; values in parameter order.
        let from_object = json_to_args(&p, &json!({"q": {"x": 3, "y": 4}, "p": {"x": 1, "y": 2}}))
            .expect("object form");
        assert_eq!(from_object, expected);

        let sig = "2 arguments (p: record { x: f64, y: f64 }, q: record { x: f64, y: f64 })";
        assert_eq!(
            json_to_args(&p, &json!([{"x": 1, "y": 2}]))
                .expect_err("arity")
                .to_string(),
            format!("args: expected {sig}, found an array of 1")
        );
        assert_eq!(
            json_to_args(&p, &json!({"p": {"x": 1, "y": 2}}))
                .expect_err("missing")
                .to_string(),
            format!("args: expected {sig}, found an object missing parameter \"q\"")
        );
        assert_eq!(
            json_to_args(
                &p,
                &json!({"p": {"x": 1, "y": 2}, "q": {"x": 1, "y": 2}, "r": 1})
            )
            .expect_err("unknown")
            .to_string(),
            format!("args: expected {sig}, found an object with unknown parameter \"r\"")
        );
        assert_eq!(
            json_to_args(&p, &json!("p"))
                .expect_err("not a list")
                .to_string(),
            format!("args: expected {sig}, found a string \"p\"")
        );
        // In object form the path is the parameter name.
        assert_eq!(
            json_to_args(
                &p,
                &json!({"p": {"x": 1, "y": 2}, "q": {"x": true, "y": 2}})
            )
            .expect_err("bad field")
            .to_string(),
            "q.x: expected f64, found true"
        );

        // Parameter names take the same alternate spellings as record fields.
        let people = params("take-person");
        let ada = json!({"first-name": "Ada", "last-name": "L", "age-in-years": 36});
        for args in [
            json!({"who": ada, "all-people": []}),
            json!({"who": ada, "all_people": []}),
            json!({"who": ada, "allPeople": []}),
        ] {
            let vals = json_to_args(&people, &args).expect("converts");
            assert_eq!(vals.len(), 2);
            assert_eq!(vals[1], Val::List(vec![]));
        }
        assert_eq!(
            json_to_args(
                &people,
                &json!({"who": ada, "all_people": [], "allPeople": []})
            )
            .expect_err("twice")
            .to_string(),
            "args: expected 2 arguments (who: record { first-name: string, last-name: string, \
             age-in-years: u8 }, all-people: list<record { first-name: string, last-name: string, \
             age-in-years: u8 }>), found an object with parameter \"all-people\" given twice \
             (as \"allPeople\" and \"all_people\")"
        );

        let none = params("no-args");
        assert!(none.is_empty());
        assert_eq!(json_to_args(&none, &json!([])), Ok(vec![]));
        assert_eq!(json_to_args(&none, &json!({})), Ok(vec![]));
        assert_eq!(json_to_args(&none, &json!(null)), Ok(vec![]));
        assert_eq!(
            json_to_args(&none, &json!([1]))
                .expect_err("arity")
                .to_string(),
            "args: expected 0 arguments (), found an array of 1"
        );
        let one = params("take-thing");
        assert_eq!(
            json_to_args(&one, &json!(null))
                .expect_err("null")
                .to_string(),
            "args: expected 2 arguments (t: own<resource>, b: borrow<resource>), found null"
        );
    }

    /// A component whose exports can be called: checks that converted values are accepted by
    /// wasmtime (field names and order, flags, enum and variant names) and that lifted results
    /// map back to JSON.
    const CALL_WAT: &str = r#"
(component
  (core module $m
    (memory (export "mem") 1)
    (data (i32.const 16) "\00\00\00\00\00\00\f8\3f\00\00\00\00\00\00\04\c0")
    ;; point(x, y), color, perms, option<u32>, shape, pair(first-val, second-val)
    (func (export "take")
      (param $x f64) (param $y f64) (param $color i32) (param $perms i32)
      (param $opt-tag i32) (param $opt-val i32) (param $shape-tag i32) (param $radius f64)
      (param $first i32) (param $second i32) (result i32)
      ;; perms | color << 4 | opt-val << 8 | shape-tag << 16 | second << 20 | x << 24
      (i32.or
        (i32.or
          (i32.or (local.get $perms) (i32.shl (local.get $color) (i32.const 4)))
          (i32.or (i32.shl (local.get $opt-val) (i32.const 8))
                  (i32.shl (local.get $shape-tag) (i32.const 16))))
        (i32.or (i32.shl (local.get $second) (i32.const 20))
                (i32.shl (i32.trunc_f64_s (local.get $x)) (i32.const 24)))))
    (func (export "give") (result i32) i32.const 16)
  )
  (core instance $i (instantiate $m))
  (type $point' (record (field "x" float64) (field "y" float64)))
  (export $point "point" (type $point'))
  (type $color' (enum "red" "green" "blue"))
  (export $color "color" (type $color'))
  (type $perms' (flags "read" "write" "exec"))
  (export $perms "perms" (type $perms'))
  (type $shape' (variant (case "circle" float64) (case "none")))
  (export $shape "shape" (type $shape'))
  (type $pair' (record (field "first-val" u8) (field "second-val" u8)))
  (export $pair "pair" (type $pair'))
  (func (export "take")
    (param "p" $point) (param "c" $color) (param "f" $perms) (param "o" (option u32))
    (param "s" $shape) (param "two" $pair) (result u32)
    (canon lift (core func $i "take")))
  (func (export "give") (result $point) (canon lift (core func $i "give") (memory (core memory $i "mem"))))
)
"#;

    #[test]
    fn converted_values_are_accepted_by_a_real_call() {
        let engine = Engine::default();
        let component = Component::new(&engine, CALL_WAT).expect("component compiles");
        let mut store = Store::new(&engine, ());
        let instance = Linker::<()>::new(&engine)
            .instantiate(&mut store, &component)
            .expect("instantiates");

        let take = instance
            .get_func(&mut store, "take")
            .expect("take is exported");
        let ty = take.ty(&store);
        let params: Vec<(String, Type)> = ty.params().map(|(n, t)| (n.to_string(), t)).collect();
        let args = json_to_args(
            &params,
            &json!({
                "p": {"y": 2.0, "x": 3.0},
                "c": "blue",
                "f": ["exec", "read"],
                "o": 9,
                "s": "none",
                "two": {"secondVal": 5, "first_val": 4},
            }),
        )
        .expect("converts");
        let mut results = [Val::Bool(false)];
        take.call(&mut store, &args, &mut results)
            .expect("call succeeds");
        // read|exec = 5, blue = 2, 9, none = 1, 5, x = 3
        let expected = 5 | (2 << 4) | (9 << 8) | (1 << 16) | (5 << 20) | (3 << 24);
        assert_eq!(val_to_json(&results[0]), json!(expected));

        let give = instance
            .get_func(&mut store, "give")
            .expect("give is exported");
        let mut results = [Val::Bool(false)];
        give.call(&mut store, &[], &mut results)
            .expect("call succeeds");
        assert_eq!(val_to_json(&results[0]), json!({"x": 1.5, "y": -2.5}));
        let result_ty = give.ty(&store).results().next().expect("one result");
        assert_eq!(
            json_to_val(&result_ty, &json!({"x": 1.5, "y": -2.5}), "result"),
            Ok(results[0].clone())
        );
    }

    #[test]
    fn maps_and_fixed_length_lists() {
        use wharf_engine::wasmtime::Config;
        let mut config = Config::new();
        config.wasm_component_model_map(true);
        config.wasm_component_model_fixed_length_lists(true);
        let engine = Engine::new(&config).expect("engine");
        let component = Component::new(
            &engine,
            r#"(component (import "f" (func
                (param "by-name" (map string u32)) (param "by-id" (map u32 string))
                (param "rgb" (list u8 3)))))"#,
        )
        .expect("component compiles");
        let ty = component.component_type();
        let (_, item) = ty.imports(&engine).next().expect("one import");
        let ComponentItem::ComponentFunc(f) = item.ty else {
            panic!("not a function");
        };
        let types: Vec<Type> = f.params().map(|(_, t)| t).collect();
        let [by_name, by_id, rgb] = &types[..] else {
            panic!("three parameters");
        };
        assert_eq!(wit_type_name(by_name), "map<string, u32>");
        assert_eq!(wit_type_name(rgb), "list<u8, 3>");

        let pairs = round_trip(by_id, json!([[1, "one"], [2, "two"]]));
        assert_eq!(
            pairs,
            Val::Map(vec![
                (Val::U32(1), Val::String("one".into())),
                (Val::U32(2), Val::String("two".into())),
            ])
        );
        round_trip(by_name, json!([["a", 1]]));
        // String-keyed maps also take an object; output is always pairs.
        let from_object = json_to_val(by_name, &json!({"a": 1}), "m").expect("converts");
        assert_eq!(val_to_json(&from_object), json!([["a", 1]]));
        assert_eq!(
            error(by_name, json!({"a": "x"}), "m"),
            "m.a: expected u32, found a string \"x\""
        );
        assert_eq!(
            error(by_id, json!({"1": "one"}), "m"),
            "m: expected map<u32, string>, found an object"
        );
        assert_eq!(
            error(by_id, json!([[1, "one"], [2]]), "m"),
            "m[1]: expected a [key, value] pair of u32, string, found an array of 1"
        );
        assert_eq!(
            error(by_id, json!([["1", "one"]]), "m"),
            "m[0][0]: expected u32, found a string \"1\""
        );

        assert_eq!(
            round_trip(rgb, json!([1, 2, 3])),
            Val::FixedLengthList(vec![Val::U8(1), Val::U8(2), Val::U8(3)])
        );
        assert_eq!(
            error(rgb, json!([1, 2]), "c"),
            "c: expected list<u8, 3>, found an array of 2"
        );
        assert_eq!(
            error(rgb, json!([1, 2, 300]), "c"),
            "c[2]: expected u8, found the number 300"
        );
    }

    #[test]
    fn helpers_spell_names() {
        assert_eq!(camel_case("first-name"), "firstName");
        assert_eq!(camel_case("x"), "x");
        assert_eq!(camel_case("get-HTTP-url"), "getHTTPUrl");
        assert_eq!(snake_case("age-in-years"), "age_in_years");
        assert_eq!(quote("abc"), "\"abc\"");
        assert_eq!(quote(&"é".repeat(41)), format!("\"{}…\"", "é".repeat(40)));
    }
}
