"""Host (per-image numpy/OpenCV) augmentation ops: contract and each op's own property."""

import functools
import pickle

import numpy as np
import pytest

from bird_jax.augment.host_ops import clahe, edges, flip_lr, jpeg, median_blur, posterize

OPS = [
    (flip_lr, {}),
    (median_blur, {"ksize": 3}),
    (median_blur, {"ksize": (3, 9)}),
    (clahe, {"clip_limit": 3.0, "tile_grid": 4}),
    (jpeg, {"quality": 40}),
    (jpeg, {"quality": (10, 95)}),
    (posterize, {"bits": 3}),
    (edges, {"low": 50, "high": 150, "blend": 0.5}),
]
RANDOM_OPS = [(median_blur, {"ksize": (3, 9)}), (jpeg, {"quality": (10, 95)})]


def _ids(cases):
    return [f"{op.__name__}-{params}" for op, params in cases]


def _image(seed=0, height=32, width=48):
    """Smooth colour gradients plus noise: non-square to catch H/W mix-ups."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 4, y * 6, (x + y) * 2], axis=-1) + rng.normal(0, 20, (height, width, 3))
    return np.clip(base, 0, 255).astype(np.uint8)


def _apply(op, params, image, seed=0):
    return op(image, np.random.default_rng(seed), **params)


@pytest.mark.parametrize("op,params", OPS, ids=_ids(OPS))
def test_shape_dtype_and_contiguity(op, params):
    out = _apply(op, params, _image())
    assert out.shape == (32, 48, 3)
    assert out.dtype == np.uint8
    assert out.flags.c_contiguous


@pytest.mark.parametrize("op,params", OPS, ids=_ids(OPS))
def test_deterministic_and_accepts_non_contiguous_input(op, params):
    view = _image()[:, ::-1]
    out = _apply(op, params, view, seed=3)
    np.testing.assert_array_equal(out, _apply(op, params, np.ascontiguousarray(view), seed=3))
    np.testing.assert_array_equal(out, _apply(op, params, view, seed=3))


@pytest.mark.parametrize("op,params", OPS, ids=_ids(OPS))
def test_picklable_with_params(op, params):
    bound = functools.partial(op, **params)
    restored = pickle.loads(pickle.dumps(bound))
    image = _image()
    np.testing.assert_array_equal(
        restored(image, np.random.default_rng(1)), bound(image, np.random.default_rng(1))
    )


@pytest.mark.parametrize("op,params", RANDOM_OPS, ids=_ids(RANDOM_OPS))
def test_random_ops_vary_with_seed(op, params):
    image = _image()
    outputs = {_apply(op, params, image, seed).tobytes() for seed in range(8)}
    assert len(outputs) > 1


def test_flip_mirrors_and_twice_is_identity():
    image = _image()
    once = flip_lr(image, np.random.default_rng(0))
    np.testing.assert_array_equal(once[:, 0], image[:, -1])
    np.testing.assert_array_equal(flip_lr(once, np.random.default_rng(0)), image)


def test_median_blur_removes_isolated_salt_noise():
    image = np.full((32, 32, 3), 90, np.uint8)
    image[4::8, 4::8] = 255
    for ksize in (3, (3, 7)):
        np.testing.assert_array_equal(_apply(median_blur, {"ksize": ksize}, image), 90)


def test_median_blur_range_draws_only_odd_sizes_in_range():
    # A 3-pixel-wide stripe fills 3/k of a k x k window: it survives k = 3, 5 but not 7, 9.
    image = np.zeros((32, 32, 3), np.uint8)
    image[:, 14:17] = 255
    survived = {
        bool(_apply(median_blur, {"ksize": (3, 9)}, image, seed).max()) for seed in range(20)
    }
    assert survived == {True, False}


def test_clahe_raises_contrast_of_a_low_contrast_image():
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:48, 0:48]
    grey = 110 + (x + y) / 6 + rng.normal(0, 2, (48, 48))
    image = np.repeat(np.clip(grey, 0, 255).astype(np.uint8)[..., None], 3, axis=-1)
    out = _apply(clahe, {}, image)
    assert not np.array_equal(out, image)
    assert out.astype(float).std() > 1.5 * image.astype(float).std()
    # Only lightness changes: a grey image stays (nearly) grey.
    assert np.abs(out.astype(int) - out[..., :1]).max() <= 2


def test_jpeg_low_quality_changes_image_but_stays_close():
    image = _image()
    out = _apply(jpeg, {"quality": 10}, image)
    error = np.abs(out.astype(int) - image).mean()
    assert 0 < error < 25


def test_jpeg_keeps_colours_in_rgb_order():
    image = np.zeros((32, 32, 3), np.uint8)
    image[..., 0] = 220  # pure red; a BGR mix-up would turn it blue
    out = _apply(jpeg, {"quality": 30}, image)
    np.testing.assert_allclose(out.mean(axis=(0, 1)), [220, 0, 0], atol=6)


def test_jpeg_quality_range_is_inclusive():
    image = _image()
    fixed = {_apply(jpeg, {"quality": q}, image).tobytes() for q in (20, 21)}
    drawn = {_apply(jpeg, {"quality": (20, 21)}, image, seed).tobytes() for seed in range(16)}
    assert drawn == fixed


@pytest.mark.parametrize("bits", [1, 2, 4, 7])
def test_posterize_leaves_two_to_the_bits_levels(bits):
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    out = _apply(posterize, {"bits": bits}, image)
    levels = np.unique(out)
    assert len(levels) == 2**bits
    assert np.all(levels % 2 ** (8 - bits) == 0)
    assert np.all(out <= image) and np.all(image - out < 2 ** (8 - bits))


def test_posterize_eight_bits_is_identity():
    image = _image()
    np.testing.assert_array_equal(_apply(posterize, {"bits": 8}, image), image)


def test_edges_of_flat_image_are_black_and_of_a_square_are_white():
    flat = np.full((32, 32, 3), 140, np.uint8)
    np.testing.assert_array_equal(_apply(edges, {"blend": 1.0}, flat), 0)
    square = flat.copy()
    square[8:24, 8:24] = 20
    out = _apply(edges, {"blend": 1.0}, square)
    assert set(np.unique(out)) == {0, 255}
    assert out[16, 16].max() == 0  # inside the square: no edge


def test_edges_blend_interpolates_between_image_and_edge_map():
    image = _image()
    np.testing.assert_array_equal(_apply(edges, {"blend": 0.0}, image), image)
    edge_map = _apply(edges, {"blend": 1.0}, image).astype(float)
    half = _apply(edges, {"blend": 0.5}, image).astype(float)
    np.testing.assert_allclose(half, (edge_map + image) / 2, atol=1)


@pytest.mark.parametrize(
    "op,params,name",
    [
        (median_blur, {"ksize": 4}, "ksize"),
        (median_blur, {"ksize": 1}, "ksize"),
        (median_blur, {"ksize": (3, 6)}, "ksize"),
        (median_blur, {"ksize": (7, 3)}, "ksize"),
        (median_blur, {"ksize": 3.0}, "ksize"),
        (clahe, {"clip_limit": 0}, "clip_limit"),
        (clahe, {"clip_limit": -1.0}, "clip_limit"),
        (clahe, {"tile_grid": 0}, "tile_grid"),
        (clahe, {"tile_grid": 2.5}, "tile_grid"),
        (jpeg, {"quality": 0}, "quality"),
        (jpeg, {"quality": (50, 101)}, "quality"),
        (jpeg, {"quality": (90, 30)}, "quality"),
        (jpeg, {"quality": (30, 60, 90)}, "quality"),
        (posterize, {"bits": 0}, "bits"),
        (posterize, {"bits": 9}, "bits"),
        (posterize, {"bits": True}, "bits"),
        (edges, {"low": -1}, "low"),
        (edges, {"low": 200, "high": 100}, "high"),
        (edges, {"blend": 1.5}, "blend"),
        (edges, {"blend": "half"}, "blend"),
    ],
)
def test_bad_params_raise_value_error_naming_the_param(op, params, name):
    with pytest.raises(ValueError, match=name):
        _apply(op, params, _image())


@pytest.mark.parametrize("op,params", OPS, ids=_ids(OPS))
def test_rejects_images_that_are_not_uint8_rgb(op, params):
    with pytest.raises(ValueError, match="uint8"):
        _apply(op, params, _image().astype(np.float32))
    with pytest.raises(ValueError, match="uint8"):
        _apply(op, params, _image()[..., 0])
