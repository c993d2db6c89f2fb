//! `wharf run` of WASI programs: stdio, arguments, environment, directories, exit codes,
//! statistics.

use crate::*;

#[test]
fn hello_wasip1_module_and_wasip2_component() {
    let env = Env::shared();
    for file in [guests::P1_HELLO, guests::P2_HELLO] {
        let o = env.wharf(&["run", file]);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        assert_eq!(stdout(&o), "Hello, world!\n");
    }
}

#[test]
fn args_env_stdin_and_stderr_pass_through() {
    let env = Env::shared();
    for file in [guests::P1_ECHO, guests::P2_ECHO] {
        let o = env.wharf_stdin(
            &[
                "run",
                "--env",
                "GREETING=hi there",
                "-e",
                "EMPTY=",
                file,
                "one",
                "--two",
                "-3",
            ],
            b"from stdin\n",
        );
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        let out = stdout(&o);
        assert!(
            out.starts_with("arg0=echo.wasm\narg1=one\narg2=--two\narg3=-3\n"),
            "{out}"
        );
        assert!(out.contains("env:GREETING=hi there\n"), "{out}");
        assert!(out.contains("env:EMPTY=\n"), "{out}");
        assert!(out.ends_with("stdin:from stdin\n"), "{out}");
        // Nothing of the host environment leaks in unless asked for.
        assert!(!out.contains("env:HOME="), "{out}");
        assert_eq!(stderr(&o), "to-stderr\n");
    }
}

#[test]
fn inherit_env_and_env_from_host() {
    let env = Env::shared();
    let o = env
        .cmd()
        .args([
            "run",
            "--inherit-env",
            "--env",
            "OVERRIDE=mine",
            guests::P2_ECHO,
        ])
        .env("WHARF_TEST_VISIBLE", "yes")
        .env("OVERRIDE", "host")
        .output()
        .expect("run");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("env:WHARF_TEST_VISIBLE=yes\n"), "{out}");
    assert!(out.contains("env:OVERRIDE=mine\n"), "{out}");
    assert!(!out.contains("env:OVERRIDE=host\n"), "{out}");

    // `--env NAME` copies one host variable.
    let o = env
        .cmd()
        .args(["run", "--env", "WHARF_ONE", guests::P1_ECHO])
        .env("WHARF_ONE", "1")
        .env("WHARF_TWO", "2")
        .output()
        .expect("run");
    let out = stdout(&o);
    assert!(out.contains("env:WHARF_ONE=1\n"), "{out}");
    assert!(!out.contains("WHARF_TWO"), "{out}");

    let o = env.wharf(&["run", "--env", "WHARF_SURELY_UNSET_VAR", guests::P1_ECHO]);
    assert_fails(&o, 2, &["WHARF_SURELY_UNSET_VAR", "K=V"]);
}

#[test]
fn exit_codes_pass_through() {
    let env = Env::shared();
    for file in [guests::P1_EXIT_CODE, guests::P2_EXIT_CODE] {
        for status in ["0", "3", "42"] {
            let o = env.wharf(&["run", file, status]);
            assert_eq!(
                code(&o),
                status.parse::<i32>().expect("int"),
                "{file}: {}",
                stderr(&o)
            );
            assert_eq!(stdout(&o), format!("exiting with {status}\n"));
        }
    }
}

#[test]
fn read_write_dir_and_read_only_dir() {
    let env = Env::shared();
    for file in [guests::P1_FILES, guests::P2_FILES] {
        let rw = tempfile::tempdir().expect("tempdir");
        let ro = tempfile::tempdir().expect("tempdir");
        std::fs::write(ro.path().join("given.txt"), "read me").expect("write");
        let rw_grant = format!("{}::/data", rw.path().display());
        let ro_grant = format!("{}::/ro", ro.path().display());

        let o = env.wharf(&[
            "run",
            "--dir",
            &rw_grant,
            file,
            "write",
            "/data/out.txt",
            "written by guest",
        ]);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        assert_eq!(
            std::fs::read_to_string(rw.path().join("out.txt")).expect("guest wrote the file"),
            "written by guest"
        );

        let o = env.wharf(&["run", "--dir-ro", &ro_grant, file, "read", "/ro/given.txt"]);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        assert_eq!(stdout(&o), "read me");

        let o = env.wharf(&[
            "run",
            "--dir-ro",
            &ro_grant,
            file,
            "write",
            "/ro/new.txt",
            "x",
        ]);
        assert_eq!(
            code(&o),
            3,
            "write to a read-only dir must fail: {}",
            stderr(&o)
        );
        assert!(!ro.path().join("new.txt").exists());

        // Nothing outside the grants exists for the guest.
        let o = env.wharf(&["run", "--dir", &rw_grant, file, "read", "/etc/passwd"]);
        assert_eq!(code(&o), 3, "{}", stderr(&o));
        let o = env.wharf(&[
            "run",
            "--dir",
            &rw_grant,
            file,
            "read",
            "/data/../../etc/passwd",
        ]);
        assert_eq!(code(&o), 3, "{}", stderr(&o));
    }
}

#[test]
fn dir_without_guest_path_mounts_at_the_same_name() {
    let env = Env::shared();
    let d = tempfile::tempdir().expect("tempdir");
    std::fs::write(d.path().join("a.txt"), "A").expect("write");
    let host = d.path().display().to_string();
    let o = env.wharf(&[
        "run",
        "--dir",
        &host,
        guests::P2_FILES,
        "read",
        &format!("{host}/a.txt"),
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(stdout(&o), "A");

    let o = env.wharf(&[
        "run",
        "--dir",
        "/definitely/not/here::/x",
        guests::P2_FILES,
        "list",
        "/x",
    ]);
    assert_fails(&o, 2, &["/definitely/not/here"]);
}

#[test]
fn stats_table_and_json() {
    let env = Env::shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("stats.json");
    let json_s = json.display().to_string();
    let o = env.wharf(&["run", "--stats", "--stats-json", &json_s, guests::P2_HELLO]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let err = stderr(&o);
    for row in ["instantiate", "run", "peak memory", "exit", "0 (exit)"] {
        assert!(err.contains(row), "stats table lacks `{row}`:\n{err}");
    }
    let s = read_stats(&json);
    assert_eq!(s["exit_code"], 0);
    assert_eq!(s["exit_status"], "exit");
    assert!(s["peak_memory_bytes"].as_u64().expect("peak") >= 64 << 10);
    assert!(s["load_us"].as_u64().is_some());
    assert!(s["instantiate_us"].as_u64().is_some());
    assert!(s["run_us"].as_u64().is_some());
    assert!(s["fuel_consumed"].is_null());
    assert!(["compiled", "cache-hit"].contains(&s["load_method"].as_str().expect("method")));

    // Statistics are written for failed runs too.
    let o = env.wharf(&["run", "--stats-json", &json_s, guests::P2_TRAP]);
    assert_eq!(code(&o), 134);
    let s = read_stats(&json);
    assert_eq!(s["exit_code"], 134);
    assert_eq!(s["exit_status"], "trap");
}

#[test]
fn both_allocators_run_the_same_program() {
    let env = Env::shared();
    for alloc in ["pooling", "on-demand"] {
        let o = env.wharf(&["run", "--allocator", alloc, "--stats", guests::P2_HELLO]);
        assert_eq!(code(&o), 0, "{alloc}: {}", stderr(&o));
        assert_eq!(stdout(&o), "Hello, world!\n");
        assert!(
            stderr(&o).contains(&format!("allocator    {alloc}")),
            "{}",
            stderr(&o)
        );
    }
}

#[test]
fn wat_text_runs() {
    let env = Env::shared();
    let o = env.wharf(&["run", "--invoke", "add(40, 2)", guests::WAT_ADD]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(stdout(&o), "42\n");
}

#[test]
fn help_lists_exit_codes_and_flags() {
    let env = Env::shared();
    let o = env.wharf(&["run", "--help"]);
    assert_eq!(code(&o), 0);
    let out = stdout(&o);
    for s in [
        "Exit codes:",
        "124",
        "133",
        "134",
        "--dir-ro",
        "--max-memory",
        "--timeout",
        "--fuel",
        "--invoke",
        "--stats-json",
        "--compile-timeout",
        "--no-cache",
        "--cache-dir",
    ] {
        assert!(out.contains(s), "help lacks `{s}`");
    }
}

#[test]
fn a_wasi_03_command_runs() {
    // `guests/cli3` exports `wasi:cli/run@0.3.0` and writes through a 0.3 stream.
    let env = Env::isolated();
    let o = env.wharf(&["run", guests::CLI3_COMMAND, "one", "two"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "hello from a WASI 0.3 command\narg: one\narg: two\n"
    );
    // `run` returning `err` is exit code 1, as for a 0.2 command.
    let o = env.wharf(&["run", guests::CLI3_COMMAND, "fail"]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    // Limits hold for 0.3 commands too.
    let o = env.wharf(&["run", "--max-memory", "1MiB", guests::CLI3_COMMAND]);
    assert_ne!(code(&o), 0, "ran under a 1 MiB cap: {}", stdout(&o));
    assert!(stderr(&o).contains("memory"), "{}", stderr(&o));
}
