"""The prepared GPU check: one command on a lent GPU, under 9 minutes on an H100.

  bash benchmarks/device/check.sh             # the GPU machine; results under $OUT
  bash benchmarks/device/check.sh --dry_run   # anywhere: every part at toy sizes, on any backend

Parts, in this order, each with its own time limit inside `--budget_s` (the whole check):
  (a) tests     the GPU-relevant tests on the GPU (pmap step, accumulation, bf16 policy, fp16 loss
                scaling, precision 'auto', a tiny run with its efficiency report, SIGTERM + exact
                resume, evaluation); JUnit XML and log.
  (b) quickstart  `bird_jax.main --config=configs/quickstart.py` on the GPU, then the test split
                of its best checkpoint; accuracy, wall time and its efficiency.json.
  (c) throughput  benchmarks/train_step_throughput.py: ConvNeXt-T, VGG16 and the lightweight CNN
                at 224 px beside timm (torch.compile, AMP, channels_last) on the same GPU, one
                pass per precision (bfloat16, then float32); configurations that would overrun
                the budget are listed as not run (its --max_seconds).
  (d) energy    NVML is read by this script for the whole check (energy counter, power, memory,
                utilisation, clocks per part), next to what the quickstart's own tracker
                (bird_jax.efficiency.energy) wrote into efficiency.json.

Writes to --out (default $OUT, else /tmp/device_out), 7 files: summary.md, summary.json,
tests.xml, tests.log, quickstart.log, throughput.md, throughput.log; prints summary.md last.
This process never touches the GPU itself (no JAX here): every part runs in a subprocess.
Exit status: 0 every part ran and passed, 1 a part failed or ran out of time, 2 no GPU found
(without --dry_run).
"""

import argparse
import contextlib
import datetime
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PROG = "benchmarks/device/check.sh"
NO_GPU = 2

# Node ids, so that a renamed test fails loudly here instead of silently not running.
GPU_TESTS = (
    "tests/test_train_step.py",  # pmap step: 1 vs 8 devices (skips on one GPU), accumulation,
    # BatchNorm across devices (skips on one GPU), bf16 policy, fp16 loss scaling
    "tests/test_optim.py::test_precision_policy_names",  # 'auto' -> bfloat16 on a GPU
    "tests/test_optim.py::test_dynamic_loss_scale_backs_off_and_grows",
    "tests/test_train.py::test_training_writes_reports_and_checkpoints",
    "tests/test_train.py::test_efficiency_report_accounts_for_the_run",  # MFU, NVML energy
    "tests/test_train.py::test_sigterm_saves_and_resume_continues_exactly",
    "tests/test_train.py::test_evaluate_best_checkpoint_on_test_split",
)
DRY_TESTS = (  # about 100 s on 2 CPU cores
    "tests/test_optim.py::test_precision_policy_names",
    "tests/test_optim.py::test_dynamic_loss_scale_backs_off_and_grows",
    "tests/test_train_step.py::test_bfloat16_policy_keeps_float32_params_and_optimizer_state",
    "tests/test_train_step.py::test_float16_loss_scaling_skips_overflowing_updates",
    "tests/test_train.py::test_efficiency_report_accounts_for_the_run",
    "tests/test_train.py::test_sigterm_saves_and_resume_continues_exactly",
)
# Tests check the math, not TF32 rounding or run-to-run differences of GPU kernels.
TEST_ENV_GPU = {
    "JAX_DEFAULT_MATMUL_PRECISION": "highest",
    "XLA_FLAGS": "--xla_gpu_deterministic_ops=true",
    "XLA_PYTHON_CLIENT_PREALLOCATE": "false",
}
TARGET = {"model": "convnext_tiny", "precision": "bfloat16", "vs_torch": 1.0, "mfu": 0.45}
# Seconds. Each part's limit is its cap, or less where the parts after it would lose their
# reserve: throughput's is about one ConvNeXt-T configuration with torch.compile (~90 s) and its
# report; the dry run's parts are toys, but a 2-core CPU is slow.
PROBE_LIMIT = 120
MIN_PART_S = 20  # a part with less time than this left is not started
CAPS = {
    "gpu": {"tests": 150, "quickstart": 130, "evaluate": 40},
    "dry": {"tests": 180, "quickstart": 120, "evaluate": 60},
}
RESERVE = {
    "gpu": {"quickstart": 60, "throughput": 180, "summary": 15},
    "dry": {"quickstart": 60, "throughput": 60, "summary": 15},
}
PROBE = """
import json, platform, sys
from importlib import metadata
import jax
info = {"python": platform.python_version(), "executable": sys.executable,
        "backend": jax.default_backend(), "device_count": jax.device_count(),
        "device_kind": jax.devices()[0].device_kind, "versions": {}}
for name in sys.argv[1:]:
    try:
        info["versions"][name] = metadata.version(name)
    except metadata.PackageNotFoundError:
        info["versions"][name] = None
try:
    import bird_jax.train  # noqa: F401  every dependency bird_jax imports
    info["bird_jax_import"] = "ok"
except Exception as e:
    info["bird_jax_import"] = f"{type(e).__name__}: {e}"
try:
    import tensorflow_datasets as tfds  # only the tfds source needs it; protobuf must fit
    tfds.data_source
    info["tfds_import"] = "ok"
except Exception as e:
    info["tfds_import"] = f"{type(e).__name__}: {e}"
print("PROBE " + json.dumps(info))
"""
VERSIONED = [
    *("jax", "jaxlib", "jax-cuda13-plugin", "jax-cuda12-plugin", "flax", "optax"),
    *("orbax-checkpoint", "chex", "numpy", "protobuf", "grain", "clu", "tensorflow-datasets"),
    *("tensorboardX", "dm-pix", "ml-collections", "torch", "timm", "nvidia-ml-py"),
]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dry_run", action="store_true", help="Every part at toy sizes, on any backend (CPU)."
    )
    parser.add_argument("--out", default=os.environ.get("OUT") or "/tmp/device_out")
    parser.add_argument("--scratch", default="/tmp/device_check", help="Workdirs, caches.")
    parser.add_argument(
        "--budget_s", type=float, default=None, help="Whole check (default 500; dry run 420)."
    )
    parser.add_argument("--parts", default="tests,quickstart,throughput")
    parser.add_argument("--models", default="convnext_tiny,vgg16,lightweight_cnn")
    parser.add_argument("--precisions", default="bfloat16,float32")
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument(
        "--torch_python", default=None, help="Python with torch + timm (default: this one)."
    )
    parser.add_argument(
        "--emulate_image",
        action="store_true",
        help="Hide what the device image lacks (benchmarks/device/emulate); for dry runs here.",
    )
    args = parser.parse_args(argv)
    unknown = set(args.parts.split(",")) - {"tests", "quickstart", "throughput"}
    if unknown:
        parser.error(f"--parts: unknown {sorted(unknown)}; choose from tests,quickstart,throughput")
    if args.budget_s is None:
        args.budget_s = 420.0 if args.dry_run else 500.0
    mode = "dry" if args.dry_run else "gpu"
    args.caps, args.reserve = CAPS[mode], dict(RESERVE[mode])
    args.min_pass_s = 90 if mode == "gpu" else 20  # a throughput pass after the first
    if "throughput" not in args.parts.split(","):
        args.reserve["throughput"] = 0
    if "quickstart" not in args.parts.split(","):
        args.reserve["quickstart"] = 0
    if args.torch_python is None:
        bench = Path("/tmp/benchvenv/bin/python")  # benchmarks/README.md's venv, where present
        args.torch_python = str(bench) if args.dry_run and bench.exists() else sys.executable
    return args


class Clock:
    """The check's deadline."""

    def __init__(self, budget_s: float):
        self.start = time.monotonic()
        self.deadline = self.start + budget_s

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def left(self) -> float:
        return self.deadline - time.monotonic()


class NvmlMonitor:
    """Reads NVML for the whole check: energy counter and power, memory, utilisation, clocks."""

    def __init__(self, period_s: float = 0.5):
        self.period_s = period_s
        self.samples: list[dict[str, float]] = []
        self.marks: dict[str, dict[str, float]] = {}
        self.info: dict[str, Any] = {}
        self.reason = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = None
        try:
            import pynvml

            pynvml.nvmlInit()
            visible = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0]
            index = int(visible) if visible.isdigit() else 0
            self.nvml, self.handle = pynvml, pynvml.nvmlDeviceGetHandleByIndex(index)
        except Exception as e:  # no pynvml, no driver, no GPU
            self.nvml = None
            self.reason = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
            return
        self.info = self._static_info(index)
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _try(self, fn, *args):
        try:
            value = fn(*args)
            return value.decode() if isinstance(value, bytes) else value
        except Exception:
            return None

    def _static_info(self, index: int) -> dict[str, Any]:
        nv, h = self.nvml, self.handle
        limit = self._try(nv.nvmlDeviceGetEnforcedPowerLimit, h)
        memory = self._try(nv.nvmlDeviceGetMemoryInfo, h)
        return {
            "index": index,
            "name": self._try(nv.nvmlDeviceGetName, h),
            "driver": self._try(nv.nvmlSystemGetDriverVersion),
            "cuda_driver_version": self._try(nv.nvmlSystemGetCudaDriverVersion),
            "power_limit_w": None if limit is None else limit / 1000,
            "memory_total_gib": None if memory is None else round(memory.total / 2**30, 1),
            "max_sm_clock_mhz": self._try(nv.nvmlDeviceGetMaxClockInfo, h, nv.NVML_CLOCK_SM),
            "energy_counter": self._energy_j() is not None,
        }

    def _energy_j(self) -> float | None:
        value = self._try(self.nvml.nvmlDeviceGetTotalEnergyConsumption, self.handle)
        return None if value is None else value / 1000.0  # mJ

    def _sample(self) -> dict[str, float]:
        nv, h = self.nvml, self.handle
        power = self._try(nv.nvmlDeviceGetPowerUsage, h)
        memory = self._try(nv.nvmlDeviceGetMemoryInfo, h)
        util = self._try(nv.nvmlDeviceGetUtilizationRates, h)
        return {
            "t": time.monotonic(),
            "energy_j": self._energy_j(),
            "power_w": None if power is None else power / 1000,
            "memory_gib": None if memory is None else memory.used / 2**30,
            "util_pct": None if util is None else util.gpu,
            "temp_c": self._try(nv.nvmlDeviceGetTemperature, h, nv.NVML_TEMPERATURE_GPU),
            "sm_clock_mhz": self._try(nv.nvmlDeviceGetClockInfo, h, nv.NVML_CLOCK_SM),
        }

    def _poll(self) -> None:
        while not self._stop.wait(self.period_s):
            sample = self._sample()
            with self._lock:
                self.samples.append(sample)

    def mark(self, part: str, edge: str) -> None:
        """Records the counter at the start or end of a part."""
        if self.nvml is None:
            return
        sample = self._sample()
        with self._lock:
            self.samples.append(sample)
            self.marks.setdefault(part, {})[edge] = sample

    def summary(self, part: str) -> dict[str, Any] | None:
        """Energy and the GPU's state over one part, or None without NVML."""
        marks = self.marks.get(part, {})
        if self.nvml is None or "start" not in marks or "end" not in marks:
            return None
        t0, t1 = marks["start"]["t"], marks["end"]["t"]
        with self._lock:
            inside = [s for s in self.samples if t0 <= s["t"] <= t1]

        def values(key):
            return [s[key] for s in inside if s[key] is not None]

        powers = values("power_w")
        if marks["start"]["energy_j"] is not None and marks["end"]["energy_j"] is not None:
            joules, method = marks["end"]["energy_j"] - marks["start"]["energy_j"], "counter"
        else:
            pairs = zip(inside, inside[1:], strict=False)
            joules = sum(
                (b["t"] - a["t"]) * (a["power_w"] or 0.0) for a, b in pairs if a["power_w"]
            )
            method = "power sampling"
        seconds = t1 - t0
        mean = lambda xs: round(sum(xs) / len(xs), 1) if xs else None  # noqa: E731
        return {
            "seconds": round(seconds, 1),
            "joules": round(joules, 1),
            "wh": round(joules / 3600, 4),
            "method": f"NVML {method}",
            "mean_w": round(joules / seconds, 1) if seconds > 0 else None,
            "max_w": max(powers, default=None),
            "max_memory_gib": round(max(values("memory_gib"), default=0.0), 2),
            "mean_util_pct": mean(values("util_pct")),
            "max_temp_c": max(values("temp_c"), default=None),
            "sm_clock_mhz_median": _median(values("sm_clock_mhz")),
            "samples": len(inside),
        }

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.nvml is not None:
            self._try(self.nvml.nvmlShutdown)


def _median(xs: list[float]) -> float | None:
    xs = sorted(xs)
    return xs[len(xs) // 2] if xs else None


def _no_time(limit: float) -> str:
    return f"{max(limit, 0):.0f} s left for it within --budget_s"


def run_part(
    name: str, command: list[str], env: dict[str, str], timeout_s: float, log: Path, monitor
) -> dict[str, Any]:
    """Runs one subprocess (its own process group) with stdout and stderr into `log`."""
    print(f"[{name}] {' '.join(command)}  (limit {timeout_s:.0f} s, log {log.name})", flush=True)
    start = time.monotonic()
    monitor.mark(name, "start")
    with open(log, "a") as f:
        f.write(f"$ {' '.join(command)}\n")
        f.flush()
        proc = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            rc, timed_out = proc.wait(timeout=max(timeout_s, 1.0)), False
        except subprocess.TimeoutExpired:
            timed_out = True
            for sig, grace in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(timeout=grace)
                    break
                except subprocess.TimeoutExpired:
                    continue
            rc = proc.wait()
            f.write(f"\n[{PROG}] stopped after {timeout_s:.0f} s (time limit of this part)\n")
    monitor.mark(name, "end")
    wall = time.monotonic() - start
    status = "timed out" if timed_out else "ok" if rc == 0 else f"exit {rc}"
    print(f"[{name}] {status} in {wall:.1f} s", flush=True)
    return {"command": command, "rc": rc, "timed_out": timed_out, "wall_s": round(wall, 1)}


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def probe(python: str, env: dict[str, str]) -> dict[str, Any]:
    """Backend, devices and versions, from a subprocess (so this one never holds the GPU)."""
    env = {**env, "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
    try:
        proc = subprocess.run(
            [python, "-c", PROBE, *VERSIONED],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=PROBE_LIMIT,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"probe timed out after {PROBE_LIMIT} s"}
    for line in proc.stdout.splitlines():
        if line.startswith("PROBE "):
            info = json.loads(line[len("PROBE ") :])
            info["stderr_tail"] = "\n".join(proc.stderr.strip().splitlines()[-8:])
            return info
    return {"error": f"exit {proc.returncode}: " + "\n".join(proc.stderr.splitlines()[-15:])}


# ---------------------------------------------------------------------------------- (a) tests


def parse_junit(path: Path) -> dict[str, Any]:
    """Counts and one row per test from pytest's JUnit XML."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as e:
        return {"error": f"no JUnit XML ({e})"}
    rows = []
    for case in root.iter("testcase"):
        outcome, note = "passed", ""
        for tag in ("failure", "error", "skipped"):
            child = case.find(tag)
            if child is not None:
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
                note = (child.get("message") or child.text or "").strip().splitlines()
                note = note[0][:200] if note else ""
                break
        name = f"{case.get('classname', '').split('.')[-1]}::{case.get('name')}"
        rows.append(
            {"test": name, "outcome": outcome, "seconds": float(case.get("time", 0)), "note": note}
        )
    counts = {k: sum(r["outcome"] == k for r in rows) for k in ("passed", "failed", "error")}
    counts["skipped"] = sum(r["outcome"] == "skipped" for r in rows)
    return {"counts": counts, "tests": rows}


def part_tests(args, env, clock, monitor, gpu: bool) -> dict[str, Any]:
    tests = DRY_TESTS if args.dry_run else GPU_TESTS
    env = dict(env)
    if gpu:
        flags = " ".join(filter(None, [env.get("XLA_FLAGS"), TEST_ENV_GPU["XLA_FLAGS"]]))
        env.update(TEST_ENV_GPU, XLA_FLAGS=flags)
    limit = min(args.caps["tests"], clock.left() - sum(args.reserve.values()))
    if limit < MIN_PART_S:
        return {"skipped": _no_time(limit), "passed": False}
    xml = Path(args.out) / "tests.xml"
    command = [args.python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rA"]
    command += ["--durations=10", f"--junitxml={xml}", *tests]
    result = run_part("tests", command, env, limit, Path(args.out) / "tests.log", monitor)
    result["env"] = {k: env[k] for k in TEST_ENV_GPU if gpu}
    result.update(parse_junit(xml))
    counts = result.get("counts", {})
    result["passed"] = (
        result["rc"] == 0 and not counts.get("failed") and not counts.get("error")
    ) and bool(counts)
    return result


# ----------------------------------------------------------------------------- (b) quickstart


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def part_quickstart(args, env, clock, monitor) -> dict[str, Any]:
    workdir = Path(args.scratch) / "quickstart"
    shutil.rmtree(workdir, ignore_errors=True)
    log = Path(args.out) / "quickstart.log"
    command = [args.python, "-m", "bird_jax.main", "--config=configs/quickstart.py"]
    command += [f"--workdir={workdir}"]
    if args.dry_run:  # 30 steps instead of 264
        command += ["--config.num_train_steps=30", "--config.warmup_epochs=0"]
        command += ["--config.log_every_steps=10"]
        command += ["--config.eval_every_steps=30", "--config.checkpoint_every_steps=30"]
    reserve = args.reserve["throughput"] + args.reserve["summary"]
    limit = min(args.caps["quickstart"], clock.left() - reserve)
    if limit < MIN_PART_S:
        return {"skipped": _no_time(limit), "passed": False}
    result = {"train": run_part("quickstart", command, env, limit, log, monitor)}
    result["efficiency"] = _read_json(workdir / "efficiency.json")
    result["eval_valid"] = _read_json(workdir / "eval_valid.json")
    limit = min(args.caps["evaluate"], clock.left() - reserve)
    if result["train"]["rc"] == 0 and limit >= MIN_PART_S:
        command = [args.python, "-m", "bird_jax.main", "--mode=evaluate", f"--workdir={workdir}"]
        command += ["--split=test", "--checkpoint=best"]
        result["evaluate"] = run_part("evaluate", command, env, limit, log, monitor)
        result["eval_test"] = _read_json(workdir / "eval_test.json")
    elif result["train"]["rc"] == 0:
        result["evaluate"] = {"skipped": _no_time(limit)}
    valid = (result["eval_valid"] or {}).get("accuracy")
    minimum = 0.0 if args.dry_run else 0.95  # bfloat16 on a GPU: not the CPU figures of README
    result["accuracy_floor"] = minimum  # none in a dry run: 30 steps, still warming up
    result["passed"] = result["train"]["rc"] == 0 and valid is not None and valid >= minimum
    result["passed"] &= result.get("evaluate", {}).get("rc", 0) == 0
    return result


# ----------------------------------------------------------------------------- (c) throughput


def parse_records(log: Path) -> list[dict[str, Any]]:
    """The JSON records train_step_throughput.py prints to stderr as it measures them."""
    records = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith('{"framework"'):
            with contextlib.suppress(ValueError):
                records.append(json.loads(line))
    return records


def pair_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per configuration: ours and torch side by side, with the ratio."""
    rows: dict[tuple, dict[str, Any]] = {}
    for r in records:
        key = (r["model"], r["precision"], r["image_size"], r["grad_accum_steps"])
        row = rows.setdefault(
            key, dict(zip(("model", "precision", "px", "accum"), key, strict=True))
        )
        row["torch" if r["framework"] == "torch" else "ours"] = r
    for row in rows.values():
        ours, torch = row.get("ours"), row.get("torch")
        ok = ours and torch and not torch.get("failed")
        row["ours_over_torch"] = (
            round(ours["images_per_s_median"] / torch["images_per_s_median"], 3) if ok else None
        )
    return list(rows.values())


def target_verdict(rows: list[dict[str, Any]], dry_run: bool) -> dict[str, Any]:
    """The issue's target: ConvNeXt-T bf16 at >= 1.0x timm and MFU >= 45%."""
    verdict = {**TARGET, "met": None, "why": f"no {TARGET['model']} {TARGET['precision']} row"}
    for row in rows:
        if (row["model"], row["precision"]) != (TARGET["model"], TARGET["precision"]):
            continue
        ours, ratio = row.get("ours") or {}, row["ours_over_torch"]
        mfu = ours.get("mfu")
        verdict.update(measured_vs_torch=ratio, measured_mfu=mfu)
        if ratio is None or mfu is None:
            verdict["why"] = "torch side or MFU missing"
        else:
            verdict["met"] = ratio >= TARGET["vs_torch"] and mfu >= TARGET["mfu"]
            verdict["why"] = f"{ratio:.2f}x timm, MFU {100 * mfu:.1f}%"
        if dry_run:
            verdict["why"] += " (dry run: toy sizes, meaningless)"
    return verdict


def part_throughput(args, env, clock, monitor) -> dict[str, Any]:
    """One pass per precision, bfloat16 first: what the time cuts is float32 of the last models."""
    log, report = Path(args.out) / "throughput.log", Path(args.out) / "throughput.md"
    env = dict(env)
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # CPU torch: no spinning threads
    command = [args.python, "benchmarks/train_step_throughput.py"]
    if args.dry_run:
        command += ["--models=lightweight_cnn", "--image_sizes=32", "--batch_size=16"]
        command += ["--warmup=1", "--repeats=2", "--steps_per_repeat=2", "--torch_threads=1"]
    else:
        command += [f"--models={args.models}", f"--image_sizes={args.image_size}"]
        command += [f"--batch_size={args.batch_size}", "--warmup=3", "--repeats=5"]
        command += ["--steps_per_repeat=20", "--torch_compile", "--torch_channels_last"]
    command += [f"--torch_python={args.torch_python}", f"--out={report}"]
    result: dict[str, Any] = {"passes": [], "not_run": []}
    for precision in args.precisions.split(","):
        limit = clock.left() - args.reserve["summary"]
        if limit < (args.min_pass_s if result["passes"] else MIN_PART_S):
            result["not_run"].append(f"Not run ({precision}): {_no_time(limit)}.")
            continue
        # Configurations stop starting 30 s early: a margin for the one running and the report.
        extra = [f"--precisions={precision}", f"--max_seconds={max(limit - 30, 1):.0f}"]
        name = f"throughput {precision}"
        result["passes"].append(run_part(name, command + extra, env, limit, log, monitor))
    passes = result["passes"]
    if not passes:
        return {"skipped": " ".join(result["not_run"]), "passed": False}
    result["rc"] = next((p["rc"] for p in passes if p["rc"]), 0)
    result["timed_out"] = any(p["timed_out"] for p in passes)
    result["wall_s"] = round(sum(p["wall_s"] for p in passes), 1)
    result["rows"] = pair_records(parse_records(log))
    lines = report.read_text().splitlines() if report.exists() else []
    result["not_run"] = [line for line in lines if line.startswith("Not run")] + result["not_run"]
    result["target"] = target_verdict(result["rows"], args.dry_run)
    torch_skipped = "torch side skipped" in log.read_text(errors="replace")
    result["torch"] = "skipped (no torch/timm)" if torch_skipped else args.torch_python
    result["passed"] = result["rc"] == 0 and bool(result["rows"])
    if not args.dry_run:  # on the GPU every torch cell must have run
        result["passed"] &= all(
            r.get("torch") and not r["torch"].get("failed") for r in result["rows"]
        )
    return result


# ------------------------------------------------------------------------------- summaries


def _status(part: dict[str, Any]) -> str:
    """'rc 0', 'rc 1' or 'rc -15, timed out' of one subprocess."""
    return f"rc {part['rc']}" + (", timed out" if part["timed_out"] else "")


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _gib(x: float | None) -> str:
    return "n/a" if x is None else f"{x / 2**30:.2f} GiB"


def _num(x: float | None, fmt: str = "{:.1f}") -> str:
    return "n/a" if x is None else fmt.format(x)


def energy_section(summary: dict[str, Any]) -> list[str]:
    lines = ["## (d) Energy (NVML)", ""]
    monitor = summary["nvml"]
    if monitor.get("unavailable"):
        lines.append(f"NVML not readable here: {monitor['unavailable']}.")
    else:
        info = monitor["device"]
        lines.append(
            f"Read by the check every 0.5 s: {info.get('name')}, driver {info.get('driver')}, "
            f"power limit {info.get('power_limit_w')} W, energy counter "
            f"{'yes' if info.get('energy_counter') else 'no (power sampling)'}."
        )
        lines += [
            "",
            "| part | s | energy Wh | mean W | max W | max mem GiB | util % | max °C | SM MHz |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for part, s in monitor["parts"].items():
            if s:
                lines.append(
                    f"| {part} | {s['seconds']} | {s['wh']} | {s['mean_w']} | {s['max_w']} "
                    f"| {s['max_memory_gib']} | {s['mean_util_pct']} | {s['max_temp_c']} "
                    f"| {s['sm_clock_mhz_median']} |"
                )
    quick = summary["parts"].get("quickstart") or {}
    energy = (quick.get("efficiency") or {}).get("energy")
    if energy:
        lines += [
            "",
            f"The quickstart's own tracker (efficiency.json): **{energy.get('method')}**, "
            f"{_num(energy.get('kwh'), '{:.3g}')} kWh = {_num(energy.get('joules'), '{:.0f}')} J "
            f"over {_num(energy.get('seconds'))} s (mean {_num(energy.get('average_watts'))} W), "
            f"sources {energy.get('sources')}, fallback {energy.get('fallback_reason')!r}. "
            "It covers training only; the check's reading of the quickstart part above also "
            "covers imports, data and set-up.",
        ]
    lines.append(f"\nNVML energy read during a run: **{summary['energy_verdict']}**.")
    return lines


def tests_section(tests: dict[str, Any]) -> list[str]:
    lines = ["## (a) GPU tests", ""]
    if "counts" not in tests:
        return lines + [f"No results: {tests.get('error') or tests.get('skipped')}."]
    c = tests["counts"]
    lines.append(
        f"{c['passed']} passed, {c['failed']} failed, {c['error']} errors, {c['skipped']} "
        f"skipped in {tests['wall_s']} s ({_status(tests)}); "
        f"environment {tests.get('env') or 'as is'}."
    )
    lines += ["", "| test | outcome | s | note |", "|---|---|---:|---|"]
    for r in tests["tests"]:
        lines.append(f"| {r['test']} | {r['outcome']} | {r['seconds']:.1f} | {r['note']} |")
    return lines


def quickstart_section(quick: dict[str, Any]) -> list[str]:
    lines = ["## (b) Quickstart", ""]
    if "train" not in quick:
        return lines + [f"Not run: {quick.get('skipped')}."]
    eff = quick.get("efficiency") or {}
    times, flops, energy = eff.get("time", {}), eff.get("flops", {}), eff.get("energy", {})
    memory = eff.get("memory") or {}
    valid = (quick.get("eval_valid") or {}).get("accuracy")
    test = (quick.get("eval_test") or {}).get("accuracy")
    lines += [
        "| what | value |",
        "|---|---|",
        f"| command | `{' '.join(quick['train']['command'][1:])}` |",
        f"| status | {_status(quick['train'])} |",
        f"| wall time, whole command | {quick['train']['wall_s']} s |",
        f"| precision (resolved 'auto') | {eff.get('precision', 'n/a')} |",
        "| efficiency.json wall / compile / train / eval / input wait (s) | "
        + " / ".join(_num(times.get(f"{k}_s")) for k in ("wall", "compile", "train", "eval"))
        + f" / {_num(times.get('input_wait_s'))} |",
        f"| step p50 / p90 | {_num(times.get('step_p50_s'), '{:.4f}')} / "
        f"{_num(times.get('step_p90_s'), '{:.4f}')} s |",
        f"| images/s | {_num((eff.get('throughput') or {}).get('images_per_s'))} |",
        f"| MFU | {_pct(flops.get('mfu'))} |",
        f"| peak device memory (per device) | {_gib(memory.get('peak_bytes_per_device'))} |",
        f"| energy (efficiency.json) | {_num(energy.get('kwh'), '{:.3g}')} kWh, "
        f"{energy.get('method', 'n/a')} |",
        f"| validation top-1 (floor {quick['accuracy_floor']:.0%}) | {_pct(valid)} |",
        f"| test top-1 (best checkpoint) | {_pct(test)} |",
    ]
    return lines


def throughput_section(tp: dict[str, Any], args) -> list[str]:
    lines = ["## (c) Train-step throughput beside timm", ""]
    if "rows" not in tp:
        return lines + [f"Not run: {tp.get('skipped')}."]
    lines.append(
        f"Batch {args.batch_size if not args.dry_run else 16}, torch: {tp['torch']}"
        + ("; torch.compile + AMP + channels_last" if not args.dry_run else "")
        + f". {_status(tp)}, {tp['wall_s']} s. "
        "Full report: throughput.md."
    )
    lines += [
        "",
        "| model | precision | px | ours img/s | torch img/s | ours/torch | MFU ours | MFU torch "
        "| compile s ours/torch |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in tp["rows"]:
        ours, torch = row.get("ours") or {}, row.get("torch") or {}
        torch_rate = "failed" if torch.get("failed") else _num(torch.get("images_per_s_median"))
        ratio = "n/a" if row["ours_over_torch"] is None else f"{row['ours_over_torch']:.2f}x"
        lines.append(
            f"| {row['model']} | {row['precision']} | {row['px']} "
            f"| {_num(ours.get('images_per_s_median'))} | {torch_rate} | {ratio} "
            f"| {_pct(ours.get('mfu'))} | {_pct(torch.get('mfu'))} "
            f"| {_num(ours.get('compile_s'))} / {_num(torch.get('compile_s'))} |"
        )
    lines += tp["not_run"]
    t = tp["target"]
    met = {True: "MET", False: "NOT MET", None: "not measured"}[t["met"]]
    lines.append(
        f"\nTarget (ConvNeXt-T bfloat16 >= {t['vs_torch']:.1f}x timm at MFU >= "
        f"{100 * t['mfu']:.0f}%): **{met}** ({t['why']})."
    )
    return lines


def write_summary(summary: dict[str, Any], args) -> str:
    env = summary["environment"]
    parts = summary["parts"]
    head = [
        f"# bird_jax GPU check{' (DRY RUN)' if args.dry_run else ''}: {summary['verdict']}",
        "",
        f"- {summary['started']}; {summary['wall_s']} s of a {args.budget_s:.0f} s budget; "
        f"parts: " + ", ".join(f"{k} {v.get('status')}" for k, v in parts.items()),
        f"- Backend {env.get('backend')}, {env.get('device_count')} device(s): "
        f"{env.get('device_kind')}; Python {env.get('python')} ({env.get('executable')})",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in (env.get("versions") or {}).items() if v),
        f"- Host: {platform.node()}, {os.cpu_count()} CPUs, {platform.platform()}; "
        f"`import tensorflow_datasets`: {env.get('tfds_import')}",
        "",
    ]
    body = []
    sections = {
        "tests": tests_section,
        "quickstart": quickstart_section,
        "throughput": lambda part: throughput_section(part, args),
    }
    for name, section in sections.items():
        part = parts.get(name)
        if part is None:
            continue
        title = {"tests": "(a) GPU tests", "quickstart": "(b) Quickstart"}.get(name)
        title = title or "(c) Train-step throughput beside timm"
        if "error" in part and "rc" not in part:  # a bug in this script
            body += [f"## {title}", "", f"Not run: {part['error']}", ""]
        elif "skipped" in part:
            body += [f"## {title}", "", f"Not run: {part['skipped']}", ""]
        else:
            body += section(part) + [""]
        if part.get("status") == "FAILED":  # the reply's output tail shows why, without fetching
            log = Path(args.out) / f"{name}.log"
            body += [f"Last lines of {log.name}:", "", "```", tail(log, 12), "```", ""]
    body += energy_section(summary)
    text = "\n".join(head + body) + "\n"
    (Path(args.out) / "summary.md").write_text(text)
    (Path(args.out) / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    return text


def energy_verdict(summary: dict[str, Any]) -> str:
    energy = ((summary["parts"].get("quickstart") or {}).get("efficiency") or {}).get("energy")
    if not energy:
        return "no efficiency.json from the quickstart"
    ok = str(energy.get("method", "")).startswith("measured: NVML")
    monitor = summary["nvml"]
    return (
        ("yes" if ok else "no")
        + f" (efficiency.json: {energy.get('method')}"
        + ("" if not monitor.get("unavailable") else f"; check's NVML: {monitor['unavailable']}")
        + ")"
    )


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    args.python = sys.executable
    clock = Clock(args.budget_s)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("summary.md", "summary.json", "tests.xml", "tests.log", "quickstart.log",
                 "throughput.md", "throughput.log"):  # fmt: skip
        (out / name).unlink(missing_ok=True)
    Path(args.scratch).mkdir(parents=True, exist_ok=True)

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if args.emulate_image:
        emulate = str(Path(__file__).resolve().parent / "emulate")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [emulate, env.get("PYTHONPATH")]))
        env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # plugins of hidden packages (nbmake)
    info = probe(args.python, env)
    backend = info.get("backend")
    gpu = backend == "gpu"
    if backend is not None and not gpu and not args.dry_run:
        print(
            f"{PROG}: no GPU found (jax.default_backend() == {backend!r}); run it on a lent GPU "
            "machine, or with --dry_run to try the plumbing here.",
            file=sys.stderr,
        )
        if info.get("stderr_tail"):
            print(f"JAX said:\n{info['stderr_tail']}", file=sys.stderr)
        return NO_GPU
    if "error" in info or info.get("bird_jax_import") != "ok":
        why = info.get("error") or f"bird_jax does not import: {info['bird_jax_import']}"
        print(f"{PROG}: cannot start: {why}", file=sys.stderr)
        return 1
    if gpu:
        # Never fall back to the CPU silently; the CPU beside it gives XLA its FLOP-count model.
        env["JAX_PLATFORMS"] = "cuda,cpu"
    print(
        f"{PROG}: {backend}, {info['device_count']} x {info['device_kind']}; budget "
        f"{args.budget_s:.0f} s; results in {out}",
        flush=True,
    )

    monitor = NvmlMonitor()
    summary: dict[str, Any] = {
        "started": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "dry_run": args.dry_run,
        "budget_s": args.budget_s,
        "environment": info,
        "parts": {},
    }
    wanted = args.parts.split(",")
    runners = {
        "tests": lambda: part_tests(args, env, clock, monitor, gpu),
        "quickstart": lambda: part_quickstart(args, env, clock, monitor),
        "throughput": lambda: part_throughput(args, env, clock, monitor),
    }
    monitor.mark("whole check", "start")
    for name in ("tests", "quickstart", "throughput"):
        if name not in wanted:
            continue
        try:
            result = runners[name]()
        except Exception as e:  # a bug here must not lose the other parts
            result = {"error": f"{type(e).__name__}: {e}", "passed": False}
        skipped = "skipped" in result
        result["status"] = "passed" if result.get("passed") else "SKIPPED" if skipped else "FAILED"
        summary["parts"][name] = result
    monitor.mark("whole check", "end")

    summary["nvml"] = (
        {"unavailable": monitor.reason}
        if monitor.nvml is None
        else {
            "device": monitor.info,
            "parts": {p: monitor.summary(p) for p in monitor.marks},
        }
    )
    monitor.close()
    summary["energy_verdict"] = energy_verdict(summary)
    failed = [k for k, v in summary["parts"].items() if v["status"] != "passed"]
    verdicts = [
        f"{status}: {', '.join(k for k in failed if summary['parts'][k]['status'] == status)}"
        for status in ("FAILED", "SKIPPED")
        if any(summary["parts"][k]["status"] == status for k in failed)
    ]
    summary["verdict"] = "; ".join(verdicts) or "all parts passed"
    summary["wall_s"] = round(clock.elapsed(), 1)
    print("\n" + write_summary(summary, args), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
