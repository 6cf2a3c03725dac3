#!/usr/bin/env bash
# The one prepared command for a lent GPU machine: sblite's GPU user path on random-init models, every step
# logged under --out (default $OUT). See benchmarks/gpu_check.py for the steps and the time budget.
#   bash benchmarks/gpu_check.sh --out "$OUT"     # on the device, with .whl/ carried (../shared/docs/GPU.md)
#   bash benchmarks/gpu_check.sh --dry-run        # anywhere: the same steps on CPU (CI runs this)
set -uo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python3}" benchmarks/gpu_check.py "$@"
