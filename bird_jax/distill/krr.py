"""Kernel ridge regression on features, the predictor of FRePo (Zhou et al., "Dataset
Distillation using Neural Feature Regression", NeurIPS 2022).

Given support features F_s [n, d] with label vectors Y_s [n, C] and target features F_t [m, d],
the prediction is K_ts (K_ss + lambda I)^-1 Y_s with the linear kernel K = F F^T of the features
and lambda = reg * trace(K_ss) / n (scale-free, as the official code).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def kernel_regression(
    target_features: jax.Array,
    support_features: jax.Array,
    support_labels: jax.Array,
    reg: float = 1e-6,
) -> jax.Array:
    """Predicted label vectors [m, C] of the targets from the support set (differentiable in
    the support features and labels)."""
    k_ss = support_features @ support_features.T
    n = k_ss.shape[0]
    ridge = jnp.abs(reg) * jnp.trace(k_ss) / n
    weights = jax.scipy.linalg.solve(k_ss + ridge * jnp.eye(n, dtype=k_ss.dtype), support_labels,
                                     assume_a="pos")  # fmt: skip
    return (target_features @ support_features.T) @ weights


def regression_loss(predictions: jax.Array, targets: jax.Array) -> jax.Array:
    """FRePo's loss: mean over rows of 0.5 * ||prediction - target||^2."""
    return jnp.mean(0.5 * jnp.sum((predictions - targets) ** 2, axis=-1))


def label_vectors(num_classes: int, per_class: int) -> jax.Array:
    """FRePo's starting labels, class by class: one-hot minus 1/C, scaled by sqrt(10 / C)."""
    one_hot = jnp.repeat(jnp.eye(num_classes), per_class, axis=0) - 1.0 / num_classes
    return one_hot / jnp.sqrt(num_classes / 10.0)


def margin_loss(labels: jax.Array) -> jax.Array:
    """FRePo's label regulariser: mean of -min(top1 - top2, 1 / C) over the label vectors (it
    keeps each label's largest entry ahead of the rest, up to 1 / C)."""
    top = jax.lax.top_k(labels, 2)[0]
    return -jnp.mean(jnp.minimum(top[:, 0] - top[:, 1], 1.0 / labels.shape[-1]))
