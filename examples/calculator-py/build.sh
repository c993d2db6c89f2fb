#!/usr/bin/env bash
# Builds calculator_py.wasm (the calculator world from wit/calculator, in Python)
# with componentize-py. Usage: ./build.sh [OUTPUT_DIR]  (default: this directory)
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out_dir="${1:-$script_dir}"
mkdir -p "$out_dir"
out_dir="$(cd "$out_dir" && pwd)"  # resolve a relative OUTPUT_DIR before the cd below
cd "$script_dir"

# Call the console script from Python's own scripts directory: after `pip install`, a
# version manager's shim (pyenv) may not exist yet, so PATH alone is not reliable.
scripts="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')"
cpy="$scripts/componentize-py"
if [ ! -x "$cpy" ]; then
    python3 -m pip install --quiet componentize-py==0.25.1
fi
[ -x "$cpy" ] || cpy="$(command -v componentize-py)"

"$cpy" -d ../../wit/calculator -w calculator componentize app -o "$out_dir/calculator_py.wasm"
