"""The shared pmap train step: device count, accumulation and precision must not change the math."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bird_jax import augment, models, optim
from bird_jax import config as defaults
from bird_jax.efficiency import flops
from bird_jax.models.convnext import ConvNeXt
from bird_jax.train_step import create_train_state, train_step

IMAGE = 32
GLOBAL_BATCH = 16
LR = 1e-2
NUM_CLASSES = 5
BATCH_NORM_MOMENTUM = 0.9  # bird_jax.models.common.batch_norm
# Device ops and Mixup/CutMix: keyed by global example index, so device count must not matter.
AUGMENTED = "resize|brightness(0.2, p=0.5)|random_erasing(p=0.5)|mixup(0.8, cutmix_alpha=1.0)"


def _augment(spec: str = "resize") -> augment.DeviceAugment:
    pipeline = augment.parse_pipeline(spec, image_size=IMAGE, mean=(0.5,) * 3, std=(0.25,) * 3)
    return augment.DeviceAugment(pipeline.device, pipeline.batch, (0.5,) * 3, (0.25,) * 3)


def _config(**overrides):
    config = defaults.get_config()
    config.num_train_steps = 10
    config.batch_size = GLOBAL_BATCH
    config.warmup_epochs = 0.0
    config.lr = LR
    config.base_batch_size = GLOBAL_BATCH
    config.update(overrides)
    return config


class _TinyNet(nn.Module):
    """Conv + LayerNorm + dense: the step's math without a big compile.

    No dropout: each device (and micro-batch) draws its own masks, so equivalence across device
    counts only holds for deterministic models.
    """

    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.Conv(8, (3, 3), strides=2, dtype=self.dtype)(x)
        x = nn.gelu(nn.LayerNorm(dtype=self.dtype)(x))
        return nn.Dense(5, dtype=jnp.float32)(x.mean(axis=(1, 2)))


class _MeanColour(nn.Module):
    """Logits a linear map of the mean colour, spread enough for smoothing and mixing to show."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        dense = nn.Dense(NUM_CLASSES, kernel_init=nn.initializers.normal(5.0), precision="highest")
        return dense(x.mean(axis=(1, 2)))


def _tiny_model(name: str, dtype):
    if name == "tiny":
        return _TinyNet(dtype=dtype)
    if name == "convnext":  # a real family member; no BatchNorm, so device splits cannot matter
        return ConvNeXt(num_classes=5, depths=(1, 1, 1, 1), dims=(8, 8, 8, 8), dtype=dtype)
    return models.create_model(
        name,
        num_classes=5,
        dtype=dtype,
        stage_widths=(8, 8),
        stage_depths=(1, 1),
        stage_strides=(1, 2),
        stage_expansions=(1, 2),
        head_features=16,
    )


def _setup(model_name="tiny", dtype=jnp.float32, use_ema=True, **config_overrides):
    config = _config(**config_overrides)
    model = _tiny_model(model_name, dtype)
    schedule = optim.learning_rate_schedule(config, num_train_examples=1000)
    tx = optim.create_optimizer(config, schedule)
    state = create_train_state(model, tx, image_size=IMAGE, seed=0, use_ema=use_ema)
    return model, tx, schedule, state


def _batch(seed=0):
    rng = np.random.default_rng(seed)
    return {
        "image": rng.integers(0, 256, (GLOBAL_BATCH, IMAGE, IMAGE, 3), dtype=np.uint8),
        "label": rng.integers(0, 5, GLOBAL_BATCH).astype(np.int32),
    }


def _few_devices() -> int:
    """Two devices for the tests whose property does not depend on the count (accumulation,
    precision, loss scaling): the CPU suite has 8 fake ones; a single GPU runs them on its one."""
    return min(2, jax.local_device_count())


def _pmapped_step(model, tx, schedule, devices, spec="resize", **step_kwargs):
    step_kwargs = dict(augment=_augment(spec), num_classes=NUM_CLASSES, **step_kwargs)
    return jax.pmap(
        lambda s, b: train_step(s, b, model=model, tx=tx, schedule=schedule, **step_kwargs),
        axis_name="batch",
        devices=devices,
    )


def _shard(tree, num_devices):
    return jax.tree.map(lambda x: x.reshape(num_devices, -1, *x.shape[1:]), tree)


def _run(
    state, model, tx, schedule, num_devices, steps=2, spec="resize", batches=_batch, **step_kwargs
):
    devices = jax.local_devices()[:num_devices]
    if len(devices) < num_devices:  # e.g. one GPU (benchmarks/device); CPU tests fake 8 devices
        pytest.skip(f"needs {num_devices} {jax.default_backend()} devices, found {len(devices)}")
    p_step = _pmapped_step(model, tx, schedule, devices, spec, **step_kwargs)
    replicated = jax.tree.map(lambda x: jnp.stack([x] * num_devices), state)
    metrics = None
    for i in range(steps):
        replicated, metrics = p_step(replicated, _shard(batches(i), num_devices))
    first = lambda tree: jax.tree.map(lambda x: np.asarray(x)[0], tree)
    return first(replicated), first(metrics).compute()


def _max_diff(a, b):
    pairs = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    return max(float(np.max(np.abs(x - y))) for x, y in pairs)


@pytest.mark.parametrize(
    "model_name, spec", [("tiny", AUGMENTED), ("convnext", "resize")], ids=["tiny", "convnext"]
)
def test_eight_devices_match_one_device(model_name, spec):
    model, tx, schedule, state = _setup(model_name)
    one, m1 = _run(state, model, tx, schedule, num_devices=1, spec=spec, ema_decay=0.99)
    eight, m8 = _run(state, model, tx, schedule, num_devices=8, spec=spec, ema_decay=0.99)
    # Adam normalises each gradient, so float32 summation-order noise in near-zero gradients can
    # move a parameter by a small fraction of one step (lr = 1e-2); the models move by ~lr.
    assert _max_diff(one.params, eight.params) < 1e-2 * LR
    assert _max_diff(one.ema_params, eight.ema_params) < 1e-2 * LR
    assert _max_diff(state.params, eight.params) > 0.5 * LR  # it did train
    np.testing.assert_allclose(m1["loss"], m8["loss"], rtol=1e-5)
    # The norm of the averaged gradient: Adam would hide gradients summed instead of averaged.
    np.testing.assert_allclose(m1["grad_norm"], m8["grad_norm"], rtol=1e-5)
    np.testing.assert_allclose(m1["accuracy"], m8["accuracy"])
    assert int(eight.step) == 2


def test_gradient_accumulation_matches_large_batch():
    model, tx, schedule, state = _setup()
    n = _few_devices()
    big, _ = _run(state, model, tx, schedule, num_devices=n, grad_accum_steps=1)
    for accum in (2, 4):
        accumulated, _ = _run(state, model, tx, schedule, num_devices=n, grad_accum_steps=accum)
        assert _max_diff(big.params, accumulated.params) < 1e-2 * LR


def test_label_smoothing_with_cutmix_matches_a_hand_computed_loss():
    """The loss is the cross-entropy against smoothed one-hots mixed like the images. A fixed
    16x16 CutMix box in 32x32 images gives lambda = 0.75 exactly; with one colour per image, each
    mixed image's mean colour is 0.75 of its own and 0.25 of its partner's (example N - 1 - i,
    on the other device where there are two), wherever the box lands."""
    smoothing = 0.2
    config = _config(label_smoothing=smoothing)
    schedule = optim.learning_rate_schedule(config, num_train_examples=1000)
    tx = optim.create_optimizer(config, schedule)
    model = _MeanColour()
    state = create_train_state(model, tx, image_size=IMAGE, seed=0, use_ema=False)
    rng = np.random.default_rng(0)
    colours = rng.integers(0, 256, (GLOBAL_BATCH, 1, 1, 3), dtype=np.uint8)
    batch = {
        "image": np.broadcast_to(colours, (GLOBAL_BATCH, IMAGE, IMAGE, 3)).copy(),
        "label": rng.integers(0, NUM_CLASSES, GLOBAL_BATCH).astype(np.int32),
    }
    spec = "resize|mixup(0.0, cutmix_alpha=1.0, cutmix_minmax=(0.5, 0.5))"
    _, metrics = _run(
        state, model, tx, schedule, _few_devices(), steps=1, spec=spec, batches=lambda _: batch,
        label_smoothing=smoothing,
    )  # fmt: skip

    mix = lambda x: 0.75 * x + 0.25 * x[::-1]
    normalised = (mix(colours / 255.0) - 0.5) / 0.25
    logits = model.apply({"params": state.params}, normalised)
    targets = np.full((GLOBAL_BATCH, NUM_CLASSES), smoothing / NUM_CLASSES)
    targets[np.arange(GLOBAL_BATCH), batch["label"]] += 1 - smoothing
    loss = -np.mean(np.sum(mix(targets) * jax.nn.log_softmax(logits), axis=-1))
    np.testing.assert_allclose(metrics["loss"], loss, rtol=1e-4)


def test_rolled_accumulation_loop_matches_the_unrolled_one():
    """GPUs and TPUs run the micro-batches in a rolled loop (CPU unrolls it): same update, and
    BatchNorm statistics carried through the loop alike."""
    model, tx, schedule, state = _setup("lightweight_cnn")
    n = _few_devices()
    kwargs = dict(grad_accum_steps=2, ema_decay=0.99)
    unrolled, expected = _run(state, model, tx, schedule, n, unroll_accumulation=True, **kwargs)
    rolled, metrics = _run(state, model, tx, schedule, n, unroll_accumulation=False, **kwargs)
    assert metrics == pytest.approx(expected, rel=1e-6)
    # On a GPU the two programs may each pick another cuDNN convolution algorithm (deterministic
    # run to run, not from one program to another): BatchNorm means near 0 then differ by up to
    # 5e-5 (an H200, float32 at 'highest'); on CPU by under 1e-6.
    assert _max_diff(unrolled.batch_stats, rolled.batch_stats) < 1e-4
    assert _max_diff(unrolled.opt_state, rolled.opt_state) < 1e-6
    # Adam divides near-zero gradient moments: float32 noise there moves a few parameters by a
    # fraction of one step (lr = 1e-2; up to 0.09 seen with JAX 0.10.0), the moments above agree.
    assert _max_diff(unrolled.params, rolled.params) < 0.25 * LR
    assert _max_diff(state.batch_stats, rolled.batch_stats) > 1e-3  # the loop updated them
    replicated = jax.tree.map(lambda x: jnp.stack([x] * n), state)
    loops = {}
    for unroll in (True, False):  # the rolled step has one loop more: the accumulation
        p_step = _pmapped_step(
            model, tx, schedule, jax.local_devices()[:n], unroll_accumulation=unroll, **kwargs
        )
        loops[unroll] = p_step.lower(replicated, _shard(_batch(), n)).as_text().count("while")
    assert loops[False] == loops[True] + 1


def test_a_rolled_accumulation_step_is_counted_with_every_micro_batch():
    """XLA counts a loop's body once: the rolled step is counted as its unrolled twin, whose
    FLOPs are those of the same batch without accumulation, give or take the split."""
    model, tx, schedule, state = _setup()
    n = _few_devices()
    devices = jax.local_devices()[:n]
    replicated = jax.tree.map(lambda x: jnp.stack([x] * n), state)
    batch = _shard(_batch(), n)
    steps = {
        (accum, unroll): _pmapped_step(
            model, tx, schedule, devices, grad_accum_steps=accum, unroll_accumulation=unroll
        )
        for accum, unroll in [(1, None), (4, False), (4, True)]
    }
    cost = lambda step, **kw: flops.step_cost(step, replicated, batch, **kw).flops_per_device
    rolled, unrolled = steps[4, False], steps[4, True]
    counted = cost(rolled, count_with=unrolled)
    assert counted == cost(unrolled)
    assert cost(rolled) < 0.5 * counted
    assert counted == pytest.approx(cost(steps[1, None]), rel=0.1)


def _shard_batch_stats(state, model, num_devices):
    """Each device's BatchNorm statistics after a train-mode forward on its own shard of batch 0,
    not averaged: [num_devices, ...] leaves."""

    def forward(batch):
        targets = jnp.zeros((batch["image"].shape[0], NUM_CLASSES))
        images, _ = _augment()(batch["image"], targets, jax.random.PRNGKey(0), axis_name="batch")
        variables = {"params": state.params, "batch_stats": state.batch_stats}
        _, updates = model.apply(
            variables, images, train=True, rngs={"dropout": jax.random.PRNGKey(0)},
            mutable=["batch_stats"],
        )  # fmt: skip
        return updates["batch_stats"]

    stats = jax.pmap(forward, axis_name="batch", devices=jax.local_devices()[:num_devices])
    return jax.tree.map(np.asarray, stats(_shard(_batch(0), num_devices)))


def test_batch_norm_statistics_are_averaged_across_devices():
    """The running statistics after a step on 8 devices are the mean of the 8 shards' own.

    The first BatchNorm sees the same activations however the batch is split: its running mean
    equals one device's on the whole batch (equal shards: the mean of the means is the global
    mean), and its variance (each shard's own, no SyncBatchNorm) falls short of the whole batch's
    by the variance of the shard means.
    """
    model, tx, schedule, state = _setup("lightweight_cnn", use_ema=False)
    eight, _ = _run(state, model, tx, schedule, num_devices=8, steps=1)
    one, _ = _run(state, model, tx, schedule, num_devices=1, steps=1)
    shards = _shard_batch_stats(state, model, num_devices=8)
    assert _max_diff(jax.tree.map(lambda x: x.mean(axis=0), shards), eight.batch_stats) < 1e-6
    assert _max_diff(state.batch_stats, eight.batch_stats) > 1e-3  # they moved

    new = 1 - BATCH_NORM_MOMENTUM  # running = momentum * old + new * batch; the init mean is 0
    stem_one, stem_eight = one.batch_stats["stem_bn"], eight.batch_stats["stem_bn"]
    np.testing.assert_allclose(stem_eight["mean"], stem_one["mean"], rtol=1e-5, atol=1e-7)
    shard_means = shards["stem_bn"]["mean"] / new
    spread = new * shard_means.var(axis=0)
    assert np.all(spread > 1e-5)  # ten times the tolerance below: the comparison can tell
    np.testing.assert_allclose(stem_eight["var"] + spread, stem_one["var"], rtol=0, atol=1e-6)


def test_bfloat16_policy_keeps_float32_params_and_optimizer_state():
    model, tx, schedule, state = _setup(dtype=jnp.bfloat16)
    trained, metrics = _run(state, model, tx, schedule, num_devices=_few_devices())
    for leaf in jax.tree.leaves((trained.params, trained.opt_state, trained.ema_params)):
        if jnp.issubdtype(leaf.dtype, jnp.floating):
            assert leaf.dtype == jnp.float32
    assert np.isfinite(metrics["loss"])


def test_float16_loss_scaling_matches_float32():
    """Scaled float16 gradients are unscaled before clipping and Adam: the gradient norm and the
    update match a float32 run up to float16 rounding. (Left scaled by 2**15, the norm is 32768x
    too large, while clipping and Adam's normalisation hide the scale from the update.)"""
    n = _few_devices()
    model, tx, schedule, state = _setup(use_ema=False)
    reference, expected = _run(state, model, tx, schedule, num_devices=n)
    half = _tiny_model("tiny", jnp.float16)
    trained, metrics = _run(state, half, tx, schedule, num_devices=n, loss_scaling=True)
    # Tolerances for float16 rounding (and TF32 "float32" on a GPU); a scale left in is 32768x.
    np.testing.assert_allclose(metrics["grad_norm"], expected["grad_norm"], rtol=1e-2)
    np.testing.assert_allclose(metrics["loss"], expected["loss"], rtol=1e-2)
    assert _max_diff(trained.params, reference.params) < 0.1 * LR
    assert float(trained.loss_scale.scale) == 2.0**15  # no overflow, not yet grown


def test_float16_loss_scaling_skips_overflowing_updates():
    """An overflowing step leaves params and optimizer state as they were, halves the scale and
    still counts as a step."""
    model, tx, schedule, state = _setup(dtype=jnp.float16, use_ema=False)
    huge = state.replace(loss_scale=state.loss_scale.replace(scale=jnp.float32(3e38)))
    n = _few_devices()
    after, _ = _run(huge, model, tx, schedule, num_devices=n, steps=1, loss_scaling=True)
    assert _max_diff(huge.params, after.params) == 0.0  # overflow: update skipped
    assert _max_diff(huge.opt_state, after.opt_state) == 0.0
    assert int(after.step) == 1
    assert float(after.loss_scale.scale) == pytest.approx(1.5e38)
    ok, metrics = _run(state, model, tx, schedule, num_devices=n, steps=1, loss_scaling=True)
    assert _max_diff(state.params, ok.params) > 0.0
    assert _max_diff(state.opt_state, ok.opt_state) > 0.0
    assert np.isfinite(metrics["loss"])
