"""Things the train loop does besides training, as hooks it calls: TensorBoard images at the start.

A hook is called as `hook(step, batch)` after every train step, on process 0 only.
"""

import jax
import ml_collections
import numpy as np

from bird_jax import augment, figures
from bird_jax.augment import gallery
from bird_jax.writers import periodic_actions


class InputImages:
    """At the first step: the first train batch as the model sees it (device augmentations
    applied), and one card per augmentation op (alone) plus whole-pipeline samples."""

    def __init__(self, config: ml_collections.ConfigDict, info, writer):
        self.config, self.info, self.writer = config, info, writer
        self._done = False

    def __call__(self, step: int, batch: dict) -> None:
        if self._done:
            return
        self._done = True
        config = self.config
        host_batch = jax.device_get(batch)
        images = np.asarray(host_batch["image"]).reshape(-1, *batch["image"].shape[-3:])[:32]
        labels = np.asarray(host_batch["label"]).reshape(-1)[:32]
        augmented = gallery.apply_device_half(
            augment.train_pipeline(config.data),
            config.data,
            images,
            labels,
            self.info.num_classes,
            config.seed,
        )
        rows = gallery.preview_rows(config, self.info, config.data.train_split, seed=config.seed)
        # "visual" sorts after "train" and "valid": TensorBoard opens on the curves.
        cards = {"visual/0_first_batch": figures.image_grid(augmented)[None]}
        for index, (title, row_images) in enumerate(rows):
            cards[f"visual/{index + 1:02d}_{title}"] = figures.image_grid(row_images)[None]
        self.writer.write_images(step, cards)


class ProfileSteps:
    """A trace of a few steps for TensorBoard's profiler (config.profile)."""

    def __init__(self, logdir: str, num_steps: int = 5):
        self._profile = periodic_actions.Profile(logdir=logdir, num_profile_steps=num_steps)

    def __call__(self, step: int, batch: dict) -> None:
        del batch
        self._profile(step)
