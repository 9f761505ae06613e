"""TFDS source: a prepared dataset read through tfds random access (array_record, no TensorFlow).

tensorflow_datasets is imported only when this source is used. Nothing is ever downloaded: a
dataset that is not prepared in data_dir fails at once with instructions.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from bird_jax.data.images import array_to_rgb
from bird_jax.data.info import DatasetInfo

_LABEL_CHUNK = 4096


class TfdsSource:
    """Adapts a tfds data source to records {'image': uint8 [H, W, 3], 'label': int32}.

    `label_source` reads the same records with the image left undecoded; `labels` reads it once,
    when first asked for (subsetting, carving), not for plain training.
    """

    def __init__(self, name: str, split: str, source, label_source, image_key: str, label_key: str):
        self.name = name
        self.split = split
        self.source = source
        self.label_source = label_source
        self.image_key = image_key
        self.label_key = label_key

    @functools.cached_property
    def labels(self) -> np.ndarray:
        """int32 [N]: every record's label, read without decoding the images."""
        labels = np.empty(len(self.label_source), dtype=np.int32)
        for start in range(0, len(labels), _LABEL_CHUNK):
            stop = min(start + _LABEL_CHUNK, len(labels))
            records = self.label_source.__getitems__(range(start, stop))
            labels[start:stop] = [record[self.label_key] for record in records]
        return labels

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        record = self.source[index]
        return {
            "image": array_to_rgb(np.asarray(record[self.image_key], dtype=np.uint8)),
            "label": np.int32(record[self.label_key]),
        }

    def __repr__(self) -> str:  # Stable across runs: Grain checks it when restoring a state.
        return f"TfdsSource(name={self.name!r}, split={self.split!r}, num_records={len(self)})"


def _prepare_instructions(name: str, data_dir_root: str) -> str:
    from bird_jax.data.prepare import DOWNLOADS, MANUAL_FILES

    ours = (
        f"  python -m bird_jax.data.prepare --dataset={name} --data_dir={data_dir_root}\n"
        f"(it says what to download and where if this machine is offline) or\n"
        if name in DOWNLOADS or name in MANUAL_FILES
        else ""
    )
    return (
        f"Prepare it once as array_record:\n{ours}"
        f"  tfds build {name} --data_dir={data_dir_root} --file_format=array_record\n"
        f"and set config.data.data_dir to {data_dir_root}. (TFDS's own builders need TensorFlow "
        f"to prepare; reading needs none.)"
    )


def load_tfds(name: str, data_dir: str | None, splits: Sequence[str]) -> DatasetInfo:
    """Opens every split of the prepared dataset `name`, plus the requested (maybe sliced) ones."""
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as error:
        first_line = str(error).splitlines()[0]
        raise ValueError(f"Unknown TFDS dataset {name!r}: {first_line}") from error
    data_dir_root = str(builder.data_dir_root)
    if not builder.is_prepared():
        raise FileNotFoundError(
            f"TFDS dataset {name!r} is not prepared in {builder.data_dir} and will not be "
            f"downloaded here. " + _prepare_instructions(name, data_dir_root)
        )
    image_key, label_key = builder.info.supervised_keys or ("image", "label")
    label_feature = builder.info.features[label_key]
    if not hasattr(label_feature, "names"):
        raise ValueError(f"TFDS dataset {name!r}: feature {label_key!r} is not a ClassLabel.")
    sources = {}
    for split in dict.fromkeys([*splits, *builder.info.splits]):
        try:
            source = builder.as_data_source(split=split)
            label_source = builder.as_data_source(
                split=split, decoders={image_key: tfds.decode.SkipDecoding()}
            )
        except NotImplementedError as error:
            raise ValueError(
                f"TFDS dataset {name!r} in {builder.data_dir} is stored as "
                f"{builder.info.file_format}, which has no random access. "
                + _prepare_instructions(name, data_dir_root)
            ) from error
        sources[split] = TfdsSource(name, split, source, label_source, image_key, label_key)
    return DatasetInfo(class_names=list(label_feature.names), splits=sources)
