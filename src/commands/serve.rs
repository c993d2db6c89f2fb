//! `wharf serve`: host many HTTP apps in one process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use wharf_engine::WharfEngine;
use wharf_engine::config::{AllocatorChoice, EngineOptions};
use wharf_http::{DataPlane, ServerLimits};
use wharf_runtime::{Metrics, Runtime, RuntimeConfig};

use super::{CompileBounds, parse_duration, parse_size};
use crate::error::CliError;

/// Serve HTTP apps: many `wasi:http/proxy` components in one process, deployed,
/// replaced and removed live through the admin API (`wharf deploy`, `wharf apps`).
///
/// Each request runs in a fresh sandbox with the component's memory cap, deadline and
/// body cap; a guest that traps, loops or balloons gets a 500/503 while every other app
/// keeps serving. Apps are stored in the state directory and restored on restart.
/// The admin API is on its own listener and needs the bearer token stored in
/// STATE_DIR/admin-token (created on first start, mode 0600).
///
/// Example:
///   wharf serve --listen 127.0.0.1:8080 --admin-listen 127.0.0.1:9090
///   wharf deploy examples/http-hello && curl http://127.0.0.1:8080/hello
#[derive(Args)]
pub struct ServeCommand {
    /// Address of the data plane (the apps).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Address of the admin API.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9090")]
    admin_listen: SocketAddr,
    /// Where apps, blobs, compiled artifacts and the admin token are kept
    /// [default: $XDG_DATA_HOME/wharf or ~/.local/share/wharf].
    #[arg(long, value_name = "DIR", env = "WHARF_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Where `wasi:keyvalue` data lives: `embedded` (a SQLite file in the state
    /// directory, the default) or a Redis URL (`redis://host:6379`) shared by many nodes.
    #[arg(long, value_name = "embedded|URL", default_value = "embedded")]
    key_value: String,
    /// A TOML file of values for apps' [variables]: `name = "value"` for every app, or
    /// under an `[app-name]` table for one app. Read at every deploy and restart;
    /// WHARF_VAR_<APP>__<NAME> (two underscores) in the environment works too.
    #[arg(long, value_name = "FILE")]
    secrets_file: Option<PathBuf>,
    /// Let manifests grant outbound requests to private, loopback and link-local
    /// addresses, and then only as IP literals in `allowed_outbound_hosts` (never
    /// through a name). Off by default: guests reach only public addresses.
    #[arg(long)]
    allow_private_outbound: bool,
    /// CPU lanes for guests that run longer than a 2 ms slice: at most N such guests
    /// run at once, shared fairly between apps, so a spinning app cannot starve the
    /// others. Default: one fewer than the worker threads (at least 1), which keeps a
    /// core for I/O and short requests.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=4096))]
    cpu_lanes: Option<u32>,
    /// Read the admin token from FILE instead of STATE_DIR/admin-token.
    #[arg(long, value_name = "FILE")]
    admin_token_file: Option<PathBuf>,
    /// Default memory cap per request (all linear memories together).
    #[arg(long, value_name = "SIZE", default_value = "128MiB", value_parser = parse_size)]
    max_memory: u64,
    /// Default wall-clock deadline per request.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    timeout: Duration,
    /// Default request-body cap.
    #[arg(long, value_name = "SIZE", default_value = "10MiB", value_parser = parse_size)]
    max_body: u64,
    /// Default cap on concurrent requests per component [default: a quarter of
    /// --pool-instances, so no one component takes the whole pool].
    #[arg(long, value_name = "N")]
    max_concurrency: Option<u32>,
    /// Most memory a manifest may give a component (`limits.memory`); a deploy asking
    /// for more is refused.
    #[arg(long, value_name = "SIZE", default_value = "1GiB", value_parser = parse_size)]
    ceiling_memory: u64,
    /// Longest `limits.timeout` a manifest may ask for.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    ceiling_timeout: Duration,
    /// Largest `limits.max_body` a manifest may ask for.
    #[arg(long, value_name = "SIZE", default_value = "100MiB", value_parser = parse_size)]
    ceiling_max_body: u64,
    /// Largest `limits.max_concurrency` a manifest may ask for [default: half of
    /// --pool-instances].
    #[arg(long, value_name = "N")]
    ceiling_concurrency: Option<u32>,
    /// Cap on open connections; more are answered 503 and closed.
    #[arg(long, value_name = "N", default_value_t = 4096)]
    max_connections: usize,
    /// Cap on requests in flight across all apps; more get 503.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    max_in_flight: usize,
    /// On SIGTERM/SIGINT, how long to let in-flight requests finish.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    shutdown_grace: Duration,
    /// How long a client has to send a complete request head (both listeners), from
    /// when the server starts waiting for it: a new connection, or the end of the
    /// previous response on a keep-alive connection.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    header_timeout: Duration,
    /// Close a connection (either listener) after this long with no request in
    /// progress and no byte received.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    idle_timeout: Duration,
    /// Largest app bundle accepted by the admin API.
    #[arg(long, value_name = "SIZE", default_value = "256MiB", value_parser = parse_size)]
    max_bundle_size: u64,
    #[command(flatten)]
    compile: CompileBounds,
    /// Instance slots in the pooling allocator (also caps live instances).
    #[arg(long, value_name = "N", default_value_t = wharf_engine::config::DEFAULT_SERVER_POOL_INSTANCES)]
    pool_instances: u32,
    /// Bytes of each freed instance's memory kept resident and reset in place, which
    /// avoids a syscall and cross-CPU TLB flushes per request (costs up to this much
    /// memory per warm pool slot, at most 100 slots).
    #[arg(long, value_name = "SIZE", default_value = "2MiB", value_parser = parse_size, hide_short_help = true)]
    pool_keep_resident: u64,
    /// Do not use Linux's PAGEMAP_SCAN (6.7+) to reset only the pages a guest dirtied.
    #[arg(long, hide_short_help = true)]
    no_pagemap_scan: bool,
}

/// The default state directory.
pub fn default_state_dir() -> Option<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(x).join("wharf"));
    }
    std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .map(|h| PathBuf::from(h).join(".local").join("share").join("wharf"))
}

impl ServeCommand {
    /// Runs the server until SIGTERM/SIGINT (on a multi-threaded runtime, see `main`).
    pub async fn execute(self) -> Result<(), CliError> {
        Ok(self.serve().await?)
    }

    async fn serve(self) -> anyhow::Result<()> {
        use anyhow::Context;
        let state_dir = self
            .state_dir
            .clone()
            .or_else(default_state_dir)
            .context("no state directory: pass --state-dir (or set HOME)")?;
        create_private_dir(&state_dir)?;
        let _lock = lock_state_dir(&state_dir)?;
        let registry = wharf_registry::SqliteRegistry::open(&state_dir.join("registry"))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let token_path = self
            .admin_token_file
            .clone()
            .unwrap_or_else(|| state_dir.join("admin-token"));
        let token = wharf_admin::AdminToken::load_or_create(&token_path)?;

        let engine = WharfEngine::new(&EngineOptions {
            allocator: AllocatorChoice::Auto,
            pool_instances: self.pool_instances,
            pool_keep_resident: usize::try_from(self.pool_keep_resident).unwrap_or(usize::MAX),
            pool_pagemap_scan: !self.no_pagemap_scan,
            ..EngineOptions::default()
        })?;
        tracing::info!("engine: {:?} allocator", engine.allocator());
        let mut config = RuntimeConfig::new(state_dir.clone());
        config.default_memory = self.max_memory;
        config.default_timeout = self.timeout;
        config.default_max_body = self.max_body;
        config.ceiling_memory = self.ceiling_memory;
        config.ceiling_timeout = self.ceiling_timeout;
        config.ceiling_max_body = self.ceiling_max_body;
        config.ceiling_concurrency = self
            .ceiling_concurrency
            .unwrap_or((self.pool_instances / 2).max(1));
        config.default_max_concurrency = self
            .max_concurrency
            .unwrap_or_else(|| wharf_runtime::fair_share(self.pool_instances));
        for (flag, default, ceiling_flag, ceiling) in [
            (
                "--max-memory",
                self.max_memory,
                "--ceiling-memory",
                self.ceiling_memory,
            ),
            (
                "--max-body",
                self.max_body,
                "--ceiling-max-body",
                self.ceiling_max_body,
            ),
            (
                "--max-concurrency",
                u64::from(config.default_max_concurrency),
                "--ceiling-concurrency",
                u64::from(config.ceiling_concurrency),
            ),
        ] {
            anyhow::ensure!(
                default <= ceiling,
                "{flag} {default} is above its ceiling {ceiling_flag} {ceiling}"
            );
        }
        anyhow::ensure!(
            self.timeout <= self.ceiling_timeout,
            "--timeout {:?} is above its ceiling --ceiling-timeout {:?}",
            self.timeout,
            self.ceiling_timeout
        );
        config.max_bundle = self.max_bundle_size;
        config.compiler = self.compile.compiler()?;
        if let Some(f) = &self.secrets_file {
            // Checked now so that a typo is reported at start, not at the first deploy.
            wharf_host_config::read_secrets(f)
                .map_err(|e| anyhow::anyhow!("--secrets-file: {e}"))?;
        }
        config.secrets_file = self.secrets_file.clone();
        config.allow_private_outbound = self.allow_private_outbound;
        config.cpu_lanes = self.cpu_lanes.map(|n| n as usize);
        let kv: Arc<dyn wharf_host_keyvalue::KvBackend> = if self.key_value == "embedded" {
            Arc::new(
                wharf_host_keyvalue::SqliteKv::open(&state_dir.join("kv.db"))
                    .map_err(|e| anyhow::anyhow!("opening the embedded key-value store: {e}"))?,
            )
        } else if self.key_value.starts_with("redis://") || self.key_value.starts_with("rediss://")
        {
            Arc::new(
                wharf_host_keyvalue::RedisKv::connect(&self.key_value)
                    .await
                    .map_err(|e| {
                        anyhow::anyhow!(
                            "--key-value {}: {e}",
                            wharf_host_keyvalue::redact_url(&self.key_value)
                        )
                    })?,
            )
        } else {
            anyhow::bail!(
                "--key-value `{}`: use `embedded` or a Redis URL such as redis://127.0.0.1:6379",
                wharf_host_keyvalue::redact_url(&self.key_value)
            );
        };
        let metrics = Arc::new(Metrics::new());
        let host = Arc::new(Runtime::new(
            engine,
            Arc::new(registry),
            wharf_host::Services { kv: Some(kv) },
            config,
            metrics,
        )?);
        // Every connection is a file descriptor: raise the soft limit to the hard one,
        // and keep the connection cap below it with room for files, SQLite and pipes.
        let nofile = wharf_http::server::raise_nofile_limit();
        let max_connections = wharf_http::server::clamp_connections(
            self.max_connections,
            nofile,
            wharf_http::server::DEFAULT_ADMIN_CONNECTIONS,
        );
        if max_connections < self.max_connections {
            tracing::warn!(
                "--max-connections {} lowered to {max_connections}: the open-file limit is {nofile} (raise it with `ulimit -n`)",
                self.max_connections
            );
        }
        // The HTTP trigger plugs in before anything can change the apps, so it sees
        // every change (restore included) and checks every deploy's routes.
        let plane = DataPlane::new(
            host.clone(),
            ServerLimits {
                max_connections,
                max_in_flight: self.max_in_flight,
                shutdown_grace: self.shutdown_grace,
                header_timeout: self.header_timeout,
                idle_timeout: self.idle_timeout,
            },
        );

        // Bind both sockets before anything else can fail late, so that a port in use
        // is reported at once.
        let data = tokio::net::TcpListener::bind(self.listen)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on {} (--listen); is the port in use?",
                    self.listen
                )
            })?;
        let admin = tokio::net::TcpListener::bind(self.admin_listen)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on {} (--admin-listen); is the port in use?",
                    self.admin_listen
                )
            })?;
        let data_addr = data.local_addr()?;
        let admin_addr = admin.local_addr()?;

        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let admin_api = wharf_admin::Admin::with_limits(
            host.clone(),
            token,
            wharf_http::server::ConnLimits {
                header_timeout: self.header_timeout,
                idle_timeout: self.idle_timeout,
                ..wharf_http::server::ConnLimits::admin()
            },
        );
        let admin_task = tokio::spawn(admin_api.clone().serve(admin, stopped(stop_rx.clone())));

        let failed = host.restore().await;
        for (app, why) in &failed {
            eprintln!("warning: app `{app}` was not restored: {why}");
        }
        admin_api.set_ready();
        let data_task = tokio::spawn(plane.serve(data, stopped(stop_rx.clone())));
        println!("wharf serve: data plane on http://{data_addr}");
        println!(
            "wharf serve: admin API on http://{admin_addr} (token in {})",
            token_path.display()
        );
        println!(
            "wharf serve: {} app(s) restored from {}",
            host.apps().len(),
            state_dir.display()
        );

        shutdown_signal().await;
        eprintln!("wharf serve: shutting down; letting in-flight requests finish");
        let _ = stop_tx.send(true);
        let _ = data_task.await;
        let _ = admin_task.await;
        eprintln!("wharf serve: stopped");
        Ok(())
    }
}

fn create_private_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| {
                anyhow::anyhow!("cannot create state directory `{}`: {e}", dir.display())
            })?;
    }
    // It holds the admin token, the artifact key, key-value data and secrets' effects:
    // an existing directory that others can enter is tightened (or refused if it is
    // not ours to tighten).
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let md = std::fs::metadata(dir)
        .map_err(|e| anyhow::anyhow!("cannot read state directory `{}`: {e}", dir.display()))?;
    if md.mode() & 0o077 != 0 {
        if md.uid() != rustix::process::geteuid().as_raw() {
            anyhow::bail!(
                "state directory `{}` is accessible to other users (mode {:o}) and belongs to another user; use a private directory (--state-dir)",
                dir.display(),
                md.mode() & 0o777
            );
        }
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(|e| {
            anyhow::anyhow!(
                "cannot make state directory `{}` private (chmod 700): {e}",
                dir.display()
            )
        })?;
        tracing::warn!(
            "state directory `{}` was accessible to other users (mode {:o}); set it to 0700",
            dir.display(),
            md.mode() & 0o777
        );
    }
    Ok(())
}

/// Holds an exclusive lock on STATE_DIR/server.lock for the life of the server, so a
/// second server on the same state directory is refused at start instead of sharing it.
fn lock_state_dir(dir: &std::path::Path) -> anyhow::Result<std::fs::File> {
    let path = dir.join("server.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| anyhow::anyhow!("cannot open `{}`: {e}", path.display()))?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(|_| {
        anyhow::anyhow!(
            "another wharf serve is using the state directory `{}`; stop it, or pass a different --state-dir",
            dir.display()
        )
    })?;
    Ok(file)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}
