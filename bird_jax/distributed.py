"""Multi-process start-up: one process per host, one pmap over the devices of every process.

`initialize` must run before anything touches a JAX device. It starts JAX's distributed runtime
when the run has several processes:
  explicit   --coordinator_address, --num_processes and --process_id (or the environment
             variables JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID);
  detected   a SLURM job step with several tasks (srun), or a Cloud TPU VM (JAX reads the pod's
             workers from the TPU metadata; a single-host TPU VM is one process);
and does nothing otherwise. Multi-process CPU runs use gloo collectives. A process that stops
sending heartbeats for `timeout_s` is declared dead and the others fail with an error instead of
waiting forever; the same timeout bounds start-up (waiting for every process to join).
"""

import dataclasses
import glob
import os

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


def _on_cloud_tpu_vm() -> bool:
    """TPU chips are attached to this host (Cloud TPU VM)."""
    return bool(glob.glob("/dev/accel*") or glob.glob("/dev/vfio/[0-9]*"))


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


def initialize(launch: Launch, timeout_s: int = 300) -> None:
    """Starts JAX's distributed runtime for a multi-process launch (see the module docstring)."""
    if launch.kind == "single":
        return
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=launch.coordinator_address,
        num_processes=launch.num_processes,
        process_id=launch.process_id,
        initialization_timeout=timeout_s,
        heartbeat_timeout_seconds=timeout_s,
    )
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
