"""The lightweight CNN on all 200 species of Caltech-UCSD Birds-200-2011 (TFDS caltech_birds2011).

Prepare once (TFDS's builder needs TensorFlow for this step only; offline, the command says what
to download and where to put it):

  python -m bird_jax.data.prepare --dataset=caltech_birds2011 --data_dir=/data/tfds

then train and test:

  python -m bird_jax.main --config=configs/cub200.py --workdir=runs/cub200 \
      --config.data.data_dir=/data/tfds
  python -m bird_jax.main --mode=evaluate --workdir=runs/cub200 --split=test --checkpoint=best

CUB has train (5,994) and test (5,794) splits only: a stratified 10% of train (data.split_seed)
becomes the 'valid' split. Variants as in configs/lightweight_cnn.py.
Expected accuracy: not measured yet (the dataset cannot be downloaded on the development machine).
"""

import ml_collections

from bird_jax import config as defaults


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    """Returns the CUB-200 config; `variant` picks the augmentations as in lightweight_cnn."""
    config = defaults.lightweight_cnn(variant)
    config.data.source = "tfds"
    config.data.name = "caltech_birds2011"
    config.data.data_dir = None  # TFDS's default, ~/tensorflow_datasets
    config.data.train_split = "train"
    config.data.eval_split = "valid"
    config.data.valid_from_train = 0.1
    config.data.split_seed = 0
    return config
