"""A TFDS builder converting a class-per-folder tree (or Kaggle BIRDS 525) once into array_record.

Records are {'image': encoded image, 'label': ClassLabel}. The builder yields encoded bytes, never
arrays, so preparing needs no TensorFlow. Each file is stored as it is when TFDS's decoder reads
it unchanged (an upright RGB or greyscale JPEG or PNG); any other file (CMYK, alpha, palette,
16-bit, EXIF-rotated, other formats) is decoded like the folder source does and stored as PNG.
Files that do not fully decode are skipped and logged. Read the result back with
data.source='tfds', data.name=<name>, data.data_dir=<data_dir>: TFDS restores the builder from
the prepared files, so this module is not needed to read.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

from absl import logging
from PIL import Image

from bird_jax.data.folder import list_image_folder
from bird_jax.data.images import DECODE_ERRORS, load_image

VERSION = "1.0.0"
_NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]*")
_EXIF_ORIENTATION = 0x0112
_ENCODE_THREADS = min(8, os.cpu_count() or 1)
_ENCODE_CHUNK = 256  # Files read ahead at a time.


def stored_image(path: str) -> bytes:
    """The encoded image to store for `path`: its own bytes, or a PNG when TFDS cannot decode it
    as an RGB image unchanged. ValueError naming the file if it does not fully decode."""
    with open(path, "rb") as file:
        data = file.read()
    try:
        with Image.open(io.BytesIO(data)) as image:
            as_is = (
                image.format in ("JPEG", "PNG")
                and image.mode in ("RGB", "L")
                and image.getexif().get(_EXIF_ORIENTATION, 1) == 1
            )
            image.load()  # Full decode: catches truncated files.
    except DECODE_ERRORS as error:
        raise ValueError(f"Cannot read image {path!r}: {error}") from error
    if as_is:
        return data
    buffer = io.BytesIO()
    Image.fromarray(load_image(path)).save(buffer, "PNG")
    return buffer.getvalue()


def _stored_or_none(path: str) -> bytes | None:
    try:
        return stored_image(path)
    except (ValueError, OSError) as error:
        logging.warning("Skipping unreadable image: %s", error)
        return None


def _examples(
    root: str, split: str, paths: Sequence[str], labels: Sequence[int]
) -> Iterator[tuple[str, dict]]:
    """(key, record) for each readable file; files are read and checked on a few threads."""
    skipped = 0
    with ThreadPoolExecutor(_ENCODE_THREADS) as pool:
        for start in range(0, len(paths), _ENCODE_CHUNK):
            chunk = slice(start, start + _ENCODE_CHUNK)
            images = pool.map(_stored_or_none, paths[chunk])
            for path, label, image in zip(paths[chunk], labels[chunk], images, strict=True):
                if image is None:
                    skipped += 1
                else:
                    yield os.path.relpath(path, root), {"image": image, "label": label}
    logging.info("Split %r: %d images stored, %d skipped.", split, len(paths) - skipped, skipped)


def check_name(name: str) -> None:
    """ValueError unless `name` is a snake_case name that no TFDS dataset has."""
    import tensorflow_datasets as tfds

    if not _NAME_PATTERN.fullmatch(name or ""):
        raise ValueError(f"--name must be snake_case ([a-z][a-z0-9_]*), got {name!r}.")
    if name in tfds.list_builders(with_community_datasets=False):
        raise ValueError(f"--name={name!r} is a TFDS dataset already; choose another name.")


def folder_builder(name: str, root: str, data_dir: str | None):
    """An unregistered TFDS GeneratorBasedBuilder `name` over root's splits, as array_record.

    Lists root at once (birds.csv or the folders, as the folder source does; the train split
    defines the classes); `download_and_prepare()` then writes every split found.
    """
    import tensorflow_datasets as tfds

    check_name(name)
    listing = list_image_folder(root, ["train"])
    dataset_name = name

    class FolderImages(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        """Images of a class-per-folder tree."""

        name = dataset_name
        VERSION = tfds.core.Version(VERSION)

        def _info(self) -> tfds.core.DatasetInfo:
            features = tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(None, None, 3)),
                    "label": tfds.features.ClassLabel(names=listing.class_names),
                }
            )
            return tfds.core.DatasetInfo(
                builder=self,
                description=f"Class-per-folder images from {root}, converted by bird_jax.",
                features=features,
                supervised_keys=("image", "label"),
            )

        def _split_generators(self, dl_manager):
            del dl_manager  # Nothing to download.
            return {
                split: self._generate_examples(split, paths, labels)
                for split, (paths, labels) in listing.files.items()
            }

        def _generate_examples(self, split, paths, labels):
            return _examples(root, split, paths, labels)

    return FolderImages(data_dir=data_dir, file_format="array_record")
