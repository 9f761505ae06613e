"""Progress lines: steps/s and ETA from a fake clock."""

from bird_jax.console import Progress
from tests.fixtures.clock import FakeClock


def test_steps_per_second_leave_out_a_pause_and_the_eta_keeps_it():
    clock = FakeClock()
    progress = Progress(0, 40, clock=clock)
    clock.now = 5.0  # the first step compiled
    progress.started(1)
    clock.now = 14.0  # nine steps in nine seconds
    assert "1.00 steps/s" in progress.line(10, {"loss": 1.0})
    with progress.paused():
        clock.now = 114.0  # a 100-second evaluation
    clock.now = 124.0
    line = progress.line(20, {"loss": 0.5})
    assert "1.00 steps/s" in line  # not 10 steps in 110 s
    assert "ETA 2:" in line  # 19 steps in 119 s since the start: 20 more take about 125 s
    clock.now = 134.0
    assert "1.00 steps/s" in progress.line(30, {"loss": 0.4})
