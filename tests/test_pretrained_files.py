"""Weight files are read without executing code, and what does not fit is refused in one line."""

import json
import os
import pickle
import struct
import zipfile

import jax
import ml_dtypes
import numpy as np
import pytest

from bird_jax import convert, models
from bird_jax.pretrained import files, formats, mapping
from tests.test_pretrained_reference import FIXTURES, load_case


def _write_safetensors(path, arrays: dict[str, np.ndarray]) -> None:
    names = {np.dtype(np.float32): "F32", np.dtype(ml_dtypes.bfloat16): "BF16"}
    header, data = {}, b""
    for name, array in arrays.items():
        raw = np.ascontiguousarray(array).tobytes()
        header[name] = {
            "dtype": names[array.dtype], "shape": list(array.shape),
            "data_offsets": [len(data), len(data) + len(raw)],
        }  # fmt: skip
        data += raw
    encoded = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + data)


def test_safetensors_float32_and_bfloat16(tmp_path):
    arrays = {
        "a.weight": np.arange(6, dtype=np.float32).reshape(2, 3),
        "b": np.array([1.5, -2.25], dtype=ml_dtypes.bfloat16),
    }
    _write_safetensors(tmp_path / "w.safetensors", arrays)
    state = files.read_state(tmp_path / "w.safetensors")
    assert state.keys() == arrays.keys()
    for name, array in arrays.items():
        assert state[name].dtype == array.dtype
        np.testing.assert_array_equal(state[name], array)


def test_torch_zip_checkpoint_is_unwrapped_from_its_training_dict():
    """The official ConvNeXt release stores {"model": state_dict}."""
    state = files.read_state(FIXTURES / "official_convnext.pth")
    assert "downsample_layers.0.0.weight" in state and "model" not in state
    assert state["downsample_layers.0.0.weight"].shape == (4, 3, 4, 4)


def test_legacy_torch_format_is_read():
    state = files.read_state(FIXTURES / "torchvision_vgg11_bn.legacy.pth")
    assert state["features.0.weight"].shape == (2, 3, 3, 3)
    assert state["features.1.num_batches_tracked"].dtype == np.int64


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def _torch_zip_with(path, payload) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps(payload, protocol=2))
        archive.writestr("archive/version", "3\n")


def test_a_pickle_that_would_run_code_is_refused_without_running_it(tmp_path):
    marker = str(tmp_path / "pwned")
    _torch_zip_with(tmp_path / "evil.pth", {"weight": _RunsCode(marker)})
    with pytest.raises(files.WeightsFileError, match=r"posix\.mkdir.*refusing to unpickle"):
        files.read_state(tmp_path / "evil.pth")
    (tmp_path / "evil_legacy.pth").write_bytes(pickle.dumps(_RunsCode(marker), protocol=2))
    with pytest.raises(files.WeightsFileError, match=r"posix\.mkdir.*refusing"):
        files.read_state(tmp_path / "evil_legacy.pth")
    assert not os.path.exists(marker)


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("cut.pth", lambda b: b[: len(b) // 2], "truncated or not a .pth weights file"),
        ("noise.pth", lambda b: bytes(range(256)) * 4, "truncated or not a .pth"),
        ("cut.safetensors", None, "truncated"),
        ("notes.txt", lambda b: b"hello", "unknown weights suffix '.txt'"),
        ("empty.npz", None, "holds no tensors"),
    ],
)
def test_unreadable_files_give_one_line(tmp_path, name, content, message):
    path = tmp_path / name
    if name == "cut.safetensors":
        data = (FIXTURES / "timm_convnext.safetensors").read_bytes()
        path.write_bytes(data[: len(data) - 100])
    elif name == "empty.npz":
        np.savez(path)
    else:
        path.write_bytes(content((FIXTURES / "official_convnext.pth").read_bytes()))
    with pytest.raises(files.WeightsFileError, match=message) as error:
        files.read_state(path)
    assert "\n" not in str(error.value)


def test_missing_file():
    with pytest.raises(files.WeightsFileError, match="No weights file at /nowhere.pth"):
        files.read_state("/nowhere.pth")


def _template(model_name: str, num_classes: int, size: int = 32, **overrides):
    model = models.registry.create_variant(model_name, num_classes=num_classes, **overrides)
    return jax.eval_shape(lambda: model.init(jax.random.key(0), np.zeros((1, size, size, 3))))


TINY_CONVNEXT = {"depths": (1, 1, 1, 1), "dims": (4, 8, 12, 16)}


def test_weights_of_another_architecture_are_named():
    _, _, state, _, _ = load_case("timm_convnext")
    with pytest.raises(ValueError, match=r"timm_convnext \(for convnext_\), not for model 'vgg16'"):
        mapping.convert_state(state, "vgg16", _template("vgg16", 5))


def test_every_kind_of_misfit_is_listed():
    _, _, state, _, _ = load_case("timm_convnext")
    state = dict(state)
    state["stages.0.blocks.0.extra.weight"] = np.zeros(3, np.float32)  # unused
    del state["stages.1.blocks.0.gamma"]  # uncovered
    state["stem.0.bias"] = np.zeros(5, np.float32)  # shape
    with pytest.raises(mapping.MappingError) as error:
        mapping.convert_state(
            state, "convnext_tiny", _template("convnext_tiny", 5, **TINY_CONVNEXT)
        )
    assert str(error.value) == (
        "These timm_convnext weights do not fit 'convnext_tiny': "
        "1 source tensor(s) with no place in the model: stages.0.blocks.0.extra.weight; "
        "1 model variable(s) the weights do not cover: params/stage1_block0/layer_scale; "
        "1 shape mismatch(es): stem.0.bias (5,) -> params/stem_conv/bias (4,)."
    )


def test_a_new_class_count_reinitialises_the_whole_head_only(caplog):
    _, _, state, _, _ = load_case("timm_convnext")
    template = _template("convnext_tiny", 7, **TINY_CONVNEXT)
    with caplog.at_level("INFO"):
        conversion = mapping.convert_state(state, "convnext_tiny", template)
    assert conversion.reinitialised == ("params/head/bias", "params/head/kernel")
    assert not any(path.startswith("params/head/") for path in conversion.arrays)
    assert "head.fc.weight (5, 16) -> params/head/kernel (16, 7)" in caplog.text
    fresh = jax.tree.map(lambda s: np.full(s.shape, 7.0, np.float32), template)
    variables = conversion.apply_to(fresh)
    np.testing.assert_array_equal(variables["params"]["head"]["kernel"], 7.0)
    np.testing.assert_array_equal(
        variables["params"]["stem_conv"]["bias"], state["stem.0.bias"].astype(np.float32)
    )


def test_wrapper_prefixes_are_stripped():
    _, _, state, _, _ = load_case("timm_convnext")
    wrapped = {f"module.{key}": value for key, value in state.items()}
    template = _template("convnext_tiny", 5, **TINY_CONVNEXT)
    conversion = mapping.convert_state(wrapped, "convnext_tiny", template)
    assert conversion.format == "timm_convnext"


def test_convert_writes_a_file_that_loads_as_bird_jax_format(tmp_path):
    out = tmp_path / "convnext.npz"
    source = FIXTURES / "hf_convnext.bin"
    model = models.registry.create_variant("convnext_tiny", num_classes=5, **TINY_CONVNEXT)
    # convert() builds registry models by name; check the round trip on the mapping itself.
    template = jax.eval_shape(lambda: model.init(jax.random.key(0), np.zeros((1, 32, 32, 3))))
    first = mapping.convert_state(files.read_state(source), "convnext_tiny", template)
    np.savez(out, **first.arrays)
    again = mapping.convert_state(files.read_state(out), "convnext_tiny", template)
    assert again.format == formats.BIRD_JAX
    assert again.arrays.keys() == first.arrays.keys()
    for path, array in first.arrays.items():
        np.testing.assert_array_equal(again.arrays[path], array)


def test_convert_refuses_a_bad_output_before_reading(tmp_path):
    with pytest.raises(ValueError, match="end the name with .npz"):
        convert.convert(str(FIXTURES / "hf_convnext.bin"), "convnext_tiny", str(tmp_path / "x.pt"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        convert.convert(
            str(FIXTURES / "hf_convnext.bin"), "convnext_tiny", str(tmp_path / "no" / "x.npz")
        )
