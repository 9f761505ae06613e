"""Tests for bird_jax.distill: the matching losses, DM and DC/DSA steps, coresets, the set's
files, the evaluation protocol, the command (resume, bad input) and the "distilled" source.

Real data: the embedded digits through tests/tiny_distill_config.py (16 px, ConvNet-2 of width
8), or a few random classes built here.
"""

import json
import os
import signal

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bird_jax.data.sources import load_splits
from bird_jax.distill import coreset, methods, nets, protocol
from bird_jax.distill.defaults import DSA_STRATEGY as DSA
from bird_jax.distill.matching import gradient_distance, mean_embedding_loss, siamese_pairs
from bird_jax.distill.real import RealData, by_class, load_real, sample_per_class
from bird_jax.distill.run import RESULTS_FILE, distill_and_evaluate, grid_image
from bird_jax.distill.state_file import STATE_FILE, saved_iteration
from bird_jax.distill.synthetic import (
    SyntheticSet,
    check_matches,
    load_synthetic,
    save_synthetic,
)
from bird_jax.signals import Stopped
from bird_jax.workdir import Workdir
from tests import tiny_distill_config


def toy_real(num_classes=3, per_class=(6, 9, 7), size=8, seed=0) -> RealData:
    """Random classes of different sizes, class c offset by c (so they differ)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(num_classes), per_class)
    images = rng.normal(size=(len(labels), size, size, 3)).astype(np.float32)
    images += labels[:, None, None, None]
    stacked, counts = by_class(images, labels, num_classes)
    return RealData(stacked, counts, [f"c{i}" for i in range(num_classes)], (0.5,) * 3, (0.5,) * 3)


@pytest.fixture(scope="module")
def digits():
    config = tiny_distill_config.get_config("dm")
    return load_real(config.data, "train")


# ------------------------------------------------------------------ real images and sampling


def test_real_images_are_stacked_by_class_with_their_counts():
    real = toy_real()
    assert real.images.shape == (3, 9, 8, 8, 3)
    np.testing.assert_array_equal(real.counts, [6, 9, 7])
    assert not real.images[0, 6:].any()  # padding
    images, labels = real.flat()
    assert len(images) == 22 and np.bincount(labels).tolist() == [6, 9, 7]


def test_sampling_draws_distinct_images_of_each_class_whatever_the_class_split():
    real = toy_real()
    key = jax.random.key(3)
    drawn = sample_per_class(key, real.images, real.counts, jnp.arange(3), 5)
    for c in range(3):
        members = {real.images[c, i].tobytes() for i in range(real.counts[c])}
        picked = [np.asarray(image).tobytes() for image in drawn[c]]
        assert set(picked) <= members and len(set(picked)) == 5
    # Class 2 alone (as on another device) draws the same images.
    alone = sample_per_class(key, real.images[2:], real.counts[2:], jnp.array([2]), 5)
    np.testing.assert_array_equal(alone[0], drawn[2])


# ------------------------------------------------------------------ what the methods match


def test_gradient_distance_is_one_minus_cosine_per_output_skipping_biases():
    kernel = jnp.array([[1.0, 0.0], [0.0, 2.0]])  # [in, out]: outputs are columns
    real = {"kernel": kernel, "bias": jnp.array([1.0, 1.0])}
    assert float(gradient_distance(real, real)) == pytest.approx(0.0, abs=1e-5)
    flipped = {"kernel": jnp.array([[-1.0, 0.0], [0.0, 2.0]]), "bias": jnp.array([-5.0, 3.0])}
    assert float(gradient_distance(real, flipped)) == pytest.approx(2.0, abs=1e-5)
    rotated = {"kernel": jnp.array([[1.0, 1.0], [1.0, 1.0]]), "bias": jnp.zeros(2)}
    expected = 2 * (1 - 1 / np.sqrt(2))  # 45 degrees apart in both columns
    assert float(gradient_distance(real, rotated)) == pytest.approx(expected, abs=1e-5)
    conv = jax.random.normal(jax.random.key(0), (3, 3, 4, 5))  # HWIO: 5 outputs
    assert float(gradient_distance({"k": conv}, {"k": -conv})) == pytest.approx(10.0, abs=1e-4)


def test_mean_embedding_loss_is_zero_for_the_class_itself_and_weighted_by_class():
    config = tiny_distill_config.get_config("dm")
    real = toy_real(per_class=(6, 6, 6))
    model = methods._model(config, 3)
    params = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)))["params"]
    real_batches, synthetic = siamese_pairs(
        jax.random.key(1), jnp.asarray(real.images), real.images, real.counts, jnp.arange(3), 6,
        "none",
    )  # fmt: skip
    ones = jnp.ones(3)
    loss = mean_embedding_loss(model, params, real_batches, synthetic, ones)
    assert float(loss) == pytest.approx(0.0, abs=1e-6)
    other = synthetic.at[1].set(synthetic[0])
    per_class = mean_embedding_loss(model, params, real_batches, other, ones)
    assert float(per_class) > 0
    weighted = mean_embedding_loss(model, params, real_batches, other, jnp.array([1.0, 0, 1]))
    assert float(weighted) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("method", ["dm", "dc", "dsa"])
def test_one_step_lowers_the_matching_loss_on_the_same_draw(method):
    config = tiny_distill_config.get_config(method)
    config.distill.lr_img = 0.01 if method == "dm" else 0.1
    config.distill.outer_loop = 1
    real = toy_real(per_class=(8, 8, 8))
    config.distill.batch_real = 8
    losses, _ = losses_on_one_draw(*methods.start(config, real, num_devices=1))
    assert losses[2] < losses[1] < losses[0]


def losses_on_one_draw(step, sharded, state, iterations: int = 3):
    """The losses of `iterations` iterations with one key (the same network and real batches
    each time), and the final state."""
    key = jax.random.key(5)
    losses = []
    for _ in range(iterations):
        state, metrics = step.iteration(state, key, sharded)
        losses.append(float(metrics["loss"]))
    return losses, state


@pytest.mark.parametrize("method", ["dm", "dsa"])
def test_classes_split_over_eight_devices_give_the_one_device_set(method):
    assert jax.local_device_count() == 8
    config = tiny_distill_config.get_config(method)
    config.distill.iterations = 2
    real = toy_real(num_classes=3, per_class=(6, 9, 7))  # 3 classes: 5 padding devices
    config.distill.batch_real = 6
    one = methods.distill(config, real, num_devices=1)
    eight = methods.distill(config, real, num_devices=8)
    assert one.images.shape == (3, 2, 8, 8, 3)
    np.testing.assert_allclose(one.images, eight.images, atol=2e-5)
    assert np.abs(one.images - methods.distill(config, real, num_devices=1).images).max() == 0


# ------------------------------------------------------------------ coresets


def test_herding_tracks_the_mean_and_k_center_takes_the_farthest():
    features = np.array([[0.5], [10.0], [4.0], [6.0], [-10.0]])  # mean 2.1
    # Running means 0.5, 2.25, 3.5: each the closest to 2.1 that one more image allows.
    assert coreset.herding(features, 3).tolist() == [0, 2, 3]
    np.testing.assert_array_equal(coreset.k_center(features, 3, first=2), [2, 4, 1])


@pytest.mark.parametrize("method", ["random", "herding", "kcenter"])
def test_coresets_pick_distinct_real_images_of_each_class(method):
    config = tiny_distill_config.get_config(method)
    config.distill.ipc = 3
    real = toy_real()
    chosen = methods.distill(config, real).images
    assert chosen.shape == (3, 3, 8, 8, 3)
    for c in range(3):
        members = {real.images[c, i].tobytes() for i in range(real.counts[c])}
        assert len({image.tobytes() for image in chosen[c]} & members) == 3


# ------------------------------------------------------------------ the set's files


def test_a_set_round_trips_through_its_files_and_refuses_what_does_not_match(tmp_path):
    images = np.random.default_rng(0).normal(size=(2, 3, 8, 8, 3)).astype(np.float32)
    synthetic = SyntheticSet(images, ["a", "b"], (0.1, 0.2, 0.3), (0.4, 0.5, 0.6), "dm")
    save_synthetic(synthetic, tmp_path)
    loaded = load_synthetic(tmp_path)
    np.testing.assert_array_equal(loaded.images, images)
    assert (loaded.class_names, loaded.mean, loaded.method) == (["a", "b"], (0.1, 0.2, 0.3), "dm")
    assert json.loads((tmp_path / "labels.json").read_text())["ipc"] == 3
    check_matches(loaded, ["a", "b"], (0.1, 0.2, 0.3), (0.4, 0.5, 0.6))
    with pytest.raises(ValueError, match="classes are not the evaluation data's"):
        check_matches(loaded, ["b", "a"], (0.1, 0.2, 0.3), (0.4, 0.5, 0.6))
    with pytest.raises(ValueError, match="normalised with std .* set data.std"):
        check_matches(loaded, ["a", "b"], (0.1, 0.2, 0.3), (0.5, 0.5, 0.5))
    np.savez(tmp_path / "synthetic.npz", images=images.reshape(6, 8, 8, 3), labels=np.zeros(6))
    with pytest.raises(ValueError, match="not 3 per class in class order"):
        load_synthetic(tmp_path)
    with pytest.raises(FileNotFoundError, match="No synthetic.npz"):
        load_synthetic(tmp_path / "elsewhere")


def test_the_sets_picture_rows_classes_and_shows_at_most_ten_images_a_class():
    def picture(ipc):
        images = np.zeros((2, ipc, 8, 8, 3), np.float32)
        images[1] = 1.0  # class 1 brighter than class 0
        return grid_image(SyntheticSet(images, ["a", "b"], (0.5,) * 3, (0.25,) * 3, "random"))

    one = picture(1)  # both classes' single images side by side in one row (2 px apart)
    assert one.shape == (8, 2 * 8 + 2, 3)
    assert one[:, :8].mean() < one[:, 10:].mean()
    many = picture(500)  # a coreset as large as a class: a row of ten per class
    assert many.shape == picture(10).shape == (2 * 8 + 2, 10 * 8 + 9 * 2, 3)


# ------------------------------------------------------------------ the evaluation protocol


def test_protocol_drops_the_learning_rate_after_half_with_fresh_momentum():
    real = toy_real(per_class=(4, 4, 4))
    images, labels = real.flat()
    config = tiny_distill_config.get_config("random")
    model = protocol.eval_model("convnet", config, 3)
    settings = config.evaluation
    trainer = nets.NetTrainer(model, protocol.optimizer(settings, len(labels)), "none")
    state = protocol.train_network(trainer, jax.random.key(0), images, labels, settings)
    assert float(state.opt_state.hyperparams["learning_rate"]) == pytest.approx(1e-3)
    # Reset after epoch epochs // 2 + 1 (3 of 0..4): one epoch (one batch) since.
    assert int(state.opt_state.count) == 1


def test_adam_evaluation_warms_up_then_decays_to_a_hundredth_over_the_runs_steps():
    settings = tiny_distill_config.get_config("frepo").evaluation
    settings.lr, settings.epochs, settings.batch_size, settings.warmup_steps = 1e-3, 9, 4, 5
    steps = protocol.total_steps(settings, set_size=10)  # 10 epochs of 3 batches
    schedule = protocol.adam_schedule(settings, steps)
    assert steps == 30
    assert [float(schedule(step)) for step in (0, 5, 30)] == pytest.approx([0, 1e-3, 1e-5])
    assert float(schedule(15)) < 1e-3
    # A warmup longer than the run is capped at half of it, so the run still reaches its peak.
    settings.warmup_steps = 500
    assert float(protocol.adam_schedule(settings, steps)(15)) == pytest.approx(1e-3)


def test_adam_evaluation_keeps_one_optimiser_state_for_the_whole_run():
    real = toy_real(per_class=(4, 4, 4))
    images, labels = real.flat()
    config = tiny_distill_config.get_config("frepo")
    model = protocol.eval_model("convnet", config, 3)
    optimizer = protocol.optimizer(config.evaluation, len(labels))
    state = protocol.train_network(
        nets.NetTrainer(model, optimizer, "none"), jax.random.key(0), images, labels,
        config.evaluation,
    )  # fmt: skip
    adam_state = state.opt_state[0]  # no fresh state past half, unlike the SGD protocol
    assert int(adam_state.count) == protocol.total_steps(config.evaluation, len(labels)) == 5


def test_adam_evaluation_learns_digits_from_label_vectors(digits):
    choice = tiny_distill_config.get_config("random")
    choice.distill.ipc = 10
    images, classes = methods.distill(choice, digits).flat()
    vectors = np.eye(10, dtype=np.float32)[classes] - 0.1  # FRePo's centred one-hot targets
    config = tiny_distill_config.get_config("frepo")
    config.evaluation.update(epochs=40, dsa_strategy="none", lr=3e-3, warmup_steps=10)
    test = digits.flat()
    result = protocol.evaluate_set(config, images, vectors, test, "convnet")
    assert result["optimizer"] == "adam" and result["mean"] > 0.5  # chance is 0.1


def test_protocol_learns_digits_from_ten_real_images_per_class(digits):
    config = tiny_distill_config.get_config("random")
    config.evaluation.epochs = 40
    config.evaluation.dsa_strategy = "none"
    config.distill.ipc = 10
    chosen = methods.distill(config, digits)
    test_images, test_labels = digits.flat()
    result = protocol.evaluate_set(config, *chosen.flat(), (test_images, test_labels), "convnet")
    assert result["runs"] == 1 and len(result["accuracies"]) == 1
    assert result["mean"] > 0.5  # chance is 0.1


def test_unknown_evaluation_network_is_named():
    config = tiny_distill_config.get_config("dm")
    with pytest.raises(ValueError, match="Unknown evaluation.models entry 'resnet'.*vgg16_bn"):
        protocol.eval_model("resnet", config, 10)


# ------------------------------------------------------------------ the command


def _run(tmp_path, name, **distill):
    config = tiny_distill_config.get_config("dm")
    config.distill.update(distill)
    workdir = Workdir(tmp_path / name)
    return distill_and_evaluate(config, workdir), workdir


def test_command_writes_the_set_its_pictures_and_results_and_resumes_exactly(tmp_path):
    results, workdir = _run(tmp_path, "whole", iterations=4)
    files = {path.name for path in workdir.path.iterdir()}
    assert {"synthetic.npz", "labels.json", "synthetic.png", STATE_FILE, RESULTS_FILE} <= files
    assert {"config.json", "efficiency.json"} <= files
    assert sorted(p.name for p in (workdir.path / "grids").iterdir()) == [
        "iteration_000000.png", "iteration_000002.png", "iteration_000004.png"
    ]  # fmt: skip
    assert results["iterations"] == 4 and results["storage_bytes"] == 10 * 2 * 16 * 16 * 3
    assert results["evaluations"][-1]["model"] == "convnet"
    assert 0 <= results["evaluations"][-1]["mean"] <= 1 and results["distill_kwh"] > 0
    flops = workdir.read_efficiency()["flops"]["per_step"]
    assert flops == pytest.approx(results["flops_per_iteration"]) and flops > 0
    # Stopped after 2 iterations, then resumed to 4: the same set as the uninterrupted run.
    first, _ = _run(tmp_path, "resumed", iterations=2)
    second, resumed = _run(tmp_path, "resumed", iterations=4)
    np.testing.assert_array_equal(
        load_synthetic(resumed.path).images, load_synthetic(workdir.path).images
    )
    # Its cost counts both segments, and FLOPs are known after the resume too.
    efficiency = resumed.read_efficiency()
    assert efficiency["total"]["segments"] == 2 and efficiency["total"]["trained_steps"] == 4
    assert second["distill_kwh"] > first["distill_kwh"]
    assert efficiency["flops"]["per_step"] == pytest.approx(results["flops_per_iteration"])
    # The same command once more only evaluates the finished set, and still counts its FLOPs.
    third, _ = _run(tmp_path, "resumed", iterations=4)
    assert third["flops_per_iteration"] == pytest.approx(results["flops_per_iteration"])
    assert resumed.read_efficiency()["flops"]["per_step"] == pytest.approx(
        third["flops_per_iteration"]
    )
    # Asking for fewer iterations than the workdir's set has had is refused, the set kept.
    with pytest.raises(ValueError, match="after 4 iterations, more than distill.iterations=2"):
        _run(tmp_path, "resumed", iterations=2)
    assert saved_iteration(resumed.path) == 4


def test_a_sigterm_saves_and_stops_a_run_given_no_stop_request(tmp_path, monkeypatch):
    def unprotected(signum, frame):
        raise AssertionError("SIGTERM reached the caller's handler: the run installed none")

    from bird_jax import console

    monkeypatch.setattr(
        console.Progress, "started", lambda self, done: os.kill(os.getpid(), signal.SIGTERM)
    )  # a preemption right after the first iteration
    previous = signal.signal(signal.SIGTERM, unprotected)
    try:
        with pytest.raises(Stopped, match="SIGTERM at step 1"):
            _run(tmp_path, "stopped", iterations=4)
        assert signal.getsignal(signal.SIGTERM) is unprotected  # the caller's, back again
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert saved_iteration(tmp_path / "stopped") == 1


@pytest.mark.parametrize(
    "change, message",
    [
        ({"distill.ipc": 1000}, "distill.ipc=1000 is more than class '.*' has"),
        ({"distill.method": "kip"}, "Unknown distill.method 'kip'"),
        ({"model.depth": 5}, "data.image_size=16 is too small for ConvNet-5"),
        ({"evaluation.models": ("convnet", "resnet9")}, "Unknown evaluation.models entry"),
        ({"distill.init": "zeros"}, "distill.init must be one of"),
        ({"distill.eval_at": (0, 99)}, r"distill.eval_at \[99\] lie outside the run's iterations"),
        ({"evaluation.optimizer": "lamb"}, "evaluation.optimizer must be one of"),
    ],
)
def test_bad_settings_stop_before_the_workdir_is_made(tmp_path, change, message):
    config = tiny_distill_config.get_config("dm")
    for key, value in change.items():
        section, name = key.split(".")
        config[section][name] = value
    with pytest.raises(ValueError, match=message):
        distill_and_evaluate(config, Workdir(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_a_distilled_set_is_a_dataset_beside_its_real_test_split(tmp_path):
    _, workdir = _run(tmp_path, "set", method="random", iterations=0)
    config = tiny_distill_config.get_config("dm")
    config.data.source, config.data.root = "distilled", str(workdir.path)
    info = load_splits(config.data)
    train = info.source("train")
    assert len(train) == 20 and train[0]["image"].dtype == np.uint8
    assert np.bincount(train.labels).tolist() == [2] * 10
    assert len(info.source("test")) == len(load_splits(tiny_distill_config.get_config().data)
                                              .source("test"))  # fmt: skip
    config.data.root = str(tmp_path / "nothing")
    with pytest.raises(FileNotFoundError, match="No synthetic.npz"):
        load_splits(config.data)


# ------------------------------------------------------------------ shipped configs


@pytest.mark.parametrize(
    "name, variant, expected",
    [
        ("dm", "cifar10_ipc10", {"iterations": 20_000, "lr_img": 1.0, "init": "real"}),
        ("dc", "cifar10_ipc1", {"iterations": 1000, "lr_img": 0.1, "init": "noise"}),
        ("dsa", "cifar100_ipc50", {"init": "real", "dsa_strategy": DSA}),
        ("dm", "birds_ipc1", {"ipc": 1}),
        ("coreset", "herding_birds_ipc10", {"method": "herding", "ipc": 10}),
    ],
)
def test_shipped_distillation_configs_hold_the_papers_settings(name, variant, expected):
    config = config_module(name).get_config(variant)
    methods.check_config(config)
    assert {key: config.distill[key] for key in expected} == expected
    assert config.model_name == "convnet" and config.evaluation.epochs == 1000
    birds = variant.split("_")[-2] == "birds"
    assert (config.data.image_size, config.model.depth) == ((64, 4) if birds else (32, 3))


def test_papers_loops_by_images_per_class():
    from bird_jax.distill.dc import default_loops

    assert [default_loops(ipc) for ipc in (1, 10, 50, 5, 100)] == [
        (1, 1), (10, 50), (50, 10), (10, 50), (50, 10)
    ]  # fmt: skip


@pytest.mark.parametrize("name, variant", [("dm", "mnist_ipc1"), ("coreset", "best_cifar10_ipc1")])
def test_unknown_config_variants_are_named(name, variant):
    with pytest.raises(ValueError, match="Unknown"):
        config_module(name).get_config(variant)


def config_module(name: str):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[1] / "configs" / "distill" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"distill_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
