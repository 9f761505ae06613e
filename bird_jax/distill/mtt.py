"""MTT, matching training trajectories (Cazenavette et al., "Dataset Distillation by Matching
Training Trajectories", CVPR 2022; official code GeorgeCazenavette/mtt-distillation).

Every iteration takes a random expert (bird_jax.distill.experts) and a random start epoch below
`max_start_epoch`, runs `syn_steps` SGD steps of the network from the expert's parameters there
on the synthetic images (per-image DSA each step; `batch_syn` of them, default all) with a
learned step size, and compares where they land with the expert `expert_epochs` later:
||theta_N - theta_target||^2 / ||theta_start - theta_target||^2. That loss steps the images (SGD,
momentum 0.5, `lr_img`) and the step size (`lr_lr`), through all N unrolled steps.

Memory (`gradient`): "exact" differentiates through all N steps, each rematerialised
(jax.checkpoint), so the backward pass keeps one parameter vector per step, not the step's
activations; "constant" is TESLA's gradient (Cui et al., ICML 2023): theta_N = theta_start -
lr * sum_i g_i, and each g_i is differentiated in its own images only, not through the earlier
steps' parameters, so a second pass re-runs the steps and accumulates the images' gradient with
memory independent of N (exact for N = 1; peak memory against N: BENCHMARKS.md).
On CPU a ConvNet computes its convolutions as matmuls (ConvNet.patch_matmul): XLA:CPU runs
convolutions inside the steps' scan up to 100x slower than outside. XLA's cost analysis counts a
loop body once, so the FLOPs of an iteration are extrapolated from two and three unrolled steps.
One device: the network couples every class.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from bird_jax.distill import dsa
from bird_jax.distill.experts import ExpertStore
from bird_jax.distill.iterative import OneDeviceMethod, ShardedReal, fresh_params
from bird_jax.distill.nets import cross_entropy
from bird_jax.efficiency import flops
from bird_jax.models import ConvNet


class MTTState(NamedTuple):
    """Images [1, C, ipc, H, W, 3] (DistillState's one-device layout), the learned step size
    and the two optimisers' states."""

    synthetic: jax.Array
    syn_lr: jax.Array
    opt_state: Any
    lr_opt_state: Any


GRADIENTS = ("exact", "constant")


def check_gradient(gradient: str) -> None:
    """ValueError unless `gradient` is one of GRADIENTS."""
    if gradient not in GRADIENTS:
        raise ValueError(f"distill.mtt_gradient must be one of {GRADIENTS}, got {gradient!r}.")


def step_gradient(model: nn.Module, unravel, images, labels, params, key, *, batch_syn: int,
                  strategy: str) -> jax.Array:  # fmt: skip
    """The flat parameter gradient of one unrolled step: cross-entropy on `batch_syn` of the
    images (drawn from `key`), each with its own DSA draw."""
    choice_key, aug_key = jax.random.split(key)
    chosen = jax.random.permutation(choice_key, images.shape[0])[:batch_syn]
    batch = dsa.augment(aug_key, images[chosen], strategy, shared=False)

    def loss(flat):
        return cross_entropy(model.apply({"params": unravel(flat)}, batch), labels[chosen])

    return jax.grad(loss)(params)


def trajectory_loss(
    model: nn.Module,
    unravel,
    images: jax.Array,
    labels: jax.Array,
    syn_lr: jax.Array,
    start: jax.Array,
    target: jax.Array,
    key: jax.Array,
    *,
    syn_steps: int,
    batch_syn: int,
    strategy: str,
    remat: bool = True,
    unroll: int | bool = 1,
) -> jax.Array:
    """MTT's normalised parameter distance after `syn_steps` SGD steps from `start` on the
    images [n, H, W, 3] with class `labels` [n] (differentiable in images and syn_lr); `unroll`
    is lax.scan's."""

    def step(params, step_key):
        gradient = step_gradient(model, unravel, images, labels, params, step_key,
                                 batch_syn=batch_syn, strategy=strategy)  # fmt: skip
        return params - syn_lr * gradient, None

    if remat:
        step = jax.checkpoint(step)
    final, _ = jax.lax.scan(step, start, jax.random.split(key, syn_steps), unroll=unroll)
    return jnp.sum((final - target) ** 2) / jnp.sum((start - target) ** 2)


def constant_memory_gradients(
    model: nn.Module,
    unravel,
    images: jax.Array,
    labels: jax.Array,
    syn_lr: jax.Array,
    start: jax.Array,
    target: jax.Array,
    key: jax.Array,
    *,
    syn_steps: int,
    batch_syn: int,
    strategy: str,
    unroll: int | bool = 1,
) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    """(loss, (images' gradient, syn_lr's gradient)) as TESLA: trajectory_loss's value, with
    each step's gradient g_i differentiated in the images it reads but not in its parameters.
    Two passes over the steps (the second re-runs them), memory independent of syn_steps."""
    keys = jax.random.split(key, syn_steps)
    gradient_at = functools.partial(step_gradient, model, unravel, labels=labels,
                                    batch_syn=batch_syn, strategy=strategy)  # fmt: skip

    def forward(carry, step_key):
        params, summed = carry
        gradient = gradient_at(images, params=params, key=step_key)
        return (params - syn_lr * gradient, summed + gradient), None

    zeros = jnp.zeros_like(start)
    (final, summed), _ = jax.lax.scan(forward, (start, zeros), keys, unroll=unroll)
    scale = jnp.sum((start - target) ** 2)
    loss = jnp.sum((final - target) ** 2) / scale
    toward_final = 2.0 * (final - target) / scale  # d loss / d theta_N

    def again(carry, step_key):
        params, image_grads = carry
        gradient, pullback = jax.vjp(lambda x: gradient_at(x, params=params, key=step_key), images)
        image_grads = image_grads + pullback(-syn_lr * toward_final)[0]
        return (params - syn_lr * gradient, image_grads), None

    (_, image_grads), _ = jax.lax.scan(again, (start, jnp.zeros_like(images)), keys, unroll=unroll)
    return loss, (image_grads, -jnp.dot(toward_final, summed))


def loop_friendly(model: nn.Module) -> nn.Module:
    """`model` as the unrolled steps run it: a ConvNet on CPU computes its convolutions as
    matmuls (same parameters and results); anything else is returned unchanged."""
    if jax.default_backend() == "cpu" and isinstance(model, ConvNet):
        return model.clone(patch_matmul=True)
    return model


class TrajectoryMatching(OneDeviceMethod):
    """One MTT iteration per call (interface of iterative.MatchingMethod)."""

    def __init__(
        self,
        model: nn.Module,
        image_shape: tuple[int, ...],
        *,
        experts: ExpertStore,
        syn_steps: int,
        expert_epochs: int,
        max_start_epoch: int,
        learning_rate: float,
        lr_lr: float,
        lr_teacher: float,
        strategy: str,
        batch_syn: int = 0,
        gradient: str = "exact",
    ):
        self.model, self.image_shape, self.experts = loop_friendly(model), image_shape, experts
        self.syn_steps, self.expert_epochs = syn_steps, expert_epochs
        self.max_start_epoch = min(max_start_epoch, experts.epochs - expert_epochs + 1)
        if self.max_start_epoch < 1:
            raise ValueError(
                f"The experts have {experts.epochs} epochs, fewer than distill.expert_epochs="
                f"{expert_epochs}: train longer experts (distill.expert_train_epochs)."
            )
        check_gradient(gradient)
        self.lr_teacher, self.strategy, self.batch_syn = lr_teacher, strategy, batch_syn
        self.gradient = gradient
        self.optimizer = optax.sgd(learning_rate, momentum=0.5)
        self.lr_optimizer = optax.sgd(lr_lr, momentum=0.5)
        self.unravel = ravel_pytree(fresh_params(model, jax.random.key(0), image_shape))[1]
        self.step = jax.jit(self._step)

    def init_state(self, key: jax.Array, images: np.ndarray) -> MTTState:
        del key
        synthetic = jnp.asarray(images)[None]
        syn_lr = jnp.asarray(self.lr_teacher, jnp.float32)
        return MTTState(synthetic, syn_lr, self.optimizer.init(synthetic),
                        self.lr_optimizer.init(syn_lr))  # fmt: skip

    def _step(self, state: MTTState, start, target, key, syn_steps=None, unroll=1):
        num_classes, ipc = state.synthetic.shape[1:3]
        labels = jnp.repeat(jnp.arange(num_classes), ipc)
        batch_syn = self.batch_syn or num_classes * ipc

        images = state.synthetic.reshape(-1, *self.image_shape)
        settings = dict(syn_steps=syn_steps or self.syn_steps, batch_syn=batch_syn,
                        strategy=self.strategy, unroll=unroll)  # fmt: skip
        gradients = jax.value_and_grad(trajectory_loss, argnums=(2, 4))
        if self.gradient == "constant":
            gradients = constant_memory_gradients
        loss, (image_grads, lr_grad) = gradients(
            self.model, self.unravel, images, labels, state.syn_lr, start, target, key, **settings
        )
        image_grads = image_grads.reshape(state.synthetic.shape)
        updates, opt_state = self.optimizer.update(image_grads, state.opt_state)
        lr_updates, lr_opt_state = self.lr_optimizer.update(lr_grad, state.lr_opt_state)
        synthetic = optax.apply_updates(state.synthetic, updates)
        syn_lr = optax.apply_updates(state.syn_lr, lr_updates)
        return MTTState(synthetic, syn_lr, opt_state, lr_opt_state), loss

    def step_args(self, state: MTTState, key: jax.Array) -> tuple:
        """The jitted step's arguments: a random expert and start epoch drawn from `key`."""
        expert_key, start_key, step_key = jax.random.split(key, 3)
        expert = int(jax.random.randint(expert_key, (), 0, len(self.experts.paths)))
        start_epoch = int(jax.random.randint(start_key, (), 0, self.max_start_epoch))
        start, target = self.experts.pair(expert, start_epoch, self.expert_epochs)
        return state, jnp.asarray(start), jnp.asarray(target), step_key

    def learning_rate(self, state: MTTState) -> float:
        """The learned step size: MTT's evaluation trains on the set with it."""
        return float(state.syn_lr)

    def iteration(self, state: MTTState, key: jax.Array, real: ShardedReal):
        del real  # the experts saw it
        state, loss = self.step(*self.step_args(state, key))
        return state, {"loss": loss, "syn_lr": state.syn_lr}

    def flops_per_iteration(self, state: MTTState, key: jax.Array, real: ShardedReal):
        """Past three steps, the count of three unrolled steps extrapolated linearly by the third
        step's increment: XLA counts a loop body once, and may simplify an unrolled program's
        first two steps differently from the rest."""
        args = self.step_args(state, key)

        def unrolled(steps: int) -> float | None:
            cost = flops.step_cost(
                functools.partial(self._step, syn_steps=steps, unroll=True), *args
            )
            return None if cost is None else cost.total

        if self.syn_steps <= 3:
            return unrolled(self.syn_steps)
        two, three = unrolled(2), unrolled(3)
        if two is None or three is None:
            return None
        return three + (self.syn_steps - 3) * (three - two)
