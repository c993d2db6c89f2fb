#!/usr/bin/env bash
# Builds calculator_js.wasm (the calculator world from wit/calculator, in JavaScript)
# with componentize-js from npm. Usage: ./build.sh [OUTPUT_DIR]  (default: this directory)
set -euo pipefail
script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out_dir="${1:-$script_dir}"
mkdir -p "$out_dir"
out_dir="$(cd "$out_dir" && pwd)"
cd "$script_dir"
[ -d node_modules/@bytecodealliance/componentize-js ] || npm install --no-audit --no-fund --silent
node build.mjs ../../wit/calculator "$out_dir/calculator_js.wasm"
