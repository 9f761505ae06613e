"""CLU metric writers and periodic actions that work without TensorFlow.

`clu.metric_writers` (and `clu.periodic_actions`, which imports it) loads
`clu.metric_writers.summary_writer` at import time, and that module imports TensorFlow. When
TensorFlow cannot be imported, this module registers a stand-in module under that name whose
`SummaryWriter` is `TensorBoardXWriter` below, before CLU is imported. Everything else in CLU
(LoggingWriter, AsyncMultiWriter, create_default_writer, ReportProgress, ...) is used unchanged.
When TensorFlow imports fine, CLU is left alone and uses its own TensorFlow writer.

Import CLU's writer API through this module:

    from bird_jax.writers import create_writer, metric_writers, periodic_actions
"""

import importlib.util
import sys
import types
from collections.abc import Mapping
from typing import Any

import numpy as np
import tensorboardX
from absl import logging
from clu.internal import utils as clu_utils
from tensorboardX import summary as tbx_summary

_CLU_SUMMARY_WRITER = "clu.metric_writers.summary_writer"
_DEFAULT_HISTOGRAM_BUCKETS = 30  # tf.summary.histogram's default


def _tensorflow_importable() -> bool:
    """Whether TensorFlow imports; it is only imported when installed (CLU would import it next)."""
    if importlib.util.find_spec("tensorflow") is None:
        return False
    try:
        import tensorflow  # noqa: F401
    except Exception as error:  # broken installs fail in many ways, e.g. a NumPy ABI mismatch
        logging.warning(
            "TensorFlow is installed but fails to import (%r); using tensorboardX.", error
        )
        return False
    return True


def _to_uint8_images(images: Any) -> np.ndarray:
    """[N,] H, W, C images -> uint8 [N, H, W, C]; floats are read as [0, 1] and clipped, like TF."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3, 4):
        raise ValueError(f"Images must be [N,] H, W, C with C in 1, 3, 4; got {images.shape}.")
    if np.issubdtype(images.dtype, np.floating):
        return np.round(np.clip(images, 0.0, 1.0) * 255.0).astype(np.uint8)
    return np.clip(images, 0, 255).astype(np.uint8)


def _hparam_value(value: Any) -> bool | int | float | str:
    """A value the TensorBoard hparams plugin accepts: numbers, bools and strings; others as str."""
    if isinstance(value, np.generic):
        value = value.item()
    return value if isinstance(value, bool | int | float | str) else str(value)


class TensorBoardXWriter:
    """`clu.metric_writers.MetricWriter` writing TensorBoard event files with tensorboardX.

    It mirrors CLU's TensorFlow `SummaryWriter`: the same tags, flattened hparams and image
    value ranges. Differences: a batch of images is written as one grid image per key, and
    raw summaries, videos and audio are skipped with a one-time warning.
    (Registered as a virtual subclass of MetricWriter, because that ABC lives in the very
    package whose import this module makes possible.)
    """

    def __init__(self, logdir: str):
        self._writer = tensorboardX.FileWriter(logdir)

    def write_summaries(
        self, step: int, values: Mapping[str, Any], metadata: Mapping[str, Any] | None = None
    ) -> None:
        del step, values, metadata
        logging.log_first_n(logging.WARNING, "TensorBoardXWriter skips raw summaries.", 1)

    def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
        for key, value in scalars.items():
            self._writer.add_summary(tbx_summary.scalar(key, float(np.asarray(value).item())), step)

    def write_images(self, step: int, images: Mapping[str, Any]) -> None:
        for key, value in images.items():
            image = tbx_summary.image(key, _to_uint8_images(value), dataformats="NHWC")
            self._writer.add_summary(image, step)

    def write_videos(self, step: int, videos: Mapping[str, Any]) -> None:
        del step, videos
        logging.log_first_n(logging.WARNING, "TensorBoardXWriter skips videos.", 1)

    def write_audios(self, step: int, audios: Mapping[str, Any], *, sample_rate: int) -> None:
        del step, audios, sample_rate
        logging.log_first_n(logging.WARNING, "TensorBoardXWriter skips audio.", 1)

    def write_texts(self, step: int, texts: Mapping[str, str]) -> None:
        for key, value in texts.items():
            text = tbx_summary.text(key, value)
            text.value[0].tag = key  # tensorboardX appends "/text_summary"; keep TF's tag
            self._writer.add_summary(text, step)

    def write_histograms(
        self, step: int, arrays: Mapping[str, Any], num_buckets: Mapping[str, int] | None = None
    ) -> None:
        for key, value in arrays.items():
            buckets = (num_buckets or {}).get(key) or _DEFAULT_HISTOGRAM_BUCKETS
            self._writer.add_summary(tbx_summary.histogram(key, np.asarray(value), buckets), step)

    def write_hparams(self, hparams: Mapping[str, Any]) -> None:
        """Writes the hparams plugin's session-start record into this run (as TensorFlow does).

        No experiment record is written, so TensorBoard's HPARAMS tab infers the experiment from
        the runs and offers this run's scalars as metrics.
        """
        flat = {key: _hparam_value(value) for key, value in clu_utils.flatten_dict(hparams)}
        _, session_start_info, _ = tbx_summary.hparams(flat, {})
        self._writer.add_summary(session_start_info, 0)

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


if not _tensorflow_importable():
    _stand_in = types.ModuleType(_CLU_SUMMARY_WRITER, "TensorFlow-free SummaryWriter (bird_jax).")
    _stand_in.SummaryWriter = TensorBoardXWriter
    sys.modules.setdefault(_CLU_SUMMARY_WRITER, _stand_in)

# These imports must follow the stand-in's registration.
from clu import metric_writers, periodic_actions  # noqa: E402

metric_writers.MetricWriter.register(TensorBoardXWriter)

__all__ = ["TensorBoardXWriter", "create_writer", "metric_writers", "periodic_actions"]


def create_writer(
    workdir: str | None, *, just_logging: bool = False
) -> metric_writers.MetricWriter:
    """CLU's default asynchronous writer: absl logging, plus TensorBoard events in `workdir`.

    `workdir` None or empty, or `just_logging=True` (e.g. on non-zero hosts), logs only.
    """
    return metric_writers.create_default_writer(
        workdir or None, just_logging=just_logging, asynchronous=True
    )
