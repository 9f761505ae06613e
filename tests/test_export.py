"""Export: StableHLO reloaded by jax alone, predict on an exported file, TFLite where installed,
and bad input refused in one line with nothing written."""

import functools
import json
import os
import re
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from bird_jax import export, exported, train
from bird_jax.exported import ExportedModel
from bird_jax.models.common import grouped_depthwise
from bird_jax.predict import Predictor
from tests.tiny_config import tiny_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Runs in a fresh interpreter: deserializes and calls the export with jax and numpy only.
_JAX_ONLY = """
import sys
import jax
import numpy as np
model = jax.export.deserialize(bytearray(open(sys.argv[1], "rb").read()))
images = np.load(sys.argv[2])
np.savez(sys.argv[3], **{str(n): np.asarray(model.call(images[:n])) for n in (1, 3)})
assert not {"bird_jax", "flax"} & {name.split(".")[0] for name in sys.modules}
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny trained run (the workdir)."""
    workdir = str(tmp_path_factory.mktemp("run"))
    train.train_and_evaluate(tiny_config(), workdir)
    return workdir


@pytest.fixture(scope="module")
def predictor(run):
    return Predictor(run, precision="float32")


@pytest.fixture(scope="module")
def images(predictor):
    """Five uint8 images of the run's size, already preprocessed."""
    size = predictor.data_config.image_size
    return np.random.default_rng(0).integers(0, 256, (5, size, size, 3), dtype=np.uint8)


def _cli(*args, timeout=300):
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


def test_stablehlo_reloads_with_jax_alone_at_any_batch(predictor, images, tmp_path):
    path = tmp_path / "model.stablehlo"
    path.write_bytes(export.stablehlo(predictor))
    np.save(tmp_path / "images.npy", images[:3])
    command = [sys.executable, "-c", _JAX_ONLY, str(path), str(tmp_path / "images.npy")]
    result = subprocess.run(
        [*command, str(tmp_path / "out.npz")], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
    outputs = np.load(tmp_path / "out.npz")
    expected = predictor.logits(images[:3])
    for n in (1, 3):
        assert outputs[str(n)].dtype == np.float32
        np.testing.assert_allclose(outputs[str(n)], expected[:n], rtol=1e-5, atol=1e-5)


def test_exported_depthwise_is_one_grouped_convolution_with_the_same_logits(predictor, images):
    forward = lambda: functools.partial(predictor.forward, predictor.variables)  # new: untraced
    groups = lambda jaxpr: {int(n) for n in re.findall(r"feature_group_count=(\d+)", str(jaxpr))}
    assert groups(jax.make_jaxpr(forward())(images)) == {1}  # on CPU: the stem; shifted slices
    with grouped_depthwise():
        assert groups(jax.make_jaxpr(forward())(images)) == {1, 16}  # and 16-wide depthwise
        logits = np.asarray(jax.jit(forward())(images))
    np.testing.assert_allclose(logits, predictor.logits(images), rtol=1e-5, atol=1e-5)


def test_export_cli_then_predict_names_the_classes_the_workdir_does(run, predictor, tmp_path):
    out = tmp_path / "digits.stablehlo"
    result = _cli("-m", "bird_jax.export", f"--workdir={run}", "--format=stablehlo", f"--out={out}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith(f"{out}: stablehlo, ")
    described = json.loads(exported.description_path(out).read_text())
    assert described["class_names"] == predictor.class_names
    assert described["data"]["image_size"] == predictor.data_config.image_size
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "digits.stablehlo",
        "digits.stablehlo.json",
    ]

    photos = []
    for seed in range(2):
        photos.append(tmp_path / f"photo{seed}.png")
        pixels = np.random.default_rng(seed).integers(0, 256, (40, 30, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(photos[-1])
    result = _cli("-m", "bird_jax.predict", f"--model={out}", "--top_k=3", *map(str, photos))
    assert result.returncode == 0, result.stderr[-2000:]
    for photo, line in zip(photos, result.stdout.strip().splitlines(), strict=True):
        ranked = predictor.top_k(np.asarray(Image.open(photo)), 3)
        assert line == f"{photo}: " + ", ".join(f"{name} {p:.1%}" for name, p in ranked)


def test_a_model_file_that_is_no_export_or_lacks_its_description_is_refused(predictor, tmp_path):
    path = tmp_path / "model.stablehlo"
    path.write_bytes(export.stablehlo(predictor))
    with pytest.raises(FileNotFoundError, match="model.stablehlo.json not found"):
        ExportedModel(path)
    photo = tmp_path / "photo.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(photo)
    with pytest.raises(ValueError, match="photo.png is neither a TFLite nor a StableHLO file"):
        ExportedModel(photo)


def test_eval_images_spreads_a_count_over_the_split(predictor):
    data_config = predictor.data_config
    images, labels = export.eval_images(data_config, "train", 7)
    size = data_config.image_size
    assert images.shape == (7, size, size, 3) and images.dtype == np.uint8
    assert labels.shape == (7,) and len(set(labels.tolist())) > 1


def test_a_failed_write_leaves_no_file(tmp_path):
    files = {tmp_path / "model": b"model", tmp_path / "missing" / "model.json": b"{}"}
    with pytest.raises(FileNotFoundError):
        export._write(files)
    assert list(tmp_path.iterdir()) == []


def _no_checkpoint(run, tmp_path):
    """A run's config and labels without checkpoints."""
    workdir = tmp_path / "untrained"
    workdir.mkdir()
    for name in ("config.json", "labels.json"):
        shutil.copy(os.path.join(run, name), workdir)
    return workdir


@pytest.mark.parametrize(
    "args,message",
    [
        (["--format=stablehlo", "--workdir={untrained}"], "No checkpoint in {untrained}"),
        (["--format=stablehlo", "--workdir={out}"], "config.json not found"),
        (["--format=onnx", "--workdir={run}"], "--format=onnx: value should be one of <stable"),
        (["--format=stablehlo", "--quantize=int8", "--workdir={run}"], "needs --format=tflite"),
        (["--format=stablehlo", "--workdir={run}", "--out={out}/no/m"], "{out}/no does not exist"),
        (["--format=stablehlo", "--workdir={run}", "--out={out}"], "is a folder"),
    ],
)
def test_bad_export_input_is_one_line_and_writes_nothing(run, tmp_path, args, message):
    out = tmp_path / "out"
    out.mkdir()
    names = {"run": run, "out": out, "untrained": _no_checkpoint(run, tmp_path)}
    args = [arg.format(**names) for arg in args]
    if not any(arg.startswith("--out=") for arg in args):
        args.append(f"--out={out}/model")
    result = _cli("-m", "bird_jax.export", *args)
    assert result.returncode == 2, result.stderr[-2000:]
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("bird_jax: error: ") and message.format(**names) in line, line
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("args", [[], ["--workdir=w", "--model=m"]])
def test_predict_takes_a_workdir_or_a_model(args, tmp_path):
    result = _cli("-m", "bird_jax.predict", *args, str(tmp_path))
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("bird_jax: error: ") and "either --workdir (a training run)" in line


def test_tflite_float_int8_and_int8_weights(predictor, tmp_path):
    pytest.importorskip("litert_converter", reason="the export extra is not installed")
    from bird_jax import tflite

    digits, _ = export.eval_images(predictor.data_config, "test", 8)  # what int8 calibrates for
    expected = predictor.logits(digits)
    # Of the logits' spread (small: the tiny model trained 6 steps); measured 0.4% and 6%.
    tolerances = {"int8_weights": 0.05, "int8": 0.15}
    for quantize in ("none", *tolerances):
        model = export.tflite_model(predictor, quantize, calibration_images=20)
        described = export.description(predictor, "tflite", quantize)
        path = tmp_path / f"{quantize}.tflite"
        path.write_bytes(tflite.with_metadata(model, described))
        loaded = ExportedModel(path)
        assert loaded.description == described
        logits = loaded.logits(digits)
        assert logits.dtype == np.float32
        if quantize == "none":
            np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)
        else:
            error = np.abs(logits - expected).max() / np.ptp(expected)
            assert error <= tolerances[quantize], (quantize, error)


def test_a_tflite_model_its_interpreter_fails_on_is_not_exported(predictor, monkeypatch):
    pytest.importorskip("litert_converter", reason="the export extra is not installed")
    from bird_jax import cli, tflite

    model = export.tflite_model(predictor, "none", calibration_images=1)
    image = np.zeros((predictor.data_config.image_size,) * 2 + (3,), np.uint8)
    assert tflite.crash(model, image) is None
    assert tflite.crash(model[: len(model) // 2], image)  # the fresh process fails, not this one
    monkeypatch.setattr(tflite, "crash", lambda model, image: "killed by signal 6")
    with pytest.raises(
        cli.UserError, match="signal 6\\), so none was written; try --quantize=int8_w"
    ):
        export.tflite_model(predictor, "int8", calibration_images=4)
