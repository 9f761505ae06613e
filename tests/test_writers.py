"""CLU metric writers without TensorFlow: event files written by tensorboardX, read back here."""

import importlib.util
import io
import logging
import os
import struct
import subprocess
import sys
import textwrap
from collections import defaultdict
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image
from tensorboardX.proto import event_pb2, plugin_hparams_pb2

from bird_jax import writers
from bird_jax.writers import create_writer, metric_writers, periodic_actions

tensorflow_absent = pytest.mark.skipif(
    importlib.util.find_spec("tensorflow") is not None,
    reason="TensorFlow is installed, so CLU uses its own writer",
)


def read_summary_values(logdir: Path) -> dict[str, list[tuple[int, object]]]:
    """tag -> [(step, Summary.Value)] from every event file in `logdir` (TFRecord framing)."""
    values = defaultdict(list)
    for path in sorted(logdir.glob("events.out.tfevents.*")):
        data = path.read_bytes()
        offset = 0
        while offset < len(data):
            (length,) = struct.unpack_from("<Q", data, offset)
            start = offset + 12  # uint64 length + uint32 length CRC
            event = event_pb2.Event.FromString(data[start : start + length])
            offset = start + length + 4  # + uint32 data CRC
            for value in event.summary.value:
                values[value.tag].append((event.step, value))
    return values


def decode_png(value) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(value.image.encoded_image_string)))


@tensorflow_absent
def test_clu_imports_with_the_tensorboardx_summary_writer():
    import clu.periodic_actions  # noqa: F401  (imports clu.metric_writers, hence TensorFlow)
    from clu.metric_writers import summary_writer

    assert summary_writer.SummaryWriter is writers.TensorBoardXWriter
    assert metric_writers.SummaryWriter is writers.TensorBoardXWriter
    assert issubclass(writers.TensorBoardXWriter, metric_writers.MetricWriter)


def test_tensorboardx_writer_implements_every_metric_writer_method():
    missing = metric_writers.MetricWriter.__abstractmethods__ - set(
        vars(writers.TensorBoardXWriter)
    )
    assert not missing


@tensorflow_absent
def test_create_writer_writes_tensorboard_events_and_logs(tmp_path, caplog):
    rng = np.random.default_rng(0)
    batch = rng.uniform(size=(2, 4, 5, 3)).astype(np.float32)
    single = rng.integers(0, 256, size=(6, 7, 3), dtype=np.uint8)
    writer = create_writer(str(tmp_path))
    with caplog.at_level(logging.INFO):
        writer.write_hparams(
            {"optimizer": {"lr": 0.1, "name": "adamw"}, "flip": True, "crop": (0.08, 1.0)}
        )
        writer.write_scalars(3, {"train/loss": 0.5, "eval/accuracy": np.float32(0.25)})
        writer.write_scalars(7, {"train/loss": jnp.asarray(0.125)})
        writer.write_images(3, {"batch": batch, "single": single})
        writer.write_texts(3, {"config": "lr: 0.1"})
        writer.write_histograms(3, {"weights": np.arange(100.0)}, num_buckets={"weights": 10})
        writer.close()

    assert "train/loss=0.5" in caplog.text  # CLU's LoggingWriter
    values = read_summary_values(tmp_path)
    assert [(step, v.simple_value) for step, v in values["train/loss"]] == [(3, 0.5), (7, 0.125)]
    assert [(step, v.simple_value) for step, v in values["eval/accuracy"]] == [(3, 0.25)]

    (step, single_value) = values["single"][0]
    assert step == 3 and np.array_equal(decode_png(single_value), single)
    grid = decode_png(values["batch"][0][1])  # the two images side by side
    expected = np.round(np.concatenate(list(batch), axis=1) * 255)
    assert grid.shape == (4, 10, 3) and np.abs(grid - expected).max() <= 1

    (text,) = values["config"]
    assert text[1].tensor.string_val == [b"lr: 0.1"]
    assert text[1].metadata.plugin_data.plugin_name == "text"

    (histogram,) = values["weights"]
    assert histogram[1].histo.num == 100 and sum(histogram[1].histo.bucket) == 100
    assert len(histogram[1].histo.bucket) == 1 + 10  # tensorboardX adds the left edge

    (session,) = values["_hparams_/session_start_info"]
    assert session[1].metadata.plugin_data.plugin_name == "hparams"
    content = plugin_hparams_pb2.HParamsPluginData.FromString(
        session[1].metadata.plugin_data.content
    )
    hparams = content.session_start_info.hparams
    assert hparams["optimizer.lr"].number_value == 0.1
    assert hparams["optimizer.name"].string_value == "adamw"
    assert hparams["flip"].bool_value is True
    assert hparams["crop.0"].number_value == 0.08


def test_create_writer_without_workdir_only_logs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for writer in (create_writer(None), create_writer(str(tmp_path), just_logging=True)):
        writer.write_scalars(1, {"loss": 1.0})
        writer.close()
    assert not list(tmp_path.rglob("events.out.tfevents.*"))


@tensorflow_absent
def test_report_progress_writes_steps_per_sec(tmp_path):
    writer = create_writer(str(tmp_path))
    report_progress = periodic_actions.ReportProgress(
        num_train_steps=4, writer=writer, every_steps=2, every_secs=None
    )
    for step, time in [(1, 10.0), (2, 10.5), (3, 11.0), (4, 12.0)]:
        report_progress(step, t=time)
    writer.close()

    steps_per_sec = read_summary_values(tmp_path)["steps_per_sec"]
    assert [step for step, _ in steps_per_sec] == [2, 4]
    assert [v.simple_value for _, v in steps_per_sec] == pytest.approx([1 / 0.5, 2 / 1.5])


@pytest.mark.parametrize(
    ("tensorflow_init", "summary_writer_module"),
    [
        ("", "clu.metric_writers.tf.summary_writer"),  # TensorFlow imports: CLU's own writer
        ("raise ImportError('NumPy ABI mismatch')", "bird_jax.writers"),  # broken install
    ],
)
def test_summary_writer_follows_whether_tensorflow_imports(
    tmp_path, tensorflow_init, summary_writer_module
):
    fakes = {
        "tensorflow/__init__.py": tensorflow_init,
        "tensorboard/__init__.py": "",
        "tensorboard/plugins/__init__.py": "",
        "tensorboard/plugins/hparams/__init__.py": "",
        "tensorboard/plugins/hparams/api.py": "",
    }
    for name, source in fakes.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(source)
    script = textwrap.dedent(
        """
        from bird_jax.writers import metric_writers
        print(metric_writers.SummaryWriter.__module__)
        """
    )
    python_path = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": python_path}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == [summary_writer_module]
