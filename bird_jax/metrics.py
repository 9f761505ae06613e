"""clu.metrics collections for training and evaluation."""

import flax.struct
import jax
import jax.numpy as jnp
from clu import metrics


def _top_k_correct(k: int):
    def correct(logits: jax.Array, labels: jax.Array, **_) -> jax.Array:
        top_k = jax.lax.top_k(logits, min(k, logits.shape[-1]))[1]
        return (top_k == labels[..., None]).any(axis=-1).astype(jnp.float32)

    return correct


@flax.struct.dataclass
class TrainMetrics(metrics.Collection):
    """Per-step training metrics, averaged over logging intervals."""

    loss: metrics.Average.from_output("loss")
    accuracy: metrics.Accuracy
    top5_accuracy: metrics.Average.from_fun(_top_k_correct(5))
    learning_rate: metrics.LastValue.from_output("learning_rate")
    grad_norm: metrics.Average.from_output("grad_norm")


@flax.struct.dataclass
class EvalMetrics(metrics.Collection):
    """Evaluation metrics; padded examples are excluded through `mask`."""

    loss: metrics.Average.from_output("loss")
    accuracy: metrics.Accuracy
    top5_accuracy: metrics.Average.from_fun(_top_k_correct(5))


def psum_metrics(collection: metrics.Collection, axis_name: str) -> metrics.Collection:
    """Sums a collection's sufficient statistics over a pmap axis (all hosts included).

    Valid for the Average-style metrics used here (total and count add up); the result is
    replicated, so the host reads it with `flax.jax_utils.unreplicate`.
    """
    return jax.tree.map(lambda x: jax.lax.psum(x, axis_name), collection)
