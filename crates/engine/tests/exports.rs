//! Export listing, lookup by name, and WIT type names, on components written in WAT.

use wharf_engine::exports::{
    ExportLookupError, component_exports, export_index, find_export, wit_type_name,
};
use wharf_engine::wasmtime::component::types::ComponentItem;
use wharf_engine::wasmtime::component::{Component, Linker, Type, Val};
use wharf_engine::wasmtime::{Engine, Store};

/// `add` at the top level, `area` and `dup` in `a:b/x@1.0.0`, `dup` again in `a:b/y`,
/// and `mid` taking and returning a record.
const EXPORTS_WAT: &str = r#"
(component
  (core module $m
    (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add)
    (func (export "mul") (param i32 i32) (result i32) local.get 0 local.get 1 i32.mul)
    (func (export "dup") (result i32) i32.const 1)
    (func (export "mid") (param f64 f64) (result f64) local.get 0 local.get 1 f64.add))
  (core instance $i (instantiate $m))
  (type $point' (record (field "x" float64) (field "y" float64)))
  (export $point "point" (type $point'))
  (func $add (param "a" s32) (param "b" s32) (result s32) (canon lift (core func $i "add")))
  (func $mul (param "w" s32) (param "h" s32) (result s32) (canon lift (core func $i "mul")))
  (func $dup (result s32) (canon lift (core func $i "dup")))
  (func $mid (param "p" $point) (result f64) (canon lift (core func $i "mid")))
  (export "add" (func $add))
  (export "mid" (func $mid))
  (instance $x (export "area" (func $mul)) (export "dup" (func $dup)))
  (export "a:b/x@1.0.0" (instance $x))
  (instance $y (export "dup" (func $dup)))
  (export "a:b/y" (instance $y))
)
"#;

fn exports_component() -> (Engine, Component) {
    let engine = Engine::default();
    let c = Component::new(&engine, EXPORTS_WAT).expect("test component compiles");
    (engine, c)
}

#[test]
fn lists_every_function_with_its_signature() {
    let (engine, c) = exports_component();
    let sigs: Vec<String> = component_exports(&engine, &c)
        .into_iter()
        .map(|e| e.signature)
        .collect();
    assert_eq!(
        sigs,
        [
            "add(a: s32, b: s32) -> s32",
            "mid(p: record { x: f64, y: f64 }) -> f64",
            "a:b/x@1.0.0#area(w: s32, h: s32) -> s32",
            "a:b/x@1.0.0#dup() -> s32",
            "a:b/y#dup() -> s32",
        ]
    );
}

#[test]
fn finds_exact_qualified_and_unique_bare_names() {
    let (engine, c) = exports_component();
    let exports = component_exports(&engine, &c);
    let name = |n: &str| find_export(&exports, n).map(|e| e.name.clone());
    assert_eq!(name("add").as_deref(), Ok("add"));
    assert_eq!(name("a:b/x@1.0.0#dup").as_deref(), Ok("a:b/x@1.0.0#dup"));
    assert_eq!(name("area").as_deref(), Ok("a:b/x@1.0.0#area"));

    let err = find_export(&exports, "dup").expect_err("two interfaces export dup");
    assert_eq!(
        err,
        ExportLookupError::Ambiguous {
            name: "dup".into(),
            candidates: vec!["a:b/x@1.0.0#dup".into(), "a:b/y#dup".into()],
        }
    );
    assert!(err.to_string().contains("INTERFACE#dup"), "{err}");

    let err = find_export(&exports, "nope").expect_err("no such export");
    assert!(matches!(err, ExportLookupError::NoSuch { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("no function `nope`"), "{msg}");
    assert!(msg.contains("add(a: s32, b: s32) -> s32"), "{msg}");
    assert!(msg.contains("a:b/y#dup"), "{msg}");

    let err = find_export(&exports, "a:b/x@1.0.0#nope").expect_err("no such function");
    assert!(
        err.to_string()
            .contains("interface `a:b/x@1.0.0` exports no function `nope`"),
        "{err}"
    );
    let err = find_export(&exports, "missing:iface/x#f").expect_err("no such interface");
    assert!(
        matches!(err, ExportLookupError::NoInterface { ref interface, .. } if interface == "missing:iface/x"),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("no interface `missing:iface/x`"),
        "{err}"
    );
    // A bare name is not matched against a partial interface name.
    assert!(find_export(&exports, "x@1.0.0#area").is_err());
    assert!(find_export(&[], "add").is_err_and(|e| e.to_string().contains("no functions")));
}

#[test]
fn export_index_resolves_to_a_callable_function() {
    let (engine, c) = exports_component();
    let exports = component_exports(&engine, &c);
    let mut store = Store::new(&engine, ());
    let instance = Linker::<()>::new(&engine)
        .instantiate(&mut store, &c)
        .expect("instantiates");
    for (name, args, expected) in [
        ("add", vec![Val::S32(3), Val::S32(4)], Val::S32(7)),
        ("area", vec![Val::S32(5), Val::S32(6)], Val::S32(30)),
        ("a:b/y#dup", vec![], Val::S32(1)),
    ] {
        let export = find_export(&exports, name).expect("found");
        let idx = export_index(&c, export).expect("index");
        let func = instance.get_func(&mut store, idx).expect("a function");
        let mut results = vec![Val::Bool(false)];
        func.call(&mut store, &args, &mut results).expect("call");
        assert_eq!(results, [expected], "{name}");
    }
}

/// A component that only imports functions: it exists for the parameter types.
const TYPES_WAT: &str = r#"
(component
  (type $point' (record (field "x" float64) (field "y" float64)))
  (import "point" (type $point (eq $point')))
  (type $shape' (variant (case "circle" float64) (case "rect" $point) (case "maybe" (option u8)) (case "none")))
  (import "shape" (type $shape (eq $shape')))
  (type $color' (enum "red" "green" "blue"))
  (import "color" (type $color (eq $color')))
  (type $perms' (flags "read" "write" "exec"))
  (import "perms" (type $perms (eq $perms')))
  (import "thing" (type $thing (sub resource)))
  (import "all" (func
    (param "bytes" (list u8)) (param "names" (list string)) (param "pair" (tuple u8 string))
    (param "maybe" (option string)) (param "res" (result u32 (error string)))
    (param "unit" (result)) (param "err-only" (result (error string)))
    (param "ok-only" (result u8)) (param "points" (list $point)) (param "s" $shape)
    (param "c" $color) (param "f" $perms) (param "t" (own $thing)) (param "b" (borrow $thing))
    (param "ch" char) (param "big" u64) (param "x" float32)))
)
"#;

#[test]
fn wit_type_names_spell_types_as_wit_does() {
    let engine = Engine::default();
    let c = Component::new(&engine, TYPES_WAT).expect("test component compiles");
    let ty = c.component_type();
    let (_, item) = ty
        .imports(&engine)
        .find(|(n, _)| *n == "all")
        .expect("imported");
    let ComponentItem::ComponentFunc(f) = item.ty else {
        panic!("`all` is not a function");
    };
    let params: Vec<(String, Type)> = f.params().map(|(n, t)| (n.to_string(), t)).collect();
    let names: Vec<String> = params.iter().map(|(_, t)| wit_type_name(t)).collect();
    assert_eq!(
        names,
        [
            "list<u8>",
            "list<string>",
            "tuple<u8, string>",
            "option<string>",
            "result<u32, string>",
            "result",
            "result<_, string>",
            "result<u8>",
            "list<record { x: f64, y: f64 }>",
            "variant { circle(f64), rect(record { x: f64, y: f64 }), maybe(option<u8>), none }",
            "enum { red, green, blue }",
            "flags { read, write, exec }",
            "own<resource>",
            "borrow<resource>",
            "char",
            "u64",
            "f32",
        ]
    );
    let sig = wharf_engine::ExportFunc::from_func("all".into(), &f).signature;
    assert!(
        sig.starts_with("all(bytes: list<u8>, names: list<string>, pair: tuple<u8, string>"),
        "{sig}"
    );
}
