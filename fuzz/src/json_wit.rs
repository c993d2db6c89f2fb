//! The `json_wit` target: JSON ↔ component-model values (`wharf_plugin::json`), the
//! mapping behind the admin invoke endpoint, whose JSON comes from any API client.
//!
//! The component types come from a real component ([`JSON_WIT_WAT`]) that exports
//! functions covering every WIT type kind, listed with the engine's own
//! [`component_exports`]. Built once per process.

use std::sync::OnceLock;

use serde_json::{Map, Number, Value};
use wharf_engine::exports::{ExportFunc, component_exports};
use wharf_engine::wasmtime::component::{Component, Type, Val};
use wharf_engine::wasmtime::{Config, Engine};
use wharf_plugin::json::{JsonTypeError, json_to_args, json_to_val, val_to_json};

/// A component whose exports' parameters and results cover every WIT type kind: all
/// primitives, lists (of bytes, strings, records, options, lists), fixed-length lists,
/// maps, tuples, records, variants with and without payloads, enums, options (nested
/// three deep), results (with and without either payload), flags (32, the most the
/// component model allows: more is a validation error), resources (`own` and
/// `borrow`), and nested combinations of all of these.
///
/// The component is never instantiated or called, it is only a source of types; but
/// wasmtime compiles only exports it could call, so each function taking parameters is
/// an import lowered into core code and lifted again as an export (lowering and
/// lifting flatten the parameters the same way, and results of one core value too),
/// and the functions `give-*` lift a core function returning a pointer (how every
/// result of more than one core value comes back) to export the larger result types.
pub const JSON_WIT_WAT: &str = r#"
(component
  (type $point' (record (field "x" float64) (field "y" float64)))
  (import "point" (type $point (eq $point')))
  (type $color' (enum "red" "green" "blue"))
  (import "color" (type $color (eq $color')))
  (type $perms' (flags "read" "write" "exec"))
  (import "perms" (type $perms (eq $perms')))
  (type $many' (flags
    "f0" "f1" "f2" "f3" "f4" "f5" "f6" "f7" "f8" "f9" "f10" "f11" "f12" "f13" "f14" "f15"
    "f16" "f17" "f18" "f19" "f20" "f21" "f22" "f23" "f24" "f25" "f26" "f27" "f28" "f29"
    "f30" "last-flag"))
  (import "many-flags" (type $many (eq $many')))
  (type $person' (record
    (field "first-name" string) (field "last-name" string) (field "age-in-years" u8)
    (field "tags" (list string)) (field "home" (option $point))))
  (import "person" (type $person (eq $person')))
  (type $shape' (variant
    (case "circle" float64) (case "rect" $point) (case "maybe" (option u8)) (case "none")
    (case "blob" (result (list u8) (error string))) (case "empty-case")))
  (import "shape" (type $shape (eq $shape')))
  (type $node' (record
    (field "label" string)
    (field "kids" (list (option (tuple u32 $shape))))
    (field "meta" (result (option (option $color)) (error $perms)))
    (field "grid" (list (list $many)))
    (field "who" (option (option (option $person))))))
  (import "node" (type $node (eq $node')))
  (import "thing" (type $thing (sub resource)))

  (type $prims-t (func
    (param "b" bool) (param "a" s8) (param "c" u8) (param "d" s16) (param "e" u16)
    (param "f" s32) (param "g" u32) (param "h" s64) (param "i" u64)
    (param "j" float32) (param "k" float64) (param "l" char) (param "m" string)
    (result u32)))
  (type $floats-t (func
    (param "x" float32) (param "y" float64) (param "xs" (list float32))
    (param "ys" (list float64)) (result float32)))
  (type $take-point-t (func (param "p" $point) (param "q" $point) (result float64)))
  (type $take-person-t (func
    (param "who" $person) (param "all-people" (list $person)) (result char)))
  (type $take-shape-t (func
    (param "s" $shape) (param "c" $color) (param "f" $perms) (param "many" $many)
    (param "shapes" (list $shape)) (result $color)))
  (type $containers-t (func
    (param "bytes" (list u8)) (param "names" (list string)) (param "pair" (tuple u8 string))
    (param "maybe" (option u32)) (param "nested" (option (option u8)))
    (param "res" (result s32 (error string))) (param "unit" (result))
    (param "err-only" (result (error string))) (param "grid" (list (list u32)))
    (param "ok-only" (result u8)) (param "triple" (option (option (option u8))))
    (param "maybe-point" (option $point)) (result $many)))
  (type $take-node-t (func (param "n" $node) (param "nodes" (list $node)) (result s64)))
  (type $maps-t (func
    (param "by-name" (map string u32)) (param "by-id" (map u32 string))
    (param "rgb" (list u8 3)) (param "deep" (map string (list (option $point))))
    (param "points" (list $point 2)) (result bool)))
  (type $take-thing-t (func
    (param "t" (own $thing)) (param "b" (borrow $thing)) (param "n" u32) (result (own $thing))))
  (type $no-args-t (func (result $perms)))

  (import "prims" (func $prims (type $prims-t)))
  (import "floats" (func $floats (type $floats-t)))
  (import "take-point" (func $take-point (type $take-point-t)))
  (import "take-person" (func $take-person (type $take-person-t)))
  (import "take-shape" (func $take-shape (type $take-shape-t)))
  (import "containers" (func $containers (type $containers-t)))
  (import "take-node" (func $take-node (type $take-node-t)))
  (import "maps" (func $maps (type $maps-t)))
  (import "take-thing" (func $take-thing (type $take-thing-t)))
  (import "no-args" (func $no-args (type $no-args-t)))

  (core module $m
    (memory (export "mem") 1)
    (func (export "realloc") (param i32 i32 i32 i32) (result i32) unreachable)
    (func (export "ret-ptr") (result i32) unreachable))
  (core instance $i (instantiate $m))
  (alias core export $i "mem" (core memory $mem))
  (alias core export $i "realloc" (core func $realloc))

  (core func $prims-low (canon lower (func $prims) (memory $mem) (realloc $realloc)))
  (func (export "prims") (type $prims-t)
    (canon lift (core func $prims-low) (memory $mem) (realloc $realloc)))
  (core func $floats-low (canon lower (func $floats) (memory $mem) (realloc $realloc)))
  (func (export "floats") (type $floats-t)
    (canon lift (core func $floats-low) (memory $mem) (realloc $realloc)))
  (core func $take-point-low (canon lower (func $take-point) (memory $mem) (realloc $realloc)))
  (func (export "take-point") (type $take-point-t)
    (canon lift (core func $take-point-low) (memory $mem) (realloc $realloc)))
  (core func $take-person-low (canon lower (func $take-person) (memory $mem) (realloc $realloc)))
  (func (export "take-person") (type $take-person-t)
    (canon lift (core func $take-person-low) (memory $mem) (realloc $realloc)))
  (core func $take-shape-low (canon lower (func $take-shape) (memory $mem) (realloc $realloc)))
  (func (export "take-shape") (type $take-shape-t)
    (canon lift (core func $take-shape-low) (memory $mem) (realloc $realloc)))
  (core func $containers-low (canon lower (func $containers) (memory $mem) (realloc $realloc)))
  (func (export "containers") (type $containers-t)
    (canon lift (core func $containers-low) (memory $mem) (realloc $realloc)))
  (core func $take-node-low (canon lower (func $take-node) (memory $mem) (realloc $realloc)))
  (func (export "take-node") (type $take-node-t)
    (canon lift (core func $take-node-low) (memory $mem) (realloc $realloc)))
  (core func $maps-low (canon lower (func $maps) (memory $mem) (realloc $realloc)))
  (func (export "maps") (type $maps-t)
    (canon lift (core func $maps-low) (memory $mem) (realloc $realloc)))
  (core func $take-thing-low (canon lower (func $take-thing) (memory $mem) (realloc $realloc)))
  (func (export "take-thing") (type $take-thing-t)
    (canon lift (core func $take-thing-low) (memory $mem) (realloc $realloc)))
  (core func $no-args-low (canon lower (func $no-args) (memory $mem) (realloc $realloc)))
  (func (export "no-args") (type $no-args-t)
    (canon lift (core func $no-args-low) (memory $mem) (realloc $realloc)))

  (func (export "give-string") (result string)
    (canon lift (core func $i "ret-ptr") (memory $mem)))
  (func (export "give-floats") (result (list float64))
    (canon lift (core func $i "ret-ptr") (memory $mem)))
  (func (export "give-point") (result $point)
    (canon lift (core func $i "ret-ptr") (memory $mem)))
  (func (export "give-person") (result $person)
    (canon lift (core func $i "ret-ptr") (memory $mem)))
  (func (export "give-shape") (result $shape)
    (canon lift (core func $i "ret-ptr") (memory $mem)))
  (func (export "give-tuple")
    (result (tuple (option u32) (result s32 (error string)) (list (option $color))))
    (canon lift (core func $i "ret-ptr") (memory $mem)))
  (func (export "give-node") (result (result $node (error string)))
    (canon lift (core func $i "ret-ptr") (memory $mem)))
  (func (export "give-map") (result (map u32 string))
    (canon lift (core func $i "ret-ptr") (memory $mem)))
)
"#;

/// The exported functions of [`JSON_WIT_WAT`] and every type they mention (parameters
/// and results), labelled `function(param)` and `function -> result`.
pub struct JsonWitFixture {
    /// The exports, as `wharf_engine::exports::component_exports` lists them.
    pub funcs: Vec<ExportFunc>,
    /// Every parameter and result type, with a label for messages.
    pub types: Vec<(String, Type)>,
    /// Every name a JSON value may use for these types (fields in three spellings,
    /// cases, enum and flag names, parameters, and the mapping's own keys).
    pub names: Vec<String>,
}

static FIXTURE: OnceLock<JsonWitFixture> = OnceLock::new();

/// The fixture, built on first use (an engine with maps and fixed-length lists on, the
/// component compiled once).
pub fn json_wit_fixture() -> &'static JsonWitFixture {
    FIXTURE.get_or_init(|| {
        let mut config = Config::new();
        config.wasm_component_model_map(true);
        config.wasm_component_model_fixed_length_lists(true);
        let engine = Engine::new(&config).expect("the fuzz engine's configuration is valid");
        let component =
            Component::new(&engine, JSON_WIT_WAT).expect("the json_wit component compiles");
        let funcs = component_exports(&engine, &component);
        assert_eq!(funcs.len(), 18, "exports: {funcs:?}");
        let mut types = Vec::new();
        for f in &funcs {
            for (p, t) in &f.params {
                types.push((format!("{}({p})", f.name), t.clone()));
            }
            for t in &f.results {
                types.push((format!("{} -> result", f.name), t.clone()));
            }
        }
        let mut names: Vec<String> = [
            "tag",
            "value",
            "ok",
            "err",
            "some",
            "NaN",
            "Infinity",
            "-Infinity",
            "<resource>",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for f in &funcs {
            for (p, t) in &f.params {
                push_spellings(&mut names, p);
                collect_names(t, &mut names);
            }
            for t in &f.results {
                collect_names(t, &mut names);
            }
        }
        names.sort();
        names.dedup();
        JsonWitFixture {
            funcs,
            types,
            names,
        }
    })
}

fn snake(name: &str) -> String {
    name.replace('-', "_")
}

fn camel(name: &str) -> String {
    let mut out = String::new();
    for (i, word) in name.split('-').enumerate() {
        let mut chars = word.chars();
        match chars.next() {
            Some(first) if i > 0 => {
                out.extend(first.to_uppercase());
                out.push_str(chars.as_str());
            }
            _ => out.push_str(word),
        }
    }
    out
}

fn push_spellings(names: &mut Vec<String>, name: &str) {
    names.push(name.to_string());
    names.push(snake(name));
    names.push(camel(name));
}

fn collect_names(ty: &Type, names: &mut Vec<String>) {
    match ty {
        Type::List(l) => collect_names(&l.ty(), names),
        Type::FixedLengthList(l) => collect_names(&l.ty(), names),
        Type::Map(m) => {
            collect_names(&m.key(), names);
            collect_names(&m.value(), names);
        }
        Type::Record(r) => {
            for f in r.fields() {
                push_spellings(names, f.name);
                collect_names(&f.ty, names);
            }
        }
        Type::Tuple(t) => t.types().for_each(|t| collect_names(&t, names)),
        Type::Variant(v) => {
            for c in v.cases() {
                names.push(c.name.to_string());
                if let Some(t) = &c.ty {
                    collect_names(t, names);
                }
            }
        }
        Type::Enum(e) => names.extend(e.names().map(str::to_string)),
        Type::Flags(f) => names.extend(f.names().map(str::to_string)),
        Type::Option(o) => collect_names(&o.ty(), names),
        Type::Result(r) => {
            if let Some(t) = r.ok() {
                collect_names(&t, names);
            }
            if let Some(t) = r.err() {
                collect_names(&t, names);
            }
        }
        _ => {}
    }
}

/// `json_to_args`, `json_to_val` and `val_to_json` on arbitrary input: no panic; every
/// accepted value fits its type and survives `val_to_json` then `json_to_val` unchanged
/// (wasmtime's `Val` equality treats NaN as equal to NaN and tells -0 from +0, so the
/// only documented lossy mapping, NaN payloads, is covered); every error names a path
/// under the one it was given.
///
/// The input is tried whole as JSON against every function and type. Then its first
/// byte picks one function or type, and the rest is JSON for it, or, when it is not
/// JSON, drives a generator that builds a value of (mostly) that type, so that
/// mutations reach deep into well-formed values.
pub fn json_wit(data: &[u8]) {
    let fx = json_wit_fixture();
    if let Ok(v) = serde_json::from_slice::<Value>(data) {
        json_wit_value(&v);
    }
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let pick = usize::from(sel) % (fx.funcs.len() + fx.types.len());
    let parsed = serde_json::from_slice::<Value>(rest).ok();
    let mut src = Source::new(rest);
    match fx.funcs.get(pick) {
        Some(f) => {
            let v = parsed.unwrap_or_else(|| gen_args(&f.params, &mut src, &fx.names));
            check_args(&f.params, &v);
        }
        None => {
            let (label, ty) = &fx.types[pick - fx.funcs.len()];
            let v = parsed.unwrap_or_else(|| gen_value(ty, &mut src, &fx.names));
            check_val(ty, &v, label);
        }
    }
}

/// Runs the `json_wit` checks of one JSON value against every function's parameter list
/// and every type of the fixture.
pub fn json_wit_value(v: &Value) {
    let fx = json_wit_fixture();
    for f in &fx.funcs {
        check_args(&f.params, v);
    }
    for (label, ty) in &fx.types {
        check_val(ty, v, label);
    }
}

/// Checks `json_to_val(ty, v, path)`: an accepted value fits `ty` and round-trips; an
/// error is well-formed.
fn check_val(ty: &Type, v: &Value, path: &str) {
    match json_to_val(ty, v, path) {
        Ok(val) => {
            if let Err(why) = conforms(ty, &val) {
                panic!("json_to_val({path}) accepted {v} as {val:?}, which does not fit: {why}");
            }
            round_trip(ty, &val, path);
        }
        Err(e) => check_error(&e, &[path]),
    }
}

/// `val_to_json` then `json_to_val` gives `val` back, and `val_to_json` of that gives
/// the same JSON.
fn round_trip(ty: &Type, val: &Val, path: &str) {
    let json = val_to_json(val);
    match json_to_val(ty, &json, path) {
        Ok(again) => {
            assert!(
                again == *val,
                "{path}: round trip changed the value: {val:?} -> {json} -> {again:?}"
            );
            assert_eq!(
                val_to_json(&again),
                json,
                "{path}: val_to_json is not stable"
            );
        }
        Err(e) => panic!("{path}: val_to_json({val:?}) = {json} is not accepted back: {e}"),
    }
}

/// Checks `json_to_args(params, v)`: accepted arguments fit, agree with `json_to_val` on
/// each element, and come back the same from their array and object forms.
fn check_args(params: &[(String, Type)], v: &Value) {
    match json_to_args(params, v) {
        Ok(vals) => {
            assert_eq!(vals.len(), params.len(), "arity of {v}");
            for (i, ((name, ty), val)) in params.iter().zip(&vals).enumerate() {
                if let Err(why) = conforms(ty, val) {
                    panic!("json_to_args accepted {v}: argument {i} ({name}) {val:?}: {why}");
                }
                round_trip(ty, val, name);
            }
            if let Value::Array(items) = v {
                for (i, ((_, ty), item)) in params.iter().zip(items).enumerate() {
                    let path = format!("args[{i}]");
                    assert_eq!(
                        json_to_val(ty, item, &path).as_ref(),
                        Ok(&vals[i]),
                        "json_to_args and json_to_val disagree on {item}"
                    );
                }
            }
            let array = Value::Array(vals.iter().map(val_to_json).collect());
            assert_eq!(
                json_to_args(params, &array),
                Ok(vals.clone()),
                "array form {array}"
            );
            let object = Value::Object(
                params
                    .iter()
                    .zip(&vals)
                    .map(|((name, _), val)| (name.clone(), val_to_json(val)))
                    .collect(),
            );
            assert_eq!(
                json_to_args(params, &object),
                Ok(vals),
                "object form {object}"
            );
        }
        Err(e) => {
            let mut roots: Vec<&str> = params.iter().map(|(n, _)| n.as_str()).collect();
            roots.push("args");
            check_error(&e, &roots);
        }
    }
}

/// An error says where (a path under one of `roots`), what was expected and what was
/// found, and its message starts with the path.
fn check_error(e: &JsonTypeError, roots: &[&str]) {
    let msg = e.to_string();
    assert!(!e.path.is_empty(), "error without a path: {msg}");
    assert!(
        roots.iter().any(|r| e.path.starts_with(r)),
        "error path `{}` is under none of {roots:?}: {msg}",
        e.path
    );
    assert!(
        msg.starts_with(&format!("{}: expected ", e.path)),
        "message does not name the path: {msg}"
    );
    assert!(
        !e.expected.is_empty() && !e.found.is_empty(),
        "empty part: {msg}"
    );
}

/// Whether `val` is a value of type `ty`, as wasmtime will check when it is passed to a
/// call: the right kind everywhere, records' fields by name in order, existing cases,
/// enum and flag names (flags once each, in declaration order), payloads present
/// exactly when the type has one, lists of a fixed length at that length.
pub fn conforms(ty: &Type, val: &Val) -> Result<(), String> {
    let all = |t: &Type, items: &[Val]| items.iter().try_for_each(|v| conforms(t, v));
    let side = |t: Option<Type>, v: &Option<Box<Val>>, what: &str| match (t, v) {
        (Some(t), Some(v)) => conforms(&t, v),
        (None, None) => Ok(()),
        (t, v) => Err(format!("{what}: type {t:?}, payload {v:?}")),
    };
    match (ty, val) {
        (Type::Bool, Val::Bool(_))
        | (Type::S8, Val::S8(_))
        | (Type::U8, Val::U8(_))
        | (Type::S16, Val::S16(_))
        | (Type::U16, Val::U16(_))
        | (Type::S32, Val::S32(_))
        | (Type::U32, Val::U32(_))
        | (Type::S64, Val::S64(_))
        | (Type::U64, Val::U64(_))
        | (Type::Float32, Val::Float32(_))
        | (Type::Float64, Val::Float64(_))
        | (Type::Char, Val::Char(_))
        | (Type::String, Val::String(_)) => Ok(()),
        (Type::List(l), Val::List(items)) => all(&l.ty(), items),
        (Type::FixedLengthList(l), Val::FixedLengthList(items)) => {
            if u32::try_from(items.len()).ok() != Some(l.len()) {
                return Err(format!("{} elements for length {}", items.len(), l.len()));
            }
            all(&l.ty(), items)
        }
        (Type::Map(m), Val::Map(pairs)) => pairs.iter().try_for_each(|(k, v)| {
            conforms(&m.key(), k)?;
            conforms(&m.value(), v)
        }),
        (Type::Tuple(t), Val::Tuple(items)) => {
            if t.types().len() != items.len() {
                return Err(format!(
                    "{} elements for a tuple of {}",
                    items.len(),
                    t.types().len()
                ));
            }
            t.types().zip(items).try_for_each(|(t, v)| conforms(&t, v))
        }
        (Type::Record(r), Val::Record(fields)) => {
            if r.fields().len() != fields.len() {
                return Err(format!("{} fields for {}", fields.len(), r.fields().len()));
            }
            r.fields().zip(fields).try_for_each(|(f, (name, v))| {
                if f.name != name {
                    return Err(format!("field `{name}` where `{}` belongs", f.name));
                }
                conforms(&f.ty, v)
            })
        }
        (Type::Variant(t), Val::Variant(name, payload)) => {
            let Some(case) = t.cases().find(|c| c.name == name) else {
                return Err(format!("no case `{name}`"));
            };
            side(case.ty, payload, name)
        }
        (Type::Enum(e), Val::Enum(name)) if e.names().any(|n| n == name) => Ok(()),
        (Type::Flags(f), Val::Flags(set)) => {
            let mut declared = f.names();
            for name in set {
                // In declaration order, each once: each name must come later in the
                // declared list than the one before.
                if !declared.any(|d| d == name) {
                    return Err(format!("flags {set:?} not a declaration-ordered subset"));
                }
            }
            Ok(())
        }
        (Type::Option(o), Val::Option(v)) => match v {
            Some(v) => conforms(&o.ty(), v),
            None => Ok(()),
        },
        (Type::Result(r), Val::Result(v)) => match v {
            Ok(v) => side(r.ok(), v, "ok"),
            Err(v) => side(r.err(), v, "err"),
        },
        _ => Err(format!("{val:?} is not a {ty:?}")),
    }
}

/// A cursor over fuzz bytes; past the end it reads zeros, which the generators map to
/// the smallest well-formed choice, so generation always ends.
struct Source<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Source<'a> {
    fn new(data: &'a [u8]) -> Self {
        Source { data, pos: 0 }
    }

    fn byte(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    fn below(&mut self, n: usize) -> usize {
        usize::from(self.byte()) % n.max(1)
    }

    fn u64(&mut self) -> u64 {
        (0..8).fold(0u64, |acc, _| acc << 8 | u64::from(self.byte()))
    }

    fn text(&mut self) -> String {
        let n = self.below(24);
        let start = self.pos.min(self.data.len());
        let end = (start + n).min(self.data.len());
        self.pos += n;
        String::from_utf8_lossy(&self.data[start..end]).into_owned()
    }
}

/// Integers at and just past every edge, in JSON, plus floats that are integral or not.
fn edge_number(src: &mut Source) -> Value {
    const INTS: [i64; 16] = [
        0,
        1,
        -1,
        127,
        128,
        -128,
        -129,
        255,
        256,
        32767,
        -32769,
        65536,
        2147483648,
        -2147483649,
        4294967296,
        i64::MIN,
    ];
    const FLOATS: [f64; 14] = [
        3.0,
        0.5,
        -0.0,
        0.1,
        1e300,
        3.4028235e38,
        3.4028236e38,
        1e-45,
        1.17549435e-38,
        9007199254740992.0,
        9007199254740993.0,
        18014398509481984.0,
        -9007199254740992.0,
        f64::MAX,
    ];
    match src.below(5) {
        0 => Value::from(INTS[src.below(INTS.len())]),
        1 => Value::from(u64::MAX - src.below(2) as u64),
        2 => Number::from_f64(FLOATS[src.below(FLOATS.len())]).map_or(Value::Null, Value::Number),
        3 => Number::from_f64(f64::from_bits(src.u64())).map_or(Value::Null, Value::Number),
        _ => Value::from(src.u64() as i64),
    }
}

/// A value of any shape, mostly of the wrong kind for where it is put.
fn wild(src: &mut Source, names: &[String]) -> Value {
    match src.below(9) {
        0 => Value::Null,
        1 => Value::Bool(src.byte() & 1 == 1),
        2 => edge_number(src),
        3 => Value::String(names[src.below(names.len())].clone()),
        4 => Value::String(src.text()),
        5 => Value::Array(Vec::new()),
        6 => Value::Object(Map::new()),
        7 => {
            let mut m = Map::new();
            m.insert(names[src.below(names.len())].clone(), Value::Null);
            Value::Object(m)
        }
        _ => Value::Array(vec![Value::Null]),
    }
}

/// An integer of the given range: in range, at an edge, or as a string or float.
fn gen_int(src: &mut Source, min: i128, max: i128, strings: bool) -> Value {
    match src.below(8) {
        0 | 1 => Value::from(0),
        2 => int_value(min),
        3 => int_value(max),
        4 => edge_number(src),
        5 if strings => {
            const TEXT: [&str; 8] = [
                "18446744073709551615",
                "18446744073709551616",
                "-9223372036854775808",
                "-9223372036854775809",
                "+5",
                " 5",
                "1e3",
                "",
            ];
            Value::String(TEXT[src.below(TEXT.len())].to_string())
        }
        6 => Value::from(f64::from(src.byte())),
        _ => {
            let span = max - min + 1;
            int_value(min + i128::from(src.u64()) % span)
        }
    }
}

fn int_value(i: i128) -> Value {
    if let Ok(i) = i64::try_from(i) {
        Value::from(i)
    } else if let Ok(u) = u64::try_from(i) {
        Value::from(u)
    } else {
        Value::Null
    }
}

fn gen_float(src: &mut Source) -> Value {
    match src.below(6) {
        0 => Value::from(1.5),
        1 => Value::String(["NaN", "Infinity", "-Infinity", "nan", "1.5"][src.below(5)].into()),
        2 | 3 => edge_number(src),
        4 => Number::from_f64(f64::from(f32::from_bits(src.u64() as u32)))
            .map_or(Value::Null, Value::Number),
        _ => Value::from(i64::from(src.byte() as i8)),
    }
}

/// Spells a WIT name in kebab-case, snake_case or camelCase.
fn spell(name: &str, src: &mut Source) -> String {
    match src.below(4) {
        0 | 1 => name.to_string(),
        2 => snake(name),
        _ => camel(name),
    }
}

/// Builds JSON for `ty` from fuzz bytes: well-formed most of the time, with the wrong
/// kind of value, a missing or extra key, a duplicate flag, a wrong length, now and then.
fn gen_value(ty: &Type, src: &mut Source, names: &[String]) -> Value {
    if src.byte() >= 0xf0 {
        return wild(src, names);
    }
    match ty {
        Type::Bool => Value::Bool(src.byte() & 1 == 1),
        Type::S8 => gen_int(src, i8::MIN.into(), i8::MAX.into(), false),
        Type::U8 => gen_int(src, 0, u8::MAX.into(), false),
        Type::S16 => gen_int(src, i16::MIN.into(), i16::MAX.into(), false),
        Type::U16 => gen_int(src, 0, u16::MAX.into(), false),
        Type::S32 => gen_int(src, i32::MIN.into(), i32::MAX.into(), false),
        Type::U32 => gen_int(src, 0, u32::MAX.into(), false),
        Type::S64 => gen_int(src, i64::MIN.into(), i64::MAX.into(), true),
        Type::U64 => gen_int(src, 0, u64::MAX.into(), true),
        Type::Float32 | Type::Float64 => gen_float(src),
        Type::Char => match src.below(4) {
            0 => Value::String("x".into()),
            1 => Value::String(
                char::from_u32((src.u64() % 0x11_0000) as u32)
                    .unwrap_or('\u{fffd}')
                    .to_string(),
            ),
            2 => Value::String(["", "ab", "🦀", "é", "\u{0}", "e\u{301}"][src.below(6)].into()),
            _ => Value::String(src.text()),
        },
        Type::String => match src.below(3) {
            0 => Value::String(String::new()),
            1 => Value::String(names[src.below(names.len())].clone()),
            _ => Value::String(src.text()),
        },
        Type::List(l) => {
            let n = src.below(5);
            Value::Array((0..n).map(|_| gen_value(&l.ty(), src, names)).collect())
        }
        Type::FixedLengthList(l) => {
            let len = l.len() as usize;
            let n = match src.below(8) {
                0 => len + 1,
                1 => len.saturating_sub(1),
                _ => len,
            };
            Value::Array((0..n).map(|_| gen_value(&l.ty(), src, names)).collect())
        }
        Type::Map(m) => {
            let n = src.below(4);
            if m.key() == Type::String && src.below(2) == 0 {
                let mut obj = Map::new();
                for _ in 0..n {
                    let key = match gen_value(&m.key(), src, names) {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    obj.insert(key, gen_value(&m.value(), src, names));
                }
                Value::Object(obj)
            } else {
                Value::Array(
                    (0..n)
                        .map(|_| {
                            let mut pair = vec![
                                gen_value(&m.key(), src, names),
                                gen_value(&m.value(), src, names),
                            ];
                            if src.byte() >= 0xf8 {
                                pair.pop();
                            }
                            Value::Array(pair)
                        })
                        .collect(),
                )
            }
        }
        Type::Tuple(t) => {
            let mut items: Vec<Value> = t.types().map(|t| gen_value(&t, src, names)).collect();
            if src.byte() >= 0xf8 {
                items.push(Value::Null);
            }
            Value::Array(items)
        }
        Type::Record(r) => {
            let mut obj = Map::new();
            for f in r.fields() {
                match src.byte() {
                    0xfc.. => {}
                    0xf8.. => {
                        obj.insert(snake(f.name), Value::Null);
                        obj.insert(camel(f.name), gen_value(&f.ty, src, names));
                    }
                    _ => {
                        let key = spell(f.name, src);
                        obj.insert(key, gen_value(&f.ty, src, names));
                    }
                }
            }
            if src.byte() >= 0xf8 {
                obj.insert(names[src.below(names.len())].clone(), Value::Null);
            }
            Value::Object(obj)
        }
        Type::Variant(v) => {
            let cases: Vec<_> = v.cases().collect();
            let case = &cases[src.below(cases.len())];
            let mut obj = Map::new();
            obj.insert("tag".into(), Value::String(case.name.to_string()));
            match &case.ty {
                Some(t) => {
                    if src.byte() < 0xf8 {
                        obj.insert("value".into(), gen_value(t, src, names));
                    }
                }
                None => match src.below(4) {
                    0 => return Value::String(case.name.to_string()),
                    1 => {
                        obj.insert("value".into(), Value::Null);
                    }
                    2 if src.byte() >= 0xf0 => {
                        obj.insert("value".into(), wild(src, names));
                    }
                    _ => {}
                },
            }
            Value::Object(obj)
        }
        Type::Enum(e) => {
            let all: Vec<&str> = e.names().collect();
            Value::String(all[src.below(all.len())].to_string())
        }
        Type::Flags(f) => {
            let all: Vec<&str> = f.names().collect();
            let mut set: Vec<Value> = all
                .iter()
                .filter(|_| src.byte() & 1 == 1)
                .map(|n| Value::String(n.to_string()))
                .collect();
            if !set.is_empty() {
                let k = src.below(set.len());
                set.rotate_left(k);
                if src.byte() >= 0xf8 {
                    set.push(set[0].clone());
                }
            }
            Value::Array(set)
        }
        Type::Option(o) => {
            if src.below(4) == 0 {
                return Value::Null;
            }
            let inner = gen_value(&o.ty(), src, names);
            if matches!(o.ty(), Type::Option(_)) && src.byte() < 0xf8 {
                let mut obj = Map::new();
                obj.insert("some".into(), inner);
                Value::Object(obj)
            } else {
                inner
            }
        }
        Type::Result(r) => {
            let (key, side) = if src.below(2) == 0 {
                ("ok", r.ok())
            } else {
                ("err", r.err())
            };
            let value = match side {
                Some(t) => gen_value(&t, src, names),
                None if src.byte() >= 0xf0 => wild(src, names),
                None => Value::Null,
            };
            let mut obj = Map::new();
            obj.insert(key.into(), value);
            if src.byte() >= 0xf8 {
                obj.insert(if key == "ok" { "err" } else { "ok" }.into(), Value::Null);
            }
            Value::Object(obj)
        }
        _ => wild(src, names),
    }
}

/// JSON arguments for `params`: an array in order, or an object keyed by the names in
/// any of their spellings; now and then one too few or too many.
fn gen_args(params: &[(String, Type)], src: &mut Source, names: &[String]) -> Value {
    let mut values: Vec<(String, Value)> = params
        .iter()
        .map(|(n, t)| (spell(n, src), gen_value(t, src, names)))
        .collect();
    match src.byte() {
        0xfc.. => {
            values.pop();
        }
        0xf8.. => values.push((names[src.below(names.len())].clone(), Value::Null)),
        _ => {}
    }
    if src.below(2) == 0 {
        Value::Array(values.into_iter().map(|(_, v)| v).collect())
    } else {
        Value::Object(values.into_iter().collect())
    }
}

/// Nesting as deep as `depth`, in the innermost position of each JSON container kind
/// the mapping looks into: arrays, `{"some": …}`, `{"ok": …}`, `{"tag": …, "value": …}`.
pub fn deep_json(depth: usize, open: &str, close: &str, inner: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(depth * (open.len() + close.len()) + inner.len());
    for _ in 0..depth {
        out.extend_from_slice(open.as_bytes());
    }
    out.extend_from_slice(inner.as_bytes());
    for _ in 0..depth {
        out.extend_from_slice(close.as_bytes());
    }
    out
}

/// Seeds for `json_wit`: well-formed arguments for every export (array and object
/// forms, other spellings), values at the edges, wrong kinds and ranges, and nesting
/// 10,000 deep (which serde_json's recursion limit refuses to parse).
pub fn json_wit_seeds() -> Vec<Vec<u8>> {
    let mut seeds: Vec<Vec<u8>> = [
        r#"[true, -128, 255, -32768, 65535, -2147483648, 4294967295, -9223372036854775808, 18446744073709551615, 0.1, -2.5e-300, "é", "hello"]"#,
        r#"{"b": false, "a": 127, "c": 0, "d": 32767, "e": 0, "f": 2147483647, "g": 0, "h": "-12", "i": "18446744073709551615", "j": "NaN", "k": "-Infinity", "l": "🦀", "m": ""}"#,
        r#"[256, -1, 18446744073709551616, 1e300, 3.5, "5", null, true, [], {}, "ab", "", 0]"#,
        r#"[3.4e38, 1e300, [0.1, "Infinity", -0.0], ["NaN", 5e-324]]"#,
        r#"[{"x": 1, "y": 2}, {"x": 3.0, "y": -4.5}]"#,
        r#"{"p": {"x": 1, "y": 2}, "q": {"x": 1}}"#,
        r#"[{"first-name": "Ada", "last_name": "L", "ageInYears": 36, "tags": ["a"], "home": {"x": 0, "y": 0}}, [{"firstName": "B", "last-name": "C", "age-in-years": 300, "tags": [], "home": null}]]"#,
        r#"[{"tag": "rect", "value": {"x": 1, "y": 2}}, "blue", ["exec", "read"], ["f0", "f31", "last-flag", "f7"], ["none", {"tag": "maybe", "value": null}, {"tag": "blob", "value": {"err": "e"}}, {"tag": "circle"}, {"tag": "empty-case", "value": null}]]"#,
        r#"{"s": {"tag": "blob", "value": {"ok": [1, 2, 256]}}, "c": "purple", "f": ["read", "read"], "many": ["f32"], "shapes": []}"#,
        r#"[[0, 1, 255], ["a", "b"], [1, "one"], 9, {"some": null}, {"ok": -5}, {"ok": null}, {"err": "x"}, [[1, 2], [], [3]], {"ok": 7}, {"some": {"some": 3}}, {"x": 1.5, "y": 2}, []]"#,
        r#"[[], [], [1], null, 1, {"ok": 1, "err": "x"}, {"ok": 1}, {"ok": null}, [[-1]], {"err": null}, {"some": 1}, null, [1]]"#,
        r#"[{"label": "root", "kids": [null, [7, {"tag": "none"}], [8, {"tag": "maybe", "value": 3}]], "meta": {"ok": {"some": "red"}}, "grid": [[["f1"], []]], "who": {"some": {"some": null}}}, []]"#,
        r#"[{"label": "x", "kids": [], "meta": {"err": ["write"]}, "grid": [], "who": {"some": {"some": {"first-name": "A", "last-name": "B", "age-in-years": 1, "tags": [], "home": null}}}}, [{"label": "y"}]]"#,
        r#"[[["a", 1], ["b", 2]], [[1, "one"], [1, "dup"]], [1, 2, 3], {"k": [null, {"x": 1, "y": 2}]}, [{"x": 0, "y": 0}, {"x": 1, "y": 1}]]"#,
        r#"[{"a": 1}, {"1": "one"}, [1, 2], [["k", [null]]], [{"x": 0, "y": 0}]]"#,
        r#"[1, null, 3]"#,
        r#"{"t": "<resource>", "b": 0, "n": 1}"#,
        r#"null"#,
        r#"[]"#,
        r#"{}"#,
        r#"{"all_people": [], "allPeople": [], "who": null}"#,
        r#"[1e999]"#,
        r#""\ud800""#,
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    // The same arguments behind a selector byte (one per export, then single types).
    let picked: Vec<Vec<u8>> = seeds
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut v = vec![i as u8];
            v.extend_from_slice(s);
            v
        })
        .collect();
    seeds.extend(picked);
    // Generated values: a selector and a few bytes, for every function and type.
    for sel in 0..=255u8 {
        seeds.push(vec![
            sel, 0x10, 0x21, 0x32, 0x43, 0x54, 0x65, 0x76, 0x87, 0x98,
        ]);
    }
    for (open, close, inner) in [
        ("[", "]", "1"),
        ("{\"some\":", "}", "null"),
        ("{\"ok\":", "}", "1"),
        ("{\"tag\":\"rect\",\"value\":", "}", "{}"),
        ("{\"x\":", "}", "[]"),
    ] {
        let deep = deep_json(10_000, open, close, inner);
        let mut picked = vec![7u8];
        picked.extend_from_slice(&deep);
        seeds.push(deep);
        seeds.push(picked);
    }
    seeds
}
