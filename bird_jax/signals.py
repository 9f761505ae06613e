"""Turns SIGTERM (preemption, `kill`) and Ctrl-C into a stop request the training loop honours."""

import signal
import threading
import types

from absl import logging


class Stopped(Exception):
    """Training stopped early on a signal, after saving a checkpoint; the same command resumes."""

    def __init__(self, signum: int, step: int):
        name = signal.Signals(signum).name
        super().__init__(f"Stopped by {name} at step {step}; run the same command to resume.")
        self.signum = signum
        self.step = step

    @property
    def exit_code(self) -> int:
        """0 for SIGTERM (a preemption: the job is resubmitted), else 128 + signal (Ctrl-C: 130)."""
        return 0 if self.signum == signal.SIGTERM else 128 + self.signum


class StopRequest:
    """Context manager: while active, SIGTERM/SIGINT set `requested` instead of killing the run.

    The loop checks `requested` after every step, saves a checkpoint and returns. It is active from
    set-up (a stop during data loading, restore or compile is kept for the first step) until the
    final save has finished; `bird_jax.main` keeps it until the process exits. A second SIGTERM
    only repeats the request, so it cannot interrupt the save; a second Ctrl-C while a stop is
    already pending falls back to the default behaviour (immediate exit).
    """

    def __init__(self, signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)):
        self._signals = signals
        self._previous: dict[int, object] = {}
        self.requested = False
        self.signum: int | None = None

    def _handle(self, signum: int, frame: types.FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.requested:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            logging.warning("Received %s again: already stopping (saving a checkpoint).", name)
            return
        logging.warning("Received %s: saving a checkpoint and stopping.", name)
        self.requested = True
        self.signum = signum

    def install(self) -> "StopRequest":
        """Takes over the signals (from the main thread only; elsewhere Python cannot)."""
        if threading.current_thread() is threading.main_thread():
            for sig in self._signals:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __enter__(self) -> "StopRequest":
        return self.install()

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
