"""Training state and the one per-device train step that every model shares.

`train_step` is a pure function of (state, batch) written for `jax.pmap(..., axis_name="batch")`:
gradients, metrics and BatchNorm statistics are averaged across devices with named-axis
collectives, so the same function could move to `shard_map` later.
"""

import functools
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax

from bird_jax import optim
from bird_jax.augment.mixup import smooth_one_hot
from bird_jax.devices import AXIS
from bird_jax.metrics import TrainMetrics, psum_metrics
from bird_jax.models.common import frozen_statistics
from bird_jax.precision import DynamicLossScale, all_finite

# (uint8 images, soft targets, key, axis_name) -> (normalised images, targets); see DeviceAugment.
Augment = Callable[..., tuple[jax.Array, jax.Array]]


class TrainState(flax.struct.PyTreeNode):
    """Everything a run needs to continue: a plain pytree, checkpointed as a whole."""

    step: jax.Array
    params: Any
    batch_stats: Any  # {} for models without BatchNorm
    opt_state: Any
    ema_params: Any  # {} when the EMA is off
    loss_scale: DynamicLossScale
    rng: jax.Array  # raw uint32 key: fold_in(step) gives each step its randomness

    def eval_variables(self, use_ema: bool) -> dict:
        """Variables for `model.apply` in evaluation (see `eval_variables`)."""
        return eval_variables(self.params, self.batch_stats, self.ema_params, use_ema)


def eval_variables(params: Any, batch_stats: Any, ema_params: Any, use_ema: bool) -> dict:
    """Variables for `model.apply` in evaluation: EMA or raw params, plus BatchNorm stats."""
    if use_ema and not ema_params:
        raise ValueError("eval_with_ema=True needs ema_decay > 0 during training.")
    variables = {"params": ema_params if use_ema else params}
    if batch_stats:
        variables["batch_stats"] = batch_stats
    return variables


def create_train_state(
    model: nn.Module,
    tx: optax.GradientTransformation,
    *,
    image_size: int,
    seed: int,
    use_ema: bool,
    pretrained: Callable[[dict], dict] | None = None,
) -> TrainState:
    """Initialises parameters (float32), optimizer state, EMA and RNG; `pretrained` replaces
    the initial variables with loaded ones (`Conversion.apply_to`) before the optimizer and the
    EMA start from them."""
    init_rng, state_rng = jax.random.split(jax.random.PRNGKey(seed))
    dummy = jnp.zeros((1, image_size, image_size, 3), jnp.float32)
    variables = jax.jit(functools.partial(model.init, train=False))(
        {"params": init_rng, "dropout": init_rng}, dummy
    )
    if pretrained is not None:
        variables = jax.tree.map(jnp.asarray, pretrained(variables))
    params = variables["params"]
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        batch_stats=variables.get("batch_stats", {}),
        opt_state=tx.init(params),
        ema_params=jax.tree.map(jnp.copy, params) if use_ema else {},
        loss_scale=DynamicLossScale.create(),
        rng=state_rng,
    )


def unrolls_accumulation_by_default() -> bool:
    """Whether train_step unrolls its micro-batch loop when not told: on CPU only."""
    return jax.default_backend() == "cpu"


def _split_micro_batches(x: jax.Array, num: int) -> jax.Array:
    """[B, ...] -> [num, B / num, ...]; the batch split was checked (devices.check_batch_split)."""
    return x.reshape(num, x.shape[0] // num, *x.shape[1:])


def train_step(
    state: TrainState,
    batch: dict[str, jax.Array],
    *,
    model: nn.Module,
    tx: optax.GradientTransformation,
    schedule: optax.Schedule,
    augment: Augment,
    num_classes: int,
    grad_accum_steps: int = 1,
    label_smoothing: float = 0.0,
    ema_decay: float = 0.0,
    loss_scaling: bool = False,
    frozen_batch_norm: bool = False,
    unroll_accumulation: bool | None = None,
) -> tuple[TrainState, TrainMetrics]:
    """One optimiser update from one per-device batch (split into `grad_accum_steps` parts).

    `batch['image']` is uint8; `augment` applies the device augmentations (keyed identically on
    every device) and normalises, and turns the smoothed one-hot labels into (mixed) soft targets.
    With accumulation the micro-batches run in a `lax.scan`, so memory is that of one
    micro-batch. On CPU the scan is unrolled: XLA:CPU runs convolutions inside a loop body several
    times slower (jax-ml/jax#12868), and host memory is rarely the limit there.
    `unroll_accumulation` overrides that choice (None: unrolled on CPU only), e.g. for tests of
    the rolled loop that GPUs and TPUs run. `frozen_batch_norm` normalises with the running
    statistics and keeps them (fine-tuning with config.finetune.batch_norm = "frozen").
    """
    augment_rng, dropout_rng = jax.random.split(jax.random.fold_in(state.rng, state.step))
    rng = jax.random.fold_in(dropout_rng, jax.lax.axis_index(AXIS))
    targets = smooth_one_hot(batch["label"], num_classes, label_smoothing)
    images, targets = augment(batch["image"], targets, augment_rng, axis_name=AXIS)

    def loss_fn(params, batch_stats, images, targets, dropout_rng):
        variables = (
            {"params": params, "batch_stats": batch_stats} if batch_stats else {"params": params}
        )
        with nn.intercept_methods(frozen_statistics) if frozen_batch_norm else nullcontext():
            logits, updates = model.apply(
                variables,
                images,
                train=True,
                rngs={"dropout": dropout_rng},
                mutable=["batch_stats"],
            )
        loss = optax.softmax_cross_entropy(logits, targets).mean()
        scaled = state.loss_scale.scale_loss(loss) if loss_scaling else loss
        return scaled, (loss, logits, updates.get("batch_stats", batch_stats))

    grad_fn = jax.grad(loss_fn, has_aux=True)

    def accumulate(carry, micro_batch):
        grad_sum, batch_stats = carry
        images, targets, dropout_rng = micro_batch
        grads, (loss, logits, batch_stats) = grad_fn(
            state.params, batch_stats, images, targets, dropout_rng
        )
        return (jax.tree.map(jnp.add, grad_sum, grads), batch_stats), (loss, logits)

    if grad_accum_steps == 1:
        # No loop: XLA:CPU runs convolutions inside a loop body many times slower
        # (jax-ml/jax#12868), and a plain batch needs none.
        grads, (loss, logits, batch_stats) = grad_fn(
            state.params, state.batch_stats, images, targets, rng
        )
        losses = loss[None]
    else:
        micro_batches = (
            _split_micro_batches(images, grad_accum_steps),
            _split_micro_batches(targets, grad_accum_steps),
            jax.random.split(rng, grad_accum_steps),
        )
        zeros = jax.tree.map(jnp.zeros_like, state.params)
        if unroll_accumulation is None:
            unroll_accumulation = unrolls_accumulation_by_default()
        (grads, batch_stats), (losses, logits) = jax.lax.scan(
            accumulate,
            (zeros, state.batch_stats),
            micro_batches,
            unroll=unroll_accumulation,
        )
        grads = jax.tree.map(lambda g: g / grad_accum_steps, grads)
    grads = jax.lax.pmean(grads, AXIS)
    batch_stats = jax.lax.pmean(batch_stats, AXIS)
    if loss_scaling:
        grads = state.loss_scale.unscale(grads)

    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    loss_scale = state.loss_scale
    if loss_scaling:  # skip the update (but count the step) when float16 gradients overflowed
        finite = all_finite(grads)
        keep_new = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
        params = keep_new(params, state.params)
        opt_state = keep_new(opt_state, state.opt_state)
        loss_scale = loss_scale.adjust(finite)
    ema_params = state.ema_params
    if ema_decay > 0:
        ema_params = optim.update_ema(ema_params, params, ema_decay, state.step)

    new_state = state.replace(
        step=state.step + 1,
        params=params,
        batch_stats=batch_stats,
        opt_state=opt_state,
        ema_params=ema_params,
        loss_scale=loss_scale,
    )
    metrics = TrainMetrics.single_from_model_output(
        loss=losses,
        logits=logits.reshape(-1, logits.shape[-1]).astype(jnp.float32),
        labels=batch["label"],
        learning_rate=schedule(state.step),
        grad_norm=optax.tree.norm(grads),
    )
    metrics = psum_metrics(metrics, AXIS)
    return new_state, metrics


def make_train_step(**static_kwargs: Any) -> Callable:
    """The pmapped train step; the state buffers are donated."""
    return jax.pmap(
        functools.partial(train_step, **static_kwargs), axis_name=AXIS, donate_argnums=(0,)
    )
