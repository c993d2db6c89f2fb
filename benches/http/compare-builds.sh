#!/usr/bin/env bash
# Compares two builds of `wharf serve` side by side in one run (a refactor's before and
# after): the same hello component deployed on each, loaded with wrk in alternating
# rounds at concurrency 16 and 64, with the native hyper hello server as the ceiling.
# Prints a markdown table per round and the new/old and new/native ratios. Fails on any
# non-2xx answer or socket error, so a broken build cannot look fast.
#
# Usage: benches/http/compare-builds.sh OLD_WHARF NEW_WHARF [DURATION_SECONDS] [ROUNDS]
#   e.g. git worktree add /tmp/old <commit> && (cd /tmp/old && cargo build --release -p wharf)
#        benches/http/compare-builds.sh /tmp/old/target/release/wharf target/release/wharf 10 3
# Needs: wrk (Debian), a release build of hyper-hello (cargo build --release -p hyper-hello).
set -euo pipefail
cd "$(dirname "$0")/../.."
OLD="$1"; NEW="$2"; DUR="${3:-10}"; ROUNDS="${4:-3}"
T="${CARGO_TARGET_DIR:-target}"
cargo build --release -q -p hyper-hello
cargo build --release -q --target wasm32-wasip2 --manifest-path examples/http-hello/Cargo.toml --target-dir "$T/examples"
COMPONENT="$T/examples/wasm32-wasip2/release/http_hello.wasm"
unset RUST_BACKTRACE RUST_LIB_BACKTRACE
export WHARF_LOG="${WHARF_LOG:-warn}"

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
wait_port() { for _ in $(seq 200); do (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; return 1; }

mkdir -p "$work/app"
cp "$COMPONENT" "$work/app/hello.wasm"
printf '[app]\nname = "bench"\nversion = "1"\n[[component]]\nid = "hello"\nsource = "hello.wasm"\nroute = "/..."\n' > "$work/app/wharf.toml"
start() { # binary data-port admin-port name
    "$1" serve --listen 127.0.0.1:"$2" --admin-listen 127.0.0.1:"$3" --state-dir "$work/$4" >"$work/$4.log" 2>&1 &
    pids+=($!)
    wait_port "$3"
    "$1" deploy "$work/app" --server http://127.0.0.1:"$3" --token-file "$work/$4/admin-token" >/dev/null
}
start "$OLD" 18180 19190 old
start "$NEW" 18181 19191 new
"$T/release/hyper-hello" 127.0.0.1:18182 >/dev/null 2>&1 &
pids+=($!)
wait_port 18182

measure() { # url concurrency -> "rps p50 p99"; exits on errors
    local out
    out=$(wrk -t2 -c"$2" -d"$DUR"s --latency "$1" 2>&1)
    if grep -qE 'Non-2xx|Socket errors' <<<"$out"; then
        echo "wrk reported errors for $1:" >&2; echo "$out" >&2; exit 1
    fi
    awk '/Requests\/sec/ {rps=$2} /^ +50%/ {p50=$2} /^ +99%/ {p99=$2} END {printf "%s %s %s\n", rps, p50, p99}' <<<"$out"
}
declare -A SUM
for c in 16 64; do SUM[old-$c]=0; SUM[new-$c]=0; SUM[native-$c]=0; done
for r in $(seq "$ROUNDS"); do
    echo "### round $r"
    echo "| server | concurrency | requests/s | p50 | p99 |"
    echo "| --- | ---: | ---: | ---: | ---: |"
    for c in 16 64; do
        # Alternate the order each round so neither build always runs first.
        order="old new native"; [ $((r % 2)) = 0 ] && order="new old native"
        for name in $order; do
            case $name in
                old) url=http://127.0.0.1:18180/hello ;;
                new) url=http://127.0.0.1:18181/hello ;;
                native) url=http://127.0.0.1:18182/hello ;;
            esac
            wrk -t2 -c"$c" -d1s "$url" >/dev/null 2>&1 || true
            read -r rps p50 p99 < <(measure "$url" "$c")
            SUM[$name-$c]=$(awk -v a="${SUM[$name-$c]}" -v b="$rps" 'BEGIN{print a+b}')
            echo "| $name | $c | $rps | $p50 | $p99 |"
        done
    done
    echo
done
for c in 16 64; do
    awk -v o="${SUM[old-$c]}" -v n="${SUM[new-$c]}" -v h="${SUM[native-$c]}" -v c="$c" 'BEGIN {
        printf "concurrency %s (mean of rounds): new / old = %.3f; old / native = %.3f; new / native = %.3f\n", c, n/o, o/h, n/h }'
done
