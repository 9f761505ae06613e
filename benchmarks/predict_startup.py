"""Start-up of `bird_jax.predict` (and `--mode=evaluate`): wall time and peak RSS per model.

For each model, trains a run for one step on the embedded digits at --image_size (so the
workdir holds a real checkpoint with optimizer state), then runs

    python -m bird_jax.predict --workdir=RUN photo.jpg

--repeats times, each in a fresh process, and reports wall time and the process's peak RSS
(from wait4's rusage) as median (min-max). --tree runs another checkout of bird_jax (e.g. a
`git worktree` of an older commit) the same way, for a before/after comparison:

    python benchmarks/predict_startup.py --models=vgg16,convnext_tiny --tree=/tmp/wt-old
    python benchmarks/predict_startup.py --models=vgg16,convnext_tiny
"""

import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from absl import app, flags
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_model, load_average, summary, usable_cores  # noqa: E402

_MODELS = flags.DEFINE_list("models", ["vgg16", "convnext_tiny"], "Config files in configs/.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 224, "Input resolution of the runs.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Predict processes timed per model.")
_TREE = flags.DEFINE_string("tree", "", "A bird_jax checkout to run (default: this one).")
_OUT = flags.DEFINE_string("out", "", "Append the Markdown report to this file.")

_REPO = Path(__file__).resolve().parent.parent


def _run(command: list[str], tree: Path) -> tuple[float, float]:
    """Runs `command` in `tree`; (wall seconds, the process's peak RSS in GiB)."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    with tempfile.TemporaryFile("w+") as log:
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=tree, env=env, stdout=log, stderr=log)
        _, status, usage = os.wait4(process.pid, 0)  # this child's own rusage
        wall = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode:
            log.seek(0)
            raise RuntimeError(f"{' '.join(command)} failed:\n{log.read()[-3000:]}")
    return wall, usage.ru_maxrss / 2**20  # KiB -> GiB


def _train_one_step(model: str, tree: Path, workdir: Path) -> None:
    config = {"vgg16": "configs/vgg16.py", "convnext_tiny": "configs/convnext_tiny.py"}[model]
    overrides = [
        "--config.data.source=embedded", "--config.data.name=digits",
        f"--config.data.image_size={_IMAGE_SIZE.value}", "--config.num_train_steps=1",
        "--config.batch_size=8", "--config.eval_batch_size=64", "--config.precision=float32",
        "--config.log_input_grid=False", "--config.data.train_pipeline=resize",
    ]  # fmt: skip
    _run([sys.executable, "-m", "bird_jax.main", f"--config={config}", f"--workdir={workdir}",
          *overrides], tree)  # fmt: skip


def main(argv: list[str]) -> None:
    del argv
    tree = Path(_TREE.value or _REPO).resolve()
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=tree, capture_output=True, text=True
    ).stdout.strip()
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        photo = Path(scratch) / "photo.jpg"
        pixels = np.random.default_rng(0).integers(0, 256, (375, 500, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(photo)
        for model in _MODELS.value:
            workdir = Path(scratch) / model
            print(f"{model}: training one step to make a checkpoint...", file=sys.stderr)
            _train_one_step(model, tree, workdir)
            walls, rsses = [], []
            for repeat in range(_REPEATS.value):
                command = [sys.executable, "-m", "bird_jax.predict", f"--workdir={workdir}",
                           "--checkpoint=latest", str(photo)]  # fmt: skip
                wall, rss = _run(command, tree)
                walls.append(wall)
                rsses.append(rss)
                print(f"  predict {repeat + 1}: {wall:.1f} s, {rss:.2f} GiB", file=sys.stderr)
            rows.append((model, summary(walls), summary(rsses)))
    lines = [
        f"predict start-up: bird_jax at {tree} ({commit}); {cpu_model()}, {usable_cores()} "
        f"cores, Python {platform.python_version()}; load {load_average()}; "
        f"{_IMAGE_SIZE.value} px, {_REPEATS.value} processes each",
        "",
        "| model | wall s, median (min-max) | peak RSS GiB, median (min-max) |",
        "|---|---:|---:|",
    ]
    for model, wall, rss in rows:
        lines.append(
            f"| {model} | {wall['median']} ({wall['min']}-{wall['max']}) | "
            f"{rss['median']} ({rss['min']}-{rss['max']}) |"
        )
    report = "\n".join(lines)
    print(report)
    if _OUT.value:
        with open(_OUT.value, "a") as f:
            f.write(report + "\n\n")


if __name__ == "__main__":
    app.run(main)
