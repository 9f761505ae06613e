"""What TensorBoard shows of a run beyond the curves: the hparams record and the cost table.

Scalars go through CLU's writer (bird_jax.writers); the hparams plugin's experiment record is
written here, so its columns are the settings that matter and its metrics are filled in both
when TensorBoard opens one workdir and when it opens a parent folder of runs.
"""

from typing import Any

import ml_collections
from tensorboardX import FileWriter
from tensorboardX import summary as tbx_summary
from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData

from bird_jax.config import pipeline_ops
from bird_jax.precision import resolve


def hparams(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """The settings compared across runs, as HParams columns, most telling first."""
    return {
        "model": config.model_name,
        "lr": config.lr,
        "batch_size": config.batch_size,
        "precision": resolve(config.precision),
        "augmentation": pipeline_ops(config.data.train_pipeline),
        "grad_accum_steps": config.grad_accum_steps,
        "data": config.data.name if config.data.source != "folder" else config.data.root,
        "image_size": config.data.image_size,
        "label_smoothing": config.label_smoothing,
        "ema_decay": config.ema_decay,
        "seed": config.seed,
    }


def metric_tags(eval_split: str) -> tuple[str, ...]:
    """The scalars the HParams tab shows per run: validation accuracy, loss and energy so far."""
    return (f"{eval_split}/accuracy", f"{eval_split}/loss", f"{eval_split}/kwh")


def write_hparams(logdir: str, config: ml_collections.ConfigDict) -> None:
    """Writes the hparams experiment (columns and metrics) and this run's session record.

    TensorBoard orders the columns by name and shows the first five: each is named with its
    rank ('00_model') and displayed by its plain name, so the telling ones come first.
    """
    settings = hparams(config)
    ranked = {f"{rank:02d}_{name}": value for rank, (name, value) in enumerate(settings.items())}
    metrics = {tag: 0.0 for tag in metric_tags(config.data.eval_split)}
    experiment, session_start, _ = tbx_summary.hparams(ranked, metrics)
    plugin_data = experiment.value[0].metadata.plugin_data
    content = HParamsPluginData.FromString(plugin_data.content)
    for info in content.experiment.hparam_infos:
        info.display_name = info.name.split("_", 1)[1]
    plugin_data.content = content.SerializeToString()
    writer = FileWriter(logdir, filename_suffix=".hparams")
    writer.add_summary(experiment)
    writer.add_summary(session_start)
    writer.close()


def efficiency_table(summary: dict[str, Any]) -> str:
    """efficiency.json's headline figures as a Markdown table (a TensorBoard text card)."""
    times, throughput, flops = summary["time"], summary["throughput"], summary["flops"]
    energy, total = summary["energy"], summary.get("total", {})
    rows = [
        ("wall time", f"{times['wall_s']:.1f} s (compile {times['compile_s']:.1f} s, eval "
         f"{times['eval_s']:.1f} s, input wait {times['input_wait_s']:.1f} s)"),
        ("step time p50 / p90", f"{1000 * times['step_p50_s']:.1f} / "
         f"{1000 * times['step_p90_s']:.1f} ms"),
        ("images/s", f"{throughput['images_per_s'] or 0:.1f} on {throughput['devices']} "
         f"{throughput['device_kind']}"),
        ("MFU", "—" if flops["mfu"] is None else f"{flops['mfu']:.1%} ({flops['peak_source']})"),
        ("energy", f"{energy['kwh'] * 1000:.2f} Wh ({energy['method']})"),
        ("CO2e", f"{energy['co2_kg'] * 1000:.1f} g"),
        ("run total", f"{total.get('trained_steps', 0)} steps in {total.get('segments', 1)} "
         f"segment(s), {total.get('kwh', energy['kwh']) * 1000:.2f} Wh"),
    ]  # fmt: skip
    return "\n".join(["| figure | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)])
