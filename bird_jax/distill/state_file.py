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

from bird_jax.distill.shards import ClassShards

STATE_FILE = "distill_state.npz"


def _write(directory: Path, iteration: int, arrays: dict[str, np.ndarray]) -> None:
    """The state file with `iteration` and `arrays`, replaced atomically."""
    partial = directory / (STATE_FILE + ".partial")
    with open(partial, "wb") as file:
        np.savez(file, iteration=np.int64(iteration), **arrays)
    partial.replace(directory / STATE_FILE)


def save_state(directory: Path, iteration: int, state, shards: ClassShards) -> None:
    """A DistillState (synthetic, opt_state), merged over the devices."""
    leaves = jax.tree.leaves(state.opt_state)
    arrays = {f"opt_{i}": shards.merge(leaf) for i, leaf in enumerate(leaves)}
    _write(directory, iteration, {"synthetic": shards.merge(state.synthetic), **arrays})


def save_tree(directory: Path, iteration: int, tree) -> None:
    """The state of a one-device method: every leaf of `tree` as it is (no class split)."""
    leaves = jax.tree.leaves(tree)
    _write(directory, iteration, {f"leaf_{i}": np.asarray(leaf) for i, leaf in enumerate(leaves)})


def restore_tree(directory: Path, template):
    """(iteration, tree shaped as `template`) from save_tree's file, or None if there is none;
    ValueError if its leaves do not fit the template."""
    path = directory / STATE_FILE
    if not path.is_file():
        return None
    leaves, treedef = jax.tree.flatten(template)
    with np.load(path, allow_pickle=False) as saved:
        restored = [saved[f"leaf_{i}"] for i in range(len(leaves)) if f"leaf_{i}" in saved]
        iteration = int(saved["iteration"])
    shapes = [np.shape(leaf) for leaf in leaves]
    if [x.shape for x in restored] != shapes:
        raise ValueError(
            f"{path} does not hold this config's state ({len(restored)} arrays for "
            f"{len(leaves)}, or other shapes): resume with the config that started the run, or "
            "use a new --workdir."
        )
    return iteration, jax.tree.unflatten(treedef, [jax.numpy.asarray(x) for x in restored])


def saved_iteration(directory: Path) -> int:
    """The iteration the workdir's state file reached (0 when there is none)."""
    path = directory / STATE_FILE
    if not path.is_file():
        return 0
    with np.load(path, allow_pickle=False) as saved:
        return int(saved["iteration"])


def restore_state(directory: Path, template, shards: ClassShards):
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
    state = type(template)(
        shards.split(synthetic), jax.tree.unflatten(treedef, [shards.split(x) for x in opt_leaves])
    )
    return iteration, state
