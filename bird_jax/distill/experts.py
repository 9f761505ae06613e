"""Expert trajectories for MTT: networks trained on the real images, their parameters kept after
every epoch (Cazenavette et al. 2022; official `buffer.py`: SGD lr 0.01, no momentum or weight
decay, DSA, batch 256, 50 epochs, 100 experts; the learning rate and the batch are settings,
as an epoch of a small dataset is a few steps at 256).

Each expert is one file, `expert_<i>.npy`: float32 [epochs + 1, P], the flattened parameters
(jax.flatten_util order) at the start and after each epoch. Files are written atomically and
read memory-mapped (no pickle), so a trajectory is read two rows at a time; building skips
experts already on disk (resumable) and takes `indices`, so processes or machines can share the
work (`experts_for_process`). `space.json` records the space the experts trained in (the ZCA
ridge, or none), so a run learning in another space does not match their trajectories.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path

import flax.linen as nn
import jax
import numpy as np
from jax.flatten_util import ravel_pytree

from bird_jax import console
from bird_jax.distill import nets, zca
from bird_jax.distill.real import RealData

SPACE_FILE = "space.json"


def expert_path(directory: Path, index: int) -> Path:
    return Path(directory) / f"expert_{index:04d}.npy"


def check_space(directory: Path, zca_reg: float | None) -> None:
    """Records in an expert directory the space its experts train in (`zca_reg`: the ZCA ridge,
    None for the normalised pixels); ValueError if its experts trained in another. Experts
    written before the record existed trained on unwhitened images."""
    directory = Path(directory)
    path = directory / SPACE_FILE
    if not path.is_file():
        directory.mkdir(parents=True, exist_ok=True)
        recorded = None if any(directory.glob("expert_*.npy")) else zca_reg
        partial = path.with_suffix(".partial")
        partial.write_text(json.dumps({"zca_reg": recorded}))
        partial.replace(path)
    recorded = json.loads(path.read_text()).get("zca_reg")
    if recorded != zca_reg:
        raise ValueError(
            f"The experts in {directory} trained on {zca.describe(recorded)}, this run learns "
            f"on {zca.describe(zca_reg)}: set distill.zca/zca_reg as they were, or use other "
            "experts."
        )


def experts_for_process(count: int, process_index: int, process_count: int) -> range:
    """This process's share of `count` experts (every process_count-th, from process_index)."""
    return range(process_index, count, process_count)


def train_trajectory(
    model: nn.Module,
    key: jax.Array,
    real: RealData,
    epochs: int,
    strategy: str,
    batch: int = 256,
    learning_rate: float = 0.01,
    on_epoch: Callable[[int, float], None] | None = None,
) -> np.ndarray:
    """float32 [epochs + 1, P]: the flattened parameters before training and after each epoch
    of SGD at `learning_rate` (`on_epoch(epoch, last batch loss)` after each)."""
    trainer = nets.NetTrainer(model, nets.sgd(learning_rate), strategy)
    init_key, key = jax.random.split(key)
    state = trainer.init(init_key, real.image_shape)
    images, labels = real.flat()
    trajectory = [np.asarray(ravel_pytree(state.params)[0])]
    for epoch in range(epochs):
        state, loss = trainer.train_epoch(state, images, labels, jax.random.fold_in(key, epoch),
                                          batch)  # fmt: skip
        trajectory.append(np.asarray(ravel_pytree(state.params)[0]))
        if on_epoch is not None:
            on_epoch(epoch + 1, float(loss))
    return np.stack(trajectory).astype(np.float32)


def build_experts(
    model: nn.Module,
    key: jax.Array,
    real: RealData,
    directory: Path,
    indices: Iterable[int],
    epochs: int,
    strategy: str,
    batch: int = 256,
    learning_rate: float = 0.01,
) -> list[Path]:
    """Trains and writes the experts of `indices` not yet in `directory` (expert i from
    fold_in(key, i)) with SGD at `learning_rate` in batches of `batch`, a progress line per
    epoch; returns every requested expert's path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    indices = list(indices)
    paths = [expert_path(directory, index) for index in indices]
    missing = [(index, path) for index, path in zip(indices, paths, strict=True)
               if not path.is_file()]  # fmt: skip
    if missing:
        console.say(f"Training {len(missing)} expert(s) of {epochs} epochs into {directory}.")
    progress = console.Progress(0, len(missing) * epochs, unit="epoch")  # of all experts
    progress.started(0)
    for done, (index, path) in enumerate(missing):

        def report(epoch: int, loss: float, index=index, done=done * epochs) -> None:
            line = progress.line(done + epoch, {"loss": loss})
            console.say(f"expert {index}, epoch {epoch}/{epochs}: {line}")

        trajectory = train_trajectory(model, jax.random.fold_in(key, index), real, epochs,
                                      strategy, batch, learning_rate, report)  # fmt: skip
        partial = path.with_suffix(".partial.npy")
        np.save(partial, trajectory)
        partial.replace(path)
    return paths


class ExpertStore:
    """The trajectories in a directory, read memory-mapped."""

    def __init__(self, directory: Path, num_params: int):
        self.paths = sorted(Path(directory).glob("expert_*.npy"))
        if not self.paths:
            raise FileNotFoundError(
                f"No expert trajectories (expert_*.npy) in {directory}: build them first "
                "(distill.experts; they are built there when the run starts)."
            )
        shapes = {np.load(p, mmap_mode="r").shape for p in self.paths}
        if any(len(s) != 2 or s[1] != num_params for s in shapes):
            raise ValueError(
                f"The trajectories in {directory} have shapes {sorted(shapes)}, this config's "
                f"network has {num_params} parameters: use the experts of this network."
            )
        self.epochs = min(s[0] for s in shapes) - 1

    def pair(self, expert: int, start: int, later: int) -> tuple[np.ndarray, np.ndarray]:
        """Parameters [P] of `expert` after epoch `start` and `start + later`."""
        trajectory = np.load(self.paths[expert], mmap_mode="r")
        return np.array(trajectory[start]), np.array(trajectory[start + later])
