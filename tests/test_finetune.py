"""Fine-tuning: layer counting, learning-rate multipliers, frozen layers and BatchNorm, and a
training run started from pretrained weights."""

import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bird_jax import config as defaults
from bird_jax import evaluate, experiment, finetune, optim, train
from bird_jax.checkpoints import RunCheckpoints
from bird_jax.models.common import frozen_statistics
from bird_jax.train_step import create_train_state
from bird_jax.workdir import checkpoint_metadata
from tests.test_train_step import IMAGE, _batch, _config, _run, _tiny_model
from tests.tiny_config import tiny_config

CONVNEXT_ATTO = [
    "stem_conv", "stem_norm", "stage0_block0", "stage0_block1", "downsample1_norm",
    "downsample1_conv", "stage1_block0", "stage1_block1", "norm", "head",
]  # fmt: skip
VGG = ["stage0_conv0", "stage0_bn0", "stage0_conv1", "stage0_bn1", "fc0", "fc1", "head"]


def test_layers_count_blocks_and_downsampling_joins_the_next_block():
    assert finetune.layer_of_each_entry(CONVNEXT_ATTO) == {
        "stem_conv": 0, "stem_norm": 0, "stage0_block0": 1, "stage0_block1": 2,
        "downsample1_norm": 3, "downsample1_conv": 3, "stage1_block0": 3, "stage1_block1": 4,
        "norm": 5, "head": 5,
    }  # fmt: skip
    vit = ["patch_embed", "cls_token", "pos_embed", "block0", "block1", "norm", "head"]
    assert finetune.layer_of_each_entry(vit) == {
        "patch_embed": 0, "cls_token": 0, "pos_embed": 0, "block0": 1, "block1": 2,
        "norm": 3, "head": 3,
    }  # fmt: skip


def test_without_blocks_each_layer_counts_and_norms_join_their_layer():
    assert finetune.layer_of_each_entry(VGG) == {
        "stage0_conv0": 0, "stage0_bn0": 0, "stage0_conv1": 1, "stage0_bn1": 1,
        "fc0": 2, "fc1": 3, "head": 4,
    }  # fmt: skip


def _finetune(**values):
    settings = defaults.get_config().finetune
    settings.update(values)
    return settings


def test_multipliers_decay_towards_the_input_and_freeze_from_the_bottom():
    multipliers = finetune.learning_rate_multipliers(
        CONVNEXT_ATTO, _finetune(layer_decay=0.5, freeze_layers=2, head_lr_multiplier=10.0)
    )
    assert multipliers == {
        "stem_conv": 0.0, "stem_norm": 0.0, "stage0_block0": 0.0, "stage0_block1": 0.125,
        "downsample1_norm": 0.25, "downsample1_conv": 0.25, "stage1_block0": 0.25,
        "stage1_block1": 0.5, "norm": 1.0, "head": 10.0,
    }  # fmt: skip
    probe = finetune.learning_rate_multipliers(CONVNEXT_ATTO, _finetune(freeze_layers=-1))
    assert {name for name, m in probe.items() if m} == {"head"}


@pytest.mark.parametrize(
    "values, message",
    [
        ({"layer_decay": 0.0}, r"finetune.layer_decay must be in \(0, 1\]"),
        ({"freeze_layers": -2}, "finetune.freeze_layers must be >= -1"),
        ({"batch_norm": "freeze"}, r"finetune.batch_norm must be one of \('update', 'frozen'\)"),
    ],
)
def test_bad_settings_are_named(values, message):
    with pytest.raises(ValueError, match=message):
        finetune.validate(_finetune(**values))


def _tuned_setup(**settings):
    config = _config(weight_decay=0.0, grad_clip_norm=0.0)
    config.data.image_size = IMAGE
    config.finetune.update(settings)
    model = _tiny_model("lightweight_cnn", jnp.float32)
    multipliers = experiment.learning_rate_multipliers(config, model)
    schedule = optim.learning_rate_schedule(config, num_train_examples=1000)
    tx = optim.create_optimizer(config, schedule, multipliers)
    state = create_train_state(model, tx, image_size=IMAGE, seed=0, use_ema=False)
    return model, tx, schedule, state, multipliers


def test_linear_probe_trains_only_the_head_and_keeps_no_moments_for_the_rest():
    model, tx, schedule, state, _ = _tuned_setup(freeze_layers=-1, batch_norm="frozen")
    after, _ = _run(state, model, tx, schedule, num_devices=2, steps=2, frozen_batch_norm=True)
    for name, before in state.params.items():
        same = jax.tree.map(np.array_equal, before, after.params[name])
        assert all(jax.tree.leaves(same)) == (name != "head"), name
    # Frozen BatchNorm keeps its statistics.
    jax.tree.map(np.testing.assert_array_equal, state.batch_stats, after.batch_stats)
    # Adam's two moments exist for the head only (plus scalar step counts).
    size = lambda tree: sum(np.size(leaf) for leaf in jax.tree.leaves(tree))
    assert (
        2 * size(state.params["head"]) <= size(state.opt_state) < 2 * size(state.params["head"]) + 8
    )


def test_layer_decay_scales_each_layers_first_adam_step():
    """Adam's first step moves a weight by lr * g / (|g| + eps): here lr * its multiplier."""
    model, tx, schedule, state, multipliers = _tuned_setup(layer_decay=0.5, head_lr_multiplier=3.0)
    after, _ = _run(state, model, tx, schedule, num_devices=1, steps=1)
    lr = float(schedule(0))
    for name, multiplier in multipliers.items():
        steps = jax.tree.map(
            lambda a, b: np.abs(a - b).max(), after.params[name], state.params[name]
        )
        # |update| <= lr * multiplier, reached where |gradient| >> Adam's epsilon.
        np.testing.assert_allclose(
            max(jax.tree.leaves(steps)), lr * multiplier, rtol=1e-3, err_msg=name
        )
    assert multipliers["stem"] == 0.5**3 and multipliers["head"] == 3.0


def test_frozen_batch_norm_normalises_with_the_running_statistics_in_training():
    model = _tiny_model("lightweight_cnn", jnp.float32).clone(dropout_rate=0.0)
    variables = model.init(jax.random.key(0), jnp.zeros((1, IMAGE, IMAGE, 3)))
    images = jnp.asarray(_batch()["image"], jnp.float32) / 255.0
    with nn.intercept_methods(frozen_statistics):
        logits, updates = model.apply(
            variables, images, train=True, rngs={"dropout": jax.random.key(1)},
            mutable=["batch_stats"],
        )  # fmt: skip
    np.testing.assert_allclose(logits, model.apply(variables, images, train=False), atol=1e-5)
    assert not np.allclose(logits, model.apply(
        variables, images, train=True, rngs={"dropout": jax.random.key(1)}, mutable=["batch_stats"]
    )[0], atol=1e-3)  # fmt: skip
    jax.tree.map(np.testing.assert_array_equal, updates["batch_stats"], variables["batch_stats"])


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    """A bird_jax-format weights file for the tiny model, with a 7-class head (the data has 10)."""
    config = tiny_config()
    model = experiment.create_model(config, 7)
    variables = model.init(jax.random.key(123), jnp.zeros((1, 16, 16, 3)))
    flat = {
        "/".join(str(k.key) for k in path): np.asarray(leaf)
        for path, leaf in jax.tree_util.tree_leaves_with_path(variables)
    }
    path = tmp_path_factory.mktemp("weights") / "tiny.npz"
    np.savez(path, **flat)
    return str(path), variables


def test_a_run_starts_from_the_weights_with_a_new_head_and_evaluates(weights_file, tmp_path):
    path, loaded = weights_file
    config = tiny_config()
    config.init_from = path
    config.ema_decay = 0.0
    config.finetune.freeze_layers = -1
    config.finetune.batch_norm = "frozen"
    workdir = str(tmp_path / "run")
    train.train_and_evaluate(config, workdir)
    exp = experiment.build(config, [str(i) for i in range(10)], 1000)
    ckpts = RunCheckpoints(
        workdir, metadata=checkpoint_metadata(config, [str(i) for i in range(10)])
    )
    state, _ = ckpts.restore(exp.abstract_state())
    ckpts.close()
    for name, subtree in loaded["params"].items():
        if name != "head":  # frozen: exactly the loaded weights
            jax.tree.map(np.testing.assert_array_equal, state.params[name], subtree)
    jax.tree.map(np.testing.assert_array_equal, state.batch_stats, loaded["batch_stats"])
    assert state.params["head"]["kernel"].shape == (16, 10)
    results = evaluate.evaluate_checkpoint(config, workdir, split="test")
    assert 0.0 <= results["accuracy"] <= 1.0


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda p: os.truncate(p, 100), "truncated or not a .npz"),
        (lambda p: None, "These bird_jax weights do not fit 'vgg11'"),
    ],
)
def test_bad_weights_stop_the_run_before_the_workdir_exists(
    weights_file, tmp_path, corrupt, message
):
    path = str(tmp_path / "weights.npz")
    with open(weights_file[0], "rb") as src, open(path, "wb") as dst:
        dst.write(src.read())
    corrupt(path)
    config = tiny_config()
    config.init_from = path
    if "vgg11" in message:
        config.model_name = "vgg11"
        config.model = {"width_multiplier": 0.125, "head_width": 8}
        config.data.image_size = 32
    workdir = str(tmp_path / "run")
    with pytest.raises(ValueError, match=message) as error:
        train.train_and_evaluate(config, workdir)
    assert "\n" not in str(error.value)
    assert not os.path.exists(workdir)
