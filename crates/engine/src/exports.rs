//! A component's exported functions: the one listing ([`component_exports`]), the one
//! lookup by name ([`find_export`], [`export_index`]) and the one WIT spelling of
//! component types ([`wit_type_name`]) that `wharf run --invoke`, `wharf call`,
//! `wharf inspect`, plugins and the admin API share.

use wasmtime::component::types::{ComponentFunc, ComponentItem};
use wasmtime::component::{self, ComponentExportIndex, Type};

/// One exported function.
#[derive(Clone, Debug)]
pub struct ExportFunc {
    /// `name` for a top-level function, `interface#name` inside an exported interface.
    pub name: String,
    /// Parameter names and types.
    pub params: Vec<(String, Type)>,
    /// Result types (zero or one in the component model today).
    pub results: Vec<Type>,
    /// Lifted async (component-model async, as WASI 0.3 toolchains build exports):
    /// callers run it in the store's event loop, which `Func::call_async` does.
    pub is_async: bool,
    /// WIT-like signature, e.g. `add(a: s32, b: s32) -> s32`, or
    /// `async greet(name: string) -> string` for an async export.
    pub signature: String,
}

impl ExportFunc {
    /// An export with these parameters and results; the signature is computed.
    pub fn new(name: String, params: Vec<(String, Type)>, results: Vec<Type>) -> ExportFunc {
        let p: Vec<String> = params
            .iter()
            .map(|(n, t)| format!("{n}: {}", wit_type_name(t)))
            .collect();
        let r: Vec<String> = results.iter().map(wit_type_name).collect();
        let signature = match r.as_slice() {
            [] => format!("{name}({})", p.join(", ")),
            [one] => format!("{name}({}) -> {one}", p.join(", ")),
            many => format!("{name}({}) -> ({})", p.join(", "), many.join(", ")),
        };
        ExportFunc {
            name,
            params,
            results,
            is_async: false,
            signature,
        }
    }

    /// The export `name` of function type `f`.
    pub fn from_func(name: String, f: &ComponentFunc) -> ExportFunc {
        let mut export = ExportFunc::new(
            name,
            f.params().map(|(n, t)| (n.to_string(), t)).collect(),
            f.results().collect(),
        );
        if f.async_() {
            export.is_async = true;
            export.signature = format!("async {}", export.signature);
        }
        export
    }
}

/// Every exported function: top-level ones as `name`, those of exported interfaces as
/// `interface#name`, in the component's order.
pub fn component_exports(
    engine: &wasmtime::Engine,
    component: &component::Component,
) -> Vec<ExportFunc> {
    let mut out = Vec::new();
    for (name, item) in component.component_type().exports(engine) {
        match item.ty {
            ComponentItem::ComponentFunc(f) => out.push(ExportFunc::from_func(name.into(), &f)),
            ComponentItem::ComponentInstance(inst) => {
                for (fname, fitem) in inst.exports(engine) {
                    if let ComponentItem::ComponentFunc(f) = fitem.ty {
                        out.push(ExportFunc::from_func(format!("{name}#{fname}"), &f));
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// Why [`find_export`] found nothing, or too much.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExportLookupError {
    /// No exported function by that name.
    #[error("{}; the component exports: {available}", no_such(name))]
    NoSuch {
        /// The name asked for.
        name: String,
        /// The exported functions' signatures, comma-separated.
        available: String,
    },
    /// `interface#name` names an interface the component does not export.
    #[error("the component exports no interface `{interface}`; the component exports: {available}")]
    NoInterface {
        /// The interface asked for.
        interface: String,
        /// The whole name asked for, `interface#name`.
        name: String,
        /// The exported functions' signatures, comma-separated.
        available: String,
    },
    /// A bare name that several exported interfaces have.
    #[error(
        "`{name}` is exported by several interfaces: {}; name one as INTERFACE#{name}",
        candidates.join(", ")
    )]
    Ambiguous {
        /// The name asked for.
        name: String,
        /// The full names that match, `interface#name`.
        candidates: Vec<String>,
    },
}

fn no_such(name: &str) -> String {
    match name.split_once('#') {
        Some((iface, f)) => format!("interface `{iface}` exports no function `{f}`"),
        None => format!("the component exports no function `{name}`"),
    }
}

/// The signatures of `exports`, comma-separated, for error messages.
pub fn describe_exports(exports: &[ExportFunc]) -> String {
    if exports.is_empty() {
        return "(it exports no functions)".into();
    }
    exports
        .iter()
        .map(|e| e.signature.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Finds an export by its exact name (`name` or `interface#name`), or by a bare `name`
/// that exactly one exported interface has.
pub fn find_export<'a>(
    exports: &'a [ExportFunc],
    name: &str,
) -> Result<&'a ExportFunc, ExportLookupError> {
    if let Some(e) = exports.iter().find(|e| e.name == name) {
        return Ok(e);
    }
    if let Some((iface, _)) = name.split_once('#') {
        let prefix = format!("{iface}#");
        return Err(if exports.iter().any(|e| e.name.starts_with(&prefix)) {
            ExportLookupError::NoSuch {
                name: name.to_string(),
                available: describe_exports(exports),
            }
        } else {
            ExportLookupError::NoInterface {
                interface: iface.to_string(),
                name: name.to_string(),
                available: describe_exports(exports),
            }
        });
    }
    let found: Vec<&ExportFunc> = exports
        .iter()
        .filter(|e| e.name.rsplit_once('#').is_some_and(|(_, n)| n == name))
        .collect();
    match found.as_slice() {
        [one] => Ok(one),
        [] => Err(ExportLookupError::NoSuch {
            name: name.to_string(),
            available: describe_exports(exports),
        }),
        many => Err(ExportLookupError::Ambiguous {
            name: name.to_string(),
            candidates: many.iter().map(|e| e.name.clone()).collect(),
        }),
    }
}

/// Resolves an export (from [`component_exports`] of the same component) to the index
/// that `component::Instance::get_func` takes; do it once at load, not per call.
pub fn export_index(
    component: &component::Component,
    export: &ExportFunc,
) -> Option<ComponentExportIndex> {
    match export.name.split_once('#') {
        Some((iface, name)) => {
            let i = component.get_export_index(None, iface)?;
            component.get_export_index(Some(&i), name)
        }
        None => component.get_export_index(None, export.name.as_str()),
    }
}

/// A short WIT spelling of a type, for signatures and error messages: `s32`,
/// `list<string>`, `record { x: f64, y: f64 }`, `option<u8>`, `result<s32, string>`,
/// `result<_, string>`, `variant { a(u32), b }`, `enum { r, g }`, `flags { x, y }`,
/// `tuple<u8, string>`, `list<u8, 4>`, `map<string, u32>`.
///
/// Records, variants, enums and flags are spelled out structurally: wasmtime 48's
/// component types do not carry their WIT names. Resources are `own<resource>` and
/// `borrow<resource>`.
pub fn wit_type_name(ty: &Type) -> String {
    match ty {
        Type::Bool => "bool".to_string(),
        Type::S8 => "s8".to_string(),
        Type::U8 => "u8".to_string(),
        Type::S16 => "s16".to_string(),
        Type::U16 => "u16".to_string(),
        Type::S32 => "s32".to_string(),
        Type::U32 => "u32".to_string(),
        Type::S64 => "s64".to_string(),
        Type::U64 => "u64".to_string(),
        Type::Float32 => "f32".to_string(),
        Type::Float64 => "f64".to_string(),
        Type::Char => "char".to_string(),
        Type::String => "string".to_string(),
        Type::List(list) => format!("list<{}>", wit_type_name(&list.ty())),
        Type::FixedLengthList(list) => {
            format!("list<{}, {}>", wit_type_name(&list.ty()), list.len())
        }
        Type::Map(map) => format!(
            "map<{}, {}>",
            wit_type_name(&map.key()),
            wit_type_name(&map.value())
        ),
        Type::Record(record) => {
            let fields: Vec<String> = record
                .fields()
                .map(|f| format!("{}: {}", f.name, wit_type_name(&f.ty)))
                .collect();
            braced("record", &fields)
        }
        Type::Tuple(tuple) => {
            let types: Vec<String> = tuple.types().map(|t| wit_type_name(&t)).collect();
            format!("tuple<{}>", types.join(", "))
        }
        Type::Variant(variant) => {
            let cases: Vec<String> = variant
                .cases()
                .map(|c| match &c.ty {
                    Some(t) => format!("{}({})", c.name, wit_type_name(t)),
                    None => c.name.to_string(),
                })
                .collect();
            braced("variant", &cases)
        }
        Type::Enum(e) => {
            let names: Vec<String> = e.names().map(str::to_string).collect();
            braced("enum", &names)
        }
        Type::Flags(flags) => {
            let names: Vec<String> = flags.names().map(str::to_string).collect();
            braced("flags", &names)
        }
        Type::Option(option) => format!("option<{}>", wit_type_name(&option.ty())),
        Type::Result(result) => match (result.ok(), result.err()) {
            (Some(ok), Some(err)) => {
                format!("result<{}, {}>", wit_type_name(&ok), wit_type_name(&err))
            }
            (Some(ok), None) => format!("result<{}>", wit_type_name(&ok)),
            (None, Some(err)) => format!("result<_, {}>", wit_type_name(&err)),
            (None, None) => "result".to_string(),
        },
        Type::Own(_) => "own<resource>".to_string(),
        Type::Borrow(_) => "borrow<resource>".to_string(),
        Type::Future(future) => match future.ty() {
            Some(t) => format!("future<{}>", wit_type_name(&t)),
            None => "future".to_string(),
        },
        Type::Stream(stream) => match stream.ty() {
            Some(t) => format!("stream<{}>", wit_type_name(&t)),
            None => "stream".to_string(),
        },
        Type::ErrorContext => "error-context".to_string(),
    }
}

fn braced(keyword: &str, items: &[String]) -> String {
    if items.is_empty() {
        format!("{keyword} {{}}")
    } else {
        format!("{keyword} {{ {} }}", items.join(", "))
    }
}
