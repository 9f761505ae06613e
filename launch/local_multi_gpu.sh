#!/usr/bin/env bash
# One machine, several GPUs: ONE process drives all visible GPUs with one jax.pmap.
#
#   launch/local_multi_gpu.sh MAIN_FLAGS...
#
#   launch/local_multi_gpu.sh --config=configs/convnext_tiny.py --workdir=runs/convnext_t \
#       --config.data.root=/data/birds --config.batch_size=256      # every GPU of the machine
#   NUM_GPUS=4 launch/local_multi_gpu.sh --config=...  --workdir=... # GPUs 0-3
#   CUDA_VISIBLE_DEVICES=2,3 launch/local_multi_gpu.sh --config=... --workdir=...
#   TIME_LIMIT=10m launch/local_multi_gpu.sh --config=... --workdir=... # SIGTERM after 10 minutes
#
# It is just the main command, `python -m bird_jax.main MAIN_FLAGS...`, run with `exec` so that a
# signal sent to this script reaches Python directly. config.batch_size is the GLOBAL batch and
# must be a multiple of the GPU count (times grad_accum_steps). Needs the CUDA build of JAX once:
# `.venv/bin/pip install -e '.[cuda12]'`.
#
# TIME_LIMIT (any `timeout` duration: 600, 10m, 2h) runs it under
#   timeout --signal=TERM --preserve-status TIME_LIMIT python -m bird_jax.main ...
# SIGTERM makes the run save a checkpoint and exit 0 (--preserve-status keeps that 0 instead of
# timeout's own 124); the same command again resumes from the workdir's latest checkpoint.
#
# Environment:
#   PYTHON                interpreter with bird_jax installed (default .venv/bin/python)
#   NUM_GPUS              use this many GPUs: the first NUM_GPUS of CUDA_VISIBLE_DEVICES if that is
#                         set, else GPUs 0..NUM_GPUS-1 (default: all visible GPUs)
#   CUDA_VISIBLE_DEVICES  which GPUs (standard CUDA variable)
#   TIME_LIMIT            stop (SIGTERM, checkpoint, exit 0) after this long; see above
set -euo pipefail

die() {
    echo "local_multi_gpu.sh: error: $*" >&2
    exit 2
}

if [[ $# -eq 0 || $1 == -h || $1 == --help ]]; then
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
    [[ $# -eq 0 ]] && die "no arguments: pass the bird_jax.main flags (--config=... --workdir=...)."
    exit 0
fi

has_workdir=0
for arg in "$@"; do
    case $arg in
        --workdir | --workdir=?*) has_workdir=1 ;;
    esac
done
((has_workdir)) || die "--workdir=DIR is required (and --config=... to train)."

PYTHON=${PYTHON:-.venv/bin/python}
command -v "$PYTHON" >/dev/null 2>&1 ||
    die "no Python at '$PYTHON': run 'make install' in the repository root, or set PYTHON=..."

if [[ -n ${NUM_GPUS:-} ]]; then
    [[ $NUM_GPUS =~ ^[1-9][0-9]*$ ]] || die "NUM_GPUS must be a positive integer, got '$NUM_GPUS'."
    if [[ -n ${CUDA_VISIBLE_DEVICES:-} ]]; then
        IFS=, read -r -a visible <<<"$CUDA_VISIBLE_DEVICES"
        ((${#visible[@]} >= NUM_GPUS)) ||
            die "NUM_GPUS=$NUM_GPUS but CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES lists fewer GPUs."
        CUDA_VISIBLE_DEVICES=$(IFS=,; echo "${visible[*]:0:NUM_GPUS}")
    else
        CUDA_VISIBLE_DEVICES=$(seq -s, 0 $((NUM_GPUS - 1)))
    fi
    export CUDA_VISIBLE_DEVICES
fi

if command -v nvidia-smi >/dev/null 2>&1; then
    available=$(nvidia-smi --list-gpus 2>/dev/null | grep -c '^GPU' || true)
    echo "GPUs on this machine: $available; CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-<all>}" >&2
    if [[ -n ${NUM_GPUS:-} && -z ${visible+x} ]] && ((available < NUM_GPUS)); then
        die "NUM_GPUS=$NUM_GPUS but nvidia-smi lists $available GPUs."
    fi
else
    echo "nvidia-smi not found: JAX will use whatever devices it finds (CPU if no GPU)." >&2
fi

command=("$PYTHON" -m bird_jax.main "$@")
if [[ -n ${TIME_LIMIT:-} ]]; then
    command=(timeout --signal=TERM --preserve-status "$TIME_LIMIT" "${command[@]}")
fi
echo "+ ${command[*]}" >&2
exec "${command[@]}"
