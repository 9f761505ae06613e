"""The "distilled" source: a set made by `python -m bird_jax.distill`, as a dataset.

data.root is the distillation's workdir. Its train split is the set (images denormalised to
uint8, so every config's augmentation and normalisation apply as to photos; a ZCA-whitened set
is coloured back to pixels first); every other split
is the real data the set was distilled from (read from the workdir's config.json), so a config
trains on one image per species and is evaluated on the real test photos.
"""

from __future__ import annotations

from pathlib import Path

from bird_jax.data.embedded import ArraySource
from bird_jax.data.info import DatasetInfo


def load_distilled(root: str, train_split: str) -> DatasetInfo:
    """The set at `root` as split `train_split`, beside the real splits of its source."""
    from bird_jax.data.sources import load_splits
    from bird_jax.distill.real import denormalise
    from bird_jax.distill.synthetic import flatten_classes, load_synthetic
    from bird_jax.workdir import Workdir

    if not root:
        raise ValueError("data.source='distilled' needs data.root: a bird_jax.distill workdir.")
    synthetic = load_synthetic(root)
    origin = Workdir(root).read_config().data
    real = load_splits(origin)
    if list(real.class_names) != list(synthetic.class_names):
        raise ValueError(
            f"{root}: the set's classes differ from its source's ({origin.source} "
            f"{origin.name or origin.root}) as it loads now: was the source changed?"
        )
    pixels = denormalise(synthetic.normalised_images(), synthetic.mean, synthetic.std)
    images, labels = flatten_classes(pixels)
    name = f"distilled:{Path(root).name}"
    splits = {split: source for split, source in real.splits.items() if split != train_split}
    splits[train_split] = ArraySource(name, images, labels)
    return DatasetInfo(class_names=list(synthetic.class_names), splits=splits)
