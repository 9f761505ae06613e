"""DC (gradient matching) from noise, 1,000 iterations of (outer, inner) loops (1, 1) / (10, 50)
/ (50, 10) at IPC 1 / 10 / 50: `configs/distill/dc.py:<dataset>_ipc<N>` (as dm.py's variants).

  python -m bird_jax.distill --config=configs/distill/dc.py:cifar10_ipc1 --workdir=runs/dc_c10_1
"""

from bird_jax.distill import defaults


def get_config(variant: str = "cifar10_ipc10"):
    return defaults.get_config("dc", variant)
