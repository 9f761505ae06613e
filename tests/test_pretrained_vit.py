"""ViT checkpoints beyond the reference logits: transformers >= 5 in-memory names, and the
error for a checkpoint of another patch size."""

import re

import jax
import numpy as np
import pytest

from bird_jax.models import registry
from bird_jax.pretrained import mapping
from tests.test_pretrained_reference import load_case

# The Hub's names -> transformers >= 5's in-memory names (what torch.save(model.state_dict())
# writes).
TRANSFORMERS_5 = [
    (r"\.encoder\.layer\.", ".layers."),
    (r"\.attention\.attention\.(q|k|v)[a-z]+\.", r".attention.\1_proj."),
    (r"\.attention\.output\.dense\.", ".attention.o_proj."),
    (r"\.intermediate\.dense\.", ".mlp.fc1."),
    (r"\.output\.dense\.", ".mlp.fc2."),
]


def convert(case: str, **overrides):
    model, meta, state, images, _ = load_case(case)
    if overrides:
        model = registry.create_variant(
            meta["model"], num_classes=meta["num_classes"], **{**meta["overrides"], **overrides}
        )
    template = jax.eval_shape(lambda: model.init(jax.random.key(0), images[:1]))
    return state, lambda state: mapping.convert_state(state, meta["model"], template)


def test_transformers_5_names_load_as_the_hub_names():
    state, run = convert("hf_vit")
    renamed = {}
    for key, value in state.items():
        for pattern, replacement in TRANSFORMERS_5:
            key = re.sub(pattern, replacement, key)
        renamed[key] = value
    assert any(".q_proj." in key for key in renamed) and not any(".query." in k for k in renamed)
    expected, got = run(state).arrays, run(renamed).arrays
    assert got.keys() == expected.keys()
    for path, array in expected.items():
        np.testing.assert_array_equal(got[path], array, err_msg=path)


@pytest.mark.parametrize("case", ["timm_vit", "hf_vit"])
def test_a_checkpoint_of_another_patch_size_says_so(case):
    state, run = convert(case, patch_size=8)
    with pytest.raises(ValueError, match="patches are 4x4 px, the model's 8x8: use the ViT model"):
        run(state)
