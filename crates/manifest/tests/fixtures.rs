//! Runs every `testdata/*.toml` through `parse_manifest` and checks it against
//! its sibling `*.expected`, which is either
//!
//! ```text
//! ok
//! { ...the manifest serialized as JSON... }
//! ```
//!
//! or a single line `error: <text the error message must contain>`.

use std::fs;
use std::path::{Path, PathBuf};

use wharf_manifest::parse_manifest;

/// Read when the test runs (cargo sets it for test binaries), not baked in when it is
/// built: a binary built in another checkout of the repo (a shared target directory)
/// must still find this checkout's files.
fn testdata() -> PathBuf {
    let dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    dir.join("testdata")
}

fn files_with_extension(ext: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(testdata())
        .expect("testdata directory exists")
        .map(|entry| entry.expect("readable directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == ext))
        .collect();
    files.sort();
    files
}

fn check(input: &Path) -> Result<(), String> {
    let expected_path = input.with_extension("expected");
    let expected = fs::read_to_string(&expected_path)
        .map_err(|e| format!("cannot read {}: {e}", expected_path.display()))?;
    let text = fs::read_to_string(input).expect("readable fixture");
    let outcome = parse_manifest(&text);

    if let Some(json) = expected.strip_prefix("ok\n") {
        let want: serde_json::Value =
            serde_json::from_str(json).map_err(|e| format!("bad JSON in .expected: {e}"))?;
        let manifest = outcome.map_err(|e| format!("expected ok, got error:\n{e}"))?;
        let got = serde_json::to_value(&manifest).expect("manifest serializes");
        if got != want {
            // `WHARF_BLESS=1 cargo test -p wharf-manifest` rewrites the expected output
            // after a deliberate schema change; review the diff before committing.
            if std::env::var_os("WHARF_BLESS").is_some() {
                let pretty = serde_json::to_string_pretty(&got).expect("JSON value serializes");
                fs::write(&expected_path, format!("ok\n{pretty}\n")).expect("bless");
                return Ok(());
            }
            return Err(format!(
                "manifest differs; got:\n{}",
                serde_json::to_string_pretty(&got).expect("JSON value serializes")
            ));
        }
        Ok(())
    } else if let Some(needle) = expected.strip_prefix("error: ") {
        let needle = needle.trim_end_matches('\n');
        match outcome {
            Ok(m) => Err(format!(
                "expected an error containing {needle:?}, got {m:?}"
            )),
            Err(e) if e.to_string().contains(needle) => Ok(()),
            Err(e) => Err(format!("error does not contain {needle:?}:\n{e}")),
        }
    } else {
        Err("the .expected file must start with \"ok\\n\" or \"error: \"".into())
    }
}

#[test]
fn every_fixture_matches_its_expected_outcome() {
    let inputs = files_with_extension("toml");
    // Guards against the walk silently finding nothing (e.g. a moved directory).
    assert!(inputs.len() >= 15, "only {} fixtures found", inputs.len());

    let failures: Vec<String> = inputs
        .iter()
        .filter_map(|input| {
            check(input)
                .err()
                .map(|why| format!("{}: {why}", input.file_name().unwrap().to_string_lossy()))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} fixtures failed:\n\n{}",
        failures.len(),
        inputs.len(),
        failures.join("\n\n")
    );
}

#[test]
fn every_expected_file_has_an_input() {
    for expected in files_with_extension("expected") {
        assert!(
            expected.with_extension("toml").exists(),
            "{} has no matching .toml",
            expected.display()
        );
    }
}
