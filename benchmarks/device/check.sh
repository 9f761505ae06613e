#!/usr/bin/env bash
# The prepared GPU check, one command on a lent GPU machine (benchmarks/device/README.md):
#
#   bash benchmarks/device/check.sh              # results under $OUT (default /tmp/device_out)
#   bash benchmarks/device/check.sh --dry_run    # any machine: every part at toy sizes
#
# Installs the wheels of .whl/ (benchmarks/device/fetch_wheels.sh) into /tmp/site when bird_jax's
# dependencies are not importable, puts the repository on PYTHONPATH (bird_jax is not installed
# there) and runs benchmarks/device/run.py with the arguments given. Exit status: 0 all parts
# passed, 1 a part failed, 2 no GPU (without --dry_run).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
PYTHON="${PYTHON:-python3}"
REQUIRED="grain clu ml_collections dm_pix tensorboardX tensorflow_datasets"

missing="$("$PYTHON" -c "
import importlib.util, sys
print(' '.join(m for m in sys.argv[1:] if importlib.util.find_spec(m) is None))" $REQUIRED)" || exit 1
if [[ -n "$missing" ]]; then
  if ! compgen -G ".whl/*.whl" >/dev/null; then
    echo "$0: $missing not importable and no .whl/; run benchmarks/device/fetch_wheels.sh" \
      "where PyPI is reachable and carry .whl" >&2
    exit 1
  fi
  echo "Installing $(ls .whl/*.whl | wc -l) wheels from .whl/ into /tmp/site (missing: $missing)"
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
exec "$PYTHON" benchmarks/device/run.py "$@"
