"""The quickstart, run as `make quickstart` runs it, reaches the figures README states.

A subprocess without the suite's 8 fake devices and with XLA's usual optimisations: one CPU
device, so BatchNorm sees the batch of 64 that a user's run sees, not 8 shards of 8.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# README: 100% top-1 on the validation split (final step) and 98.9% on the test split (best
# checkpoint), 180 images each; float rounding differs between CPUs, so one image less passes.
EXAMPLES = 180
VALID_CORRECT, TEST_CORRECT = 180, 178


def test_quickstart_reaches_the_readme_figures(tmp_path):
    hidden = ("XLA_FLAGS", "JAX_DISABLE_MOST_OPTIMIZATIONS")  # set by conftest for the suite
    env = {name: value for name, value in os.environ.items() if name not in hidden}

    def main(*args):
        command = [sys.executable, "-m", "bird_jax.main", f"--workdir={tmp_path}", *args]
        result = subprocess.run(
            command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600
        )
        assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
        return result.stdout

    log = main("--config=configs/quickstart.py")
    assert re.search(r", 1 \w+ device\(s\) in 1 process", log), log[:1000]  # as a user runs it
    main("--mode=evaluate", "--split=test", "--checkpoint=best")
    for split, correct in (("valid", VALID_CORRECT), ("test", TEST_CORRECT)):
        report = json.loads((tmp_path / f"eval_{split}.json").read_text())
        assert report["num_examples"] == EXAMPLES
        assert report["accuracy"] >= (correct - 1) / EXAMPLES - 1e-9, (split, report["accuracy"])
