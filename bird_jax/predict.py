"""Names what is in photos, with a trained run's best (or latest) checkpoint or an exported file.

python -m bird_jax.predict --workdir=runs/quickstart photo1.jpg photo2.png --top_k=3
python -m bird_jax.predict --model=birds.tflite photo1.jpg   # written by bird_jax.export
"""

import os
import sys

import jax
import numpy as np
from absl import app, flags

from bird_jax import augment, cli, data, experiment
from bird_jax.checkpoints import BEST, LATEST, RunCheckpoints
from bird_jax.classifier import Classifier
from bird_jax.exported import ExportedModel
from bird_jax.workdir import Workdir, checkpoint_metadata

FLAGS = flags.FLAGS


def define_flags() -> None:
    """This command's flags (defined by cli.run, never on import)."""
    flags.DEFINE_string("workdir", None, "Workdir of a training run (config.json, labels.json).")
    flags.DEFINE_string(
        "model", None, "A file written by bird_jax.export (.stablehlo, .tflite), not a workdir."
    )
    flags.DEFINE_integer("top_k", 5, "How many classes to print per image.")
    flags.DEFINE_enum(
        "checkpoint", BEST, [BEST, LATEST], "Checkpoint of --workdir (best falls back to latest)."
    )
    flags.register_multi_flags_validator(
        ["workdir", "model"],
        lambda given: (given["workdir"] is None) != (given["model"] is None),
        "give either --workdir (a training run) or --model (a file bird_jax.export wrote).",
    )


class Predictor(Classifier):
    """A restored run's model, in eval mode, on uint8 images.

    Only the variables evaluation needs are read from the checkpoint (no optimizer state), into
    shape-only templates: start-up is a read, not an initialisation. `precision` replaces the
    run's config.precision (bird_jax.export computes in float32 whatever the run trained in).
    """

    def __init__(self, workdir: str, which: str = BEST, precision: str | None = None):
        run = Workdir(workdir)
        self.workdir = str(run)
        self.config = run.read_config()
        if precision is not None:
            self.config.precision = precision
        self.data_config = self.config.data
        self.class_names = run.read_labels()
        self.model = experiment.create_model(self.config, len(self.class_names))
        ckpts = RunCheckpoints(run, metadata=checkpoint_metadata(self.config, self.class_names))
        if which == BEST and ckpts.step(BEST) is None:
            which = LATEST
        template = experiment.abstract_variables(self.config, self.model)
        restored = ckpts.restore_variables(template, which)
        ckpts.close()
        if restored is None:
            raise FileNotFoundError(f"No checkpoint in {workdir}: train the run first.")
        self.checkpoint, self.step = which, int(restored["step"])
        self.variables = experiment.eval_variables(self.config, restored)
        self._apply = jax.jit(self.forward)

    def forward(self, variables: dict, images: jax.Array) -> jax.Array:
        """float32 logits [N, num_classes] for uint8 [N, image_size, image_size, 3] images:
        normalised with data.mean/std, then the model in eval mode. Pure: jit it or export it."""
        mean, std = tuple(self.data_config.mean), tuple(self.data_config.std)
        return self.model.apply(variables, augment.normalize(images, mean, std), train=False)

    def logits(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self._apply(self.variables, batch))


def _classifier() -> Classifier:
    if FLAGS.model:
        return ExportedModel(FLAGS.model)
    return Predictor(FLAGS.workdir, FLAGS.checkpoint)


def main(argv: list[str]) -> int:
    paths = argv[1:]
    if not paths:
        raise app.UsageError("Give one or more image paths after the flags.")
    missing = [path for path in paths if not os.path.isfile(path)]
    if missing:
        raise cli.UserError(f"no such image file(s): {', '.join(missing)}.")
    classifier = _classifier()
    failures = 0
    for path in paths:
        try:
            image = data.load_image(path)
        except (OSError, ValueError) as e:
            print(f"{path}: cannot read image ({e})", file=sys.stderr)
            failures += 1
            continue
        ranked = classifier.top_k(image, FLAGS.top_k)
        print(f"{path}: " + ", ".join(f"{name} {p:.1%}" for name, p in ranked))
    return 1 if failures else 0


if __name__ == "__main__":
    cli.run(main, define_flags)
