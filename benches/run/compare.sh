#!/usr/bin/env bash
# `wharf run` vs `wasmtime run` on the same wasip2 hello component, warm caches on
# both sides (each tool's first run compiles and caches; hyperfine's warm-up runs take
# care of that), measured side by side in one hyperfine run. Also the cold path
# (`--no-cache` / `-C cache=n`) and a wasip1 module.
#
# Usage: benches/run/compare.sh [RUNS]    (default 200)
# Needs: hyperfine (Debian), wasmtime 48 on PATH or in $WASMTIME
#        (cargo install wasmtime-cli@48.0.8).
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS="${1:-200}"
T="${CARGO_TARGET_DIR:-target}"
WASMTIME="${WASMTIME:-$(command -v wasmtime || true)}"
[ -n "$WASMTIME" ] || { echo "wasmtime not found: cargo install wasmtime-cli@48.0.8, or set WASMTIME" >&2; exit 1; }

cargo build --release -q -p wharf
cargo build --release -q --target wasm32-wasip2 --manifest-path examples/hello/Cargo.toml --target-dir "$T/examples"
cargo build --release -q --target wasm32-wasip1 --manifest-path examples/hello/Cargo.toml --target-dir "$T/examples"
P2="$T/examples/wasm32-wasip2/release/hello.wasm"
P1="$T/examples/wasm32-wasip1/release/hello.wasm"
W="$T/release/wharf"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export XDG_CACHE_HOME="$work/cache" XDG_CONFIG_HOME="$work/config"

echo "wharf:    $("$W" --version)"
echo "wasmtime: $("$WASMTIME" --version)"
echo "input:    $P2 ($(stat -c %s "$P2") bytes), $P1 ($(stat -c %s "$P1") bytes)"
echo
hyperfine -N --warmup 10 --runs "$RUNS" --export-markdown "$work/warm.md" \
    -n "wharf run (wasip2, warm)" "$W run $P2" \
    -n "wasmtime run (wasip2, warm)" "$WASMTIME run $P2" \
    -n "wharf run (wasip1, warm)" "$W run $P1" \
    -n "wasmtime run (wasip1, warm)" "$WASMTIME run $P1" >/dev/null
cat "$work/warm.md"
echo
hyperfine -N --warmup 2 --runs 20 --export-markdown "$work/cold.md" \
    -n "wharf run --no-cache (wasip2)" "$W run --no-cache $P2" \
    -n "wasmtime run -C cache=n (wasip2)" "$WASMTIME run -C cache=n $P2" >/dev/null
cat "$work/cold.md"
