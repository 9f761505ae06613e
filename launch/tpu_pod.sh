#!/usr/bin/env bash
# bird_jax on a Cloud TPU VM slice (v4-32, v5litepod-16, ...): one process per TPU VM worker,
# the SAME command on every worker; jax.distributed.initialize() finds the slice by itself.
#
#   launch/tpu_pod.sh [--dry_run] SUBCOMMAND [OPTIONS] [-- MAIN_FLAGS...]
#
#   export TPU_NAME=birds ZONE=us-central2-b ACCELERATOR_TYPE=v4-32
#   launch/tpu_pod.sh create --spot                 # the TPU VMs (runtime version from the type)
#   launch/tpu_pod.sh install                       # this working tree + Python 3.11 venv + .[tpu]
#   launch/tpu_pod.sh run --config=configs/convnext_tiny.py --workdir=/mnt/runs/convnext_t \
#       --shared_workdir -- --config.data.root=/data/birds --config.batch_size=1024
#   launch/tpu_pod.sh status                        # TPU state + training process + log tail
#   launch/tpu_pod.sh stop                          # SIGTERM: every worker saves and exits 0
#   launch/tpu_pod.sh delete
#
# Subcommands:
#   create   gcloud compute tpus tpu-vm create (--preemptible or --spot for cheaper, reclaimable)
#   install  sync, then on every worker: a Python 3.11 venv made by uv (the TPU VM images ship
#            Python 3.10; bird_jax needs >= 3.11) and pip install -e '.[tpu]'
#   sync     copy the code only (a tarball of this working tree, or git clone/fetch with --repo_url);
#            files of the previous sync that the tree no longer has are removed, anything else in
#            the remote folder (data, venv, logs) is left alone
#   run      start `python -m bird_jax.main --config=... --workdir=... MAIN_FLAGS...` on every
#            worker with nohup; worker logs: REMOTE_DIR/logs/train_<hostname>.log on each worker
#   status   TPU state and health, and on each worker whether training runs + its last log lines
#   stop     SIGTERM to the training process on every worker (checkpoint, exit 0). The TPU VMs
#            keep running (and billing): `delete` them; the run lives on in the workdir.
#   delete   delete the TPU VMs (asks for confirmation unless --yes)
#
# Resume: after a preemption (spot/preemptible), a maintenance event (it sends SIGTERM: every
# process saves a checkpoint and exits 0) or `stop`, the same `run` command resumes from the
# latest checkpoint in the workdir. A reclaimed spot/preemptible TPU must be deleted and created
# again (then `install` and `run`). If one worker's process dies, the others exit with an error
# after --distributed_timeout_s (default 300 s) instead of hanging; `run` again resumes.
#
# Options (flag or environment variable; a flag wins):
#   --name TPU_NAME                  TPU name (required)
#   --zone ZONE                      zone (required), e.g. us-central2-b (v4), us-west4-a
#                                    (v5litepod)
#   --project PROJECT                GCP project (default: gcloud's configured project)
#   --accelerator_type ACCELERATOR_TYPE    create: v4-32, v5litepod-16, v5p-16, v6e-16, ...
#                                    (TPU v5e is v5litepod-N in gcloud, not v5e-N)
#   --runtime_version RUNTIME_VERSION      create: default from the type (v2/v3/v4:
#                                    tpu-ubuntu2204-base, v5litepod: v2-alpha-tpuv5-lite,
#                                    v5p: v2-alpha-tpuv5, v6e: v2-alpha-tpuv6e)
#   --preemptible | --spot           create: a preemptible or spot TPU
#   --repo_url REPO_URL              install/sync: git clone this URL on every worker instead of
#   --branch BRANCH                  copying the local working tree (default branch: main)
#   --python REMOTE_PYTHON           install: Python for the venv, a version uv installs (3.11,
#                                    3.12, ...; default 3.11) or an interpreter path on the workers
#   --remote_dir REMOTE_DIR          code directory on the workers, under $HOME (bird_jax)
#   --worker WORKER                  which workers: all (default), 0, 0,2 or 1-3 (not for run)
#   --config CONFIG                  run: config file[:variant] (path inside the repository)
#   --workdir WORKDIR                run: an absolute path that is the SAME shared storage on
#                                    every worker (a gcsfuse mount of a bucket, Filestore NFS);
#                                    never a worker's local disk. gs:// URLs are refused: bird_jax
#                                    writes its workdir with local file APIs
#   --shared_workdir                 run: required with WORKDIR (you assert it is shared)
#   --yes                            delete: do not ask for confirmation
#   --dry_run                        print every command instead of running it
#   -- MAIN_FLAGS...                 run: extra bird_jax.main flags, e.g. --config.batch_size=1024
# Every gcloud command is printed (`+ gcloud ...`) before it runs. Commands on several workers
# need your ssh key in an agent first (`ssh-add ~/.ssh/google_compute_engine`). The dataset
# (config.data.root / data_dir) must exist at the same path on every worker; it may live inside
# REMOTE_DIR (sync leaves files it did not copy alone).
set -euo pipefail

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
}

die() {
    echo "tpu_pod.sh: error: $*" >&2
    exit 2
}

# ---------------------------------------------------------------- arguments
SUBCOMMAND=""
DRY_RUN=0
PREEMPTIBLE=0
SPOT=0
SHARED_WORKDIR=0
YES=0
MAIN_FLAGS=()
TPU_NAME=${TPU_NAME:-}
ZONE=${ZONE:-}
PROJECT=${PROJECT:-}
ACCELERATOR_TYPE=${ACCELERATOR_TYPE:-}
RUNTIME_VERSION=${RUNTIME_VERSION:-}
REPO_URL=${REPO_URL:-}
BRANCH=${BRANCH:-main}
REMOTE_PYTHON=${REMOTE_PYTHON:-3.11}
REMOTE_DIR=${REMOTE_DIR:-bird_jax}
WORKER=${WORKER:-all}
CONFIG=${CONFIG:-}
WORKDIR=${WORKDIR:-}

while [[ $# -gt 0 ]]; do
    arg=$1
    shift
    case $arg in
        --) MAIN_FLAGS=("$@"); break ;;
        -h | --help) usage; exit 0 ;;
        --dry_run) DRY_RUN=1 ;;
        --preemptible) PREEMPTIBLE=1 ;;
        --spot) SPOT=1 ;;
        --shared_workdir) SHARED_WORKDIR=1 ;;
        --yes) YES=1 ;;
        --*)
            name=${arg%%=*}
            if [[ $arg == *=* ]]; then
                value=${arg#*=}
            else
                [[ $# -gt 0 ]] || die "$name needs a value."
                value=$1
                shift
            fi
            case $name in
                --name) TPU_NAME=$value ;;
                --zone) ZONE=$value ;;
                --project) PROJECT=$value ;;
                --accelerator_type) ACCELERATOR_TYPE=$value ;;
                --runtime_version) RUNTIME_VERSION=$value ;;
                --repo_url) REPO_URL=$value ;;
                --branch) BRANCH=$value ;;
                --python) REMOTE_PYTHON=$value ;;
                --remote_dir) REMOTE_DIR=$value ;;
                --worker) WORKER=$value ;;
                --config) CONFIG=$value ;;
                --workdir) WORKDIR=$value ;;
                *) die "unknown option $name (bird_jax.main flags go after '--'; see --help)." ;;
            esac
            ;;
        *)
            [[ -z $SUBCOMMAND ]] || die "one subcommand at a time: got '$SUBCOMMAND' and '$arg'."
            SUBCOMMAND=$arg
            ;;
    esac
done

case $SUBCOMMAND in
    create | install | sync | run | status | stop | delete) ;;
    "") usage >&2; die "no subcommand (create | install | sync | run | status | stop | delete)." ;;
    *) die "unknown subcommand '$SUBCOMMAND' (create | install | sync | run | status | stop | delete)." ;;
esac
[[ -n $TPU_NAME ]] || die "no TPU name: --name=NAME or TPU_NAME=NAME."
[[ -n $ZONE ]] || die "no zone: --zone=ZONE or ZONE=ZONE (e.g. us-central2-b)."
[[ $REMOTE_DIR =~ ^[A-Za-z0-9_][A-Za-z0-9_./-]*$ && $REMOTE_DIR != *..* ]] ||
    die "--remote_dir must be a plain relative directory under \$HOME, got '$REMOTE_DIR'."
[[ $WORKER == all || $WORKER =~ ^[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*$ ]] ||
    die "--worker must be 'all' or worker numbers like 0 or 0,2 or 1-3; got '$WORKER'."
if ((${#MAIN_FLAGS[@]})) && [[ $SUBCOMMAND != run ]]; then
    die "flags after '--' are for 'run' only."
fi

REPO_ROOT=$(cd "$(dirname "$0")/.." && pwd)
TPU=(compute tpus tpu-vm)
LOCATION=(--zone="$ZONE")
[[ -z $PROJECT ]] || LOCATION+=(--project="$PROJECT")
LOG_DIR="$REMOTE_DIR/logs"
MANIFEST=.bird_jax_synced_files
PID_FILE="$LOG_DIR/train.pid"

q() {  # shell-quote the arguments for the remote bash
    local out="" a
    for a in "$@"; do out+="$(printf '%q' "$a") "; done
    echo "${out% }"
}

show() {  # a command as copy-pastable shell: plain words bare, others in single quotes
    local out="" a
    for a in "$@"; do
        if [[ $a =~ ^[A-Za-z0-9_./:=@,+%-]+$ ]]; then
            out+="$a "
        else
            out+="'${a//\'/\'\\\'\'}' "
        fi
    done
    echo "${out% }"
}

run_cmd() {  # print a command, then run it unless --dry_run
    echo "+ $(show "$@")" >&2
    ((DRY_RUN)) || "$@"
}

on_workers() {  # run a bash command on the selected workers
    run_cmd gcloud "${TPU[@]}" ssh "$TPU_NAME" "${LOCATION[@]}" --worker="$WORKER" --command="$1"
}

require_gcloud() {
    ((DRY_RUN)) || command -v gcloud >/dev/null 2>&1 ||
        die "gcloud not found: install the Google Cloud CLI (or use --dry_run to see the commands)."
}

# ---------------------------------------------------------------- subcommands
create() {
    [[ -n $ACCELERATOR_TYPE ]] ||
        die "create needs --accelerator_type=TYPE or ACCELERATOR_TYPE (e.g. v4-32, v5litepod-16)."
    ((PREEMPTIBLE && SPOT)) && die "--preemptible and --spot exclude each other: pick one."
    if [[ -z $RUNTIME_VERSION ]]; then
        case $ACCELERATOR_TYPE in
            v2-* | v3-* | v4-*) RUNTIME_VERSION=tpu-ubuntu2204-base ;;
            v5litepod-*) RUNTIME_VERSION=v2-alpha-tpuv5-lite ;;
            v5e-*) die "TPU v5e is '${ACCELERATOR_TYPE/v5e-/v5litepod-}' in gcloud, not '$ACCELERATOR_TYPE'." ;;
            v5p-*) RUNTIME_VERSION=v2-alpha-tpuv5 ;;
            v6e-*) RUNTIME_VERSION=v2-alpha-tpuv6e ;;
            *) die "no default runtime version for '$ACCELERATOR_TYPE': pass --runtime_version." ;;
        esac
    fi
    local extra=()
    ((PREEMPTIBLE)) && extra+=(--preemptible)
    ((SPOT)) && extra+=(--spot)
    run_cmd gcloud "${TPU[@]}" create "$TPU_NAME" "${LOCATION[@]}" \
        --accelerator-type="$ACCELERATOR_TYPE" --version="$RUNTIME_VERSION" ${extra[@]+"${extra[@]}"}
}

sync_code() {
    local remote
    if [[ -n $REPO_URL ]]; then
        remote="set -e
if [ -d $(q "$REMOTE_DIR")/.git ]; then
  git -C $(q "$REMOTE_DIR") fetch --quiet origin $(q "$BRANCH")
  git -C $(q "$REMOTE_DIR") checkout --quiet -B $(q "$BRANCH") FETCH_HEAD
elif [ -e $(q "$REMOTE_DIR") ]; then
  echo \"\$(hostname): $(q "$REMOTE_DIR") exists but is no git clone; delete it or sync without --repo_url\" >&2; exit 1
else
  git clone --quiet --branch $(q "$BRANCH") $(q "$REPO_URL") $(q "$REMOTE_DIR")
fi
echo \"\$(hostname): \$(git -C $(q "$REMOTE_DIR") log -1 --oneline)\""
        on_workers "$remote"
        return
    fi
    # A tarball of the working tree: tracked and untracked files that git does not ignore
    # (no .venv, runs/ or caches), uncommitted changes included; no git remote needed.
    tarball=${TMPDIR:-/tmp}/bird_jax_src_$$.tar.gz  # globals: the EXIT trap removes them
    list=${TMPDIR:-/tmp}/bird_jax_src_$$.list
    echo "+ (cd $(q "$REPO_ROOT") && git ls-files -z --cached --others --exclude-standard" \
        "| tar -czf $(q "$tarball") --null -T -)" >&2
    if ((!DRY_RUN)); then
        git -C "$REPO_ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1 ||
            die "$REPO_ROOT is not a git working tree: use --repo_url=URL."
        trap 'rm -f "$tarball" "$list"' EXIT
        (
            cd "$REPO_ROOT"
            git ls-files -z --cached --others --exclude-standard |
                while IFS= read -r -d '' f; do
                    if [[ -e $f ]]; then printf '%s\0' "$f"; fi  # skip deleted files
                done >"$list"
            tar -czf "$tarball" --null -T "$list"
        )
        echo "  $(tr -cd '\0' <"$list" | wc -c) files, $(du -h "$tarball" | cut -f1)" >&2
    fi
    run_cmd gcloud "${TPU[@]}" scp "$tarball" "$TPU_NAME:bird_jax_src.tar.gz" "${LOCATION[@]}" \
        --worker="$WORKER"
    on_workers "$(unpack_script)"
}

unpack_script() {  # remote: unpack ~/bird_jax_src.tar.gz into REMOTE_DIR (see sync in --help)
    # $MANIFEST lists the files the previous sync unpacked: those the new tarball lacks are
    # removed (a deleted module must not linger); files never synced (data, .venv, logs) stay.
    local dir manifest
    dir=$(q "$REMOTE_DIR")
    manifest=$(q "$REMOTE_DIR/$MANIFEST")
    echo "set -e
mkdir -p $dir
tar -tzf bird_jax_src.tar.gz | LC_ALL=C sort >$manifest.new
if [ -f $manifest ]; then
  LC_ALL=C comm -23 $manifest $manifest.new | while IFS= read -r f; do rm -f -- $dir/\"\$f\"; done
fi
tar -xzf bird_jax_src.tar.gz -C $dir
mv $manifest.new $manifest
rm -f bird_jax_src.tar.gz
echo \"\$(hostname): code in ~/$dir\""
}

install() {
    sync_code
    local remote
    # uv puts a standalone CPython build in ~/.local/share/uv (no apt, no PPA, the same on every
    # image); it comes from PyPI with the system pip, else from uv's installer.
    remote="set -e
cd $(q "$REMOTE_DIR")
new_enough='import sys; sys.exit(sys.version_info < (3, 11))'
if [ -x .venv/bin/python ] && ! .venv/bin/python -c \"\$new_enough\"; then
  echo \"\$(hostname): .venv has \$(.venv/bin/python -V); bird_jax needs Python >= 3.11: recreating it\"
  rm -rf .venv
fi
if [ ! -x .venv/bin/python ]; then
  export PATH=\"\$HOME/.local/bin:\$PATH\"
  if ! command -v uv >/dev/null; then
    python3 -m pip install --quiet --user uv || curl -LsSf https://astral.sh/uv/install.sh | sh
  fi
  uv venv --quiet --seed --python $(q "$REMOTE_PYTHON") .venv
  .venv/bin/python -c \"\$new_enough\" || { echo \"\$(hostname): --python=$(q "$REMOTE_PYTHON") gave \$(.venv/bin/python -V); bird_jax needs >= 3.11\" >&2; exit 1; }
fi
.venv/bin/pip install --quiet --upgrade pip
.venv/bin/pip install --quiet -e '.[tpu]'
.venv/bin/python -c 'import importlib.util, jax
assert importlib.util.find_spec(\"libtpu\"), \"libtpu is missing: is there a tpu extra in setup.cfg?\"
print(\"jax\", jax.__version__, \"with libtpu\")'"
    on_workers "$remote"
}

run() {
    [[ -n $CONFIG ]] || die "run needs --config=configs/X.py (or CONFIG=...)."
    [[ -n $WORKDIR ]] || die "run needs --workdir=/SHARED/runs/NAME (or WORKDIR=...)."
    [[ $WORKDIR != *://* ]] || die "--workdir=$WORKDIR: bird_jax writes its workdir with local" \
        "file APIs, so URLs are refused. Mount the bucket at the same path on every worker" \
        "(gcsfuse) or use Filestore, and pass that path with --shared_workdir."
    ((SHARED_WORKDIR)) || die "--workdir=$WORKDIR: every worker must write to the SAME storage" \
        "(checkpoints are restored from it). Put it on a mount shared by all workers (gcsfuse," \
        "Filestore) and add --shared_workdir to say so."
    [[ $WORKDIR == /* ]] || die "--workdir must be an absolute path (on the shared mount)."
    [[ $WORKER == all ]] || die "run starts every worker (--worker=all): a slice needs all of them."
    local flag
    for flag in ${MAIN_FLAGS[@]+"${MAIN_FLAGS[@]}"}; do
        case $flag in
            --config=* | --config | --workdir=* | --workdir)
                die "give $flag as a tpu_pod.sh option (before '--'), not after '--'." ;;
        esac
    done
    local main_cmd
    main_cmd=$(q .venv/bin/python -m bird_jax.main --config="$CONFIG" --workdir="$WORKDIR" \
        ${MAIN_FLAGS[@]+"${MAIN_FLAGS[@]}"})
    # One ssh round to refuse a second run while one is alive on any worker, then the start.
    on_workers "if [ -f $(q "$PID_FILE") ] && kill -0 \"\$(cat $(q "$PID_FILE"))\" 2>/dev/null; then
  echo \"\$(hostname): training already runs (pid \$(cat $(q "$PID_FILE"))): 'tpu_pod.sh stop' first\" >&2; exit 1
fi"
    on_workers "set -e
cd $(q "$REMOTE_DIR")
mkdir -p logs
log=logs/train_\$(hostname).log
echo \"=== \$(date -u +%FT%TZ) start: $main_cmd\" >>\"\$log\"
PYTHONUNBUFFERED=1 setsid nohup $main_cmd </dev/null >>\"\$log\" 2>&1 &
echo \$! >logs/train.pid
echo \"\$(hostname): started pid \$!, log ~/$(q "$REMOTE_DIR")/\$log\""
    echo "Started on every worker. Follow worker 0 with:" >&2
    echo "  $(show gcloud "${TPU[@]}" ssh "$TPU_NAME" "${LOCATION[@]}" --worker=0 \
        --command="tail -f $LOG_DIR/train_*.log")" >&2
}

status() {
    run_cmd gcloud "${TPU[@]}" describe "$TPU_NAME" "${LOCATION[@]}" \
        --format="yaml(state,health,acceleratorType,runtimeVersion,schedulingConfig)"
    on_workers "if [ -f $(q "$PID_FILE") ] && kill -0 \"\$(cat $(q "$PID_FILE"))\" 2>/dev/null; then
  echo \"\$(hostname): training runs (pid \$(cat $(q "$PID_FILE")))\"
else
  echo \"\$(hostname): no training process\"
fi
tail -n 3 $(q "$LOG_DIR")/train_*.log 2>/dev/null || true"
}

stop() {
    on_workers "if [ -f $(q "$PID_FILE") ] && kill -TERM \"\$(cat $(q "$PID_FILE"))\" 2>/dev/null; then
  echo \"\$(hostname): SIGTERM sent to pid \$(cat $(q "$PID_FILE")): it saves a checkpoint and exits\"
else
  echo \"\$(hostname): no training process\"
fi"
}

delete() {
    local extra=()
    ((YES)) && extra+=(--quiet)
    run_cmd gcloud "${TPU[@]}" delete "$TPU_NAME" "${LOCATION[@]}" ${extra[@]+"${extra[@]}"}
}

require_gcloud
case $SUBCOMMAND in
    create) create ;;
    install) install ;;
    sync) sync_code ;;
    run) run ;;
    status) status ;;
    stop) stop ;;
    delete) delete ;;
esac
