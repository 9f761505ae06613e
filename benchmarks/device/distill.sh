#!/usr/bin/env bash
# Dataset distillation at the papers' budget on a lent GPU: one method and IPC per call, on the
# shared CIFAR-10 JPEGs (benchmarks/device/README.md, "Distillation at full budget").
#
#   mkdir -p .device_data && cp ../shared/datasets/cifar10-jpeg.tar.gz .device_data/   # here
#   bash benchmarks/device/distill.sh dm 10            # device: carry [".whl", ".device_data"]
#   DATA=/tmp/cub20 PYTHON=.venv/bin/python bash benchmarks/device/distill.sh dm 1 \
#       --config.distill.iterations=2 --config.evaluation.runs=1 --config.evaluation.epochs=2
#                                                      # any machine: the plumbing, in a minute
#
# Runs `python -m bird_jax.distill --config=configs/distill/<method>.py:cifar10_ipc<N>` (the
# papers' iterations, 5 evaluation runs of ConvNet-3, then any --config.* given) into
# $OUT/<method>_ipc<N>, and stops it with SIGTERM LIMIT_S seconds in (default 500): it saves
# its state and exits, so the workdir that comes back resumes in the next lease once copied to
# .device_data/<method>_ipc<N>. Exit status: the command's, 124 when stopped at LIMIT_S.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
METHOD="${1:?usage: distill.sh <dm|dsa|dc> <ipc> [--config.x=y ...]}"
IPC="${2:?usage: distill.sh <dm|dsa|dc> <ipc> [--config.x=y ...]}"
shift 2
NAME="${METHOD}_ipc${IPC}"
OUT="${OUT:-/tmp/device_out}"
LIMIT_S="${LIMIT_S:-500}"
source benchmarks/device/env.sh || exit 1

if [[ -z "${DATA:-}" ]]; then
  DATA=/tmp/cifar10-jpeg
  if [[ ! -d "$DATA" ]]; then
    tar -xzf .device_data/cifar10-jpeg.tar.gz -C /tmp || {
      echo "$0: no .device_data/cifar10-jpeg.tar.gz: copy ../shared/datasets/cifar10-jpeg.tar.gz" \
        "there and carry .device_data" >&2
      exit 1
    }
  fi
fi
mkdir -p "$OUT"
if [[ -d ".device_data/$NAME" && ! -d "$OUT/$NAME" ]]; then
  cp -r ".device_data/$NAME" "$OUT/$NAME"  # an earlier lease's workdir: resume it
  chmod -R u+w "$OUT/$NAME"
fi
"$PYTHON" -c "import jax; print('devices:', jax.devices())"
timeout --signal=TERM --kill-after=60 "$LIMIT_S" \
  "$PYTHON" -m bird_jax.distill --config="configs/distill/$METHOD.py:cifar10_ipc$IPC" \
  --workdir="$OUT/$NAME" --config.data.source=folder --config.data.root="$DATA" \
  "$@" 2>&1 | tee "$OUT/$NAME.log"
status=${PIPESTATUS[0]}
rm -rf "$OUT/$NAME/grids"  # one PNG per checkpoint; synthetic.png and TensorBoard keep them
exit "$status"
