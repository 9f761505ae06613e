"""Test setup: 8 fake CPU devices for pmap, and absl flags marked parsed for Grain workers.

JAX_PLATFORMS defaults to cpu. `benchmarks/device/check.sh` runs the GPU-relevant tests with
JAX_PLATFORMS=cuda, where the fake-device flag (it only touches the host platform) changes nothing.
"""

import os

# Must happen before jax is imported anywhere.
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

from absl import flags  # noqa: E402

flags.FLAGS.mark_as_parsed()
