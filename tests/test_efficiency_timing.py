"""RunClock: phases add up, step times come from consecutive blocks, percentiles are right."""

import jax.numpy as jnp
import numpy as np
import pytest

from bird_jax.efficiency.timing import RunClock
from tests.fixtures.clock import FakeClock


def test_phases_accumulate_and_unknown_phase_is_refused():
    fake = FakeClock()
    clock = RunClock(clock=fake)
    for duration in (2.0, 3.0):
        with clock.phase("eval"):
            fake.now += duration
    with clock.phase("input_wait"):
        fake.now += 0.5
    summary = clock.summary()
    assert summary["eval_s"] == 5.0 and summary["input_wait_s"] == 0.5
    assert summary["train_s"] == 0.0 and summary["wall_s"] == 5.5
    with pytest.raises(ValueError, match="phases are"), clock.phase("lunch"):
        pass


def test_step_times_are_intervals_between_consecutive_blocks():
    fake = FakeClock()
    clock = RunClock(clock=fake)
    durations = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0]
    for duration in durations:
        clock.step_done(jnp.zeros(()))  # blocks on the previous one, then times
        fake.now += duration
    clock.step_done(jnp.zeros(()))
    # The first block only starts the clock; each later one closes the interval before it.
    assert clock.step_seconds == durations[1:]
    summary = clock.summary()
    assert summary["timed_steps"] == 10
    assert summary["step_p50_s"] == pytest.approx(np.percentile(durations[1:], 50))
    assert summary["step_p90_s"] == pytest.approx(np.percentile(durations[1:], 90))


def test_restart_excludes_pauses_from_step_times():
    fake = FakeClock()
    clock = RunClock(clock=fake)
    for _ in range(3):
        clock.step_done(jnp.zeros(()))
        fake.now += 1.0
    clock.restart_steps()
    fake.now += 100.0  # an evaluation
    for _ in range(3):
        clock.step_done(jnp.zeros(()))
        fake.now += 1.0
    assert max(clock.step_seconds) == 1.0


def test_no_steps_gives_nan_percentiles():
    summary = RunClock().summary()
    assert np.isnan(summary["step_p50_s"]) and summary["timed_steps"] == 0
