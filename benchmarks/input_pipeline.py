"""Input-pipeline images/s: decode JPEG + random-resized-crop + flip + normalize, side by side.

Measures how fast the host can feed training at `--image_size` (224) on real JPEGs, for each
worker count in `--workers`, through pipelines doing the same work:

  ours      bird_jax's own training input (`data.load_splits` +
            `data.pipeline.train_host_batches`: Grain datasets), `workers` worker processes
            (0: in the main process). The host returns uint8: normalisation is on the device, so
            it is timed separately (jitted, on this CPU) and reported beside it.
  tf.data   read_file, sample_distorted_bounding_box + decode_and_crop_jpeg (only the crop is
            decoded: TF's own fast path), bilinear resize, flip, normalize;
            num_parallel_calls = workers (0: sequential, in the calling thread).
  tf.data-full-decode  the same with a full decode_jpeg then crop, as ours and torch do.
  torch     torchvision ImageFolder + RandomResizedCrop + RandomHorizontalFlip + ToTensor +
            Normalize, DataLoader(num_workers=workers, persistent_workers).

All use scale (0.08, 1), ratio (3/4, 4/3), bilinear with antialiasing, p=0.5 flips and ImageNet
mean/std, batch `--batch_size`, an endlessly reshuffled split. Each framework runs in its own
subprocess (TensorFlow and torchvision bundle clashing LLVMs, and forking workers out of a
process that holds another framework's threads is unsafe); a framework that is not installed is
reported as skipped.

Timing: `--warmup_batches` untimed, then `--repeats` windows of `--batches_per_repeat` batches;
images/s is median, min and max over the windows. CPU seconds (user + system) of the process
and all its workers are read in each window, so "images per CPU-second" is the rate of one busy
core whatever the threads and processes do; "cores for N img/s" divides `--target_rate` by it.

  python benchmarks/input_pipeline.py --root=/tmp/data/cub20 --out=/tmp/input_pipeline.json
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import gc
import glob
import importlib.util
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from absl import app, flags, logging
from machine import cpu_model, load_average, summary  # benchmarks/machine.py

_REPO_ROOT = Path(__file__).resolve().parents[1]
if str(_REPO_ROOT) not in sys.path:  # `configs` is a folder of the repository, not a package
    sys.path.insert(0, str(_REPO_ROOT))

FRAMEWORKS = ("ours", "tf.data", "tf.data-full-decode", "torch")

_ROOT = flags.DEFINE_string("root", None, "Image folder root/<split>/<CLASS>/*.jpg.", required=True)
_SPLIT = flags.DEFINE_string("split", "train", "Split folder whose JPEGs are read.")
_FRAMEWORKS = flags.DEFINE_list("frameworks", list(FRAMEWORKS), f"Any of {FRAMEWORKS}.")
_WORKERS = flags.DEFINE_list("workers", ["0", "1", "2", "4"], "Worker counts (0: in-process).")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 64, "Images per batch.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 224, "Output side in pixels.")
_WARMUP = flags.DEFINE_integer("warmup_batches", 8, "Untimed batches first (worker start-up).")
_BATCHES = flags.DEFINE_integer("batches_per_repeat", 15, "Batches per timed window.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed windows per (framework, workers).")
_SEED = flags.DEFINE_integer("seed", 0, "Shuffle and augmentation seed.")
_READ_THREADS = flags.DEFINE_integer(
    "grain_read_threads",
    -1,
    "ours: data.read_threads (-1 = bird_jax's automatic: 16 in-process, 0 in worker processes).",
)
_TARGET = flags.DEFINE_float("target_rate", 3000.0, "images/s a training run consumes.")
_OUT = flags.DEFINE_string("out", None, "Write the results (and the Markdown report) as JSON here.")
_CHILD_OUT = flags.DEFINE_string(
    "child_out", None, "Internal: measure --frameworks in this process and write JSON here."
)

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
SCALE = (0.08, 1.0)
RATIO = (3 / 4, 4 / 3)
OURS_PIPELINE = "random_resized_crop|flip_lr"  # scale, ratio and bilinear are the op's defaults
_MIN_WINDOW_S = 1.0  # device normalisation: calls per window so that one lasts this long
_JPEG_PATTERNS = ("*.jpg", "*.jpeg", "*.JPG", "*.JPEG")
_PASSED_TO_CHILD = (_ROOT, _SPLIT, _WORKERS, _BATCH_SIZE, _IMAGE_SIZE, _WARMUP, _BATCHES)
_PASSED_TO_CHILD += (_REPEATS, _SEED, _READ_THREADS)


# ---------------------------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------------------------


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and its live descendants (the workers)."""
    me = psutil.Process()
    total = 0.0
    for process in [me, *me.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = process.cpu_times()
            total += times.user + times.system
    return total


def time_windows(step: Callable[[], Any], images_per_step: int, steps: int) -> dict[str, Any]:
    """Runs `--repeats` windows of `steps` calls; images/s and images per CPU-second of each."""
    rates, cpu_rates, busy = [], [], []
    for window in range(_REPEATS.value):
        cpu_start, start = cpu_seconds(), time.perf_counter()
        for _ in range(steps):
            step()
        wall, cpu = time.perf_counter() - start, cpu_seconds() - cpu_start
        images = steps * images_per_step
        rates.append(images / wall)
        cpu_rates.append(images / cpu)
        busy.append(cpu / wall)
        logging.info("window %d: %.1f images/s, %.2f cores busy", window, rates[-1], busy[-1])
    return {
        "images_per_s": summary(rates),
        "images_per_cpu_s": summary(cpu_rates),
        "cores_busy": summary(busy),
    }


def describe(images: Any) -> dict[str, Any]:
    """dtype and shape of a batch of images from any of the frameworks."""
    array = np.asarray(images)
    return {"dtype": str(array.dtype), "shape": list(array.shape)}


def measure(batches: Iterator[Any], workers: int) -> dict[str, Any]:
    """Warm-up, then the timed windows, over an endless iterator of image batches."""
    load_before = load_average()
    first = describe(next(batches))
    for _ in range(_WARMUP.value - 1):
        next(batches)
    result = {"workers": workers, **first, "load_average_before": load_before}
    result.update(time_windows(lambda: next(batches), _BATCH_SIZE.value, _BATCHES.value))
    per_worker = result["images_per_s"]["median"] / max(workers, 1)
    result["images_per_s_per_worker"] = round(per_worker, 2)
    return result


def jpeg_files(split_dir: str) -> tuple[list[str], list[int]]:
    """JPEG paths under split_dir/<CLASS>/ and the index of their sorted class folder."""
    classes = sorted(e.name for e in os.scandir(split_dir) if e.is_dir())
    paths, labels = [], []
    for label, name in enumerate(classes):
        folder = os.path.join(split_dir, name)
        found = sorted({p for pattern in _JPEG_PATTERNS for p in glob.glob(f"{folder}/{pattern}")})
        paths += found
        labels += [label] * len(found)
    if not paths:
        raise ValueError(f"No JPEGs under {split_dir}/<CLASS>/; pass --root and --split.")
    return paths, labels


def versions(names: tuple[str, ...]) -> dict[str, str]:
    """Installed versions of the named distributions (absent ones left out)."""
    found = {}
    for name in names:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[name] = metadata.version(name)
    return found


def pillow_jpeg() -> str:
    from PIL import features

    turbo = features.version("libjpeg_turbo")
    return f"libjpeg-turbo {turbo}" if turbo else f"libjpeg {features.version('jpg')}"


# ---------------------------------------------------------------------------------------------
# The pipelines: each is a context manager yielding an endless iterator of image batches
# ---------------------------------------------------------------------------------------------


def ours_data_config() -> Any:
    """bird_jax.config's default data config for this folder, size and augmentation."""
    from bird_jax import config as defaults

    data_config = defaults.get_config().data
    data_config.source = "folder"
    data_config.root = _ROOT.value
    data_config.train_split = _SPLIT.value
    data_config.image_size = _IMAGE_SIZE.value
    data_config.mean, data_config.std = MEAN, STD
    data_config.train_pipeline = OURS_PIPELINE
    return data_config


@contextlib.contextmanager
def ours_batches(workers: int) -> Iterator[Iterator[Any]]:
    from bird_jax import data
    from bird_jax.data import pipeline

    data_config = ours_data_config()
    data_config.num_workers = workers
    data_config.read_threads = _READ_THREADS.value
    info = data.load_splits(data_config)
    loader = pipeline.train_host_batches(
        info, data_config, global_batch_size=_BATCH_SIZE.value, seed=_SEED.value
    )
    yield (batch["image"] for batch in loader)


@contextlib.contextmanager
def tf_batches(workers: int, *, crop_while_decoding: bool) -> Iterator[Iterator[Any]]:
    import tensorflow as tf

    paths, labels = jpeg_files(os.path.join(_ROOT.value, _SPLIT.value))
    size = _IMAGE_SIZE.value
    whole_image = tf.constant([0.0, 0.0, 1.0, 1.0], shape=[1, 1, 4])

    def load(path: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        encoded = tf.io.read_file(path)
        begin, crop_size, _ = tf.image.sample_distorted_bounding_box(
            tf.io.extract_jpeg_shape(encoded),
            bounding_boxes=whole_image,
            min_object_covered=0.0,
            aspect_ratio_range=RATIO,
            area_range=SCALE,
            max_attempts=10,
            use_image_if_no_bounding_boxes=True,
        )
        if crop_while_decoding:
            window = tf.stack([begin[0], begin[1], crop_size[0], crop_size[1]])
            image = tf.io.decode_and_crop_jpeg(encoded, window, channels=3)
        else:
            image = tf.slice(tf.io.decode_jpeg(encoded, channels=3), begin, crop_size)
        image = tf.image.resize(image, [size, size], method="bilinear", antialias=True)
        image = tf.image.random_flip_left_right(image)
        return (image / 255.0 - MEAN) / STD, label

    options = tf.data.Options()
    options.threading.private_threadpool_size = max(workers, 1)
    options.threading.max_intra_op_parallelism = 1
    dataset = (
        tf.data.Dataset.from_tensor_slices((paths, labels))
        .shuffle(len(paths), seed=_SEED.value, reshuffle_each_iteration=True)
        .repeat()
        .map(load, num_parallel_calls=workers or None)
        .batch(_BATCH_SIZE.value, drop_remainder=True)
    )
    if workers:
        dataset = dataset.prefetch(2)
    yield (images for images, _ in dataset.with_options(options))


@contextlib.contextmanager
def torch_batches(workers: int) -> Iterator[Iterator[Any]]:
    import torch
    import torchvision
    from torchvision import transforms

    torch.set_num_threads(1)  # as in each DataLoader worker: 0 workers = one core
    transform = transforms.Compose(
        [
            transforms.RandomResizedCrop(
                _IMAGE_SIZE.value,
                scale=SCALE,
                ratio=RATIO,
                interpolation=transforms.InterpolationMode.BILINEAR,
                antialias=True,
            ),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(MEAN, STD),
        ]
    )
    dataset = torchvision.datasets.ImageFolder(
        os.path.join(_ROOT.value, _SPLIT.value), transform=transform
    )
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=_BATCH_SIZE.value,
        shuffle=True,
        num_workers=workers,
        persistent_workers=workers > 0,
        drop_last=True,
        generator=torch.Generator().manual_seed(_SEED.value),
    )

    def endless() -> Iterator[Any]:
        while True:
            for images, _ in loader:
                yield images

    yield endless()


PIPELINES = {
    "ours": ours_batches,
    "tf.data": functools.partial(tf_batches, crop_while_decoding=True),
    "tf.data-full-decode": functools.partial(tf_batches, crop_while_decoding=False),
    "torch": torch_batches,
}
REQUIRED_MODULES = {
    "ours": "grain",
    "tf.data": "tensorflow",
    "tf.data-full-decode": "tensorflow",
    "torch": "torchvision",
}
VERSIONED = {
    "ours": ("jax", "jaxlib", "grain", "numpy", "pillow"),
    "tf.data": ("tensorflow", "tensorflow-cpu", "numpy"),
    "tf.data-full-decode": ("tensorflow", "tensorflow-cpu", "numpy"),
    "torch": ("torch", "torchvision", "numpy", "pillow"),
}


def time_device_normalize(images: np.ndarray) -> dict[str, Any]:
    """images/s of bird_jax's jitted device normalisation of one uint8 batch on this backend."""
    import jax

    from bird_jax.augment import normalize

    normalize_batch = jax.jit(functools.partial(normalize, mean=MEAN, std=STD))
    resident = jax.device_put(images)
    jax.block_until_ready(normalize_batch(resident))  # compile
    start = time.perf_counter()
    jax.block_until_ready(normalize_batch(resident))
    calls = math.ceil(_MIN_WINDOW_S / (time.perf_counter() - start))  # CPU time ticks are 10 ms
    result = time_windows(
        lambda: jax.block_until_ready(normalize_batch(resident)), len(images), calls
    )
    return {"backend": jax.default_backend(), "calls_per_window": calls, **result}


def run_framework(name: str) -> dict[str, Any]:
    """Every worker count of one framework in this process, or why it was skipped."""
    if importlib.util.find_spec(REQUIRED_MODULES[name]) is None:
        return {"framework": name, "skipped": f"{REQUIRED_MODULES[name]} is not installed"}
    report = {"framework": name, "versions": versions(VERSIONED[name]), "results": []}
    if name in ("ours", "torch"):
        report["versions"]["pillow jpeg"] = pillow_jpeg()
    if name == "ours":
        report["versions"]["data.read_threads"] = _READ_THREADS.value
    for workers in (int(w) for w in _WORKERS.value):
        children = len(psutil.Process().children(recursive=True))
        logging.info("%s, %d workers (%d child processes left before)", name, workers, children)
        with PIPELINES[name](workers) as batches:
            report["results"].append(measure(batches, workers))
        del batches
        gc.collect()  # stops the workers before the next count starts
    first = report["results"][0]
    report["normalize_on"] = "device" if first["dtype"] == "uint8" else "host"
    if name == "ours" and report["normalize_on"] == "device":
        images = np.random.default_rng(0).integers(0, 256, first["shape"], dtype=np.uint8)
        report["device_normalize"] = time_device_normalize(images)
    return report


def run_in_subprocess(name: str) -> dict[str, Any]:
    """run_framework(name) in a fresh interpreter running this script."""
    passed = [holder.serialize() for holder in _PASSED_TO_CHILD]
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "result.json")
        command = [sys.executable, __file__, *passed, f"--frameworks={name}", f"--child_out={path}"]
        completed = subprocess.run(command, check=False)
        if completed.returncode or not os.path.exists(path):
            return {"framework": name, "skipped": f"failed with exit code {completed.returncode}"}
        with open(path) as f:
            return json.load(f)[0]


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def header() -> list[str]:
    timestamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    split_dir = os.path.join(_ROOT.value, _SPLIT.value)
    return [
        f"## Input pipeline images/s ({timestamp})",
        "",
        f"- Machine: {cpu_model()}, {len(os.sched_getaffinity(0))} usable cores, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB ({platform.platform()}); "
        f"Python {platform.python_version()}",
        f"- Data: {split_dir}, {len(jpeg_files(split_dir)[0])} JPEGs; batch {_BATCH_SIZE.value}, "
        f"{_IMAGE_SIZE.value} px, scale {SCALE}, "
        f"ratio (3/4, 4/3), bilinear + antialias, flip p=0.5, ImageNet mean/std",
        f"- Timing: {_WARMUP.value} warm-up batches, then {_REPEATS.value} windows of "
        f"{_BATCHES.value} batches; median [min-max] over the windows",
        f"- Load average (1/5/15 min) at start: {load_average()}",
    ]


def _span(stats: dict[str, Any]) -> str:
    return f"{stats['median']:.0f} [{stats['min']:.0f}-{stats['max']:.0f}]"


def markdown(reports: list[dict[str, Any]]) -> list[str]:
    """Versions, one table row per (framework, workers), and the device normalisation."""
    lines = []
    for report in reports:
        if "skipped" in report:
            lines.append(f"- {report['framework']}: skipped ({report['skipped']})")
        else:
            listed = ", ".join(f"{k} {v}" for k, v in report["versions"].items())
            lines.append(f"- {report['framework']}: {listed}")
    lines += [
        "",
        "| pipeline | normalize on | workers | images/s | per worker | images per CPU-second "
        f"| cores busy | cores for {_TARGET.value:,.0f} img/s | batch |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    extra = []
    for report in reports:
        for r in report.get("results", []):
            cores = _TARGET.value / r["images_per_cpu_s"]["median"]
            lines.append(
                f"| {report['framework']} | {report['normalize_on']} | {r['workers']} "
                f"| {_span(r['images_per_s'])} | {r['images_per_s_per_worker']:.0f} "
                f"| {_span(r['images_per_cpu_s'])} | {r['cores_busy']['median']:.2f} "
                f"| {cores:.1f} | {r['dtype']} {r['shape']} |"
            )
        if "device_normalize" in report:
            norm = report["device_normalize"]
            extra.append(
                f"- {report['framework']}: normalisation on the device, timed separately "
                f"(jitted, {norm['backend']}, one resident uint8 batch): "
                f"{_span(norm['images_per_s'])} images/s, {_span(norm['images_per_cpu_s'])} "
                f"images per CPU-second"
            )
    return [*lines, "", *extra]


def check_flags() -> None:
    unknown = sorted(set(_FRAMEWORKS.value) - set(FRAMEWORKS))
    if unknown:
        raise app.UsageError(f"--frameworks: unknown {unknown}; choose from {FRAMEWORKS}.")
    if not all(w.isdigit() for w in _WORKERS.value):
        raise app.UsageError(f"--workers must be integers >= 0, got {_WORKERS.value}.")
    if _WARMUP.value < 1 or _BATCHES.value < 1 or _REPEATS.value < 1:
        raise app.UsageError("--warmup_batches, --batches_per_repeat and --repeats must be >= 1.")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    check_flags()
    if _CHILD_OUT.value:
        with open(_CHILD_OUT.value, "w") as f:
            json.dump([run_framework(name) for name in _FRAMEWORKS.value], f)
        return
    head = header()
    print("\n".join(head), flush=True)
    reports = [run_in_subprocess(name) for name in _FRAMEWORKS.value]
    body = [f"- Load average at end: {load_average()}", *markdown(reports)]
    print("\n".join(body))
    if _OUT.value:
        with open(_OUT.value, "w") as f:
            json.dump({"report": head + body, "frameworks": reports}, f, indent=1)


if __name__ == "__main__":
    app.run(main)
