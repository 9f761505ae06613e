"""Image-folder source: root/{train,valid,test}/<CLASS>/<image>, the Kaggle "BIRDS 525" layout.

Class names are the train split's sorted folder names; every split uses that one label mapping.
Files are checked cheaply (header only) while listing; unreadable ones are skipped, logged and
counted. Images that fail only on full decode are logged when read and dropped by the pipeline.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from absl import logging

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


def _visible_entries(directory: str) -> list[os.DirEntry]:
    with os.scandir(directory) as entries:
        return sorted((e for e in entries if not e.name.startswith(".")), key=lambda e: e.name)


def _class_names(split_dir: str) -> list[str]:
    names = [entry.name for entry in _visible_entries(split_dir) if entry.is_dir()]
    if not names:
        raise ValueError(f"{split_dir} holds no class folders; expected {split_dir}/<CLASS>/*.jpg.")
    return names


def _list_split(split_dir: str, class_names: list[str]) -> tuple[ImageFolderSource, list[str]]:
    """Lists and header-checks a split's images; returns the source and the skipped files."""
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
        folders = [os.path.join(split_dir, class_names[label]) for label in unreadable]
        raise ValueError(f"Class folders hold no readable images: {folders}.")
    return ImageFolderSource(split_dir, readable_paths, readable_labels), skipped


def load_folder(root: str, train_split: str, eval_split: str) -> DatasetInfo:
    """Lists root/<split>/<CLASS>/ for the train and eval splits and any other standard split."""
    if not os.path.isdir(root):
        raise FileNotFoundError(
            f"Image folder root {root!r} does not exist; "
            f"expected {root}/{{train,valid,test}}/<CLASS>/*.jpg."
        )
    for split in (train_split, eval_split):
        if not os.path.isdir(os.path.join(root, split)):
            present = [entry.name for entry in _visible_entries(root) if entry.is_dir()]
            raise FileNotFoundError(
                f"Split folder {os.path.join(root, split)!r} does not exist (found {present}); "
                f"add it or set config.data.train_split/eval_split to existing split folders."
            )
    names = dict.fromkeys([train_split, eval_split, *STANDARD_SPLITS])
    class_names = _class_names(os.path.join(root, train_split))
    splits, skipped = {}, {}
    for name in names:
        if os.path.isdir(os.path.join(root, name)):
            splits[name], skipped[name] = _list_split(os.path.join(root, name), class_names)
            logging.info(
                "Split %r: %d images, %d skipped.", name, len(splits[name]), len(skipped[name])
            )
    return DatasetInfo(class_names=class_names, splits=splits, skipped_files=skipped)
