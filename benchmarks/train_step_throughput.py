"""Train-step throughput (images/s) of each model family through the real pmapped train step.

Builds every model exactly as training does (`experiment.build` on `configs/default.py` with the
model name, precision, batch size and image size overridden), replicates the state and times
`experiment.pmapped_train_step` (the shared pmapped train step) on one fixed batch of random
images that is already on the devices, laid out as the data pipeline lays it out. The input
pipeline is therefore excluded: the numbers are an upper bound for training.

  python benchmarks/train_step_throughput.py                       # CPU defaults (64 px)
  python benchmarks/train_step_throughput.py --image_size=224 \
      --steps_per_repeat=20 --out=BENCHMARKS.md                    # GPU

Each (model, precision) pair runs `--warmup` steps (the first one compiles and is reported as the
compile time), then `--repeats` timed windows of `--steps_per_repeat` steps each, with
`jax.block_until_ready` closing every window. images/s is reported as median, min and max over
the windows.
"""

import datetime
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import jax
import numpy as np
from absl import app, flags, logging
from machine import cpu_model, load_average, usable_cores  # benchmarks/machine.py

_REPO_ROOT = Path(__file__).resolve().parents[1]
if str(_REPO_ROOT) not in sys.path:  # `configs` is a folder of the repository, not a package
    sys.path.insert(0, str(_REPO_ROOT))

from bird_jax import data, experiment, train_step  # noqa: E402
from configs import default  # noqa: E402

_MODELS = flags.DEFINE_list("models", ["vgg16", "lightweight_cnn", "convnext_tiny"], "Models.")
_PRECISIONS = flags.DEFINE_list("precisions", ["float32", "bfloat16"], "config.precision values.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Global batch size (all local devices).")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 64, "Square input resolution in pixels.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed windows per (model, precision).")
_STEPS_PER_REPEAT = flags.DEFINE_integer("steps_per_repeat", 3, "Train steps per timed window.")
_WARMUP = flags.DEFINE_integer("warmup", 2, "Untimed steps first; the first one compiles.")
_GRAD_ACCUM_STEPS = flags.DEFINE_integer("grad_accum_steps", 1, "Micro-batches per update.")
_NUM_CLASSES = flags.DEFINE_integer("num_classes", 10, "Classes of the classifier head.")
_OUT = flags.DEFINE_string("out", None, "Append the Markdown report (and JSON lines) here.")

_NUM_TRAIN_EXAMPLES = 10_000  # only shapes the learning-rate schedule
_VERSIONED_PACKAGES = ("jax", "jaxlib", "flax", "optax", "numpy")


def report_header() -> list[str]:
    """Markdown lines describing the machine, the software and the benchmark settings."""
    devices = jax.local_devices()
    versions = ", ".join(f"{name} {metadata.version(name)}" for name in _VERSIONED_PACKAGES)
    per_device = _BATCH_SIZE.value // len(devices)
    timestamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return [
        f"## Train-step throughput ({timestamp})",
        "",
        f"- Machine: {cpu_model()}, {usable_cores()} usable cores ({platform.platform()})",
        f"- Software: Python {platform.python_version()}, {versions}",
        f"- Backend: {jax.default_backend()}, {len(devices)} local device(s): "
        f"{devices[0].device_kind}; XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}",
        f"- Load average (1/5/15 min) at start: {load_average()}",
        f"- Batch {_BATCH_SIZE.value} ({per_device} per device), {_IMAGE_SIZE.value}x"
        f"{_IMAGE_SIZE.value}x3, {_NUM_CLASSES.value} classes, grad_accum_steps="
        f"{_GRAD_ACCUM_STEPS.value}; configs/default.py otherwise (registry-default model kwargs)",
        f"- Timing: {_WARMUP.value} warm-up steps (the first compiles), then {_REPEATS.value} "
        f"windows of {_STEPS_PER_REPEAT.value} steps, each closed by jax.block_until_ready",
        "- Input pipeline excluded: one batch of random uint8 images, placed on the devices "
        "once with the data pipeline's sharding, is fed to every step",
    ]


def build_config(model_name: str, precision: str) -> Any:
    """The default config with this benchmark's model, precision and shapes."""
    config = default.get_config()
    config.model_name = model_name
    config.precision = precision
    config.batch_size = _BATCH_SIZE.value
    config.data.image_size = _IMAGE_SIZE.value
    config.num_train_steps = 1000
    config.grad_accum_steps = _GRAD_ACCUM_STEPS.value
    return config


def build_step(config: Any) -> tuple[Callable, Any, int]:
    """The pmapped train step, the replicated initial state and the parameter count."""
    exp = experiment.build(
        config,
        class_names=[str(i) for i in range(_NUM_CLASSES.value)],
        num_train_examples=_NUM_TRAIN_EXAMPLES,
    )
    num_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(exp.state.params))
    p_step = experiment.pmapped_train_step(config, exp)  # what bird_jax.train runs
    return p_step, train_step.replicate(exp.state), num_params


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
    return data.to_devices(host)  # the input pipeline's own placement


def run_steps(p_step: Callable, state: Any, batch: dict, num_steps: int) -> tuple[Any, float]:
    """Runs `num_steps` steps and waits for them; returns the new state and the seconds taken."""
    start = time.perf_counter()
    for _ in range(num_steps):
        state, _ = p_step(state, batch)
    jax.block_until_ready(state)
    return state, time.perf_counter() - start


def benchmark(model_name: str, precision: str, batch: dict) -> dict[str, Any]:
    """Compile time and images/s (median, min, max over the windows) of one configuration."""
    load_before = load_average()
    p_step, state, num_params = build_step(build_config(model_name, precision))
    logging.info("%s/%s: %.2f M params, compiling.", model_name, precision, num_params / 1e6)
    state, compile_s = run_steps(p_step, state, batch, 1)
    state, warmup_s = run_steps(p_step, state, batch, _WARMUP.value - 1)
    logging.info(
        "Compile + 1st step %.1f s; %d more warm-up steps %.1f s.",
        compile_s,
        _WARMUP.value - 1,
        warmup_s,
    )
    throughputs = []
    for window in range(_REPEATS.value):
        state, seconds = run_steps(p_step, state, batch, _STEPS_PER_REPEAT.value)
        throughputs.append(_STEPS_PER_REPEAT.value * _BATCH_SIZE.value / seconds)
        logging.info("Window %d: %.2f s, %.1f images/s.", window, seconds, throughputs[-1])
    median = statistics.median(throughputs)
    return {
        "model": model_name,
        "precision": precision,
        "params": num_params,
        "compile_s": round(compile_s, 2),
        "ms_per_step_median": round(1000 * _BATCH_SIZE.value / median, 1),
        "images_per_s_median": round(median, 2),
        "images_per_s_min": round(min(throughputs), 2),
        "images_per_s_max": round(max(throughputs), 2),
        "images_per_s_all": [round(t, 2) for t in throughputs],
        "batch_size": _BATCH_SIZE.value,
        "image_size": _IMAGE_SIZE.value,
        "grad_accum_steps": _GRAD_ACCUM_STEPS.value,
        "repeats": _REPEATS.value,
        "steps_per_repeat": _STEPS_PER_REPEAT.value,
        "backend": jax.default_backend(),
        "devices": jax.local_device_count(),
        "load_average_before": load_before,
        "load_average_after": load_average(),
    }


def _rate(images_per_s: float) -> str:
    """images/s with one decimal, two below 10 (slow CPU runs)."""
    return f"{images_per_s:.1f}" if images_per_s >= 10 else f"{images_per_s:.2f}"


def markdown_table(results: list[dict[str, Any]]) -> list[str]:
    """One row per (model, precision)."""
    lines = [
        "| model | precision | params (M) | compile + 1st step (s) | ms/step (median) "
        "| images/s median | min | max | load avg before -> after |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['model']} | {r['precision']} | {r['params'] / 1e6:.2f} | {r['compile_s']:.1f} "
            f"| {r['ms_per_step_median']:.0f} | {_rate(r['images_per_s_median'])} "
            f"| {_rate(r['images_per_s_min'])} | {_rate(r['images_per_s_max'])} "
            f"| {r['load_average_before']} -> {r['load_average_after']} |"
        )
    return lines


def check_flags() -> None:
    """Rejects settings that would time nothing or would not split across devices."""
    if _WARMUP.value < 1:
        raise app.UsageError("--warmup must be >= 1: the first step compiles.")
    if _REPEATS.value < 1 or _STEPS_PER_REPEAT.value < 1:
        raise app.UsageError("--repeats and --steps_per_repeat must be >= 1.")
    per_device, remainder = divmod(_BATCH_SIZE.value, jax.local_device_count())
    if remainder or per_device % _GRAD_ACCUM_STEPS.value:
        raise app.UsageError(
            f"--batch_size={_BATCH_SIZE.value} must split evenly over "
            f"{jax.local_device_count()} device(s) and then into "
            f"--grad_accum_steps={_GRAD_ACCUM_STEPS.value} micro-batches."
        )


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    check_flags()
    header = report_header()
    print("\n".join(header), flush=True)
    batch = device_batch(_BATCH_SIZE.value, _IMAGE_SIZE.value)
    results = []
    for model_name in _MODELS.value:
        for precision in _PRECISIONS.value:
            results.append(benchmark(model_name, precision, batch))
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    report = [*header, f"- Load average at end: {load_average()}", "", *markdown_table(results)]
    raw = ["", "<details><summary>Raw results (JSON lines)</summary>", "", "```json"]
    raw += [json.dumps(r) for r in results] + ["```", "", "</details>", ""]
    print("\n" + "\n".join(report[len(header) :]))
    if _OUT.value:
        with open(_OUT.value, "a") as f:
            f.write("\n".join(report + raw) + "\n")


if __name__ == "__main__":
    app.run(main)
