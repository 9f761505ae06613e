"""Device per-image ops: the common contract (jit + vmap), each op's own property, bad params."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bird_jax.augment import device_ops

MEAN_STD = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}
OPS = {
    "brightness": (device_ops.brightness, {}),
    "contrast": (device_ops.contrast, {}),
    "saturation": (device_ops.saturation, {}),
    "hue": (device_ops.hue, {"max_delta": 0.2}),
    "color_jitter": (device_ops.color_jitter, {"hue": 0.1}),
    "gaussian_noise": (device_ops.gaussian_noise, {"sigma": (0.02, 0.1)}),
    "salt_pepper": (device_ops.salt_pepper, {"amount": 0.1}),
    "grid_mask": (device_ops.grid_mask, {}),
    "random_erasing": (device_ops.random_erasing, {"max_count": 2, "mode": "rand", **MEAN_STD}),
}


def _images(count: int, size: int = 16, low: float = 0.0, high: float = 1.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.uniform(low, high, (count, size, size, 3)), jnp.float32)


def _keys(count: int, seed: int = 0) -> jax.Array:
    return jax.random.split(jax.random.PRNGKey(seed), count)


def _batched(op, **params):
    """The op under jit + vmap, one key per image, as the device pipeline runs it."""
    return jax.jit(jax.vmap(functools.partial(op, **params)))


def _grey(images: jax.Array) -> jax.Array:
    return images @ jnp.asarray([0.299, 0.587, 0.114])


@pytest.mark.parametrize("name", OPS)
def test_contract_under_jit_and_vmap(name):
    op, params = OPS[name]
    op = functools.partial(op, **params)

    @jax.jit
    def batched_and_single(images, keys):  # one compile for both
        return jax.vmap(op)(images, keys), op(images[1], keys[1])

    images, keys = _images(4), _keys(4)
    out, single = batched_and_single(images, keys)
    assert out.shape == images.shape and out.dtype == jnp.float32
    if name != "random_erasing":  # erasing fills normalised noise and does not clip
        assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    np.testing.assert_allclose(single, out[1], atol=1e-6)
    np.testing.assert_array_equal(out, batched_and_single(images, keys)[0])
    other = batched_and_single(images, _keys(4, seed=1))[0]
    assert all(not np.array_equal(a, b) for a, b in zip(out, other, strict=True))


def test_brightness_shifts_every_pixel_by_one_bounded_delta():
    images = _images(8, low=0.3, high=0.7)
    out = _batched(device_ops.brightness, max_delta=0.2)(images, _keys(8))
    shift = out - images
    np.testing.assert_allclose(shift, shift[:, :1, :1, :1] * jnp.ones_like(shift), atol=1e-6)
    deltas = shift[:, 0, 0, 0]
    assert float(jnp.abs(deltas).max()) <= 0.2 + 1e-6
    assert len(np.unique(np.round(deltas, 4))) == 8


def test_contrast_keeps_the_mean_luma_and_scales_deviations():
    images = _images(8, low=0.4, high=0.6)
    out = _batched(device_ops.contrast, lower=0.5, upper=1.5)(images, _keys(8))
    mean_in = _grey(images).mean(axis=(1, 2))
    np.testing.assert_allclose(_grey(out).mean(axis=(1, 2)), mean_in, atol=1e-5)
    factor = (out - mean_in[:, None, None, None]) / (images - mean_in[:, None, None, None])
    factor = np.median(np.asarray(factor).reshape(8, -1), axis=1)
    assert np.all((factor >= 0.5 - 1e-4) & (factor <= 1.5 + 1e-4)) and np.ptp(factor) > 0.05


def test_saturation_leaves_grey_alone_and_keeps_luma():
    grey = jnp.repeat(_images(4)[..., :1], 3, axis=-1)
    saturate = _batched(device_ops.saturation, lower=0.0, upper=2.0)
    np.testing.assert_allclose(saturate(grey, _keys(4)), grey, atol=1e-6)
    colour = _images(4, low=0.45, high=0.55)
    out = saturate(colour, _keys(4))
    np.testing.assert_allclose(_grey(out), _grey(colour), atol=1e-5)
    assert float(jnp.abs(out - colour).max()) > 0.01


def test_hue_keeps_value_and_saturation():
    images = _images(4)
    out = _batched(device_ops.hue, max_delta=0.5)(images, _keys(4))

    def value_and_range(x):
        return x.max(axis=-1), x.max(axis=-1) - x.min(axis=-1)

    for before, after in zip(value_and_range(images), value_and_range(out), strict=True):
        np.testing.assert_allclose(after, before, atol=1e-5)
    assert float(jnp.abs(out - images).max()) > 0.05


def test_color_jitter_with_zero_strengths_is_the_identity():
    images = _images(2)
    zero = {"brightness": 0.0, "contrast": 0.0, "saturation": 0.0, "hue": 0.0}
    np.testing.assert_array_equal(
        _batched(device_ops.color_jitter, **zero)(images, _keys(2)), images
    )


def _np_brightness(x, factor):
    return np.clip(factor * x, 0, 1)


def _np_saturation(x, factor):
    grey = x @ np.array([0.299, 0.587, 0.114])
    return np.clip(grey[..., None] + factor * (x - grey[..., None]), 0, 1)


def test_color_jitter_applies_brightness_and_saturation_in_a_random_order():
    # Pixel 0 (grey) reveals the brightness factor, pixel 1 (dark, never clipped) the saturation
    # factor; pixel 2 (bright red) clips, so it tells which order was used.
    pixels = np.array([[0.1, 0.1, 0.1], [0.2, 0.1, 0.05], [0.9, 0.3, 0.1]], np.float32)
    images = jnp.broadcast_to(jnp.asarray(pixels)[None], (32, 1, 3, 3))
    jitter = _batched(device_ops.color_jitter, brightness=0.5, contrast=0.0, saturation=0.5)
    out = np.asarray(jitter(images, _keys(32)))[:, 0]
    b = out[:, 0, 0] / 0.1
    grey = pixels[1] @ np.array([0.299, 0.587, 0.114])
    s = (out[:, 1, 0] / b - grey) / (pixels[1, 0] - grey)
    assert np.all((b >= 0.5 - 1e-4) & (b <= 1.5 + 1e-4) & (s >= 0.5 - 1e-4) & (s <= 1.5 + 1e-4))
    orders = []
    for i in range(32):
        bright_first = _np_saturation(_np_brightness(pixels[2], b[i]), s[i])
        saturate_first = _np_brightness(_np_saturation(pixels[2], s[i]), b[i])
        matches = (
            np.allclose(out[i, 2], bright_first, atol=1e-4),
            np.allclose(out[i, 2], saturate_first, atol=1e-4),
        )
        assert any(matches)
        orders.append(matches)
    assert (True, False) in orders and (False, True) in orders


def test_gaussian_noise_has_the_requested_spread():
    flat = jnp.full((8, 32, 32, 3), 0.5, jnp.float32)
    fixed = _batched(device_ops.gaussian_noise, sigma=0.05)(flat, _keys(8)) - 0.5
    np.testing.assert_allclose(fixed.std(axis=(1, 2, 3)), 0.05, rtol=0.1)
    ranged = _batched(device_ops.gaussian_noise, sigma=(0.02, 0.1))(flat, _keys(8)) - 0.5
    spread = ranged.std(axis=(1, 2, 3))
    assert float(spread.min()) > 0.02 * 0.9 and float(spread.max()) < 0.1 * 1.1
    assert float(jnp.ptp(spread)) > 0.01


def test_salt_pepper_sets_about_amount_of_whole_pixels_to_black_or_white():
    images = _images(4, size=64, low=0.1, high=0.9)
    out = _batched(device_ops.salt_pepper, amount=0.1, salt_ratio=0.25)(images, _keys(4))
    salt = jnp.all(out == 1.0, axis=-1)
    pepper = jnp.all(out == 0.0, axis=-1)
    changed = jnp.any(out != images, axis=-1)
    np.testing.assert_array_equal(changed, salt | pepper)
    assert abs(float(changed.mean()) - 0.1) < 0.02
    assert abs(float(salt.sum() / changed.sum()) - 0.25) < 0.05


def test_grid_mask_hides_about_ratio_squared_in_square_holes():
    images = _images(16, size=32, low=0.1, high=1.0)
    out = _batched(device_ops.grid_mask, ratio=0.5, fill=0.0)(images, _keys(16))
    hidden = jnp.all(out == 0.0, axis=-1)
    np.testing.assert_array_equal(jnp.any(out != images, axis=-1), hidden)
    assert abs(float(hidden.mean()) - 0.25) < 0.06
    # A grid: a hidden row/column pattern is the outer product of 1-D bands.
    rows, cols = hidden.any(axis=2), hidden.any(axis=1)
    np.testing.assert_array_equal(hidden, rows[:, :, None] & cols[:, None, :])


def _erased_box(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """The changed pixels; asserts they form one filled rectangle (or nothing)."""
    changed = np.any(before != after, axis=-1)
    if changed.any():
        rows, cols = np.flatnonzero(changed.any(1)), np.flatnonzero(changed.any(0))
        assert changed[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].all()
        assert changed.sum() == len(rows) * len(cols)
    return changed


def test_random_erasing_erases_one_box_of_area_within_bounds():
    images = _images(16, size=32)
    erase = _batched(
        device_ops.random_erasing, mode="pixel", min_area=0.1, max_area=0.3, **MEAN_STD
    )
    out = np.asarray(erase(images, _keys(16)))
    # Rounding the box sides to whole pixels moves the area by up to about 0.035 of 32 x 32.
    fractions = [_erased_box(a, b).mean() for a, b in zip(np.asarray(images), out, strict=True)]
    assert all(0.1 - 0.035 <= f <= 0.3 + 0.035 for f in fractions)


@pytest.mark.parametrize("mode", ["const", "rand", "pixel"])
def test_random_erasing_fills_are_timm_values_after_normalisation(mode):
    images = np.asarray(_images(8, size=32))
    mean, std = np.array(MEAN_STD["mean"]), np.array(MEAN_STD["std"])
    erase = _batched(device_ops.random_erasing, mode=mode, min_area=0.25, max_area=0.3, **MEAN_STD)
    out = np.asarray(erase(jnp.asarray(images), _keys(8)))
    for before, after in zip(images, out, strict=True):
        normalised = (after[_erased_box(before, after)] - mean) / std
        if mode == "const":
            np.testing.assert_allclose(normalised, 0.0, atol=1e-5)
        elif mode == "rand":
            np.testing.assert_allclose(normalised, normalised[:1].repeat(len(normalised), 0))
        else:
            assert abs(normalised.mean()) < 0.2 and abs(normalised.std() - 1) < 0.15


def test_random_erasing_count_splits_the_area_over_up_to_max_count_boxes():
    images = _images(16, size=32)
    erase = _batched(
        device_ops.random_erasing, mode="rand", max_count=3, min_area=0.1, max_area=0.3, **MEAN_STD
    )
    out = np.asarray(erase(images, _keys(16)))
    counts = []
    for before, after in zip(np.asarray(images), out, strict=True):
        erased = after[np.any(before != after, axis=-1)]
        colours = np.unique(erased, axis=0)  # 'rand' gives each box its own colour
        counts.append(len(colours))
        for colour in colours:  # each of count boxes has area fraction <= max_area / count
            fraction = np.all(after == colour, axis=-1).mean()
            assert fraction <= 0.3 / len(colours) + 0.035
    assert set(counts) <= {1, 2, 3} and len(set(counts)) > 1


@pytest.mark.parametrize(
    "op, params, name",
    [
        (device_ops.brightness, {"max_delta": -0.1}, "max_delta"),
        (device_ops.contrast, {"lower": 1.2, "upper": 0.8}, "lower and upper"),
        (device_ops.saturation, {"lower": -0.1}, "lower and upper"),
        (device_ops.hue, {"max_delta": 0.7}, "max_delta"),
        (device_ops.color_jitter, {"contrast": -1.0}, "contrast"),
        (device_ops.color_jitter, {"hue": 0.6}, "hue"),
        (device_ops.gaussian_noise, {"sigma": (0.2, 0.1)}, "sigma"),
        (device_ops.salt_pepper, {"amount": 1.5}, "amount"),
        (device_ops.salt_pepper, {"salt_ratio": "half"}, "salt_ratio"),
        (device_ops.grid_mask, {"ratio": 0.0}, "ratio"),
        (device_ops.grid_mask, {"d_range": (0.0, 0.2)}, "d_range"),
        (device_ops.random_erasing, {"mode": "noise", **MEAN_STD}, "mode"),
        (device_ops.random_erasing, {"max_count": 0, **MEAN_STD}, "max_count"),
        (device_ops.random_erasing, {"min_area": 0.5, "max_area": 0.4, **MEAN_STD}, "min_area"),
        (device_ops.random_erasing, {"max_aspect": 0.1, **MEAN_STD}, "max_aspect"),
        (device_ops.random_erasing, {"mean": (0.5, 0.5), "std": (0.2,) * 3}, "mean"),
        (device_ops.random_erasing, {"mean": (0.5,) * 3, "std": (0.2, 0.0, 0.2)}, "std"),
    ],
)
def test_bad_params_raise_value_error_naming_the_param(op, params, name):
    with pytest.raises(ValueError, match=name):
        jax.eval_shape(functools.partial(op, **params), _images(1)[0], jax.random.PRNGKey(0))
