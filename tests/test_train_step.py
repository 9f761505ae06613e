"""The shared pmap train step: device count, accumulation and precision must not change the math."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bird_jax import augment, models, optim
from bird_jax import config as defaults
from bird_jax.models.convnext import ConvNeXt
from bird_jax.train_step import create_train_state, train_step

IMAGE = 32
GLOBAL_BATCH = 16
LR = 1e-2
NUM_CLASSES = 5
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


def _run(state, model, tx, schedule, num_devices, steps=2, spec="resize", **step_kwargs):
    devices = jax.local_devices()[:num_devices]
    if len(devices) < num_devices:  # e.g. one GPU (benchmarks/device); CPU tests fake 8 devices
        pytest.skip(f"needs {num_devices} {jax.default_backend()} devices, found {len(devices)}")
    step_kwargs = dict(augment=_augment(spec), num_classes=NUM_CLASSES, **step_kwargs)
    p_step = jax.pmap(
        lambda s, b: train_step(s, b, model=model, tx=tx, schedule=schedule, **step_kwargs),
        axis_name="batch",
        devices=devices,
    )
    replicated = jax.tree.map(lambda x: jnp.stack([x] * num_devices), state)
    metrics = None
    for i in range(steps):
        batch = jax.tree.map(lambda x: x.reshape(num_devices, -1, *x.shape[1:]), _batch(i))
        replicated, metrics = p_step(replicated, batch)
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
    np.testing.assert_allclose(m1["accuracy"], m8["accuracy"])
    assert int(eight.step) == 2


def test_gradient_accumulation_matches_large_batch():
    model, tx, schedule, state = _setup()
    n = _few_devices()
    big, _ = _run(state, model, tx, schedule, num_devices=n, grad_accum_steps=1)
    for accum in (2, 4):
        accumulated, _ = _run(state, model, tx, schedule, num_devices=n, grad_accum_steps=accum)
        assert _max_diff(big.params, accumulated.params) < 1e-2 * LR


def test_batch_norm_statistics_are_averaged_across_devices():
    model, tx, schedule, state = _setup("lightweight_cnn", use_ema=False)
    trained, _ = _run(state, model, tx, schedule, num_devices=4, steps=1)
    # Every replica ends with the same statistics, and they moved away from the init.
    assert _max_diff(state.batch_stats, trained.batch_stats) > 1e-4


def test_bfloat16_policy_keeps_float32_params_and_optimizer_state():
    model, tx, schedule, state = _setup(dtype=jnp.bfloat16)
    trained, metrics = _run(state, model, tx, schedule, num_devices=_few_devices())
    for leaf in jax.tree.leaves((trained.params, trained.opt_state, trained.ema_params)):
        if jnp.issubdtype(leaf.dtype, jnp.floating):
            assert leaf.dtype == jnp.float32
    assert np.isfinite(metrics["loss"])


def test_float16_loss_scaling_skips_overflowing_updates():
    model, tx, schedule, state = _setup(dtype=jnp.float16, use_ema=False)
    huge = state.replace(loss_scale=state.loss_scale.replace(scale=jnp.float32(3e38)))
    n = _few_devices()
    after, _ = _run(huge, model, tx, schedule, num_devices=n, steps=1, loss_scaling=True)
    assert _max_diff(huge.params, after.params) == 0.0  # overflow: update skipped
    assert float(after.loss_scale.scale) == pytest.approx(1.5e38)
    ok, metrics = _run(state, model, tx, schedule, num_devices=n, steps=1, loss_scaling=True)
    assert _max_diff(state.params, ok.params) > 0.0
    assert np.isfinite(metrics["loss"])
