"""Test setup: 8 fake CPU devices for pmap, fast compiles, absl flags marked parsed, and
temporary files kept under pytest's own directory.

The tests check numerics and behaviour, never speed, so XLA skips most optimisations
(JAX_DISABLE_MOST_OPTIMIZATIONS, inherited by the processes tests start, except the quickstart,
which runs as a user runs it): compiles take about half the time, results are the same up to
float rounding.

Every compiled program goes to a persistent compilation cache that lives for one pytest run and is
shared by its workers and the single processes tests start (not the multi-process runs, see
test_multiprocess): the resume tests compile each run two or three times, and many tests compile
the same small networks. Keys are the programs and XLA's options, so a hit is the executable a
fresh compile would give; the directory is removed at the end of the run.

JAX_PLATFORMS defaults to cpu. `benchmarks/device/check.sh` runs the GPU-relevant tests with
JAX_PLATFORMS=cuda,cpu: the GPU is the default backend there, and the fake-device flag only
gives the CPU beside it (used for FLOP counts) its eight devices.
"""

import os
import shutil
import tempfile

# Must happen before jax is imported anywhere.
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
# The first process of a run (pytest itself, before xdist starts its workers) makes the cache.
_OWN_COMPILATION_CACHE = "JAX_COMPILATION_CACHE_DIR" not in os.environ
if _OWN_COMPILATION_CACHE:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="bird_jax_tests_xla_cache_")
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"

import pytest  # noqa: E402
from absl import flags  # noqa: E402

flags.FLAGS.mark_as_parsed()


def pytest_unconfigure(config):
    if _OWN_COMPILATION_CACHE:
        shutil.rmtree(os.environ.pop("JAX_COMPILATION_CACHE_DIR"), ignore_errors=True)


@pytest.fixture(autouse=True, scope="session")
def _temporary_files_where_pytest_cleans_up(tmp_path_factory):
    """Libraries' temporary files (TFDS leaves an empty tmp*tfds directory for every dataset it
    builds) go under pytest's base directory, of which pytest keeps the last three, not /tmp;
    so do those of the processes the tests start."""
    directory = str(tmp_path_factory.mktemp("tempfile"))
    previous = os.environ.get("TMPDIR")
    tempfile.tempdir, os.environ["TMPDIR"] = directory, directory
    yield
    tempfile.tempdir = None
    if previous is None:
        del os.environ["TMPDIR"]
    else:
        os.environ["TMPDIR"] = previous
