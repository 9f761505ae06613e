#!/usr/bin/env bash
# Fills .whl/ (git-ignored) with the wheels the lent GPU machine lacks, for Python 3.12 x86-64.
#
# Run once, here, where PyPI is reachable:   bash benchmarks/device/fetch_wheels.sh
# The device image already has JAX 0.11 (CUDA 13), flax, optax, orbax, chex, numpy, protobuf,
# torch, timm, tensorboard, opencv, scikit-learn, nvidia-ml-py, pytest (all of it in
# image_packages.txt). These are only what bird_jax imports and the image lacks, pinned to
# the versions the project's venv is tested with; none of them replaces a package of the image.
# `check.sh` installs them with `pip install --no-deps --target /tmp/site` on the device.
set -euo pipefail

PIP="${PYTHON:-python3} -m pip"
cd "$(dirname "$0")"
ROOT="$(git rev-parse --show-toplevel)"
DEST="$ROOT/.whl"
EXCLUDE="$(git rev-parse --path-format=absolute --git-common-dir)/info/exclude"

# name==version: bird_jax's own imports, then what they import at start-up (checked with
# `check.sh --dry_run --emulate_image`). tensorflow-datasets only for `tfds.data_source`.
WHEELS=(
  grain==0.2.18 array-record==0.8.6 portpicker==1.6.0        # input pipeline
  clu==0.0.12 ml-collections==1.1.0 tensorboardX==2.6.5       # metrics, configs, writers
  dm-pix==0.4.5                                               # device augmentations
  tensorflow-datasets==4.9.10 tensorflow-metadata==1.21.0     # tfds source (no TensorFlow)
  immutabledict==4.3.1 toml==0.10.2 promise==2.3              # ... imported by tfds at start-up
)
# Published only as a source archive: built into a py3-none-any wheel here.
SDIST_ONLY=(promise)

mkdir -p "$DEST" "$(dirname "$EXCLUDE")"
grep -qxF /.whl/ "$EXCLUDE" 2>/dev/null || echo /.whl/ >>"$EXCLUDE"

normal() { echo "$1" | tr '[:upper:]-' '[:lower:]_'; }  # a wheel file's distribution name

have() {  # have NAME VERSION: is that wheel in $DEST already?
  local whl
  for whl in "$DEST"/*.whl; do
    [[ -e "$whl" && "$(normal "$(basename "$whl" | cut -d- -f1)")" == "$(normal "$1")" &&
      "$(basename "$whl" | cut -d- -f2)" == "$2" ]] && return 0
  done
  return 1
}

for spec in "${WHEELS[@]}"; do
  name="${spec%%==*}"
  have "$name" "${spec#*==}" && continue
  if [[ " ${SDIST_ONLY[*]} " == *" $name "* ]]; then
    $PIP wheel -q --no-deps -w "$DEST" "$spec"
  else
    $PIP download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      --platform manylinux1_x86_64 -d "$DEST" "$spec"
  fi
done

# One version of each: a stale wheel of another version would stop the whole install there.
stale=()
for whl in "$DEST"/*.whl; do
  base="$(basename "$whl")"
  keep=0
  for spec in "${WHEELS[@]}"; do
    [[ "$(normal "${base%%-*}")" == "$(normal "${spec%%==*}")" &&
      "$(echo "$base" | cut -d- -f2)" == "${spec#*==}" ]] && keep=1
  done
  ((keep)) || stale+=("$whl")
done
if ((${#stale[@]})); then
  echo "Removing wheels not in the list: ${stale[*]##*/}"
  rm -f "${stale[@]}"
fi

count="$(ls "$DEST"/*.whl | wc -l)"
echo "$count wheels in $DEST ($(du -sh "$DEST" | cut -f1) in all; the device carries at most 64 MiB with the tree):"
ls -1s --block-size=K "$DEST" | tail -n +2
if ((count != ${#WHEELS[@]})); then
  echo "Expected ${#WHEELS[@]} wheels, found $count." >&2
  exit 1
fi
