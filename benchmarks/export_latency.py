"""Exported models beside the jitted JAX model they come from: size, batch-1 CPU latency,
logit agreement and test top-1.

For a trained run, exports each --formats (bird_jax.export) into a temporary folder, loads each
file as `python -m bird_jax.predict --model` does (bird_jax.exported), and reports per format:

- file size (StableHLO: the serialized export; TFLite: the flatbuffer with its description);
- batch-1 latency on this CPU, median (min-max) over --calls calls after --warmup calls, of one
  preprocessed uint8 image in, float32 logits out on the host (the run's jitted JAX model,
  `jax`, the same way: Predictor.logits);
- max |logit - JAX logit| over the evaluated images;
- top-1 on --split (the run's test split by default; at most --max_images, spread evenly) and
  its drop from JAX's, in points: what int8 costs.

TFLite runs on LiteRT's CPU interpreter (XNNPACK) with --threads threads; XLA uses all cores.
Run it on an idle machine; the header gives the load average. TFLite formats need the export
extra (`pip install -e '.[export]'`):

    python benchmarks/export_latency.py --workdir=runs/quickstart
    python benchmarks/export_latency.py --workdir=runs/quickstart --formats=jax,stablehlo --out=r.md
"""

import importlib.metadata
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from absl import app, flags

from bird_jax import cli, export, predict, tflite
from bird_jax.exported import ExportedModel

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_model, load_average, summary, usable_cores  # noqa: E402

# Name -> (--format, --quantize) of bird_jax.export; "jax" is the run's jitted model itself.
FORMATS = {
    "stablehlo": ("stablehlo", "none"),
    "tflite": ("tflite", "none"),
    "tflite_int8": ("tflite", "int8"),
    "tflite_int8_weights": ("tflite", "int8_weights"),
}
_VERSIONS = ("jax", "jaxlib", "flax", "ai-edge-litert", "litert-converter", "litert-quantizer")

_WORKDIR = flags.DEFINE_string("workdir", None, "The trained run to export.", required=True)
_FORMATS = flags.DEFINE_list("formats", ["jax", *FORMATS], "Formats to compare.")
_CHECKPOINT = flags.DEFINE_enum("checkpoint", "best", ["best", "latest"], "Which checkpoint.")
_SPLIT = flags.DEFINE_string("split", "test", "Split for logit differences and top-1.")
_MAX_IMAGES = flags.DEFINE_integer("max_images", 1000, "At most this many images of --split.")
_CALIBRATION = flags.DEFINE_integer("calibration_images", 100, "Train images calibrating int8.")
_CALLS = flags.DEFINE_integer("calls", 100, "Timed batch-1 calls per format (at least 50).")
_WARMUP = flags.DEFINE_integer("warmup", 10, "Untimed calls first (compilation, allocation).")
_THREADS = flags.DEFINE_integer("threads", usable_cores(), "TFLite interpreter threads.")
_OUT = flags.DEFINE_string("out", "", "Append the Markdown report to this file.")


def _latencies_ms(logits: Callable[[np.ndarray], np.ndarray], image: np.ndarray) -> list[float]:
    for _ in range(_WARMUP.value):
        logits(image)
    times = []
    for _ in range(_CALLS.value):
        start = time.perf_counter()
        logits(image)
        times.append(1000 * (time.perf_counter() - start))
    return times


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def main(argv: list[str]) -> None:
    del argv
    if _CALLS.value < 50:
        raise app.UsageError("--calls must be at least 50.")
    unknown = set(_FORMATS.value) - {"jax", *FORMATS}
    if unknown:
        raise app.UsageError(
            f"unknown --formats {sorted(unknown)}; known: jax, {', '.join(FORMATS)}."
        )
    if any(name.startswith("tflite") for name in _FORMATS.value):
        try:
            tflite.require()
        except cli.UserError as error:
            raise app.UsageError(f"{error} Or leave TFLite out of --formats.") from error
    predictor = predict.Predictor(_WORKDIR.value, _CHECKPOINT.value, precision="float32")
    images, labels = export.eval_images(predictor.data_config, _SPLIT.value, _MAX_IMAGES.value)
    reference = predictor.logits(images)
    reference_top1 = float(np.mean(reference.argmax(-1) == labels))
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for name in _FORMATS.value:
            print(f"{name}: exporting, timing, evaluating...", file=sys.stderr)
            size, model = "-", predictor
            if name != "jax":
                fmt, quantize = FORMATS[name]
                out = Path(scratch) / f"{name}.{fmt}"
                files = export.exported_files(predictor, fmt, quantize, out, _CALIBRATION.value)
                for path, content in files.items():
                    path.write_bytes(content)
                size = f"{out.stat().st_size / 1e6:.3f}"
                model = ExportedModel(out, num_threads=_THREADS.value)
            latency = summary(_latencies_ms(model.logits, images[:1]))
            logits = np.concatenate(
                [model.logits(images[i : i + 64]) for i in range(0, len(images), 64)]
            )
            top1 = float(np.mean(logits.argmax(-1) == labels))
            rows.append(
                f"| {name} | {size} | {latency['median']} ({latency['min']}-{latency['max']}) | "
                f"{np.abs(logits - reference).max():.2e} | {100 * top1:.1f} | "
                f"{100 * (reference_top1 - top1):+.1f} |"
            )
    versions = ", ".join(f"{package} {_version(package)}" for package in _VERSIONS)
    lines = [
        f"export latency: {predictor.config.model_name}, {predictor.data_config.image_size} px, "
        f"{len(predictor.class_names)} classes, step {predictor.step} of {_WORKDIR.value}; "
        f"{cpu_model()}, {usable_cores()} cores, Python {platform.python_version()}, {versions}; "
        f"load {load_average()}; batch 1, {_CALLS.value} calls after {_WARMUP.value}, TFLite "
        f"{_THREADS.value} threads; {len(labels)} {_SPLIT.value} images",
        "",
        "| format | MB | ms per image, median (min-max) | max abs logit diff vs jax | "
        f"{_SPLIT.value} top-1 % | drop vs jax, points |",
        "|---|---:|---:|---:|---:|---:|",
        *rows,
    ]
    report = "\n".join(lines)
    print(report)
    if _OUT.value:
        with open(_OUT.value, "a") as f:
            f.write(report + "\n\n")


if __name__ == "__main__":
    app.run(main)
