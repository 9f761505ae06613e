"""A run's cost summed over resumed segments (and, on one process, passed through unchanged)."""

import json

import pytest

from bird_jax.efficiency import segments
from bird_jax.workdir import Workdir


def segment_summary(trained_steps, wall_s, kwh, measured=True, target=None):
    """The parts of RunAccounting.summary() that segments adds up."""
    energy = {"kwh": kwh, "joules": kwh * 3.6e6, "co2_kg": kwh * 0.475, "device_hours": 0.1,
              "cost": 0.2, "measured": measured, "method": "measured: test"}  # fmt: skip
    return {
        "time": {"wall_s": wall_s},
        "trained_steps": trained_steps,
        "energy": energy,
        "target": target,
    }


def test_a_fresh_run_is_one_segment_even_over_an_old_file():
    old = segments.with_history(segment_summary(50, 10.0, 0.5), None, start_step=0)
    fresh = segments.with_history(segment_summary(100, 20.0, 1.0), old, start_step=0)
    assert fresh["total"]["segments"] == 1 and fresh["total"]["kwh"] == 1.0
    assert fresh["segments"][0]["end_step"] == 100


def test_resumed_segments_add_up_including_repeated_work():
    first = segments.with_history(segment_summary(40, 10.0, 0.5), None, start_step=0)
    # Restarted from the checkpoint at step 30: steps 31-40 are trained (and paid for) twice.
    second = segments.with_history(
        segment_summary(70, 25.0, 1.5, measured=False), first, start_step=30
    )
    total = second["total"]
    assert [(s["start_step"], s["end_step"]) for s in second["segments"]] == [(0, 40), (30, 100)]
    assert (total["segments"], total["trained_steps"], total["wall_s"]) == (2, 110, 35.0)
    assert total["kwh"] == pytest.approx(2.0) and total["cost"] == pytest.approx(0.4)
    assert total["co2_kg"] == pytest.approx(2.0 * 0.475) and total["measured"] is False
    assert second["energy"]["kwh"] == 1.5  # the segment's own figures stay as they were


def test_time_to_target_counts_from_the_start_of_the_run():
    reached = {"target_accuracy": 0.5, "reached_at_step": 60, "seconds": 5.0, "kwh": 0.25}
    first = segments.with_history(segment_summary(40, 10.0, 0.5), None, start_step=0)
    second = segments.with_history(segment_summary(60, 20.0, 1.0, target=reached), first, 40)
    assert second["target"] == {**reached, "seconds": 15.0, "kwh": 0.75}
    third = segments.with_history(segment_summary(10, 1.0, 0.1), second, 100)
    assert third["target"] == second["target"]  # reached earlier: kept


def test_unreadable_previous_file_starts_a_new_history(tmp_path):
    run = Workdir(tmp_path)
    assert run.read_efficiency() == {}
    run.efficiency_file.write_text("{not json")
    assert run.read_efficiency() == {}
    assert segments.with_history(segment_summary(5, 1.0, 0.1), {}, 40)["total"]["segments"] == 1
    run.efficiency_file.write_text(json.dumps({"segments": []}))
    assert run.read_efficiency() == {"segments": []}


def test_one_process_passes_the_energy_through():
    energy = segment_summary(1, 1.0, 0.5)["energy"]
    assert segments.across_processes(energy) == {**energy, "processes": 1}
