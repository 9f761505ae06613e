"""Tests for the distillation study (bird_jax.distill.study, `bird_jax.study --study=distill`):
the configs it derives, a whole small study and its report, and bad input."""

import signal
from types import SimpleNamespace

import pytest

from bird_jax import config as base_defaults
from bird_jax.distill import study
from bird_jax.signals import Stopped
from bird_jax.workdir import read_json
from tests import tiny_distill_config


def test_each_method_keeps_its_defaults_and_takes_the_command_lines_settings():
    base = tiny_distill_config.get_config("dm")  # cifar10 defaults, changed to a tiny run
    configs = study.variant_configs(base, ["dm", "frepo", "pca"], ipcs=[1, 3], full_epochs=7)
    assert list(configs) == ["dm_ipc1", "dm_ipc3", "frepo_ipc1", "frepo_ipc3", "pca_ipc1",
                             "pca_ipc3", "full"]  # fmt: skip
    frepo = configs["frepo_ipc3"]
    assert (frepo.distill.method, frepo.distill.ipc) == ("frepo", 3)
    assert frepo.distill.lr_img == 3e-4 and configs["dm_ipc1"].distill.lr_img == 1.0  # own
    assert frepo.distill.iterations == 4 and frepo.data.name == "digits"  # the tiny run's
    assert frepo.evaluation.epochs == 4 and frepo.model.width == 8
    assert configs["full"].evaluation.epochs == 7 and configs["full"].distill.method == "random"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"method_names": ["kip"]}, r"Unknown method\(s\) \['kip'\]"),
        ({"ipcs": [0]}, "--ipcs must list images per class >= 1"),
    ],
)
def test_bad_study_settings_are_named(kwargs, message):
    arguments = {"method_names": ["random"], "ipcs": [1], "full_epochs": 0, **kwargs}
    with pytest.raises(ValueError, match=message):
        study.variant_configs(tiny_distill_config.get_config("dm"), **arguments)


def test_a_training_config_is_not_a_distillation_study():
    with pytest.raises(ValueError, match="needs a distillation config"):
        study.variant_configs(base_defaults.get_config(), ["random"], [1], 0)


def test_a_small_study_writes_its_report_and_reruns_without_recomputing(tmp_path):
    base = tiny_distill_config.get_config("dm")
    base.distill.eval_at = (0, 2)  # DM is also evaluated at its start and half-way: a curve
    configs = study.variant_configs(base, ["random", "dm"], ipcs=[1, 2], full_epochs=2)
    rows = study.run_study(configs, tmp_path)
    assert [row["variant"] for row in rows] == ["random_ipc1", "random_ipc2", "dm_ipc1",
                                                "dm_ipc2", "full"]  # fmt: skip
    full = rows[-1]
    assert full["method"] == "full" and full["ipc"] > 100  # the digits' smallest class
    assert all(0 <= row["convnet_mean"] <= 1 and row["convnet_train_kwh"] > 0 for row in rows)
    assert rows[2]["storage_bytes"] == 10 * 16 * 16 * 3  # DM, one image a class
    assert {row["optimizer"] for row in rows} == {"sgd"}  # the protocol's, for every set
    report = tmp_path / "report"
    for name in ("distill.md", "distill.csv", "accuracy_vs_ipc.png", "accuracy_vs_energy.png",
                 "accuracy_vs_iteration.png"):  # fmt: skip
        assert (report / name).is_file()
    curves = study.accuracy_curves(rows, tmp_path, "convnet")
    assert [iteration for iteration, _ in curves["dm_ipc2"]] == [0, 2, 4]
    assert len(curves["random_ipc1"]) == 1 and "full" not in curves  # a level; not drawn
    assert sorted(p.name for p in (report / "grids").iterdir()) == [
        "dm_ipc1.png", "dm_ipc2.png", "random_ipc1.png", "random_ipc2.png"
    ]  # fmt: skip
    table = (report / "distill.md").read_text()
    assert "| dm_ipc2 |" in table and "| full |" in table
    before = read_json(tmp_path / "dm_ipc1" / "results.json")
    again = study.run_study(configs, tmp_path)  # finished variants are read, not rerun
    assert read_json(tmp_path / "dm_ipc1" / "results.json") == before
    assert again == rows
    # A later command with other variants reports them and every variant finished before.
    later = study.variant_configs(base, ["random"], ipcs=[3], full_epochs=0)
    merged = study.run_study(later, tmp_path)
    assert [row["variant"] for row in merged] == ["random_ipc3", "dm_ipc1", "dm_ipc2",
                                                  "random_ipc1", "random_ipc2", "full"]  # fmt: skip
    assert "| dm_ipc2 |" in (report / "distill.md").read_text()


def test_the_table_names_an_evaluation_that_is_not_the_protocols_sgd():
    row = {"storage_bytes": 768, "distill_seconds": 1.0, "distill_kwh": 0.0, "convnet_mean": 0.5,
           "convnet_std": 0.0, "convnet_train_kwh": 0.0, "epochs": 300}  # fmt: skip
    table = study.markdown_table([
        {**row, "variant": "dm_ipc1", "optimizer": "sgd", "convnet_runs": 3},
        {**row, "variant": "frepo_ipc1", "optimizer": "adam", "convnet_runs": 1},
    ])  # fmt: skip
    assert "| dm_ipc1 | 50.00 ± 0.00 | 300 |" in table and "| epochs |" in table
    assert "| frepo_ipc1 (adam evaluation) | 50.00 | 300 |" in table  # one run: no spread


def test_the_energy_plot_adds_the_plotted_networks_training_to_the_distilling():
    """A row whose evaluations ran in another order (the whole split's, merged from two runs)
    is placed at its distilling plus one training run of the network on the y axis."""
    from bird_jax.compare import figure_and_axes

    row = {"variant": "full", "method": "full", "ipc": 23, "distill_kwh": 0.001,
           "convnet_mean": 0.42, "convnet_train_kwh": 0.018,
           "lightweight_cnn_mean": 0.27, "lightweight_cnn_train_kwh": 0.004}  # fmt: skip
    for model, expected_wh in (("convnet", 19.0), ("lightweight_cnn", 5.0)):
        _, axes = figure_and_axes()
        study._plot_energy(axes, [row], model)
        ((x, y),) = axes.collections[0].get_offsets()
        assert (x, y) == pytest.approx((expected_wh, 100 * row[f"{model}_mean"]))


def test_a_stopped_study_saves_the_variant_in_progress_and_resumes_it(tmp_path):
    from bird_jax.distill.state_file import saved_iteration

    configs = study.variant_configs(tiny_distill_config.get_config("dm"), ["dm"], [1], 0)
    sigterm = SimpleNamespace(requested=True, signum=signal.SIGTERM)  # as StopRequest after one
    with pytest.raises(Stopped, match="at step 1"):
        study.run_study(configs, tmp_path, sigterm)
    assert saved_iteration(tmp_path / "dm_ipc1") == 1
    (row,) = study.run_study(configs, tmp_path)  # the same call resumes and finishes it
    assert saved_iteration(tmp_path / "dm_ipc1") == 4 and 0 <= row["convnet_mean"] <= 1
