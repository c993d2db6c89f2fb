#!/usr/bin/env bash
# Hostile neighbours: one `wharf serve` with a well-behaved app (`good`) and a hostile
# one (`bad`, plus a WAGI module). For each attack, the good app is loaded with wrk at
# concurrency 8 while the attack runs; the table gives its p99 against the baseline
# (no attack) as a ratio, the attack's answers, and the server's RSS before and after.
# Fails if the neighbour gets any non-2xx answer or socket error, or if the server dies.
#
# Usage: [SERVE_ARGS="--cpu-lanes 2"] benches/hostile/run.sh [SECONDS_PER_ATTACK]  (default 10)
# Needs: wrk, curl, python3 (Debian), a release build (cargo build --release -p wharf).
set -euo pipefail
cd "$(dirname "$0")/../.."
DUR="${1:-10}"
T="${CARGO_TARGET_DIR:-target}"
cargo build --release -q -p wharf
GUESTS="$T/hostile-guests"
cargo build --release -q --manifest-path test-programs/guests/Cargo.toml --target wasm32-wasip2 -p http --target-dir "$GUESTS"
cargo build --release -q --manifest-path test-programs/guests/Cargo.toml --target wasm32-wasip1 -p programs --bin wagi --target-dir "$GUESTS"
HTTP_WASM="$GUESTS/wasm32-wasip2/release/http_test.wasm"
WAGI_WASM="$GUESTS/wasm32-wasip1/release/wagi.wasm"
unset RUST_BACKTRACE RUST_LIB_BACKTRACE
export WHARF_LOG=warn

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
wait_port() { for _ in $(seq 200); do (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; return 1; }

app() { # name route extra-component-lines wasm
    mkdir -p "$work/$1"
    cp "$4" "$work/$1/app.wasm"
    printf '[app]\nname = "%s"\nversion = "1"\n[[component]]\nid = "web"\nsource = "app.wasm"\nroute = "%s"\n%b\n' "$1" "$2" "$3" > "$work/$1/wharf.toml"
}
app good "/good/..." "" "$HTTP_WASM"
app peer "/peer/..." "" "$HTTP_WASM"
app bad "/bad/..." 'limits = { timeout = "2s", memory = "64MiB", max_body = "1MiB", max_concurrency = 50 }' "$HTTP_WASM"
app cgi "/cgi/..." 'executor = { type = "wagi" }\nlimits = { timeout = "2s", memory = "64MiB" }' "$WAGI_WASM"

"$T/release/wharf" serve --listen 127.0.0.1:18280 --admin-listen 127.0.0.1:19290 --state-dir "$work/state" ${SERVE_ARGS:-} >"$work/server.log" 2>&1 &
SERVER=$!
pids+=($SERVER)
wait_port 19290
for a in good peer bad cgi; do
    "$T/release/wharf" deploy "$work/$a" --server http://127.0.0.1:19290 --token-file "$work/state/admin-token" >/dev/null 2>&1
done
B=http://127.0.0.1:18280
ADMIN=http://127.0.0.1:19290
rss() { awk '/VmRSS/ {print int($2/1024) " MiB"}' "/proc/$SERVER/status"; }

measure() { # -> p99 of the good app over DUR seconds; fails on errors
    local out
    out=$(wrk -t2 -c8 -d"$DUR"s --latency "$B/good/hello" 2>&1)
    if grep -qE 'Non-2xx|Socket errors' <<<"$out"; then echo "neighbour saw errors:" >&2; echo "$out" >&2; exit 1; fi
    awk '/^ +99%/ {print $2}' <<<"$out"
}
to_us() { awk '{v=$1; if (v ~ /us$/) {sub(/us/,"",v); print v} else if (v ~ /ms$/) {sub(/ms/,"",v); print v*1000} else {sub(/s/,"",v); print v*1000000}}' <<<"$1"; }

settle() { # waits (up to 10 s) until no instance runs: RSS is read after the attack's last requests end
    for _ in $(seq 100); do
        [ "$(curl -s "$ADMIN/metrics" | awk '/^wharf_active_instances/ {s+=$2} END {print s+0}')" = 0 ] && return 0
        sleep 0.1
    done
}
attack() { # name command... : runs the command in a loop in the background
    local name=$1; shift
    ( while true; do "$@" >/dev/null 2>&1 || true; done ) &
    local apid=$!
    local before; before=$(rss)
    local p99; p99=$(measure)
    kill "$apid" 2>/dev/null || true; wait "$apid" 2>/dev/null || true
    settle
    kill -0 "$SERVER" || { echo "the server died during $name" >&2; exit 1; }
    printf '| %s | %s | %.2f | %s | %s |\n' "$name" "$p99" "$(awk -v a="$(to_us "$p99")" -v b="$BASE_US" 'BEGIN{print a/b}')" "$before" "$(rss)"
}

curl -s "$B/good/hello" >/dev/null
measure >/dev/null   # warm-up
BASE=$(measure)
BASE_US=$(to_us "$BASE")
echo "| attack | neighbour p99 | vs baseline | RSS before | RSS after |"
echo "| --- | ---: | ---: | ---: | ---: |"
echo "| (none) | $BASE | 1.00 | $(rss) | |"
many() { for _ in $(seq 8); do curl -s -m 5 "$@" & done; wait; }
# The control: the same load generator (8 curl processes at a time) against another
# well-behaved app, so the table shows what the generator itself costs on this machine.
attack "control: 8 at a time to a well-behaved app" many "$B/peer/hello"
attack "infinite loop (8 at a time)" many "$B/bad/spin"
attack "memory bomb (8 at a time)" many "$B/bad/membomb"
attack "trap (8 at a time)" many "$B/bad/trap"
attack "body over the cap (20 MiB)" bash -c "head -c 20971520 /dev/zero | curl -s -m 5 -X POST --data-binary @- $B/bad/echo"
attack "WAGI stdout flood" many "$B/cgi/x?flood"
attack "slow-loris (300 half heads)" python3 -c "
import socket, time
socks = []
for _ in range(300):
    s = socket.create_connection(('127.0.0.1', 18280)); s.send(b'GET /good/hello HTTP/1.1\r\nHost: x\r\n'); socks.append(s)
time.sleep(15)"
attack "2000 idle connections" python3 -c "
import socket, time
socks = []
for _ in range(2000):
    try: socks.append(socket.create_connection(('127.0.0.1', 18280)))
    except OSError: break
time.sleep(15)"
