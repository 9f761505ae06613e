"""Differentiable Siamese Augmentation: each op against numpy, gradients, Siamese sharing, jit."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bird_jax.distill import dsa

GROUPS = list(dsa.GROUPS)
# Explicit parameters for each op, chosen away from the identity.
PARAMS = {
    "brightness": jnp.float32(0.8),
    "saturation": jnp.float32(0.3),
    "contrast": jnp.float32(0.9),
    "crop": jnp.array([2, -1]),
    "cutout": jnp.array([1, 4]),
    "flip": jnp.bool_(True),
    "scale": jnp.array([1.1, 0.9], jnp.float32),
    "rotate": jnp.float32(10.0),
}


def _images(count: int, h: int = 8, w: int = 6, seed: int = 0) -> jax.Array:
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.normal(size=(count, h, w, 3)), jnp.float32)


def _key(seed: int) -> jax.Array:
    return jax.random.PRNGKey(seed)


_KEYS = jnp.stack([_key(seed) for seed in range(12)])
_shared = jax.jit(functools.partial(dsa.augment, shared=True))


def test_colour_formulas():
    x = np.asarray(_images(1)[0])
    np.testing.assert_allclose(dsa.brightness(x, 0.8), x + 0.3, atol=1e-6)
    grey = x.mean(-1, keepdims=True)
    np.testing.assert_allclose(dsa.saturation(x, 0.3), (x - grey) * 0.6 + grey, atol=1e-5)
    np.testing.assert_allclose(dsa.contrast(x, 0.9), (x - x.mean()) * 1.4 + x.mean(), atol=1e-5)


@pytest.mark.parametrize("shift", [(2, -1), (-4, 3), (0, 0), (9, 0)])
def test_crop_is_a_zero_filled_shift(shift):
    x = np.asarray(_images(1)[0])
    dy, dx = shift
    expected = np.roll(x, (-dy, -dx), axis=(0, 1))
    rows, cols = np.arange(8) + dy, np.arange(6) + dx
    expected[(rows < 0) | (rows >= 8)] = 0
    expected[:, (cols < 0) | (cols >= 6)] = 0
    np.testing.assert_array_equal(dsa.crop(x, jnp.array(shift)), expected)


@pytest.mark.parametrize("centre", [(0, 0), (4, 3), (8, 6)])
def test_cutout_zeroes_a_half_size_box(centre):
    x = np.asarray(_images(1)[0])  # 8 x 6: a 4 x 3 box, from centre - (2, 1), clipped
    expected = x.copy()
    top, left = centre[0] - 2, centre[1] - 1
    expected[max(top, 0) : top + 4, max(left, 0) : left + 3] = 0
    np.testing.assert_array_equal(dsa.cutout(x, jnp.array(centre)), expected)


def test_flip_mirrors_the_width():
    x = _images(1)[0]
    np.testing.assert_array_equal(dsa.flip(x, jnp.bool_(True)), x[:, ::-1])
    np.testing.assert_array_equal(dsa.flip(x, jnp.bool_(False)), x)


def test_affine_identity_and_exact_cases():
    x = _images(1, 5, 5)[0]
    np.testing.assert_allclose(dsa.scale(x, jnp.ones(2)), x, atol=1e-5)
    np.testing.assert_allclose(dsa.rotate(x, jnp.float32(0.0)), x, atol=1e-5)
    # x = width axis, y = height axis: 90 degrees maps output (i, j) to input (j, W - 1 - i).
    np.testing.assert_allclose(dsa.rotate(x, jnp.float32(90.0)), np.rot90(x), atol=1e-5)
    # align_corners=True: sx = 0.5 samples columns [1, 1.5, 2, 2.5, 3] of 5.
    cols = np.asarray(x)[:, [1, 1, 2, 2, 3]] + np.asarray(x)[:, [1, 2, 2, 3, 3]]
    np.testing.assert_allclose(dsa.scale(x, jnp.array([0.5, 1.0])), cols / 2, atol=1e-5)
    # Zeros padding per neighbour (grid_sample's): width 3, sx = 1.5 samples [-0.5, 1, 2.5].
    x3 = _images(1, 4, 3)[0]
    expected = np.asarray(x3) * np.array([0.5, 1.0, 0.5])[None, :, None]
    np.testing.assert_allclose(dsa.scale(x3, jnp.array([1.5, 1.0])), expected, atol=1e-5)


def test_samplers_stay_in_the_official_ranges():
    keys = jax.random.split(_key(0), 512)
    draw = lambda name, size=(32, 32): np.asarray(
        jax.vmap(dsa.OPS[name].sample, in_axes=(0, None))(keys, size)
    )
    crop = draw("crop", (32, 16))
    assert crop[:, 0].min() == -4 and crop[:, 0].max() == 4  # int(32 * 0.125 + 0.5)
    assert crop[:, 1].min() == -2 and crop[:, 1].max() == 2
    cutout = draw("cutout", (32, 10))  # boxes of 16 (even: centres up to 32) and 5 (odd: 9)
    assert cutout[:, 0].min() == 0 and cutout[:, 0].max() == 32
    assert cutout[:, 1].min() == 0 and cutout[:, 1].max() == 9
    scale = draw("scale")
    assert scale.min() >= 1 / 1.2 and scale.max() <= 1.2 and scale.std() > 0.05
    rotate = draw("rotate")
    assert rotate.min() >= -15 and rotate.max() <= 15 and rotate.std() > 3
    assert 0.4 < draw("flip").mean() < 0.6


@pytest.mark.parametrize("name", list(dsa.OPS))
def test_every_op_passes_gradients(name):
    x = _images(1)[0]
    grad = jax.grad(lambda x: jnp.sum(dsa.OPS[name].apply(x, PARAMS[name]) ** 2))(x)
    assert np.all(np.isfinite(grad)) and np.any(grad != 0)


@pytest.mark.parametrize("shared", [True, False])
def test_gradients_through_augment(shared):
    def loss(key: jax.Array, x: jax.Array) -> jax.Array:
        return jnp.sum(dsa.augment(key, x, shared=shared) ** 2)

    # The twelve keys draw every group (test_each_key_applies_one_group_and_keys_differ).
    grads = jax.jit(jax.vmap(jax.grad(loss, argnums=1), in_axes=(0, None)))(_KEYS, _images(2))
    assert np.all(np.isfinite(grads))
    assert np.all(np.any(grads != 0, axis=(1, 2, 3, 4)))


def test_shared_mode_ignores_the_batch_size():
    big = _images(8)
    for seed in range(8):
        np.testing.assert_array_equal(_shared(_key(seed), big)[:3], _shared(_key(seed), big[:3]))


@functools.cache
def _each_group(shared: bool):
    """Jitted (keys [K], images) -> [K, groups, N, H, W, C]: every group alone, per key."""
    each = lambda key, x: jnp.stack([dsa.augment(key, x, g, shared=shared) for g in GROUPS])
    return jax.jit(jax.vmap(each, in_axes=(0, None)))


def test_shared_mode_applies_one_transform_and_per_image_mode_does_not():
    copies = jnp.broadcast_to(_images(1), (4, 8, 6, 3))
    shared, own = _each_group(True)(_KEYS, copies), _each_group(False)(_KEYS, copies)
    np.testing.assert_array_equal(shared, jnp.broadcast_to(shared[..., :1, :, :, :], shared.shape))
    differs = np.any(own[:, :, 1:] != own[:, :, :1], axis=(2, 3, 4, 5))  # [keys, groups]
    flip = GROUPS.index("flip")
    assert np.delete(differs, flip, axis=1).all() and differs[:, flip].any()


def test_each_key_applies_one_group_and_keys_differ():
    x = _images(4)
    singles = _each_group(True)(_KEYS, x)
    chosen = []
    for key, single in zip(_KEYS, singles, strict=True):
        full = _shared(key, x)
        chosen += [
            g for g, y in zip(GROUPS, single, strict=True) if np.allclose(full, y, atol=1e-6)
        ]
    assert len(chosen) == len(_KEYS) and set(chosen) == set(GROUPS)
    outputs = [np.asarray(_shared(key, x)) for key in _KEYS[:6]]
    assert all(not np.array_equal(a, b) for i, a in enumerate(outputs) for b in outputs[i + 1 :])


def test_jit_and_vmap_match_eager():
    x = _images(3)
    augment = jax.jit(functools.partial(dsa.augment, strategy="color_crop_cutout", shared=False))
    eager = dsa.augment(_KEYS[0], x, "color_crop_cutout", shared=False)
    np.testing.assert_allclose(augment(_KEYS[0], x), eager, atol=1e-6)
    batches = jax.jit(jax.vmap(lambda k, x: dsa.augment(k, x, "crop_flip", shared=True)))
    assert batches(_KEYS[:2], jnp.stack([x[:2], x[1:]])).shape == (2, 2, 8, 6, 3)


def test_strategy_parsing():
    assert dsa.parse_strategy(dsa.STRATEGY) == GROUPS
    assert dsa.parse_strategy("color_crop_cutout") == ["color", "crop", "cutout"]
    x = _images(2)
    assert dsa.augment(_key(0), x, "none", shared=True) is x
    for bad in ("colour", "color__crop", "color_Flip"):
        with pytest.raises(ValueError, match="known: color, crop, cutout, flip, scale, rotate"):
            dsa.augment(_key(0), x, bad, shared=True)
    with pytest.raises(ValueError, match="N, H, W, C"):
        dsa.augment(_key(0), x[0], shared=True)
