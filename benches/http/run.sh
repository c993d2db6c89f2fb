#!/usr/bin/env bash
# HTTP load benchmark: the same hello component served by `wharf serve` and by
# `wasmtime serve -S cli` (fresh instance per request in both), and a native hyper hello
# server as the ceiling, loaded with wrk in one run, at concurrency 16 and 64. Prints a
# markdown table (requests/s, p50, p99) and the Wharf / wasmtime ratio.
#
# Usage: benches/http/run.sh [DURATION_SECONDS]     (default 10)
# Needs: wrk (Debian), a release build (cargo build --release -p wharf -p hyper-hello),
#        wasmtime 48 on PATH or in $WASMTIME (cargo install wasmtime-cli@48.0.8) — the
#        wasmtime column is skipped without it.
set -euo pipefail
cd "$(dirname "$0")/../.."
DUR="${1:-10}"
T="${CARGO_TARGET_DIR:-target}"
WASMTIME="${WASMTIME:-$(command -v wasmtime || true)}"

cargo build --release -q -p wharf -p hyper-hello
cargo build --release -q --target wasm32-wasip2 --manifest-path examples/http-hello/Cargo.toml --target-dir "$T/examples"
COMPONENT="$T/examples/wasm32-wasip2/release/http_hello.wasm"

# Backtrace capture on every internal error costs both servers alike; production
# servers run without it.
unset RUST_BACKTRACE RUST_LIB_BACKTRACE
export WHARF_LOG="${WHARF_LOG:-info}"

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

wait_port() { for _ in $(seq 200); do (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; return 1; }

# Wharf: one app at /... so the same path works for every server.
mkdir -p "$work/app"
cp "$COMPONENT" "$work/app/hello.wasm"
cat > "$work/app/wharf.toml" <<TOML
[app]
name = "bench"
version = "1"
[[component]]
id = "hello"
source = "hello.wasm"
route = "/..."
TOML
"$T/release/wharf" serve --listen 127.0.0.1:18080 --admin-listen 127.0.0.1:19090 --state-dir "$work/state" >"$work/wharf.log" 2>&1 &
pids+=($!)
wait_port 19090
"$T/release/wharf" deploy "$work/app" --server http://127.0.0.1:19090 --token-file "$work/state/admin-token" >/dev/null 2>&1

if [ -n "$WASMTIME" ]; then
    "$WASMTIME" serve -S cli --addr 127.0.0.1:18081 "$COMPONENT" >"$work/wasmtime.log" 2>&1 &
    pids+=($!)
    wait_port 18081
fi
"$T/release/hyper-hello" 127.0.0.1:18082 >/dev/null 2>&1 &
pids+=($!)
wait_port 18082

# Warm up each server, then measure.
run_wrk() { wrk -t2 -c"$2" -d"$DUR"s --latency "$1" 2>&1; }
parse() { # rps p50 p99 from wrk output
    awk '/Requests\/sec/ {rps=$2} /^ +50%/ {p50=$2} /^ +99%/ {p99=$2} END {printf "%s %s %s\n", rps, p50, p99}'
}
declare -A RPS
echo "| server | concurrency | requests/s | p50 | p99 |"
echo "| --- | ---: | ---: | ---: | ---: |"
for c in 16 64; do
    for name in wharf wasmtime native; do
        case $name in
            wharf) url=http://127.0.0.1:18080/hello ;;
            wasmtime) [ -n "$WASMTIME" ] || continue; url=http://127.0.0.1:18081/hello ;;
            native) url=http://127.0.0.1:18082/hello ;;
        esac
        wrk -t2 -c"$c" -d1s "$url" >/dev/null 2>&1 || true
        read -r rps p50 p99 < <(run_wrk "$url" "$c" | parse)
        RPS[$name-$c]=$rps
        echo "| $name | $c | $rps | $p50 | $p99 |"
    done
done
echo
for c in 16 64; do
    if [ -n "${RPS[wasmtime-$c]:-}" ]; then
        awk -v w="${RPS[wharf-$c]}" -v m="${RPS[wasmtime-$c]}" -v n="${RPS[native-$c]}" -v c="$c" \
            'BEGIN { printf "concurrency %s: wharf / wasmtime serve = %.2f, wharf / native hyper = %.2f\n", c, w/m, w/n }'
    fi
done
