#!/usr/bin/env bash
# The device check (benchmarks/README.md): benchmarks/gpu_check.sh OUT [gpu_check.py options]
# writes OUT/gpu.md (and OUT/gpu_check.log). On a GPU it stays within 8 minutes: the sections
# share a 420 s budget (--budget-s) and a hard stop at GPU_CHECK_TIMEOUT_S (470 s) still leaves
# the report written so far. Without CUDA it runs the CPU smoke version (--smoke).
# Needs torch, transformers, peft, pyyaml (not snakemake, jsonschema or gguf); polneurons is
# taken from this checkout's src/. PYTHON picks the interpreter (default: python3).
set -euo pipefail
if [ $# -lt 1 ] || [ "${1#-}" != "$1" ]; then
  echo "usage: $0 OUT [options of benchmarks/gpu_check.py]" >&2
  exit 2
fi
out=$1
shift
repo=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-$(command -v python3 || command -v python)}
export PYTHONPATH="$repo/src${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$out"
limit=${GPU_CHECK_TIMEOUT_S:-470}
status=0
timeout -k 10 "$limit" "$python" "$repo/benchmarks/gpu_check.py" --out "$out" "$@" \
  2>&1 | tee "$out/gpu_check.log" || status=$?
if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
  printf '\n- Stopped at the hard limit of %s s: the sections above are all it measured\n' \
    "$limit" >>"$out/gpu.md"
fi
exit "$status"
