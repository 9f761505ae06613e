"""Fresh networks trained on a small in-memory set: the evaluation protocol's runs and the
networks DC/DSA train between their matching steps.

`NetTrainer` holds a model, an Optax optimiser whose learning rate lives in its state (so a
schedule can replace it, resetting momentum as the papers' code does), and the per-image DSA of
training (or none). Its jitted step takes a batch of normalised float images; `train_epoch`
shuffles a set into batches of `batch_size` (the last one smaller, as PyTorch's DataLoader) on
the host.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from bird_jax.distill import dsa
from bird_jax.distill.krr import regression_loss


class NetState(NamedTuple):
    params: Any
    batch_stats: Any
    opt_state: Any


def model_variables(params, batch_stats) -> dict:
    """flax variables: the parameters, plus the BatchNorm statistics where the model has any."""
    return {"params": params, **({"batch_stats": batch_stats} if batch_stats else {})}


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def apply_train(model: nn.Module, params, batch_stats, images, key) -> tuple[jax.Array, Any]:
    """Train-mode logits and the updated BatchNorm statistics (if the model has any)."""
    variables = model_variables(params, batch_stats)
    logits, updates = model.apply(
        variables, images, train=True, rngs={"dropout": key}, mutable=["batch_stats"]
    )
    return logits, updates.get("batch_stats", batch_stats)


def sgd(learning_rate: float, momentum: float = 0.0, weight_decay: float = 0.0):
    """PyTorch's SGD (decay added to the gradient before momentum); lr in the state."""

    def make(learning_rate):
        return optax.chain(
            optax.add_decayed_weights(weight_decay),
            optax.sgd(learning_rate, momentum=momentum or None),
        )

    return optax.inject_hyperparams(make)(learning_rate=learning_rate)


@dataclasses.dataclass(frozen=True)
class NetTrainer:
    """Trains `model` with `optimizer` on normalised float images and class labels (or label
    vectors), DSA per image if `dsa_strategy` is not 'none'."""

    model: nn.Module
    optimizer: optax.GradientTransformation
    dsa_strategy: str = "none"

    def init(self, key: jax.Array, image_shape: tuple[int, ...]) -> NetState:
        variables = self.model.init(key, jnp.zeros((1, *image_shape), jnp.float32))
        params = variables["params"]
        return NetState(params, variables.get("batch_stats", {}), self.optimizer.init(params))

    def with_learning_rate(self, state: NetState, learning_rate: float) -> NetState:
        """A fresh optimiser state (momentum reset) at `learning_rate`."""
        opt_state = self.optimizer.init(state.params)
        opt_state.hyperparams["learning_rate"] = jnp.asarray(learning_rate, jnp.float32)
        return state._replace(opt_state=opt_state)

    def loss_and_grads(self, state: NetState, images, labels, key):
        """The batch's loss (after DSA), its gradients and the new statistics: cross-entropy
        for class labels [B], FRePo's regression loss for label vectors [B, C]."""
        aug_key, dropout_key = jax.random.split(key)
        images = dsa.augment(aug_key, images, self.dsa_strategy, shared=False)

        def loss_fn(params):
            logits, batch_stats = apply_train(
                self.model, params, state.batch_stats, images, dropout_key
            )
            if labels.ndim == 2:
                return regression_loss(logits, labels), batch_stats
            return cross_entropy(logits, labels), batch_stats

        (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        return loss, grads, batch_stats

    @functools.partial(jax.jit, static_argnums=0)
    def step(self, state: NetState, images, labels, key) -> tuple[NetState, jax.Array]:
        loss, grads, batch_stats = self.loss_and_grads(state, images, labels, key)
        updates, opt_state = self.optimizer.update(grads, state.opt_state, state.params)
        return NetState(optax.apply_updates(state.params, updates), batch_stats, opt_state), loss

    def train_epoch(
        self, state: NetState, images, labels, key: jax.Array, batch_size: int
    ) -> tuple[NetState, jax.Array]:
        """One shuffled pass in batches of `batch_size`; returns the last batch's loss."""
        order_key, key = jax.random.split(key)
        order = np.asarray(jax.random.permutation(order_key, len(labels)))
        loss = jnp.zeros(())
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            state, loss = self.step(
                state, images[batch], labels[batch], jax.random.fold_in(key, start)
            )
        return state, loss


@functools.partial(jax.jit, static_argnums=0)
def _predict(model: nn.Module, params, batch_stats, images) -> jax.Array:
    variables = model_variables(params, batch_stats)
    return jnp.argmax(model.apply(variables, images), axis=-1)


def accuracy(model: nn.Module, state: NetState, images, labels, batch_size: int = 500) -> float:
    """Top-1 of `state`'s network (eval mode) on float images [N, H, W, 3]."""
    correct = 0
    for start in range(0, len(labels), batch_size):
        predicted = _predict(
            model, state.params, state.batch_stats, images[start : start + batch_size]
        )
        correct += int(jnp.sum(predicted == jnp.asarray(labels[start : start + batch_size])))
    return correct / len(labels)
