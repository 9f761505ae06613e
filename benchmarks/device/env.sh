# Sourced by check.sh and distill.sh from the repository root (they cd there): makes bird_jax
# importable. Installs the wheels of .whl/ (benchmarks/device/fetch_wheels.sh) into /tmp/site
# when bird_jax's dependencies are not importable and puts the repository on PYTHONPATH
# (bird_jax is not installed there). Sets PYTHON (default python3).
PYTHON="${PYTHON:-python3}"
REQUIRED="grain clu ml_collections dm_pix tensorboardX tensorflow_datasets"

missing="$("$PYTHON" -c "
import importlib.util, sys
print(' '.join(m for m in sys.argv[1:] if importlib.util.find_spec(m) is None))" $REQUIRED)" || return 1
if [[ -n "$missing" ]]; then
  if ! compgen -G ".whl/*.whl" >/dev/null; then
    echo "$0: $missing not importable and no .whl/; run benchmarks/device/fetch_wheels.sh" \
      "where PyPI is reachable and carry .whl" >&2
    return 1
  fi
  echo "Installing $(ls .whl/*.whl | wc -l) wheels from .whl/ into /tmp/site (missing: $missing)"
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || return 1
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
