"""Converts pretrained weights once into a bird_jax .npz that `config.init_from` loads directly.

  python -m bird_jax.convert mobilenet_v2-b0353104.pth --model=mobilenet_v2 --out=mnv2.npz

The format (timm, torchvision, Hugging Face, official ConvNeXt) is detected from the file's keys;
every tensor is checked against the model at `--num_classes` and `--image_size` as in training.
The head is kept only when its class count matches (else training initialises a new one).
"""

import os

import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import app, flags

from bird_jax import cli, experiment, models
from bird_jax.pretrained import files, mapping

FLAGS = flags.FLAGS


def define_flags() -> None:
    """This command's flags (defined by cli.run, never on import)."""
    flags.DEFINE_string("model", None, "Registry model name, e.g. convnext_tiny, mobilenet_v2.")
    flags.DEFINE_string("out", None, "Output .npz path.")
    flags.DEFINE_integer("num_classes", 1000, "Class count the head is checked against.")
    flags.DEFINE_integer("image_size", 224, "Image size (ViT position embeddings follow it).")
    flags.mark_flags_as_required(["model", "out"])


def convert(
    source: str, model_name: str, out: str, *, num_classes: int = 1000, image_size: int = 224
) -> mapping.Conversion:
    """Reads `source`, maps it onto `model_name` and writes the arrays to `out` (.npz)."""
    if not out.endswith(".npz"):
        raise ValueError(f"--out {out}: the output is an .npz file; end the name with .npz.")
    folder = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"--out {out}: folder {folder} does not exist.")
    config = ml_collections.ConfigDict({"data": {"image_size": image_size}})
    model = models.create_model(model_name, num_classes=num_classes, dtype=jnp.float32)
    state = files.read_state(source)
    conversion = mapping.convert_state(state, model_name, experiment.abstract_init(config, model))
    partial = f"{out}.partial.npz"  # np.savez appends .npz to names without it
    np.savez(partial, **conversion.arrays)
    os.replace(partial, out)
    return conversion


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        raise app.UsageError("Give one weights file: python -m bird_jax.convert SRC --model=...")
    conversion = convert(
        argv[1], FLAGS.model, FLAGS.out, num_classes=FLAGS.num_classes, image_size=FLAGS.image_size
    )
    head = "new head at training" if conversion.reinitialised else "head kept"
    size = sum(array.size for array in conversion.arrays.values())
    print(f"{argv[1]} ({conversion.format}) -> {FLAGS.out}: {size:,} values, {head}")


if __name__ == "__main__":
    cli.run(main, define_flags)
