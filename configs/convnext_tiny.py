"""ConvNeXt-T with the official recipe (the other sizes: configs/convnext.py:<size>).

  python -m bird_jax.main --config=configs/convnext_tiny.py --workdir=runs/convnext_tiny \
      --config.data.root=/data/birds

Expected: throughput in BENCHMARKS.md; from scratch on a few hundred bird photos ConvNeXt-T
underfits — it needs ImageNet-scale data or pretrained weights.
"""

import ml_collections

from bird_jax import config as defaults


def get_config() -> ml_collections.ConfigDict:
    """Returns the ConvNeXt-T config."""
    return defaults.convnext("tiny")
