#!/usr/bin/env bash
# The prepared GPU check, one command on a lent GPU machine (benchmarks/device/README.md):
#
#   bash benchmarks/device/check.sh              # results under $OUT (default /tmp/device_out)
#   bash benchmarks/device/check.sh --dry_run    # any machine: every part at toy sizes
#
# Makes bird_jax importable (env.sh: the wheels of .whl/ when needed, the repository on
# PYTHONPATH) and runs benchmarks/device/run.py with the arguments given. Exit status: 0 all parts
# passed, 1 a part failed, 2 no GPU (without --dry_run).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
source benchmarks/device/env.sh || exit 1
exec "$PYTHON" benchmarks/device/run.py "$@"
