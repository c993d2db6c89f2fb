//! Limits on hostile guests: memory cap (total of all memories), wall-clock timeout
//! (running wasm and waiting in host calls), fuel, stack depth.

use std::time::{Duration, Instant};

use crate::*;

#[test]
fn memory_bomb_stops_at_the_cap() {
    let env = Env::shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("s.json");
    for file in [guests::P1_MEMBOMB, guests::P2_MEMBOMB] {
        let o = env.wharf(&[
            "run",
            "--max-memory",
            "32MiB",
            "--stats-json",
            json.to_str().expect("utf8"),
            file,
        ]);
        assert_fails(&o, 133, &["memory cap of 32 MiB", "--max-memory"]);
        let s = read_stats(&json);
        let peak = s["peak_memory_bytes"].as_u64().expect("peak");
        assert!(peak <= 32 << 20, "peak {peak} above the cap");
        assert!(
            peak >= 16 << 20,
            "peak {peak}: the bomb should have got close to the cap"
        );
        assert_eq!(s["exit_status"], "memory-cap");
    }
}

#[test]
fn cap_counts_all_memories_together() {
    let env = Env::shared();
    // Two memories of 40 MiB each: over a 64 MiB total, under 128 MiB.
    let o = env.wharf(&["run", "--max-memory", "64MiB", guests::WAT_TWO_MEMORIES]);
    assert_fails(&o, 133, &["memory cap of 64 MiB"]);
    let o = env.wharf(&["run", "--max-memory", "128MiB", guests::WAT_TWO_MEMORIES]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
}

#[test]
fn initial_memory_over_the_cap_fails_at_instantiation() {
    let env = Env::shared();
    let o = env.wharf(&["run", "--max-memory", "64MiB", guests::WAT_BIG_INITIAL]);
    assert_fails(&o, 133, &["memory cap of 64 MiB", "while instantiating"]);
    let o = env.wharf(&["run", "--max-memory", "256MiB", guests::WAT_BIG_INITIAL]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
}

#[test]
fn timeout_stops_an_infinite_loop() {
    let env = Env::shared();
    for file in [guests::P1_SPIN, guests::P2_SPIN] {
        // Warm the cache first so the measured time is the run.
        let _ = env.wharf(&["run", "--timeout", "10ms", file]);
        let t = Instant::now();
        let o = env.wharf(&["run", "--timeout", "300ms", file]);
        let took = t.elapsed();
        assert_fails(&o, 124, &["300ms deadline", "--timeout"]);
        assert!(
            took >= Duration::from_millis(300),
            "stopped too early: {took:?}"
        );
        assert!(took < Duration::from_secs(20), "not stopped: {took:?}");
    }
}

#[test]
fn timeout_stops_a_guest_blocked_in_a_host_call() {
    let env = Env::shared();
    for file in [guests::P1_SLEEP, guests::P2_SLEEP] {
        let t = Instant::now();
        let o = env.wharf(&["run", "--timeout", "300ms", file, "60000"]);
        assert_fails(&o, 124, &["deadline"]);
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "sleeping guest not stopped"
        );
        assert_eq!(stdout(&o), "");
        // A short sleep within the deadline completes.
        let o = env.wharf(&["run", "--timeout", "20s", file, "10"]);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        assert_eq!(stdout(&o), "awake\n");
    }
}

#[test]
fn fuel_is_metered_deterministically_and_runs_out() {
    let env = Env::shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("s.json");
    let js = json.to_str().expect("utf8");
    for file in [guests::P1_FUEL, guests::P2_FUEL] {
        let o = env.wharf(&[
            "run",
            "--fuel",
            "100000000",
            "--stats-json",
            js,
            file,
            "1000",
        ]);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        assert_eq!(stdout(&o), "500500\n");
        let first = read_stats(&json)["fuel_consumed"]
            .as_u64()
            .expect("fuel consumed");
        assert!(
            first > 1000,
            "a 1000-iteration loop costs more than 1000 fuel: {first}"
        );
        let o = env.wharf(&[
            "run",
            "--fuel",
            "100000000",
            "--stats-json",
            js,
            file,
            "1000",
        ]);
        assert_eq!(code(&o), 0);
        let second = read_stats(&json)["fuel_consumed"]
            .as_u64()
            .expect("fuel consumed");
        assert_eq!(first, second, "fuel metering must be deterministic");
        // More work costs more fuel.
        let o = env.wharf(&[
            "run",
            "--fuel",
            "100000000",
            "--stats-json",
            js,
            file,
            "2000",
        ]);
        assert_eq!(code(&o), 0);
        let more = read_stats(&json)["fuel_consumed"]
            .as_u64()
            .expect("fuel consumed");
        assert!(more > first, "{more} <= {first}");

        let o = env.wharf(&["run", "--fuel", "5000", "--stats", file, "100000000"]);
        assert_fails(&o, 132, &["ran out of fuel", "5000", "fuel consumed"]);
    }
}

#[test]
fn deep_recursion_traps_with_stack_exhausted() {
    let env = Env::shared();
    for file in [guests::P1_RECURSE, guests::P2_RECURSE] {
        let o = env.wharf(&["run", file]);
        assert_fails(&o, 134, &["call stack exhausted"]);
    }
}

#[test]
fn trap_reports_kind_and_backtrace_with_names() {
    let env = Env::shared();
    for file in [guests::P1_TRAP, guests::P2_TRAP] {
        let o = env.wharf(&["run", file]);
        assert_fails(
            &o,
            134,
            &["the guest trapped", "unreachable", "wharf_guest_fails_here"],
        );
        assert_eq!(stdout(&o), "about to trap\n");
    }
}
