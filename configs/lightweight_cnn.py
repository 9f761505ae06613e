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
    config = default.get_config()
    config.model_name = "lightweight_cnn"
    config.data.source = "folder"
    config.data.image_size = 128
    config.data.crop_scale = (0.35, 1.0)
    config.batch_size = 64
    config.base_batch_size = 256
    config.lr = 4e-3
    config.num_epochs = 60.0
    config.warmup_epochs = 3.0
    config.label_smoothing = 0.1
    config.eval_every_steps = 200
    config.checkpoint_every_steps = 200
    return config
