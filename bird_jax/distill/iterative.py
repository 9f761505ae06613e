"""What DM and DC/DSA share: the synthetic images and their optimiser, split by class over the
devices, and the real images they match against."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from bird_jax.distill.real import RealData
from bird_jax.distill.shards import AXIS, ClassShards
from bird_jax.distill.state_file import restore_state, restore_tree, save_state, save_tree


class DistillState(NamedTuple):
    """Synthetic images [devices, C / devices, ipc, H, W, 3] and their optimiser's state, both
    split by class."""

    synthetic: jax.Array
    opt_state: Any


@dataclasses.dataclass
class ShardedReal:
    """The real images of RealData on the devices, split by class as the synthetic ones."""

    shards: ClassShards
    images: jax.Array
    counts: jax.Array
    class_ids: jax.Array
    weights: jax.Array

    @classmethod
    def from_real(cls, real: RealData, num_devices: int | None = None) -> ShardedReal:
        """`real` split over the first `num_devices` local devices (default: all)."""
        shards = ClassShards(real.num_classes, num_devices or jax.local_device_count())
        # Padding classes (count 0) sample zero images; their weight 0 drops their loss.
        return cls(
            shards,
            shards.split(real.images),
            shards.split(real.counts),
            shards.class_ids(),
            shards.weights(),
        )

    def arrays(self) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
        """(images, counts, class_ids, weights): what every pmapped matching step takes."""
        return self.images, self.counts, self.class_ids, self.weights


class LearnedSet:
    """What every iterative method tells the run about its set: the learned arrays are the
    images themselves (`images`), they stand for their class (`label_vectors`), they train with
    the protocol's step size (`learning_rate`), and the set stores its pixels (`stored_values`
    None). A method that learns something else overrides them (latent DM: codes of a decoder;
    FRePo: label vectors; MTT: the step size)."""

    stored_values: int | None = None

    def images(self, synthetic: np.ndarray) -> np.ndarray:
        """All classes' learned arrays [C, n, ...], merged on the host, as images."""
        return synthetic

    def label_vectors(self, state) -> np.ndarray | None:
        """Learned label vectors [C, n, C]; None: the images stand for their class."""
        return None

    def learning_rate(self, state) -> float | None:
        """The learned step size to train on the set with; None: the protocol's."""
        return None


class MatchingMethod(LearnedSet):
    """What DM and DC/DSA are built from: the network they match with, the real batch per
    class, the Siamese DSA strategy and the optimiser of the synthetic images. A subclass that
    learns codes overrides `render` (learned -> images, inside the loss) beside `images`."""

    def __init__(
        self,
        model: nn.Module,
        image_shape: tuple[int, ...],
        *,
        batch_real: int,
        strategy: str,
        learning_rate: float,
    ):
        self.model, self.image_shape = model, image_shape
        self.batch_real, self.strategy = batch_real, strategy
        self.optimizer = image_optimizer(learning_rate)

    def render(self, synthetic: jax.Array) -> jax.Array:
        """One device's learned arrays [c, n, ...] as images [c, n, H, W, 3]."""
        return synthetic

    def save(self, directory: Path, iteration: int, state: DistillState, shards: ClassShards):
        save_state(directory, iteration, state, shards)

    def restore(self, directory: Path, template: DistillState, shards: ClassShards):
        return restore_state(directory, template, shards)


class OneDeviceMethod(LearnedSet):
    """What the methods whose step couples every class (FRePo, MTT) share: one device, their
    images in DistillState's one-device layout [1, C, ipc, ...], their state saved whole."""

    def save(self, directory: Path, iteration: int, state, shards: ClassShards) -> None:
        save_tree(directory, iteration, state)

    def restore(self, directory: Path, template, shards: ClassShards):
        return restore_tree(directory, template)


def image_optimizer(learning_rate: float) -> optax.GradientTransformation:
    """SGD with momentum 0.5 on the synthetic images, as DC, DSA and DM."""
    return optax.sgd(learning_rate, momentum=0.5)


def image_step(optimizer: optax.GradientTransformation, loss_fn, synthetic, opt_state):
    """One optimiser step on this device's synthetic images against `loss_fn(synthetic)`;
    returns the new images, the optimiser state and the loss summed over the devices."""
    loss, grads = jax.value_and_grad(loss_fn)(synthetic)
    updates, opt_state = optimizer.update(grads, opt_state, synthetic)
    return optax.apply_updates(synthetic, updates), opt_state, jax.lax.psum(loss, AXIS)


def init_state(
    synthetic: np.ndarray, shards: ClassShards, optimizer: optax.GradientTransformation
) -> DistillState:
    """Splits host images [C, ipc, ...] over the devices and starts their optimiser."""
    # Both through pmap, so they are laid out as the steps return them (no second compile).
    return DistillState(
        *jax.pmap(lambda x: (x, optimizer.init(x)), axis_name=AXIS)(shards.split(synthetic))
    )


def fresh_params(model: nn.Module, key: jax.Array, image_shape: tuple[int, ...]) -> Any:
    """A randomly initialised network's parameters (the same on every device for one key)."""
    return model.init(key, jnp.zeros((1, *image_shape), jnp.float32))["params"]
