"""Classes split over the local devices: the layout of every pmapped distillation step.

The class axis [C, ...] becomes [devices, C / devices, ...], padded with weight-0 classes where
C is not a multiple of the device count (their images are zeros, their loss is multiplied by 0
and dropped on merge). Each class keeps its global id, so every random draw is the same on one
device or eight.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import numpy as np

AXIS = "classes"


@dataclasses.dataclass(frozen=True)
class ClassShards:
    num_classes: int
    num_devices: int

    @property
    def per_device(self) -> int:
        return math.ceil(self.num_classes / self.num_devices)

    def sharding(self) -> jax.sharding.NamedSharding:
        """The leading axis over the local devices, named AXIS as the pmapped steps name it."""
        mesh = jax.sharding.Mesh(np.array(jax.local_devices()[: self.num_devices]), (AXIS,))
        return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(AXIS))

    def split(self, array) -> jax.Array:
        """[C, ...] -> [devices, C / devices, ...] on the devices, zero padded."""
        array = np.asarray(array)
        padding = self.per_device * self.num_devices - self.num_classes
        padded = np.concatenate([array, np.zeros((padding, *array.shape[1:]), array.dtype)])
        return jax.device_put(
            padded.reshape(self.num_devices, self.per_device, *array.shape[1:]),
            self.sharding(),
        )

    def merge(self, sharded) -> np.ndarray:
        """[devices, C / devices, ...] -> host [C, ...]."""
        array = np.asarray(jax.device_get(sharded))
        return array.reshape(-1, *array.shape[2:])[: self.num_classes]

    def class_ids(self) -> jax.Array:
        """[devices, C / devices] global class ids (padding: 0)."""
        return self.split(np.arange(self.num_classes, dtype=np.int32))

    def weights(self) -> jax.Array:
        """[devices, C / devices]: 1 for a class, 0 for padding."""
        return self.split(np.ones(self.num_classes, np.float32))
