"""Evaluation over padded batches: the metrics and the confusion matrix count the same examples."""

import flax.linen as nn
import jax
import ml_collections
import numpy as np
import pytest

from bird_jax import augment
from bird_jax.devices import replicate
from bird_jax.evaluate import evaluate, make_eval_step

NUM_CLASSES = 5
SIZE = 8
PER_DEVICE = 4


class _MeanColour(nn.Module):
    """Logits a linear map of the mean colour: cheap, and its predictions vary."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        return nn.Dense(NUM_CLASSES, kernel_init=nn.initializers.normal(5.0))(x.mean(axis=(1, 2)))


def test_masked_accuracy_equals_the_confusion_matrix():
    """Padding (mask 0) counts in neither the accuracy nor the confusion matrix. Padded
    examples are labelled with their own prediction, so counting them would raise the accuracy."""
    data_config = ml_collections.ConfigDict({"mean": (0.5,) * 3, "std": (0.25,) * 3})
    model = _MeanColour()
    variables = model.init(jax.random.PRNGKey(0), np.zeros((1, SIZE, SIZE, 3), np.float32))
    devices = jax.local_device_count()
    rng = np.random.default_rng(0)
    batches, expected_correct, expected_count = [], 0, 0
    for padded in (0, devices * PER_DEVICE // 2):  # a full batch, then a half-padded last one
        size = devices * PER_DEVICE
        images = rng.integers(0, 256, (size, SIZE, SIZE, 3), dtype=np.uint8)
        logits = model.apply(variables, augment.normalize(images, (0.5,) * 3, (0.25,) * 3))
        labels = rng.integers(0, NUM_CLASSES, size).astype(np.int32)
        mask = np.arange(size) < size - padded
        labels[~mask] = np.argmax(logits, axis=-1)[~mask]
        expected_correct += int(np.sum((np.argmax(logits, axis=-1) == labels)[mask]))
        expected_count += int(mask.sum())
        batch = {"image": images, "label": labels, "mask": mask.astype(np.float32)}
        batches.append(jax.tree.map(lambda x: x.reshape(devices, PER_DEVICE, *x.shape[1:]), batch))

    p_eval_step = make_eval_step(model, NUM_CLASSES, data_config)
    results, confusion = evaluate(p_eval_step, replicate(variables), batches)
    assert confusion.sum() == expected_count
    assert np.trace(confusion) == expected_correct
    assert results["accuracy"] == pytest.approx(np.trace(confusion) / confusion.sum())
    assert expected_correct < expected_count  # the padding, all correct, would have changed it
