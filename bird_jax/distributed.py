"""Multi-process start-up: one process per host, one pmap over the devices of every process.

`initialize` must run before anything touches a JAX device. It starts JAX's distributed runtime
when the run has several processes:
  explicit   --coordinator_address, --num_processes and --process_id (or the environment
             variables JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID);
  detected   a SLURM job step with several tasks (srun), or a Cloud TPU VM (JAX reads the pod's
             workers from the TPU metadata; a single-host TPU VM is one process);
and does nothing otherwise. Multi-process CPU runs use gloo collectives. One timeout, `timeout_s`,
bounds start-up (waiting for every process to join), declares a process that stops sending
heartbeats dead (the others then fail with an error instead of waiting forever) and bounds the
shutdown wait of a process that raised (JAX otherwise waits 300 s for the others at exit).

SIGTERM belongs to bird_jax (bird_jax.signals), not to JAX: `jax.distributed.initialize` starts
JAX's preemption service, whose own (C++) SIGTERM handler would swallow a stop that arrives before
the training loop and leave a second SIGTERM to kill the final save. The handler it displaced is
put back right after, so the service never hears of a SIGTERM (Orbax's preemption check then
always says no). The service is not switched off with `jax_enable_preemption_service=False`
(JAX 0.8.2+): Orbax before 0.12.3 fails every multi-process save without it.

JAX versions: `shutdown_timeout_seconds` needs JAX >= 0.8.1, `heartbeat_timeout_seconds` 0.7.0
(setup.cfg asks for 0.10); `JAX_LOCAL_DEVICE_IDS` and the gloo CPU collectives are older.
"""

import dataclasses
import glob
import importlib.util
import os
import signal
import threading
from pathlib import Path

import jax
import numpy as np
from absl import logging

ENV_ADDRESS = "JAX_COORDINATOR_ADDRESS"
ENV_NUM_PROCESSES = "JAX_NUM_PROCESSES"
ENV_PROCESS_ID = "JAX_PROCESS_ID"
STOP_CHECK_EVERY_STEPS = 10  # multi-process: how often the processes agree on stopping
_SLURM_STEP = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID")


@dataclasses.dataclass(frozen=True)
class Launch:
    """How this process was started: 'single', 'explicit', 'slurm' or 'tpu'."""

    kind: str
    coordinator_address: str | None = None
    num_processes: int | None = None
    process_id: int | None = None


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"${name} must be an integer, got {value!r}.") from None


# PCI ids of TPU chips, as JAX's own detection reads them (jax/_src/hardware_utils.py): vendor
# Google, device v2/v3, v4, v5p, v5e, v6e, 7x. Google's vendor id alone is no TPU: gVNIC shares it.
GOOGLE_PCI_VENDOR = "0x1ae0"
TPU_PCI_DEVICES = {"0x0027", "0x0056", "0x005e", "0x0062", "0x0063", "0x006f", "0x0076"}


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip().lower()
    except OSError:
        return ""


def _tpu_chips(root: str = "/") -> int:
    """Number of TPU chips on this host's PCI bus (0 off Cloud TPU). `root` is for tests.

    Not `/dev/accel*`: Linux's accel subsystem makes a `/dev/accel/` directory for Intel NPUs,
    AMD XDNA, Habana and Qualcomm accelerators, so a laptop would take the TPU path. Google PCI
    devices of an unknown (newer) id count when TPU device nodes exist: `/dev/accel<N>` (v2-v4)
    or `/dev/vfio/<N>` (v5e and later).
    """
    chips = unknown = 0
    for vendor in glob.glob(os.path.join(root, "sys/bus/pci/devices/*/vendor")):
        if _read(vendor) != GOOGLE_PCI_VENDOR:
            continue
        if _read(os.path.join(os.path.dirname(vendor), "device")) in TPU_PCI_DEVICES:
            chips += 1
        else:
            unknown += 1
    if not chips and unknown:
        nodes = ("dev/accel[0-9]*", "dev/vfio/[0-9]*")
        chips = sum(len(glob.glob(os.path.join(root, node))) for node in nodes)
    return chips


def _on_cloud_tpu_vm(root: str = "/") -> bool:
    """TPU chips are attached to this host (Cloud TPU VM) and JAX can drive them (libtpu)."""
    if not _tpu_chips(root):
        return False
    if importlib.util.find_spec("libtpu") is None:
        logging.warning(
            "TPU chips found but libtpu is not installed: running as one process on CPU. "
            "Install JAX's TPU build (pip install -e '.[tpu]') to use the TPUs."
        )
        return False
    return True


def detect(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> Launch:
    """The launch these arguments (else the environment) describe; ValueError if inconsistent."""
    explicit = {
        "--coordinator_address": coordinator_address or os.environ.get(ENV_ADDRESS) or None,
        "--num_processes": num_processes if num_processes is not None
        else _env_int(ENV_NUM_PROCESSES),
        "--process_id": process_id if process_id is not None else _env_int(ENV_PROCESS_ID),
    }  # fmt: skip
    given = [name for name, value in explicit.items() if value is not None]
    if given:
        missing = [name for name, value in explicit.items() if value is None]
        if missing:
            raise ValueError(
                f"{', '.join(given)} given without {', '.join(missing)}: a multi-process run "
                "needs all three (or the environment variables "
                f"{ENV_ADDRESS}, {ENV_NUM_PROCESSES}, {ENV_PROCESS_ID})."
            )
        address, count, index = explicit.values()
        if count < 1 or not 0 <= index < count:
            raise ValueError(
                f"--process_id={index} must be in [0, --num_processes={count}) and "
                "--num_processes >= 1."
            )
        if count == 1:
            return Launch("single")
        return Launch("explicit", address, count, index)
    if all(name in os.environ for name in _SLURM_STEP) and _env_int("SLURM_NTASKS") > 1:
        return Launch("slurm")
    if _on_cloud_tpu_vm():
        return Launch("tpu")
    return Launch("single")


def _reclaim_sigterm(handler) -> None:
    """Puts back the SIGTERM handler JAX's preemption service replaced (its C++ handler is
    invisible to Python's signal.getsignal, which still reports the old one)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.SIG_DFL if handler is None else handler)


def initialize(launch: Launch, timeout_s: int = 300) -> None:
    """Starts JAX's distributed runtime for a multi-process launch (see the module docstring)."""
    if launch.kind == "single":
        return
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    sigterm = signal.getsignal(signal.SIGTERM)
    jax.distributed.initialize(
        coordinator_address=launch.coordinator_address,
        num_processes=launch.num_processes,
        process_id=launch.process_id,
        initialization_timeout=timeout_s,
        heartbeat_timeout_seconds=timeout_s,
        shutdown_timeout_seconds=timeout_s,
    )
    _reclaim_sigterm(sigterm)
    logging.info(
        "Process %d of %d (%s launch): %d local and %d global devices.",
        jax.process_index(),
        jax.process_count(),
        launch.kind,
        jax.local_device_count(),
        jax.device_count(),
    )


def stop_agreed(requested: bool, step: int) -> bool:
    """Whether training stops after `step`: this process's request alone, or with several
    processes, any process's request, checked every STOP_CHECK_EVERY_STEPS steps (a collective
    then, called at the same steps by every process) so that all stop at the same step."""
    if jax.process_count() == 1:
        return requested
    if step % STOP_CHECK_EVERY_STEPS:
        return False
    from jax.experimental import multihost_utils

    return bool(np.asarray(multihost_utils.process_allgather(np.array(requested))).any())
