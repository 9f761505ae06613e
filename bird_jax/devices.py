"""The device layout in one place: the pmap axis, its mesh, and moving data on and off it.

Every pmapped step (train, eval) maps over axis AXIS of the local devices; batches arrive
sharded along their leading axis over a 1-D mesh of the same devices and name, and the state is
replicated over it. Using one axis name for the mesh and pmap matters: a differently named
layout makes the second call of a pmapped step recompile.
"""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

AXIS = "batch"


def check_batch_split(global_batch_size: int, grad_accum_steps: int = 1) -> int:
    """The per-process batch, after checking that `global_batch_size` splits evenly over the
    processes, their local devices and `grad_accum_steps` micro-batches; ValueError otherwise."""
    processes, devices = jax.process_count(), jax.local_device_count()
    if global_batch_size <= 0 or global_batch_size % (processes * devices):
        raise ValueError(
            f"batch_size={global_batch_size} must be a positive multiple of {processes} "
            f"process(es) x {devices} local device(s) = {processes * devices}."
        )
    per_device = global_batch_size // (processes * devices)
    if per_device % grad_accum_steps:
        raise ValueError(
            f"The per-device batch {per_device} (batch_size / devices) is not divisible by "
            f"grad_accum_steps={grad_accum_steps}."
        )
    return global_batch_size // processes


def batch_sharding() -> jax.sharding.NamedSharding:
    """Leading axis split over the local devices, as pmap expects its inputs."""
    mesh = jax.sharding.Mesh(np.array(jax.local_devices()), (AXIS,))
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(AXIS))


def to_devices(
    host_batch: dict[str, np.ndarray], sharding: jax.sharding.NamedSharding | None = None
) -> dict[str, jax.Array]:
    """[N, ...] host arrays -> [local_devices, N / local_devices, ...] arrays on the devices."""
    sharding = sharding or batch_sharding()
    devices = sharding.mesh.size
    split = {key: value.reshape(devices, -1, *value.shape[1:]) for key, value in host_batch.items()}
    return jax.device_put(split, sharding)


def replicate(tree: Any) -> Any:
    """Copies a pytree to every local device, laid out exactly as the pmapped steps return it."""
    sharding = batch_sharding()

    def copy_to_devices(leaf: Any) -> jax.Array:
        numpy_module = jnp if isinstance(leaf, jax.Array) else np
        return jax.device_put(numpy_module.stack([leaf] * sharding.mesh.size), sharding)

    return jax.tree.map(copy_to_devices, tree)


def unreplicate(tree: Any) -> Any:
    """The first local device's copy of a replicated pytree (still on that device).

    It reads that device's shard rather than indexing the array: in a multi-process run,
    indexing a global array is a computation every process would have to join.
    """

    def first_copy(leaf: Any) -> Any:
        if not isinstance(leaf, jax.Array) or len(leaf.addressable_shards) == 1:
            return leaf[0]
        return leaf.addressable_shards[0].data.squeeze(0)

    return jax.tree.map(first_copy, tree)


def to_host(tree: Any) -> Any:
    """A replicated pytree as host NumPy arrays (one copy)."""
    return jax.device_get(unreplicate(tree))
