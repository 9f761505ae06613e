"""Distillation configs: the papers' hyperparameters per method, on CIFAR-10/100 or a bird
folder. `configs/distill/<method>.py:<dataset>_ipc<N>` are thin wrappers over `get_config`."""

from __future__ import annotations

import re

import ml_collections

from bird_jax import config as defaults

ITERATIVE = ("dc", "dsa", "dm", "latent_dm", "frepo", "mtt")
CORESETS = ("random", "herding", "kcenter")
REDUCTIONS = ("pca", "pca_class", "autoencoder")  # storage-matched, decoded (reductions.py)
ONE_SHOT = CORESETS + REDUCTIONS  # made in one call, no iterations
METHODS = ITERATIVE + ONE_SHOT
DSA_STRATEGY = "color_crop_cutout_flip_scale_rotate"
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)  # the papers' code normalises CIFAR-10 with these
CIFAR_STD = (0.2023, 0.1994, 0.2010)
# name -> (TFDS name or "" for a class-per-folder tree, image size, ConvNet depth)
DATASETS = {"cifar10": ("cifar10", 32, 3), "cifar100": ("cifar100", 32, 3), "birds": ("", 64, 4)}
EVAL_MODELS = ("convnet", "lightweight_cnn", "vgg16_bn", "convnext_atto")


def _iterations(method: str) -> int:
    iterations = {"dm": 20_000, "latent_dm": 20_000, "dc": 1000, "dsa": 1000, "frepo": 500_000,
                  "mtt": 5000}  # fmt: skip
    return iterations.get(method, 0)


def parse_variant(variant: str) -> tuple[str, int]:
    """'cifar10_ipc10' -> ('cifar10', 10); ValueError naming the known datasets."""
    match = re.fullmatch(r"(\w+?)_ipc(\d+)", variant)
    if not match or match.group(1) not in DATASETS:
        raise ValueError(
            f"Unknown distillation variant {variant!r}: use <dataset>_ipc<N> with dataset one of "
            f"{', '.join(DATASETS)} (e.g. cifar10_ipc10)."
        )
    return match.group(1), int(match.group(2))


def get_config(method: str, variant: str = "cifar10_ipc10") -> ml_collections.ConfigDict:
    """`method` (dc, dsa, dm, latent_dm, frepo, mtt, random, herding, kcenter, pca,
    pca_class, autoencoder) on `variant` = <dataset>_ipc<N>."""
    if method not in METHODS:
        raise ValueError(f"Unknown distillation method {method!r}; known: {', '.join(METHODS)}.")
    dataset, ipc = parse_variant(variant)
    tfds_name, image_size, depth = DATASETS[dataset]
    config = defaults.get_config()
    config.seed = 0
    config.model_name = "convnet"
    config.model.depth = depth
    config.data.source = "tfds" if tfds_name else "folder"
    config.data.name = tfds_name
    config.data.train_split = "train"
    config.data.eval_split = "test"
    config.data.image_size = image_size
    config.data.eval_pipeline = "center_crop(crop_pct=1.0)"  # whole image (central square)
    if tfds_name:
        config.data.mean, config.data.std = CIFAR_MEAN, CIFAR_STD

    config.distill = ml_collections.ConfigDict()
    config.distill.method = method
    config.distill.dataset = dataset  # the defaults' dataset (a study derives its methods' configs)
    config.distill.ipc = ipc
    config.distill.iterations = _iterations(method)
    config.distill.init = "noise" if method == "dc" else "real"
    lr_img = {"dm": 1.0, "latent_dm": 1.0, "frepo": 3e-4, "mtt": 1000.0}
    config.distill.lr_img = lr_img.get(method, 0.1)
    config.distill.batch_real = 1024 if method == "frepo" else 256  # frepo: over all classes
    config.distill.dsa_strategy = "none" if method == "dc" else DSA_STRATEGY
    config.distill.outer_loop = 0  # DC/DSA; 0: the papers' (1, 10, 50 for IPC 1, 10, 50)
    config.distill.inner_loop = 0  # DC/DSA; 0: the papers' (1, 50, 10)
    config.distill.lr_net = 0.01
    config.distill.batch_train = 256
    config.distill.embedding_epochs = 0  # herding/k-center: 0 embeds with a random ConvNet
    # mtt (the official table for CIFAR-10; its IPC 10 pixel lr, 1e5, is a typo: 1000 here).
    syn_steps, max_start, lr_lr = (50, 2, 1e-7) if ipc <= 1 else (30, 20 if ipc <= 10 else 40, 1e-5)
    config.distill.syn_steps = syn_steps
    config.distill.expert_epochs = 2
    config.distill.max_start_epoch = max_start
    config.distill.lr_lr = lr_lr
    config.distill.lr_teacher = 0.01  # the starting step size, and the experts' lr
    config.distill.batch_syn = 0  # 0: every synthetic image each step
    config.distill.mtt_gradient = "exact"  # or "constant": TESLA's, memory independent of N
    config.distill.experts = ""  # directory of expert_*.npy; "": <workdir>/experts, built there
    config.distill.num_experts = 100
    config.distill.expert_train_epochs = 50
    # The experts' SGD batch (official: 256). An epoch of cub20's 479 photos is 2 steps at 256:
    # smaller batches give a small dataset's experts trajectories worth matching.
    config.distill.expert_batch = 256
    config.distill.pool_size = 10  # frepo: online networks, each restarted after
    config.distill.max_online_updates = 100  # ... this many steps on the set
    config.distill.flip = True  # frepo: the set's mirror images join the kernel (colour data)
    config.distill.krr_reg = 1e-6  # frepo: ridge, times trace(K) / n
    config.distill.online_norm = "none"  # frepo's networks (the official code: identity/batch)
    config.distill.autoencoder_widths = (32, 64)  # each halves the image
    config.distill.latent_channels = 4  # codes of (size / 4)^2 * 4 values: 1/12 of the pixels
    config.distill.autoencoder_epochs = 30
    # ZCA whitening of the space the set is learned in (and evaluated in), kornia's ridge 0.1 on
    # the eigenvalues: MTT's CIFAR settings at IPC 1 and 10, FRePo's on CIFAR.
    config.distill.zca = bool(tfds_name) and (method == "frepo" or (method == "mtt" and ipc <= 10))
    config.distill.zca_reg = 0.1
    config.distill.log_every = 10
    config.distill.checkpoint_every = 100
    config.distill.eval_at = ()  # iterations the protocol also runs at (0: the start; end: always)

    # The evaluation protocol: fresh networks trained on the set, tested on data.eval_split.
    config.evaluation = ml_collections.ConfigDict()
    config.evaluation.models = ("convnet",)  # also: lightweight_cnn, vgg16_bn, convnext_atto
    config.evaluation.runs = 5
    # 1,000 epochs with DSA, as the official evaluate_synset; the papers' no-DSA protocol:
    # --config.evaluation.dsa_strategy=none --config.evaluation.epochs=300.
    config.evaluation.epochs = 1000
    # FRePo's sets train as its own evaluation does: Adam at 3e-4 (warmup, then cosine), batches
    # of up to 500; every other set with the DC protocol's SGD (lr x0.1 past half).
    config.evaluation.optimizer = "adam" if method == "frepo" else "sgd"
    config.evaluation.warmup_steps = 500  # adam: linear warmup (at most half the run's steps)
    config.evaluation.lr = 3e-4 if method == "frepo" else 0.01
    config.evaluation.learned_lr = True  # a set's learned step size (MTT's) replaces lr
    # A set's learned label vectors (FRePo's) as targets, with FRePo's regression loss; False:
    # its class labels with cross-entropy, as every other set.
    config.evaluation.learned_labels = True
    config.evaluation.momentum = 0.9  # sgd
    config.evaluation.weight_decay = 5e-4  # sgd
    config.evaluation.batch_size = 500 if method == "frepo" else 256
    config.evaluation.dsa_strategy = DSA_STRATEGY
    return config
