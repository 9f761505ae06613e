"""VGG16 (Simonyan & Zisserman 2015, with BatchNorm) on a class-per-folder bird set.

  python -m bird_jax.main --config=configs/vgg16.py --workdir=runs/vgg16 \
      --config.data.root=/data/birds

`configs/vgg16.py:plain` drops BatchNorm (the paper's original network). The head is sized for
the input resolution (at 224 px: 7x7x512 -> 4096 -> 4096 -> classes, 138 M params at 1000 classes).
Expected: see BENCHMARKS.md for measured throughput; VGG16 from scratch needs far more than a few
hundred images per class — it is the study's large reference model.
"""

import ml_collections

from bird_jax import config as defaults


def get_config(variant: str = "bn") -> ml_collections.ConfigDict:
    """Returns the VGG16 config; variant 'bn' (default) or 'plain'."""
    return defaults.vgg16(variant)
