"""A file written by bird_jax.export, loaded to name what is in photos as a run's Predictor does.

The file's description (class names, the run's image_size and data.eval_pipeline, format,
quantisation, source run and step) is JSON: inside a TFLite file (its metadata entry
"bird_jax"), beside a StableHLO file (`<file>.json`, which holds nothing jax needs: the
StableHLO file is exactly `Exported.serialize()`, for `jax.export.deserialize`).
"""

import json
import os
import struct
from collections.abc import Callable
from pathlib import Path

import jax
import ml_collections
import numpy as np

from bird_jax import tflite
from bird_jax.classifier import Classifier


def description_path(model: "str | os.PathLike") -> Path:
    """Where a StableHLO file's description lies: `<file>.json`."""
    return Path(f"{os.fspath(model)}.json")


def _stablehlo(path: Path, content: bytes) -> tuple[dict, Callable[[np.ndarray], np.ndarray]]:
    """The description beside a StableHLO file, and its function jitted for this platform."""
    try:
        exported = jax.export.deserialize(bytearray(content))
    except (struct.error, ValueError, IndexError) as error:
        raise ValueError(
            f"{path} is neither a TFLite nor a StableHLO file of bird_jax.export ({error})."
        ) from error
    platform = jax.export.default_export_platform()
    if platform not in exported.platforms:
        raise ValueError(
            f"{path} runs on {', '.join(exported.platforms)}, not on this machine's {platform}: "
            "export the run on this kind of machine."
        )
    described = description_path(path)
    if not described.is_file():
        raise FileNotFoundError(
            f"{described} not found: bird_jax.export writes a StableHLO file's class names and "
            "preprocessing beside it; keep the two files together."
        )
    call = jax.jit(exported.call)
    return json.loads(described.read_text()), lambda batch: np.asarray(call(batch))


class ExportedModel(Classifier):
    """An exported StableHLO or TFLite file (told apart by content), with its description."""

    def __init__(self, path: "str | os.PathLike", num_threads: int | None = None):
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"--model {path}: no such file.")
        content = path.read_bytes()
        if tflite.is_tflite(content):
            self.description = tflite.read_metadata(content)
            if self.description is None:
                raise ValueError(f"{path} is a TFLite file without bird_jax.export's description.")
            self._logits = tflite.Runner(content, num_threads)
        else:
            self.description, self._logits = _stablehlo(path, content)
        self.class_names = self.description["class_names"]
        self.data_config = ml_collections.ConfigDict(self.description["data"])

    def logits(self, batch: np.ndarray) -> np.ndarray:
        return self._logits(batch)
