"""Grain loaders for training and evaluation, with batches prefetched onto the local devices.

Every batch is a dict of arrays shaped [local_devices, per_device_batch, ...], sharded along
axis 0 over a 1-D mesh of jax.local_devices() (the layout jax.pmap expects):
  train: {'image': uint8 [D, B, H, W, 3], 'label': int32 [D, B]}
  eval:  the same plus 'mask': float32 [D, B] (1 real example, 0 padding).
"""

from __future__ import annotations

import collections
import itertools
import json
import math
from collections.abc import Iterator
from typing import Any

import grain
import jax
import numpy as np
from absl import flags

from bird_jax.data.info import DatasetInfo
from bird_jax.data.transforms import eval_transforms, train_transforms

_SEED_MODULUS = 2**32  # Grain wants a non-negative 32-bit seed.


def per_process_batch_size(global_batch_size: int) -> int:
    """global_batch_size // process_count, checked to split evenly over processes and devices."""
    processes, devices = jax.process_count(), jax.local_device_count()
    if global_batch_size <= 0 or global_batch_size % (processes * devices):
        raise ValueError(
            f"Global batch size {global_batch_size} must be a positive multiple of "
            f"{processes} processes x {devices} local devices = {processes * devices}."
        )
    return global_batch_size // processes


def _worker_count(data_config) -> int:
    """data.num_workers, checked: Grain's worker processes need absl flags to be parsed."""
    workers = data_config.num_workers
    if workers > 0 and not flags.FLAGS.is_parsed():
        raise RuntimeError(
            "data.num_workers > 0 starts Grain worker processes, which read absl flags: run under "
            "absl.app.run (with an `if __name__ == '__main__':` guard), or call "
            "absl.flags.FLAGS.mark_as_parsed() first (notebooks, tests)."
        )
    return workers


def read_options(data_config) -> grain.ReadOptions:
    """Grain's reader threads, which decode images: data.read_threads, or -1 for automatic.

    Automatic is Grain's default of 16 threads in-process (num_workers=0), which overlaps
    decoding with the train step, and 0 in worker processes, where threads only contend for the
    GIL: 1.5x the images per CPU-second there (BENCHMARKS.md, input pipeline).
    """
    threads = data_config.get("read_threads", -1)
    if threads < -1:
        raise ValueError(f"data.read_threads must be -1 (automatic) or >= 0, got {threads}.")
    if threads == -1:
        threads = 16 if data_config.num_workers == 0 else 0
    return grain.ReadOptions(num_threads=threads)


def _batch_sharding() -> jax.sharding.NamedSharding:
    mesh = jax.sharding.Mesh(np.array(jax.local_devices()), ("batch",))
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("batch"))


def to_devices(
    host_batch: dict[str, np.ndarray], sharding: jax.sharding.NamedSharding | None = None
) -> dict[str, jax.Array]:
    """[N, ...] host arrays -> [local_devices, N / local_devices, ...] arrays on the devices."""
    sharding = sharding or _batch_sharding()
    devices = sharding.mesh.size
    split = {key: value.reshape(devices, -1, *value.shape[1:]) for key, value in host_batch.items()}
    return jax.device_put(split, sharding)


def _prefetch_to_devices(
    tagged_batches: Iterator[tuple[dict[str, np.ndarray], Any]], depth: int
) -> Iterator[tuple[dict[str, jax.Array], Any]]:
    """Keeps up to `depth` (at least 1) batches in flight to the devices; tags ride along."""
    sharding = _batch_sharding()
    queue = collections.deque()

    def enqueue(count: int) -> None:
        for batch, tag in itertools.islice(tagged_batches, count):
            queue.append((to_devices(batch, sharding), tag))

    enqueue(max(depth, 1))
    while queue:
        yield queue.popleft()
        enqueue(1)


class TrainIterator:
    """Infinite, deterministic, checkpointable stream of training batches on the local devices.

    Each process reads its own shard of the train split (grain ShardByJaxProcess), reshuffled
    every epoch from `seed`. `get_state()` describes the position after the last batch returned
    by `__next__` (not the prefetched ones): Grain's state is recorded alongside every batch.
    Restoring needs the same dataset, seed, process count and data.num_workers.
    """

    def __init__(
        self, info: DatasetInfo, data_config, *, global_batch_size: int, seed: int
    ) -> None:
        batch_size = per_process_batch_size(global_batch_size)
        source = info.source(data_config.train_split)
        shard_options = grain.sharding.ShardByJaxProcess(drop_remainder=True)
        sampler = grain.samplers.IndexSampler(
            num_records=len(source),
            shard_options=shard_options,
            shuffle=True,
            num_epochs=None,
            seed=seed % _SEED_MODULUS,
        )
        loader = grain.DataLoader(
            data_source=source,
            sampler=sampler,
            operations=[
                *train_transforms(data_config),
                grain.transforms.Batch(batch_size, drop_remainder=True),
            ],
            worker_count=_worker_count(data_config),
            read_options=read_options(data_config),
            shard_options=shard_options,
        )
        self._prefetch = data_config.prefetch
        self._grain_iterator = iter(loader)
        self._grain_state = self._grain_iterator.get_state()
        self._batches = self._start()

    def _start(self) -> Iterator[tuple[dict[str, jax.Array], bytes]]:
        states = ((batch, self._grain_iterator.get_state()) for batch in self._grain_iterator)
        return _prefetch_to_devices(states, self._prefetch)

    def __iter__(self) -> TrainIterator:
        return self

    def __next__(self) -> dict[str, jax.Array]:
        batch, self._grain_state = next(self._batches)
        return batch

    def get_state(self) -> dict:
        """JSON-serialisable position after the last batch returned."""
        return {"grain": json.loads(self._grain_state)}

    def set_state(self, state: dict) -> None:
        """Continues from `state` (from get_state); prefetched batches are discarded."""
        self._grain_state = json.dumps(state["grain"]).encode()
        self._grain_iterator.set_state(self._grain_state)
        self._batches = self._start()


def _process_range(num_examples: int) -> tuple[int, int]:
    """The contiguous [start, stop) slice of the examples this process evaluates."""
    index, count = jax.process_index(), jax.process_count()
    return num_examples * index // count, num_examples * (index + 1) // count


def _pad_with_mask(batch: dict[str, np.ndarray], batch_size: int) -> dict[str, np.ndarray]:
    """Pads a (possibly partial) batch to batch_size with zeros and adds its 'mask'."""
    count = len(batch["label"])
    padding = batch_size - count
    padded = {
        key: np.concatenate([value, np.zeros((padding, *value.shape[1:]), value.dtype)])
        if padding
        else value
        for key, value in batch.items()
    }
    padded["mask"] = (np.arange(batch_size) < count).astype(np.float32)
    return padded


def _empty_batch(image_size: int) -> dict[str, np.ndarray]:
    return {
        "image": np.zeros((0, image_size, image_size, 3), np.uint8),
        "label": np.zeros((0,), np.int32),
    }


def _eval_host_batches(source, data_config, batch_size: int) -> Iterator[dict[str, np.ndarray]]:
    """This process's slice of `source`, in order, in batches (the last one may be partial)."""
    start, stop = _process_range(len(source))
    if start == stop:
        return iter(())
    shard = grain.MapDataset.source(source)[start:stop]
    loader = grain.DataLoader(
        data_source=shard,
        sampler=grain.samplers.IndexSampler(num_records=len(shard), num_epochs=1),
        operations=[
            *eval_transforms(data_config),
            grain.transforms.Batch(batch_size, drop_remainder=False),
        ],
        worker_count=_worker_count(data_config),
        read_options=read_options(data_config),
        shard_options=grain.sharding.NoSharding(),
    )
    return iter(loader)


def eval_batches(
    info: DatasetInfo, data_config, split: str, *, global_batch_size: int
) -> Iterator[dict[str, jax.Array]]:
    """One pass over `split`: every example exactly once, padding masked out.

    Every process yields the same number of batches (padding-only batches where its slice is
    shorter), so collective evaluation steps stay in lockstep.
    """
    batch_size = per_process_batch_size(global_batch_size)
    source = info.source(split)
    largest_slice = math.ceil(len(source) / jax.process_count())
    num_batches = math.ceil(largest_slice / batch_size)
    host_batches = itertools.chain(
        _eval_host_batches(source, data_config, batch_size),
        itertools.repeat(_empty_batch(data_config.image_size)),
    )
    padded = (
        (_pad_with_mask(batch, batch_size), None)
        for batch in itertools.islice(host_batches, num_batches)
    )
    for batch, _ in _prefetch_to_devices(padded, data_config.prefetch):
        yield batch
