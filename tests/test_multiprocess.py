"""Several processes on localhost (CPU collectives) train exactly as one process does.

Each run is `python -m bird_jax.main` in subprocesses: 2 processes x 2 CPU devices against
1 process x 4 devices, on the tiny config; a SIGTERM to one process stops both at the same step
with a checkpoint, and the same command resumes; a process that dies takes the others down.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from bird_jax import distributed
from tests.test_train import _final_state, _max_diff
from tests.tiny_config import tiny_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 60
OVERRIDES = [
    f"--config.num_train_steps={STEPS}",
    "--config.eval_every_steps=20",  # the latest and best checkpoints save at the same steps
    "--config.checkpoint_every_steps=20",
    "--config.log_every_steps=5",
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


def _environment(devices: int) -> dict[str, str]:
    """The processes' environment: `devices` fake CPU devices, and no persistent compilation cache
    (as a user runs): with jax 0.10.0, a pair resumed after a SIGTERM stop hung at its first
    evaluation when it shared the test run's cache (0.10.2 and 0.12 did not)."""
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
           "JAX_PLATFORMS": "cpu"}  # fmt: skip
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    return env


def _start(workdir, devices: int, process_id: int = 0, num_processes: int = 1, port: int = 0):
    """One bird_jax.main training process on `devices` fake CPU devices."""
    env = _environment(devices)
    command = [sys.executable, "-m", "bird_jax.main", "--config=tests/tiny_config.py",
               f"--workdir={workdir}", *OVERRIDES]  # fmt: skip
    if num_processes > 1:
        command += [f"--coordinator_address=localhost:{port}", f"--num_processes={num_processes}",
                    f"--process_id={process_id}", "--distributed_timeout_s=20"]  # fmt: skip
    return subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _start_pair(workdir):
    port = _free_port()
    return [_start(workdir, 2, index, 2, port) for index in range(2)]


def _finish(processes, timeout=300) -> list[tuple[int, str]]:
    """(exit code, output) of each process."""
    return [(p.wait(timeout=timeout), p.stdout.read()) for p in processes]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One process with 4 devices, uninterrupted."""
    workdir = tmp_path_factory.mktemp("one_process")
    ((code, log),) = _finish([_start(workdir, 4)])
    assert code == 0, log[-3000:]
    return workdir


def test_two_processes_train_like_one_and_resume_after_sigterm(reference, tmp_path):
    started = time.monotonic()
    processes = _start_pair(tmp_path)
    for line in processes[0].stdout:  # training is under way: preempt process 0 only
        if "steps/s" in line:
            processes[0].send_signal(signal.SIGTERM)
            break
    stopped = _finish(processes)
    assert [code for code, _ in stopped] == [0, 0], stopped[1][1][-3000:]
    saved = sorted(int(d) for d in os.listdir(tmp_path / "checkpoints") if d.isdigit())
    assert saved and saved[-1] % distributed.STOP_CHECK_EVERY_STEPS == 0 and saved[-1] < STEPS

    resumed = _finish(_start_pair(tmp_path))  # the same command again
    assert [code for code, _ in resumed] == [0, 0], resumed[1][1][-3000:]
    print(f"2 processes x 2 devices, stopped at {saved[-1]} and resumed: "
          f"{time.monotonic() - started:.1f} s")  # fmt: skip

    state, data_state = _final_state(tiny_config(), str(tmp_path))
    expected, expected_data = _final_state(tiny_config(), str(reference))
    assert int(state.step) == STEPS and data_state == expected_data
    # Equal up to float rounding: gloo sums the cross-process gradient mean in another order,
    # and Adam's normalisation lets those last-bit differences grow over the steps.
    assert _max_diff(state.params, expected.params) < 3e-5  # 9e-6 seen; one lr-6.25e-5 step shows
    assert _max_diff(state.batch_stats, expected.batch_stats) < 1e-4
    # Evaluation covered the 180 validation digits once each (batch 64: a partial last batch).
    ours, theirs = (json.loads((w / "eval_valid.json").read_text()) for w in (tmp_path, reference))
    assert ours["num_examples"] == theirs["num_examples"] == 180
    assert np.isclose(ours["accuracy"], theirs["accuracy"])
    efficiency = json.loads((tmp_path / "efficiency.json").read_text())
    assert efficiency["energy"]["processes"] == 2 and efficiency["total"]["segments"] == 2


def test_a_dead_process_makes_the_other_fail_instead_of_hanging(tmp_path):
    processes = _start_pair(tmp_path)
    for line in processes[0].stdout:  # only process 0 prints progress
        if "steps/s" in line:
            time.sleep(2)
            processes[1].kill()  # SIGKILL: no checkpoint, no goodbye
            break
    started = time.monotonic()
    code, log = _finish(processes[:1], timeout=120)[0]
    assert code != 0, log[-3000:]
    assert time.monotonic() - started < 120


def test_inconsistent_process_flags_are_a_usage_error(tmp_path):
    command = [sys.executable, "-m", "bird_jax.main", "--config=tests/tiny_config.py",
               f"--workdir={tmp_path}", "--num_processes=2"]  # fmt: skip
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "--num_processes given without --coordinator_address, --process_id" in result.stderr


def test_launch_detection(monkeypatch):
    for name in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID", "SLURM_JOB_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(distributed, "_on_cloud_tpu_vm", lambda: False)
    assert distributed.detect().kind == "single"
    assert distributed.detect("h:1", 1, 0).kind == "single"
    assert distributed.detect("h:1", 4, 3) == distributed.Launch("explicit", "h:1", 4, 3)
    with pytest.raises(ValueError, match=r"--process_id=4 must be in \[0, --num_processes=4\)"):
        distributed.detect("h:1", 4, 4)
    monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "h:2")
    monkeypatch.setenv("JAX_NUM_PROCESSES", "2")
    monkeypatch.setenv("JAX_PROCESS_ID", "1")
    assert distributed.detect() == distributed.Launch("explicit", "h:2", 2, 1)
    monkeypatch.setenv("JAX_PROCESS_ID", "x")
    with pytest.raises(ValueError, match=r"\$JAX_PROCESS_ID must be an integer"):
        distributed.detect()
    for name in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
        monkeypatch.delenv(name)
    slurm = {"SLURM_JOB_ID": "7", "SLURM_STEP_NODELIST": "n[1-2]", "SLURM_NTASKS": "2",
             "SLURM_PROCID": "0"}  # fmt: skip
    for name, value in slurm.items():
        monkeypatch.setenv(name, value)
    assert distributed.detect().kind == "slurm"
    monkeypatch.setenv("SLURM_NTASKS", "1")
    assert distributed.detect().kind == "single"
    monkeypatch.setattr(distributed, "_on_cloud_tpu_vm", lambda: True)
    assert distributed.detect().kind == "tpu"


def test_one_process_stops_when_asked_without_collectives():
    assert distributed.stop_agreed(True, 3) and not distributed.stop_agreed(False, 10)


def _checkpoint_steps(directory) -> list[str]:
    """Entries of an Orbax checkpoint directory: finished steps ('20') and unfinished saves."""
    return sorted(os.listdir(directory)) if os.path.isdir(directory) else []


def test_sigterm_in_setup_stops_at_the_first_agreed_step_and_a_second_cannot_kill_the_save(
    tmp_path,
):
    """JAX's preemption service must not swallow a SIGTERM that arrives before the loop, and a
    repeated SIGTERM while the final checkpoint is written must not kill the process (143)."""
    started = time.monotonic()
    processes = _start_pair(tmp_path)
    signalled = []
    for line in processes[0].stdout:
        if line.startswith("bird_jax:") and not signalled:  # the header: restored, not compiled
            processes[0].send_signal(signal.SIGTERM)
            signalled.append("setup")
        elif line.startswith("stopped at step"):  # the save runs (asynchronously) from here
            processes[0].send_signal(signal.SIGTERM)
            signalled.append("save")
            break
    stopped = _finish(processes)
    print(f"SIGTERM in set-up and in the final save: {time.monotonic() - started:.1f} s")
    assert signalled == ["setup", "save"], stopped[0][1][-3000:]
    assert [code for code, _ in stopped] == [0, 0], stopped[0][1][-3000:]
    # Saved exactly once, at the first step the processes agree on, and completely.
    first = str(distributed.STOP_CHECK_EVERY_STEPS)
    assert _checkpoint_steps(tmp_path / "checkpoints") == [first]
    assert os.path.isdir(tmp_path / "checkpoints" / first / "state")


_RAISES_AT_FIRST_EVALUATION = """
import runpy, sys
from bird_jax import train
def broken(*args, **kwargs):
    raise RuntimeError("injected failure of this process")
train.evaluate_and_report = broken
sys.argv[0] = "bird_jax.main"
runpy.run_module("bird_jax.main", run_name="__main__")
"""


def test_a_process_that_raises_takes_the_other_down_within_the_timeout(tmp_path):
    """Process 1 raises (its Python exits through JAX's shutdown) at the first evaluation, while
    process 0 waits in a collective: both end after about --distributed_timeout_s (20 s), not
    after JAX's default 300 s shutdown timeout."""
    port = _free_port()
    processes = [_start(tmp_path, 2, 0, 2, port)]
    command = processes[0].args
    env = _environment(2)
    flags = [arg.replace("--process_id=0", "--process_id=1") for arg in command[3:]]
    processes.append(subprocess.Popen(
        [sys.executable, "-c", _RAISES_AT_FIRST_EVALUATION, *flags], cwd=REPO, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    ))  # fmt: skip
    for line in processes[1].stdout:
        if "injected failure" in line:
            break
    raised = time.monotonic()
    results = _finish(processes, timeout=150)  # TimeoutExpired: JAX's 300 s shutdown wait
    print(f"both processes ended {time.monotonic() - raised:.1f} s after the failure")
    assert all(code != 0 for code, _ in results), results[0][1][-3000:]


def _fake_host(root, pci_devices: dict[str, tuple[str, str]], dev: list[str]):
    """A fake / with PCI devices {slot: (vendor, device)} and device nodes or folders in /dev."""
    for slot, (vendor, device) in pci_devices.items():
        folder = root / "sys/bus/pci/devices" / slot
        folder.mkdir(parents=True)
        (folder / "vendor").write_text(vendor + "\n")
        (folder / "device").write_text(device + "\n")
    for name in dev:
        path = root / "dev" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.mkdir() if name.endswith("/") else path.touch()
    return str(root)


def test_tpu_detection_reads_pci_ids_not_dev_accel(tmp_path, monkeypatch):
    monkeypatch.setattr(distributed.importlib.util, "find_spec", lambda name: object())  # libtpu
    npu_laptop = _fake_host(  # Intel NPU: the accel subsystem's /dev/accel/ folder
        tmp_path / "laptop", {"0000:00:0b.0": ("0x8086", "0x7d1d")}, ["accel/", "accel/accel0"]
    )
    assert distributed._tpu_chips(npu_laptop) == 0 and not distributed._on_cloud_tpu_vm(npu_laptop)
    gce_vm = _fake_host(tmp_path / "gce", {"0000:00:04.0": ("0x1ae0", "0x0042")}, [])  # gVNIC
    assert not distributed._on_cloud_tpu_vm(gce_vm)
    v4 = {f"0000:00:0{i}.0": ("0x1ae0", "0x005e") for i in range(4)}
    v4_vm = _fake_host(tmp_path / "v4", v4, [f"accel{i}" for i in range(4)])
    assert distributed._tpu_chips(v4_vm) == 4 and distributed._on_cloud_tpu_vm(v4_vm)
    newer = _fake_host(tmp_path / "new", {"0000:00:05.0": ("0x1ae0", "0x0099")}, ["vfio/0"])
    assert distributed._tpu_chips(newer) == 1  # an unknown Google id with TPU device nodes
    monkeypatch.setattr(distributed.importlib.util, "find_spec", lambda name: None)
    assert not distributed._on_cloud_tpu_vm(v4_vm)  # no libtpu: JAX could not use the TPUs


def test_a_url_workdir_is_refused_in_one_line(tmp_path):
    from bird_jax.workdir import Workdir

    with pytest.raises(ValueError, match=r"--workdir gs://bucket/run: a URL is not supported"):
        Workdir("gs://bucket/run")
    assert Workdir(tmp_path / "run").path == tmp_path / "run"


_SIGTERM_AFTER_INITIALIZE = """
import os, signal, sys, time
from bird_jax import distributed
distributed.initialize(distributed.Launch("explicit", sys.argv[1], 1, 0), timeout_s=20)
os.kill(os.getpid(), signal.SIGTERM)
time.sleep(2)
print("SIGTERM was swallowed")
"""


def test_jax_distributed_leaves_sigterm_to_bird_jax():
    """After jax.distributed.initialize (and its preemption service), SIGTERM does what it did
    before: here the default, ending the process, instead of being swallowed."""
    command = [sys.executable, "-c", _SIGTERM_AFTER_INITIALIZE, f"localhost:{_free_port()}"]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == -signal.SIGTERM, result.stdout + result.stderr[-2000:]
