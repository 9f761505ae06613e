"""load_splits: the dataset named by config.data, from one of the sources."""

from __future__ import annotations

from absl import logging

from bird_jax.data.embedded import load_digits
from bird_jax.data.folder import load_folder
from bird_jax.data.info import DatasetInfo

SOURCES = ("embedded", "folder", "tfds")
EMBEDDED_DATASETS = ("digits",)


def load_splits(data_config) -> DatasetInfo:
    """Class names and random-access splits for config.data; fails early with a clear error.

    The configured train_split and eval_split must exist; other splits of the source
    (e.g. 'test') are included when present.
    """
    source = data_config.source
    if source == "embedded":
        if data_config.name not in EMBEDDED_DATASETS:
            raise ValueError(
                f"Unknown embedded dataset {data_config.name!r}; known: {EMBEDDED_DATASETS}."
            )
        info = load_digits()
    elif source == "folder":
        info = load_folder(data_config.root, data_config.train_split, data_config.eval_split)
    elif source == "tfds":
        from bird_jax.data.tfds_source import load_tfds

        info = load_tfds(
            data_config.name, data_config.data_dir, data_config.train_split, data_config.eval_split
        )
    else:
        raise ValueError(f"Unknown data source {source!r}; choose one of {SOURCES}.")
    for split in (data_config.train_split, data_config.eval_split):
        info.source(split)  # Raises listing the splits there are.
    logging.info(
        "Dataset %s: %d classes, splits %s, %d files skipped as unreadable.",
        source,
        info.num_classes,
        {name: len(split) for name, split in info.splits.items()},
        info.num_skipped,
    )
    return info
