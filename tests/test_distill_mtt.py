"""Tests for MTT (bird_jax.distill.mtt, bird_jax.distill.experts): the unrolled gradient against
finite differences, rematerialisation, expert files, the loss on a tiny problem, resume."""

import functools
from types import SimpleNamespace

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from bird_jax.distill import experts, methods, mtt
from bird_jax.distill.iterative import fresh_params
from bird_jax.models import create_model
from bird_jax.signals import Stopped
from bird_jax.workdir import Workdir
from tests import tiny_distill_config
from tests.test_distill import config_module, losses_on_one_draw, toy_real

TINY = create_model("convnet", num_classes=3, width=4, depth=1)


class SmoothNet(nn.Module):
    """A tiny smooth network (tanh), so finite differences see no ReLU kinks."""

    @nn.compact
    def __call__(self, x):
        x = nn.tanh(nn.Dense(8)(x.reshape(x.shape[0], -1)))
        return nn.Dense(3)(x)


def _problem(dtype, model=TINY, syn_steps=3):
    """Images, the trajectory loss (images, lr, remat) and the constant-memory gradients
    (images, lr) of `syn_steps` steps of `model` on them, and what they share."""
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.normal(size=(6, 8, 8, 3)), dtype)
    start, unravel = ravel_pytree(fresh_params(model, jax.random.key(0), (8, 8, 3)))
    start = start.astype(dtype)
    target = start + jnp.asarray(rng.normal(size=start.shape), dtype) * 0.05
    labels = jnp.array([0, 0, 1, 1, 2, 2])
    shared = SimpleNamespace(
        model=model, unravel=lambda f: jax.tree.map(lambda x: x.astype(dtype), unravel(f)),
        labels=labels, start=start, target=target, key=jax.random.key(1),
        settings=dict(syn_steps=syn_steps, batch_syn=6, strategy="none"),
    )  # fmt: skip
    fixed = (shared.model, shared.unravel)

    def loss(images, syn_lr, remat=True):
        return mtt.trajectory_loss(*fixed, images, labels, syn_lr, start, target, shared.key,
                                   remat=remat, **shared.settings)  # fmt: skip

    def constant(images, syn_lr):
        return mtt.constant_memory_gradients(*fixed, images, labels, syn_lr, start, target,
                                             shared.key, **shared.settings)  # fmt: skip

    return images, loss, constant, shared


def test_the_unrolled_gradient_matches_finite_differences():
    with jax.enable_x64(True):
        images, loss, _, _ = _problem(jnp.float64, SmoothNet())
        lr = jnp.asarray(0.5, jnp.float64)
        image_grad, lr_grad = jax.grad(loss, argnums=(0, 1))(images, lr)
        eps = 1e-6
        numeric_lr = (loss(images, lr + eps) - loss(images, lr - eps)) / (2 * eps)
        np.testing.assert_allclose(lr_grad, numeric_lr, rtol=1e-6)
        for seed in range(3):
            direction = jax.random.normal(jax.random.key(seed), images.shape, jnp.float64)
            numeric = loss(images + eps * direction, lr) - loss(images - eps * direction, lr)
            np.testing.assert_allclose(jnp.vdot(image_grad, direction), numeric / (2 * eps),
                                       rtol=1e-6)  # fmt: skip


def test_rematerialised_steps_give_the_same_loss_and_gradient():
    images, loss, _, _ = _problem(jnp.float32)
    lr = jnp.asarray(0.05)
    with_remat = jax.value_and_grad(loss)(images, lr, True)
    without = jax.value_and_grad(loss)(images, lr, False)
    np.testing.assert_allclose(with_remat[0], without[0], rtol=1e-6)
    np.testing.assert_allclose(with_remat[1], without[1], rtol=1e-4, atol=1e-7)


def test_the_constant_memory_gradient_is_exact_for_one_step():
    images, loss, constant, _ = _problem(jnp.float32, SmoothNet(), syn_steps=1)
    lr = jnp.asarray(0.5)
    value, (image_grad, lr_grad) = constant(images, lr)
    exact_value, (exact_images, exact_lr) = jax.value_and_grad(loss, argnums=(0, 1))(images, lr)
    np.testing.assert_allclose(value, exact_value, rtol=1e-6)
    np.testing.assert_allclose(image_grad, exact_images, rtol=1e-4, atol=1e-8)
    np.testing.assert_allclose(lr_grad, exact_lr, rtol=1e-4)


def test_the_constant_memory_gradient_leaves_out_the_paths_through_earlier_steps():
    images, loss, constant, shared = _problem(jnp.float32, SmoothNet(), syn_steps=4)
    lr = jnp.asarray(0.5)

    def detached_loss(images, syn_lr):  # every step's gradient blind to how its params came
        def step(params, key):
            gradient = mtt.step_gradient(shared.model, shared.unravel, images, shared.labels,
                                         jax.lax.stop_gradient(params), key, batch_syn=6,
                                         strategy="none")  # fmt: skip
            return params - syn_lr * gradient, None

        final, _ = jax.lax.scan(step, shared.start, jax.random.split(shared.key, 4))
        distance = jnp.sum((final - shared.target) ** 2)
        return distance / jnp.sum((shared.start - shared.target) ** 2)

    value, (image_grad, lr_grad) = constant(images, lr)
    np.testing.assert_allclose(value, loss(images, lr), rtol=1e-6)  # the same steps
    expected_images, expected_lr = jax.grad(detached_loss, argnums=(0, 1))(images, lr)
    np.testing.assert_allclose(image_grad, expected_images, rtol=1e-4, atol=1e-8)
    np.testing.assert_allclose(lr_grad, expected_lr, rtol=1e-4)
    exact_images = jax.grad(loss)(images, lr)
    assert not np.allclose(image_grad, exact_images, rtol=1e-3)  # an approximation past N = 1


def test_on_cpu_the_steps_run_convolutions_as_matmuls_with_the_same_result():
    matmul_net = mtt.loop_friendly(TINY)
    assert jax.default_backend() == "cpu" and matmul_net.patch_matmul
    images, loss, _, _ = _problem(jnp.float32)
    _, matmul_loss, _, _ = _problem(jnp.float32, matmul_net)
    lr = jnp.asarray(0.05)
    ours, reference = (
        jax.value_and_grad(f, argnums=(0, 1))(images, lr) for f in (matmul_loss, loss)
    )
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7), ours, reference
    )


def test_an_iterations_flops_count_every_unrolled_step(tmp_path):
    from bird_jax.efficiency import flops

    method, sharded, state = methods.start(
        _config(), toy_real(per_class=(8, 8, 8)), directory=tmp_path
    )
    key = jax.random.key(0)
    step = functools.partial(method._step, unroll=True)  # all 3 steps written out: no loop
    unrolled = flops.step_cost(step, *method.step_args(state, key)).total
    rolled = flops.step_cost(method.step, *method.step_args(state, key)).total
    assert method.flops_per_iteration(state, key, sharded) == pytest.approx(unrolled, rel=1e-3)
    assert rolled < 0.5 * unrolled  # what XLA says of the loop: one step's worth


def test_experts_are_written_once_read_in_pairs_and_checked(tmp_path):
    real = toy_real(num_classes=3, per_class=(6, 6, 6))
    paths = experts.build_experts(TINY, jax.random.key(0), real, tmp_path, [0, 2], 3, "none")
    assert [p.name for p in paths] == ["expert_0000.npy", "expert_0002.npy"]
    trajectory = np.load(paths[0])
    assert trajectory.shape[0] == 4 and np.abs(trajectory[3] - trajectory[0]).max() > 0
    stamp = paths[0].stat().st_mtime_ns
    experts.build_experts(TINY, jax.random.key(0), real, tmp_path, [0], 3, "none")
    assert paths[0].stat().st_mtime_ns == stamp  # already there: not retrained
    store = experts.ExpertStore(tmp_path, trajectory.shape[1])
    start, later = store.pair(0, 1, 2)
    np.testing.assert_array_equal(later, trajectory[3])
    assert store.epochs == 3 and list(experts.experts_for_process(5, 1, 2)) == [1, 3]
    with pytest.raises(ValueError, match="parameters: use the experts of this network"):
        experts.ExpertStore(tmp_path, 7)
    with pytest.raises(FileNotFoundError, match="No expert trajectories"):
        experts.ExpertStore(tmp_path / "none", 7)


def test_experts_train_with_the_runs_expert_batch_and_lr_teacher(tmp_path):
    real = toy_real(per_class=(6, 6, 6))
    moved = {}
    for name, settings in {"official": {}, "batch 3": {"expert_batch": 3},
                           "lr 0": {"lr_teacher": 0.0}}.items():  # fmt: skip
        config = _config(num_experts=1, expert_train_epochs=1, **settings)
        start, end = methods.expert_store(config, real, tmp_path / name).pair(0, 0, 1)
        moved[name] = np.linalg.norm(end - start)
    assert moved["batch 3"] > 2 * moved["official"] > 0  # six steps an epoch against one
    assert moved["lr 0"] == 0
    with pytest.raises(ValueError, match="distill.expert_batch must be >= 1"):
        methods.check_config(_config(expert_batch=0))


def _config(**distill):
    config = tiny_distill_config.get_config("mtt")
    config.distill.update(num_experts=2, expert_train_epochs=3, syn_steps=3, expert_epochs=1,
                          max_start_epoch=2, lr_img=10.0, lr_lr=0.0)  # fmt: skip
    config.distill.update(distill)
    return config


@pytest.mark.parametrize("gradient", ["exact", "constant"])
def test_mtt_steps_lower_the_trajectory_loss_on_the_same_draw(tmp_path, gradient):
    config = _config(mtt_gradient=gradient)
    state = methods.start(config, toy_real(per_class=(8, 8, 8)), directory=tmp_path)
    losses, _ = losses_on_one_draw(*state, iterations=3)
    assert losses[2] < losses[1] < losses[0]


def test_an_mtt_run_builds_its_experts_and_resumes_exactly(tmp_path):
    from bird_jax.distill.run import distill_and_evaluate
    from bird_jax.distill.synthetic import load_synthetic

    whole = Workdir(tmp_path / "whole")
    results = distill_and_evaluate(_config(lr_lr=1e-5), whole)
    assert len(list((whole.path / "experts").glob("expert_*.npy"))) == 2
    assert results["flops_per_iteration"] > 0
    resumed = Workdir(tmp_path / "resumed")
    with pytest.raises(Stopped):
        distill_and_evaluate(_config(lr_lr=1e-5), resumed, SimpleNamespace(requested=True,
                                                                           signum=15))  # fmt: skip
    distill_and_evaluate(_config(lr_lr=1e-5), resumed)
    np.testing.assert_array_equal(load_synthetic(resumed.path).images,
                                  load_synthetic(whole.path).images)  # fmt: skip
    learned = load_synthetic(whole.path).learning_rate  # the set trains with its step size
    assert learned > 0 and learned != 0.01
    assert results["evaluations"][-1]["lr"] == pytest.approx(learned)


@pytest.mark.parametrize("ipc, steps, start, lr_lr", [(1, 50, 2, 1e-7), (10, 30, 20, 1e-5)])
def test_shipped_mtt_configs_hold_the_papers_settings(ipc, steps, start, lr_lr):
    settings = config_module("mtt").get_config(f"cifar10_ipc{ipc}").distill
    assert (settings.syn_steps, settings.max_start_epoch, settings.lr_lr) == (steps, start, lr_lr)
    assert (settings.expert_epochs, settings.lr_img, settings.lr_teacher) == (2, 1000.0, 0.01)


def test_an_unknown_mtt_gradient_fails_before_any_data():
    config = _config(mtt_gradient="tesla")
    with pytest.raises(ValueError, match="distill.mtt_gradient must be one of"):
        methods.check_config(config)


def test_the_protocol_trains_with_a_learned_step_size_unless_told_not_to():
    from bird_jax.distill import protocol

    config = tiny_distill_config.get_config("mtt")
    config.evaluation.epochs = 1
    images, labels = toy_real(size=8).flat()
    test = (images, labels)
    run = protocol.evaluate_set(config, images, labels, test, "convnet", learning_rate=0.003)
    assert run["lr"] == 0.003
    config.evaluation.learned_lr = False
    run = protocol.evaluate_set(config, images, labels, test, "convnet", learning_rate=0.003)
    assert run["lr"] == config.evaluation.lr
    config.evaluation.learned_lr = True
    with pytest.raises(ValueError, match="learned step size is -0.1"):
        protocol.evaluate_set(config, images, labels, test, "convnet", learning_rate=-0.1)
