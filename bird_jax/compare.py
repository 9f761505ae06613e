"""Side-by-side comparison of finished runs: a Markdown/CSV table and PNG plots.

  python -m bird_jax.compare runs/a runs/b ... [--out=report] [--split=test]

Reads each workdir's config.json, eval_<split>.json and efficiency.json (the split defaults to
the run's data.eval_split). Prints the Markdown table and writes report.md, report.csv,
accuracy_vs_energy.png, accuracy_vs_time.png and throughput.png to --out. A field a run lacks
shows as '—' (an empty cell in the CSV); energy that was not measured is marked '(est.)'.
"""

import csv
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from absl import app, flags

from bird_jax import cli
from bird_jax.config import pipeline_ops
from bird_jax.workdir import NotARunError, Workdir, file_stem, read_json

FLAGS = flags.FLAGS


def define_flags() -> None:
    """This command's flags (defined by cli.run, never on import)."""
    flags.DEFINE_string("out", "report", "Directory for report.md, report.csv and the plots.")
    flags.DEFINE_string(
        "split", None, "Split whose eval_<split>.json to read (default: each run's eval_split)."
    )


DASH = "—"
PLOTS = ("accuracy_vs_energy.png", "accuracy_vs_time.png", "throughput.png")


def _get(tree: Any, dotted: str) -> Any:
    """tree['a']['b'] for 'a.b'; None where a level is missing or not a dict."""
    for key in dotted.split("."):
        if not isinstance(tree, dict):
            return None
        tree = tree.get(key)
    return tree


def _scaled(value: float | None, factor: float) -> float | None:
    return None if value is None else value * factor


def _run_total(efficiency: dict, total_key: str, segment_key: str) -> Any:
    """The whole run's value over its resumed segments; files without a `total` (written
    before segments were summed) give their single segment's value."""
    total = _get(efficiency, f"total.{total_key}")
    return total if total is not None else _get(efficiency, segment_key)


def _read_config(run: Workdir) -> dict:
    if not run.path.is_dir():
        raise NotARunError(f"{run} is not a directory: expected the --workdir of a training run.")
    config = read_json(run.config_file)
    if not config:
        raise NotARunError(
            f"{run} has no readable config.json: expected the --workdir of a bird_jax training "
            "run, holding config.json (and eval_<split>.json, efficiency.json)."
        )
    return config


def load_run(workdir: str | Path, split: str | None = None) -> dict[str, Any]:
    """One flat row of a run: settings, `split`'s accuracy and macro-F1, and its efficiency.

    Numbers stay raw (accuracy and macro-F1 as fractions, MFU in percent, CO2 in grams); a value
    the run's files lack is None. Raises NotARunError if `workdir` has no config.json.
    """
    run = Workdir(workdir)
    config = _read_config(run)
    split = split or _get(config, "data.eval_split")
    evaluation = run.read_evaluation(split) if split else {}
    efficiency = run.read_efficiency()
    return {
        "run": run.path.resolve().name,
        "workdir": str(run),
        "model": config.get("model_name"),
        "precision": efficiency.get("precision") or config.get("precision"),
        "accumulation": config.get("grad_accum_steps"),
        "prefetch": _get(config, "data.prefetch"),
        "augmentation": pipeline_ops(_get(config, "data.train_pipeline")),
        "split": split,
        "steps": _run_total(efficiency, "trained_steps", "trained_steps"),
        "accuracy": evaluation.get("accuracy"),
        "macro_f1": evaluation.get("macro_f1"),
        "wall_s": _run_total(efficiency, "wall_s", "time.wall_s"),
        "energy_kwh": _run_total(efficiency, "kwh", "energy.kwh"),
        "energy_measured": _run_total(efficiency, "measured", "energy.measured"),
        "co2_g": _scaled(_run_total(efficiency, "co2_kg", "energy.co2_kg"), 1000.0),
        "cost": (
            _run_total(efficiency, "cost", "energy.cost")
            if _get(config, "efficiency.price_per_device_hour")
            else None  # no price set: unknown, not free
        ),
        "images_per_s": _get(efficiency, "throughput.images_per_s"),
        "mfu_percent": _scaled(_get(efficiency, "flops.mfu"), 100.0),
    }


def compare(workdirs: Sequence[str | Path], split: str | None = None) -> list[dict[str, Any]]:
    """The rows of `workdirs`, in order (see load_run)."""
    return [load_run(workdir, split) for workdir in workdirs]


# --- Formatting --------------------------------------------------------------------------------


def significant(value: float, digits: int = 3) -> str:
    """`value` to `digits` significant digits, never in exponent form: 712.66 -> '713'."""
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(value))))
    return f"{value:,.{decimals}f}"


def duration(seconds: float) -> str:
    """'38.5 s', '12 min 05 s' or '2 h 07 min'."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        minutes, rest = divmod(round(seconds), 60)
        return f"{minutes} min {rest:02d} s"
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"{hours} h {minutes:02d} min"


def energy(kwh: float, measured: bool | None) -> str:
    """'0.694 Wh (est.)' below 1 kWh, '1.23 kWh' above; '(est.)' unless measured."""
    text = f"{significant(kwh * 1000)} Wh" if kwh < 1 else f"{significant(kwh)} kWh"
    return text + (" (est.)" if measured is False else "")


def _cell(value: Any, fmt: Callable[[Any], str] = str) -> str:
    return DASH if value is None else fmt(value).replace("|", "\\|")


def table_cells(row: dict[str, Any]) -> dict[str, str]:
    """The row as the Markdown table shows it, header -> cell."""
    measured = row.get("energy_measured")
    return {
        "run": _cell(row.get("run")),
        "model": _cell(row.get("model")),
        "precision": _cell(row.get("precision")),
        "accum.": _cell(row.get("accumulation")),
        "prefetch": _cell(row.get("prefetch")),
        "augmentation": _cell(row.get("augmentation")),
        "split": _cell(row.get("split")),
        "steps": _cell(row.get("steps")),
        "accuracy": _cell(row.get("accuracy"), lambda v: f"{v:.1%}"),
        "macro-F1": _cell(row.get("macro_f1"), lambda v: f"{v:.3f}"),
        "time": _cell(row.get("wall_s"), duration),
        "energy": _cell(row.get("energy_kwh"), lambda v: energy(v, measured)),
        "CO2e": _cell(row.get("co2_g"), lambda v: f"{significant(v)} g"),
        "cost": _cell(row.get("cost"), significant),
        "images/s": _cell(row.get("images_per_s"), significant),
        "MFU": _cell(row.get("mfu_percent"), lambda v: f"{significant(v)}%"),
    }


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """A Markdown table, one line per row; '—' where a value is missing."""
    headers = list(table_cells({}))
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(table_cells(row).values()) + " |" for row in rows]
    return "\n".join(lines)


def _write_csv(rows: Sequence[dict[str, Any]], path: Path) -> None:
    """The raw rows (full precision, units in the column names); missing values empty."""
    fields = list(dict.fromkeys(key for row in rows for key in row))
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=fields, restval="")
        writer.writeheader()
        writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)


# --- Plots -------------------------------------------------------------------------------------


def figure_and_axes(width: float = 6.4, height: float = 4.8):
    """A matplotlib figure (Agg, no display) and its one axes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot()


def _no_data(axes, what: str) -> None:
    axes.text(0.5, 0.5, f"no run has {what}", ha="center", va="center", transform=axes.transAxes)


def _accuracy_scatter(rows, x_key: str, x_unit: tuple[float, str], path: Path, marks: bool):
    """Accuracy (%) against rows[x_key] / divisor; with `marks`, estimated energy is hollow."""
    divisor, x_label = x_unit
    figure, axes = figure_and_axes()
    points = [r for r in rows if r.get(x_key) is not None and r.get("accuracy") is not None]
    groups = {"measured": [], "estimated": []}
    for row in points:
        groups["estimated" if marks and row.get("energy_measured") is False else "measured"] += [
            row
        ]
    for kind, group in groups.items():
        if group:
            axes.scatter(
                [r[x_key] / divisor for r in group],
                [100 * r["accuracy"] for r in group],
                s=60,
                facecolors="none" if kind == "estimated" else "tab:blue",
                edgecolors="tab:blue",
                label=f"energy {kind}" if marks else None,
                clip_on=False,  # a run at 100% sits on the top edge
            )
    for row in points:
        xy = (row[x_key] / divisor, 100 * row["accuracy"])
        axes.annotate(row["run"], xy, xytext=(5, 5), textcoords="offset points", fontsize=8)
    if not points:
        _no_data(axes, f"both accuracy and {x_label}")
    elif marks:
        axes.legend(loc="lower right", fontsize=8)
    splits = ", ".join(sorted({str(r["split"]) for r in points}))
    axes.set_xlabel(x_label)
    axes.set_ylabel(f"accuracy (%, {splits})" if points else "accuracy (%)")
    axes.set_title(f"Accuracy vs {x_label.split(' (')[0]}")
    axes.margins(x=0.3)  # room for the run names
    axes.set_xlim(left=0)  # energy and time start at zero
    axes.set_ylim(top=min(axes.get_ylim()[1], 100.0))  # accuracy never exceeds 100%
    axes.grid(alpha=0.3)
    figure.savefig(path)


def _energy_unit(rows) -> tuple[float, str]:
    largest = max((r["energy_kwh"] for r in rows if r.get("energy_kwh") is not None), default=0)
    return (1.0, "energy (kWh)") if largest >= 1 else (1e-3, "energy (Wh)")


def _time_unit(rows) -> tuple[float, str]:
    largest = max((r["wall_s"] for r in rows if r.get("wall_s") is not None), default=0)
    if largest >= 3 * 3600:
        return 3600.0, "wall time (h)"
    return (60.0, "wall time (min)") if largest >= 120 else (1.0, "wall time (s)")


def _throughput_plot(rows, path: Path) -> None:
    """Bars of training images/s, labelled model/precision and run."""
    bars = [r for r in rows if r.get("images_per_s") is not None]
    figure, axes = figure_and_axes(width=max(6.4, 1.3 * len(bars)))
    if bars:
        labels = [f"{r.get('model')}/{r.get('precision')}\n{r['run']}" for r in bars]
        drawn = axes.bar(labels, [r["images_per_s"] for r in bars], color="tab:green")
        axes.bar_label(drawn, labels=[significant(r["images_per_s"]) for r in bars], fontsize=8)
        axes.tick_params(axis="x", labelsize=8)
    else:
        _no_data(axes, "a throughput")
    axes.set_ylabel("training images/s (step p50)")
    axes.set_title("Training throughput")
    axes.grid(axis="y", alpha=0.3)
    figure.savefig(path)


def write_report(rows: Sequence[dict[str, Any]], out_dir: str | Path) -> list[Path]:
    """Writes report.md, report.csv and the three PNG plots to `out_dir`; returns their paths."""
    if not rows:
        raise ValueError("write_report needs at least one run.")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "report.md", out / "report.csv", *(out / name for name in PLOTS)]
    paths[0].write_text(markdown_table(rows) + "\n")
    _write_csv(rows, paths[1])
    _accuracy_scatter(rows, "energy_kwh", _energy_unit(rows), paths[2], marks=True)
    _accuracy_scatter(rows, "wall_s", _time_unit(rows), paths[3], marks=False)
    _throughput_plot(rows, paths[4])
    return paths


def main(argv: list[str]) -> None:
    workdirs = argv[1:]
    if not workdirs:
        raise app.UsageError("Name the workdirs to compare: python -m bird_jax.compare runs/a ...")
    rows = compare(workdirs, split=FLAGS.split)
    print(markdown_table(rows))
    for row in rows:
        if row["accuracy"] is None and row["split"]:
            print(
                f"{row['run']} has no eval_{file_stem(row['split'])}.json; make it with: python -m "
                f"bird_jax.main --mode=evaluate --workdir={row['workdir']} --split={row['split']} "
                "--checkpoint=best",
                file=sys.stderr,
            )
    paths = write_report(rows, FLAGS.out)
    print("Wrote " + ", ".join(str(path) for path in paths))


if __name__ == "__main__":
    cli.run(main, define_flags)
