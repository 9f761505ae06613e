"""Image-folder source: root/{train,valid,test}/<CLASS>/<image>, the Kaggle "BIRDS 525" layout.

When root holds the Kaggle birds.csv, it lists the files, splits and class names (no directory
scan). Otherwise class names are the train split's sorted folder names. Either way every split
uses one label mapping. Files are checked cheaply (header only) while listing; unreadable ones are
skipped, logged and counted. Images that fail only on full decode are logged when read and dropped
by the pipeline.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from absl import logging

from bird_jax.data import kaggle
from bird_jax.data.images import IMAGE_EXTENSIONS, check_image_header, is_image_file, load_image
from bird_jax.data.info import DatasetInfo

STANDARD_SPLITS = ("train", "valid", "test")
_HEADER_CHECK_THREADS = 32


class ImageFolderSource:
    """Random-access source decoding image files on read; 'image' is None if decoding fails."""

    def __init__(self, split_dir: str, paths: Sequence[str], labels: Sequence[int]):
        self.split_dir = split_dir
        self.paths = list(paths)
        self.labels = np.asarray(labels, dtype=np.int32)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict:
        try:
            image = load_image(self.paths[index])
        except (ValueError, OSError) as error:
            logging.warning("Skipping unreadable image: %s", error)
            image = None
        return {"image": image, "label": self.labels[index]}

    def __repr__(self) -> str:  # Stable across runs: Grain checks it when restoring a state.
        return f"ImageFolderSource(split_dir={self.split_dir!r}, num_images={len(self)})"


@dataclasses.dataclass(frozen=True)
class FolderListing:
    """Header-checked image files of each split, their labels, and the files skipped."""

    class_names: list[str]
    files: dict[str, tuple[list[str], list[int]]]  # split -> (paths, labels)
    skipped: dict[str, list[str]]


def _visible_entries(directory: str) -> list[os.DirEntry]:
    with os.scandir(directory) as entries:
        return sorted((e for e in entries if not e.name.startswith(".")), key=lambda e: e.name)


def _class_names(split_dir: str) -> list[str]:
    names = [entry.name for entry in _visible_entries(split_dir) if entry.is_dir()]
    if not names:
        raise ValueError(f"{split_dir} holds no class folders; expected {split_dir}/<CLASS>/*.jpg.")
    return names


def _scan_split(split_dir: str, class_names: list[str]) -> tuple[list[str], list[int]]:
    """The image files under split_dir/<CLASS>/ and their labels in `class_names`."""
    label_of = {name: label for label, name in enumerate(class_names)}
    paths, labels = [], []
    for name in _class_names(split_dir):
        if name not in label_of:
            raise ValueError(
                f"Class folder {os.path.join(split_dir, name)!r} has no counterpart in the train "
                f"split; every split must use the train split's classes."
            )
        files = [
            entry.path
            for entry in _visible_entries(os.path.join(split_dir, name))
            if entry.is_file() and is_image_file(entry.name)
        ]
        if not files:
            raise ValueError(
                f"Class folder {os.path.join(split_dir, name)!r} holds no images "
                f"({', '.join(IMAGE_EXTENSIONS)}); remove the folder or add images."
            )
        paths += files
        labels += [label_of[name]] * len(files)
    return paths, labels


def _check_headers(
    split: str, paths: list[str], labels: list[int], class_names: list[str]
) -> tuple[list[str], list[int], list[str]]:
    """Drops files whose header does not read; returns the readable files and the skipped ones."""
    with ThreadPoolExecutor(_HEADER_CHECK_THREADS) as pool:
        problems = list(pool.map(check_image_header, paths))
    readable_paths, readable_labels, skipped = [], [], []
    for path, label, problem in zip(paths, labels, problems, strict=True):
        if problem:
            logging.warning("Skipping unreadable image %s: %s", path, problem)
            skipped.append(path)
        else:
            readable_paths.append(path)
            readable_labels.append(label)
    unreadable = sorted(set(labels) - set(readable_labels))
    if unreadable:
        names = [class_names[label] for label in unreadable]
        raise ValueError(f"Split {split!r}: classes with no readable images: {names}.")
    return readable_paths, readable_labels, skipped


def list_image_folder(root: str, splits: Sequence[str]) -> FolderListing:
    """Lists `splits` (the first is the train split) and any other standard split of root.

    Uses root/birds.csv when present (Kaggle BIRDS 525), else scans root/<split>/<CLASS>/.
    """
    if not os.path.isdir(root):
        raise FileNotFoundError(
            f"Image folder root {root!r} does not exist; "
            f"expected {root}/{{train,valid,test}}/<CLASS>/*.jpg."
        )
    names = list(dict.fromkeys([*splits, *STANDARD_SPLITS]))
    csv_path = os.path.join(root, kaggle.BIRDS_CSV)
    use_csv = os.path.isfile(csv_path)
    if use_csv:
        class_names, files = kaggle.read_birds_csv(root)
        found = sorted(files)
    else:
        found = [entry.name for entry in _visible_entries(root) if entry.is_dir()]
    for split in splits:
        if split not in found:
            raise FileNotFoundError(
                f"Split {split!r} does not exist in {csv_path if use_csv else root} (found "
                f"{found}); add it or set config.data.train_split/eval_split to existing splits."
            )
    if not use_csv:
        class_names = _class_names(os.path.join(root, splits[0]))
        files = {
            name: _scan_split(os.path.join(root, name), class_names)
            for name in names
            if name in found
        }
    listing = FolderListing(class_names, {}, {})
    for split in names:
        if split in files:
            paths, labels, skipped = _check_headers(split, *files[split], class_names)
            listing.files[split] = (paths, labels)
            listing.skipped[split] = skipped
            logging.info("Split %r: %d images, %d skipped.", split, len(paths), len(skipped))
    return listing


def load_folder(root: str, splits: Sequence[str]) -> DatasetInfo:
    """A DatasetInfo of image-folder sources for list_image_folder(root, splits)."""
    listing = list_image_folder(root, splits)
    sources = {
        split: ImageFolderSource(os.path.join(root, split), paths, labels)
        for split, (paths, labels) in listing.files.items()
    }
    return DatasetInfo(listing.class_names, sources, listing.skipped)
