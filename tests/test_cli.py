"""The commands' shared command-line behaviour."""

import subprocess
import sys

COMMANDS = (
    "bird_jax.main", "bird_jax.compare", "bird_jax.convert", "bird_jax.export",
    "bird_jax.predict", "bird_jax.preview", "bird_jax.study", "bird_jax.data.prepare",
    "bird_jax.distill.__main__",
)  # fmt: skip
# Flags of theirs that several share, or that only a command defines (libraries define others).
OWN_FLAGS = {"config", "workdir", "out", "split", "checkpoint", "mode", "model", "format", "study"}


def test_importing_every_command_defines_none_of_their_flags():
    """Several commands have --out, --split or --workdir: importing them all together (a study
    uses compare's report, a notebook any of them) must not define, let alone clash over, any."""
    script = (
        "import importlib\n"
        "from absl import flags\n"
        f"for name in {COMMANDS!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(sorted(set(flags.FLAGS) & {OWN_FLAGS!r}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]", result.stdout


def test_each_command_defines_its_flags_when_run():
    """--help lists a command's own flags (defined by cli.run before parsing)."""
    for name, flag in (("bird_jax.compare", "--split"), ("bird_jax.distill", "--workdir")):
        result = subprocess.run(
            [sys.executable, "-m", name, "--helpshort"], capture_output=True, text=True
        )
        assert flag in result.stdout, (name, result.stdout, result.stderr)
