"""Exports a trained run's model for inference without bird_jax: StableHLO or TFLite.

python -m bird_jax.export --workdir=runs/quickstart --format=stablehlo --out=digits.stablehlo
python -m bird_jax.export --workdir=runs/quickstart --format=tflite --quantize=int8 \
    --out=digits.tflite

The exported function takes uint8 RGB images [batch, S, S, 3], S the run's image_size, already
resized and cropped as the run's data.eval_pipeline does, and returns float32 logits
[batch, num_classes] (softmax gives probabilities). Normalisation is inside; the model runs in
eval mode (BatchNorm statistics, EMA weights where the run evaluates them, no dropout), in
float32 whatever precision it trained in.

- stablehlo: `jax.export` with a symbolic batch, serialized; `jax.export.deserialize` reloads it
  with jax alone, on the platform it was exported on (cpu here, cuda on a GPU machine).
- tflite: a batch of 1, converted by LiteRT without TensorFlow (bird_jax.tflite; install the
  `export` extra); `--quantize=int8` (full-integer, calibrated on --calibration_images train
  images) or `int8_weights` (dynamic range).

Class names and preprocessing travel with the file (bird_jax.exported); `python -m
bird_jax.predict --model=FILE photo.jpg` names birds with it.
"""

import functools
import json
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import flags

from bird_jax import cli, data, exported, tflite
from bird_jax.checkpoints import BEST, LATEST
from bird_jax.models.common import grouped_depthwise
from bird_jax.predict import Predictor

FORMATS = ("stablehlo", "tflite")
NO_QUANTIZATION = "none"

FLAGS = flags.FLAGS


def define_flags() -> None:
    """This command's flags (defined by cli.run, never on import)."""
    flags.DEFINE_string("workdir", None, "Workdir of the training run to export.")
    flags.DEFINE_enum("format", None, FORMATS, "File format.")
    flags.DEFINE_string("out", None, "File to write (its folder must exist).")
    flags.DEFINE_enum(
        "quantize",
        NO_QUANTIZATION,
        [NO_QUANTIZATION, *tflite.QUANTIZATIONS],
        "TFLite only: int8 = full-integer (calibrated), int8_weights = dynamic range.",
    )
    flags.DEFINE_integer(
        "calibration_images", 100, "Train images that calibrate --quantize=int8's ranges."
    )
    flags.DEFINE_enum(
        "checkpoint", BEST, [BEST, LATEST], "Which checkpoint (best falls back to latest)."
    )
    flags.mark_flags_as_required(["workdir", "format", "out"])


def eval_images(
    data_config: ml_collections.ConfigDict, split: str, count: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images [N, S, S, 3], preprocessed as in evaluation, and their labels [N]: all of
    `split`, or `count` spread evenly over it (undecodable files skipped)."""
    source = data.load_splits(data_config).source(split)
    indices = range(len(source))
    if count is not None and count < len(source):
        indices = np.linspace(0, len(source) - 1, count).round().astype(int)
    records = [record for record in map(source.__getitem__, indices) if record["image"] is not None]
    images = [data.preprocess_for_eval(record["image"], data_config) for record in records]
    return np.stack(images), np.array([record["label"] for record in records], np.int32)


def _exported(predictor: Predictor, batch: "int | str") -> jax.export.Exported:
    """`jax.export` of the predictor's forward pass with its variables as constants."""
    size = predictor.data_config.image_size
    if isinstance(batch, str):
        (batch,) = jax.export.symbolic_shape(batch)
    forward = jax.jit(functools.partial(predictor.forward, predictor.variables))
    return jax.export.export(forward)(jax.ShapeDtypeStruct((batch, size, size, 3), jnp.uint8))


def stablehlo(predictor: Predictor) -> bytes:
    """The serialized `jax.export` with a symbolic batch, for this machine's platform."""
    return bytes(_exported(predictor, "batch").serialize())


def tflite_model(predictor: Predictor, quantize: str, calibration_images: int) -> bytes:
    """A TFLite flatbuffer of batch 1, quantised as `quantize`, without its description;
    UserError if LiteRT's interpreter cannot run it."""
    with grouped_depthwise():  # one depthwise-convolution op, not k*k slices
        model = tflite.convert(_exported(predictor, 1).mlir_module_serialized)
    if quantize == "int8":
        data_config = predictor.data_config
        calibration, _ = eval_images(data_config, data_config.train_split, calibration_images)
        model = tflite.quantize(model, quantize, calibration)
    elif quantize != NO_QUANTIZATION:
        model = tflite.quantize(model, quantize)
    size = predictor.data_config.image_size
    failure = tflite.crash(model, np.zeros((size, size, 3), np.uint8))
    if failure:
        raise cli.UserError(
            f"LiteRT's interpreter fails on the {predictor.config.model_name} TFLite model "
            f"(--quantize={quantize}: {failure}), so none was written; "
            + ("try --quantize=int8_weights." if quantize == "int8" else "see README, Export.")
        )
    return model


def description(predictor: Predictor, fmt: str, quantize: str) -> dict:
    """What the exported file holds and needs, as JSON (bird_jax.exported reads it)."""
    data_config = predictor.data_config
    batch = "batch" if fmt == "stablehlo" else 1
    size = data_config.image_size
    return {
        "format": fmt,
        "quantize": quantize,
        "input": f"uint8 RGB [{batch}, {size}, {size}, 3], preprocessed as data.eval_pipeline",
        "output": f"float32 logits [{batch}, {len(predictor.class_names)}]",
        "class_names": list(predictor.class_names),
        "data": {
            "image_size": size,
            "eval_pipeline": data_config.eval_pipeline,
            "mean": list(data_config.mean),
            "std": list(data_config.std),
        },
        "model_name": predictor.config.model_name,
        "workdir": os.path.abspath(predictor.workdir),
        "checkpoint": predictor.checkpoint,
        "step": predictor.step,
    }


def _write(files: dict[Path, bytes]) -> None:
    """Writes every file through a temporary one, so none is ever half-written."""
    partial = {path: path.with_name(path.name + ".partial") for path in files}
    try:
        for path, content in files.items():
            partial[path].write_bytes(content)
        for path in files:
            partial[path].replace(path)
    finally:
        for path in partial.values():
            path.unlink(missing_ok=True)


def _checked_flags(out: str, fmt: str, quantize: str) -> Path:
    """--out as a path whose folder exists, and the other flags checked, before any work."""
    path = Path(out)
    if path.is_dir():
        raise cli.UserError(f"--out {out} is a folder: give a file name, e.g. {out}/model.{fmt}.")
    if not path.parent.is_dir():
        raise cli.UserError(f"--out {out}: folder {path.parent} does not exist; create it first.")
    if quantize != NO_QUANTIZATION and fmt != "tflite":
        raise cli.UserError(f"--quantize={quantize} needs --format=tflite.")
    if FLAGS.calibration_images < 1:
        raise cli.UserError("--calibration_images must be at least 1.")
    if fmt == "tflite":
        tflite.require()
    return path


def exported_files(
    predictor: Predictor, fmt: str, quantize: str, out: Path, calibration_images: int
) -> dict[Path, bytes]:
    """The export's files by path: the model at `out` and, for StableHLO, its description."""
    described = description(predictor, fmt, quantize)
    if fmt == "stablehlo":
        text = json.dumps(described, indent=2).encode()
        return {out: stablehlo(predictor), exported.description_path(out): text}
    model = tflite_model(predictor, quantize, calibration_images)
    return {out: tflite.with_metadata(model, described)}


def main(argv: list[str]) -> None:
    del argv
    fmt, quantize = FLAGS.format, FLAGS.quantize
    out = _checked_flags(FLAGS.out, fmt, quantize)
    predictor = Predictor(FLAGS.workdir, FLAGS.checkpoint, precision="float32")
    files = exported_files(predictor, fmt, quantize, out, FLAGS.calibration_images)
    _write(files)
    print(
        f"{out}: {fmt}{'' if quantize == NO_QUANTIZATION else f' ({quantize})'}, "
        f"{len(files[out]) / 1e3:,.1f} kB, {len(predictor.class_names)} classes, step "
        f"{predictor.step} ({predictor.checkpoint}) of {FLAGS.workdir}"
    )


if __name__ == "__main__":
    cli.run(main, define_flags)
