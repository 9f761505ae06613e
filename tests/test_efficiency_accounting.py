"""RunAccounting: power defaults, time-to-target, and a summary with unknown FLOPs."""

import jax
import pytest

from bird_jax import config as defaults
from bird_jax import efficiency
from bird_jax.efficiency.accounting import (
    DEFAULT_ACCELERATOR_WATTS,
    DEFAULT_CPU_WATTS,
    estimate_watts,
)
from bird_jax.workdir import Workdir


class _Device:
    def __init__(self, platform):
        self.platform = platform


def test_estimated_power_is_the_configured_or_a_per_device_default():
    assert estimate_watts(123.0, [_Device("gpu")] * 4) == 123.0
    assert estimate_watts(0.0, [_Device("gpu")] * 4) == 4 * DEFAULT_ACCELERATOR_WATTS
    assert estimate_watts(0.0, [_Device("cpu")] * 8) == DEFAULT_CPU_WATTS


def test_time_to_target_is_the_first_evaluation_reaching_it(tmp_path):
    config = defaults.get_config()
    config.efficiency.target_accuracy = 0.5
    accounting = efficiency.RunAccounting(
        config, images_per_step=64, workdir=Workdir(tmp_path), start_step=0
    )
    accounting.evaluated(3, 0.4)
    assert accounting.target is None
    accounting.evaluated(5, 0.6)
    accounting.evaluated(7, 0.9)
    assert accounting.target["reached_at_step"] == 5 and accounting.target["kwh"] >= 0
    accounting.tracker.stop()


def test_summary_without_steps_or_flops_leaves_them_unknown(tmp_path):
    config = defaults.get_config()
    config.efficiency.price_per_device_hour = 2.0
    accounting = efficiency.RunAccounting(
        config, images_per_step=64, workdir=Workdir(tmp_path), start_step=0
    )
    accounting.tracker.stop()
    summary = accounting.summary(trained_steps=0)
    assert summary["throughput"]["images_per_s"] is None and summary["flops"]["mfu"] is None
    assert summary["target"] is None
    devices = len(jax.local_devices())
    energy = summary["energy"]
    assert energy["cost"] == pytest.approx(2.0 * energy["seconds"] * devices / 3600)
    assert efficiency.format_summary(summary).startswith("wall ")


def test_record_writes_the_cost_so_far_with_the_earlier_segments(tmp_path):
    run = Workdir(tmp_path)
    run.write_efficiency({"segments": [{"start_step": 0, "end_step": 4, "trained_steps": 4,
                                        "wall_s": 2.0, "kwh": 0.5, "joules": 1.8e6,
                                        "co2_kg": 0.1, "device_hours": 0.1, "cost": 0.0,
                                        "measured": False}]})  # fmt: skip
    accounting = efficiency.RunAccounting(
        defaults.get_config(), images_per_step=64, workdir=run, start_step=4
    )
    accounting.record(6)  # a checkpoint mid-segment
    first = run.read_efficiency()
    assert first["trained_steps"] == 2 and first["total"]["segments"] == 2
    final = accounting.finish(10)
    assert final["trained_steps"] == 6 and run.read_efficiency()["total"]["trained_steps"] == 10
    assert len(run.read_efficiency()["segments"]) == 2  # the mid-segment record was replaced
