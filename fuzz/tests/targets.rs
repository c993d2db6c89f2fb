//! A short, deterministic pass of every target (the corpus, with its regression
//! inputs, then seeded mutations), so `cargo test` catches a regression;
//! `scripts/fuzz` runs them for longer.

use wharf_fuzz::{Budget, bundle_read, bundle_seeds, manifest_parse, manifest_seeds, run};

fn iterations() -> u64 {
    std::env::var("WHARF_FUZZ_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
}

#[test]
fn bundle_read_survives_its_corpus_and_mutations() {
    run(
        "bundle_read",
        bundle_read,
        bundle_seeds(),
        1,
        Budget::Iterations(iterations()),
    );
}

#[test]
fn manifest_parse_survives_its_corpus_and_mutations() {
    run(
        "manifest_parse",
        manifest_parse,
        manifest_seeds(),
        1,
        Budget::Iterations(iterations()),
    );
}
