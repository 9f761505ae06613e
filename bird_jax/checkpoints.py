"""Orbax checkpoints of a run: the latest few for resuming, and the best by validation accuracy.

Each checkpoint holds three items: `state` (the TrainState pytree), `data` (the input iterator's
position, JSON) and `meta` (what the run trains: model and classes), which is checked before any
restore so a mismatched workdir fails with a clear message instead of loading garbage. Restores
take shape-only templates (`jax.eval_shape`) and return host NumPy arrays: nothing is initialised
to be overwritten. Evaluation restores only the variables it needs (`restore_variables`).
"""

from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from bird_jax.workdir import Workdir

LATEST = "latest"
BEST = "best"


def _manager(directory, options: ocp.CheckpointManagerOptions) -> ocp.CheckpointManager:
    return ocp.CheckpointManager(
        directory,
        options=options,
        item_handlers={
            "state": ocp.PyTreeCheckpointHandler(),
            "data": ocp.JsonCheckpointHandler(),
            "meta": ocp.JsonCheckpointHandler(),
        },
    )


def _barriers(name: str) -> ocp.options.MultiprocessingOptions:
    """Multi-process saves synchronise at barriers named after the manager: the latest and best
    managers save at the same step, and shared names collide."""
    return ocp.options.MultiprocessingOptions(barrier_sync_key_prefix=name)


def _to_numpy(template: Any) -> Any:
    """Restore arguments that read every leaf of `template` (shapes and dtypes) into NumPy."""
    return jax.tree.map(
        lambda leaf: ocp.ArrayRestoreArgs(restore_type=np.ndarray, dtype=leaf.dtype), template
    )


def _arrays(tree: Any) -> dict[str, tuple[int, ...]]:
    """Leaf name (as Orbax names it: 'opt_state.1.0.mu.head.bias') -> shape."""

    def name(path) -> str:
        return ".".join(
            str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path
        )

    leaves = jax.tree_util.tree_leaves_with_path(tree)
    return {name(path): tuple(getattr(leaf, "shape", ())) for path, leaf in leaves}


def _difference(saved: Any, template: Any, *, partial: bool) -> str:
    """What differs between a checkpoint's arrays and a restore template's, grouped by field:
    'the checkpoint has ema_params (18 arrays) that this run has not'."""
    theirs, ours = _arrays(saved), _arrays(template)

    def fields(names) -> str:
        counts: dict[str, int] = {}
        for name in sorted(names):
            field = name.split(".")[0]
            counts[field] = counts.get(field, 0) + 1
        return ", ".join(f"{field} ({n} array{'s' * (n > 1)})" for field, n in counts.items())

    parts = []
    extra = set() if partial else set(theirs) - set(ours)  # a partial restore reads a subset
    if extra:
        parts.append(f"the checkpoint has {fields(extra)} that this run has not")
    if missing := set(ours) - set(theirs):
        parts.append(f"this run needs {fields(missing)} that the checkpoint has not")
    reshaped = [n for n in sorted(set(ours) & set(theirs)) if ours[n] != theirs[n]]
    if reshaped:
        shapes = ", ".join(f"{n} {theirs[n]} vs {ours[n]}" for n in reshaped[:3])
        parts.append(
            f"shapes differ (checkpoint vs this run): {shapes}" + (", …" * (len(reshaped) > 3))
        )
    return "; ".join(parts)


class IncompatibleCheckpointError(ValueError):
    """The workdir holds a checkpoint of a different model, label set or state structure."""


class RunCheckpoints:
    """The checkpoints of one workdir: `checkpoints/` (latest) and `checkpoints_best/`."""

    def __init__(self, workdir: str | Workdir, *, metadata: dict[str, Any], max_to_keep: int = 3):
        workdir = Workdir(workdir)
        self.metadata = metadata
        self._managers = {
            LATEST: _manager(
                workdir.checkpoints_dir,
                ocp.CheckpointManagerOptions(
                    max_to_keep=max_to_keep, create=True, multiprocessing_options=_barriers(LATEST)
                ),
            ),
            BEST: _manager(
                workdir.best_checkpoints_dir,
                ocp.CheckpointManagerOptions(
                    max_to_keep=1,
                    best_fn=lambda m: m["accuracy"],
                    best_mode="max",
                    create=True,
                    multiprocessing_options=_barriers(BEST),
                ),
            ),
        }

    def step(self, which: str = LATEST) -> int | None:
        """Step of the newest (LATEST) or the best (BEST) checkpoint; None when there is none."""
        manager = self._managers[which]
        return manager.best_step() if which == BEST else manager.latest_step()

    def save(self, step: int, state: Any, data_state: dict | None, *, force: bool = False) -> None:
        """Saves the latest state (asynchronously); `force` also saves off the schedule."""
        self._managers[LATEST].save(step, args=self._save_args(state, data_state), force=force)

    def save_if_best(self, step: int, state: Any, accuracy: float) -> None:
        """Offers the state to the best-checkpoint slot, which keeps the highest accuracy."""
        self._managers[BEST].save(
            step,
            args=self._save_args(state, {}),
            metrics={"accuracy": float(accuracy)},
            force=True,
        )

    def _save_args(self, state: Any, data_state: dict | None) -> ocp.args.Composite:
        return ocp.args.Composite(
            state=ocp.args.PyTreeSave(state),
            data=ocp.args.JsonSave(data_state or {}),
            meta=ocp.args.JsonSave(self.metadata),
        )

    def restore(self, template: Any, which: str = LATEST) -> tuple[Any, dict] | None:
        """(state, data_state) from the chosen checkpoint, shaped like the abstract `template`
        (jax.eval_shape of the initial state); None if there is no checkpoint."""
        restored = self._restore(which, template, partial=False)
        return None if restored is None else (restored["state"], restored["data"] or {})

    def restore_variables(self, template: dict, which: str = LATEST) -> dict | None:
        """Only the TrainState fields named in `template` ({'step', 'params', ...} of abstract
        arrays), e.g. what evaluation needs without the optimizer state; None if no checkpoint."""
        restored = self._restore(which, template, partial=True)
        return None if restored is None else restored["state"]

    def _restore(self, which: str, template: Any, *, partial: bool) -> dict | None:
        step = self.step(which)
        if step is None:
            return None
        manager = self._managers[which]
        meta = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
        self._check_compatible(meta, step, manager.directory)
        # Orbax restores an array of another shape without complaint: compare the names and
        # shapes first, and keep Orbax's own error for anything else.
        difference = _difference(manager.item_metadata(step)["state"], template, partial=partial)
        state_args = ocp.args.PyTreeRestore(
            item=template, restore_args=_to_numpy(template), partial_restore=partial
        )
        try:
            if difference:
                raise ValueError(difference)
            restored = manager.restore(
                step, args=ocp.args.Composite(state=state_args, data=ocp.args.JsonRestore())
            )
        except (ValueError, KeyError, TypeError) as e:
            raise IncompatibleCheckpointError(
                f"Checkpoint {manager.directory}/{step} does not match this run's state "
                f"structure ({difference or e}): a changed ema_decay, optimizer or model "
                "option? Use a new --workdir, or the config that wrote it."
            ) from e
        logging.info("Restored %s checkpoint at step %d from %s.", which, step, manager.directory)
        return restored

    def _check_compatible(self, saved: dict, step: int, directory) -> None:
        differences = [
            f"{key}: checkpoint has {saved.get(key)!r}, this config {value!r}"
            for key, value in self.metadata.items()
            if key in saved and saved[key] != value
        ]
        if differences:
            raise IncompatibleCheckpointError(
                f"The checkpoint at {directory}/{step} was written by a different run ("
                + "; ".join(differences)
                + "). Use a new --workdir, or the config that wrote this one."
            )

    def wait_until_finished(self) -> None:
        for manager in self._managers.values():
            manager.wait_until_finished()

    def close(self) -> None:
        for manager in self._managers.values():
            manager.close()
