#!/usr/bin/env bash
# HTTP load benchmark: the same hello component served by `wharf serve` and by
# `wasmtime serve -S cli` (fresh instance per request in both), for a WASI 0.2 hello
# (examples/http-hello) and a WASI 0.3 one (test-programs/guests/http3), and a native
# hyper hello server as the ceiling, loaded with wrk in one run, at concurrency 16 and
# 64. Prints a markdown table (requests/s, p50, p99) and the Wharf / wasmtime ratios.
# Fails if any answer is not 2xx or any socket error occurs.
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
cargo build --release -q --target wasm32-wasip2 --manifest-path test-programs/guests/Cargo.toml -p http3 --target-dir "$T/bench-guests"
COMPONENT3="$T/bench-guests/wasm32-wasip2/release/http3.wasm"

# Backtrace capture on every internal error costs both servers alike; production
# servers run without it.
unset RUST_BACKTRACE RUST_LIB_BACKTRACE
export WHARF_LOG="${WHARF_LOG:-info}"

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

wait_port() { for _ in $(seq 200); do (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; return 1; }

# Wharf: the WASI 0.2 app at /hello, the path every server is asked for.
mkdir -p "$work/app"
cp "$COMPONENT" "$work/app/hello.wasm"
cat > "$work/app/wharf.toml" <<TOML
[app]
name = "bench"
version = "1"
[[component]]
id = "hello"
source = "hello.wasm"
route = "/hello"
TOML
# The WASI 0.3 hello at /p3/... (it answers on the last path segment `hello`).
mkdir -p "$work/app3"
cp "$COMPONENT3" "$work/app3/hello.wasm"
cat > "$work/app3/wharf.toml" <<TOML
[app]
name = "bench3"
version = "1"
[[component]]
id = "hello"
source = "hello.wasm"
route = "/p3/..."
TOML
"$T/release/wharf" serve --listen 127.0.0.1:18080 --admin-listen 127.0.0.1:19090 --state-dir "$work/state" >"$work/wharf.log" 2>&1 &
pids+=($!)
wait_port 19090
for a in app app3; do
    "$T/release/wharf" deploy "$work/$a" --server http://127.0.0.1:19090 --token-file "$work/state/admin-token" >/dev/null 2>&1
done

if [ -n "$WASMTIME" ]; then
    "$WASMTIME" serve -S cli --addr 127.0.0.1:18081 "$COMPONENT" >"$work/wasmtime.log" 2>&1 &
    pids+=($!)
    wait_port 18081
    # WASI 0.3: wasmtime serve 48 tells the world apart itself, as Wharf does; -S p3
    # links the 0.3 interfaces.
    "$WASMTIME" serve -S cli -S p3 --addr 127.0.0.1:18083 "$COMPONENT3" >"$work/wasmtime3.log" 2>&1 &
    pids+=($!)
    wait_port 18083
    # Its default reuses a 0.3 instance for up to 128 requests, 16 at once; Wharf keeps
    # one store per request. The same isolation in wasmtime, for a like-for-like row:
    "$WASMTIME" serve -S cli -S p3 --max-instance-reuse-count 1 --addr 127.0.0.1:18084 "$COMPONENT3" >"$work/wasmtime3f.log" 2>&1 &
    pids+=($!)
    wait_port 18084
fi
"$T/release/hyper-hello" 127.0.0.1:18082 >/dev/null 2>&1 &
pids+=($!)
wait_port 18082

# Warm up each server, then measure.
run_wrk() { # fails on any non-2xx answer or socket error
    local out
    out=$(wrk -t2 -c"$2" -d"$DUR"s --latency "$1" 2>&1)
    if grep -qE 'Non-2xx|Socket errors' <<<"$out"; then echo "errors from $1:" >&2; echo "$out" >&2; return 1; fi
    echo "$out"
}
parse() { # rps p50 p99 from wrk output
    awk '/Requests\/sec/ {rps=$2} /^ +50%/ {p50=$2} /^ +99%/ {p99=$2} END {printf "%s %s %s\n", rps, p50, p99}'
}
declare -A RPS
echo "| server | concurrency | requests/s | p50 | p99 |"
echo "| --- | ---: | ---: | ---: | ---: |"
for c in 16 64; do
    for name in wharf wasmtime wharf-p3 wasmtime-p3 wasmtime-p3-fresh native; do
        case $name in
            wharf) url=http://127.0.0.1:18080/hello ;;
            wasmtime) [ -n "$WASMTIME" ] || continue; url=http://127.0.0.1:18081/hello ;;
            wharf-p3) url=http://127.0.0.1:18080/p3/hello ;;
            wasmtime-p3) [ -n "$WASMTIME" ] || continue; url=http://127.0.0.1:18083/hello ;;
            wasmtime-p3-fresh) [ -n "$WASMTIME" ] || continue; url=http://127.0.0.1:18084/hello ;;
            native) url=http://127.0.0.1:18082/hello ;;
        esac
        wrk -t2 -c"$c" -d1s "$url" >/dev/null 2>&1 || true
        out=$(run_wrk "$url" "$c")
        read -r rps p50 p99 < <(parse <<<"$out")
        RPS[$name-$c]=$rps
        echo "| $name | $c | $rps | $p50 | $p99 |"
    done
done
echo
for c in 16 64; do
    if [ -n "${RPS[wasmtime-$c]:-}" ]; then
        awk -v w="${RPS[wharf-$c]}" -v m="${RPS[wasmtime-$c]}" -v n="${RPS[native-$c]}" -v c="$c" \
            -v w3="${RPS[wharf-p3-$c]}" -v m3="${RPS[wasmtime-p3-$c]}" -v f3="${RPS[wasmtime-p3-fresh-$c]}" \
            'BEGIN { printf "concurrency %s: wharf / wasmtime serve = %.2f (WASI 0.2), %.2f (WASI 0.3, its default reuse), %.2f (WASI 0.3, one instance per request in both); wharf / native hyper = %.2f\n", c, w/m, w3/m3, w3/f3, w/n }'
    fi
done
