"""Precision policy: which dtype computes, and dynamic loss scaling for float16.

Parameters and optimizer state always stay float32; only activations use the compute dtype.
float16 needs loss scaling because small gradients underflow; bfloat16 has float32's range and
needs none.
"""

import dataclasses

import flax.struct
import jax
import jax.numpy as jnp

_COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


@dataclasses.dataclass(frozen=True)
class Policy:
    """How a model computes: `compute_dtype` for activations, loss scaling on or off."""

    name: str
    compute_dtype: jnp.dtype
    loss_scaling: bool


AUTO = "auto"


def resolve(name: str) -> str:
    """`config.precision` with 'auto' resolved: bfloat16 on GPU/TPU, float32 on CPU (which has no
    bfloat16 units: bfloat16 halves a CPU's throughput)."""
    if name == AUTO:
        return "float32" if jax.default_backend() == "cpu" else "bfloat16"
    if name not in _COMPUTE_DTYPES:
        raise ValueError(
            f"Unknown precision {name!r}: set config.precision to {AUTO!r} or one of "
            f"{sorted(_COMPUTE_DTYPES)}."
        )
    return name


def get_policy(name: str) -> Policy:
    """The policy for `config.precision` ('auto', 'bfloat16', 'float16' or 'float32')."""
    name = resolve(name)
    return Policy(name, _COMPUTE_DTYPES[name], loss_scaling=name == "float16")


class DynamicLossScale(flax.struct.PyTreeNode):
    """Loss scale that halves on non-finite gradients and doubles after a run of finite ones."""

    scale: jax.Array
    finite_steps: jax.Array
    growth_interval: int = flax.struct.field(pytree_node=False, default=2000)

    @classmethod
    def create(cls, initial_scale: float = 2.0**15, growth_interval: int = 2000):
        """A fresh loss scale."""
        return cls(
            jnp.asarray(initial_scale, jnp.float32), jnp.zeros((), jnp.int32), growth_interval
        )

    def scale_loss(self, loss: jax.Array) -> jax.Array:
        return loss * self.scale.astype(loss.dtype)

    def unscale(self, grads):
        return jax.tree.map(lambda g: g / self.scale.astype(g.dtype), grads)

    def adjust(self, grads_finite: jax.Array) -> "DynamicLossScale":
        """Next scale: back off by 2 on overflow, grow by 2 after `growth_interval` good steps."""
        grow = grads_finite & (self.finite_steps + 1 >= self.growth_interval)
        scale = jnp.where(grads_finite, self.scale, jnp.maximum(self.scale / 2, 1.0))
        scale = jnp.where(grow, jnp.minimum(scale * 2, jnp.finfo(jnp.float32).max), scale)
        finite_steps = jnp.where(grads_finite & ~grow, self.finite_steps + 1, 0)
        return self.replace(scale=scale, finite_steps=finite_steps)


def all_finite(tree) -> jax.Array:
    """True when every element of every leaf is finite."""
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
    return jnp.stack(leaves).all() if leaves else jnp.asarray(True)
