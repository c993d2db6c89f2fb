//! `wharf apps`: list, show and remove the apps on a server.

use clap::{Args, Subcommand};
use http::Method;

use crate::client::{ServerArgs, error_message};

/// List the apps on a server, show one, or remove one.
///
/// Examples:
///   wharf apps
///   wharf apps show shop
///   wharf apps rm shop
///   wharf apps logs shop --tail 20
#[derive(Args)]
pub struct AppsCommand {
    #[command(subcommand)]
    action: Option<AppsAction>,
    #[command(flatten)]
    server: ServerArgs,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
enum AppsAction {
    /// List apps (the default).
    List,
    /// Show one app.
    Show {
        /// App name.
        name: String,
    },
    /// Remove an app; it stops receiving requests at once.
    Rm {
        /// App name.
        name: String,
    },
    /// Print an app's captured guest output (stdout and stderr).
    Logs {
        /// App name.
        name: String,
        /// How many of the latest lines.
        #[arg(long, default_value_t = 100)]
        tail: usize,
    },
}

impl AppsCommand {
    /// Runs the command; returns the exit code.
    pub fn execute(self) -> i32 {
        match self.run() {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("error: {e:#}");
                1
            }
        }
    }

    fn run(&self) -> anyhow::Result<()> {
        let (method, path) = match &self.action {
            None | Some(AppsAction::List) => (Method::GET, "/v1/apps".to_string()),
            Some(AppsAction::Show { name }) => (Method::GET, format!("/v1/apps/{name}")),
            Some(AppsAction::Rm { name }) => (Method::DELETE, format!("/v1/apps/{name}")),
            Some(AppsAction::Logs { name, tail }) => {
                (Method::GET, format!("/v1/apps/{name}/logs?tail={tail}"))
            }
        };
        let (status, body) = self.server.request(method, &path, None)?;
        if !status.is_success() {
            anyhow::bail!("{} ({status})", error_message(&body));
        }
        if self.json {
            println!("{}", String::from_utf8_lossy(&body));
            return Ok(());
        }
        let v: serde_json::Value = serde_json::from_slice(&body)?;
        match &self.action {
            None | Some(AppsAction::List) => {
                let apps = v["apps"].as_array().cloned().unwrap_or_default();
                if apps.is_empty() {
                    println!("no apps deployed");
                    return Ok(());
                }
                println!("{:<20} {:<12} {:>4}  ROUTES", "NAME", "VERSION", "REV");
                for a in apps {
                    let routes: Vec<String> = a["components"]
                        .as_array()
                        .map(|cs| {
                            cs.iter()
                                .map(|c| {
                                    format!(
                                        "{} ({})",
                                        c["route"].as_str().unwrap_or(""),
                                        c["id"].as_str().unwrap_or("")
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    println!(
                        "{:<20} {:<12} {:>4}  {}",
                        a["name"].as_str().unwrap_or(""),
                        a["version"].as_str().unwrap_or(""),
                        a["revision"].as_u64().unwrap_or(0),
                        routes.join(", ")
                    );
                }
            }
            Some(AppsAction::Show { .. }) => print_app(&v),
            Some(AppsAction::Rm { name }) => println!("removed `{name}`"),
            Some(AppsAction::Logs { .. }) => {
                for l in v["lines"].as_array().cloned().unwrap_or_default() {
                    println!(
                        "[{}] {}: {}",
                        l["component"].as_str().unwrap_or(""),
                        l["stream"].as_str().unwrap_or(""),
                        l["line"].as_str().unwrap_or("")
                    );
                }
            }
        }
        Ok(())
    }
}

fn print_app(a: &serde_json::Value) {
    println!("name:      {}", a["name"].as_str().unwrap_or(""));
    println!("version:   {}", a["version"].as_str().unwrap_or(""));
    println!("revision:  {}", a["revision"]);
    for c in a["components"].as_array().cloned().unwrap_or_default() {
        println!(
            "component: {}  route {}  source {}  memory {}  timeout {} ms  max body {}  max concurrency {}",
            c["id"].as_str().unwrap_or(""),
            c["route"].as_str().unwrap_or(""),
            c["source"].as_str().unwrap_or(""),
            wharf_engine::size::format_size(c["memory"].as_u64().unwrap_or(0)),
            c["timeout_ms"],
            wharf_engine::size::format_size(c["max_body"].as_u64().unwrap_or(0)),
            c["max_concurrency"]
        );
    }
}
