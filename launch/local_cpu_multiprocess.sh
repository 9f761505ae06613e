#!/usr/bin/env bash
# Multi-host bird_jax on ONE machine, without accelerators: N processes x D fake CPU devices.
#
#   launch/local_cpu_multiprocess.sh NUM_PROCESSES DEVICES_PER_PROCESS -- MAIN_FLAGS...
#
#   launch/local_cpu_multiprocess.sh 2 4 -- --config=configs/quickstart.py --workdir=runs/q_2x4
#
# Every process runs `python -m bird_jax.main MAIN_FLAGS... --coordinator_address=localhost:PORT
# --num_processes=N --process_id=i` with XLA_FLAGS=--xla_force_host_platform_device_count=D, so
# jax.distributed, the per-process data shards and the cross-process collectives (gloo on CPU)
# run exactly as on N hosts with D devices each. config.batch_size stays the GLOBAL batch and must
# be a multiple of N*D. Running the same command again resumes from the workdir's checkpoint.
#
# Logs: process i writes to LOG_DIR/process_i.log (default WORKDIR/logs). SIGTERM or Ctrl-C to this script is forwarded to every
# process (each saves a checkpoint and exits: 0 for SIGTERM, 130 for Ctrl-C). When one process
# exits non-zero, the others get SIGTERM (then SIGKILL after KILL_GRACE_S) and this script exits
# with the first failure's status, after printing the end of that process's log.
#
# Environment:
#   PYTHON        interpreter with bird_jax installed (default .venv/bin/python)
#   PORT          coordinator port (default: a free port picked on localhost)
#   LOG_DIR       where the per-process logs go (default WORKDIR/logs)
#   JAX_PLATFORMS default cpu, so the run stays on CPU even on a machine with a GPU
#   KILL_GRACE_S  seconds between SIGTERM and SIGKILL for the survivors of a failure (default 30)
#   XLA_FLAGS     extra XLA flags, appended after the device-count flag
set -euo pipefail

usage() {
    cat >&2 <<'EOF'
usage: launch/local_cpu_multiprocess.sh NUM_PROCESSES DEVICES_PER_PROCESS -- MAIN_FLAGS...
  e.g. launch/local_cpu_multiprocess.sh 2 4 -- --config=configs/quickstart.py --workdir=runs/q_2x4
  MAIN_FLAGS go to `python -m bird_jax.main` (--workdir is required); the script adds
  --coordinator_address, --num_processes and --process_id itself.
  Environment: PYTHON (default .venv/bin/python), PORT, LOG_DIR, KILL_GRACE_S.
EOF
}

die() {
    echo "local_cpu_multiprocess.sh: error: $*" >&2
    exit 2
}

if [[ $# -ge 1 && ($1 == -h || $1 == --help) ]]; then
    usage
    exit 0
fi
if [[ $# -lt 2 ]]; then
    usage
    die "NUM_PROCESSES and DEVICES_PER_PROCESS are required."
fi
NUM_PROCESSES=$1
DEVICES_PER_PROCESS=$2
shift 2
[[ $NUM_PROCESSES =~ ^[1-9][0-9]*$ ]] ||
    die "NUM_PROCESSES must be a positive integer, got '$NUM_PROCESSES'."
[[ $DEVICES_PER_PROCESS =~ ^[1-9][0-9]*$ ]] ||
    die "DEVICES_PER_PROCESS must be a positive integer, got '$DEVICES_PER_PROCESS'."
if [[ $# -eq 0 || $1 != -- ]]; then
    usage
    die "expected '--' and then the bird_jax.main flags after the two numbers, got '${1:-}'."
fi
shift

WORKDIR=""
expect_workdir=0
for arg in "$@"; do
    if ((expect_workdir)); then
        WORKDIR=$arg
        expect_workdir=0
        continue
    fi
    case $arg in
        --workdir=*) WORKDIR=${arg#--workdir=} ;;
        --workdir) expect_workdir=1 ;;
        --coordinator_address* | --num_processes* | --process_id*)
            die "do not pass $arg: this script sets --coordinator_address, --num_processes" \
                "and --process_id for every process." ;;
    esac
done
[[ -n $WORKDIR ]] || die "--workdir=DIR is required among the bird_jax.main flags."

PYTHON=${PYTHON:-.venv/bin/python}
command -v "$PYTHON" >/dev/null 2>&1 ||
    die "no Python at '$PYTHON': run 'make install' in the repository root, or set PYTHON=..."

if [[ -z ${PORT:-} ]]; then
    PORT=$("$PYTHON" -c 'import socket
s = socket.socket()
s.bind(("localhost", 0))
print(s.getsockname()[1])') || die "could not pick a free port; set PORT=..."
fi
[[ $PORT =~ ^[0-9]+$ ]] || die "PORT must be a number, got '$PORT'."

[[ $WORKDIR != *://* ]] ||
    die "--workdir=$WORKDIR: URLs are not supported (bird_jax writes the workdir with local file APIs)."
LOG_DIR=${LOG_DIR:-$WORKDIR/logs}
mkdir -p "$LOG_DIR"
KILL_GRACE_S=${KILL_GRACE_S:-30}
export JAX_PLATFORMS=${JAX_PLATFORMS:-cpu}
CHILD_XLA_FLAGS="--xla_force_host_platform_device_count=$DEVICES_PER_PROCESS${XLA_FLAGS:+ $XLA_FLAGS}"

pids=()
stopping=""
signal_all() {  # send signal $1 to every process still running
    local pid
    for pid in "${pids[@]}"; do
        if [[ -n $pid ]]; then kill -s "$1" "$pid" 2>/dev/null || true; fi
    done
}
# shellcheck disable=SC2317,SC2329  # invoked by the traps below
forward() {
    stopping=$1
    echo "Received SIG$1: forwarding it to all processes (they save a checkpoint and stop)." >&2
    signal_all "$1"
}
trap 'forward TERM' TERM
trap 'forward INT' INT

# Job control while starting the children: each gets its own process group, so a Ctrl-C in the
# terminal reaches only this script, which forwards it once (a second SIGINT would make a child
# abandon its checkpoint save). It is switched off again so that `sleep` below stays in the
# terminal's foreground group with this script.
set -m
for ((i = 0; i < NUM_PROCESSES; i++)); do
    XLA_FLAGS=$CHILD_XLA_FLAGS "$PYTHON" -m bird_jax.main "$@" \
        --coordinator_address="localhost:$PORT" --num_processes="$NUM_PROCESSES" \
        --process_id="$i" </dev/null >"$LOG_DIR/process_$i.log" 2>&1 &
    pids+=("$!")
done
set +m
echo "Started $NUM_PROCESSES processes x $DEVICES_PER_PROCESS CPU devices (coordinator" \
    "localhost:$PORT, pids ${pids[*]}); logs: $LOG_DIR/process_<i>.log, i = 0..$((NUM_PROCESSES - 1))"

status=0
remaining=$NUM_PROCESSES
kill_at=""
while ((remaining > 0)); do
    for i in "${!pids[@]}"; do
        pid=${pids[$i]}
        [[ -n $pid ]] || continue
        kill -0 "$pid" 2>/dev/null && continue
        rc=0
        wait "$pid" || rc=$?
        pids[i]=""
        remaining=$((remaining - 1))
        echo "process $i exited with status $rc"
        if [[ $stopping == INT && $rc == 130 ]]; then
            ((status != 0)) || status=$rc  # stopped by the forwarded Ctrl-C, as asked
        elif ((rc != 0 && status == 0)); then
            status=$rc
            echo "process $i failed; last lines of $LOG_DIR/process_$i.log:" >&2
            tail -n 20 "$LOG_DIR/process_$i.log" >&2 || true
            if ((remaining > 0)); then
                echo "Stopping the other processes (SIGTERM, SIGKILL after ${KILL_GRACE_S}s)." >&2
                signal_all TERM
                kill_at=$((SECONDS + KILL_GRACE_S))
            fi
        fi
    done
    if [[ -n $kill_at ]] && ((remaining > 0 && SECONDS >= kill_at)); then
        signal_all KILL
        kill_at=""
    fi
    ((remaining > 0)) && sleep 1
done
if ((status == 0)); then
    echo "All $NUM_PROCESSES processes exited successfully; logs in $LOG_DIR."
fi
exit "$status"
