"""Grain loaders for training and evaluation, with batches prefetched onto the local devices.

Every batch is a dict of arrays shaped [local_devices, per_device_batch, ...], sharded along
axis 0 over a 1-D mesh of jax.local_devices() (the layout jax.pmap expects):
  train: {'image': uint8 [D, B, H, W, 3], 'label': int32 [D, B]}
  eval:  the same plus 'mask': float32 [D, B] (1 real example, 0 padding).
"""

from __future__ import annotations

import collections
import functools
import itertools
import math
from collections.abc import Iterator

import grain
import jax
import numpy as np
from absl import flags

from bird_jax import devices
from bird_jax.data.info import DatasetInfo
from bird_jax.data.transforms import eval_transforms, train_transforms

_SEED_MODULUS = 2**32  # Grain wants a non-negative 32-bit seed.


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


def _prefetch_to_devices(
    host_batches: Iterator[dict[str, np.ndarray]], depth: int
) -> Iterator[dict[str, jax.Array]]:
    """Keeps up to `depth` (at least 1) batches in flight to the devices."""
    sharding = devices.batch_sharding()
    queue = collections.deque()

    def enqueue(count: int) -> None:
        for batch in itertools.islice(host_batches, count):
            queue.append(devices.to_devices(batch, sharding))

    enqueue(max(depth, 1))
    while queue:
        yield queue.popleft()
        enqueue(1)


class _ReplaceUndecodable(grain.MapDataset):
    """An element whose image failed to decode is replaced by the next decodable one.

    Replacing (rather than dropping) keeps every position of the stream filled, so the global
    batches do not depend on how the stream is split over processes.
    """

    _MAX_TRIES = 1000

    def __len__(self) -> int:
        return len(self._parent)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.slice(index)
        for offset in range(self._MAX_TRIES):
            record = self._parent[index + offset]
            if record["image"] is not None:
                return record
        raise ValueError(
            f"{self._MAX_TRIES} images in a row failed to decode: check the dataset's files."
        )

    def __str__(self) -> str:
        return "ReplaceUndecodable"


class _ProcessBlocks(grain.MapDataset):
    """This process's part of an endless stream cut into global batches, from `first_batch` on.

    Global batch g is elements [g * G, (g + 1) * G) of the parent; process p of P takes the
    G / P of them starting at g * G + p * G / P.
    """

    def __init__(self, parent: grain.MapDataset, global_batch_size: int, first_batch: int):
        super().__init__(parent)
        self._global = global_batch_size
        self._local = devices.check_batch_split(global_batch_size)
        self._offset = jax.process_index() * self._local
        self._first_batch = first_batch

    def __len__(self) -> int:
        return len(self._parent)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.slice(index)
        batch, within = divmod(index, self._local)
        return self._parent[(self._first_batch + batch) * self._global + self._offset + within]

    def __str__(self) -> str:
        return f"ProcessBlocks(global={self._global}, local={self._local}, offset={self._offset})"


def train_host_batches(
    info: DatasetInfo, data_config, *, global_batch_size: int, seed: int, first_batch: int = 0
) -> grain.IterDataset:
    """This process's training batches from global batch `first_batch` on, as host arrays.

    One stream for all processes: the train split shuffled afresh every epoch from `seed`, with
    the host augmentations seeded by each element's position in it. Every process reads only its
    block of each global batch, so the global batch is the same for any number of processes.
    """
    source = info.source(data_config.train_split)
    shuffled = grain.MapDataset.source(source).seed(seed % _SEED_MODULUS).shuffle().repeat()
    stream = _ReplaceUndecodable(shuffled).apply(train_transforms(data_config))
    blocks = _ProcessBlocks(stream, global_batch_size, first_batch)
    batches = blocks.to_iter_dataset(read_options(data_config)).batch(
        devices.check_batch_split(global_batch_size), drop_remainder=True
    )
    workers = _worker_count(data_config)
    if workers:
        batches = batches.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers))
    return batches


class TrainIterator:
    """Infinite, deterministic, checkpointable stream of training batches on the local devices.

    The batches of `train_host_batches`, prefetched to the devices. The position is the number of
    batches taken, so a run can resume on another number of processes or data.num_workers (the
    global batches stay the same); it needs the same dataset and seed.
    """

    def __init__(
        self, info: DatasetInfo, data_config, *, global_batch_size: int, seed: int
    ) -> None:
        self._host_batches = functools.partial(
            train_host_batches,
            info,
            data_config,
            global_batch_size=global_batch_size,
            seed=seed,
        )
        self._prefetch = data_config.prefetch
        self._batches_taken = 0
        self._batches = self._start()

    def _start(self) -> Iterator[dict[str, jax.Array]]:
        host_batches = self._host_batches(first_batch=self._batches_taken)
        return _prefetch_to_devices(iter(host_batches), self._prefetch)

    def __iter__(self) -> TrainIterator:
        return self

    def __next__(self) -> dict[str, jax.Array]:
        batch = next(self._batches)
        self._batches_taken += 1
        return batch

    def get_state(self) -> dict:
        """The position after the last batch returned (prefetched batches do not count)."""
        return {"batches_taken": self._batches_taken}

    def set_state(self, state: dict) -> None:
        """Continues from `state` (from get_state); prefetched batches are discarded."""
        if "batches_taken" not in state:
            raise ValueError(
                f"Unknown input-pipeline state {sorted(state)}: the checkpoint was written by an "
                "older bird_jax. Resume it with that version, or start a new --workdir."
            )
        self._batches_taken = int(state["batches_taken"])
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
    return iter(eval_loader(grain.MapDataset.source(source)[start:stop], data_config, batch_size))


def eval_loader(shard, data_config, batch_size: int) -> grain.DataLoader:
    """Every record of `shard` once, in order, through data.eval_pipeline, in batches of
    `batch_size` (the last one may be partial)."""
    return grain.DataLoader(
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


def eval_batches(
    info: DatasetInfo, data_config, split: str, *, global_batch_size: int
) -> Iterator[dict[str, jax.Array]]:
    """One pass over `split`: every example exactly once, padding masked out.

    Every process yields the same number of batches (padding-only batches where its slice is
    shorter), so collective evaluation steps stay in lockstep.
    """
    batch_size = devices.check_batch_split(global_batch_size)
    source = info.source(split)
    largest_slice = math.ceil(len(source) / jax.process_count())
    num_batches = math.ceil(largest_slice / batch_size)
    host_batches = itertools.chain(
        _eval_host_batches(source, data_config, batch_size),
        itertools.repeat(_empty_batch(data_config.image_size)),
    )
    padded = (
        _pad_with_mask(batch, batch_size) for batch in itertools.islice(host_batches, num_batches)
    )
    yield from _prefetch_to_devices(padded, data_config.prefetch)
