//! A short, deterministic pass of every target (the corpus, with its regression
//! inputs, then seeded mutations), so `cargo test` catches a regression;
//! `scripts/fuzz` runs them for longer.

use wharf_fuzz::{
    Budget, bundle_read, bundle_seeds, host_strings, host_strings_seeds, json_wit, json_wit_seeds,
    manifest_parse, manifest_seeds, run,
};

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

#[test]
fn json_wit_survives_its_corpus_and_mutations() {
    run(
        "json_wit",
        json_wit,
        json_wit_seeds(),
        1,
        Budget::Iterations(iterations()),
    );
}

#[test]
fn host_strings_survives_its_corpus_and_mutations() {
    run(
        "host_strings",
        host_strings,
        host_strings_seeds(),
        1,
        Budget::Iterations(iterations()),
    );
}

/// Nesting 10,000 deep does not reach the mapping through JSON text: serde_json's
/// recursion limit (128) refuses it, as it does for the invoke endpoint's body.
#[test]
fn deep_json_text_is_refused_by_the_parser() {
    for (open, close, inner) in [("[", "]", "1"), ("{\"some\":", "}", "null")] {
        let text = wharf_fuzz::deep_json(10_000, open, close, inner);
        let err = serde_json::from_slice::<serde_json::Value>(&text).expect_err("too deep");
        assert!(err.to_string().contains("recursion limit"), "{err}");
    }
}

/// A value nested far deeper than any type (built without the parser) is walked only as
/// deep as the type: no stack overflow in `json_to_val`, `json_to_args` or the checks.
#[test]
fn deep_json_values_are_walked_only_as_deep_as_their_type() {
    use serde_json::{Map, Value};
    let depth = 100_000;
    let mut arrays = Value::from(1);
    let mut somes = Value::Null;
    for _ in 0..depth {
        arrays = Value::Array(vec![arrays]);
        let mut m = Map::new();
        m.insert("some".into(), somes);
        somes = Value::Object(m);
    }
    wharf_fuzz::json_wit_value(&arrays);
    wharf_fuzz::json_wit_value(&somes);
    // serde_json drops a `Value` recursively: take these apart by hand.
    let mut stack = vec![arrays, somes];
    while let Some(v) = stack.pop() {
        match v {
            Value::Array(items) => stack.extend(items),
            Value::Object(m) => stack.extend(m.into_iter().map(|(_, v)| v)),
            _ => {}
        }
    }
}
