"""Where the train step's time goes on this backend: XLA's per-op profile, grouped by layer.

Builds the real pmapped train step as `train_step_throughput.py` does (`experiment.build` +
`experiment.pmapped_train_step`, one resident random uint8 batch), times `--steps` steps, then
traces as many with `jax.profiler` (a Perfetto trace: XLA:CPU records every thunk it runs, i.e.
every top-level fusion, convolution, dot and copy of the compiled step). Each thunk is matched to
its HLO instruction in the compiled module, whose `op_name` metadata names the JAX operation and
the flax module it came from (`jvp(...)` forward, `transpose(jvp(...))` backward).

  OMP_WAIT_POLICY=PASSIVE python benchmarks/profile_train_step.py --model=lightweight_cnn \
      --image_sizes=64,128,224 --batch_size=16 --top=15

Prints, per image size: the step time, the summed thunk time per (phase, layer kind) and the
`--top` costliest thunks with their op_name. Instructions XLA creates itself (layout copies,
transposes, the kernel-gradient convolutions of nn.Conv) carry no op_name and are listed as
unattributed. Thunks of one step can run concurrently on several cores (XLA's thunk executor),
so the summed thunk time may exceed the step time; a thunk's time is wall time, so it includes
waiting for cores that other work (or another process) holds.
"""

import collections
import gzip
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np
from absl import app, flags

_REPO_ROOT = Path(__file__).resolve().parents[1]
if str(_REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(_REPO_ROOT))

from bird_jax import config as defaults  # noqa: E402
from bird_jax import devices, experiment  # noqa: E402

_MODEL = flags.DEFINE_string("model", "lightweight_cnn", "Registry model name.")
_PRECISION = flags.DEFINE_string("precision", "float32", "config.precision.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 16, "Global batch size.")
_IMAGE_SIZES = flags.DEFINE_list("image_sizes", ["64", "128", "224"], "Input resolutions (px).")
_STEPS = flags.DEFINE_integer("steps", 5, "Timed steps, then as many traced steps.")
_TOP = flags.DEFINE_integer("top", 15, "Costliest thunks to list.")
_NUM_CLASSES = 10

# Module-name patterns -> layer kind, first match wins (names of bird_jax's model families).
_KINDS = (
    (r"(^|/)depthwise(/|$)|(^|/)dwconv(/|$)", "depthwise conv"),
    (r"_bn(/|$)|BatchNorm|(^|/)norm(/|$)", "BatchNorm / norm"),
    (r"relu6|relu|gelu|hard_swish", "activation"),
    (r"(^|/)(expand|project|head_conv|pwconv\d?)(/|$)", "1x1 conv"),
    (r"(^|/)stem(/|$)", "stem conv"),
    (r"(^|/)head(/|$)", "dense head"),
    (r"Dropout|reduce_sum|mean", "pool / dropout"),
)


def build(image_size: int):
    """(pmapped step, replicated state, device batch) exactly as the throughput benchmark."""
    config = defaults.get_config()
    config.model_name = _MODEL.value
    config.precision = _PRECISION.value
    config.batch_size = _BATCH_SIZE.value
    config.data.image_size = image_size
    config.num_train_steps = 1000
    exp = experiment.build(config, [str(i) for i in range(_NUM_CLASSES)], 10_000)
    p_step = experiment.pmapped_train_step(config, exp)
    rng = np.random.default_rng(0)
    host = {
        "image": rng.integers(0, 256, (_BATCH_SIZE.value, image_size, image_size, 3), np.uint8),
        "label": rng.integers(0, _NUM_CLASSES, _BATCH_SIZE.value, dtype=np.int32),
    }
    return p_step, devices.replicate(exp.init_state()), devices.to_devices(host)


def entry_instructions(hlo_text: str) -> dict[str, tuple[str, str, str]]:
    """ENTRY instruction name -> (opcode, shape, op_name) of a compiled HLO module's text."""
    entry = hlo_text[hlo_text.index("\nENTRY ") :]
    pattern = re.compile(r"^\s+(?:ROOT )?%?([\w.\-]+) = (.*?) ([\w\-]+)\(")
    found = {}
    for line in entry.splitlines()[1:]:
        if line.startswith("}"):
            break
        match = pattern.match(line)
        if match:
            name, shape, opcode = match.groups()
            op_name = re.search(r'op_name="([^"]*)"', line)
            kind = re.search(r'"kind":"(__\w+)"', line)
            found[name] = (
                kind.group(1) if kind else opcode,
                shape,
                op_name.group(1) if op_name else "",
            )
    return found


def classify(op_name: str) -> tuple[str, str]:
    """(phase, layer kind) of one instruction from its op_name metadata."""
    if not op_name:
        return "unattributed", "no op_name: XLA-made copies, transposes, conv kernel gradients"
    if "transpose(jvp(" in op_name:
        phase = "backward"
    elif "jvp(" in op_name:
        phase = "forward"
    else:
        return "rest of step", "optimizer / augment / loss / metrics"
    module_path = op_name.split("))/", 1)[-1] if phase == "backward" else op_name.split(")/", 1)[-1]
    for pattern, kind in _KINDS:
        if re.search(pattern, module_path):
            return phase, kind
    return phase, "other"


def thunk_times(trace_dir: str, names: set[str]) -> collections.Counter:
    """Summed microseconds per thunk name over the trace (only ENTRY-level instructions)."""
    path = sorted(Path(trace_dir).rglob("*.trace.json.gz"))[-1]
    with gzip.open(path) as f:
        trace = json.load(f)
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    totals = collections.Counter()
    for event in events:
        if event.get("ph") == "X" and event.get("name") in names:
            totals[event["name"]] += event["dur"]
    return totals


def run(p_step, state, batch, num_steps: int):
    start = time.perf_counter()
    for _ in range(num_steps):
        state, _ = p_step(state, batch)
    jax.block_until_ready(state)
    return state, time.perf_counter() - start


def profile(image_size: int) -> None:
    p_step, state, batch = build(image_size)
    instructions = entry_instructions(p_step.lower(state, batch).compile().as_text())
    state, _ = run(p_step, state, batch, 2)  # compile + warm-up
    windows = []
    for _ in range(_STEPS.value):
        state, seconds = run(p_step, state, batch, 1)
        windows.append(seconds * 1e3)
    step_ms = statistics.median(windows)
    with tempfile.TemporaryDirectory() as trace_dir:
        jax.profiler.start_trace(trace_dir, create_perfetto_trace=True)
        state, _ = run(p_step, state, batch, _STEPS.value)
        jax.profiler.stop_trace()
        totals = thunk_times(trace_dir, set(instructions))
    per_step = {name: us / 1e3 / _STEPS.value for name, us in totals.items()}
    summed = sum(per_step.values())
    print(
        f"\n### {_MODEL.value}, {image_size} px, {_PRECISION.value}, batch {_BATCH_SIZE.value}: "
        f"step {step_ms:.1f} ms median ({min(windows):.1f}-{max(windows):.1f}), "
        f"{_BATCH_SIZE.value / step_ms * 1e3:.1f} images/s; thunks {summed:.1f} ms summed "
        f"({len(per_step)} thunks per step)\n"
    )
    groups = collections.Counter()
    for name, ms in per_step.items():
        groups[classify(instructions[name][2])] += ms
    print("| phase | layer kind | ms/step | share |\n|---|---|---:|---:|")
    for (phase, kind), ms in groups.most_common():
        print(f"| {phase} | {kind} | {ms:.2f} | {100 * ms / summed:.1f}% |")
    print("\n| thunk | HLO | shape | ms/step | share | op_name |\n|---|---|---|---:|---:|---|")
    for name, ms in sorted(per_step.items(), key=lambda kv: -kv[1])[: _TOP.value]:
        opcode, shape, op_name = instructions[name]
        op_name = op_name.replace("jit(_fun)/", "")
        print(f"| {name} | {opcode} | {shape} | {ms:.2f} | {100 * ms / summed:.1f}% | {op_name} |")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    print(f"jax {jax.__version__}, backend {jax.default_backend()}, {jax.devices()[0].device_kind}")
    for size in _IMAGE_SIZES.value:
        profile(int(size))


if __name__ == "__main__":
    app.run(main)
