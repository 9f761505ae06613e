"""DM in an autoencoder's latent space: `configs/distill/latent_dm.py:<dataset>_ipc<N>`
(datasets as dm.py's; DM's settings, 20,000 iterations).

  python -m bird_jax.distill --config=configs/distill/latent_dm.py:birds_ipc1 \
      --config.data.root=/data/cub20 --workdir=runs/latent_dm_birds_1

Trains the autoencoder of configs/distill/autoencoder.py (or reads the workdir's
autoencoder.msgpack), starts from the codes that baseline keeps (as many per class as fit with
the decoder within N images a class) and learns them with DM's loss on their decodings.
"""

from bird_jax.distill import defaults


def get_config(variant: str = "birds_ipc1"):
    return defaults.get_config("latent_dm", variant)
