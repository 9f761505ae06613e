"""FRePo, neural feature regression with a pool of online models (Zhou et al., "Dataset
Distillation using Neural Feature Regression", NeurIPS 2022; official JAX code
yongchao97/FRePo, whose settings are the defaults here).

The set is images and learned label vectors (one-hot minus 1/C, scaled by sqrt(10 / C), at the
start). Every iteration draws one of `pool_size` networks, embeds a class-balanced batch of real
images and the synthetic ones (with their mirror images where `flip`), predicts the real
batch's centred one-hot labels by kernel ridge regression from the synthetic features and label
vectors, and takes one LAMB step (lr cosine-decayed to a tenth) on images and labels against
FRePo's regression loss plus its label-margin term. Then the drawn network takes one Adam step
on the synthetic set (the same loss against the label vectors), or starts afresh once it has
taken `max_online_updates`; the pool starts staggered, as the official code.

One device: the kernel couples every class, so the classes are not split over devices.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from bird_jax.distill import krr
from bird_jax.distill.iterative import OneDeviceMethod, ShardedReal
from bird_jax.distill.real import sample_per_class
from bird_jax.efficiency import flops

ONLINE_LEARNING_RATE = 3e-4  # Adam, the online networks (official)


class FRePoState(NamedTuple):
    """Images [1, C, ipc, H, W, 3] (DistillState's one-device layout), label vectors
    [C * ipc, C], the LAMB state of both, and the pool: stacked parameters and Adam states
    [pool, ...] and each network's steps [pool]."""

    synthetic: jax.Array
    labels: jax.Array
    opt_state: Any
    pool_params: Any
    pool_opt_state: Any
    pool_steps: jax.Array


class FeatureRegression(OneDeviceMethod):
    """One FRePo iteration per call (interface of iterative.MatchingMethod)."""

    def __init__(
        self,
        model: nn.Module,
        online_model: nn.Module,
        image_shape: tuple[int, ...],
        *,
        batch_real: int,
        learning_rate: float,
        iterations: int,
        pool_size: int = 10,
        max_online_updates: int = 100,
        flip: bool = True,
        reg: float = 1e-6,
    ):
        del model  # the protocol's network; FRePo's features come from `online_model`
        self.online_model, self.image_shape = online_model, image_shape
        self.batch_real, self.pool_size = batch_real, pool_size
        self.max_online_updates, self.flip, self.reg = max_online_updates, flip, reg
        schedule = optax.cosine_decay_schedule(learning_rate, max(iterations, 1), alpha=0.1)
        self.optimizer = optax.lamb(schedule)
        self.online_optimizer = optax.adam(ONLINE_LEARNING_RATE)
        self.step = jax.jit(self._step)

    # ---------------------------------------------------------------- the state

    def _fresh_network(self, key: jax.Array) -> tuple[Any, Any]:
        dummy = jnp.zeros((1, *self.image_shape), jnp.float32)
        params = self.online_model.init(key, dummy)["params"]
        return params, self.online_optimizer.init(params)

    def init_state(self, key: jax.Array, images: np.ndarray) -> FRePoState:
        """The starting state from images [C, ipc, H, W, 3] (normalised)."""
        num_classes, ipc = images.shape[:2]
        labels = krr.label_vectors(num_classes, ipc)
        params, opt_states = jax.vmap(self._fresh_network)(jax.random.split(key, self.pool_size))
        stagger = jnp.arange(self.pool_size) * (self.max_online_updates // self.pool_size)
        synthetic = jnp.asarray(images)[None]
        return FRePoState(synthetic, labels, self.optimizer.init((synthetic, labels)),
                          params, opt_states, stagger.astype(jnp.int32))  # fmt: skip

    # ---------------------------------------------------------------- one iteration

    def _features(self, params, images: jax.Array) -> jax.Array:
        return self.online_model.apply({"params": params}, images, method="embed")

    def _support(self, synthetic: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
        images = synthetic.reshape(-1, *self.image_shape)
        if self.flip:  # the official code adds the mirror images for colour datasets
            images = jnp.concatenate([images, jnp.flip(images, axis=2)])
            labels = jnp.concatenate([labels, labels])
        return images, labels

    def _online_loss(self, params, images, labels) -> jax.Array:
        return krr.regression_loss(self.online_model.apply({"params": params}, images), labels)

    def _step(self, state: FRePoState, key, real, counts, class_ids):
        pick_key, batch_key, fresh_key = jax.random.split(key, 3)
        index = jax.random.randint(pick_key, (), 0, self.pool_size)
        params = jax.tree.map(lambda leaf: leaf[index], state.pool_params)
        num_classes = class_ids.shape[0]
        real_batch = sample_per_class(batch_key, real, counts, class_ids, self.batch_real)
        real_features = jax.lax.stop_gradient(
            self._features(params, real_batch.reshape(-1, *self.image_shape))
        )
        # The real batch's targets: centred one-hot (the official y_transform), class by class.
        targets = jnp.repeat(jnp.eye(num_classes), self.batch_real, axis=0) - 1.0 / num_classes

        def loss_fn(learned):
            images, labels = self._support(*learned)
            predicted = krr.kernel_regression(
                real_features, self._features(params, images), labels, self.reg
            )
            return krr.regression_loss(predicted, targets) + krr.margin_loss(learned[1])

        learned = (state.synthetic, state.labels)
        loss, grads = jax.value_and_grad(loss_fn)(learned)
        updates, opt_state = self.optimizer.update(grads, state.opt_state, learned)
        synthetic, labels = optax.apply_updates(learned, updates)

        # The drawn network's Adam step on the set, or a fresh network once it has taken
        # max_online_updates. Both are computed and one is kept: XLA:CPU runs convolutions
        # inside a lax.cond branch far slower than outside (58x for this step on cub20).
        images, vectors = jax.lax.stop_gradient(self._support(synthetic, labels))
        opt = jax.tree.map(lambda leaf: leaf[index], state.pool_opt_state)
        grads = jax.grad(self._online_loss)(params, images, vectors)
        updates, opt = self.online_optimizer.update(grads, opt, params)
        trained = (optax.apply_updates(params, updates), opt, state.pool_steps[index] + 1)
        fresh = (*self._fresh_network(fresh_key), jnp.zeros((), jnp.int32))
        restart = state.pool_steps[index] >= self.max_online_updates
        new_params, new_opt, steps = jax.tree.map(
            lambda afresh, online: jnp.where(restart, afresh, online), fresh, trained
        )
        put = lambda pool, leaf: pool.at[index].set(leaf)  # noqa: E731
        return FRePoState(
            synthetic,
            labels,
            opt_state,
            jax.tree.map(put, state.pool_params, new_params),
            jax.tree.map(put, state.pool_opt_state, new_opt),
            state.pool_steps.at[index].set(steps),
        ), loss

    def step_args(self, state: FRePoState, key: jax.Array, real: ShardedReal) -> tuple:
        images, counts, class_ids, _ = real.arrays()
        return state, key, images[0], counts[0], class_ids[0]

    def iteration(self, state: FRePoState, key: jax.Array, real: ShardedReal):
        state, loss = self.step(*self.step_args(state, key, real))
        return state, {"loss": loss}

    def flops_per_iteration(self, state: FRePoState, key: jax.Array, real: ShardedReal):
        """XLA's FLOP count of one iteration (None where unknown)."""
        cost = flops.step_cost(self.step, *self.step_args(state, key, real))
        return cost.total if cost else None

    # ---------------------------------------------------------------- the set and its files

    def label_vectors(self, state: FRePoState) -> np.ndarray:
        """[C, ipc, C] on the host."""
        num_classes, ipc = state.synthetic.shape[1:3]
        return np.asarray(state.labels).reshape(num_classes, ipc, num_classes)
