"""Tests for ZCA whitening (bird_jax.distill.zca) and the sets learned in a whitened space."""

import json

import numpy as np
import pytest

from bird_jax.distill import experts, methods, zca
from bird_jax.distill.synthetic import SyntheticSet, load_synthetic, save_synthetic
from tests import tiny_distill_config
from tests.test_distill import config_module, toy_real


def correlated_images(count: int, size: int = 2, seed: int = 0) -> np.ndarray:
    """[count, size, size, 3] with strongly correlated, unequal-variance values."""
    rng = np.random.default_rng(seed)
    dims = size * size * 3
    mixing = rng.normal(size=(dims, dims)) * rng.uniform(0.1, 3.0, size=dims)
    return (rng.normal(size=(count, dims)) @ mixing + 2.0).reshape(count, size, size, 3)


def reference_whitening(images: np.ndarray, reg: float) -> tuple[np.ndarray, np.ndarray]:
    """kornia's ZCA written out: mean and U diag((S + reg)^-1/2) U^T of the unbiased covariance."""
    flat = images.reshape(len(images), -1).astype(np.float64)
    mean = flat.mean(axis=0)
    covariance = np.cov(flat, rowvar=False)
    u, s, _ = np.linalg.svd(covariance)
    return mean, u @ np.diag(1.0 / np.sqrt(s + reg)) @ u.T


@pytest.mark.parametrize("count", [400, 7], ids=["more images than values", "fewer"])
def test_whitening_is_kornias_zca_and_colour_inverts_it(count):
    images = correlated_images(count)
    whitening = zca.fit(images, reg=0.1)
    mean, matrix = reference_whitening(images, 0.1)
    probe = correlated_images(5, seed=1)  # other images, partly outside the fitted span
    expected = (probe.reshape(5, -1) - mean) @ matrix
    np.testing.assert_allclose(whitening.whiten(probe).reshape(5, -1), expected, rtol=1e-3,
                               atol=1e-3)  # fmt: skip
    np.testing.assert_allclose(whitening.colour(whitening.whiten(probe)), probe, atol=1e-3)


def test_whitened_training_images_have_identity_covariance_at_a_tiny_ridge():
    images = correlated_images(2000)
    whitened = zca.fit(images, reg=1e-8).whiten(images).reshape(2000, -1)
    np.testing.assert_allclose(np.cov(whitened, rowvar=False), np.eye(12), atol=1e-2)


def test_bad_ridge_or_too_few_images_fail_before_fitting():
    with pytest.raises(ValueError, match="zca_reg must be > 0"):
        zca.fit(correlated_images(10), reg=0.0)
    with pytest.raises(ValueError, match="at least 2 images"):
        zca.fit(correlated_images(1), reg=0.1)
    config = tiny_distill_config.get_config("random")
    config.distill.zca, config.distill.zca_reg = True, -1.0
    with pytest.raises(ValueError, match="distill.zca_reg"):
        methods.check_config(config)


def test_a_whitened_set_is_the_plain_set_whitened_and_keeps_its_whitening(tmp_path):
    real = toy_real(per_class=(6, 9, 7), size=4)
    config = tiny_distill_config.get_config("random")
    config.distill.ipc = 3
    plain = methods.distill(config, real)
    config.distill.zca = True
    whitened = methods.distill(config, real)
    whitening = whitened.whitening
    assert plain.whitening is None and whitening.reg == config.distill.zca_reg
    np.testing.assert_allclose(whitened.images, whitening.whiten(plain.images), atol=1e-4)
    np.testing.assert_allclose(whitened.normalised_images(), plain.images, atol=1e-3)
    save_synthetic(whitened, tmp_path)
    assert json.loads((tmp_path / "labels.json").read_text())["zca_reg"] == 0.1
    loaded = load_synthetic(tmp_path)
    np.testing.assert_array_equal(loaded.whitening.basis, whitening.basis)
    np.testing.assert_allclose(loaded.normalised_images(), plain.images, atol=1e-3)


def test_a_whitening_that_does_not_fit_the_images_is_refused(tmp_path):
    real = toy_real(size=4)
    other = zca.fit(toy_real(size=5).flat()[0], 0.1)
    images = real.images[:, :2]
    save_synthetic(SyntheticSet(images, real.class_names, real.mean, real.std, "random", None,
                                other), tmp_path)  # fmt: skip
    with pytest.raises(ValueError, match="does not fit images"):
        load_synthetic(tmp_path)
    (tmp_path / zca.FILE).unlink()
    save_synthetic(SyntheticSet(images, real.class_names, real.mean, real.std, "random", None,
                                zca.fit(real.flat()[0], 0.5)), tmp_path)  # fmt: skip
    meta = json.loads((tmp_path / "labels.json").read_text())
    (tmp_path / "labels.json").write_text(json.dumps({**meta, "zca_reg": 0.1}))
    with pytest.raises(ValueError, match="has ridge 0.5, labels.json 0.1"):
        load_synthetic(tmp_path)
    (tmp_path / zca.FILE).write_bytes(b"not an npz")
    with pytest.raises(ValueError, match="not a whitening"):
        load_synthetic(tmp_path)


def test_experts_remember_the_space_they_trained_in(tmp_path):
    experts.check_space(tmp_path, 0.1)
    experts.check_space(tmp_path, 0.1)  # the same space: fine
    with pytest.raises(ValueError, match="ZCA-whitened images .ridge 0.1.*unwhitened images"):
        experts.check_space(tmp_path, None)
    older = tmp_path / "older"  # experts written before the record: unwhitened
    older.mkdir()
    np.save(older / "expert_0000.npy", np.zeros((3, 4), np.float32))
    with pytest.raises(ValueError, match="trained on unwhitened images"):
        experts.check_space(older, 0.1)


def test_a_workdir_does_not_resume_in_another_space(tmp_path):
    from bird_jax.distill.run import distill_and_evaluate
    from bird_jax.workdir import Workdir

    config = tiny_distill_config.get_config("random")
    config.evaluation.epochs = 0
    workdir = Workdir(tmp_path / "w")
    distill_and_evaluate(config, workdir)
    config.distill.zca = True
    with pytest.raises(ValueError, match="learned on unwhitened images, this config asks for "
                                         "ZCA-whitened images"):  # fmt: skip
        distill_and_evaluate(config, workdir)


def test_the_gram_path_matches_a_float64_reference_closely():
    images = correlated_images(30, size=4)  # 30 images of 48 values
    whitening = zca.fit(images, reg=0.1)
    assert whitening.basis.shape == (48, 29)  # centring removes one direction
    mean, matrix = reference_whitening(images, 0.1)
    expected = (images.reshape(30, -1) - mean) @ matrix
    np.testing.assert_allclose(whitening.whiten(images).reshape(30, -1), expected, atol=2e-4)


@pytest.mark.parametrize(
    "method, variant, whitened",
    [("mtt", "cifar10_ipc1", True), ("mtt", "cifar10_ipc10", True),
     ("mtt", "cifar10_ipc50", False), ("frepo", "cifar100_ipc50", True),
     ("dm", "cifar10_ipc10", False), ("mtt", "birds_ipc1", False)],
)  # fmt: skip
def test_shipped_configs_whiten_where_the_papers_do(method, variant, whitened):
    settings = config_module(method).get_config(variant).distill
    assert settings.zca is whitened and settings.zca_reg == 0.1


def test_a_whitened_run_evaluates_on_whitened_photos_and_serves_pixels(tmp_path, monkeypatch):
    from bird_jax.data.sources import load_splits
    from bird_jax.distill import protocol
    from bird_jax.distill.real import load_images
    from bird_jax.distill.run import distill_and_evaluate
    from bird_jax.workdir import Workdir

    config = tiny_distill_config.get_config("random")
    config.distill.zca = True
    evaluated = []

    def record(config, images, labels, test, name, **_):
        evaluated.append((images, test))
        return {"runs": 1, "mean": 0.0, "std": 0.0, "seconds_per_run": 0.0}

    monkeypatch.setattr(protocol, "evaluate_set", record)
    workdir = Workdir(tmp_path / "w")
    distill_and_evaluate(config, workdir)
    synthetic = load_synthetic(workdir.path)
    [(trained, (test_images, _))] = evaluated
    photos, _ = load_images(config.data, "test", load_splits(config.data))
    np.testing.assert_allclose(test_images, synthetic.whitening.whiten(photos), atol=1e-5)
    np.testing.assert_array_equal(trained, synthetic.flat()[0])
    config.data.source, config.data.root = "distilled", str(workdir.path)
    served = load_splits(config.data).source("train").images
    pixels = synthetic.normalised_images() * 0.5 + 0.5  # the tiny config's mean and std
    np.testing.assert_allclose(served / 255.0, np.clip(pixels, 0, 1).reshape(served.shape),
                               atol=1 / 255 + 1e-6)  # fmt: skip
