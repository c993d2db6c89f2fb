//! Running programs: a wasip1 core module's `_start`, a wasip2 component's
//! `wasi:cli/run`, or any export called with WAVE-encoded arguments (`--invoke`). Each
//! run gets a fresh `Store` with the total-memory limiter, an epoch deadline plus a
//! host-side timeout (epochs do not interrupt a guest blocked in a host call), optional
//! fuel and hostcall fuel; the outcome comes back with [`RunStats`] even when the guest
//! fails, so `--stats` can say how far it got.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;
use wasmtime::component::{self, ResourceTable, Val};
use wasmtime::{Store, Trap};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::WharfEngine;
use crate::error::WharfError;
use crate::exports::{component_exports, describe_exports, export_index, find_export};
use crate::failure::{self, FailureContext};
use crate::limits::{Limited, Limits, TotalMemoryLimiter, new_store};
use crate::load::{LoadMethod, LoadedProgram, Program};

/// A host directory given to the guest.
#[derive(Clone, Debug)]
pub struct DirGrant {
    /// The host path.
    pub host: PathBuf,
    /// Where the guest sees it.
    pub guest: String,
    /// Read-only when true.
    pub read_only: bool,
}

impl DirGrant {
    /// Parses `HOST[::GUEST]`; the guest path defaults to the host path as written.
    pub fn parse(spec: &str, read_only: bool) -> Result<DirGrant, WharfError> {
        let (host, guest) = match spec.split_once("::") {
            Some((h, g)) => (h, g),
            None => (spec, spec),
        };
        if host.is_empty() || guest.is_empty() {
            return Err(WharfError::Usage(format!(
                "`{spec}` is not a directory grant; write HOST or HOST::GUEST, e.g. `./data::/data`"
            )));
        }
        Ok(DirGrant {
            host: PathBuf::from(host),
            guest: guest.to_string(),
            read_only,
        })
    }
}

/// An export call: `name(args...)` with WAVE arguments.
#[derive(Clone, Debug)]
pub struct Invocation {
    /// The export: `name` at the top level, `interface#name` inside an exported
    /// interface, or a bare `name` found in exactly one exported interface.
    pub export: String,
    /// The parenthesised argument list, WAVE text, e.g. `(3, 4)`.
    pub args: String,
}

impl Invocation {
    /// Parses `name(args...)`.
    pub fn parse(text: &str) -> Result<Invocation, WharfError> {
        let text = text.trim();
        let usage = |why: &str| {
            WharfError::Usage(format!(
                "--invoke `{text}`: {why}; write NAME(ARGS...), e.g. --invoke 'add(3, 4)' or \
                 --invoke 'greet(\"hi\")' (arguments are WAVE values)"
            ))
        };
        let open = text.find('(').ok_or_else(|| usage("missing `(`"))?;
        if !text.ends_with(')') {
            return Err(usage("missing the closing `)`"));
        }
        let export = text[..open].trim();
        if export.is_empty() {
            return Err(usage("missing the export name"));
        }
        Ok(Invocation {
            export: export.to_string(),
            args: text[open..].to_string(),
        })
    }
}

/// What to run and with what.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// The guest's argv, including argv\[0\].
    pub args: Vec<String>,
    /// Environment variables, after `inherit_env` ones (so they override).
    pub env: Vec<(String, String)>,
    /// Pass the host environment through.
    pub inherit_env: bool,
    /// Preopened directories.
    pub dirs: Vec<DirGrant>,
    /// Memory, time and fuel limits.
    pub limits: Limits,
    /// Call this export instead of running the program's main entry.
    pub invoke: Option<Invocation>,
}

/// Statistics of one run.
#[derive(Clone, Debug, Serialize)]
pub struct RunStats {
    /// How the program was loaded.
    pub load_method: LoadMethod,
    /// Read + compile or map time, in microseconds.
    pub load_us: u64,
    /// Instantiation time, in microseconds.
    pub instantiate_us: u64,
    /// Run (or call) time, in microseconds.
    pub run_us: u64,
    /// Fuel consumed, when metered.
    pub fuel_consumed: Option<u64>,
    /// Peak total linear memory, in bytes.
    pub peak_memory_bytes: u64,
    /// The process exit code this run maps to.
    pub exit_code: i32,
    /// `exit` for a normal exit, or the failure kind (`trap`, `timeout`, ...).
    pub exit_status: String,
}

/// What a run produced.
#[derive(Debug)]
pub enum RunOutput {
    /// The program exited with this status.
    Exit(i32),
    /// An invoked export returned these values (WAVE text, one per result).
    Values(Vec<String>),
}

/// The outcome and statistics of a run.
#[derive(Debug)]
pub struct RunReport {
    /// Statistics, filled in as far as the run got.
    pub stats: RunStats,
    /// The output, or what went wrong.
    pub outcome: Result<RunOutput, WharfError>,
}

// `wharf run`'s stores: WASI with the caller's stdio and directories (read-write ones
// too, which server grants never have); limits and deadline through the one
// `limits::new_store`, as every other store.
struct P1Data {
    wasi: WasiP1Ctx,
    limiter: TotalMemoryLimiter,
    deadline: Option<Instant>,
}

struct P2Data {
    ctx: WasiCtx,
    table: ResourceTable,
    limiter: TotalMemoryLimiter,
    deadline: Option<Instant>,
}

macro_rules! limited {
    ($t:ty) => {
        impl Limited for $t {
            fn limiter(&mut self) -> &mut TotalMemoryLimiter {
                &mut self.limiter
            }
            fn deadline(&self) -> Option<Instant> {
                self.deadline
            }
            fn memory_cap(&self) -> Option<u64> {
                self.limiter.cap()
            }
        }
    };
}
limited!(P1Data);
limited!(P2Data);

impl WasiView for P2Data {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

#[derive(Default)]
struct Timings {
    instantiate: Duration,
    run: Duration,
}

/// Runs a loaded program to completion on a fresh single-threaded Tokio runtime.
pub fn run(engine: &WharfEngine, loaded: &LoadedProgram, opts: &RunOptions) -> RunReport {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return report(
                loaded,
                &Timings::default(),
                None,
                0,
                Err(anyhow::Error::from(e)
                    .context("starting the Tokio runtime")
                    .into()),
            );
        }
    };
    rt.block_on(run_async(engine, loaded, opts))
}

/// Runs a loaded program (see [`run`]).
pub async fn run_async(
    engine: &WharfEngine,
    loaded: &LoadedProgram,
    opts: &RunOptions,
) -> RunReport {
    let wasi = match wasi_builder(opts) {
        Ok(b) => b,
        Err(e) => return report(loaded, &Timings::default(), None, 0, Err(e)),
    };
    match &loaded.program {
        Program::Module(module) => run_module(engine, loaded, module, wasi, opts).await,
        Program::Component(c) => run_component(engine, loaded, c, wasi, opts).await,
    }
}

fn wasi_builder(opts: &RunOptions) -> Result<WasiCtxBuilder, WharfError> {
    let mut b = WasiCtxBuilder::new();
    b.inherit_stdio().args(&opts.args);
    // Explicit variables override inherited ones; the guest sees each name once.
    let mut env: Vec<(String, String)> = if opts.inherit_env {
        std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect()
    } else {
        Vec::new()
    };
    for (k, v) in &opts.env {
        env.retain(|(name, _)| name != k);
        env.push((k.clone(), v.clone()));
    }
    b.envs(&env);
    for d in &opts.dirs {
        let perms = if d.read_only {
            FsPerms::ReadOnly
        } else {
            FsPerms::ReadWrite
        };
        b.preopened_dir(&d.host, &d.guest, perms).map_err(|e| {
            WharfError::Usage(format!(
                "cannot grant directory `{}` (as `{}`): {e:#}; check that it exists and is a \
                 directory",
                d.host.display(),
                d.guest
            ))
        })?;
    }
    Ok(b)
}

fn limited_store<T: Limited>(
    engine: &WharfEngine,
    data: T,
    limits: &Limits,
) -> Result<Store<T>, WharfError> {
    new_store(engine, data, limits.fuel)
        .map_err(|e| WharfError::Internal(anyhow::Error::from(e).context("setting up the store")))
}

/// Runs `fut` under the wall-clock deadline, if any. The epoch deadline stops running
/// wasm; this stops a guest that waits in a host call.
async fn with_deadline<F: std::future::Future<Output = wasmtime::Result<R>>, R>(
    limits: &Limits,
    fut: F,
) -> wasmtime::Result<R> {
    match limits.timeout {
        Some(t) => match tokio::time::timeout(t, fut).await {
            Ok(r) => r,
            Err(_) => Err(wasmtime::Error::from(Trap::Interrupt)),
        },
        None => fut.await,
    }
}

async fn run_module(
    engine: &WharfEngine,
    loaded: &LoadedProgram,
    module: &wasmtime::Module,
    mut wasi: WasiCtxBuilder,
    opts: &RunOptions,
) -> RunReport {
    let mut timings = Timings::default();
    let data = P1Data {
        wasi: wasi.build_p1(),
        limiter: TotalMemoryLimiter::new(opts.limits.max_memory),
        deadline: opts.limits.timeout.and_then(crate::limits::deadline_after),
    };
    let mut store = match limited_store(engine, data, &opts.limits) {
        Ok(s) => s,
        Err(e) => return report(loaded, &timings, None, 0, Err(e)),
    };
    let mut linker = wasmtime::Linker::<P1Data>::new(engine.engine());
    if let Err(e) = wasmtime_wasi::p1::add_to_linker_async(&mut linker, |d| &mut d.wasi) {
        return finish(loaded, &mut store, &timings, opts, Err(e), |d| &d.limiter);
    }

    let result: wasmtime::Result<RunOutput> = async {
        let t = Instant::now();
        let instance = with_deadline(&opts.limits, linker.instantiate_async(&mut store, module))
            .await
            .map_err(|e| Phase::Instantiate.tag(e))?;
        timings.instantiate = t.elapsed();
        let t = Instant::now();
        let out = match &opts.invoke {
            None => {
                let start = instance
                    .get_typed_func::<(), ()>(&mut store, "_start")
                    .map_err(|_| {
                        wasmtime::Error::from(WharfError::Usage(format!(
                            "`{}` is a core module without a `_start` function, so it is not a \
                             WASI command; call one of its exports with --invoke: {}",
                            loaded.path.display(),
                            module_exports(module)
                        )))
                    })?;
                match with_deadline(&opts.limits, start.call_async(&mut store, ())).await {
                    Ok(()) => Ok(RunOutput::Exit(0)),
                    Err(e) => match e.downcast_ref::<I32Exit>() {
                        Some(exit) => Ok(RunOutput::Exit(exit.0)),
                        None => Err(e),
                    },
                }
            }
            Some(inv) => {
                if let Some(init) = instance.get_func(&mut store, "_initialize") {
                    let init = init.typed::<(), ()>(&store)?;
                    with_deadline(&opts.limits, init.call_async(&mut store, ())).await?;
                }
                invoke_core(&mut store, &instance, module, inv, &opts.limits)
                    .await
                    .map(RunOutput::Values)
            }
        };
        timings.run = t.elapsed();
        out
    }
    .await;
    finish(loaded, &mut store, &timings, opts, result, |d| &d.limiter)
}

fn module_exports(module: &wasmtime::Module) -> String {
    let names: Vec<String> = module
        .exports()
        .filter_map(|e| {
            e.ty()
                .func()
                .map(|f| format!("{}{}", e.name(), core_sig(f)))
        })
        .collect();
    if names.is_empty() {
        "(it exports no functions)".into()
    } else {
        names.join(", ")
    }
}

fn core_sig(f: &wasmtime::FuncType) -> String {
    let p: Vec<String> = f.params().map(|t| t.to_string()).collect();
    let r: Vec<String> = f.results().map(|t| t.to_string()).collect();
    if r.is_empty() {
        format!("({})", p.join(", "))
    } else {
        format!("({}) -> {}", p.join(", "), r.join(", "))
    }
}

async fn invoke_core(
    store: &mut Store<P1Data>,
    instance: &wasmtime::Instance,
    module: &wasmtime::Module,
    inv: &Invocation,
    limits: &Limits,
) -> wasmtime::Result<Vec<String>> {
    use wasmtime::{Val as CoreVal, ValType};
    let func = instance.get_func(&mut *store, &inv.export).ok_or_else(|| {
        WharfError::Usage(format!(
            "the module exports no function `{}`; it exports: {}",
            inv.export,
            module_exports(module)
        ))
    })?;
    let ty = func.ty(&*store);
    let inner = inv.args.trim();
    let inner = &inner[1..inner.len() - 1];
    let texts: Vec<&str> = if inner.trim().is_empty() {
        Vec::new()
    } else {
        inner.split(',').map(str::trim).collect()
    };
    if texts.len() != ty.params().len() {
        return Err(WharfError::Usage(format!(
            "`{}{}` takes {} argument(s), {} given",
            inv.export,
            core_sig(&ty),
            ty.params().len(),
            texts.len()
        ))
        .into());
    }
    let mut params = Vec::new();
    for (i, (text, pty)) in texts.iter().zip(ty.params()).enumerate() {
        let bad = || {
            WharfError::Usage(format!(
                "argument {} of `{}`: `{text}` is not a valid {pty}",
                i + 1,
                inv.export
            ))
        };
        let v = match pty {
            ValType::I32 => CoreVal::I32(
                parse_int(text)
                    .and_then(|v| {
                        i32::try_from(v)
                            .ok()
                            .or_else(|| u32::try_from(v).ok().map(|u| u as i32))
                    })
                    .ok_or_else(bad)?,
            ),
            ValType::I64 => CoreVal::I64(
                parse_int(text)
                    .and_then(|v| {
                        i64::try_from(v)
                            .ok()
                            .or_else(|| u64::try_from(v).ok().map(|u| u as i64))
                    })
                    .ok_or_else(bad)?,
            ),
            ValType::F32 => CoreVal::F32(text.parse::<f32>().map_err(|_| bad())?.to_bits()),
            ValType::F64 => CoreVal::F64(text.parse::<f64>().map_err(|_| bad())?.to_bits()),
            other => {
                return Err(WharfError::Usage(format!(
                    "argument {} of `{}` has type {other}, which --invoke cannot pass to a core \
                     module; only i32, i64, f32 and f64 are supported",
                    i + 1,
                    inv.export
                ))
                .into());
            }
        };
        params.push(v);
    }
    let mut results = vec![CoreVal::I32(0); ty.results().len()];
    with_deadline(limits, func.call_async(&mut *store, &params, &mut results)).await?;
    Ok(results
        .iter()
        .map(|v| match v {
            CoreVal::I32(x) => x.to_string(),
            CoreVal::I64(x) => x.to_string(),
            CoreVal::F32(x) => f32::from_bits(*x).to_string(),
            CoreVal::F64(x) => f64::from_bits(*x).to_string(),
            other => format!("{other:?}"),
        })
        .collect())
}

fn parse_int(text: &str) -> Option<i128> {
    let (neg, digits) = match text.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, text),
    };
    let v = match digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        Some(hex) => i128::from_str_radix(hex, 16).ok()?,
        None => digits.replace('_', "").parse::<i128>().ok()?,
    };
    Some(if neg { -v } else { v })
}

async fn run_component(
    engine: &WharfEngine,
    loaded: &LoadedProgram,
    component: &component::Component,
    mut wasi: WasiCtxBuilder,
    opts: &RunOptions,
) -> RunReport {
    let mut timings = Timings::default();
    let data = P2Data {
        ctx: wasi.build(),
        table: ResourceTable::new(),
        limiter: TotalMemoryLimiter::new(opts.limits.max_memory),
        deadline: opts.limits.timeout.and_then(crate::limits::deadline_after),
    };
    let mut store = match limited_store(engine, data, &opts.limits) {
        Ok(s) => s,
        Err(e) => return report(loaded, &timings, None, 0, Err(e)),
    };
    let mut linker = component::Linker::<P2Data>::new(engine.engine());
    // WASI 0.2 and 0.3 side by side: a 0.3 command (or a component built by Rust's
    // wasip2 target, whose standard library imports 0.2) finds both.
    if let Err(e) = wasmtime_wasi::p2::add_to_linker_async(&mut linker)
        .and_then(|()| wasmtime_wasi::p3::add_to_linker(&mut linker))
    {
        return finish(loaded, &mut store, &timings, opts, Err(e), |d| &d.limiter);
    }
    let result: wasmtime::Result<RunOutput> = async {
        let pre = linker
            .instantiate_pre(component)
            .map_err(|e| Phase::Link.tag(e))?;
        match &opts.invoke {
            // A WASI 0.3 command: `wasi:cli/run@0.3.0`, an async export, called in the
            // store's event loop.
            None if let Ok(cmd) = wasmtime_wasi::p3::bindings::CommandPre::new(pre.clone()) => {
                let t = Instant::now();
                let cmd = with_deadline(&opts.limits, cmd.instantiate_async(&mut store))
                    .await
                    .map_err(|e| Phase::Instantiate.tag(e))?;
                timings.instantiate = t.elapsed();
                let t = Instant::now();
                let r = with_deadline(
                    &opts.limits,
                    store.run_concurrent(async |accessor| {
                        cmd.wasi_cli_run().call_run(accessor).await
                    }),
                )
                .await;
                timings.run = t.elapsed();
                match r.and_then(|inner| inner) {
                    Ok(Ok(())) => Ok(RunOutput::Exit(0)),
                    Ok(Err(())) => Ok(RunOutput::Exit(1)),
                    Err(e) => match e.downcast_ref::<I32Exit>() {
                        Some(exit) => Ok(RunOutput::Exit(exit.0)),
                        None => Err(e),
                    },
                }
            }
            None => {
                let cmd = wasmtime_wasi::p2::bindings::CommandPre::new(pre).map_err(|_| {
                    wasmtime::Error::from(WharfError::Usage(format!(
                        "`{}` is a component that does not export `wasi:cli/run`, so it is not a \
                         command; call one of its exports with --invoke: {}",
                        loaded.path.display(),
                        describe_exports(&component_exports(engine.engine(), component))
                    )))
                })?;
                let t = Instant::now();
                let cmd = with_deadline(&opts.limits, cmd.instantiate_async(&mut store))
                    .await
                    .map_err(|e| Phase::Instantiate.tag(e))?;
                timings.instantiate = t.elapsed();
                let t = Instant::now();
                let r = with_deadline(&opts.limits, cmd.wasi_cli_run().call_run(&mut store)).await;
                timings.run = t.elapsed();
                match r {
                    Ok(Ok(())) => Ok(RunOutput::Exit(0)),
                    Ok(Err(())) => Ok(RunOutput::Exit(1)),
                    Err(e) => match e.downcast_ref::<I32Exit>() {
                        Some(exit) => Ok(RunOutput::Exit(exit.0)),
                        None => Err(e),
                    },
                }
            }
            Some(inv) => {
                let t = Instant::now();
                let instance = with_deadline(&opts.limits, pre.instantiate_async(&mut store))
                    .await
                    .map_err(|e| Phase::Instantiate.tag(e))?;
                timings.instantiate = t.elapsed();
                let exports = component_exports(engine.engine(), component);
                let export = find_export(&exports, &inv.export)
                    .map_err(|e| WharfError::Usage(e.to_string()))?;
                let func = export_index(component, export)
                    .and_then(|idx| instance.get_func(&mut store, idx))
                    .ok_or_else(|| {
                        WharfError::Internal(anyhow::anyhow!(
                            "export `{}` is listed in the component's type but the instance \
                             has no such function",
                            export.name
                        ))
                    })?;
                let param_types: Vec<component::Type> =
                    export.params.iter().map(|(_, t)| t.clone()).collect();
                let call_text = format!("f{}", inv.args);
                let call = component::wasm_wave::untyped::UntypedFuncCall::parse(&call_text)
                    .map_err(|e| {
                        WharfError::Usage(format!("--invoke arguments `{}`: {e}", inv.args))
                    })?;
                let params: Vec<Val> = call.to_wasm_params(param_types.iter()).map_err(|e| {
                    WharfError::Usage(format!(
                        "--invoke `{}{}`: {e}; the export's signature is `{}`",
                        inv.export, inv.args, export.signature
                    ))
                })?;
                let mut results = vec![Val::Bool(false); export.results.len()];
                let t = Instant::now();
                let r = with_deadline(
                    &opts.limits,
                    func.call_async(&mut store, &params, &mut results),
                )
                .await;
                timings.run = t.elapsed();
                r?;
                let mut out = Vec::new();
                for v in &results {
                    out.push(component::wasm_wave::to_string(v).map_err(|e| {
                        WharfError::Internal(anyhow::anyhow!("printing the result as WAVE: {e}"))
                    })?);
                }
                Ok(RunOutput::Values(out))
            }
        }
    }
    .await;
    finish(loaded, &mut store, &timings, opts, result, |d| &d.limiter)
}

/// Which step an error came from, so that link errors and instantiation failures can be
/// told apart from traps while running.
#[derive(Debug, Clone, Copy)]
enum Phase {
    Link,
    Instantiate,
}

#[derive(Debug)]
struct PhaseError(Phase);

impl std::fmt::Display for PhaseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Phase::Link => f.write_str("while linking"),
            Phase::Instantiate => f.write_str("while instantiating"),
        }
    }
}

impl Phase {
    fn tag(self, e: wasmtime::Error) -> wasmtime::Error {
        e.context(PhaseError(self))
    }
}

fn finish<T>(
    loaded: &LoadedProgram,
    store: &mut Store<T>,
    timings: &Timings,
    opts: &RunOptions,
    result: wasmtime::Result<RunOutput>,
    limiter: fn(&T) -> &TotalMemoryLimiter,
) -> RunReport {
    let fuel = opts.limits.fuel.and_then(|granted| {
        store
            .get_fuel()
            .ok()
            .map(|left| granted.saturating_sub(left))
    });
    let lim = limiter(store.data());
    let peak = lim.peak();
    let hit_cap = lim.hit_cap();
    let outcome = result.map_err(|e| classify_failure(e, loaded, opts, hit_cap));
    report(loaded, timings, fuel, peak, outcome)
}

fn classify_failure(
    e: wasmtime::Error,
    loaded: &LoadedProgram,
    opts: &RunOptions,
    hit_cap: bool,
) -> WharfError {
    // Our own typed errors (usage errors raised inside the run) pass through.
    let e = match e.downcast::<WharfError>() {
        Ok(w) => return w,
        Err(e) => e,
    };
    let cx = FailureContext {
        timeout: opts.limits.timeout,
        max_memory: opts.limits.max_memory,
        fuel: opts.limits.fuel,
        hit_cap,
        instantiating: e.downcast_ref::<PhaseError>().is_some(),
    };
    match failure::classify(&e, &cx) {
        // A host-side failure: keep the error itself, with its whole chain.
        failure::GuestFailure::Host { .. } => WharfError::Internal(e.into()),
        f => WharfError::from_failure(f, &loaded.path),
    }
}

fn report(
    loaded: &LoadedProgram,
    t: &Timings,
    fuel: Option<u64>,
    peak: u64,
    outcome: Result<RunOutput, WharfError>,
) -> RunReport {
    let (exit_code, exit_status) = match &outcome {
        Ok(RunOutput::Exit(c)) => (*c, "exit".to_string()),
        Ok(RunOutput::Values(_)) => (0, "returned".to_string()),
        Err(e) => (e.exit_code(), e.kind().to_string()),
    };
    RunReport {
        stats: RunStats {
            load_method: loaded.method,
            load_us: loaded.load_time.as_micros() as u64,
            instantiate_us: t.instantiate.as_micros() as u64,
            run_us: t.run.as_micros() as u64,
            fuel_consumed: fuel,
            peak_memory_bytes: peak,
            exit_code,
            exit_status,
        },
        outcome,
    }
}
