"""Orbax checkpoints of a run: the latest few for resuming, and the best by validation accuracy.

Each checkpoint holds three items: `state` (the TrainState pytree), `data` (the input iterator's
position, JSON) and `meta` (what the run trains: model, classes, image size), which is checked
before any restore so a mismatched workdir fails with a clear message instead of loading garbage.
"""

import os
from typing import Any

import orbax.checkpoint as ocp
from absl import logging

LATEST = "latest"
BEST = "best"


def _manager(directory: str, options: ocp.CheckpointManagerOptions) -> ocp.CheckpointManager:
    return ocp.CheckpointManager(
        directory,
        options=options,
        item_handlers={
            "state": ocp.StandardCheckpointHandler(),
            "data": ocp.JsonCheckpointHandler(),
            "meta": ocp.JsonCheckpointHandler(),
        },
    )


def _barriers(name: str) -> ocp.options.MultiprocessingOptions:
    """Multi-process saves synchronise at barriers named after the manager: the latest and best
    managers save at the same step, and shared names collide."""
    return ocp.options.MultiprocessingOptions(barrier_sync_key_prefix=name)


class IncompatibleCheckpointError(ValueError):
    """The workdir holds a checkpoint of a different model or label set."""


class RunCheckpoints:
    """The checkpoints of one workdir: `checkpoints/` (latest) and `checkpoints_best/`."""

    def __init__(self, workdir: str, *, metadata: dict[str, Any], max_to_keep: int = 3):
        self.metadata = metadata
        self._managers = {
            LATEST: _manager(
                os.path.join(os.path.abspath(workdir), "checkpoints"),
                ocp.CheckpointManagerOptions(
                    max_to_keep=max_to_keep, create=True, multiprocessing_options=_barriers(LATEST)
                ),
            ),
            BEST: _manager(
                os.path.join(os.path.abspath(workdir), "checkpoints_best"),
                ocp.CheckpointManagerOptions(
                    max_to_keep=1,
                    best_fn=lambda m: m["accuracy"],
                    best_mode="max",
                    create=True,
                    multiprocessing_options=_barriers(BEST),
                ),
            ),
        }

    def latest_step(self, which: str = LATEST) -> int | None:
        """Step of the newest (or, for BEST, the best) checkpoint, None when there is none."""
        manager = self._managers[which]
        return manager.best_step() if which == BEST else manager.latest_step()

    def save(self, step: int, state: Any, data_state: dict | None, *, force: bool = False) -> None:
        """Saves the latest state (asynchronously); `force` also saves off the schedule."""
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            data=ocp.args.JsonSave(data_state or {}),
            meta=ocp.args.JsonSave(self.metadata),
        )
        self._managers[LATEST].save(step, args=args, force=force)

    def save_if_best(self, step: int, state: Any, accuracy: float) -> None:
        """Offers the state to the best-checkpoint slot, which keeps the highest accuracy."""
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            data=ocp.args.JsonSave({}),
            meta=ocp.args.JsonSave(self.metadata),
        )
        self._managers[BEST].save(
            step, args=args, metrics={"accuracy": float(accuracy)}, force=True
        )

    def restore(self, state_template: Any, which: str = LATEST) -> tuple[Any, dict] | None:
        """Returns (state, data_state) from the chosen checkpoint, or None if there is none."""
        step = self.latest_step(which)
        if step is None:
            return None
        manager = self._managers[which]
        meta = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
        self._check_compatible(meta, step, manager.directory)
        try:
            restored = manager.restore(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(state_template), data=ocp.args.JsonRestore()
                ),
            )
        except (ValueError, KeyError, TypeError) as e:
            raise IncompatibleCheckpointError(
                f"Checkpoint {manager.directory}/{step} does not match this run's state "
                f"structure ({e}). Use a new --workdir, or the config that wrote it."
            ) from e
        logging.info("Restored %s checkpoint at step %d from %s.", which, step, manager.directory)
        return restored["state"], restored["data"] or {}

    def _check_compatible(self, saved: dict, step: int, directory) -> None:
        differences = [
            f"{key}: checkpoint has {saved.get(key)!r}, this config {value!r}"
            for key, value in self.metadata.items()
            if key in saved and saved[key] != value
        ]
        if differences:
            raise IncompatibleCheckpointError(
                f"The checkpoint at {directory}/{step} was written by a different run:\n  "
                + "\n  ".join(differences)
                + "\nUse a new --workdir, or the config that wrote this one."
            )

    def wait_until_finished(self) -> None:
        for manager in self._managers.values():
            manager.wait_until_finished()

    def close(self) -> None:
        for manager in self._managers.values():
            manager.close()
