//! The `wharf` command line. Each subcommand lives in `commands/` as a clap struct with
//! one `execute` method; the work itself is done by the library crates (`wharf-engine`,
//! ...), so this binary stays thin.

mod client;
mod commands;

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
    let code = cli.command.execute();
    std::process::exit(code);
}
