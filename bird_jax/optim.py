"""Optimiser from config: AdamW with warmup + cosine, weight-decay mask, clipping, and the EMA.

Gradient accumulation lives in the train step (a scan over micro-batches, one update per step),
so the optimiser itself always sees the gradient of the full effective batch.
"""

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import ml_collections
import optax

from bird_jax import finetune


def total_steps(config: ml_collections.ConfigDict, num_train_examples: int) -> int:
    """Number of optimiser steps: `num_train_steps` if set, else `num_epochs` of the train split."""
    if config.num_train_steps > 0:
        return int(config.num_train_steps)
    return max(1, int(config.num_epochs * steps_per_epoch(config, num_train_examples)))


def steps_per_epoch(config: ml_collections.ConfigDict, num_train_examples: int) -> int:
    """Optimiser steps in one pass over the train split (at least one)."""
    return max(1, num_train_examples // config.batch_size)


def peak_learning_rate(config: ml_collections.ConfigDict) -> float:
    """`lr` scaled linearly by global batch / `base_batch_size`."""
    return config.lr * config.batch_size / config.base_batch_size


def learning_rate_schedule(
    config: ml_collections.ConfigDict, num_train_examples: int
) -> optax.Schedule:
    """Linear warmup from `warmup_lr` to the peak, then cosine decay to `min_lr`."""
    num_steps = total_steps(config, num_train_examples)
    warmup = int(config.warmup_epochs * steps_per_epoch(config, num_train_examples))
    warmup = min(warmup, num_steps - 1)
    return optax.warmup_cosine_decay_schedule(
        init_value=config.warmup_lr,
        peak_value=peak_learning_rate(config),
        warmup_steps=warmup,
        decay_steps=num_steps,
        end_value=config.min_lr,
    )


def weight_decay_mask(params):
    """Decay matrices and conv kernels only: no decay on biases, norm scales or layer scales."""
    return jax.tree.map(lambda p: p.ndim > 1, params)


def create_optimizer(
    config: ml_collections.ConfigDict,
    schedule: optax.Schedule,
    multipliers: Mapping[str, float] | None = None,
) -> optax.GradientTransformation:
    """Global-norm clipping (if `grad_clip_norm` > 0) followed by AdamW with the decay mask.

    `multipliers` (top-level params name -> learning-rate multiplier, `finetune`) scale each
    entry's update; entries with 0 are frozen: no gradient clipping share, no optimizer state.
    """
    adamw = optax.adamw(
        learning_rate=schedule,
        b1=config.b1,
        b2=config.b2,
        weight_decay=config.weight_decay,
        mask=weight_decay_mask,
    )
    tx = adamw
    if config.grad_clip_norm > 0:
        tx = optax.chain(optax.clip_by_global_norm(config.grad_clip_norm), adamw)
    if multipliers is None:
        return tx
    tx = optax.chain(tx, finetune.scale_by_multipliers(multipliers))
    return optax.multi_transform(
        {"trained": tx, "frozen": optax.set_to_zero()}, finetune.trainable_labels(multipliers)
    )


def ema_decay_at(decay: float, step: jax.Array) -> jax.Array:
    """EMA decay with a warm-up, min(decay, (1 + t) / (10 + t)), so early averages track quickly."""
    step = jnp.asarray(step, jnp.float32)
    return jnp.minimum(decay, (1.0 + step) / (10.0 + step))


def update_ema(ema_params, params, decay: float, step: jax.Array):
    """One EMA update of the parameters."""
    d = ema_decay_at(decay, step)
    return jax.tree.map(lambda e, p: d * e + (1.0 - d) * p, ema_params, params)
