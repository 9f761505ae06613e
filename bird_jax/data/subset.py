"""Carving a validation split from train, and keeping a seeded, balanced subset of the classes.

Both only select records: every result is an IndexedSource over the original split, read through
its `labels` (no image is decoded). Classes filter in this order: the explicit list, the minimum
train count, the top k by train count (ties by name); then the train split alone is sampled to
at most images_per_class per class. Kept classes keep the dataset's order and are relabelled
0..K-1, one mapping for every split. Sampling and carving are seeded per class, so a class's
images do not depend on which other classes are kept.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
from absl import logging

from bird_jax.data.info import DatasetInfo


class IndexedSource:
    """The records `indices` of `parent`, with their labels replaced by `labels`."""

    def __init__(self, parent: Any, indices: np.ndarray, labels: np.ndarray):
        if len(indices) != len(labels):
            raise ValueError(f"{len(indices)} indices but {len(labels)} labels.")
        self.parent = parent
        self.indices = np.asarray(indices, dtype=np.int64)
        self.labels = np.asarray(labels, dtype=np.int32)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict:
        return {**self.parent[int(self.indices[index])], "label": self.labels[index]}

    def __repr__(self) -> str:  # Stable across runs: Grain checks it when restoring a state.
        digest = hashlib.sha1(self.indices.tobytes() + self.labels.tobytes()).hexdigest()[:12]
        return f"IndexedSource(parent={self.parent!r}, num_records={len(self)}, digest={digest})"


def select(source: Any, indices: np.ndarray, labels: np.ndarray) -> IndexedSource:
    """Records `indices` of `source` labelled `labels`; a selection of a selection is flattened."""
    if isinstance(source, IndexedSource):
        return IndexedSource(source.parent, source.indices[indices], labels)
    return IndexedSource(source, indices, labels)


_CARVE, _SAMPLE = 0, 1  # Separate random streams for the two uses.


def _class_rng(seed: int, purpose: int, label: int) -> np.random.Generator:
    return np.random.default_rng([seed, purpose, label])


def _check_fraction(fraction: float) -> None:
    if not 0 <= fraction < 1:
        raise ValueError(f"data.valid_from_train must be in [0, 1) (0: off), got {fraction}.")


@dataclasses.dataclass(frozen=True)
class SplitOptions:
    """The carved validation fraction, the classes to keep and how many train images of each."""

    valid_from_train: float = 0.0
    classes: tuple[str, ...] = ()
    min_images_per_class: int = 0
    top_k_classes: int = 0
    images_per_class: int = 0
    seed: int = 0

    def __post_init__(self):
        _check_fraction(self.valid_from_train)
        if isinstance(self.classes, str):
            raise ValueError(
                f"data.classes must be a sequence of class names, got {self.classes!r}."
            )
        for key in ("min_images_per_class", "top_k_classes", "images_per_class"):
            value = getattr(self, key)
            if not isinstance(value, (int, np.integer)) or value < 0:
                raise ValueError(f"data.{key} must be an integer >= 0 (0: off), got {value!r}.")

    @classmethod
    def from_config(cls, data_config) -> SplitOptions:
        """From config.data; keys missing from an older config count as off."""
        classes = data_config.get("classes") or ()
        return cls(
            valid_from_train=data_config.get("valid_from_train", 0.0),
            classes=classes if isinstance(classes, str) else tuple(classes),
            min_images_per_class=data_config.get("min_images_per_class", 0),
            top_k_classes=data_config.get("top_k_classes", 0),
            images_per_class=data_config.get("images_per_class", 0),
            seed=data_config.get("split_seed", 0),
        )

    @property
    def filters_classes(self) -> bool:
        return bool(
            self.classes or self.min_images_per_class or self.top_k_classes or self.images_per_class
        )


def carve_validation(
    info: DatasetInfo, train_split: str, eval_split: str, fraction: float, seed: int
) -> DatasetInfo:
    """Moves a stratified, seeded `fraction` of each class of `train_split` into `eval_split`.

    Every class keeps at least one train image. ValueError if `eval_split` exists already.
    """
    _check_fraction(fraction)
    if eval_split in info.splits:
        raise ValueError(
            f"data.valid_from_train={fraction} would carve split {eval_split!r} from "
            f"{train_split!r}, but the dataset has a split {eval_split!r} already; set "
            f"data.valid_from_train=0 to use it, or name the carved split with data.eval_split."
        )
    train = info.source(train_split)
    labels = train.labels
    held_out = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        count = min(round(fraction * len(members)), len(members) - 1)
        held_out.append(_class_rng(seed, _CARVE, int(label)).choice(members, count, replace=False))
    valid = np.sort(np.concatenate(held_out)).astype(np.int64)
    kept = np.setdiff1d(np.arange(len(train)), valid)
    if not len(valid):
        raise ValueError(
            f"data.valid_from_train={fraction} carves no image from the {len(train)} images of "
            f"split {train_split!r}; raise it."
        )
    logging.info(
        "Carved %d of %d %r images into split %r (fraction %g, split_seed %d).",
        len(valid),
        len(train),
        train_split,
        eval_split,
        fraction,
        seed,
    )
    splits = {
        **info.splits,
        train_split: select(train, kept, labels[kept]),
        eval_split: select(train, valid, labels[valid]),
    }
    return dataclasses.replace(info, splits=splits)


def _named_classes(class_names: Sequence[str], wanted: Sequence[str]) -> np.ndarray:
    """Labels of the `wanted` names, in dataset order; ValueError with close matches if unknown."""
    label_of = {name: label for label, name in enumerate(class_names)}
    unknown = [name for name in wanted if name not in label_of]
    if unknown:
        lowered = {name.lower(): name for name in class_names}
        hints = {
            name: [lowered[m] for m in difflib.get_close_matches(name.lower(), lowered, n=3)]
            for name in unknown
        }
        raise ValueError(
            f"data.classes names unknown classes; close matches: {hints}. The dataset has "
            f"{len(class_names)} classes, e.g. {list(class_names[:5])}."
        )
    return np.array(sorted({label_of[name] for name in wanted}), dtype=np.int64)


def _kept_classes(
    class_names: Sequence[str], counts: np.ndarray, totals: np.ndarray, options: SplitOptions
):
    """Labels `options` keeps. top_k ranks by train images, ties by images in all splits (TFDS
    Stanford Dogs has 100 train images of every breed), then by name."""
    kept = np.arange(len(class_names))
    if options.classes:
        kept = _named_classes(class_names, options.classes)
    if options.min_images_per_class:
        kept = kept[counts[kept] >= options.min_images_per_class]
    if options.top_k_classes:
        largest = sorted(
            kept, key=lambda label: (-counts[label], -totals[label], class_names[label])
        )
        kept = np.sort(np.array(largest[: options.top_k_classes], dtype=np.int64))
    if not len(kept):
        raise ValueError(
            f"No class is left after data.classes={list(options.classes)}, "
            f"data.min_images_per_class={options.min_images_per_class}, "
            f"data.top_k_classes={options.top_k_classes}; the largest class has "
            f"{counts.max(initial=0)} train images."
        )
    return kept


def _sample_per_class(
    indices: np.ndarray, labels: np.ndarray, per_class: int, seed: int
) -> np.ndarray:
    """At most `per_class` of `indices` of each label (labels[i] is the label of indices[i])."""
    chosen = []
    for label in np.unique(labels):
        members = indices[labels == label]
        if len(members) > per_class:
            members = _class_rng(seed, _SAMPLE, int(label)).choice(
                members, per_class, replace=False
            )
        chosen.append(members)
    return np.sort(np.concatenate(chosen))


def subset_classes(info: DatasetInfo, train_split: str, options: SplitOptions) -> DatasetInfo:
    """Keeps the classes `options` selects in every split, relabelled 0..K-1 in dataset order.

    The train split is also sampled to at most options.images_per_class images per class (seeded);
    the other splits keep every image of the kept classes.
    """
    counts = np.bincount(info.source(train_split).labels, minlength=info.num_classes)
    totals = sum(
        np.bincount(info.source(split).labels, minlength=info.num_classes) for split in info.splits
    )
    kept = _kept_classes(info.class_names, counts, totals, options)
    new_label = np.full(info.num_classes, -1, dtype=np.int64)
    new_label[kept] = np.arange(len(kept))
    splits = {}
    for name, source in info.splits.items():
        indices = np.flatnonzero(new_label[source.labels] >= 0)
        if name == train_split and options.images_per_class:
            indices = _sample_per_class(
                indices, source.labels[indices], options.images_per_class, options.seed
            )
        splits[name] = select(source, indices, new_label[source.labels[indices]])
    class_names = [info.class_names[label] for label in kept]
    train_counts = np.bincount(splits[train_split].labels, minlength=len(kept))
    logging.info(
        "Kept %d of %d classes (train images each): %s; split sizes %s.",
        len(kept),
        info.num_classes,
        dict(zip(class_names, train_counts.tolist(), strict=True)),
        {name: len(split) for name, split in splits.items()},
    )
    if options.images_per_class and train_counts.min() < options.images_per_class:
        short = [
            n
            for n, c in zip(class_names, train_counts, strict=True)
            if c < options.images_per_class
        ]
        logging.warning(
            "Fewer than data.images_per_class=%d train images, kept unbalanced: %s.",
            options.images_per_class,
            short,
        )
    return dataclasses.replace(info, class_names=class_names, splits=splits)
