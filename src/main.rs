//! The `wharf` command line. Each subcommand lives in `commands/` as a clap struct with
//! one `async fn execute(self) -> Result<(), CliError>`; the work itself is done by the
//! library crates (`wharf-engine`, ...), so this binary stays thin. `main` builds the
//! process's one async runtime, runs the subcommand on it, and prints its error once
//! (`error: MESSAGE`) before exiting with the error's code.

mod client;
mod commands;
mod error;

use clap::Parser;

/// Wharf: run WebAssembly programs, services, plugins and stream transforms.
#[derive(Parser)]
#[command(name = "wharf", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: commands::Command,
}

fn main() {
    let cli = Cli::parse();
    // A server logs each request by default; one-shot commands only warnings, so that a
    // guest's own stderr stays clean. WHARF_LOG (e.g. `debug`, `wharf_http=trace`)
    // overrides either.
    let default = match cli.command {
        commands::Command::Serve(_) => "info",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WHARF_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
    let result = match cli.command {
        // The compile worker caps its own address space (RLIMIT_AS) to bound the
        // compiler; it runs alone, without a runtime's threads in that space.
        commands::Command::CompileWorker(worker) => worker.execute(),
        command => runtime(&command).and_then(|rt| rt.block_on(command.execute())),
    };
    if let Err(e) = result {
        if let Some(message) = e.message() {
            eprintln!("error: {message}");
        }
        std::process::exit(e.code());
    }
}

/// Makes glibc give large freed blocks back to the system. By default its mmap
/// threshold rises (up to 32 MiB) each time a large block is freed, after which such
/// blocks come from the heap and stay resident: a burst of big request bodies or WAGI
/// outputs would keep the server's RSS high long after. A fixed threshold of 1 MiB
/// keeps every block of 1 MiB or more in its own mapping, unmapped when freed.
fn return_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only changes allocator parameters; it is called before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

/// The process's one async runtime: the server's is multi-threaded, every other command
/// does one thing at a time on the main thread.
fn runtime(command: &commands::Command) -> Result<tokio::runtime::Runtime, error::CliError> {
    let mut builder = match command {
        commands::Command::Serve(_) => {
            return_freed_memory();
            tokio::runtime::Builder::new_multi_thread()
        }
        _ => tokio::runtime::Builder::new_current_thread(),
    };
    builder.enable_all().build().map_err(|e| {
        error::CliError::new(
            wharf_engine::error::EXIT_INTERNAL,
            format!("starting the async runtime: {e}"),
        )
    })
}
