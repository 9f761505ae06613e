"""Cost of every augmentation op where it runs: host ops per image on a core, device ops per batch.

  python benchmarks/augment_ops.py --root=/tmp/data/cub20 --image_size=224

Host ops (Grain workers) are timed one image at a time in this process: milliseconds per image
and images per CPU-second, i.e. what one worker core sustains. Device ops are timed as the train
step runs them: `DeviceAugment` with that op alone (p=1) on a uint8 batch already on the default
device, jitted, so each row is the op plus normalisation; the `normalize only` row is the floor.
Every op uses its default parameters (randaugment: rand-m9-mstd0.5-inc1). Images come from
`--root` (a class-per-folder tree, centre-cropped to image_size) or are random if it is empty.
"""

import datetime
import platform
import sys
import time
from pathlib import Path

import jax
import numpy as np
from absl import app, flags
from machine import cpu_model, load_average, summary  # benchmarks/machine.py

_REPO_ROOT = Path(__file__).resolve().parents[1]
if str(_REPO_ROOT) not in sys.path:  # `configs` is a folder of the repository, not a package
    sys.path.insert(0, str(_REPO_ROOT))

from bird_jax import augment, data  # noqa: E402
from bird_jax import config as defaults  # noqa: E402
from bird_jax.augment.registry import DEVICE, HOST, parse_op, registered_ops  # noqa: E402

_ROOT = flags.DEFINE_string("root", "", "Class-per-folder tree with train/ (empty: random images).")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 224, "Square image side in pixels.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 64, "Images per timed host window / device batch.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed windows per op.")
_SIZING_OPS = ("random_resized_crop", "resize", "center_crop")  # measured by input_pipeline.py


def sample_images(data_config) -> np.ndarray:
    """batch_size uint8 images of image_size: eval crops of real photos, or random pixels."""
    count, size = _BATCH_SIZE.value, _IMAGE_SIZE.value
    if not _ROOT.value:
        return np.random.default_rng(0).integers(0, 256, (count, size, size, 3), dtype=np.uint8)
    source = data.load_splits(data_config).source("train")
    picks = np.linspace(0, len(source) - 1, count).astype(int)
    return np.stack([data.preprocess_for_eval(source[int(i)]["image"], data_config) for i in picks])


def time_host_op(op, images: np.ndarray) -> dict:
    """ms per image over `repeats` windows of the whole batch, one image at a time."""
    rng = np.random.default_rng(0)
    op.fn(images[0], rng)  # warm-up (caches, lazy imports)
    per_image = []
    for _ in range(_REPEATS.value):
        start = time.process_time()
        for image in images:
            op.fn(image, rng)
        per_image.append(1000 * (time.process_time() - start) / len(images))
    return summary(per_image)


def time_device_augment(device_augment, images: np.ndarray, num_classes: int = 10) -> dict:
    """images/s of the jitted DeviceAugment on a resident batch, over `repeats` windows."""
    batch = jax.device_put(images)
    targets = jax.nn.one_hot(np.arange(len(images)) % num_classes, num_classes)
    key = jax.random.PRNGKey(0)
    run = jax.jit(device_augment)
    jax.block_until_ready(run(batch, targets, key))  # compile
    rates = []
    for _ in range(_REPEATS.value):
        start = time.perf_counter()
        for _ in range(3):
            out = run(batch, targets, key)
        jax.block_until_ready(out)
        rates.append(3 * len(images) / (time.perf_counter() - start))
    return summary(rates)


def main(argv: list[str]) -> None:
    del argv
    data_config = defaults.bird_folder_config().data
    data_config.root, data_config.image_size = _ROOT.value, _IMAGE_SIZE.value
    images = sample_images(data_config)
    size = _IMAGE_SIZE.value
    mean, std = tuple(data_config.mean), tuple(data_config.std)
    timestamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"## Augmentation op cost ({timestamp})\n")
    print(f"- Machine: {cpu_model()}; Python {platform.python_version()}; jax {jax.__version__}")
    print(f"- Backend: {jax.default_backend()} ({jax.devices()[0].device_kind})")
    print(f"- Load average at start: {load_average()}")
    print(f"- {len(images)} images of {size}x{size} from {_ROOT.value or 'random pixels'}; ")
    print(f"  {_REPEATS.value} windows per op; median [min-max]\n")
    print("| op | runs on | ms per image (host CPU) | images per CPU-second | images/s (device) |")
    print("|---|---|---:|---:|---:|")
    plain = augment.DeviceAugment((), None, mean, std)
    rate = time_device_augment(plain, images)
    print(f"| normalize only | device | | | {rate['median']:.0f} [{rate['min']:.0f}-"
          f"{rate['max']:.0f}] |")  # fmt: skip
    for name, (kind, _) in registered_ops().items():
        if name in _SIZING_OPS:
            continue
        op = parse_op(name, image_size=size, mean=mean, std=std)
        if kind == HOST:
            ms = time_host_op(op, images)
            print(f"| {name} | host | {ms['median']:.3f} [{ms['min']:.3f}-{ms['max']:.3f}] "
                  f"| {1000 / ms['median']:.0f} | |")  # fmt: skip
        else:
            ops, batch_op = ((op,), None) if kind == DEVICE else ((), op)
            rate = time_device_augment(augment.DeviceAugment(ops, batch_op, mean, std), images)
            print(f"| {name} | device | | | {rate['median']:.0f} [{rate['min']:.0f}-"
                  f"{rate['max']:.0f}] |")  # fmt: skip
        sys.stdout.flush()


if __name__ == "__main__":
    app.run(main)
