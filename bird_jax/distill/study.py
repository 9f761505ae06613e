"""The bird study's question in one command: how well do networks trained on a few distilled
(or selected, or compressed) images per class do on the real test photos, and at what energy?

`python -m bird_jax.study --study=distill --config=configs/distill/dm.py:birds_ipc1
--workdir=W --ipcs=1,10 --variants=random,dm,pca` runs every method at every IPC in
W/<method>_ipc<N> (a `bird_jax.distill` workdir each: a rerun resumes or skips finished ones),
plus W/full (the protocol's networks trained on the whole training split, `--full_epochs`), and
writes W/report: distill.md and distill.csv (accuracy +- std per network, storage, time and
energy of distilling and of training on the set), accuracy_vs_ipc.png, accuracy_vs_energy.png,
accuracy_vs_iteration.png (where variants were also evaluated during distilling:
distill.eval_at) and grids/ (each set's picture).

Every method starts from its own defaults (bird_jax.distill.defaults); settings given on the
command line, i.e. those where the base config differs from its method's defaults, apply to
every method that has them (a reduced --config.distill.iterations, the data root, the
evaluation's epochs and networks).
"""

from __future__ import annotations

import copy
import csv
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ml_collections

from bird_jax.distill import defaults, methods
from bird_jax.distill.run import RESULTS_FILE, distill_and_evaluate
from bird_jax.signals import StopRequest
from bird_jax.workdir import Workdir, read_json

FULL = "full"  # the row of networks trained on the whole training split
# Methods in reports and plots: the coresets, the iterative methods, the reductions.
METHOD_ORDER = (*defaults.CORESETS, *defaults.ITERATIVE, *defaults.REDUCTIONS)


def _changed(config: ml_collections.ConfigDict, reference: ml_collections.ConfigDict, prefix=""):
    """{dotted key: value} where `config` differs from `reference`."""
    changed = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        other = reference.get(key)
        if isinstance(value, ml_collections.ConfigDict) and isinstance(
            other, ml_collections.ConfigDict
        ):
            changed.update(_changed(value, other, dotted + "."))
        elif value != other:
            changed[dotted] = value
    return changed


def _set(config: ml_collections.ConfigDict, dotted: str, value: Any) -> None:
    *parents, key = dotted.split(".")
    node = config
    for part in parents:
        node = node[part]
    with node.unlocked():  # a key the defaults lack (a model setting, say) is added
        node[key] = value


def variant_configs(
    base: ml_collections.ConfigDict,
    method_names: Sequence[str],
    ipcs: Sequence[int],
    full_epochs: int,
) -> dict[str, ml_collections.ConfigDict]:
    """{'<method>_ipc<N>': config} for every method and IPC, and 'full' (whole split, evaluated
    `full_epochs` epochs) unless full_epochs is 0; each validated (methods.check_config)."""
    unknown = [name for name in method_names if name not in defaults.METHODS]
    if unknown:
        raise ValueError(f"Unknown method(s) {unknown}; known: {', '.join(defaults.METHODS)}.")
    if not ipcs or min(ipcs) < 1:
        raise ValueError(f"--ipcs must list images per class >= 1, got {list(ipcs)}.")
    if "distill" not in base or base.distill.get("dataset") not in defaults.DATASETS:
        raise ValueError(
            "The distill study needs a distillation config (configs/distill/<method>.py:"
            "<dataset>_ipc<N>), e.g. --config=configs/distill/dm.py:birds_ipc1."
        )
    dataset = base.distill.dataset
    variant = f"{dataset}_ipc{base.distill.ipc}"
    overrides = _changed(base, defaults.get_config(base.distill.method, variant))
    overrides = {k: v for k, v in overrides.items() if k not in ("distill.method", "distill.ipc")}
    configs = {}
    for method in method_names:
        for ipc in ipcs:
            config = defaults.get_config(method, f"{dataset}_ipc{ipc}")
            for dotted, value in overrides.items():
                _set(config, dotted, copy.deepcopy(value))
            methods.check_config(config)
            configs[f"{method}_ipc{ipc}"] = config
    if full_epochs:
        config = copy.deepcopy(next(iter(configs.values())))
        config.distill.method, config.distill.iterations = "random", 0
        config.distill.ipc = 0  # set to the smallest class when the data is known (run)
        config.evaluation.epochs = full_epochs
        configs[FULL] = config
    return configs


def run_study(
    configs: dict[str, ml_collections.ConfigDict],
    workdir: str | Path,
    stop: StopRequest | None = None,
) -> list[dict]:
    """Distils and evaluates each variant in workdir/<name> (finished ones are read, not rerun),
    writes workdir/report and returns its rows: these variants', then those finished in workdir
    by earlier commands, so a study built up over several commands ends in one report. A `stop`
    request (SIGTERM, Ctrl-C) saves the variant in progress and raises Stopped: the same call
    resumes it."""
    workdir = Path(workdir)
    for name, config in configs.items():
        path = workdir / name
        if _finished(path):
            continue
        if name == FULL:
            config = _whole_split(config)
        distill_and_evaluate(config, Workdir(path), stop)
    names = [*configs, *finished_variants(workdir, besides=list(configs))]
    rows = [read_row(name, workdir / name) for name in names]
    write_report(rows, workdir / "report", workdir)
    return rows


def _whole_split(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The full row's config: every training image of the smallest class's count a class."""
    from bird_jax.data.sources import load_splits
    from bird_jax.distill.real import split_counts

    config = copy.deepcopy(config)
    config.distill.ipc = int(split_counts(load_splits(config.data), config.data.train_split).min())
    return config


def finished_variants(workdir: Path, besides: Sequence[str] = ()) -> list[str]:
    """The finished variants in `workdir` not among `besides`, by name, the full row last."""
    found = [p.name for p in Path(workdir).iterdir() if p.name not in besides and _finished(p)]
    return sorted(found, key=lambda name: (name == FULL, name))


def _finished(path: Path) -> bool:
    results = read_json(path / RESULTS_FILE)
    return (
        bool(results.get("evaluations"))
        and "distill_seconds" in results
        and any(e["iteration"] == results.get("iterations") for e in results["evaluations"])
    )


def read_row(name: str, path: Path) -> dict[str, Any]:
    """One report row from a variant's results.json."""
    results = read_json(path / RESULTS_FILE)
    final = [e for e in results["evaluations"] if e["iteration"] == results["iterations"]]
    row = {
        "variant": name,
        "method": FULL if name == FULL else results["method"],
        "ipc": results["ipc"],
        "storage_bytes": results["storage_bytes"],
        "distill_seconds": results["distill_seconds"],
        "distill_kwh": results["distill_kwh"],
        "optimizer": final[0].get("optimizer", "sgd"),  # of its evaluation runs
        "epochs": final[0]["epochs"],
    }
    for evaluation in final:
        model = evaluation["model"]
        row[f"{model}_mean"], row[f"{model}_std"] = evaluation["mean"], evaluation["std"]
        row[f"{model}_runs"] = evaluation["runs"]
        row[f"{model}_train_kwh"] = evaluation["kwh_per_run"]
    return row


def _models(rows: Sequence[dict]) -> list[str]:
    return list(dict.fromkeys(k[: -len("_mean")] for r in rows for k in r if k.endswith("_mean")))


def markdown_table(rows: Sequence[dict]) -> str:
    """Per variant: each network's test top-1 mean (+- std where it ran more than once), its
    epochs, storage, distilling, training cost; a variant trained otherwise than with the
    protocol's SGD (FRePo's Adam) says so."""
    models = _models(rows)
    head = ["variant", *models, "epochs", "storage", "distilling", "distil kWh",
            "train kWh (1 run)"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        optimizer = row["optimizer"]  # read_row's: "sgd" for results that predate the option
        cells = [row["variant"] + ("" if optimizer == "sgd" else f" ({optimizer} evaluation)")]
        for model in models:
            mean, runs = row.get(f"{model}_mean"), row.get(f"{model}_runs", 1)
            spread = f" ± {100 * row[f'{model}_std']:.2f}" if runs > 1 else ""
            cells.append("" if mean is None else f"{100 * mean:.2f}{spread}")
        train = row.get(f"{models[0]}_train_kwh") if models else None
        cells += [
            str(row["epochs"]),
            f"{row['storage_bytes'] / 1e3:,.1f} kB",
            f"{row['distill_seconds']:.0f} s",
            f"{row['distill_kwh']:.4f}",
            "" if train is None else f"{train:.4f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _by_method(rows: Sequence[dict]) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = {}
    for row in rows:
        grouped.setdefault(row["method"], []).append(row)
    return grouped


def method_colour(method: str):
    """The method's colour in every plot of every report (tab20 without its greys, in
    METHOD_ORDER); the whole split's grey."""
    from matplotlib import colormaps

    if method == FULL:
        return "grey"
    shades = [i for i in (*range(0, 20, 2), *range(1, 20, 2)) if i not in (14, 15)]
    return colormaps["tab20"](shades[METHOD_ORDER.index(method) % len(shades)])


def _plot_ipc(axes, rows: Sequence[dict], model: str) -> None:
    """Accuracy against images per class, a line per method; the whole split as a level."""
    for method, group in _by_method(rows).items():
        if method == FULL:
            for row in group:
                axes.axhline(100 * row[f"{model}_mean"], color="grey", linestyle="--",
                             label=f"whole split ({row['ipc']} a class)")  # fmt: skip
            continue
        group = sorted(group, key=lambda r: r["ipc"])
        axes.plot([r["ipc"] for r in group], [100 * r[f"{model}_mean"] for r in group],
                  marker="o", label=method, color=method_colour(method))  # fmt: skip
    ipcs = sorted({r["ipc"] for r in rows if r["method"] != FULL})
    if len(ipcs) > 2:
        axes.set_xscale("log")
    axes.set_xticks(ipcs, [str(ipc) for ipc in ipcs])
    axes.minorticks_off()
    axes.set_xlabel("images per class")
    axes.set_title("Accuracy vs images per class")


def _plot_energy(axes, rows: Sequence[dict], model: str) -> None:
    """Accuracy against distilling + one training run (Wh), points labelled with their IPC."""
    for method, group in _by_method(rows).items():
        x = [1000 * (r["distill_kwh"] + r[f"{model}_train_kwh"]) for r in group]
        y = [100 * r[f"{model}_mean"] for r in group]
        label, marker = ("whole split", "s") if method == FULL else (method, "o")
        axes.scatter(x, y, label=label, color=method_colour(method), marker=marker)
        for row, xy in zip(group, zip(x, y, strict=True), strict=True):
            axes.annotate(str(row["ipc"]), xy, xytext=(4, 4), textcoords="offset points",
                          fontsize=7)  # fmt: skip
    axes.set_xlim(left=0)
    axes.set_xlabel("distilling + one training run (Wh; labels: images per class)")
    axes.set_title("Accuracy vs energy")


def accuracy_curves(rows: Sequence[dict], workdir: Path, model: str) -> dict[str, list]:
    """{variant: [(iteration, mean test top-1)]} of `model`, every variant but the whole split's
    (one point for a set made in one go)."""
    curves = {}
    for row in rows:
        results = read_json(workdir / row["variant"] / RESULTS_FILE)
        points = sorted((e["iteration"], e["mean"]) for e in results.get("evaluations", [])
                        if e["model"] == model)  # fmt: skip
        if points and row["method"] != FULL:
            curves[row["variant"]] = points
    return curves


def _plot_iterations(axes, rows: Sequence[dict], curves: dict[str, list]) -> None:
    """Accuracy against distillation iterations (log scale, 0 included): a line per iterative
    variant, a dashed level, in its method's colour, for each set made in one go (random, PCA,
    ...)."""
    method = {row["variant"]: row["method"] for row in rows}
    for variant, points in curves.items():
        colour = method_colour(method[variant])
        if method[variant] in defaults.ONE_SHOT:
            axes.axhline(100 * points[0][1], linestyle="--", color=colour, linewidth=1)
            axes.annotate(variant, (0, 100 * points[0][1]), xycoords=("axes fraction", "data"),
                          xytext=(4, 3), textcoords="offset points", fontsize=7)  # fmt: skip
            continue
        axes.plot(*zip(*[(i, 100 * m) for i, m in points], strict=True), marker="o",
                  label=variant, color=colour)  # fmt: skip
    axes.set_xscale("symlog", linthresh=1)  # logarithmic, with the start (iteration 0) shown
    axes.set_xlim(left=0)
    axes.set_xlabel("distillation iterations")
    axes.set_title("Accuracy vs iterations")


def write_report(rows: Sequence[dict], out: Path, workdir: Path) -> list[Path]:
    """distill.md, distill.csv, the plots and grids/<variant>.png; the paths written."""
    from bird_jax.compare import figure_and_axes

    out.mkdir(parents=True, exist_ok=True)
    written = [out / "distill.md", out / "distill.csv"]
    written[0].write_text(markdown_table(rows) + "\n")
    keys = list(dict.fromkeys(k for row in rows for k in row))
    with open(written[1], "w", newline="") as file:
        writer = csv.DictWriter(file, keys)
        writer.writeheader()
        writer.writerows(rows)
    first = _models(rows)[0] if _models(rows) else None
    evaluated = [r for r in rows if f"{first}_mean" in r]
    plots = {
        "accuracy_vs_ipc.png": lambda axes: _plot_ipc(axes, evaluated, first),
        "accuracy_vs_energy.png": lambda axes: _plot_energy(axes, evaluated, first),
    }
    curves = accuracy_curves(rows, workdir, first)
    if any(len(points) > 1 for points in curves.values()):
        plots["accuracy_vs_iteration.png"] = lambda axes: _plot_iterations(axes, rows, curves)
    for name, plot in plots.items():
        figure, axes = figure_and_axes(width=8.0)
        plot(axes)
        axes.set_ylabel(f"{first} test top-1 (%)")
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))  # off the data
        figure.savefig(out / name)
        written.append(out / name)
    grids = out / "grids"
    grids.mkdir(exist_ok=True)
    for row in rows:
        picture = workdir / row["variant"] / "synthetic.png"
        if row["method"] != FULL and picture.is_file():
            written.append(Path(shutil.copy(picture, grids / f"{row['variant']}.png")))
    return written
