"""The resumable state of an iterative distillation: one npz in the workdir, replaced
atomically, read without executing code (allow_pickle=False).

It holds the iteration reached, the synthetic images [C, ipc, H, W, 3] and every leaf of their
optimiser's state (shaped as the images), merged over the devices, so a run resumes on any
number of devices. The random draws of iteration i depend only on (seed, i): a resumed run
makes exactly the set an uninterrupted one makes.
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np

from bird_jax.distill.iterative import DistillState
from bird_jax.distill.shards import ClassShards

STATE_FILE = "distill_state.npz"


def save_state(directory: Path, iteration: int, state: DistillState, shards: ClassShards) -> None:
    leaves = jax.tree.leaves(state.opt_state)
    arrays = {f"opt_{i}": shards.merge(leaf) for i, leaf in enumerate(leaves)}
    partial = directory / (STATE_FILE + ".partial")
    with open(partial, "wb") as file:
        np.savez(
            file, iteration=np.int64(iteration), synthetic=shards.merge(state.synthetic), **arrays
        )
    partial.replace(directory / STATE_FILE)


def saved_iteration(directory: Path) -> int:
    """The iteration the workdir's state file reached (0 when there is none)."""
    path = directory / STATE_FILE
    if not path.is_file():
        return 0
    with np.load(path, allow_pickle=False) as saved:
        return int(saved["iteration"])


def restore_state(directory: Path, template: DistillState, shards: ClassShards):
    """(iteration, state) from the workdir's state file, or None if there is none.

    ValueError if it does not fit `template` (another method, IPC, class count or image size).
    """
    path = directory / STATE_FILE
    if not path.is_file():
        return None
    leaves, treedef = jax.tree.flatten(template.opt_state)
    with np.load(path, allow_pickle=False) as saved:
        synthetic = saved["synthetic"]
        opt_leaves = [saved[f"opt_{i}"] for i in range(len(leaves)) if f"opt_{i}" in saved]
        iteration = int(saved["iteration"])
    expected = shards.merge(template.synthetic).shape
    if synthetic.shape != expected or len(opt_leaves) != len(leaves):
        raise ValueError(
            f"{path} holds synthetic images {synthetic.shape} and {len(opt_leaves)} optimiser "
            f"arrays, this config makes {expected} and {len(leaves)}: resume with the config "
            "that started the run, or use a new --workdir."
        )
    state = DistillState(
        shards.split(synthetic), jax.tree.unflatten(treedef, [shards.split(x) for x in opt_leaves])
    )
    return iteration, state
