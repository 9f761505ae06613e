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


def test_an_evaluation_run_reports_every_tenth_of_its_epochs_once_it_runs_long(capsys):
    import jax.numpy as jnp

    from bird_jax.distill.protocol import progress_reporter

    printed = {}
    for seconds_per_epoch in (10.0, 1.0):
        clock = FakeClock()
        report = progress_reporter("convnet run 1/3", 20, min_seconds=30, clock=clock)
        for done in range(1, 21):
            clock.now = done * seconds_per_epoch
            report(done, jnp.float32(0.5))
        printed[seconds_per_epoch] = capsys.readouterr().out.splitlines()
    # Every second epoch is a tenth, but lines are at least 30 s apart: every fourth.
    slow = printed[10.0]
    assert [int(line.split("epoch")[1].split("/")[0]) for line in slow] == [4, 8, 12, 16, 20]
    assert slow[0].startswith("convnet run 1/3: epoch  4/20  loss 0.5000  0.10 epochs/s  ETA 2:40")
    assert printed[1.0] == []  # a 20-second run stays quiet
