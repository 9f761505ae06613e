"""DatasetInfo: the class names and the random-access splits every source produces.

Every split is a Grain RandomAccessDataSource (``len`` + ``__getitem__``) whose records are dicts
``{'image': uint8 [H, W, 3], 'label': int32 scalar}``, with a stable ``repr`` (Grain checks it when
restoring a state) and ``labels``: int32 [N], every record's label, read without decoding images
(for class subsetting and carving, bird_jax.data.subset). Image sizes may differ between records.
The image-folder source decodes lazily and yields ``'image': None`` for a file that fails to
decode; training replaces such a record by the next decodable one in its shuffled stream,
evaluation drops it (see data.pipeline).
"""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """Class names, splits by name, and the files skipped as unreadable while listing."""

    class_names: list[str]
    splits: dict[str, Any]  # split name -> grain RandomAccessDataSource
    skipped_files: dict[str, list[str]] = dataclasses.field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def num_skipped(self) -> int:
        """How many files were skipped as unreadable while listing, over all splits."""
        return sum(len(paths) for paths in self.skipped_files.values())

    def source(self, split: str) -> Any:
        """The data source of `split`; ValueError listing the known splits if there is none."""
        if split not in self.splits:
            raise ValueError(f"Unknown split {split!r}; this dataset has {sorted(self.splits)}.")
        return self.splits[split]

    def num_examples(self, split: str) -> int:
        return len(self.source(split))
