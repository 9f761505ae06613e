"""Coresets: real images selected per class, the baselines of every distillation table.

random: distinct images drawn uniformly per class. herding (Welling 2009, as iCaRL): greedily
add the image that keeps the mean embedding of the selection closest to the class mean.
k-center (Sener & Savarese 2018): from a random first image, greedily add the image farthest
from the selection. Embeddings come from a ConvNet, randomly initialised or first trained on the
real images for `embedding_epochs` epochs (SGD, the evaluation protocol's optimiser).
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from bird_jax.distill import nets
from bird_jax.distill.real import RealData, sample_per_class

CORESETS = ("random", "herding", "kcenter")


def herding(features: np.ndarray, k: int) -> np.ndarray:
    """Indices of k rows of features [n, F] whose running mean tracks the mean of all rows."""
    target = features.mean(axis=0)
    chosen: list[int] = []
    total = np.zeros_like(target)
    available = np.ones(len(features), bool)
    for size in range(1, k + 1):
        distances = np.linalg.norm(target - (total + features) / size, axis=1)
        index = int(np.argmin(np.where(available, distances, np.inf)))
        chosen.append(index)
        total += features[index]
        available[index] = False
    return np.asarray(chosen)


def k_center(features: np.ndarray, k: int, first: int) -> np.ndarray:
    """Indices of k rows: `first`, then each time the row farthest from those chosen."""
    chosen = [first]
    nearest = np.linalg.norm(features - features[first], axis=1)
    for _ in range(k - 1):
        index = int(np.argmax(nearest))
        chosen.append(index)
        nearest = np.minimum(nearest, np.linalg.norm(features - features[index], axis=1))
    return np.asarray(chosen)


@functools.partial(jax.jit, static_argnums=0)
def _embed(model: nn.Module, params, batch_stats, images) -> jax.Array:
    return model.apply(nets.model_variables(params, batch_stats), images, method="embed")


def embed_all(trainer: nets.NetTrainer, state: nets.NetState, images, batch: int = 500):
    """Embeddings [N, F] of images [N, H, W, 3] in eval mode (compiled once per batch shape,
    not once per call: select() calls it for every class)."""
    return np.concatenate(
        [
            np.asarray(
                _embed(trainer.model, state.params, state.batch_stats, images[i : i + batch])
            )
            for i in range(0, len(images), batch)
        ]
    )


def embedding_network(
    key: jax.Array, trainer: nets.NetTrainer, real: RealData, epochs: int, batch_size: int = 256
) -> nets.NetState:
    """A network initialised from `key` and trained `epochs` epochs on all the real images."""
    init_key, train_key = jax.random.split(key)
    state = trainer.init(init_key, real.image_shape)
    images, labels = real.flat()
    for epoch in range(epochs):
        state, _ = trainer.train_epoch(
            state, images, labels, jax.random.fold_in(train_key, epoch), batch_size
        )
    return state


def select(
    method: str,
    key: jax.Array,
    real: RealData,
    ipc: int,
    embed: callable | None = None,
) -> np.ndarray:
    """[C, ipc, H, W, 3] real images chosen by `method`; `embed` maps images to features
    (needed by herding and k-center)."""
    if method not in CORESETS:
        raise ValueError(f"Unknown coreset {method!r}; known: {CORESETS}.")
    if method == "random":
        class_ids = jnp.arange(real.num_classes)
        return np.asarray(sample_per_class(key, real.images, real.counts, class_ids, ipc))
    chosen = []
    for c, count in enumerate(real.counts):
        images = real.images[c, :count]
        features = embed(images)
        if method == "herding":
            indices = herding(features, ipc)
        else:
            first = int(jax.random.randint(jax.random.fold_in(key, c), (), 0, count))
            indices = k_center(features, ipc, first)
        chosen.append(images[indices])
    return np.stack(chosen)
