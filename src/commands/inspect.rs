//! `wharf inspect`: what a module or component is, imports, exports, custom sections.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use wharf_engine::WharfEngine;
use wharf_engine::config::EngineOptions;
use wharf_engine::load::{InputKind, LoadOptions, Program, classify, load_bytes};

use super::CompileBounds;
use crate::error::CliError;

/// Describe a WebAssembly file: module or component, the world it looks like it targets,
/// its imports and exports with their types, its size and custom sections (and whether
/// it carries a signature section).
///
/// The file is parsed (when it is .wat text) and compiled to read its types, in a
/// separate process bounded by --compile-timeout and --compile-max-memory, as `wharf
/// run` and `wharf serve` do; nothing is cached.
///
/// Example:
///   wharf inspect calc.wasm
///   wharf inspect --json app.wasm
#[derive(Args)]
pub struct InspectCommand {
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    bounds: CompileBounds,
    /// The .wasm or .wat file.
    #[arg(value_name = "FILE")]
    file: PathBuf,
}

impl InspectCommand {
    /// Runs the command.
    pub async fn execute(self) -> Result<(), CliError> {
        self.inspect()
    }

    fn inspect(&self) -> Result<(), CliError> {
        use wharf_engine::error::{EXIT_INTERNAL, EXIT_NO_INPUT, EXIT_NOT_WASM};
        let raw = std::fs::read(&self.file).map_err(|e| {
            CliError::new(
                EXIT_NO_INPUT,
                format!("cannot read `{}`: {e}", self.file.display()),
            )
        })?;
        let compiler = self
            .bounds
            .compiler()
            .map_err(|e| CliError::new(EXIT_INTERNAL, format!("{e:#}")))?;
        // Text is parsed, and the binary compiled below, under the compile bound: a
        // file to inspect is as untrusted as one to run.
        let bytes = match classify(&raw) {
            InputKind::Text => wharf_engine::compile::parse_text(&compiler, &raw, &self.file)?,
            InputKind::Module | InputKind::Component => raw.clone(),
            _ => {
                return Err(CliError::new(
                    EXIT_NOT_WASM,
                    format!(
                        "`{}` is not a WebAssembly module or component",
                        self.file.display()
                    ),
                ));
            }
        };
        let mut custom = Vec::new();
        for payload in wasmparser::Parser::new(0).parse_all(&bytes) {
            if let Ok(wasmparser::Payload::CustomSection(c)) = payload {
                custom.push((c.name().to_string(), c.data().len()));
            }
        }
        let signed = custom
            .iter()
            .any(|(n, _)| n == "signature" || n.starts_with("signature"));
        let engine = WharfEngine::new(&EngineOptions::default())
            .map_err(|e| CliError::new(EXIT_INTERNAL, format!("{e:#}")))?;
        let load = LoadOptions {
            cache: None,
            compiler,
            key_path: None,
            progress: false,
        };
        let loaded = load_bytes(&engine, &self.file, bytes, &load, Instant::now())?;
        let e = engine.engine();
        // The WASI versions named by the component's `wasi:` imports and exports.
        let mut wasi = std::collections::BTreeSet::new();
        let (kind, world, imports, exports) = match &loaded.program {
            Program::Component(c) => {
                let ty = c.component_type();
                let imports: Vec<String> = ty
                    .imports(e)
                    .map(|(n, item)| describe(e, n, &item.ty))
                    .collect();
                let exports: Vec<String> = ty
                    .exports(e)
                    .map(|(n, item)| describe(e, n, &item.ty))
                    .collect();
                let names: Vec<&str> = ty.exports(e).map(|(n, _)| n).collect();
                let import_names: Vec<&str> = ty.imports(e).map(|(n, _)| n).collect();
                let export_version = |prefix: &str| {
                    names
                        .iter()
                        .find(|n| n.starts_with(prefix))
                        .map(|n| wasi_version(n))
                };
                let world = if let Some(v) = export_version("wasi:http/handler@") {
                    format!("wasi:http/service (exports wasi:http/handler) — WASI {v}")
                } else if let Some(v) = export_version("wasi:http/incoming-handler") {
                    format!("wasi:http/proxy (exports wasi:http/incoming-handler) — WASI {v}")
                } else if let Some(v) = export_version("wasi:cli/run") {
                    format!("wasi:cli/command (exports wasi:cli/run) — WASI {v}")
                } else {
                    "a library/plugin world (call its exports with `wharf call`)".to_string()
                };
                wasi = import_names
                    .iter()
                    .chain(names.iter())
                    .filter(|n| n.starts_with("wasi:"))
                    .map(|n| wasi_version(n))
                    .collect();
                ("component", world, imports, exports)
            }
            Program::Module(m) => {
                let imports: Vec<String> = m
                    .imports()
                    .map(|i| format!("{}::{}: {}", i.module(), i.name(), extern_ty(&i.ty())))
                    .collect();
                let exports: Vec<String> = m
                    .exports()
                    .map(|x| format!("{}: {}", x.name(), extern_ty(&x.ty())))
                    .collect();
                if m.imports().any(|i| i.module() == "wasi_snapshot_preview1") {
                    wasi.insert("preview1".to_string());
                }
                let world = if m.get_export("_start").is_some()
                    && m.imports().any(|i| i.module() == "wasi_snapshot_preview1")
                {
                    "wasip1 command (exports _start)"
                } else if m.imports().any(|i| i.module() == "wasi_snapshot_preview1") {
                    "wasip1 reactor/library"
                } else {
                    "plain core module"
                };
                ("module", world.to_string(), imports, exports)
            }
        };
        if self.json {
            let v = serde_json::json!({
                "file": self.file,
                "kind": kind,
                "world": world,
                "wasi": wasi,
                "size": raw.len(),
                "imports": imports,
                "exports": exports,
                "custom_sections": custom.iter().map(|(n, s)| serde_json::json!({"name": n, "size": s})).collect::<Vec<_>>(),
                "signed": signed,
            });
            println!("{v}");
            return Ok(());
        }
        println!("file:     {}", self.file.display());
        println!(
            "kind:     {kind} ({})",
            wharf_engine::size::format_size(raw.len() as u64)
        );
        println!("world:    {world}");
        if !wasi.is_empty() {
            println!(
                "wasi:     {}",
                wasi.iter().cloned().collect::<Vec<_>>().join(", ")
            );
        }
        println!("imports:  {}", imports.len());
        for i in &imports {
            println!("  {i}");
        }
        println!("exports:  {}", exports.len());
        for x in &exports {
            println!("  {x}");
        }
        println!(
            "custom sections: {}",
            if custom.is_empty() {
                "none".to_string()
            } else {
                custom
                    .iter()
                    .map(|(n, s)| format!("{n} ({s} B)"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        );
        println!("signature: {}", if signed { "present" } else { "none" });
        Ok(())
    }
}

fn describe(
    e: &wharf_engine::wasmtime::Engine,
    name: &str,
    item: &wharf_engine::wasmtime::component::types::ComponentItem,
) -> String {
    use wharf_engine::wasmtime::component::types::ComponentItem;
    match item {
        ComponentItem::ComponentFunc(f) => format!("func {}", func_sig(name, f)),
        ComponentItem::ComponentInstance(inst) => {
            let funcs: Vec<String> = inst
                .exports(e)
                .filter_map(|(n, i)| match i.ty {
                    ComponentItem::ComponentFunc(f) => Some(format!("\n      {}", func_sig(n, &f))),
                    _ => None,
                })
                .collect();
            format!("interface {name}{}", funcs.join(""))
        }
        ComponentItem::Type(_) => format!("type {name}"),
        ComponentItem::Resource(_) => format!("resource {name}"),
        _ => name.to_string(),
    }
}

fn func_sig(name: &str, f: &wharf_engine::wasmtime::component::types::ComponentFunc) -> String {
    wharf_engine::ExportFunc::from_func(name.to_string(), f).signature
}

fn extern_ty(t: &wharf_engine::wasmtime::ExternType) -> String {
    use wharf_engine::wasmtime::ExternType;
    match t {
        ExternType::Func(f) => {
            let p: Vec<String> = f.params().map(|t| t.to_string()).collect();
            let r: Vec<String> = f.results().map(|t| t.to_string()).collect();
            format!("func({}) -> ({})", p.join(", "), r.join(", "))
        }
        ExternType::Memory(m) => format!("memory (min {} pages)", m.minimum()),
        ExternType::Table(_) => "table".into(),
        ExternType::Global(_) => "global".into(),
        _ => "other".into(),
    }
}

/// The WASI version in an interface name (`wasi:http/handler@0.3.0` → `0.3.0`),
/// `unversioned` when it has none.
fn wasi_version(name: &str) -> String {
    name.rsplit_once('@')
        .map_or_else(|| "unversioned".to_string(), |(_, v)| v.to_string())
}
