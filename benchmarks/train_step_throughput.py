"""Train-step throughput (images/s) and MFU of each model family, side by side with PyTorch (timm).

Ours: every model is built exactly as training builds it (`experiment.build` on
`bird_jax.config` with the model name, precision, batch size, image size and grad_accum_steps
overridden); the state is replicated and `experiment.pmapped_train_step` (the shared pmapped train
step) is timed on one fixed batch of random uint8 images already on the devices, laid out as the
data pipeline lays it out. The input pipeline is therefore excluded: the numbers are an upper
bound for training.

Torch: with `--torch_python` (a Python with torch and timm; bird_jax and JAX are not needed
there), each configuration is also run by `benchmarks/torch_train_step.py` in a subprocess right
after ours, with the same batch, size, accumulation, warm-up and windows: the same architectures
(timm's ConvNeXt-T), the same step (normalise on the device, cross-entropy, clip 1.0, AdamW) and
the same bfloat16 policy (autocast, float32 parameters), on the GPU when JAX runs on one, else on
the CPU. A failing torch run is logged and reported as "failed"; the benchmark goes on.

  # CPU (few cores: few steps per window); PASSIVE stops torch's OpenMP threads spinning
  OMP_WAIT_POLICY=PASSIVE python benchmarks/train_step_throughput.py \
      --torch_python=/tmp/benchvenv/bin/python --image_sizes=64,128,224 --grad_accum=1,2 \
      --out=/tmp/bench_cpu.md
  # GPU: the torch side compiled, with channels_last
  python benchmarks/train_step_throughput.py --torch_python=python --torch_compile \
      --torch_channels_last --image_sizes=224 --batch_size=128 --steps_per_repeat=20 \
      --out=BENCHMARKS.md

For each (image size, grad_accum, model, precision), ours then torch: `--warmup` steps (the first
one compiles and is reported as the compile time), then `--repeats` timed windows of
`--steps_per_repeat` steps, each closed by `jax.block_until_ready` (torch:
torch.cuda.synchronize). images/s is reported as median, min and max over the windows.

MFU = FLOPs per step / median step time / peak FLOP/s. FLOPs per step are XLA's cost analysis of
our compiled step (forward, backward, optimizer: `efficiency.flops.step_cost`); torch runs the
same architecture, so it is credited with the same FLOPs per image. Peaks come from
`efficiency.hardware.peak_flops` (datasheet on accelerators, a measured matmul on CPU; torch on
CPU uses all the cores, so its peak is that of all CPU devices together). With `--torch_python`
on a GPU, JAX is limited to XLA_PYTHON_CLIENT_MEM_FRACTION=0.45 (unless set) so that the torch
subprocess has memory too.
"""

import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import jax
import numpy as np
from absl import app, flags, logging
from machine import (
    cpu_model,
    load_average,
    throughput_fields,
    usable_cores,
)  # benchmarks/machine.py

_REPO_ROOT = Path(__file__).resolve().parents[1]
if str(_REPO_ROOT) not in sys.path:  # `configs` is a folder of the repository, not a package
    sys.path.insert(0, str(_REPO_ROOT))

from bird_jax import config as defaults  # noqa: E402
from bird_jax import experiment  # noqa: E402
from bird_jax.devices import replicate, to_devices  # noqa: E402
from bird_jax.efficiency import flops, hardware  # noqa: E402

_MODELS = flags.DEFINE_list("models", ["vgg16", "lightweight_cnn", "convnext_tiny"], "Models.")
_PRECISIONS = flags.DEFINE_list("precisions", ["float32", "bfloat16"], "config.precision values.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Global batch size (all local devices).")
_IMAGE_SIZES = flags.DEFINE_list("image_sizes", ["64"], "Square input resolutions in pixels.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed windows per configuration.")
_STEPS_PER_REPEAT = flags.DEFINE_integer("steps_per_repeat", 3, "Train steps per timed window.")
_WARMUP = flags.DEFINE_integer("warmup", 2, "Untimed steps first; the first one compiles.")
_GRAD_ACCUM = flags.DEFINE_list("grad_accum", ["1"], "grad_accum_steps values (micro-batches).")
_NUM_CLASSES = flags.DEFINE_integer("num_classes", 10, "Classes of the classifier head.")
_TORCH_PYTHON = flags.DEFINE_string(
    "torch_python", "", "Python with torch + timm for the torch side; empty: no torch side."
)
_TORCH_COMPILE = flags.DEFINE_bool("torch_compile", False, "torch.compile the torch models.")
_TORCH_CHANNELS_LAST = flags.DEFINE_bool(
    "torch_channels_last", False, "Torch side in channels_last memory format."
)
_TORCH_THREADS = flags.DEFINE_integer(
    "torch_threads", 0, "torch.set_num_threads of the torch side; 0: all usable cores."
)
_OUT = flags.DEFINE_string("out", None, "Append the Markdown report (and JSON lines) here.")
_JSONL = flags.DEFINE_string(
    "jsonl",
    None,
    "Write the raw results here as JSON lines, as they are measured (the report header first).",
)
_RENDER = flags.DEFINE_string(
    "render", None, "Print the Markdown report of a --jsonl file instead of measuring."
)
_MAX_SECONDS = flags.DEFINE_float(
    "max_seconds",
    0.0,
    "Time budget: a configuration is started only if the seconds elapsed plus its estimate (the "
    "same model's last configuration, else the median so far) stay within it; the rest are listed "
    "as not run. 0: no limit.",
)

_NUM_TRAIN_EXAMPLES = 10_000  # only shapes the learning-rate schedule
_VERSIONED_PACKAGES = ("jax", "jaxlib", "flax", "optax", "numpy")
_TORCH_SCRIPT = Path(__file__).resolve().parent / "torch_train_step.py"
_TORCH_PROBE = (
    "import json, platform, torch, timm; print(json.dumps({'python': platform.python_version(), "
    "'torch': torch.__version__, 'timm': timm.__version__}))"
)
_TAIL_LINES = 20  # of a failing torch run's stderr, in the log and the JSON


def int_list(flag: flags.FlagHolder) -> list[int]:
    """The values of a comma-list flag as positive integers."""
    try:
        values = [int(v) for v in flag.value]
    except ValueError as e:
        raise app.UsageError(f"--{flag.name} must be a comma list of integers: {e}") from e
    if not values or min(values) < 1:
        raise app.UsageError(f"--{flag.name} needs at least one value, all >= 1.")
    return values


def torch_device() -> str:
    """Where the torch side runs: the GPU when JAX runs on one, else the CPU."""
    return "cuda" if jax.default_backend() == "gpu" else "cpu"


def probe_torch() -> dict[str, Any] | None:
    """Versions from `--torch_python`, or None (with a logged reason) when it cannot run torch."""
    if not _TORCH_PYTHON.value:
        print("No --torch_python: the torch side is skipped.", flush=True)
        return None
    try:
        proc = subprocess.run(
            [_TORCH_PYTHON.value, "-c", _TORCH_PROBE], capture_output=True, text=True, check=False
        )
    except OSError as e:
        logging.error("--torch_python cannot run (%s); torch side skipped.", e)
        return None
    if proc.returncode:
        logging.error(
            "--torch_python cannot import torch/timm; torch side skipped:\n%s", proc.stderr
        )
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def report_header(
    sizes: list[int],
    accums: list[int],
    torch_info: dict[str, Any] | None,
    peaks: dict[str, tuple[float | None, str]],
) -> list[str]:
    """Markdown lines describing the machine, both sides' software and the benchmark settings."""
    devices = jax.local_devices()
    versions = ", ".join(f"{name} {metadata.version(name)}" for name in _VERSIONED_PACKAGES)
    per_device = _BATCH_SIZE.value // len(devices)
    timestamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    mem_fraction = os.environ.get("XLA_PYTHON_CLIENT_MEM_FRACTION")
    torch_threads = _TORCH_THREADS.value or f"all {usable_cores()} usable cores"
    if torch_info is None:
        torch_line = "- Torch side: skipped (no usable --torch_python)"
    else:
        torch_line = (
            f"- Torch side: `{_TORCH_PYTHON.value}` (Python {torch_info['python']}), torch "
            f"{torch_info['torch']}, timm {torch_info['timm']}, on {torch_device()}; "
            f"torch.compile(model)={_TORCH_COMPILE.value}, "
            f"channels_last={_TORCH_CHANNELS_LAST.value}; threads={torch_threads}, "
            f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '')!r}; AdamW fused on CUDA; "
            "float32 matmuls as TF32 on CUDA (as JAX)"
        )
    peak_text = "; ".join(
        f"{precision} {peak / 1e12:.3g} TFLOP/s ({source})" if peak else f"{precision} {source}"
        for precision, (peak, source) in peaks.items()
    )
    return [
        f"## Train-step throughput, bird_jax vs PyTorch/timm ({timestamp})",
        "",
        f"- Machine: {cpu_model()}, {usable_cores()} usable cores ({platform.platform()})",
        f"- Software (ours): Python {platform.python_version()}, {versions}",
        f"- Backend: {jax.default_backend()}, {len(devices)} local device(s): "
        f"{devices[0].device_kind}; XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}"
        + (f", XLA_PYTHON_CLIENT_MEM_FRACTION={mem_fraction}" if mem_fraction else ""),
        torch_line,
        f"- Load average (1/5/15 min) at start: {load_average()}",
        f"- Batch {_BATCH_SIZE.value} ({per_device} per device), image sizes {sizes} px, "
        f"grad_accum_steps {accums}, {_NUM_CLASSES.value} classes; bird_jax.config "
        "otherwise (registry-default model kwargs); torch mirrors them",
        f"- Timing: {_WARMUP.value} warm-up steps (the first compiles), then {_REPEATS.value} "
        f"windows of {_STEPS_PER_REPEAT.value} steps, each closed by jax.block_until_ready "
        "(torch: torch.cuda.synchronize on GPU)",
        "- Input pipeline excluded: one batch of random uint8 images, placed on the devices "
        "once (ours: with the data pipeline's sharding), is fed to every step",
        f"- MFU: XLA's FLOPs of our step (torch credited with the same FLOPs per image) over "
        f"the peak per device: {peak_text}",
    ]


def build_config(model_name: str, precision: str, image_size: int, grad_accum: int) -> Any:
    """The default config with this benchmark's model, precision and shapes."""
    config = defaults.get_config()
    config.model_name = model_name
    config.precision = precision
    config.batch_size = _BATCH_SIZE.value
    config.data.image_size = image_size
    config.num_train_steps = 1000
    config.grad_accum_steps = grad_accum
    return config


def build_step(config: Any) -> tuple[Callable, Any, int]:
    """The pmapped train step, the replicated initial state and the parameter count."""
    exp = experiment.build(
        config,
        class_names=[str(i) for i in range(_NUM_CLASSES.value)],
        num_train_examples=_NUM_TRAIN_EXAMPLES,
    )
    state = exp.init_state()
    num_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(state.params))
    p_step = experiment.pmapped_train_step(config, exp)  # what bird_jax.train runs
    return p_step, replicate(state), num_params


def device_batch(batch_size: int, image_size: int, seed: int = 0) -> dict[str, jax.Array]:
    """Random images and labels as [devices, per_device, ...] arrays, sharded like real input.

    Random rather than constant values, so XLA cannot fold any of the computation away.
    """
    num_devices = jax.local_device_count()
    if batch_size % num_devices:
        raise ValueError(f"batch_size={batch_size} is not divisible by {num_devices} devices.")
    rng = np.random.default_rng(seed)
    host = {
        "image": rng.integers(0, 256, (batch_size, image_size, image_size, 3), dtype=np.uint8),
        "label": rng.integers(0, _NUM_CLASSES.value, batch_size, dtype=np.int32),
    }
    return to_devices(host)  # the input pipeline's own placement


def run_steps(p_step: Callable, state: Any, batch: dict, num_steps: int) -> tuple[Any, float]:
    """Runs `num_steps` steps and waits for them; returns the new state and the seconds taken."""
    start = time.perf_counter()
    for _ in range(num_steps):
        state, _ = p_step(state, batch)
    jax.block_until_ready(state)
    return state, time.perf_counter() - start


def mfu_or_none(
    flops_per_step: float | None, step_seconds: float, peak: float | None
) -> float | None:
    """`hardware.mfu` rounded to 6 digits, or None when the FLOPs or the peak are unknown."""
    if flops_per_step is None or peak is None:
        return None
    return round(hardware.mfu(flops_per_step, step_seconds, peak), 6)


def benchmark(
    model_name: str,
    precision: str,
    image_size: int,
    grad_accum: int,
    batch: dict,
    peak: tuple[float | None, str],
) -> dict[str, Any]:
    """Compile time, images/s (median, min, max over the windows) and MFU of our step."""
    load_before = load_average()
    config = build_config(model_name, precision, image_size, grad_accum)
    p_step, state, num_params = build_step(config)
    name = f"{model_name}/{precision}/{image_size}px/accum {grad_accum}"
    logging.info("%s: %.2f M params, compiling.", name, num_params / 1e6)
    state, compile_s = run_steps(p_step, state, batch, 1)
    state, warmup_s = run_steps(p_step, state, batch, _WARMUP.value - 1)
    logging.info(
        "Compile + 1st step %.1f s; %d more warm-up steps %.1f s.",
        compile_s,
        _WARMUP.value - 1,
        warmup_s,
    )
    cost = flops.step_cost(p_step, state, batch)
    throughputs = []
    for window in range(_REPEATS.value):
        state, seconds = run_steps(p_step, state, batch, _STEPS_PER_REPEAT.value)
        throughputs.append(_STEPS_PER_REPEAT.value * _BATCH_SIZE.value / seconds)
        logging.info("Window %d: %.2f s, %.1f images/s.", window, seconds, throughputs[-1])
    median = statistics.median(throughputs)
    flops_per_device = None if cost is None else cost.flops_per_device
    return {
        "framework": "bird_jax",
        "model": model_name,
        "precision": precision,
        "params": num_params,
        "compile_s": round(compile_s, 2),
        **throughput_fields(throughputs, _BATCH_SIZE.value),
        "batch_size": _BATCH_SIZE.value,
        "image_size": image_size,
        "grad_accum_steps": grad_accum,
        "repeats": _REPEATS.value,
        "steps_per_repeat": _STEPS_PER_REPEAT.value,
        "backend": jax.default_backend(),
        "devices": jax.local_device_count(),
        "flops_per_step_per_device": flops_per_device,
        "flops_per_image": None if cost is None else cost.total / _BATCH_SIZE.value,
        "peak_flops_per_device": peak[0],
        "peak_source": peak[1],
        "mfu": mfu_or_none(flops_per_device, _BATCH_SIZE.value / median, peak[0]),
        "load_average_before": load_before,
        "load_average_after": load_average(),
    }


def benchmark_torch(ours: dict[str, Any], peak: tuple[float | None, str]) -> dict[str, Any]:
    """The same configuration in `torch_train_step.py` (subprocess); a "failed" record on error."""
    config = {
        "model": ours["model"],
        "precision": ours["precision"],
        "batch_size": _BATCH_SIZE.value,
        "image_size": ours["image_size"],
        "grad_accum_steps": ours["grad_accum_steps"],
    }
    command = [_TORCH_PYTHON.value, str(_TORCH_SCRIPT)]
    command += [f"--{key}={value}" for key, value in config.items()]
    command += [
        f"--num_classes={_NUM_CLASSES.value}",
        f"--repeats={_REPEATS.value}",
        f"--steps_per_repeat={_STEPS_PER_REPEAT.value}",
        f"--warmup={_WARMUP.value}",
        f"--device={torch_device()}",
        f"--threads={_TORCH_THREADS.value}",
    ]
    if _TORCH_COMPILE.value:
        command.append("--compile")
    if _TORCH_CHANNELS_LAST.value:
        command.append("--channels_last")
    logging.info("Torch: %s", " ".join(command))
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    try:
        if proc.returncode:
            raise RuntimeError(f"exit status {proc.returncode}")
        result = json.loads(proc.stdout.strip().splitlines()[-1])
    except (RuntimeError, ValueError, IndexError) as e:
        tail = "\n".join(proc.stderr.strip().splitlines()[-_TAIL_LINES:])
        logging.error("Torch run failed (%s); stderr tail:\n%s", e, tail)
        return {"framework": "torch", **config, "failed": True, "error": f"{e}\n{tail}"}
    # Torch on the CPU uses every core: the peak of all CPU devices; on a GPU, one device's.
    devices = jax.local_device_count() if torch_device() == "cpu" else 1
    peak_flops = None if peak[0] is None else peak[0] * devices
    per_image = ours["flops_per_image"]
    torch_flops = None if per_image is None else per_image * _BATCH_SIZE.value
    step_seconds = _BATCH_SIZE.value / result["images_per_s_median"]
    result["mfu"] = mfu_or_none(torch_flops, step_seconds, peak_flops)
    return result


def _rate(images_per_s: float) -> str:
    """images/s with one decimal, two below 10 (slow CPU runs)."""
    return f"{images_per_s:.1f}" if images_per_s >= 10 else f"{images_per_s:.2f}"


def _rates(r: dict[str, Any]) -> str:
    """'median (min-max)' images/s of one record."""
    median, low, high = (_rate(r[f"images_per_s_{k}"]) for k in ("median", "min", "max"))
    return f"{median} ({low}-{high})"


def _percent(mfu: float | None) -> str:
    """MFU in percent, three significant digits; a dagger above 100% (see `mfu_note`)."""
    if mfu is None:
        return "n/a"
    return f"{100 * mfu:.3g}%" + (" †" if mfu > 1 else "")


def mfu_note(records: list[dict[str, Any]]) -> list[str]:
    """What the MFU columns divide by, when that is not the chip's datasheet peak."""
    sources = sorted({r["peak_source"] for r in records if r.get("peak_source")})
    if all("datasheet" in source for source in sources):
        return []
    return [
        "",
        f"MFU here divides by the peak in the header ({'; '.join(sources)}), not the chip's "
        "datasheet peak: a library with faster kernels than XLA's (oneDNN's AMX bf16, say) can "
        "exceed 100% (marked †).",
    ]


def windows_note(records: list[dict[str, Any]]) -> list[str]:
    """A warning when the windows are too few or too short to compare configurations."""
    few = [r for r in records if r.get("repeats", 0) < 5 or r.get("steps_per_repeat", 0) < 3]
    if not few:
        return []
    return ["", "Fewer than 5 windows of 3 steps: indicative only, too few to rank close rows."]


def markdown_table(rows: list[tuple[dict[str, Any], dict[str, Any] | None]]) -> list[str]:
    """One row per (model, image size, precision, accumulation): ours next to torch."""
    lines = [
        "| model | px | precision | accum | ours img/s median (min-max) "
        "| torch img/s median (min-max) | ours/torch | MFU ours | MFU torch "
        "| params ours/torch (M) |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for ours, torch in rows:
        cells = [ours["model"], ours["image_size"], ours["precision"], ours["grad_accum_steps"]]
        cells += [_rates(ours)]
        if torch is None or torch.get("failed"):
            status = "skipped" if torch is None else "failed"
            cells += [status, "-", _percent(ours["mfu"]), "-", f"{ours['params'] / 1e6:.2f} / -"]
        else:
            ratio = ours["images_per_s_median"] / torch["images_per_s_median"]
            params = f"{ours['params'] / 1e6:.2f} / {torch['params'] / 1e6:.2f}"
            if ours["params"] != torch["params"]:
                params += " (MISMATCH)"
            cells += [_rates(torch), f"{ratio:.2f}x", _percent(ours["mfu"])]
            cells += [_percent(torch["mfu"]), params]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return lines


class TimeBudget:
    """Decides whether one more configuration fits in `max_seconds` (0: always)."""

    def __init__(self, max_seconds: float):
        self.max_seconds = max_seconds
        self.start = time.perf_counter()
        self.durations: dict[str, list[float]] = {}

    def allows(self, model_name: str) -> bool:
        if not self.max_seconds:
            return True
        same_model = self.durations.get(model_name)
        every = [d for durations in self.durations.values() for d in durations]
        estimate = same_model[-1] if same_model else statistics.median(every) if every else 0.0
        return time.perf_counter() - self.start + estimate <= self.max_seconds

    def spent(self, model_name: str, seconds: float) -> None:
        self.durations.setdefault(model_name, []).append(seconds)


def check_flags(accums: list[int]) -> None:
    """Rejects settings that would time nothing or would not split across devices."""
    if _WARMUP.value < 1:
        raise app.UsageError("--warmup must be >= 1: the first step compiles.")
    if _MAX_SECONDS.value < 0:
        raise app.UsageError("--max_seconds must be >= 0 (0: no limit).")
    if _REPEATS.value < 1 or _STEPS_PER_REPEAT.value < 1:
        raise app.UsageError("--repeats and --steps_per_repeat must be >= 1.")
    per_device, remainder = divmod(_BATCH_SIZE.value, jax.local_device_count())
    bad = [k for k in accums if per_device % k]
    if remainder or bad:
        raise app.UsageError(
            f"--batch_size={_BATCH_SIZE.value} must split evenly over "
            f"{jax.local_device_count()} device(s) and then into each --grad_accum "
            f"{accums} micro-batches."
        )


class RawResults:
    """Each record to stderr, and (with a path) to a JSON-lines file as soon as it is measured."""

    def __init__(self, path: str | None, header: list[str]):
        self.path = path
        if path:
            Path(path).write_text(json.dumps({"report_header": header}) + "\n")

    def add(self, record: dict[str, Any]) -> None:
        print(json.dumps(record), file=sys.stderr, flush=True)
        if self.path:
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")


def render(path: str) -> str:
    """The Markdown report of a JSON-lines file written by --jsonl (header, table, notes)."""
    lines = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    header = next(line["report_header"] for line in lines if "report_header" in line)
    end = next((line for line in lines if "report_end" in line), None)
    records = [line for line in lines if "framework" in line]
    torch_by_config = {_config_key(r): r for r in records if r["framework"] == "torch"}
    rows = [(r, torch_by_config.get(_config_key(r))) for r in records if r["framework"] != "torch"]
    return "\n".join(report_lines(header, end, rows, records))


def report_lines(
    header: list[str],
    end: dict[str, Any] | None,
    rows: list[tuple[dict[str, Any], dict[str, Any] | None]],
    records: list[dict[str, Any]],
) -> list[str]:
    """Header, end line, table and notes: the report of a run, or of its JSON lines."""
    report = [*header, *([end["report_end"]] if end else []), "", *markdown_table(rows)]
    report += [*mfu_note(records), *windows_note(records)]
    if end and end["not_run"]:
        report += ["", f"Not run ({end['not_run_because']}): {', '.join(end['not_run'])}."]
    return report


def _config_key(record: dict[str, Any]) -> tuple:
    """What pairs our record with torch's: model, precision, image size, accumulation."""
    return (
        record["model"],
        record["precision"],
        record["image_size"],
        record["grad_accum_steps"],
    )


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if _RENDER.value:
        print(render(_RENDER.value))
        return
    if _TORCH_PYTHON.value:  # before JAX starts its backend: leave GPU memory to torch
        os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.45")
    sizes, accums = int_list(_IMAGE_SIZES), int_list(_GRAD_ACCUM)
    check_flags(accums)
    torch_info = probe_torch()
    device = jax.local_devices()[0]
    peaks = {precision: hardware.peak_flops(device, precision) for precision in _PRECISIONS.value}
    header = report_header(sizes, accums, torch_info, peaks)
    print("\n".join(header), flush=True)
    raw_lines = RawResults(_JSONL.value, header)
    rows, records, not_run = [], [], []
    budget = TimeBudget(_MAX_SECONDS.value)
    for image_size in sizes:
        batch = device_batch(_BATCH_SIZE.value, image_size)
        for grad_accum in accums:
            for model_name in _MODELS.value:
                for precision in _PRECISIONS.value:
                    name = f"{model_name}/{precision}/{image_size}px/accum {grad_accum}"
                    if not budget.allows(model_name):
                        logging.warning("%s: not run, --max_seconds would be exceeded.", name)
                        not_run.append(name)
                        continue
                    start = time.perf_counter()
                    peak = peaks[precision]
                    ours = benchmark(model_name, precision, image_size, grad_accum, batch, peak)
                    records.append(ours)  # printed at once: kept by a caller that stops us
                    raw_lines.add(ours)
                    torch = None if torch_info is None else benchmark_torch(ours, peak)
                    if torch is not None:
                        records.append(torch)
                        raw_lines.add(torch)
                    rows.append((ours, torch))
                    budget.spent(model_name, time.perf_counter() - start)
    end = {
        "report_end": f"- Load average at end: {load_average()}",
        "not_run": not_run,
        "not_run_because": f"--max_seconds={_MAX_SECONDS.value:g}",
    }
    raw_lines.add(end)
    report = report_lines(header, end, rows, records)
    raw = ["", "<details><summary>Raw results (JSON lines)</summary>", "", "```json"]
    raw += [json.dumps(r) for r in records] + ["```", "", "</details>", ""]
    print("\n" + "\n".join(report[len(header) :]))
    if _OUT.value:
        with open(_OUT.value, "a") as f:
            f.write("\n".join(report + raw) + "\n")


if __name__ == "__main__":
    app.run(main)
