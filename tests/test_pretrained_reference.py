"""Converted weights give the reference framework's logits: every fixture case written by
tests/fixtures/make_pretrained_fixtures.py (tiny random-weight torch/timm/Hugging Face models)."""

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bird_jax.models import registry
from bird_jax.pretrained import files, mapping
from tests.fixtures.images import fixture_images

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "pretrained"
CASES = sorted(path.stem for path in FIXTURES.glob("*.json"))


def load_case(case: str):
    """(model, fixture metadata, source state, images, reference logits) of one case."""
    meta = json.loads((FIXTURES / f"{case}.json").read_text())
    overrides = {
        key: tuple(value) if isinstance(value, list) else value
        for key, value in meta["overrides"].items()
    }
    model = registry.create_variant(meta["model"], num_classes=meta["num_classes"], **overrides)
    images = fixture_images(meta["image_size"])
    state = files.read_state(FIXTURES / meta["file"])
    return model, meta, state, images, np.load(FIXTURES / f"{case}.npz")["logits"]


def test_there_are_cases():
    assert len(CASES) >= 4


@pytest.mark.parametrize("case", CASES)
def test_converted_weights_reproduce_the_reference_logits(case):
    model, meta, state, images, expected = load_case(case)
    template = jax.eval_shape(lambda: model.init(jax.random.key(0), images[:1]))
    conversion = mapping.convert_state(state, meta["model"], template)
    assert conversion.reinitialised == ()
    logits = jax.jit(lambda v, x: model.apply(v, x, train=False))(
        conversion.apply_to(template), jnp.asarray(images)
    )
    # Relative to the logits' scale: random weights give logits of a few units.
    np.testing.assert_allclose(logits, expected, atol=1e-4 * max(1.0, np.abs(expected).max()))
