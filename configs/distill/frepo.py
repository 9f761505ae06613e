"""FRePo, neural feature regression with an online model pool and learned labels:
`configs/distill/frepo.py:<dataset>_ipc<N>` (datasets as dm.py's).

  python -m bird_jax.distill --config=configs/distill/frepo.py:cifar10_ipc10 --workdir=W

The official settings (yongchao97/FRePo): 500,000 iterations, LAMB lr 3e-4 cosine-decayed to a
tenth on images and labels, a real batch of 1,024 (here class-balanced), 10 online networks
restarted after 100 Adam steps (lr 3e-4), mirror images in the kernel, ridge 1e-6 x trace / n.
The set's label vectors are saved with it (synthetic.npz) and the protocol trains on them with
FRePo's regression loss.
"""

from bird_jax.distill import defaults


def get_config(variant: str = "cifar10_ipc10"):
    return defaults.get_config("frepo", variant)
