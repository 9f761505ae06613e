"""MTT, matching training trajectories: `configs/distill/mtt.py:<dataset>_ipc<N>` (datasets as
dm.py's).

  python -m bird_jax.distill --config=configs/distill/mtt.py:cifar10_ipc10 --workdir=W

Trains distill.num_experts expert networks (100 x 50 epochs, as the official buffer.py) into
W/experts first, or reads them from --config.distill.experts=DIR (shared between runs; build
them once, e.g. split over machines with bird_jax.distill.experts.experts_for_process). The
official CIFAR-10 table: syn_steps 50 / 30 / 30, expert_epochs 2, max_start_epoch 2 / 20 / 40,
lr_lr 1e-7 / 1e-5 / 1e-5 at IPC 1 / 10 / 50, lr_teacher 0.01, lr_img 1000 (the table's 1e5 at
IPC 10 is a typo, confirmed by its authors); ZCA whitening (ridge 0.1) on CIFAR at IPC 1 and 10.
"""

from bird_jax.distill import defaults


def get_config(variant: str = "cifar10_ipc10"):
    return defaults.get_config("mtt", variant)
