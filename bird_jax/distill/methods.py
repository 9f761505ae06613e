"""Every method behind one interface: `distill(config, real) -> SyntheticSet`.

Iterative methods (DC, DSA, DM) are objects with `iteration(state, key, real)`; `create` builds
one from config.distill, `check_config` validates the settings before any data is read. The
coresets select real images in one call (`select_set`); the PCA and autoencoder sets are
decoded in one call (`reductions.reduce`).
"""

from __future__ import annotations

import functools
import time
from pathlib import Path

import jax
import ml_collections
import numpy as np

from bird_jax import console
from bird_jax.distill import (
    autoencoder,
    coreset,
    dc,
    dm,
    dsa,
    experts,
    frepo,
    iterative,
    latent,
    mtt,
    nets,
    protocol,
    reductions,
    zca,
)
from bird_jax.distill.defaults import CORESETS, ITERATIVE, METHODS, REDUCTIONS
from bird_jax.distill.iterative import ShardedReal, init_state
from bird_jax.distill.real import RealData
from bird_jax.distill.synthetic import INITS, SyntheticSet, initial_images
from bird_jax.models import create_model
from bird_jax.models.convnet import min_image_size


def check_config(config: ml_collections.ConfigDict) -> None:
    """ValueError naming the key if config.distill or config.evaluation cannot work (checked
    before any compute)."""
    protocol.check_settings(config)
    settings = config.distill
    if settings.method not in METHODS:
        raise ValueError(
            f"Unknown distill.method {settings.method!r}; known: {', '.join(METHODS)}."
        )
    if settings.ipc < 1:
        raise ValueError(f"distill.ipc must be >= 1, got {settings.ipc}.")
    if settings.init not in INITS:
        raise ValueError(f"distill.init must be one of {INITS}, got {settings.init!r}.")
    dsa.parse_strategy(settings.dsa_strategy)
    dsa.parse_strategy(config.evaluation.dsa_strategy)
    mtt.check_gradient(settings.mtt_gradient)
    if settings.zca:
        zca.check_reg(settings.zca_reg)
    if config.model_name != "convnet" and settings.method not in ("random", *REDUCTIONS):
        raise ValueError(
            f"distill.method={settings.method!r} embeds with ConvNet: set model_name='convnet' "
            f"(got {config.model_name!r}); other networks evaluate the set (evaluation.models)."
        )
    depth = config.model.get("depth", 3)
    smallest = min_image_size(depth, config.model.get("pooling", "avg"))
    if config.data.image_size < smallest:
        raise ValueError(
            f"data.image_size={config.data.image_size} is too small for ConvNet-{depth} (it "
            f"needs >= {smallest} px): lower model.depth or raise data.image_size."
        )
    scale = 2 ** len(settings.autoencoder_widths)
    if settings.method in ("autoencoder", "latent_dm") and config.data.image_size % scale:
        raise ValueError(
            f"data.image_size={config.data.image_size} does not halve "
            f"{len(settings.autoencoder_widths)} times (distill.autoencoder_widths): use a "
            f"multiple of {scale}."
        )
    if settings.method == "mtt" and settings.expert_batch < 1:
        raise ValueError(f"distill.expert_batch must be >= 1, got {settings.expert_batch}.")
    if settings.method in ITERATIVE and settings.iterations < 0:
        raise ValueError(f"distill.iterations must be >= 0, got {settings.iterations}.")
    outside = sorted(i for i in settings.eval_at if not 0 <= i <= settings.iterations)
    if settings.method in ITERATIVE and outside:
        raise ValueError(
            f"distill.eval_at {outside} lie outside the run's iterations 0..{settings.iterations}."
        )


def zca_reg(config: ml_collections.ConfigDict) -> float | None:
    """The ZCA ridge of the space config.distill learns in; None: unwhitened."""
    return config.distill.zca_reg if config.distill.zca else None


def learning_space(
    config: ml_collections.ConfigDict, real: RealData
) -> tuple[RealData, zca.Whitening | None]:
    """`real` in the space its set is learned in: ZCA-whitened (fitted on `real` itself) where
    distill.zca, and the whitening; else `real` as it is and None."""
    if zca_reg(config) is None:
        return real, None
    start = time.perf_counter()
    whitening = zca.fit(real.flat()[0], zca_reg(config))
    console.say(f"ZCA whitening fitted on {int(real.counts.sum())} images "
                f"({whitening.mean.size} values, {whitening.eigenvalues.size} components) in "
                f"{time.perf_counter() - start:.1f} s.")  # fmt: skip
    return real.mapped(whitening.whiten), whitening


def _model(config: ml_collections.ConfigDict, num_classes: int):
    return create_model(config.model_name, num_classes=num_classes, **config.model.to_dict())


def expert_store(
    config: ml_collections.ConfigDict, real: RealData, directory: Path | None
) -> experts.ExpertStore:
    """MTT's expert trajectories: distill.experts, else <directory>/experts, building those of
    the distill.num_experts not there yet (resumable). `real` is in the learning space."""
    settings = config.distill
    if not settings.experts and directory is None:
        raise ValueError("MTT needs distill.experts (a directory of expert_*.npy) here.")
    where = Path(settings.experts) if settings.experts else Path(directory) / "experts"
    experts.check_space(where, zca_reg(config))
    model = _model(config, real.num_classes)
    key = jax.random.fold_in(keys(config)[0], 1)
    experts.build_experts(model, key, real, where, range(settings.num_experts),
                          settings.expert_train_epochs, settings.dsa_strategy,
                          settings.expert_batch, settings.lr_teacher)  # fmt: skip
    num_params = sum(int(np.size(leaf)) for leaf in jax.tree.leaves(
        iterative.fresh_params(model, jax.random.key(0), real.image_shape)))  # fmt: skip
    return experts.ExpertStore(where, num_params)


def create(
    config: ml_collections.ConfigDict,
    real: RealData,
    autoencoder_params=None,
    expert_trajectories: experts.ExpertStore | None = None,
):
    """The iterative method of config.distill (DC, DSA, DM, FRePo, MTT with
    `expert_trajectories`, or latent DM through an autoencoder with `autoencoder_params`) for
    `real`'s classes."""
    settings = config.distill
    model = _model(config, real.num_classes)
    batch_real = min(settings.batch_real, int(real.counts.min()))
    common = dict(batch_real=batch_real, strategy=settings.dsa_strategy,
                  learning_rate=settings.lr_img)  # fmt: skip
    if settings.method == "dm":
        return dm.DistributionMatching(model, real.image_shape, **common)
    if settings.method == "frepo":
        kwargs = {**config.model.to_dict(), "norm": settings.online_norm}
        online = create_model(config.model_name, num_classes=real.num_classes, **kwargs)
        return frepo.FeatureRegression(
            model, online, real.image_shape,
            batch_real=min(settings.batch_real // real.num_classes, int(real.counts.min())),
            learning_rate=settings.lr_img, iterations=settings.iterations,
            pool_size=settings.pool_size, max_online_updates=settings.max_online_updates,
            flip=settings.flip, reg=settings.krr_reg,
        )  # fmt: skip
    if settings.method == "mtt":
        return mtt.TrajectoryMatching(
            model, real.image_shape, experts=expert_trajectories,
            syn_steps=settings.syn_steps, expert_epochs=settings.expert_epochs,
            max_start_epoch=settings.max_start_epoch, learning_rate=settings.lr_img,
            lr_lr=settings.lr_lr, lr_teacher=settings.lr_teacher, strategy=settings.dsa_strategy,
            batch_syn=settings.batch_syn, gradient=settings.mtt_gradient,
        )  # fmt: skip
    if settings.method == "latent_dm":
        return latent.LatentDistributionMatching(
            model, real.image_shape, autoencoder=reductions.autoencoder_model(settings),
            params=autoencoder_params, **common,
        )  # fmt: skip
    outer, inner = dc.default_loops(settings.ipc)
    return dc.GradientMatching(
        model,
        real.image_shape,
        outer_loop=settings.outer_loop or outer,
        inner_loop=settings.inner_loop or inner,
        lr_net=settings.lr_net,
        batch_train=settings.batch_train,
        **common,
    )


def select_set(config: ml_collections.ConfigDict, key: jax.Array, real: RealData) -> np.ndarray:
    """A coreset's [C, ipc, H, W, 3] real images."""
    settings = config.distill
    embed = None
    if settings.method != "random":
        embed_key, key = jax.random.split(key)
        model = _model(config, real.num_classes)
        trainer = nets.NetTrainer(model, nets.sgd(0.01, 0.9, 5e-4))
        network = coreset.embedding_network(embed_key, trainer, real, settings.embedding_epochs)
        embed = functools.partial(coreset.embed_all, trainer, network)
    return coreset.select(settings.method, key, real, settings.ipc, embed)


def keys(config: ml_collections.ConfigDict) -> tuple[jax.Array, jax.Array]:
    """(key of the starting set, key whose fold_in(., i) drives iteration i) from config.seed."""
    init_key, loop_key = jax.random.split(jax.random.key(config.seed))
    return init_key, loop_key


def start(
    config: ml_collections.ConfigDict,
    real: RealData,
    num_devices: int | None = None,
    directory: Path | None = None,
):
    """(method, real images on the devices, starting state) of an iterative method, its classes
    split over `num_devices` local devices (default: all). Latent DM's autoencoder is trained
    first, or read from `directory` (see reductions.trained_autoencoder)."""
    settings, init_key = config.distill, keys(config)[0]
    if settings.method in ("frepo", "mtt"):  # their step couples the classes: one device
        trajectories = expert_store(config, real, directory) if settings.method == "mtt" else None
        method = create(config, real, expert_trajectories=trajectories)
        images = initial_images(init_key, real, settings.ipc, settings.init)
        return method, ShardedReal.from_real(real, 1), method.init_state(init_key, images)
    sharded = ShardedReal.from_real(real, num_devices)
    if settings.method != "latent_dm":
        method = create(config, real)
        images = initial_images(init_key, real, settings.ipc, settings.init)
        return method, sharded, init_state(images, sharded.shards, method.optimizer)
    train_key, pick_key = jax.random.split(init_key)  # as the autoencoder baseline's set
    model, params, _ = reductions.trained_autoencoder(config, train_key, real, directory)
    method = create(config, real, params)
    budget = autoencoder.code_budget(
        model, real.image_shape, real.num_classes, settings.ipc, int(real.counts.min())
    )
    method.stored_values = budget.stored_values
    codes = method.initial_codes(pick_key, real, budget.per_class, settings.init)
    return method, sharded, init_state(codes, sharded.shards, method.optimizer)


def distill(
    config: ml_collections.ConfigDict, real: RealData, num_devices: int | None = None
) -> SyntheticSet:
    """The whole method in one call (no checkpoints or logs; `bird_jax.distill` runs those)."""
    check_config(config)
    settings = config.distill
    real, whitening = learning_space(config, real)
    init_key, loop_key = keys(config)
    vectors = learning_rate = None
    if settings.method in CORESETS:
        images = select_set(config, init_key, real)
    elif settings.method in REDUCTIONS:
        images = reductions.reduce(config, init_key, real).images
    else:
        method, sharded, state = start(config, real, num_devices)
        for iteration in range(settings.iterations):
            state, _ = method.iteration(state, jax.random.fold_in(loop_key, iteration), sharded)
        images = method.images(sharded.shards.merge(state.synthetic))
        vectors, learning_rate = method.label_vectors(state), method.learning_rate(state)
    return SyntheticSet(images, real.class_names, real.mean, real.std, settings.method, vectors,
                        whitening, learning_rate)  # fmt: skip
