"""load_splits: the dataset named by config.data, from one of the sources, carved and subset."""

from __future__ import annotations

from absl import logging

from bird_jax.data import kaggle, subset
from bird_jax.data.embedded import load_digits
from bird_jax.data.folder import load_folder
from bird_jax.data.info import DatasetInfo

SOURCES = ("embedded", "folder", "tfds", "distilled")
EMBEDDED_DATASETS = ("digits",)


def _load_source(data_config, splits: list[str]) -> DatasetInfo:
    """The source's class names and splits: `splits` (which must exist) and any others it has."""
    source = data_config.source
    if source == "embedded":
        if data_config.name not in EMBEDDED_DATASETS:
            raise ValueError(
                f"Unknown embedded dataset {data_config.name!r}; known: {EMBEDDED_DATASETS}."
            )
        return load_digits()
    if source == "folder":
        root = kaggle.resolve_root(data_config.root, data_config.get("kaggle_handle", ""))
        return load_folder(root, splits)
    if source == "tfds":
        from bird_jax.data.tfds_source import load_tfds

        return load_tfds(data_config.name, data_config.data_dir, splits)
    if source == "distilled":
        from bird_jax.data.distilled import load_distilled

        return load_distilled(data_config.root, data_config.train_split)
    raise ValueError(f"Unknown data source {source!r}; choose one of {SOURCES}.")


def load_splits(data_config) -> DatasetInfo:
    """Class names and random-access splits for config.data; fails early with a clear error.

    The configured train_split must exist, and so must eval_split unless data.valid_from_train
    carves it from train. Other splits of the source (e.g. 'test') are included when present.
    Class subsetting (data.classes, min_images_per_class, top_k_classes, images_per_class)
    then applies to every split with one label mapping; see bird_jax.data.subset.
    """
    options = subset.SplitOptions.from_config(data_config)  # Checked before any listing.
    train_split, eval_split = data_config.train_split, data_config.eval_split
    carve = options.valid_from_train > 0
    info = _load_source(data_config, [train_split] if carve else [train_split, eval_split])
    if carve:
        info = subset.carve_validation(
            info, train_split, eval_split, options.valid_from_train, options.seed
        )
    for split in (train_split, eval_split):
        info.source(split)  # Raises listing the splits there are.
    if options.filters_classes:
        info = subset.subset_classes(info, train_split, options)
    logging.info(
        "Dataset %s: %d classes, splits %s, %d files skipped as unreadable.",
        data_config.source,
        info.num_classes,
        {name: len(split) for name, split in info.splits.items()},
        info.num_skipped,
    )
    return info
