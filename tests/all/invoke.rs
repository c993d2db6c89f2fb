//! `wharf run --invoke`: typed calls into component exports (WAVE in, WAVE out) and
//! numeric calls into core module exports.

use crate::*;

fn invoke(env: &Env, call: &str) -> std::process::Output {
    env.wharf(&["run", "--invoke", call, guests::CALC_COMPONENT])
}

#[track_caller]
fn invoke_ok(env: &Env, call: &str, expected: &str) {
    let o = invoke(env, call);
    assert_eq!(code(&o), 0, "{call}: {}", stderr(&o));
    assert_eq!(stdout(&o), format!("{expected}\n"), "{call}");
}

#[test]
fn scalars_strings_lists_options_results() {
    let env = Env::shared();
    invoke_ok(&env, "add(3, 4)", "7");
    invoke_ok(&env, "add(-10, 4)", "-6");
    invoke_ok(&env, r#"greet("Ada")"#, r#""Hello, Ada!""#);
    invoke_ok(&env, "sum([1, 2, 3, 40])", "46");
    invoke_ok(&env, "sum([])", "0");
    invoke_ok(&env, r#"first(["a", "b"])"#, r#"some("a")"#);
    invoke_ok(&env, "first([])", "none");
    invoke_ok(&env, "divide(7, 2)", "ok(3)");
    invoke_ok(&env, "divide(1, 0)", r#"err("division by zero")"#);
}

#[test]
fn records_variants_enums_flags_in_an_interface() {
    let env = Env::shared();
    // A bare name found in exactly one exported interface.
    invoke_ok(
        &env,
        "add-points({x: 1, y: 2}, {x: 30, y: 40})",
        "{x: 31, y: 42}",
    );
    invoke_ok(&env, "area(rect({x: 2, y: 3}))", "6");
    invoke_ok(&env, "area(circle(2))", "12");
    invoke_ok(&env, "area(empty)", "0");
    invoke_ok(
        &env,
        "describe(cm, {bold, underline})",
        r#""cm bold underline""#,
    );
    // The full INTERFACE#NAME form.
    invoke_ok(
        &env,
        "wharf-test:calc/geometry@0.1.0#area(rect({x: 5, y: 5}))",
        "25",
    );
}

#[test]
fn type_errors_and_unknown_exports_are_usage_errors() {
    let env = Env::shared();
    let o = invoke(&env, r#"add("three", 4)"#);
    assert_fails(&o, 2, &["add", "a: s32, b: s32"]);
    let o = invoke(&env, "add(1)");
    assert_fails(&o, 2, &["add"]);
    let o = invoke(&env, "nope(1)");
    assert_fails(
        &o,
        2,
        &[
            "no function `nope`",
            "add",
            "wharf-test:calc/geometry@0.1.0#area",
        ],
    );
    let o = invoke(&env, "missing:iface/x#f()");
    assert_fails(&o, 2, &["no interface `missing:iface/x`"]);
    let o = invoke(&env, "add 3, 4");
    assert_fails(&o, 2, &["--invoke", "missing `(`"]);
    let o = invoke(&env, "add(3, 4");
    assert_fails(&o, 2, &["closing `)`"]);
}

#[test]
fn component_without_run_needs_invoke() {
    let env = Env::shared();
    let o = env.wharf(&["run", guests::CALC_COMPONENT]);
    assert_fails(
        &o,
        2,
        &["does not export `wasi:cli/run`", "--invoke", "add"],
    );
}

#[test]
fn invoked_export_obeys_the_timeout() {
    let env = Env::shared();
    let o = env.wharf(&[
        "run",
        "--timeout",
        "200ms",
        "--invoke",
        "spin()",
        guests::CALC_COMPONENT,
    ]);
    assert_fails(&o, 124, &["deadline"]);
}

#[test]
fn core_module_numeric_invoke() {
    let env = Env::shared();
    let run = |call: &str| env.wharf(&["run", "--invoke", call, guests::WAT_ADD]);
    let o = run("add(3, 4)");
    assert_eq!(
        (code(&o), stdout(&o).as_str()),
        (0, "7\n"),
        "{}",
        stderr(&o)
    );
    let o = run("mul64(-3, 5000000000)");
    assert_eq!(
        (code(&o), stdout(&o).as_str()),
        (0, "-15000000000\n"),
        "{}",
        stderr(&o)
    );
    let o = run("half(3)");
    assert_eq!(
        (code(&o), stdout(&o).as_str()),
        (0, "1.5\n"),
        "{}",
        stderr(&o)
    );
    let o = run("add(1)");
    assert_fails(&o, 2, &["takes 2 argument(s), 1 given"]);
    let o = run("add(x, 1)");
    assert_fails(&o, 2, &["`x` is not a valid i32"]);
    let o = run("sub(1, 2)");
    assert_fails(&o, 2, &["no function `sub`", "add(i32, i32) -> i32"]);
    // A module without _start is not a command.
    let o = env.wharf(&["run", guests::WAT_ADD]);
    assert_fails(&o, 2, &["without a `_start`", "--invoke"]);
}
