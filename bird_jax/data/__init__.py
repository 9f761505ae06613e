"""Input pipeline: dataset sources, Grain transforms, and device-placed train/eval batches."""

from bird_jax.augment import preprocess_for_eval  # data.eval_pipeline on one image
from bird_jax.data.images import load_image
from bird_jax.data.info import DatasetInfo
from bird_jax.data.pipeline import TrainIterator, eval_batches
from bird_jax.data.sources import load_splits

__all__ = [
    "DatasetInfo",
    "TrainIterator",
    "eval_batches",
    "load_image",
    "load_splits",
    "preprocess_for_eval",
]
