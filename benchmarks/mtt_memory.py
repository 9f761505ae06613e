"""MTT's memory against the number of unrolled steps N: XLA's buffer plan of one matching step.

For ConvNet-3 (width 128) on CIFAR-10-sized images at IPC 10 (100 synthetic images, all of them
each step, DSA), compiles the gradient of `bird_jax.distill.mtt.trajectory_loss` for each N in
--steps with and without rematerialising each step (jax.checkpoint), and TESLA's constant-memory
gradient (`mtt.constant_memory_gradients`), and reports XLA's
temporary buffer size (compiled.memory_analysis(): what the step needs beyond its arguments
and outputs). Nothing runs, so it is the same on any machine of a backend; on a GPU run it on
the GPU (the plan is the backend's).

  python benchmarks/mtt_memory.py --steps=10,30,50
"""

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
from absl import app, flags
from jax.flatten_util import ravel_pytree

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_model  # noqa: E402

from bird_jax.distill import mtt  # noqa: E402
from bird_jax.distill.defaults import DSA_STRATEGY  # noqa: E402
from bird_jax.distill.iterative import fresh_params  # noqa: E402
from bird_jax.models import create_model  # noqa: E402

_STEPS = flags.DEFINE_list("steps", ["10", "30", "50"], "Unrolled steps N.")
_IMAGES = flags.DEFINE_integer("images", 100, "Synthetic images (10 classes x IPC).")
_SIZE = flags.DEFINE_integer("image_size", 32, "Image side.")


GRADIENTS = ("rematerialised", "stored activations", "constant (TESLA)")


def temp_bytes(syn_steps: int, gradient: str) -> tuple[int, int]:
    """XLA's temporary bytes for one matching step's gradient of `gradient` (of GRADIENTS), and
    the network's parameter count."""
    shape = (_SIZE.value, _SIZE.value, 3)
    model = create_model("convnet", num_classes=10, depth=3)
    start, unravel = ravel_pytree(fresh_params(model, jax.random.key(0), shape))
    labels = jnp.arange(_IMAGES.value) % 10
    settings = dict(syn_steps=syn_steps, batch_syn=_IMAGES.value, strategy=DSA_STRATEGY)

    def gradients(images, syn_lr):
        args = (model, unravel, images, labels, syn_lr, start, start + 0.01, jax.random.key(1))
        if gradient == GRADIENTS[2]:
            return mtt.constant_memory_gradients(*args, **settings)
        remat = gradient == GRADIENTS[0]
        return jax.grad(mtt.trajectory_loss, argnums=(2, 4))(*args, remat=remat, **settings)

    images = jax.ShapeDtypeStruct((_IMAGES.value, *shape), jnp.float32)
    lr = jax.ShapeDtypeStruct((), jnp.float32)
    compiled = jax.jit(gradients).lower(images, lr).compile()
    return int(compiled.memory_analysis().temp_size_in_bytes), int(start.size)


def main(argv):
    del argv
    print(f"{cpu_model()}; jax {jax.__version__}, backend {jax.default_backend()}")
    rows = ["| N | " + " | ".join(f"{name} (MiB)" for name in GRADIENTS) + " |",
            "|---:|" + "---:|" * len(GRADIENTS)]  # fmt: skip
    for steps in [int(s) for s in _STEPS.value]:
        sizes = [temp_bytes(steps, gradient) for gradient in GRADIENTS]
        params = sizes[0][1]
        rows.append(f"| {steps} | " + " | ".join(f"{b / 2**20:.1f}" for b, _ in sizes) + " |")
        print(rows[-1], flush=True)
    print(
        f"\nConvNet-3: {params:,} parameters ({params * 4 / 2**20:.2f} MiB a copy); "
        f"{_IMAGES.value} images at {_SIZE.value} px; backend {jax.default_backend()}."
    )
    print("\n".join(rows))


if __name__ == "__main__":
    app.run(main)
