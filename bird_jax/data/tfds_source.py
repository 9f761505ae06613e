"""TFDS source: a prepared dataset read through tfds random access (array_record, no TensorFlow).

tensorflow_datasets is imported only when this source is used. Nothing is ever downloaded: a
dataset that is not prepared in data_dir fails at once with instructions.
"""

from __future__ import annotations

import numpy as np

from bird_jax.data.images import array_to_rgb
from bird_jax.data.info import DatasetInfo


class TfdsSource:
    """Adapts a tfds data source to records {'image': uint8 [H, W, 3], 'label': int32}."""

    def __init__(self, name: str, split: str, source, image_key: str, label_key: str):
        self.name = name
        self.split = split
        self.source = source
        self.image_key = image_key
        self.label_key = label_key

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
    return (
        f"On a machine with network access run\n"
        f"  tfds build {name} --data_dir={data_dir_root} --file_format=array_record\n"
        f"then copy {data_dir_root} here and set config.data.data_dir to it. "
        f"(tensorflow_datasets needs TensorFlow to build most datasets; reading needs none.)"
    )


def load_tfds(name: str, data_dir: str | None, train_split: str, eval_split: str) -> DatasetInfo:
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
    split_names = dict.fromkeys([train_split, eval_split, *builder.info.splits])
    splits = {}
    for split in split_names:
        try:
            source = builder.as_data_source(split=split)
        except NotImplementedError as error:
            raise ValueError(
                f"TFDS dataset {name!r} in {builder.data_dir} is stored as "
                f"{builder.info.file_format}, which has no random access. "
                + _prepare_instructions(name, data_dir_root)
            ) from error
        splits[split] = TfdsSource(name, split, source, image_key, label_key)
    return DatasetInfo(class_names=list(label_feature.names), splits=splits)
