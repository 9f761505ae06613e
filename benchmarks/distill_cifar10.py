"""bird_jax's DC/DSA/DM and evaluation protocol beside the official PyTorch code, one command.

  protocol  the same distilled set (a bird_jax distill workdir, or `distill_reference.py
            make-random` output) evaluated by our protocol and by the official `evaluate_synset`
            (fresh ConvNet-3, 1,000 epochs with DSA), `--runs` seeds each: mean +- std.
            `--uint8`: our side only, the set rounded to the pixels `data.source="distilled"` gives.
  speed     iterations/s of our DM/DSA/DC and of the official loop (`distill_reference.py
            speed`) at the same IPC and real batch, on the same machine, one after the other.
  parts     seconds of what the iterations are made of, both sides on random inputs: ConvNet-3's
            forward over 10 x 256 images (DM) and ten per-class parameter gradients on 256
            images each (the real side of DC/DSA).
  mtt_step  seconds of one MTT matching step on random images (no DSA, `--syn_steps` unrolled
            steps, `--images` synthetic images): ours with XLA's convolutions and with the
            matmul convolutions MTT uses on CPU (ConvNet.patch_matmul), and the official loop
            (`distill_reference.py mtt-step`).

  PYTHONPATH=. python benchmarks/distill_cifar10.py --command=protocol --synset=/tmp/random10 \
      --runs=3 --torch_python=/tmp/benchvenv/bin/python --reference_repo=/tmp/DatasetCondensation
  PYTHONPATH=. python benchmarks/distill_cifar10.py --command=speed --method=dm --ipc=10 ...
  PYTHONPATH=. python benchmarks/distill_cifar10.py --command=parts --repeats=5
  PYTHONPATH=. python benchmarks/distill_cifar10.py --command=mtt_step --images=10 --syn_steps=10

Data: a CIFAR-10 JPEG folder (`--data`, `<data>/{train,test}/<class>/*.jpg`), read by bird_jax's
folder source on our side and decoded by the harness on the reference side (both with PIL).
One JSON line per result on stdout, with the machine and versions.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from jax.flatten_util import ravel_pytree
from machine import (  # benchmarks/machine.py
    cpu_model,
    load_average,
    repeat_seconds,
    summary,
    usable_cores,
)

from bird_jax.distill import methods, mtt, protocol
from bird_jax.distill.defaults import get_config
from bird_jax.distill.iterative import fresh_params
from bird_jax.distill.matching import class_gradients
from bird_jax.distill.real import denormalise, load_real, normalise
from bird_jax.distill.synthetic import check_matches, load_synthetic
from bird_jax.models.registry import create_model

flags.DEFINE_enum("command", None, ["protocol", "speed", "parts", "mtt_step"], "What to measure.")
flags.DEFINE_string("data", "/tmp/cifar10-jpeg", "CIFAR-10 JPEG folder.")
flags.DEFINE_string("synset", None, "protocol: the set's directory (synthetic.npz, labels.json).")
flags.DEFINE_integer("runs", 3, "protocol: networks per side (seeds 0..runs-1).")
flags.DEFINE_integer("epochs", 1000, "protocol: training epochs (the official loop runs one more).")
flags.DEFINE_bool(
    "uint8", False, "protocol: our side only, the set rounded to uint8 pixels (source 'distilled')."
)
flags.DEFINE_enum("method", "dm", ["dm", "dsa", "dc"], "speed: the method.")
flags.DEFINE_integer("ipc", 10, "speed: images per class.")
flags.DEFINE_integer("iterations", 10, "speed: timed iterations per side, after one warm-up.")
flags.DEFINE_integer("repeats", 5, "parts, mtt_step: timed repeats, after one warm-up.")
flags.DEFINE_integer("images", 10, "mtt_step: synthetic images (10 x IPC).")
flags.DEFINE_integer("syn_steps", 10, "mtt_step: unrolled steps.")
flags.DEFINE_list(
    "convolutions", ["xla", "patch_matmul"], "mtt_step: our convolutions to time (xla is slow)."
)
flags.DEFINE_string("torch_python", "/tmp/benchvenv/bin/python", "Python of the reference side.")
flags.DEFINE_string("reference_repo", "/tmp/DatasetCondensation", "Official code checkout.")
FLAGS = flags.FLAGS


def emit(record: dict) -> None:
    machine = {"cpu": cpu_model(), "cores": usable_cores(), "load_average": load_average()}
    print(json.dumps({**record, "machine": machine, "jax": jax.__version__}), flush=True)


def cifar_config(method: str, ipc: int):
    config = get_config(method, f"cifar10_ipc{ipc}")
    config.data.source, config.data.root = "folder", FLAGS.data
    return config


def reference(*args: str) -> list[dict]:
    """The reference harness's JSON lines for `distill_reference.py <args>`."""
    script = Path(__file__).with_name("distill_reference.py")
    command = [FLAGS.torch_python, str(script), *args, f"--data={FLAGS.data}",
               f"--reference_repo={FLAGS.reference_repo}"]  # fmt: skip
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def measure_protocol() -> None:
    config = cifar_config("random", 10)
    config.evaluation.runs, config.evaluation.epochs = FLAGS.runs, FLAGS.epochs
    synthetic = load_synthetic(FLAGS.synset)
    if synthetic.whitening is not None:
        raise SystemExit(f"{FLAGS.synset} is ZCA-whitened; the official evaluation reads pixels.")
    test = load_real(config.data, "test")
    check_matches(synthetic, test.class_names, config.data.mean, config.data.std)
    images, labels = synthetic.flat()
    if FLAGS.uint8:  # the pixels `data.source="distilled"` trains on
        stats = synthetic.mean, synthetic.std
        images = normalise(denormalise(images, *stats), *stats)
    ours = protocol.evaluate_set(config, images, labels, test.flat(), "convnet")
    emit({"side": "bird_jax", "synset": FLAGS.synset, "uint8": FLAGS.uint8, **ours})
    if FLAGS.uint8:
        return
    for record in reference("evaluate", f"--synset={FLAGS.synset}", f"--runs={FLAGS.runs}",
                            f"--epochs={FLAGS.epochs}"):  # fmt: skip
        emit({"side": "official", **record})


def measure_speed() -> None:
    config = cifar_config(FLAGS.method, FLAGS.ipc)
    real = load_real(config.data, "train")
    method, sharded, state = methods.start(config, real)
    key = methods.keys(config)[1]
    seconds = []
    for iteration in range(FLAGS.iterations + 1):
        start = time.perf_counter()
        state, metrics = method.iteration(state, jax.random.fold_in(key, iteration), sharded)
        jax.block_until_ready(metrics["loss"])
        seconds.append(time.perf_counter() - start)
    ours = {"side": "bird_jax", "method": FLAGS.method, "ipc": FLAGS.ipc,
            "seconds_per_iteration": summary(seconds[1:]),
            "iterations_per_s": round(1 / float(np.median(seconds[1:])), 4),
            "devices": jax.local_device_count()}  # fmt: skip
    emit(ours)
    for record in reference("speed", f"--method={FLAGS.method}", f"--ipc={FLAGS.ipc}",
                            f"--iterations={FLAGS.iterations}"):  # fmt: skip
        emit({"side": "official", **record})


def measure_parts() -> None:
    classes, batch = 10, 256
    model = create_model("convnet", num_classes=classes, depth=3)
    key = jax.random.key(0)
    images = jax.random.normal(key, (classes, batch, 32, 32, 3))
    params = model.init(key, images[0, :1])["params"]

    @jax.jit
    def forward(params, images):
        return model.apply({"params": params}, images.reshape(-1, 32, 32, 3), method="embed")

    @jax.jit
    def real_side(params, images):  # a loop over classes, as gradient_matching_loss
        return [class_gradients(model, params, images[c], c) for c in range(classes)]

    for part, fn in (("forward", forward), ("class_gradients", real_side)):
        seconds = repeat_seconds(
            lambda fn=fn: jax.block_until_ready(fn(params, images)), FLAGS.repeats
        )
        emit({"side": "bird_jax", "part": part, "images": classes * batch,
              "seconds": summary(seconds)})  # fmt: skip
    for record in reference("parts", f"--repeats={FLAGS.repeats}"):
        emit({"side": "official", **record})


def measure_mtt_step() -> None:
    model = create_model("convnet", num_classes=10, depth=3)
    start, unravel = ravel_pytree(fresh_params(model, jax.random.key(0), (32, 32, 3)))
    target = start + 0.01 * jax.random.normal(jax.random.key(1), start.shape)
    images = jax.random.normal(jax.random.key(2), (FLAGS.images, 32, 32, 3))
    labels = jnp.arange(FLAGS.images) % 10
    settings = dict(syn_steps=FLAGS.syn_steps, batch_syn=FLAGS.images, strategy="none")
    for convolutions in FLAGS.convolutions:
        net = model.clone(patch_matmul=convolutions == "patch_matmul")

        def loss(images, syn_lr, net=net):
            return mtt.trajectory_loss(net, unravel, images, labels, syn_lr, start, target,
                                       jax.random.key(3), **settings)  # fmt: skip

        step = jax.jit(jax.grad(loss, argnums=(0, 1)))
        seconds = repeat_seconds(
            lambda step=step: jax.block_until_ready(step(images, 0.01)), FLAGS.repeats
        )
        emit({"side": "bird_jax", "convolutions": convolutions, "images": FLAGS.images,
              "syn_steps": FLAGS.syn_steps, "seconds": summary(seconds)})  # fmt: skip
    sizes = (f"--images={FLAGS.images}", f"--syn_steps={FLAGS.syn_steps}")
    for record in reference("mtt-step", *sizes, f"--repeats={FLAGS.repeats}"):
        emit({"side": "official", **record})


def main(argv: list[str]) -> None:
    del argv
    commands = {"protocol": measure_protocol, "speed": measure_speed, "parts": measure_parts,
                "mtt_step": measure_mtt_step}  # fmt: skip
    commands[FLAGS.command]()


if __name__ == "__main__":
    flags.mark_flag_as_required("command")
    app.run(main)
