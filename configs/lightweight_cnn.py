"""Ultra-lightweight CNN (inverted residuals, <0.5 M params) on a class-per-folder bird set.

  python -m bird_jax.main --config=configs/lightweight_cnn.py --workdir=runs/lightweight \
      --config.data.root=/data/cub20
  python -m bird_jax.main --config=configs/lightweight_cnn.py:study ...      # all 11 augmentations
  python -m bird_jax.main --config=configs/lightweight_cnn.py:clahe ...      # crop + one of them

`root` holds {train,valid,test}/<SPECIES>/*.jpg (the Kaggle "BIRDS 525 SPECIES" layout).
Variants: '' (random-resized-crop + flip), 'study' (crop + the bird study's eleven augmentations,
bird_jax.config.STUDY_OPS), or one study augmentation's name (crop + that one alone).
Expected on cub20 (20 CUB species, 479 train photos, from scratch, 420 steps, float32, mean of
seeds 0 and 1): 40.5% test top-1 / 77.8% top-5 with crop + flip, 41.6% / 80.5% with ':study', in
11-19 min on a shared 2-core Intel Xeon CPU (bfloat16 is about half as fast on a CPU, where XLA
converts it around float32 kernels: 39.2% in 17 min). Details in BENCHMARKS.md.
"""

import ml_collections

from bird_jax import config as defaults


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    """Returns the lightweight-CNN config with the variant's augmentations."""
    return defaults.lightweight_cnn(variant)
