//! Turning a file into a loaded [`Program`]: recognise what the bytes are (Wasm binary
//! module or component, `.wat` text, a Wharf `.cwasm`, a foreign precompiled artifact,
//! or not WebAssembly at all), then compile (bounded) or map the cached artifact. Text
//! is parsed under the same bound as a compile (see [`crate::compile::parse_text`]).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use wasmtime::Module;
use wasmtime::component::Component;

use crate::WharfEngine;
use crate::artifact::{self, ArtifactCache, ArtifactKey, ArtifactKind};
use crate::compile::{Compiler, compile_to_file, parse_text};
use crate::error::WharfError;
use crate::size::format_size;

/// A compiled program, ready to instantiate.
#[derive(Clone)]
pub enum Program {
    /// A core module (wasip1 when it runs as a command).
    Module(Module),
    /// A component (wasip2).
    Component(Component),
}

impl Program {
    /// Module or component.
    pub fn kind(&self) -> ArtifactKind {
        match self {
            Program::Module(_) => ArtifactKind::Module,
            Program::Component(_) => ArtifactKind::Component,
        }
    }
}

/// How the program got loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LoadMethod {
    /// Compiled now (cache miss, or no cache).
    Compiled,
    /// Mapped from the artifact cache.
    CacheHit,
    /// Loaded from a Wharf `.cwasm` file.
    Precompiled,
}

/// Where to look for and put artifacts, and how to compile.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// The artifact cache, `None` to compile every time (`--no-cache`).
    pub cache: Option<ArtifactCache>,
    /// How to compile (bounded child process, or in-process for trusted input).
    pub compiler: Compiler,
    /// The key file that signs and verifies `.cwasm` files.
    pub key_path: Option<PathBuf>,
    /// Print a progress line on stderr when a compile takes a while.
    pub progress: bool,
}

/// A loaded program and how it got here.
#[derive(Clone)]
pub struct LoadedProgram {
    /// The program.
    pub program: Program,
    /// Compiled, cache hit or precompiled.
    pub method: LoadMethod,
    /// Time to read, compile or map, and deserialize.
    pub load_time: Duration,
    /// sha256 of the Wasm input (for `.cwasm`, of the Wasm it was compiled from).
    pub source_sha256: [u8; 32],
    /// The file it came from.
    pub path: PathBuf,
}

/// What a file's bytes are.
#[derive(Debug, PartialEq, Eq)]
pub enum InputKind {
    /// Wasm binary: core module.
    Module,
    /// Wasm binary: component.
    Component,
    /// A Wharf `.cwasm`.
    WharfArtifact,
    /// A precompiled wasmtime artifact Wharf did not wrap (e.g. `wasmtime compile`).
    ForeignArtifact,
    /// Text that may be `.wat`.
    Text,
    /// None of the above.
    Unknown,
}

/// Recognises `bytes`.
pub fn classify(bytes: &[u8]) -> InputKind {
    if bytes.len() >= 8 && &bytes[..4] == b"\0asm" {
        // The preamble is a version (u16) and a layer (u16): version 1 layer 0 is a core
        // module, layer 1 a component (version 0x0d while the format is pre-1.0).
        return match (&bytes[4..6], &bytes[6..8]) {
            ([1, 0], [0, 0]) => InputKind::Module,
            (_, [1, 0]) => InputKind::Component,
            _ => InputKind::Unknown,
        };
    }
    if bytes.starts_with(artifact::CWASM_MAGIC) {
        return InputKind::WharfArtifact;
    }
    if wasmtime::Engine::detect_precompiled(bytes).is_some() {
        return InputKind::ForeignArtifact;
    }
    if let Ok(text) = std::str::from_utf8(bytes)
        && looks_like_wat(text)
    {
        return InputKind::Text;
    }
    InputKind::Unknown
}

fn looks_like_wat(text: &str) -> bool {
    let mut rest = text;
    loop {
        rest = rest.trim_start();
        if let Some(r) = rest.strip_prefix(";;") {
            rest = r.split_once('\n').map(|(_, r)| r).unwrap_or("");
        } else if let Some(r) = rest.strip_prefix("(;") {
            rest = r.split_once(";)").map(|(_, r)| r).unwrap_or("");
        } else {
            return rest.starts_with('(');
        }
    }
}

/// Reads and loads the program at `path`.
pub fn load_file(
    engine: &WharfEngine,
    path: &Path,
    opts: &LoadOptions,
) -> Result<LoadedProgram, WharfError> {
    let start = Instant::now();
    // Fast path: an input whose metadata the cache has seen maps its artifact without
    // being read or hashed.
    let meta = std::fs::metadata(path).ok();
    if let (Some(cache), Some(meta)) = (&opts.cache, &meta)
        && meta.is_file()
        && let Some((kind, sha)) = cache.lookup_index(path, meta)
    {
        let target = cache.path_for(engine.compat_key(), kind, &sha);
        if target.exists() {
            // SAFETY: cache files are written only by this crate, atomically, from our
            // own compiler's output, under this engine's compatibility key.
            match unsafe { deserialize_file(engine, kind, &target) } {
                Ok(program) => {
                    return Ok(LoadedProgram {
                        program,
                        method: LoadMethod::CacheHit,
                        load_time: start.elapsed(),
                        source_sha256: sha,
                        path: path.to_path_buf(),
                    });
                }
                Err(e) => tracing::warn!(
                    "cached artifact `{}` did not load ({e:#}); recompiling",
                    target.display()
                ),
            }
        }
    }
    let loaded = load_file_slow(engine, path, opts, start)?;
    if let (Some(cache), Some(meta)) = (&opts.cache, &meta)
        && loaded.method != LoadMethod::Precompiled
    {
        cache.record_index(path, meta, loaded.program.kind(), &loaded.source_sha256);
    }
    Ok(loaded)
}

fn load_file_slow(
    engine: &WharfEngine,
    path: &Path,
    opts: &LoadOptions,
    start: Instant,
) -> Result<LoadedProgram, WharfError> {
    let bytes = std::fs::read(path).map_err(|e| WharfError::NoInput {
        path: path.to_path_buf(),
        reason: match e.kind() {
            std::io::ErrorKind::NotFound => "no such file".to_string(),
            std::io::ErrorKind::IsADirectory => "it is a directory".to_string(),
            _ => e.to_string(),
        },
    })?;
    if std::fs::metadata(path).map(|m| m.is_dir()).unwrap_or(false) {
        return Err(WharfError::NoInput {
            path: path.to_path_buf(),
            reason: "it is a directory".into(),
        });
    }
    load_bytes(engine, path, bytes, opts, start)
}

/// Loads a program from bytes read from `path` (used in messages); `start` is when
/// reading began, for the load-time statistic.
pub fn load_bytes(
    engine: &WharfEngine,
    path: &Path,
    bytes: Vec<u8>,
    opts: &LoadOptions,
    start: Instant,
) -> Result<LoadedProgram, WharfError> {
    let (kind, wasm) = match classify(&bytes) {
        InputKind::Module => (ArtifactKind::Module, bytes),
        InputKind::Component => (ArtifactKind::Component, bytes),
        InputKind::Text => {
            // Parsed under the compiler's bound (in its worker when it is a
            // subprocess); the cache key is the sha256 of the binary it produces.
            let wasm = parse_text(&opts.compiler, &bytes, path)?;
            drop(bytes);
            match classify(&wasm) {
                InputKind::Module => (ArtifactKind::Module, wasm),
                InputKind::Component => (ArtifactKind::Component, wasm),
                _ => {
                    return Err(WharfError::InvalidWasm {
                        path: path.to_path_buf(),
                        reason: "the text did not produce a module or component".into(),
                    });
                }
            }
        }
        InputKind::WharfArtifact => return load_cwasm(engine, path, &bytes, opts, start),
        InputKind::ForeignArtifact => {
            return Err(WharfError::ArtifactRefused {
                path: path.to_path_buf(),
                reason: "it is a precompiled wasmtime artifact that wharf did not write (for \
                         example from `wasmtime compile`); precompiled code is native code, so \
                         wharf only loads artifacts it wrote itself. Run the original .wasm, or \
                         precompile it with `wharf compile`"
                    .into(),
            });
        }
        InputKind::Unknown => {
            if bytes.len() >= 4 && &bytes[..4] == b"\0asm" {
                return Err(WharfError::InvalidWasm {
                    path: path.to_path_buf(),
                    reason: "unsupported binary version (neither a core module nor a component)"
                        .into(),
                });
            }
            return Err(WharfError::NotWasm {
                path: path.to_path_buf(),
                prefix: describe_prefix(&bytes),
            });
        }
    };
    let source = artifact::sha256(&wasm);
    let (program, method) = compile_or_map(engine, path, kind, &wasm, &source, opts)?;
    Ok(LoadedProgram {
        program,
        method,
        load_time: start.elapsed(),
        source_sha256: source,
        path: path.to_path_buf(),
    })
}

fn describe_prefix(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "nothing (the file is empty)".into();
    }
    let head = &bytes[..bytes.len().min(8)];
    let shown: String = head
        .iter()
        .map(|b| {
            if b.is_ascii_graphic() || *b == b' ' {
                (*b as char).to_string()
            } else {
                format!("\\x{b:02x}")
            }
        })
        .collect();
    format!("`{shown}`")
}

fn compile_or_map(
    engine: &WharfEngine,
    path: &Path,
    kind: ArtifactKind,
    wasm: &[u8],
    source: &[u8; 32],
    opts: &LoadOptions,
) -> Result<(Program, LoadMethod), WharfError> {
    if let Some(cache) = &opts.cache {
        let target = cache.path_for(engine.compat_key(), kind, source);
        if target.exists() {
            // SAFETY: files in the cache are written only by this code (atomically, from
            // our own compiler output) and named by the engine compatibility key.
            match unsafe { deserialize_file(engine, kind, &target) } {
                Ok(p) => return Ok((p, LoadMethod::CacheHit)),
                Err(e) => {
                    tracing::warn!(
                        "cached artifact `{}` did not load ({e:#}); recompiling",
                        target.display()
                    );
                }
            }
        }
        let (tmp, file) = artifact::temp_beside(&target)?;
        drop(file);
        let res = compile_with_progress(engine, path, kind, wasm, &tmp, opts)
            .and_then(|()| artifact::commit(&tmp, &target).map_err(WharfError::from));
        if let Err(e) = res {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        // SAFETY: just written by our own compiler.
        let program = unsafe { deserialize_file(engine, kind, &target) }
            .with_context(|| format!("loading the artifact `{}`", target.display()))?;
        Ok((program, LoadMethod::Compiled))
    } else {
        let dir = tempfile::tempdir().context("creating a temporary directory")?;
        let out = dir.path().join("artifact.cwasm");
        compile_with_progress(engine, path, kind, wasm, &out, opts)?;
        // SAFETY: just written by our own compiler into our own temporary directory.
        let program = unsafe { deserialize_file(engine, kind, &out) }
            .context("loading the freshly compiled artifact")?;
        Ok((program, LoadMethod::Compiled))
    }
}

fn compile_with_progress(
    engine: &WharfEngine,
    path: &Path,
    kind: ArtifactKind,
    wasm: &[u8],
    out: &Path,
    opts: &LoadOptions,
) -> Result<(), WharfError> {
    // Large inputs take seconds to compile; say so, on stderr, only when a person is
    // watching, so that a guest's own stderr stays clean in scripts.
    let show = opts.progress
        && wasm.len() > (1 << 20)
        && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let t = Instant::now();
    if show {
        eprintln!(
            "wharf: compiling `{}` ({}, {})...",
            path.display(),
            kind.name(),
            format_size(wasm.len() as u64)
        );
    }
    let res = compile_to_file(&opts.compiler, engine, kind, wasm, out, path);
    if show && res.is_ok() {
        eprintln!("wharf: compiled in {:.2}s", t.elapsed().as_secs_f64());
    }
    res
}

/// Deserializes an artifact file.
///
/// # Safety
/// `file` must be an artifact written by this crate's compiler for an engine with the
/// same compatibility key.
unsafe fn deserialize_file(
    engine: &WharfEngine,
    kind: ArtifactKind,
    file: &Path,
) -> anyhow::Result<Program> {
    // SAFETY: forwarded to the caller.
    unsafe {
        Ok(match kind {
            ArtifactKind::Module => {
                Program::Module(Module::deserialize_file(engine.engine(), file)?)
            }
            ArtifactKind::Component => {
                Program::Component(Component::deserialize_file(engine.engine(), file)?)
            }
        })
    }
}

fn load_cwasm(
    engine: &WharfEngine,
    path: &Path,
    bytes: &[u8],
    opts: &LoadOptions,
    start: Instant,
) -> Result<LoadedProgram, WharfError> {
    let key_path = opts
        .key_path
        .clone()
        .or_else(ArtifactKey::default_path)
        .context("no artifact key location: set HOME or XDG_CONFIG_HOME")?;
    let key = ArtifactKey::load_or_create(&key_path)?;
    let opened = artifact::open_cwasm(&key, engine.compat_key(), bytes).map_err(|reason| {
        WharfError::ArtifactRefused {
            path: path.to_path_buf(),
            reason,
        }
    })?;
    // SAFETY: the MAC proves this installation wrote the payload, for an engine with
    // this compatibility key.
    let program = unsafe {
        match opened.kind {
            ArtifactKind::Module => {
                Program::Module(Module::deserialize(engine.engine(), opened.payload)?)
            }
            ArtifactKind::Component => {
                Program::Component(Component::deserialize(engine.engine(), opened.payload)?)
            }
        }
    };
    Ok(LoadedProgram {
        program,
        method: LoadMethod::Precompiled,
        load_time: start.elapsed(),
        source_sha256: opened.source_sha256,
        path: path.to_path_buf(),
    })
}

/// Compiles `wasm_path` into a signed `.cwasm` at `out` for this engine (what
/// `wharf compile` does). Returns the kind and the artifact size.
pub fn compile_cwasm(
    engine: &WharfEngine,
    wasm_path: &Path,
    out: &Path,
    compiler: &Compiler,
    key_path: &Path,
) -> Result<(ArtifactKind, u64), WharfError> {
    let bytes = std::fs::read(wasm_path).map_err(|e| WharfError::NoInput {
        path: wasm_path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let (kind, wasm) = match classify(&bytes) {
        InputKind::Module => (ArtifactKind::Module, bytes),
        InputKind::Component => (ArtifactKind::Component, bytes),
        InputKind::Text => {
            let wasm = parse_text(compiler, &bytes, wasm_path)?;
            let kind = match classify(&wasm) {
                InputKind::Component => ArtifactKind::Component,
                _ => ArtifactKind::Module,
            };
            (kind, wasm)
        }
        InputKind::WharfArtifact | InputKind::ForeignArtifact => {
            return Err(WharfError::Usage(format!(
                "`{}` is already precompiled; `wharf compile` takes a .wasm or .wat file",
                wasm_path.display()
            )));
        }
        InputKind::Unknown => {
            return Err(WharfError::NotWasm {
                path: wasm_path.to_path_buf(),
                prefix: describe_prefix(&bytes),
            });
        }
    };
    let key = ArtifactKey::load_or_create(key_path)?;
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let raw = dir.path().join("raw.cwasm");
    compile_to_file(compiler, engine, kind, &wasm, &raw, wasm_path)?;
    let payload = std::fs::read(&raw).context("reading the compiled artifact")?;
    let sealed = artifact::seal_cwasm(
        &key,
        kind,
        engine.compat_key(),
        &artifact::sha256(&wasm),
        &payload,
    );
    artifact::write_atomic(out, &sealed).with_context(|| format!("writing `{}`", out.display()))?;
    Ok((kind, sealed.len() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies() {
        assert_eq!(classify(b"\0asm\x01\0\0\0"), InputKind::Module);
        assert_eq!(classify(b"\0asm\x0d\0\x01\0"), InputKind::Component);
        assert_eq!(classify(b"WHARFAOT...."), InputKind::WharfArtifact);
        assert_eq!(classify(b";; hi\n(module)"), InputKind::Text);
        assert_eq!(classify(b"(; block ;) (component)"), InputKind::Text);
        assert_eq!(classify(b"#!/bin/sh\necho"), InputKind::Unknown);
        assert_eq!(classify(b""), InputKind::Unknown);
    }
}
