"""What DM and DC/DSA match, for the classes one device holds.

Both see a shard of classes: synthetic images [c, ipc, H, W, 3], padded real images
[c, M, H, W, 3] with their counts, the classes' global ids and weights (0 for the padding
classes that make the class count divisible by the devices). Every random draw of class k
folds k into the step's key, so the result does not depend on how classes are split.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from bird_jax.distill import dsa
from bird_jax.distill.nets import cross_entropy
from bird_jax.distill.real import sample_per_class


def siamese_pairs(
    key: jax.Array, synthetic, real, counts, class_ids, batch_real: int, strategy: str
) -> tuple[jax.Array, jax.Array]:
    """Each class's real batch of `batch_real` and its synthetic images, both augmented with the
    class's one Siamese DSA draw: ([c, batch_real, ...], [c, ipc, ...])."""
    sample_key, aug_key = jax.random.split(key)
    real_batches = sample_per_class(sample_key, real, counts, class_ids, batch_real)

    def augment_pair(class_id, real_batch, synthetic_batch):
        class_key = jax.random.fold_in(aug_key, class_id)
        return (
            dsa.augment(class_key, real_batch, strategy, shared=True),
            dsa.augment(class_key, synthetic_batch, strategy, shared=True),
        )

    return jax.vmap(augment_pair)(class_ids, real_batches, synthetic)


def mean_embedding_loss(model: nn.Module, params, real_batches, synthetic_batches, weights):
    """DM (Zhao & Bilen 2023): sum over classes of ||mean embed(real) - mean embed(syn)||^2."""

    def class_means(batches):
        flat = batches.reshape(-1, *batches.shape[2:])
        features = model.apply({"params": params}, flat, method="embed")
        return features.reshape(*batches.shape[:2], -1).mean(axis=1)

    real_means = jax.lax.stop_gradient(class_means(real_batches))
    distances = jnp.sum((real_means - class_means(synthetic_batches)) ** 2, axis=-1)
    return jnp.sum(weights * distances)


def gradient_distance(real_grads, synthetic_grads) -> jax.Array:
    """DC's layer-wise distance: sum over output channels of 1 - cosine(real, synthetic) of the
    kernels' gradients (each output's column of [..., out]); biases and norm scales (1-D) are
    skipped, as the papers' 'ours' metric."""
    total = jnp.zeros(())
    for real, synthetic in zip(
        jax.tree.leaves(real_grads), jax.tree.leaves(synthetic_grads), strict=True
    ):
        if real.ndim == 1:
            continue
        real = real.reshape(-1, real.shape[-1])
        synthetic = synthetic.reshape(-1, synthetic.shape[-1])
        norms = jnp.linalg.norm(real, axis=0) * jnp.linalg.norm(synthetic, axis=0)
        total += jnp.sum(1.0 - jnp.sum(real * synthetic, axis=0) / (norms + 1e-6))
    return total


def class_gradients(model: nn.Module, params, images, class_id):
    """The network's parameter gradients of the cross-entropy of `images`, all of `class_id`."""
    labels = jnp.full((images.shape[0],), class_id)
    return jax.grad(lambda p: cross_entropy(model.apply({"params": p}, images), labels))(params)


def gradient_matching_loss(
    model: nn.Module, params, real_batches, synthetic_batches, class_ids, weights
):
    """DC (Zhao et al. 2021): sum over classes of the distance between the network's gradients
    on the class's real batch and on its synthetic images."""

    def class_distance(class_id, real_batch, synthetic_batch):
        real_grads = jax.lax.stop_gradient(class_gradients(model, params, real_batch, class_id))
        return gradient_distance(
            real_grads, class_gradients(model, params, synthetic_batch, class_id)
        )

    # A loop, not vmap: per-class parameter gradients under vmap become grouped convolutions,
    # which XLA:CPU runs 4x slower than the whole DSA iteration of the official code.
    distances = [
        class_distance(class_ids[c], real_batches[c], synthetic_batches[c])
        for c in range(real_batches.shape[0])
    ]
    return jnp.sum(weights * jnp.stack(distances))
