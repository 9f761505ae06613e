"""RandAugment: timm policy-string parsing and the host op's contract."""

import functools
import math
import pickle

import numpy as np
import pytest
from PIL import Image, ImageOps

from bird_jax.augment.randaugment import _OPS_BY_INCREASING, parse_policy, randaugment


def _image(seed=0, height=32, width=40):
    return np.random.default_rng(seed).integers(30, 220, (height, width, 3), dtype=np.uint8)


def test_parse_convnext_policy():
    assert parse_policy("rand-m9-mstd0.5-inc1") == {
        "magnitude": 9,
        "num_layers": 2,
        "magnitude_std": 0.5,
        "magnitude_max": 10,
        "increasing": True,
        "prob": 0.5,
    }


def test_parse_all_sections_in_any_order():
    settings = parse_policy("rand-p0.7-n3-mmax15-inc0-mstd101-m12")
    assert settings == {
        "magnitude": 12,
        "num_layers": 3,
        "magnitude_std": math.inf,  # mstd > 100 means uniform in [0, m]
        "magnitude_max": 15,
        "increasing": False,
        "prob": 0.7,
    }


def test_parse_defaults_follow_timm():
    assert parse_policy("rand") == {
        "magnitude": 10,
        "num_layers": 2,
        "magnitude_std": 0.0,
        "magnitude_max": 10,
        "increasing": False,
        "prob": 0.5,
    }


@pytest.mark.parametrize(
    "policy,message",
    [
        ("augmix-m9", "start with 'rand'"),
        ("rand-w0", "Unknown RandAugment section 'w0'"),
        ("rand-m", "Malformed"),
        ("rand-m9--n2", "Malformed"),
        ("rand-M9", "Malformed"),
        ("rand-m9-m8", "given twice"),
        ("rand-m9.5", "'m' must be of type int"),
        ("rand-n0", "'n' must be in"),
        ("rand-p1.5", "'p' must be in"),
        ("rand-inc2", "'inc' must be in"),
        ("rand-mmax0", "'mmax' must be in"),
    ],
)
def test_parse_errors_say_what_is_wrong(policy, message):
    with pytest.raises(ValueError, match=message):
        parse_policy(policy)


def test_unknown_section_error_lists_allowed_sections():
    with pytest.raises(ValueError, match=r"m<int>, n<int>, mstd<float>, mmax<int>, inc<0\|1>"):
        parse_policy("rand-x3")


def test_op_sets_match_timm():
    assert sorted(_OPS_BY_INCREASING[True]) == sorted(
        [
            "AutoContrast",
            "Equalize",
            "Invert",
            "Rotate",
            "PosterizeIncreasing",
            "SolarizeIncreasing",
            "SolarizeAdd",
            "ColorIncreasing",
            "ContrastIncreasing",
            "BrightnessIncreasing",
            "SharpnessIncreasing",
            "ShearX",
            "ShearY",
            "TranslateXRel",
            "TranslateYRel",
        ]
    )
    non_increasing = {name.removesuffix("Increasing") for name in _OPS_BY_INCREASING[True]}
    assert sorted(_OPS_BY_INCREASING[False]) == sorted(non_increasing)


@pytest.mark.parametrize("policy", ["rand-m9-mstd0.5-inc1", "rand-m10-n3-mstd101", "rand-m5-p1"])
def test_contract_shape_dtype_determinism(policy):
    image = _image()
    outputs = []
    for seed in range(6):
        out = randaugment(image[:, ::-1], np.random.default_rng(seed), policy=policy)
        assert out.shape == image.shape and out.dtype == np.uint8 and out.flags.c_contiguous
        again = randaugment(image[:, ::-1], np.random.default_rng(seed), policy=policy)
        np.testing.assert_array_equal(out, again)
        outputs.append(out.tobytes())
    assert len(set(outputs)) > 1


def test_magnitude_zero_applies_only_magnitude_free_ops():
    """At m0 every op with a level is the identity (rotate 0, enhance 1.0, solarize at 256...)."""
    image = _image()
    pil = Image.fromarray(image)
    free = [
        lambda im: im,
        ImageOps.autocontrast,
        ImageOps.equalize,
        ImageOps.invert,
        lambda im: ImageOps.posterize(im, 4),  # 'increasing' posterize keeps 4 bits at m0
    ]
    allowed = {np.asarray(second(first(pil))).tobytes() for first in free for second in free}
    for seed in range(40):
        out = randaugment(image, np.random.default_rng(seed), policy="rand-m0-mstd0-inc1")
        assert out.tobytes() in allowed


def test_probability_zero_is_identity_and_one_always_changes():
    image = _image()
    for seed in range(10):
        rng = np.random.default_rng(seed)
        np.testing.assert_array_equal(randaugment(image, rng, policy="rand-m9-p0"), image)
        rng = np.random.default_rng(seed)
        changed = randaugment(image, rng, policy="rand-m10-n2-p1-inc1")
        assert not np.array_equal(changed, image)


def test_geometric_ops_fill_with_the_fill_colour():
    image = np.full((32, 32, 3), 200, np.uint8)
    fill = (1, 2, 3)
    found = False
    for seed in range(30):
        out = randaugment(image, np.random.default_rng(seed), policy="rand-m10-n1-p1", fill=fill)
        found |= bool(np.all(out == fill, axis=-1).any())
    assert found


def test_fixed_interpolation_runs_and_matches_its_seed():
    image = _image()
    for interpolation in ("bilinear", "bicubic"):
        first = randaugment(image, np.random.default_rng(5), interpolation=interpolation)
        second = randaugment(image, np.random.default_rng(5), interpolation=interpolation)
        np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize(
    "kwargs,name",
    [
        ({"policy": "rand-q1"}, "RandAugment section"),
        ({"fill": (1, 2)}, "fill"),
        ({"fill": (0, 0, 256)}, "fill"),
        ({"interpolation": "nearest"}, "interpolation"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs, name):
    with pytest.raises(ValueError, match=name):
        randaugment(_image(), np.random.default_rng(0), **kwargs)


def test_picklable_with_params():
    bound = functools.partial(randaugment, policy="rand-m7-n3-mstd1-inc1", fill=(0, 0, 0))
    restored = pickle.loads(pickle.dumps(bound))
    image = _image()
    np.testing.assert_array_equal(
        restored(image, np.random.default_rng(2)), bound(image, np.random.default_rng(2))
    )


@pytest.mark.parametrize("inc", [0, 1])
def test_every_op_survives_magnitudes_beyond_ten(inc):
    """m20 with mmax20 pushes posterize below 0 bits, solarize below 0, enhance below 0.1."""
    image = _image()
    for seed in range(25):
        out = randaugment(
            image, np.random.default_rng(seed), policy=f"rand-m20-mmax20-n4-p1-inc{inc}"
        )
        assert out.shape == image.shape and out.dtype == np.uint8
