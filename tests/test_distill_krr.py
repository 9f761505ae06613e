"""Tests for kernel ridge regression on features (bird_jax.distill.krr) and FRePo
(bird_jax.distill.frepo): its steps, the online pool, learned labels, files and resume."""

from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bird_jax.distill import krr, methods
from bird_jax.signals import Stopped
from bird_jax.workdir import Workdir
from tests import tiny_distill_config
from tests.test_distill import config_module, losses_on_one_draw, toy_real


def test_a_linear_map_is_recovered_exactly_on_the_span_of_the_support_points():
    rng = np.random.default_rng(0)
    support = jnp.asarray(rng.normal(size=(6, 20)))  # 6 points in 20 dims: K_ss invertible
    mapping = jnp.asarray(rng.normal(size=(20, 3)))
    targets = jnp.asarray(rng.normal(size=(15, 6))) @ support  # combinations of the support
    predicted = krr.kernel_regression(targets, support, support @ mapping, reg=1e-9)
    np.testing.assert_allclose(predicted, targets @ mapping, rtol=1e-3, atol=1e-3)


def test_support_points_predict_their_own_labels_and_ridge_shrinks_them():
    rng = np.random.default_rng(1)
    features = jnp.asarray(rng.normal(size=(5, 20)))  # 5 < 20: an interpolating kernel
    labels = jnp.asarray(rng.normal(size=(5, 4)))
    np.testing.assert_allclose(krr.kernel_regression(features, features, labels, 1e-9), labels,
                               atol=1e-5)  # fmt: skip
    shrunk = krr.kernel_regression(features, features, labels, reg=10.0)
    assert float(jnp.linalg.norm(shrunk)) < 0.5 * float(jnp.linalg.norm(labels))


def test_gradients_reach_the_support_features_and_labels():
    rng = np.random.default_rng(2)
    support, labels = jnp.asarray(rng.normal(size=(4, 8))), jnp.asarray(rng.normal(size=(4, 3)))
    targets, truth = jnp.asarray(rng.normal(size=(6, 8))), jnp.asarray(rng.normal(size=(6, 3)))

    def loss(support, labels):
        return krr.regression_loss(krr.kernel_regression(targets, support, labels, 1e-3), truth)

    grads = jax.grad(loss, argnums=(0, 1))(support, labels)
    assert all(float(jnp.abs(g).max()) > 0 for g in grads)
    step = 1e-3
    assert loss(support - step * grads[0], labels - step * grads[1]) < loss(support, labels)


def test_starting_labels_and_the_margin_regulariser():
    labels = krr.label_vectors(num_classes=10, per_class=2)
    assert labels.shape == (20, 10)
    np.testing.assert_allclose(labels[3], np.eye(10)[1] - 0.1, atol=1e-7)
    # Margin 1 >= 1/C: capped at 1/C; a tie (margin 0) costs nothing.
    assert float(krr.margin_loss(labels)) == pytest.approx(-0.1)
    assert float(krr.margin_loss(jnp.array([[0.5, 0.5, 0.0]]))) == pytest.approx(0.0)


# ------------------------------------------------------------------ FRePo


def _frepo_config(**distill):
    config = tiny_distill_config.get_config("frepo")
    config.distill.update(batch_real=30, pool_size=3, max_online_updates=2)
    config.distill.update(distill)
    return config


def test_frepo_steps_lower_the_loss_of_one_network_and_learn_the_labels():
    # max_online_updates=0: every iteration restarts the drawn network from the same key, so
    # iterations after the first see the same network and real batch.
    config = _frepo_config(max_online_updates=0, lr_img=1e-2)
    step, sharded, state = methods.start(config, toy_real(per_class=(10, 10, 10)))
    start = step.label_vectors(state)
    losses, state = losses_on_one_draw(step, sharded, state, iterations=4)
    assert losses[3] < losses[2] < losses[1]
    assert np.abs(step.label_vectors(state) - start).max() > 0  # the labels learn too
    assert start.shape == (3, 2, 3)


def test_the_pool_trains_each_network_then_restarts_it():
    step, sharded, state = methods.start(_frepo_config(), toy_real(per_class=(10, 10, 10)))
    assert state.pool_steps.tolist() == [0, 0, 0]  # 2 // 3 = 0 apart
    seen = []
    for i in range(12):
        state, _ = step.iteration(state, jax.random.key(i), sharded)
        seen.append(state.pool_steps.tolist())
    assert max(max(s) for s in seen) == 2  # never past max_online_updates ...
    assert any(
        b[j] == 0 and a[j] == 2 for a, b in zip(seen, seen[1:], strict=False) for j in range(3)
    )


def test_a_frepo_set_keeps_its_label_vectors_and_resumes_exactly(tmp_path):
    from bird_jax.distill.run import distill_and_evaluate
    from bird_jax.distill.synthetic import load_synthetic

    whole = Workdir(tmp_path / "whole")
    results = distill_and_evaluate(_frepo_config(), whole)
    synthetic = load_synthetic(whole.path)
    assert synthetic.label_vectors.shape == (10, 2, 10)
    images, targets = synthetic.training_targets()
    assert targets.shape == (20, 10) and images.shape == (20, 16, 16, 3)
    assert 0 <= results["evaluations"][-1]["mean"] <= 1 and results["flops_per_iteration"] > 0
    # Stopped (as by SIGTERM) after its first iteration, then resumed: the learning rate's
    # cosine runs over the same 4 iterations as the uninterrupted run's.
    resumed = Workdir(tmp_path / "resumed")
    with pytest.raises(Stopped):
        distill_and_evaluate(_frepo_config(), resumed, SimpleNamespace(requested=True, signum=15))
    distill_and_evaluate(_frepo_config(), resumed)
    again = load_synthetic(resumed.path)
    np.testing.assert_array_equal(again.images, synthetic.images)
    np.testing.assert_array_equal(again.label_vectors, synthetic.label_vectors)


def test_label_vectors_of_the_wrong_shape_are_refused(tmp_path):
    from bird_jax.distill.synthetic import SyntheticSet, load_synthetic, save_synthetic

    images = np.zeros((2, 3, 4, 4, 3), np.float32)
    vectors = np.zeros((2, 3, 2), np.float32)
    save_synthetic(SyntheticSet(images, ["a", "b"], (0.5,) * 3, (0.5,) * 3, "frepo", vectors),
                   tmp_path)  # fmt: skip
    np.testing.assert_array_equal(load_synthetic(tmp_path).label_vectors, vectors)
    with np.load(tmp_path / "synthetic.npz") as arrays:
        np.savez(tmp_path / "synthetic.npz", images=arrays["images"], labels=arrays["labels"],
                 label_vectors=np.zeros((6, 5), np.float32))  # fmt: skip
    with pytest.raises(ValueError, match="label_vectors .* are not one per image and class"):
        load_synthetic(tmp_path)


def test_shipped_frepo_config_holds_the_official_settings():
    config = config_module("frepo").get_config("cifar10_ipc10")
    methods.check_config(config)
    settings = config.distill
    assert (settings.iterations, settings.lr_img, settings.batch_real) == (500_000, 3e-4, 1024)
    assert (settings.pool_size, settings.max_online_updates, settings.flip) == (10, 100, True)
    # Its evaluation (script/eval.py): Adam at 3e-4, 500 warmup steps, batches of up to 500.
    evaluation = config.evaluation
    assert (evaluation.optimizer, evaluation.lr, evaluation.warmup_steps) == ("adam", 3e-4, 500)
    assert evaluation.batch_size == 500


@pytest.mark.parametrize("learned, target_dims", [(True, 2), (False, 1)])
def test_a_frepo_set_is_evaluated_on_its_label_vectors_or_its_classes(
    tmp_path, monkeypatch, learned, target_dims
):
    from bird_jax.distill import protocol
    from bird_jax.distill.run import distill_and_evaluate

    targets = []

    def record(config, images, labels, test, name, **_):
        targets.append(labels)
        return {"runs": 1, "mean": 0.0, "std": 0.0, "seconds_per_run": 0.0}

    monkeypatch.setattr(protocol, "evaluate_set", record)
    config = _frepo_config()
    config.distill.iterations, config.evaluation.learned_labels = 1, learned
    distill_and_evaluate(config, Workdir(tmp_path / "w"))
    assert targets[-1].ndim == target_dims and len(targets[-1]) == 20
