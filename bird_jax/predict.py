"""Names what is in photos, using a trained run's best (or latest) checkpoint.

python -m bird_jax.predict --workdir=runs/quickstart photo1.jpg photo2.png --top_k=3
"""

import os
import sys

import jax
import numpy as np
from absl import app, flags

from bird_jax import augment, cli, data, experiment
from bird_jax.checkpoints import BEST, LATEST, RunCheckpoints
from bird_jax.workdir import Workdir, checkpoint_metadata

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Workdir of a training run (holds config.json, labels.json).")
flags.DEFINE_integer("top_k", 5, "How many classes to print per image.")
flags.DEFINE_enum(
    "checkpoint", BEST, [BEST, LATEST], "Which checkpoint (best falls back to latest)."
)
flags.mark_flag_as_required("workdir")


class Predictor:
    """A restored model that returns class probabilities for uint8 HxWx3 images.

    Only the variables evaluation needs are read from the checkpoint (no optimizer state), into
    shape-only templates: start-up is a read, not an initialisation.
    """

    def __init__(self, workdir: str, which: str = BEST):
        run = Workdir(workdir)
        self.config = run.read_config()
        self.class_names = run.read_labels()
        model = experiment.create_model(self.config, len(self.class_names))
        ckpts = RunCheckpoints(run, metadata=checkpoint_metadata(self.config, self.class_names))
        if which == BEST and ckpts.step(BEST) is None:
            which = LATEST
        restored = ckpts.restore_variables(experiment.abstract_variables(self.config, model), which)
        ckpts.close()
        if restored is None:
            raise FileNotFoundError(f"No checkpoint in {workdir}: train the run first.")
        self.variables = experiment.eval_variables(self.config, restored)
        mean, std = tuple(self.config.data.mean), tuple(self.config.data.std)
        self._apply = jax.jit(
            lambda variables, images: model.apply(
                variables, augment.normalize(images, mean, std), train=False
            )
        )

    def probabilities(self, images: list[np.ndarray]) -> np.ndarray:
        """Softmax probabilities [N, num_classes] for uint8 HxWx3 images of any size."""
        batch = np.stack([data.preprocess_for_eval(im, self.config.data) for im in images])
        return np.asarray(jax.nn.softmax(self._apply(self.variables, batch), axis=-1))

    def top_k(self, image: np.ndarray, k: int) -> list[tuple[str, float]]:
        """The k most probable (class name, probability) pairs for one image."""
        probs = self.probabilities([image])[0]
        order = np.argsort(-probs)[:k]
        return [(self.class_names[i], float(probs[i])) for i in order]


def main(argv: list[str]) -> int:
    paths = argv[1:]
    if not paths:
        raise app.UsageError("Give one or more image paths after the flags.")
    missing = [path for path in paths if not os.path.isfile(path)]
    if missing:
        raise cli.UserError(f"no such image file(s): {', '.join(missing)}.")
    predictor = Predictor(FLAGS.workdir, FLAGS.checkpoint)
    failures = 0
    for path in paths:
        try:
            image = data.load_image(path)
        except (OSError, ValueError) as e:
            print(f"{path}: cannot read image ({e})", file=sys.stderr)
            failures += 1
            continue
        ranked = predictor.top_k(image, FLAGS.top_k)
        print(f"{path}: " + ", ".join(f"{name} {p:.1%}" for name, p in ranked))
    return 1 if failures else 0


if __name__ == "__main__":
    cli.run(main)
