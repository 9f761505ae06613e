"""What a training run prints: a header, progress lines, evaluations and a closing summary.

Only process 0 prints, to stdout. Full detail (every scalar, library logs) stays in TensorBoard
and in the absl log (`--verbosity=0` or higher shows it).
"""

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import jax
import ml_collections

from bird_jax.precision import resolve


def duration(seconds: float) -> str:
    """'m:ss' (or 'h:mm:ss' from an hour)."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def say(text: str) -> None:
    """Prints one line on process 0."""
    if jax.process_index() == 0:
        print(text, flush=True)


class Progress:
    """Compact progress lines: step, loss, accuracy, learning rate, steps/s and ETA."""

    def __init__(
        self, start_step: int, num_steps: int, clock=time.perf_counter, unit: str = "step"
    ):
        self.num_steps = num_steps
        self.unit = unit  # what a step is called: "epoch" gives "epoch 3/300 ... epochs/s"
        self._clock = clock
        self._width = len(str(num_steps))
        self._last_step = start_step
        self._last_time = None  # set once the first (compiling) step has finished
        self._first_timed_step = None
        self._first_time = None

    def started(self, step: int) -> None:
        """Marks the end of the compiling first step: rates count from here."""
        self._last_step = self._first_timed_step = step
        self._last_time = self._first_time = self._clock()

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Leaves the time spent inside (an evaluation) out of the next line's steps/s; the ETA
        keeps it, since such pauses recur."""
        start = self._clock()
        yield
        if self._last_time is not None:
            self._last_time += self._clock() - start

    def line(self, step: int, metrics: dict[str, float]) -> str:
        """The progress line at `step` for the train metrics averaged since the last line."""
        now = self._clock()
        parts = [f"{self.unit} {step:>{self._width}}/{self.num_steps}"]
        parts.append(f"loss {metrics['loss']:.4f}")
        if "accuracy" in metrics:
            parts.append(f"acc {metrics['accuracy']:6.1%}")
        if "learning_rate" in metrics:
            parts.append(f"lr {metrics['learning_rate']:.2e}")
        if self._last_time is not None and step > self._last_step:
            rate = (step - self._last_step) / max(now - self._last_time, 1e-9)
            parts.append(f"{rate:.2f} {self.unit}s/s")
        if self._first_time is not None and step > self._first_timed_step:
            rate = (step - self._first_timed_step) / max(now - self._first_time, 1e-9)
            parts.append(f"ETA {duration((self.num_steps - step) / rate)}")
        self._last_step, self._last_time = step, now
        return "  ".join(parts)


def evaluation_line(split: str, step: int, results: dict[str, float], seconds: float) -> str:
    """One evaluation: top-1, top-5, loss and macro-F1 of `split` at `step`."""
    parts = [f"eval {split} @ {step}: top-1 {results['accuracy']:.1%}"]
    if "top5_accuracy" in results:
        parts.append(f"top-5 {results['top5_accuracy']:.1%}")
    parts.append(f"loss {results['loss']:.4f}")
    if "macro_f1" in results:
        parts.append(f"macro-F1 {results['macro_f1']:.3f}")
    parts.append(f"({seconds:.1f} s)")
    return "  ".join(parts)


def header(config: ml_collections.ConfigDict, info, exp, state, workdir, start_step: int) -> str:
    """Model, data, steps, precision, devices and workdir, before anything compiles."""
    params = sum(leaf.size for leaf in jax.tree.leaves(state.params))
    data_name = config.data.root or config.data.name
    train = info.num_examples(config.data.train_split)
    evaluated = info.num_examples(config.data.eval_split)
    epochs = exp.num_train_steps * config.batch_size / max(train, 1)
    precision = resolve(config.precision)
    if precision != config.precision:
        precision += f" (precision={config.precision})"
    devices = jax.devices()
    resume = f"resuming at step {start_step}" if start_step else "new run"
    return "\n".join(
        [
            f"bird_jax: {config.model_name} ({params:,} params) on {data_name}: "
            f"{info.num_classes} classes, {train:,} train / {evaluated:,} "
            f"{config.data.eval_split} images at {config.data.image_size} px",
            f"  {exp.num_train_steps:,} steps of batch {config.batch_size} ({epochs:.1f} epochs), "
            f"{precision}, {len(devices)} {devices[0].platform} device(s) in "
            f"{jax.process_count()} process(es)",
            f"  workdir {workdir} ({resume})",
        ]
    )


def starting_point(config: ml_collections.ConfigDict, pretrained) -> str:
    """Where the weights come from and what fine-tuning changes; "" for a run from scratch."""
    parts = []
    if pretrained is not None:
        head = ", new head" if pretrained.reinitialised else ""
        parts.append(f"from {config.init_from} ({pretrained.format}{head})")
    tune = config.finetune
    if tune.layer_decay != 1.0:
        parts.append(f"layer decay {tune.layer_decay}")
    if tune.freeze_layers:
        frozen = "all but the head" if tune.freeze_layers < 0 else f"{tune.freeze_layers}"
        parts.append(f"frozen layers: {frozen}")
    if tune.head_lr_multiplier != 1.0:
        parts.append(f"head lr x{tune.head_lr_multiplier}")
    if tune.batch_norm != "update":
        parts.append(f"BatchNorm {tune.batch_norm}")
    return f"  {'; '.join(parts)}" if parts else ""


def closing(summary: dict[str, Any], best, split: str, workdir) -> str:
    """Best validation top-1, wall time, energy, and where the outputs are."""
    total = summary.get("total", {})
    energy = summary["energy"]
    kwh = total.get("kwh", energy["kwh"])
    measured = total.get("measured", energy["measured"])
    lines = [f"done in {duration(summary['time']['wall_s'])}"]
    if best is not None:
        lines[0] += f": best {split} top-1 {best[1]:.1%} at step {best[0]}"
    lines[0] += f"; {kwh * 1000:.2f} Wh ({'measured' if measured else 'est.'})"
    lines.append(
        f"  outputs in {workdir}: checkpoints/, checkpoints_best/, eval_{split}.json, "
        f"confusion_{split}.png, efficiency.json"
    )
    lines.append(f"  tensorboard --logdir {workdir}")
    return "\n".join(lines)
