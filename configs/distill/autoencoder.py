"""Autoencoder baseline: `configs/distill/autoencoder.py:<dataset>_ipc<N>` (datasets as dm.py's).

  python -m bird_jax.distill --config=configs/distill/autoencoder.py:birds_ipc1 \
      --config.data.root=/data/cub20 --workdir=runs/ae_birds_1

Trains a small convolutional autoencoder on the real images (distill.autoencoder_epochs, Adam),
then keeps, per class, the codes of random real images that fit with the decoder within the
values of N images per class, and trains on their decodings; autoencoder.png shows real images
over their decodings. distill.autoencoder_widths and distill.latent_channels size it.
"""

from bird_jax.distill import defaults


def get_config(variant: str = "birds_ipc1"):
    return defaults.get_config("autoencoder", variant)
