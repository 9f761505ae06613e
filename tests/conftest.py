"""Test setup: 8 fake CPU devices for pmap, fast compiles, and absl flags marked parsed.

The tests check numerics and behaviour, never speed, so XLA skips most optimisations
(JAX_DISABLE_MOST_OPTIMIZATIONS, inherited by the processes tests start, except the quickstart,
which runs as a user runs it): compiles take about half the time, results are the same up to
float rounding.

JAX_PLATFORMS defaults to cpu. `benchmarks/device/check.sh` runs the GPU-relevant tests with
JAX_PLATFORMS=cuda,cpu: the GPU is the default backend there, and the fake-device flag only
gives the CPU beside it (used for FLOP counts) its eight devices.
"""

import os

# Must happen before jax is imported anywhere.
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")

from absl import flags  # noqa: E402

flags.FLAGS.mark_as_parsed()
