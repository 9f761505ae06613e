"""The hparams record and the efficiency table TensorBoard shows."""

import struct

from tensorboardX.proto.event_pb2 import Event
from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData

from bird_jax import tensorboard
from tests.tiny_config import tiny_config


def _hparams_records(logdir) -> dict[str, HParamsPluginData]:
    """The hparams plugin's records in the event files of `logdir`, by tag (TFRecord framing:
    length, its CRC, the Event, its CRC)."""
    records = {}
    for path in logdir.glob("events.out.tfevents*"):
        data = path.read_bytes()
        while data:
            (length,) = struct.unpack("<Q", data[:8])
            event = Event.FromString(data[12 : 12 + length])
            data = data[16 + length :]
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "hparams":
                    records[value.tag] = HParamsPluginData.FromString(
                        value.metadata.plugin_data.content
                    )
    return records


def test_hparams_columns_come_in_rank_order_with_plain_names_and_metrics(tmp_path):
    config = tiny_config()
    config.grad_accum_steps = 2
    tensorboard.write_hparams(str(tmp_path), config)
    records = _hparams_records(tmp_path)
    experiment = records["_hparams_/experiment"].experiment
    names = [info.display_name for info in experiment.hparam_infos]
    assert names[:6] == ["model", "lr", "batch_size", "precision", "augmentation",
                         "grad_accum_steps"]  # fmt: skip
    assert sorted(info.name for info in experiment.hparam_infos) == [
        info.name for info in experiment.hparam_infos
    ]  # TensorBoard sorts by name: the rank prefix keeps this order
    metrics = [info.name.tag for info in experiment.metric_infos]
    assert metrics == ["valid/accuracy", "valid/loss", "valid/kwh"]
    start = records["_hparams_/session_start_info"].session_start_info
    assert start.hparams["05_grad_accum_steps"].number_value == 2
    assert start.hparams["03_precision"].string_value == "float32"
