"""Ultra-lightweight CNN (inverted residuals, <0.5 M params) on a class-per-folder bird set.

  python -m bird_jax.main --config=configs/lightweight_cnn.py --workdir=runs/lightweight \
      --config.data.root=/data/cub20

`root` holds {train,valid,test}/<SPECIES>/*.jpg (the Kaggle "BIRDS 525 SPECIES" layout).
Expected: see BENCHMARKS.md ("cub20 runs") for accuracy and time measured on a 2-core CPU.
"""

import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
    """Returns the lightweight-CNN config."""
    config = default.get_bird_folder_config()
    config.model_name = "lightweight_cnn"
    config.data.image_size = 128
    config.lr = 4e-3
    return config
