//! `wharf deploy`: upload an app (its wharf.toml and .wasm files) to a server.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use http::{Method, StatusCode};

use wharf_admin::api::AppInfo;

use crate::client::{ServerArgs, error_message, parse_reply};
use crate::error::CliError;

/// Deploy an app, or replace the running version, without restarting the server.
///
/// Reads DIR/wharf.toml (or the manifest file given), checks it, bundles it with the
/// .wasm files it names, and uploads the bundle; the server compiles and swaps it in,
/// and requests already running finish on the old version.
///
/// Example:
///   wharf deploy examples/http-hello
#[derive(Args)]
pub struct DeployCommand {
    /// The app directory holding wharf.toml, or the manifest file itself.
    #[arg(value_name = "DIR|wharf.toml", default_value = ".")]
    path: PathBuf,
    #[command(flatten)]
    server: ServerArgs,
    /// Print the deployed app as JSON on stdout.
    #[arg(long)]
    json: bool,
}

/// Adds every regular file below `root` to the bundle as `prefix/relative/path`.
/// Symbolic links are refused: a bundle carries regular files only, so nothing in it
/// can point outside the app.
fn add_tree(
    root: &std::path::Path,
    prefix: &str,
    files: &mut BTreeMap<String, Vec<u8>>,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let mut stack = vec![(root.to_path_buf(), prefix.to_string())];
    while let Some((dir, bundle_path)) = stack.pop() {
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("reading `{}`", dir.display()))?
        {
            let entry = entry?;
            let kind = entry.file_type()?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = format!("{bundle_path}/{name}");
            if kind.is_symlink() {
                anyhow::bail!(
                    "`{}` is a symbolic link; mounted directories may hold only regular files and directories",
                    entry.path().display()
                );
            } else if kind.is_dir() {
                stack.push((entry.path(), path));
            } else if kind.is_file() {
                files.insert(
                    path,
                    std::fs::read(entry.path())
                        .with_context(|| format!("reading `{}`", entry.path().display()))?,
                );
            }
        }
    }
    Ok(())
}

impl DeployCommand {
    /// Runs the command.
    pub async fn execute(self) -> Result<(), CliError> {
        Ok(self.deploy().await?)
    }

    async fn deploy(&self) -> anyhow::Result<()> {
        use anyhow::Context;
        let manifest_path = if self.path.is_dir() {
            self.path.join("wharf.toml")
        } else {
            self.path.clone()
        };
        let dir = manifest_path
            .parent()
            .map(|p| {
                if p.as_os_str().is_empty() {
                    std::path::Path::new(".")
                } else {
                    p
                }
            })
            .unwrap_or(std::path::Path::new("."))
            .to_path_buf();
        let text = std::fs::read_to_string(&manifest_path)
            .with_context(|| format!("cannot read `{}`", manifest_path.display()))?;
        let manifest = wharf_manifest::parse_manifest(&text)
            .map_err(|e| anyhow::anyhow!("`{}`: {e}", manifest_path.display()))?;
        let mut files = BTreeMap::new();
        files.insert("wharf.toml".to_string(), text.into_bytes());
        for c in &manifest.components {
            let p = dir.join(&c.source);
            let bytes = std::fs::read(&p).with_context(|| {
                format!(
                    "component `{}`: cannot read its source `{}`",
                    c.id,
                    p.display()
                )
            })?;
            files.insert(c.source.clone(), bytes);
        }
        for c in &manifest.components {
            for (i, m) in c.files.iter().enumerate() {
                let root = dir.join(&m.source);
                // A mount root reached through a symbolic link (a cloned repository's
                // `static -> ~/.ssh`) would upload whatever it points at: refuse it, as
                // links inside the tree are refused.
                let mut walked = dir.clone();
                for part in m.source.split('/') {
                    walked.push(part);
                    if std::fs::symlink_metadata(&walked)
                        .is_ok_and(|md| md.file_type().is_symlink())
                    {
                        anyhow::bail!(
                            "component `{}`: files[{i}].source `{}` goes through the symbolic link `{}`; mounted directories must be real directories next to the manifest",
                            c.id,
                            m.source,
                            walked.display()
                        );
                    }
                }
                if !root.is_dir() {
                    anyhow::bail!(
                        "component `{}`: files[{i}].source `{}` is not a directory next to the manifest",
                        c.id,
                        root.display()
                    );
                }
                add_tree(&root, &m.source, &mut files)?;
            }
        }
        let size: usize = files.values().map(Vec::len).sum();
        let tarball = wharf_runtime::bundle::Bundle::pack(&files)?;
        let name = &manifest.app.name;
        eprintln!(
            "Deploying `{name}` {} ({} file(s), {}) to {} ...",
            manifest.app.version,
            files.len(),
            wharf_engine::size::format_size(size as u64),
            self.server.server
        );
        let t = Instant::now();
        let (status, body) = self
            .server
            .request(Method::PUT, &format!("/v1/apps/{name}"), Some(tarball))
            .await?;
        if !status.is_success() {
            anyhow::bail!(
                "the server refused the deploy ({status}): {}",
                error_message(&body)
            );
        }
        if self.json {
            println!("{}", String::from_utf8_lossy(&body));
            return Ok(());
        }
        let info: AppInfo = parse_reply(&body)?;
        eprintln!(
            "{} `{name}` {} (revision {}) in {:.2}s",
            if status == StatusCode::CREATED {
                "Created"
            } else {
                "Updated"
            },
            info.version,
            info.revision,
            t.elapsed().as_secs_f64()
        );
        for c in &info.components {
            println!("  {:<16} {}", c.id, c.route.as_deref().unwrap_or(""));
        }
        Ok(())
    }
}
