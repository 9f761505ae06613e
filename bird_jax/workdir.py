"""The run directory: the names of its files, and the one place they are written and read.

  config.json            the run's config (evaluate and predict read it back)
  labels.json            class names in label order (one mapping for every split)
  eval_<split>.json      classification report of the latest evaluation of <split>
  confusion_<split>.csv/.png
  efficiency.json        what the run cost (bird_jax.efficiency)
  checkpoints/           latest checkpoints (bird_jax.checkpoints), checkpoints_best/ the best
Each checkpoint carries `metadata` (model and labels), checked before a restore.

A workdir is a local path (a shared filesystem for several hosts: NFS, Lustre, a gcsfuse mount).
URLs such as gs://bucket/run are refused: the files here are written with local file APIs, and
pathlib would turn the URL into a relative directory named `gs:` on each host's own disk.
"""

import csv
import json
import os
import re
from pathlib import Path
from typing import Any

import ml_collections
import numpy as np
from absl import logging

from bird_jax.scores import checked_confusion


class NotARunError(ValueError):
    """A directory given as a run is not (or not yet) a bird_jax training workdir."""


def file_stem(split: str) -> str:
    """A split name usable in file names: TFDS slices like 'test[:10%]' become 'test_10'."""
    stem = re.sub(r"[^\w.-]+", "_", split).strip("_")
    if not stem:
        raise ValueError(f"split {split!r} gives no usable file name.")
    return stem


def read_json(path: Path) -> dict:
    """The JSON object in `path`; {} (with a warning where it exists) if it cannot be read."""
    if not path.is_file():
        return {}
    try:
        with open(path) as file:
            content = json.load(file)
    except (OSError, ValueError) as error:
        logging.warning("Ignoring %s: %s", path, error)
        return {}
    return content if isinstance(content, dict) else {}


def _write_json(path: Path, content: Any) -> None:
    """Writes through a temporary file, so a reader (or a kill) never sees half a file."""
    partial = path.with_name(path.name + ".tmp")
    with open(partial, "w") as file:
        json.dump(content, file, indent=2)
    partial.replace(path)


def checkpoint_metadata(config: ml_collections.ConfigDict, class_names: list[str]) -> dict:
    """What a checkpoint must agree on to be restored into this config (JSON-normalised)."""
    meta = {
        "model_name": config.model_name,
        "model": config.model.to_dict(),
        "num_classes": len(class_names),
        "class_names": list(class_names),
    }
    return json.loads(json.dumps(meta))


class RemoteWorkdirError(ValueError):
    """A URL (gs://, s3://, ...) was given as the workdir: only local (or mounted) paths work."""


class Workdir:
    """One run directory (created on first write); accepted wherever a path is."""

    def __init__(self, path: "str | os.PathLike"):
        text = os.fspath(path)
        if re.match(r"^[A-Za-z][\w+.-]*://", text):
            raise RemoteWorkdirError(
                f"--workdir {text}: a URL is not supported (bird_jax writes the workdir with local "
                "file APIs); mount the bucket (e.g. gcsfuse) or use a shared filesystem at the "
                "same path on every host and give that path."
            )
        self.path = Path(path)

    def __str__(self) -> str:
        return str(self.path)

    def __fspath__(self) -> str:
        return str(self.path)

    config_file = property(lambda self: self.path / "config.json")
    labels_file = property(lambda self: self.path / "labels.json")
    efficiency_file = property(lambda self: self.path / "efficiency.json")
    checkpoints_dir = property(lambda self: self.path.absolute() / "checkpoints")
    best_checkpoints_dir = property(lambda self: self.path.absolute() / "checkpoints_best")

    def eval_file(self, split: str) -> Path:
        return self.path / f"eval_{file_stem(split)}.json"

    def confusion_files(self, split: str) -> tuple[Path, Path]:
        """(CSV, PNG) of `split`'s confusion matrix."""
        stem = self.path / f"confusion_{file_stem(split)}"
        return stem.with_suffix(".csv"), stem.with_suffix(".png")

    def eval_log_dir(self, split: str) -> Path:
        """TensorBoard events of a standalone evaluation of `split`."""
        return self.path / f"eval_{file_stem(split)}"

    def has_checkpoints(self) -> bool:
        """Whether a run has saved a checkpoint here (it would resume from it)."""
        return self.checkpoints_dir.is_dir() and any(self.checkpoints_dir.iterdir())

    def create(self) -> None:
        """Makes the directory; ValueError (one line) if the path is taken by a file."""
        if self.path.exists() and not self.path.is_dir():
            raise NotARunError(f"--workdir {self.path} is a file: give a directory.")
        self.path.mkdir(parents=True, exist_ok=True)

    def _require(self, path: Path, what: str) -> Path:
        if not self.path.is_dir():
            raise NotARunError(
                f"{self.path} is not a directory: give the --workdir of a bird_jax training run."
            )
        if not path.is_file():
            raise NotARunError(
                f"{path} not found: is {self.path} the --workdir of a bird_jax training run "
                f"({what})?"
            )
        return path

    def write_config(self, config: ml_collections.ConfigDict) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(config.to_json_best_effort(indent=2))

    def read_config(self) -> ml_collections.ConfigDict:
        """The config the run saved (for evaluate and predict)."""
        from bird_jax.augment import upgrade_eval_keys  # configs saved before eval_pipeline

        content = read_json(self._require(self.config_file, "it holds config.json"))
        if not content:
            raise NotARunError(f"{self.config_file} is unreadable or empty.")
        return upgrade_eval_keys(ml_collections.ConfigDict(content))

    def write_labels(self, class_names: list[str]) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        _write_json(self.labels_file, list(class_names))

    def read_labels(self) -> list[str]:
        """The label mapping the run saved."""
        with open(self._require(self.labels_file, "it holds labels.json")) as file:
            return json.load(file)

    def write_evaluation(
        self, split: str, report: dict, confusion: np.ndarray, class_names: list[str], title: str
    ) -> None:
        """eval_<split>.json (the report) and confusion_<split>.csv/.png (headed `title`)."""
        from PIL import Image

        from bird_jax.figures import confusion_matrix_image

        confusion = checked_confusion(confusion, class_names)
        self.path.mkdir(parents=True, exist_ok=True)
        _write_json(self.eval_file(split), {"split": split, **report})
        csv_path, png_path = self.confusion_files(split)
        with open(csv_path, "w", newline="") as file:
            rows = csv.writer(file)
            rows.writerow(["true \\ predicted", *class_names])
            counts = confusion.tolist()
            rows.writerows([name, *row] for name, row in zip(class_names, counts, strict=True))
        image = confusion_matrix_image(confusion, class_names, title)
        Image.fromarray(image).save(png_path)

    def read_evaluation(self, split: str) -> dict:
        """`split`'s evaluation report; {} when the run has none."""
        return read_json(self.eval_file(split))

    def write_efficiency(self, summary: dict) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        _write_json(self.efficiency_file, summary)

    def read_efficiency(self) -> dict:
        """efficiency.json; {} when the run has none (yet)."""
        return read_json(self.efficiency_file)
