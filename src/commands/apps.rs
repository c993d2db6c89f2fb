//! `wharf apps`: list, show and remove the apps on a server.

use clap::{Args, Subcommand};
use http::Method;

use wharf_admin::api::{AppInfo, AppList, ComponentInfo, LogsReply, Removed};

use crate::client::{ServerArgs, error_message, parse_reply};
use crate::error::CliError;

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
    /// Remove an app; it stops receiving requests at once. Its key-value data and log
    /// buffer are kept (a later app of the same name sees them) unless --purge is given.
    Rm {
        /// App name.
        name: String,
        /// Also delete the app's key-value data (every store) and its log buffer. Works
        /// on a name that is no longer deployed, to drop an earlier app's data.
        #[arg(long)]
        purge: bool,
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
    /// Runs the command.
    pub async fn execute(self) -> Result<(), CliError> {
        Ok(self.run().await?)
    }

    async fn run(&self) -> anyhow::Result<()> {
        let (method, path) = match &self.action {
            None | Some(AppsAction::List) => (Method::GET, "/v1/apps".to_string()),
            Some(AppsAction::Show { name }) => (Method::GET, format!("/v1/apps/{name}")),
            Some(AppsAction::Rm { name, purge }) => (
                Method::DELETE,
                format!("/v1/apps/{name}{}", if *purge { "?purge=true" } else { "" }),
            ),
            Some(AppsAction::Logs { name, tail }) => {
                (Method::GET, format!("/v1/apps/{name}/logs?tail={tail}"))
            }
        };
        let (status, body) = self.server.request(method, &path, None).await?;
        if !status.is_success() {
            anyhow::bail!("{} ({status})", error_message(&body));
        }
        if self.json {
            println!("{}", String::from_utf8_lossy(&body));
            return Ok(());
        }
        match &self.action {
            None | Some(AppsAction::List) => {
                let list: AppList = parse_reply(&body)?;
                if list.apps.is_empty() {
                    println!("no apps deployed");
                    return Ok(());
                }
                println!("{:<20} {:<12} {:>4}  ROUTES", "NAME", "VERSION", "REV");
                for a in &list.apps {
                    let routes: Vec<String> = a
                        .components
                        .iter()
                        .map(|c| format!("{} ({})", route(c), c.id))
                        .collect();
                    println!(
                        "{:<20} {:<12} {:>4}  {}",
                        a.name,
                        a.version,
                        a.revision,
                        routes.join(", ")
                    );
                }
            }
            Some(AppsAction::Show { .. }) => print_app(&parse_reply(&body)?),
            Some(AppsAction::Rm { name, .. }) => {
                let reply: Removed = parse_reply(&body)?;
                match (&reply.removed, &reply.purged) {
                    (Some(app), None) => println!(
                        "removed `{}` (its key-value data is kept; `wharf apps rm {} --purge` \
                         deletes it)",
                        app.name, app.name
                    ),
                    (Some(app), Some(p)) => println!(
                        "removed `{}` and deleted its data ({} key-value key(s))",
                        app.name, p.keys
                    ),
                    (None, Some(p)) => println!(
                        "`{name}` is not deployed; deleted its data ({} key-value key(s))",
                        p.keys
                    ),
                    (None, None) => println!("`{name}` is not deployed"),
                }
            }
            Some(AppsAction::Logs { .. }) => {
                let reply: LogsReply = parse_reply(&body)?;
                for l in &reply.lines {
                    println!(
                        "[{}] {}: {}",
                        printable(&l.component),
                        printable(&l.stream),
                        printable(&l.line)
                    );
                }
            }
        }
        Ok(())
    }
}

/// A component's route, or nothing for a plugin.
fn route(c: &ComponentInfo) -> &str {
    c.route.as_deref().unwrap_or("")
}

fn print_app(a: &AppInfo) {
    println!("name:      {}", a.name);
    println!("version:   {}", a.version);
    println!("revision:  {}", a.revision);
    for c in &a.components {
        println!(
            "component: {}  route {}  source {}  memory {}  timeout {} ms  max body {}  max concurrency {}",
            c.id,
            route(c),
            c.source,
            wharf_engine::size::format_size(c.memory),
            c.timeout_ms,
            wharf_engine::size::format_size(c.max_body),
            c.max_concurrency
        );
    }
}

/// Guest-written text made safe for a terminal: control characters (escape sequences
/// that could recolour, move the cursor, retitle the window or fake other lines) are
/// shown escaped, as `\u{1b}`; tabs and printable text pass unchanged.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() && c != '\t' {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::printable;

    /// Hardening class 12: `wharf apps logs` printed guest escape sequences raw.
    #[test]
    fn guest_escape_sequences_and_newlines_are_shown_escaped() {
        assert_eq!(
            printable("\u{1b}[2J\u{1b}]0;pwned\u{7}ok\r\n[web] stdout: fake"),
            "\\u{1b}[2J\\u{1b}]0;pwned\\u{7}ok\\r\\n[web] stdout: fake"
        );
        assert_eq!(printable("tab\tand ünïcode"), "tab\tand ünïcode");
    }
}
