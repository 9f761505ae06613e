"""Tests for the autoencoder baseline (bird_jax.distill.autoencoder): shapes, training, the
storage budget with the decoder counted, the decoded set and the command's autoencoder runs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bird_jax.distill import autoencoder, methods
from bird_jax.workdir import Workdir
from tests import tiny_distill_config
from tests.test_distill import config_module, losses_on_one_draw, toy_real

SMALL = autoencoder.ConvAutoencoder(widths=(8, 16), latent_channels=2)


def test_codes_are_a_sixteenth_of_the_image_a_channel_and_decode_to_its_shape():
    params = SMALL.init(jax.random.key(0), jnp.zeros((1, 16, 16, 3)))["params"]
    codes = SMALL.apply({"params": params}, jnp.zeros((5, 16, 16, 3)), method="encode")
    assert codes.shape == (5, 4, 4, 2)
    assert SMALL.apply({"params": params}, jnp.zeros((5, 16, 16, 3))).shape == (5, 16, 16, 3)
    decoder = sum(p.size for name, layer in params.items() for p in jax.tree.leaves(layer)
                  if not name.startswith(("down", "to_code")))  # fmt: skip
    assert autoencoder.sizes(SMALL, (16, 16, 3)) == (decoder, 4 * 4 * 2)


def test_training_lowers_the_reconstruction_error_and_shows_progress(capsys):
    images = toy_real(size=16).flat()[0]
    _, after_one = autoencoder.train(SMALL, jax.random.key(0), images, epochs=1, batch_size=8)
    _, after_many = autoencoder.train(SMALL, jax.random.key(0), images, epochs=30, batch_size=8)
    assert after_many < 0.7 * after_one
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.startswith("autoencoder: epoch 30/30") and "epochs/s" in last


def test_codes_a_class_fit_the_budget_with_the_decoder():
    decoder, code = autoencoder.sizes(SMALL, (16, 16, 3))
    budget = 3 * 2 * 16 * 16 * 3  # 3 classes, 2 images each
    m = autoencoder.code_budget(SMALL, (16, 16, 3), num_classes=3, ipc=2, most=1000).per_class
    assert decoder + 3 * m * code <= budget < decoder + 3 * (m + 1) * code
    assert autoencoder.code_budget(SMALL, (16, 16, 3), 3, 2, most=5).per_class == 5
    with pytest.raises(ValueError, match="decoder .* exceed the budget .* raise distill.ipc"):
        autoencoder.code_budget(SMALL, (8, 8, 3), num_classes=3, ipc=1, most=5)


def test_the_decoded_set_holds_random_real_images_of_each_class_through_the_autoencoder():
    real = toy_real(size=16)  # 3 classes of 6, 9 and 7 images
    params = SMALL.init(jax.random.key(0), jnp.zeros((1, 16, 16, 3)))["params"]
    decoded = autoencoder.decoded_set(SMALL, params, jax.random.key(1), real, ipc=2)
    assert decoded.real.shape == decoded.decoded.shape == (3, 6, 16, 16, 3)  # capped at 6
    for c in range(3):  # each kept image is one of its class's real images
        members = real.images[c, : real.counts[c]]
        assert all(np.any(np.all(members == image, axis=(1, 2, 3))) for image in decoded.real[c])
    np.testing.assert_allclose(decoded.decoded[1, :2], SMALL.apply({"params": params},
                               decoded.real[1, :2]), atol=1e-5)  # fmt: skip
    decoder, code = autoencoder.sizes(SMALL, (16, 16, 3))
    assert decoded.budget.stored_values == decoder + 3 * 6 * code


def _config(**distill):
    config = tiny_distill_config.get_config("autoencoder")
    config.distill.update(autoencoder_widths=(8, 16), latent_channels=2, autoencoder_epochs=2)
    config.distill.update(distill)
    return config


def test_autoencoder_runs_count_the_decoder_and_write_their_picture(tmp_path):
    from bird_jax.distill.run import distill_and_evaluate

    workdir = Workdir(tmp_path / "ae")
    results = distill_and_evaluate(_config(), workdir)
    assert (workdir.path / "autoencoder.png").is_file()
    decoder, code = autoencoder.sizes(SMALL, (16, 16, 3))
    m = results["codes_per_class"]
    assert results["decoder_values"] == decoder and m > 2
    assert results["storage_bytes"] == decoder + 10 * m * code <= 10 * 2 * 16 * 16 * 3
    assert results["evaluations"][-1]["model"] == "convnet"


@pytest.mark.parametrize(
    "change, message",
    [
        ({"autoencoder_widths": (64, 128)}, "decoder .* exceed the budget"),
        ({"autoencoder_widths": (8, 8, 8, 8, 8)}, "does not halve 5 times"),
    ],
)
def test_an_autoencoder_that_cannot_fit_stops_before_the_workdir_is_made(tmp_path, change, message):
    from bird_jax.distill.run import distill_and_evaluate

    with pytest.raises(ValueError, match=message):
        distill_and_evaluate(_config(**change), Workdir(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name, iterations", [("autoencoder", 0), ("latent_dm", 20_000)])
def test_shipped_autoencoder_configs(name, iterations):
    config = config_module(name).get_config("birds_ipc1")
    methods.check_config(config)
    settings = config.distill
    assert (settings.method, settings.ipc, settings.iterations) == (name, 1, iterations)
    assert config.data.image_size == 64 and settings.autoencoder_widths == (32, 64)


# ------------------------------------------------------------------ DM in the latent space


def test_latent_dm_steps_lower_the_loss_on_the_same_draw():
    config = _config(method="latent_dm", ipc=10, lr_img=0.01, batch_real=8)
    real = toy_real(per_class=(8, 8, 8))
    step, sharded, state = methods.start(config, real, num_devices=1)
    assert state.synthetic.shape[-3:] == (2, 2, 2)  # codes of the 8 px images, not images
    losses, state = losses_on_one_draw(step, sharded, state)
    assert losses[2] < losses[1] < losses[0]
    images = step.images(sharded.shards.merge(state.synthetic))
    assert images.shape == (3, 8, 8, 8, 3)


def test_latent_dm_starts_from_the_autoencoder_baselines_set_and_resumes_exactly(tmp_path):
    from bird_jax.distill.run import distill_and_evaluate
    from bird_jax.distill.synthetic import load_synthetic

    baseline = Workdir(tmp_path / "ae")
    distill_and_evaluate(_config(), baseline)
    start = Workdir(tmp_path / "start")
    distill_and_evaluate(_config(method="latent_dm", iterations=0), start)
    np.testing.assert_allclose(load_synthetic(start.path).images,
                               load_synthetic(baseline.path).images, atol=1e-6)  # fmt: skip

    whole = Workdir(tmp_path / "whole")
    results = distill_and_evaluate(_config(method="latent_dm", iterations=4), whole)
    resumed = Workdir(tmp_path / "resumed")
    distill_and_evaluate(_config(method="latent_dm", iterations=2), resumed)
    distill_and_evaluate(_config(method="latent_dm", iterations=4), resumed)  # reads its file
    np.testing.assert_array_equal(load_synthetic(resumed.path).images,
                                  load_synthetic(whole.path).images)  # fmt: skip
    decoder, code = autoencoder.sizes(SMALL, (16, 16, 3))
    m = load_synthetic(whole.path).ipc
    assert results["storage_bytes"] == decoder + 10 * m * code
